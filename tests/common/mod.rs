//! Helpers for tests that drive the real binary on tiny data made in a temp dir.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The built `imdb-lstm` binary.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imdb-lstm"));
    c.env_remove("IMDB_LSTM_DATA");
    c
}

/// Run and return (exit code, stdout, stderr).
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("the binary runs");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

const GOOD: &[&str] = &[
    "great",
    "wonderful",
    "superb",
    "loved",
    "brilliant",
    "moving",
];
const BAD: &[&str] = &["awful", "boring", "terrible", "hated", "dull", "worst"];
const FILLER: &[&str] = &[
    "the", "movie", "film", "plot", "actor", "scene", "was", "and", "a", "story", "it", "this",
];

/// A review of 12-30 words: filler plus a few sentiment words of its class.
pub fn review(positive: bool, i: usize) -> String {
    let words = if positive { GOOD } else { BAD };
    let mut s = String::new();
    let mut x = i * 7919 + if positive { 13 } else { 101 };
    let len = 12 + x % 19;
    for k in 0..len {
        x = x.wrapping_mul(1103515245).wrapping_add(12345) % (1 << 31);
        let w = if k % 4 == 1 {
            words[x % words.len()]
        } else {
            FILLER[x % FILLER.len()]
        };
        s.push_str(w);
        s.push(if k % 9 == 8 { '.' } else { ' ' });
    }
    s + "<br /><br />The End."
}

/// A `.tar.gz` in the official layout with `per_class` reviews per label per split.
pub fn tiny_archive(dir: &Path, per_class: usize) -> PathBuf {
    archive_with(&dir.join("tiny_imdb.tar.gz"), per_class, |_, _| false)
}

/// Like [`tiny_archive`], written to `path`; a review for which `flip(split, id)` is true
/// carries the other class's words (label noise).
pub fn archive_with(path: &Path, per_class: usize, flip: impl Fn(&str, usize) -> bool) -> PathBuf {
    let path = path.to_path_buf();
    let file = std::fs::File::create(&path).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for split in ["train", "test"] {
        for (label, positive) in [("pos", true), ("neg", false)] {
            for id in 0..per_class {
                let rating = if positive { 7 + id % 4 } else { 1 + id % 4 };
                let seed = id + if split == "test" { 100_000 } else { 0 };
                let text = review(positive != flip(split, id), seed);
                let mut h = tar::Header::new_gnu();
                h.set_size(text.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                tar.append_data(
                    &mut h,
                    format!("aclImdb/{split}/{label}/{id}_{rating}.txt"),
                    text.as_bytes(),
                )
                .unwrap();
            }
        }
    }
    tar.into_inner().unwrap().finish().unwrap();
    path
}

/// Flags for a small, quick model on the tiny data.
pub fn small_model_flags() -> Vec<&'static str> {
    vec![
        "--num-words",
        "60",
        "--maxlen",
        "24",
        "--embed-dim",
        "16",
        "--units",
        "12",
        "--learning-rate",
        "0.01",
        "--batch-size",
        "16",
    ]
}

/// The real dataset, when the environment names it (CI does).
pub fn real_data() -> Option<PathBuf> {
    match std::env::var_os("IMDB_LSTM_DATA") {
        Some(p) if Path::new(&p).exists() => Some(PathBuf::from(p)),
        _ => {
            eprintln!("IMDB_LSTM_DATA is not set: skipping the real-data part of this test");
            None
        }
    }
}

/// The names of the entries of `dir`, sorted (to check that no temp file was left behind).
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Like [`run`], but a command still running after `secs` seconds is killed and the test fails
/// (for cases that used to hang: the old code must fail the test, not stall the suite).
pub fn msgs_run_within(cmd: &mut Command, secs: u64) -> (i32, String, String) {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    // Drain both pipes on threads so a chatty child cannot block on a full pipe.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still ran after {secs} s: it hangs");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    (
        status.code().unwrap_or(-1),
        out.join().unwrap(),
        err.join().unwrap(),
    )
}

/// The warning `predict` gives for a review without words at `place` (`FILE, line N` or
/// `argument N`), with its newline.
pub fn predict_warning(place: &str) -> String {
    format!("warning: {place}: no words in it; answered as an empty review\n")
}

