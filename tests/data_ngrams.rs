//! `data::ngrams::NgramTable`: Keras's examples/imdb_fasttext.py `create_ngram_set` and
//! `add_ngram` on its docstring examples, then padding as Keras pads, the id order, the stored
//! form and its checks, and the memory limit. With IMDB_LSTM_DATA set, the bigram table of the
//! real training set is measured.

mod common;

use imdb_lstm::data::ngrams::{NgramFile, NgramTable};
use imdb_lstm::data::vocab::{rank_to_id, Vocabulary};
use imdb_lstm::data::{load_reviews, pad_sequences, Preprocessing, Side};
use std::time::Instant;

const NO_LIMIT: usize = usize::MAX;

fn table(n: usize, start_id: u32, counts: &[usize], tuples: &[u32]) -> NgramTable {
    NgramTable::try_from(NgramFile {
        n,
        start_id,
        counts: counts.to_vec(),
        tuples: tuples.to_vec(),
    })
    .unwrap()
}

fn refused(f: NgramFile) -> String {
    NgramTable::try_from(f).unwrap_err().to_string()
}

/// `add_ngram`'s docstring examples. Keras's ids there are arbitrary (1337, 2017, 42, 2018);
/// ours are numbered in order from the start id s: (1, 3) = s, (4, 5) = s+1, (9, 2) = s+2,
/// (7, 9, 2) = s+3.
#[test]
fn ngrams_add_ngram_docstring_examples() {
    let s = 100;
    let seqs: [&[u32]; 2] = [&[1, 3, 4, 5], &[1, 3, 7, 9, 2]];
    let bigrams = table(2, s, &[3], &[1, 3, 4, 5, 9, 2]);
    // [[1, 3, 4, 5, 1337, 2017], [1, 3, 7, 9, 2, 1337, 42]]
    assert_eq!(bigrams.add(seqs[0]), [1, 3, 4, 5, s, s + 1]);
    assert_eq!(bigrams.add(seqs[1]), [1, 3, 7, 9, 2, s, s + 2]);
    // ngram_range=3: [[1, 3, 4, 5, 1337, 2017], [1, 3, 7, 9, 2, 1337, 42, 2018]]
    let trigrams = table(3, s, &[3, 1], &[1, 3, 4, 5, 9, 2, 7, 9, 2]);
    assert_eq!(trigrams.add(seqs[0]), [1, 3, 4, 5, s, s + 1]);
    assert_eq!(trigrams.add(seqs[1]), [1, 3, 7, 9, 2, s, s + 2, s + 3]);
    // `extend` appends the n-gram ids only.
    let mut out = vec![7];
    trigrams.extend(seqs[1], &mut out);
    assert_eq!(out, [7, s, s + 2, s + 3]);
}

/// `create_ngram_set`'s docstring: `[1, 4, 9, 4, 1, 4]` has bigrams {(4, 9), (4, 1), (1, 4),
/// (9, 4)} and trigrams {(1, 4, 9), (4, 9, 4), (9, 4, 1), (4, 1, 4)}; numbered bigrams first,
/// each length sorted.
#[test]
fn ngrams_create_ngram_set_docstring_example() {
    let seq: &[u32] = &[1, 4, 9, 4, 1, 4];
    let t = NgramTable::build([seq], 3, 10, NO_LIMIT).unwrap();
    let f = t.to_file();
    assert_eq!(f.counts, [4, 4]);
    assert_eq!(
        f.tuples,
        [1, 4, 4, 1, 4, 9, 9, 4, /* trigrams */ 1, 4, 9, 4, 1, 4, 4, 9, 4, 9, 4, 1]
    );
    assert_eq!(
        (t.len(), t.start_id(), t.input_dim(), t.n()),
        (8, 10, 18, 3)
    );
    // Its own sequence: bigrams (1,4)=10 (4,9)=12 (9,4)=13 (4,1)=11 (1,4)=10, then trigrams
    // (1,4,9)=14 (4,9,4)=16 (9,4,1)=17 (4,1,4)=15.
    assert_eq!(
        t.add(seq),
        [1, 4, 9, 4, 1, 4, 10, 12, 13, 11, 10, 14, 16, 17, 15]
    );
}

/// The example's pipeline by hand: the table from the training sequences, the n-grams added to
/// a test sequence (unknown ones skipped), then `pad_sequences(maxlen)` with Keras's default
/// 'pre' truncation, which keeps the end: the words at the front are dropped, not the n-grams.
#[test]
fn ngrams_then_padding_as_keras() {
    let train: [&[u32]; 2] = [&[1, 3, 4, 5], &[1, 3, 7, 9, 2]];
    let t = NgramTable::build(train, 2, NgramTable::keras_start_id(9).unwrap(), NO_LIMIT).unwrap();
    // Bigrams (1,3) (3,4) (3,7) (4,5) (7,9) (9,2) get 10..=15; id 9 (= num_words) is unused,
    // as in Keras (start_index = max_features + 1).
    assert_eq!(t.to_file().tuples, [1, 3, 3, 4, 3, 7, 4, 5, 7, 9, 9, 2]);
    assert_eq!(t.input_dim(), 16);
    let test = t.add(&[1, 3, 4, 5, 9, 2, 8]);
    assert_eq!(test, [1, 3, 4, 5, 9, 2, 8, 10, 11, 13, 15]);
    let short = t.add(&[7, 9]);
    assert_eq!(short, [7, 9, 14]);
    let padded = pad_sequences(&[test, short], 8, Side::Pre, Side::Pre, 0);
    assert_eq!(
        padded,
        [5, 9, 2, 8, 10, 11, 13, 15, 0, 0, 0, 0, 0, 7, 9, 14]
    );
}

