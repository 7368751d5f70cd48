//! Own labelled data as model input: the training file (less a stratified held-out test part when
//! no test file is given), the test and validation files, encoded with a vocabulary built from
//! the training part only, as [`crate::data::prepare`] does for aclImdb.
//!
//! Memory is bounded by the encoded sequences: while the training file streams by, each record
//! keeps only the part of its token sequence that padding keeps (at most `maxlen` word ids); the
//! held-out records are known before (a first pass reads the labels alone), so their words are
//! never counted.

use std::path::Path;

use anyhow::{bail, Result};

use super::labels::{read_labelled, stratified_split, LabelLists, LabelSet};
use super::ReadOptions;
use crate::data::sequences::{pad_sequences, shuffled_orders, Dataset, Encoded};
use crate::data::tokenize::for_each_token;
use crate::data::vocab::{rank_to_id, Vocabulary, WordMap};
use crate::data::{Preprocessing, Side};

/// Where the data is: the training file, and optionally the test and validation files.
#[derive(Clone, Copy, Debug)]
pub struct OwnSources<'a> {
    pub train: &'a Path,
    pub test: Option<&'a Path>,
    pub validation: Option<&'a Path>,
}

/// The data ready to train on. `ds.train` and `ds.test` are shuffled by the seed (so `--limit`
/// takes a sample of every label), `y` holds label ids (for two labels: 1.0 = the positive one).
#[derive(Clone, Debug)]
pub struct OwnSets {
    pub ds: Dataset,
    pub validation: Option<Encoded>,
    /// The labels in output order.
    pub label_set: LabelSet,
    /// The test set is a held-out part of the training file.
    pub test_held_out: bool,
}

/// Marks the start id in a kept window (ids are local word ids until the vocabulary exists).
const START: u32 = u32::MAX;

