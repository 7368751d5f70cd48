//! `export`: a model for other runtimes, in a folder a Python user needs nothing else of ours
//! for: `model.onnx` ([`onnx`]), `preprocessing.json` (text to ids: [`preprocessing_json`]) and
//! a `README.md` showing how to run it with onnxruntime.

pub mod onnx;

use crate::atomic::TempFile;
use crate::data::ngrams::{NgramFile, NgramTable};
use crate::data::{Preprocessing, Side, Vocabulary, TOKENIZER_NAME, TOKENIZER_VERSION};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::io::Write;
use std::path::Path;

pub const MODEL_ONNX: &str = "model.onnx";
pub const PREPROCESSING_JSON: &str = "preprocessing.json";
pub const README_MD: &str = "README.md";

/// `<br />`, `<br/>`, `<br>` (b and r in any ASCII case): each is replaced by a space.
pub const LINE_BREAK_PATTERN: &str = "<[bB][rR](?: ?/)?>";
/// The tokens of the lowercased text: runs of letters, digits and apostrophes that start and end
/// with a letter or digit (Unicode's Alphabetic property and general category N, as Rust's
/// `char::is_alphanumeric`). Matching it left to right gives the same tokens as cutting the
/// maximal runs of letters, digits and `'` and stripping their outer apostrophes.
pub const TOKEN_PATTERN: &str =
    "[\\p{Alphabetic}\\p{N}](?:[\\p{Alphabetic}\\p{N}']*[\\p{Alphabetic}\\p{N}])?";

/// The tokeniser rule in words.
const TOKENIZER_RULE: &str = "Replace every <br />, <br/> and <br> (b and r in any ASCII case) \
    by a space; lowercase the text (Unicode, as Python's str.lower); the tokens are the maximal \
    runs of letters, digits (Unicode alphabetic or numeric characters) and apostrophes ('), \
    with their leading and trailing apostrophes removed; runs of apostrophes alone are no \
    tokens. Everything else separates tokens.";

/// preprocessing.json: everything needed to turn raw text into the model's `input_ids`.
#[derive(Serialize)]
struct PreprocessingJson<'a> {
    format: &'static str,
    format_version: u32,
    tokenizer: Tokenizer,
    /// How a text becomes ids, step by step.
    encoding: &'static str,
    /// The word of id `first_word_id + i` is `vocabulary[i]`.
    first_word_id: u32,
    vocabulary: &'a [String],
    num_words: usize,
    special_ids: SpecialIds,
    maxlen: usize,
    padding: Side,
    truncating: Side,
    /// The n-gram table (fasttext's `--ngrams`), when the model reads n-grams.
    ngrams: Option<NgramFile>,
    labels: &'a [String],
    output: String,
}

#[derive(Serialize)]
struct Tokenizer {
    name: &'static str,
    version: u32,
    rule: &'static str,
    line_break_pattern: &'static str,
    token_pattern: &'static str,
    pattern_syntax: &'static str,
}

#[derive(Serialize)]
struct SpecialIds {
    pad: u32,
    start: u32,
    oov: u32,
}

/// preprocessing.json's text for a model trained with `pre` on `vocabulary` (words in rank
/// order, as the model file keeps them) with classes `labels` (`multi_label`: a text may have
/// several, each with its own sigmoid output).
pub fn preprocessing_json(
    pre: &Preprocessing,
    vocabulary: &[String],
    ngrams: Option<&NgramTable>,
    labels: &[String],
    multi_label: bool,
) -> Result<String> {
    if pre.tokenizer != TOKENIZER_NAME || pre.tokenizer_version != TOKENIZER_VERSION {
        bail!(
            "the model's tokeniser is {} version {}; this imdb-lstm describes only {TOKENIZER_NAME} \
             version {TOKENIZER_VERSION}",
            pre.tokenizer,
            pre.tokenizer_version
        );
    }
    let kept = Vocabulary::from_words(vocabulary.to_vec()).kept(pre);
    let output = match labels {
        _ if multi_label => format!(
            "probabilities: float32 [batch, {}], each label's own probability, in labels' \
             order; a text has every label whose probability is at least the threshold (0.5)",
            labels.len()
        ),
        [neg, pos] => format!(
            "probabilities: float32 [batch, 1], the probability of \"{pos}\" (else \"{neg}\")"
        ),
        _ => format!(
            "probabilities: float32 [batch, {}], one probability per label, in labels' order",
            labels.len()
        ),
    };
    let json = PreprocessingJson {
        format: "imdb-lstm-preprocessing",
        format_version: 1,
        tokenizer: Tokenizer {
            name: TOKENIZER_NAME,
            version: TOKENIZER_VERSION,
            rule: TOKENIZER_RULE,
            line_break_pattern: LINE_BREAK_PATTERN,
            token_pattern: TOKEN_PATTERN,
            pattern_syntax: "Unicode property classes (\\p{...}): Python's `regex` module, \
                JavaScript with the u flag, Rust's regex crate; Python's `re` lacks them",
        },
        encoding: "ids = [start] + [id of each token: first_word_id + its index in vocabulary, \
            or oov when it is not there]; when ngrams is given (n-grams of 2 to ngrams.n ids, \
            their tuples flat in ngrams.tuples, ngrams.counts[k] of length k + 2, numbered from \
            ngrams.start_id in that order): for each length 2..n, for each window of that many \
            consecutive word ids (start marker included) from left to right, \
            append the n-gram's id when the table has it; if len(ids) > maxlen keep the last \
            maxlen (truncating \"pre\") or the first maxlen (\"post\"); then fill with pad up \
            to maxlen, in front (padding \"pre\") or at the end (\"post\")",
        first_word_id: pre.index_from + 1,
        vocabulary: kept.words(),
        num_words: pre.num_words,
        special_ids: SpecialIds {
            pad: pre.pad_id,
            start: pre.start_id,
            oov: pre.oov_id,
        },
        maxlen: pre.maxlen,
        padding: pre.padding,
        truncating: pre.truncating,
        ngrams: ngrams.map(NgramTable::to_file),
        labels,
        output,
    };
    Ok(serde_json::to_string_pretty(&json)? + "\n")
}