/// The same set of sequences in any order, or with repeats, gives the same table.
#[test]
fn ngrams_ids_do_not_depend_on_the_order_of_the_data() {
    let seqs: Vec<Vec<u32>> = (0..50u32)
        .map(|i| (0..(i % 7 + 1)).map(|j| (i * 13 + j * 7) % 40).collect())
        .collect();
    let a = NgramTable::build(seqs.iter().map(|s| s.as_slice()), 3, 41, NO_LIMIT).unwrap();
    let b = NgramTable::build(seqs.iter().rev().map(|s| s.as_slice()), 3, 41, NO_LIMIT).unwrap();
    let c = NgramTable::build(
        seqs.iter().chain(&seqs).map(|s| s.as_slice()),
        3,
        41,
        NO_LIMIT,
    )
    .unwrap();
    assert_eq!(a.to_file(), b.to_file());
    assert_eq!(a.to_file(), c.to_file());
    assert!(a.len() > 40, "{}", a.len());
    for s in &seqs {
        assert_eq!(a.add(s), b.add(s));
    }
}

/// Serde round trip (JSON): the same table, the same ids; the stored form is the flat tuples.
#[test]
fn ngrams_serde_round_trip() {
    let seqs: [&[u32]; 3] = [&[1, 5, 6, 7, 5, 6], &[1, 2, 2, 2], &[3]];
    let t = NgramTable::build(seqs, 3, 8, NO_LIMIT).unwrap();
    let json = serde_json::to_string(&t).unwrap();
    assert_eq!(
        json,
        r#"{"n":3,"start_id":8,"counts":[6,6],"tuples":[1,2,1,5,2,2,5,6,6,7,7,5,1,2,2,1,5,6,2,2,2,5,6,7,6,7,5,7,5,6]}"#
    );
    let back: NgramTable = serde_json::from_str(&json).unwrap();
    assert_eq!(back, t);
    for s in seqs {
        assert_eq!(back.add(s), t.add(s));
    }
    // A table read back with a different map capacity still compares by content.
    assert_eq!(back.to_file(), t.to_file());
}

/// A stored table that `build` could not have made is refused, one line naming the problem.
#[test]
fn ngrams_damaged_tables_are_refused() {
    let f = |n, counts: &[usize], tuples: &[u32]| NgramFile {
        n,
        start_id: 10,
        counts: counts.to_vec(),
        tuples: tuples.to_vec(),
    };
    assert_eq!(
        refused(f(2, &[2], &[3, 4, 1, 2])),
        "the n-gram table's 2-grams are not in increasing order at entry 1; the file is damaged"
    );
    assert_eq!(
        refused(f(2, &[2], &[1, 2, 1, 2])),
        "the n-gram table's 2-grams are not in increasing order at entry 1; the file is damaged"
    );
    assert_eq!(
        refused(f(2, &[2], &[1, 2, 3])),
        "the n-gram table holds 3 ids; its counts [2] need 4"
    );
    assert_eq!(
        refused(f(3, &[1], &[1, 2])),
        "the n-gram table of range 3 lists 1 counts; it needs 2"
    );
    assert_eq!(
        refused(f(2, &[1], &[1, 10])),
        "the n-gram table holds word id 10, not below its first n-gram id 10"
    );
    assert_eq!(
        refused(f(2, &[usize::MAX], &[])),
        "the n-gram table holds 0 ids; its counts [18446744073709551615] need more than fit in \
         memory"
    );
    assert_eq!(
        refused(f(1, &[], &[])),
        "--ngrams 1 is out of range: use 2 to 16 (n-grams of 2 to N words; 1 means words only, \
         no n-grams)"
    );
    // Serde goes through the same checks.
    let err = serde_json::from_str::<NgramTable>(
        r#"{"n":2,"start_id":10,"counts":[2],"tuples":[3,4,1,2]}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("not in increasing order"), "{err}");
}

/// The range of n: 2 up to what packs into 64 bits (4 for fasttext's 20,000 words); ids in the
/// training data must be words.
#[test]
fn ngrams_range_and_ids_are_checked() {
    let start = NgramTable::keras_start_id(20_000).unwrap();
    assert_eq!((start, NgramTable::max_n(start)), (20_001, 4));
    assert_eq!(NgramTable::max_n(u32::MAX), 2);
    let seqs: [&[u32]; 1] = [&[1, 2, 3, 4, 5]];
    for n in [0, 1, 5] {
        let err = NgramTable::build(seqs, n, start, NO_LIMIT)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("--ngrams {n} is out of range: use 2 to 4")),
            "{err}"
        );
    }
    assert_eq!(
        NgramTable::build(seqs, 4, start, NO_LIMIT).unwrap().len(),
        4 + 3 + 2
    );
    let err = NgramTable::build([&[1, 2][..], &[3, 20_001]], 2, start, NO_LIMIT)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "sequence 1 holds id 20001; n-grams are built from word ids below 20001"
    );
    // The largest ids pack without colliding.
    let big = u32::MAX - 1;
    let t = NgramTable::build([&[big - 1, big, big - 1][..]], 2, u32::MAX, NO_LIMIT);
    let err = t.unwrap_err().to_string();
    assert!(err.contains("do not fit in 32-bit ids"), "{err}");
    let t = NgramTable::build([&[big - 1, big, 0][..]], 2, u32::MAX - 2, NO_LIMIT).unwrap_err();
    assert!(t.to_string().contains("holds id"), "{t}");
}

