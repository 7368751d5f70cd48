//! `predict` answers every line of its input, in order, and shows each review on one line;
//! `predict` and `evaluate` refuse absurd thread counts. End to end through the real binary with a
//! tiny model trained here.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// A tiny trained model and the archive it was trained on, made once per test process.
fn model() -> &'static (PathBuf, PathBuf) {
    static MODEL: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("hostile-predict-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let archive = tiny_archive(&dir, 20);
        let (code, _, err) = run(bin()
            .args(["train", "--epochs", "1", "--quiet", "--data"])
            .arg(&archive)
            .arg("--out")
            .arg(dir.join("run"))
            .args(small_model_flags()));
        assert_eq!(code, 0, "{err}");
        (dir.join("run/model.safetensors"), archive)
    })
}

fn predict() -> Command {
    let mut c = bin();
    c.args(["predict", "--model"]).arg(&model().0);
    c
}

/// Runs `cmd` and checks the refusal contract: exit 1, no panic, stderr is one `error: ` line
/// containing `needle`.
fn refused(cmd: &mut Command, needle: &str) {
    let (code, _, err) = run(cmd);
    assert_eq!(code, 1, "{cmd:?}: want exit 1, got {code}: {err}");
    assert!(
        err.starts_with("error: ") && err.trim_end().lines().count() == 1 && err.contains(needle),
        "{cmd:?}: want one error line with {needle:?}, got {err:?}"
    );
    eprintln!("[exit {code}] {}", err.trim_end());
}

/// Each `--json` output line as (index, line, probability).
fn json_answers(out: &str) -> Vec<(u64, u64, f64)> {
    out.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["index"].as_u64().unwrap(),
                v["line"].as_u64().unwrap(),
                v["probability"].as_f64().unwrap(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------- thread counts

/// `--threads 4000000000` used to abort (exit 134, 2 TB of buffers); `--threads` 2^64-1 panicked
/// with capacity overflow (exit 101).
#[test]
fn predict_threads_huge() {
    for t in ["4000000000", "18446744073709551615"] {
        refused(
            predict().args(["--threads", t, "a fine film"]),
            &format!("--threads {t} is more than 256"),
        );
    }
}

#[test]
fn evaluate_threads_huge() {
    let (model, archive) = model();
    for t in ["4000000000", "18446744073709551615"] {
        refused(
            bin()
                .args(["evaluate", "--model"])
                .arg(model)
                .arg("--data")
                .arg(archive)
                .args(["--threads", t]),
            &format!("--threads {t} is more than 256"),
        );
    }
}

// ---------------------------------------------------------------- every line gets an answer

/// One `*` among real reviews used to make `predict --file` print nothing and fail ("review 2 has
/// no words in it", counting only non-blank lines and naming no file).
#[test]
fn predict_file_answers_every_line() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("reviews.txt");
    let lines = [
        "a superb wonderful film",
        "*",
        "",
        "boring and awful",
        "\u{1}\u{2}<br />%%% ###",
        "   ",
        "loved it",
    ];
    // CRLF endings and the file's final newline make no extra lines.
    std::fs::write(&p, lines.join("\r\n") + "\n").unwrap();
    let places: Vec<String> = [2, 3, 5, 6]
        .iter()
        .map(|n| format!("{}, line {n}", p.display()))
        .collect();
    let places: Vec<&str> = places.iter().map(String::as_str).collect();
    predict_answered(predict().arg("--file").arg(&p), 7, &places);
    let out = predict_answered(predict().arg("--file").arg(&p).arg("--json"), 7, &places);
    let got = json_answers(&out);
    let places: Vec<(u64, u64)> = got.iter().map(|&(i, l, _)| (i, l)).collect();
    assert_eq!(places, (0..7).map(|i| (i, i + 1)).collect::<Vec<_>>());
    // Lines without words are all answered as the empty review is.
    let empty = predict_answered(predict().args(["--json", ""]), 1, &["argument 1"]);
    let empty = json_answers(&empty)[0].2;
    for i in [1, 2, 4, 5] {
        assert_eq!(got[i].2, empty, "line {}", i + 1);
    }
}

/// Arguments come first, then the file's lines, each with its own position, in order across many
/// batches.
#[test]
fn predict_many_lines_keep_their_order() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("many.txt");
    let text: String = (0..2500)
        .map(|i| {
            if i % 7 == 3 {
                "\n".to_string()
            } else {
                format!("film {i} was great\n")
            }
        })
        .collect();
    std::fs::write(&p, text).unwrap();
    let blank: Vec<String> = (1..=2500)
        .filter(|n| n % 7 == 4)
        .map(|n| format!("{}, line {n}", p.display()))
        .collect();
    let blank: Vec<&str> = blank.iter().map(String::as_str).collect();
    let out = predict_answered(
        predict()
            .args(["--json", "awful", "great"])
            .arg("--file")
            .arg(&p),
        2502,
        &blank,
    );
    let places: Vec<(u64, u64)> = json_answers(&out).iter().map(|&(i, l, _)| (i, l)).collect();
    let want: Vec<(u64, u64)> = [(0, 1), (1, 2)]
        .into_iter()
        .chain((0..2500).map(|i| (i + 2, i + 1)))
        .collect();
    assert_eq!(places, want);
}

/// A file with no lines at all is still refused, naming it.
#[test]
fn predict_empty_file() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("empty.txt");
    std::fs::write(&p, "").unwrap();
    refused(
        predict().arg("--file").arg(&p),
        &format!("no reviews given: {} is empty", p.display()),
    );
}

// ---------------------------------------------------------------- one review, one output line

/// Newlines, carriage returns and terminal escapes in a review used to be printed as they are,
/// so one review could print what looks like other predictions.
#[test]
fn predict_escapes_control_characters() {
    let review = "great\n0.9  positive  x\r\u{1b}[31mred\tz \\n cafe\u{301} é 'a' \"b\"";
    let want = "great\\n0.9  positive  x\\r\\u{1b}[31mred\\tz \\\\n cafe\u{301} é 'a' \"b\"";
    let out = predict_answered(predict().arg(review), 1, &[]);
    let shown = out.trim_end().splitn(3, "  ").nth(2).unwrap();
    assert_eq!(shown, want);
    eprintln!("{}", out.trim_end());

    // The same from a file: a lone \r does not end a line, and is shown escaped.
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("cr.txt");
    std::fs::write(&p, "loved it\rhated it\n").unwrap();
    let out = predict_answered(predict().arg("--file").arg(&p), 1, &[]);
    assert!(out.trim_end().ends_with(r"loved it\rhated it"), "{out:?}");
}
