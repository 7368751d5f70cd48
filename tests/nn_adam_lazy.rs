//! Adam's lazy embedding rows (`nn::adam::LazyRows`) against the dense update, bit for bit:
//! on raw buffers with random row subsets over many steps, and through whole epochs of
//! training (the tutorial's stack and fasttext's, shrunk). `--ignored` times one optimizer
//! step of a fasttext-sized table both ways.

use imdb_lstm::nn::adam::{Adam, AdamConfig, LazyRows};
use imdb_lstm::nn::arch::{preset, Arch, LayerSpec};
use imdb_lstm::nn::{ModelConfig, Network};
use imdb_lstm::train::{run_epoch_until, run_epoch_with, Silent, Split, TrainConfig, TrainState};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Same bits in params and both moments, and the same step.
fn assert_same(what: &str, p: &[f32], a: &Adam, q: &[f32], b: &Adam) {
    assert_eq!(a.step, b.step, "{what}: step");
    assert!(bits(p) == bits(q), "{what}: params differ");
    assert!(bits(&a.m) == bits(&b.m), "{what}: first moments differ");
    assert!(bits(&a.v) == bits(&b.v), "{what}: second moments differ");
}

/// `steps` random batches: row r is read with probability `1 - r / rows` (row 0 by every
/// batch), except the last row, read only at step 2; gradients of scales from 1 to 1e-30 (so
/// the moments of rows left unread reach the subnormals), some exact zeros and negative zeros. Each step the rows about to be read are
/// caught up and compared with the dense values; at a few steps everything is flushed and
/// compared.
fn random_subsets(rows: usize, width: usize, tail: usize, threads: usize, steps: usize) {
    let mut rng = Pcg64::seed_from_u64(rows as u64 * 31 + threads as u64);
    let n = rows * width + tail;
    let p0: Vec<f32> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let cfg = AdamConfig::default();
    let (mut dense_p, mut dense) = (p0.clone(), Adam::new(cfg.clone(), n));
    let (mut lazy_p, mut adam) = (p0, Adam::new(cfg, n));
    let mut lazy = LazyRows::new(&adam, rows, width);
    for s in 0..steps {
        let read: Vec<u32> = (0..rows as u32)
            .filter(|&r| match r as usize + 1 == rows {
                true => s == 2,
                false => rng.gen_range(0..rows) >= r as usize,
            })
            .collect();
        let scale = [1.0f32, 1e-3, 1e-30][s % 3];
        let mut g = vec![0.0f32; n];
        for &r in &read {
            for x in &mut g[r as usize * width..(r as usize + 1) * width] {
                *x = match rng.gen_range(0..10) {
                    0 => 0.0,
                    1 => -0.0,
                    _ => rng.gen_range(-1.0..1.0) * scale,
                };
            }
        }
        for x in &mut g[rows * width..] {
            *x = rng.gen_range(-1.0..1.0) * scale;
        }
        // The batch's ids, with repeats, in any order.
        let mut ids: Vec<u32> = read.iter().chain(&read).copied().collect();
        ids.reverse();
        lazy.catch_up(&mut adam, &mut lazy_p, &ids, threads);
        for &r in &read {
            let at = r as usize * width..(r as usize + 1) * width;
            assert!(
                bits(&lazy_p[at.clone()]) == bits(&dense_p[at.clone()])
                    && bits(&adam.m[at.clone()]) == bits(&dense.m[at.clone()])
                    && bits(&adam.v[at.clone()]) == bits(&dense.v[at]),
                "step {s}: row {r} read stale values"
            );
        }
        dense.update(&mut dense_p, &g, 1);
        lazy.update(&mut adam, &mut lazy_p, &g, &read, threads);
        if s % 97 == 96 || s + 1 == steps {
            lazy.flush(&mut adam, &mut lazy_p, threads);
            assert_same(&format!("step {s}"), &lazy_p, &adam, &dense_p, &dense);
        }
    }
    // The last row's first moment went subnormal: the replay covered that range too.
    assert!(dense.m[(rows - 1) * width..rows * width]
        .iter()
        .any(|m| m.is_subnormal()));
}

#[test]
fn lazy_rows_equal_the_dense_update_bit_for_bit() {
    random_subsets(37, 5, 23, 1, 1200);
    random_subsets(37, 5, 23, 2, 400);
    random_subsets(37, 5, 23, 3, 400);
    // More threads than rows, and no parameters after the table.
    random_subsets(2, 8, 0, 4, 300);
}

