//! Reports: history files (JSON, CSV), the history plot and the model graph.
//!
//! Everything here is drawn in-process: no Python, no Graphviz, no system fonts
//! (the plot text uses a DejaVu Sans face embedded in the binary).

pub mod atomic;
pub mod history_files;

pub use history_files::{read_history, write_history};
