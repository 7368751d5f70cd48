//! A training run end to end — data, model, fit ([`crate::train`]), save, pictures
//! ([`crate::report`]) — with a checkpoint after every
//! epoch, resuming, a clean stop on Ctrl-C, SIGTERM or SIGHUP, early stopping, and a run folder
//! that one process at a time may write. `imdb-lstm train` turns its flags into a [`TrainPlan`]
//! and [`RunOptions`] and calls [`start`] or [`resume`].

use crate::data::{self, Dataset, Encoded};
use crate::model_file::{self, ModelFile, TrainingFacts};
use crate::nn::Network;
use crate::report;
use crate::train::checkpoint::{self, Checkpoint, RunSpec};
use crate::train::history::History;
use crate::train::progress::{LogFormat, Progress};
pub use crate::train::TrainPlan;
use crate::train::{run_epoch_with, EarlyStopper, Interrupted, Split, TrainState};
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::ffi::c_int;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

/// Where a run goes, where its data comes from, and how it reports: what `start` and `resume`
/// take besides the plan.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// The run folder [default: a new folder under runs/].
    pub out: Option<PathBuf>,
    /// Replace the run files a folder already holds.
    pub overwrite: bool,
    /// The dataset (for `resume`: its new place, when it moved).
    pub data: Option<PathBuf>,
    /// For `resume`: the thread count given, which must be the run's own.
    pub threads: Option<usize>,
    /// Print nothing but JSON events (with `LogFormat::Json`).
    pub quiet: bool,
    pub log_format: LogFormat,
}

/// Training was stopped by a signal between two batches, its last checkpoint kept. The exit code
/// is the shell's for that signal, 128 + its number: 130 for Ctrl-C, 143 for SIGTERM.
#[derive(Debug)]
pub struct Stopped {
    pub exit_code: u8,
    message: String,
}
impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
impl std::error::Error for Stopped {}

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

fn cannot_create(dir: &Path) -> String {
    format!(
        "cannot create the run folder {}: choose another with --out",
        dir.display()
    )
}

/// A new folder under runs/ named by the time; made with `create_dir`, so two runs started in
/// the same second get two folders.
fn new_run_dir() -> Result<PathBuf> {
    let stamp = TrainingFacts::now_date().replace(':', "-");
    let runs = Path::new("runs");
    std::fs::create_dir_all(runs).with_context(|| cannot_create(runs))?;
    let mut k = 1;
    loop {
        let dir = match k {
            1 => runs.join(&stamp),
            _ => runs.join(format!("{stamp}-{k}")),
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => k += 1,
            Err(e) => return Err(e).with_context(|| cannot_create(&dir)),
        }
    }
}

/// The files a run writes into its folder.
const RUN_FILES: [&str; 8] = [
    checkpoint::CHECKPOINT_FILE,
    "model.safetensors",
    "history.json",
    "history.csv",
    "history.png",
    "history.svg",
    "model.svg",
    "model.dot",
];

/// The hidden file in a run folder that the `train` writing it holds locked (an OS lock, gone
/// with the process however it ends). It stays in the folder: deleting it would let a process
/// that opened it a moment before lock a file that the next one no longer sees.
pub const LOCK_FILE: &str = ".imdb-lstm.lock";

/// Locks the run folder `dir` for this process until the returned file is dropped; another
/// process holding it gets one line ending with `if_busy`.
fn lock_run_dir(dir: &Path, if_busy: &str, if_unwritable: &str) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(LOCK_FILE))
        .with_context(|| {
            format!(
                "the run folder {} is not writable (cannot create {LOCK_FILE} in it): \
                 {if_unwritable}",
                dir.display()
            )
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => bail!(
            "the run folder {} is in use by another `imdb-lstm train` (it holds {LOCK_FILE} \
             locked): {if_busy}",
            dir.display()
        ),
        Err(TryLockError::Error(e)) => {
            bail!(
                "cannot lock the run folder {} ({e}): {if_unwritable}",
                dir.display()
            )
        }
    }
}

/// A new run's folder, locked.
struct RunDir {
    path: PathBuf,
    /// This run made the folder (so it may remove it again if the data fails to load).
    created: bool,
    _lock: File,
}

