//! CSV and TSV with a header row, read with the `csv` crate: quoted fields (commas, quotes,
//! newlines), a UTF-8 BOM and CRLF line ends. Quoting is on for TSV too, as Python's csv module
//! and pandas write it.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};

use super::{
    listing, open_regular, read_line_capped, record, too_long, Format, Place, ReadOptions, Record,
};

/// The csv reader buffers ahead of what it has parsed; the cap allows for that.
const SLACK: u64 = 1 << 16;

/// Marks the read error [`Capped`] gives.
#[derive(Debug)]
struct TooLong;

impl std::fmt::Display for TooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("record too long")
    }
}

impl std::error::Error for TooLong {}

/// A reader that fails past `limit` bytes, so one endless quoted field cannot fill memory; the
/// limit moves forward after each record.
struct Capped {
    inner: File,
    read: u64,
    limit: Arc<AtomicU64>,
}

impl Read for Capped {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read > self.limit.load(Ordering::Relaxed) {
            return Err(io::Error::other(TooLong));
        }
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

pub(super) struct Table {
    reader: csv::Reader<Capped>,
    row: csv::ByteRecord,
    path: PathBuf,
    width: usize,
    text: usize,
    label: usize,
    text_column: String,
    label_column: String,
    limit: Arc<AtomicU64>,
    cap: u64,
    crlf: bool,
}

pub(super) fn open(path: &Path, format: Format, opts: &ReadOptions) -> Result<Table> {
    let cap = opts.max_record_bytes;
    let limit = Arc::new(AtomicU64::new(cap + SLACK));
    let crlf = ends_with_crlf(path, cap)?;
    let file = Capped {
        inner: open_regular(path)?,
        read: 0,
        limit: limit.clone(),
    };
    let (sep, other, other_format) = match format {
        Format::Tsv => (b'\t', ',', "csv"),
        _ => (b',', '\t', "tsv"),
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(sep)
        .flexible(true)
        .from_reader(file);
    let first = Place {
        file: path.to_path_buf(),
        line: Some(1),
    };
    let header = reader
        .byte_headers()
        .map_err(|e| csv_error(e, &first, cap))?;
    let columns: Vec<String> = header
        .iter()
        .map(|c| String::from_utf8_lossy(c).trim().to_string())
        .collect();
    if columns.iter().all(|c| c.is_empty()) {
        bail!(
            "{} is empty: a {} file needs a header row naming its columns (like text,label) and \
             one row per text",
            path.display(),
            format.name().to_uppercase()
        );
    }
    let find = |name: &str, flag: &str| -> Result<usize> {
        if let Some(i) = columns.iter().position(|c| c == name) {
            return Ok(i);
        }
        if columns.len() == 1 && columns[0].contains(other) {
            let kind = if other == '\t' { "tab" } else { "comma" };
            bail!(
                "{} looks {kind}-separated: use --format {other_format}",
                path.display()
            );
        }
        bail!(
            "{} has no column {name:?} (its columns: {}); name the right one with {flag}",
            path.display(),
            listing(&columns)
        )
    };
    let text = find(&opts.text_column, "--text-column")?;
    let label = find(&opts.label_column, "--label-column")?;
    Ok(Table {
        reader,
        row: csv::ByteRecord::new(),
        path: path.to_path_buf(),
        width: columns.len(),
        text,
        label,
        text_column: opts.text_column.clone(),
        label_column: opts.label_column.clone(),
        limit,
        cap,
        crlf,
    })
}

/// Whether the first line of `path` ends with CRLF. The csv crate counts a CRLF's line break
/// after the next record has begun, so its record lines are one short in such a file.
fn ends_with_crlf(path: &Path, cap: u64) -> Result<bool> {
    let mut r = BufReader::new(open_regular(path)?);
    let mut line = Vec::new();
    read_line_capped(&mut r, &mut line, cap)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(line.ends_with(b"\r\n"))
}

/// A csv read error as one line: too long (from [`Capped`]) or the file's own read error.
fn csv_error(e: csv::Error, place: &Place, cap: u64) -> anyhow::Error {
    if let csv::ErrorKind::Io(io) = e.kind() {
        if io.get_ref().is_some_and(|x| x.is::<TooLong>()) {
            return too_long(place, cap);
        }
    }
    anyhow!("cannot read {}: {e}", place.file.display())
}

impl Table {
    fn read(&mut self) -> Result<Option<Record>> {
        let next = Place {
            file: self.path.clone(),
            line: Some(self.reader.position().line() + u64::from(self.crlf)),
        };
        let more = self
            .reader
            .read_byte_record(&mut self.row)
            .map_err(|e| csv_error(e, &next, self.cap))?;
        if !more {
            return Ok(None);
        }
        self.limit.store(
            self.reader.position().byte() + self.cap + SLACK,
            Ordering::Relaxed,
        );
        let place = Place {
            line: self.row.position().map(|p| p.line() + u64::from(self.crlf)),
            ..next
        };
        if self.row.len() != self.width {
            bail!(
                "{place}: {} field{}, but the header has {}; fix the row (a field holding the \
                 separator, a quote or a line break must be in double quotes)",
                self.row.len(),
                if self.row.len() == 1 { "" } else { "s" },
                self.width
            );
        }
        let text = String::from_utf8_lossy(&self.row[self.text]).into_owned();
        let label = String::from_utf8_lossy(&self.row[self.label])
            .trim()
            .to_string();
        record(
            text,
            vec![label],
            place,
            &|| format!("the {:?} column is empty", self.text_column),
            &|| format!("the {:?} column is empty", self.label_column),
        )
        .map(Some)
    }
}

impl Iterator for Table {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        self.read().transpose()
    }
}
