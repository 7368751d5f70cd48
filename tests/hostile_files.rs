//! Hostile model files and checkpoints, end to end through the real binary: settings edited to
//! absurd or impossible values, inconsistent progress, wrong tensors, links to devices and FIFOs.
//! Each gets exit 1 and one line naming the file and the bad key; never a panic, an abort, a
//! hang or an unbounded read.

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Runs `cmd` and checks the failure contract: exit 1, no panic or abort, stderr is exactly one
/// line starting with `error: ` and containing every needle. Returns stderr.
fn fails(cmd: &mut Command, needles: &[&str]) -> String {
    let (code, _, err) = run(cmd);
    assert!(!err.contains("panicked"), "{cmd:?} panicked: {err}");
    assert_eq!(code, 1, "{cmd:?}: want exit 1, got {code}: {err}");
    assert!(
        err.starts_with("error: ") && err.trim_end().lines().count() == 1,
        "{cmd:?}: want one error line, got {err:?}"
    );
    for n in needles {
        assert!(
            err.contains(n),
            "{cmd:?}: error should contain {n:?}: {err}"
        );
    }
    // Shown with --nocapture: the README's table quotes these lines.
    eprintln!("[exit {code}] {}", err.trim_end());
    err
}

/// The binary with `args`, limited to 4 GiB of address space and 60 seconds: a huge allocation
/// fails at once instead of swapping, an endless read or a blocked open ends.
fn limited(args: &[&str], path: &Path) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(r#"ulimit -v 4194304; exec timeout 60 "$@""#)
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_imdb-lstm"))
        .args(args)
        .arg(path)
        .env_remove("IMDB_LSTM_DATA");
    c
}

/// A tiny run trained once per test process (one epoch of two... see [`files_checkpoint`]).
fn fixture() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("hostile-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let archive = tiny_archive(&dir, 20);
        let run_dir = dir.join("run");
        let (code, _, err) = run(bin()
            .args([
                "train",
                "--epochs",
                "1",
                "--threads",
                "1",
                "--quiet",
                "--data",
            ])
            .arg(&archive)
            .arg("--out")
            .arg(&run_dir)
            .args(small_model_flags())
            .args(["--early-stopping", "3"]));
        assert_eq!(code, 0, "{err}");
        run_dir
    })
}

/// A safetensors file split into its header JSON and data section.
fn split(bytes: &[u8]) -> (Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (
        serde_json::from_slice(&bytes[8..8 + n]).unwrap(),
        bytes[8 + n..].to_vec(),
    )
}

fn join(header: &Value, data: &[u8]) -> Vec<u8> {
    let text = serde_json::to_vec(header).unwrap();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    out.extend(data);
    out
}

/// Sets `pointer` (e.g. `/train/batch_size`) inside the JSON string stored under metadata `key`.
fn set_in(header: &mut Value, key: &str, pointer: &str, value: Value) {
    let meta = &mut header["__metadata__"][key];
    let mut v: Value = serde_json::from_str(meta.as_str().unwrap()).unwrap();
    *v.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{key}{pointer}")) = value;
    *meta = v.to_string().into();
}

/// A run folder under `tmp` holding the fixture's checkpoint with its header and data edited by
/// `f`. It is first marked unfinished with one epoch left, so the code before these checks
/// went on to train.
fn files_checkpoint(tmp: &Path, f: impl FnOnce(&mut Value, &mut Vec<u8>)) -> PathBuf {
    let bytes = std::fs::read(fixture().join("checkpoint.safetensors")).unwrap();
    let (mut header, mut data) = split(&bytes);
    header["__metadata__"]["finished"] = "false".into();
    set_in(&mut header, "run", "/train/epochs", json!(2));
    f(&mut header, &mut data);
    let dir = tmp.join("run");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("checkpoint.safetensors"), join(&header, &data)).unwrap();
    dir
}

/// `train --resume` on a run folder whose checkpoint has `value` at each (metadata key, JSON
/// pointer) of `at`.
fn resume_with(at: &[(&str, &str)], value: Value) -> (tempfile::TempDir, Command) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = files_checkpoint(tmp.path(), |h, _| {
        for (key, pointer) in at {
            set_in(h, key, pointer, value.clone());
        }
    });
    let cmd = limited(&["train", "--quiet", "--resume"], &dir);
    (tmp, cmd)
}