/// An empty table: every parameter is stepped densely.
#[test]
fn lazy_rows_without_a_table_is_the_dense_update() {
    let n = 11;
    let g: Vec<f32> = (0..n).map(|i| i as f32 * 0.1 - 0.5).collect();
    let (mut p, mut a) = (vec![0.5; n], Adam::new(AdamConfig::default(), n));
    let (mut q, mut b) = (vec![0.5; n], Adam::new(AdamConfig::default(), n));
    let mut lazy = LazyRows::new(&b, 0, 7);
    for _ in 0..3 {
        a.update(&mut p, &g, 2);
        lazy.update(&mut b, &mut q, &g, &[], 2);
    }
    assert_same("no table", &p, &a, &q, &b);
}

/// `epochs` epochs of `arch` on random data, dense or lazy; the states after each epoch.
fn train(arch: &Arch, threads: usize, lazy: bool, epochs: usize) -> Vec<TrainState> {
    let LayerSpec::Embedding {
        input_dim,
        output_dim,
    } = arch.layers[0]
    else {
        panic!("the arch starts with an Embedding")
    };
    let cfg = TrainConfig {
        batch_size: 8,
        threads,
        ..TrainConfig::default()
    };
    let mut rng = Pcg64::seed_from_u64(5);
    let (n, t) = (45, arch.maxlen);
    // Zipf-like ids: low ids in every batch, high ones rarely.
    let x: Vec<u32> = (0..n * t)
        .map(|_| (rng.gen_range(0.0f64..1.0).powi(3) * input_dim as f64) as u32)
        .collect();
    let y: Vec<f32> = (0..n).map(|i| (x[i * t] % 2) as f32).collect();
    let (train_x, val_x) = x.split_at(35 * t);
    let (train_y, val_y) = y.split_at(35);
    let mut state = TrainState::new(arch, &cfg).unwrap();
    let mut net = Network::new(arch, threads).unwrap();
    let stop = AtomicBool::new(false);
    let mut after = Vec::new();
    for _ in 0..epochs {
        let (tr, va) = (
            Split {
                x: train_x,
                y: train_y,
            },
            Some(Split { x: val_x, y: val_y }),
        );
        let embedding = lazy.then_some((input_dim, output_dim));
        run_epoch_with(
            &mut state,
            &mut net,
            &cfg,
            tr,
            va,
            &mut Silent,
            &stop,
            embedding,
        )
        .unwrap();
        after.push(state.clone());
    }
    after
}

fn assert_same_training(what: &str, arch: &Arch) {
    for threads in [1, 2] {
        let dense = train(arch, threads, false, 3);
        let lazy = train(arch, threads, true, 3);
        for (e, (d, l)) in dense.iter().zip(&lazy).enumerate() {
            let what = format!("{what}, {threads} threads, epoch {}", e + 1);
            assert_same(&what, &l.params, &l.adam, &d.params, &d.adam);
            let (mut lh, mut dh) = (l.history.clone(), d.history.clone());
            for r in lh.epochs.iter_mut().chain(&mut dh.epochs) {
                r.seconds = 0.0;
            }
            assert_eq!(lh, dh, "{what}: history");
        }
    }
}

/// Whole epochs: the weights, moments and history (losses, validation) equal the dense run's.
#[test]
fn lazy_training_equals_dense_training_bit_for_bit() {
    let tutorial = ModelConfig {
        num_words: 40,
        embed_dim: 5,
        units: 3,
        maxlen: 7,
        ..ModelConfig::default()
    };
    assert_same_training("tutorial LSTM", &tutorial.arch());
    let mut fasttext = preset("fasttext").unwrap().arch;
    fasttext.layers[0] = LayerSpec::Embedding {
        input_dim: 300,
        output_dim: 6,
    };
    fasttext.maxlen = 12;
    assert_same_training("fasttext", &fasttext);
}

