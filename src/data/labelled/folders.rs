//! Class folders, as Keras's `text_dataset_from_directory` reads them: each subfolder of the root
//! is a label, and every `.txt` file in it or in folders below it is one text of that label.
//! Other files, hidden entries and files in the root itself are ignored. Links to class folders
//! are followed; links to folders below are not (so a link cannot make a loop); a link to a file
//! is read only if it leads to a regular file.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{open_regular, record, too_long, Place, ReadOptions, Record};

pub(super) struct Folders {
    files: std::vec::IntoIter<(PathBuf, String)>,
    buf: Vec<u8>,
    cap: u64,
}

/// The visible entries of `dir`, sorted by name.
fn entries(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    let mut out = Vec::new();
    for ent in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let ent = ent.with_context(|| format!("cannot list {}", dir.display()))?;
        if !ent.file_name().to_string_lossy().starts_with('.') {
            out.push(ent);
        }
    }
    out.sort_by_key(|e| e.file_name());
    Ok(out)
}

/// Adds the `.txt` files in `dir` and below to `out`, sorted by path.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for ent in entries(dir)? {
        let path = ent.path();
        let ft = ent
            .file_type()
            .with_context(|| format!("cannot read {}", path.display()))?;
        if ft.is_dir() {
            walk(&path, out)?;
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("txt"))
        {
            // A link to a folder is not followed, and not a text.
            if ft.is_symlink() && path.is_dir() {
                continue;
            }
            out.push(path);
        }
    }
    Ok(())
}

pub(super) fn open(root: &Path, opts: &ReadOptions) -> Result<Folders> {
    let mut files = Vec::new();
    let mut classes = 0;
    for ent in entries(root)? {
        let dir = ent.path();
        if !dir.is_dir() {
            continue;
        }
        classes += 1;
        let label = ent.file_name().to_string_lossy().into_owned();
        let mut texts = Vec::new();
        walk(&dir, &mut texts)?;
        if texts.is_empty() {
            bail!(
                "the class folder {} holds no .txt files; put that label's texts in it as .txt \
                 files, or remove the folder",
                dir.display()
            );
        }
        files.extend(texts.into_iter().map(|p| (p, label.clone())));
    }
    if classes == 0 {
        bail!(
            "{} holds no class folders: a folder of labelled text has one subfolder per label, \
             each holding .txt files (like pos/1.txt, neg/2.txt)",
            root.display()
        );
    }
    Ok(Folders {
        files: files.into_iter(),
        buf: Vec::new(),
        cap: opts.max_record_bytes,
    })
}

impl Folders {
    fn read(&mut self, path: PathBuf, label: String) -> Result<Record> {
        let place = Place {
            file: path,
            line: None,
        };
        self.buf.clear();
        open_regular(&place.file)?
            .take(self.cap + 1)
            .read_to_end(&mut self.buf)
            .with_context(|| format!("cannot read {place}"))?;
        if self.buf.len() as u64 > self.cap {
            return Err(too_long(&place, self.cap));
        }
        let text = String::from_utf8_lossy(&self.buf).into_owned();
        record(
            text,
            vec![label],
            place,
            &|| "the file holds no text".to_string(),
            &|| "the class folder has no name".to_string(),
        )
    }
}

impl Iterator for Folders {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        let (path, label) = self.files.next()?;
        Some(self.read(path, label))
    }
}
