//! Line formats: JSONL (one object per line) and fastText (`__label__NAME ... text`). Blank lines
//! are skipped; a BOM before the first line and CRLF line ends are allowed.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use super::{listing, open_regular, read_line_capped, record, too_long, Format, Place};
use super::{ReadOptions, Record};

/// fastText's label prefix.
const PREFIX: &str = "__label__";

pub(super) struct Lines {
    reader: BufReader<File>,
    buf: Vec<u8>,
    path: PathBuf,
    line: u64,
    /// The JSONL field names; `None` for fastText.
    fields: Option<(String, String)>,
    cap: u64,
}

pub(super) fn open(path: &Path, format: Format, opts: &ReadOptions) -> Result<Lines> {
    Ok(Lines {
        reader: BufReader::with_capacity(1 << 16, open_regular(path)?),
        buf: Vec::new(),
        path: path.to_path_buf(),
        line: 0,
        fields: (format == Format::Jsonl)
            .then(|| (opts.text_column.clone(), opts.label_column.clone())),
        cap: opts.max_record_bytes,
    })
}

impl Lines {
    fn read(&mut self) -> Result<Option<Record>> {
        loop {
            self.line += 1;
            let place = Place {
                file: self.path.clone(),
                line: Some(self.line),
            };
            match read_line_capped(&mut self.reader, &mut self.buf, self.cap)
                .with_context(|| format!("cannot read {place}"))?
            {
                None => return Ok(None),
                Some(false) => return Err(too_long(&place, self.cap)),
                Some(true) => {}
            }
            let mut bytes = &self.buf[..];
            if self.line == 1 {
                bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
            }
            let line = String::from_utf8_lossy(bytes);
            if line.trim().is_empty() {
                continue;
            }
            return match &self.fields {
                Some((text, label)) => json_record(&line, text, label, place),
                None => fasttext_record(&line, place),
            }
            .map(Some);
        }
    }
}

impl Iterator for Lines {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        self.read().transpose()
    }
}

/// The JSON type of `v`, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn json_record(line: &str, text_field: &str, label_field: &str, place: Place) -> Result<Record> {
    let example = r#"like {"text": "...", "label": "..."}"#;
    let value: Value = serde_json::from_str(line).map_err(|e| {
        // serde_json's "at line 1 column N" would be the line within the line.
        let what = e.to_string();
        let what = what.split(" at line ").next().unwrap_or_default();
        let at = match e.column() {
            0 => String::new(),
            c => format!(" at column {c}"),
        };
        anyhow!("{place}: not valid JSON ({what}{at}); each line must be one object, {example}")
    })?;
    let Value::Object(mut obj) = value else {
        bail!(
            "{place}: {}, not an object; each line must be one object, {example}",
            kind(&value)
        );
    };
    let mut take = |name: &str, flag: &str| match obj.remove(name) {
        Some(v) => Ok(v),
        None => {
            let keys: Vec<&String> = obj.keys().collect();
            Err(anyhow!(
                "{place}: no {name:?} field (it has: {}); name the right one with {flag}",
                listing(&keys)
            ))
        }
    };
    let text = take(text_field, "--text-column")?;
    let label = take(label_field, "--label-column")?;
    let text = match text {
        Value::String(s) => s,
        Value::Null => String::new(),
        v => bail!(
            "{place}: the {text_field:?} field is {}, not a string",
            kind(&v)
        ),
    };
    let labels = match label {
        Value::Array(items) => items
            .iter()
            .map(|v| label_name(v, &place))
            .collect::<Result<_>>()?,
        v => vec![label_name(&v, &place)?],
    };
    record(
        text,
        labels.into_iter().flatten().collect(),
        place,
        &|| format!("the {text_field:?} field is empty"),
        &|| format!("the {label_field:?} field is empty"),
    )
}

/// A JSON label as its name: strings trimmed, integers and booleans as written (`1`, `true`);
/// `None` for null.
fn label_name(v: &Value, place: &Place) -> Result<Option<String>> {
    Ok(Some(match v {
        Value::Null => return Ok(None),
        Value::String(s) => s.trim().to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        v => bail!(
            "{place}: the label {v} is {}; labels are names, whole numbers or true/false",
            match v {
                Value::Number(_) => "a fraction",
                v => kind(v),
            }
        ),
    }))
}

/// Every word starting with `__label__` is a label, wherever it is (as fastText reads it); the
/// other words, joined by single spaces, are the text.
fn fasttext_record(line: &str, place: Place) -> Result<Record> {
    let mut labels = Vec::new();
    let mut words = Vec::new();
    for w in line.split_whitespace() {
        match w.strip_prefix(PREFIX) {
            Some(l) => labels.push(l.to_string()),
            None => words.push(w),
        }
    }
    if labels.is_empty() {
        bail!(
            "{place}: no {PREFIX}NAME on this line; fastText lines are {PREFIX}NAME then the \
             text"
        );
    }
    record(
        words.join(" "),
        labels,
        place,
        &|| format!("only {PREFIX} words on the line"),
        &|| format!("a bare {PREFIX} without a name"),
    )
}
