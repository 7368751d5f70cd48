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
/// takes a sample of every label), `y` holds label ids (for two labels: 1.0 = the positive one),
/// or for multi-label data K 0/1 targets per record, one per label.
#[derive(Clone, Debug)]
pub struct OwnSets {
    pub ds: Dataset,
    pub validation: Option<Encoded>,
    /// The labels in output order.
    pub label_set: LabelSet,
    /// The test set is a held-out part of the training file.
    pub test_held_out: bool,
}

/// Encoded rows and each row's targets.
type RowsAndTargets = (Vec<Vec<u32>>, Vec<Vec<f32>>);

/// Marks the start id in a kept window (ids are local word ids until the vocabulary exists).
const START: u32 = u32::MAX;

/// Training texts tokenised at a time (a few MB of text).
const CHUNK: usize = 8192;

/// Words as ids in order of first sight, with their counts in the training part.
#[derive(Default)]
struct Interner {
    index: WordMap<u32>,
    words: Vec<String>,
    counts: Vec<u64>,
}

impl Interner {
    fn id(&mut self, word: &str) -> u32 {
        if let Some(&id) = self.index.get(word) {
            return id;
        }
        let id = self.words.len() as u32;
        self.index.insert(word.to_string(), id);
        self.words.push(word.to_string());
        self.counts.push(0);
        id
    }
}

