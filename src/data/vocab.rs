//! The word vocabulary: words ranked by training-set frequency, as Keras's `imdb.get_word_index`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::tokenize::for_each_token;
use super::Preprocessing;

/// A small, fast, non-cryptographic hasher (the FxHash mix) for the hot word-count and lookup
/// maps; the keys are local data, so hash flooding is no concern and SipHash's cost buys nothing.
#[derive(Default, Clone, Copy)]
pub struct WordHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl WordHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for WordHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            self.add(u64::from_le_bytes(b));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A HashMap keyed by words, using [`WordHasher`].
pub type WordMap<V> = HashMap<String, V, BuildHasherDefault<WordHasher>>;

/// Words in rank order (`words[0]` has rank 1) with a word -> rank index for encoding.
#[derive(Clone, Debug, Default)]
pub struct Vocabulary {
    words: Vec<String>,
    rank: WordMap<u32>,
}

impl PartialEq for Vocabulary {
    fn eq(&self, other: &Self) -> bool {
        // The index is derived from `words`.
        self.words == other.words
    }
}

/// Adds the token counts of `texts` to `counts`, allocating only for words not seen before.
fn count_into<'a>(counts: &mut WordMap<u64>, texts: impl IntoIterator<Item = &'a str>) {
    for text in texts {
        for_each_token(text, |tok| {
            if let Some(c) = counts.get_mut(tok) {
                *c += 1;
            } else {
                counts.insert(tok.to_string(), 1);
            }
        });
    }
}

