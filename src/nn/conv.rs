//! Keras's Conv1D (padding 'valid', stride 1, dilation 1) over batch-major `[B, T, C]`
//! activations, forward and backward for one chunk of a batch on one thread.
//!
//! With valid padding and stride 1 the window of output step t is the contiguous slice
//! x[s, t..t+k, :], k*C floats, so x itself is the unfolded input: rows of k*C floats that
//! overlap, C apart (the packed kernel and `gemm` both read such rows in place; an unfolded
//! copy was 3.7 MB per thread in imdb_cnn-lstm, out of L2). Forward is one packed GEMM per
//! sample with the kernel `[k, C, F]` viewed as `[k*C, F]`. Backward lays dz out once as
//! P = k-1 zero rows, then per sample its T-k+1 rows of dz and k-1 zero rows. Then
//! - dkernel = X^T P[k-1..] over all B*T-k+1 window positions of the chunk, one GEMM: a window
//!   that crosses into the next sample meets only zero rows of P;
//! - dx is the "full" convolution of dz with the flipped kernel: dx row p (of the chunk's B*T)
//!   is the window P[p..p+k] (k*F floats, rows F apart) times the kernel flipped along k and
//!   transposed, `[k*F, C]`, one GEMM of depth k*F for the whole chunk.

use super::dense::{add_bias_activate, add_column_sums, fit, Activation, Cache, Grads};
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

    /// y = f(conv(x) + b) for x `[b, T, C]`.
    pub fn forward(&self, bias: &[f32], x: &[f32], b: usize, cache: &mut Cache) {
        let (t, c, _, f, to) = self.dims();
        cache.prepare(b, t * c, to * f);
        let (y, _, _) = cache.parts(to * f, t * c);
        // Sample by sample, so the bias and activation meet the output still in L2.
        for (xs, ys) in x.chunks_exact(t * c).zip(y.chunks_exact_mut(to * f)) {
            matmul_packed(to, xs, c, &self.fwd, ys, f, false);
            add_bias_activate(ys, bias, self.act);
        }
    }

    /// Backward of the last forward on x, from dy `[b, T-k+1, F]`: accumulates the kernel and
    /// bias gradients and leaves dx `[b, T, C]` in `cache.input_grad(T * C)`.
    pub fn backward(&self, x: &[f32], dy: &[f32], cache: &mut Cache, grads: Grads) {
        let (t, c, kc, f, to) = self.dims();
        let (b, k) = (cache.rows(), self.kernel_size);
        let (y, p, dx) = cache.parts_padded(to * f, t * c, (k - 1 + b * t) * f);
        let (lead, samples) = p.split_at_mut((k - 1) * f);
        lead.fill(0.0);
        // dz straight into its place in P, sample by sample (the bias sums read it in L2).
        let per_sample = samples.chunks_exact_mut(t * f).zip(y.chunks_exact(to * f));
        for ((ps, ys), dys) in per_sample.zip(dy.chunks_exact(to * f)) {
            let (dz, tail) = ps.split_at_mut(to * f);
            self.act.backward(ys, dys, dz, f);
            add_column_sums(dz, grads.bias);
            tail.fill(0.0);
        }
        matmul(
            kc,
            f,
            b * t + 1 - k,
            x,
            c,
            Op::T,
            samples,
            f,
            Op::N,
            grads.kernel,
            f,
            true,
        );
        matmul_packed(b * t, p, f, &self.full, dx, c, false);
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
