//! The numeric core against finite differences (f64), the naive reference, and Keras's golden
//! values (Keras's own tests: keras/src/layers/rnn/lstm_test.py and optimizers/adam_test.py; the
//! numbers, with their recipes, are also in `../shared/reference/` beside the checkout).

use imdb_lstm::nn::lstm::{LstmCache, LstmWeights, PackedGates};
use imdb_lstm::nn::network::{bce_from_logit, LayerMasks, NetMasks, RecurrentMasks};
use imdb_lstm::nn::params::{Layout, BIAS, KERNEL, RECURRENT};
use imdb_lstm::nn::reference::{self, RefMasks};
use imdb_lstm::nn::{Gradients, ModelConfig, Network, Params};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

fn tiny() -> ModelConfig {
    ModelConfig {
        num_words: 6,
        embed_dim: 3,
        units: 2,
        maxlen: 4,
        dropout: 0.2,
        recurrent_dropout: 0.2,
    }
}

fn random_params(cfg: &ModelConfig, seed: u64, scale: f64) -> Vec<f64> {
    let mut rng = Pcg64::seed_from_u64(seed);
    (0..Layout::new(cfg).len())
        .map(|_| rng.gen_range(-scale..scale))
        .collect()
}

fn random_masks(b: usize, groups: usize, cfg: &ModelConfig, seed: u64) -> RefMasks {
    let mut rng = Pcg64::seed_from_u64(seed);
    let mut draw = |width: usize| -> Vec<f64> {
        (0..b * groups * width)
            .map(|_| if rng.gen_bool(0.7) { 1.0 / 0.7 } else { 0.0 })
            .collect()
    };
    RefMasks {
        groups,
        x: Some(draw(cfg.embed_dim)),
        h: Some(draw(cfg.units)),
    }
}

fn batch(cfg: &ModelConfig, b: usize, seed: u64) -> (Vec<u32>, Vec<f64>) {
    let mut rng = Pcg64::seed_from_u64(seed);
    let ids = (0..b * cfg.maxlen)
        .map(|_| rng.gen_range(0..cfg.num_words as u32))
        .collect();
    let y = (0..b).map(|i| (i % 2) as f64).collect();
    (ids, y)
}

/// Central differences on every parameter of the reference network, for no dropout, one
/// shared mask and per-gate masks.
#[test]
fn reference_gradients_match_finite_differences() {
    let cfg = tiny();
    let (ids, y) = batch(&cfg, 3, 1);
    for masks in [
        RefMasks {
            groups: 1,
            x: None,
            h: None,
        },
        random_masks(3, 1, &cfg, 2),
        random_masks(3, 4, &cfg, 3),
    ] {
        let p = random_params(&cfg, 4, 0.8);
        let exact = reference::forward_backward(&cfg, &p, &ids, &y, &masks).grads;
        let eps = 1e-5;
        for i in 0..p.len() {
            let (mut plus, mut minus) = (p.clone(), p.clone());
            plus[i] += eps;
            minus[i] -= eps;
            let fd = (reference::forward_backward(&cfg, &plus, &ids, &y, &masks).loss
                - reference::forward_backward(&cfg, &minus, &ids, &y, &masks).loss)
                / (2.0 * eps);
            assert!(
                (fd - exact[i]).abs() < 1e-8 + 1e-6 * fd.abs(),
                "param {i} (groups {}): fd {fd} vs backprop {}",
                masks.groups,
                exact[i]
            );
        }
        assert!(
            exact.iter().filter(|g| g.abs() > 1e-6).count() > p.len() / 2,
            "most gradients should be non-trivial"
        );
    }
}

/// The loss's derivative w.r.t. the logit is sigmoid(z) - y, and the stable form equals the
/// naive one where the naive one is finite.
#[test]
fn bce_is_stable_and_right() {
    // Beyond |z| ~ 5 the naive form itself loses digits; the stable one is checked at the extremes below.
    for &z in &[-4.0f64, -3.0, -0.1, 0.0, 0.2, 4.0] {
        for &y in &[0.0, 1.0] {
            let p: f64 = 1.0 / (1.0 + (-z).exp());
            let naive = -(y * p.ln() + (1.0 - y) * (1.0 - p).ln());
            assert!(
                (bce_from_logit(z, y) - naive).abs() < 1e-9 * naive.max(1.0),
                "z={z} y={y}"
            );
            let eps = 1e-6;
            let fd = (bce_from_logit(z + eps, y) - bce_from_logit(z - eps, y)) / (2.0 * eps);
            assert!((fd - (p - y)).abs() < 1e-6, "z={z} y={y}");
        }
    }
    assert!(bce_from_logit(1000.0, 0.0).is_finite() && bce_from_logit(-1000.0, 1.0).is_finite());
    assert!((bce_from_logit(-1000.0, 1.0) - 1000.0).abs() < 1e-9);
}

