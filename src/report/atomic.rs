//! Moved to [`crate::atomic`]; kept until the checkpoint writer uses it directly.

pub use crate::atomic::write as write_atomic;
