//! The limits on a run's settings, described once. `train`'s flags, the model-file reader and the
//! checkpoint reader all check a configuration here before anything is allocated from it; each
//! caller names the culprit its own way: a flag (`--maxlen`), or a file's key (`config maxlen`).

use crate::data::ngrams::NgramTable;
use crate::data::{Preprocessing, TOKENIZER_NAME, TOKENIZER_VERSION};
use crate::nn::arch::Arch;
use crate::nn::ModelConfig;
use crate::train::TrainConfig;

/// The longest review a model may read. `maxlen` shapes no tensor, so without a bound a tiny
/// crafted file could make `predict` allocate gigabytes per review; reviews run to a few
/// thousand tokens (the tutorial keeps 80).
pub const MAX_MAXLEN: usize = 1 << 20;
/// The most activations (f32) one review may need in the forward pass, maxlen x (embed_dim +
/// 4 units): 4 GiB. Beyond that no machine could hold a batch.
pub const MAX_ACTIVATIONS_PER_REVIEW: usize = 1 << 30;
/// The most weights a model may have: 1 GiB of f32 (the tutorial's has 771,713).
pub const MAX_PARAMS: usize = 1 << 28;
/// Sequences per step: far more than the 25,000 training reviews.
pub const MAX_BATCH_SIZE: usize = 1 << 20;
/// Token ids in one batch (batch_size x maxlen), which the fit loop allocates up front: 1 GiB.
pub const MAX_BATCH_TOKENS: usize = 1 << 28;
/// The most memory the n-gram table of `--ngrams` may take while it is built (4 GiB; the
/// 1.2 million bigrams of the IMDB training set with 20,000 words take 43 MiB).
pub const MAX_NGRAM_TABLE_BYTES: usize = 4 << 30;
/// The most worker threads any command accepts (far above any core count this tool meets;
/// each thread gets its own activation buffers, so an absurd count must be refused up front).
pub const MAX_THREADS: usize = 256;

/// Where a setting lives: the structs a run is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// The model: its layers ([`Arch`]), or the format-1 [`ModelConfig`].
    Model,
    /// [`Preprocessing`].
    Preprocessing,
    /// [`TrainConfig`].
    Train,
    /// The rest of a run: validation split, limit, early stopping.
    Run,
}

/// One setting and its value, as the files spell them (`batch_size`, `adam.learning_rate`).
#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    pub section: Section,
    pub key: &'static str,
    pub value: String,
}

