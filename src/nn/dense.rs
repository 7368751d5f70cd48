//! Keras's Dense and Activation layers, and the output layer's losses from logits, as explicit
//! forward/backward pairs over flat row-major buffers for one chunk of a batch on one thread.
//!
//! Activations act on the last axis, so any `[B, ..., W]` tensor is `rows` rows of width `W`.
//! Every activation's derivative is a function of its output, so backward reads the forward's
//! output `y` and nothing else is kept. An output layer trained with a fused loss runs as
//! `Linear` and hands its logits to [`softmax_cross_entropy`] or [`sigmoid_cross_entropy`]
//! (stable for any logit, and the gradient is simply p - t).

use super::activation::{exp, sigmoid, MulAdd};
use super::gemm::{matmul, Op};
use super::network::bce_from_logit;
use super::packed::{matmul_packed, PackedB};
use crate::dispatch;

/// A Keras activation, applied along the last axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Linear,
    Relu,
    Sigmoid,
    Softmax,
}

impl Activation {
    /// y = f(y) in place, on rows of `width` (softmax normalises each row).
    pub fn forward(self, y: &mut [f32], width: usize) {
        match self {
            Activation::Linear => {}
            Activation::Relu => dispatch!(y.iter_mut().for_each(|v| *v = v.max(0.0))),
            Activation::Sigmoid => dispatch!(<M> y.iter_mut().for_each(|v| *v = sigmoid::<M>(*v))),
            Activation::Softmax => {
                dispatch!(<M> y.chunks_exact_mut(width).for_each(softmax_row::<M>))
            }
        }
    }

    /// dz = dy * f'(z), from the output y = f(z); rows of `width`. Relu's gradient at 0 is 0, as
    /// in TensorFlow.
    pub fn backward(self, y: &[f32], dy: &[f32], dz: &mut [f32], width: usize) {
        let n = dz.len();
        let (y, dy) = (&y[..n], &dy[..n]);
        match self {
            Activation::Linear => dz.copy_from_slice(dy),
            Activation::Relu => dispatch!(for ((d, &y), &g) in dz.iter_mut().zip(y).zip(dy) {
                *d = if y > 0.0 { g } else { 0.0 };
            }),
            Activation::Sigmoid => dispatch!(for ((d, &y), &g) in dz.iter_mut().zip(y).zip(dy) {
                *d = g * y * (1.0 - y);
            }),
            // dz_i = y_i (dy_i - sum_j dy_j y_j)
            Activation::Softmax => {
                let rows = dz.chunks_exact_mut(width).zip(y.chunks_exact(width));
                for ((d, y), g) in rows.zip(dy.chunks_exact(width)) {
                    let dot: f32 = y.iter().zip(g).map(|(a, b)| a * b).sum();
                    for ((d, &y), &g) in d.iter_mut().zip(y).zip(g) {
                        *d = y * (g - dot);
                    }
                }
            }
        }
    }
}

/// Softmax of one row in place, shifted by the row's max so exp never overflows.
#[inline(always)]
fn softmax_row<M: MulAdd>(row: &mut [f32]) {
    let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut s = 0.0;
    for v in row.iter_mut() {
        *v = exp::<M>(*v - m);
        s += *v;
    }
    let inv = 1.0 / s;
    row.iter_mut().for_each(|v| *v *= inv);
}

/// Softmax + categorical cross-entropy from logits `z` `[rows, width]` against target
/// distributions `t` (one-hot or soft): each row's loss is sum_i t_i (logsumexp(z) - z_i).
/// Writes dz = scale * (softmax(z) * sum(t) - t) (= p - t for a distribution) and returns the
/// sum of the rows' losses, in f64.
pub fn softmax_cross_entropy(
    z: &[f32],
    t: &[f32],
    width: usize,
    scale: f32,
    dz: &mut [f32],
) -> f64 {
    let mut loss = 0.0;
    let rows = z.chunks_exact(width).zip(t.chunks_exact(width));
    for ((z, t), d) in rows.zip(dz.chunks_exact_mut(width)) {
        let m = z.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
        let sum: f64 = z.iter().map(|&v| (v as f64 - m).exp()).sum();
        let lse = m + sum.ln();
        let tsum: f64 = t.iter().map(|&v| v as f64).sum();
        for ((d, &z), &t) in d.iter_mut().zip(z).zip(t) {
            let (z, t) = (z as f64, t as f64);
            loss += t * (lse - z);
            *d = (((z - lse).exp() * tsum - t) * scale as f64) as f32;
        }
    }
    loss
}

