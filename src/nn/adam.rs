//! Adam in Keras's form (keras/src/optimizers/adam.py): bias correction folded into the step
//! size, epsilon added to sqrt(v) after correction-free accumulation.
//!
//! [`LazyRows`] gives the same bits as [`Adam::update`] without touching every embedding row
//! at every step: a row that a batch does not read has a zero gradient, so its missed steps
//! are replayed, one by one with each step's own step size, when the row is next read.

use super::parallel::on_threads;
use serde::{Deserialize, Serialize};

/// Adam's hyper-parameters, Keras's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    /// Step size (default 1e-3).
    pub learning_rate: f32,
    /// Decay of the first moment (default 0.9).
    pub beta_1: f32,
    /// Decay of the second moment (default 0.999).
    pub beta_2: f32,
    /// Added to sqrt(v) (default 1e-7, Keras's value; PyTorch uses 1e-8).
    pub epsilon: f32,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            learning_rate: 1e-3,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
        }
    }
}

/// Optimiser state: moments for every parameter and the step count.
#[derive(Clone, Debug, PartialEq)]
pub struct Adam {
    pub cfg: AdamConfig,
    /// Steps taken so far (Keras's `iterations`).
    pub step: u64,
    /// First moments, same layout as the parameters.
    pub m: Vec<f32>,
    /// Second moments, same layout as the parameters.
    pub v: Vec<f32>,
}

/// What one element's update needs besides its step size.
#[derive(Clone, Copy)]
struct Consts {
    one_b1: f32,
    one_b2: f32,
    eps: f32,
}

/// One Adam step of one element, the only place the update is written: the dense and the
/// lazy paths both run it, so they do the same floating-point operations in the same order.
#[inline(always)]
fn step(p: &mut f32, m: &mut f32, v: &mut f32, g: f32, alpha: f32, c: Consts) {
    *m += (g - *m) * c.one_b1;
    *v += (g * g - *v) * c.one_b2;
    *p -= *m * alpha / (v.sqrt() + c.eps);
}

/// Elements of a row replayed together: one zmm register, two ymm, four xmm.
const LANES: usize = 16;

/// Steps of gradient 0 with the step sizes `alphas`, then with `last` = (g, alpha) one step with
/// gradient g, on one row: element by element the dense update's operations in its order. The
/// row goes in blocks of [`LANES`] elements; a block stays in registers for all the steps and
/// its lanes are independent, so LLVM vectorises the step across them, one vector `sqrt` and
/// `div` per step instead of one per element. Full blocks move as fixed-size arrays (one vector
/// load or store each: a copy of a run-time length would be a `memcpy` call per block, which
/// cost more than the arithmetic for a row one step behind); the row's tail is padded with
/// zeros, which stay finite.
#[inline(always)]
fn replay(
    p: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    alphas: &[f32],
    last: Option<(&[f32], f32)>,
    c: Consts,
) {
    let full = p.len() / LANES * LANES;
    let block = |s: &[f32]| -> [f32; LANES] { s.try_into().expect("LANES floats") };
    for k in (0..full).step_by(LANES) {
        let at = k..k + LANES;
        let (mut bp, mut bm, mut bv) = (
            block(&p[at.clone()]),
            block(&m[at.clone()]),
            block(&v[at.clone()]),
        );
        let g = last.map(|(g, alpha)| (block(&g[at.clone()]), alpha));
        replay_block(&mut bp, &mut bm, &mut bv, alphas, g, c);
        for (dst, b) in [(&mut *p, bp), (&mut *m, bm), (&mut *v, bv)] {
            let dst: &mut [f32; LANES] = (&mut dst[at.clone()]).try_into().expect("LANES floats");
            *dst = b;
        }
    }
    let n = p.len() - full;
    if n > 0 {
        let pad = |s: &[f32]| {
            let mut b = [0.0f32; LANES];
            b[..n].copy_from_slice(&s[full..]);
            b
        };
        let (mut bp, mut bm, mut bv) = (pad(p), pad(m), pad(v));
        let g = last.map(|(g, alpha)| (pad(g), alpha));
        replay_block(&mut bp, &mut bm, &mut bv, alphas, g, c);
        p[full..].copy_from_slice(&bp[..n]);
        m[full..].copy_from_slice(&bm[..n]);
        v[full..].copy_from_slice(&bv[..n]);
    }
}

