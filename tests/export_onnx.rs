//! `export --format onnx`: the exported graph, run by tract-onnx, gives `predict`'s
//! probabilities for every preset and every layer kind; preprocessing.json alone rebuilds the
//! ids `predict` feeds the model; the command's failures are one line each, with nothing
//! half-written.

mod common;
use common::*;

use imdb_lstm::data::{tokenize, Preprocessing, Side};
use imdb_lstm::export::{self, LINE_BREAK_PATTERN, TOKEN_PATTERN};
use imdb_lstm::nn::arch::{
    preset, Activation, Arch, Head, LayerSpec, MergeMode, Padding, Recurrent, PRESETS,
};
use imdb_lstm::nn::Network;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use std::path::Path;
use tract_onnx::prelude::*;

/// `ids` `[n, maxlen]` through the ONNX model with tract: `[n, K]` probabilities.
fn export_run_tract(onnx: &[u8], ids: &[u32], n: usize) -> Vec<f32> {
    let maxlen = ids.len() / n;
    // The model's batch is symbolic; tract's LSTM and GRU want it known.
    let fact = InferenceFact::dt_shape(i64::datum_type(), [n, maxlen]);
    let plan = tract_onnx::onnx()
        .model_for_read(&mut &onnx[..])
        .expect("tract reads the model")
        .with_input_fact(0, fact)
        .unwrap()
        .into_optimized()
        .expect("tract optimises the model")
        .into_runnable()
        .expect("tract plans the model");
    let x =
        tract_ndarray::Array2::from_shape_vec((n, maxlen), ids.iter().map(|&i| i as i64).collect())
            .unwrap();
    let out = plan
        .run(tvec!(Tensor::from(x).into_tvalue()))
        .expect("tract runs the model");
    out[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

/// What `predict` computes for `ids`: the Network's logits through the head.
fn export_network_probabilities(arch: &Arch, params: &[f32], ids: &[u32], n: usize) -> Vec<f32> {
    let mut net = Network::new(arch, 1).unwrap();
    net.refresh(params);
    let k = net.classes();
    let mut logits = vec![0.0; n * k];
    net.predict_logits(params, ids, &mut logits);
    match arch.head().unwrap() {
        Head::Sigmoid | Head::Sigmoids(_) => logits
            .iter()
            .map(|&z| (1.0 / (1.0 + (-z as f64).exp())) as f32)
            .collect(),
        Head::Softmax(_) => logits
            .chunks(k)
            .flat_map(|row| {
                let m = row.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
                let e: Vec<f64> = row.iter().map(|&z| (z as f64 - m).exp()).collect();
                let s: f64 = e.iter().sum();
                e.into_iter().map(move |v| (v / s) as f32)
            })
            .collect(),
    }
}

/// Random ids below `vocab` in `n` rows of `maxlen`: pads in front of some rows, at the end of
/// others, none in the last, as pre/post padding makes them.
fn export_random_ids(rng: &mut Pcg64, n: usize, maxlen: usize, vocab: usize) -> Vec<u32> {
    let mut ids = Vec::with_capacity(n * maxlen);
    for row in 0..n {
        let pads = if row + 1 == n {
            0
        } else {
            rng.gen_range(0..maxlen)
        };
        let words = (0..maxlen - pads).map(|_| rng.gen_range(1..vocab as u32));
        let mut r: Vec<u32> = std::iter::once(1)
            .chain(words)
            .take(maxlen - pads)
            .collect();
        if row % 2 == 0 {
            r.splice(0..0, std::iter::repeat_n(0, pads));
        } else {
            r.extend(std::iter::repeat_n(0, pads));
        }
        ids.extend(r);
    }
    ids
}

/// Exports `arch` with random weights and checks tract's probabilities against the Network's.
fn export_check_arch(what: &str, arch: &Arch, seed: u64) {
    let mut rng = Pcg64::seed_from_u64(seed);
    let params = arch.init(&mut rng).unwrap();
    // Keras's initial biases are zeros: random ones check that every bias lands in its place.
    let mut params = params;
    for (t, r) in arch.layout().unwrap() {
        if t.name.ends_with("bias") {
            params[r]
                .iter_mut()
                .for_each(|b| *b = rng.gen_range(-0.5..0.5));
        }
    }
    let LayerSpec::Embedding { input_dim, .. } = arch.layers[0] else {
        unreachable!()
    };
    let n = 6;
    let ids = export_random_ids(&mut rng, n, arch.maxlen, input_dim);
    let onnx = export::onnx::model_bytes(arch, &params).unwrap();
    let got = export_run_tract(&onnx, &ids, n);
    let want = export_network_probabilities(arch, &params, &ids, n);
    assert_eq!(got.len(), want.len(), "{what}: output size");
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!("{what}: max |tract - predict| = {worst:.2e} over {want:?}");
    assert!(worst <= 1e-5, "{what}: tract {got:?} vs predict {want:?}");
    // Not all the same answer: the check would be weak if the model ignored its input.
    assert!(
        want.iter().any(|&p| (p - want[0]).abs() > 1e-4),
        "{what}: {want:?}"
    );
}

#[test]
fn every_preset_exports_and_gives_predicts_probabilities() {
    for (i, name) in PRESETS.iter().enumerate() {
        let mut arch = preset(name).unwrap().arch;
        // A small vocabulary keeps the files small; the layers are the preset's.
        arch.set_input_dim(300);
        export_check_arch(name, &arch, 100 + i as u64);
    }
}

#[test]
fn the_other_layer_kinds_and_softmax_and_multi_label_heads_export_too() {
    let rnn = |units, return_sequences| Recurrent {
        return_sequences,
        ..Recurrent::new(units)
    };
    let bi = |layer| LayerSpec::Bidirectional {
        layer: Box::new(layer),
        merge_mode: MergeMode::Concat,
    };
    let conv = |filters, kernel_size, activation| LayerSpec::Conv1D {
        filters,
        kernel_size,
        padding: Padding::Valid,
        strides: 1,
        activation,
    };
    let dense = |units, activation| LayerSpec::Dense { units, activation };
    let stacks = [
        (
            "bidirectional GRU sequences, conv tanh, pooling, bidirectional LSTM, softmax",
            vec![
                LayerSpec::Embedding {
                    input_dim: 50,
                    output_dim: 8,
                },
                bi(LayerSpec::GRU(rnn(5, true))),
                conv(7, 3, Activation::Tanh),
                LayerSpec::MaxPooling1D {
                    pool_size: 2,
                    strides: 2,
                    padding: Padding::Valid,
                },
                bi(LayerSpec::LSTM(rnn(4, true))),
                LayerSpec::GlobalMaxPooling1D {},
                dense(6, Activation::Tanh),
                LayerSpec::Dropout { rate: 0.3 },
                dense(3, Activation::Softmax),
            ],
        ),
        (
            "GRU sequences, conv softmax, average, relu, activations",
            vec![
                LayerSpec::Embedding {
                    input_dim: 40,
                    output_dim: 6,
                },
                LayerSpec::GRU(rnn(5, true)),
                conv(4, 2, Activation::Softmax),
                LayerSpec::Activation {
                    activation: Activation::Sigmoid,
                },
                LayerSpec::GRU(rnn(3, false)),
                dense(5, Activation::Relu),
                LayerSpec::Activation {
                    activation: Activation::Linear,
                },
                dense(2, Activation::Linear),
                LayerSpec::Activation {
                    activation: Activation::Softmax,
                },
            ],
        ),
        (
            "bidirectional GRU last state, sigmoid",
            vec![
                LayerSpec::Embedding {
                    input_dim: 30,
                    output_dim: 5,
                },
                bi(LayerSpec::GRU(rnn(4, false))),
                dense(1, Activation::Sigmoid),
            ],
        ),
        (
            "conv, average, multi-label sigmoids",
            vec![
                LayerSpec::Embedding {
                    input_dim: 30,
                    output_dim: 5,
                },
                conv(6, 3, Activation::Relu),
                LayerSpec::GlobalAveragePooling1D {},
                dense(4, Activation::Sigmoid),
            ],
        ),
    ];
    for (i, (what, layers)) in stacks.into_iter().enumerate() {
        let arch = Arch::new(layers, 13).unwrap();
        export_check_arch(what, &arch, 7 + i as u64);
    }
}

/// The tokens preprocessing.json's patterns give, applied as its README says.
fn export_tokens_by_patterns(
    line_break: &regex::Regex,
    token: &regex::Regex,
    text: &str,
) -> Vec<String> {
    let lower = line_break.replace_all(text, " ").to_lowercase();
    token
        .find_iter(&lower)
        .map(|m| m.as_str().to_string())
        .collect()
}

/// preprocessing.json's patterns.
fn export_patterns(json: &serde_json::Value) -> (regex::Regex, regex::Regex) {
    let tok = &json["tokenizer"];
    let pattern = |k: &str| regex::Regex::new(tok[k].as_str().unwrap()).unwrap();
    (pattern("line_break_pattern"), pattern("token_pattern"))
}

#[test]
fn the_token_pattern_gives_the_tokenizers_tokens() {
    let json: serde_json::Value = serde_json::from_str(
        &export::preprocessing_json(
            &Preprocessing::default(),
            &[],
            None,
            &["neg".into(), "pos".into()],
            false,
        )
        .unwrap(),
    )
    .unwrap();
    let (lb, tok) = export_patterns(&json);
    assert_eq!(json["tokenizer"]["line_break_pattern"], LINE_BREAK_PATTERN);
    assert_eq!(json["tokenizer"]["token_pattern"], TOKEN_PATTERN);
    let tricky = [
        "It's <br />GREAT, isn't it? 'Yes'",
        "a<br />b<br/>c<br>d<BR />e<Br/>f<bR>g",
        "a<bra>b x<br  />y end<br <br",
        "'tis ''quoted'' words'' rock'n'roll ' '' don’t",
        "ÉCOLE Straße STRASSE ΟΔΟΣ 日本語 テスト",
        "A 10/10 movie! well-made, (really)... 3.5 mr._smith",
        "½ Ⅻ ٣٤ x² ǅemal ﬁne ª º",
        "naïve cafe\u{301} हिन्दी ا\u{64e}لْعَرَبِيَّة",
        "İstanbul KELVIN \u{212a} ß ẞ",
        "tab\tnew\nline\r\nzero\u{0}width\u{200b}joiner\u{200d}x",
        "   ?!.,  ",
        "",
    ];
    for text in tricky {
        assert_eq!(
            export_tokens_by_patterns(&lb, &tok, text),
            tokenize(text),
            "{text:?}"
        );
    }
    // Random strings over characters that sit on the rule's edges.
    let alphabet: Vec<char> = "<>/ bBrR'’_-.aZé9٣½Ⅻ\u{301}ि\u{200d}ΣςİK\n"
        .chars()
        .collect();
    let mut rng = Pcg64::seed_from_u64(5);
    for _ in 0..3000 {
        let len = rng.gen_range(0..24);
        let text: String = (0..len)
            .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
            .collect();
        assert_eq!(
            export_tokens_by_patterns(&lb, &tok, &text),
            tokenize(&text),
            "{text:?}"
        );
    }
}

/// `text`'s input_ids from preprocessing.json alone, as its README's Python does it.
fn export_encode_by_json(json: &serde_json::Value, text: &str) -> Vec<u32> {
    let (lb, tok) = export_patterns(json);
    let first = json["first_word_id"].as_u64().unwrap() as u32;
    let vocab: std::collections::HashMap<&str, u32> = json["vocabulary"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, w)| (w.as_str().unwrap(), first + i as u32))
        .collect();
    let special = |k: &str| json["special_ids"][k].as_u64().unwrap() as u32;
    let maxlen = json["maxlen"].as_u64().unwrap() as usize;
    let mut ids = vec![special("start")];
    for w in export_tokens_by_patterns(&lb, &tok, text) {
        ids.push(vocab.get(w.as_str()).copied().unwrap_or(special("oov")));
    }
    if let Some(ng) = json["ngrams"].as_object() {
        // Each n-gram's id, as the JSON's `encoding` says: lengths 2.., windows left to right.
        let mut table = std::collections::HashMap::new();
        let (mut next, mut at) = (ng["start_id"].as_u64().unwrap() as u32, 0usize);
        let tuples: Vec<u32> = serde_json::from_value(ng["tuples"].clone()).unwrap();
        for (k, count) in ng["counts"].as_array().unwrap().iter().enumerate() {
            for _ in 0..count.as_u64().unwrap() {
                table.insert(tuples[at..at + k + 2].to_vec(), next);
                (next, at) = (next + 1, at + k + 2);
            }
        }
        let words = ids.clone();
        for n in 2..=ng["n"].as_u64().unwrap() as usize {
            for w in words.windows(n) {
                if let Some(&id) = table.get(w) {
                    ids.push(id);
                }
            }
        }
    }
    if ids.len() > maxlen {
        ids = if json["truncating"] == "pre" {
            ids[ids.len() - maxlen..].to_vec()
        } else {
            ids[..maxlen].to_vec()
        };
    }
    let pad = vec![special("pad"); maxlen - ids.len()];
    if json["padding"] == "pre" {
        [pad, ids].concat()
    } else {
        [ids, pad].concat()
    }
}

#[test]
fn preprocessing_json_alone_gives_predicts_ids() {
    let words: Vec<String> = [
        "the", "film", "it's", "great", "dull", "école", "plot", "end",
    ]
    .map(String::from)
    .to_vec();
    let texts = [
        "The film? It's GREAT.<br /><br />The end",
        "dull dull plot, the plot... unknown-words here",
        "",
        "École the film the film the film the film the film the film the film",
    ];
    for padding in [Side::Pre, Side::Post] {
        for truncating in [Side::Pre, Side::Post] {
            // num_words 10 keeps the first six words only: ids 4..=9.
            let pre = Preprocessing {
                num_words: 10,
                maxlen: 7,
                padding,
                truncating,
                ..Preprocessing::default()
            };
            let text = export::preprocessing_json(
                &pre,
                &words,
                None,
                &["neg".into(), "pos".into()],
                false,
            )
            .unwrap();
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(json["vocabulary"].as_array().unwrap().len(), 6);
            let vocab = imdb_lstm::data::Vocabulary::from_words(words.clone());
            for t in texts {
                assert_eq!(
                    export_encode_by_json(&json, t),
                    pre.encode_padded(&vocab, None, t),
                    "{t:?} with padding {padding:?}, truncating {truncating:?}"
                );
            }
        }
    }
}

/// A tiny model trained by the binary in `dir`/run (model.safetensors).
fn export_trained_model(dir: &Path) -> std::path::PathBuf {
    let archive = tiny_archive(dir, 40);
    let mut c = bin();
    c.args(["train", "--quiet", "--epochs", "1", "--data"])
        .arg(&archive)
        .arg("--out")
        .arg(dir.join("run"))
        .args(small_model_flags());
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 0, "train failed: {err}");
    dir.join("run/model.safetensors")
}

