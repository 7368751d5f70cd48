//! Early stopping (Keras EarlyStopping on val_loss) on tiny data with noisy labels, which a
//! model without dropout overfits within a few epochs: it stops early, keeps the best epoch's
//! weights, and validates on a held-out part of the training data, never on the test set.

mod common;
use common::*;
use imdb_lstm::data::{load_reviews, prepare, Encoded};
use imdb_lstm::model_file;
use imdb_lstm::nn::Network;
use imdb_lstm::report::read_history;
use imdb_lstm::train::checkpoint;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Like `tiny_archive`, but every third training review carries the other class's words, so
/// the labels cannot all be learnt without memorising noise.
fn noisy_archive(dir: &Path, per_class: usize) -> PathBuf {
    archive_with(&dir.join("noisy_imdb.tar.gz"), per_class, |split, id| {
        split == "train" && id % 3 == 0
    })
}

const FLAGS: &[&str] = &[
    "--num-words",
    "60",
    "--maxlen",
    "24",
    "--embed-dim",
    "16",
    "--units",
    "16",
    "--dropout",
    "0",
    "--recurrent-dropout",
    "0",
    "--learning-rate",
    "0.02",
    "--batch-size",
    "8",
    "--threads",
    "2",
    "--epochs",
    "50",
    "--early-stopping",
    "2",
];

fn train(archive: &Path, out: &Path, extra: &[&str]) -> (i32, String, String) {
    run(bin()
        .args(["train", "--data"])
        .arg(archive)
        .arg("--out")
        .arg(out)
        .args(FLAGS)
        .args(extra))
}

/// Loss of the model file's weights on the last 20% of the (prepared) training data and on the
/// test set, computed here from the library, independently of `train`.
fn losses_of(model: &Path, archive: &Path, seed: u64) -> (f64, f64) {
    let m = model_file::load(model).unwrap();
    let raw = load_reviews(archive).unwrap();
    let mut ds = prepare(&raw, &m.preprocessing, seed).unwrap();
    let val: Encoded = ds.train.split_off_tail(0.2).unwrap();
    let params = m.arch.from_named(&m.tensors).unwrap();
    let mut net = Network::new(&m.arch, 2).unwrap();
    net.refresh(&params);
    let mut loss = |e: &Encoded| {
        let (s, _) = net.evaluate(&params, &e.x, &e.y);
        s.loss_sum / s.count as f64
    };
    (loss(&val), loss(&ds.test))
}

#[test]
fn stops_early_restores_best_and_keeps_the_test_set_out() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = noisy_archive(tmp.path(), 150);
    let dir = tmp.path().join("es");
    let (code, out, err) = train(&archive, &dir, &[]);
    assert_eq!(code, 0, "{err}");
    // 300 training reviews: 240 to train on, the last 60 (20%, the default) to validate.
    assert!(
        out.contains(
            "Train on 240 samples, validate on 60 samples (the last part of the training data)"
        ),
        "{out}"
    );
    assert!(
        out.contains("Early stopping on val_loss (patience 2, min_delta 0)")
            && out.contains("the test set is evaluated only once, at the end"),
        "{out}"
    );

    let h = read_history(&dir).unwrap();
    let n = h.epochs.len();
    let best = h.best_epoch().unwrap();
    assert!(n < 50, "early stopping must stop before 50 epochs: {n}");
    assert_eq!(n, best + 2, "stops 2 epochs after the best one: {h:?}");
    assert!(best >= 2, "the scenario should improve at first: {h:?}");

    let model = dir.join("model.safetensors");
    let facts = model_file::load(&model).unwrap().training.unwrap();
    assert_eq!(facts.best_epoch, Some(best));
    assert_eq!(facts.epochs, n);
    let best_val = h.epochs[best - 1].val_loss.unwrap();
    assert_eq!(
        facts.val_loss,
        Some(best_val),
        "facts describe the saved weights"
    );

    // The restored weights reproduce the best epoch's val_loss on the training split's tail:
    // validation used that split, and the weights are the best epoch's.
    let (val_loss, test_loss) = losses_of(&model, &archive, 1337);
    assert!(
        (val_loss - best_val).abs() < 1e-9,
        "restored weights give val_loss {val_loss}, the best epoch had {best_val}"
    );
    assert!(
        h.epochs.iter().all(|e| e.val_loss != Some(test_loss)),
        "no epoch may have been validated on the test set"
    );
    let printed: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("Test score: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (printed - test_loss).abs() < 1e-6,
        "{printed} vs {test_loss}"
    );

    // --no-restore-best keeps the last epoch's weights.
    let last_dir = tmp.path().join("last");
    let (code, _, err) = train(&archive, &last_dir, &["--no-restore-best", "--quiet"]);
    assert_eq!(code, 0, "{err}");
    let h2 = read_history(&last_dir).unwrap();
    assert_eq!(h2, h_without_seconds(&h, &h2), "same run, same history");
    let (val_last, _) = losses_of(&last_dir.join("model.safetensors"), &archive, 1337);
    let last_val = h2.epochs.last().unwrap().val_loss.unwrap();
    assert!(
        (val_last - last_val).abs() < 1e-9,
        "{val_last} vs {last_val}"
    );
    assert!(val_last > best_val);
}

