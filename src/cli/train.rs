//! `imdb-lstm train`: the tutorial end to end — data, model, fit, save, pictures — with a
//! checkpoint after every epoch, `--resume`, a clean stop on Ctrl-C and early stopping.

use super::{TrainArgs, TrainPlan};
use crate::data::{self, Dataset, Encoded};
use crate::model_file::{self, ModelFile, TrainingFacts};
use crate::nn::{Engine, Params};
use crate::report;
use crate::train::checkpoint::{self, Checkpoint, RunSpec};
use crate::train::history::History;
use crate::train::progress::{LogFormat, Progress};
use crate::train::{run_epoch_until, EarlyStopper, Split, TrainState};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// The run was stopped by Ctrl-C (exit code 130); defined with the fit loop that returns it.
pub use crate::train::Interrupted;

/// Print unless quiet (the tutorial's console output goes to stdout). A closed or full stdout
/// never stops a training run: the model and history still land in the run folder.
macro_rules! say {
    ($quiet:expr, $($t:tt)*) => {
        if !$quiet {
            use std::io::Write;
            let _ = writeln!(std::io::stdout(), $($t)*);
        }
    };
}

/// Load, prepare and (optionally) cut the data from `source`, printing what the tutorial prints.
pub fn load_data(source: &Path, plan: &TrainPlan, quiet: bool) -> Result<Dataset> {
    let raw = data::load_reviews(source)?;
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
/// Returns the folder and whether this call created it.
fn prepare_run_dir(out: Option<&Path>) -> Result<(PathBuf, bool)> {
    let dir = out.map(Path::to_path_buf).unwrap_or_else(new_run_dir);
    let created = !dir.exists();
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
    Ok((dir, created))
}

/// Set by the Ctrl-C handler; the fit loop checks it between batches.
static STOP: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler (once per process): the first Ctrl-C asks the fit loop to stop
/// after the current batch; a second one exits at once (the checkpoint on disk is always
/// whole, since it is replaced by a rename).
fn install_ctrlc() -> Result<&'static AtomicBool> {
    static INSTALLED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            ctrlc::set_handler(|| {
                if STOP.swap(true, Ordering::SeqCst) {
                    std::process::exit(130);
                }
            })
            .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| anyhow::anyhow!("cannot install the Ctrl-C handler: {e}"))?;
    Ok(&STOP)
}

