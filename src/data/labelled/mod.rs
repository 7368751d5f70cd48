//! The user's own labelled text: CSV, TSV, JSONL and fastText files and folders of class folders,
//! read as a stream of records (text, labels, place), then a label set and a stratified split.
//! The aclImdb layout is only detected here; [`super::load_reviews`] reads it.
//!
//! Reading streams: a record is read, handed on and dropped, so memory is what the caller keeps
//! (see [`read_labelled`]), never the whole file. Text is decoded as UTF-8 lossily, like the
//! aclImdb loader; one record's text is capped at [`MAX_REVIEW_BYTES`].

use std::fmt;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

mod encode;
mod folders;
mod labels;
mod lines;
mod table;

pub use encode::{load_own, OwnSets, OwnSources};
pub use labels::{read_labelled, stratified_split, LabelLists, LabelSet, Labelled, TaskKind};

use super::archive::MAX_REVIEW_BYTES;

/// A data format (the future `--format` flag).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The aclImdb `.tar.gz` or folder (read by [`super::load_reviews`]).
    #[value(name = "aclimdb")]
    AclImdb,
    /// Comma-separated values with a header row.
    Csv,
    /// Tab-separated values with a header row.
    Tsv,
    /// One JSON object per line.
    Jsonl,
    /// `__label__NAME text` lines.
    #[value(name = "fasttext")]
    FastText,
    /// One subfolder per label holding `.txt` files (Keras `text_dataset_from_directory`).
    Folders,
}

impl Format {
    /// The name the `--format` flag takes.
    pub fn name(self) -> &'static str {
        match self {
            Format::AclImdb => "aclimdb",
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::Jsonl => "jsonl",
            Format::FastText => "fasttext",
            Format::Folders => "folders",
        }
    }

    /// The format of `path`: by extension (`.csv`, `.tsv`, `.jsonl`/`.ndjson`, `.tar.gz`/`.tgz`),
    /// a file whose first non-blank line starts with `__label__` (fastText has no fixed
    /// extension: `.txt`, `.train`, `.valid`), gzip bytes (aclImdb), an aclImdb folder, or any
    /// other folder (class folders, checked when read).
    pub fn detect(path: &Path) -> Result<Format> {
        let md = fs::metadata(path).with_context(|| {
            format!(
                "{}: no such file or folder, or it cannot be read; give a file or folder of \
                 labelled text",
                path.display()
            )
        })?;
        if md.is_dir() {
            return Ok(if is_aclimdb_folder(path) {
                Format::AclImdb
            } else {
                Format::Folders
            });
        }
        if !md.is_file() {
            bail!("{}", not_regular(path));
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let by_extension = [
            (".csv", Format::Csv),
            (".tsv", Format::Tsv),
            (".jsonl", Format::Jsonl),
            (".ndjson", Format::Jsonl),
            (".tar.gz", Format::AclImdb),
            (".tgz", Format::AclImdb),
        ];
        if let Some((_, f)) = by_extension.iter().find(|(e, _)| name.ends_with(e)) {
            return Ok(*f);
        }
        let mut head = BufReader::new(open_regular(path)?);
        let mut first = [0u8; 2];
        let n = head
            .read(&mut first)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 2 && first == [0x1f, 0x8b] {
            return Ok(Format::AclImdb);
        }
        let mut head = io::Cursor::new(first[..n].to_vec()).chain(head);
        if starts_with_label(&mut head)
            .with_context(|| format!("cannot read {}", path.display()))?
        {
            return Ok(Format::FastText);
        }
        bail!(
            "{} is in none of the formats imdb-lstm reads (.csv, .tsv, .jsonl, fastText lines \
             starting with __label__, a folder of class folders, or the aclImdb archive); rename \
             it or pass --format",
            path.display()
        )
    }
}

/// A folder in the aclImdb layout: `aclImdb/` inside, or `train|test/pos|neg` below.
fn is_aclimdb_folder(path: &Path) -> bool {
    path.join("aclImdb").is_dir()
        || ["train", "test"]
            .iter()
            .any(|s| ["pos", "neg"].iter().any(|l| path.join(s).join(l).is_dir()))
}

/// Whether the first non-blank text of `r` (after a UTF-8 BOM) starts with `__label__`. Reads
/// byte by byte through blank lines, so a huge file costs no memory.
fn starts_with_label(r: &mut impl Read) -> io::Result<bool> {
    let mut bytes = BufReader::new(r).bytes();
    let mut head = Vec::with_capacity(9);
    for b in bytes.by_ref() {
        let b = b?;
        if !(b.is_ascii_whitespace() || (head.is_empty() && [0xef, 0xbb, 0xbf].contains(&b))) {
            head.push(b);
            break;
        }
    }
    for b in bytes.take(8) {
        head.push(b?);
    }
    Ok(head == b"__label__")
}

/// Where a record came from: the file and its 1-based line (no line for a class-folder file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    /// The file.
    pub file: PathBuf,
    /// The line the record starts on.
    pub line: Option<u64>,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.line {
            Some(n) => write!(f, "{}, line {n}", self.file.display()),
            None => write!(f, "{}", self.file.display()),
        }
    }
}

/// One labelled text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The text (never blank).
    pub text: String,
    /// Its labels, trimmed, never empty (several only for multi-label data).
    pub labels: Vec<String>,
    /// Where it is.
    pub place: Place,
}

