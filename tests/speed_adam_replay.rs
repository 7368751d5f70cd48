//! The lazy embedding rows' replay goes in blocks of 16 elements, the last one padded: rows of
//! every width around the block size (and fasttext's 50, the tutorial's 128) still end bit for
//! bit where the dense update leaves them, after long gaps, short gaps and flushes.

use imdb_lstm::nn::adam::{Adam, AdamConfig, LazyRows};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// `steps` steps over a table of `rows` x `width` and 3 parameters after it; row r is read with
/// probability 1 / (r + 1), so row 0 every step and the last rows after long gaps.
fn lazy_equals_dense(rows: usize, width: usize, threads: usize, steps: usize) {
    let mut rng = Pcg64::seed_from_u64((rows * 1000 + width) as u64);
    let n = rows * width + 3;
    let p0: Vec<f32> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let (mut dp, mut dense) = (p0.clone(), Adam::new(AdamConfig::default(), n));
    let (mut lp, mut adam) = (p0, Adam::new(AdamConfig::default(), n));
    let mut lazy = LazyRows::new(&adam, rows, width);
    for s in 0..steps {
        let read: Vec<u32> = (0..rows as u32)
            .filter(|&r| rng.gen_range(0..=r) == 0)
            .collect();
        let mut g = vec![0.0f32; n];
        let scale = [1.0f32, 1e-4, 1e-20][s % 3];
        for &r in &read {
            for x in &mut g[r as usize * width..(r as usize + 1) * width] {
                *x = rng.gen_range(-1.0..1.0) * scale;
            }
        }
        for x in &mut g[rows * width..] {
            *x = rng.gen_range(-1.0..1.0);
        }
        lazy.catch_up(&mut adam, &mut lp, &read, threads);
        for &r in &read {
            let at = r as usize * width..(r as usize + 1) * width;
            assert!(
                bits(&lp[at.clone()]) == bits(&dp[at.clone()])
                    && bits(&adam.m[at.clone()]) == bits(&dense.m[at.clone()])
                    && bits(&adam.v[at.clone()]) == bits(&dense.v[at]),
                "width {width}, step {s}: row {r} caught up to other values"
            );
        }
        dense.update(&mut dp, &g, 1);
        lazy.update(&mut adam, &mut lp, &g, &read, threads);
        if s % 50 == 49 || s + 1 == steps {
            lazy.flush(&mut adam, &mut lp, threads);
            let what = format!("width {width}, {threads} threads, step {s}");
            assert!(bits(&lp) == bits(&dp), "{what}: params differ");
            assert!(bits(&adam.m) == bits(&dense.m), "{what}: m differs");
            assert!(bits(&adam.v) == bits(&dense.v), "{what}: v differs");
        }
    }
}

#[test]
fn speed_replay_is_bit_identical_at_every_width_around_the_block() {
    for width in [1, 7, 15, 16, 17, 31, 32, 33, 50, 128, 129] {
        lazy_equals_dense(12, width, 1, 160);
    }
    lazy_equals_dense(12, 50, 2, 160);
    lazy_equals_dense(5, 33, 3, 120);
}