/// What an invalid setting must be instead.
#[derive(Clone, Debug, PartialEq)]
pub enum Need {
    AtLeast(usize),
    AtMost(usize),
    /// In [0, 1).
    Fraction,
    /// In (0, 1).
    OpenFraction,
    /// Finite and above 0.
    Positive,
    /// Finite and at least 0.
    NonNegative,
    /// The settings together make `count` `what`, more than `max`.
    TooMany {
        count: usize,
        what: &'static str,
        max: usize,
    },
    /// Must equal this other setting.
    SameAs(Setting),
    /// Must be below this other setting.
    Below(Setting),
    /// A reserved id must come before the first word id, index_from + 1.
    Reserved {
        index_from: u32,
    },
    /// Reserved ids that must differ.
    Distinct,
    /// The tokeniser this build knows.
    KnownTokenizer,
    /// Required by the named other setting.
    NeededBy(&'static str),
    /// The layer stack cannot be built; the message names the layer and what to change.
    Layers(String),
}

/// A setting (or settings, when they are too large together) outside what this build honours.
#[derive(Clone, Debug, PartialEq)]
pub struct Invalid {
    pub settings: Vec<Setting>,
    pub need: Need,
}

/// `a`, `a and b`, `a, b and c`.
fn join(parts: &[String]) -> String {
    match parts {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

impl Invalid {
    fn one(section: Section, key: &'static str, value: impl ToString, need: Need) -> Invalid {
        Invalid {
            settings: vec![setting(section, key, value)],
            need,
        }
    }

    /// For the command line, naming each setting by its flag: `--maxlen 1000000000 is too
    /// large: use at most 1048576`.
    pub fn for_flags(&self) -> String {
        if let Need::Layers(msg) = &self.need {
            return msg.clone();
        }
        self.say(|s| {
            format!(
                "--{}",
                s.key.rsplit('.').next().unwrap_or(s.key).replace('_', "-")
            )
        })
    }

    /// For a file, `prefix` naming where each section is stored in it (`config `,
    /// `run.train.`): `config maxlen is 268435456, above the limit of 1048576; ...`.
    pub fn in_file(&self, prefix: impl Fn(Section) -> &'static str) -> String {
        let name = |s: &Setting| format!("{}{}", prefix(s.section), s.key);
        let subject = match self.settings.as_slice() {
            [s] => format!("{} is {}", name(s), s.value),
            many => join(
                &many
                    .iter()
                    .map(|s| format!("{} {}", name(s), s.value))
                    .collect::<Vec<_>>(),
            ),
        };
        let what = match &self.need {
            Need::AtLeast(n) => format!("{subject}, below the minimum of {n}"),
            Need::AtMost(n) => format!("{subject}, above the limit of {n}"),
            Need::Fraction => format!("{subject}, outside [0, 1)"),
            Need::OpenFraction => format!("{subject}, outside (0, 1)"),
            Need::Positive => format!("{subject}, not a positive number"),
            Need::NonNegative => format!("{subject}, not a number >= 0"),
            Need::TooMany { count, what, max } => {
                format!("{subject} make {count} {what}, above the limit of {max}")
            }
            Need::SameAs(o) => {
                format!("{subject}, but {} is {}: they must agree", name(o), o.value)
            }
            Need::Below(o) => format!("{subject}, not below {} {}", name(o), o.value),
            Need::Reserved { index_from } => format!(
                "{subject}, not below the first word id {} (index_from + 1)",
                *index_from as u64 + 1
            ),
            Need::Distinct => format!("{subject}: these reserved ids must differ"),
            Need::KnownTokenizer => {
                return format!(
                    "{subject}: this build only knows {TOKENIZER_NAME:?} version \
                     {TOKENIZER_VERSION}; use the imdb-lstm that wrote the file"
                )
            }
            Need::NeededBy(other) => {
                let section = self.settings[0].section;
                format!("{subject}, but {}{other} needs it", prefix(section))
            }
            Need::Layers(msg) => {
                let at = self.settings.first().map_or(String::new(), name);
                format!("{at}: {msg}")
            }
        };
        format!("{what}; the file is damaged or was not written by imdb-lstm")
    }

    /// `subject` (each setting named by `name`, with its value) and what to use instead.
    fn say(&self, name: impl Fn(&Setting) -> String) -> String {
        let subject = join(
            &self
                .settings
                .iter()
                .map(|s| format!("{} {}", name(s), s.value))
                .collect::<Vec<_>>(),
        );
        match &self.need {
            Need::AtLeast(n) => format!("{subject} is too small: use at least {n}"),
            Need::AtMost(n) => format!("{subject} is too large: use at most {n}"),
            Need::Fraction => {
                format!("{subject} is outside [0, 1): use a fraction such as 0.2")
            }
            Need::OpenFraction => {
                format!("{subject} is outside (0, 1): use a fraction such as 0.2")
            }
            Need::Positive => format!("{subject} must be a positive number"),
            Need::NonNegative => format!("{subject} must be a number >= 0"),
            Need::TooMany { count, what, max } => {
                format!("{subject} make {count} {what}; at most {max} fit: make them smaller")
            }
            Need::SameAs(o) => format!("{subject} differs from {} {}", name(o), o.value),
            Need::Below(o) => format!("{subject} must be below {} {}", name(o), o.value),
            Need::Reserved { index_from } => format!(
                "{subject} must be below the first word id {} (index_from + 1)",
                *index_from as u64 + 1
            ),
            Need::Distinct => format!("{subject}: these reserved ids must differ"),
            Need::KnownTokenizer => format!(
                "{subject}: this build only knows {TOKENIZER_NAME:?} version {TOKENIZER_VERSION}; \
                 use a model made by a matching imdb-lstm version"
            ),
            Need::NeededBy(other) => format!("{subject}: {other} needs it"),
            Need::Layers(msg) => match self.settings.first() {
                Some(s) => format!("{}: {msg}", name(s)),
                None => msg.clone(),
            },
        }
    }
}

/// Bare keys, as a library caller sees them: `maxlen 0 is too small: use at least 1`.
impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.say(|s| s.key.to_string()))
    }
}

