//! The GRU layer, Keras's default `GRU` exactly (reset_after=True, gate order z, r, h; sigmoid
//! and tanh), forward and backward through time for one chunk of a batch on one thread, built
//! like [`super::lstm`] and sharing its masked products:
//!
//! x_z, x_r, x_h = x W + b_in; r_z, r_r, r_h = h_{t-1} U + b_rec; z = σ(x_z + r_z);
//! r = σ(x_r + r_r); hh = tanh(x_h + r ⊙ r_h); h_t = z ⊙ h_{t-1} + (1 − z) ⊙ hh.
//!
//! Weights in Keras layout: kernel W `[D, 3H]`, recurrent kernel U `[H, 3H]`, bias `[2, 3H]`
//! (the input row b_in, then the recurrent row b_rec).
//!
//! Dropout as the LSTM's: a mask per sequence reused at every step, on the inputs and on
//! h_{t-1}. With `groups == 3` each gate has its own masks (Keras's GRUCell implementation 1,
//! which Keras picks when recurrent_dropout > 0, as for the LSTM); with `groups == 1` one mask
//! is shared by the gates (implementation 2). The recurrent mask multiplies h_{t-1} before U
//! only: the carry z ⊙ h_{t-1} uses the unmasked state.

use super::activation::{sigmoid, tanh, MulAdd};
use super::lstm::{
    add, fit, kept, kept_states, masked_product, masked_product_t, weight_grad, Mask, Masked,
    PackedGates, Upstream,
};
use super::packed::matmul_packed;
use super::params::orthogonal;
use crate::dispatch;
use rand::Rng;
use rand_pcg::Pcg64;

/// The GRU's bias and packed weights (see [`PackedGates::pack_gates`] with 3 gates).
#[derive(Clone, Copy, Debug)]
pub struct GruWeights<'a> {
    /// `[2, 3H]`: input bias row, recurrent bias row.
    pub bias: &'a [f32],
    /// The kernel `[D, 3H]` packed for the input projection and the input gradient.
    pub kernel_packed: &'a PackedGates,
    /// The recurrent kernel `[H, 3H]` packed for the per-step products.
    pub recurrent_packed: &'a PackedGates,
}

/// Gradients of the GRU's weights (accumulated with `+=`).
pub struct GruGrads<'a> {
    /// `[D, 3H]`
    pub kernel: &'a mut [f32],
    /// `[H, 3H]`
    pub recurrent: &'a mut [f32],
    /// `[2, 3H]`
    pub bias: &'a mut [f32],
}

/// Keras's initialisers for a GRU(h) on `d` inputs: (kernel `[d, 3h]` glorot_uniform,
/// recurrent kernel `[h, 3h]` orthogonal, bias `[2, 3h]` zeros).
pub fn init(d: usize, h: usize, rng: &mut Pcg64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let limit = (6.0 / (d + 3 * h) as f64).sqrt() as f32;
    let kernel = (0..d * 3 * h)
        .map(|_| rng.gen_range(-limit..limit))
        .collect();
    (kernel, orthogonal(h, 3 * h, rng), vec![0.0; 6 * h])
}

