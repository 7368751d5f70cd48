//! Explanations: `Network::probability_gradients` against f64 finite differences on the
//! embedding outputs (every preset, shrunk, and a softmax stack), integrated gradients'
//! completeness and occlusion's definition on those stacks, the tokens `explain` shows against
//! the model's own encoding, and `predict --explain` end to end on a tiny trained model.

mod common;
use common::*;
use imdb_lstm::data::{Preprocessing, Side};
use imdb_lstm::explain::{self, attribute, Method, TokenKind};
use imdb_lstm::infer::Classifier;
use imdb_lstm::model_file::ModelFile;
use imdb_lstm::nn::arch::{preset, Activation, Arch, Head, LayerSpec, Recurrent, PRESETS};
use imdb_lstm::nn::network::{reference, Input, NetMasks};
use imdb_lstm::nn::{ModelConfig, Network};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const V: usize = 40;
const D: usize = 4;
const T: usize = 7;
const B: usize = 3;

/// A layer at tiny sizes, same kind and arguments otherwise.
fn explain_shrink(l: &LayerSpec) -> LayerSpec {
    match l.clone() {
        LayerSpec::Embedding { .. } => LayerSpec::Embedding {
            input_dim: V,
            output_dim: D,
        },
        LayerSpec::LSTM(r) => LayerSpec::LSTM(Recurrent { units: 5, ..r }),
        LayerSpec::GRU(r) => LayerSpec::GRU(Recurrent { units: 5, ..r }),
        LayerSpec::Bidirectional { layer, merge_mode } => LayerSpec::Bidirectional {
            layer: Box::new(explain_shrink(&layer)),
            merge_mode,
        },
        LayerSpec::Dense { units, activation } => LayerSpec::Dense {
            units: units.min(6),
            activation,
        },
        LayerSpec::Conv1D {
            padding,
            strides,
            activation,
            ..
        } => LayerSpec::Conv1D {
            filters: 4,
            kernel_size: 3,
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

/// Every preset shrunk, plus a GRU with a 3-class softmax head.
fn explain_archs() -> Vec<(String, Arch)> {
    let mut out: Vec<(String, Arch)> = PRESETS
        .iter()
        .map(|name| {
            let layers = preset(name).unwrap().arch.layers;
            let layers = layers.iter().map(explain_shrink).collect();
            (name.to_string(), Arch::new(layers, T).unwrap())
        })
        .collect();
    let softmax = vec![
        explain_shrink(&LayerSpec::Embedding {
            input_dim: 0,
            output_dim: 0,
        }),
        LayerSpec::GRU(Recurrent::new(5)),
        LayerSpec::Dense {
            units: 3,
            activation: Activation::Softmax,
        },
    ];
    out.push(("gru-softmax".into(), Arch::new(softmax.clone(), T).unwrap()));
    let mut multi = softmax;
    multi[2] = LayerSpec::Dense {
        units: 3,
        activation: Activation::Sigmoid,
    };
    out.push(("gru-multi-label".into(), Arch::new(multi, T).unwrap()));
    out
}

/// Keras's initial weights for `arch`, the embeddings widened to (-0.8, 0.8) so that the
/// layers after them work away from their linear region.
fn explain_params(arch: &Arch, seed: u64) -> Vec<f32> {
    let mut rng = Pcg64::seed_from_u64(seed);
    let mut p = arch.init(&mut rng).unwrap();
    p[..V * D]
        .iter_mut()
        .for_each(|x| *x = rng.gen_range(-0.8..0.8));
    p
}

/// The probability of class `c` from f64 logits of a `head`, as the tool defines it.
fn explain_prob(head: Head, z: &[f64], c: usize) -> f64 {
    if let Head::Sigmoids(_) = head {
        return 1.0 / (1.0 + (-z[c]).exp());
    }
    if let [z] = z {
        let p1 = 1.0 / (1.0 + (-z).exp());
        return if c == 1 { p1 } else { 1.0 - p1 };
    }
    let m = z.iter().fold(f64::MIN, |m, &v| m.max(v));
    let sum: f64 = z.iter().map(|v| (v - m).exp()).sum();
    (z[c] - m).exp() / sum
}

/// The naive f64 network's probabilities of `classes` for `ids`.
fn explain_ref_probs(arch: &Arch, p: &[f64], ids: &[u32], classes: &[usize]) -> Vec<f64> {
    let head = arch.head().unwrap();
    let targets = vec![0.0; classes.len() * head.targets()];
    let out = reference::forward_backward(arch, p, ids, &targets, &NetMasks::default()).unwrap();
    let k = out.logits.len() / classes.len();
    out.logits
        .chunks_exact(k)
        .zip(classes)
        .map(|(z, &c)| explain_prob(head, z, c))
        .collect()
}

/// The gradient of each sequence's class probability with respect to its embedding outputs
/// equals central differences of the naive f64 network, on 1 and 2 threads; given the
/// embedding rows themselves (`Input::Embedded`), the engine gives the same bits as from ids.
#[test]
fn probability_gradients_match_finite_differences() {
    for (name, arch) in explain_archs() {
        let params = explain_params(&arch, 5);
        let classes: Vec<usize> = match arch.head().unwrap() {
            Head::Sigmoid => vec![1, 0, 1],
            Head::Softmax(_) | Head::Sigmoids(_) => vec![0, 2, 1],
        };
        // Every position its own token, so moving a token's embedding row moves exactly one
        // embedding output.
        let ids: Vec<u32> = (0..B * T).map(|i| i as u32 + 3).collect();
        let mut p64: Vec<f64> = params.iter().map(|&x| x as f64).collect();
        let want_probs = explain_ref_probs(&arch, &p64, &ids, &classes);
        let mut want = vec![0.0; B * T * D];
        let h = 1e-5;
        for (i, w) in want.iter_mut().enumerate() {
            let (pos, j) = (i / D, i % D);
            let at = ids[pos] as usize * D + j;
            let b = pos / T;
            let x = p64[at];
            p64[at] = x + h;
            let up = explain_ref_probs(&arch, &p64, &ids, &classes)[b];
            p64[at] = x - h;
            let down = explain_ref_probs(&arch, &p64, &ids, &classes)[b];
            p64[at] = x;
            *w = (up - down) / (2.0 * h);
        }
        let scale = want.iter().fold(1e-4f64, |m, w| m.max(w.abs()));
        for threads in [1, 2] {
            let mut net = Network::new(&arch, threads).unwrap();
            net.refresh(&params);
            let (mut probs, mut grads) = (vec![0.0; B], vec![0.0; B * T * D]);
            net.probability_gradients(&params, Input::Ids(&ids), &classes, &mut probs, &mut grads);
            for (g, w) in probs.iter().zip(&want_probs) {
                assert!((*g as f64 - w).abs() < 1e-5, "{name}: p {g} vs {w}");
            }
            for (i, (g, w)) in grads.iter().zip(&want).enumerate() {
                assert!(
                    (*g as f64 - w).abs() <= 2e-3 * scale,
                    "{name}, {threads} threads, [{i}]: got {g}, finite differences {w} \
                     (scale {scale})"
                );
            }
            let rows: Vec<f32> = ids
                .iter()
                .flat_map(|&id| &params[id as usize * D..(id as usize + 1) * D])
                .copied()
                .collect();
            let (mut probs2, mut grads2) = (vec![0.0; B], vec![0.0; B * T * D]);
            net.probability_gradients(
                &params,
                Input::Embedded(&rows),
                &classes,
                &mut probs2,
                &mut grads2,
            );
            assert_eq!((&probs, &grads), (&probs2, &grads2), "{name}");
        }
    }
}

/// A sequence like a review: padding, the start marker, words (one OOV).
fn explain_ids() -> Vec<u32> {
    vec![0, 0, 1, 7, 2, 12, 31]
}

/// Integrated gradients' completeness: at 256 steps (the tiny cnn: 1024) the contributions add
/// up to p(x) - p(all padding) within 1 % on every stack; padding contributes exactly 0.
#[test]
fn integrated_gradients_are_complete() {
    for (name, arch) in explain_archs() {
        let params = explain_params(&arch, 9);
        let mut net = Network::new(&arch, 2).unwrap();
        net.refresh(&params);
        let ids = explain_ids();
        // The cnn's path is piecewise linear (ReLU, global max pooling over 5 steps of 4
        // filters at this size): the midpoint rule's error there falls as 1/steps, not
        // 1/steps^2, and is 2 % at 256 steps, 0.7 % at 1024.
        let steps = if name == "cnn" { 1024 } else { 256 };
        let method = Method::IntegratedGradients { steps };
        let a = attribute(&mut net, &params, &ids, (0, 2), method).unwrap();
        let sum: f64 = a.contributions.iter().sum();
        let want = a.probability - a.baseline_probability;
        assert!(
            (sum - want).abs() <= 0.01 * want.abs() + 1e-6,
            "{name}: contributions add up to {sum}, p(x) - p(baseline) = {want}"
        );
        assert!(want.abs() > 1e-4, "{name}: a test that cannot fail: {want}");
        assert_eq!(&a.contributions[..2], [0.0, 0.0], "{name}");
        // The baseline is the all-padding sequence, and the class the most probable one.
        let mut z = vec![0.0; 2 * net.classes()];
        let mut both = ids.clone();
        both.extend([0; T]);
        net.predict_logits(&params, &both, &mut z);
        let z64: Vec<f64> = z.iter().map(|&v| v as f64).collect();
        let (k, h) = (net.classes(), net.head());
        let best = (0..k.max(2))
            .max_by(|&a, &b| {
                explain_prob(h, &z64[..k], a).total_cmp(&explain_prob(h, &z64[..k], b))
            })
            .unwrap();
        assert_eq!(a.class, best, "{name}");
        assert!((a.probability - explain_prob(h, &z64[..k], best)).abs() < 1e-9);
        assert!((a.baseline_probability - explain_prob(h, &z64[k..], best)).abs() < 1e-9);
    }
}

/// Occlusion is p(label | x) - p(label | x with the token replaced by the OOV id), each edited
/// sequence run on its own; padding and the OOV token itself contribute 0.
#[test]
fn occlusion_is_the_drop_when_a_token_becomes_unknown() {
    for (name, arch) in explain_archs() {
        let params = explain_params(&arch, 3);
        let mut net = Network::new(&arch, 2).unwrap();
        net.refresh(&params);
        let ids = explain_ids();
        let a = attribute(&mut net, &params, &ids, (0, 2), Method::Occlusion).unwrap();
        let k = net.classes();
        for t in 0..T {
            let mut edited = ids.clone();
            edited[t] = 2;
            let mut z = vec![0.0; k];
            net.predict_logits(&params, &edited, &mut z);
            let z64: Vec<f64> = z.iter().map(|&v| v as f64).collect();
            let want = match ids[t] {
                0 | 2 => 0.0,
                _ => a.probability - explain_prob(net.head(), &z64, a.class),
            };
            assert!(
                (a.contributions[t] - want).abs() < 1e-6,
                "{name}, position {t}: {} vs {want}",
                a.contributions[t]
            );
        }
        assert!(a.contributions.iter().any(|c| c.abs() > 1e-4), "{name}");
    }
}

/// A classifier over a 10-word vocabulary with random weights and `pre`.
fn explain_classifier(pre: Preprocessing) -> Classifier {
    let config = ModelConfig {
        num_words: pre.num_words,
        embed_dim: 6,
        units: 5,
        maxlen: pre.maxlen,
        ..ModelConfig::default()
    };
    let words = "the movie was great awful plot and a film it";
    let vocabulary: Vec<String> = words.split(' ').map(String::from).collect();
    let mut rng = Pcg64::seed_from_u64(1);
    let data = config.arch().init(&mut rng).unwrap();
    let file = ModelFile {
        arch: config.arch(),
        labels: imdb_lstm::model_file::imdb_labels(),
        preprocessing: pre,
        vocabulary,
        ngrams: None,
        training: None,
        tensors: Vec::new(),
    };
    Classifier::new(file, data, 2).unwrap()
}

/// The tokens `explain` shows are the model's input, position by position (each id the one
/// the model's own encoding gives), with start, OOV and padding marked, and the words cut by
/// truncation listed, for every padding and truncating side.
#[test]
fn explained_tokens_are_what_the_model_reads() {
    for (padding, truncating) in [
        (Side::Pre, Side::Pre),
        (Side::Post, Side::Post),
        (Side::Pre, Side::Post),
    ] {
        let pre = Preprocessing {
            num_words: 10, // keeps ranks 1-6: the ... awful
            maxlen: 6,
            padding,
            truncating,
            ..Preprocessing::default()
        };
        let mut c = explain_classifier(pre);
        for text in [
            "",
            "The GREAT movie, zork!",
            "the movie was great and a film it",
        ] {
            let e = explain::explain(&mut c, text, Method::Occlusion).unwrap();
            let ids: Vec<u32> = e.tokens.iter().map(|t| t.id).collect();
            assert_eq!(
                ids,
                c.encode(&[text]),
                "{text:?} {padding:?} {truncating:?}"
            );
            for t in &e.tokens {
                let kind = match t.id {
                    0 => TokenKind::Pad,
                    1 => TokenKind::Start,
                    2 => TokenKind::Oov,
                    _ => TokenKind::Word,
                };
                assert_eq!(t.kind, kind, "{t:?}");
            }
            let shown: Vec<&str> = e.tokens.iter().map(|t| t.text.as_str()).collect();
            let cut: Vec<&str> = e.cut.iter().map(String::as_str).collect();
            let want: (&[&str], &[&str]) = match (text, padding, truncating) {
                ("", Side::Pre, _) => (&["<pad>"; 5], &[]),
                ("", Side::Post, _) => (&["<start>"], &[]),
                (t, Side::Pre, _) if t.contains("zork") => {
                    (&["<pad>", "<start>", "the", "great", "movie", "zork"], &[])
                }
                (t, Side::Post, _) if t.contains("zork") => {
                    (&["<start>", "the", "great", "movie", "zork", "<pad>"], &[])
                }
                // The start marker and 8 words: the first 3 go (the marker is no word).
                (_, _, Side::Pre) => (
                    &["was", "great", "and", "a", "film", "it"],
                    &["the", "movie"],
                ),
                (_, _, Side::Post) => (
                    &["<start>", "the", "movie", "was", "great", "and"],
                    &["a", "film", "it"],
                ),
            };
            assert_eq!(&shown[..want.0.len()], want.0, "{text:?} {padding:?}");
            assert_eq!(cut, want.1, "{text:?} {truncating:?}");
            assert_eq!(e.truncated, text.len() > 30);
            assert_eq!(e.cut_words, e.cut.len());
        }
    }
}

// ---------------------------------------------------------------- predict --explain

/// A tiny trained model, made once per test process.
fn explain_model() -> &'static PathBuf {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("explain-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let archive = tiny_archive(&dir, 20);
        let (code, _, err) = run(bin()
            .args(["train", "--epochs", "2", "--quiet", "--data"])
            .arg(&archive)
            .arg("--out")
            .arg(dir.join("run"))
            .args(small_model_flags()));
        assert_eq!(code, 0, "{err}");
        dir.join("run/model.safetensors")
    })
}

