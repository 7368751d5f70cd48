//! Keras's Conv1D (padding 'valid', stride 1, dilation 1) over batch-major `[B, T, C]`
//! activations, forward and backward for one chunk of a batch on one thread.
//!
//! With valid padding and stride 1 the window of output step t is the contiguous slice
//! x[s, t..t+k, :], k*C floats. Forward copies the windows into an unfolded input `[B*(T-k+1),
//! k*C]` (cheap: k copies of x) and makes the output one packed GEMM with the kernel `[k, C, F]`
//! viewed as `[k*C, F]`. Backward reuses that copy: dkernel = X_unf^T dz is one GEMM over the
//! whole chunk. dx is the "full" convolution of dz with the flipped kernel: each sample's dz
//! between k-1 zero rows on either side, whose windows of k rows (read in place: the packed
//! kernel takes overlapping rows, stride F) times the kernel flipped along k and transposed,
//! `[k*F, C]`, give dx row by row. That is one GEMM of depth k*F per sample, where
//! dX_unf = dz W^T (depth F, 64 in imdb_cnn-lstm) wrote k times the floats of dx and then
//! overlap-added them.

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
    /// The kernel flipped along k and transposed, `[k*F, C]`: row i*F + f is W[k-1-i, :, f].
    full: PackedB,
    /// Its unpacked form, `[C, k*F]` (kept to reuse the allocation).
    flipped: Vec<f32>,
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
            full: PackedB::new(),
            flipped: Vec::new(),
        }
    }

    /// Repack from the kernel `[k, C, F]`.
    pub fn pack(&mut self, kernel: &[f32]) {
        let (k, c, f) = (self.kernel_size, self.channels, self.filters);
        self.fwd.pack(kernel, f, k * c, f);
        // flipped[ch, i*F..(i+1)*F] = W[k-1-i, ch, :]
        fit(&mut self.flipped, c * k * f);
        for (ch, row) in self.flipped.chunks_exact_mut(k * f).take(c).enumerate() {
            for (i, dst) in row.chunks_exact_mut(f).enumerate() {
                let j = k - 1 - i;
                dst.copy_from_slice(&kernel[(j * c + ch) * f..(j * c + ch + 1) * f]);
            }
        }
        self.full.pack_transposed(&self.flipped, k * f, k * f, c);
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
        let (b, k) = (cache.rows(), self.kernel_size);
        let rows = b * to;
        let mut unf = std::mem::take(&mut cache.scratch);
        let (y, dz, dx) = cache.parts(to * f, t * c);
        self.act.backward(y, dy, dz, f);
        add_column_sums(dz, grads.bias);
        // dkernel += X_unf^T dz; then the buffer takes the padded dz.
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
        // Per sample T + k - 1 rows: k-1 zeros, dz, k-1 zeros; dx step t reads rows t..t+k.
        let tp = t + k - 1;
        fit(&mut unf, b * tp * f);
        for (ps, zs) in unf.chunks_exact_mut(tp * f).zip(dz.chunks_exact(to * f)) {
            let (head, rest) = ps.split_at_mut((k - 1) * f);
            let (mid, tail) = rest.split_at_mut(to * f);
            head.fill(0.0);
            mid.copy_from_slice(zs);
            tail.fill(0.0);
        }
        for (ps, ds) in unf.chunks_exact(tp * f).zip(dx.chunks_exact_mut(t * c)) {
            matmul_packed(t, ps, f, &self.full, ds, c, false);
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