/// The reference's LSTM masks as the network's (Embedding and Dense drop nothing).
fn to_f32_masks(m: &RefMasks) -> NetMasks {
    let f = |v: &Option<Vec<f64>>| v.as_ref().map(|v| v.iter().map(|&x| x as f32).collect());
    NetMasks {
        layers: vec![
            LayerMasks::None,
            LayerMasks::Recurrent(vec![RecurrentMasks {
                groups: m.groups,
                x: f(&m.x),
                h: f(&m.h),
            }]),
            LayerMasks::None,
        ],
    }
}

/// The tutorial stack of `cfg` on `threads` threads, packed with `params`.
fn network(cfg: &ModelConfig, threads: usize, params: &Params) -> Network {
    let mut net = Network::new(&cfg.arch(), threads).unwrap();
    net.refresh(&params.data);
    net
}

/// The fast path (f32, GEMMs, threads) equals the reference (f64, loops) within 1e-5, for
/// every gradient, with and without dropout masks, on 1 and 2 threads, and in a ragged split.
#[test]
fn fast_path_matches_reference() {
    let cfg = ModelConfig {
        num_words: 20,
        embed_dim: 8,
        units: 6,
        maxlen: 5,
        dropout: 0.2,
        recurrent_dropout: 0.2,
    };
    // (1, 4, 2) and (2, 1, 5): more threads than sequences, as in a last partial batch.
    for (b, groups, threads) in [
        (5, 0, 1),
        (5, 4, 2),
        (7, 1, 2),
        (4, 4, 3),
        (1, 4, 2),
        (2, 1, 5),
    ] {
        let (ids, y) = batch(&cfg, b, 10 + b as u64);
        let p64 = random_params(&cfg, 11, 0.5);
        let rm = if groups == 0 {
            RefMasks {
                groups: 1,
                x: None,
                h: None,
            }
        } else {
            random_masks(b, groups, &cfg, 12)
        };
        // Compare on the f32-rounded weights.
        let p32: Vec<f32> = p64.iter().map(|&x| x as f32).collect();
        let p64: Vec<f64> = p32.iter().map(|&x| x as f64).collect();
        let want = reference::forward_backward(&cfg, &p64, &ids, &y, &rm);
        let mut params = Params::zeros(&cfg);
        params.data.copy_from_slice(&p32);
        let mut net = network(&cfg, threads, &params);
        let mut grads = Gradients::zeros(&net);
        let yf: Vec<f32> = y.iter().map(|&v| v as f32).collect();
        let stats = net.train_batch(&params.data, &ids, &yf, &to_f32_masks(&rm), &mut grads);
        assert!(
            (stats.loss_sum / b as f64 - want.loss).abs() < 1e-5,
            "loss {} vs {}",
            stats.loss_sum / b as f64,
            want.loss
        );
        for (i, (g, w)) in grads.data().iter().zip(&want.grads).enumerate() {
            assert!(
                (*g as f64 - w).abs() < 1e-5 * (1.0 + w.abs()),
                "case ({b},{groups},{threads}) grad {i}: fast {g} vs reference {w}"
            );
        }
        // Without dropout, inference logits match too.
        let mut logits = vec![0.0f32; b];
        net.predict_logits(&params.data, &ids, &mut logits);
        let plain = reference::forward_backward(
            &cfg,
            &p64,
            &ids,
            &y,
            &RefMasks {
                groups: 1,
                x: None,
                h: None,
            },
        );
        for (z, w) in logits.iter().zip(&plain.logits) {
            assert!((*z as f64 - w).abs() < 1e-5, "logit {z} vs {w}");
        }
    }
}

/// A gradient buffer reused across batches holds exactly what a fresh one would: the rows of the
/// previous batch's tokens are cleared, not left to leak into the next step. And a non-finite
/// value in the batch's rows is seen.
#[test]
fn reused_gradients_equal_fresh_ones() {
    let cfg = ModelConfig {
        num_words: 30,
        embed_dim: 4,
        units: 3,
        maxlen: 4,
        dropout: 0.0,
        recurrent_dropout: 0.0,
    };
    let mut params = Params::zeros(&cfg);
    for (i, v) in params.data.iter_mut().enumerate() {
        *v = ((i as f32) * 0.37).sin() * 0.3;
    }
    let mut net = network(&cfg, 2, &params);
    let masks = NetMasks::default();
    let y = [1.0, 0.0, 1.0];
    // Tokens 0..12, then 12..24: no row in common.
    let first: Vec<u32> = (0..12).collect();
    let second: Vec<u32> = (12..24).collect();
    let mut reused = Gradients::zeros(&net);
    net.train_batch(&params.data, &first, &y, &masks, &mut reused);
    assert_eq!(reused.embedding_rows().len(), 12);
    assert!(reused.is_finite());
    net.train_batch(&params.data, &second, &y, &masks, &mut reused);
    let mut fresh = Gradients::zeros(&net);
    net.train_batch(&params.data, &second, &y, &masks, &mut fresh);
    assert_eq!(reused.data(), fresh.data());
    let mut rows = reused.embedding_rows().to_vec();
    rows.sort();
    assert_eq!(rows, second);
    // A weight of infinity in a token's embedding makes that row's gradient non-finite.
    params.tensor_mut(imdb_lstm::nn::params::EMBEDDING)[13 * 4] = f32::INFINITY;
    net.refresh(&params.data);
    net.train_batch(&params.data, &second, &y, &masks, &mut reused);
    assert!(!reused.is_finite());
}