fn explain_predict() -> Command {
    let mut c = bin();
    c.args(["predict", "--model"]).arg(explain_model());
    c
}

/// Each stdout line parsed as JSON.
fn explain_json(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `predict`'s probability of `label` for each text (run separately from the explanations).
fn explain_predicted(texts: &[String], label: &str) -> Vec<f64> {
    let out = predict_answered(
        explain_predict().arg("--json").args(texts),
        texts.len(),
        &[],
    );
    explain_json(&out)
        .iter()
        .map(|v| {
            let p = v["probability"].as_f64().unwrap();
            if label == "positive" {
                p
            } else {
                1.0 - p
            }
        })
        .collect()
}

const EXPLAIN_TEXTS: [&str; 2] = [
    "A superb film, I loved the wonderful story",
    "the plot was awful and boring, zork",
];

/// `--explain --json` with 256 integration steps: one object per review with the model's 24
/// positions, the label and probability `predict` gives, and contributions that add up to
/// p(label) - p(label | all padding) within 1 %; without --method it is integrated gradients
/// with 32 steps.
#[test]
fn predict_explain_json_integrated_gradients_add_up() {
    let out = predict_answered(
        explain_predict()
            .args(["--explain", "--json", "--steps", "256"])
            .args(EXPLAIN_TEXTS),
        2,
        &[],
    );
    for (i, v) in explain_json(&out).iter().enumerate() {
        assert_eq!(v["index"], i);
        assert_eq!(v["line"], i + 1);
        assert_eq!(v["method"], "integrated-gradients");
        assert_eq!(v["steps"], 256);
        let tokens = v["tokens"].as_array().unwrap();
        assert_eq!(tokens.len(), 24);
        let sum: f64 = tokens
            .iter()
            .map(|t| t["contribution"].as_f64().unwrap())
            .sum();
        let (p, base) = (
            v["probability"].as_f64().unwrap(),
            v["baseline_probability"].as_f64().unwrap(),
        );
        assert!(
            (sum - (p - base)).abs() <= 0.01 * (p - base).abs() + 1e-6,
            "{sum} vs {p} - {base}"
        );
        assert!(tokens
            .iter()
            .filter(|t| t["kind"] == "pad")
            .all(|t| t["contribution"] == 0.0));
        let label = v["label"].as_str().unwrap();
        let want = explain_predicted(&[EXPLAIN_TEXTS[i].to_string()], label)[0];
        assert!(
            want > 0.5 && (p - want).abs() < 1e-6,
            "{label} {p} vs {want}"
        );
    }
    let v = &explain_json(&predict_answered(
        explain_predict()
            .args(["--explain", "--json"])
            .arg(EXPLAIN_TEXTS[0]),
        1,
        &[],
    ))[0];
    assert_eq!(
        (&v["method"], &v["steps"]),
        (&"integrated-gradients".into(), &32.into())
    );
}

/// `--method occlusion`: each word's contribution is what `predict` gives for the review minus
/// what it gives for the review with that word replaced by an unknown word; the unknown word
/// `zork` and padding contribute 0.
#[test]
fn predict_explain_occlusion_matches_separate_predictions() {
    for text in EXPLAIN_TEXTS {
        let out = predict_answered(
            explain_predict().args(["--explain", "--json", "--method", "occlusion", text]),
            1,
            &[],
        );
        let v = &explain_json(&out)[0];
        assert_eq!(
            (&v["method"], &v["steps"]),
            (&"occlusion".into(), &serde_json::Value::Null)
        );
        let label = v["label"].as_str().unwrap();
        let p = v["probability"].as_f64().unwrap();
        let tokens = v["tokens"].as_array().unwrap();
        let words: Vec<&serde_json::Value> =
            tokens.iter().filter(|t| t["kind"] == "word").collect();
        assert!(words.len() >= 5, "{tokens:?}");
        // The text's words in order, each in turn replaced by an unknown one.
        let all = imdb_lstm::data::tokenize(text);
        let edited: Vec<String> = words
            .iter()
            .map(|w| {
                let mut e = all.clone();
                let at = e.iter().position(|x| *x == w["text"]).unwrap();
                e[at] = "qqqunknown".into();
                e.join(" ")
            })
            .collect();
        for (w, q) in words.iter().zip(explain_predicted(&edited, label)) {
            let c = w["contribution"].as_f64().unwrap();
            assert!((c - (p - q)).abs() < 1e-5, "{w}: {c} vs {p} - {q}");
        }
        assert!(words
            .iter()
            .any(|w| w["contribution"].as_f64().unwrap().abs() > 1e-4));
        for t in tokens
            .iter()
            .filter(|t| t["kind"] == "pad" || t["kind"] == "oov")
        {
            assert_eq!(t["contribution"], 0.0, "{t}");
        }
    }
}

/// The text output: a header per review, a line per token with its contribution (padding
/// summed in one line), the sum, and the words truncation cut; plain when stdout is not a
/// terminal, coloured when colours are forced. An empty review still gets its warning.
#[test]
fn predict_explain_text_output() {
    let long = (0..30)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let texts = [EXPLAIN_TEXTS[1], "", long.as_str()];
    let out = predict_answered(
        explain_predict().arg("--explain").args(texts),
        // header, tokens, padding, sum (and cut): 8 tokens and 16 padding; the start marker
        // and 23 padding; 24 words
        (1 + 8 + 1 + 1) + (1 + 1 + 1 + 1) + (1 + 24 + 1 + 1),
        &["argument 2"],
    );
    print!("{out}");
    assert!(!out.contains('\u{1b}'), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("argument 1: ")
            && lines[0].ends_with("integrated gradients, 32 steps"),
        "{}",
        lines[0]
    );
    assert!(lines[1].ends_with("  <start>") || lines[1].contains("  <start> "));
    assert!(lines[8].contains("zork (unknown)"), "{}", lines[8]);
    assert_eq!(lines[9], "  +0.0000  (16 padding positions)");
    assert!(lines[10].starts_with("  sum "));
    assert!(lines[11].starts_with("argument 2: "));
    assert_eq!(lines[13], "  +0.0000  (23 padding positions)");
    assert_eq!(
        *lines.last().unwrap(),
        "  cut to fit the model (6 words): w0 w1 w2 w3 w4 w5"
    );
    let (code, coloured, _) = run(explain_predict()
        .env("CLICOLOR_FORCE", "1")
        .args(["--explain", EXPLAIN_TEXTS[0]]));
    assert_eq!(code, 0);
    assert!(coloured.contains("\u{1b}[32m"), "{coloured}");
}

/// Bad explanation flags: one line each, exit 1, before the model is read.
#[test]
fn predict_explain_bad_flags() {
    let cases: [(&[&str], &str); 5] = [
        (&["--steps", "0"], "--steps 0 is outside 1 to 4096"),
        (&["--steps", "4097"], "--steps 4097 is outside 1 to 4096"),
        (&["--steps", "18446744073709551615"], "is outside 1 to 4096"),
        (
            &["--method", "shap"],
            "--method shap: unknown method; use occlusion or integrated-gradients",
        ),
        (
            &["--method", "occlusion", "--steps", "8"],
            "--steps is for --method integrated-gradients",
        ),
    ];
    for (flags, needle) in cases {
        let mut cmd = bin();
        cmd.args([
            "predict",
            "--model",
            "/nonexistent/model.safetensors",
            "--explain",
        ])
        .args(flags)
        .arg("a fine film");
        let got = run(&mut cmd);
        assert_refused(&cmd, got, 1, &[needle]);
    }
}

/// More reviews than `--explain` takes at a time: refused, naming the count, before any work.
#[test]
fn predict_explain_too_many_reviews() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("reviews.txt");
    std::fs::write(&file, "a fine film\n".repeat(1001)).unwrap();
    let mut cmd = explain_predict();
    cmd.args(["--explain", "--file"]).arg(&file);
    let got = run(&mut cmd);
    assert_refused(
        &cmd,
        got,
        1,
        &["--explain takes at most 1000 reviews at a time, and 1001 were given"],
    );
    // 1000 is fine.
    std::fs::write(&file, "a fine film\n".repeat(1000)).unwrap();
    let out = predict_answered(
        explain_predict()
            .args(["--explain", "--json", "--method", "occlusion", "--file"])
            .arg(&file),
        1000,
        &[],
    );
    assert_eq!(explain_json(&out)[999]["line"], 1000);
}
