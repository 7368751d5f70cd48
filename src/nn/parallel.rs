//! The threads that the layers, the masks and Adam run on: rayon's pool, which keeps its
//! threads between calls. A training step splits its work across the threads five times (the
//! masks, the layers, the embedding's gradient, Adam, repacking), and starting an OS thread
//! costs 45-75 µs on the 2-core machines we measure: a quarter of a millisecond a step.
//!
//! Which thread runs a part never changes what it computes: every caller splits its work the
//! same way for a given thread count, so runs stay bit-identical.

/// A part of the work as a closure, for callers whose parts differ.
pub type Job<'a> = Box<dyn FnOnce() + Send + 'a>;

/// Runs `f` on every part, the calling thread taking the last and the pool the others, and
/// returns when all are done; a panic in any part is raised here.
pub fn on_threads<T: Send>(mut parts: Vec<T>, f: impl Fn(T) + Sync) {
    let Some(last) = parts.pop() else { return };
    if parts.is_empty() {
        return f(last);
    }
    let f = &f;
    rayon::in_place_scope(|s| {
        for part in parts {
            s.spawn(move |_| f(part));
        }
        f(last);
    });
}

/// Runs every job as [`on_threads`] does.
pub fn run_jobs(jobs: Vec<Job>) {
    on_threads(jobs, |job| job());
}
