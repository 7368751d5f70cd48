//! The real dataset, when IMDB_LSTM_DATA points at it (skipped otherwise).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use imdb_lstm::data::{load_reviews, prepare, Preprocessing, Review};

fn data_path() -> Option<PathBuf> {
    match std::env::var_os("IMDB_LSTM_DATA").filter(|v| !v.is_empty()) {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            eprintln!("IMDB_LSTM_DATA is not set: skipping the real-data test");
            None
        }
    }
}

fn ratings(rs: &[Review], label: u8) -> BTreeMap<u8, usize> {
    let mut m = BTreeMap::new();
    for r in rs.iter().filter(|r| r.label == label) {
        *m.entry(r.rating).or_insert(0) += 1;
    }
    m
}

#[test]
fn real_dataset_counts_and_timing() {
    let Some(path) = data_path() else { return };
    let t0 = Instant::now();
    let raw = load_reviews(&path).unwrap();
    let t_load = t0.elapsed();
    assert_eq!(raw.train.len(), 25_000);
    assert_eq!(raw.test.len(), 25_000);
    for split in [&raw.train, &raw.test] {
        assert_eq!(split.iter().filter(|r| r.label == 1).count(), 12_500);
        assert_eq!(split.iter().filter(|r| r.label == 0).count(), 12_500);
        // ids 0..12499 per label, sorted.
        assert!(split[..12_500]
            .iter()
            .enumerate()
            .all(|(i, r)| r.id == i as u32));
        assert!(split[12_500..]
            .iter()
            .enumerate()
            .all(|(i, r)| r.id == i as u32));
    }
    // Rating counts from /work/shared/data/README.md (the published dataset's).
    let pos: Vec<(u8, usize)> = ratings(&raw.train, 1).into_iter().collect();
    assert_eq!(pos, [(7, 2496), (8, 3009), (9, 2263), (10, 4732)]);
    let neg: Vec<(u8, usize)> = ratings(&raw.train, 0).into_iter().collect();
    assert_eq!(neg, [(1, 5100), (2, 2284), (3, 2420), (4, 2696)]);

    let t1 = Instant::now();
    let pre = Preprocessing::default();
    let d = prepare(&raw, &pre, 113).unwrap();
    let t_prep = t1.elapsed();
    assert_eq!(d.vocab.len(), pre.num_words - pre.index_from as usize - 1);
    assert_eq!(d.vocab.words()[0], "the");
    assert_eq!(d.train.len(), 25_000);
    assert_eq!(d.test.len(), 25_000);
    assert_eq!(d.train.x.len(), 25_000 * 80);
    assert_eq!(d.train.y.iter().filter(|&&y| y == 1.0).count(), 12_500);
    assert!(d.train.x.iter().all(|&id| (id as usize) < pre.num_words));
    let elapsed = (t_load, t_prep, t0.elapsed());

    // The prepared rows are a permutation of each review encoded on its own (the path `predict` uses).
    for (split, enc) in [(&raw.train, &d.train), (&raw.test, &d.test)] {
        let mut want: Vec<(Vec<u32>, u8)> = split
            .iter()
            .map(|r| (pre.encode_padded(&d.vocab, None, &r.text), r.label))
            .collect();
        let mut got: Vec<(Vec<u32>, u8)> = (0..enc.len())
            .map(|i| (enc.row(i).to_vec(), enc.y[i] as u8))
            .collect();
        want.sort_unstable();
        got.sort_unstable();
        assert!(want == got, "prepared rows differ from per-review encoding");
    }
    let (t_load, t_prep, total) = elapsed;
    eprintln!(
        "real data: load {:.2?}, vocabulary + encode + shuffle + pad {:.2?}, total {:.2?}",
        t_load, t_prep, total
    );
}
