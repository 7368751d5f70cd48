//! Never lose a run: a training process killed (SIGKILL) at random moments and resumed, or
//! stopped with Ctrl-C (SIGINT), SIGTERM or SIGHUP and resumed, or resumed on data that moved,
//! ends bit-identical to the same run uninterrupted; bad checkpoints, NaN losses and misuse of
//! --resume get clear messages.

mod common;
use common::*;
use imdb_lstm::cli::train::LOCK_FILE;
use imdb_lstm::model_file;
use imdb_lstm::report::read_history;
use imdb_lstm::train::checkpoint;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EPOCHS: u64 = 8;

/// A run long enough (about a second and a half) to be killed in the middle: small batches,
/// eight epochs, two threads.
fn flags() -> Vec<&'static str> {
    let mut f = small_model_flags();
    // small_model_flags ends with --batch-size 16: use 2 instead.
    f.truncate(f.len() - 2);
    f.extend([
        "--batch-size",
        "2",
        "--epochs",
        "8",
        "--threads",
        "2",
        "--seed",
        "11",
        "--quiet",
    ]);
    f
}

fn fresh(archive: &Path, out: &Path) -> Command {
    let mut c = bin();
    c.args(["train", "--data"])
        .arg(archive)
        .arg("--out")
        .arg(out)
        .args(flags());
    c
}

fn resume(out: &Path) -> Command {
    let mut c = bin();
    c.args(["train", "--quiet", "--resume"]).arg(out);
    c
}

type Metrics = Vec<(usize, f64, f64, Option<f64>, Option<f64>)>;
type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;

/// The model's tensors and the history without `seconds`.
fn outcome(dir: &Path) -> (Tensors, Metrics) {
    let m = model_file::load(&dir.join("model.safetensors")).expect("model file");
    let h = read_history(dir).expect("history");
    let metrics = h
        .epochs
        .iter()
        .map(|e| (e.epoch, e.loss, e.accuracy, e.val_loss, e.val_accuracy))
        .collect();
    (m.tensors, metrics)
}

/// The final checkpoints agree too: weights, Adam's moments and step.
fn assert_same_checkpoint(a: &Path, b: &Path) {
    let (a, b) = (
        checkpoint::load(a).expect("checkpoint a"),
        checkpoint::load(b).expect("checkpoint b"),
    );
    assert!(a.finished && b.finished);
    assert_eq!(a.state.params, b.state.params);
    assert_eq!(a.state.adam, b.state.adam);
    assert_eq!(a.state.rng, b.state.rng);
}

/// No temp file of an interrupted write stays behind (the run folder's lock file stays, by design).
fn assert_no_temp_files(dir: &Path) {
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n != LOCK_FILE)
        .collect();
    assert!(
        left.is_empty(),
        "temp files left in the run folder: {left:?}"
    );
}

#[test]
fn sigkill_at_random_moments_then_resume_is_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 120);
    let reference = tmp.path().join("reference");
    let start = Instant::now();
    let (code, _, err) = run(&mut fresh(&archive, &reference));
    assert_eq!(code, 0, "{err}");
    let full = start.elapsed();

    let seed: u64 = rand::random();
    eprintln!("kill schedule seed: {seed} (a full run takes {full:?})");
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let dir = tmp.path().join("killed");
    let (mut kills, mut attempts) = (0, 0);
    loop {
        attempts += 1;
        assert!(attempts < 60, "the run never finished after several kills");
        let mut cmd = if checkpoint::path_in(&dir).exists() {
            resume(&dir)
        } else {
            fresh(&archive, &dir)
        };
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if kills < 6 {
            // Anywhere from start-up to about the end of what is left of the run.
            let done = checkpoint::load(&dir).map_or(0, |c| c.state.epochs_done() as u64);
            let left = full.as_millis() as u64 * (EPOCHS - done) / EPOCHS * 4 / 5;
            let ms = rng.gen_range(10..left.max(40));
            std::thread::sleep(Duration::from_millis(ms));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                continue;
            }
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if checkpoint::load(&dir).map(|c| c.finished).unwrap_or(false) {
            if kills >= 3 {
                break;
            }
            // It outran the schedule: start over so the result comes from several kills.
            std::fs::remove_dir_all(&dir).unwrap();
            kills = 0;
        }
    }
    assert!(
        outcome(&dir) == outcome(&reference),
        "after {kills} kills the resumed run differs from the uninterrupted one"
    );
    assert_same_checkpoint(&dir, &reference);
    assert_no_temp_files(&dir);

    // Resuming a finished run says so and changes nothing.
    let before = std::fs::read(dir.join("model.safetensors")).unwrap();
    let (code, out, err) = run(bin().args(["train", "--resume"]).arg(&dir));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("already finished"), "{out}");
    assert_eq!(
        std::fs::read(dir.join("model.safetensors")).unwrap(),
        before
    );
}

