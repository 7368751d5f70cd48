//! pad_sequences, Encoded and prepare.

use imdb_lstm::data::{pad_sequences, prepare, Encoded, Preprocessing, RawDataset, Review, Side};
use proptest::prelude::*;

#[test]
fn pad_pre_and_post() {
    let seqs = vec![vec![1, 2, 3], vec![4, 5, 6, 7, 8, 9], vec![]];
    assert_eq!(
        pad_sequences(&seqs, 4, Side::Pre, Side::Pre, 0),
        [0, 1, 2, 3, 6, 7, 8, 9, 0, 0, 0, 0]
    );
    assert_eq!(
        pad_sequences(&seqs, 4, Side::Post, Side::Pre, 0),
        [1, 2, 3, 0, 6, 7, 8, 9, 0, 0, 0, 0]
    );
    assert_eq!(
        pad_sequences(&seqs, 4, Side::Pre, Side::Post, 0),
        [0, 1, 2, 3, 4, 5, 6, 7, 0, 0, 0, 0]
    );
    assert_eq!(
        pad_sequences(&seqs, 4, Side::Post, Side::Post, 9),
        [1, 2, 3, 9, 4, 5, 6, 7, 9, 9, 9, 9]
    );
}

#[test]
fn pad_exact_length_and_maxlen_one() {
    let seqs = vec![vec![5, 6, 7]];
    for p in [Side::Pre, Side::Post] {
        for t in [Side::Pre, Side::Post] {
            assert_eq!(pad_sequences(&seqs, 3, p, t, 0), [5, 6, 7]);
        }
    }
    assert_eq!(pad_sequences(&seqs, 1, Side::Pre, Side::Pre, 0), [7]);
    assert_eq!(pad_sequences(&seqs, 1, Side::Pre, Side::Post, 0), [5]);
    assert_eq!(pad_sequences(&[vec![]], 1, Side::Pre, Side::Pre, 3), [3]);
    assert!(pad_sequences(&[], 5, Side::Pre, Side::Pre, 0).is_empty());
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Pre), Just(Side::Post)]
}

proptest! {
    #[test]
    fn pad_properties(
        seqs in prop::collection::vec(prop::collection::vec(1u32..1000, 0..30), 0..8),
        maxlen in 1usize..20,
        padding in side(),
        truncating in side(),
    ) {
        let out = pad_sequences(&seqs, maxlen, padding, truncating, 0);
        prop_assert_eq!(out.len(), seqs.len() * maxlen);
        for (row, s) in out.chunks(maxlen).zip(&seqs) {
            let n = s.len().min(maxlen);
            // Pre truncation keeps the suffix, Post the prefix.
            let kept: &[u32] = if s.len() > maxlen {
                match truncating {
                    Side::Pre => &s[s.len() - maxlen..],
                    Side::Post => &s[..maxlen],
                }
            } else {
                s
            };
            let (pad, body) = match padding {
                Side::Pre => (&row[..maxlen - n], &row[maxlen - n..]),
                Side::Post => (&row[n..], &row[..n]),
            };
            prop_assert_eq!(body, kept);
            // Ids are >= 1 here, so a 0 can only be padding, and padding only sits at the padded end.
            prop_assert!(pad.iter().all(|&v| v == 0));
            prop_assert!(body.iter().all(|&v| v != 0));
        }
    }
}

fn enc(n: usize, maxlen: usize) -> Encoded {
    Encoded {
        x: (0..(n * maxlen) as u32).collect(),
        y: (0..n).map(|i| (i % 2) as f32).collect(),
        maxlen,
    }
}

#[test]
fn encoded_rows_subset_and_split() {
    let e = enc(5, 3);
    assert_eq!(e.len(), 5);
    assert!(!e.is_empty());
    assert_eq!(e.row(1), [3, 4, 5]);
    let s = e.subset(&[4, 0, 4]);
    assert_eq!(s.x, [12, 13, 14, 0, 1, 2, 12, 13, 14]);
    assert_eq!(s.y, [0.0, 0.0, 0.0]);

    // Keras: split_at = floor(10 * (1 - 0.2)) = 8; the last 2 are validation.
    let mut e = enc(10, 2);
    let val = e.split_off_tail(0.2).unwrap();
    assert_eq!((e.len(), val.len()), (8, 2));
    assert_eq!(val.row(0), [16, 17]);
    assert_eq!(e.x.len(), 16);
    // floor(5 * 0.7) = 3
    let mut e = enc(5, 1);
    assert_eq!(e.split_off_tail(0.3).unwrap().len(), 2);
    let mut e = enc(5, 1);
    assert!(e.split_off_tail(0.0).unwrap().is_empty());
    assert_eq!(e.len(), 5);
    assert!(enc(5, 1).split_off_tail(1.0).is_err());
    assert!(enc(5, 1).split_off_tail(-0.1).is_err());
    assert!(enc(1, 1).split_off_tail(0.5).is_err());
}

