//! The Conv1D, pooling, Dense and Activation layers: Keras's golden values, their f64 twins
//! against finite differences, and the f32 fast paths against the twins on edge-case shapes.

use imdb_lstm::nn::conv::{self, Conv1d};
use imdb_lstm::nn::dense::{
    self, sigmoid_cross_entropy, softmax_cross_entropy, Activation, Cache, Dense, Grads,
};
use imdb_lstm::nn::pool::{self, GlobalAvgPool1d, GlobalMaxPool1d, MaxPool1d};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use Activation::{Linear, Relu, Sigmoid, Softmax};

// ---- helpers ----

/// Keras golden recipe (`shared/reference/keras_layers_golden.md`): the layer's s-th weight
/// tensor (from 1) is w[i] = 0.1 sin(0.37 i + s), row-major in Keras's shape.
fn recipe_w(len: usize, s: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (0.1 * (0.37 * i as f64 + s as f64).sin()) as f32)
        .collect()
}

/// Keras golden recipe: inputs are x[i] = 0.5 cos(0.23 i), row-major.
fn recipe_x(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (0.5 * (0.23 * i as f64).cos()) as f32)
        .collect()
}

fn assert_golden(got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!((g as f64 - w).abs() < 1e-5, "at {i}: {g} vs Keras {w}");
    }
}

