//! The command line: flags -> validated configuration -> the library. Each subcommand lives in
//! its own file; this one holds the flags and their checks.

pub mod bench;
pub mod evaluate;
pub mod export;
pub mod predict;
pub mod train;

use crate::data::{Preprocessing, Side};
use crate::nn::ModelConfig;
use crate::train::progress::LogFormat;
use crate::train::{EarlyStopping, MaskMode, TrainConfig};
use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Train and use the Keras IMDB LSTM sentiment classifier, fast, on a CPU.
#[derive(Parser, Debug)]
#[command(name = "imdb-lstm", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train the tutorial's model (Embedding -> LSTM -> Dense) on the IMDB reviews.
    Train(TrainArgs),
    /// Classify reviews with a trained model file.
    Predict(predict::PredictArgs),
    /// Loss, accuracy, precision, recall, F1 and the confusion matrix on the test set.
    Evaluate(evaluate::EvaluateArgs),
    /// Print the Keras-style summary of a model file.
    Summary {
        /// The model file (model.safetensors in a run folder).
        #[arg(long)]
        model: PathBuf,
    },
    /// Redraw history.png and history.svg from RUN_DIR/history.json.
    Plot {
        /// A run folder (with history.json), or a history.json file: the pictures go beside it.
        run_dir: PathBuf,
    },
    /// Write model.svg and model.dot (the model graph) for a model file.
    Graph {
        /// The model file.
        #[arg(long)]
        model: PathBuf,
        /// Folder for model.svg and model.dot [default: the model file's folder].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Measure training and inference speed and memory on the real data.
    Bench(bench::BenchArgs),
    /// Write a model file as ONNX, with its preprocessing, for other runtimes.
    Export(export::ExportArgs),
}

/// Where the reviews come from (shared by train, evaluate and bench).
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// The dataset: a folder in the aclImdb layout or the .tar.gz as published. Without it:
    /// $IMDB_LSTM_DATA, then the archive in ~/.cache/imdb-lstm, else it is downloaded there.
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
}

