//! The recurrent building blocks of the layer stack: the LSTM's output sequence and per-step
//! backward, and the GRU. Checked against Keras's golden values (see `keras_layers_golden.md` in
//! `../shared/reference/` beside the checkout), the naive f64 twins in `nn::reference`, and
//! finite differences of those twins.

use imdb_lstm::nn::gru::{self, GruCache, GruGrads, GruWeights};
use imdb_lstm::nn::lstm::{LstmCache, LstmGrads, LstmWeights, Mask, PackedGates, Upstream};
use imdb_lstm::nn::reference::{self, RefLayer, RefMasks, RefWeights};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

/// The golden file's weight recipe: w[i] = 0.1 * sin(0.37 * i + s), s = the tensor's position
/// in its layer's `get_weights()`, from 1.
fn recipe_w(len: usize, s: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (0.1 * (0.37 * i as f64 + s as f64).sin()) as f32)
        .collect()
}

/// The golden file's input recipe, `[B, T, D]`: x[i] = 0.5 * cos(0.23 * i).
fn recipe_x(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (0.5 * (0.23 * i as f64).cos()) as f32)
        .collect()
}

/// `[B, T, W]` (Keras, batch-major) <-> `[T, B, W]` (the layers here, time-major).
fn transpose_bt(v: &[f32], b: usize, t: usize, w: usize) -> Vec<f32> {
    let mut out = vec![0.0; v.len()];
    for bi in 0..b {
        for ti in 0..t {
            out[(ti * b + bi) * w..(ti * b + bi + 1) * w]
                .copy_from_slice(&v[(bi * t + ti) * w..(bi * t + ti + 1) * w]);
        }
    }
    out
}

/// Each sequence of `[T, B, W]` reversed in time (what Bidirectional feeds its backward layer).
fn reverse_time(v: &[f32], t: usize, bw: usize) -> Vec<f32> {
    (0..t)
        .rev()
        .flat_map(|ti| v[ti * bw..(ti + 1) * bw].to_vec())
        .collect()
}

fn packed(w: &[f32], k: usize, gates: usize, h: usize) -> PackedGates {
    let mut p = PackedGates::default();
    p.pack_gates(w, k, gates, h);
    p
}

