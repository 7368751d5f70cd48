//! Every file imdb-lstm writes lands whole or not at all: it is written to a temp file in the
//! destination's folder (same file system, so the rename is atomic), flushed to disk, renamed
//! over the destination, and the folder is synced so the rename itself survives a crash. On
//! any failure, or if the writer is dropped without [`TempFile::commit`], the temp file is
//! removed and the destination is untouched.
//!
//! One naming scheme for all temp files: `.NAME.tmp-PID-N[.EXT]` next to `NAME[.EXT]`, unique per
//! process and call; the extension is kept because encoders such as the PNG writer choose the
//! format from it. [`is_temp_of`] recognises them, so a run can clear what a killed process
//! left behind.

use anyhow::{anyhow, Context, Result};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A temp file that becomes `dest` on [`TempFile::commit`], and disappears otherwise.
#[derive(Debug)]
pub struct TempFile {
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<File>,
}

/// The folder holding `path` ("." for a bare file name).
pub fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The temp path for `dest` (see the module doc).
fn temp_path_for(dest: &Path) -> Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("output path {} has no usable file name", dest.display()))?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let tmp_name = match dest.extension().and_then(|e| e.to_str()) {
        Some(ext) => format!(".{name}.tmp-{pid}-{n}.{ext}"),
        None => format!(".{name}.tmp-{pid}-{n}"),
    };
    Ok(dest.with_file_name(tmp_name))
}

/// Whether `file_name` is a temp file of ours for the output named `output` (e.g.
/// `model.safetensors`), as a killed process may leave behind.
pub fn is_temp_of(file_name: &str, output: &str) -> bool {
    file_name
        .strip_prefix(&format!(".{output}.tmp-"))
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
}

impl TempFile {
    /// Creates the temp file for `dest`; its folder must exist and be a folder.
    pub fn create(dest: &Path) -> Result<TempFile> {
        let dir = folder_of(dest);
        if !dir.is_dir() {
            return Err(anyhow!(if dir.exists() {
                format!("{} is not a folder", dir.display())
            } else {
                format!("folder {} does not exist (create it first)", dir.display())
            }))
            .with_context(|| format!("cannot write {}", dest.display()));
        }
        let tmp = temp_path_for(dest)?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| {
                format!(
                    "cannot create temp file {} (is the folder writable?)",
                    tmp.display()
                )
            })
            .with_context(|| format!("writing {}", dest.display()))?;
        Ok(TempFile {
            tmp,
            dest: dest.to_path_buf(),
            file: Some(file),
        })
    }

    /// The temp file's path, for writers that open a path themselves (the plot encoders).
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// The open temp file.
    pub fn file(&mut self) -> &mut File {
        self.file
            .as_mut()
            .expect("a TempFile holds its file until commit")
    }

    /// Wraps a write error with the temp file's name and the likely cause.
    pub fn write_error(&self, e: impl Into<anyhow::Error>) -> anyhow::Error {
        e.into()
            .context(format!(
                "cannot write temp file {} (is the disk full? free some space or choose another \
                 folder, e.g. with --out)",
                self.tmp.display()
            ))
            .context(format!("writing {}", self.dest.display()))
    }

    /// Flushes the temp file to disk, renames it over the destination and syncs the folder.
    pub fn commit(mut self) -> Result<()> {
        let dest = self.dest.clone();
        // Writers that went through `path()` used their own handle: sync the file by path.
        let synced = match self.file.take() {
            Some(f) => f.sync_all(),
            None => File::open(&self.tmp).and_then(|f| f.sync_all()),
        };
        synced
            .with_context(|| format!("cannot flush temp file {}", self.tmp.display()))
            .with_context(|| format!("writing {}", dest.display()))?;
        fs::rename(&self.tmp, &dest).with_context(|| {
            format!(
                "cannot move {} into place as {}",
                self.tmp.display(),
                dest.display()
            )
        })?;
        // Renamed: nothing left for Drop to remove.
        self.tmp = PathBuf::new();
        // Make the rename durable; not every platform can sync a folder, and the file itself
        // is complete, so a failure here is not an error.
        if let Ok(d) = File::open(folder_of(&dest)) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            self.file = None;
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `bytes` to `dest` atomically (see the module doc).
pub fn write(dest: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = TempFile::create(dest)?;
    if let Err(e) = tmp.file().write_all(bytes) {
        return Err(tmp.write_error(e));
    }
    tmp.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_recognised_and_keep_the_extension() {
        let t = temp_path_for(Path::new("/x/history.png")).unwrap();
        let name = t.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with(".history.png.tmp-") && name.ends_with(".png"),
            "{name}"
        );
        assert!(is_temp_of(name, "history.png"));
        assert!(!is_temp_of(name, "history.svg"));
        assert!(!is_temp_of(".history.png.tmp-x", "history.png"));
        assert!(!is_temp_of("history.png", "history.png"));
    }

    #[test]
    fn write_replaces_whole_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a.json");
        write(&dest, b"one").unwrap();
        write(&dest, b"two").unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_dropped_temp_file_is_removed_and_the_destination_kept() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("model.safetensors");
        fs::write(&dest, b"old").unwrap();
        let mut tmp = TempFile::create(&dest).unwrap();
        tmp.file().write_all(b"half").unwrap();
        let path = tmp.path().to_path_buf();
        assert!(path.exists());
        drop(tmp);
        assert!(!path.exists());
        assert_eq!(fs::read(&dest).unwrap(), b"old");
    }

    #[test]
    fn a_missing_or_file_folder_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = write(&dir.path().join("nope/a.txt"), b"x").unwrap_err();
        assert!(format!("{e:#}").contains("does not exist"), "{e:#}");
        fs::write(dir.path().join("file"), b"").unwrap();
        let e = write(&dir.path().join("file/a.txt"), b"x").unwrap_err();
        assert!(format!("{e:#}").contains("is not a folder"), "{e:#}");
    }
}
