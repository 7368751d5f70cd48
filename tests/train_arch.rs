//! `train --arch NAME` and `train --arch-file FILE`: every preset and any stack of supported
//! layers trains, saves a format-2 model file with Keras's tensor names, and works with
//! summary, graph, predict, evaluate, --resume and early stopping; bad models are refused in
//! one line before a run folder is made.

mod common;

use common::*;
use imdb_lstm::model_file;
use imdb_lstm::train::checkpoint;
use std::path::Path;
use std::process::Command;

/// `train` on `archive` into `out` with `args`, quiet, on one thread.
fn train(archive: &Path, out: &Path, args: &[&str]) -> Command {
    let mut c = bin();
    c.args(["train", "--quiet", "--threads", "1", "--data"])
        .arg(archive)
        .arg("--out")
        .arg(out)
        .args(args);
    c
}

/// Small sizes for the tiny archive: the recurrent presets also get small units.
fn small(preset: &str) -> Vec<&str> {
    let mut f = vec![
        "--arch",
        preset,
        "--num-words",
        "60",
        "--maxlen",
        "24",
        "--embed-dim",
        "8",
        "--batch-size",
        "16",
        "--learning-rate",
        "0.01",
    ];
    if !["cnn", "fasttext"].contains(&preset) {
        f.extend(["--units", "6"]);
    }
    f
}

/// Runs `cmd`, expects exit 1 and one `error: ` line; returns it with `dir` shown as `…`.
fn refused(cmd: &mut Command, dir: &Path) -> String {
    let (code, _, err) = run(cmd);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    err.trim_end().replace(&dir.display().to_string(), "…")
}

fn tensors(dir: &Path) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    model_file::load(&dir.join("model.safetensors"))
        .unwrap()
        .tensors
        .into_iter()
        .map(|(n, s, v)| (n, s, v.iter().map(|x| x.to_bits()).collect()))
        .collect()
}

/// history.json without the timings.
fn metrics(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("history.json"))
        .unwrap()
        .lines()
        .filter(|l| !l.contains("\"seconds\""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The presets this build trains, with a tensor name each must save and a layer class its
/// summary must show.
const PRESETS: [(&str, &str, &str); 7] = [
    ("lstm", "lstm/recurrent_kernel", "LSTM"),
    ("gru", "gru/recurrent_kernel", "GRU"),
    (
        "bilstm",
        "bidirectional/backward_lstm/kernel",
        "Bidirectional",
    ),
    ("stacked-lstm", "lstm_1/kernel", "LSTM"),
    ("cnn", "conv1d/kernel", "GlobalMaxPooling1D"),
    ("cnn-lstm", "conv1d/kernel", "MaxPooling1D"),
    ("fasttext", "embedding/embeddings", "GlobalAveragePooling1D"),
];

/// Every preset: trains, its file names Keras's tensors, summary / graph / predict / evaluate
/// read it, and a run resumed after its first epoch ends bit-identical to the run uninterrupted.
#[test]
fn train_arch_every_preset_trains_resumes_and_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 16);
    for (name, tensor, class) in PRESETS {
        let (full, part) = (tmp.path().join(name), tmp.path().join(format!("{name}-r")));
        let mut flags = small(name);
        flags.extend(["--epochs", "2"]);
        let (code, _, err) = run(&mut train(&archive, &full, &flags));
        assert_eq!(code, 0, "{name}: {err}");
        let names: Vec<String> = tensors(&full).into_iter().map(|t| t.0).collect();
        assert!(names.iter().any(|n| n == tensor), "{name}: {names:?}");

        // One epoch, then the checkpoint asks for a second: --resume trains it.
        flags.pop();
        flags.push("1");
        let (code, _, err) = run(&mut train(&archive, &part, &flags));
        assert_eq!(code, 0, "{name}: {err}");
        let mut ck = checkpoint::load(&part).unwrap();
        ck.spec.plan.train.epochs = 2;
        ck.finished = false;
        checkpoint::save(&part, &ck).unwrap();
        let (code, _, err) = run(bin().args(["train", "--quiet", "--resume"]).arg(&part));
        assert_eq!(code, 0, "{name}: {err}");
        assert!(tensors(&part) == tensors(&full), "{name}: resumed differs");
        assert_eq!(metrics(&part), metrics(&full), "{name}");

        let model = full.join("model.safetensors");
        let (code, summary, err) = run(bin().args(["summary", "--model"]).arg(&model));
        assert_eq!(code, 0, "{name}: {err}");
        assert!(summary.contains(class), "{name}: {summary}");
        let graph_dir = tmp.path().join(format!("{name}-graph"));
        std::fs::create_dir(&graph_dir).unwrap();
        let (code, _, err) = run(bin()
            .args(["graph", "--model"])
            .arg(&model)
            .arg("--out")
            .arg(&graph_dir));
        assert_eq!(code, 0, "{name}: {err}");
        let svg = std::fs::read_to_string(graph_dir.join("model.svg")).unwrap();
        assert!(svg.contains(class), "{name}: graph lacks {class}");
        let (code, out, err) = run(bin()
            .args(["predict", "--json", "--model"])
            .arg(&model)
            .arg("a great movie"));
        assert_eq!(code, 0, "{name}: {err}");
        let answer: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        let p = answer["probability"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p), "{name}: {out}");
        let (code, out, err) = run(bin()
            .args(["evaluate", "--model"])
            .arg(&model)
            .arg("--data")
            .arg(&archive));
        assert_eq!(code, 0, "{name}: {err}");
        assert!(out.contains("accuracy"), "{name}: {out}");
    }
}

