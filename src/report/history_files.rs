//! history.json and history.csv: the run's per-epoch metrics on disk.

use crate::atomic;
use crate::train::history::{EpochRecord, History};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// File name of the JSON history inside a run folder.
pub const HISTORY_JSON: &str = "history.json";
/// File name of the CSV history inside a run folder.
pub const HISTORY_CSV: &str = "history.csv";
/// The CSV header; kept stable so spreadsheets and scripts can rely on it.
pub const CSV_HEADER: &str = "epoch,loss,accuracy,val_loss,val_accuracy,seconds";
/// The largest history.json read (64 MiB): hundreds of thousands of epochs, far below memory.
pub const MAX_HISTORY_BYTES: u64 = 64 << 20;

/// history.json (serde of `History`, pretty) and history.csv with the stable header
/// `epoch,loss,accuracy,val_loss,val_accuracy,seconds` (empty cell when a val value is None),
/// both written atomically (temp file in the same folder, then rename).
///
/// JSON cannot hold NaN or infinity; serde_json writes them as `null`, which
/// [`read_history`] reads back as NaN (or None for the validation fields).
pub fn write_history(dir: &Path, history: &History) -> Result<()> {
    if !dir.is_dir() {
        bail!(
            "run folder {} does not exist; create it before writing the history",
            dir.display()
        );
    }
    let json = serde_json::to_string_pretty(history).context("cannot serialise the history")?;
    atomic::write(&dir.join(HISTORY_JSON), format!("{json}\n").as_bytes())?;
    atomic::write(&dir.join(HISTORY_CSV), history_csv(history).as_bytes())?;
    Ok(())
}

/// The CSV text of a history: header, then one line per epoch, `\n` line ends.
/// Numbers use Rust's shortest round-trip form, so the CSV loses no precision.
pub fn history_csv(history: &History) -> String {
    let mut out = String::with_capacity(64 * (history.epochs.len() + 1));
    out.push_str(CSV_HEADER);
    out.push('\n');
    let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    for e in &history.epochs {
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{},{},{},{},{},{}",
            e.epoch,
            e.loss,
            e.accuracy,
            opt(e.val_loss),
            opt(e.val_accuracy),
            e.seconds
        );
    }
    out
}

/// One epoch as stored on disk: like `EpochRecord`, but tolerant of the `null`s
/// serde_json writes for non-finite numbers.
#[derive(Deserialize)]
struct StoredEpoch {
    epoch: usize,
    loss: Option<f64>,
    accuracy: Option<f64>,
    #[serde(default)]
    val_loss: Option<f64>,
    #[serde(default)]
    val_accuracy: Option<f64>,
    seconds: Option<f64>,
}

#[derive(Deserialize)]
struct StoredHistory {
    epochs: Vec<StoredEpoch>,
}

/// Read a history from a run folder (its history.json) or from a JSON file path.
/// Errors name the file and say whether it is missing, not a regular file, too large, not JSON,
/// or not a history.
pub fn read_history(dir_or_file: &Path) -> Result<History> {
    let path: PathBuf = if dir_or_file.is_dir() {
        dir_or_file.join(HISTORY_JSON)
    } else {
        dir_or_file.to_path_buf()
    };
    if !path.exists() {
        bail!(
            "history file {} not found; pass a run folder that holds {HISTORY_JSON} (written by training)",
            path.display()
        );
    }
    // A pipe or device would block or never end: only regular files are read, and only so much.
    let too_big = || {
        anyhow::anyhow!(
            "history file {} is larger than {} MiB, far more than any training writes; pass a run \
             folder that holds the {HISTORY_JSON} written by training",
            path.display(),
            MAX_HISTORY_BYTES >> 20
        )
    };
    let meta = std::fs::metadata(&path)
        .with_context(|| format!("cannot read history file {}", path.display()))?;
    if !meta.is_file() {
        bail!(
            "history file {} is not a regular file; pass a run folder that holds {HISTORY_JSON} \
             (written by training)",
            path.display()
        );
    }
    if meta.len() > MAX_HISTORY_BYTES {
        return Err(too_big());
    }
    let mut text = String::new();
    std::fs::File::open(&path)
        .and_then(|f| f.take(MAX_HISTORY_BYTES + 1).read_to_string(&mut text))
        .with_context(|| format!("cannot read history file {}", path.display()))?;
    if text.len() as u64 > MAX_HISTORY_BYTES {
        return Err(too_big());
    }
    let value: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "history file {} is not valid JSON; it may be truncated or not a history file",
            path.display()
        )
    })?;
    let stored: StoredHistory = serde_json::from_value(value).with_context(|| {
        format!(
            "history file {} is JSON but not a history: expected {{\"epochs\": [{{\"epoch\", \"loss\", \"accuracy\", \"val_loss\", \"val_accuracy\", \"seconds\"}}, ...]}}",
            path.display()
        )
    })?;
    let nan = |v: Option<f64>| v.unwrap_or(f64::NAN);
    Ok(History {
        epochs: stored
            .epochs
            .into_iter()
            .map(|e| EpochRecord {
                epoch: e.epoch,
                loss: nan(e.loss),
                accuracy: nan(e.accuracy),
                val_loss: e.val_loss,
                val_accuracy: e.val_accuracy,
                seconds: nan(e.seconds),
            })
            .collect(),
    })
}