fn export_cmd(model: &Path, out: &Path, extra: &[&str]) -> std::process::Command {
    let mut c = bin();
    c.args(["export", "--format", "onnx", "--model"])
        .arg(model)
        .arg("--out")
        .arg(out)
        .args(extra);
    c
}

#[test]
fn export_of_a_trained_model_answers_as_predict_on_raw_text() {
    let tmp = tempfile::tempdir().unwrap();
    let model = export_trained_model(tmp.path());
    let out = tmp.path().join("exported");
    let (code, stdout, err) = run(&mut export_cmd(&model, &out, &[]));
    assert_eq!(code, 0, "export failed: {err}");
    assert!(stdout.starts_with("wrote "), "{stdout}");
    assert_eq!(
        file_names(&out),
        ["README.md", "model.onnx", "preprocessing.json"]
    );
    let texts = [
        "A wonderful, superb film: I loved it.".to_string(),
        "Awful. Boring and terrible, the worst plot.<br /><br />Dull.".to_string(),
        "the movie was a film".to_string(),
        String::new(),
        review(true, 3),
        review(false, 4),
    ];
    let mut c = bin();
    c.args(["predict", "--json", "--model"])
        .arg(&model)
        .args(&texts);
    let (code, stdout, err) = run(&mut c);
    assert_eq!(code, 0, "predict failed: {err}");
    let want: Vec<f32> = stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["probability"].as_f64().unwrap() as f32
        })
        .collect();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("preprocessing.json")).unwrap()).unwrap();
    assert_eq!(json["labels"], serde_json::json!(["neg", "pos"]));
    let ids: Vec<u32> = texts
        .iter()
        .flat_map(|t| export_encode_by_json(&json, t))
        .collect();
    let got = export_run_tract(
        &std::fs::read(out.join("model.onnx")).unwrap(),
        &ids,
        texts.len(),
    );
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!("trained model: max |onnx - predict| = {worst:.2e}");
    assert!(worst <= 1e-5, "onnx {got:?} vs predict {want:?}");
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(readme.contains("onnxruntime") && readme.contains("token_pattern"));
}

