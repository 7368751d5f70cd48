//! The command line: flags -> validated configuration -> the library. Each subcommand lives in
//! its own file; this one holds the flags and their checks.

pub mod bench;
pub mod evaluate;
pub mod export;
pub mod predict;
pub mod serve;
pub mod train;

use crate::data::{Format, Preprocessing, ReadOptions, Side};
use crate::nn::arch::{preset, read_arch_file, Arch, Head, Preset};
use crate::train::progress::LogFormat;
use crate::train::{EarlyStopping, MaskMode, OwnData, TrainConfig};
use crate::validate::Sizes;
use anyhow::{anyhow, bail, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Train and use the Keras IMDB LSTM sentiment classifier, fast, on a CPU.
#[derive(Parser, Debug)]
#[command(name = "imdb-lstm", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of the train variant does not matter.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a model (the tutorial's Embedding -> LSTM -> Dense by default; see --arch) on the
    /// IMDB reviews.
    Train(Box<TrainArgs>),
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
    /// Answer over HTTP: /v1/predict, /v1/explain, /v1/model, /healthz and a page at /.
    Serve(serve::ServeArgs),
}

/// Where the reviews come from (shared by train, evaluate and bench).
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// The dataset: a folder in the aclImdb layout or the .tar.gz as published. Without it:
    /// $IMDB_LSTM_DATA, then the archive in ~/.cache/imdb-lstm, else it is downloaded there.
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
}

/// How to read own labelled data (shared by train and evaluate).
#[derive(Args, Debug, Clone)]
pub struct FormatArgs {
    /// The format of the data files [default: from the path: .csv, .tsv, .jsonl/.ndjson, a file
    /// of `__label__NAME text` lines (fasttext), a folder of class folders, or aclImdb].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// The CSV/TSV column or JSONL field holding the text [default: text].
    #[arg(long, value_name = "NAME")]
    pub text_column: Option<String>,
    /// The CSV/TSV column or JSONL field holding the label [default: label].
    #[arg(long, value_name = "NAME")]
    pub label_column: Option<String>,
    /// Refuse data with more distinct labels than this, likely the wrong column [default: 1000].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max_labels: Option<usize>,
    /// Several labels per text: one sigmoid output per label. With SEP, each label value is
    /// split on it (`--multi-label ';'` reads `sports;news`); fastText lines with several
    /// `__label__`s and JSONL label arrays are multi-label without it.
    #[arg(long, value_name = "SEP", num_args = 0..=1, default_missing_value = "")]
    pub multi_label: Option<String>,
}

impl FormatArgs {
    /// The format of `data` (given or detected); `None` for the aclImdb reviews. Errors when a
    /// flag of own data is given for aclImdb.
    pub fn own_format(&self, data: Option<&std::path::Path>) -> Result<Option<Format>> {
        let format = match (self.format, data) {
            (Some(Format::AclImdb), _) => Format::AclImdb,
            (Some(f), Some(_)) => f,
            (Some(f), None) => bail!("--format {}: give the data file with --data PATH", f.name()),
            // Anything else (a folder without subfolders, a file of no known format) goes to
            // the aclImdb reader, whose messages say what it expected.
            (None, Some(p)) => match Format::detect(p) {
                Ok(Format::Folders) if !has_subfolder(p) => Format::AclImdb,
                Ok(f) => f,
                Err(_) => Format::AclImdb,
            },
            (None, _) => Format::AclImdb,
        };
        if format == Format::AclImdb {
            let given = [
                ("--text-column", self.text_column.is_some()),
                ("--label-column", self.label_column.is_some()),
                ("--max-labels", self.max_labels.is_some()),
                ("--multi-label", self.multi_label.is_some()),
            ];
            if let Some((flag, _)) = given.iter().find(|g| g.1) {
                bail!(
                    "{flag} is for your own labelled data (--data FILE in csv, tsv, jsonl, \
                     fasttext or class folders); the aclImdb reviews need none: drop {flag}"
                );
            }
            return Ok(None);
        }
        if self.max_labels == Some(0) {
            bail!("--max-labels 0: use at least 2 (default 1000)");
        }
        let columns = [
            ("--text-column", &self.text_column),
            ("--label-column", &self.label_column),
        ];
        for (flag, v) in columns {
            if v.as_deref().is_some_and(|c| c.trim().is_empty()) {
                bail!("{flag} is empty: name the column, like {flag} text");
            }
        }
        Ok(Some(format))
    }