/// Per-thread activations and scratch for one chunk of `b` sequences of `t` steps.
#[derive(Default)]
pub struct GruCache {
    pub t: usize,
    pub b: usize,
    pub d: usize,
    pub h: usize,
    /// `[T*B, D]` inputs, time-major (row = t*B + b). Filled by the caller (the layer below).
    pub x: Vec<f32>,
    /// `[Gx, T*B, D]` inputs times each group's mask (empty without input dropout).
    xm: Vec<f32>,
    /// `[T, B, 3H]` input projections x W, then the activations (z, r, hh) after each step.
    gates: Vec<f32>,
    /// `[T, B, 3H]` h_{t-1} U; after each step its h block holds r_h (with b_rec).
    rec: Vec<f32>,
    /// `[T+1, B, H]` hidden states; `hs[0]` = 0, `hs[1..]` is the output sequence.
    hs: Vec<f32>,
    /// `[Gh, T, B, H]` h_{t-1} times each group's recurrent mask (empty without recurrent dropout).
    hm: Vec<f32>,
    /// `[T, B, 3H]` gradients w.r.t. the input pre-activations (x W + b_in) and the recurrent
    /// ones (h_{t-1} U + b_rec); they differ in the h block only (by the factor r).
    dzx: Vec<f32>,
    dzh: Vec<f32>,
    /// `[B, H]` gradient flowing into h_t, and scratch.
    dh: Vec<f32>,
    tmp_h: Vec<f32>,
    /// `[T*B, D]` gradient w.r.t. the inputs (read by the layer below), and scratch.
    pub dx: Vec<f32>,
    tmp_x: Vec<f32>,
    /// Inference scratch: `[B, 3H]` one step's h_{t-1} U, `[B, H]` h.
    inf_z: Vec<f32>,
    inf_h: Vec<f32>,
}

impl GruCache {
    /// Size the buffers for `b` sequences of `t` steps (grows only; reuse keeps allocation out
    /// of the training loop).
    pub fn prepare(&mut self, t: usize, b: usize, d: usize, h: usize) {
        (self.t, self.b, self.d, self.h) = (t, b, d, h);
        fit(&mut self.x, t * b * d);
        fit(&mut self.gates, t * b * 3 * h);
        fit(&mut self.rec, t * b * 3 * h);
        fit(&mut self.hs, (t + 1) * b * h);
    }

    /// The layer's output, h at the last step: `[B, H]`.
    pub fn output(&self) -> &[f32] {
        let n = self.b * self.h;
        &self.hs[self.t * n..(self.t + 1) * n]
    }

    /// The whole output sequence h_1..h_T (return_sequences): `[T, B, H]`, time-major.
    pub fn sequence(&self) -> &[f32] {
        let n = self.b * self.h;
        &self.hs[n..(self.t + 1) * n]
    }

    /// Inference without dropout from a projection table: `table` is `[V, 3H]` = embeddings *
    /// kernel, so each step's input projection is a row lookup. `ids` is `[B, T]`
    /// (batch-major). Keeps only one step's state; returns h_T `[B, H]`.
    pub fn infer(
        &mut self,
        table: &[f32],
        bias: &[f32],
        ids: &[u32],
        t_len: usize,
        h: usize,
        packed: &PackedGates,
    ) -> &[f32] {
        let b = ids.len() / t_len;
        let (bh, g3) = (b * h, 3 * h);
        fit(&mut self.inf_h, bh);
        fit(&mut self.inf_z, b * g3);
        self.inf_h[..bh].fill(0.0);
        for t in 0..t_len {
            let z = &mut self.inf_z[..b * g3];
            // h_{-1} = 0, so step 0's recurrent product is 0 (plus b_rec, added in the cell).
            matmul_packed(b, &self.inf_h[..bh], h, &packed.fwd, z, g3, false);
            let hs = &mut self.inf_h[..bh];
            dispatch!(<M> cell_infer::<M>(z, table, ids, t, t_len, bias, hs, h));
        }
        &self.inf_h[..bh]
    }

