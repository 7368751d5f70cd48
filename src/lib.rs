//! imdb-lstm: the Keras IMDB LSTM sentiment tutorial as a fast, exact Rust library.
//!
//! The layout follows the data: [`data`] (archive -> tokens -> padded ids), [`nn`] (layers,
//! loss, optimiser), [`train`] (the fit loop, checkpoints, progress), [`report`] (history files,
//! plots, model graph, summary), [`model_file`] (the self-contained saved model), [`run`] (a
//! training run end to end: data, fit, checkpoints, model file, reports), [`infer`] (answering
//! with a trained model), [`explain`] (why it answered so), [`serve`] (both over HTTP),
//! [`export`] (to ONNX) and the command line in [`cli`]
//! (flags -> checked configuration -> the library; `main.rs` only parses the arguments and
//! calls [`cli::main_with`]). Every file is written through [`atomic`].

pub mod atomic;
pub mod cli;
pub mod data;
pub mod explain;
pub mod export;
pub mod infer;
pub mod model_file;
pub mod nn;
pub mod report;
pub mod run;
pub mod serve;
pub mod train;
pub mod validate;