/// The preset's own defaults apply unless a flag overrides them (bilstm: 20000 words, maxlen
/// 100); the tutorial's model is the default.
#[test]
fn train_arch_presets_bring_their_defaults_and_flags_override_them() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 8);
    let out = tmp.path().join("bi");
    let (code, _, err) = run(&mut train(
        &archive,
        &out,
        &["--arch", "bilstm", "--epochs", "1", "--units", "4"],
    ));
    assert_eq!(code, 0, "{err}");
    let m = model_file::load(&out.join("model.safetensors")).unwrap();
    assert_eq!(m.arch.maxlen, 100);
    assert_eq!(m.preprocessing.num_words, 20000);
    assert_eq!(m.arch.embedding(), Some((20000, 128)));
    let mut arch = m.arch.clone();
    assert!(arch.recurrent_mut().all(|r| r.units == 4));

    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let flags = small_model_flags();
    let (code, _, err) = run(&mut train(&archive, &a, &flags));
    assert_eq!(code, 0, "{err}");
    let mut with = flags.clone();
    with.extend(["--arch", "lstm"]);
    let (code, _, err) = run(&mut train(&archive, &b, &with));
    assert_eq!(code, 0, "{err}");
    assert_eq!(metrics(&a), metrics(&b));
}

/// Early stopping works for a preset other than the tutorial's.
#[test]
fn train_arch_gru_with_early_stopping() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 16);
    let out = tmp.path().join("run");
    let mut flags = small("gru");
    flags.extend(["--epochs", "4", "--early-stopping", "0"]);
    let (code, _, err) = run(&mut train(&archive, &out, &flags));
    assert_eq!(code, 0, "{err}");
    let m = model_file::load(&out.join("model.safetensors")).unwrap();
    assert!(m.training.unwrap().best_epoch.is_some());
}

/// A JSON list of layers around `middle`: Embedding(60, 8) first, `last` last.
fn layers(middle: &str, last: &str) -> String {
    format!(
        r#"[{{"class_name": "Embedding", "config": {{"input_dim": 60, "output_dim": 8}}}},
           {middle}, {last}]"#
    )
}

const SIGMOID: &str = r#"{"class_name": "Dense", "config": {"units": 1, "activation": "sigmoid"}}"#;

/// A stack no preset has (GRU returning sequences into a bidirectional LSTM) trains from a file
/// and is sized by it; the flags still override.
#[test]
fn train_arch_file_trains_any_supported_stack() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 16);
    let out = tmp.path().join("run");
    let file = tmp.path().join("arch.json");
    let middle = r#"{"class_name": "GRU", "config": {"units": 5, "return_sequences": true}},
        {"class_name": "Bidirectional", "config": {"layer": {"class_name": "LSTM", "config": {"units": 3}}}},
        {"class_name": "Dropout", "config": {"rate": 0.5}}"#;
    std::fs::write(&file, layers(middle, SIGMOID)).unwrap();
    let (code, _, err) = run(train(&archive, &out, &["--maxlen", "12", "--epochs", "1"])
        .arg("--arch-file")
        .arg(&file));
    assert_eq!(code, 0, "{err}");
    let model = out.join("model.safetensors");
    let (code, summary, err) = run(bin().args(["summary", "--model"]).arg(&model));
    assert_eq!(code, 0, "{err}");
    // GRU(5) on 8 inputs: 3*5*(8+5) + 2*3*5 = 225; Bidirectional(LSTM(3)) on 5: 2*4*3*(5+3+1) = 216.
    for want in ["(None, 12, 5)", "225", "(None, 6)", "216"] {
        assert!(summary.contains(want), "{want}: {summary}");
    }
    let out2 = tmp.path().join("run2");
    let (code, _, err) = run(train(&archive, &out2, &["--units", "2", "--epochs", "1"])
        .arg("--arch-file")
        .arg(&file));
    assert_eq!(code, 0, "{err}");
    let m = model_file::load(&out2.join("model.safetensors")).unwrap();
    assert_eq!(m.arch.maxlen, 80);
    let mut arch = m.arch.clone();
    assert!(arch.recurrent_mut().all(|r| r.units == 2));
}