    /// Forward over the inputs in `self.x`. Masks (training only) are `[B, G, D]` and `[B, G, H]`.
    pub fn forward(&mut self, w: &GruWeights, xmask: Option<Mask>, hmask: Option<Mask>) {
        let (t_len, b, d, h) = (self.t, self.b, self.d, self.h);
        let (bh, g3) = (b * h, 3 * h);
        let rows = t_len * b;
        // Input projection for all steps at once (the biases are added in the gate arithmetic).
        let xkept = kept(&mut self.xm, xmask, rows, d);
        let x = &self.x[..rows * d];
        masked_product(
            x,
            b,
            d,
            xkept,
            w.kernel_packed,
            &mut self.gates[..rows * g3],
            false,
        );
        kept_states(&mut self.hm, hmask, rows, b, h);
        self.hs[..bh].fill(0.0);
        for t in 0..t_len {
            let rec = &mut self.rec[t * b * g3..(t + 1) * b * g3];
            let (hs_prev, hs_next) = self.hs.split_at_mut((t + 1) * bh);
            let hprev = &hs_prev[t * bh..];
            if t > 0 {
                let hkept = hmask.map(|m| Masked::at(m, &mut self.hm, t * bh, rows * h));
                masked_product(hprev, b, h, hkept, w.recurrent_packed, rec, false);
            } else {
                rec.fill(0.0);
            }
            let a = &mut self.gates[t * b * g3..(t + 1) * b * g3];
            let h_out = &mut hs_next[..bh];
            dispatch!(<M> cell_forward::<M>(a, rec, w.bias, hprev, h_out, h));
        }
    }

    /// Backward through time from `dh_last` (`[B, H]`, the gradient w.r.t. the output).
    /// Accumulates weight gradients into `grads` and leaves the input gradient in `self.dx`.
    pub fn backward(
        &mut self,
        w: &GruWeights,
        xmask: Option<Mask>,
        hmask: Option<Mask>,
        dh_last: &[f32],
        grads: GruGrads,
    ) {
        self.backward_from(w, xmask, hmask, Upstream::Last(dh_last), grads);
    }

    /// Backward through time from the gradient w.r.t. h_T or every h_t (`up`), added at each
    /// step to the gradient flowing back through the recurrence. Accumulates weight gradients
    /// into `grads` and leaves the input gradient in `self.dx`.
    pub fn backward_from(
        &mut self,
        w: &GruWeights,
        xmask: Option<Mask>,
        hmask: Option<Mask>,
        up: Upstream,
        grads: GruGrads,
    ) {
        let (t_len, b, d, h) = (self.t, self.b, self.d, self.h);
        let (bh, g3) = (b * h, 3 * h);
        let rows = t_len * b;
        fit(&mut self.dzx, rows * g3);
        fit(&mut self.dzh, rows * g3);
        fit(&mut self.dh, bh);
        fit(&mut self.tmp_h, bh);
        fit(&mut self.dx, rows * d);
        self.dh[..bh].fill(0.0);
        for t in (0..t_len).rev() {
            let dh = &mut self.dh[..bh];
            if let Some(u) = up.at(t, t_len, bh) {
                add(dh, u);
            }
            let step = t * b * g3..(t + 1) * b * g3;
            let (a, rec) = (&self.gates[step.clone()], &self.rec[step.clone()]);
            let (dzx, dzh) = (&mut self.dzx[step.clone()], &mut self.dzh[step]);
            let hprev = &self.hs[t * bh..(t + 1) * bh];
            // Leaves z ⊙ dh in dh: the carry's share of dh_{t-1}.
            dispatch!(cell_backward(a, rec, hprev, dh, dzx, dzh, h));
            if t == 0 {
                break; // h_{-1} is a constant zero: nothing flows further back.
            }
            let tmp = &mut self.tmp_h[..bh];
            masked_product_t(dzh, b, h, hmask, w.recurrent_packed, tmp, dh, true);
        }
        let (dzx, dzh) = (&self.dzx[..rows * g3], &self.dzh[..rows * g3]);
        let (db_in, db_rec) = grads.bias.split_at_mut(g3);
        column_sums(dzx, db_in);
        column_sums(dzh, db_rec);
        // dU += h_{t-1}^T dzh, dW += x^T dzx: one GEMM over all steps per group.
        weight_grad(&self.hs, &self.hm, hmask, h, dzh, grads.recurrent);
        weight_grad(&self.x, &self.xm, xmask, d, dzx, grads.kernel);
        if xmask.is_some() {
            fit(&mut self.tmp_x, rows * d);
        }
        let dx = &mut self.dx[..rows * d];
        masked_product_t(
            dzx,
            b,
            d,
            xmask,
            w.kernel_packed,
            &mut self.tmp_x,
            dx,
            false,
        );
    }
}