/// Starts a run into `dir`, sends it `signal` (a `kill` name: INT, TERM, HUP) once its first
/// epoch is done, and checks that it stops with exit `code` and one line naming `name` and how to
/// resume, its checkpoint kept; `--resume` then ends bit-identical to `reference`.
fn stops_cleanly_and_resumes_identically(
    archive: &Path,
    reference: &Path,
    dir: &Path,
    signal: &str,
    code: i32,
    name: &str,
) {
    let child = fresh(archive, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the first epoch is done the handler is surely installed and epochs remain.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dir.join("history.json").exists() {
        assert!(Instant::now() < deadline, "the first epoch never ended");
        std::thread::sleep(Duration::from_millis(2));
    }
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "SIG{signal}: {err}");
    assert!(
        err.starts_with(&format!("error: stopped by {name} during epoch "))
            && err.contains("checkpoint.safetensors")
            && err.contains(&format!("--resume {}", dir.display())),
        "{err}"
    );
    assert!(
        err.trim_end().lines().count() == 1 && !err.contains("  "),
        "one clear line: {err}"
    );
    let ck = checkpoint::load(dir).unwrap();
    assert!(!ck.finished);
    assert!((1..8).contains(&ck.state.epochs_done()), "{ck:?}");

    let (code, _, err) = run(&mut resume(dir));
    assert_eq!(code, 0, "{err}");
    assert!(outcome(dir) == outcome(reference));
    assert_same_checkpoint(dir, reference);
}

#[test]
fn ctrl_c_stops_cleanly_and_resumes_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 120);
    let reference = tmp.path().join("reference");
    let (code, _, err) = run(&mut fresh(&archive, &reference));
    assert_eq!(code, 0, "{err}");
    let dir = tmp.path().join("interrupted");
    stops_cleanly_and_resumes_identically(&archive, &reference, &dir, "INT", 130, "Ctrl-C");
}

/// SIGTERM (what `kill`, systemd and container runtimes send) and SIGHUP (the terminal closed)
/// stop like Ctrl-C, with the shell's exit codes 143 and 129; they used to kill the run with
/// no word.
#[test]
fn sigterm_and_sighup_stop_cleanly_and_resume_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 120);
    let reference = tmp.path().join("reference");
    let (code, _, err) = run(&mut fresh(&archive, &reference));
    assert_eq!(code, 0, "{err}");
    let dir = tmp.path().join("terminated");
    stops_cleanly_and_resumes_identically(&archive, &reference, &dir, "TERM", 143, "SIGTERM");
    let dir = tmp.path().join("hung_up");
    stops_cleanly_and_resumes_identically(&archive, &reference, &dir, "HUP", 129, "SIGHUP");
}

/// Data that moved since the run started: `--resume DIR --data NEW` continues bit-identical and
/// records the new place; other data is refused; without `--data` the message says how.
#[test]
fn resume_with_data_that_moved() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 120);
    let reference = tmp.path().join("reference");
    let (code, _, err) = run(&mut fresh(&archive, &reference));
    assert_eq!(code, 0, "{err}");

    let dir = tmp.path().join("run");
    let mut child = fresh(&archive, &dir).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while checkpoint::load(&dir).map_or(0, |c| c.state.epochs_done()) < 1 {
        assert!(Instant::now() < deadline, "the first epoch never ended");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let moved_dir = tmp.path().join("moved");
    std::fs::create_dir(&moved_dir).unwrap();
    let moved = moved_dir.join("imdb.tar.gz");
    std::fs::rename(&archive, &moved).unwrap();

    let (code, _, err) = run(&mut resume(&dir));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("tiny_imdb.tar.gz, is gone")
            && err.contains(&format!(
                "`imdb-lstm train --resume {} --data PATH`",
                dir.display()
            ))
            && err.trim_end().lines().count() == 1
            && !err.contains("  "),
        "{err}"
    );

    // The same reviews with one training review's words changed: other sequences.
    let other = archive_with(&tmp.path().join("other.tar.gz"), 120, |split, id| {
        split == "train" && id == 5
    });
    let (code, _, err) = run(resume(&dir).arg("--data").arg(&other));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("other.tar.gz is not the data the run in")
            && err.trim_end().lines().count() == 1
            && !err.contains("  "),
        "{err}"
    );

    let (code, _, err) = run(resume(&dir).arg("--data").arg(&moved));
    assert_eq!(code, 0, "{err}");
    assert!(outcome(&dir) == outcome(&reference));
    assert_same_checkpoint(&dir, &reference);
    assert_eq!(
        checkpoint::load(&dir).unwrap().spec.data,
        std::fs::canonicalize(&moved).unwrap(),
        "the checkpoint records where the data is now"
    );
}

