//! `nn::network::Network`, the engine for any layer stack: every preset (shrunk to tiny sizes)
//! and a few stacks with the rarer layers against the naive f64 network, that network against
//! finite differences, the tutorial's stack against the tutorial-only `Engine` it replaced (kept
//! in tests/support/engine_v1.rs) bit for bit, and determinism.

#[allow(dead_code)]
#[path = "support/engine_v1.rs"]
mod engine_v1;

use engine_v1::{BatchMasks, Engine};
use imdb_lstm::nn::arch::{preset, Activation, Arch, LayerSpec, MergeMode, Padding, Recurrent};
use imdb_lstm::nn::arch::{Head, PRESETS};
use imdb_lstm::nn::network::reference::{self, RefOutput};
use imdb_lstm::nn::network::{Gradients, LayerMasks, NetMasks, Network, RecurrentMasks};
use imdb_lstm::nn::ModelConfig;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

const V: usize = 30;
const D: usize = 6;
const H: usize = 5;
const T: usize = 9;
const F: usize = 4;

/// A layer at tiny sizes, same kind and arguments otherwise.
fn shrink_layer(l: &LayerSpec) -> LayerSpec {
    match l.clone() {
        LayerSpec::Embedding { .. } => LayerSpec::Embedding {
            input_dim: V,
            output_dim: D,
        },
        LayerSpec::LSTM(r) => LayerSpec::LSTM(Recurrent { units: H, ..r }),
        LayerSpec::GRU(r) => LayerSpec::GRU(Recurrent { units: H, ..r }),
        LayerSpec::Bidirectional { layer, merge_mode } => LayerSpec::Bidirectional {
            layer: Box::new(shrink_layer(&layer)),
            merge_mode,
        },
        LayerSpec::Dense { units, activation } => LayerSpec::Dense {
            units: if units == 1 { 1 } else { 7 },
            activation,
        },
        LayerSpec::Conv1D {
            kernel_size,
            padding,
            strides,
            activation,
            ..
        } => LayerSpec::Conv1D {
            filters: F,
            kernel_size: kernel_size.min(3),
            padding,
            strides,
            activation,
        },
        LayerSpec::MaxPooling1D { padding, .. } => LayerSpec::MaxPooling1D {
            pool_size: 2,
            strides: 2,
            padding,
        },
        other => other,
    }
}

fn rnn(units: usize, dropout: f32, recurrent_dropout: f32, return_sequences: bool) -> Recurrent {
    Recurrent {
        units,
        dropout,
        recurrent_dropout,
        return_sequences,
    }
}

/// Every preset shrunk, plus stacks with what the presets leave out: a Bidirectional GRU
/// returning sequences with dropout, tanh, Dense with several units, softmax heads.
fn tiny_archs() -> Vec<(String, Arch)> {
    let mut out: Vec<(String, Arch)> = PRESETS
        .iter()
        .map(|name| {
            let p = preset(name).unwrap();
            let layers = p.arch.layers.iter().map(shrink_layer).collect();
            (name.to_string(), Arch::new(layers, T).unwrap())
        })
        .collect();
    let emb = LayerSpec::Embedding {
        input_dim: V,
        output_dim: D,
    };
    let dense = |units, activation| LayerSpec::Dense { units, activation };
    out.push((
        "bigru-seq-conv-softmax".into(),
        Arch::new(
            vec![
                emb.clone(),
                LayerSpec::Bidirectional {
                    layer: Box::new(LayerSpec::GRU(rnn(H, 0.2, 0.3, true))),
                    merge_mode: MergeMode::Concat,
                },
                LayerSpec::Conv1D {
                    filters: F,
                    kernel_size: 2,
                    padding: Padding::Valid,
                    strides: 1,
                    activation: Activation::Tanh,
                },
                LayerSpec::GlobalAveragePooling1D {},
                dense(7, Activation::Tanh),
                LayerSpec::Dropout { rate: 0.3 },
                dense(3, Activation::Softmax),
            ],
            T,
        )
        .unwrap(),
    ));
    out.push((
        "bilstm-dropout-activation-softmax".into(),
        Arch::new(
            vec![
                emb.clone(),
                LayerSpec::Bidirectional {
                    layer: Box::new(LayerSpec::LSTM(rnn(H, 0.25, 0.2, false))),
                    merge_mode: MergeMode::Concat,
                },
                dense(3, Activation::Sigmoid),
                LayerSpec::Activation {
                    activation: Activation::Tanh,
                },
                dense(4, Activation::Relu),
                dense(4, Activation::Linear),
                LayerSpec::Activation {
                    activation: Activation::Softmax,
                },
            ],
            T,
        )
        .unwrap(),
    ));
    out.push((
        "conv-avgpool-multi-label".into(),
        Arch::new(
            vec![
                emb.clone(),
                LayerSpec::Conv1D {
                    filters: F,
                    kernel_size: 2,
                    padding: Padding::Valid,
                    strides: 1,
                    activation: Activation::Relu,
                },
                LayerSpec::GlobalAveragePooling1D {},
                dense(3, Activation::Sigmoid),
            ],
            T,
        )
        .unwrap(),
    ));
    out.push((
        "gru-seq-maxpool-sigmoid".into(),
        Arch::new(
            vec![
                emb,
                LayerSpec::GRU(rnn(H, 0.2, 0.2, true)),
                LayerSpec::Dropout { rate: 0.2 },
                LayerSpec::GlobalMaxPooling1D {},
                dense(1, Activation::Sigmoid),
            ],
            T,
        )
        .unwrap(),
    ));
    out
}