/// sums[j] += Σ_r m[r, j] for `m` `[rows, n]` (the bias gradients).
fn column_sums(m: &[f32], sums: &mut [f32]) {
    for row in m.chunks_exact(sums.len()) {
        for (s, v) in sums.iter_mut().zip(row) {
            *s += v;
        }
    }
}

/// The three gates' blocks (z, r, h) of a `[3H]` row.
#[inline(always)]
fn gates(row: &[f32], hu: usize) -> [&[f32]; 3] {
    let (z, rest) = row.split_at(hu);
    let (r, h) = rest.split_at(hu);
    [z, r, &h[..hu]]
}

/// [`gates`] for writing.
#[inline(always)]
fn gates_mut(row: &mut [f32], hu: usize) -> [&mut [f32]; 3] {
    let (z, rest) = row.split_at_mut(hu);
    let (r, h) = rest.split_at_mut(hu);
    [z, r, &mut h[..hu]]
}

/// One step's gate arithmetic for every row: `a` `[B, 3H]` holds x W (without b_in) and
/// becomes the activations (z, r, hh); `rec` `[B, 3H]` holds h_{t-1} U (without b_rec) and its
/// h block becomes r_h; h_out = z ⊙ h_{t-1} + (1 − z) ⊙ hh.
#[inline(always)]
fn cell_forward<M: MulAdd>(
    a: &mut [f32],
    rec: &mut [f32],
    bias: &[f32],
    hprev: &[f32],
    h_out: &mut [f32],
    hu: usize,
) {
    let (g3, (b_in, b_rec)) = (3 * hu, bias.split_at(3 * hu));
    let ins = a.chunks_exact_mut(g3).zip(rec.chunks_exact_mut(g3));
    let outs = hprev.chunks_exact(hu).zip(h_out.chunks_exact_mut(hu));
    for ((ar, rr), (hp, ho)) in ins.zip(outs) {
        let [xz, xr, xh] = gates_mut(ar, hu);
        let [rz, rr, rh] = gates_mut(rr, hu);
        row_forward::<M>(
            xz,
            xr,
            xh,
            rz,
            rr,
            rh,
            gates(b_in, hu),
            gates(b_rec, hu),
            hp,
            ho,
        );
    }
}

/// One row of [`cell_forward`]. Every written slice is its own argument, so the compiler knows
/// they do not overlap and vectorises the loop.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn row_forward<M: MulAdd>(
    xz: &mut [f32],
    xr: &mut [f32],
    xh: &mut [f32],
    rz: &[f32],
    rr: &[f32],
    rh: &mut [f32],
    [bz, br, bh]: [&[f32]; 3],
    [cz, cr, ch]: [&[f32]; 3],
    hp: &[f32],
    h: &mut [f32],
) {
    let n = h.len();
    let (xz, xr, xh, rz, rr, rh) = (
        &mut xz[..n],
        &mut xr[..n],
        &mut xh[..n],
        &rz[..n],
        &rr[..n],
        &mut rh[..n],
    );
    let (bz, br, bh, cz, cr, ch, hp) = (
        &bz[..n],
        &br[..n],
        &bh[..n],
        &cz[..n],
        &cr[..n],
        &ch[..n],
        &hp[..n],
    );
    for j in 0..n {
        let z = sigmoid::<M>(xz[j] + bz[j] + rz[j] + cz[j]);
        let r = sigmoid::<M>(xr[j] + br[j] + rr[j] + cr[j]);
        let rhj = rh[j] + ch[j];
        let hh = tanh::<M>(M::mul_add(r, rhj, xh[j] + bh[j]));
        (xz[j], xr[j], xh[j], rh[j]) = (z, r, hh, rhj);
        h[j] = M::mul_add(z, hp[j] - hh, hh);
    }
}