/// `h` with `other`'s seconds, to compare everything else.
fn h_without_seconds(
    h: &imdb_lstm::train::history::History,
    other: &imdb_lstm::train::history::History,
) -> imdb_lstm::train::history::History {
    let mut h = h.clone();
    for (a, b) in h.epochs.iter_mut().zip(&other.epochs) {
        a.seconds = b.seconds;
    }
    h
}

/// A killed early-stopping run resumes to the same stop, best epoch and weights.
#[test]
fn early_stopping_state_survives_a_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = noisy_archive(tmp.path(), 150);
    let reference = tmp.path().join("reference");
    let (code, _, err) = train(&archive, &reference, &["--quiet"]);
    assert_eq!(code, 0, "{err}");

    let dir = tmp.path().join("killed");
    let mut child = bin()
        .args(["train", "--data"])
        .arg(&archive)
        .arg("--out")
        .arg(&dir)
        .args(FLAGS)
        .arg("--quiet")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill once two epochs are checkpointed (the best weights are then held in the checkpoint).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = checkpoint::load(&dir).map_or(0, |c| c.state.epochs_done());
        if done >= 2 || child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let (code, _, err) = run(bin().args(["train", "--quiet", "--resume"]).arg(&dir));
    assert_eq!(code, 0, "{err}");
    let (a, b) = (
        read_history(&dir).unwrap(),
        read_history(&reference).unwrap(),
    );
    assert_eq!(h_without_seconds(&a, &b), b);
    let (ma, mb) = (
        model_file::load(&dir.join("model.safetensors")).unwrap(),
        model_file::load(&reference.join("model.safetensors")).unwrap(),
    );
    assert!(ma.tensors == mb.tensors, "the restored best weights differ");
    assert_eq!(
        ma.training.unwrap().best_epoch,
        mb.training.unwrap().best_epoch
    );
}

#[test]
fn flags_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 4);
    let out = tmp.path().join("out");
    for (extra, needle) in [
        (vec!["--min-delta", "0.1"], "--early-stopping"),
        (vec!["--no-restore-best"], "--early-stopping"),
        (
            vec!["--early-stopping", "2", "--min-delta=-1"],
            "--min-delta",
        ),
    ] {
        let (code, _, err) = run(bin()
            .args(["train", "--data"])
            .arg(&archive)
            .arg("--out")
            .arg(&out)
            .args(&extra));
        assert_ne!(code, 0, "{extra:?}");
        assert!(err.contains(needle), "{extra:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let (code, help, _) = run(bin().args(["train", "--help"]));
    assert_eq!(code, 0);
    assert!(
        help.contains("--early-stopping <PATIENCE>") && help.contains("restored"),
        "{help}"
    );
}

/// `--log-format json` with early stopping: after the epochs, one object each for the stop,
/// the restored best weights, the test score (of those weights) and the saved model.
#[test]
fn json_log_reports_the_stop_the_restore_and_the_test_score() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = noisy_archive(tmp.path(), 150);
    let dir = tmp.path().join("es");
    let (code, out, err) = train(&archive, &dir, &["--log-format", "json"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    let n = read_history(&dir).unwrap().epochs.len();
    let best = n - 2;
    let mut want = vec!["epoch"; n];
    want.extend(["early_stopping", "restored_best_weights", "test", "saved"]);
    assert_eq!(events, want, "{out}");
    let end = &lines[n..];
    assert_eq!(end[0]["epoch"], n);
    assert_eq!(end[0]["best_epoch"], best);
    assert_eq!(end[1]["epoch"], best);
    let (_, test_loss) = losses_of(&dir.join("model.safetensors"), &archive, 1337);
    let printed = end[2]["test_loss"].as_f64().unwrap();
    assert!(
        (printed - test_loss).abs() < 1e-9,
        "{printed} vs {test_loss}"
    );
    assert!(end[2]["test_accuracy"].as_f64().is_some());
    assert_eq!(
        end[3]["model"],
        dir.join("model.safetensors").display().to_string()
    );
}
