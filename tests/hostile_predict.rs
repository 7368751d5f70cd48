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