/// Sigmoid + binary cross-entropy from logits `z` `[rows, width]` against targets `t`: Keras
/// averages over the last axis, so each row's loss is the mean of its `width` terms. Writes
/// dz = scale * (sigmoid(z) - t) / width and returns the sum of the rows' losses, in f64.
pub fn sigmoid_cross_entropy(
    z: &[f32],
    t: &[f32],
    width: usize,
    scale: f32,
    dz: &mut [f32],
) -> f64 {
    let per = 1.0 / width as f64;
    let mut loss = 0.0;
    for ((d, &z), &t) in dz.iter_mut().zip(z).zip(t) {
        let (z, t) = (z as f64, t as f64);
        loss += bce_from_logit(z, t) * per;
        *d = ((1.0 / (1.0 + (-z).exp()) - t) * per * scale as f64) as f32;
    }
    loss
}

/// Grows `v` to at least `len` (never shrinks, so buffers are reused across batches).
pub(super) fn fit(v: &mut Vec<f32>, len: usize) {
    if v.len() < len {
        v.resize(len, 0.0);
    }
}

/// out[j] += sum over rows of dz[r, j]: a bias gradient; dz is `[rows, out.len()]`. Rows are
/// added in order, so the sums do not depend on the vector width.
pub(super) fn add_column_sums(dz: &[f32], out: &mut [f32]) {
    dispatch!(for row in dz.chunks_exact(out.len()) {
        for (o, &v) in out.iter_mut().zip(row) {
            *o += v;
        }
    })
}

/// y = act(y + bias) on every row of `y` `[rows, bias.len()]`: one pass for Linear and Relu
/// (the same values as adding, then activating).
pub(super) fn add_bias_activate(y: &mut [f32], bias: &[f32], act: Activation) {
    match act {
        Activation::Linear => dispatch!(for row in y.chunks_exact_mut(bias.len()) {
            for (v, &b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }),
        Activation::Relu => dispatch!(for row in y.chunks_exact_mut(bias.len()) {
            for (v, &b) in row.iter_mut().zip(bias) {
                *v = (*v + b).max(0.0);
            }
        }),
        Activation::Sigmoid | Activation::Softmax => {
            add_bias_activate(y, bias, Activation::Linear);
            act.forward(y, bias.len());
        }
    }
}

/// Keras Dense(units, activation): y = f(x W + b) on the last axis. W is `[in, units]`, b
/// `[units]`. Holds the kernel packed for the forward (W) and backward (W^T) products; call
/// [`Dense::pack`] after every weight update. Shared read-only by the threads.
#[derive(Clone, Debug)]
pub struct Dense {
    pub inp: usize,
    pub units: usize,
    pub act: Activation,
    /// W, `[in, units]`.
    fwd: PackedB,
    /// W^T, `[units, in]`.
    bwd: PackedB,
}

/// Gradients of a layer's kernel and bias (accumulated with `+=`).
pub struct Grads<'a> {
    pub kernel: &'a mut [f32],
    pub bias: &'a mut [f32],
}

/// Per-thread buffers of a layer for one chunk, reused across batches.
#[derive(Default)]
pub struct Cache {
    rows: usize,
    /// `[rows, out]` the output (after the activation).
    y: Vec<f32>,
    /// `[rows, out]` gradient w.r.t. the pre-activation (Conv1D lays it out with zero rows
    /// between samples, [`Cache::parts_padded`]).
    dz: Vec<f32>,
    /// `[rows, in]` gradient w.r.t. the input.
    dx: Vec<f32>,
    /// The max-pool's argmax steps.
    pub(super) idx: Vec<u32>,
}

impl Cache {
    /// Size for `rows` rows of `out` outputs and `inp` inputs (grows only).
    pub(super) fn prepare(&mut self, rows: usize, inp: usize, out: usize) {
        self.rows = rows;
        fit(&mut self.y, rows * out);
        fit(&mut self.dz, rows * out);
        fit(&mut self.dx, rows * inp);
    }

    pub(super) fn rows(&self) -> usize {
        self.rows
    }

    /// The output of the last forward, `[rows, out]` (rows as the layer counts them).
    pub fn output(&self, out: usize) -> &[f32] {
        &self.y[..self.rows * out]
    }

    /// The input gradient of the last backward, `[rows, in]`.
    pub fn input_grad(&self, inp: usize) -> &[f32] {
        &self.dx[..self.rows * inp]
    }

    /// (output, pre-activation gradient, input gradient) for a layer's own passes.
    pub(super) fn parts(&mut self, out: usize, inp: usize) -> (&mut [f32], &mut [f32], &mut [f32]) {
        let r = self.rows;
        (
            &mut self.y[..r * out],
            &mut self.dz[..r * out],
            &mut self.dx[..r * inp],
        )
    }

    /// [`Cache::parts`] with the pre-activation gradient's buffer grown to `dz_len` floats,
    /// for a layer that lays it out other than `[rows, out]`.
    pub(super) fn parts_padded(
        &mut self,
        out: usize,
        inp: usize,
        dz_len: usize,
    ) -> (&[f32], &mut [f32], &mut [f32]) {
        fit(&mut self.dz, dz_len);
        let r = self.rows;
        (
            &self.y[..r * out],
            &mut self.dz[..dz_len],
            &mut self.dx[..r * inp],
        )
    }
}

