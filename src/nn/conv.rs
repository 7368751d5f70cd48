//! Keras's Conv1D (padding 'valid', stride 1, dilation 1) over batch-major `[B, T, C]`
//! activations, forward and backward for one chunk of a batch on one thread.
//!
//! With valid padding and stride 1 the window of output step t is the contiguous slice
//! x[s, t..t+k, :], k*C floats. Forward copies the windows into an unfolded input `[B*(T-k+1),
//! k*C]` (cheap: k copies of x) and makes the output one packed GEMM with the kernel `[k, C, F]`
//! viewed as `[k*C, F]`. Backward reuses that copy: dkernel = X_unf^T dz is one GEMM over the
//! whole chunk, and dX_unf = dz W^T (one packed GEMM, into the same buffer) is overlap-added
//! back into dx. The unfolded rows could instead be read in place with row stride C (they
//! overlap; only `matmul` takes that, the packed kernel needs lda >= k*C): at Keras's imdb_cnn
//! shape the forward is as fast either way (~41 GFLOP/s on one thread, copy included), and the
//! backward is 1.25x faster from the copy (`conv_gemm_timing` in `tests/nn_layers.rs`).

use super::dense::{add_bias, add_column_sums, fit, Activation, Cache, Grads};
use super::gemm::{matmul, Op};
use super::packed::{matmul_packed, PackedB};

/// Conv1D(filters F, kernel_size k, activation) on inputs of T steps and C channels:
/// `[B, T, C]` -> `[B, T-k+1, F]`. Kernel `[k, C, F]` (Keras's layout), bias `[F]`. Holds the
/// kernel packed for the forward and backward products; call [`Conv1d::pack`] after every
/// weight update. Shared read-only by the threads.
#[derive(Clone, Debug)]
pub struct Conv1d {
    pub steps: usize,
    pub channels: usize,
    pub kernel_size: usize,
    pub filters: usize,
    pub act: Activation,
    /// W as `[k*C, F]`.
    fwd: PackedB,
    /// W^T, `[F, k*C]`.
    bwd: PackedB,
}

impl Conv1d {
    /// Panics unless 1 <= kernel_size <= steps (the model checks its configuration first).
    pub fn new(
        steps: usize,
        channels: usize,
        kernel_size: usize,
        filters: usize,
        act: Activation,
    ) -> Conv1d {
        assert!(
            (1..=steps).contains(&kernel_size),
            "Conv1d: kernel_size {kernel_size} not in 1..={steps}"
        );
        Conv1d {
            steps,
            channels,
            kernel_size,
            filters,
            act,
            fwd: PackedB::new(),
            bwd: PackedB::new(),
        }
    }

    /// Repack from the kernel `[k, C, F]`.
    pub fn pack(&mut self, kernel: &[f32]) {
        let (kc, f) = (self.kernel_size * self.channels, self.filters);
        self.fwd.pack(kernel, f, kc, f);
        self.bwd.pack_transposed(kernel, f, f, kc);
    }

    /// Output steps, T - k + 1.
    pub fn out_steps(&self) -> usize {
        self.steps + 1 - self.kernel_size
    }

    /// Width of one sample's output, `(T-k+1) * F` (the `out` of [`Cache::output`]).
    pub fn out_len(&self) -> usize {
        self.out_steps() * self.filters
    }

    /// y = f(conv(x) + b) for x `[b, T, C]`; keeps the unfolded x for the backward.
    pub fn forward(&self, bias: &[f32], x: &[f32], b: usize, cache: &mut Cache) {
        let (t, c, kc, f, to) = self.dims();
        cache.prepare(b, t * c, to * f);
        // `[b*(T-k+1), k*C]`: row (s, t) is x[s, t..t+k, :].
        let mut unf = std::mem::take(&mut cache.scratch);
        fit(&mut unf, b * to * kc);
        for (xs, us) in x.chunks_exact(t * c).zip(unf.chunks_exact_mut(to * kc)) {
            for (r, row) in us.chunks_exact_mut(kc).enumerate() {
                row.copy_from_slice(&xs[r * c..r * c + kc]);
            }
        }
        let (y, _, _) = cache.parts(to * f, t * c);
        matmul_packed(b * to, &unf, kc, &self.fwd, y, f, false);
        add_bias(y, bias);
        self.act.forward(y, f);
        cache.scratch = unf;
    }

    /// Backward of the last forward, from dy `[b, T-k+1, F]`: accumulates the kernel and bias
    /// gradients and leaves dx `[b, T, C]` in `cache.input_grad(T * C)`.
    pub fn backward(&self, dy: &[f32], cache: &mut Cache, grads: Grads) {
        let (t, c, kc, f, to) = self.dims();
        let rows = cache.rows() * to;
        let mut unf = std::mem::take(&mut cache.scratch);
        let (y, dz, dx) = cache.parts(to * f, t * c);
        self.act.backward(y, dy, dz, f);
        add_column_sums(dz, grads.bias);
        // dkernel += X_unf^T dz; then the buffer takes dX_unf = dz W^T.
        matmul(
            kc,
            f,
            rows,
            &unf,
            kc,
            Op::T,
            dz,
            f,
            Op::N,
            grads.kernel,
            f,
            true,
        );
        let du = &mut unf[..rows * kc];
        matmul_packed(rows, dz, f, &self.bwd, du, kc, false);
        // Overlap-add: window (s, t) adds into x[s, t..t+k, :].
        for (ds, us) in dx.chunks_exact_mut(t * c).zip(du.chunks_exact(to * kc)) {
            ds.fill(0.0);
            for (r, row) in us.chunks_exact(kc).enumerate() {
                for (d, &v) in ds[r * c..r * c + kc].iter_mut().zip(row) {
                    *d += v;
                }
            }
        }
        cache.scratch = unf;
    }

    /// (T, C, k*C, F, T-k+1)
    fn dims(&self) -> (usize, usize, usize, usize, usize) {
        let (t, c, k, f) = (self.steps, self.channels, self.kernel_size, self.filters);
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