/// Each bad model: one line, exit 1, no run folder.
#[test]
fn train_arch_refusals_are_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 4);
    let out = tmp.path().join("run");
    let line = refused(
        &mut train(&archive, &out, &["--arch", "transformer"]),
        tmp.path(),
    );
    assert_eq!(
        line,
        "error: --arch transformer: unknown model preset 'transformer'; the presets are lstm, \
         gru, bilstm, stacked-lstm, cnn, cnn-lstm, fasttext"
    );
    let line = refused(
        &mut train(&archive, &out, &["--arch", "cnn", "--units", "8"]),
        tmp.path(),
    );
    assert_eq!(
        line,
        "error: --units: --arch cnn has no LSTM or GRU layer for it to set; drop --units"
    );
    let line = refused(
        &mut train(&archive, &out, &["--arch", "gru", "--dropout", "1.5"]),
        tmp.path(),
    );
    assert_eq!(
        line,
        "error: --dropout 1.5 is outside [0, 1): use a fraction such as 0.2 (default 0.2)"
    );
    let line = refused(
        &mut train(&archive, &out, &["--arch", "cnn", "--maxlen", "2"]),
        tmp.path(),
    );
    assert_eq!(
        line,
        "error: --arch cnn with --maxlen 2: layer 3 (Conv1D): kernel_size 3 is longer than the 2 \
         steps it gets from layer 2 (Dropout)"
    );
    assert!(!out.exists());

    let file = tmp.path().join("arch.json");
    let softmax = r#"{"class_name": "Dense", "config": {"units": 2, "activation": "softmax"}}"#;
    let lstm = r#"{"class_name": "LSTM", "config": {"units": 6}}"#;
    let cases: Vec<(String, &str)> =
        vec![
        (
            "not json".into(),
            "error: --arch-file …/arch.json: not JSON: expected ident at line 1 column 2",
        ),
        (
            layers(r#"{"class_name": "Transformer", "config": {}}"#, SIGMOID),
            "error: --arch-file …/arch.json: layer 2 (Transformer) is not supported; supported: \
             Embedding, LSTM, GRU, Bidirectional, Dropout, Dense, Activation, Conv1D, \
             MaxPooling1D, GlobalMaxPooling1D, GlobalAveragePooling1D",
        ),
        (
            layers(
                r#"{"class_name": "LSTM", "config": {"units": 6, "activation": "relu"}}"#,
                SIGMOID,
            ),
            "error: --arch-file …/arch.json: layer 2 (LSTM): activation 'relu' is not \
             supported; only 'tanh'",
        ),
        (
            layers(r#"{"class_name": "LSTM", "config": {"units": -3}}"#, SIGMOID),
            "error: --arch-file …/arch.json: layer 2 (LSTM): units must be a whole number, got -3",
        ),
        (
            layers(&format!("{lstm}, {lstm}"), SIGMOID),
            "error: --arch-file …/arch.json: layer 3 (LSTM) needs a sequence (None, steps, \
             features), but layer 2 (LSTM) gives (None, 6): set return_sequences=True on layer \
             2 (LSTM)",
        ),
        (
            layers(lstm, softmax),
            "error: --arch-file …/arch.json: the model ends in a 2-way softmax, but the IMDB \
             reviews have 2 classes (negative, positive): end it in Dense(1, sigmoid)",
        ),
    ];
    for (text, want) in cases {
        std::fs::write(&file, &text).unwrap();
        let line = refused(
            train(&archive, &out, &["--maxlen", "12"])
                .arg("--arch-file")
                .arg(&file),
            tmp.path(),
        );
        assert_eq!(line, want, "{text}");
        assert!(!out.exists(), "{text}");
    }
}

/// A checkpoint written before models were layer lists (a `model` config in place of `arch`)
/// still resumes, as the tutorial's layers, and ends as the run that was never interrupted; its
/// settings are checked under their old names.
#[test]
fn train_arch_checkpoint_with_a_format_1_model_config_resumes() {
    use serde_json::{json, Value};
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 16);
    let (full, part) = (tmp.path().join("full"), tmp.path().join("part"));
    let mut flags = small_model_flags();
    flags.extend(["--epochs", "2"]);
    let (code, _, err) = run(&mut train(&archive, &full, &flags));
    assert_eq!(code, 0, "{err}");
    flags.pop();
    flags.push("1");
    let (code, _, err) = run(&mut train(&archive, &part, &flags));
    assert_eq!(code, 0, "{err}");

    let path = checkpoint::path_in(&part);
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let write = |header: &Value| {
        let text = serde_json::to_vec(header).unwrap();
        let mut out = (text.len() as u64).to_le_bytes().to_vec();
        out.extend(text);
        out.extend(&bytes[8 + n..]);
        std::fs::write(&path, out).unwrap();
    };
    header["__metadata__"]["finished"] = "false".into();
    let mut run_meta: Value =
        serde_json::from_str(header["__metadata__"]["run"].as_str().unwrap()).unwrap();
    let obj = run_meta.as_object_mut().unwrap();
    obj.remove("arch");
    obj.insert(
        "model".into(),
        json!({"num_words": 60, "embed_dim": 16, "units": 12, "maxlen": 24,
               "dropout": 0.2, "recurrent_dropout": 0.2}),
    );
    run_meta["train"]["epochs"] = 2.into();
    header["__metadata__"]["run"] = run_meta.to_string().into();
    write(&header);
    let (code, _, err) = run(bin().args(["train", "--quiet", "--resume"]).arg(&part));
    assert_eq!(code, 0, "{err}");
    assert!(tensors(&part) == tensors(&full), "resumed differs");

    run_meta["model"]["units"] = 0.into();
    header["__metadata__"]["finished"] = "false".into();
    header["__metadata__"]["run"] = run_meta.to_string().into();
    write(&header);
    let line = refused(
        bin().args(["train", "--quiet", "--resume"]).arg(&part),
        tmp.path(),
    );
    assert!(
        line.contains("run.model.units is 0, below the minimum of 1"),
        "{line}"
    );
}