/// One inference step for every row: the gates' inputs are the table row of the row's token at
/// step t + b_in, and z `[B, 3H]` (h_{t-1} U) + b_rec; h `[B, H]` is updated in place.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn cell_infer<M: MulAdd>(
    z: &[f32],
    table: &[f32],
    ids: &[u32],
    t: usize,
    t_len: usize,
    bias: &[f32],
    h: &mut [f32],
    hu: usize,
) {
    let (g3, (b_in, b_rec)) = (3 * hu, bias.split_at(3 * hu));
    for (row, (zr, hr)) in z.chunks_exact(g3).zip(h.chunks_exact_mut(hu)).enumerate() {
        let tok = ids[row * t_len + t] as usize;
        let xr = &table[tok * g3..(tok + 1) * g3];
        let [bz, br, bh] = gates(b_in, hu);
        let [cz, cr, ch] = gates(b_rec, hu);
        let ([xz, xr, xh], [rz, rr, rh]) = (gates(xr, hu), gates(zr, hu));
        for j in 0..hu {
            let z = sigmoid::<M>(xz[j] + bz[j] + rz[j] + cz[j]);
            let r = sigmoid::<M>(xr[j] + br[j] + rr[j] + cr[j]);
            let hh = tanh::<M>(M::mul_add(r, rh[j] + ch[j], xh[j] + bh[j]));
            hr[j] = M::mul_add(z, hr[j] - hh, hh);
        }
    }
}

/// One step backward for every row: from dh (into h_t) to dzx and dzh `[B, 3H]`, the gradients
/// w.r.t. the input and recurrent pre-activations; dh becomes z ⊙ dh (what flows into h_{t-1}
/// through the carry).
#[inline(always)]
fn cell_backward(
    a: &[f32],
    rec: &[f32],
    hprev: &[f32],
    dh: &mut [f32],
    dzx: &mut [f32],
    dzh: &mut [f32],
    hu: usize,
) {
    let g3 = 3 * hu;
    let ins = a.chunks_exact(g3).zip(rec.chunks_exact(g3));
    let outs = dzx.chunks_exact_mut(g3).zip(dzh.chunks_exact_mut(g3));
    let states = hprev.chunks_exact(hu).zip(dh.chunks_exact_mut(hu));
    for (((ar, rr), (xr, hr)), (hp, dhr)) in ins.zip(outs).zip(states) {
        let [xz, xr, xh] = gates_mut(xr, hu);
        let [hz, hr, hh] = gates_mut(hr, hu);
        row_backward(
            gates(ar, hu),
            &rr[2 * hu..],
            hp,
            dhr,
            xz,
            xr,
            xh,
            hz,
            hr,
            hh,
        );
    }
}

/// One row of [`cell_backward`]; `a` holds the row's (z, r, hh), `rh` its r_h.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn row_backward(
    [az, ar, ah]: [&[f32]; 3],
    rh: &[f32],
    hp: &[f32],
    dh: &mut [f32],
    xz: &mut [f32],
    xr: &mut [f32],
    xh: &mut [f32],
    hz: &mut [f32],
    hr: &mut [f32],
    hh: &mut [f32],
) {
    let n = dh.len();
    let (az, ar, ah, rh, hp) = (&az[..n], &ar[..n], &ah[..n], &rh[..n], &hp[..n]);
    let (xz, xr, xh, hz, hr, hh) = (
        &mut xz[..n],
        &mut xr[..n],
        &mut xh[..n],
        &mut hz[..n],
        &mut hr[..n],
        &mut hh[..n],
    );
    for j in 0..n {
        let (z, r, c, g) = (az[j], ar[j], ah[j], dh[j]);
        let dc = g * (1.0 - z) * (1.0 - c * c);
        let dz = g * (hp[j] - c) * z * (1.0 - z);
        let dr = dc * rh[j] * r * (1.0 - r);
        (xz[j], xr[j], xh[j]) = (dz, dr, dc);
        (hz[j], hr[j], hh[j]) = (dz, dr, dc * r);
        dh[j] = g * z;
    }
}
