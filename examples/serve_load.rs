//! Load benchmark of `imdb-lstm serve`: starts the server on a free loopback port, runs
//! `--clients` concurrent clients posting to /v1/predict for `--seconds`, then stops it with
//! SIGTERM, and prints requests/s, texts/s, p50/p99 latency, errors and the server's peak RSS,
//! beside the batch-1024 rate of the same texts through the library in this process (what
//! `predict` does). Bounded and loopback only: it talks to the server it started and nothing else.
//!
//! `cargo build --release && cargo run --release --example serve_load -- --model M
//!  [--file REVIEWS.txt] [--clients 64] [--seconds 30] [--texts 1] [--threads N] [--max-batch N]`
//! (`--max-batch 1` turns batching off, for comparison).
//! `--file`: reviews one per line (default: synthetic reviews of about 230 words, the IMDB mean).

use anyhow::{bail, Context, Result};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Args {
    model: PathBuf,
    file: Option<PathBuf>,
    clients: usize,
    seconds: f64,
    texts: usize,
    threads: Option<usize>,
    max_batch: Option<usize>,
}

fn args() -> Result<Args> {
    let mut a = Args {
        model: PathBuf::new(),
        file: None,
        clients: 64,
        seconds: 30.0,
        texts: 1,
        threads: None,
        max_batch: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => a.model = value()?.into(),
            "--file" => a.file = Some(value()?.into()),
            "--clients" => a.clients = value()?.parse()?,
            "--seconds" => a.seconds = value()?.parse()?,
            "--texts" => a.texts = value()?.parse()?,
            "--threads" => a.threads = Some(value()?.parse()?),
            "--max-batch" => a.max_batch = Some(value()?.parse()?),
            f => bail!("unknown flag {f}; see the comment at the top of examples/serve_load.rs"),
        }
    }
    if a.model.as_os_str().is_empty() {
        bail!("--model PATH is required");
    }
    if !(1..=1024).contains(&a.clients) || !(0.1..=600.0).contains(&a.seconds) || a.texts == 0 {
        bail!("--clients 1..1024, --seconds 0.1..600, --texts 1 or more");
    }
    Ok(a)
}

/// Reviews from `file`, or synthetic ones.
fn reviews(file: Option<&PathBuf>) -> Result<Vec<String>> {
    if let Some(f) = file {
        let r = std::io::BufReader::new(std::fs::File::open(f)?);
        let v: Vec<String> = r
            .lines()
            .collect::<std::io::Result<Vec<String>>>()?
            .into_iter()
            .filter(|l: &String| !l.trim().is_empty())
            .collect();
        if v.is_empty() {
            bail!("{} has no reviews", f.display());
        }
        return Ok(v);
    }
    let words = [
        "the",
        "film",
        "was",
        "a",
        "wonderful",
        "story",
        "and",
        "boring",
        "plot",
        "actors",
        "great",
        "awful",
        "of",
        "it",
        "this",
        "movie",
        "i",
        "loved",
        "hated",
        "scenes",
        "but",
    ];
    Ok((0..1000)
        .map(|i| {
            (0..230)
                .map(|k| words[(i * 31 + k * 17 + k * k) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect())
}

/// The server's peak resident memory (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() -> Result<()> {
    let a = args()?;
    let texts = reviews(a.file.as_ref())?;
    // The imdb-lstm binary built beside this example (target/release/examples/..).
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("imdb-lstm"))
        .filter(|p| p.is_file())
        .context("build the binary first: cargo build --release")?;
    let mut cmd = Command::new(&bin);
    cmd.args(["serve", "--addr", "127.0.0.1:0", "--model"])
        .arg(&a.model)
        .stdout(Stdio::piped());
    if let Some(t) = a.threads {
        cmd.args(["--threads", &t.to_string()]);
    }
    if let Some(b) = a.max_batch {
        cmd.args(["--max-batch", &b.to_string()]);
    }
    let mut server = cmd.spawn()?;
    let mut first = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap()).read_line(&mut first)?;
    let url = first
        .trim()
        .strip_prefix("listening on ")
        .context("serve did not start")?
        .to_string();
    let predict = format!("{url}/v1/predict");

    let start = Instant::now();
    let end = start + Duration::from_secs_f64(a.seconds);
    let per_client: Vec<(Vec<f64>, usize)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..a.clients)
            .map(|c| {
                let (texts, predict) = (&texts, &predict);
                s.spawn(move || {
                    let agent = ureq::AgentBuilder::new()
                        .timeout(Duration::from_secs(60))
                        .build();
                    let (mut lat, mut errors, mut i) = (Vec::new(), 0, c * 7919);
                    while Instant::now() < end {
                        let batch: Vec<&String> = (0..a.texts)
                            .map(|k| &texts[(i + k) % texts.len()])
                            .collect();
                        i += a.texts;
                        let body = serde_json::json!({ "texts": batch }).to_string();
                        let t = Instant::now();
                        let ok = agent
                            .post(predict)
                            .set("content-type", "application/json")
                            .send_string(&body)
                            .map(|r| r.into_string().is_ok())
                            .unwrap_or(false);
                        if ok {
                            lat.push(t.elapsed().as_secs_f64());
                        } else {
                            errors += 1;
                        }
                    }
                    (lat, errors)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let took = start.elapsed().as_secs_f64();
    let rss = peak_rss_mib(server.id());
    let health = ureq::get(&format!("{url}/healthz"))
        .call()
        .ok()
        .and_then(|r| r.into_string().ok())
        .unwrap_or_default();
    // SIGTERM: the server finishes and exits 0.
    Command::new("kill").arg(server.id().to_string()).status()?;
    let status = server.wait()?;

    let mut lat: Vec<f64> = per_client.iter().flat_map(|c| c.0.clone()).collect();
    let errors: usize = per_client.iter().map(|c| c.1).sum();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)));
    println!(
        "{} clients, {:.1} s, {} text(s) per request: {:.0} requests/s, {:.0} texts/s, \
         p50 {:.1} ms, p99 {:.1} ms, {errors} errors, server peak RSS {} MiB, server {status}",
        a.clients,
        took,
        a.texts,
        lat.len() as f64 / took,
        (lat.len() * a.texts) as f64 / took,
        pct(0.5).copied().unwrap_or(f64::NAN) * 1e3,
        pct(0.99).copied().unwrap_or(f64::NAN) * 1e3,
        rss.map_or("?".into(), |r| format!("{r:.0}"))
    );
    println!("server counts: {health}");

    // The same texts through the library, batch 1024, as `predict` runs them.
    let threads = a
        .threads
        .unwrap_or_else(|| imdb_lstm::cli::threads(None).unwrap());
    let mut model = imdb_lstm::infer::Classifier::load(&a.model, threads)?;
    model.probabilities(&texts[..1]);
    let n = texts.len().max(8192);
    let all: Vec<&String> = texts.iter().cycle().take(n).collect();
    let t = Instant::now();
    for chunk in all.chunks(1024) {
        model.probabilities(chunk);
    }
    println!(
        "predict's path, batch 1024, same texts: {:.0} texts/s",
        n as f64 / t.elapsed().as_secs_f64()
    );
    Ok(())
}