/// Flags of `train`; every default is the Keras tutorial's.
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Continue the run in RUN_DIR from its last checkpoint (saved after every epoch) with that
    /// run's own settings and data; only --quiet, --log-format, the same --threads and --data (the
    /// run's data, if it moved) may be given.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = RESUME_CONFLICTS)]
    pub resume: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    /// Run folder for the model, history and pictures [default: a new folder under runs/].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Start a new run in an --out folder that already holds a run's files, replacing them.
    #[arg(long)]
    pub overwrite: bool,
    /// Passes over the training data.
    #[arg(long, default_value_t = 2, allow_negative_numbers = true)]
    pub epochs: usize,
    /// Sequences per gradient step.
    #[arg(long, default_value_t = 32, allow_negative_numbers = true)]
    pub batch_size: usize,
    /// Vocabulary size: ids >= N become the out-of-vocabulary id 2 (Keras num_words).
    #[arg(long, default_value_t = 5000, allow_negative_numbers = true)]
    pub num_words: usize,
    /// Tokens kept per review (Keras pad_sequences maxlen).
    #[arg(long, default_value_t = 80, allow_negative_numbers = true)]
    pub maxlen: usize,
    /// Where zeros go in short reviews.
    #[arg(long, value_enum, default_value = "pre")]
    pub padding: Side,
    /// Which end of a long review is cut.
    #[arg(long, value_enum, default_value = "pre")]
    pub truncating: Side,
    /// Embedding width.
    #[arg(long, default_value_t = 128, allow_negative_numbers = true)]
    pub embed_dim: usize,
    /// LSTM units.
    #[arg(long, default_value_t = 128, allow_negative_numbers = true)]
    pub units: usize,
    /// Fraction of the LSTM's inputs dropped in training (Keras dropout), in [0, 1).
    #[arg(long, default_value_t = 0.2, allow_negative_numbers = true)]
    pub dropout: f32,
    /// Fraction of the LSTM's recurrent state dropped in training (Keras recurrent_dropout), in [0, 1).
    #[arg(long, default_value_t = 0.2, allow_negative_numbers = true)]
    pub recurrent_dropout: f32,
    /// Dropout masks: per-gate (a separate mask for each of the 4 gates: Keras 2, and Keras >= 3.8
    /// with recurrent dropout) or shared (one mask for all gates, as Keras 3.0-3.7 did; fewer,
    /// larger matrix products).
    #[arg(long, value_enum, default_value = "per-gate")]
    pub dropout_masks: MaskMode,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3, allow_negative_numbers = true)]
    pub learning_rate: f32,
    /// Seed for initialisation, shuffling and dropout: same seed and threads, same result.
    #[arg(long, default_value_t = 1337, allow_negative_numbers = true)]
    pub seed: u64,
    /// Worker threads [default: all cores].
    #[arg(long, allow_negative_numbers = true)]
    pub threads: Option<usize>,
    /// Validate on this last fraction of the training data instead of the test set (Keras
    /// validation_split) [default: none, or 0.2 with --early-stopping].
    #[arg(long, value_name = "F", allow_negative_numbers = true)]
    pub validation_split: Option<f64>,
    /// Use only the first N training and N test reviews (after shuffling): for quick runs.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub limit: Option<usize>,
    /// Stop when val_loss has not improved by more than --min-delta for PATIENCE epochs (Keras
    /// EarlyStopping). Validation then uses --validation-split of the training data (default 0.2),
    /// never the test set, which is evaluated once at the end; the best epoch's weights are
    /// restored at the end (see --no-restore-best).
    #[arg(long, value_name = "PATIENCE", allow_negative_numbers = true)]
    pub early_stopping: Option<usize>,
    /// With --early-stopping: the decrease of val_loss that counts as an improvement [default: 0].
    #[arg(
        long,
        value_name = "DELTA",
        requires = "early_stopping",
        allow_negative_numbers = true
    )]
    pub min_delta: Option<f64>,
    /// With --early-stopping: keep the last epoch's weights instead of restoring the best epoch's.
    #[arg(long, requires = "early_stopping")]
    pub no_restore_best: bool,
    /// Print nothing while training.
    #[arg(long)]
    pub quiet: bool,
    /// Progress as text (a bar on a terminal, a line per epoch otherwise) or one JSON object per epoch on stdout.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// The `train` flags that choose a run's settings (`--resume` takes them from the checkpoint)
/// or start a new run, so giving any of them with it is an error. `--data` is allowed: data that
/// moved, checked against the checkpoint's fingerprint.
const RESUME_CONFLICTS: [&str; 20] = [
    "out",
    "overwrite",
    "epochs",
    "batch_size",
    "num_words",
    "maxlen",
    "padding",
    "truncating",
    "embed_dim",
    "units",
    "dropout",
    "recurrent_dropout",
    "dropout_masks",
    "learning_rate",
    "seed",
    "validation_split",
    "limit",
    "early_stopping",
    "min_delta",
    "no_restore_best",
];

pub use crate::run::TrainPlan;

impl TrainArgs {
    /// Check every flag (with [`crate::validate::run`], as the files are checked); each error
    /// names the flag, the value and what to use.
    pub fn plan(&self) -> Result<TrainPlan> {
        let threads = threads(self.threads)?;
        let early_stopping = self.early_stopping.map(|patience| EarlyStopping {
            patience,
            min_delta: self.min_delta.unwrap_or(0.0),
            restore_best: !self.no_restore_best,
        });
        // Early stopping must not look at the test set: hold out part of the training data.
        let validation_split = match (self.validation_split, &early_stopping) {
            (None, Some(_)) => Some(0.2),
            (f, _) => f,
        };
        let model = ModelConfig {
            num_words: self.num_words,
            embed_dim: self.embed_dim,
            units: self.units,
            maxlen: self.maxlen,
            dropout: self.dropout,
            recurrent_dropout: self.recurrent_dropout,
        };
        let pre = Preprocessing {
            num_words: self.num_words,
            maxlen: self.maxlen,
            padding: self.padding,
            truncating: self.truncating,
            ..Preprocessing::default()
        };
        let mut train = TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            seed: self.seed,
            threads,
            mask_mode: self.dropout_masks,
            ..TrainConfig::default()
        };
        train.adam.learning_rate = self.learning_rate;
        let plan = TrainPlan {
            model,
            pre,
            train,
            validation_split,
            limit: self.limit,
            early_stopping,
        };
        if let Err(e) = crate::validate::run(&plan) {
            // One flag at fault: remind its default, as --help shows it.
            let default = match e.settings.as_slice() {
                [s] => {
                    let id = s.key.rsplit('.').next().unwrap_or(s.key);
                    <Cli as clap::CommandFactory>::command()
                        .find_subcommand("train")
                        .and_then(|c| c.get_arguments().find(|a| a.get_id() == id).cloned())
                        .and_then(|a| Some(a.get_default_values().first()?.to_str()?.to_string()))
                }
                _ => None,
            };
            match default {
                Some(d) => bail!("{} (default {d})", e.for_flags()),
                None => bail!("{}", e.for_flags()),
            }
        }
        Ok(plan)
    }
}

