//! Multi-label data (issue 13): several labels per text from a separator (`--multi-label SEP`),
//! fastText lines with several `__label__`s or JSONL label arrays train K sigmoid outputs with
//! binary cross-entropy per label; predict gives every label at the threshold, evaluate the
//! multi-label report; the model file says `multi-label`; each refusal is one line.

mod common;

use common::{assert_refused, bin, model_meta, run, run_ok, small_model_flags};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Topics and the words that mark them; a text has the words of each of its topics.
const TOPICS: &[(&str, &[&str])] = &[
    ("politics", &["vote", "senate", "law", "election"]),
    ("sports", &["goal", "match", "team", "coach"]),
    ("tech", &["chip", "robot", "code", "laptop"]),
];
const FILLER: &[&str] = &["the", "a", "of", "and", "today", "it", "was", "we"];

/// Text `i` and its topics: topic sets cycle through all seven non-empty subsets, so every
/// label appears alone and together with each other one.
fn ml_example(i: usize) -> (String, Vec<&'static str>) {
    let set = i % 7 + 1;
    let topics: Vec<usize> = (0..3).filter(|t| set & (1 << t) != 0).collect();
    let mut x = i * 7919 + 17;
    let mut next = |n: usize| {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345) % (1 << 31);
        x % n
    };
    let mut words: Vec<&str> = (0..8).map(|_| FILLER[next(FILLER.len())]).collect();
    for &t in &topics {
        for _ in 0..2 {
            let w = TOPICS[t].1;
            let at = next(words.len() + 1);
            words.insert(at, w[next(w.len())]);
        }
    }
    (
        words.join(" "),
        topics.iter().map(|&t| TOPICS[t].0).collect(),
    )
}

fn ml_write(dir: &Path, name: &str, body: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

/// Examples `range` as CSV, the labels joined by `;`.
fn ml_csv(range: std::ops::Range<usize>) -> String {
    let mut s = "text,label\n".to_string();
    for i in range {
        let (t, l) = ml_example(i);
        s += &format!("\"{t}\",{}\n", l.join(";"));
    }
    s
}

/// `train` with the small cnn, one thread.
fn ml_train(data: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = bin();
    c.arg("train")
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(["--arch", "cnn"])
        .args(
            small_model_flags()
                .into_iter()
                .filter(|f| *f != "--units" && *f != "12"),
        )
        .args(["--threads", "1"])
        .args(extra);
    if !extra.contains(&"--epochs") {
        c.args(["--epochs", "4"]);
    }
    c
}

/// One model trained on the separable CSV, shared by the tests of this process.
fn ml_model() -> &'static PathBuf {
    static MODEL: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("ml-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let data = ml_write(&dir, "train.csv", ml_csv(0..420));
        let test = ml_write(&dir, "test.csv", ml_csv(1000..1140));
        let out = dir.join("run");
        let log = run_ok(&mut ml_train(
            &data,
            &out,
            &["--multi-label", ";", "--test-data", test.to_str().unwrap()],
        ));
        assert!(
            log.contains(": 3 labels, several per text: politics, sports, tech"),
            "{log}"
        );
        assert!(log.contains("(None, 3)"), "{log}");
        out.join("model.safetensors")
    })
}