/// How to read: the format (detected when `None`), the columns or fields, and the limits.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// The format; `None` detects it from the path.
    pub format: Option<Format>,
    /// The CSV/TSV column or JSONL field holding the text (`text`).
    pub text_column: String,
    /// The CSV/TSV column or JSONL field holding the label (`label`).
    pub label_column: String,
    /// More distinct labels than this is refused as a likely wrong column (1000).
    pub max_labels: usize,
    /// The longest record read, in bytes ([`MAX_REVIEW_BYTES`]).
    pub max_record_bytes: u64,
    /// Multi-label data (`--multi-label`): K sigmoid outputs even where no record has several
    /// labels (fastText lines and JSONL arrays give several without it).
    pub multi_label: bool,
    /// With `--multi-label SEP`: each label value is split on SEP (`sports;news`).
    pub label_separator: Option<String>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            format: None,
            text_column: "text".to_string(),
            label_column: "label".to_string(),
            max_labels: 1000,
            max_record_bytes: MAX_REVIEW_BYTES,
            multi_label: false,
            label_separator: None,
        }
    }
}

/// The records of one file or folder, in file order (class folders: sorted by path). After an
/// error it ends.
pub struct Records {
    inner: Box<dyn Iterator<Item = Result<Record>> + Send>,
    format: Format,
    failed: bool,
    separator: Option<String>,
}

impl Records {
    /// The format being read.
    pub fn format(&self) -> Format {
        self.format
    }
}

impl Iterator for Records {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        if self.failed {
            return None;
        }
        let r = match (self.inner.next(), &self.separator) {
            (Some(Ok(rec)), Some(sep)) => Some(split_labels(rec, sep)),
            (r, _) => r,
        };
        self.failed = matches!(r, Some(Err(_)));
        r
    }
}

/// Opens `path` for streaming its records. The header (CSV/TSV) and the class folders are checked
/// here; each record is checked as it is read.
pub fn records(path: &Path, opts: &ReadOptions) -> Result<Records> {
    let format = match opts.format {
        Some(f) => f,
        None => Format::detect(path)?,
    };
    let is_dir = fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .is_dir();
    let inner: Box<dyn Iterator<Item = Result<Record>> + Send> = match format {
        Format::AclImdb => bail!(
            "{} is the aclImdb data set: it is read by load_reviews, not as labelled text",
            path.display()
        ),
        Format::Folders if !is_dir => bail!(
            "{} is a file, but --format folders reads a folder holding one subfolder per label",
            path.display()
        ),
        Format::Folders => Box::new(folders::open(path, opts)?),
        f if is_dir => bail!(
            "{} is a folder, but --format {} reads a file",
            path.display(),
            f.name()
        ),
        Format::Csv | Format::Tsv => Box::new(table::open(path, format, opts)?),
        Format::Jsonl | Format::FastText => Box::new(lines::open(path, format, opts)?),
    };
    Ok(Records {
        inner,
        format,
        failed: false,
        separator: opts.label_separator.clone().filter(|s| !s.is_empty()),
    })
}

/// `rec` with each label split on `sep`, trimmed, empty parts dropped (`a; b;` is a and b).
fn split_labels(rec: Record, sep: &str) -> Result<Record> {
    let labels: Vec<String> = rec
        .labels
        .iter()
        .flat_map(|l| l.split(sep))
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    if labels.is_empty() {
        bail!(
            "{}: no label ({} split on --multi-label {sep:?} leaves none); fill it in or remove \
             the record",
            rec.place,
            listing(&rec.labels)
        );
    }
    Ok(Record { labels, ..rec })
}

/// The line for a path that is not a regular file.
fn not_regular(path: &Path) -> String {
    format!(
        "{} is not a regular file (a device, pipe or socket, or a link to one); give a file of \
         labelled text",
        path.display()
    )
}

/// Opens `path`, following a link, but only to a regular file: a FIFO would block forever and
/// /dev/zero never end.
fn open_regular(path: &Path) -> Result<fs::File> {
    let md = fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !md.is_file() {
        bail!("{}", not_regular(path));
    }
    fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The line for a record longer than the cap.
fn too_long(place: &Place, cap: u64) -> anyhow::Error {
    anyhow!(
        "{place}: a record longer than {} MiB; this is not text to learn from (or the file is \
         damaged, e.g. a quote never closed)",
        cap >> 20
    )
}

/// Checks the text and labels of a record at `place`; `text_what` and `label_what` say why one
/// is missing (where it was looked for).
fn record(
    text: String,
    labels: Vec<String>,
    place: Place,
    text_what: &dyn Fn() -> String,
    label_what: &dyn Fn() -> String,
) -> Result<Record> {
    if text.trim().is_empty() {
        bail!(
            "{place}: no text ({}); fill it in or remove the record",
            text_what()
        );
    }
    if labels.is_empty() || labels.iter().any(|l| l.is_empty()) {
        bail!(
            "{place}: no label ({}); fill it in or remove the record",
            label_what()
        );
    }
    Ok(Record {
        text,
        labels,
        place,
    })
}

/// Reads one line (with its `\n`) of at most `cap` bytes into `buf`. `Ok(None)` at the end,
/// `Ok(Some(false))` for a longer line (not read to its end).
fn read_line_capped(r: &mut impl BufRead, buf: &mut Vec<u8>, cap: u64) -> io::Result<Option<bool>> {
    buf.clear();
    loop {
        let avail = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok((!buf.is_empty()).then_some(true));
        }
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        // +2: the line end does not count.
        if (buf.len() + take) as u64 > cap + 2 {
            return Ok(Some(false));
        }
        buf.extend_from_slice(&avail[..take]);
        r.consume(take);
        if done {
            return Ok(Some(true));
        }
    }
}

/// `names` for a one-line message: quoted, comma-separated, the first 20 then a count.
fn listing<S: AsRef<str>>(names: &[S]) -> String {
    let mut s: Vec<String> = names
        .iter()
        .take(20)
        .map(|n| format!("{:?}", n.as_ref()))
        .collect();
    if names.len() > 20 {
        s.push(format!("and {} more", names.len() - 20));
    }
    s.join(", ")
}
