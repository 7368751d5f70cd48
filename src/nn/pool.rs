//! Keras's 1-D pooling layers over batch-major `[B, T, C]` activations, forward and backward
//! for one chunk of a batch on one thread. No weights; buffers live in a [`Cache`].
//!
//! Ties follow TensorFlow, which Keras runs: MaxPooling1D is `tf.nn.max_pool`, whose gradient
//! goes to the first maximum of each window (strict `<` in the argmax scan of TensorFlow's
//! `SpatialMaxPoolWithArgMaxHelper`); GlobalMaxPooling1D is `tf.reduce_max`, whose gradient is
//! split equally among all the maxima (`_MinOrMaxGrad`).

use super::dense::Cache;

/// MaxPooling1D(pool_size = p), strides = p, padding 'valid': `[B, T, C]` -> `[B, T/p, C]`
/// (floor: trailing steps that do not fill a window are dropped, and get no gradient).
/// Needs 1 <= pool <= steps (the model checks its configuration first).
#[derive(Clone, Copy, Debug)]
pub struct MaxPool1d {
    pub steps: usize,
    pub channels: usize,
    pub pool: usize,
}

impl MaxPool1d {
    pub fn out_steps(&self) -> usize {
        self.steps / self.pool
    }

    /// Width of one sample's output, `T/p * C` (the `out` of [`Cache::output`]).
    pub fn out_len(&self) -> usize {
        self.out_steps() * self.channels
    }

    /// For x `[b, T, C]`; keeps each output's argmax step for the backward.
    pub fn forward(&self, x: &[f32], b: usize, cache: &mut Cache) {
        let (t, c, p, to) = (self.steps, self.channels, self.pool, self.out_steps());
        cache.prepare(b, t * c, to * c);
        let mut idx = std::mem::take(&mut cache.idx);
        idx.resize(b * to * c, 0);
        let (y, _, _) = cache.parts(to * c, t * c);
        // Compiled for the CPU's vector ISA: baseline x86-64 has no blend, so the argmax's
        // conditional store became a branch per lane (0.45 ms a cnn-lstm step, summed over the
        // threads, for 184,000 outputs).
        crate::dispatch!(for (w, (yw, iw)) in y
            .chunks_exact_mut(c)
            .zip(idx.chunks_exact_mut(c))
            .enumerate()
        {
            let (s, o) = (w / to, w % to);
            let first = (s * t + o * p) * c;
            yw.copy_from_slice(&x[first..first + c]);
            iw.fill((o * p) as u32);
            for q in 1..p {
                let row = &x[first + q * c..first + (q + 1) * c];
                for ((yv, iv), &v) in yw.iter_mut().zip(iw.iter_mut()).zip(row) {
                    if *yv < v {
                        (*yv, *iv) = (v, (o * p + q) as u32);
                    }
                }
            }
        });
        cache.idx = idx;
    }

    /// dx `[b, T, C]` from dy `[b, T/p, C]`: each window's gradient to its first maximum.
    pub fn backward(&self, dy: &[f32], cache: &mut Cache) {
        let (t, c, to) = (self.steps, self.channels, self.out_steps());
        let idx = std::mem::take(&mut cache.idx);
        let (_, _, dx) = cache.parts(to * c, t * c);
        dx.fill(0.0);
        for (w, (g, iw)) in dy.chunks_exact(c).zip(idx.chunks_exact(c)).enumerate() {
            let s = w / to;
            for (ch, (&g, &i)) in g.iter().zip(iw).enumerate() {
                dx[(s * t + i as usize) * c + ch] = g;
            }
        }
        cache.idx = idx;
    }
}

/// GlobalMaxPooling1D: `[B, T, C]` -> `[B, C]`, the max over the steps.
#[derive(Clone, Copy, Debug)]
pub struct GlobalMaxPool1d {
    pub steps: usize,
    pub channels: usize,
}

impl GlobalMaxPool1d {
    pub fn forward(&self, x: &[f32], b: usize, cache: &mut Cache) {
        let (t, c) = (self.steps, self.channels);
        cache.prepare(b, t * c, c);
        let (y, _, _) = cache.parts(c, t * c);
        crate::dispatch!(
            for (yr, xs) in y.chunks_exact_mut(c).zip(x.chunks_exact(t * c)) {
                yr.copy_from_slice(&xs[..c]);
                for row in xs.chunks_exact(c).skip(1) {
                    for (m, &v) in yr.iter_mut().zip(row) {
                        *m = m.max(v);
                    }
                }
            }
        );
    }