/// Random weights in (-0.4, 0.4), biases included.
fn random_params(n: usize, rng: &mut Pcg64) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-0.4..0.4)).collect()
}

/// `b` random sequences and targets for `arch`'s head.
fn batch(arch: &Arch, b: usize, rng: &mut Pcg64) -> (Vec<u32>, Vec<f32>) {
    let ids = (0..b * T).map(|_| rng.gen_range(0..V as u32)).collect();
    let y = match arch.head().unwrap() {
        Head::Sigmoid => (0..b).map(|_| rng.gen_range(0..2) as f32).collect(),
        Head::Softmax(k) => (0..b).map(|_| rng.gen_range(0..k) as f32).collect(),
        // K 0/1 targets per sequence.
        Head::Sigmoids(k) => (0..b * k).map(|_| rng.gen_range(0..2) as f32).collect(),
    };
    (ids, y)
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Each `got` within `tol` of `want`, relative to the largest |want| (at least 1e-3).
fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1e-3f64, |m, w| m.max(w.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (*g as f64 - w).abs() <= tol * scale,
            "{what}[{i}]: got {g}, want {w} (scale {scale})"
        );
    }
}

/// The fast network's loss, gradients and logits equal the naive f64 network's, with and
/// without masks (per-gate and shared), on 1, 2 and 3 threads and a batch smaller than the
/// thread count.
#[test]
fn every_stack_matches_the_naive_network() {
    for (name, arch) in tiny_archs() {
        let mut rng = Pcg64::seed_from_u64(11);
        let n = arch.param_count().unwrap();
        let params = random_params(n, &mut rng);
        let p64 = f64s(&params);
        for (b, threads) in [(5, 1), (5, 2), (5, 3), (2, 3)] {
            let (ids, y) = batch(&arch, b, &mut rng);
            let y64 = f64s(&y);
            let mut net = Network::new(&arch, threads).unwrap();
            net.refresh(&params);
            for mode in [None, Some(true), Some(false)] {
                let mut masks = NetMasks::default();
                if let Some(per_gate) = mode {
                    net.draw_masks(&mut rng, b, per_gate, &mut masks);
                }
                let what = format!("{name}, batch {b}, {threads} threads, masks {mode:?}");
                let mut g = Gradients::zeros(&net);
                let stats = net.train_batch(&params, &ids, &y, &masks, &mut g);
                let want = reference::forward_backward(&arch, &p64, &ids, &y64, &masks).unwrap();
                // Multi-label sums count every label's term (Keras's means over them).
                assert_eq!(stats.count, b * arch.head().unwrap().targets());
                let loss = stats.loss_sum / stats.count as f64;
                assert!(
                    (loss - want.loss).abs() <= 1e-6 * (1.0 + want.loss.abs()),
                    "{what}: loss {loss}, want {}",
                    want.loss
                );
                assert_close(g.data(), &want.grads, 1e-5, &format!("{what}: gradient"));
                assert!(g.is_finite());
            }
            // Logits without dropout.
            let k = net.classes();
            let mut logits = vec![0.0; b * k];
            net.predict_logits(&params, &ids, &mut logits);
            let want = reference::forward_backward(&arch, &p64, &ids, &y64, &NetMasks::default());
            let want: RefOutput = want.unwrap();
            assert_close(&logits, &want.logits, 1e-5, &format!("{name}: logits"));
        }
    }
}