#[test]
fn a_multi_label_csv_trains_sigmoids_and_the_model_file_says_so() {
    let model = ml_model();
    assert_eq!(model_meta(model, "task"), "multi-label");
    assert_eq!(
        model_meta(model, "labels"),
        r#"["politics","sports","tech"]"#
    );
    let arch = model_meta(model, "arch");
    assert!(
        arch.contains(r#""units":3"#) && arch.contains(r#""activation":"sigmoid""#),
        "{arch}"
    );
    // The history's accuracy is Keras's binary accuracy, over every (text, label) decision.
    let history = std::fs::read_to_string(model.with_file_name("history.json")).unwrap();
    let h: serde_json::Value = serde_json::from_str(&history).unwrap();
    let last = h["epochs"].as_array().unwrap().last().unwrap().clone();
    assert!(last["val_accuracy"].as_f64().unwrap() > 0.95, "{last}");
}

#[test]
fn predict_gives_every_label_at_the_threshold() {
    let model = ml_model();
    let mut c = bin();
    c.arg("predict").arg("--model").arg(model).args([
        "the senate vote on the goal of the team",
        "a robot and a laptop",
        "the of and a",
    ]);
    let out = run_ok(&mut c);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    // Most probable first; each with its probability.
    let labels_of = |line: &str| -> Vec<String> {
        let (left, _) = line.split_once("  |  ").unwrap();
        left.split("  ")
            .filter_map(|s| s.split_once(' ').map(|(_, l)| l.to_string()))
            .collect()
    };
    let mut first = labels_of(lines[0]);
    first.sort();
    assert_eq!(first, ["politics", "sports"], "{out}");
    assert_eq!(labels_of(lines[1]), ["tech"], "{out}");
    // --json: the labels given and every label's probability.
    let mut c = bin();
    c.arg("predict")
        .arg("--model")
        .arg(model)
        .args(["--json", "a robot and a laptop"]);
    let v: serde_json::Value = serde_json::from_str(run_ok(&mut c).trim()).unwrap();
    assert_eq!(v["labels"], serde_json::json!(["tech"]));
    assert!(v["probabilities"]["tech"].as_f64().unwrap() > 0.5);
    assert!(v["probabilities"]["sports"].as_f64().unwrap() < 0.5);
    // Filler alone: no label at 0.5; a threshold under every probability gives all three.
    let mut c = bin();
    c.arg("predict")
        .arg("--model")
        .arg(model)
        .args(["--json", "the of and a"]);
    let v: serde_json::Value = serde_json::from_str(run_ok(&mut c).trim()).unwrap();
    assert_eq!(v["labels"], serde_json::json!([]), "{v}");
    let low = v["probabilities"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_f64().unwrap())
        .fold(1.0, f64::min);
    assert!(low > 1e-6, "{v}");
    let mut c = bin();
    c.arg("predict")
        .arg("--model")
        .arg(model)
        .args(["the of and a"]);
    assert!(run_ok(&mut c).starts_with("(no label at >= 0.5)"));
    let mut c = bin();
    c.arg("predict").arg("--model").arg(model);
    c.arg("--threshold")
        .arg(format!("{}", low * 0.9))
        .arg("the of and a");
    let out = run_ok(&mut c);
    for l in ["politics", "sports", "tech"] {
        assert!(out.contains(&format!(" {l}")), "{out}");
    }
    let mut c = bin();
    c.arg("predict")
        .arg("--model")
        .arg(model)
        .args(["--top-k", "2", "a robot and a laptop"]);
    let out = run_ok(&mut c);
    assert!(
        out.contains(" tech  ") && out.matches('.').count() >= 2,
        "{out}"
    );
}

#[test]
fn evaluate_prints_the_multi_label_report() {
    let model = ml_model();
    let tmp = tempfile::tempdir().unwrap();
    let test = ml_write(tmp.path(), "test.csv", ml_csv(2000..2070));
    let mut c = bin();
    c.arg("evaluate")
        .arg("--model")
        .arg(model)
        .arg("--data")
        .arg(&test)
        .args(["--multi-label", ";"]);
    let out = run_ok(&mut c);
    assert!(out.contains("Evaluated 70 texts"), "{out}");
    for row in ["politics", "sports", "tech", "micro avg", "samples avg"] {
        assert!(out.lines().any(|l| l.starts_with(row)), "{row}: {out}");
    }
    c.arg("--json");
    let v: serde_json::Value = serde_json::from_str(run_ok(&mut c).trim()).unwrap();
    assert_eq!(v["count"], 70);
    assert!(v["subset_accuracy"].as_f64().unwrap() > 0.8, "{v}");
    assert!(v["accuracy"].as_f64().unwrap() > 0.9, "{v}");
    let hamming = v["hamming_loss"].as_f64().unwrap();
    assert!((hamming + v["accuracy"].as_f64().unwrap() - 1.0).abs() < 1e-12);
    // 40 of the 70 texts have each label (4 of the 7 topic sets).
    assert_eq!(v["per_label"][0]["support"], 40, "{v}");
    assert_eq!(v["confusion"].as_array().unwrap().len(), 3);
    // The same texts as JSONL label arrays need no --multi-label.
    let rows: String = (2000..2070)
        .map(|i| {
            let (t, l) = ml_example(i);
            serde_json::json!({"text": t, "label": l}).to_string() + "\n"
        })
        .collect();
    let jsonl = ml_write(tmp.path(), "test.jsonl", rows);
    let mut c = bin();
    c.arg("evaluate")
        .arg("--model")
        .arg(model)
        .arg("--data")
        .arg(&jsonl)
        .arg("--json");
    let w: serde_json::Value = serde_json::from_str(run_ok(&mut c).trim()).unwrap();
    assert_eq!(w["subset_accuracy"], v["subset_accuracy"]);
}

#[test]
fn fasttext_lines_with_several_labels_are_multi_label() {
    let tmp = tempfile::tempdir().unwrap();
    let lines: String = (0..210)
        .map(|i| {
            let (t, l) = ml_example(i);
            let labels: Vec<String> = l.iter().map(|l| format!("__label__{l}")).collect();
            format!("{} {t}\n", labels.join(" "))
        })
        .collect();
    let data = ml_write(tmp.path(), "train.txt", lines);
    let out_dir = tmp.path().join("run");
    let log = run_ok(&mut ml_train(&data, &out_dir, &[]));
    assert!(
        log.contains("(fasttext): 3 labels, several per text"),
        "{log}"
    );
    assert!(log.contains("No --test-data: holding out"), "{log}");
    assert_eq!(
        model_meta(&out_dir.join("model.safetensors"), "task"),
        "multi-label"
    );
}

/// A multi-label run resumed after epoch 2 ends bit-identical to the uninterrupted one: the
/// checkpoint keeps `--multi-label` and its separator. (The checkpoint of a finished 2-epoch
/// run is turned into an unfinished 4-epoch one.)
#[test]
fn a_multi_label_run_resumes_to_the_same_bits() {
    use imdb_lstm::train::checkpoint;
    let tmp = tempfile::tempdir().unwrap();
    let data = ml_write(tmp.path(), "train.csv", ml_csv(0..140));
    let full = tmp.path().join("full");
    run_ok(&mut ml_train(&data, &full, &["--multi-label", ";"]));
    let part = tmp.path().join("part");
    run_ok(&mut ml_train(
        &data,
        &part,
        &["--multi-label", ";", "--epochs", "2"],
    ));
    let mut ck = checkpoint::load(&part).unwrap();
    ck.spec.plan.train.epochs = 4;
    ck.finished = false;
    checkpoint::save(&part, &ck).unwrap();
    let mut r = bin();
    r.args(["train", "--resume"]).arg(&part);
    let out = run_ok(&mut r);
    assert!(out.contains("3 labels, several per text"), "{out}");
    let a = std::fs::read(full.join("model.safetensors")).unwrap();
    let b = std::fs::read(part.join("model.safetensors")).unwrap();
    // The weights and everything but the training date are the same.
    let weights =
        |f: &[u8]| f[8 + u64::from_le_bytes(f[..8].try_into().unwrap()) as usize..].to_vec();
    assert_eq!(weights(&a), weights(&b));
}

fn ml_refused(mut cmd: Command, needles: &[&str]) -> String {
    let res = run(&mut cmd);
    assert_refused(&cmd, res, 1, needles)
}

#[test]
fn multi_label_refusals_are_one_line() {
    let model = ml_model();
    let tmp = tempfile::tempdir().unwrap();
    let data = ml_write(tmp.path(), "train.csv", ml_csv(0..70));
    let out = tmp.path().join("run");
    // --positive-label names the positive of two labels, one per text.
    ml_refused(
        ml_train(
            &data,
            &out,
            &["--multi-label", ";", "--positive-label", "tech"],
        ),
        &[
            "--positive-label \"tech\"",
            "is multi-label data",
            "for two labels, one per record",
        ],
    );
    assert!(!out.exists());
    // An arch file whose head cannot give several labels.
    let arch = ml_write(
        tmp.path(),
        "arch.json",
        r#"[{"class_name": "Embedding", "config": {"input_dim": 60, "output_dim": 8}},
            {"class_name": "GlobalAveragePooling1D"},
            {"class_name": "Dense", "config": {"units": 3, "activation": "softmax"}}]"#,
    );
    let mut c = bin();
    c.arg("train")
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .arg("--arch-file")
        .arg(&arch)
        .args(["--multi-label", ";", "--epochs", "1", "--maxlen", "24"]);
    ml_refused(
        c,
        &[
            "the model ends in Dense(3, softmax), for 3 labels",
            "3 labels, several per text",
            "end it in Dense(3, activation='sigmoid')",
        ],
    );
    assert!(!out.exists());
    // Joined labels read without the separator.
    let mut c = bin();
    c.arg("evaluate")
        .arg("--model")
        .arg(model)
        .arg("--data")
        .arg(&data);
    ml_refused(
        c,
        &[
            "line 4: the label \"politics;sports\"",
            "need --multi-label SEP",
        ],
    );
    // The threshold: a probability, for multi-label models.
    for bad in ["1.5", "0", "nan"] {
        let mut c = bin();
        c.arg("predict")
            .arg("--model")
            .arg(model)
            .args(["--threshold", bad, "text"]);
        ml_refused(c, &["--threshold", "between 0 and 1"]);
    }
    // The aclImdb reviews have one of two labels.
    let mut c = bin();
    c.arg("evaluate").arg("--model").arg(model);
    ml_refused(c, &["tells apart 3 labels", "--data FILE"]);
    // A label value that is only separators.
    let bad = ml_write(
        tmp.path(),
        "bad.csv",
        "text,label\n\"a vote\",politics\n\"a goal\",\" ; \"\n",
    );
    ml_refused(
        ml_train(&bad, &out, &["--multi-label", ";"]),
        &["bad.csv, line 3: no label", "split on --multi-label \";\""],
    );
    assert!(!out.exists());
}