/// The kept windows of `texts` (each with whether its words count) in `global`'s ids: each
/// thread tokenises a part into its own ids, then they are mapped in part order. Ids differ with
/// the thread count, the words and counts do not (and the vocabulary ranks by those alone).
fn intern_chunk(
    texts: &[(String, bool)],
    global: &mut Interner,
    pre: &Preprocessing,
    threads: usize,
) -> Vec<Box<[u32]>> {
    let per = texts.len().div_ceil(threads).max(1);
    let parts: Vec<(Interner, Vec<Box<[u32]>>)> = std::thread::scope(|s| {
        let handles: Vec<_> = texts
            .chunks(per)
            .map(|part| {
                s.spawn(move || {
                    let (mut local, mut buf) = (Interner::default(), Vec::new());
                    let windows: Vec<Box<[u32]>> = part
                        .iter()
                        .map(|(text, counted)| {
                            buf.clear();
                            for_each_token(text, |tok| {
                                let id = local.id(tok);
                                local.counts[id as usize] += *counted as u64;
                                buf.push(id);
                            });
                            kept_window(&buf, pre)
                        })
                        .collect();
                    (local, windows)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut out = Vec::with_capacity(texts.len());
    for (local, windows) in parts {
        let to_global: Vec<u32> = local
            .words
            .iter()
            .zip(&local.counts)
            .map(|(w, &c)| {
                let id = global.id(w);
                global.counts[id as usize] += c;
                id
            })
            .collect();
        for mut w in windows {
            for x in w.iter_mut().filter(|x| **x != START) {
                *x = to_global[*x as usize];
            }
            out.push(w);
        }
    }
    out
}

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
    // Records keep only the window padding keeps, so the n-grams of whole texts are not there.
    if pre.ngrams > 1 {
        bail!(
            "--ngrams {} (the fasttext model's bigrams): this version computes n-grams for the \
             IMDB reviews only; on {what} use --ngrams 1 or another --arch",
            pre.ngrams
        );
    }
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
    // Pass 2: each record's kept window of word ids; counts from training records only. The
    // texts are tokenised a chunk at a time on all cores.
    let mut global = Interner::default();
    let mut pending: Vec<(String, bool)> = Vec::new();
    let mut windows: Vec<Box<[u32]>> = Vec::new();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut i = 0usize;
    let d = read_labelled(src.train, opts, None, |text| {
        let counted = held.as_ref().is_none_or(|(_, h)| h.get(i) != Some(&true));
        i += 1;
        pending.push((text, counted));
        if pending.len() == CHUNK {
            windows.extend(intern_chunk(&pending, &mut global, pre, threads));
            pending.clear();
        }
    })?;
    windows.extend(intern_chunk(&pending, &mut global, pre, threads));
    drop(pending);
    let Interner {
        index,
        words,
        counts,
    } = global;
    drop(index);
    if let Some((labels, _)) = &held {
        if *labels != d.labels {
            bail!("{what} changed while it was being read; read it again when it is complete");
        }
    }
    let (label_set, swap) = match positive {
        Some(p) => d.label_set.with_positive(p, &what)?,
        None => (d.label_set.clone(), false),
    };
    let multi = label_set.kind() == super::TaskKind::MultiLabel;
    let k = label_set.names().len();
    // Record r's targets: K 0/1 values (multi-label), else its label id.
    let targets_of = |lists: &LabelLists, r: usize| -> Vec<f32> {
        let ids = lists.get(r);
        if multi {
            let mut t = vec![0.0; k];
            for &id in ids {
                t[id as usize] = 1.0;
            }
            t
        } else {
            vec![(if swap { 1 - ids[0] } else { ids[0] }) as f32]
        }
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

    // The rows go straight from the kept windows into the padded buffers, in the seed's order.
    let ys: Vec<Vec<f32>> = (0..d.labels.len())
        .map(|r| targets_of(&d.labels, r))
        .collect();
    let (train_idx, held_idx): (Vec<usize>, Vec<usize>) =
        (0..windows.len()).partition(|&r| !held.as_ref().is_some_and(|(_, h)| h[r]));
    let to_final = |w: u32| match w {
        START => pre.start_id,
        w => to_id[w as usize],
    };
    let read_other = |path: &Path| -> Result<RowsAndTargets> {
        let o = read_labelled(path, opts, Some(&label_set), |t| {
            pre.encode_padded(&vocab, None, &t)
        })?;
        // The ids are `label_set`'s already (positive second): no swap.
        let ys = (0..o.labels.len())
            .map(|r| match multi {
                true => targets_of(&o.labels, r),
                false => vec![o.labels.get(r)[0] as f32],
            })
            .collect();
        Ok((o.items, ys))
    };
    let test_file = src.test.map(read_other).transpose()?;
    let validation = match src.validation {
        Some(v) => {
            let (rows, ys) = read_other(v)?;
            let order: Vec<usize> = (0..rows.len()).collect();
            Some(padded(&rows, &ys, &order, pre, |w| w))
        }
        None => None,
    };
    let n_test = test_file.as_ref().map_or(held_idx.len(), |t| t.1.len());
    let (train_order, test_order) = shuffled_orders(train_idx.len(), n_test, seed);
    let train_order: Vec<usize> = train_order.iter().map(|&o| train_idx[o]).collect();
    let train = padded(&windows, &ys, &train_order, pre, to_final);
    let test = match &test_file {
        Some((rows, ys)) => padded(rows, ys, &test_order, pre, |w| w),
        None => {
            let order: Vec<usize> = test_order.iter().map(|&o| held_idx[o]).collect();
            padded(&windows, &ys, &order, pre, to_final)
        }
    };
    drop(d);
    Ok(OwnSets {
        ds: Dataset {
            vocab,
            ngrams: None,
            train,
            test,
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

/// Rows `order` of `rows` (ids mapped by `map`, padded when shorter) with their targets `ys`,
/// as one [`Encoded`].
fn padded<R: AsRef<[u32]>>(
    rows: &[R],
    ys: &[Vec<f32>],
    order: &[usize],
    pre: &Preprocessing,
    map: impl Fn(u32) -> u32,
) -> Encoded {
    let mut x = vec![pre.pad_id; order.len() * pre.maxlen];
    for (out, &r) in x.chunks_exact_mut(pre.maxlen).zip(order) {
        let row: Vec<u32> = rows[r].as_ref().iter().map(|&w| map(w)).collect();
        out.copy_from_slice(&pad_sequences(
            std::slice::from_ref(&row),
            pre.maxlen,
            pre.padding,
            pre.truncating,
            pre.pad_id,
        ));
    }
    Encoded {
        x,
        y: order.iter().flat_map(|&r| ys[r].iter().copied()).collect(),
        maxlen: pre.maxlen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any thread count gives the same windows (as words) and the same counts.
    #[test]
    fn chunks_tokenise_alike_on_any_thread_count() {
        let mut texts: Vec<(String, bool)> = (0..50)
            .map(|i| {
                (
                    format!("w{} x y{} w{} the end {i}", i % 7, i % 3, i % 11),
                    i % 4 != 0,
                )
            })
            .collect();
        texts.push(("short one".into(), true));
        let pre = Preprocessing {
            maxlen: 5,
            ..Preprocessing::default()
        };
        let words_of = |threads| {
            let mut g = Interner::default();
            let mut windows = intern_chunk(&texts[..20], &mut g, &pre, threads);
            windows.extend(intern_chunk(&texts[20..], &mut g, &pre, threads));
            let shown: Vec<Vec<String>> = windows
                .iter()
                .map(|w| {
                    w.iter()
                        .map(|&x| match x {
                            START => "<start>".to_string(),
                            x => g.words[x as usize].clone(),
                        })
                        .collect()
                })
                .collect();
            let mut counts: Vec<(String, u64)> = g.words.into_iter().zip(g.counts).collect();
            counts.sort();
            (shown, counts)
        };
        let one = words_of(1);
        // 7 words, maxlen 5: the last 5 are kept (truncating pre), the start marker dropped.
        assert_eq!(one.0[0], ["y0", "w0", "the", "end", "0"]);
        assert_eq!(
            one.1.iter().find(|(w, _)| w == "x"),
            Some(&("x".into(), 37))
        );
        assert_eq!(one.0[50], ["<start>", "short", "one"]);
        assert_eq!(words_of(3), one);
        assert_eq!(words_of(7), one);
    }
}