/// [`replay`] on one block.
#[inline(always)]
fn replay_block(
    bp: &mut [f32; LANES],
    bm: &mut [f32; LANES],
    bv: &mut [f32; LANES],
    alphas: &[f32],
    last: Option<([f32; LANES], f32)>,
    c: Consts,
) {
    for &alpha in alphas {
        for ((p, m), v) in bp.iter_mut().zip(bm.iter_mut()).zip(bv.iter_mut()) {
            step(p, m, v, 0.0, alpha, c);
        }
    }
    if let Some((bg, alpha)) = last {
        for (((p, m), v), &g) in bp.iter_mut().zip(bm.iter_mut()).zip(bv.iter_mut()).zip(&bg) {
            step(p, m, v, g, alpha, c);
        }
    }
}

/// `(p, g, m, v)` slices of equal length.
type Part<'a> = (&'a mut [f32], &'a [f32], &'a mut [f32], &'a mut [f32]);

impl Adam {
    pub fn new(cfg: AdamConfig, len: usize) -> Adam {
        Adam {
            cfg,
            step: 0,
            m: vec![0.0; len],
            v: vec![0.0; len],
        }
    }

    /// Keras's step size of 1-based step `t`: lr * sqrt(1 - b2^t) / (1 - b1^t), in f64.
    fn alpha(&self, t: u64) -> f32 {
        let c = &self.cfg;
        let t = t as f64;
        (c.learning_rate as f64 * (1.0 - (c.beta_2 as f64).powf(t)).sqrt()
            / (1.0 - (c.beta_1 as f64).powf(t))) as f32
    }

    fn consts(&self) -> Consts {
        let c = &self.cfg;
        Consts {
            one_b1: 1.0 - c.beta_1,
            one_b2: 1.0 - c.beta_2,
            eps: c.epsilon,
        }
    }

    /// One update of every parameter (rows absent from the batch included, as Keras does with
    /// dense gradients). Splits the buffer across `threads`; each element's arithmetic is the
    /// same whatever the split.
    pub fn update(&mut self, params: &mut [f32], grads: &[f32], threads: usize) {
        assert_eq!(params.len(), grads.len());
        self.step += 1;
        let (alpha, c) = (self.alpha(self.step), self.consts());
        let parts = split_dense(params, grads, &mut self.m, &mut self.v, threads.max(1));
        on_threads(parts, |(p, g, m, v)| dense_kernel(p, g, m, v, alpha, c));
    }
}

fn dense_kernel(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], alpha: f32, c: Consts) {
    crate::dispatch!(for (((p, &g), m), v) in
        p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut())
    {
        step(p, m, v, g, alpha, c);
    })
}

/// `threads` contiguous parts of the four buffers (fewer when they are short).
fn split_dense<'a>(
    p: &'a mut [f32],
    g: &'a [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
    threads: usize,
) -> Vec<Part<'a>> {
    let per = p.len().div_ceil(threads).max(1);
    p.chunks_mut(per)
        .zip(g.chunks(per))
        .zip(m.chunks_mut(per))
        .zip(v.chunks_mut(per))
        .map(|(((p, g), m), v)| (p, g, m, v))
        .collect()
}

/// Adam over a parameter buffer whose first `rows * width` values are an embedding table, the
/// table's rows updated lazily. A batch reads only its tokens' rows, and the others have a
/// zero gradient; such a row's missed steps are replayed when a batch next reads it
/// ([`LazyRows::catch_up`], before the forward pass) or when everything must be current
/// ([`LazyRows::flush`], before evaluation, checkpoints and saving). A replay runs, element by
/// element, the dense update's operations of each missed step with that step's own step size
/// and gradient 0, so every value ends bit-identical to [`Adam::update`]'s, while the row is
/// read and written once instead of once per step. The parameters after the table are updated
/// densely at every step.
#[derive(Clone, Debug)]
pub struct LazyRows {
    width: usize,
    /// Adam's step count when this was made (every row was current then).
    base: u64,
    /// Per row: the number of steps after `base` it has been brought up to.
    done: Vec<u32>,
    /// `alphas[i]`: the step size of step `base + 1 + i`.
    alphas: Vec<f32>,
}

/// A block of the table: rows `first..first + done.len()`.
struct RowPart<'a> {
    first: usize,
    p: &'a mut [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
    done: &'a mut [u32],
}

/// Rows per block of the table. Blocks go to the threads in turn, so every thread holds its
/// share of the frequent (low) ids: in contiguous halves, one thread held them all.
const BLOCK_ROWS: usize = 8;

/// One thread's share of the table: blocks `k, k + threads, k + 2 * threads, ...`.
struct Share<'a> {
    k: usize,
    threads: usize,
    blocks: Vec<RowPart<'a>>,
}