/// Runs `work` on the first and second half of `texts`, the second on a scoped thread.
fn on_two_threads<'a, T: Send>(texts: &[&'a str], work: impl Fn(&[&'a str]) -> T + Sync) -> (T, T) {
    let (first, second) = texts.split_at(texts.len() / 2);
    std::thread::scope(|s| {
        let other = s.spawn(|| work(second));
        let a = work(first);
        // A panic in the worker can only be a bug here; propagate it.
        let b = other
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
        (a, b)
    })
}

/// Texts as local word ids, with the local words and their counts.
struct Interned {
    words: Vec<String>,
    counts: Vec<u64>,
    seqs: Vec<Vec<u32>>,
}

/// Tokenises `texts` once, giving each distinct token a local id in order of first appearance.
fn intern(texts: &[&str]) -> Interned {
    let mut index: WordMap<u32> = WordMap::default();
    let mut words: Vec<String> = Vec::new();
    let mut counts: Vec<u64> = Vec::new();
    let mut seqs = Vec::with_capacity(texts.len());
    for text in texts {
        let mut seq = Vec::with_capacity(text.len() / 5);
        for_each_token(text, |tok| {
            let id = match index.get(tok) {
                Some(&i) => i,
                None => {
                    let i = words.len() as u32;
                    index.insert(tok.to_string(), i);
                    words.push(tok.to_string());
                    counts.push(0);
                    i
                }
            };
            counts[id as usize] += 1;
            seq.push(id);
        });
        seqs.push(seq);
    }
    Interned {
        words,
        counts,
        seqs,
    }
}

impl Vocabulary {
    /// Counts tokens over `texts` (the training texts only) and ranks them by descending count, ties
    /// by ascending token (code-point order). Keeps every word. Counting runs on two threads.
    pub fn build<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let texts: Vec<&str> = texts.into_iter().collect();
        let (a, b) = on_two_threads(&texts, |part| {
            let mut c = WordMap::default();
            count_into(&mut c, part.iter().copied());
            c
        });
        let (mut merged, rest) = if a.len() >= b.len() { (a, b) } else { (b, a) };
        for (w, c) in rest {
            *merged.entry(w).or_insert(0) += c;
        }
        Self::from_counts(merged)
    }

    /// Like [`Vocabulary::build`], and also returns each text's tokens as 1-based ranks in the
    /// returned (full) vocabulary, so the training texts are tokenised once, not twice.
    pub fn build_with_ranks(texts: &[&str]) -> (Self, Vec<Vec<u32>>) {
        let (a, b) = on_two_threads(texts, intern);
        let mut merged: WordMap<u64> =
            WordMap::with_capacity_and_hasher(a.words.len().max(b.words.len()), Default::default());
        for part in [&a, &b] {
            for (w, &c) in part.words.iter().zip(&part.counts) {
                if let Some(t) = merged.get_mut(w.as_str()) {
                    *t += c;
                } else {
                    merged.insert(w.clone(), c);
                }
            }
        }
        let vocab = Self::from_counts(merged);
        let mut seqs = Vec::with_capacity(texts.len());
        for part in [a, b] {
            // Every interned word was counted, so it has a rank.
            let to_rank: Vec<u32> = part
                .words
                .iter()
                .map(|w| vocab.rank.get(w.as_str()).copied().unwrap_or(0))
                .collect();
            for mut seq in part.seqs {
                for x in seq.iter_mut() {
                    *x = to_rank[*x as usize];
                }
                seqs.push(seq);
            }
        }
        (vocab, seqs)
    }

    /// Ranks words by descending count, ties by ascending word.
    fn from_counts(counts: WordMap<u64>) -> Self {
        let mut ranked: Vec<(String, u64)> = counts.into_iter().collect();
        ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Self::from_words(ranked.into_iter().map(|(w, _)| w).collect())
    }

    /// Rebuilds a vocabulary from words in rank order (as stored in a model file).
    pub fn from_words(words: Vec<String>) -> Self {
        let mut rank = WordMap::with_capacity_and_hasher(words.len(), Default::default());
        for (i, w) in words.iter().enumerate() {
            // On a duplicate the first (best) rank wins, as a lookup would find it first.
            rank.entry(w.clone()).or_insert(i as u32 + 1);
        }
        Vocabulary { words, rank }
    }

    /// The words in rank order (`words()[0]` has rank 1).
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// Number of words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// True when there are no words.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The 1-based rank of `word`, if known.
    pub fn rank(&self, word: &str) -> Option<u32> {
        self.rank.get(word).copied()
    }

    /// How many top-ranked words a model with `pre.num_words` keeps: ranks r with r + index_from < num_words.
    fn kept_len(&self, pre: &Preprocessing) -> usize {
        let max_rank = (pre.num_words as u64).saturating_sub(pre.index_from as u64 + 1);
        (max_rank.min(self.words.len() as u64)) as usize
    }

    /// The words a model with `pre.num_words` keeps: those whose id (rank + index_from) < num_words.
    pub fn kept(&self, pre: &Preprocessing) -> Vocabulary {
        Vocabulary::from_words(self.words[..self.kept_len(pre)].to_vec())
    }

    /// The id of one token: rank + index_from, or `oov_id` when unknown or the id is >= num_words.
    pub fn token_id(&self, tok: &str, pre: &Preprocessing) -> u32 {
        match self.rank.get(tok) {
            Some(&r) => rank_to_id(r, pre),
            None => pre.oov_id,
        }
    }

    /// `[start_id]` followed by one id per token of `text` (see [`Vocabulary::token_id`]).
    pub fn encode(&self, text: &str, pre: &Preprocessing) -> Vec<u32> {
        let mut ids = Vec::with_capacity(text.len() / 5 + 1);
        ids.push(pre.start_id);
        for_each_token(text, |tok| ids.push(self.token_id(tok, pre)));
        ids
    }
}