pub use crate::validate::MAX_THREADS;

/// `--threads` of every command, checked: 1 to [`MAX_THREADS`], all cores when not given.
pub fn threads(flag: Option<usize>) -> Result<usize> {
    match flag {
        Some(0) => anyhow::bail!("--threads 0: use 1 or more"),
        Some(t) if t > MAX_THREADS => anyhow::bail!(
            "--threads {t} is more than {MAX_THREADS}: use at most the number of cores"
        ),
        Some(t) => Ok(t),
        None => Ok(TrainConfig::default().threads.clamp(1, MAX_THREADS)),
    }
}

/// Parse, run, and turn the outcome into an exit code; errors are printed once, as a chain.
pub fn main_with(cli: Cli) -> std::process::ExitCode {
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let code = e
                .downcast_ref::<train::Stopped>()
                .map_or(1, |s| s.exit_code);
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(code)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(args) => train::run(&args),
        Command::Predict(args) => predict::run(&args),
        Command::Evaluate(args) => evaluate::run(&args),
        Command::Summary { model } => {
            let m = crate::model_file::load(&model)?;
            let mut lines: Vec<String> = crate::report::summary::summary(
                &m.config.arch(),
                &m.preprocessing,
                Some(m.vocabulary.len()),
            )?
            .lines()
            .map(str::to_string)
            .collect();
            if let Some(t) = &m.training {
                lines.push(format!(
                    "Trained: {} epochs, seed {}, {} by imdb-lstm {}",
                    t.epochs, t.seed, t.date, t.program_version
                ));
                let val = match (t.val_loss, t.val_accuracy) {
                    (Some(l), Some(a)) => format!(" - val_loss: {l:.4} - val_accuracy: {a:.4}"),
                    _ => String::new(),
                };
                lines.push(format!(
                    "Final: loss: {:.4} - accuracy: {:.4}{val}",
                    t.loss, t.accuracy
                ));
                if let Some(b) = t.best_epoch {
                    lines.push(format!("Best epoch (lowest val_loss): {b}"));
                }
            }
            predict::write_stdout(lines, "the summary")
        }
        Command::Plot { run_dir } => {
            use crate::report::plot::{HISTORY_PNG, HISTORY_SVG};
            let dir = crate::report::redraw(&run_dir)?;
            let msg = format!(
                "wrote {} and {}",
                dir.join(HISTORY_PNG).display(),
                dir.join(HISTORY_SVG).display()
            );
            predict::write_stdout([msg], "the result")
        }
        Command::Graph { model, out } => {
            let m = crate::model_file::load(&model)?;
            let dir = out.unwrap_or_else(|| parent_dir(&model));
            // Its errors name the folder and the files already.
            crate::report::write_model_graph(&dir, &m.config.arch())?;
            let msg = format!(
                "wrote {} and {}",
                dir.join("model.svg").display(),
                dir.join("model.dot").display()
            );
            predict::write_stdout([msg], "the result")
        }
        Command::Bench(args) => bench::run(&args),
        Command::Export(args) => export::run(&args),
    }
}

pub use crate::atomic::folder_of as parent_dir;
