//! `imdb-lstm serve` over 127.0.0.1, through the real binary on a tiny trained model: every
//! endpoint, every error a client can cause (JSON, with its status), slow clients, SIGTERM with
//! a request in flight, a full queue, and many concurrent clients answered as `predict` answers.

mod common;
use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn body_json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// `predict --json`'s lines for `texts`, parsed.
fn serve_predict_cli(texts: &[String]) -> Vec<Value> {
    let out = predict_answered(
        bin()
            .args(["predict", "--json", "--threads", "2", "--model"])
            .arg(serve_model())
            .args(texts),
        texts.len(),
        &[],
    );
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Checks an answer is the JSON error `{"error": ...}` with `status` and every needle; prints
/// the line (the README's table quotes it).
fn refused((status, ct, body): (u16, String, String), want: u16, needles: &[&str], what: &str) {
    assert_eq!(status, want, "{what}: {body}");
    assert_eq!(ct, "application/json", "{what}");
    let v = body_json(&body);
    let msg = v["error"].as_str().unwrap_or_else(|| panic!("{body}"));
    assert_eq!(v.as_object().unwrap().len(), 1, "{body}");
    for n in needles {
        assert!(msg.contains(n), "{what}: {msg:?} should contain {n:?}");
    }
    eprintln!("[{status}] {what}: {body}");
}

fn texts(n: usize) -> Vec<String> {
    (0..n).map(|i| review(i % 2 == 0, 7 * i + 3)).collect()
}

/// Every endpoint answers; /v1/predict gives `predict --json`'s answers with every label's
/// probability; /v1/explain gives `predict --explain --json`'s explanation.
#[test]
fn serve_endpoints_answer() {
    let s = serve_start(serve_model(), &[]);
    let u = &s.url;

    let (status, ct, page) = serve_http("GET", &format!("{u}/"), None);
    assert_eq!((status, ct.as_str()), (200, "text/html"));
    for needle in [
        "<textarea",
        "/v1/explain",
        "/v1/model",
        "/history.svg",
        "/model.svg",
    ] {
        assert!(page.contains(needle), "the page lacks {needle}");
    }
    // Self-contained: nothing loaded from another host.
    assert!(!page.contains("http://") && !page.contains("https://") && !page.contains("//cdn"));

    let (status, _, h) = serve_http("GET", &format!("{u}/healthz"), None);
    assert_eq!(status, 200);
    assert_eq!(body_json(&h)["status"], "ok");

    let (status, ct, m) = serve_http("GET", &format!("{u}/v1/model"), None);
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    let m = body_json(&m);
    assert_eq!(m["labels"], json!(["neg", "pos"]));
    assert!(m["summary"].as_str().unwrap().contains("Total params"));
    assert_eq!(m["preprocessing"]["maxlen"], 24);
    assert_eq!(m["training"]["epochs"], 2);
    let kinds: Vec<&str> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["Embedding", "LSTM", "Dense"]);

    for pic in ["model.svg", "history.svg"] {
        let (status, ct, svg) = serve_http("GET", &format!("{u}/{pic}"), None);
        assert_eq!((status, ct.as_str()), (200, "image/svg+xml"), "{pic}");
        roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{pic}: {e}"));
    }

    let mut t = texts(4);
    // Markup, escapes and other scripts are just text.
    t.push("<script>alert(1)</script>\u{1b}[2J 😀 très bien, wonderful".into());
    let (status, _, p) = serve_http(
        "POST",
        &format!("{u}/v1/predict"),
        Some(&json!({ "texts": t }).to_string()),
    );
    assert_eq!(status, 200, "{p}");
    let got = body_json(&p)["predictions"].as_array().unwrap().clone();
    let want = serve_predict_cli(&t);
    assert_eq!(got.len(), 5);
    for (g, w) in got.iter().zip(&want) {
        for k in ["index", "line", "label"] {
            assert_eq!(g[k], w[k], "{k}: {g} vs {w}");
        }
        let (pg, pw) = (
            g["probability"].as_f64().unwrap(),
            w["probability"].as_f64().unwrap(),
        );
        assert!((pg - pw).abs() < 1e-6, "{g} vs {w}");
        let (neg, pos) = (
            g["probabilities"]["neg"].as_f64().unwrap(),
            g["probabilities"]["pos"].as_f64().unwrap(),
        );
        assert!(
            (pos - pg).abs() < 1e-12 && (neg + pos - 1.0).abs() < 1e-6,
            "{g}"
        );
    }

    // No words, or a NUL: answered as an empty review.
    let (status, _, p) = serve_http(
        "POST",
        &format!("{u}/v1/predict"),
        Some(r#"{"texts": ["", "\u0000", "   "]}"#),
    );
    assert_eq!(status, 200, "{p}");
    let empty = body_json(&p)["predictions"].as_array().unwrap().clone();
    assert!(
        empty
            .iter()
            .all(|e| e["probability"] == empty[0]["probability"]),
        "{p}"
    );

    let text = "A superb film, I loved the wonderful story, zork";
    for method in ["integrated-gradients", "occlusion"] {
        let (status, _, e) = serve_http(
            "POST",
            &format!("{u}/v1/explain"),
            Some(&json!({ "text": text, "method": method }).to_string()),
        );
        assert_eq!(status, 200, "{e}");
        let e = body_json(&e);
        let (code, out, err) = run(bin()
            .args([
                "predict",
                "--explain",
                "--json",
                "--threads",
                "2",
                "--method",
                method,
            ])
            .arg("--model")
            .arg(serve_model())
            .arg(text));
        assert_eq!(code, 0, "{err}");
        let w = body_json(&out);
        for k in [
            "method",
            "steps",
            "label",
            "class",
            "truncated",
            "cut_words",
        ] {
            assert_eq!(e[k], w[k], "{method} {k}");
        }
        let (et, wt) = (
            e["tokens"].as_array().unwrap(),
            w["tokens"].as_array().unwrap(),
        );
        assert_eq!(et.len(), 24);
        assert!(et.iter().any(|t| t["kind"] == "oov" && t["text"] == "zork"));
        for (a, b) in et.iter().zip(wt) {
            assert_eq!(
                (&a["text"], &a["kind"], &a["id"]),
                (&b["text"], &b["kind"], &b["id"])
            );
            let (ca, cb) = (
                a["contribution"].as_f64().unwrap(),
                b["contribution"].as_f64().unwrap(),
            );
            assert!((ca - cb).abs() < 1e-6, "{method}: {a} vs {b}");
        }
    }
    // A long review is cut as the model cuts it, and says so.
    let long = vec!["great"; 40].join(" ");
    let (_, _, e) = serve_http(
        "POST",
        &format!("{u}/v1/explain"),
        Some(&json!({ "text": long, "steps": 8 }).to_string()),
    );
    let e = body_json(&e);
    assert_eq!(
        (
            e["truncated"].clone(),
            e["cut_words"].clone(),
            e["steps"].clone()
        ),
        (json!(true), json!(16), json!(8))
    );
}

/// Every bad request is a JSON error with its status, and the server goes on answering.
#[test]
fn serve_refuses_bad_requests() {
    let s = serve_start(
        serve_model(),
        &[
            "--max-body",
            "2048",
            "--max-texts",
            "3",
            "--max-text-bytes",
            "100",
        ],
    );
    let u = &s.url;
    let post = |path: &str, body: &str| serve_http("POST", &format!("{u}{path}"), Some(body));
    refused(
        post("/v1/predict", "{\"texts\": [\"good\""),
        400,
        &["is not JSON", "EOF"],
        "malformed JSON",
    );
    refused(
        post("/v1/predict", "not json"),
        400,
        &["is not JSON"],
        "not JSON",
    );
    refused(post("/v1/predict", ""), 400, &["is not JSON"], "empty body");
    refused(
        post("/v1/predict", r#"{"texts": "good"}"#),
        400,
        &["is not a predict request", "invalid type"],
        "texts a string",
    );
    refused(
        post("/v1/predict", r#"{"texts": [1, 2]}"#),
        400,
        &["invalid type: integer"],
        "texts numbers",
    );
    refused(
        post("/v1/predict", r#"{"text": ["good"]}"#),
        400,
        &["unknown field `text`"],
        "misspelt field",
    );
    refused(
        post("/v1/predict", "{}"),
        400,
        &["missing field `texts`"],
        "no texts",
    );
    refused(
        post("/v1/predict", r#"[["good"]]"#),
        400,
        &["is not a predict request", "a JSON object"],
        "a list",
    );
    refused(
        post("/v1/predict", r#"{"texts": []}"#),
        400,
        &["texts is empty"],
        "empty list",
    );
    refused(
        post(
            "/v1/predict",
            &json!({"texts": ["a", "b", "c", "d"]}).to_string(),
        ),
        413,
        &["4 texts", "--max-texts 3"],
        "too many texts",
    );
    refused(
        post(
            "/v1/predict",
            &json!({"texts": ["ok", "x".repeat(101)]}).to_string(),
        ),
        413,
        &["texts[1] is 101 bytes", "--max-text-bytes 100"],
        "text too long",
    );
    refused(
        post(
            "/v1/predict",
            &json!({"texts": ["y".repeat(3000)]}).to_string(),
        ),
        413,
        &["--max-body 2048"],
        "body too large",
    );
    refused(
        post("/v1/explain", r#"{"texts": ["good"]}"#),
        400,
        &["is not an explain request", "unknown field"],
        "explain with texts",
    );
    refused(
        post("/v1/explain", r#"{"text": "good", "method": "magic"}"#),
        400,
        &[
            "method \"magic\" is unknown",
            "occlusion or integrated-gradients",
        ],
        "unknown method",
    );
    refused(
        post("/v1/explain", r#"{"text": "good", "steps": 0}"#),
        400,
        &["steps 0 is outside 1 to 4096"],
        "zero steps",
    );
    refused(
        post("/v1/explain", r#"{"text": "good", "steps": -3}"#),
        400,
        &["invalid value: integer `-3`"],
        "negative steps",
    );
    refused(
        post(
            "/v1/explain",
            r#"{"text": "good", "method": "occlusion", "steps": 8}"#,
        ),
        400,
        &["occlusion takes no steps"],
        "steps with occlusion",
    );
    refused(
        post("/v1/explain", &json!({"text": "z".repeat(101)}).to_string()),
        413,
        &["text is 101 bytes"],
        "explained text too long",
    );
    // A body announced as 10 GB is refused before it is read.
    let (got, _) = raw_exchange(
        s.addr(),
        b"POST /v1/predict HTTP/1.1\r\nhost: x\r\ncontent-length: 10000000000\r\n\r\n",
        10,
    );
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");
    assert!(got.contains("--max-body 2048"), "{got}");
    // A chunked body, of no announced length, is cut off at the limit.
    let mut chunked =
        b"POST /v1/predict HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nc00\r\n"
            .to_vec();
    chunked.extend(vec![b' '; 2100]);
    let (got, _) = raw_exchange(s.addr(), &chunked, 10);
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");
    assert!(got.contains("--max-body 2048"), "{got}");
    refused(
        serve_http("GET", &format!("{u}/v2/predict"), None),
        404,
        &["no such path: /v2/predict", "POST /v1/predict"],
        "unknown path",
    );
    refused(
        serve_http("GET", &format!("{u}/v1/predict"), None),
        405,
        &["use GET for", "POST for"],
        "wrong method",
    );
    refused(
        serve_http("DELETE", &format!("{u}/"), None),
        405,
        &["method not allowed"],
        "DELETE the page",
    );
    // Still answering.
    let (status, _, b) = post("/v1/predict", r#"{"texts": ["good"]}"#);
    assert_eq!(status, 200, "{b}");
}

/// A raw request on a fresh connection; returns what the server sent before closing or
/// `secs` seconds, and how long that took.
fn raw_exchange(addr: &str, send: &[u8], secs: u64) -> (String, Duration) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
    c.write_all(send).unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got); // ends at close (or the read timeout)
    (String::from_utf8_lossy(&got).into_owned(), start.elapsed())
}

/// A client that stalls in its body gets a JSON 408 after --timeout; one that stalls in its
/// headers is disconnected.
#[test]
fn serve_times_out_slow_clients() {
    let s = serve_start(serve_model(), &["--timeout", "1"]);
    let head = "POST /v1/predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"texts\": [";
    let (got, took) = raw_exchange(s.addr(), head.as_bytes(), 10);
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(
        got.contains("{\"error\":\"no answer within --timeout 1 s"),
        "{got}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    eprintln!("[408] stalled body: {}", got.lines().last().unwrap());

    let (got, took) = raw_exchange(s.addr(), b"GET /healthz HTTP/1.1\r\nhost: x\r\n", 10);
    assert!(!got.contains("200 OK"), "{got}");
    assert!(
        took < Duration::from_secs(5),
        "stalled headers kept the connection {took:?}"
    );
    // Still answering.
    assert_eq!(
        serve_http("GET", &format!("{}/healthz", s.url), None).0,
        200
    );
}

/// SIGTERM: the server stops accepting at once, finishes the request it is reading, and exits 0.
#[test]
fn serve_sigterm_finishes_in_flight_request() {
    let s = serve_start(serve_model(), &[]);
    let body = json!({"texts": ["a wonderful film", "an awful film"]}).to_string();
    let mut c = TcpStream::connect(s.addr()).unwrap();
    let head = format!(
        "POST /v1/predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    // Half the body is sent: the request is in flight when SIGTERM comes.
    c.write_all(head.as_bytes()).unwrap();
    c.write_all(&body.as_bytes()[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    s.sigterm();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        TcpStream::connect(s.addr()).is_err(),
        "still accepting connections after SIGTERM"
    );
    c.write_all(&body.as_bytes()[10..]).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut got = String::new();
    c.read_to_string(&mut got).unwrap();
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    let answer = body_json(got.split("\r\n\r\n").nth(1).unwrap());
    assert_eq!(answer["predictions"].as_array().unwrap().len(), 2);
    let (code, err) = s.wait(20);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("SIGTERM: no new connections; finishing the requests in flight"),
        "{err}"
    );
}

/// 16 clients at once, 6 requests each of 1 to 3 texts: every answer is `predict`'s, and the
/// requests shared batches.
#[test]
fn serve_concurrent_clients_get_predicts_answers() {
    let s = serve_start(serve_model(), &["--max-wait-ms", "20"]);
    let all = texts(40);
    let want = serve_predict_cli(&all);
    let url = format!("{}/v1/predict", s.url);
    let start = std::sync::Barrier::new(16);
    let requests = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..16)
            .map(|client| {
                let (all, want, url, start) = (&all, &want, &url, &start);
                sc.spawn(move || {
                    start.wait();
                    for r in 0..6 {
                        let first = (client * 7 + r * 5) % 38;
                        let n = 1 + (client + r) % 3;
                        let body = json!({ "texts": &all[first..first + n] }).to_string();
                        let (status, _, b) = serve_http("POST", url, Some(&body));
                        assert_eq!(status, 200, "{b}");
                        let got = body_json(&b)["predictions"].as_array().unwrap().clone();
                        assert_eq!(got.len(), n);
                        for (i, g) in got.iter().enumerate() {
                            let w = &want[first + i];
                            assert_eq!(g["label"], w["label"]);
                            let d = g["probability"].as_f64().unwrap()
                                - w["probability"].as_f64().unwrap();
                            assert!(d.abs() < 1e-6, "{g} vs {w}");
                        }
                    }
                })
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
        16 * 6
    });
    let (_, _, h) = serve_http("GET", &format!("{}/healthz", s.url), None);
    let h = body_json(&h);
    let batches = h["batches"].as_u64().unwrap();
    assert!(
        batches < requests,
        "{requests} requests ran in {batches} batches: no batching"
    );
    eprintln!("{requests} concurrent requests ran in {batches} batches");
}

/// With a queue of 1 and slow explanations, requests beyond the queue get a JSON 503 at once;
/// the others are answered.
#[test]
fn serve_full_queue_is_503() {
    let s = serve_start(serve_model(), &["--queue", "1"]);
    let url = format!("{}/v1/explain", s.url);
    let body = json!({"text": vec!["wonderful film"; 20].join(" "), "steps": 4096}).to_string();
    let answers: Vec<(u16, String, String)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8)
            .map(|_| sc.spawn(|| serve_http("POST", &url, Some(&body))))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let busy: Vec<_> = answers.iter().filter(|a| a.0 == 503).collect();
    assert!(
        !busy.is_empty(),
        "no request was refused: {:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    assert!(answers.iter().all(|a| a.0 == 200 || a.0 == 503));
    refused(
        busy[0].clone(),
        503,
        &["busy: 1 requests are already waiting"],
        "queue full",
    );
}

/// Bad flags and models are one `error:` line and exit 1, before anything listens.
#[test]
fn serve_refuses_bad_flags() {
    let model = serve_model();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--addr", "localhost"],
            &["--addr \"localhost\" is not an address and port"],
        ),
        (
            &["--max-batch", "0"],
            &["--max-batch 0 is outside 1 to 65536"],
        ),
        (&["--max-body", "10"], &["--max-body 10 is outside 1024 to"]),
        (&["--queue", "0"], &["--queue 0 is outside"]),
        (&["--timeout", "0"], &["--timeout 0 is outside"]),
        (&["--threads", "0"], &["--threads 0"]),
    ];
    for (flags, needles) in cases {
        let mut cmd = bin();
        cmd.args(["serve", "--model"]).arg(model).args(*flags);
        let r = msgs_run_within(&mut cmd, 60);
        assert_refused(&cmd, r, 1, needles);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin();
    cmd.args(["serve", "--addr", "127.0.0.1:0", "--model"])
        .arg(dir.path().join("none.safetensors"));
    let r = msgs_run_within(&mut cmd, 60);
    assert_refused(&cmd, r, 1, &["none.safetensors"]);
    // A port in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let mut cmd = bin();
    cmd.args(["serve", "--addr", &port, "--model"]).arg(model);
    let r = msgs_run_within(&mut cmd, 60);
    assert_refused(
        &cmd,
        r,
        1,
        &[
            &format!("--addr {port}: cannot listen there"),
            "pick another --addr port",
        ],
    );
}