/// The f64 network's gradient is the derivative of its loss (central differences), with masks.
#[test]
fn naive_network_passes_a_gradient_check() {
    for (name, arch) in tiny_archs() {
        let mut rng = Pcg64::seed_from_u64(5);
        let n = arch.param_count().unwrap();
        let params = random_params(n, &mut rng);
        let (ids, y) = batch(&arch, 3, &mut rng);
        let net = Network::new(&arch, 1).unwrap();
        let mut masks = NetMasks::default();
        net.draw_masks(&mut rng, 3, true, &mut masks);
        let (p, y) = (f64s(&params), f64s(&y));
        let got = reference::forward_backward(&arch, &p, &ids, &y, &masks).unwrap();
        let loss = |p: &[f64]| {
            reference::forward_backward(&arch, p, &ids, &y, &masks)
                .unwrap()
                .loss
        };
        // Every tensor: the used embedding rows, then a spread of the other parameters.
        let tokens: Vec<usize> = ids.iter().take(4).map(|&t| t as usize * D).collect();
        let mut picks: Vec<usize> = tokens.iter().flat_map(|&r| r..r + D).collect();
        picks.extend((V * D..n).step_by(((n - V * D) / 150).max(1)));
        picks.push(n - 1);
        let eps = 1e-6;
        for i in picks {
            let mut q = p.clone();
            q[i] += eps;
            let up = loss(&q);
            q[i] -= 2.0 * eps;
            let down = loss(&q);
            let numeric = (up - down) / (2.0 * eps);
            assert!(
                (numeric - got.grads[i]).abs() <= 1e-7 + 1e-5 * numeric.abs(),
                "{name}: parameter {i}: backprop {}, finite differences {numeric}",
                got.grads[i]
            );
        }
    }
}

/// Embedding -> LSTM -> Dense(1, sigmoid) gives the Engine's loss, gradient, touched rows and
/// logits bit for bit, with per-gate, shared and no masks, on 1, 2 and 3 threads.
#[test]
fn the_tutorial_stack_is_the_engine_bit_for_bit() {
    let cfg = ModelConfig {
        num_words: V,
        embed_dim: D,
        units: H,
        maxlen: T,
        dropout: 0.2,
        recurrent_dropout: 0.2,
    };
    let arch = Arch::new(
        vec![
            LayerSpec::Embedding {
                input_dim: V,
                output_dim: D,
            },
            LayerSpec::LSTM(rnn(H, 0.2, 0.2, false)),
            LayerSpec::Dense {
                units: 1,
                activation: Activation::Sigmoid,
            },
        ],
        T,
    )
    .unwrap();
    let mut rng = Pcg64::seed_from_u64(3);
    let mut params = engine_v1::old_init(&cfg, &mut rng);
    // Some weight in every tensor away from its initial value, as after training.
    for w in params.data.iter_mut() {
        *w += rng.gen_range(-0.1..0.1);
    }
    for threads in [1, 2, 3] {
        let mut engine = Engine::new(&cfg, threads);
        let mut net = Network::new(&arch, threads).unwrap();
        engine.refresh(&params);
        net.refresh(&params.data);
        let mut eg = engine_v1::Gradients::zeros(&cfg);
        let mut ng = Gradients::zeros(&net);
        for (b, groups) in [(7, 4), (7, 1), (2, 0), (7, 0)] {
            let (ids, y) = batch(&arch, b, &mut rng);
            let draw = |rng: &mut Pcg64, w: usize| -> Vec<f32> {
                (0..b * groups * w)
                    .map(|_| if rng.gen::<f32>() < 0.8 { 1.25 } else { 0.0 })
                    .collect()
            };
            let (x, h) = match groups {
                0 => (None, None),
                _ => (Some(draw(&mut rng, D)), Some(draw(&mut rng, H))),
            };
            let bm = BatchMasks {
                groups: groups.max(1),
                x: x.clone(),
                h: h.clone(),
            };
            let nm = NetMasks {
                layers: vec![
                    LayerMasks::None,
                    LayerMasks::Recurrent(vec![RecurrentMasks {
                        groups: groups.max(1),
                        x,
                        h,
                    }]),
                    LayerMasks::None,
                ],
            };
            let what = format!("{threads} threads, batch {b}, groups {groups}");
            let es = engine.train_batch(&params, &ids, &y, &bm, &mut eg);
            let ns = net.train_batch(&params.data, &ids, &y, &nm, &mut ng);
            let sums = |l: f64, c: usize, n: usize| (l.to_bits(), c, n);
            assert_eq!(
                sums(ns.loss_sum, ns.correct, ns.count),
                sums(es.loss_sum, es.correct, es.count),
                "{what}: stats"
            );
            assert!(ng.data() == eg.data(), "{what}: gradients differ");
            assert_eq!(ng.embedding_rows(), eg.embedding_rows(), "{what}: rows");
            let (mut el, mut nl) = (vec![0.0; b], vec![0.0; b]);
            engine.predict_logits(&params, &ids, &mut el);
            net.predict_logits(&params.data, &ids, &mut nl);
            assert!(nl == el, "{what}: logits {nl:?} vs {el:?}");
        }
    }
}

