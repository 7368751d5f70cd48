//! The inference thread: it owns the [`Classifier`], takes jobs from a bounded queue, and runs
//! the texts of the predict requests that arrive together in one batch, so that many clients
//! share the batched path across the cores instead of each paying for a batch of one.

use crate::explain::{self, Explanation, Method};
use crate::infer::Classifier;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Every label's probability for each text of a predict job, in the job's order.
pub type Probabilities = Vec<Vec<f32>>;

/// Work for the inference thread; each answers on its own channel.
pub enum Job {
    Predict {
        texts: Vec<String>,
        reply: oneshot::Sender<Probabilities>,
    },
    Explain {
        text: String,
        method: Method,
        reply: oneshot::Sender<Result<Explanation, String>>,
    },
}

impl Job {
    fn texts(&self) -> usize {
        match self {
            Job::Predict { texts, .. } => texts.len(),
            Job::Explain { .. } => 1,
        }
    }
}

/// Counts for `/healthz`: they show that concurrent requests share batches.
#[derive(Default)]
pub struct Counts {
    /// Model calls that answered predict jobs.
    pub batches: AtomicU64,
    /// Texts answered by those calls.
    pub texts: AtomicU64,
    /// Explanations computed.
    pub explained: AtomicU64,
}

/// The handle the HTTP side holds: submits jobs, never waits for room.
#[derive(Clone)]
pub struct Batcher {
    tx: SyncSender<Job>,
    alive: Arc<AtomicBool>,
    pub counts: Arc<Counts>,
}

/// Why a job was not queued.
pub enum Refused {
    /// The queue holds its limit of jobs: the client should retry later.
    Full,
    /// The inference thread has stopped.
    Stopped,
}

/// How the inference thread gathers work.
#[derive(Clone, Copy, Debug)]
pub struct Batching {
    /// The most texts gathered into one model call (one request's texts are never split).
    pub max_batch: usize,
    /// How long the first job of a batch waits for others.
    pub max_wait: Duration,
    /// Jobs waiting at most; more are refused ([`Refused::Full`]).
    pub queue: usize,
}

impl Batcher {
    /// Starts the inference thread with `classifier`. It ends when every [`Batcher`] is dropped.
    pub fn start(classifier: Classifier, batching: Batching) -> std::io::Result<Batcher> {
        let (tx, rx) = mpsc::sync_channel(batching.queue);
        let alive = Arc::new(AtomicBool::new(true));
        let counts = Arc::new(Counts::default());
        let (a, c) = (alive.clone(), counts.clone());
        std::thread::Builder::new()
            .name("inference".into())
            .spawn(move || {
                // Marks the thread gone however it ends, so /healthz stops answering ok.
                struct Gone(Arc<AtomicBool>);
                impl Drop for Gone {
                    fn drop(&mut self) {
                        self.0.store(false, Ordering::SeqCst);
                    }
                }
                let _gone = Gone(a);
                work(classifier, rx, batching, &c)
            })?;
        Ok(Batcher { tx, alive, counts })
    }

    pub fn submit(&self, job: Job) -> Result<(), Refused> {
        self.tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => Refused::Full,
            TrySendError::Disconnected(_) => Refused::Stopped,
        })
    }

    /// Whether the inference thread is running (the model is loaded and answering).
    pub fn alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }
}

/// The inference thread's loop: a predict job waits up to `max_wait` for more predict jobs,
/// until `max_batch` texts are gathered; they run in one call and each job gets its rows back.
/// Explain jobs that arrive meanwhile run after the batch, in order.
fn work(mut c: Classifier, rx: Receiver<Job>, b: Batching, counts: &Counts) {
    let mut later: VecDeque<Job> = VecDeque::new();
    loop {
        let job = match later.pop_front() {
            Some(j) => j,
            None => match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            },
        };
        let first = match job {
            Job::Explain {
                text,
                method,
                reply,
            } => {
                let e = explain::explain(&mut c, &text, method).map_err(|e| format!("{e:#}"));
                counts.explained.fetch_add(1, Ordering::Relaxed);
                let _ = reply.send(e); // the client may have gone: nothing to do
                continue;
            }
            predict => predict,
        };
        let deadline = Instant::now() + b.max_wait;
        let mut texts = first.texts();
        let mut batch = vec![first];
        while texts < b.max_batch {
            let wait = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(j @ Job::Predict { .. }) => {
                    texts += j.texts();
                    batch.push(j);
                }
                Ok(j) => later.push_back(j),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        run_batch(&mut c, batch, counts);
    }
}

/// One model call for every text of `batch`, each job answered with its own rows.
fn run_batch(c: &mut Classifier, batch: Vec<Job>, counts: &Counts) {
    let mut all: Vec<&str> = Vec::new();
    for j in &batch {
        if let Job::Predict { texts, .. } = j {
            all.extend(texts.iter().map(String::as_str));
        }
    }
    let ids = c.encode(&all);
    let mut probs = c.label_probabilities(&ids).into_iter();
    counts.batches.fetch_add(1, Ordering::Relaxed);
    counts.texts.fetch_add(all.len() as u64, Ordering::Relaxed);
    for j in batch {
        if let Job::Predict { texts, reply } = j {
            let _ = reply.send(probs.by_ref().take(texts.len()).collect());
        }
    }
}
