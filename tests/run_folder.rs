//! A run folder belongs to one `train` at a time (a new run or a resume), a new run never
//! replaces another's files unless told to (`--overwrite`), and `--log-format json` reports how
//! every run ends.

mod common;
use common::*;
use imdb_lstm::cli::train::LOCK_FILE;
use imdb_lstm::model_file;
use imdb_lstm::train::checkpoint;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// `train` on the tiny data with the small model, into `out`.
fn train(archive: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = bin();
    c.args(["train", "--data"])
        .arg(archive)
        .arg("--out")
        .arg(out)
        .args(small_model_flags())
        .args(["--threads", "2"])
        .args(extra);
    c
}

/// Every file in `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    file_names(dir)
        .into_iter()
        .map(|n| {
            let bytes = std::fs::read(dir.join(&n)).unwrap();
            (n, bytes)
        })
        .collect()
}

/// Refused with exit 1 and one line holding every needle.
fn refused(cmd: &mut Command, needles: &[&str]) -> String {
    let result = run(cmd);
    let err = assert_refused(cmd, result, 1, needles);
    assert!(!err.contains("  "), "a paragraph, not one line: {err:?}");
    err
}

const BUSY: &str = "is in use by another `imdb-lstm train`";

/// A folder locked as a running `train` locks it: a new run, an --overwrite run and a resume are
/// refused, naming the folder, and change nothing in it.
#[test]
fn a_locked_run_folder_is_refused_and_left_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 10);
    let dir = tmp.path().join("run");
    let (code, _, err) = run(&mut train(&archive, &dir, &["--epochs", "1", "--quiet"]));
    assert_eq!(code, 0, "{err}");
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();

    for folder in [&dir, &empty] {
        let lock = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(folder.join(LOCK_FILE))
            .unwrap();
        lock.try_lock().unwrap();
        let before = snapshot(folder);
        let shown = folder.display().to_string();
        refused(
            &mut train(&archive, folder, &["--epochs", "1", "--quiet"]),
            &[&shown, BUSY, "choose another --out"],
        );
        refused(
            &mut train(&archive, folder, &["--epochs", "1", "--overwrite"]),
            &[&shown, BUSY],
        );
        if folder == &dir {
            refused(
                bin().args(["train", "--resume"]).arg(folder),
                &[&shown, BUSY, "wait for that run to end"],
            );
        }
        assert!(snapshot(folder) == before, "{shown} was changed");
    }
}

/// Two real processes: while one trains, a second `train --out` on its folder and a `--resume`
/// of it are refused; the first goes on.
#[test]
fn a_second_train_on_a_running_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 120);
    let dir = tmp.path().join("run");
    // Long enough (several seconds) to still be training when the others try.
    let slow = ["--epochs", "100", "--quiet"];
    let mut first = train(&archive, &dir, &slow).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !checkpoint::path_in(&dir).exists() {
        assert!(Instant::now() < deadline, "the first run never started");
        assert!(first.try_wait().unwrap().is_none(), "the first run ended");
        std::thread::sleep(Duration::from_millis(2));
    }
    let shown = dir.display().to_string();
    refused(&mut train(&archive, &dir, &slow), &[&shown, BUSY]);
    refused(bin().args(["train", "--resume"]).arg(&dir), &[&shown, BUSY]);
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first run must still be training"
    );
    first.kill().unwrap();
    first.wait().unwrap();
}

/// A folder holding any file of a run is refused without --overwrite, its files untouched (it
/// used to be overwritten when it held no checkpoint); with --overwrite a new run replaces them.
#[test]
fn a_folder_with_a_runs_files_needs_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 10);
    let one = ["--epochs", "1", "--quiet"];
    for file in [
        "model.safetensors",
        "history.json",
        "history.csv",
        "history.png",
        "history.svg",
        "model.svg",
        "model.dot",
    ] {
        let dir = tmp.path().join(format!("has_{file}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join(file), b"the user's own file").unwrap();
        let shown = dir.display().to_string();
        refused(
            &mut train(&archive, &dir, &one),
            &[&shown, file, "give --overwrite to replace them"],
        );
        assert_eq!(
            std::fs::read(dir.join(file)).unwrap(),
            b"the user's own file"
        );
        assert_eq!(file_names(&dir), [LOCK_FILE, file]);
    }

    let dir = tmp.path().join("has_model.safetensors");
    let (code, _, err) = run(&mut train(
        &archive,
        &dir,
        &["--epochs", "1", "--overwrite"],
    ));
    assert_eq!(code, 0, "{err}");
    model_file::load(&dir.join("model.safetensors")).expect("a new model");

    // A folder with a checkpoint still points to --resume, and names --overwrite too.
    let shown = dir.display().to_string();
    refused(
        &mut train(&archive, &dir, &one),
        &[&format!("imdb-lstm train --resume {shown}"), "--overwrite"],
    );
    let (code, _, err) = run(&mut train(
        &archive,
        &dir,
        &["--epochs", "1", "--seed", "5", "--overwrite", "--quiet"],
    ));
    assert_eq!(code, 0, "{err}");
    assert_eq!(checkpoint::load(&dir).unwrap().spec.plan.train.seed, 5);

    let (code, _, err) = run(bin().args(["train", "--overwrite", "--resume"]).arg(&dir));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--overwrite") && err.contains("--resume"),
        "{err}"
    );
}

/// `--log-format json`: every stdout line is a JSON object with an "event"; after the epochs
/// come the test score and the saved model.
#[test]
fn json_log_reports_the_test_score_and_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 10);
    let dir = tmp.path().join("run");
    let (code, out, err) = run(&mut train(
        &archive,
        &dir,
        &["--epochs", "2", "--log-format", "json"],
    ));
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["epoch", "epoch", "test", "saved"], "{out}");
    assert_eq!(lines[1]["epoch"], 2);
    // Validation ran on the test set, so the last epoch's numbers are the test score.
    assert_eq!(lines[2]["test_loss"], lines[1]["val_loss"]);
    assert_eq!(lines[2]["test_accuracy"], lines[1]["val_accuracy"]);
    let model = dir.join("model.safetensors");
    assert_eq!(lines[3]["model"], model.display().to_string());
    assert_eq!(lines[3]["run_folder"], dir.display().to_string());
}

/// Temp files a killed writer left in the run folder (named as `imdb_lstm::atomic` names them)
/// are cleared when a run starts there; a user's own hidden file that merely looks similar stays.
#[test]
fn stale_temp_files_are_cleared_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 10);
    let out = tmp.path().join("run");
    std::fs::create_dir(&out).unwrap();
    let stale = [
        ".model.safetensors.tmp-4242-0.safetensors",
        ".history.png.tmp-4242-3.png",
        ".checkpoint.safetensors.tmp-1-7.safetensors",
    ];
    for name in stale {
        std::fs::write(out.join(name), b"half").unwrap();
    }
    let mine = ".history.json.tmp-notes";
    std::fs::write(out.join(mine), b"mine").unwrap();
    let (code, _, err) = run(&mut train(&archive, &out, &["--quiet"]));
    assert_eq!(code, 0, "{err}");
    let names = file_names(&out);
    for name in stale {
        assert!(!names.iter().any(|n| n == name), "{name} left in {names:?}");
    }
    assert_eq!(std::fs::read(out.join(mine)).unwrap(), b"mine");
}