impl Dense {
    pub fn new(inp: usize, units: usize, act: Activation) -> Dense {
        Dense {
            inp,
            units,
            act,
            fwd: PackedB::new(),
            bwd: PackedB::new(),
        }
    }

    /// Repack from the kernel `[in, units]`.
    pub fn pack(&mut self, kernel: &[f32]) {
        let (i, u) = (self.inp, self.units);
        self.fwd.pack(kernel, u, i, u);
        self.bwd.pack_transposed(kernel, u, u, i);
    }

    /// y = f(x W + b) for x `[rows, in]`; the output is `cache.output(units)`.
    pub fn forward(&self, bias: &[f32], x: &[f32], rows: usize, cache: &mut Cache) {
        let (i, u) = (self.inp, self.units);
        cache.prepare(rows, i, u);
        let (y, _, _) = cache.parts(u, i);
        matmul_packed(rows, x, i, &self.fwd, y, u, false);
        add_bias_activate(y, bias, self.act);
    }

    /// Backward of the last forward on the same x, from dy `[rows, units]`: accumulates the
    /// weight gradients and leaves dx in `cache.input_grad(in)`.
    pub fn backward(&self, x: &[f32], dy: &[f32], cache: &mut Cache, grads: Grads) {
        let (i, u, rows) = (self.inp, self.units, cache.rows());
        let (y, dz, dx) = cache.parts(u, i);
        self.act.backward(y, dy, dz, u);
        add_column_sums(dz, grads.bias);
        // dW += x^T dz; dx = dz W^T
        matmul(i, u, rows, x, i, Op::T, dz, u, Op::N, grads.kernel, u, true);
        matmul_packed(rows, dz, u, &self.bwd, dx, i, false);
    }
}

/// The obviously-correct f64 twins, for tests (and the model's reference).
pub mod naive {
    use super::Activation;

    /// f applied in place to rows of `width`.
    pub fn activate(act: Activation, y: &mut [f64], width: usize) {
        for row in y.chunks_exact_mut(width) {
            match act {
                Activation::Linear => {}
                Activation::Relu => row.iter_mut().for_each(|v| *v = v.max(0.0)),
                Activation::Sigmoid => row.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
                Activation::Softmax => {
                    let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
                    row.iter_mut().for_each(|v| *v = (*v - m).exp() / s);
                }
            }
        }
    }

    /// dz from y = f(z) and dy, by the chain rule written out per element (softmax: the full
    /// Jacobian).
    pub fn activate_backward(act: Activation, y: &[f64], dy: &[f64], width: usize) -> Vec<f64> {
        let mut dz = vec![0.0; y.len()];
        for r in 0..y.len() / width {
            for i in 0..width {
                let k = r * width + i;
                dz[k] = match act {
                    Activation::Linear => dy[k],
                    Activation::Relu => {
                        if y[k] > 0.0 {
                            dy[k]
                        } else {
                            0.0
                        }
                    }
                    Activation::Sigmoid => dy[k] * y[k] * (1.0 - y[k]),
                    Activation::Softmax => (0..width)
                        .map(|j| {
                            let yj = y[r * width + j];
                            let jac = if i == j { yj * (1.0 - yj) } else { -yj * y[k] };
                            dy[r * width + j] * jac
                        })
                        .sum(),
                };
            }
        }
        dz
    }

    /// y = f(x W + b), x `[rows, in]`, W `[in, units]`.
    pub fn dense(x: &[f64], w: &[f64], b: &[f64], inp: usize, act: Activation) -> Vec<f64> {
        let u = b.len();
        let rows = x.len() / inp;
        let mut y = vec![0.0; rows * u];
        for r in 0..rows {
            for j in 0..u {
                y[r * u + j] = b[j] + (0..inp).map(|p| x[r * inp + p] * w[p * u + j]).sum::<f64>();
            }
        }
        activate(act, &mut y, u);
        y
    }

    /// (dx, dW, db) of [`dense`] for the output gradient dy.
    pub fn dense_backward(
        x: &[f64],
        w: &[f64],
        b: &[f64],
        inp: usize,
        act: Activation,
        dy: &[f64],
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let u = b.len();
        let rows = x.len() / inp;
        let y = dense(x, w, b, inp, act);
        let dz = activate_backward(act, &y, dy, u);
        let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; u]);
        for r in 0..rows {
            for j in 0..u {
                let g = dz[r * u + j];
                db[j] += g;
                for p in 0..inp {
                    dw[p * u + j] += x[r * inp + p] * g;
                    dx[r * inp + p] += g * w[p * u + j];
                }
            }
        }
        (dx, dw, db)
    }
}
