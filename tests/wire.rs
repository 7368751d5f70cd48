//! The fit loop on the layer-stack engine (`Network`, weights from `Arch::init`) against the
//! path it replaced: `Params::init` and the old `Engine` (kept in tests/support/engine_v1.rs for
//! this comparison) driven by the old loop's own mask drawing and Adam steps must give the same
//! weights and history, bit for bit.

mod common;
#[allow(dead_code)]
#[path = "support/engine_v1.rs"]
mod engine_v1;

use engine_v1::{BatchMasks, Engine, Gradients};
use imdb_lstm::data::{self, Preprocessing};
use imdb_lstm::nn::adam::Adam;
use imdb_lstm::nn::{ModelConfig, Network};
use imdb_lstm::train::{
    rng_for, run_epoch, MaskMode, Silent, Split, TrainConfig, TrainState, RNG_INIT, RNG_TRAIN,
};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_pcg::Pcg64;

/// The old loop's mask: `[B, G, width]`, each 0 or 1/(1-rate).
fn old_mask(rng: &mut Pcg64, rows: usize, groups: usize, width: usize, rate: f32) -> Vec<f32> {
    let keep = 1.0 - rate;
    (0..rows * groups * width)
        .map(|_| {
            if rng.gen::<f32>() < keep {
                1.0 / keep
            } else {
                0.0
            }
        })
        .collect()
}

/// One epoch as the fit loop ran it on the old `Engine`: (params, loss, accuracy, val loss, val
/// accuracy) after each epoch.
fn old_fit(
    model: &ModelConfig,
    cfg: &TrainConfig,
    train: Split,
    val: Split,
) -> (Vec<f32>, Vec<[f64; 4]>) {
    let mut params = engine_v1::old_init(model, &mut rng_for(cfg.seed, RNG_INIT));
    let mut adam = Adam::new(cfg.adam.clone(), params.data.len());
    let mut rng = rng_for(cfg.seed, RNG_TRAIN);
    let mut engine = Engine::new(model, cfg.threads);
    let mut grads = Gradients::zeros(model);
    let t_len = model.maxlen;
    let mut history = Vec::new();
    for _ in 0..cfg.epochs {
        let n = train.y.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        engine.refresh(&params);
        let (mut loss, mut correct) = (0.0, 0);
        for idx in order.chunks(cfg.batch_size) {
            let mut x = Vec::new();
            let mut y = Vec::new();
            for &i in idx {
                x.extend_from_slice(&train.x[i * t_len..(i + 1) * t_len]);
                y.push(train.y[i]);
            }
            let groups = if cfg.mask_mode == MaskMode::PerGate {
                4
            } else {
                1
            };
            let mut masks = BatchMasks {
                groups,
                x: None,
                h: None,
            };
            if model.dropout > 0.0 {
                let m = old_mask(&mut rng, idx.len(), groups, model.embed_dim, model.dropout);
                masks.x = Some(m);
            }
            if model.recurrent_dropout > 0.0 {
                let (w, r) = (model.units, model.recurrent_dropout);
                masks.h = Some(old_mask(&mut rng, idx.len(), groups, w, r));
            }
            let s = engine.train_batch(&params, &x, &y, &masks, &mut grads);
            adam.update(&mut params.data, grads.data(), cfg.threads);
            engine.refresh(&params);
            loss += s.loss_sum;
            correct += s.correct;
        }
        let (v, _) = engine.evaluate(&params, val.x, val.y);
        history.push([
            loss / n as f64,
            correct as f64 / n as f64,
            v.loss_sum / v.count as f64,
            v.correct as f64 / v.count as f64,
        ]);
    }
    (params.data, history)
}

/// Two epochs of the tutorial stack with both dropouts, per-gate and shared masks, 1 and 2
/// threads, a partial last batch: the new fit loop gives the old one's weights and history.
#[test]
fn wire_training_matches_the_old_engine_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = common::tiny_archive(tmp.path(), 21);
    let raw = data::load_reviews(&archive).unwrap();
    let pre = Preprocessing {
        num_words: 60,
        maxlen: 24,
        ..Preprocessing::default()
    };
    let ds = data::prepare(&raw, &pre, 3).unwrap();
    let model = ModelConfig {
        num_words: 60,
        embed_dim: 8,
        units: 6,
        maxlen: 24,
        dropout: 0.3,
        recurrent_dropout: 0.2,
    };
    let train = Split {
        x: &ds.train.x,
        y: &ds.train.y,
    };
    let val = Split {
        x: &ds.test.x,
        y: &ds.test.y,
    };
    assert_ne!(train.y.len() % 8, 0, "the last batch should be partial");
    for (mask_mode, threads) in [(MaskMode::PerGate, 2), (MaskMode::Shared, 1)] {
        let cfg = TrainConfig {
            epochs: 2,
            batch_size: 8,
            threads,
            mask_mode,
            ..TrainConfig::default()
        };
        let (want_params, want_history) = old_fit(&model, &cfg, train, val);
        let mut state = TrainState::new(&model.arch(), &cfg).unwrap();
        let mut net = Network::new(&model.arch(), threads).unwrap();
        for _ in 0..cfg.epochs {
            run_epoch(&mut state, &mut net, &cfg, train, Some(val), &mut Silent).unwrap();
        }
        let got: Vec<[f64; 4]> = state
            .history
            .epochs
            .iter()
            .map(|r| {
                [
                    r.loss,
                    r.accuracy,
                    r.val_loss.unwrap(),
                    r.val_accuracy.unwrap(),
                ]
            })
            .collect();
        assert_eq!(got, want_history, "{mask_mode:?}: history");
        let same = state.params.iter().zip(&want_params);
        assert!(
            same.clone().all(|(a, b)| a.to_bits() == b.to_bits()),
            "{mask_mode:?}: weights differ"
        );
        assert_eq!(state.params.len(), want_params.len());
    }
}

