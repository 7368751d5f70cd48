//! Training on your own labelled text from the command line (issue 13): each format, two and
//! more labels, the held-out test part, evaluate's per-label report, predict's label names, and
//! each refusal as one line with nothing written. The real TREC set runs when ../shared/data has it.

mod common;

use common::{assert_refused, bin, model_meta as meta, run, run_ok as ok, small_model_flags};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Words that mark each class; the rest of a text is filler.
const CLASS_WORDS: &[(&str, &[&str])] = &[
    ("cooking", &["oven", "bake", "flour", "recipe"]),
    ("sport", &["goal", "match", "team", "score"]),
    ("weather", &["rain", "cloud", "storm", "sunny"]),
];
const FILLER: &[&str] = &[
    "the", "a", "of", "and", "today", "it", "was", "very", "we", "saw",
];

/// Text number `i` of class `c`: 10 to 17 words, every third one a word of its class.
fn text(c: usize, i: usize) -> String {
    let mut x = i * 7919 + c * 104_729 + 17;
    let words = CLASS_WORDS[c].1;
    (0..10 + i % 8)
        .map(|k| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345) % (1 << 31);
            match k % 3 {
                1 => words[x % words.len()],
                _ => FILLER[x % FILLER.len()],
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `(text, label)` rows: `per_class` of each of the first `classes` classes, interleaved.
fn rows(classes: usize, per_class: usize, offset: usize) -> Vec<(String, String)> {
    (0..per_class)
        .flat_map(|i| {
            (0..classes).map(move |c| (text(c, i + offset), CLASS_WORDS[c].0.to_string()))
        })
        .collect()
}

/// Writes `body` to `dir/name`, making folders.
fn write(dir: &Path, name: &str, body: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, body).unwrap();
    p
}

/// `rows` as CSV with a header `id,text,label` (text quoted).
fn csv(rows: &[(String, String)]) -> String {
    let mut s = "id,text,label\n".to_string();
    for (i, (t, l)) in rows.iter().enumerate() {
        s += &format!("{i},\"{t}\",{l}\n");
    }
    s
}

/// `rows` as JSONL with the given field names.
fn jsonl(rows: &[(String, String)], text: &str, label: &str) -> String {
    rows.iter()
        .map(|(t, l)| serde_json::json!({ text: t, label: l }).to_string() + "\n")
        .collect()
}

/// `train` on `data` into `out` with the small model, one thread, plus `extra` (3 epochs unless
/// `extra` says).
fn train(data: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = bin();
    c.arg("train")
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(small_model_flags())
        .args(["--threads", "1"])
        .args(extra);
    if !extra.contains(&"--epochs") {
        c.args(["--epochs", "3"]);
    }
    c
}

/// The test accuracy a finished `train` printed.
fn test_accuracy(out: &str) -> f64 {
    let line = out
        .lines()
        .find(|l| l.starts_with("Test accuracy: "))
        .unwrap();
    line["Test accuracy: ".len()..].parse().unwrap()
}

#[test]
fn csv_with_three_labels_trains_a_softmax_and_evaluate_and_predict_name_the_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write(tmp.path(), "train.csv", csv(&rows(3, 40, 0)));
    let test = write(tmp.path(), "test.csv", csv(&rows(3, 10, 1000)));
    let out_dir = tmp.path().join("run");
    let out = ok(&mut train(
        &data,
        &out_dir,
        &["--test-data", test.to_str().unwrap()],
    ));
    assert!(out.contains(": 3 labels: cooking, sport, weather"), "{out}");
    assert!(out.contains("120 train sequences") && out.contains("30 test sequences"));
    assert!(
        out.contains("dense (Dense)") && out.contains("(None, 3)"),
        "{out}"
    );
    assert!(test_accuracy(&out) > 0.9, "{out}");
    let model = out_dir.join("model.safetensors");
    assert_eq!(meta(&model, "labels"), r#"["cooking","sport","weather"]"#);
    assert_eq!(meta(&model, "task"), "multi-class");

    let mut ev = bin();
    ev.args(["evaluate", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&test);
    let report = ok(&mut ev);
    eprintln!("{report}");
    assert!(report.starts_with("Evaluated 30 texts from "), "{report}");
    for l in ["cooking", "sport", "weather", "macro avg", "weighted avg"] {
        assert!(report.lines().any(|r| r.starts_with(l)), "{l}: {report}");
    }
    assert!(report.contains("Confusion matrix (rows: true, columns: predicted):"));
    assert!(!report.contains("ROC AUC"));
    let mut ev_json = bin();
    ev_json
        .args(["evaluate", "--json", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&test);
    let v: serde_json::Value = serde_json::from_str(&ok(&mut ev_json)).unwrap();
    assert_eq!(v["count"], 30);
    assert_eq!(v["per_label"][1]["label"], "sport");
    assert_eq!(v["per_label"][1]["support"], 10);
    let confusion = v["confusion"].as_array().unwrap();
    assert_eq!(confusion.len(), 3);
    // The training's own test score and evaluate's agree.
    let acc = v["accuracy"].as_f64().unwrap();
    assert!((acc - test_accuracy(&out)).abs() < 1e-6, "{acc} vs {out}");

    let mut p = bin();
    p.args(["predict", "--model"]).arg(&model).args([
        "we bake flour in the oven",
        "the team scored a goal in the match",
        "--top-k",
        "2",
    ]);
    let answers = ok(&mut p);
    let lines: Vec<&str> = answers.lines().collect();
    assert!(
        lines[0].contains(" cooking  ") && lines[0].contains("  |  we bake"),
        "{answers}"
    );
    assert!(
        lines[1].starts_with("0.") && lines[1].contains(" sport  "),
        "{answers}"
    );
    let mut pj = bin();
    pj.args(["predict", "--json", "--model"])
        .arg(&model)
        .arg("rain and storm today");
    let v: serde_json::Value = serde_json::from_str(&ok(&mut pj)).unwrap();
    assert_eq!(v["label"], "weather");
    let sum: f64 = ["cooking", "sport", "weather"]
        .iter()
        .map(|l| v["probabilities"][l].as_f64().unwrap())
        .sum();
    assert!((sum - 1.0).abs() < 1e-5);
}

#[test]
fn without_test_data_a_stratified_part_is_held_out_and_announced() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write(
        tmp.path(),
        "d.jsonl",
        jsonl(&rows(3, 30, 0), "body", "topic"),
    );
    let out_dir = tmp.path().join("run");
    let out = ok(&mut train(
        &data,
        &out_dir,
        &[
            "--text-column",
            "body",
            "--label-column",
            "topic",
            "--epochs",
            "1",
        ],
    ));
    assert!(
        out.contains(&format!(
            "No --test-data: holding out 20% of each label of {} as the test set (seed 1337)",
            data.display()
        )),
        "{out}"
    );
    // 20% of 30 per label: 6 of each held out.
    assert!(
        out.contains("72 train sequences") && out.contains("18 test sequences"),
        "{out}"
    );
}

#[test]
fn two_labels_make_a_sigmoid_with_the_positive_label_second() {
    let tmp = tempfile::tempdir().unwrap();
    // fastText lines with labels ham and spam: spam (second in sorted order) is positive.
    let lines: String = rows(2, 40, 0)
        .iter()
        .map(|(t, l)| {
            let l = if l == "cooking" { "spam" } else { "ham" };
            format!("__label__{l} {t}\n")
        })
        .collect();
    let data = write(tmp.path(), "d.txt", &lines);
    let run1 = tmp.path().join("a");
    let out = ok(&mut train(&data, &run1, &[]));
    assert!(out.contains("(fasttext): 2 labels: ham, spam"), "{out}");
    let model = run1.join("model.safetensors");
    assert_eq!(meta(&model, "labels"), r#"["ham","spam"]"#);
    assert_eq!(meta(&model, "task"), "binary");
    let mut p = bin();
    p.args(["predict", "--model"])
        .arg(&model)
        .arg("oven bake flour recipe");
    let a = ok(&mut p);
    assert!(a.contains("  spam      oven"), "{a}");
    let mut top = bin();
    top.args(["predict", "--top-k", "2", "--model"])
        .arg(&model)
        .arg("oven");
    let got = run(&mut top);
    assert_refused(&top, got, 1, &["--top-k 2: this model has two labels"]);

    let run2 = tmp.path().join("b");
    ok(&mut train(&data, &run2, &["--positive-label", "ham"]));
    let model2 = run2.join("model.safetensors");
    assert_eq!(meta(&model2, "labels"), r#"["spam","ham"]"#);
    let mut ev = bin();
    ev.args(["evaluate", "--model"])
        .arg(&model2)
        .arg("--data")
        .arg(&data);
    let report = ok(&mut ev);
    assert!(
        report.contains("ROC AUC: ") && report.contains("(positive label: ham)"),
        "{report}"
    );
}

#[test]
fn class_folders_and_tsv_train() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("texts");
    for (i, (t, l)) in rows(3, 20, 0).iter().enumerate() {
        write(&root, &format!("{l}/{i}.txt"), t);
    }
    let out = ok(&mut train(&root, &tmp.path().join("a"), &["--epochs", "1"]));
    assert!(
        out.contains("(folders): 3 labels: cooking, sport, weather"),
        "{out}"
    );
    let tsv: String = std::iter::once("label\ttext\n".to_string())
        .chain(rows(3, 20, 0).iter().map(|(t, l)| format!("{l}\t{t}\n")))
        .collect();
    let data = write(tmp.path(), "d.tsv", tsv);
    let out = ok(&mut train(&data, &tmp.path().join("b"), &["--epochs", "1"]));
    assert!(out.contains("(tsv): 3 labels"), "{out}");
}

/// `cmd` is refused with one line holding `needles`, exit 1, and leaves no run folder.
fn refused(mut cmd: Command, out_dir: &Path, needles: &[&str]) -> String {
    let got = run(&mut cmd);
    let err = assert_refused(&cmd, got, 1, needles);
    assert!(!out_dir.exists(), "{} was left behind", out_dir.display());
    err
}

#[test]
fn bad_own_data_is_one_line_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = dir.join("run");
    let good = write(dir, "good.csv", csv(&rows(3, 10, 0)));

    let e = refused(
        train(&good, &out, &["--text-column", "body"]),
        &out,
        &["body"],
    );
    assert!(
        e.contains("\"id\", \"text\", \"label\""),
        "names the columns: {e}"
    );

    let empty_text = write(dir, "empty_text.csv", "text,label\nfine words,a\n,b\n");
    refused(
        train(&empty_text, &out, &[]),
        &out,
        &["empty_text.csv, line 3", "no text"],
    );

    let one = write(dir, "one.csv", "text,label\nsome words,a\nmore words,a\n");
    refused(
        train(&one, &out, &[]),
        &out,
        &["every record has the label \"a\""],
    );

    refused(
        train(&good, &out, &["--positive-label", "x"]),
        &out,
        &["--positive-label \"x\"", "3 labels"],
    );
    let two = write(dir, "two.csv", csv(&rows(2, 10, 0)));
    refused(
        train(&two, &out, &["--positive-label", "x"]),
        &out,
        &[
            "--positive-label \"x\" is not a label of",
            "\"cooking\", \"sport\"",
        ],
    );

    let unseen = write(dir, "unseen.csv", "text,label\nsnow and ice,winter\n");
    refused(
        train(&good, &out, &["--test-data", unseen.to_str().unwrap()]),
        &out,
        &[
            "unseen.csv, line 2",
            "the label \"winter\" is not in the training data",
        ],
    );

    let empty = write(dir, "empty.csv", "");
    refused(train(&empty, &out, &[]), &out, &["empty.csv"]);

    let other = write(dir, "notes.dat", "just some words\n");
    refused(
        train(&other, &out, &[]),
        &out,
        &["in none of the formats", "--format"],
    );

    let really_tsv = write(
        dir,
        "tabs.csv",
        "text\tlabel\nsome words\ta\nmore words\tb\n",
    );
    refused(train(&really_tsv, &out, &[]), &out, &["tsv"]);

    refused(
        train(&good, &out, &["--max-labels", "2"]),
        &out,
        &["3 distinct labels", "--max-labels"],
    );

    let archive = common::tiny_archive(dir, 2);
    refused(
        train(&archive, &out, &["--test-data", good.to_str().unwrap()]),
        &out,
        &["--test-data is for your own labelled data"],
    );
    refused(
        train(&good, &out, &["--test-data", "/nonexistent/t.csv"]),
        &out,
        &["--test-data /nonexistent/t.csv: no such file or folder"],
    );

    // A model file whose output does not fit the labels.
    let arch = write(
        dir,
        "arch.json",
        r#"[{"class_name": "Embedding", "config": {"input_dim": 60, "output_dim": 8}},
            {"class_name": "GlobalAveragePooling1D", "config": {}},
            {"class_name": "Dense", "config": {"units": 1, "activation": "sigmoid"}}]"#,
    );
    let mut c = bin();
    c.args(["train", "--data"])
        .arg(&good)
        .arg("--out")
        .arg(&out)
        .arg("--arch-file")
        .arg(&arch)
        .args(["--epochs", "1", "--threads", "1"]);
    refused(
        c,
        &out,
        &[
            "ends in Dense(1, sigmoid)",
            "has 3 labels",
            "Dense(3, activation='softmax')",
        ],
    );
}

#[test]
fn evaluate_refuses_labels_the_model_does_not_know() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write(tmp.path(), "train.csv", csv(&rows(3, 10, 0)));
    let out_dir = tmp.path().join("run");
    ok(&mut train(&data, &out_dir, &["--epochs", "1"]));
    let other = write(tmp.path(), "other.csv", "text,label\nsnow,winter\n");
    let mut ev = bin();
    ev.args(["evaluate", "--model"])
        .arg(out_dir.join("model.safetensors"))
        .arg("--data")
        .arg(&other);
    let got = run(&mut ev);
    assert_refused(&ev, got, 1, &["other.csv, line 2", "\"winter\""]);
}