fn review(id: u32, label: u8, text: &str) -> Review {
    Review {
        id,
        rating: if label == 1 { 9 } else { 2 },
        label,
        text: text.to_string(),
    }
}

fn raw() -> RawDataset {
    RawDataset {
        train: vec![
            review(0, 0, "bad bad film"),
            review(1, 0, "awful film"),
            review(0, 1, "good film"),
            review(1, 1, "great good film"),
        ],
        test: vec![
            review(0, 0, "bad"),
            review(0, 1, "good unseen"),
            review(1, 1, "film"),
        ],
    }
}

type Rows = Vec<(Vec<u32>, f32)>;

fn sorted_rows(e: &Encoded) -> Rows {
    let mut rows: Rows = (0..e.len()).map(|i| (e.row(i).to_vec(), e.y[i])).collect();
    rows.sort_by(|a, b| a.partial_cmp(b).unwrap());
    rows
}

#[test]
fn prepare_encodes_shuffles_and_pads() {
    // Train counts: film 4, bad 2, good 2, awful 1, great 1 -> film=4, bad=5 (ties: "bad" < "good").
    let pre = Preprocessing {
        num_words: 6, // keeps ranks 1-2
        maxlen: 3,
        ..Preprocessing::default()
    };
    let d = prepare(&raw(), &pre, 7).unwrap();
    assert_eq!(d.vocab.words(), ["film", "bad"]);
    assert_eq!(d.train.len(), 4);
    assert_eq!(d.test.len(), 3);
    // Every expected row appears exactly once, with its label (the order is the seeded shuffle).
    assert_eq!(
        sorted_rows(&d.train),
        [
            (vec![1, 2, 4], 0.0), // awful film
            (vec![1, 2, 4], 1.0), // good film
            (vec![2, 2, 4], 1.0), // great good film: the start id is truncated away
            (vec![5, 5, 4], 0.0), // bad bad film
        ]
    );
    assert_eq!(
        sorted_rows(&d.test),
        [
            (vec![0, 1, 4], 1.0), // film
            (vec![0, 1, 5], 0.0), // bad
            (vec![1, 2, 2], 1.0), // good unseen: both out of vocabulary
        ]
    );
    let again = prepare(&raw(), &pre, 7).unwrap();
    assert_eq!(again.train, d.train);
    assert_eq!(again.test, d.test);
}

#[test]
fn prepare_shuffle_depends_on_seed_and_uses_one_stream() {
    let mut r = RawDataset::default();
    for i in 0..50 {
        r.train.push(review(i, (i % 2) as u8, &format!("w{i}")));
        r.test.push(review(i, (i % 2) as u8, &format!("w{i}")));
    }
    let pre = Preprocessing {
        maxlen: 2,
        ..Preprocessing::default()
    };
    let a = prepare(&r, &pre, 1).unwrap();
    let b = prepare(&r, &pre, 2).unwrap();
    assert_ne!(a.train.x, b.train.x);
    // Train and test come from one continuing stream, so identical-shaped splits get different
    // permutations (two separately seeded generators would give the same one).
    assert_ne!(a.train.y, a.test.y);
    // Rows are permuted, not lost.
    assert_eq!(sorted_rows(&a.train), sorted_rows(&b.train));
}

#[test]
fn prepare_rejects_bad_settings() {
    let bad = |pre: Preprocessing| prepare(&raw(), &pre, 0).unwrap_err().to_string();
    let e = bad(Preprocessing {
        num_words: 3,
        ..Preprocessing::default()
    });
    assert!(e.contains("num_words 3"), "{e}");
    let e = bad(Preprocessing {
        maxlen: 0,
        ..Preprocessing::default()
    });
    assert!(e.contains("maxlen 0"), "{e}");
    let e = bad(Preprocessing {
        tokenizer_version: 99,
        ..Preprocessing::default()
    });
    assert!(e.contains("tokenizer"), "{e}");
    let empty = RawDataset::default();
    assert!(prepare(&empty, &Preprocessing::default(), 0).is_err());
}

#[test]
fn encode_padded_matches_prepare_rows() {
    let pre = Preprocessing {
        maxlen: 5,
        ..Preprocessing::default()
    };
    let d = prepare(&raw(), &pre, 3).unwrap();
    let row = pre.encode_padded(&d.vocab, None, "bad bad film");
    assert_eq!(row, [0, 1, 5, 5, 4]);
    assert!((0..d.train.len()).any(|i| d.train.row(i) == row.as_slice()));
}
