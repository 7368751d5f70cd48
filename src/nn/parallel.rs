//! The threads that the layers, the masks and Adam run on: a rayon pool, which keeps its
//! threads between calls. A training step splits its work across the threads five times (the
//! masks, the layers, the embedding's gradient, Adam, repacking), and starting an OS thread
//! costs 45-75 µs on the 2-core machines we measure: a quarter of a millisecond a step.
//!
//! The calling thread always takes a part, so the pool has one thread fewer than the CPU has
//! cores: with one per core, a waiting pool thread spins on a core that the two working threads
//! need (cnn-lstm: 7.2-7.3 s an epoch with two pool threads on 2 cores, 6.2-6.6 s with one).
//!
//! Which thread runs a part never changes what it computes: every caller splits its work the
//! same way for a given thread count, so runs stay bit-identical.

use std::sync::OnceLock;

/// A part of the work as a closure, for callers whose parts differ.
pub type Job<'a> = Box<dyn FnOnce() + Send + 'a>;

/// Runs `f` on every part, the calling thread taking the last and the pool the others, and
/// returns when all are done; a panic in any part is raised here.
pub fn on_threads<T: Send>(mut parts: Vec<T>, f: impl Fn(T) + Sync) {
    let Some(last) = parts.pop() else { return };
    if parts.is_empty() {
        return f(last);
    }
    let Some(pool) = pool() else {
        // No pool thread could be started: the same parts, one after the other.
        parts.into_iter().for_each(&f);
        return f(last);
    };
    let f = &f;
    pool.in_place_scope(|s| {
        for part in parts {
            s.spawn(move |_| f(part));
        }
        f(last);
    });
}

/// The pool: cores - 1 threads (at least one), started on first use.
fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        rayon::ThreadPoolBuilder::new()
            .num_threads(cores.saturating_sub(1).max(1))
            .thread_name(|i| format!("imdb-lstm-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// Runs every job as [`on_threads`] does.
pub fn run_jobs(jobs: Vec<Job>) {
    on_threads(jobs, |job| job());
}
