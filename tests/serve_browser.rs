//! The page at `/` in a real browser: headless Chromium (Debian's `chromium`; CI installs it)
//! driven over the DevTools protocol on `--remote-debugging-pipe` (JSON messages ended by a NUL
//! byte on fds 3 and 4: no websocket, no driver). It types a review, clicks the button, and
//! checks the tinted words in the DOM against `/v1/explain`; then the model card, and a
//! screenshot (written to docs/serve.png when IMDB_LSTM_UPDATE_SCREENSHOT is set).
//!
//! Without a chromium binary the test says so and passes (CI has one). The model is the tiny
//! test model, or the one IMDB_LSTM_SERVE_MODEL names (a real model makes a better picture).

mod common;
use common::*;
use serde_json::{json, Value};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The chromium binary: $CHROMIUM, else the first of the usual names on PATH.
fn browser_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome", "chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// A headless Chromium and one page of it, spoken to over the DevTools pipe.
struct Browser {
    child: Child,
    to: File,
    from: BufReader<File>,
    session: String,
    next_id: u64,
    _profile: tempfile::TempDir,
}

/// Two pipes `(read, write)`, close-on-exec so only the fds dup2'd into the child stay open.
fn pipe() -> (i32, i32) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array it is given.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    (fds[0], fds[1])
}