impl<'a> Share<'a> {
    /// The block holding row `id` and the row's index in it, when this share holds it.
    #[inline(always)]
    fn find(&mut self, id: u32) -> Option<(&mut RowPart<'a>, usize)> {
        let (b, r) = (id as usize / BLOCK_ROWS, id as usize % BLOCK_ROWS);
        if b % self.threads != self.k {
            return None;
        }
        let part = self.blocks.get_mut(b / self.threads)?;
        (r < part.done.len()).then_some((part, r))
    }
}

impl RowPart<'_> {
    /// Replays row `r`'s missed steps up to `to` (steps after `base`), gradient 0, then with
    /// `last` = (g, alpha) takes one step with the row's gradient g.
    #[inline(always)]
    fn catch_up(
        &mut self,
        r: usize,
        to: u32,
        width: usize,
        alphas: &[f32],
        last: Option<(&[f32], f32)>,
        c: Consts,
    ) {
        let from = self.done[r].min(to) as usize;
        if from == to as usize && last.is_none() {
            return;
        }
        let at = r * width..(r + 1) * width;
        replay(
            &mut self.p[at.clone()],
            &mut self.m[at.clone()],
            &mut self.v[at],
            &alphas[from..to as usize],
            last,
            c,
        );
        self.done[r] = to + last.is_some() as u32;
    }
}

impl LazyRows {
    /// Every row current at `adam`'s step; the table is `[rows, width]` at the start of the
    /// parameters.
    pub fn new(adam: &Adam, rows: usize, width: usize) -> LazyRows {
        assert!(
            rows.saturating_mul(width) <= adam.m.len(),
            "the table must fit in the parameters"
        );
        LazyRows {
            width,
            base: adam.step,
            done: vec![0; rows],
            alphas: Vec::new(),
        }
    }

    /// Steps taken since `base`; checks that `adam` was only stepped through `self`.
    fn now(&self, adam: &Adam) -> u32 {
        assert_eq!(
            adam.step,
            self.base + self.alphas.len() as u64,
            "a lazily updated Adam must be stepped only through its LazyRows"
        );
        self.alphas.len() as u32
    }

    /// Brings the rows of `ids` (a batch's tokens; repeats are fine) up to date, so that the
    /// forward pass reads what the dense update would have left there.
    pub fn catch_up(&mut self, adam: &mut Adam, params: &mut [f32], ids: &[u32], threads: usize) {
        self.catch_up_rows(adam, params, Some(ids), threads);
    }

    /// Replays the missed steps of the rows of `ids`, or of every row when None.
    fn catch_up_rows(
        &mut self,
        adam: &mut Adam,
        params: &mut [f32],
        ids: Option<&[u32]>,
        threads: usize,
    ) {
        let (now, c, width) = (self.now(adam), adam.consts(), self.width);
        let table = self.done.len() * width;
        let alphas = &self.alphas;
        let parts = split_rows(
            &mut self.done,
            width,
            &mut params[..table],
            &mut adam.m[..table],
            &mut adam.v[..table],
            threads,
        );
        on_threads(parts, |mut share| match ids {
            Some(ids) => crate::dispatch!(for &id in ids {
                if let Some((part, r)) = share.find(id) {
                    part.catch_up(r, now, width, alphas, None, c);
                }
            }),
            None => crate::dispatch!(for part in &mut share.blocks {
                for r in 0..part.done.len() {
                    part.catch_up(r, now, width, alphas, None, c);
                }
            }),
        });
    }

    /// One Adam step. The table's rows `rows` (those whose gradient may be nonzero, each listed
    /// once; every other row's gradient must be zero) are caught up and stepped with their
    /// gradient; the other rows are left behind; the parameters after the table are stepped.
    pub fn update(
        &mut self,
        adam: &mut Adam,
        params: &mut [f32],
        grads: &[f32],
        rows: &[u32],
        threads: usize,
    ) {
        assert_eq!(params.len(), grads.len());
        let now = self.now(adam);
        assert!(now < u32::MAX, "too many steps for one LazyRows");
        adam.step += 1;
        let (alpha, c, width) = (adam.alpha(adam.step), adam.consts(), self.width);
        self.alphas.push(alpha);
        let threads = threads.max(1);
        let table = self.done.len() * width;
        let (p, tail_p) = params.split_at_mut(table);
        let (m, tail_m) = adam.m.split_at_mut(table);
        let (v, tail_v) = adam.v.split_at_mut(table);
        let mut parts: Vec<_> = split_rows(&mut self.done, width, p, m, v, threads)
            .into_iter()
            .map(Some)
            .collect();
        let mut tails: Vec<_> = split_dense(tail_p, &grads[table..], tail_m, tail_v, threads)
            .into_iter()
            .map(Some)
            .collect();
        parts.resize_with(threads, || None);
        tails.resize_with(threads, || None);
        let alphas = &self.alphas;
        let jobs: Vec<_> = parts.into_iter().zip(tails).collect();
        on_threads(jobs, |(part, tail)| {
            crate::dispatch!({
                if let Some(mut share) = part {
                    for &id in rows {
                        let Some((part, r)) = share.find(id) else {
                            continue;
                        };
                        let g = &grads[(part.first + r) * width..][..width];
                        part.catch_up(r, now, width, alphas, Some((g, alpha)), c);
                    }
                }
                if let Some((p, g, m, v)) = tail {
                    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
                        step(p, m, v, g, alpha, c);
                    }
                }
            })
        });
    }

    /// Brings every row up to date: call before anything else reads the parameters or the
    /// moments (evaluation, checkpoints, saving). Afterwards they equal the dense update's.
    pub fn flush(&mut self, adam: &mut Adam, params: &mut [f32], threads: usize) {
        self.catch_up_rows(adam, params, None, threads);
    }
}