/// Runs `predict` and checks it answers: exit 0, `answers` lines on stdout, and on stderr exactly
/// the warnings for `places` (see [`predict_warning`]). Returns stdout.
pub fn predict_answered(cmd: &mut Command, answers: usize, places: &[&str]) -> String {
    let (code, out, err) = run(cmd);
    assert_eq!(code, 0, "{cmd:?} failed: {err}");
    assert_eq!(out.lines().count(), answers, "{out}");
    let warnings: String = places.iter().map(|p| predict_warning(p)).collect();
    assert_eq!(err, warnings);
    eprint!("{err}");
    out
}

/// Runs `cmd`, which must succeed; returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let (code, out, err) = run(cmd);
    assert_eq!(code, 0, "{cmd:?} failed: {err}\n{out}");
    out
}

/// A model file's metadata value `key` (read straight from the safetensors header).
pub fn model_meta(model: &Path, key: &str) -> String {
    let bytes = std::fs::read(model).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header["__metadata__"][key].as_str().unwrap().to_string()
}

/// The failure contract on a finished command's `(exit, stdout, stderr)`: exit `code`, no panic,
/// stderr exactly one line starting with `error: ` and holding every needle. Returns stderr,
/// which `--nocapture` shows (the README's "What happens when..." tables quote these lines).
pub fn assert_refused(
    cmd: &Command,
    (got, _, err): (i32, String, String),
    code: i32,
    needles: &[&str],
) -> String {
    assert!(
        !err.contains("panicked") && got != 101,
        "{cmd:?} panicked: {err}"
    );
    assert_eq!(got, code, "{cmd:?}: want exit {code}, got {got}: {err}");
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
    eprintln!("[exit {got}] {}", err.trim_end());
    err
}

/// A tiny trained model in its run folder (history.svg beside it), made once per test process,
/// for the `serve` tests.
pub fn serve_model() -> &'static PathBuf {
    static MODEL: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    MODEL.get_or_init(|| {
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("serve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let archive = tiny_archive(&dir, 20);
        let (code, _, err) = run(bin()
            .args([
                "train",
                "--epochs",
                "2",
                "--quiet",
                "--threads",
                "2",
                "--data",
            ])
            .arg(&archive)
            .arg("--out")
            .arg(dir.join("run"))
            .args(small_model_flags()));
        assert_eq!(code, 0, "{err}");
        dir.join("run/model.safetensors")
    })
}

/// A running `imdb-lstm serve`; killed when dropped (see [`ServeHandle::stop`] for SIGTERM).
pub struct ServeHandle {
    pub child: std::process::Child,
    /// `http://127.0.0.1:PORT`, from the first line the server printed.
    pub url: String,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// Starts `serve --model MODEL --addr 127.0.0.1:0 --threads 2 EXTRA...` and waits until it
/// listens.
pub fn serve_start(model: &Path, extra: &[&str]) -> ServeHandle {
    use std::io::{BufRead, Read};
    use std::process::Stdio;
    let mut child = bin()
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--threads",
            "2",
            "--model",
        ])
        .arg(model)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut err = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut first = String::new();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut first).unwrap();
    let Some(url) = first.trim().strip_prefix("listening on ") else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "serve did not start: stdout {first:?}, stderr {:?}",
            stderr.join().unwrap()
        );
    };
    ServeHandle {
        url: url.to_string(),
        child,
        stderr: Some(stderr),
    }
}

impl ServeHandle {
    /// `host:port` of the server.
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        let r = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(r, 0, "kill failed");
    }

    /// Waits (at most `secs` seconds) for the server to exit; returns its exit code and stderr.
    pub fn wait(mut self, secs: u64) -> (i32, String) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("serve still ran {secs} s after it was told to stop");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let err = self.stderr.take().unwrap().join().unwrap();
        (status.code().unwrap_or(-1), err)
    }
}

impl Drop for ServeHandle {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP request to the server: `(status, content type, body)`, errors included.
pub fn serve_http(method: &str, url: &str, body: Option<&str>) -> (u16, String, String) {
    let req = ureq::request(method, url).timeout(std::time::Duration::from_secs(60));
    let r = match body {
        Some(b) => req.set("content-type", "application/json").send_string(b),
        None => req.call(),
    };
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = resp.status();
    let ct = resp.content_type().to_string();
    (status, ct, resp.into_string().unwrap())
}