/// Creates (or takes) the run folder, locks it, refuses it when it already holds a run's files
/// (unless `overwrite`), and proves it writable: all before any training time is spent. A folder
/// that is in use or holds a run is left exactly as it was.
fn prepare_run_dir(out: Option<&Path>, overwrite: bool) -> Result<RunDir> {
    let (dir, created) = match out {
        Some(dir) => {
            let created = !dir.exists();
            std::fs::create_dir_all(dir).with_context(|| cannot_create(dir))?;
            (dir.to_path_buf(), created)
        }
        None => (new_run_dir()?, true),
    };
    let lock = lock_run_dir(
        &dir,
        "wait for that run to end, or choose another --out",
        "choose another with --out",
    )?;
    let ck_path = checkpoint::path_in(&dir);
    if !overwrite {
        if ck_path.exists() {
            bail!(
                "{} already holds a run ({}): continue it with `imdb-lstm train --resume {}`, \
                 start it over with --overwrite, or choose another --out",
                dir.display(),
                ck_path.display(),
                dir.display()
            );
        }
        let found: Vec<&str> = RUN_FILES
            .into_iter()
            .filter(|f| dir.join(f).symlink_metadata().is_ok())
            .collect();
        if !found.is_empty() {
            bail!(
                "{} already holds a run's files ({}): give --overwrite to replace them, or \
                 choose another --out",
                dir.display(),
                found.join(", ")
            );
        }
    }
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"ok").with_context(|| {
        format!(
            "the run folder {} is not writable: choose another with --out",
            dir.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(RunDir {
        path: dir,
        created,
        _lock: lock,
    })
}

/// Set by the first stop signal; the fit loop checks it between batches.
static STOP: AtomicBool = AtomicBool::new(false);
/// The number of the signal that set [`STOP`].
static SIGNAL: AtomicUsize = AtomicUsize::new(0);

/// The signals that stop training cleanly, and how messages name them.
#[cfg(unix)]
const STOP_SIGNALS: &[(c_int, &str)] = &[
    (signal_hook::consts::SIGINT, "Ctrl-C"),
    (signal_hook::consts::SIGTERM, "SIGTERM"),
    (signal_hook::consts::SIGHUP, "SIGHUP"),
];
#[cfg(not(unix))]
const STOP_SIGNALS: &[(c_int, &str)] = &[
    (signal_hook::consts::SIGINT, "Ctrl-C"),
    (signal_hook::consts::SIGTERM, "SIGTERM"),
];

/// Installs the handlers of [`STOP_SIGNALS`] (once per process): the first signal asks the fit
/// loop to stop after the current batch; a second one exits at once with its code (the
/// checkpoint on disk is always whole, since it is replaced by a rename).
fn install_stop_signals() -> Result<&'static AtomicBool> {
    static INSTALLED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            for &(sig, _) in STOP_SIGNALS {
                // Actions run in this order: the exit only once STOP was set by an earlier one.
                signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, &STOP)
                    .and_then(|_| signal_hook::flag::register_usize(sig, &SIGNAL, sig as usize))
                    .and_then(|_| signal_hook::flag::register(sig, &STOP))
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        })
        .clone()
        .map_err(|e| anyhow::anyhow!("cannot install the Ctrl-C and SIGTERM handlers: {e}"))?;
    Ok(&STOP)
}

/// The error for a run stopped by a signal during epoch `done + 1`.
fn stopped(done: usize, ck_path: &Path, dir: &Path) -> anyhow::Error {
    let sig = SIGNAL.load(Ordering::SeqCst) as c_int;
    let name = STOP_SIGNALS
        .iter()
        .find(|(s, _)| *s == sig)
        .map_or("a signal", |(_, name)| name);
    Stopped {
        exit_code: u8::try_from(128 + sig).unwrap_or(130),
        message: format!(
            "stopped by {name} during epoch {}; the checkpoint after epoch {done} is kept in {}: \
             continue the run with `imdb-lstm train --resume {}`",
            done + 1,
            ck_path.display(),
            dir.display()
        ),
    }
    .into()
}