    /// The reading options for `format`.
    pub fn read_options(&self, format: Format) -> ReadOptions {
        let d = ReadOptions::default();
        ReadOptions {
            format: Some(format),
            text_column: self.text_column.clone().unwrap_or(d.text_column),
            label_column: self.label_column.clone().unwrap_or(d.label_column),
            max_labels: self.max_labels.unwrap_or(d.max_labels),
            max_record_bytes: d.max_record_bytes,
            multi_label: self.multi_label.is_some(),
            label_separator: self.multi_label.clone().filter(|s| !s.is_empty()),
        }
    }
}

/// Whether `dir` holds a folder (not a hidden one): a candidate for class folders.
fn has_subfolder(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| !e.file_name().to_string_lossy().starts_with('.') && e.path().is_dir())
    })
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
    #[command(flatten)]
    pub format: FormatArgs,
    /// Own data: the test file (same formats) [default: --validation-split of each label of
    /// --data, held out].
    #[arg(long, value_name = "PATH")]
    pub test_data: Option<PathBuf>,
    /// Own data: a validation file (same formats) for the per-epoch validation and early
    /// stopping.
    #[arg(long, value_name = "PATH")]
    pub validation_data: Option<PathBuf>,
    /// Own data with two labels: the positive one (the sigmoid's) [default: the second in sorted
    /// order, so pos of neg/pos and 1 of 0/1].
    #[arg(long, value_name = "LABEL")]
    pub positive_label: Option<String>,
    /// Run folder for the model, history and pictures [default: a new folder under runs/].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Start a new run in an --out folder that already holds a run's files, replacing them.
    #[arg(long)]
    pub overwrite: bool,
    /// The model: lstm (the tutorial), gru, bilstm, stacked-lstm, cnn, cnn-lstm or fasttext
    /// (Keras's IMDB examples, each with its own defaults for the flags below; see the README's
    /// Models section).
    #[arg(long, value_name = "NAME", default_value = "lstm")]
    pub arch: String,
    /// The model from a file instead of a preset: a JSON list of Keras layers
    /// ([{"class_name": "Embedding", "config": {...}}, ...]) or the file Keras's
    /// model.to_json() writes for a Sequential model. The flags below still override its sizes.
    #[arg(long, value_name = "FILE", conflicts_with = "arch")]
    pub arch_file: Option<PathBuf>,
    /// Passes over the training data [default: the model's, 2 for lstm].
    #[arg(long, allow_negative_numbers = true)]
    pub epochs: Option<usize>,
    /// Sequences per gradient step [default: the model's, 32 for lstm].
    #[arg(long, allow_negative_numbers = true)]
    pub batch_size: Option<usize>,
    /// Vocabulary size: ids >= N become the out-of-vocabulary id 2 (Keras num_words) [default:
    /// the model's, 5000 for lstm].
    #[arg(long, allow_negative_numbers = true)]
    pub num_words: Option<usize>,
    /// Tokens kept per review (Keras pad_sequences maxlen) [default: the model's, 80 for lstm].
    #[arg(long, allow_negative_numbers = true)]
    pub maxlen: Option<usize>,
    /// N-grams of 2 to N words of the training data as extra tokens (Keras's fastText example,
    /// ngram_range), appended to each review before padding; 1 for words only [default: the
    /// model's, 2 for fasttext, else 1].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub ngrams: Option<usize>,
    /// Where zeros go in short reviews.
    #[arg(long, value_enum, default_value = "pre")]
    pub padding: Side,
    /// Which end of a long review is cut.
    #[arg(long, value_enum, default_value = "pre")]
    pub truncating: Side,
    /// Embedding width [default: the model's, 128 for lstm].
    #[arg(long, allow_negative_numbers = true)]
    pub embed_dim: Option<usize>,
    /// Units of every LSTM and GRU layer [default: the model's, 128 for lstm].
    #[arg(long, allow_negative_numbers = true)]
    pub units: Option<usize>,
    /// Fraction of every LSTM's and GRU's inputs dropped in training (Keras dropout), in [0, 1)
    /// [default: the model's, 0.2 for lstm].
    #[arg(long, allow_negative_numbers = true)]
    pub dropout: Option<f32>,
    /// Fraction of every LSTM's and GRU's recurrent state dropped in training (Keras
    /// recurrent_dropout), in [0, 1) [default: the model's, 0.2 for lstm].
    #[arg(long, allow_negative_numbers = true)]
    pub recurrent_dropout: Option<f32>,
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
    /// validation_split) [default: none, or 0.2 with --early-stopping]. Own data without
    /// --test-data: the fraction of each label held out as the test set [default: 0.2].
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
const RESUME_CONFLICTS: [&str; 30] = [
    "out",
    "ngrams",
    "format",
    "text_column",
    "label_column",
    "max_labels",
    "test_data",
    "validation_data",
    "positive_label",
    "arch",
    "arch_file",
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
        let own = self.own_data()?;
        // Early stopping must not look at the test set: hold out part of the training data.
        let validation_split = match (self.validation_split, &early_stopping, &own) {
            // Own data without a test file: --validation-split is the held-out test part.
            (_, None, Some(o)) if o.test.is_none() => None,
            (_, _, Some(o)) if o.validation.is_some() => None,
            (None, Some(_), _) => Some(0.2),
            (f, _, _) => f,
        };
        let (base, what) = self.base_model()?;
        let arch = self.sized(&base, &what)?;
        match (arch.head(), &own) {
            (Ok(Head::Softmax(k)), None) => bail!(
                "{what}: the model ends in a {k}-way softmax, but the IMDB reviews have 2 classes \
                 (negative, positive): end it in Dense(1, sigmoid)"
            ),
            (Ok(Head::Sigmoids(k)), None) => bail!(
                "{what}: the model ends in {k} sigmoid units (multi-label), but the IMDB reviews \
                 have one of 2 classes (negative, positive): end it in Dense(1, sigmoid)"
            ),
            _ => {}
        }
        let num_words = arch.embedding().map_or(0, |e| e.0);
        let pre = Preprocessing {
            num_words,
            maxlen: arch.maxlen,
            padding: self.padding,
            truncating: self.truncating,
            ngrams: self.ngrams.unwrap_or(base.ngrams),
            ..Preprocessing::default()
        };
        let mut train = TrainConfig {
            epochs: self.epochs.unwrap_or(base.epochs),
            batch_size: self.batch_size.unwrap_or(base.batch_size),
            seed: self.seed,
            threads,
            mask_mode: self.dropout_masks,
            ..TrainConfig::default()
        };
        train.adam.learning_rate = self.learning_rate;
        let plan = TrainPlan {
            arch,
            pre,
            train,
            validation_split,
            limit: self.limit,
            early_stopping,
            own,
        };
        if let Err(e) = crate::validate::run(&plan) {
            bail!("{}", flag_error(&e, &base));
        }
        Ok(plan)
    }

    /// The model `--arch` or `--arch-file` names with the training defaults it comes with, and
    /// how to name it in messages.
    fn base_model(&self) -> Result<(Preset, String)> {
        let Some(path) = &self.arch_file else {
            let what = format!("--arch {}", self.arch);
            let p = preset(&self.arch).map_err(|e| anyhow!("{what}: {e}"))?;
            return Ok((p, what));
        };
        // Check --maxlen first: the file's model is built on it when its InputLayer gives none.
        let maxlen = self.maxlen.unwrap_or(80);
        crate::validate::sizes(&Sizes {
            maxlen: Some(maxlen),
            ..Sizes::default()
        })
        .map_err(|e| anyhow!("{} (default 80)", e.for_flags()))?;
        let arch = read_arch_file(path, maxlen)?;
        Ok((
            Preset {
                name: "arch-file",
                num_words: arch.embedding().map_or(0, |e| e.0),
                arch,
                batch_size: 32,
                epochs: 2,
                ngrams: 1,
            },
            format!("--arch-file {}", path.display()),
        ))
    }

    /// `base`'s layers resized by the flags given, checked; `what` names the model.
    fn sized(&self, base: &Preset, what: &str) -> Result<Arch> {
        let sizes = Sizes {
            num_words: self.num_words,
            embed_dim: self.embed_dim,
            units: self.units,
            maxlen: self.maxlen,
            dropout: self.dropout,
            recurrent_dropout: self.recurrent_dropout,
        };
        if let Err(e) = crate::validate::sizes(&sizes) {
            bail!("{}", flag_error(&e, base));
        }
        let mut arch = base.arch.clone();
        if let Some(n) = self.num_words {
            arch.set_input_dim(n);
        }
        if let Some(n) = self.maxlen {
            arch.maxlen = n;
        }
        if let Some(n) = self.embed_dim {
            arch.set_embed_dim(n);
        }
        let recurrent = [
            ("--units", self.units.is_some()),
            ("--dropout", self.dropout.is_some()),
            ("--recurrent-dropout", self.recurrent_dropout.is_some()),
        ];
        if arch.recurrent_mut().next().is_none() {
            if let Some((flag, _)) = recurrent.iter().find(|f| f.1) {
                bail!("{flag}: {what} has no LSTM or GRU layer for it to set; drop {flag}");
            }
        }
        for r in arch.recurrent_mut() {
            r.units = self.units.unwrap_or(r.units);
            r.dropout = self.dropout.unwrap_or(r.dropout);
            r.recurrent_dropout = self.recurrent_dropout.unwrap_or(r.recurrent_dropout);
        }
        if let Err(e) = crate::validate::arch(&arch) {
            let given: Vec<String> = [
                ("--num-words", self.num_words.map(|v| v.to_string())),
                ("--maxlen", self.maxlen.map(|v| v.to_string())),
                ("--embed-dim", self.embed_dim.map(|v| v.to_string())),
                ("--units", self.units.map(|v| v.to_string())),
            ]
            .into_iter()
            .filter_map(|(flag, v)| Some(format!("{flag} {}", v?)))
            .collect();
            match given.is_empty() {
                true => bail!("{what}: {}", e.for_flags()),
                false => bail!("{what} with {}: {}", given.join(" "), e.for_flags()),
            }
        }
        Ok(arch)
    }

    /// The own-data part of the plan: `None` for the aclImdb reviews.
    fn own_data(&self) -> Result<Option<OwnData>> {
        let data = self.data.data.as_deref();
        let Some(format) = self.format.own_format(data)? else {
            let given = [
                ("--test-data", self.test_data.is_some()),
                ("--validation-data", self.validation_data.is_some()),
                ("--positive-label", self.positive_label.is_some()),
            ];
            if let Some((flag, _)) = given.iter().find(|g| g.1) {
                bail!(
                    "{flag} is for your own labelled data (--data FILE in csv, tsv, jsonl, \
                     fasttext or class folders); the aclImdb reviews have their own: drop {flag}"
                );
            }
            return Ok(None);
        };
        for (flag, p) in [
            ("--test-data", &self.test_data),
            ("--validation-data", &self.validation_data),
        ] {
            if let Some(p) = p {
                if !p.exists() {
                    bail!(
                        "{flag} {}: no such file or folder; give a file in the format of --data",
                        p.display()
                    );
                }
            }
        }
        if self.validation_data.is_some() && self.test_data.is_some() {
            if let Some(f) = self.validation_split {
                bail!(
                    "--validation-split {f} and --validation-data both choose the validation \
                     data: give one"
                );
            }
        }
        let holdout = match &self.test_data {
            Some(_) => 0.0,
            None => self.validation_split.unwrap_or(0.2),
        };
        if self.test_data.is_none() && !(holdout > 0.0 && holdout < 1.0) {
            bail!("--validation-split {holdout}: give a fraction between 0 and 1, like 0.2");
        }
        let opts = self.format.read_options(format);
        Ok(Some(OwnData {
            format,
            text_column: opts.text_column,
            label_column: opts.label_column,
            max_labels: opts.max_labels,
            test: self.test_data.clone(),
            validation: self.validation_data.clone(),
            holdout,
            positive_label: self.positive_label.clone(),
            fixed_head: self.arch_file.is_some(),
            multi_label: opts.multi_label,
            label_separator: opts.label_separator,
        }))
    }
}

