//! `imdb-lstm serve`: the flags, checked, then [`crate::serve::run`].

use crate::serve::{check_range, Config, Limits};
use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// The model file (model.safetensors in a run folder; history.svg beside it is shown too).
    #[arg(long)]
    pub model: PathBuf,
    /// Address and port to listen on; 127.0.0.1 answers this machine only, 0.0.0.0 every
    /// network it is on; port 0 picks a free one (the first line printed says which).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Worker threads of the model [default: all cores].
    #[arg(long, allow_negative_numbers = true)]
    pub threads: Option<usize>,
    /// The most texts run through the model in one batch.
    #[arg(long, default_value_t = 1024, allow_negative_numbers = true)]
    pub max_batch: usize,
    /// How long a request waits for others to share its batch, in milliseconds.
    #[arg(long, default_value_t = 2, allow_negative_numbers = true)]
    pub max_wait_ms: usize,
    /// The largest request body, in bytes.
    #[arg(long, default_value_t = 1 << 20, allow_negative_numbers = true)]
    pub max_body: usize,
    /// The most texts in one /v1/predict request.
    #[arg(long, default_value_t = 1024, allow_negative_numbers = true)]
    pub max_texts: usize,
    /// The longest text, in bytes (UTF-8).
    #[arg(long, default_value_t = 100_000, allow_negative_numbers = true)]
    pub max_text_bytes: usize,
    /// Requests waiting for the model at most; more are answered 503 (busy).
    #[arg(long, default_value_t = 256, allow_negative_numbers = true)]
    pub queue: usize,
    /// Connections open at once; more wait to be accepted.
    #[arg(long, default_value_t = 256, allow_negative_numbers = true)]
    pub max_connections: usize,
    /// Seconds a request may take from its first byte to its answer (slow clients get 408).
    #[arg(long, default_value_t = 30.0, allow_negative_numbers = true)]
    pub timeout: f64,
}

/// The most seconds `--timeout` takes: an hour is already far past any sane client.
const MAX_TIMEOUT_S: f64 = 3600.0;

impl ServeArgs {
    /// Every flag checked; each error names the flag, the value and what to use.
    pub fn config(&self) -> Result<Config> {
        let threads = super::threads(self.threads)?;
        use std::net::ToSocketAddrs;
        // An IP address and port, or a name this machine resolves (localhost:8080).
        let addr = self.addr.to_socket_addrs().ok().and_then(|mut a| a.next());
        let Some(addr) = addr else {
            let shown: String = self.addr.chars().take(100).collect();
            bail!("--addr {shown:?} is not an address and port: use e.g. 127.0.0.1:8080 (or 0.0.0.0:8080 for every network)");
        };
        check_range("--max-batch", self.max_batch, 1, 1 << 16, 1024)?;
        check_range("--max-wait-ms", self.max_wait_ms, 0, 10_000, 2)?;
        check_range("--max-body", self.max_body, 1 << 10, 1 << 30, 1 << 20)?;
        check_range("--max-texts", self.max_texts, 1, 1 << 16, 1024)?;
        check_range("--max-text-bytes", self.max_text_bytes, 1, 1 << 30, 100_000)?;
        check_range("--queue", self.queue, 1, 1 << 16, 256)?;
        check_range("--max-connections", self.max_connections, 1, 1 << 16, 256)?;
        if !(self.timeout > 0.0 && self.timeout <= MAX_TIMEOUT_S) {
            bail!(
                "--timeout {} is outside (0, {MAX_TIMEOUT_S}] seconds: use 30 (the default) or another number of seconds in that range",
                self.timeout
            );
        }
        Ok(Config {
            model: self.model.clone(),
            addr,
            threads,
            batching: crate::serve::batch::Batching {
                max_batch: self.max_batch,
                max_wait: Duration::from_millis(self.max_wait_ms as u64),
                queue: self.queue,
            },
            limits: Limits {
                max_body: self.max_body,
                max_texts: self.max_texts,
                max_text_bytes: self.max_text_bytes,
                queue: self.queue,
                timeout: Duration::from_secs_f64(self.timeout),
            },
            max_connections: self.max_connections,
        })
    }
}

pub fn run(args: &ServeArgs) -> Result<()> {
    crate::serve::run(&args.config()?)
}
