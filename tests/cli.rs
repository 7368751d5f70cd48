//! The binary end to end on tiny generated data: train -> files -> predict / evaluate /
//! summary / graph / plot, determinism, and one-line errors for bad input.

mod common;
use common::*;
use imdb_lstm::train::history::History;

fn train_tiny(
    dir: &std::path::Path,
    archive: &std::path::Path,
    out: &str,
    extra: &[&str],
) -> (i32, String, String) {
    let mut c = bin();
    c.args(["train", "--data"])
        .arg(archive)
        .arg("--out")
        .arg(dir.join(out))
        .args(small_model_flags())
        .args(extra);
    run(&mut c)
}

#[test]
fn train_then_use_the_model_file() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 120);
    let (code, out, err) = train_tiny(tmp.path(), &archive, "run", &["--epochs", "4"]);
    assert_eq!(code, 0, "train failed: {err}");
    for line in [
        "240 train sequences",
        "240 test sequences",
        "x_train shape: (240, 24)",
        "Test score:",
        "Test accuracy:",
        "Elapsed time:",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    let run_dir = tmp.path().join("run");
    for f in [
        "model.safetensors",
        "history.json",
        "history.csv",
        "history.png",
        "history.svg",
        "model.svg",
        "model.dot",
    ] {
        assert!(run_dir.join(f).is_file(), "{f} missing");
    }
    let hist: History =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("history.json")).unwrap())
            .unwrap();
    assert_eq!(hist.epochs.len(), 4);
    let last = hist.epochs.last().unwrap();
    assert!(
        last.val_accuracy.unwrap() > 0.9,
        "the tiny task is easy: {last:?}"
    );
    assert!(
        last.loss < hist.epochs[0].loss,
        "training loss should fall: {hist:?}"
    );

    // predict on raw text, from the model file alone.
    let model = run_dir.join("model.safetensors");
    let (code, out, err) = run(bin()
        .args(["predict", "--json", "--model"])
        .arg(&model)
        .args([
            "A superb, wonderful film. I loved it, brilliant!",
            "Awful and boring, the worst, I hated it.",
        ]));
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert!(
        rows[0]["probability"].as_f64().unwrap() > 0.5 && rows[0]["label"] == "positive",
        "{out}"
    );
    assert!(
        rows[1]["probability"].as_f64().unwrap() < 0.5 && rows[1]["label"] == "negative",
        "{out}"
    );

    // evaluate reproduces the val_accuracy train reported on the same (test) data.
    let (code, out, err) = run(bin()
        .args(["evaluate", "--json", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&archive));
    assert_eq!(code, 0, "{err}");
    let m: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(m["count"], 240);
    assert!(
        (m["accuracy"].as_f64().unwrap() - last.val_accuracy.unwrap()).abs() < 1e-12,
        "{out} vs {last:?}"
    );
    assert!(
        (m["loss"].as_f64().unwrap() - last.val_loss.unwrap()).abs() < 1e-5,
        "{out} vs {last:?}"
    );

    let (code, out, _) = run(bin().args(["summary", "--model"]).arg(&model));
    assert_eq!(code, 0);
    assert!(
        out.contains("lstm (LSTM)") && out.contains("Total params") && out.contains("num_words"),
        "{out}"
    );

    let gdir = tmp.path().join("graph");
    std::fs::create_dir(&gdir).unwrap();
    let (code, _, err) = run(bin()
        .args(["graph", "--model"])
        .arg(&model)
        .arg("--out")
        .arg(&gdir));
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::read_to_string(gdir.join("model.svg"))
        .unwrap()
        .contains("(None, 24, 16)"));

    std::fs::remove_file(run_dir.join("history.png")).unwrap();
    let (code, _, err) = run(bin().arg("plot").arg(&run_dir));
    assert_eq!(code, 0, "{err}");
    assert!(run_dir.join("history.png").is_file());
}

/// Same seed and threads: bit-identical weights and metrics. Another seed: different weights.
#[test]
fn same_seed_same_result() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 40);
    let load = |name: &str| {
        let m =
            imdb_lstm::model_file::load(&tmp.path().join(name).join("model.safetensors")).unwrap();
        let h: History = serde_json::from_str(
            &std::fs::read_to_string(tmp.path().join(name).join("history.json")).unwrap(),
        )
        .unwrap();
        let metrics: Vec<_> = h
            .epochs
            .iter()
            .map(|e| (e.loss, e.accuracy, e.val_loss, e.val_accuracy))
            .collect();
        (m.tensors, metrics)
    };
    for (name, seed) in [("a", "7"), ("b", "7"), ("c", "8")] {
        let (code, _, err) = train_tiny(
            tmp.path(),
            &archive,
            name,
            &["--epochs", "2", "--seed", seed, "--threads", "2", "--quiet"],
        );
        assert_eq!(code, 0, "{err}");
    }
    let (a, b, c) = (load("a"), load("b"), load("c"));
    assert!(
        a == b,
        "same seed must give bit-identical weights and history"
    );
    assert!(a.0 != c.0, "another seed must give other weights");
}