fn assert_near(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (*g as f64 - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

/// Runs an LSTM forward over time-major `x` `[T, B, D]` without dropout.
fn lstm_forward(x: &[f32], t: usize, b: usize, w: [&[f32]; 3]) -> LstmCache {
    let [kernel, recurrent, bias] = w;
    let h = bias.len() / 4;
    let d = kernel.len() / (4 * h);
    let (kp, rp) = (packed(kernel, d, 4, h), packed(recurrent, h, 4, h));
    let lw = LstmWeights {
        kernel,
        recurrent,
        bias,
        kernel_packed: &kp,
        recurrent_packed: &rp,
    };
    let mut c = LstmCache::default();
    c.prepare(t, b, d, h);
    c.x[..x.len()].copy_from_slice(x);
    c.forward(&lw, None, None);
    c
}

/// Runs a GRU forward over time-major `x` `[T, B, D]` without dropout.
fn gru_forward(x: &[f32], t: usize, b: usize, w: [&[f32]; 3]) -> GruCache {
    let [kernel, recurrent, bias] = w;
    let h = bias.len() / 6;
    let d = kernel.len() / (3 * h);
    let (kp, rp) = (packed(kernel, d, 3, h), packed(recurrent, h, 3, h));
    let gw = GruWeights {
        bias,
        kernel_packed: &kp,
        recurrent_packed: &rp,
    };
    let mut c = GruCache::default();
    c.prepare(t, b, d, h);
    c.x[..x.len()].copy_from_slice(x);
    c.forward(&gw, None, None);
    c
}

fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn no_masks() -> RefMasks {
    RefMasks {
        groups: 1,
        x: None,
        h: None,
    }
}

/// GRU(3) weights and input (2, 5, 4) from the recipe.
fn golden_gru() -> (Vec<f32>, [Vec<f32>; 3]) {
    let x = transpose_bt(&recipe_x(2 * 5 * 4), 2, 5, 4);
    (
        x,
        [recipe_w(4 * 9, 1), recipe_w(3 * 9, 2), recipe_w(2 * 9, 3)],
    )
}

/// Keras 3.15 `GRU(3, return_sequences=True)` on the recipe, `[B, T, H]` (the last step of each
/// sequence is also `GRU(3)`'s output).
const GRU_GOLDEN_SEQ: [f64; 30] = [
    -0.01788438,
    -0.01597727,
    -0.01190527,
    -0.03374334,
    -0.03190499,
    -0.02570421,
    -0.04791781,
    -0.04427427,
    -0.03452976,
    -0.05554733,
    -0.04764489,
    -0.03313083,
    -0.0535918,
    -0.04131386,
    -0.02331531,
    -0.0190979,
    -0.01158946,
    -0.00250836,
    -0.02495834,
    -0.01669266,
    -0.00617078,
    -0.0312009,
    -0.0254598,
    -0.01624081,
    -0.04166658,
    -0.03773353,
    -0.02862384,
    -0.05245132,
    -0.04719916,
    -0.03543383,
];

#[test]
fn gru_matches_keras_golden_last_state() {
    let (x, [k, u, bias]) = golden_gru();
    let c = gru_forward(&x, 5, 2, [&k, &u, &bias]);
    // Keras GRU(3): [[-0.0535918, -0.04131386, -0.02331531], [-0.05245132, -0.04719916, -0.03543383]]
    let want = [
        -0.0535918,
        -0.04131386,
        -0.02331531,
        -0.05245132,
        -0.04719916,
        -0.03543383,
    ];
    assert_near(c.output(), &want, 1e-5, "GRU(3)");
    // The naive twin agrees.
    let w = RefWeights {
        d: 4,
        h: 3,
        kernel: to64(&k),
        recurrent: to64(&u),
        bias: to64(&bias),
    };
    let x_bt = to64(&recipe_x(40));
    let r = reference::gru_layer(&x_bt, 2, &w, &no_masks(), &[0.0; 30]);
    let got: Vec<f32> = r.out.iter().map(|&v| v as f32).collect();
    assert_near(&got, &GRU_GOLDEN_SEQ, 1e-5, "reference GRU sequence");
}

#[test]
fn gru_return_sequences_matches_keras_golden() {
    let (x, [k, u, bias]) = golden_gru();
    let c = gru_forward(&x, 5, 2, [&k, &u, &bias]);
    let got = transpose_bt(c.sequence(), 5, 2, 3);
    assert_near(&got, &GRU_GOLDEN_SEQ, 1e-5, "GRU(3, return_sequences)");
}

/// Bidirectional(LSTM(2)), merge_mode concat: the backward layer is the same LSTM run on the
/// time-reversed input by the caller; its h_T is the backward half of the output.
#[test]
fn bidirectional_lstm_with_time_reversed_input_matches_keras_golden() {
    let (b, t, d, h) = (2, 4, 3, 2);
    let x = transpose_bt(&recipe_x(b * t * d), b, t, d);
    let w: Vec<Vec<f32>> = [d * 4 * h, h * 4 * h, 4 * h, d * 4 * h, h * 4 * h, 4 * h]
        .iter()
        .enumerate()
        .map(|(i, &n)| recipe_w(n, i + 1))
        .collect();
    let fwd = lstm_forward(&x, t, b, [&w[0], &w[1], &w[2]]);
    let bwd = lstm_forward(&reverse_time(&x, t, b * d), t, b, [&w[3], &w[4], &w[5]]);
    let mut got = vec![];
    for bi in 0..b {
        got.extend_from_slice(&fwd.output()[bi * h..(bi + 1) * h]);
        got.extend_from_slice(&bwd.output()[bi * h..(bi + 1) * h]);
    }
    // Keras: [[-0.04638581, -0.04571871, 0.03390087, 0.04196772],
    //         [-0.04259598, -0.04180518, 0.06159567, 0.06123824]]
    let want = [
        -0.04638581,
        -0.04571871,
        0.03390087,
        0.04196772,
        -0.04259598,
        -0.04180518,
        0.06159567,
        0.06123824,
    ];
    assert_near(&got, &want, 1e-5, "Bidirectional(LSTM(2))");
}

/// LSTM(3, return_sequences=True) then LSTM(2): the first layer's sequence is the second's input.
#[test]
fn stacked_lstm_matches_keras_golden() {
    let (b, t, d) = (2, 5, 4);
    let x = transpose_bt(&recipe_x(b * t * d), b, t, d);
    let first = lstm_forward(
        &x,
        t,
        b,
        [&recipe_w(4 * 12, 1), &recipe_w(3 * 12, 2), &recipe_w(12, 3)],
    );
    let second = lstm_forward(
        first.sequence(),
        t,
        b,
        [&recipe_w(3 * 8, 1), &recipe_w(2 * 8, 2), &recipe_w(8, 3)],
    );
    // Keras: [[-0.04422772, -0.04402218], [-0.04434669, -0.04410389]]
    let want = [-0.04422772, -0.04402218, -0.04434669, -0.04410389];
    assert_near(second.output(), &want, 1e-5, "LSTM(3, seq) -> LSTM(2)");
}

fn random(n: usize, scale: f64, rng: &mut Pcg64) -> Vec<f64> {
    (0..n).map(|_| rng.gen_range(-scale..scale)).collect()
}

/// Weights rounded to f32, so the f32 path and the f64 twin compute on the same numbers.
fn random_weights(d: usize, h: usize, gates: usize, bias_rows: usize, seed: u64) -> RefWeights {
    let rng = &mut Pcg64::seed_from_u64(seed);
    let round = |v: Vec<f64>| v.iter().map(|&x| x as f32 as f64).collect();
    RefWeights {
        d,
        h,
        kernel: round(random(d * gates * h, 0.7, rng)),
        recurrent: round(random(h * gates * h, 0.7, rng)),
        bias: round(random(bias_rows * gates * h, 0.5, rng)),
    }
}

/// Masks `[B, G, width]` of 0 or 1/0.7 (inverted dropout), or none (`groups == 0`).
fn random_masks(b: usize, groups: usize, d: usize, h: usize, seed: u64) -> RefMasks {
    if groups == 0 {
        return no_masks();
    }
    let mut rng = Pcg64::seed_from_u64(seed);
    let mut draw = |width: usize| -> Vec<f64> {
        (0..b * groups * width)
            .map(|_| if rng.gen_bool(0.7) { 1.0 / 0.7 } else { 0.0 })
            .collect()
    };
    RefMasks {
        groups,
        x: Some(draw(d)),
        h: Some(draw(h)),
    }
}

/// An upstream gradient `[B, T, H]` for every step, or for the last step only.
fn random_dout(b: usize, t: usize, h: usize, every_step: bool, seed: u64) -> Vec<f64> {
    let mut dout = random(b * t * h, 1.0, &mut Pcg64::seed_from_u64(seed));
    if !every_step {
        for (i, v) in dout.iter_mut().enumerate() {
            if (i / h) % t != t - 1 {
                *v = 0.0;
            }
        }
    }
    dout
}

type Twin = fn(&[f64], usize, &RefWeights, &RefMasks, &[f64]) -> RefLayer;

/// Central differences of loss = Σ out ⊙ dout w.r.t. every weight and input of a twin.
fn check_finite_differences(twin: Twin, gates: usize, bias_rows: usize) {
    let (b, t, d, h) = (2, 4, 3, 2);
    let x = random(b * t * d, 1.0, &mut Pcg64::seed_from_u64(7));
    for (groups, every_step) in [
        (0, false),
        (0, true),
        (1, true),
        (gates, false),
        (gates, true),
    ] {
        let w = random_weights(d, h, gates, bias_rows, 8);
        let m = random_masks(b, groups, d, h, 9);
        let dout = random_dout(b, t, h, every_step, 10);
        let exact = twin(&x, b, &w, &m, &dout);
        let loss = |x: &[f64], w: &RefWeights| -> f64 {
            let out = twin(x, b, w, &m, &dout).out;
            out.iter().zip(&dout).map(|(o, g)| o * g).sum()
        };
        let eps = 1e-5;
        let fd = |f: &dyn Fn(f64) -> f64| (f(eps) - f(-eps)) / (2.0 * eps);
        let check = |name: &str, i: usize, fd: f64, exact: f64| {
            assert!(
                (fd - exact).abs() < 1e-8 + 1e-6 * fd.abs(),
                "{name}[{i}] (groups {groups}, every step {every_step}): fd {fd} vs backprop {exact}"
            );
        };
        for i in 0..x.len() {
            let f = |e: f64| {
                let mut xp = x.clone();
                xp[i] += e;
                loss(&xp, &w)
            };
            check("dx", i, fd(&f), exact.dx[i]);
        }
        type Field = fn(&mut RefWeights) -> &mut Vec<f64>;
        let fields: [(&str, Field, &Vec<f64>); 3] = [
            ("kernel", |w| &mut w.kernel, &exact.kernel),
            ("recurrent", |w| &mut w.recurrent, &exact.recurrent),
            ("bias", |w| &mut w.bias, &exact.bias),
        ];
        for (name, field, grads) in fields {
            for (i, &g) in grads.iter().enumerate() {
                let f = |e: f64| {
                    let mut wp = w.clone();
                    field(&mut wp)[i] += e;
                    loss(&x, &wp)
                };
                check(name, i, fd(&f), g);
            }
        }
        let all = [&exact.dx, &exact.kernel, &exact.recurrent, &exact.bias];
        let (nonzero, total) = all.iter().fold((0, 0), |(n, t), g| {
            (n + g.iter().filter(|v| v.abs() > 1e-6).count(), t + g.len())
        });
        assert!(nonzero > total / 2, "most gradients should be non-trivial");
    }
}

#[test]
fn gru_twin_gradients_match_finite_differences() {
    check_finite_differences(reference::gru_layer, 3, 2);
}

#[test]
fn lstm_twin_gradients_match_finite_differences() {
    check_finite_differences(reference::lstm_layer, 4, 1);
}

/// What a fast layer returns for the comparison with its twin: (output sequence `[T, B, H]`,
/// dx `[T*B, D]`, kernel, recurrent and bias gradients).
type Fast = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);

fn masks32(m: &RefMasks) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let f = |v: &Option<Vec<f64>>| v.as_ref().map(|v| v.iter().map(|&x| x as f32).collect());
    (f(&m.x), f(&m.h))
}

