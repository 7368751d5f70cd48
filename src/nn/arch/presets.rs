//! The named models (Keras's IMDB examples) with the data and training defaults each runs with.

use super::{Activation, Arch, LayerSpec, MergeMode, Padding, Recurrent};
use anyhow::{bail, Result};

/// A named model with the data and training defaults it is meant to run with.
#[derive(Clone, Debug, PartialEq)]
pub struct Preset {
    pub name: &'static str,
    /// `arch.maxlen` is the preset's default maxlen.
    pub arch: Arch,
    pub num_words: usize,
    pub batch_size: usize,
    pub epochs: usize,
    /// n-gram range the data step adds to each sequence (1: words only). With n >= 2 the data
    /// step appends an id per kept n-gram and sets the Embedding's `input_dim` to match
    /// ([`Arch::set_input_dim`]); until then it is `num_words`.
    pub ngrams: usize,
}

/// Preset names; the first is the default (the Keras IMDB LSTM tutorial).
pub const PRESETS: [&str; 7] = [
    "lstm",
    "gru",
    "bilstm",
    "stacked-lstm",
    "cnn",
    "cnn-lstm",
    "fasttext",
];

/// The preset called `name` (Keras's IMDB examples), or one line listing the names.
pub fn preset(name: &str) -> Result<Preset> {
    use self::Activation::{Linear, Relu, Sigmoid};
    use LayerSpec::{
        Bidirectional, Conv1D, Dense, Dropout, Embedding, GlobalAveragePooling1D,
        GlobalMaxPooling1D, MaxPooling1D, GRU, LSTM,
    };
    let emb = |input_dim, output_dim| Embedding {
        input_dim,
        output_dim,
    };
    let rnn = |units, dropout, return_sequences| Recurrent {
        units,
        dropout,
        recurrent_dropout: dropout,
        return_sequences,
    };
    let dense = |units, activation| Dense { units, activation };
    let act = |activation| LayerSpec::Activation { activation };
    let conv = |filters, kernel_size| Conv1D {
        filters,
        kernel_size,
        padding: Padding::Valid,
        strides: 1,
        activation: Relu,
    };
    // (layers, num_words, maxlen, batch_size, epochs, ngrams)
    let (layers, num_words, maxlen, batch_size, epochs, ngrams) = match name {
        "lstm" => (
            vec![
                emb(5000, 128),
                LSTM(rnn(128, 0.2, false)),
                dense(1, Sigmoid),
            ],
            5000,
            80,
            32,
            2,
            1,
        ),
        "gru" => (
            vec![emb(5000, 128), GRU(rnn(128, 0.2, false)), dense(1, Sigmoid)],
            5000,
            80,
            32,
            2,
            1,
        ),
        "bilstm" => (
            vec![
                emb(20000, 128),
                Bidirectional {
                    layer: Box::new(LSTM(Recurrent::new(64))),
                    merge_mode: MergeMode::Concat,
                },
                Dropout { rate: 0.5 },
                dense(1, Sigmoid),
            ],
            20000,
            100,
            32,
            4,
            1,
        ),
        "stacked-lstm" => (
            vec![
                emb(5000, 128),
                LSTM(rnn(128, 0.2, true)),
                LSTM(rnn(128, 0.2, false)),
                dense(1, Sigmoid),
            ],
            5000,
            80,
            32,
            2,
            1,
        ),
        "cnn" => (
            vec![
                emb(5000, 50),
                Dropout { rate: 0.2 },
                conv(250, 3),
                GlobalMaxPooling1D {},
                dense(250, Linear),
                Dropout { rate: 0.2 },
                act(Relu),
                dense(1, Linear),
                act(Sigmoid),
            ],
            5000,
            400,
            32,
            2,
            1,
        ),
        "cnn-lstm" => (
            vec![
                emb(20000, 128),
                Dropout { rate: 0.25 },
                conv(64, 5),
                MaxPooling1D {
                    pool_size: 4,
                    strides: 4,
                    padding: Padding::Valid,
                },
                LSTM(Recurrent::new(70)),
                dense(1, Linear),
                act(Sigmoid),
            ],
            20000,
            100,
            30,
            2,
            1,
        ),
        "fasttext" => (
            vec![emb(20000, 50), GlobalAveragePooling1D {}, dense(1, Sigmoid)],
            20000,
            400,
            32,
            5,
            2,
        ),
        _ => bail!(
            "unknown model preset '{name}'; the presets are {}",
            PRESETS.join(", ")
        ),
    };
    let name = PRESETS
        .into_iter()
        .find(|&p| p == name)
        .expect("matched above");
    Ok(Preset {
        name,
        arch: Arch { maxlen, layers },
        num_words,
        batch_size,
        epochs,
        ngrams,
    })
}