impl std::error::Error for Invalid {}

fn setting(section: Section, key: &'static str, value: impl ToString) -> Setting {
    Setting {
        section,
        key,
        value: value.to_string(),
    }
}

/// `Err` when `v` is outside `lo..=hi`.
fn count(
    section: Section,
    key: &'static str,
    v: usize,
    lo: usize,
    hi: usize,
) -> Result<(), Invalid> {
    if v < lo {
        return Err(Invalid::one(section, key, v, Need::AtLeast(lo)));
    }
    if v > hi {
        return Err(Invalid::one(section, key, v, Need::AtMost(hi)));
    }
    Ok(())
}

/// Shape and dropout: sizes whose tensors and activations fit in memory arithmetic and in memory.
pub fn model(m: &ModelConfig) -> Result<(), Invalid> {
    use Section::Model as S;
    sizes(&Sizes {
        num_words: Some(m.num_words),
        embed_dim: Some(m.embed_dim),
        units: Some(m.units),
        maxlen: Some(m.maxlen),
        dropout: Some(m.dropout),
        recurrent_dropout: Some(m.recurrent_dropout),
    })?;
    let too_many = |keys: &[(&'static str, usize)], count: usize, what, max| {
        if count <= max {
            return Ok(());
        }
        Err(Invalid {
            settings: keys.iter().map(|&(k, v)| setting(S, k, v)).collect(),
            need: Need::TooMany { count, what, max },
        })
    };
    // Saturating: any overflow is above the limit anyway.
    too_many(
        &[
            ("num_words", m.num_words),
            ("embed_dim", m.embed_dim),
            ("units", m.units),
        ],
        m.param_count(),
        "parameters",
        MAX_PARAMS,
    )?;
    too_many(
        &[
            ("maxlen", m.maxlen),
            ("embed_dim", m.embed_dim),
            ("units", m.units),
        ],
        m.maxlen
            .saturating_mul(m.embed_dim.saturating_add(m.units.saturating_mul(4))),
        "activations per review",
        MAX_ACTIVATIONS_PER_REVIEW,
    )?;
    Ok(())
}

/// The sizes and dropouts that size a model's layers, each when given: `train`'s flags set
/// them on any stack, and a format-1 [`ModelConfig`] is made of them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sizes {
    pub num_words: Option<usize>,
    pub embed_dim: Option<usize>,
    pub units: Option<usize>,
    pub maxlen: Option<usize>,
    pub dropout: Option<f32>,
    pub recurrent_dropout: Option<f32>,
}

/// Each given size in range, each dropout a fraction.
pub fn sizes(s: &Sizes) -> Result<(), Invalid> {
    use Section::Model as S;
    // Ids 0-3 are reserved (padding, start, out-of-vocabulary, unused).
    for (key, v, lo, hi) in [
        ("num_words", s.num_words, 4, usize::MAX),
        ("embed_dim", s.embed_dim, 1, usize::MAX),
        ("units", s.units, 1, usize::MAX),
        ("maxlen", s.maxlen, 1, MAX_MAXLEN),
    ] {
        if let Some(v) = v {
            count(S, key, v, lo, hi)?;
        }
    }
    for (key, p) in [
        ("dropout", s.dropout),
        ("recurrent_dropout", s.recurrent_dropout),
    ] {
        if let Some(p) = p.filter(|p| !(0.0..1.0).contains(p)) {
            return Err(Invalid::one(S, key, p, Need::Fraction));
        }
    }
    Ok(())
}

/// A layer stack this build can run: [`Arch::describe`]'s checks (shapes, arguments, sizes
/// up to [`MAX_PARAMS`] parameters and [`MAX_ACTIVATIONS_PER_REVIEW`]).
pub fn arch(a: &Arch) -> Result<(), Invalid> {
    a.describe().map(drop).map_err(|e| Invalid {
        settings: vec![setting(Section::Model, "layers", "")],
        need: Need::Layers(format!("{e:#}")),
    })
}

