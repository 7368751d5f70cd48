//! Reports: history files (JSON, CSV), the history plot and the model graph.
pub mod summary;
