//! Padded id sequences and the prepared dataset (Keras `imdb.load_data` + `pad_sequences`).

use anyhow::{bail, ensure, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::archive::{RawDataset, Review};
use super::ngrams::NgramTable;
use super::vocab::{rank_to_id, Vocabulary};
use super::{Preprocessing, Side};

/// Keras `pad_sequences`: a flat row-major `[seqs.len(), maxlen]` buffer. Truncating `Pre` keeps
/// the last `maxlen` ids, `Post` the first; padding `Pre` puts `value` in front, `Post` at the end.
pub fn pad_sequences(
    seqs: &[Vec<u32>],
    maxlen: usize,
    padding: Side,
    truncating: Side,
    value: u32,
) -> Vec<u32> {
    let mut out = vec![value; seqs.len() * maxlen];
    for (row, s) in out.chunks_exact_mut(maxlen.max(1)).zip(seqs) {
        pad_into(row, s, padding, truncating);
    }
    out
}

/// Writes `seq`, truncated and aligned, into `row` (already filled with the padding value).
fn pad_into(row: &mut [u32], seq: &[u32], padding: Side, truncating: Side) {
    let maxlen = row.len();
    let kept = if seq.len() > maxlen {
        match truncating {
            Side::Pre => &seq[seq.len() - maxlen..],
            Side::Post => &seq[..maxlen],
        }
    } else {
        seq
    };
    match padding {
        Side::Pre => row[maxlen - kept.len()..].copy_from_slice(kept),
        Side::Post => row[..kept.len()].copy_from_slice(kept),
    }
}

/// One split as model input: `x` is `[len, maxlen]` row-major ids, `y` the labels (1.0 = positive).
#[derive(Clone, Debug, PartialEq)]
pub struct Encoded {
    /// Flat `[n, maxlen]` ids.
    pub x: Vec<u32>,
    /// The targets, `[n]` or `[n, K]`: per row 1.0 for positive and 0.0 for negative (two
    /// labels), the class index (more), or K 0/1 values, one per label (multi-label data).
    pub y: Vec<f32>,
    /// Row length.
    pub maxlen: usize,
}

impl Encoded {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.x.len().checked_div(self.maxlen).unwrap_or(0)
    }

    /// True when there are no examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Targets per example: 1, or K for multi-label data.
    pub fn targets(&self) -> usize {
        self.y.len().checked_div(self.len()).unwrap_or(1)
    }

    /// The targets of example `i`.
    pub fn target(&self, i: usize) -> &[f32] {
        let k = self.targets();
        &self.y[i * k..(i + 1) * k]
    }

    /// The ids of example `i` (panics if `i >= len()`, like slice indexing).
    pub fn row(&self, i: usize) -> &[u32] {
        &self.x[i * self.maxlen..(i + 1) * self.maxlen]
    }

    /// The examples at `idx`, in that order (repeats allowed; panics on an index out of range).
    pub fn subset(&self, idx: &[usize]) -> Encoded {
        let mut x = Vec::with_capacity(idx.len() * self.maxlen);
        let mut y = Vec::with_capacity(idx.len() * self.targets());
        for &i in idx {
            x.extend_from_slice(self.row(i));
            y.extend_from_slice(self.target(i));
        }
        Encoded {
            x,
            y,
            maxlen: self.maxlen,
        }
    }

    /// Keras `validation_split`: keeps the first `floor(n * (1 - fraction))` examples in `self` and
    /// returns the rest (the LAST fraction of the data) as the validation set. `fraction` must be in
    /// [0, 1); a positive fraction must leave both parts non-empty.
    pub fn split_off_tail(&mut self, fraction: f64) -> Result<Encoded> {
        ensure!(
            (0.0..1.0).contains(&fraction),
            "validation split {fraction} is out of range: use a fraction in [0, 1), e.g. 0.2"
        );
        let n = self.len();
        let split_at = ((n as f64) * (1.0 - fraction)).floor() as usize;
        if fraction > 0.0 && (split_at == 0 || split_at == n) {
            bail!(
                "validation split {fraction} of {n} examples leaves an empty training or validation \
                 set; use a larger dataset or a different fraction"
            );
        }
        let k = self.targets();
        let tail = Encoded {
            x: self.x.split_off(split_at * self.maxlen),
            y: self.y.split_off(split_at * k),
            maxlen: self.maxlen,
        };
        Ok(tail)
    }
}

/// The prepared data: the kept vocabulary and both splits encoded, shuffled and padded.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Only the words a model with `num_words` keeps, in rank order.
    pub vocab: Vocabulary,
    /// The n-grams of the training data and their ids, when `ngrams` > 1.
    pub ngrams: Option<NgramTable>,
    /// Training split.
    pub train: Encoded,
    /// Test split.
    pub test: Encoded,
}

impl Preprocessing {
    /// Checks the settings this crate can honour (the one check, [`crate::validate`]'s);
    /// errors name the setting and what to use instead.
    pub fn validate(&self) -> Result<()> {
        Ok(crate::validate::preprocessing(self)?)
    }