/// A model and the preprocessing that feeds it: each valid, every id it can emit indexes the
/// embedding table, and sequences are as long as the model was built for.
pub fn arch_and_preprocessing(a: &Arch, p: &Preprocessing) -> Result<(), Invalid> {
    arch(a)?;
    preprocessing(p)?;
    let input_dim = a.embedding().map_or(0, |e| e.0);
    // With n-grams the table's ids follow the words: the data decides how many.
    let ngram_rows = p.ngrams > 1 && input_dim > p.num_words;
    for (key, pv, mkey, mv) in [
        ("num_words", p.num_words, "input_dim", input_dim),
        ("maxlen", p.maxlen, "maxlen", a.maxlen),
    ] {
        if pv != mv && !(key == "num_words" && ngram_rows) {
            return Err(Invalid::one(
                Section::Preprocessing,
                key,
                pv,
                Need::SameAs(setting(Section::Model, mkey, mv)),
            ));
        }
    }
    Ok(())
}

/// The text-to-ids settings on their own: a known tokeniser, a sequence length that fits, and
/// reserved ids that are distinct, below num_words and before the first word id.
pub fn preprocessing(p: &Preprocessing) -> Result<(), Invalid> {
    use Section::Preprocessing as S;
    if p.tokenizer != TOKENIZER_NAME || p.tokenizer_version != TOKENIZER_VERSION {
        return Err(Invalid {
            settings: vec![
                setting(S, "tokenizer", format!("{:?}", p.tokenizer)),
                setting(S, "tokenizer_version", p.tokenizer_version),
            ],
            need: Need::KnownTokenizer,
        });
    }
    // Ids are u32.
    count(S, "num_words", p.num_words, 4, u32::MAX as usize - 1)?;
    count(S, "maxlen", p.maxlen, 1, MAX_MAXLEN)?;
    // An n-gram of ids below num_words + 1 must pack into one 64-bit key.
    let start = p.num_words as u32 + 1;
    count(S, "ngrams", p.ngrams, 1, NgramTable::max_n(start))?;
    let ids = [
        ("pad_id", p.pad_id),
        ("start_id", p.start_id),
        ("oov_id", p.oov_id),
    ];
    for (key, id) in ids {
        if id as usize >= p.num_words {
            let need = Need::Below(setting(S, "num_words", p.num_words));
            return Err(Invalid::one(S, key, id, need));
        }
        if id > p.index_from {
            return Err(Invalid::one(
                S,
                key,
                id,
                Need::Reserved {
                    index_from: p.index_from,
                },
            ));
        }
    }
    for (i, &(a, x)) in ids.iter().enumerate() {
        if let Some(&(b, _)) = ids[i + 1..].iter().find(|(_, y)| *y == x) {
            return Err(Invalid {
                settings: vec![setting(S, a, x), setting(S, b, x)],
                need: Need::Distinct,
            });
        }
    }
    Ok(())
}

/// A model and the preprocessing that feeds it: each valid, and every id it can emit indexes
/// the embedding table, sequences as long as the model was built for.
pub fn model_and_preprocessing(m: &ModelConfig, p: &Preprocessing) -> Result<(), Invalid> {
    model(m)?;
    preprocessing(p)?;
    for (key, pv, mv) in [
        ("num_words", p.num_words, m.num_words),
        ("maxlen", p.maxlen, m.maxlen),
    ] {
        if pv != mv {
            return Err(Invalid::one(
                Section::Preprocessing,
                key,
                pv,
                Need::SameAs(setting(Section::Model, key, mv)),
            ));
        }
    }
    Ok(())
}

