//! Reports: history files (JSON, CSV), the history plot, the model graph and the summary.
//!
//! Everything here is drawn in-process: no Python, no Graphviz, no system fonts
//! (the plot text uses a DejaVu Sans face embedded in the binary).

pub mod graph;
pub mod history_files;
pub mod plot;
pub mod summary;

pub use graph::write_model_graph;
pub use history_files::{read_history, write_history};
pub use plot::{plot_history, redraw};