/// Every bad flag or input: exit code 1 (never a panic's 101), one line naming the problem.
#[test]
fn bad_input_gets_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 4);
    let garbage = tmp.path().join("garbage.tar.gz");
    std::fs::write(&garbage, b"this is not a gzip archive at all").unwrap();
    let no_test = tmp.path().join("no_test");
    std::fs::create_dir_all(no_test.join("aclImdb/train/pos")).unwrap();
    std::fs::create_dir_all(no_test.join("aclImdb/train/neg")).unwrap();
    std::fs::write(no_test.join("aclImdb/train/pos/0_9.txt"), "good").unwrap();
    std::fs::write(no_test.join("aclImdb/train/neg/0_1.txt"), "bad").unwrap();
    let a = archive.to_str().unwrap();
    let out = tmp.path().join("out");
    let o = out.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["train", "--data", a, "--out", o, "--num-words", "3"],
            "--num-words",
        ),
        (
            vec!["train", "--data", a, "--out", o, "--maxlen", "0"],
            "--maxlen",
        ),
        (
            vec!["train", "--data", a, "--out", o, "--batch-size", "0"],
            "--batch-size",
        ),
        (
            vec!["train", "--data", a, "--out", o, "--dropout", "1.0"],
            "--dropout",
        ),
        (
            vec!["train", "--data", a, "--out", o, "--recurrent-dropout=-0.1"],
            "--recurrent-dropout",
        ),
        (
            vec!["train", "--data", a, "--out", o, "--epochs", "0"],
            "--epochs",
        ),
        (
            vec!["train", "--data", a, "--out", o, "--learning-rate", "0"],
            "--learning-rate",
        ),
        (
            vec![
                "train",
                "--data",
                a,
                "--out",
                o,
                "--validation-split",
                "1.5",
            ],
            "--validation-split",
        ),
        (
            vec!["train", "--data", a, "--out", o, "--threads", "1000"],
            "--threads",
        ),
        (
            vec!["train", "--data", "/nonexistent/imdb.tar.gz", "--out", o],
            "/nonexistent/imdb.tar.gz",
        ),
        (
            vec!["train", "--data", garbage.to_str().unwrap(), "--out", o],
            "garbage.tar.gz",
        ),
        (
            vec!["train", "--data", no_test.to_str().unwrap(), "--out", o],
            "test",
        ),
        (
            vec![
                "predict",
                "--model",
                "/nonexistent/model.safetensors",
                "hello",
            ],
            "/nonexistent/model.safetensors",
        ),
        (
            vec!["predict", "--model", garbage.to_str().unwrap(), "hello"],
            "garbage.tar.gz",
        ),
        (vec!["summary", "--model", a], "tiny_imdb.tar.gz"),
        (vec!["plot", "/nonexistent/run"], "/nonexistent/run"),
    ];
    for (args, needle) in cases {
        let (code, _, err) = run(bin().args(&args));
        assert_eq!(code, 1, "{args:?} should fail with exit 1: {err}");
        assert!(
            err.starts_with("error: ") && err.trim_end().lines().count() == 1,
            "{args:?}: want one error line, got {err:?}"
        );
        assert!(
            err.contains(needle),
            "{args:?}: error should name {needle:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
}

/// predict answers empty and binary input with a warning, refuses non-UTF-8 and no input with a
/// clear line, and copes with a 10 MB review.
#[test]
fn predict_input_edge_cases() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 20);
    let (code, _, err) = train_tiny(tmp.path(), &archive, "run", &["--epochs", "1", "--quiet"]);
    assert_eq!(code, 0, "{err}");
    let model = tmp.path().join("run/model.safetensors");
    predict_answered(
        bin()
            .args(["predict", "--model"])
            .arg(&model)
            .args(["", "\u{1}\u{2}\u{7f} %%% ###"]),
        2,
        &["argument 1", "argument 2"],
    );
    let bin_file = tmp.path().join("binary.txt");
    std::fs::write(&bin_file, [b'o', b'k', b'\n', 0xff, 0xfe, 0x00, 0x81]).unwrap();
    let (code, _, err) = run(bin()
        .args(["predict", "--model"])
        .arg(&model)
        .arg("--file")
        .arg(&bin_file));
    assert_eq!(code, 1);
    assert!(err.contains("line 2") && err.contains("UTF-8"), "{err}");
    let (code, _, err) = run(bin().args(["predict", "--model"]).arg(&model));
    assert_eq!(code, 1);
    assert!(err.contains("no reviews given"), "{err}");
    let big = tmp.path().join("big.txt");
    let line = "a superb wonderful film ".repeat(10 * 1024 * 1024 / 24);
    std::fs::write(&big, format!("{line}\nawful boring\n")).unwrap();
    let (code, out, err) = run(bin()
        .args(["predict", "--model"])
        .arg(&model)
        .arg("--file")
        .arg(&big));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
}