/// The README.md that goes into the folder.
pub fn readme(labels: &[String], multi_label: bool) -> String {
    let answer = match labels {
        _ if multi_label => "`probabilities` is `[batch, K]`: each label's own probability, in \
              the order of `labels` in preprocessing.json; a text has every label at 0.5 or \
              more (or at the threshold you choose)."
            .to_string(),
        [neg, pos] => format!(
            "`probabilities` is `[batch, 1]`: the probability that the text is \"{pos}\" \
             (below 0.5: \"{neg}\")."
        ),
        _ => "`probabilities` is `[batch, K]`: one probability per label, in the order of \
              `labels` in preprocessing.json."
            .to_string(),
    };
    format!(
        r#"# A text classifier exported by imdb-lstm

- `model.onnx` (ONNX opset {opset}): input `input_ids`, int64 `[batch, maxlen]`; output
  `probabilities`, float32. {answer}
- `preprocessing.json`: how a text becomes `input_ids` (the tokeniser rule in words and as
  regular expressions, the vocabulary, the special ids, maxlen and the padding sides) and the
  label names.

## Run it from Python

```sh
pip install onnxruntime numpy regex
```

```python
import json
import numpy as np
import onnxruntime as ort
import regex  # the token pattern uses Unicode classes (\p{{...}}), which `re` lacks

pre = json.load(open("preprocessing.json", encoding="utf-8"))
tok = pre["tokenizer"]
line_break = regex.compile(tok["line_break_pattern"])
token = regex.compile(tok["token_pattern"])
word_id = {{w: pre["first_word_id"] + i for i, w in enumerate(pre["vocabulary"])}}
ids_of = pre["special_ids"]
maxlen = pre["maxlen"]

def encode(text):
    words = token.findall(line_break.sub(" ", text).lower())
    ids = [ids_of["start"]] + [word_id.get(w, ids_of["oov"]) for w in words]
    if len(ids) > maxlen:
        ids = ids[-maxlen:] if pre["truncating"] == "pre" else ids[:maxlen]
    pad = [ids_of["pad"]] * (maxlen - len(ids))
    return pad + ids if pre["padding"] == "pre" else ids + pad

session = ort.InferenceSession("model.onnx")
texts = ["A wonderful, moving film.", "Dull and far too long.<br /><br />Avoid."]
x = np.array([encode(t) for t in texts], dtype=np.int64)
(probabilities,) = session.run(None, {{"input_ids": x}})
print(probabilities)
```
"#,
        opset = onnx::OPSET,
    )
}

/// Writes `files` (name, bytes) into the folder `out`, all or nothing: each goes to a temp file
/// first, and only when all are written are they renamed into place. `out` is created when
/// missing; one that holds anything is refused unless `force`, which replaces these files in
/// it (and leaves the rest alone).
pub fn write_folder(out: &Path, force: bool, files: &[(&str, &[u8])]) -> Result<()> {
    let shown = out.display();
    let created = match std::fs::metadata(out) {
        Ok(md) if !md.is_dir() => {
            bail!("--out {shown} is a file, not a folder: choose a folder")
        }
        Ok(_) => {
            let mut entries = std::fs::read_dir(out)
                .with_context(|| format!("cannot read the folder --out {shown}"))?;
            if !force && entries.next().is_some() {
                bail!(
                    "--out {shown} already exists and is not empty: choose a new folder, or add \
                     --force to replace {} in it",
                    names(files)
                );
            }
            false
        }
        Err(_) => {
            std::fs::create_dir_all(out)
                .with_context(|| format!("cannot create the folder --out {shown}"))?;
            true
        }
    };
    let written = write_all(out, files);
    if written.is_err() && created {
        // Leave no empty folder behind (remove_dir refuses one that holds anything).
        let _ = std::fs::remove_dir(out);
    }
    written
}

fn write_all(out: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    let mut temps = Vec::with_capacity(files.len());
    for (name, bytes) in files {
        let mut tmp = TempFile::create(&out.join(name))?;
        if let Err(e) = tmp.file().write_all(bytes) {
            return Err(tmp.write_error(e));
        }
        temps.push(tmp);
    }
    temps.into_iter().try_for_each(TempFile::commit)
}

/// `a, b and c`
fn names(files: &[(&str, &[u8])]) -> String {
    let n: Vec<&str> = files.iter().map(|f| f.0).collect();
    match n.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => n.join(""),
    }
}