/// The real TREC questions (6 labels), a quick run: the labels come out in order and the
/// softmax learns something. The full figures are in BENCHMARKS.md.
#[test]
fn real_trec_quick() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/trec");
    if !shared.join("train.csv").exists() {
        eprintln!(
            "note: {} is absent: skipping this real-data test",
            shared.display()
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = ok(&mut train(
        &shared.join("train.csv"),
        &tmp.path().join("run"),
        &[
            "--test-data",
            shared.join("test.csv").to_str().unwrap(),
            "--limit",
            "600",
        ],
    ));
    assert!(
        out.contains("6 labels: ABBR, DESC, ENTY, HUM, LOC, NUM"),
        "{out}"
    );
    assert!(out.contains("600 train sequences") && out.contains("500 test sequences"));
}

/// `--resume` on own data: the checkpoint keeps the format options, the test file and the head;
/// a resumed run reads the same data again, and data that changed is refused. (The checkpoint of
/// a finished 1-epoch run is turned into an unfinished 2-epoch one.)
#[test]
fn resume_reads_own_data_again_and_refuses_changed_data() {
    use imdb_lstm::train::checkpoint;
    let tmp = tempfile::tempdir().unwrap();
    let data = write(
        tmp.path(),
        "d.jsonl",
        jsonl(&rows(3, 20, 0), "body", "topic"),
    );
    let test = write(
        tmp.path(),
        "t.jsonl",
        jsonl(&rows(3, 5, 500), "body", "topic"),
    );
    let dir = tmp.path().join("run");
    let flags = [
        "--text-column",
        "body",
        "--label-column",
        "topic",
        "--epochs",
        "1",
    ];
    let mut t = train(&data, &dir, &flags);
    t.arg("--test-data").arg(&test);
    ok(&mut t);
    let mut ck = checkpoint::load(&dir).unwrap();
    ck.spec.plan.train.epochs = 2;
    ck.finished = false;
    checkpoint::save(&dir, &ck).unwrap();
    let mut r = bin();
    r.args(["train", "--resume"]).arg(&dir);
    let out = ok(&mut r);
    assert!(
        out.contains("(jsonl): 3 labels: cooking, sport, weather"),
        "{out}"
    );
    assert!(out.contains("15 test sequences"), "{out}");
    let ck = checkpoint::load(&dir).unwrap();
    assert!(ck.finished && ck.state.epochs_done() == 2);

    let mut ck = ck;
    ck.spec.plan.train.epochs = 3;
    ck.finished = false;
    checkpoint::save(&dir, &ck).unwrap();
    std::fs::write(&test, jsonl(&rows(3, 4, 500), "body", "topic")).unwrap();
    let mut r = bin();
    r.args(["train", "--resume"]).arg(&dir);
    let got = run(&mut r);
    let t = test.canonicalize().unwrap();
    let want = format!("d.jsonl and {} no longer gives the sequences", t.display());
    assert_refused(&r, got, 1, &[&want]);
}

/// The real SST-1 sentences (5 labels, JSONL), a quick run with dev.jsonl as the validation data
/// for early stopping and test.jsonl scored once at the end.
#[test]
fn real_sst1_quick_with_validation_data() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/sst1");
    if !shared.join("train.jsonl").exists() {
        eprintln!(
            "note: {} is absent: skipping this real-data test",
            shared.display()
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (dev, test) = (shared.join("dev.jsonl"), shared.join("test.jsonl"));
    let out = ok(&mut train(
        &shared.join("train.jsonl"),
        &tmp.path().join("run"),
        &[
            "--validation-data",
            dev.to_str().unwrap(),
            "--test-data",
            test.to_str().unwrap(),
            "--early-stopping",
            "1",
            "--limit",
            "300",
            "--epochs",
            "2",
        ],
    ));
    assert!(out.contains("5 labels: negative, neutral, positive, very negative, very positive"));
    assert!(out.contains("1101 validation sequences"), "{out}");
    let dev = dev.canonicalize().unwrap();
    assert!(
        out.contains(&format!("validation uses {}", dev.display())),
        "{out}"
    );
}
