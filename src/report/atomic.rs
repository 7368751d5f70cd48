//! Atomic file writes: a temp file in the destination's folder, then a rename,
//! so a reader never sees a half-written report.

use anyhow::{anyhow, Context, Result};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A temp path next to `dest` that keeps `dest`'s extension (encoders such as
/// the PNG writer pick the format from it) and is unique per process and call.
pub fn temp_path_for(dest: &Path) -> Result<PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("output path {} has no usable file name", dest.display()))?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp_name = match dest.extension().and_then(|e| e.to_str()) {
        Some(ext) => format!(".{name}.tmp-{}-{n}.{ext}", std::process::id()),
        None => format!(".{name}.tmp-{}-{n}", std::process::id()),
    };
    Ok(dest.with_file_name(tmp_name))
}

/// Write `bytes` to `dest` atomically. The folder must already exist.
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path_for(dest)?;
    let result = (|| -> Result<()> {
        let mut f = fs::File::create(&tmp).with_context(|| {
            format!(
                "cannot create temp file {} (does the folder exist and is it writable?)",
                tmp.display()
            )
        })?;
        f.write_all(bytes).with_context(|| {
            format!(
                "cannot write temp file {} (is the disk full? free some space or choose another folder, e.g. with --out)",
                tmp.display()
            )
        })?;
        f.sync_all()
            .with_context(|| format!("cannot flush temp file {}", tmp.display()))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e.context(format!("writing {}", dest.display())));
    }
    rename_into_place(&tmp, dest)
}

/// Rename a finished temp file over `dest`, removing the temp file on failure.
pub fn rename_into_place(tmp: &Path, dest: &Path) -> Result<()> {
    fs::rename(tmp, dest).map_err(|e| {
        let _ = fs::remove_file(tmp);
        anyhow!(e).context(format!(
            "cannot move {} into place as {}",
            tmp.display(),
            dest.display()
        ))
    })
}
