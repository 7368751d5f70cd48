//! Keras's Conv1D (padding 'valid', stride 1, dilation 1) over batch-major `[B, T, C]`
//! activations, forward and backward for one chunk of a batch on one thread.
//!
//! With valid padding and stride 1 the window of output step t is the contiguous slice
//! x[s, t..t+k, :], k*C floats. So one sample's output is a single GEMM of the unfolded input,
//! `[T-k+1, k*C]` read in place with row stride C (rows overlap, nothing is copied), times the
//! kernel `[k, C, F]` viewed as `[k*C, F]`. The `gemm` crate takes such a stride; our packed
//! kernel insists on lda >= k. Measured at Keras's imdb_cnn shape in
//! `tests/nn_layers.rs::conv_gemm_timing`.

use super::dense::{add_bias, add_column_sums, Activation, Cache, Grads};
use super::gemm::{matmul, Op};

/// Conv1D(filters F, kernel_size k, activation) on inputs of T steps and C channels:
/// `[B, T, C]` -> `[B, T-k+1, F]`. Kernel `[k, C, F]` (Keras's layout), bias `[F]`.
#[derive(Clone, Copy, Debug)]
pub struct Conv1d {
    pub steps: usize,
    pub channels: usize,
    pub kernel_size: usize,
    pub filters: usize,
    pub act: Activation,
}

impl Conv1d {
    /// Output steps, T - k + 1.
    pub fn out_steps(&self) -> usize {
        self.steps + 1 - self.kernel_size
    }

    /// Width of one sample's output, `(T-k+1) * F` (the `out` of [`Cache::output`]).
    pub fn out_len(&self) -> usize {
        self.out_steps() * self.filters
    }

    /// y = f(conv(x) + b) for x `[b, T, C]`.
    pub fn forward(&self, kernel: &[f32], bias: &[f32], x: &[f32], b: usize, cache: &mut Cache) {
        let (t, c, kc, f, to) = self.dims();
        cache.prepare(b, t * c, to * f);
        let (y, _, _) = cache.parts(to * f, t * c);
        for (xs, ys) in x.chunks_exact(t * c).zip(y.chunks_exact_mut(to * f)) {
            matmul(to, f, kc, xs, c, Op::N, kernel, f, Op::N, ys, f, false);
        }
        add_bias(y, bias);
        self.act.forward(y, f);
    }

    /// Backward of the last forward on the same x, from dy `[b, T-k+1, F]`: accumulates the
    /// kernel and bias gradients and leaves dx `[b, T, C]` in `cache.input_grad(T * C)`.
    pub fn backward(&self, kernel: &[f32], x: &[f32], dy: &[f32], cache: &mut Cache, grads: Grads) {
        let (t, c, kc, f, to) = self.dims();
        let (y, dz, dx) = cache.parts(to * f, t * c);
        self.act.backward(y, dy, dz, f);
        add_column_sums(dz, grads.bias);
        let per_sample = x.chunks_exact(t * c).zip(dz.chunks_exact(to * f));
        for ((xs, zs), dxs) in per_sample.zip(dx.chunks_exact_mut(t * c)) {
            // dkernel += X_unf^T dz
            matmul(kc, f, to, xs, c, Op::T, zs, f, Op::N, grads.kernel, f, true);
            // Overlap-add: dx[t+j] += dz[t] W_j^T for each tap j, rows of stride C.
            dxs.fill(0.0);
            for j in 0..self.kernel_size {
                let wj = &kernel[j * c * f..(j + 1) * c * f];
                matmul(
                    to,
                    c,
                    f,
                    zs,
                    f,
                    Op::N,
                    wj,
                    f,
                    Op::T,
                    &mut dxs[j * c..],
                    c,
                    true,
                );
            }
        }
    }

    /// (T, C, k*C, F, T-k+1)
    fn dims(&self) -> (usize, usize, usize, usize, usize) {
        let (t, c, k, f) = (self.steps, self.channels, self.kernel_size, self.filters);
        assert!(
            (1..=t).contains(&k),
            "Conv1d: kernel_size {k} not in 1..={t}"
        );
        (t, c, k * c, f, self.out_steps())
    }
}

/// The obviously-correct f64 twin, for tests.
pub mod naive {
    use super::super::dense::naive::{activate, activate_backward};
    use super::Activation;

    /// y `[b, T-k+1, F]` of x `[b, T, C]`, kernel `[k, C, F]`, bias `[F]`.
    pub fn conv1d(
        x: &[f64],
        w: &[f64],
        bias: &[f64],
        t: usize,
        c: usize,
        k: usize,
        act: Activation,
    ) -> Vec<f64> {
        let (f, to) = (bias.len(), t + 1 - k);
        let b = x.len() / (t * c);
        let mut y = vec![0.0; b * to * f];
        for s in 0..b {
            for o in 0..to {
                for fi in 0..f {
                    let mut v = bias[fi];
                    for j in 0..k {
                        for ch in 0..c {
                            v += x[(s * t + o + j) * c + ch] * w[(j * c + ch) * f + fi];
                        }
                    }
                    y[(s * to + o) * f + fi] = v;
                }
            }
        }
        activate(act, &mut y, f);
        y
    }

    /// (dx, dkernel, dbias) of [`conv1d`] for the output gradient dy.
    #[allow(clippy::too_many_arguments)]
    pub fn conv1d_backward(
        x: &[f64],
        w: &[f64],
        bias: &[f64],
        t: usize,
        c: usize,
        k: usize,
        act: Activation,
        dy: &[f64],
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (f, to) = (bias.len(), t + 1 - k);
        let b = x.len() / (t * c);
        let y = conv1d(x, w, bias, t, c, k, act);
        let dz = activate_backward(act, &y, dy, f);
        let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; f]);
        for s in 0..b {
            for o in 0..to {
                for fi in 0..f {
                    let g = dz[(s * to + o) * f + fi];
                    db[fi] += g;
                    for j in 0..k {
                        for ch in 0..c {
                            let (xi, wi) = ((s * t + o + j) * c + ch, (j * c + ch) * f + fi);
                            dw[wi] += x[xi] * g;
                            dx[xi] += w[wi] * g;
                        }
                    }
                }
            }
        }
        (dx, dw, db)
    }
}