#[test]
fn threshold_is_refused_for_a_model_with_one_label_per_text() {
    let tmp = tempfile::tempdir().unwrap();
    let lines: String = (0..60)
        .map(|i| {
            let (t, l) = ml_example(i);
            format!("__label__{} {t}\n", l[0])
        })
        .collect();
    let data = ml_write(tmp.path(), "train.txt", lines);
    let out = tmp.path().join("run");
    run_ok(&mut ml_train(&data, &out, &["--epochs", "1"]));
    let mut c = bin();
    c.arg("predict")
        .arg("--model")
        .arg(out.join("model.safetensors"))
        .args(["--threshold", "0.7", "a vote"]);
    ml_refused(
        c,
        &[
            "--threshold 0.7 is for multi-label models",
            "drop --threshold",
        ],
    );
}

/// `serve` answers a multi-label model with the labels at 0.5 and says its task.
#[test]
fn serve_gives_the_labels_of_a_multi_label_model() {
    let s = common::serve_start(ml_model(), &[]);
    let u = s.url.clone();
    let (status, _, body) = common::serve_http(
        "POST",
        &format!("{u}/v1/predict"),
        Some(r#"{"texts": ["the senate vote on the goal of the team", "the of and a"]}"#),
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let p = &v["predictions"];
    let mut first: Vec<String> = serde_json::from_value(p[0]["labels"].clone()).unwrap();
    first.sort();
    assert_eq!(first, ["politics", "sports"], "{body}");
    assert_eq!(p[1]["labels"], serde_json::json!([]), "{body}");
    let (_, _, card) = common::serve_http("GET", &format!("{u}/v1/model"), None);
    assert!(card.contains(r#""task":"multi-label""#), "{card}");
    s.sigterm();
}

/// `export` of a multi-label model describes K independent probabilities.
#[test]
fn export_describes_each_labels_own_probability() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("onnx");
    let mut c = bin();
    c.arg("export")
        .arg("--model")
        .arg(ml_model())
        .arg("--out")
        .arg(&out);
    run_ok(&mut c);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("preprocessing.json")).unwrap())
            .unwrap();
    let output = json["output"].as_str().unwrap();
    assert!(
        output.starts_with("probabilities: float32 [batch, 3], each label's own probability"),
        "{output}"
    );
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(readme.contains("each label's own probability"), "{readme}");
}
