//! `imdb-lstm train`: the tutorial end to end — data, model, fit, save, pictures.

use super::{TrainArgs, TrainPlan};
use crate::data::{self, Dataset, Encoded};
use crate::model_file::{self, ModelFile, TrainingFacts};
use crate::nn::Engine;
use crate::report;
use crate::train::history::History;
use crate::train::progress::Progress;
use crate::train::{run_epoch, Split, TrainState};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The run was stopped by Ctrl-C (exit code 130).
#[derive(Debug)]
pub struct Interrupted;
impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "interrupted")
    }
}
impl std::error::Error for Interrupted {}

/// Print unless quiet (the tutorial's console output goes to stdout).
macro_rules! say {
    ($quiet:expr, $($t:tt)*) => { if !$quiet { println!($($t)*); } };
}

/// Load, prepare and (optionally) cut the data, printing what the tutorial prints.
pub fn load_data(flag: Option<&Path>, plan: &TrainPlan, quiet: bool) -> Result<Dataset> {
    say!(quiet, "Loading data...");
    let source = data::resolve_source(flag, !quiet)?;
    let raw = data::load_reviews(&source)?;
    let mut ds = data::prepare(&raw, &plan.pre, plan.train.seed)?;
    if let Some(n) = plan.limit {
        ds.train = first(&ds.train, n);
        ds.test = first(&ds.test, n);
    }
    say!(quiet, "{} train sequences", ds.train.len());
    say!(quiet, "{} test sequences", ds.test.len());
    say!(quiet, "Pad sequences (samples x time)");
    say!(
        quiet,
        "x_train shape: ({}, {})",
        ds.train.len(),
        plan.pre.maxlen
    );
    say!(
        quiet,
        "x_test shape: ({}, {})",
        ds.test.len(),
        plan.pre.maxlen
    );
    Ok(ds)
}

fn first(e: &Encoded, n: usize) -> Encoded {
    let idx: Vec<usize> = (0..n.min(e.len())).collect();
    e.subset(&idx)
}

/// A new folder under runs/ named by the time, made unique.
fn new_run_dir() -> PathBuf {
    let stamp = TrainingFacts::now_date().replace(':', "-");
    let base = Path::new("runs").join(&stamp);
    let mut dir = base.clone();
    let mut k = 2;
    while dir.exists() {
        dir = PathBuf::from(format!("{}-{k}", base.display()));
        k += 1;
    }
    dir
}

/// Create the run folder and prove it is writable before any training time is spent.
fn prepare_run_dir(out: Option<&Path>) -> Result<PathBuf> {
    let dir = out.map(Path::to_path_buf).unwrap_or_else(new_run_dir);
    std::fs::create_dir_all(&dir).with_context(|| {
        format!(
            "cannot create the run folder {}: choose another with --out",
            dir.display()
        )
    })?;
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"ok").with_context(|| {
        format!(
            "the run folder {} is not writable: choose another with --out",
            dir.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(dir)
}

pub fn run(args: &TrainArgs) -> Result<()> {
    let started = Instant::now();
    let plan = args.plan()?;
    let quiet = args.quiet || args.log_format == crate::train::progress::LogFormat::Json;
    let dir = prepare_run_dir(args.out.as_deref())?;
    let mut ds = load_data(args.data.data.as_deref(), &plan, quiet)?;
    let val_is_test = plan.validation_split.is_none();
    let val: Encoded = match plan.validation_split {
        Some(f) => ds.train.split_off_tail(f)?,
        None => ds.test.clone(),
    };
    say!(quiet, "Build model...");
    say!(
        quiet,
        "{}",
        report::summary::summary(&plan.model, &plan.pre, Some(ds.vocab.len()))
    );
    say!(quiet, "Train...");
    say!(
        quiet,
        "Train on {} samples, validate on {} samples ({})",
        ds.train.len(),
        val.len(),
        if val_is_test {
            "the test set, as the tutorial does"
        } else {
            "the last part of the training data"
        }
    );

    let mut state = TrainState::new(&plan.model, &plan.train);
    let mut engine = Engine::new(&plan.model, plan.train.threads);
    let mut progress = Progress::new(args.log_format, args.quiet);
    progress.set_epochs(plan.train.epochs);
    for _ in 0..plan.train.epochs {
        let res = run_epoch(
            &mut state,
            &mut engine,
            &plan.model,
            &plan.train,
            Split {
                x: &ds.train.x,
                y: &ds.train.y,
            },
            Some(Split {
                x: &val.x,
                y: &val.y,
            }),
            &mut progress,
        );
        if let Err(e) = res {
            progress.clear();
            return Err(e);
        }
        report::write_history(&dir, &state.history)?;
    }
    // With validation on the test set, the last epoch's numbers are the test score.
    let (test_loss, test_acc) = match (val_is_test, state.history.epochs.last()) {
        (true, Some(r)) => (
            r.val_loss.unwrap_or(f64::NAN),
            r.val_accuracy.unwrap_or(f64::NAN),
        ),
        _ => {
            let (s, _) = engine.evaluate(&state.params, &ds.test.x, &ds.test.y);
            (
                s.loss_sum / s.count as f64,
                s.correct as f64 / s.count as f64,
            )
        }
    };
    let model_path = dir.join("model.safetensors");
    model_file::save(
        &model_path,
        &model_file_of(&state, &plan, &ds, &state.history),
    )?;
    report::write_history(&dir, &state.history)?;
    // Pictures come last: a failure to draw never loses the model or the history.
    if let Err(e) = report::plot_history(&dir, &state.history) {
        eprintln!("warning: could not draw the history plot: {e:#}");
    }
    if let Err(e) = report::write_model_graph(&dir, &plan.model) {
        eprintln!("warning: could not draw the model graph: {e:#}");
    }
    say!(quiet, "Test score: {test_loss:.6}");
    say!(quiet, "Test accuracy: {test_acc:.6}");
    say!(
        quiet,
        "Saved {} (history.json, history.csv, history.png, model.svg beside it)",
        model_path.display()
    );
    say!(
        quiet,
        "Elapsed time: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The self-contained model file for the current state.
pub fn model_file_of(
    state: &TrainState,
    plan: &TrainPlan,
    ds: &Dataset,
    history: &History,
) -> ModelFile {
    let last = history.epochs.last();
    ModelFile {
        config: plan.model.clone(),
        preprocessing: plan.pre.clone(),
        vocabulary: ds.vocab.words().to_vec(),
        training: last.map(|r| TrainingFacts {
            epochs: r.epoch,
            best_epoch: history.best_epoch(),
            loss: r.loss,
            accuracy: r.accuracy,
            val_loss: r.val_loss,
            val_accuracy: r.val_accuracy,
            seed: plan.train.seed,
            date: TrainingFacts::now_date(),
            program_version: env!("CARGO_PKG_VERSION").to_string(),
        }),
        tensors: state.params.named(),
    }
}
