//! fastText's n-gram features as Keras's examples/imdb_fasttext.py adds them
//! (`create_ngram_set`, `add_ngram`): the n-grams (n = 2..=`ngram_range`) of the training
//! sequences get ids after the words, and each sequence gets the ids of its n-grams that are
//! in the table appended after its words, before padding.
//!
//! Ids: Keras numbers the n-grams from `start_index = max_features + 1`, so id `num_words` is
//! never used, and sets the Embedding's `input_dim` to the largest id + 1. We keep that layout
//! ([`NgramTable::keras_start_id`]): the Embedding has `num_words + 1 + len` rows, exactly the
//! parameter count of Keras's model for the same table (the unused row never receives a
//! gradient; it costs one row).
//!
//! Order: Keras numbers the n-grams in the iteration order of a Python set, an artefact of its
//! hash table. We number them sorted: bigrams first, then trigrams, ..., each in lexicographic
//! order of their ids. The table then depends only on the set of training sequences, not on
//! their order (the shuffle seed, `--limit`'s choice of file order), and a stored table can be
//! checked (strictly increasing) when read back.
//!
//! Padding after the n-grams: Keras pads with `pad_sequences(truncating='pre')`, which keeps the
//! END of the extended sequence, so a long review loses words from its front (and, with many
//! n-grams, all its words); [`super::pad_sequences`] on the extended sequences does the same.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use anyhow::{bail, ensure, Result};
use serde::{Deserialize, Serialize};