fn random(len: usize, seed: u64) -> Vec<f64> {
    let mut rng = Pcg64::seed_from_u64(seed);
    (0..len).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// |fast - twin| within 2e-5 absolute + 1e-4 relative, element by element.
fn assert_matches(what: &str, fast: &[f32], twin: &[f64]) {
    assert_eq!(fast.len(), twin.len(), "{what}: length");
    for (i, (&a, &b)) in fast.iter().zip(twin).enumerate() {
        assert!(
            (a as f64 - b).abs() < 2e-5 + 1e-4 * b.abs(),
            "{what} at {i}: fast {a} vs twin {b}"
        );
    }
}

/// Central differences of `loss` at every element of `p`, against `exact`.
fn check_gradient(what: &str, p: &[f64], exact: &[f64], loss: impl Fn(&[f64]) -> f64) {
    let eps = 1e-6;
    for i in 0..p.len() {
        let (mut plus, mut minus) = (p.to_vec(), p.to_vec());
        plus[i] += eps;
        minus[i] -= eps;
        let fd = (loss(&plus) - loss(&minus)) / (2.0 * eps);
        assert!(
            (fd - exact[i]).abs() < 1e-7 + 1e-6 * fd.abs(),
            "{what}[{i}]: finite difference {fd} vs backward {}",
            exact[i]
        );
    }
}

/// The scalar every gradient check differentiates: sum(dy * y) for a fixed random dy.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

// ---- Keras golden values (Keras 3.15, TensorFlow backend, float32) ----

/// Conv1D(3, kernel_size=2, relu) on x (2, 5, 4); kernel (2, 4, 3) with s = 1, bias (3,) s = 2.
fn golden_conv(x: &[f32], cache: &mut Cache) -> Conv1d {
    let mut layer = Conv1d::new(5, 4, 2, 3, Relu);
    layer.pack(&recipe_w(24, 1));
    layer.forward(&recipe_w(3, 2), x, 2, cache);
    layer
}

#[test]
fn keras_golden_conv1d_relu() {
    let mut cache = Cache::default();
    let layer = golden_conv(&recipe_x(40), &mut cache);
    #[rustfmt::skip]
    let want = [
        0.1263685, 0.09777603, 0.05595003, 0.08102152, 0.05733402, 0.02588663,
        0.04348579, 0.02666275, 0.00623103, 0.04335296, 0.0299422, 0.01247892,
        0.12614536, 0.10328457, 0.06644469, 0.14380042, 0.1155273, 0.07161812,
        0.11977434, 0.09166354, 0.0511465, 0.07300836, 0.05050649, 0.02116882,
    ];
    assert_golden(cache.output(layer.out_len()), &want);
}

#[test]
fn keras_golden_conv1d_then_max_pooling() {
    let mut conv_cache = Cache::default();
    let conv = golden_conv(&recipe_x(40), &mut conv_cache);
    let pool = MaxPool1d {
        steps: 4,
        channels: 3,
        pool: 2,
    };
    let mut cache = Cache::default();
    pool.forward(conv_cache.output(conv.out_len()), 2, &mut cache);
    #[rustfmt::skip]
    let want = [
        0.1263685, 0.09777603, 0.05595003, 0.04348579, 0.0299422, 0.01247892,
        0.14380042, 0.1155273, 0.07161812, 0.11977434, 0.09166354, 0.0511465,
    ];
    assert_golden(cache.output(pool.out_len()), &want);
}

#[test]
fn keras_golden_global_max_pooling() {
    let layer = GlobalMaxPool1d {
        steps: 5,
        channels: 4,
    };
    let mut cache = Cache::default();
    layer.forward(&recipe_x(40), 2, &mut cache);
    #[rustfmt::skip]
    let want = [
        0.5, 0.48683318, 0.44802624, 0.385623,
        0.49386486, 0.4630577, 0.47719517, 0.49866158,
    ];
    assert_golden(cache.output(4), &want);
}

#[test]
fn keras_golden_global_average_pooling() {
    let layer = GlobalAvgPool1d {
        steps: 5,
        channels: 4,
    };
    let mut cache = Cache::default();
    layer.forward(&recipe_x(40), 2, &mut cache);
    #[rustfmt::skip]
    let want = [
        -0.04467428, -0.08041231, -0.11191522, -0.13752389,
        0.16591021, 0.15556076, 0.13701837, 0.11125958,
    ];
    assert_golden(cache.output(4), &want);
}

/// Dense(3, softmax) on x (2, 4); kernel (4, 3) with s = 1, bias (3,) s = 2.
#[test]
fn keras_golden_dense_softmax() {
    let mut layer = Dense::new(4, 3, Softmax);
    layer.pack(&recipe_w(12, 1));
    let mut cache = Cache::default();
    layer.forward(&recipe_w(3, 2), &recipe_x(8), 2, &mut cache);
    #[rustfmt::skip]
    let want = [
        0.34974587, 0.3344088, 0.31584528,
        0.34341857, 0.334868, 0.32171336,
    ];
    assert_golden(cache.output(3), &want);
}

/// The fastText head: Embedding(7, 3) (table with s = 1) -> GlobalAveragePooling1D ->
/// Dense(1, sigmoid) (kernel (3, 1) s = 1, bias (1,) s = 2), on fixed ids.
#[test]
fn keras_golden_fasttext_head() {
    let ids = [[1, 4, 2, 6, 0], [3, 3, 5, 1, 2]];
    let table = recipe_w(21, 1);
    let x: Vec<f32> = ids
        .iter()
        .flatten()
        .flat_map(|&i| table[i * 3..i * 3 + 3].to_vec())
        .collect();
    let avg = GlobalAvgPool1d {
        steps: 5,
        channels: 3,
    };
    let mut avg_cache = Cache::default();
    avg.forward(&x, 2, &mut avg_cache);
    let mut dense = Dense::new(3, 1, Sigmoid);
    dense.pack(&recipe_w(3, 1));
    let mut cache = Cache::default();
    dense.forward(&recipe_w(1, 2), avg_cache.output(3), 2, &mut cache);
    assert_golden(cache.output(1), &[0.5249584, 0.52105343]);
}

// ---- f64 twins against finite differences ----

const ACTS: [Activation; 4] = [Linear, Relu, Sigmoid, Softmax];

/// (b, T, C, k, F): plain, kernel_size 1, kernel_size == T, batch 1.
const CONV_SHAPES: [(usize, usize, usize, usize, usize); 4] = [
    (2, 6, 3, 3, 4),
    (2, 4, 3, 1, 2),
    (2, 4, 2, 4, 3),
    (1, 5, 2, 2, 3),
];

#[test]
fn conv1d_twin_gradients_match_finite_differences() {
    for (b, t, c, k, f) in CONV_SHAPES {
        for act in [Linear, Relu] {
            let (x, w, bias) = (random(b * t * c, 1), random(k * c * f, 2), random(f, 3));
            let dy = random(b * (t + 1 - k) * f, 4);
            let (dx, dw, db) = conv::naive::conv1d_backward(&x, &w, &bias, t, c, k, act, &dy);
            let what = format!("conv {b}x{t}x{c} k={k} f={f} {act:?}");
            let y =
                |x: &[f64], w: &[f64], bias: &[f64]| conv::naive::conv1d(x, w, bias, t, c, k, act);
            check_gradient(&format!("{what} dx"), &x, &dx, |p| {
                dot(&dy, &y(p, &w, &bias))
            });
            check_gradient(&format!("{what} dkernel"), &w, &dw, |p| {
                dot(&dy, &y(&x, p, &bias))
            });
            check_gradient(&format!("{what} dbias"), &bias, &db, |p| {
                dot(&dy, &y(&x, &w, p))
            });
        }
    }
}

#[test]
fn dense_twin_gradients_match_finite_differences() {
    let (rows, inp, units) = (3, 4, 5);
    for act in ACTS {
        let (x, w, b) = (
            random(rows * inp, 1),
            random(inp * units, 2),
            random(units, 3),
        );
        let dy = random(rows * units, 4);
        let (dx, dw, db) = dense::naive::dense_backward(&x, &w, &b, inp, act, &dy);
        let y = |x: &[f64], w: &[f64], b: &[f64]| dense::naive::dense(x, w, b, inp, act);
        check_gradient(&format!("dense {act:?} dx"), &x, &dx, |p| {
            dot(&dy, &y(p, &w, &b))
        });
        check_gradient(&format!("dense {act:?} dkernel"), &w, &dw, |p| {
            dot(&dy, &y(&x, p, &b))
        });
        check_gradient(&format!("dense {act:?} dbias"), &b, &db, |p| {
            dot(&dy, &y(&x, &w, p))
        });
    }
}

#[test]
fn activation_twin_gradients_match_finite_differences() {
    let width = 4;
    for act in ACTS {
        let (z, dy) = (random(3 * width, 5), random(3 * width, 6));
        let f = |z: &[f64]| {
            let mut y = z.to_vec();
            dense::naive::activate(act, &mut y, width);
            y
        };
        let dz = dense::naive::activate_backward(act, &f(&z), &dy, width);
        check_gradient(&format!("{act:?}"), &z, &dz, |p| dot(&dy, &f(p)));
    }
}

/// (T, C, p): remainder (5 = 2*2 + 1), pool 1, pool == T.
const POOL_SHAPES: [(usize, usize, usize); 3] = [(5, 3, 2), (4, 2, 1), (4, 3, 4)];

#[test]
fn pooling_twin_gradients_match_finite_differences() {
    for b in [1, 2] {
        for (t, c, p) in POOL_SHAPES {
            let x = random(b * t * c, 7);
            let dy = random(b * (t / p) * c, 8);
            let (_, dx) = pool::naive::max_pool(&x, &dy, t, c, p);
            check_gradient(&format!("max pool {b}x{t}x{c} p={p}"), &x, &dx, |x| {
                dot(&dy, &pool::naive::max_pool(x, &dy, t, c, p).0)
            });
        }
        let (t, c) = (5, 3);
        let x = random(b * t * c, 9);
        let dy = random(b * c, 10);
        let (_, dx) = pool::naive::global_max_pool(&x, &dy, t, c);
        check_gradient("global max pool", &x, &dx, |x| {
            dot(&dy, &pool::naive::global_max_pool(x, &dy, t, c).0)
        });
        let (_, dx) = pool::naive::global_avg_pool(&x, &dy, t, c);
        check_gradient("global average pool", &x, &dx, |x| {
            dot(&dy, &pool::naive::global_avg_pool(x, &dy, t, c).0)
        });
    }
}

// ---- the f32 fast paths against the twins ----

#[test]
fn conv1d_fast_path_matches_twin() {
    let mut cache = Cache::default();
    // One cache for every shape, biggest first: a reused buffer must not leak into the next.
    for (b, t, c, k, f) in [(3, 9, 4, 3, 5)].into_iter().chain(CONV_SHAPES) {
        for act in [Linear, Relu] {
            let (x, w, bias) = (random(b * t * c, 11), random(k * c * f, 12), random(f, 13));
            let dy = random(b * (t + 1 - k) * f, 14);
            let mut layer = Conv1d::new(t, c, k, f, act);
            layer.pack(&f32s(&w));
            layer.forward(&f32s(&bias), &f32s(&x), b, &mut cache);
            let what = format!("conv {b}x{t}x{c} k={k} f={f} {act:?}");
            let y = conv::naive::conv1d(&x, &w, &bias, t, c, k, act);
            assert_matches(&format!("{what} y"), cache.output(layer.out_len()), &y);
            let (mut gw, mut gb) = (vec![0.0; w.len()], vec![0.0; f]);
            let grads = Grads {
                kernel: &mut gw,
                bias: &mut gb,
            };
            layer.backward(&f32s(&x), &f32s(&dy), &mut cache, grads);
            let (dx, dw, db) = conv::naive::conv1d_backward(&x, &w, &bias, t, c, k, act, &dy);
            assert_matches(&format!("{what} dx"), cache.input_grad(t * c), &dx);
            assert_matches(&format!("{what} dkernel"), &gw, &dw);
            assert_matches(&format!("{what} dbias"), &gb, &db);
        }
    }
}

#[test]
fn dense_fast_path_matches_twin() {
    let mut cache = Cache::default();
    for (rows, inp, units) in [(7, 20, 19), (1, 3, 1), (4, 5, 3)] {
        for act in ACTS {
            let (x, w, b) = (
                random(rows * inp, 15),
                random(inp * units, 16),
                random(units, 17),
            );
            let dy = random(rows * units, 18);
            let mut layer = Dense::new(inp, units, act);
            layer.pack(&f32s(&w));
            let x32 = f32s(&x);
            layer.forward(&f32s(&b), &x32, rows, &mut cache);
            let what = format!("dense {rows}x{inp}->{units} {act:?}");
            let y = dense::naive::dense(&x, &w, &b, inp, act);
            assert_matches(&format!("{what} y"), cache.output(units), &y);
            let (mut gw, mut gb) = (vec![0.0; w.len()], vec![0.0; units]);
            let grads = Grads {
                kernel: &mut gw,
                bias: &mut gb,
            };
            layer.backward(&x32, &f32s(&dy), &mut cache, grads);
            let (dx, dw, db) = dense::naive::dense_backward(&x, &w, &b, inp, act, &dy);
            assert_matches(&format!("{what} dx"), cache.input_grad(inp), &dx);
            assert_matches(&format!("{what} dkernel"), &gw, &dw);
            assert_matches(&format!("{what} dbias"), &gb, &db);
        }
    }
}

#[test]
fn activation_fast_path_matches_twin() {
    let width = 6;
    for act in ACTS {
        // Logits up to +-40: exp would overflow an unshifted softmax in f32 at ~88.
        let z: Vec<f64> = random(4 * width, 19).iter().map(|v| v * 40.0).collect();
        let dy = random(4 * width, 20);
        let mut y = f32s(&z);
        act.forward(&mut y, width);
        let mut want = z.clone();
        dense::naive::activate(act, &mut want, width);
        assert_matches(&format!("{act:?} y"), &y, &want);
        let mut dz = vec![0.0; z.len()];
        act.backward(&y, &f32s(&dy), &mut dz, width);
        let want = dense::naive::activate_backward(act, &want, &dy, width);
        assert_matches(&format!("{act:?} dz"), &dz, &want);
    }
    let mut big = vec![1000.0f32, 0.0, -1000.0];
    Softmax.forward(&mut big, 3);
    // The fast exp stops at e^-87.3 (~1.2e-38, never denormal) where f32's would give 0.
    assert!(big[0] == 1.0 && big[1] < 1e-37 && big[2] < 1e-37, "{big:?}");
}

#[test]
fn pooling_fast_paths_match_twins() {
    let mut cache = Cache::default();
    for b in [2, 1] {
        for (t, c, p) in POOL_SHAPES {
            let (x, dy) = (random(b * t * c, 21), random(b * (t / p) * c, 22));
            let layer = MaxPool1d {
                steps: t,
                channels: c,
                pool: p,
            };
            layer.forward(&f32s(&x), b, &mut cache);
            layer.backward(&f32s(&dy), &mut cache);
            let (y, dx) = pool::naive::max_pool(&x, &dy, t, c, p);
            let what = format!("max pool {b}x{t}x{c} p={p}");
            assert_matches(&format!("{what} y"), cache.output(layer.out_len()), &y);
            assert_matches(&format!("{what} dx"), cache.input_grad(t * c), &dx);
        }
        let (t, c) = (5, 3);
        let (x, dy) = (random(b * t * c, 23), random(b * c, 24));
        let (x32, dy32) = (f32s(&x), f32s(&dy));
        let max = GlobalMaxPool1d {
            steps: t,
            channels: c,
        };
        max.forward(&x32, b, &mut cache);
        max.backward(&x32, &dy32, &mut cache);
        let (y, dx) = pool::naive::global_max_pool(&x, &dy, t, c);
        assert_matches("global max y", cache.output(c), &y);
        assert_matches("global max dx", cache.input_grad(t * c), &dx);
        let avg = GlobalAvgPool1d {
            steps: t,
            channels: c,
        };
        avg.forward(&x32, b, &mut cache);
        avg.backward(&dy32, &mut cache);
        let (y, dx) = pool::naive::global_avg_pool(&x, &dy, t, c);
        assert_matches("global avg y", cache.output(c), &y);
        assert_matches("global avg dx", cache.input_grad(t * c), &dx);
    }
}

/// Ties as TensorFlow breaks them: MaxPooling1D (tf.nn.max_pool) sends the gradient to the
/// first maximum of the window; GlobalMaxPooling1D (tf.reduce_max) splits it among all maxima.
#[test]
fn max_pooling_ties_follow_tensorflow() {
    // x [1, T = 4, C = 1] = [2, 2, 2, 1], dy = [1, 1] for pool 2, [1] global.
    let x = [2.0f32, 2.0, 2.0, 1.0];
    let mut cache = Cache::default();
    let pool = MaxPool1d {
        steps: 4,
        channels: 1,
        pool: 2,
    };
    pool.forward(&x, 1, &mut cache);
    pool.backward(&[1.0, 1.0], &mut cache);
    assert_eq!(cache.input_grad(4), [1.0, 0.0, 1.0, 0.0]);
    let global = GlobalMaxPool1d {
        steps: 4,
        channels: 1,
    };
    global.forward(&x, 1, &mut cache);
    global.backward(&x, &[1.0], &mut cache);
    let third = 1.0 / 3.0;
    assert_eq!(cache.input_grad(4), [third, third, third, 0.0]);
}

// ---- the output layer's fused losses ----

/// Loss and gradient from logits against the naive f64 formulas, finite differences of the
/// f64 loss, and finite values at logits of +-1000.
#[test]
fn fused_losses_match_naive_and_are_stable() {
    let width = 3;
    let z = f32s(
        &random(2 * width, 25)
            .iter()
            .map(|v| v * 4.0)
            .collect::<Vec<_>>(),
    );
    let t = [0.0f32, 1.0, 0.0, 0.2, 0.3, 0.5];
    let scale = 0.5;
    let mut dz = vec![0.0f32; z.len()];
    let loss = softmax_cross_entropy(&z, &t, width, scale, &mut dz);
    let mut want = 0.0;
    for r in 0..2 {
        let row: Vec<f64> = z[r * width..(r + 1) * width]
            .iter()
            .map(|&v| v as f64)
            .collect();
        let mut p = row.clone();
        dense::naive::activate(Softmax, &mut p, width);
        for i in 0..width {
            let ti = t[r * width + i] as f64;
            want -= ti * p[i].ln();
            let g = scale as f64 * (p[i] - ti);
            assert!((dz[r * width + i] as f64 - g).abs() < 1e-7, "softmax CE dz");
        }
    }
    assert!(
        (loss - want).abs() < 1e-9,
        "softmax CE loss {loss} vs {want}"
    );

    let loss = sigmoid_cross_entropy(&z, &t, width, scale, &mut dz);
    let mut want = 0.0;
    for (i, (&z, &t)) in z.iter().zip(&t).enumerate() {
        let (z, t) = (z as f64, t as f64);
        let p = 1.0 / (1.0 + (-z).exp());
        want -= (t * p.ln() + (1.0 - t) * (1.0 - p).ln()) / width as f64;
        let g = scale as f64 * (p - t) / width as f64;
        assert!((dz[i] as f64 - g).abs() < 1e-7, "sigmoid CE dz");
    }
    assert!(
        (loss - want).abs() < 1e-9,
        "sigmoid CE loss {loss} vs {want}"
    );

    // The gradient is that of the returned loss: finite differences on the f32 logits, divided
    // by the step the f32 logit actually took.
    for fused in [softmax_cross_entropy, sigmoid_cross_entropy] {
        fused(&z, &t, width, 1.0, &mut dz);
        for i in 0..z.len() {
            let (mut plus, mut minus) = (z.clone(), z.clone());
            plus[i] += 1e-3;
            minus[i] -= 1e-3;
            let mut scratch = vec![0.0; z.len()];
            let step = (plus[i] - minus[i]) as f64;
            let fd = (fused(&plus, &t, width, 1.0, &mut scratch)
                - fused(&minus, &t, width, 1.0, &mut scratch))
                / step;
            assert!(
                (fd - dz[i] as f64).abs() < 1e-6,
                "at {i}: fd {fd} vs {}",
                dz[i]
            );
        }
    }

    let (z, t) = ([1000.0f32, -1000.0, 0.0], [0.0f32, 1.0, 0.0]);
    let softmax = softmax_cross_entropy(&z, &t, 3, 1.0, &mut dz);
    assert!(
        (softmax - 2000.0).abs() < 1e-9,
        "softmax CE at +-1000: {softmax}"
    );
    assert_eq!(dz[..3], [1.0, -1.0, 0.0]);
    let sigmoid = sigmoid_cross_entropy(&z, &[0.0, 1.0, 1.0], 3, 1.0, &mut dz);
    let want = (1000.0 + 1000.0 + 2f64.ln()) / 3.0;
    assert!(
        (sigmoid - want).abs() < 1e-9,
        "sigmoid CE at +-1000: {sigmoid}"
    );
    assert!(dz[..3].iter().all(|v| v.is_finite()));
}

// ---- timing ----

/// This thread's time on a CPU in ns (Linux's schedstat), so other processes sharing the cores
/// do not count; wall time elsewhere.
fn cpu_ns() -> u128 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    match stat.split_whitespace().next().and_then(|v| v.parse().ok()) {
        Some(ns) => ns,
        None => std::time::UNIX_EPOCH.elapsed().unwrap().as_nanos(),
    }
}