/// The message for a flag `train` refuses; when one flag is at fault it reminds its default
/// (the model's own for the sizes, else as --help shows it).
fn flag_error(e: &crate::validate::Invalid, base: &Preset) -> String {
    let [s] = e.settings.as_slice() else {
        return e.for_flags();
    };
    let id = s.key.rsplit('.').next().unwrap_or(s.key);
    let mut arch = base.arch.clone();
    let first = arch.recurrent_mut().next().cloned();
    let default = match id {
        "epochs" => Some(base.epochs.to_string()),
        "batch_size" => Some(base.batch_size.to_string()),
        "ngrams" => Some(base.ngrams.to_string()),
        "num_words" => Some(base.num_words.to_string()),
        "maxlen" => Some(base.arch.maxlen.to_string()),
        "embed_dim" => base.arch.embedding().map(|e| e.1.to_string()),
        "units" => first.map(|r| r.units.to_string()),
        "dropout" => first.map(|r| r.dropout.to_string()),
        "recurrent_dropout" => first.map(|r| r.recurrent_dropout.to_string()),
        _ => <Cli as clap::CommandFactory>::command()
            .find_subcommand("train")
            .and_then(|c| c.get_arguments().find(|a| a.get_id() == id).cloned())
            .and_then(|a| Some(a.get_default_values().first()?.to_str()?.to_string())),
    };
    match default {
        Some(d) => format!("{} (default {d})", e.for_flags()),
        None => e.for_flags(),
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

/// `--threshold` of `predict`, `evaluate` and `serve`, checked: between 0 and 1 exclusive, for
/// a multi-label model only; 0.5 when not given.
pub fn threshold(flag: Option<f64>, model: &crate::infer::Classifier) -> Result<f64> {
    match flag {
        Some(p) if !(p > 0.0 && p < 1.0) => {
            anyhow::bail!("--threshold {p}: give a probability between 0 and 1, like 0.5")
        }
        Some(p) if !model.multi_label() => anyhow::bail!(
            "--threshold {p} is for multi-label models (several labels per text); this model \
             gives each text its most probable label: drop --threshold"
        ),
        Some(p) => Ok(p),
        None => Ok(0.5),
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
                &m.arch,
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
            crate::report::write_model_graph(&dir, &m.arch)?;
            let msg = format!(
                "wrote {} and {}",
                dir.join("model.svg").display(),
                dir.join("model.dot").display()
            );
            predict::write_stdout([msg], "the result")
        }
        Command::Bench(args) => bench::run(&args),
        Command::Export(args) => export::run(&args),
        Command::Serve(args) => serve::run(&args),
    }
}

pub use crate::atomic::folder_of as parent_dir;