/// The fast LSTM over time-major `x`, backward from `up`, gradients accumulated onto `base`
/// (so `+=` is checked too).
fn lstm_fast(x: &[f32], t: usize, b: usize, w: &RefWeights, m: &RefMasks, up: Upstream) -> Fast {
    let (d, h) = (w.d, w.h);
    let (k, u, bias): (Vec<f32>, Vec<f32>, Vec<f32>) =
        (f32s(&w.kernel), f32s(&w.recurrent), f32s(&w.bias));
    let (kp, rp) = (packed(&k, d, 4, h), packed(&u, h, 4, h));
    let lw = LstmWeights {
        kernel: &k,
        recurrent: &u,
        bias: &bias,
        kernel_packed: &kp,
        recurrent_packed: &rp,
    };
    let (xm, hm) = masks32(m);
    let (xm, hm) = (as_mask(&xm, m.groups), as_mask(&hm, m.groups));
    let mut c = LstmCache::default();
    c.prepare(t, b, d, h);
    c.x[..x.len()].copy_from_slice(x);
    c.forward(&lw, xm, hm);
    let (mut gk, mut gu, mut gb) = (
        vec![1.0; k.len()],
        vec![1.0; u.len()],
        vec![1.0; bias.len()],
    );
    let grads = LstmGrads {
        kernel: &mut gk,
        recurrent: &mut gu,
        bias: &mut gb,
    };
    c.backward_from(&lw, xm, hm, up, grads);
    let dx = c.dx[..t * b * d].to_vec();
    (
        c.sequence().to_vec(),
        dx,
        minus1(gk),
        minus1(gu),
        minus1(gb),
    )
}

