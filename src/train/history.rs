//! The per-epoch record of a run, as Keras's `History.history`.

use serde::{Deserialize, Serialize};

/// One epoch's metrics. Validation fields are absent when the run had no validation data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    /// Wall-clock seconds for the epoch (training and validation).
    pub seconds: f64,
}

/// All epochs of a run, in order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub epochs: Vec<EpochRecord>,
}

impl History {
    /// The epoch (1-based) with the lowest val_loss, if any epoch has one.
    pub fn best_epoch(&self) -> Option<usize> {
        self.epochs
            .iter()
            .filter_map(|e| e.val_loss.map(|v| (e.epoch, v)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(e, _)| e)
    }
}