/// fasttext's bigrams: the table is built from the training reviews, the embedding holds a row
/// per bigram after the words, the model file keeps the table, and predict applies it to raw
/// text (the same probability as the library computes from the ids with the bigrams added).
#[test]
fn train_arch_fasttext_bigrams_travel_in_the_model_file() {
    use imdb_lstm::infer::Classifier;
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 16);
    let out = tmp.path().join("ft");
    let mut flags = small("fasttext");
    flags.extend(["--epochs", "1"]);
    let (code, _, err) = run(&mut train(&archive, &out, &flags));
    assert_eq!(code, 0, "{err}");
    let model = out.join("model.safetensors");
    let m = model_file::load(&model).unwrap();
    let table = m.ngrams.clone().expect("an n-gram table");
    assert_eq!((m.preprocessing.ngrams, table.n()), (2, 2));
    assert_eq!(table.start_id(), 61);
    assert!(table.len() > 50, "{}", table.len());
    assert_eq!(m.arch.embedding(), Some((61 + table.len(), 8)));

    let text = "a great great movie";
    let c = Classifier::load(&model, 1).unwrap();
    let ids = c.encode(&[text]);
    let words = m.preprocessing.encode_padded(c.vocabulary(), None, text);
    assert_ne!(ids, words, "bigram ids must be appended");
    assert!(ids.iter().any(|&id| id >= 61));
    let (code, out_text, err) = run(bin()
        .args(["predict", "--json", "--model"])
        .arg(&model)
        .arg(text));
    assert_eq!(code, 0, "{err}");
    let answer: serde_json::Value = serde_json::from_str(out_text.trim()).unwrap();
    let mut c = Classifier::load(&model, 1).unwrap();
    let p = c.probabilities(&[text])[0] as f64;
    assert_eq!(answer["probability"].as_f64().unwrap(), p);
}

#[test]
fn train_arch_ngrams_out_of_range() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 4);
    let out = tmp.path().join("run");
    for (n, want) in [
        (
            "0",
            "error: --ngrams 0 is too small: use at least 1 (default 2)",
        ),
        (
            "9",
            "error: --ngrams 9 is too large: use at most 4 (default 2)",
        ),
    ] {
        let line = refused(
            &mut train(&archive, &out, &["--arch", "fasttext", "--ngrams", n]),
            tmp.path(),
        );
        assert_eq!(line, want);
    }
    assert!(!out.exists());
}