/// The masks come from the stream the training loop draws the LSTM's from today: per layer,
/// the input mask then the state mask, each value `gen::<f32>() < keep`.
#[test]
fn masks_are_drawn_as_the_training_loop_draws_them() {
    let arch = &tiny_archs()[0].1; // lstm: dropout 0.2, recurrent_dropout 0.2
    let net = Network::new(arch, 1).unwrap();
    let mut masks = NetMasks::default();
    net.draw_masks(&mut Pcg64::seed_from_u64(9), 3, true, &mut masks);
    let mut rng = Pcg64::seed_from_u64(9);
    let mut draw = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                if rng.gen::<f32>() < 0.8 {
                    1.0 / 0.8
                } else {
                    0.0
                }
            })
            .collect()
    };
    let want = RecurrentMasks {
        groups: 4,
        x: Some(draw(3 * 4 * D)),
        h: Some(draw(3 * 4 * H)),
    };
    assert_eq!(
        masks.layers,
        vec![
            LayerMasks::None,
            LayerMasks::Recurrent(vec![want]),
            LayerMasks::None
        ]
    );
}

/// A batch large enough to draw its masks on several threads gets the values of one serial
/// draw, whatever the thread count, and leaves the generator where the serial draw would.
#[test]
fn large_masks_are_one_serial_draw_on_any_thread_count() {
    // Each mask's rate and values per row, in stream order.
    type Masks = &'static [(f32, usize)];
    let cases: [(&str, usize, Masks); 2] = [
        ("cnn-lstm", 30, &[(0.25, 100 * 128)]),
        ("lstm", 100, &[(0.2, 4 * 128), (0.2, 4 * 128)]),
    ];
    for (name, batch, rates) in cases {
        let arch = preset(name).unwrap().arch;
        let mut rng = Pcg64::seed_from_u64(21);
        let want: Vec<f32> = rates
            .iter()
            .flat_map(|&(rate, per_row)| {
                let keep = 1.0 - rate;
                (0..batch * per_row)
                    .map(|_| {
                        if rng.gen::<f32>() < keep {
                            1.0 / keep
                        } else {
                            0.0
                        }
                    })
                    .collect::<Vec<f32>>()
            })
            .collect();
        for threads in [1, 2, 3] {
            let net = Network::new(&arch, threads).unwrap();
            let mut got_rng = Pcg64::seed_from_u64(21);
            let mut masks = NetMasks::default();
            net.draw_masks(&mut got_rng, batch, true, &mut masks);
            let got: Vec<f32> = masks
                .layers
                .iter()
                .flat_map(|l| match l {
                    LayerMasks::None => Vec::new(),
                    LayerMasks::Dropout(v) => v.clone(),
                    LayerMasks::Recurrent(sets) => sets
                        .iter()
                        .flat_map(|s| [&s.x, &s.h].into_iter().flatten().flatten().copied())
                        .collect(),
                })
                .collect();
            assert!(got == want, "{name}, {threads} threads: masks differ");
            assert_eq!(
                got_rng, rng,
                "{name}, {threads} threads: generator moved elsewhere"
            );
        }
    }
}

/// Same thread count, same bits: two networks, and one network run twice.
#[test]
fn results_are_bit_identical_across_runs() {
    for (name, arch) in tiny_archs() {
        let mut rng = Pcg64::seed_from_u64(21);
        let params = random_params(arch.param_count().unwrap(), &mut rng);
        let (ids, y) = batch(&arch, 6, &mut rng);
        let run = |net: &mut Network| {
            net.refresh(&params);
            let mut masks = NetMasks::default();
            net.draw_masks(&mut Pcg64::seed_from_u64(4), 6, true, &mut masks);
            let mut g = Gradients::zeros(net);
            let stats = net.train_batch(&params, &ids, &y, &masks, &mut g);
            let mut logits = vec![0.0; 6 * net.classes()];
            net.predict_logits(&params, &ids, &mut logits);
            (stats, g.data().to_vec(), logits)
        };
        let mut second = Network::new(&arch, 3).unwrap();
        let runs = [
            run(&mut Network::new(&arch, 3).unwrap()),
            run(&mut second),
            run(&mut second),
        ];
        assert!(runs[0] == runs[1] && runs[1] == runs[2], "{name}");
    }
}

/// A Dropout after the output activation cannot be trained from the logits: refused, in one
/// line naming both layers.
#[test]
fn dropout_after_the_output_activation_is_refused() {
    let arch = Arch::new(
        vec![
            LayerSpec::Embedding {
                input_dim: V,
                output_dim: D,
            },
            LayerSpec::GlobalAveragePooling1D {},
            LayerSpec::Dense {
                units: 1,
                activation: Activation::Sigmoid,
            },
            LayerSpec::Dropout { rate: 0.5 },
        ],
        T,
    )
    .unwrap();
    let err = Network::new(&arch, 1).err().expect("refused").to_string();
    assert_eq!(
        err,
        "layer 4 (Dropout) comes after the output activation (layer 3); this tool trains from \
         the logits: remove it or move it before layer 3"
    );
}