/// Removes temp files that a killed process left behind while writing the run's outputs
/// (the writes go to temp files in the run folder, named as [`crate::atomic`] names them, then are renamed).
fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = RUN_FILES.iter().any(|f| crate::atomic::is_temp_of(name, f));
        if ours {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The data ready for the fit loop.
struct Prepared {
    ds: Dataset,
    /// The validation data: the tail of the training data, a validation file, or the test set.
    val: Encoded,
    val_is_test: bool,
    /// The class names in output order.
    labels: Vec<String>,
    /// A text may have several labels (one sigmoid output each).
    multi_label: bool,
}

/// Loads the data of `plan` and splits off the validation part; prints the tutorial's lines.
fn prepare_data(source: &Path, plan: &TrainPlan, quiet: bool) -> Result<(Prepared, String)> {
    let (mut ds, labels, val_file, multi_label) = match &plan.own {
        None => (
            // A file in no format at all: say so beside what the aclImdb reader expected.
            load_data(source, plan, quiet).map_err(|e| match data::Format::detect(source) {
                Err(d) if !source.is_dir() => e.context(format!("{d:#}")),
                _ => e,
            })?,
            crate::model_file::imdb_labels(),
            None,
            false,
        ),
        Some(own) => load_own_data(source, own, plan, quiet)?,
    };
    let mut fp = checkpoint::fingerprint(&ds);
    if plan.own.is_some() {
        // Own data: the label names and the validation file count too.
        fp = own_fingerprint(&fp, &labels, val_file.as_ref());
    }
    let (val, val_is_test) = match (val_file, plan.validation_split) {
        (Some(v), _) => (v, false),
        (None, Some(f)) => (
            ds.train.split_off_tail(f).context("--validation-split")?,
            false,
        ),
        (None, None) => (ds.test.clone(), true),
    };
    Ok((
        Prepared {
            ds,
            val,
            val_is_test,
            labels,
            multi_label,
        },
        fp,
    ))
}

/// Own labelled data from `source` as `own` says, announced: the data, the labels in output
/// order, and the validation file's data.
fn load_own_data(
    source: &Path,
    own: &crate::train::OwnData,
    plan: &TrainPlan,
    quiet: bool,
) -> Result<(Dataset, Vec<String>, Option<Encoded>, bool)> {
    let sources = data::labelled::OwnSources {
        train: source,
        test: own.test.as_deref(),
        validation: own.validation.as_deref(),
    };
    let sets = data::labelled::load_own(
        sources,
        &own.read_options(),
        own.positive_label.as_deref(),
        own.holdout,
        &plan.pre,
        plan.train.seed,
    )?;
    let mut ds = sets.ds;
    let names = sets.label_set.names().to_vec();
    let multi = sets.label_set.kind() == data::labelled::TaskKind::MultiLabel;
    say!(
        quiet,
        "Read {} ({}): {} labels{}: {}",
        source.display(),
        own.format.name(),
        names.len(),
        if multi { ", several per text" } else { "" },
        names.join(", ")
    );
    if sets.test_held_out {
        say!(
            quiet,
            "No --test-data: holding out {}% of each label of {} as the test set (seed {})",
            own.holdout * 100.0,
            source.display(),
            plan.train.seed
        );
    }
    if let Some(n) = plan.limit {
        ds.train = first(&ds.train, n);
        ds.test = first(&ds.test, n);
    }
    say!(quiet, "{} train sequences", ds.train.len());
    say!(quiet, "{} test sequences", ds.test.len());
    if let Some(v) = &sets.validation {
        say!(quiet, "{} validation sequences", v.len());
    }
    Ok((ds, names, sets.validation, multi))
}

/// The fingerprint `fp` of the prepared data extended by the label names and validation data.
fn own_fingerprint(fp: &str, labels: &[String], val: Option<&Encoded>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(fp.as_bytes());
    for l in labels {
        h.update((l.len() as u64).to_le_bytes());
        h.update(l.as_bytes());
    }
    if let Some(v) = val {
        h.update((v.len() as u64).to_le_bytes());
        h.update(
            v.x.iter()
                .flat_map(|i| i.to_le_bytes())
                .collect::<Vec<u8>>(),
        );
        h.update(
            v.y.iter()
                .flat_map(|i| i.to_le_bytes())
                .collect::<Vec<u8>>(),
        );
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Fits `arch` to the data's labels: a preset's output layer is made to fit
/// ([`crate::nn::arch::Arch::set_classes`]); a model from a file must fit already.
fn fit_head(plan: &mut TrainPlan, p: &Prepared, source: &Path) -> Result<()> {
    use crate::nn::arch::Head;
    let Some(own) = &plan.own else {
        return Ok(());
    };
    let (labels, multi) = (&p.labels, p.multi_label);
    let k = labels.len();
    if !own.fixed_head {
        plan.arch.set_classes(k, multi);
    }
    let head = plan.arch.head()?;
    let fits = match head {
        Head::Sigmoid => k == 2 && !multi,
        Head::Softmax(n) => n == k && k > 2 && !multi,
        Head::Sigmoids(n) => n == k && multi,
    };
    if !fits {
        let ends = match head {
            Head::Sigmoid => "Dense(1, sigmoid), for two labels".to_string(),
            Head::Softmax(n) => format!("Dense({n}, softmax), for {n} labels"),
            Head::Sigmoids(n) => {
                format!("Dense({n}, sigmoid), for {n} labels of which a text may have several")
            }
        };
        let end_it = match (k, multi) {
            (k, true) => format!("Dense({k}, activation='sigmoid')"),
            (2, false) => "Dense(1, activation='sigmoid')".to_string(),
            (k, false) => format!("Dense({k}, activation='softmax')"),
        };
        bail!(
            "--arch-file: the model ends in {ends}, but {} has {k} labels{} ({}): end it in \
             {end_it}",
            source.display(),
            if multi { ", several per text" } else { "" },
            labels.join(", ")
        );
    }
    Ok(())
}

/// How a run reports.
struct Output {
    quiet: bool,
    log_format: LogFormat,
    /// `--quiet` itself (json output still prints its per-epoch lines).
    silent: bool,
}

impl Output {
    fn of(opts: &RunOptions) -> Output {
        Output {
            quiet: opts.quiet || opts.log_format == LogFormat::Json,
            log_format: opts.log_format,
            silent: opts.quiet,
        }
    }
}

/// The embedding's shape when Adam should update its rows lazily (the same bits): with
/// n-grams, whose table has a million rows of which a batch touches a few thousand.
pub fn lazy_embedding(plan: &TrainPlan) -> Option<(usize, usize)> {
    plan.arch.embedding().filter(|_| plan.pre.ngrams > 1)
}

/// A new run of `plan`.
pub fn start(plan: &TrainPlan, opts: &RunOptions) -> Result<()> {
    let started = Instant::now();
    let out = Output::of(opts);
    let mut plan = plan.clone();
    let run_dir = prepare_run_dir(opts.out.as_deref(), opts.overwrite)?;
    let dir = run_dir.path.as_path();
    remove_stale_temp_files(dir);
    say!(out.quiet, "Loading data...");
    let found = match (&plan.own, &opts.data) {
        (Some(_), Some(p)) => Ok(p.clone()),
        _ => data::resolve_source(opts.data.as_deref(), !out.quiet),
    };
    if let Some(own) = &mut plan.own {
        // Absolute, so `--resume` finds them from any working folder.
        for p in [&mut own.test, &mut own.validation].into_iter().flatten() {
            *p = std::fs::canonicalize(&*p).unwrap_or_else(|_| p.clone());
        }
    }
    let loaded = found.and_then(|source| {
        // Absolute, so `--resume` finds the data from any working folder.
        let source = std::fs::canonicalize(&source).unwrap_or(source);
        let (prepared, fp) = prepare_data(&source, &plan, out.quiet)?;
        fit_head(&mut plan, &prepared, &source)?;
        Ok((source, prepared, fp))
    });
    let (source, prepared, fp) = match loaded {
        Ok(v) => v,
        Err(e) => {
            if run_dir.created {
                let _ = std::fs::remove_file(dir.join(LOCK_FILE));
                let _ = std::fs::remove_dir(dir); // only if still empty: nothing of the user's is lost
            }
            return Err(e);
        }
    };
    if opts.overwrite {
        // Only now that the data is good: a run that cannot start leaves the old one whole.
        for f in RUN_FILES {
            match std::fs::remove_file(dir.join(f)) {
                Err(e) if e.kind() != ErrorKind::NotFound => {
                    bail!("--overwrite: cannot remove {}: {e}", dir.join(f).display())
                }
                _ => {}
            }
        }
    }
    // The n-gram ids follow the words: the embedding grows to hold the table the data gave.
    if let Some(t) = &prepared.ds.ngrams {
        plan.arch.set_input_dim(t.input_dim());
        crate::validate::run(&plan).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let spec = RunSpec {
        plan: plan.clone(),
        data: source,
    };
    let ck = Checkpoint {
        state: TrainState::new(&plan.arch, &plan.train)?,
        early: plan.early_stopping.clone().map(EarlyStopper::new),
        spec,
        data_fingerprint: fp,
        finished: false,
    };
    // The epoch-0 checkpoint: from here on, `--resume` can continue the run.
    checkpoint::save(dir, &ck)?;
    say!(out.quiet, "Build model...");
    say!(
        out.quiet,
        "{}",
        report::summary::summary(&plan.arch, &plan.pre, Some(prepared.ds.vocab.len()))?
    );
    fit_and_finish(ck, &plan, &prepared, dir, &out, started)
}

/// `--resume RUN_DIR`: the run's own settings and data from its checkpoint (the data from
/// `--data` when it moved). `$IMDB_LSTM_DATA` is not consulted: it chooses the data of new runs,
/// and a run continues on its own data, found where it was or where `--data` says.
pub fn resume(given: &Path, opts: &RunOptions) -> Result<()> {
    let started = Instant::now();
    let out = &Output::of(opts);
    let dir = if given.is_file() {
        crate::atomic::folder_of(given)
    } else {
        given.to_path_buf()
    };
    // Locked before the checkpoint is read, so it is the last one written; a folder without a
    // checkpoint is left untouched for `checkpoint::load` to explain.
    let _lock = if given.is_file() || checkpoint::path_in(&dir).exists() {
        Some(lock_run_dir(
            &dir,
            "wait for that run to end (resume it if it was stopped)",
            "the run can only continue in a folder it can write",
        )?)
    } else {
        None
    };
    let mut ck = checkpoint::load(given)?;
    remove_stale_temp_files(&dir);
    let spec = &ck.spec;
    if let Some(t) = opts.threads {
        if t != spec.plan.train.threads {
            bail!(
                "--threads {t} differs from the run's {} threads: the batch split depends on the \
                 thread count, so only {} continues the run bit for bit (leave --threads out)",
                spec.plan.train.threads,
                spec.plan.train.threads
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
        spec.plan.train.epochs,
        spec.plan.train.seed,
        spec.plan.train.threads
    );
    let plan = spec.plan.clone();
    let source = match &opts.data {
        Some(flag) => {
            let p = data::resolve_source(Some(flag), false)?;
            std::fs::canonicalize(&p).unwrap_or(p)
        }
        None if !spec.data.exists() => bail!(
            "the data of the run in {}, {}, is gone: if it moved, give its new place with \
             `imdb-lstm train --resume {} --data PATH`",
            dir.display(),
            spec.data.display(),
            dir.display()
        ),
        None => spec.data.clone(),
    };
    say!(out.quiet, "Loading data from {}...", source.display());
    let (prepared, fp) = prepare_data(&source, &plan, out.quiet)
        .with_context(|| format!("cannot reload the data of the run in {}", dir.display()))?;
    if fp != ck.data_fingerprint {
        if opts.data.is_some() {
            bail!(
                "--data {} is not the data the run in {} was trained on (it gives other \
                 sequences): give that run's data (it was {}), or start a new run",
                source.display(),
                dir.display(),
                spec.data.display()
            );
        }
        // Own data: the test and validation files are part of it.
        let mut files = vec![spec.data.display().to_string()];
        if let Some(own) = &plan.own {
            files.extend(
                [&own.test, &own.validation]
                    .into_iter()
                    .flatten()
                    .map(|p| p.display().to_string()),
            );
        }
        bail!(
            "the data at {} no longer gives the sequences the run in {} was trained on (a file \
             changed?): it cannot be resumed exactly; start a new run",
            files.join(" and "),
            dir.display()
        );
    }
    if source != ck.spec.data {
        // The same data in a new place: record it, so the next resume finds it.
        ck.spec.data = source;
        checkpoint::save(&dir, &ck)?;
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
        match (
            p.val_is_test,
            plan.own.as_ref().and_then(|o| o.validation.as_ref())
        ) {
            (true, _) => "the test set, as the tutorial does".to_string(),
            (false, Some(v)) => v.display().to_string(),
            (false, None) => "the last part of the training data".to_string(),
        }
    );
    if let Some(es) = &plan.early_stopping {
        let val = match plan.own.as_ref().and_then(|o| o.validation.as_ref()) {
            Some(v) => v.display().to_string(),
            None => format!(
                "the last {}% of the training data",
                plan.validation_split.unwrap_or(0.0) * 100.0
            ),
        };
        say!(
            quiet,
            "Early stopping on val_loss (patience {}, min_delta {}): validation uses {val}, the \
             test set is evaluated only once, at the end, with the {} weights",
            es.patience,
            es.min_delta,
            if es.restore_best {
                "best epoch's"
            } else {
                "last epoch's"
            }
        );
    }
    let stop = install_stop_signals()?;
    let ck_path = checkpoint::path_in(dir);
    let mut net = Network::new(&plan.arch, plan.train.threads)?;
    let mut progress = Progress::new(out.log_format, out.silent);
    progress.set_epochs(plan.train.epochs);
    while ck.state.epochs_done() < plan.train.epochs
        && !ck.early.as_ref().is_some_and(|e| e.stopped())
    {
        let done = ck.state.epochs_done();
        let res = run_epoch_with(
            &mut ck.state,
            &mut net,
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
            lazy_embedding(plan),
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
                    return Err(stopped(done, &ck_path, dir));
                }
                return Err(e.context(format!(
                    "training stopped; {kept} (the last good state; resuming would repeat the \
                     same steps, so change the settings in a new run)"
                )));
            }
        };
        if let Some(es) = &mut ck.early {
            if es.on_epoch_end(&record, &ck.state.params)? {
                say!(
                    quiet,
                    "Early stopping after epoch {}: val_loss has not improved by more than {} \
                     for {} epochs (best: epoch {})",
                    record.epoch,
                    es.cfg.min_delta,
                    es.wait,
                    es.best_epoch.unwrap_or(0)
                );
                progress.event(
                    "early_stopping",
                    json!({"epoch": record.epoch, "best_epoch": es.best_epoch}),
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
        params.copy_from_slice(best);
        say!(quiet, "Restoring the weights of the best epoch, {epoch}");
        progress.event("restored_best_weights", json!({"epoch": epoch}));
    }
    // With validation on the test set (never with early stopping), the last epoch's numbers
    // are the test score.
    let (test_loss, test_acc) = match (p.val_is_test, ck.state.history.epochs.last()) {
        (true, Some(r)) if restored.is_none() => (
            r.val_loss.unwrap_or(f64::NAN),
            r.val_accuracy.unwrap_or(f64::NAN),
        ),
        _ => {
            net.refresh(&params);
            let s = crate::train::evaluate(&mut net, &params, &p.ds.test.x, &p.ds.test.y);
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
            &p.labels,
            &ck.state.history,
            best_epoch,
            facts_epoch,
        )?,
    )?;
    report::write_history(dir, &ck.state.history)?;
    // Pictures come last: a failure to draw never loses the model or the history.
    if let Err(e) = report::plot_history(dir, &ck.state.history) {
        eprintln!("warning: could not draw the history plot: {e:#}");
    }
    if let Err(e) = report::write_model_graph(dir, &plan.arch) {
        eprintln!("warning: could not draw the model graph: {e:#}");
    }
    ck.finished = true;
    checkpoint::save(dir, &ck)?;
    say!(quiet, "Test score: {test_loss:.6}");
    say!(quiet, "Test accuracy: {test_acc:.6}");
    progress.event(
        "test",
        json!({"test_loss": test_loss, "test_accuracy": test_acc}),
    );
    progress.event(
        "saved",
        json!({"model": model_path.display().to_string(), "run_folder": dir.display().to_string()}),
    );
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
    params: &[f32],
    plan: &TrainPlan,
    ds: &Dataset,
    labels: &[String],
    history: &History,
    best_epoch: Option<usize>,
    facts_epoch: Option<usize>,
) -> Result<ModelFile> {
    let last = history.epochs.last();
    let facts = facts_epoch
        .and_then(|e| history.epochs.get(e.wrapping_sub(1)))
        .or(last);
    Ok(ModelFile {
        arch: plan.arch.clone(),
        labels: labels.to_vec(),
        preprocessing: plan.pre.clone(),
        vocabulary: ds.vocab.words().to_vec(),
        ngrams: ds.ngrams.clone(),
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
        tensors: plan.arch.named(params)?,
    })
}