    /// dx `[b, T, C]` from dy `[b, C]` and the forward's x: split equally among tied maxima.
    pub fn backward(&self, x: &[f32], dy: &[f32], cache: &mut Cache) {
        let (t, c) = (self.steps, self.channels);
        // dz is free in a layer without weights: it counts each column's maxima, then holds
        // each column's share g / count.
        let (y, share, dx) = cache.parts(c, t * c);
        share.fill(0.0);
        let per_sample = x.chunks_exact(t * c).zip(dx.chunks_exact_mut(t * c));
        crate::dispatch!(for (s, (xs, ds)) in per_sample.enumerate() {
            let (ys, qs) = (&y[s * c..(s + 1) * c], &mut share[s * c..(s + 1) * c]);
            for row in xs.chunks_exact(c) {
                for ((n, &m), &v) in qs.iter_mut().zip(ys).zip(row) {
                    *n += (v == m) as u8 as f32;
                }
            }
            for (q, &g) in qs.iter_mut().zip(&dy[s * c..(s + 1) * c]) {
                *q = g / *q;
            }
            for (row, drow) in xs.chunks_exact(c).zip(ds.chunks_exact_mut(c)) {
                for (((d, &v), &m), &q) in drow.iter_mut().zip(row).zip(ys).zip(qs.iter()) {
                    *d = if v == m { q } else { 0.0 };
                }
            }
        });
    }
}

/// GlobalAveragePooling1D (no mask): `[B, T, C]` -> `[B, C]`, the mean over the steps.
#[derive(Clone, Copy, Debug)]
pub struct GlobalAvgPool1d {
    pub steps: usize,
    pub channels: usize,
}

impl GlobalAvgPool1d {
    pub fn forward(&self, x: &[f32], b: usize, cache: &mut Cache) {
        let (t, c) = (self.steps, self.channels);
        cache.prepare(b, t * c, c);
        let (y, _, _) = cache.parts(c, t * c);
        let inv = 1.0 / t as f32;
        for (yr, xs) in y.chunks_exact_mut(c).zip(x.chunks_exact(t * c)) {
            yr.fill(0.0);
            for row in xs.chunks_exact(c) {
                for (m, &v) in yr.iter_mut().zip(row) {
                    *m += v;
                }
            }
            yr.iter_mut().for_each(|m| *m *= inv);
        }
    }

    /// dx `[b, T, C]` from dy `[b, C]`: dy / T at every step.
    pub fn backward(&self, dy: &[f32], cache: &mut Cache) {
        let (t, c) = (self.steps, self.channels);
        let (_, _, dx) = cache.parts(c, t * c);
        let inv = 1.0 / t as f32;
        for (ds, gs) in dx.chunks_exact_mut(t * c).zip(dy.chunks_exact(c)) {
            for drow in ds.chunks_exact_mut(c) {
                for (d, &g) in drow.iter_mut().zip(gs) {
                    *d = g * inv;
                }
            }
        }
    }
}

/// The obviously-correct f64 twins, for tests. All take x `[b, t, c]` and return (y, dx).
pub mod naive {
    /// MaxPooling1D(p): y and the dx of the output gradient dy (first maximum wins).
    pub fn max_pool(x: &[f64], dy: &[f64], t: usize, c: usize, p: usize) -> (Vec<f64>, Vec<f64>) {
        let (b, to) = (x.len() / (t * c), t / p);
        let (mut y, mut dx) = (vec![0.0; b * to * c], vec![0.0; x.len()]);
        for s in 0..b {
            for o in 0..to {
                for ch in 0..c {
                    let at = |q: usize| x[(s * t + o * p + q) * c + ch];
                    let best = (1..p).fold(0, |bq, q| if at(q) > at(bq) { q } else { bq });
                    y[(s * to + o) * c + ch] = at(best);
                    dx[(s * t + o * p + best) * c + ch] = dy[(s * to + o) * c + ch];
                }
            }
        }
        (y, dx)
    }

    /// GlobalMaxPooling1D: ties share the gradient equally.
    pub fn global_max_pool(x: &[f64], dy: &[f64], t: usize, c: usize) -> (Vec<f64>, Vec<f64>) {
        let b = x.len() / (t * c);
        let (mut y, mut dx) = (vec![0.0; b * c], vec![0.0; x.len()]);
        for s in 0..b {
            for ch in 0..c {
                let col: Vec<f64> = (0..t).map(|q| x[(s * t + q) * c + ch]).collect();
                let m = col.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let n = col.iter().filter(|&&v| v == m).count() as f64;
                y[s * c + ch] = m;
                for (q, &v) in col.iter().enumerate() {
                    if v == m {
                        dx[(s * t + q) * c + ch] = dy[s * c + ch] / n;
                    }
                }
            }
        }
        (y, dx)
    }

    /// GlobalAveragePooling1D.
    pub fn global_avg_pool(x: &[f64], dy: &[f64], t: usize, c: usize) -> (Vec<f64>, Vec<f64>) {
        let b = x.len() / (t * c);
        let (mut y, mut dx) = (vec![0.0; b * c], vec![0.0; x.len()]);
        for s in 0..b {
            for ch in 0..c {
                y[s * c + ch] = (0..t).map(|q| x[(s * t + q) * c + ch]).sum::<f64>() / t as f64;
                for q in 0..t {
                    dx[(s * t + q) * c + ch] = dy[s * c + ch] / t as f64;
                }
            }
        }
        (y, dx)
    }
}