fn gru_fast(x: &[f32], t: usize, b: usize, w: &RefWeights, m: &RefMasks, up: Upstream) -> Fast {
    let (d, h) = (w.d, w.h);
    let (k, u, bias) = (f32s(&w.kernel), f32s(&w.recurrent), f32s(&w.bias));
    let (kp, rp) = (packed(&k, d, 3, h), packed(&u, h, 3, h));
    let gw = GruWeights {
        bias: &bias,
        kernel_packed: &kp,
        recurrent_packed: &rp,
    };
    let (xm, hm) = masks32(m);
    let (xm, hm) = (as_mask(&xm, m.groups), as_mask(&hm, m.groups));
    let mut c = GruCache::default();
    c.prepare(t, b, d, h);
    c.x[..x.len()].copy_from_slice(x);
    c.forward(&gw, xm, hm);
    let (mut gk, mut gu, mut gb) = (
        vec![1.0; k.len()],
        vec![1.0; u.len()],
        vec![1.0; bias.len()],
    );
    let grads = GruGrads {
        kernel: &mut gk,
        recurrent: &mut gu,
        bias: &mut gb,
    };
    c.backward_from(&gw, xm, hm, up, grads);
    let dx = c.dx[..t * b * d].to_vec();
    (
        c.sequence().to_vec(),
        dx,
        minus1(gk),
        minus1(gu),
        minus1(gb),
    )
}