/// `bench --arch NAME` on a tiny archive, every preset: one line naming the preset and its
/// training FLOPs (`Arch::train_flops`); an epoch row whose GFLOP/s is those FLOPs times the
/// sequences per second, with its share of the peak; inference lines with GFLOP/s and % of
/// peak. Inference counts the table trick only for a first LSTM or GRU returning its last state
/// (lstm, gru); fasttext, which has no matrix product, says so instead of a share of the peak.
#[test]
fn wire_bench_times_a_preset_with_its_flops() {
    use imdb_lstm::nn::arch::{preset, LayerSpec, PRESETS};
    let tmp = tempfile::tempdir().unwrap();
    let archive = common::tiny_archive(tmp.path(), 10);
    for name in PRESETS {
        let (code, out, err) = common::run(
            common::bin()
                .args(["bench", "--arch", name, "--threads", "1", "--epochs", "1"])
                .arg("--data")
                .arg(&archive),
        );
        assert_eq!(code, 0, "{name}: {err}");
        let arch = preset(name).unwrap().arch;
        let train_flops = arch.train_flops().unwrap();
        let head = format!(
            "imdb-lstm bench: {name} ({:.1} MFLOP per training sequence)",
            train_flops / 1e6
        );
        assert!(out.starts_with(&head), "{name}: {out}");
        let columns = out
            .lines()
            .find(|l| l.trim_start().starts_with("epoch"))
            .unwrap_or_else(|| panic!("{name}: no table in {out}"));
        let columns: Vec<&str> = columns.split_whitespace().collect();
        assert_eq!(
            &columns[2..5],
            ["seq/s", "GFLOP/s", "%peak"],
            "{name}: {out}"
        );
        let row: Vec<&str> = out
            .lines()
            .find(|l| l.trim_start().starts_with("1 "))
            .unwrap_or_else(|| panic!("{name}: no epoch row in {out}"))
            .split_whitespace()
            .collect();
        let (seq_s, gflops): (f64, f64) = (row[2].parse().unwrap(), row[3].parse().unwrap());
        let want = train_flops * seq_s / 1e9;
        // seq/s is printed rounded to 1, GFLOP/s to 0.1.
        assert!(
            (gflops - want).abs() <= 0.05 + train_flops * 0.5 / 1e9 + 1e-9,
            "{name}: {gflops} GFLOP/s at {seq_s} seq/s, want {want}"
        );
        let table = matches!(
            arch.layers.get(1),
            Some(LayerSpec::LSTM(r) | LayerSpec::GRU(r)) if !r.return_sequences
        );
        assert_eq!(out.contains("* effective:"), table, "{name}: {out}");
        let inference: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("inference from token ids"))
            .collect();
        assert_eq!(inference.len(), 2, "{name}: {out}");
        // The step split: the layers' seconds are part of the training seconds, and their
        // rate counts the same FLOPs over that shorter time.
        let split = out
            .lines()
            .find_map(|l| l.strip_prefix("training split: layers "))
            .unwrap_or_else(|| panic!("{name}: no training split in {out}"));
        let (layers_s, rest) = split.split_once(" s (").unwrap();
        let (layers_s, train_s): (f64, f64) = (layers_s.parse().unwrap(), row[1].parse().unwrap());
        assert!(
            (0.0..=train_s + 0.01).contains(&layers_s),
            "{name}: layers {layers_s} s of {train_s} s training: {out}"
        );
        let layer_gflops: f64 = rest.split_once(" GFLOP/s").unwrap().0.parse().unwrap();
        assert!(layer_gflops >= gflops - 0.1, "{name}: {split}");
        let rest_s = split
            .split_once("the rest ")
            .unwrap()
            .1
            .split_once(" s (")
            .unwrap()
            .0;
        let rest_s: f64 = rest_s.parse().unwrap();
        assert!(
            (layers_s + rest_s - train_s).abs() <= 0.02,
            "{name}: {layers_s} + {rest_s} != {train_s}: {split}"
        );
        assert_eq!(
            split.contains("no GEMM"),
            name == "fasttext",
            "{name}: {split}"
        );
        if name == "fasttext" {
            assert_eq!(row[4], "-", "{name}: {out}");
            assert!(
                out.contains("fasttext: no layer is a matrix product"),
                "{out}"
            );
            for l in inference {
                assert!(l.contains(" GFLOP/s, no GEMM"), "{name}: {l}");
            }
        } else {
            let pct: f64 = row[4].trim_end_matches('%').parse().unwrap();
            assert!(row[4].ends_with('%') && pct >= 0.0, "{name}: {out}");
            for l in inference {
                assert!(
                    l.contains(" GFLOP/s, ") && l.contains("% of peak"),
                    "{name}: {l}"
                );
            }
        }
    }
}