// ---------------------------------------------------------------- checkpoints

/// Sizes edited to absurd values used to abort on allocation (or overflow) before anything was
/// said.
#[test]
fn checkpoint_with_absurd_sizes() {
    for (pointers, value, needles) in [
        (
            vec!["/arch/layers/1/config/units"],
            json!(1u64 << 20),
            vec![
                "run.arch: layer 2 (LSTM): the model has more than 268435456 parameters by \
                 here: make it smaller",
            ],
        ),
        (
            vec![
                "/arch/layers/0/config/input_dim",
                "/preprocessing/num_words",
            ],
            json!(1u64 << 40),
            vec!["run.arch: layer 1 (Embedding)", "parameters"],
        ),
        (
            vec!["/arch/maxlen", "/preprocessing/maxlen"],
            json!(1u64 << 31),
            vec!["run.arch: maxlen 2147483648 is outside 1..=1048576"],
        ),
        (
            vec!["/train/batch_size"],
            json!(1u64 << 40),
            vec!["run.train.batch_size is 1099511627776, above the limit of 1048576"],
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = files_checkpoint(tmp.path(), |h, _| {
            for p in &pointers {
                set_in(h, "run", p, value.clone());
            }
        });
        let mut cmd = limited(&["train", "--quiet", "--resume"], &dir);
        let mut all = needles.clone();
        all.push("checkpoint.safetensors");
        fails(&mut cmd, &all);
    }
}

/// Batch size 0 divided by zero in the fit loop (a panic, exit 101).
#[test]
fn checkpoint_with_batch_size_zero() {
    let (_tmp, mut cmd) = resume_with(&[("run", "/train/batch_size")], json!(0));
    fails(
        &mut cmd,
        &[
            "checkpoint.safetensors",
            "run.train.batch_size is 0, below the minimum of 1",
        ],
    );
}

/// Values `train` refuses as flags were taken from a checkpoint as they were: dropout 5.0
/// trained the remaining epoch and only then failed to save the model; the others trained.
#[test]
fn checkpoint_with_settings_out_of_range() {
    let run = |pointer| vec![("run", pointer)];
    for (at, value, needle) in [
        (
            run("/arch/layers/1/config/dropout"),
            json!(5.0),
            "run.arch: layer 2 (LSTM): dropout",
        ),
        (
            run("/train/adam/learning_rate"),
            json!(-0.001),
            "run.train.adam.learning_rate is -0.001, not a positive number",
        ),
        (
            run("/train/threads"),
            json!(100_000),
            "run.train.threads is 100000, above the limit of 256",
        ),
        (
            run("/preprocessing/pad_id"),
            json!(5),
            "run.preprocessing.pad_id is 5, not below the first word id 4",
        ),
        (
            run("/preprocessing/tokenizer"),
            json!("bpe"),
            "run.preprocessing.tokenizer \"bpe\" and run.preprocessing.tokenizer_version 1",
        ),
        (
            run("/validation_split"),
            json!(1.5),
            "run.validation_split is 1.5, outside (0, 1)",
        ),
        (
            // In the settings and in early stopping's state alike, so the two still agree.
            vec![
                ("run", "/early_stopping/min_delta"),
                ("early_stopping", "/cfg/min_delta"),
            ],
            json!(-1.0),
            "run.early_stopping.min_delta is -1, not a number >= 0",
        ),
    ] {
        let (_tmp, mut cmd) = resume_with(&at, value);
        fails(&mut cmd, &["checkpoint.safetensors", needle]);
    }
}

/// Progress the run's settings cannot have made: more epochs done than planned, a finished
/// run that neither ran all its epochs nor stopped early.
#[test]
fn checkpoint_with_inconsistent_progress() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = files_checkpoint(tmp.path(), |h, _| {
        set_in(h, "run", "/train/epochs", json!(0))
    });
    fails(
        &mut limited(&["train", "--quiet", "--resume"], &dir),
        &[
            "checkpoint.safetensors",
            "run.train.epochs is 0, below the minimum of 1",
        ],
    );

    let tmp = tempfile::tempdir().unwrap();
    let dir = files_checkpoint(tmp.path(), |h, _| {
        let meta = &mut h["__metadata__"]["history"];
        let mut hist: Value = serde_json::from_str(meta.as_str().unwrap()).unwrap();
        let mut second = hist["epochs"][0].clone();
        second["epoch"] = 2.into();
        hist["epochs"].as_array_mut().unwrap().push(second.clone());
        second["epoch"] = 3.into();
        hist["epochs"].as_array_mut().unwrap().push(second);
        *meta = hist.to_string().into();
        h["__metadata__"]["adam_step"] = "100".into();
    });
    fails(
        &mut limited(&["train", "--quiet", "--resume"], &dir),
        &[
            "checkpoint.safetensors",
            "the history lists 3 epochs, but run.train.epochs is 2",
        ],
    );

    let tmp = tempfile::tempdir().unwrap();
    let dir = files_checkpoint(tmp.path(), |h, _| {
        h["__metadata__"]["finished"] = "true".into();
    });
    fails(
        &mut limited(&["train", "--quiet", "--resume"], &dir),
        &[
            "checkpoint.safetensors",
            "marked finished after 1 of 2 epochs",
        ],
    );
}