/// Hashes the packed n-gram keys: one multiply-xorshift round (the murmur3 finaliser), so that
/// every input bit reaches the low bits the map indexes with (packed keys differ mostly in
/// their high bits); no SipHash, since the keys are local data, not an attacker's.
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }

    #[inline]
    fn write_u64(&mut self, k: u64) {
        let mut h = self.0 ^ k;
        h = (h ^ (h >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        h = (h ^ (h >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        self.0 = h ^ (h >> 33);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type KeyMap = HashMap<u64, u32, BuildHasherDefault<KeyHasher>>;

/// Bytes of a map with room for `cap` entries: hashbrown's layout, a power-of-two number of
/// buckets at most 7/8 full, each a (key, id) pair and one control byte.
fn map_bytes(cap: usize) -> usize {
    let buckets = (cap.saturating_mul(8) / 7).max(1).next_power_of_two();
    buckets.saturating_mul(std::mem::size_of::<(u64, u32)>() + 1)
}

/// Bytes of a table of `len` n-grams in maps of capacity `caps`: the maps, and the sorted keys.
fn table_bytes(caps: impl Iterator<Item = usize>, len: usize) -> usize {
    caps.map(map_bytes)
        .fold(len.saturating_mul(8), usize::saturating_add)
}

/// The n-grams of a training set and their ids. Built by [`NgramTable::build`], applied by
/// [`NgramTable::extend`]; stored (serde) as its flat tuples in id order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "NgramFile", into = "NgramFile")]
pub struct NgramTable {
    /// Keras's `ngram_range`: n-grams of 2..=n ids.
    n: usize,
    /// Id of the first n-gram; every word id is below it.
    start_id: u32,
    /// Bits of one word id in a packed key.
    bits: u32,
    /// Per length (index `len - 2`): the packed keys in id order (ascending).
    keys: Vec<Vec<u64>>,
    /// Per length: packed key -> id.
    maps: Vec<KeyMap>,
}

/// The stored form: `tuples` holds `counts[0]` bigrams (2 ids each), then `counts[1]` trigrams
/// (3 ids each), ..., in id order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NgramFile {
    pub n: usize,
    pub start_id: u32,
    pub counts: Vec<usize>,
    pub tuples: Vec<u32>,
}

impl NgramTable {
    /// Keras's first n-gram id for `num_words` words: `num_words + 1`.
    pub fn keras_start_id(num_words: usize) -> Result<u32> {
        match u32::try_from(num_words) {
            Ok(w) if w < u32::MAX => Ok(w + 1),
            _ => bail!("num_words {num_words} leaves no ids for n-grams"),
        }
    }

    /// The largest `n` whose n-grams of ids below `start_id` pack into a 64-bit key.
    pub fn max_n(start_id: u32) -> usize {
        64 / bits_for(start_id) as usize
    }

    /// Keras's `create_ngram_set` over `seqs` (word ids, each below `start_id`, before
    /// padding), for every length 2..=`n`, numbered from `start_id` (see the module's note on
    /// the order). Refuses, before allocating past it, a table that would take more than
    /// `limit` bytes.
    pub fn build<'a>(
        seqs: impl IntoIterator<Item = &'a [u32]>,
        n: usize,
        start_id: u32,
        limit: usize,
    ) -> Result<NgramTable> {
        let bits = check_range(n, start_id)?;
        let mut maps: Vec<KeyMap> = (2..=n).map(|_| KeyMap::default()).collect();
        let mut seen = 0usize;
        for (i, seq) in seqs.into_iter().enumerate() {
            if let Some(&id) = seq.iter().find(|&&id| id >= start_id) {
                bail!(
                    "sequence {i} holds id {id}; n-grams are built from word ids below {start_id}"
                );
            }
            for (k, len) in (2..=n).enumerate() {
                for w in seq.windows(len) {
                    let key = pack(w, bits);
                    let map = &maps[k];
                    if map.len() == map.capacity() && !map.contains_key(&key) {
                        // The next insert doubles this map: refuse before it would pass the limit.
                        let caps = maps.iter().enumerate().map(|(j, m)| {
                            if j == k {
                                m.capacity().max(4) * 2
                            } else {
                                m.capacity()
                            }
                        });
                        let need = table_bytes(caps, seen + 1);
                        if need > limit {
                            bail!(too_big(n, seen, need, limit, Some(i)));
                        }
                        let len = maps[k].len();
                        maps[k].reserve(len.max(4));
                    }
                    if maps[k].insert(key, 0).is_none() {
                        seen += 1;
                    }
                }
            }
        }
        let need = table_bytes(maps.iter().map(|m| m.capacity()), seen);
        if need > limit {
            bail!(too_big(n, seen, need, limit, None));
        }
        ensure!(
            start_id as u64 + seen as u64 <= u32::MAX as u64,
            "{seen} n-grams after id {start_id} do not fit in 32-bit ids"
        );
        let mut next = start_id;
        let mut keys = Vec::with_capacity(maps.len());
        for map in &mut maps {
            let mut sorted: Vec<u64> = map.keys().copied().collect();
            sorted.sort_unstable();
            for key in &sorted {
                *map.get_mut(key).expect("a key of this map") = next;
                next += 1;
            }
            keys.push(sorted);
        }
        Ok(NgramTable {
            n,
            start_id,
            bits,
            keys,
            maps,
        })
    }

    /// Keras's `ngram_range`.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The first n-gram's id.
    pub fn start_id(&self) -> u32 {
        self.start_id
    }

    /// Number of n-grams.
    pub fn len(&self) -> usize {
        self.keys.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The Embedding's `input_dim` for this table: one past the largest id.
    pub fn input_dim(&self) -> usize {
        self.start_id as usize + self.len()
    }

    /// Bytes the table holds in memory (the maps and the sorted keys).
    pub fn bytes(&self) -> usize {
        table_bytes(self.maps.iter().map(|m| m.capacity()), self.len())
    }

    /// Keras's `add_ngram` for one sequence: appends to `out` the ids of `seq`'s n-grams that
    /// are in the table, the bigrams in order, then the trigrams, .... (Keras's trigram loop
    /// also slides over the bigram ids it has just appended; those windows are never in the
    /// table, which holds word ids only, so the result is the same.) Windows holding an id
    /// at or above `start_id` are in no table and are skipped.
    pub fn extend(&self, seq: &[u32], out: &mut Vec<u32>) {
        for (k, map) in self.maps.iter().enumerate() {
            for w in seq.windows(k + 2) {
                if w.iter().all(|&id| id < self.start_id) {
                    if let Some(&id) = map.get(&pack(w, self.bits)) {
                        out.push(id);
                    }
                }
            }
        }
    }

    /// `seq` followed by its n-gram ids (Keras's `add_ngram` for one sequence).
    pub fn add(&self, seq: &[u32]) -> Vec<u32> {
        let mut out = seq.to_vec();
        self.extend(seq, &mut out);
        out
    }

    /// The n-grams as flat id tuples in id order, with the count of each length from 2.
    pub fn to_file(&self) -> NgramFile {
        let mut tuples = Vec::with_capacity(
            self.keys
                .iter()
                .enumerate()
                .map(|(k, v)| (k + 2) * v.len())
                .sum(),
        );
        for (k, keys) in self.keys.iter().enumerate() {
            for &key in keys {
                unpack(key, k + 2, self.bits, &mut tuples);
            }
        }
        NgramFile {
            n: self.n,
            start_id: self.start_id,
            counts: self.keys.iter().map(Vec::len).collect(),
            tuples,
        }
    }
}

impl From<NgramTable> for NgramFile {
    fn from(t: NgramTable) -> NgramFile {
        t.to_file()
    }
}

impl TryFrom<NgramFile> for NgramTable {
    type Error = anyhow::Error;

    /// Checks everything [`NgramTable::build`] guarantees: lengths 2..=n, ids below `start_id`,
    /// each length's tuples strictly increasing (sorted, no repeats), the ids fit in 32 bits.
    fn try_from(f: NgramFile) -> Result<NgramTable> {
        let bits = check_range(f.n, f.start_id)?;
        ensure!(
            f.counts.len() == f.n - 1,
            "the n-gram table of range {} lists {} counts; it needs {}",
            f.n,
            f.counts.len(),
            f.n - 1
        );
        let want = f
            .counts
            .iter()
            .enumerate()
            .try_fold(0usize, |a, (k, &c)| c.checked_mul(k + 2)?.checked_add(a));
        ensure!(
            want == Some(f.tuples.len()),
            "the n-gram table holds {} ids; its counts {:?} need {}",
            f.tuples.len(),
            f.counts,
            want.map_or("more than fit in memory".to_string(), |w| w.to_string())
        );
        if let Some(&id) = f.tuples.iter().find(|&&id| id >= f.start_id) {
            bail!(
                "the n-gram table holds word id {id}, not below its first n-gram id {}",
                f.start_id
            );
        }
        let len: usize = f.counts.iter().sum();
        ensure!(
            f.start_id as u64 + len as u64 <= u32::MAX as u64,
            "{len} n-grams after id {} do not fit in 32-bit ids",
            f.start_id
        );
        let mut at = 0;
        let mut next = f.start_id;
        let (mut keys, mut maps) = (Vec::new(), Vec::new());
        for (k, &count) in f.counts.iter().enumerate() {
            let n = k + 2;
            let sorted: Vec<u64> = f.tuples[at..at + count * n]
                .chunks_exact(n)
                .map(|w| pack(w, bits))
                .collect();
            at += count * n;
            if let Some(i) = sorted.windows(2).position(|p| p[0] >= p[1]) {
                bail!(
                    "the n-gram table's {n}-grams are not in increasing order at entry {}; the \
                     file is damaged",
                    i + 1
                );
            }
            let mut map = KeyMap::default();
            map.reserve(count);
            for &key in &sorted {
                map.insert(key, next);
                next += 1;
            }
            keys.push(sorted);
            maps.push(map);
        }
        Ok(NgramTable {
            n: f.n,
            start_id: f.start_id,
            bits,
            keys,
            maps,
        })
    }
}

/// Bits to write any id below `start_id`.
fn bits_for(start_id: u32) -> u32 {
    (32 - start_id.saturating_sub(1).leading_zeros()).max(1)
}

/// Checks `n` for ids below `start_id`; the bits per id in a key.
fn check_range(n: usize, start_id: u32) -> Result<u32> {
    let bits = bits_for(start_id);
    let max = NgramTable::max_n(start_id);
    ensure!(
        (2..=max).contains(&n),
        "--ngrams {n} is out of range: use 2 to {max} (n-grams of 2 to N words{})",
        if n < 2 {
            "; 1 means words only, no n-grams"
        } else {
            ", packed into 64 bits"
        }
    );
    Ok(bits)
}

/// `w`'s ids side by side, the first in the highest bits (so keys sort as the tuples do).
#[inline]
fn pack(w: &[u32], bits: u32) -> u64 {
    w.iter().fold(0u64, |k, &id| (k << bits) | id as u64)
}

fn unpack(key: u64, n: usize, bits: u32, out: &mut Vec<u32>) {
    let mask = (1u64 << bits) - 1;
    for i in (0..n).rev() {
        out.push(((key >> (i as u32 * bits)) & mask) as u32);
    }
}

/// The refusal of a table past `limit` bytes.
fn too_big(n: usize, seen: usize, need: usize, limit: usize, at: Option<usize>) -> String {
    let mib = |b: usize| b.div_ceil(1 << 20);
    let when = at.map_or(String::new(), |i| {
        format!(" (reached at training sequence {i})")
    });
    format!(
        "the n-gram table (n-grams of 2 to {n} words) would take more than {} MiB for its first \
         {seen} n-grams{when}, over the limit of {} MiB: use a smaller --ngrams or \
         --num-words, or fewer training reviews",
        mib(need),
        mib(limit)
    )
}