/// The table `[done.len(), width]` (`p`, `m`, `v`) in blocks of [`BLOCK_ROWS`] rows, dealt to
/// `threads` shares in turn.
fn split_rows<'a>(
    done: &'a mut [u32],
    width: usize,
    p: &'a mut [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
    threads: usize,
) -> Vec<Share<'a>> {
    let threads = threads.max(1);
    let mut shares: Vec<Share> = (0..threads)
        .map(|k| Share {
            k,
            threads,
            blocks: Vec::new(),
        })
        .collect();
    let w = (BLOCK_ROWS * width).max(1);
    let blocks = p
        .chunks_mut(w)
        .zip(m.chunks_mut(w))
        .zip(v.chunks_mut(w))
        .zip(done.chunks_mut(BLOCK_ROWS));
    for (b, (((p, m), v), done)) in blocks.enumerate() {
        shares[b % threads].blocks.push(RowPart {
            first: b * BLOCK_ROWS,
            p,
            m,
            v,
            done,
        });
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    /// keras/src/optimizers/adam_test.py::test_single_step (the values are also collected in
    /// `../shared/reference/keras_lstm_golden.md` beside the checkout).
    #[test]
    fn keras_single_step_golden() {
        let mut adam = Adam::new(
            AdamConfig {
                learning_rate: 0.5,
                ..Default::default()
            },
            4,
        );
        let mut p = vec![1.0, 2.0, 3.0, 4.0];
        adam.update(&mut p, &[1.0, 6.0, 7.0, 2.0], 1);
        // Keras's own test allows 1e-4: epsilon moves the result by ~1.5e-6.
        for (got, want) in p.iter().zip([0.5, 1.5, 2.5, 3.5]) {
            assert!((got - want).abs() < 1e-4, "{p:?}");
        }
    }

    /// Several steps against the textbook formula in f64, and thread count changes nothing.
    #[test]
    fn matches_formula_over_steps_and_threads() {
        let cfg = AdamConfig::default();
        let n = 1001;
        let mut p1: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut p2 = p1.clone();
        let mut pref: Vec<f64> = p1.iter().map(|&x| x as f64).collect();
        let (mut m, mut v) = (vec![0.0f64; n], vec![0.0f64; n]);
        let (mut a1, mut a2) = (Adam::new(cfg.clone(), n), Adam::new(cfg.clone(), n));
        for step in 1..=5 {
            let g: Vec<f32> = (0..n)
                .map(|i| ((i * step) as f32 * 0.11).cos() * 0.1)
                .collect();
            a1.update(&mut p1, &g, 1);
            a2.update(&mut p2, &g, 3);
            for i in 0..n {
                let gi = g[i] as f64;
                m[i] = 0.9 * m[i] + 0.1 * gi;
                v[i] = 0.999 * v[i] + 0.001 * gi * gi;
                let mhat = m[i] / (1.0 - 0.9f64.powi(step as i32));
                let vhat = v[i] / (1.0 - 0.999f64.powi(step as i32));
                // Keras's form: epsilon is scaled by sqrt(1 - beta_2^t) relative to the textbook one.
                let eps_hat = 1e-7 / (1.0 - 0.999f64.powi(step as i32)).sqrt();
                pref[i] -= 1e-3 * mhat / (vhat.sqrt() + eps_hat);
            }
        }
        assert_eq!(p1, p2, "the thread split must not change any value");
        for i in 0..n {
            assert!(
                (p1[i] as f64 - pref[i]).abs() < 1e-6,
                "param {i}: {} vs {}",
                p1[i],
                pref[i]
            );
        }
        assert_eq!(a1.step, 5);
    }
}