    /// Encodes one text and pads it to `maxlen` (the row `predict` feeds the model), with the
    /// ids of its n-grams in `ngrams` appended first when the model has a table.
    pub fn encode_padded(
        &self,
        vocab: &Vocabulary,
        ngrams: Option<&NgramTable>,
        text: &str,
    ) -> Vec<u32> {
        let mut row = vec![self.pad_id; self.maxlen];
        let mut ids = vocab.encode(text, self);
        if let Some(t) = ngrams {
            t.extend(&ids.clone(), &mut ids);
        }
        pad_into(&mut row, &ids, self.padding, self.truncating);
        row
    }
}

/// Encodes reviews on two threads (the order of the output matches `reviews`).
fn encode_all(reviews: &[Review], vocab: &Vocabulary, pre: &Preprocessing) -> Vec<Vec<u32>> {
    let (a, b) = reviews.split_at(reviews.len() / 2);
    let enc = |rs: &[Review]| -> Vec<Vec<u32>> {
        rs.iter().map(|r| vocab.encode(&r.text, pre)).collect()
    };
    let (mut ea, eb) = std::thread::scope(|s| {
        let h = s.spawn(|| enc(b));
        let ea = enc(a);
        (
            ea,
            h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)),
        )
    });
    ea.extend(eb);
    ea
}

/// Shuffles `seqs`/`labels` with `rng` (one permutation for both), then pads.
fn shuffle_and_pad(
    seqs: Vec<Vec<u32>>,
    reviews: &[Review],
    pre: &Preprocessing,
    order: &[usize],
) -> Encoded {
    let mut x = vec![pre.pad_id; seqs.len() * pre.maxlen];
    let mut y = Vec::with_capacity(seqs.len());
    for (row, &i) in x.chunks_exact_mut(pre.maxlen).zip(order) {
        pad_into(row, &seqs[i], pre.padding, pre.truncating);
        y.push(if reviews[i].label == 1 { 1.0 } else { 0.0 });
    }
    Encoded {
        x,
        y,
        maxlen: pre.maxlen,
    }
}

/// The orders in which [`prepare`] lays out the train and test reviews for `seed`: one `Pcg64`
/// shuffles train first, then test (as Keras's `load_data` does with one `RandomState`).
/// `evaluate` uses it to pick the same test reviews as training did.
pub fn shuffled_orders(n_train: usize, n_test: usize, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let mut train: Vec<usize> = (0..n_train).collect();
    train.shuffle(&mut rng);
    let mut test: Vec<usize> = (0..n_test).collect();
    test.shuffle(&mut rng);
    (train, test)
}

/// Builds the vocabulary from the train texts, encodes both splits, shuffles each split with ONE
/// `Pcg64` seeded by `seed` (train first, then test, as Keras's `load_data` does with one
/// `RandomState`), then pads. Fails on invalid `pre` or an empty split.
pub fn prepare(raw: &RawDataset, pre: &Preprocessing, seed: u64) -> Result<Dataset> {
    pre.validate()?;
    ensure!(
        !raw.train.is_empty(),
        "no training reviews to prepare: check the data path"
    );
    ensure!(
        !raw.test.is_empty(),
        "no test reviews to prepare: check the data path"
    );
    let texts: Vec<&str> = raw.train.iter().map(|r| r.text.as_str()).collect();
    let (full, ranks) = Vocabulary::build_with_ranks(&texts);
    let vocab = full.kept(pre);
    // The training texts were tokenised while counting; only the ids remain to be mapped.
    let train_seqs: Vec<Vec<u32>> = ranks
        .into_iter()
        .map(|r| {
            let mut ids = Vec::with_capacity(r.len() + 1);
            ids.push(pre.start_id);
            ids.extend(r.into_iter().map(|r| rank_to_id(r, pre)));
            ids
        })
        .collect();
    let mut test_seqs = encode_all(&raw.test, &vocab, pre);
    let mut train_seqs = train_seqs;
    let ngrams = match pre.ngrams {
        1 => None,
        n => {
            let start = NgramTable::keras_start_id(pre.num_words)?;
            let limit = crate::validate::MAX_NGRAM_TABLE_BYTES;
            let table = NgramTable::build(train_seqs.iter().map(Vec::as_slice), n, start, limit)?;
            for s in train_seqs.iter_mut().chain(test_seqs.iter_mut()) {
                table.extend(&s.clone(), s);
            }
            Some(table)
        }
    };
    let (train_order, test_order) = shuffled_orders(raw.train.len(), raw.test.len(), seed);
    let train = shuffle_and_pad(train_seqs, &raw.train, pre, &train_order);
    let test = shuffle_and_pad(test_seqs, &raw.test, pre, &test_order);
    Ok(Dataset {
        vocab,
        ngrams,
        train,
        test,
    })
}