/// How to fit `m`: epochs, a batch that fits, threads up to [`MAX_THREADS`], Adam's settings.
pub fn train(t: &TrainConfig, maxlen: usize) -> Result<(), Invalid> {
    use Section::Train as S;
    count(S, "epochs", t.epochs, 1, usize::MAX)?;
    count(S, "batch_size", t.batch_size, 1, MAX_BATCH_SIZE)?;
    let tokens = t.batch_size.saturating_mul(maxlen);
    if tokens > MAX_BATCH_TOKENS {
        return Err(Invalid {
            settings: vec![
                setting(S, "batch_size", t.batch_size),
                setting(Section::Model, "maxlen", maxlen),
            ],
            need: Need::TooMany {
                count: tokens,
                what: "token ids per batch",
                max: MAX_BATCH_TOKENS,
            },
        });
    }
    count(S, "threads", t.threads, 1, MAX_THREADS)?;
    let a = &t.adam;
    for (key, v, need) in [
        ("adam.learning_rate", a.learning_rate, Need::Positive),
        ("adam.epsilon", a.epsilon, Need::Positive),
        ("adam.beta_1", a.beta_1, Need::Fraction),
        ("adam.beta_2", a.beta_2, Need::Fraction),
    ] {
        let ok = match need {
            Need::Positive => v.is_finite() && v > 0.0,
            _ => (0.0..1.0).contains(&v),
        };
        if !ok {
            return Err(Invalid::one(S, key, v, need));
        }
    }
    Ok(())
}

/// A whole run: the model, its preprocessing, the fit, and the validation split (a fraction;
/// early stopping needs one, so it never watches the test set), `--limit` and early stopping.
pub fn run(plan: &crate::train::TrainPlan) -> Result<(), Invalid> {
    use Section::Run as S;
    let (a, p, t) = (&plan.arch, &plan.pre, &plan.train);
    let (validation_split, limit) = (plan.validation_split, plan.limit);
    let early_stopping = plan.early_stopping.as_ref();
    arch_and_preprocessing(a, p)?;
    train(t, a.maxlen)?;
    if let Some(f) = validation_split {
        if !(f > 0.0 && f < 1.0) {
            return Err(Invalid::one(S, "validation_split", f, Need::OpenFraction));
        }
    }
    if let Some(n) = limit {
        count(S, "limit", n, 1, usize::MAX)?;
    }
    if let Some(e) = early_stopping {
        if !(e.min_delta.is_finite() && e.min_delta >= 0.0) {
            let (key, v) = ("early_stopping.min_delta", e.min_delta);
            return Err(Invalid::one(S, key, v, Need::NonNegative));
        }
        // Own data may give a validation file instead.
        let val_file = plan.own.as_ref().is_some_and(|o| o.validation.is_some());
        if validation_split.is_none() && !val_file {
            return Err(Invalid::one(
                S,
                "validation_split",
                "none",
                Need::NeededBy("early_stopping"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tutorial's settings pass; one step past each size limit fails, naming the setting.
    #[test]
    fn limits_are_inclusive() {
        let m = ModelConfig::default();
        let p = Preprocessing::default();
        let t = TrainConfig {
            threads: MAX_THREADS,
            ..TrainConfig::default()
        };
        let plan = crate::train::TrainPlan {
            arch: m.arch(),
            pre: p.clone(),
            train: t.clone(),
            validation_split: Some(0.2),
            limit: Some(1),
            early_stopping: None,
            own: None,
        };
        assert_eq!(run(&plan), Ok(()));
        let long = |maxlen| ModelConfig {
            maxlen,
            embed_dim: 1,
            units: 1,
            ..m.clone()
        };
        assert_eq!(model(&long(MAX_MAXLEN)), Ok(()));
        let e = model(&long(MAX_MAXLEN + 1)).unwrap_err();
        assert_eq!(e.settings[0].key, "maxlen");
        assert_eq!(e.need, Need::AtMost(MAX_MAXLEN));
        let t = TrainConfig {
            threads: MAX_THREADS + 1,
            ..t
        };
        let e = train(&t, m.maxlen).unwrap_err();
        assert_eq!(e.to_string(), "threads 257 is too large: use at most 256");
    }

    /// One problem, three ways to say it.
    #[test]
    fn each_caller_names_it_its_way() {
        let m = ModelConfig {
            dropout: 1.5,
            ..ModelConfig::default()
        };
        let e = model(&m).unwrap_err();
        assert_eq!(
            e.for_flags(),
            "--dropout 1.5 is outside [0, 1): use a fraction such as 0.2"
        );
        assert_eq!(
            e.in_file(|_| "config "),
            "config dropout is 1.5, outside [0, 1); the file is damaged or was not written by \
             imdb-lstm"
        );
        assert_eq!(
            e.to_string(),
            "dropout 1.5 is outside [0, 1): use a fraction such as 0.2"
        );
    }
}