/// The id of the word of 1-based rank `rank`: rank + index_from, or `oov_id` when that id is
/// >= num_words.
pub fn rank_to_id(rank: u32, pre: &Preprocessing) -> u32 {
    let id = rank as u64 + pre.index_from as u64;
    if id < pre.num_words as u64 {
        id as u32
    } else {
        pre.oov_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pre(num_words: usize) -> Preprocessing {
        Preprocessing {
            num_words,
            ..Preprocessing::default()
        }
    }

    #[test]
    fn ranks_by_count_then_token() {
        let v = Vocabulary::build(["b a c a", "c A b d", "zz yy"]);
        // a:3, b:2, c:2, d:1, yy:1, zz:1
        assert_eq!(v.words(), ["a", "b", "c", "d", "yy", "zz"]);
        assert_eq!(v.rank("a"), Some(1));
        assert_eq!(v.rank("zz"), Some(6));
        assert_eq!(v.rank("nope"), None);
    }

    #[test]
    fn ties_use_code_point_order() {
        let v = Vocabulary::build(["é e z Z a"]);
        // z:2 first, then the count-1 words by code point: a < e < é (U+00E9).
        assert_eq!(v.words(), ["z", "a", "e", "é"]);
    }

    #[test]
    fn build_is_independent_of_thread_split() {
        let texts: Vec<String> = (0..101)
            .map(|i| format!("w{} common w{}", i % 7, i % 3))
            .collect();
        let v = Vocabulary::build(texts.iter().map(|s| s.as_str()));
        let mut single = WordMap::default();
        count_into(&mut single, texts.iter().map(|s| s.as_str()));
        let mut ranked: Vec<_> = single.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let expect: Vec<String> = ranked.into_iter().map(|(w, _)| w).collect();
        assert_eq!(v.words(), expect.as_slice());
        assert_eq!(v.words()[0], "common");
    }

    #[test]
    fn build_with_ranks_matches_build_and_encode() {
        let texts: Vec<String> = (0..203)
            .map(|i| format!("w{} The the x{} <br />É{}", i % 11, i % 5, i % 3))
            .collect();
        let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
        let (v, ranks) = Vocabulary::build_with_ranks(&refs);
        assert_eq!(v, Vocabulary::build(refs.iter().copied()));
        assert_eq!(ranks.len(), texts.len());
        for p in [pre(6), pre(12), pre(5000)] {
            for (t, r) in refs.iter().zip(&ranks) {
                let mut ids = vec![p.start_id];
                ids.extend(r.iter().map(|&r| rank_to_id(r, &p)));
                assert_eq!(ids, v.encode(t, &p), "{t}");
            }
        }
        assert!(ranks.iter().flatten().all(|&r| r >= 1));
    }

    #[test]
    fn encode_offsets_start_and_oov() {
        let v = Vocabulary::from_words(vec![
            "the".into(),
            "movie".into(),
            "good".into(),
            "bad".into(),
        ]);
        // ids: the=4, movie=5, good=6, bad=7 with index_from 3.
        assert_eq!(v.encode("The movie good bad", &pre(100)), [1, 4, 5, 6, 7]);
        // num_words 6: ids >= 6 become 2.
        assert_eq!(v.encode("The movie good bad", &pre(6)), [1, 4, 5, 2, 2]);
        // Unknown words -> 2.
        assert_eq!(v.encode("the unknown", &pre(100)), [1, 4, 2]);
        // Empty text -> just the start id.
        assert_eq!(v.encode("", &pre(100)), [1]);
        let custom = Preprocessing {
            index_from: 10,
            start_id: 7,
            oov_id: 9,
            num_words: 13,
            ..Preprocessing::default()
        };
        assert_eq!(v.encode("the movie good x", &custom), [7, 11, 12, 9, 9]);
    }

    #[test]
    fn kept_cuts_at_num_words() {
        let v = Vocabulary::from_words((0..10).map(|i| format!("w{i}")).collect());
        assert_eq!(v.kept(&pre(6)).words(), ["w0", "w1"]); // ids 4, 5
        assert_eq!(v.kept(&pre(4)).len(), 0);
        assert_eq!(v.kept(&pre(1000)).len(), 10);
        // Encoding with the kept vocabulary gives the same ids as with the full one.
        let text = "w0 w1 w2 w9 other";
        let p = pre(7);
        assert_eq!(v.kept(&p).encode(text, &p), v.encode(text, &p));
        assert_eq!(v.encode(text, &p), [1, 4, 5, 6, 2, 2]);
    }
}
