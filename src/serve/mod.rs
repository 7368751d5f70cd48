//! `imdb-lstm serve`: a trained model over HTTP, with a page that shows why it answered.
//!
//! axum routes ([`api`]) on hyper and tokio; one inference thread owns the model and batches
//! the requests that arrive together ([`batch`]). The accept loop is ours rather than
//! `axum::serve` for three bounds that one lacks: a header-read timeout (a client that never
//! finishes its headers is cut off), a cap on open connections (each may hold a body of up to
//! `--max-body`), and graceful shutdown that finishes the requests in flight.

pub mod api;
pub mod batch;

use crate::infer::Classifier;
use anyhow::{bail, Context, Result};
use batch::{Batcher, Batching};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What one request may ask for.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes of a request body.
    pub max_body: usize,
    /// Texts in one predict request.
    pub max_texts: usize,
    /// Bytes of one text.
    pub max_text_bytes: usize,
    /// Requests waiting for the model.
    pub queue: usize,
    /// From the first byte of a request's headers to its answer.
    pub timeout: Duration,
}

/// Everything `serve` needs.
#[derive(Clone, Debug)]
pub struct Config {
    pub model: PathBuf,
    pub addr: SocketAddr,
    pub threads: usize,
    pub batching: Batching,
    pub limits: Limits,
    /// Connections open at once; more wait to be accepted.
    pub max_connections: usize,
}

/// The largest history.svg served: training writes a few tens of KiB.
const MAX_HISTORY_SVG: u64 = 16 << 20;

/// `GET /v1/model`: the model file's summary, configuration, labels and training facts.
fn card(c: &Classifier) -> Result<serde_json::Value> {
    let f = &c.file;
    let summary =
        crate::report::summary::summary(&f.arch, &f.preprocessing, Some(f.vocabulary.len()))?;
    let layers: Vec<_> = f
        .arch
        .describe()?
        .into_iter()
        .map(|l| {
            json!({"name": l.name, "type": l.class_name, "output_shape": l.output.to_string(),
                   "params": l.params})
        })
        .collect();
    Ok(json!({
        "summary": summary,
        "layers": layers,
        "params": c.params.len(),
        "arch": f.arch,
        "labels": f.labels,
        "task": crate::model_file::task_of(&f.arch)?,
        "preprocessing": f.preprocessing,
        "vocabulary_size": f.vocabulary.len(),
        "training": f.training,
    }))
}

/// history.svg beside the model file, if there is a readable one of sane size (the model file
/// itself holds no history; the run folder that training wrote does).
fn history_svg(model: &std::path::Path) -> Option<String> {
    use std::io::Read;
    let path = crate::atomic::folder_of(model).join(crate::report::plot::HISTORY_SVG);
    let file = std::fs::File::open(&path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut s = String::new();
    file.take(MAX_HISTORY_SVG + 1).read_to_string(&mut s).ok()?;
    (s.len() as u64 <= MAX_HISTORY_SVG).then_some(s)
}

/// Loads the model, listens on `cfg.addr` (the first line on stdout says where), and answers
/// until SIGTERM or Ctrl-C, then finishes the requests in flight and returns.
pub fn run(cfg: &Config) -> Result<()> {
    let classifier = Classifier::load(&cfg.model, cfg.threads)?;
    let card = serde_json::to_vec(&card(&classifier)?)?;
    let layers = crate::report::graph::model_layers(&classifier.file.arch)?;
    let app = Arc::new(api::App {
        labels: classifier.labels().to_vec(),
        multi_label: classifier.multi_label(),
        card,
        model_svg: crate::report::graph::model_svg(&layers),
        history_svg: history_svg(&cfg.model),
        limits: cfg.limits,
        batcher: Batcher::start(classifier, cfg.batching)
            .context("cannot start the inference thread")?,
    });
    let listener = std::net::TcpListener::bind(cfg.addr).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => "another program uses it; pick another --addr port",
            std::io::ErrorKind::PermissionDenied => "use a port above 1023",
            _ => "give an address of this machine, like 127.0.0.1:8080",
        };
        anyhow::anyhow!("--addr {}: cannot listen there ({e}); {hint}", cfg.addr)
    })?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        // HTTP is light next to the model, which has its own threads.
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the HTTP runtime")?;
    runtime.block_on(accept_loop(listener, bound, api::router(app), cfg))
}

async fn accept_loop(
    listener: std::net::TcpListener,
    bound: SocketAddr,
    router: axum::Router,
    cfg: &Config,
) -> Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let mut stop = std::pin::pin!(stop_signal()?);
    {
        // The first line says where to connect (tests read it; port 0 picks a free port).
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on http://{bound}");
        let _ = out.flush();
    }
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(cfg.max_connections));
    let signal = loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
            s = &mut stop => break s,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                // Out of file descriptors and the like: wait a moment rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            s = &mut stop => break s,
        };
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(cfg.limits.timeout)
            .serve_connection(
                TokioIo::new(stream),
                TowerToHyperService::new(router.clone()),
            );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await; // a client that went away is its own business
            drop(slot);
        });
    };
    drop(listener);
    // Best effort: a closed stderr must not turn a clean stop into a panic.
    let _ = writeln!(
        std::io::stderr(),
        "{signal}: no new connections; finishing the requests in flight"
    );
    // In-flight requests end within the request timeout; idle connections close at once.
    let grace = cfg.limits.timeout + Duration::from_secs(1);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        let _ = writeln!(
            std::io::stderr(),
            "warning: some connections were still open after {grace:?}; closing them"
        );
    }
    Ok(())
}

/// Catches SIGTERM and Ctrl-C (SIGINT) from now on; the future ends at the first and names it.
fn stop_signal() -> Result<impl std::future::Future<Output = &'static str>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot catch SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot catch Ctrl-C")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "Ctrl-C",
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        })
    }
}

/// Checks `value` of `flag` is within `lo..=hi`; the message says what to use.
pub fn check_range(flag: &str, value: usize, lo: usize, hi: usize, default: usize) -> Result<()> {
    if !(lo..=hi).contains(&value) {
        bail!("{flag} {value} is outside {lo} to {hi}: use {default} (the default) or another value in that range");
    }
    Ok(())
}
