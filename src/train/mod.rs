//! Training: the fit loop (shuffle, batches, validation, history).

pub mod history;