fn as_mask(v: &Option<Vec<f32>>, groups: usize) -> Option<Mask<'_>> {
    v.as_deref().map(|data| Mask { groups, data })
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn minus1(v: Vec<f32>) -> Vec<f32> {
    v.into_iter().map(|x| x - 1.0).collect()
}

type FastLayer = fn(&[f32], usize, usize, &RefWeights, &RefMasks, Upstream) -> Fast;

/// The fast f32 layer equals its f64 twin within 1e-5: the output sequence and every gradient,
/// without masks, with one shared mask and with per-gate masks, from the last step's dh
/// ([`Upstream::Last`]) and from every step's ([`Upstream::Steps`]).
fn check_fast_against_twin(fast: FastLayer, twin: Twin, gates: usize, bias_rows: usize) {
    let (t, d, h) = (5, 7, 6);
    for (b, groups, every_step) in [
        (3, 0, false),
        (3, 0, true),
        (4, 1, true),
        (2, gates, false),
        (5, gates, true),
        (1, gates, true),
    ] {
        let case = format!("(b {b}, groups {groups}, every step {every_step})");
        let w = random_weights(d, h, gates, bias_rows, 20 + b as u64);
        let x = f32s(&random(b * t * d, 1.0, &mut Pcg64::seed_from_u64(21)));
        let m = random_masks(b, groups, d, h, 22);
        let dout = f32s(&random_dout(b, t, h, every_step, 23));
        let want = twin(&to64(&x), b, &w, &m, &to64(&dout));
        let dout_tm = transpose_bt(&dout, b, t, h);
        let last = dout_tm[(t - 1) * b * h..].to_vec();
        let up = if every_step {
            Upstream::Steps(&dout_tm)
        } else {
            Upstream::Last(&last)
        };
        let (out, dx, gk, gu, gb) = fast(&transpose_bt(&x, b, t, d), t, b, &w, &m, up);
        assert_near(
            &transpose_bt(&out, t, b, h),
            &want.out,
            1e-5,
            &format!("out {case}"),
        );
        assert_near(
            &transpose_bt(&dx, t, b, d),
            &want.dx,
            1e-5,
            &format!("dx {case}"),
        );
        assert_near(&gk, &want.kernel, 1e-5, &format!("kernel grad {case}"));
        assert_near(
            &gu,
            &want.recurrent,
            1e-5,
            &format!("recurrent grad {case}"),
        );
        assert_near(&gb, &want.bias, 1e-5, &format!("bias grad {case}"));
    }
}

#[test]
fn gru_fast_path_matches_twin() {
    check_fast_against_twin(gru_fast, reference::gru_layer, 3, 2);
}

#[test]
fn lstm_sequence_and_per_step_backward_match_twin() {
    check_fast_against_twin(lstm_fast, reference::lstm_layer, 4, 1);
}

