//! Messages that must send the user somewhere, and commands that must finish: `plot` on absurd or
//! hostile history files, `plot` given the history.json itself, `graph --out` on a file, bench
//! flags checked before any work, and negative numbers given to numeric flags.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

/// Runs `cmd` (killed after 60 s) and checks the failure contract ([`assert_refused`]) and that
/// nothing was done first: stdout is empty. Returns stderr.
fn fails(cmd: &mut Command, code: i32, needles: &[&str]) -> String {
    let result = msgs_run_within(cmd, 60);
    assert!(
        result.1.is_empty(),
        "{cmd:?}: nothing should be done first: {}",
        result.1
    );
    assert_refused(cmd, result, code, needles)
}

/// One epoch of a history.json.
fn epoch(n: u64, loss: &str, val_loss: &str) -> String {
    format!(
        r#"{{"epoch":{n},"loss":{loss},"accuracy":0.5,"val_loss":{val_loss},"val_accuracy":0.5,"seconds":1.0}}"#
    )
}

/// `dir/history.json` with these epochs.
fn write_history(dir: &Path, epochs: &[String]) {
    let json = format!(r#"{{"epochs":[{}]}}"#, epochs.join(","));
    std::fs::write(dir.join("history.json"), json).unwrap();
}

fn plot(path: &Path) -> Command {
    let mut c = bin();
    c.arg("plot").arg(path);
    c
}

#[test]
fn plot_values_wider_than_f64_refused_not_hanging() {
    let tmp = tempfile::tempdir().unwrap();
    write_history(
        tmp.path(),
        &[epoch(1, "1e308", "-1e308"), epoch(2, "0.5", "0.6")],
    );
    fails(
        &mut plot(tmp.path()),
        1,
        &[
            "history.json",
            "-1e308 to 1e308",
            "fix or remove those epochs",
        ],
    );
    assert_eq!(file_names(tmp.path()), ["history.json"], "nothing drawn");
}

#[test]
fn plot_history_that_is_a_named_pipe() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("history.json");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    // Reading a pipe nobody writes to would wait for ever.
    fails(
        &mut plot(tmp.path()),
        1,
        &["history.json", "is not a regular file"],
    );
}

#[test]
fn plot_history_over_64_mib() {
    let tmp = tempfile::tempdir().unwrap();
    let f = std::fs::File::create(tmp.path().join("history.json")).unwrap();
    f.set_len((64 << 20) + 1).unwrap(); // sparse: no disk used
    fails(
        &mut plot(tmp.path()),
        1,
        &["history.json", "is larger than 64 MiB"],
    );
}

#[test]
fn plot_more_epochs_than_can_be_plotted() {
    let tmp = tempfile::tempdir().unwrap();
    let epochs: Vec<String> = (1..=100_001).map(|n| epoch(n, "0.5", "0.6")).collect();
    write_history(tmp.path(), &epochs);
    fails(
        &mut plot(tmp.path()),
        1,
        &["history.json", "100001 epochs", "at most 100000"],
    );
    assert_eq!(file_names(tmp.path()), ["history.json"], "nothing drawn");
}

#[test]
fn plot_given_the_history_json_reports_where_it_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    write_history(
        tmp.path(),
        &[epoch(1, "0.5", "0.6"), epoch(2, "0.4", "0.5")],
    );
    let (code, out, err) = msgs_run_within(&mut plot(&tmp.path().join("history.json")), 60);
    assert_eq!(code, 0, "{err}");
    let (png, svg) = (
        tmp.path().join("history.png"),
        tmp.path().join("history.svg"),
    );
    assert_eq!(
        out.trim_end(),
        format!("wrote {} and {}", png.display(), svg.display())
    );
    assert!(png.is_file() && svg.is_file());
}

#[test]
fn graph_out_is_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 4);
    let run_dir = tmp.path().join("run");
    let (code, _, err) = msgs_run_within(
        bin()
            .args(["train", "--epochs", "1", "--quiet", "--data"])
            .arg(&archive)
            .arg("--out")
            .arg(&run_dir)
            .args(small_model_flags()),
        300,
    );
    assert_eq!(code, 0, "{err}");
    let file = tmp.path().join("notes.txt");
    std::fs::write(&file, "mine").unwrap();
    fails(
        bin()
            .args(["graph", "--model"])
            .arg(run_dir.join("model.safetensors"))
            .arg("--out")
            .arg(&file),
        1,
        &["notes.txt is a file, not a folder", "give a folder"],
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");
}

#[test]
fn bench_scaling_reviews_0_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 4);
    fails(
        bin()
            .args(["bench", "--threads", "1", "--epochs", "1", "--scaling"])
            .args(["--scaling-reviews", "0", "--data"])
            .arg(&archive),
        1,
        &["--scaling-reviews 0", "at least 1"],
    );
}

#[test]
fn bench_missing_data_refused_before_measuring() {
    let tmp = tempfile::tempdir().unwrap();
    fails(
        bin()
            .args(["bench", "--threads", "1", "--data"])
            .arg(tmp.path().join("absent.tar.gz")),
        1,
        &["--data", "absent.tar.gz", "no such file or folder"],
    );
}

#[test]
fn negative_numbers_are_values_of_numeric_flags() {
    for (args, flag) in [
        (vec!["train", "--seed", "-5"], "'-5' for '--seed <SEED>'"),
        (
            vec!["bench", "--epochs", "-1"],
            "'-1' for '--epochs <EPOCHS>'",
        ),
        (vec!["bench", "--limit", "-1"], "'-1' for '--limit <N>'"),
        (
            vec!["bench", "--threads", "-2"],
            "'-2' for '--threads <THREADS>'",
        ),
        (
            vec!["bench", "--scaling-reviews", "-3"],
            "'-3' for '--scaling-reviews <SCALING_REVIEWS>'",
        ),
        (
            vec!["train", "--epochs", "-1"],
            "'-1' for '--epochs <EPOCHS>'",
        ),
        (
            vec!["train", "--maxlen", "-80"],
            "'-80' for '--maxlen <MAXLEN>'",
        ),
        (vec!["train", "--limit", "-1"], "'-1' for '--limit <N>'"),
        (
            vec!["predict", "--model", "m", "--threads", "-2"],
            "'-2' for '--threads <THREADS>'",
        ),
        (
            vec!["evaluate", "--model", "m", "--limit", "-3"],
            "'-3' for '--limit <N>'",
        ),
    ] {
        let (code, out, err) = msgs_run_within(bin().args(&args), 60);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(
            err.starts_with(&format!("error: invalid value {flag}")),
            "{args:?}: {err}"
        );
        eprintln!("{}", err.lines().next().unwrap());
    }
    // A negative fraction reaches the flag checks, which say what range to use.
    for (args, line) in [
        (
            vec!["train", "--dropout", "-0.1"],
            "error: --dropout -0.1 is outside [0, 1): use a fraction such as 0.2 (default 0.2)",
        ),
        (
            vec!["train", "--learning-rate", "-1"],
            "error: --learning-rate -1 must be a positive number (default 0.001)",
        ),
    ] {
        let (code, _, err) = msgs_run_within(bin().args(&args), 60);
        assert_eq!((code, err.trim_end()), (1, line), "{args:?}");
    }
}
