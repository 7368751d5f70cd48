//! The numeric core: layer stacks ([`arch::Arch`]) run by one engine ([`Network`]), losses
//! and Adam, as explicit forward/backward pairs over flat buffers.

pub mod activation;
pub mod adam;
pub mod arch;
pub mod conv;
pub mod dense;
pub mod gemm;
pub mod gru;
pub mod lstm;
pub mod network;
pub mod packed;
pub mod parallel;
pub mod params;
pub mod pool;
pub mod reference;

pub use network::{BatchStats, Gradients, NetMasks, Network};
pub use params::Params;

use serde::{Deserialize, Serialize};

/// The model's shape and regularisation, with the tutorial's (Keras) defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Rows of the embedding table (= num_words, default 5000).
    pub num_words: usize,
    /// Embedding width (default 128).
    pub embed_dim: usize,
    /// LSTM units (default 128).
    pub units: usize,
    /// Sequence length the model is trained on (default 80).
    pub maxlen: usize,
    /// Keras `dropout`: fraction of LSTM inputs dropped (default 0.2).
    pub dropout: f32,
    /// Keras `recurrent_dropout`: fraction of the LSTM's h dropped (default 0.2).
    pub recurrent_dropout: f32,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            num_words: 5000,
            embed_dim: 128,
            units: 128,
            maxlen: 80,
            dropout: 0.2,
            recurrent_dropout: 0.2,
        }
    }
}

impl ModelConfig {
    /// Trainable parameters per layer: embedding V*D, LSTM 4*H*(D+H+1), dense H+1.
    /// Saturates instead of overflowing on absurd configs (checks and summaries never panic).
    pub fn layer_params(&self) -> [usize; 3] {
        let (v, d, h) = (self.num_words, self.embed_dim, self.units);
        let embedding = v.saturating_mul(d);
        let lstm = h
            .saturating_mul(4)
            .saturating_mul(d.saturating_add(h).saturating_add(1));
        let dense = h.saturating_add(1);
        [embedding, lstm, dense]
    }

    /// Total trainable parameters (771,713 for the defaults), saturating.
    pub fn param_count(&self) -> usize {
        self.layer_params()
            .iter()
            .fold(0usize, |a, &b| a.saturating_add(b))
    }

    /// The layer stack: Embedding(num_words, embed_dim) -> LSTM(units) -> Dense(1, sigmoid).
    pub fn arch(&self) -> arch::Arch {
        use arch::{Activation, Arch, LayerSpec, Recurrent};
        Arch {
            layers: vec![
                LayerSpec::Embedding {
                    input_dim: self.num_words,
                    output_dim: self.embed_dim,
                },
                LayerSpec::LSTM(Recurrent {
                    units: self.units,
                    dropout: self.dropout,
                    recurrent_dropout: self.recurrent_dropout,
                    return_sequences: false,
                }),
                LayerSpec::Dense {
                    units: 1,
                    activation: Activation::Sigmoid,
                },
            ],
            maxlen: self.maxlen,
        }
    }

    /// Named tensors in Keras's layout: (name, shape). Gate order i, f, c, o.
    pub fn tensor_shapes(&self) -> Vec<(&'static str, Vec<usize>)> {
        let (v, d, h) = (self.num_words, self.embed_dim, self.units);
        vec![
            ("embedding/embeddings", vec![v, d]),
            ("lstm/kernel", vec![d, 4 * h]),
            ("lstm/recurrent_kernel", vec![h, 4 * h]),
            ("lstm/bias", vec![4 * h]),
            ("dense/kernel", vec![h, 1]),
            ("dense/bias", vec![1]),
        ]
    }
}
