//! imdb-lstm: the Keras IMDB LSTM sentiment tutorial as a fast, exact Rust library.
//!
//! The layout follows the data: [`data`] (archive -> tokens -> padded ids),
//! [`nn`] (layers, loss, optimiser), [`train`] (the fit loop), [`report`]
//! (history, plots, model graph) and the command-line front end in `main.rs`.

pub mod cli;
pub mod data;
pub mod model_file;
pub mod nn;
pub mod report;
pub mod train;
pub mod validate;