/// A table past the limit is refused with the sizes in MiB; one that fits is built and its
/// measured size is within the limit.
#[test]
fn ngrams_memory_limit_refuses_a_table_too_big() {
    // 200,000 distinct bigrams.
    let seqs: Vec<Vec<u32>> = (0..2000u32)
        .map(|i| (0..101).map(|j| (i * 101 + j) % 450_000).collect())
        .collect();
    let it = || seqs.iter().map(|s| s.as_slice());
    let t = NgramTable::build(it(), 2, 450_001, NO_LIMIT).unwrap();
    assert_eq!(t.len(), 200_000);
    // 2^18 buckets of 17 bytes, and 8 bytes per sorted key.
    assert_eq!(t.bytes(), (1 << 18) * 17 + 200_000 * 8);
    assert!(NgramTable::build(it(), 2, 450_001, t.bytes()).is_ok());
    let err = NgramTable::build(it(), 2, 450_001, 4 << 20)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("the n-gram table (n-grams of 2 to 2 words) would take more than 6 MiB ")
            && err.contains("over the limit of 4 MiB: use a smaller --ngrams or --num-words"),
        "{err}"
    );
    // Refused while building, not after: it names the sequence it had reached.
    assert!(err.contains("(reached at training sequence "), "{err}");
    // Just under the final size: refused at the end.
    let err = NgramTable::build(it(), 2, 450_001, t.bytes() - 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("for its first 200000 n-grams, over the limit"),
        "{err}"
    );
}

/// The real training set (IMDB_LSTM_DATA): fasttext's bigrams for num_words 20,000, as
/// `prepare` encodes the reviews (start id 1, words ranked by the training texts). Prints the
/// count, the table's bytes and the build time.
#[test]
fn ngrams_real_bigram_table() {
    let Some(path) = common::real_data() else {
        return;
    };
    let raw = load_reviews(&path).unwrap();
    let pre = Preprocessing {
        num_words: 20_000,
        ..Preprocessing::default()
    };
    let texts: Vec<&str> = raw.train.iter().map(|r| r.text.as_str()).collect();
    let (_, ranks) = Vocabulary::build_with_ranks(&texts);
    let seqs: Vec<Vec<u32>> = ranks
        .into_iter()
        .map(|r| {
            let mut ids = vec![pre.start_id];
            ids.extend(r.into_iter().map(|r| rank_to_id(r, &pre)));
            ids
        })
        .collect();
    let start = NgramTable::keras_start_id(pre.num_words).unwrap();
    let t0 = Instant::now();
    let t = NgramTable::build(seqs.iter().map(|s| s.as_slice()), 2, start, 1 << 30).unwrap();
    let built = t0.elapsed();
    let t1 = Instant::now();
    let added: usize = seqs.iter().map(|s| t.add(s).len()).sum();
    let applied = t1.elapsed();
    let json = serde_json::to_vec(&t).unwrap();
    println!(
        "{} training sequences, {} tokens: {} distinct bigrams, input_dim {}, table {:.1} MiB in \
         memory ({} bytes as flat u32 tuples, {:.1} MiB as JSON), built in {:.2} s; add_ngram \
         on all of them {:.2} s",
        seqs.len(),
        seqs.iter().map(Vec::len).sum::<usize>(),
        t.len(),
        t.input_dim(),
        t.bytes() as f64 / (1 << 20) as f64,
        t.len() * 8,
        json.len() as f64 / (1 << 20) as f64,
        built.as_secs_f64(),
        applied.as_secs_f64()
    );
    assert!(t.len() > 1_000_000, "{}", t.len());
    assert_eq!(added, seqs.iter().map(|s| 2 * s.len() - 1).sum::<usize>());
}