/// Where bench refuses an arch: an unknown name (the presets are listed), and the scaling
/// table is the lstm's.
#[test]
fn wire_bench_refuses_what_it_cannot_time() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = common::tiny_archive(tmp.path(), 4);
    let (code, _, err) = common::run(
        common::bin()
            .args(["bench", "--arch", "transformer", "--data"])
            .arg(&archive),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("invalid value 'transformer' for '--arch <NAME>'")
            && err.contains("lstm, gru, bilstm, stacked-lstm, cnn, cnn-lstm, fasttext"),
        "{err}"
    );
    let (code, out, err) = common::run(
        common::bin()
            .args(["bench", "--arch", "gru", "--scaling", "--data"])
            .arg(&archive),
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        err.trim_end(),
        "error: --scaling times the lstm preset (it varies its units); drop --scaling or --arch gru"
    );
    assert!(out.is_empty(), "refused before measuring: {out}");
}

/// The summary table and the model graph of every preset, against what Keras said about the
/// same model (tests/fixtures/keras/NAME.weights.json): one row and one box per layer with
/// Keras's name, class, output shape and parameter count, and Keras's total.
#[test]
fn wire_summary_and_graph_of_every_preset_match_keras() {
    use imdb_lstm::data::Preprocessing;
    use imdb_lstm::nn::arch::{preset, PRESETS};
    use imdb_lstm::report::graph::model_layers;
    use imdb_lstm::report::summary::{summary, thousands};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keras");
    for name in PRESETS {
        let text = std::fs::read_to_string(dir.join(format!("{name}.weights.json"))).unwrap();
        let keras: serde_json::Value = serde_json::from_str(&text).unwrap();
        let keras = keras["layers"].as_array().unwrap();
        let shape = |v: &serde_json::Value| {
            let dims: Vec<String> = v.as_array().unwrap()[1..]
                .iter()
                .map(|d| d.to_string())
                .collect();
            format!("(None, {})", dims.join(", "))
        };
        let arch = preset(name).unwrap().arch;
        let s = summary(&arch, &Preprocessing::default(), None).unwrap();
        let rows: Vec<Vec<String>> = s
            .lines()
            .filter(|l| l.starts_with('│'))
            .map(|l| {
                l.trim_matches('│')
                    .split('│')
                    .map(|c| c.trim().to_string())
                    .collect()
            })
            .collect();
        assert_eq!(rows.len(), keras.len(), "{name}: {s}");
        let mut total = 0;
        for (row, k) in rows.iter().zip(keras) {
            let (kn, kc) = (k["name"].as_str().unwrap(), k["class"].as_str().unwrap());
            let params = k["params"].as_u64().unwrap() as usize;
            total += params;
            let want = [
                format!("{kn} ({kc})"),
                shape(&k["output_shape"]),
                thousands(params),
            ];
            assert_eq!(row[..], want[..], "{name}");
        }
        let line = format!(" Total params: {} (", thousands(total));
        assert!(s.contains(&line), "{name}: {s}");
        let boxes = model_layers(&arch).unwrap();
        assert_eq!(
            boxes.len(),
            keras.len() + 1,
            "{name}: InputLayer, then each layer"
        );
        assert_eq!(boxes[0].output_shape, format!("(None, {})", arch.maxlen));
        for (i, (b, k)) in boxes[1..].iter().zip(keras).enumerate() {
            assert_eq!(b.name, k["name"].as_str().unwrap(), "{name}");
            assert_eq!(b.kind, k["class"].as_str().unwrap(), "{name}");
            assert_eq!(b.output_shape, shape(&k["output_shape"]), "{name}");
            assert_eq!(b.input_shape, boxes[i].output_shape, "{name}");
        }
    }
}