/// The same batch on 1 thread and one sequence at a time gives the same logits as batched on 2.
#[test]
fn sequential_matches_batch() {
    let cfg = ModelConfig {
        num_words: 30,
        embed_dim: 8,
        units: 4,
        maxlen: 6,
        ..ModelConfig::default()
    };
    let params = Params {
        data: cfg.arch().init(&mut Pcg64::seed_from_u64(5)).unwrap(),
        ..Params::zeros(&cfg)
    };
    let (ids, _) = batch(&cfg, 9, 6);
    let mut net = network(&cfg, 2, &params);
    let mut all = vec![0.0; 9];
    net.predict_logits(&params.data, &ids, &mut all);
    let mut one = network(&cfg, 1, &params);
    for i in 0..9 {
        let mut z = [0.0];
        one.predict_logits(&params.data, &ids[i * 6..(i + 1) * 6], &mut z);
        assert!(
            (z[0] - all[i]).abs() < 1e-6,
            "sequence {i}: {} vs {}",
            z[0],
            all[i]
        );
    }
}

/// Keras lstm_test.py::test_correctness: constant weights, input arange(72) as (3, 6, 4).
fn keras_golden_case(unit_forget_bias: bool, go_backwards: bool) -> [f64; 3] {
    let cfg = ModelConfig {
        num_words: 4,
        embed_dim: 4,
        units: 3,
        maxlen: 6,
        dropout: 0.0,
        recurrent_dropout: 0.0,
    };
    let mut p = Params::zeros(&cfg);
    p.tensor_mut(KERNEL).fill(0.01);
    p.tensor_mut(RECURRENT).fill(0.02);
    p.tensor_mut(BIAS).fill(0.03);
    if unit_forget_bias {
        p.tensor_mut(BIAS)[3..6].fill(1.0);
    }
    let (b, t_len, d, h) = (3, 6, 4, 3);
    let mut x: Vec<f32> = (0..72).map(|v| v as f32).collect(); // [B, T, D]
    if go_backwards {
        for bi in 0..b {
            let seq: Vec<f32> = (0..t_len)
                .rev()
                .flat_map(|t| x[(bi * t_len + t) * d..(bi * t_len + t + 1) * d].to_vec())
                .collect();
            x[bi * t_len * d..(bi + 1) * t_len * d].copy_from_slice(&seq);
        }
    }
    // Reference path.
    let p64: Vec<f64> = p.data.iter().map(|&v| v as f64).collect();
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let want = reference::lstm_last_h(&cfg, &p64, &x64, b);
    // Fast path: time-major inputs.
    let mut cache = LstmCache::default();
    cache.prepare(t_len, b, d, h);
    for t in 0..t_len {
        for bi in 0..b {
            cache.x[(t * b + bi) * d..(t * b + bi + 1) * d]
                .copy_from_slice(&x[(bi * t_len + t) * d..(bi * t_len + t + 1) * d]);
        }
    }
    let (mut kp, mut rp) = (PackedGates::default(), PackedGates::default());
    kp.pack(p.tensor(KERNEL), d, h);
    rp.pack(p.tensor(RECURRENT), h, h);
    let w = LstmWeights {
        kernel: p.tensor(KERNEL),
        recurrent: p.tensor(RECURRENT),
        bias: p.tensor(BIAS),
        kernel_packed: &kp,
        recurrent_packed: &rp,
    };
    cache.forward(&w, None, None);
    let out = cache.output();
    let mut res = [0.0; 3];
    for bi in 0..b {
        for j in 0..h {
            assert!(
                (out[bi * h + j] as f64 - want[bi][j]).abs() < 1e-6,
                "fast vs reference"
            );
            assert!((want[bi][j] - want[bi][0]).abs() < 1e-12, "all units equal");
        }
        res[bi] = out[bi * h] as f64;
    }
    res
}

fn assert_close(got: [f64; 3], want: [f64; 3]) {
    for (g, w) in got.iter().zip(want) {
        assert!(((g - w) / w).abs() < 1e-6, "got {got:?}, want {want:?}");
    }
}

#[test]
fn keras_golden_constant_weights() {
    assert_close(
        keras_golden_case(true, false),
        [0.6288687, 0.86899155, 0.9460773],
    );
}

#[test]
fn keras_golden_go_backwards() {
    assert_close(
        keras_golden_case(true, true),
        [0.35622165, 0.74789524, 0.8872726],
    );
}

#[test]
fn keras_golden_without_unit_forget_bias() {
    assert_close(
        keras_golden_case(false, false),
        [0.57019705, 0.8661914, 0.9459622],
    );
}
