//! imdb-lstm: the Keras IMDB LSTM sentiment tutorial as a fast, exact Rust library.
//!
//! The layout follows the data: [`data`] (archive -> tokens -> padded ids),
//! [`nn`] (layers, loss, optimiser), [`train`] (the fit loop), [`report`]
//! (history, plots, model graph), [`model_file`] (the self-contained saved model) and the
//! command line in [`cli`] (flags -> checked configuration -> the library; `main.rs` only
//! parses the arguments and calls [`cli::main_with`]).

pub mod atomic;
pub mod cli;
pub mod data;
pub mod infer;
pub mod model_file;
pub mod nn;
pub mod report;
pub mod train;
