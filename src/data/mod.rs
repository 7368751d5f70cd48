//! Data: the IMDB archive as published -> reviews -> tokens -> vocabulary -> padded id sequences,
//! with the semantics of Keras's `imdb.load_data` and `pad_sequences`.

use serde::{Deserialize, Serialize};

/// Where padding or truncation happens, as Keras's `padding=` / `truncating=` (`'pre'` or `'post'`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Zeros in front / drop the oldest tokens (Keras's default).
    Pre,
    /// Zeros at the end / drop the newest tokens.
    Post,
}

/// The text-to-ids settings. They travel inside the model file so `predict` rebuilds the
/// exact sequences training saw.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// Name of the tokeniser rule (see `tokenize`).
    pub tokenizer: String,
    /// Version of the tokeniser rule; bump when the rule changes.
    pub tokenizer_version: u32,
    /// Ids >= num_words become `oov_id` (Keras `num_words`, default 5000).
    pub num_words: usize,
    /// Sequence length after padding/truncation (default 80).
    pub maxlen: usize,
    /// Where zeros go (default pre).
    pub padding: Side,
    /// Which end is cut (default pre).
    pub truncating: Side,
    /// Padding id (0).
    pub pad_id: u32,
    /// Start-of-sequence marker (1).
    pub start_id: u32,
    /// Out-of-vocabulary id (2).
    pub oov_id: u32,
    /// Word of rank r gets id r + index_from (3).
    pub index_from: u32,
    /// Keras's fastText `ngram_range`: n-grams of 2..=ngrams words of the training data get ids
    /// after the words and are appended to each sequence before padding (1: words only, the
    /// default; absent from files written before n-grams existed).
    #[serde(default = "words_only", skip_serializing_if = "is_words_only")]
    pub ngrams: usize,
}

fn words_only() -> usize {
    1
}

fn is_words_only(n: &usize) -> bool {
    *n == 1
}

impl Default for Preprocessing {
    fn default() -> Self {
        Preprocessing {
            tokenizer: "imdb-lstm-words".to_string(),
            tokenizer_version: 1,
            num_words: 5000,
            maxlen: 80,
            padding: Side::Pre,
            truncating: Side::Pre,
            pad_id: 0,
            start_id: 1,
            oov_id: 2,
            index_from: 3,
            ngrams: 1,
        }
    }
}

pub mod archive;
pub mod download;
pub mod labelled;
pub mod ngrams;
pub mod sequences;
pub mod source;
pub mod tokenize;
pub mod vocab;

pub use archive::{load_reviews, RawDataset, Review};
pub use download::download;
pub use labelled::{records, Format, LabelSet, Labelled, ReadOptions, Record, TaskKind};
pub use sequences::{pad_sequences, prepare, shuffled_orders, Dataset, Encoded};
pub use source::{cache_dir, resolve_source, OFFICIAL_SHA256, OFFICIAL_SIZE, OFFICIAL_URL};
pub use tokenize::{for_each_token, tokenize, TOKENIZER_NAME, TOKENIZER_VERSION};
pub use vocab::Vocabulary;