/// Best of 10 runs, in ms.
fn best_ms(mut f: impl FnMut()) -> f64 {
    (0..10)
        .map(|_| {
            let t = cpu_ns();
            f();
            (cpu_ns() - t) as f64 * 1e-6
        })
        .fold(f64::MAX, f64::min)
}

/// Conv1D at Keras's imdb_cnn shape (B 32, T 400, C 50, k 3, F 250), one thread: the layer
/// (an unfolded copy, then packed GEMMs over the whole chunk) against the unfolded input read in
/// place (row stride C) through `matmul`, one sample at a time, and against the packed kernel
/// applied once per tap (no copy, but k GEMMs of depth C).
/// `cargo test --test nn_layers conv_gemm_timing -- --ignored --nocapture`
#[test]
#[ignore]
fn conv_gemm_timing() {
    use imdb_lstm::nn::gemm::{matmul, Op};
    use imdb_lstm::nn::packed::{matmul_packed, PackedB};
    let (b, t, c, k, f) = (32, 400, 50, 3, 250);
    let (to, kc) = (t + 1 - k, k * c);
    let (x, w, dy) = (
        f32s(&random(b * t * c, 1)),
        f32s(&random(kc * f, 2)),
        f32s(&random(b * to * f, 3)),
    );
    let mut layer = Conv1d::new(t, c, k, f, Linear);
    layer.pack(&w);
    let mut cache = Cache::default();
    let (mut y, mut dx) = (vec![0.0f32; b * to * f], vec![0.0f32; b * t * c]);
    let (mut gw, mut gb) = (vec![0.0; kc * f], vec![0.0; f]);
    // GEMM FLOPs of one forward; the backward has two such GEMMs.
    let flops = 2.0 * (b * to * kc * f) as f64;
    let report = |name: &str, gemms: f64, ms: f64| {
        println!(
            "{name:<34} {ms:7.2} ms {:6.1} GFLOP/s",
            gemms * flops / ms / 1e6
        )
    };

    let ms = best_ms(|| layer.forward(&gb, &x, b, &mut cache));
    report("forward, the layer", 1.0, ms);
    let ms = best_ms(|| {
        for (xs, ys) in x.chunks_exact(t * c).zip(y.chunks_exact_mut(to * f)) {
            matmul(to, f, kc, xs, c, Op::N, &w, f, Op::N, ys, f, false);
        }
    });
    report("forward, matmul in place", 1.0, ms);
    let taps: Vec<PackedB> = (0..k)
        .map(|j| {
            let mut p = PackedB::new();
            p.pack(&w[j * c * f..], f, c, f);
            p
        })
        .collect();
    let ms = best_ms(|| {
        for (xs, ys) in x.chunks_exact(t * c).zip(y.chunks_exact_mut(to * f)) {
            for (j, p) in taps.iter().enumerate() {
                matmul_packed(to, &xs[j * c..], c, p, ys, f, j > 0);
            }
        }
    });
    report("forward, packed per tap", 1.0, ms);

    let ms = best_ms(|| {
        let grads = Grads {
            kernel: &mut gw,
            bias: &mut gb,
        };
        layer.backward(&x, &dy, &mut cache, grads)
    });
    report("backward, the layer", 2.0, ms);
    let ms = best_ms(|| {
        let per_sample = x.chunks_exact(t * c).zip(dy.chunks_exact(to * f));
        for ((xs, zs), dxs) in per_sample.zip(dx.chunks_exact_mut(t * c)) {
            matmul(kc, f, to, xs, c, Op::T, zs, f, Op::N, &mut gw, f, true);
            dxs.fill(0.0);
            for j in 0..k {
                let wj = &w[j * c * f..(j + 1) * c * f];
                let dxj = &mut dxs[j * c..];
                matmul(to, c, f, zs, f, Op::N, wj, f, Op::T, dxj, c, true);
            }
        }
    });
    report("backward, matmul in place per tap", 2.0, ms);
}