#[test]
fn export_refuses_bad_input_in_one_line_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let model = export_trained_model(tmp.path());

    // Not a model file of ours: the reader's own message; no folder made.
    let junk = tmp.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a model at all").unwrap();
    let out = tmp.path().join("from-junk");
    let mut c = export_cmd(&junk, &out, &[]);
    let r = run(&mut c);
    assert_refused(&c, r, 1, &["junk.safetensors", "not a safetensors file"]);
    assert!(!out.exists());
    let missing = tmp.path().join("nope.safetensors");
    let mut c = export_cmd(&missing, &out, &[]);
    let r = run(&mut c);
    assert_refused(&c, r, 1, &["no such model file", "nope.safetensors"]);
    assert!(!out.exists());

    // A folder that holds something: refused without --force, untouched.
    let full = tmp.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("mine.txt"), b"keep me").unwrap();
    std::fs::write(full.join("model.onnx"), b"old").unwrap();
    let mut c = export_cmd(&model, &full, &[]);
    let r = run(&mut c);
    assert_refused(
        &c,
        r,
        1,
        &[
            "--out",
            "full",
            "already exists and is not empty",
            "--force",
        ],
    );
    assert_eq!(file_names(&full), ["mine.txt", "model.onnx"]);
    assert_eq!(std::fs::read(full.join("model.onnx")).unwrap(), b"old");
    // With --force: our three files replaced, the rest kept, no temp file left.
    let (code, _, err) = run(&mut export_cmd(&model, &full, &["--force"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        file_names(&full),
        ["README.md", "mine.txt", "model.onnx", "preprocessing.json"]
    );
    assert_eq!(std::fs::read(full.join("mine.txt")).unwrap(), b"keep me");
    assert!(std::fs::metadata(full.join("model.onnx")).unwrap().len() > 1000);

    // An empty folder is fine without --force.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, _, err) = run(&mut export_cmd(&model, &empty, &[]));
    assert_eq!(code, 0, "{err}");

    // --out naming a file.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let mut c = export_cmd(&model, &file, &[]);
    let r = run(&mut c);
    assert_refused(&c, r, 1, &["--out", "a-file", "is a file, not a folder"]);
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

/// fasttext: preprocessing.json carries the bigram table, and the ids rebuilt from it alone are
/// the ones `predict` feeds the model (the exported model then answers as predict does).
#[test]
fn export_fasttext_ngrams_travel_in_preprocessing_json() {
    use imdb_lstm::infer::Classifier;
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 20);
    let mut c = bin();
    c.args([
        "train", "--quiet", "--epochs", "1", "--arch", "fasttext", "--data",
    ])
    .arg(&archive)
    .arg("--out")
    .arg(tmp.path().join("run"))
    .args(["--num-words", "60", "--maxlen", "40", "--embed-dim", "8"]);
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 0, "train failed: {err}");
    let model = tmp.path().join("run/model.safetensors");
    let out = tmp.path().join("exported");
    let (code, _, err) = run(&mut export_cmd(&model, &out, &[]));
    assert_eq!(code, 0, "export failed: {err}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("preprocessing.json")).unwrap())
            .unwrap();
    assert_eq!(json["ngrams"]["n"], 2);
    let c = Classifier::load(&model, 1).unwrap();
    for text in [
        review(true, 1),
        review(false, 2),
        "the the movie movie".to_string(),
        String::new(),
    ] {
        let ids = c.encode(&[&text]);
        assert!(ids.iter().any(|&id| id > 60) || text.is_empty(), "{text}");
        assert_eq!(export_encode_by_json(&json, &text), ids, "{text:?}");
    }
}