/// The tensors must be exactly the run's: no stranger, and Adam's second moments never negative
/// (a negative one made every later step NaN).
#[test]
fn checkpoint_with_wrong_tensors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = files_checkpoint(tmp.path(), |h, data| {
        let end = data.len();
        h["extra"] = json!({"dtype": "F32", "shape": [1], "data_offsets": [end, end + 4]});
        data.extend(1f32.to_le_bytes());
    });
    fails(
        &mut limited(&["train", "--quiet", "--resume"], &dir),
        &["checkpoint.safetensors", "unexpected tensor extra"],
    );

    let tmp = tempfile::tempdir().unwrap();
    let dir = files_checkpoint(tmp.path(), |h, data| {
        let start = h["adam_v"]["data_offsets"][0].as_u64().unwrap() as usize;
        data[start + 8..start + 12].copy_from_slice(&(-1f32).to_le_bytes());
    });
    fails(
        &mut limited(&["train", "--quiet", "--resume"], &dir),
        &[
            "checkpoint.safetensors",
            "tensor adam_v holds -1 at index 2",
        ],
    );
}

/// The library entry point the fuzzer drives: the fixture's checkpoint loads, and what it gives
/// back is consistent; an edited one is refused without naming a path.
#[test]
fn checkpoint_load_bytes() {
    let bytes = std::fs::read(fixture().join("checkpoint.safetensors")).unwrap();
    let ck = imdb_lstm::train::checkpoint::load_bytes(&bytes).unwrap();
    assert!(ck.finished);
    assert_eq!(ck.state.epochs_done(), 1);
    assert_eq!(ck.state.adam.m.len(), ck.state.params.len());
    assert!(ck.early.unwrap().best_params.is_some());
    let (mut header, data) = split(&bytes);
    set_in(&mut header, "run", "/train/threads", json!(0));
    let err = imdb_lstm::train::checkpoint::load_bytes(&join(&header, &data)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "run.train.threads is 0, below the minimum of 1; the file is damaged or was not written \
         by imdb-lstm"
    );
}

/// A checkpoint that is a link to /dev/zero or /dev/urandom was read until memory ran out; a
/// FIFO blocked forever.
#[test]
fn checkpoint_is_a_device_or_fifo() {
    for target in ["/dev/zero", "/dev/urandom", "fifo"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        std::fs::create_dir(&dir).unwrap();
        let ck = dir.join("checkpoint.safetensors");
        if target == "fifo" {
            let ok = Command::new("mkfifo").arg(&ck).status().unwrap();
            assert!(ok.success());
        } else {
            std::os::unix::fs::symlink(target, &ck).unwrap();
        }
        fails(
            &mut limited(&["train", "--quiet", "--resume"], &dir),
            &[
                "cannot read checkpoint",
                "checkpoint.safetensors: it is not a regular file",
            ],
        );
    }
}

// ---------------------------------------------------------------- model files

fn model_bytes() -> Vec<u8> {
    std::fs::read(fixture().join("model.safetensors")).unwrap()
}