/// The dense run of this file's `train` is the one `run_epoch_until` does.
#[test]
fn run_epoch_with_none_is_run_epoch_until() {
    let arch = ModelConfig {
        num_words: 20,
        embed_dim: 3,
        units: 2,
        maxlen: 4,
        ..ModelConfig::default()
    }
    .arch();
    let cfg = TrainConfig {
        threads: 1,
        batch_size: 4,
        ..TrainConfig::default()
    };
    let x: Vec<u32> = (0..40).map(|i| (i * 7 % 20) as u32).collect();
    let y: Vec<f32> = (0..10).map(|i| (i % 2) as f32).collect();
    let run = |with: bool| {
        let mut state = TrainState::new(&arch, &cfg).unwrap();
        let mut net = Network::new(&arch, 1).unwrap();
        let split = Split { x: &x, y: &y };
        let stop = AtomicBool::new(false);
        if with {
            run_epoch_with(
                &mut state,
                &mut net,
                &cfg,
                split,
                None,
                &mut Silent,
                &stop,
                None,
            )
        } else {
            run_epoch_until(&mut state, &mut net, &cfg, split, None, &mut Silent, &stop)
        }
        .unwrap();
        state
    };
    let (a, b) = (run(true), run(false));
    assert_same("None", &a.params, &a.adam, &b.params, &b.adam);
}

/// One optimizer step of fasttext's Adam (20,000 words + 1.2 million bigrams, width 50)
/// dense and lazy, with a batch of 32 x 400 ids: half Zipf-distributed words, half bigrams.
/// `cargo test --release --test nn_adam_lazy -- --ignored --nocapture`
#[test]
#[ignore]
fn bench_fasttext_sized_step() {
    let (words, rows, width, steps) = (20_000usize, 1_220_000usize, 50usize, 40usize);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let n = rows * width + width + 1;
    let mut rng = Pcg64::seed_from_u64(9);
    let batches: Vec<Vec<u32>> = (0..steps)
        .map(|_| {
            (0..32 * 400)
                .map(|i| {
                    if i % 2 == 0 {
                        (rng.gen_range(0.0f64..1.0).powi(4) * words as f64) as u32
                    } else {
                        rng.gen_range(words..rows) as u32
                    }
                })
                .collect()
        })
        .collect();
    let grads_of = |ids: &[u32], g: &mut Vec<f32>, listed: &mut Vec<u32>| {
        for &r in listed.iter() {
            g[r as usize * width..(r as usize + 1) * width].fill(0.0);
        }
        listed.clear();
        let mut seen = vec![false; rows];
        for &id in ids {
            if !seen[id as usize] {
                seen[id as usize] = true;
                listed.push(id);
                g[id as usize * width..(id as usize + 1) * width].fill(1e-3);
            }
        }
        g[rows * width..].fill(1e-3);
    };
    // Every buffer written once first: the timings leave out the kernel's first-touch faults.
    let fresh = || {
        let mut adam = Adam::new(AdamConfig::default(), n);
        adam.m.fill(0.0);
        adam.v.fill(0.0);
        adam
    };
    let mut g = vec![0.0f32; n];
    g.fill(0.0);
    let mut listed = Vec::new();

    let mut p = vec![0.01f32; n];
    let mut adam = fresh();
    let mut t_dense = 0.0;
    for ids in &batches {
        grads_of(ids, &mut g, &mut listed);
        let t = Instant::now();
        adam.update(&mut p, &g, threads);
        t_dense += t.elapsed().as_secs_f64();
    }
    let dense_p = std::mem::take(&mut p);
    let dense = std::mem::replace(&mut adam, Adam::new(AdamConfig::default(), 0));

    let mut p = vec![0.01f32; n];
    let mut adam = fresh();
    let mut lazy = LazyRows::new(&adam, rows, width);
    let mut t_lazy = 0.0;
    for ids in &batches {
        grads_of(ids, &mut g, &mut listed);
        let t = Instant::now();
        lazy.catch_up(&mut adam, &mut p, ids, threads);
        lazy.update(&mut adam, &mut p, &g, &listed, threads);
        t_lazy += t.elapsed().as_secs_f64();
    }
    let t = Instant::now();
    lazy.flush(&mut adam, &mut p, threads);
    let t_flush = t.elapsed().as_secs_f64();
    assert_same("bench", &p, &adam, &dense_p, &dense);
    println!(
        "{n} parameters, {threads} threads, {steps} steps: dense {:.1} ms/step; lazy {:.2} \
         ms/step, then one flush of {steps} steps {:.0} ms ({:.2} ms/step amortised)",
        t_dense * 1e3 / steps as f64,
        t_lazy * 1e3 / steps as f64,
        t_flush * 1e3,
        (t_lazy + t_flush) * 1e3 / steps as f64
    );
}