/// Reads `src` with `opts`. Without a test file, `holdout` of each label is held out as the test
/// set (chosen by `seed`). For two labels `positive` names the positive one (default: the second
/// in sorted order).
pub fn load_own(
    src: OwnSources,
    opts: &ReadOptions,
    positive: Option<&str>,
    holdout: f64,
    pre: &Preprocessing,
    seed: u64,
) -> Result<OwnSets> {
    pre.validate()?;
    let what = src.train.display().to_string();
    // Pass 1, only without a test file: the labels alone, to choose the held-out records.
    let held: Option<(LabelLists, Vec<bool>)> = match src.test {
        Some(_) => None,
        None => {
            let d = read_labelled(src.train, opts, None, |_| ())?;
            let (_, out) = stratified_split(&d.labels, holdout, seed)?;
            let mut is_held = vec![false; d.labels.len()];
            for i in out {
                is_held[i] = true;
            }
            Some((d.labels, is_held))
        }
    };
    // Pass 2: each record's kept window of local word ids; counts from training records only.
    let mut index: WordMap<u32> = WordMap::default();
    let (mut words, mut counts): (Vec<String>, Vec<u64>) = (Vec::new(), Vec::new());
    let mut buf: Vec<u32> = Vec::new();
    let mut i = 0usize;
    let d = read_labelled(src.train, opts, None, |text| {
        let counted = held.as_ref().is_none_or(|(_, h)| h.get(i) != Some(&true));
        i += 1;
        buf.clear();
        for_each_token(&text, |tok| {
            let id = match index.get(tok) {
                Some(&id) => id,
                None => {
                    let id = words.len() as u32;
                    index.insert(tok.to_string(), id);
                    words.push(tok.to_string());
                    counts.push(0);
                    id
                }
            };
            if counted {
                counts[id as usize] += 1;
            }
            buf.push(id);
        });
        kept_window(&buf, pre)
    })?;
    drop(index);
    if d.label_set.kind() == super::TaskKind::MultiLabel {
        bail!(
            "{what} gives several labels to some records (multi-label data); this version of \
             imdb-lstm trains on one label per record: keep one label per line"
        );
    }
    if let Some((labels, _)) = &held {
        if *labels != d.labels {
            bail!("{what} changed while it was being read; read it again when it is complete");
        }
    }
    let (label_set, swap) = match positive {
        Some(p) => d.label_set.with_positive(p, &what)?,
        None => (d.label_set.clone(), false),
    };
    let label_of = |lists: &LabelLists, r: usize| -> f32 {
        let id = lists.get(r)[0];
        (if swap { 1 - id } else { id }) as f32
    };

    // The vocabulary: words of the training part by descending count, ties by the word, as
    // `Vocabulary::build` ranks them.
    let mut ranked: Vec<u32> = (0..words.len() as u32)
        .filter(|&w| counts[w as usize] > 0)
        .collect();
    ranked.sort_unstable_by(|&a, &b| {
        counts[b as usize]
            .cmp(&counts[a as usize])
            .then_with(|| words[a as usize].cmp(&words[b as usize]))
    });
    let mut to_id = vec![pre.oov_id; words.len()];
    for (r, &w) in ranked.iter().enumerate() {
        to_id[w as usize] = rank_to_id(r as u32 + 1, pre);
    }
    let full = Vocabulary::from_words(ranked.iter().map(|&w| words[w as usize].clone()).collect());
    drop(words);
    let vocab = full.kept(pre);
    drop(full);

    let (mut train_rows, mut test_rows) = (Vec::new(), Vec::new());
    for (r, window) in d.items.iter().enumerate() {
        let held_out = held.as_ref().is_some_and(|(_, h)| h[r]);
        let row: Vec<u32> = window
            .iter()
            .map(|&w| {
                if w == START {
                    pre.start_id
                } else {
                    to_id[w as usize]
                }
            })
            .collect();
        let y = label_of(&d.labels, r);
        match held_out {
            true => test_rows.push((row, y)),
            false => train_rows.push((row, y)),
        }
    }
    drop(d);
    let read_other = |path: &Path| -> Result<Vec<(Vec<u32>, f32)>> {
        let o = read_labelled(path, opts, Some(&label_set), |t| {
            pre.encode_padded(&vocab, &t)
        })?;
        Ok(o.items
            .into_iter()
            .enumerate()
            .map(|(r, row)| (row, o.labels.get(r)[0] as f32))
            .collect())
    };
    if let Some(t) = src.test {
        test_rows = read_other(t)?;
    }
    let validation = match src.validation {
        Some(v) => Some(padded(read_other(v)?, None, pre)),
        None => None,
    };
    let (train_order, test_order) = shuffled_orders(train_rows.len(), test_rows.len(), seed);
    Ok(OwnSets {
        ds: Dataset {
            vocab,
            train: padded(train_rows, Some(&train_order), pre),
            test: padded(test_rows, Some(&test_order), pre),
        },
        validation,
        label_set,
        test_held_out: src.test.is_none(),
    })
}

/// The ids of `seq` (local word ids) with the start marker in front, cut to `maxlen` as
/// `pad_sequences` cuts: all that padding keeps of the record.
fn kept_window(seq: &[u32], pre: &Preprocessing) -> Box<[u32]> {
    let maxlen = pre.maxlen;
    if seq.len() < maxlen {
        return std::iter::once(START).chain(seq.iter().copied()).collect();
    }
    match pre.truncating {
        Side::Pre => seq[seq.len() - maxlen..].into(),
        Side::Post => std::iter::once(START)
            .chain(seq[..maxlen - 1].iter().copied())
            .collect(),
    }
}

/// Rows (padded when shorter) in `order` (file order when `None`) as one [`Encoded`].
fn padded(rows: Vec<(Vec<u32>, f32)>, order: Option<&[usize]>, pre: &Preprocessing) -> Encoded {
    let n = rows.len();
    let mut x = Vec::with_capacity(n * pre.maxlen);
    let mut y = Vec::with_capacity(n);
    let file_order: Vec<usize>;
    let order = match order {
        Some(o) => o,
        None => {
            file_order = (0..n).collect();
            &file_order
        }
    };
    for &r in order {
        let (row, label) = &rows[r];
        x.extend(pad_sequences(
            std::slice::from_ref(row),
            pre.maxlen,
            pre.padding,
            pre.truncating,
            pre.pad_id,
        ));
        y.push(*label);
    }
    Encoded {
        x,
        y,
        maxlen: pre.maxlen,
    }
}