/// A short run on the real reviews ends clearly above chance, and evaluate on the loaded model
/// reproduces the validation accuracy train reported.
#[test]
fn real_data_short_run_beats_chance() {
    let Some(data) = real_data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let (code, stdout, err) = run(bin()
        .args(["train", "--epochs", "1", "--limit", "3000", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&out));
    assert_eq!(code, 0, "{err}");
    let h: History =
        serde_json::from_str(&std::fs::read_to_string(out.join("history.json")).unwrap()).unwrap();
    let va = h.epochs[0].val_accuracy.unwrap();
    assert!(
        va > 0.65,
        "one epoch on 3000 reviews should be clearly above chance: {va}\n{stdout}"
    );
    let (code, o, err) = run(bin()
        .args(["evaluate", "--json", "--limit", "3000", "--model"])
        .arg(out.join("model.safetensors"))
        .arg("--data")
        .arg(&data));
    assert_eq!(code, 0, "{err}");
    let m: serde_json::Value = serde_json::from_str(o.trim()).unwrap();
    assert_eq!(
        m["accuracy"].as_f64().unwrap(),
        va,
        "evaluate must reproduce train's val_accuracy"
    );
}

/// The portable (non-AVX2) kernels train to the same numbers, up to rounding.
#[test]
fn baseline_kernels_agree_with_avx2() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 30);
    let mut metrics = vec![];
    for (name, isa) in [("fast", "native"), ("base", "baseline")] {
        let mut c = bin();
        c.env("IMDB_LSTM_ISA", isa)
            .args(["train", "--quiet", "--epochs", "1", "--data"])
            .arg(&archive)
            .arg("--out")
            .arg(tmp.path().join(name))
            .args(small_model_flags());
        let (code, _, err) = run(&mut c);
        assert_eq!(code, 0, "{err}");
        let h: History = serde_json::from_str(
            &std::fs::read_to_string(tmp.path().join(name).join("history.json")).unwrap(),
        )
        .unwrap();
        metrics.push((h.epochs[0].loss, h.epochs[0].val_loss.unwrap()));
    }
    assert!(
        (metrics[0].0 - metrics[1].0).abs() < 1e-4 && (metrics[0].1 - metrics[1].1).abs() < 1e-4,
        "{metrics:?}"
    );
}

/// Not a terminal: one line per epoch on stderr; --log-format json: one object per epoch on
/// stdout and nothing else there; --quiet: nothing at all.
#[test]
fn progress_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 20);
    let (code, out, err) = train_tiny(tmp.path(), &archive, "text", &["--epochs", "2"]);
    assert_eq!(code, 0, "{err}");
    let epoch_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("Epoch ")).collect();
    assert_eq!(epoch_lines.len(), 2, "{err}");
    assert!(
        epoch_lines[1].starts_with("Epoch 2/2 - ") && epoch_lines[1].contains("val_accuracy: "),
        "{err}"
    );
    assert!(out.contains("Test accuracy:"));

    let (code, out, err) = train_tiny(
        tmp.path(),
        &archive,
        "json",
        &["--epochs", "2", "--log-format", "json"],
    );
    assert_eq!(code, 0, "{err}");
    let objs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("every stdout line is JSON"))
        .filter(|o: &serde_json::Value| o["event"] == "epoch")
        .collect();
    assert_eq!(objs.len(), 2, "{out}");
    assert_eq!(objs[1]["epoch"], 2);
    assert!(objs[1]["val_accuracy"].as_f64().is_some());

    let (code, out, err) = train_tiny(tmp.path(), &archive, "quiet", &["--epochs", "1", "--quiet"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.is_empty() && err.is_empty(),
        "quiet prints nothing: {out:?} {err:?}"
    );
}