/// The old last-step `backward` equals `backward_from` with `Upstream::Last`, and with
/// `Upstream::Steps` zero everywhere but the last step.
#[test]
fn lstm_last_step_backward_equals_steps_with_zeros_before() {
    let (b, t, d, h) = (3, 4, 5, 3);
    let w = random_weights(d, h, 4, 1, 30);
    let m = random_masks(b, 4, d, h, 31);
    let x = f32s(&random(t * b * d, 1.0, &mut Pcg64::seed_from_u64(32)));
    let last = f32s(&random(b * h, 1.0, &mut Pcg64::seed_from_u64(33)));
    let mut steps = vec![0.0; t * b * h];
    steps[(t - 1) * b * h..].copy_from_slice(&last);
    let a = lstm_fast(&x, t, b, &w, &m, Upstream::Last(&last));
    let s = lstm_fast(&x, t, b, &w, &m, Upstream::Steps(&steps));
    assert_eq!(a, s);
    // And the wrapper with the old signature (the engine's) gives the same.
    let (k, u, bias) = (f32s(&w.kernel), f32s(&w.recurrent), f32s(&w.bias));
    let (kp, rp) = (packed(&k, d, 4, h), packed(&u, h, 4, h));
    let lw = LstmWeights {
        kernel: &k,
        recurrent: &u,
        bias: &bias,
        kernel_packed: &kp,
        recurrent_packed: &rp,
    };
    let (xm, hm) = masks32(&m);
    let (xm, hm) = (as_mask(&xm, 4), as_mask(&hm, 4));
    let mut c = LstmCache::default();
    c.prepare(t, b, d, h);
    c.x[..x.len()].copy_from_slice(&x);
    c.forward(&lw, xm, hm);
    let (mut gk, mut gu, mut gb) = (
        vec![1.0; k.len()],
        vec![1.0; u.len()],
        vec![1.0; bias.len()],
    );
    let grads = LstmGrads {
        kernel: &mut gk,
        recurrent: &mut gu,
        bias: &mut gb,
    };
    c.backward(&lw, xm, hm, &last, grads);
    assert_eq!(c.dx[..t * b * d], a.1[..]);
    assert_eq!((minus1(gk), minus1(gu), minus1(gb)), (a.2, a.3, a.4));
}

/// Inference from a projection table (embeddings * kernel) gives the training forward's h_T.
#[test]
fn gru_inference_from_table_equals_forward() {
    let (v, b, t, d, h) = (9, 4, 6, 5, 4);
    let rng = &mut Pcg64::seed_from_u64(40);
    let emb = f32s(&random(v * d, 1.0, rng));
    let w = random_weights(d, h, 3, 2, 41);
    let (k, u, bias) = (f32s(&w.kernel), f32s(&w.recurrent), f32s(&w.bias));
    let ids: Vec<u32> = (0..b * t).map(|_| rng.gen_range(0..v as u32)).collect(); // [B, T]
    let mut table = vec![0.0f32; v * 3 * h];
    for tok in 0..v {
        for col in 0..3 * h {
            table[tok * 3 * h + col] = (0..d)
                .map(|k_| emb[tok * d + k_] * k[k_ * 3 * h + col])
                .sum();
        }
    }
    let x_bt: Vec<f32> = ids
        .iter()
        .flat_map(|&tok| emb[tok as usize * d..(tok as usize + 1) * d].to_vec())
        .collect();
    let fwd = gru_forward(&transpose_bt(&x_bt, b, t, d), t, b, [&k, &u, &bias]);
    let rp = packed(&u, h, 3, h);
    let mut c = GruCache::default();
    let got = c.infer(&table, &bias, &ids, t, h, &rp).to_vec();
    assert_near(&got, &to64(fwd.output()), 1e-5, "GRU inference");
}

/// Keras's initialisers: glorot_uniform kernel, orthogonal recurrent kernel (its rows
/// orthonormal, as U is wider than tall), zero bias.
#[test]
fn gru_init_is_keras() {
    let (d, h) = (5, 4);
    let (k, u, bias) = gru::init(d, h, &mut Pcg64::seed_from_u64(50));
    let limit = (6.0f32 / (d + 3 * h) as f32).sqrt();
    assert_eq!(
        (k.len(), u.len(), bias.len()),
        (d * 3 * h, h * 3 * h, 6 * h)
    );
    assert!(k.iter().all(|v| v.abs() <= limit) && k.iter().any(|v| v.abs() > limit / 2.0));
    assert!(bias.iter().all(|&v| v == 0.0));
    for i in 0..h {
        for j in 0..h {
            let dot: f32 = (0..3 * h)
                .map(|c| u[i * 3 * h + c] * u[j * 3 * h + c])
                .sum();
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((dot - want).abs() < 1e-5, "U U^T [{i},{j}] = {dot}");
        }
    }
}