/// Removes temp files that a killed process left behind while writing the run's outputs
/// (the writes go to `.NAME...tmp...` files in the run folder, then are renamed).
fn remove_stale_temp_files(dir: &Path) {
    const OUTPUTS: [&str; 8] = [
        checkpoint::CHECKPOINT_FILE,
        "model.safetensors",
        "history.json",
        "history.csv",
        "history.png",
        "history.svg",
        "model.svg",
        "model.dot",
    ];
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = OUTPUTS
            .iter()
            .any(|f| name.starts_with(&format!(".{f}.")) && name.contains("tmp"));
        if ours {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The checked plan of a checkpointed run.
fn plan_of(spec: &RunSpec) -> TrainPlan {
    TrainPlan {
        model: spec.model.clone(),
        pre: spec.preprocessing.clone(),
        train: spec.train.clone(),
        validation_split: spec.validation_split,
        limit: spec.limit,
        early_stopping: spec.early_stopping.clone(),
    }
}

/// The data ready for the fit loop.
struct Prepared {
    ds: Dataset,
    /// The validation data: the tail of the training data, or the test set.
    val: Encoded,
    val_is_test: bool,
}

/// Loads the data of `plan` and splits off the validation part; prints the tutorial's lines.
fn prepare_data(source: &Path, plan: &TrainPlan, quiet: bool) -> Result<(Prepared, String)> {
    let mut ds = load_data(source, plan, quiet)?;
    let fp = checkpoint::fingerprint(&ds);
    let (val, val_is_test) = match plan.validation_split {
        Some(f) => (
            ds.train.split_off_tail(f).context("--validation-split")?,
            false,
        ),
        None => (ds.test.clone(), true),
    };
    Ok((
        Prepared {
            ds,
            val,
            val_is_test,
        },
        fp,
    ))
}

/// How this invocation reports (the only flags `--resume` takes besides `--threads`).
struct Output {
    quiet: bool,
    log_format: LogFormat,
    /// `--quiet` itself (json output still prints its per-epoch lines).
    silent: bool,
}

/// `imdb-lstm train`: a new run, or `--resume RUN_DIR`.
pub fn run(args: &TrainArgs) -> Result<()> {
    let started = Instant::now();
    let out = Output {
        quiet: args.quiet || args.log_format == LogFormat::Json,
        log_format: args.log_format,
        silent: args.quiet,
    };
    if let Some(dir) = &args.resume {
        return resume(args, dir, &out, started);
    }
    let plan = args.plan()?;
    let (dir, created) = prepare_run_dir(args.out.as_deref())?;
    let ck_path = checkpoint::path_in(&dir);
    if ck_path.exists() {
        bail!(
            "{} already holds a run ({}): continue it with `imdb-lstm train --resume {}`, or \
             choose another --out",
            dir.display(),
            ck_path.display(),
            dir.display()
        );
    }
    remove_stale_temp_files(&dir);
    say!(out.quiet, "Loading data...");
    let loaded = data::resolve_source(args.data.data.as_deref(), !out.quiet).and_then(|source| {
        // Absolute, so `--resume` finds the data from any working folder.
        let source = std::fs::canonicalize(&source).unwrap_or(source);
        let (prepared, fp) = prepare_data(&source, &plan, out.quiet)?;
        Ok((source, prepared, fp))
    });
    let (source, prepared, fp) = match loaded {
        Ok(v) => v,
        Err(e) => {
            if created {
                let _ = std::fs::remove_dir(&dir); // only if still empty: nothing of the user's is lost
            }
            return Err(e);
        }
    };
    let spec = RunSpec {
        model: plan.model.clone(),
        preprocessing: plan.pre.clone(),
        train: plan.train.clone(),
        validation_split: plan.validation_split,
        limit: plan.limit,
        data: source,
        early_stopping: plan.early_stopping.clone(),
    };
    let ck = Checkpoint {
        state: TrainState::new(&plan.model, &plan.train),
        early: plan.early_stopping.clone().map(EarlyStopper::new),
        spec,
        data_fingerprint: fp,
        finished: false,
    };
    // The epoch-0 checkpoint: from here on, `--resume` can continue the run.
    checkpoint::save(&dir, &ck)?;
    say!(out.quiet, "Build model...");
    say!(
        out.quiet,
        "{}",
        report::summary::summary(&plan.model, &plan.pre, Some(prepared.ds.vocab.len()))
    );
    fit_and_finish(ck, &plan, &prepared, &dir, &out, started)
}

/// `--resume RUN_DIR`: the run's own settings and data from its checkpoint.
fn resume(args: &TrainArgs, dir: &Path, out: &Output, started: Instant) -> Result<()> {
    let ck = checkpoint::load(dir)?;
    let dir = if dir.is_file() {
        super::parent_dir(dir)
    } else {
        dir.to_path_buf()
    };
    remove_stale_temp_files(&dir);
    let spec = &ck.spec;
    if let Some(t) = args.threads {
        if t != spec.train.threads {
            bail!(
                "--threads {t} differs from the run's {} threads: the batch split depends on the \
                 thread count, so only {} continues the run bit for bit (leave --threads out)",
                spec.train.threads,
                spec.train.threads
            );
        }
    }
    let done = ck.state.epochs_done();
    if ck.finished {
        say!(
            out.quiet,
            "The run in {} is already finished ({done} epochs{}); its model is {}",
            dir.display(),
            match ck.early.as_ref().and_then(|e| e.stopped_epoch) {
                Some(_) => ", stopped early",
                None => "",
            },
            dir.join("model.safetensors").display()
        );
        return Ok(());
    }
    say!(
        out.quiet,
        "Resuming {} after epoch {done} of {} (seed {}, {} threads)",
        dir.display(),
        spec.train.epochs,
        spec.train.seed,
        spec.train.threads
    );
    let plan = plan_of(spec);
    say!(out.quiet, "Loading data from {}...", spec.data.display());
    let (prepared, fp) = prepare_data(&spec.data, &plan, out.quiet)
        .with_context(|| format!("cannot reload the data of the run in {}", dir.display()))?;
    if fp != ck.data_fingerprint {
        bail!(
            "the data at {} no longer gives the sequences the run in {} was trained on (the \
             file changed?): it cannot be resumed exactly; start a new run",
            spec.data.display(),
            dir.display()
        );
    }
    fit_and_finish(ck, &plan, &prepared, &dir, out, started)
}

/// The fit loop from the checkpoint's state to the end, a checkpoint after every epoch, then
/// the model file, history and pictures.
fn fit_and_finish(
    mut ck: Checkpoint,
    plan: &TrainPlan,
    p: &Prepared,
    dir: &Path,
    out: &Output,
    started: Instant,
) -> Result<()> {
    let quiet = out.quiet;
    say!(quiet, "Train...");
    say!(
        quiet,
        "Train on {} samples, validate on {} samples ({})",
        p.ds.train.len(),
        p.val.len(),
        if p.val_is_test {
            "the test set, as the tutorial does"
        } else {
            "the last part of the training data"
        }
    );
    if let Some(es) = &plan.early_stopping {
        say!(
            quiet,
            "Early stopping on val_loss (patience {}, min_delta {}): validation uses the last {}% \
             of the training data, the test set is evaluated only once, at the end, with the {} \
             weights",
            es.patience,
            es.min_delta,
            plan.validation_split.unwrap_or(0.0) * 100.0,
            if es.restore_best {
                "best epoch's"
            } else {
                "last epoch's"
            }
        );
    }
    let stop = install_ctrlc()?;
    let ck_path = checkpoint::path_in(dir);
    let mut engine = Engine::new(&plan.model, plan.train.threads);
    let mut progress = Progress::new(out.log_format, out.silent);
    progress.set_epochs(plan.train.epochs);
    while ck.state.epochs_done() < plan.train.epochs
        && !ck.early.as_ref().is_some_and(|e| e.stopped())
    {
        let done = ck.state.epochs_done();
        let res = run_epoch_until(
            &mut ck.state,
            &mut engine,
            &plan.model,
            &plan.train,
            Split {
                x: &p.ds.train.x,
                y: &p.ds.train.y,
            },
            Some(Split {
                x: &p.val.x,
                y: &p.val.y,
            }),
            &mut progress,
            stop,
        );
        let record = match res {
            Ok(r) => r,
            Err(e) => {
                progress.clear();
                let kept = format!(
                    "the checkpoint after epoch {done} is kept in {}",
                    ck_path.display()
                );
                if e.is::<Interrupted>() {
                    return Err(e.context(format!(
                        "stopped by Ctrl-C during epoch {}; {kept}: continue the run with \
                         `imdb-lstm train --resume {}`",
                        done + 1,
                        dir.display()
                    )));
                }
                return Err(e.context(format!(
                    "training stopped; {kept} (the last good state; resuming would repeat the \
                     same steps, so change the settings in a new run)"
                )));
            }
        };
        if let Some(es) = &mut ck.early {
            if es.on_epoch_end(&record, &ck.state.params.data)? {
                say!(
                    quiet,
                    "Early stopping after epoch {}: val_loss has not improved by more than {} \
                     for {} epochs (best: epoch {})",
                    record.epoch,
                    es.cfg.min_delta,
                    es.wait,
                    es.best_epoch.unwrap_or(0)
                );
            }
        }
        checkpoint::save(dir, &ck)?;
        report::write_history(dir, &ck.state.history)?;
    }
    progress.clear();

    // The weights that go into the model file: the best epoch's when early stopping keeps them.
    let restored = ck
        .early
        .as_ref()
        .filter(|e| e.cfg.restore_best)
        .and_then(|e| Some((e.best_epoch?, e.best_params.as_ref()?)));
    let mut params = ck.state.params.clone();
    if let Some((epoch, best)) = restored {
        params.data.copy_from_slice(best);
        say!(quiet, "Restoring the weights of the best epoch, {epoch}");
    }
    // With validation on the test set (never with early stopping), the last epoch's numbers
    // are the test score.
    let (test_loss, test_acc) = match (p.val_is_test, ck.state.history.epochs.last()) {
        (true, Some(r)) if restored.is_none() => (
            r.val_loss.unwrap_or(f64::NAN),
            r.val_accuracy.unwrap_or(f64::NAN),
        ),
        _ => {
            engine.refresh(&params);
            let (s, _) = engine.evaluate(&params, &p.ds.test.x, &p.ds.test.y);
            (
                s.loss_sum / s.count as f64,
                s.correct as f64 / s.count as f64,
            )
        }
    };
    let model_path = dir.join("model.safetensors");
    let best_epoch = match &ck.early {
        Some(e) => e.best_epoch,
        None => ck.state.history.best_epoch(),
    };
    let facts_epoch = restored.map(|(e, _)| e);
    model_file::save(
        &model_path,
        &model_file_of(
            &params,
            plan,
            &p.ds,
            &ck.state.history,
            best_epoch,
            facts_epoch,
        ),
    )?;
    report::write_history(dir, &ck.state.history)?;
    // Pictures come last: a failure to draw never loses the model or the history.
    if let Err(e) = report::plot_history(dir, &ck.state.history) {
        eprintln!("warning: could not draw the history plot: {e:#}");
    }
    if let Err(e) = report::write_model_graph(dir, &plan.model) {
        eprintln!("warning: could not draw the model graph: {e:#}");
    }
    ck.finished = true;
    checkpoint::save(dir, &ck)?;
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

/// The self-contained model file for `params`. `best_epoch` is recorded as such; the facts
/// describe epoch `facts_epoch` when given (the restored best epoch, whose weights the file
/// holds), else the last epoch.
pub fn model_file_of(
    params: &Params,
    plan: &TrainPlan,
    ds: &Dataset,
    history: &History,
    best_epoch: Option<usize>,
    facts_epoch: Option<usize>,
) -> ModelFile {
    let last = history.epochs.last();
    let facts = facts_epoch
        .and_then(|e| history.epochs.get(e.wrapping_sub(1)))
        .or(last);
    ModelFile {
        config: plan.model.clone(),
        preprocessing: plan.pre.clone(),
        vocabulary: ds.vocab.words().to_vec(),
        training: facts.map(|r| TrainingFacts {
            epochs: last.map_or(0, |l| l.epoch),
            best_epoch,
            loss: r.loss,
            accuracy: r.accuracy,
            val_loss: r.val_loss,
            val_accuracy: r.val_accuracy,
            seed: plan.train.seed,
            date: TrainingFacts::now_date(),
            program_version: env!("CARGO_PKG_VERSION").to_string(),
        }),
        tensors: params.named(),
    }
}