/// `--model` that is a link to /dev/zero or /dev/urandom was read until memory ran out; a FIFO
/// blocked forever.
#[test]
fn model_file_is_a_device_or_fifo() {
    for target in ["/dev/zero", "/dev/urandom", "fifo"] {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("model.safetensors");
        if target == "fifo" {
            let ok = Command::new("mkfifo").arg(&p).status().unwrap();
            assert!(ok.success());
        } else {
            std::os::unix::fs::symlink(target, &p).unwrap();
        }
        for cmd in ["predict", "summary"] {
            let mut c = limited(&[cmd, "--model"], &p);
            if cmd == "predict" {
                c.arg("good");
            }
            fails(
                &mut c,
                &[
                    "cannot read model file",
                    "model.safetensors: it is not a regular file (a device, pipe or socket, or a \
                     link to one)",
                ],
            );
        }
    }
}

/// Only the bytes the header accounts for are read: 8 GiB after the last tensor (a sparse file)
/// are noticed without being read, under a 4 GiB address-space limit.
#[test]
fn model_file_with_gigabytes_after_the_tensors() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("long.safetensors");
    let bytes = model_bytes();
    std::fs::write(&p, &bytes).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(bytes.len() as u64 + (8 << 30)).unwrap();
    fails(
        &mut limited(&["summary", "--model"], &p),
        &["long.safetensors: not a valid safetensors file: 8589934592 bytes follow the last tensor"],
    );
}

/// A tensor cut out of the header leaves a gap in the offsets, which used to be blamed on its
/// neighbour (`dense/kernel` for a missing `dense/bias`).
#[test]
fn model_file_missing_a_tensor_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut header, data) = split(&model_bytes());
    header
        .as_object_mut()
        .unwrap()
        .remove("dense/bias")
        .unwrap();
    let p = tmp.path().join("no_bias.safetensors");
    std::fs::write(&p, join(&header, &data)).unwrap();
    let err = fails(
        bin().args(["summary", "--model"]).arg(&p),
        &["no_bias.safetensors", "tensor \"dense/bias\" is missing"],
    );
    assert!(!err.contains("dense/kernel"), "{err}");
}

/// Vocabulary entries the tokeniser can never produce (empty, upper case, a space, a character
/// it splits on, an apostrophe it strips) are refused by index: they could never match a word.
#[test]
fn model_file_with_words_that_never_match() {
    for bad in ["", "Great", "two words", "<br", "10/10", "'tis", "don’t"] {
        let tmp = tempfile::tempdir().unwrap();
        let (mut header, data) = split(&model_bytes());
        let meta = &mut header["__metadata__"]["vocabulary"];
        let mut vocab: Vec<String> = serde_json::from_str(meta.as_str().unwrap()).unwrap();
        vocab[3] = bad.to_string();
        *meta = serde_json::to_string(&vocab).unwrap().into();
        let p = tmp.path().join("vocab.safetensors");
        std::fs::write(&p, join(&header, &data)).unwrap();
        fails(
            bin().args(["predict", "--model"]).arg(&p).arg("good"),
            &[
                "vocab.safetensors",
                &format!("the vocabulary's entry 3 (rank 4), {bad:?}, can never match"),
            ],
        );
    }
}

// ---------------------------------------------------------------- flags

/// A batch size beyond any data set overflowed the fit loop's buffer size (a panic); with a
/// long maxlen, one batch's ids alone would not fit in memory.
#[test]
fn train_batch_too_large() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 4);
    for (flags, needle) in [
        (
            vec!["--batch-size", "1099511627776"],
            "--batch-size 1099511627776 is too large: use at most 1048576 (default 32)",
        ),
        (
            vec!["--batch-size", "100000", "--maxlen", "100000"],
            "--batch-size 100000 and --maxlen 100000 make 10000000000 token ids per batch; at \
             most 268435456 fit: make them smaller",
        ),
    ] {
        let mut c = bin();
        c.args(["train", "--quiet", "--data"])
            .arg(&archive)
            .arg("--out")
            .arg(tmp.path().join("run"))
            .args(["--num-words", "60", "--embed-dim", "4", "--units", "4"])
            .args(&flags);
        fails(&mut c, &[needle]);
        assert!(!tmp.path().join("run").exists());
    }
}