#[test]
fn nan_loss_keeps_the_last_good_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 40);
    let dir = tmp.path().join("nan");
    let (code, _, err) = run(bin()
        .args(["train", "--data"])
        .arg(&archive)
        .arg("--out")
        .arg(&dir)
        .args([
            "--num-words",
            "60",
            "--maxlen",
            "24",
            "--embed-dim",
            "16",
            "--units",
            "12",
        ])
        .args(["--learning-rate", "1e30", "--epochs", "3", "--quiet"]));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("epoch 1, step") && err.contains("became"),
        "names epoch and step: {err}"
    );
    assert!(
        err.contains("checkpoint after epoch 0 is kept in")
            && err.contains("checkpoint.safetensors"),
        "says the checkpoint is kept: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let ck = checkpoint::load(&dir).unwrap();
    assert_eq!(ck.state.epochs_done(), 0);
    assert!(ck.state.params.iter().all(|v| v.is_finite()));
    assert_eq!(
        ck.state.adam.step, 0,
        "the last good state, before any step"
    );
}

#[test]
fn bad_resumes_get_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 20);
    let dir = tmp.path().join("run");
    let (code, _, err) = run(bin()
        .args(["train", "--data"])
        .arg(&archive)
        .arg("--out")
        .arg(&dir)
        .args(small_model_flags())
        .args(["--epochs", "1", "--threads", "2", "--quiet"]));
    assert_eq!(code, 0, "{err}");

    // Another run into the same folder would overwrite it.
    let (code, _, err) = run(bin()
        .args(["train", "--data"])
        .arg(&archive)
        .arg("--out")
        .arg(&dir)
        .args(["--epochs", "1", "--quiet"]));
    assert_eq!(code, 1);
    assert!(err.contains("--resume"), "{err}");

    // Settings come from the checkpoint; other flags are refused.
    let (code, _, err) = run(bin().args(["train", "--epochs", "3", "--resume"]).arg(&dir));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--epochs") && err.contains("--resume"),
        "{err}"
    );
    let (code, _, err) = run(bin()
        .args(["train", "--threads", "3", "--resume"])
        .arg(&dir));
    assert_eq!(code, 1);
    assert!(
        err.contains("--threads 3") && err.contains("2 threads"),
        "{err}"
    );

    let mut cases: Vec<(std::path::PathBuf, &str)> = Vec::new();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    cases.push((empty, "holds no checkpoint.safetensors"));
    cases.push((tmp.path().join("missing"), "no run folder"));
    let garbage = tmp.path().join("garbage");
    std::fs::create_dir(&garbage).unwrap();
    std::fs::write(
        checkpoint::path_in(&garbage),
        b"\x10\x00\x00\x00not safetensors",
    )
    .unwrap();
    cases.push((garbage, "not a checkpoint"));
    let model_only = tmp.path().join("model_only");
    std::fs::create_dir(&model_only).unwrap();
    std::fs::copy(
        dir.join("model.safetensors"),
        checkpoint::path_in(&model_only),
    )
    .unwrap();
    cases.push((model_only, "not an imdb-lstm checkpoint"));
    let other_version = tmp.path().join("other_version");
    std::fs::create_dir(&other_version).unwrap();
    let mut bytes = std::fs::read(checkpoint::path_in(&dir)).unwrap();
    let pat = b"\"checkpoint_version\":\"1\"";
    let at = bytes.windows(pat.len()).position(|w| w == pat).unwrap();
    bytes[at + pat.len() - 2] = b'7';
    std::fs::write(checkpoint::path_in(&other_version), &bytes).unwrap();
    cases.push((other_version, "checkpoint version 7"));
    for (path, needle) in cases {
        let (code, _, err) = run(bin().args(["train", "--resume"]).arg(&path));
        assert_eq!(code, 1, "{path:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.trim_end().lines().count() == 1,
            "{path:?}: want one error line, got {err:?}"
        );
        assert!(err.contains(needle), "{path:?}: want {needle:?} in {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