impl Browser {
    fn start(binary: &Path) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let (cmd_read, cmd_write) = pipe();
        let (resp_read, resp_write) = pipe();
        let mut c = Command::new(binary);
        c.args([
            "--headless",
            "--no-sandbox", // CI runs as root, where Chromium's sandbox refuses to start
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--remote-debugging-pipe",
            "about:blank",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: only async-signal-safe fcntl and dup2 between fork and exec. The ends are
        // first copied above 3 and 4 (a pipe may already be fd 3 or 4, and dup2 onto itself
        // would keep close-on-exec); dup2's copies are open across exec.
        unsafe {
            c.pre_exec(move || {
                let (r, w) = (
                    libc::fcntl(cmd_read, libc::F_DUPFD, 10),
                    libc::fcntl(resp_write, libc::F_DUPFD, 10),
                );
                if r < 0 || w < 0 || libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = c.spawn().expect("chromium starts");
        // SAFETY: the parent's ends, owned from here on; the child's ends are closed here.
        let (to, from) = unsafe {
            libc::close(cmd_read);
            libc::close(resp_write);
            (File::from_raw_fd(cmd_write), File::from_raw_fd(resp_read))
        };
        let mut b = Browser {
            child,
            to,
            from: BufReader::new(from),
            session: String::new(),
            next_id: 0,
            _profile: profile,
        };
        let target = b.call("Target.createTarget", json!({"url": "about:blank"}));
        let attached = b.call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        b.call("Page.enable", json!({}));
        b.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1000, "height": 1300, "deviceScaleFactor": 1, "mobile": false}),
        );
        b
    }

    /// Sends a command (to the page once attached) and returns its result; events that come
    /// before it are skipped.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).unwrap();
        loop {
            let mut buf = Vec::new();
            let n = self.from.read_until(0, &mut buf).unwrap();
            assert!(n > 0, "chromium closed the pipe during {method}");
            buf.pop();
            let v: Value = serde_json::from_slice(&buf).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression (awaited when it is a promise).
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// Waits until `expr` is true.
    fn wait_for(&mut self, expr: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.eval(expr) != json!(true) {
            assert!(
                Instant::now() < deadline,
                "{expr} still false after {secs} s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A left click at the middle of the element `id`, as a user makes it.
    fn click(&mut self, id: &str) {
        let r = self.eval(&format!(
            "(() => {{ const r = document.getElementById('{id}').getBoundingClientRect(); \
             return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
        ));
        let (x, y) = (r[0].as_f64().unwrap(), r[1].as_f64().unwrap());
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            );
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const REVIEW: &str = "A wonderful film with a brilliant story, though the plot was boring and the \
                      zork ending awful.";

#[test]
fn serve_page_in_headless_chromium() {
    let Some(chromium) = browser_binary() else {
        eprintln!(
            "NOTE: no chromium binary (set CHROMIUM or install Debian's chromium package): \
             skipping the browser test of the page"
        );
        return;
    };
    let model = std::env::var_os("IMDB_LSTM_SERVE_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| serve_model().clone());
    let s = serve_start(&model, &[]);
    let mut b = Browser::start(&chromium);
    b.call("Page.navigate", json!({"url": format!("{}/", s.url)}));
    b.wait_for(
        "document.readyState === 'complete' && document.querySelectorAll('#summary tr').length > 1",
        30,
    );

    // Type the review into the box and press the button.
    b.click("text");
    b.call("Input.insertText", json!({"text": REVIEW}));
    assert_eq!(
        b.eval("document.getElementById('text').value"),
        json!(REVIEW)
    );
    b.click("submit");
    b.wait_for("document.querySelectorAll('#words .tok').length > 0", 60);

    // What the page shows against what /v1/explain says for the same text.
    let (status, _, e) = serve_http(
        "POST",
        &format!("{}/v1/explain", s.url),
        Some(&json!({"text": REVIEW}).to_string()),
    );
    assert_eq!(status, 200, "{e}");
    let e: Value = serde_json::from_str(&e).unwrap();
    assert_eq!(
        b.eval("document.getElementById('label').textContent"),
        e["label"]
    );
    let p: f64 = b
        .eval("document.getElementById('probability').textContent")
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((p - e["probability"].as_f64().unwrap()).abs() < 1e-4);
    let shown = b.eval(
        "[...document.querySelectorAll('#words .tok')].map(s => ({text: s.textContent, \
         cls: s.className, title: s.title, c: Number(s.dataset.contribution), \
         bg: getComputedStyle(s).backgroundColor}))",
    );
    let shown = shown.as_array().unwrap();
    let want: Vec<&Value> = e["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "word" || t["kind"] == "oov")
        .collect();
    assert_eq!(shown.len(), want.len(), "{shown:?}");
    let largest = want
        .iter()
        .map(|t| t["contribution"].as_f64().unwrap().abs())
        .fold(0.0, f64::max);
    let mut tinted = (0, 0);
    for (s, t) in shown.iter().zip(&want) {
        let c = t["contribution"].as_f64().unwrap();
        assert_eq!(s["text"], t["text"]);
        assert!((s["c"].as_f64().unwrap() - c).abs() < 1e-9, "{s} vs {t}");
        assert_eq!(
            s["title"].as_str().unwrap().split(' ').next().unwrap(),
            format!("{c:+.4}")
        );
        let cls = s["cls"].as_str().unwrap();
        assert_eq!(cls.contains("pos"), c >= 0.0, "{s}");
        assert_eq!(cls.contains("oov"), t["kind"] == "oov", "{s}");
        // rgba(R, G, B, A): green for a raise, red for a fall, alpha by strength.
        let bg = s["bg"].as_str().unwrap();
        let nums: Vec<f64> = bg
            .trim_start_matches("rgba(")
            .trim_start_matches("rgb(")
            .trim_end_matches(')')
            .split(',')
            .map(|v| v.trim().parse().unwrap())
            .collect();
        let alpha = nums.get(3).copied().unwrap_or(1.0);
        assert!(
            (alpha - 0.85 * c.abs() / largest).abs() < 0.01,
            "{bg} for {c}"
        );
        if alpha > 0.0 {
            assert_eq!(nums[1] > nums[0], c >= 0.0, "{bg} for {c}");
            if c >= 0.0 {
                tinted.0 += 1
            } else {
                tinted.1 += 1
            }
        }
    }
    assert!(shown
        .iter()
        .any(|s| s["text"] == "zork" && s["cls"].as_str().unwrap().contains("oov")));
    eprintln!(
        "{} words shown, {} tinted green, {} red",
        shown.len(),
        tinted.0,
        tinted.1
    );

    // The model card: a row per layer, the history plot and the graph drawn.
    let (_, _, m) = serve_http("GET", &format!("{}/v1/model", s.url), None);
    let m: Value = serde_json::from_str(&m).unwrap();
    let rows = b.eval("document.querySelectorAll('#summary tr').length");
    assert_eq!(rows, json!(m["layers"].as_array().unwrap().len() + 1));
    b.wait_for("document.getElementById('graph').naturalWidth > 0", 10);
    b.wait_for("document.getElementById('history').naturalWidth > 0", 10);
    assert!(b
        .eval("document.getElementById('facts').textContent")
        .as_str()
        .unwrap()
        .contains("val_accuracy"));

    // The screenshot: the whole page.
    let height = b
        .eval("document.documentElement.scrollHeight")
        .as_f64()
        .unwrap();
    b.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1000, "height": height.min(4000.0) as u64, "deviceScaleFactor": 1, "mobile": false}),
    );
    let shot = b.call("Page.captureScreenshot", json!({"format": "png"}));
    use base64::Engine;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    let img = image::load_from_memory(&png).unwrap();
    assert_eq!(img.width(), 1000);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve.png");
    std::fs::write(&out, &png).unwrap();
    if std::env::var_os("IMDB_LSTM_UPDATE_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join("serve.png"), &png).unwrap();
    }
    eprintln!("screenshot: {}", out.display());
}
