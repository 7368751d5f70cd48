//! The fused LSTM layer (Keras semantics, gate order i, f, c, o), forward and backward through
//! time for one chunk of a batch on one thread.
//!
//! Forward: the input projection of all time steps is one GEMM per mask group before the loop;
//! each step is the recurrent GEMM plus one fused pass of gate arithmetic. Backward mirrors it;
//! weight gradients are accumulated as large GEMMs after the loop. Buffers live in
//! [`LstmCache`] and are reused across batches: nothing is allocated inside the time loop.
//! The output is h_T ([`LstmCache::output`]) or every h_t ([`LstmCache::sequence`], Keras's
//! return_sequences); the backward pass takes the gradient of either ([`Upstream`]).
//!
//! Dropout follows Keras: a mask per sequence, reused at every step, applied to the inputs
//! (`dropout`) and to h_{t-1} (`recurrent_dropout`). With `groups == 4` each gate has its own
//! mask (Keras's implementation 1, our default: Keras 2 always, and Keras >= 3.8 whenever
//! recurrent_dropout > 0), so the projection splits into 4 GEMMs of width `units`; with
//! `groups == 1` one mask is shared by all gates (Keras 3.0-3.7, and Keras >= 3.8 without
//! recurrent dropout).
//!
//! The masked products and weight gradients below are shared with [`super::gru`].

use super::activation::{sigmoid, tanh, MulAdd};
use super::gemm::{matmul, Op};
use super::packed::{matmul_packed, PackedB};
use crate::dispatch;

/// A dropout mask for a chunk of `rows` sequences: `[rows, groups, width]`, each value 0 or
/// 1/(1-rate) (inverted dropout).
#[derive(Clone, Copy, Debug)]
pub struct Mask<'a> {
    pub groups: usize,
    pub data: &'a [f32],
}

/// The gradient flowing into a recurrent layer's output.
#[derive(Clone, Copy, Debug)]
pub enum Upstream<'a> {
    /// `[B, H]`, into h_T alone (the layer returns its last state).
    Last(&'a [f32]),
    /// `[T, B, H]`, into every h_t (return_sequences).
    Steps(&'a [f32]),
}

impl<'a> Upstream<'a> {
    /// The part flowing into step t's output (`[B, H]`) of `t_len` steps, if any.
    pub(crate) fn at(self, t: usize, t_len: usize, bh: usize) -> Option<&'a [f32]> {
        match self {
            Upstream::Last(d) => (t + 1 == t_len).then(|| &d[..bh]),
            Upstream::Steps(d) => Some(&d[t * bh..(t + 1) * bh]),
        }
    }
}

/// The LSTM's weights in Keras layout plus packed copies (forward and transposed) for the
/// products that run on every batch.
#[derive(Clone, Copy, Debug)]
pub struct LstmWeights<'a> {
    /// `[D, 4H]`
    pub kernel: &'a [f32],
    /// `[H, 4H]`
    pub recurrent: &'a [f32],
    /// `[4H]`
    pub bias: &'a [f32],
    /// The kernel packed for the input projection and the input gradient.
    pub kernel_packed: &'a PackedGates,
    /// The recurrent kernel packed for the per-step products.
    pub recurrent_packed: &'a PackedGates,
}

/// A gate weight matrix W `[K, G*H]` (G gates of H units) packed once per weight update for
/// [`matmul_packed`]: whole (no or shared mask) and per gate, forward (W) and backward (W^T).
#[derive(Clone, Debug, Default)]
pub struct PackedGates {
    /// W, `[K, G*H]`.
    pub fwd: PackedB,
    /// W's column block of each gate, `[K, H]`.
    pub fwd_gate: Vec<PackedB>,
    /// W^T, `[G*H, K]`.
    pub bwd: PackedB,
    /// Each gate's block of W^T, `[H, K]`.
    pub bwd_gate: Vec<PackedB>,
}

impl PackedGates {
    /// Repack from an LSTM's W `[k, 4h]` (row-major).
    pub fn pack(&mut self, w: &[f32], k: usize, h: usize) {
        self.pack_gates(w, k, 4, h);
    }

    /// Repack from W `[k, gates*h]` (row-major), reusing the allocations.
    pub fn pack_gates(&mut self, w: &[f32], k: usize, gates: usize, h: usize) {
        let n = gates * h;
        self.fwd.pack(w, n, k, n);
        self.bwd.pack_transposed(w, n, n, k);
        self.fwd_gate.resize_with(gates, PackedB::new);
        self.bwd_gate.resize_with(gates, PackedB::new);
        for g in 0..gates {
            self.fwd_gate[g].pack(&w[g * h..], n, k, h);
            self.bwd_gate[g].pack_transposed(&w[g * h..], n, h, k);
        }
    }

    fn forward(&self, groups: usize, g: usize) -> &PackedB {
        if groups == 1 {
            &self.fwd
        } else {
            &self.fwd_gate[g]
        }
    }

    fn backward(&self, groups: usize, g: usize) -> &PackedB {
        if groups == 1 {
            &self.bwd
        } else {
            &self.bwd_gate[g]
        }
    }
}

/// Gradients of the LSTM's weights (accumulated with `+=`).
pub struct LstmGrads<'a> {
    /// `[D, 4H]`
    pub kernel: &'a mut [f32],
    /// `[H, 4H]`
    pub recurrent: &'a mut [f32],
    /// `[4H]`
    pub bias: &'a mut [f32],
}

/// Per-thread activations and scratch for one chunk of `b` sequences of `t` steps.
#[derive(Default)]
pub struct LstmCache {
    pub t: usize,
    pub b: usize,
    pub d: usize,
    pub h: usize,
    /// `[T*B, D]` inputs, time-major (row = t*B + b). Filled by the caller (the layer below).
    pub x: Vec<f32>,
    /// `[Gx, T*B, D]` inputs times each group's mask (empty without input dropout).
    xm: Vec<f32>,
    /// `[T, B, 4H]` pre-activations, then gate activations (i, f, g, o) after each step.
    gates: Vec<f32>,
    /// `[T+1, B, H]` hidden states; `hs[0]` = 0, `hs[1..]` is the output sequence.
    hs: Vec<f32>,
    /// `[Gh, T, B, H]` h_{t-1} times each group's recurrent mask (empty without recurrent dropout).
    hm: Vec<f32>,
    /// `[T+1, B, H]` cell states; `cs[0]` = 0.
    cs: Vec<f32>,
    /// `[T, B, H]` tanh(c_t).
    tcs: Vec<f32>,
    /// `[T, B, 4H]` gradient w.r.t. the pre-activations.
    dz: Vec<f32>,
    /// `[B, H]` gradient flowing into h_t and c_t, and scratch.
    dh: Vec<f32>,
    dc: Vec<f32>,
    tmp_h: Vec<f32>,
    /// `[T*B, D]` gradient w.r.t. the inputs (read by the layer below), and scratch.
    pub dx: Vec<f32>,
    tmp_x: Vec<f32>,
    /// Inference scratch: `[B, 4H]` one step's h_{t-1} U, `[B, H]` h and c.
    inf_z: Vec<f32>,
    inf_h: Vec<f32>,
    inf_c: Vec<f32>,
}

pub(crate) fn fit(v: &mut Vec<f32>, len: usize) {
    if v.len() < len {
        v.resize(len, 0.0);
    }
}

impl LstmCache {
    /// Size the buffers for `b` sequences of `t` steps (grows only; reuse keeps allocation out
    /// of the training loop).
    pub fn prepare(&mut self, t: usize, b: usize, d: usize, h: usize) {
        (self.t, self.b, self.d, self.h) = (t, b, d, h);
        fit(&mut self.x, t * b * d);
        fit(&mut self.gates, t * b * 4 * h);
        fit(&mut self.hs, (t + 1) * b * h);
        fit(&mut self.cs, (t + 1) * b * h);
        fit(&mut self.tcs, t * b * h);
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

    /// Inference without dropout from a projection table: `table` is `[V, 4H]` = embeddings *
    /// kernel, so each step's input projection is a row lookup instead of a GEMM (half the
    /// FLOPs). `ids` is `[B, T]` (batch-major). Keeps only one step's state; returns h_T `[B, H]`.
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
        let (bh, g4) = (b * h, 4 * h);
        fit(&mut self.inf_h, bh);
        fit(&mut self.inf_c, bh);
        fit(&mut self.inf_z, b * g4);
        self.inf_c[..bh].fill(0.0);
        for t in 0..t_len {
            let z = &mut self.inf_z[..b * g4];
            // z = h_{t-1} U; the table row and the bias are added in the cell.
            if t > 0 {
                matmul_packed(b, &self.inf_h[..bh], h, &packed.fwd, z, g4, false);
            } else {
                z.fill(0.0);
            }
            let (c, h_out) = (&mut self.inf_c[..bh], &mut self.inf_h[..bh]);
            dispatch!(<M> cell_infer::<M>(z, table, ids, t, t_len, bias, c, h_out, h));
        }
        &self.inf_h[..bh]
    }

    /// Forward over the inputs in `self.x`. Masks (training only) are `[B, G, D]` and `[B, G, H]`.
    pub fn forward(&mut self, w: &LstmWeights, xmask: Option<Mask>, hmask: Option<Mask>) {
        let (t_len, b, d, h) = (self.t, self.b, self.d, self.h);
        let (bh, g4) = (b * h, 4 * h);
        let rows = t_len * b;
        let gates = &mut self.gates[..rows * g4];
        // Input projection for all steps at once (the bias is added in the gate arithmetic).
        let xkept = kept(&mut self.xm, xmask, rows, d);
        let x = &self.x[..rows * d];
        masked_product(x, b, d, xkept, w.kernel_packed, gates, false);
        kept_states(&mut self.hm, hmask, rows, b, h);
        self.hs[..bh].fill(0.0);
        self.cs[..bh].fill(0.0);
        for t in 0..t_len {
            let z = &mut gates[t * b * g4..(t + 1) * b * g4];
            if t > 0 {
                let hprev = &self.hs[t * bh..(t + 1) * bh];
                let hkept = hmask.map(|m| Masked::at(m, &mut self.hm, t * bh, rows * h));
                masked_product(hprev, b, h, hkept, w.recurrent_packed, z, true);
            }
            let (cs_prev, cs_next) = self.cs.split_at_mut((t + 1) * bh);
            let c_prev = &cs_prev[t * bh..];
            let c = &mut cs_next[..bh];
            let tc = &mut self.tcs[t * bh..(t + 1) * bh];
            let h_out = &mut self.hs[(t + 1) * bh..(t + 2) * bh];
            dispatch!(<M> cell_forward::<M>(z, w.bias, c_prev, c, tc, h_out, h));
        }
    }

    /// Backward through time from `dh_last` (`[B, H]`, the gradient w.r.t. the output).
    /// Accumulates weight gradients into `grads` and leaves the input gradient in `self.dx`.
    pub fn backward(
        &mut self,
        w: &LstmWeights,
        xmask: Option<Mask>,
        hmask: Option<Mask>,
        dh_last: &[f32],
        grads: LstmGrads,
    ) {
        self.backward_from(w, xmask, hmask, Upstream::Last(dh_last), grads);
    }

    /// Backward through time from the gradient w.r.t. h_T or every h_t (`up`), added at each
    /// step to the gradient flowing back through the recurrence. Accumulates weight gradients
    /// into `grads` and leaves the input gradient in `self.dx`.
    pub fn backward_from(
        &mut self,
        w: &LstmWeights,
        xmask: Option<Mask>,
        hmask: Option<Mask>,
        up: Upstream,
        grads: LstmGrads,
    ) {
        let (t_len, b, d, h) = (self.t, self.b, self.d, self.h);
        let (bh, g4) = (b * h, 4 * h);
        let rows = t_len * b;
        fit(&mut self.dz, rows * g4);
        fit(&mut self.dh, bh);
        fit(&mut self.dc, bh);
        fit(&mut self.tmp_h, bh);
        fit(&mut self.dx, rows * d);
        self.dh[..bh].fill(0.0);
        self.dc[..bh].fill(0.0);
        for t in (0..t_len).rev() {
            if let Some(u) = up.at(t, t_len, bh) {
                add(&mut self.dh[..bh], u);
            }
            let a = &self.gates[t * b * g4..(t + 1) * b * g4];
            let dz = &mut self.dz[t * b * g4..(t + 1) * b * g4];
            let c_prev = &self.cs[t * bh..(t + 1) * bh];
            let tc = &self.tcs[t * bh..(t + 1) * bh];
            let (dh, dc) = (&self.dh[..bh], &mut self.dc[..bh]);
            dispatch!(<M> cell_backward::<M>(a, c_prev, tc, dh, dc, dz, grads.bias, h));
            if t == 0 {
                break; // h_{-1} is a constant zero: nothing flows further back.
            }
            let tmp = &mut self.tmp_h[..bh];
            let dh = &mut self.dh[..bh];
            masked_product_t(dz, b, h, hmask, w.recurrent_packed, tmp, dh, false);
        }
        let dz = &self.dz[..rows * g4];
        // dU += h_{t-1}^T dz, dW += x^T dz: one GEMM over all steps per group.
        weight_grad(&self.hs, &self.hm, hmask, h, dz, grads.recurrent);
        weight_grad(&self.x, &self.xm, xmask, d, dz, grads.kernel);
        if xmask.is_some() {
            fit(&mut self.tmp_x, rows * d);
        }
        let dx = &mut self.dx[..rows * d];
        masked_product_t(dz, b, d, xmask, w.kernel_packed, &mut self.tmp_x, dx, false);
    }
}

/// A mask and where its masked inputs are kept for the weight gradient: group g's `[rows,
/// width]` at `kept[g * stride..]`.
pub(crate) struct Masked<'a> {
    pub mask: Mask<'a>,
    pub kept: &'a mut [f32],
    pub stride: usize,
}

impl<'a> Masked<'a> {
    /// Group 0's copy at `buf[at..]`, group g's `g * stride` further.
    pub(crate) fn at(mask: Mask<'a>, buf: &'a mut [f32], at: usize, stride: usize) -> Self {
        Masked {
            mask,
            kept: &mut buf[at..],
            stride,
        }
    }
}

/// Size `buf` for the masked copies of `[rows, width]` inputs, `[G, rows, width]`.
pub(crate) fn kept<'a>(
    buf: &'a mut Vec<f32>,
    mask: Option<Mask<'a>>,
    rows: usize,
    width: usize,
) -> Option<Masked<'a>> {
    let m = mask?;
    fit(buf, m.groups * rows * width);
    Some(Masked::at(m, buf, 0, rows * width))
}

/// Size `hm` for the masked states `[G, T, B, H]` (`rows` = T*B) and zero each group's step 0:
/// h_{-1} = 0, and the time loop masks only steps 1.. .
pub(crate) fn kept_states(hm: &mut Vec<f32>, mask: Option<Mask>, rows: usize, b: usize, h: usize) {
    if let Some(m) = mask {
        fit(hm, m.groups * rows * h);
        for g in 0..m.groups {
            hm[g * rows * h..g * rows * h + b * h].fill(0.0);
        }
    }
}

/// out[:, block g] (+)= (src ⊙ mask_g) W_g for each mask group g, or src W without a mask.
/// `src` is `[rows, width]` time-major (`b` sequences per step), `out` `[rows, n]` with n = W's
/// width; the masked copies are kept (see [`Masked`]) for the weight gradient.
pub(crate) fn masked_product(
    src: &[f32],
    b: usize,
    width: usize,
    masked: Option<Masked>,
    w: &PackedGates,
    out: &mut [f32],
    accumulate: bool,
) {
    let (n, rows) = (w.fwd.n(), src.len() / width);
    match masked {
        None => matmul_packed(rows, src, width, &w.fwd, out, n, accumulate),
        Some(Masked { mask, kept, stride }) => {
            debug_assert!(mask.groups == 1 || mask.groups == w.fwd_gate.len());
            let s = n / mask.groups;
            for g in 0..mask.groups {
                let km = &mut kept[g * stride..g * stride + rows * width];
                apply_mask(km, src, mask, g, b, width, false);
                let wg = w.forward(mask.groups, g);
                matmul_packed(rows, km, width, wg, &mut out[g * s..], n, accumulate);
            }
        }
    }
}

/// out (+)= dz W^T, the gradient w.r.t. [`masked_product`]'s `src`: `dz` is `[rows, n]`, `out`
/// `[rows, width]`. With a mask, each group's block of dz goes through W_g^T and its mask and
/// the groups are summed (`tmp`, `[rows, width]`, is scratch).
#[allow(clippy::too_many_arguments)]
pub(crate) fn masked_product_t(
    dz: &[f32],
    b: usize,
    width: usize,
    mask: Option<Mask>,
    w: &PackedGates,
    tmp: &mut [f32],
    out: &mut [f32],
    accumulate: bool,
) {
    let (n, rows) = (w.bwd.k(), out.len() / width);
    match mask {
        None => matmul_packed(rows, dz, n, &w.bwd, out, width, accumulate),
        Some(m) => {
            let s = n / m.groups;
            let tmp = &mut tmp[..rows * width];
            for g in 0..m.groups {
                let wg = w.backward(m.groups, g);
                matmul_packed(rows, &dz[g * s..], n, wg, tmp, width, false);
                apply_mask(out, tmp, m, g, b, width, accumulate || g > 0);
            }
        }
    }
}

/// grad[:, block g] += src_g^T dz[:, block g] for each mask group's column block of dz `[rows,
/// n]`: the weight gradient as one GEMM over all steps per group. The inputs are the masked
/// copies `kept` `[G, rows, width]` with a mask, else `plain` `[rows, width]`; `grad` is
/// `[width, n]`.
pub(crate) fn weight_grad(
    plain: &[f32],
    kept: &[f32],
    mask: Option<Mask>,
    width: usize,
    dz: &[f32],
    grad: &mut [f32],
) {
    let (src, groups) = match mask {
        None => (plain, 1),
        Some(m) => (kept, m.groups),
    };
    let n = grad.len() / width;
    let (rows, s) = (dz.len() / n, n / groups);
    for g in 0..groups {
        let src_g = &src[g * rows * width..(g + 1) * rows * width];
        matmul(
            width,
            s,
            rows,
            src_g,
            width,
            Op::T,
            &dz[g * s..],
            n,
            Op::N,
            &mut grad[g * s..],
            n,
            true,
        );
    }
}

/// out[r, :] (+)= src[r, :] * mask[r % b, g, :] for time-major rows (`+=` when `accumulate`).
fn apply_mask(
    out: &mut [f32],
    src: &[f32],
    m: Mask,
    g: usize,
    b: usize,
    width: usize,
    accumulate: bool,
) {
    for (r, (o, s)) in out
        .chunks_exact_mut(width)
        .zip(src.chunks_exact(width))
        .enumerate()
    {
        let off = ((r % b) * m.groups + g) * width;
        let mk = &m.data[off..off + width];
        for ((o, s), k) in o.iter_mut().zip(s).zip(mk) {
            *o = if accumulate { *o + s * k } else { s * k };
        }
    }
}

/// dst += src, element-wise.
pub(crate) fn add(dst: &mut [f32], src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}

/// One step's gate arithmetic for every row: z `[B, 4H]` pre-activations (without the bias)
/// -> activations of z + bias in place; c = f*c_prev + i*g; tc = tanh(c); h = o*tc.
#[inline(always)]
fn cell_forward<M: MulAdd>(
    z: &mut [f32],
    bias: &[f32],
    c_prev: &[f32],
    c: &mut [f32],
    tc: &mut [f32],
    h_out: &mut [f32],
    hu: usize,
) {
    let rows = z.chunks_exact_mut(4 * hu).zip(c_prev.chunks_exact(hu));
    let outs = c
        .chunks_exact_mut(hu)
        .zip(tc.chunks_exact_mut(hu))
        .zip(h_out.chunks_exact_mut(hu));
    for ((zr, cp), ((cr, tcr), hr)) in rows.zip(outs) {
        let [zi, zf, zg, zo] = gates_mut(zr, hu);
        let [bi, bf, bg, bo] = gates(bias, hu);
        row_forward::<M>(zi, zf, zg, zo, bi, bf, bg, bo, cp, cr, tcr, hr);
    }
}

/// The four gates' blocks (i, f, c, o) of a `[4H]` row.
#[inline(always)]
fn gates(row: &[f32], hu: usize) -> [&[f32]; 4] {
    let (i, rest) = row.split_at(hu);
    let (f, rest) = rest.split_at(hu);
    let (c, o) = rest.split_at(hu);
    [i, f, c, &o[..hu]]
}

/// [`gates`] for writing.
#[inline(always)]
fn gates_mut(row: &mut [f32], hu: usize) -> [&mut [f32]; 4] {
    let (i, rest) = row.split_at_mut(hu);
    let (f, rest) = rest.split_at_mut(hu);
    let (c, o) = rest.split_at_mut(hu);
    [i, f, c, &mut o[..hu]]
}

/// One row of [`cell_forward`]. Every slice is its own argument, so the compiler knows they do
/// not overlap and vectorises the loop (inside an array they lose that, and the loop runs scalar).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn row_forward<M: MulAdd>(
    zi: &mut [f32],
    zf: &mut [f32],
    zg: &mut [f32],
    zo: &mut [f32],
    bi: &[f32],
    bf: &[f32],
    bg: &[f32],
    bo: &[f32],
    cp: &[f32],
    c: &mut [f32],
    tc: &mut [f32],
    h: &mut [f32],
) {
    let n = zi.len();
    let (bi, bf, bg, bo) = (&bi[..n], &bf[..n], &bg[..n], &bo[..n]);
    let (zf, zg, zo, cp, c, tc, h) = (
        &mut zf[..n],
        &mut zg[..n],
        &mut zo[..n],
        &cp[..n],
        &mut c[..n],
        &mut tc[..n],
        &mut h[..n],
    );
    for j in 0..n {
        let i = sigmoid::<M>(zi[j] + bi[j]);
        let f = sigmoid::<M>(zf[j] + bf[j]);
        let g = tanh::<M>(zg[j] + bg[j]);
        let o = sigmoid::<M>(zo[j] + bo[j]);
        let cn = M::mul_add(f, cp[j], i * g);
        let t = tanh::<M>(cn);
        (zi[j], zf[j], zg[j], zo[j]) = (i, f, g, o);
        c[j] = cn;
        tc[j] = t;
        h[j] = o * t;
    }
}

/// One inference step for every row: the gates are z `[B, 4H]` (h_{t-1} U) + the table row
/// of the row's token at step t + bias; c `[B, H]` is updated in place and h written. Unlike
/// [`cell_forward`], nothing is kept for a backward pass.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn cell_infer<M: MulAdd>(
    z: &[f32],
    table: &[f32],
    ids: &[u32],
    t: usize,
    t_len: usize,
    bias: &[f32],
    c: &mut [f32],
    h_out: &mut [f32],
    hu: usize,
) {
    let g4 = 4 * hu;
    let rows = z.chunks_exact(g4).zip(c.chunks_exact_mut(hu));
    for (r, ((zr, cr), hr)) in rows.zip(h_out.chunks_exact_mut(hu)).enumerate() {
        let tok = ids[r * t_len + t] as usize;
        let xr = &table[tok * g4..(tok + 1) * g4];
        row_infer::<M>(gates(zr, hu), gates(xr, hu), gates(bias, hu), cr, hr);
    }
}

/// One row of [`cell_infer`]. Only `c` and `h` are written, so the read-only inputs can share
/// arrays without hiding anything from the vectoriser.
#[inline(always)]
fn row_infer<M: MulAdd>(
    [zi, zf, zg, zo]: [&[f32]; 4],
    [xi, xf, xg, xo]: [&[f32]; 4],
    [bi, bf, bg, bo]: [&[f32]; 4],
    c: &mut [f32],
    h: &mut [f32],
) {
    let n = c.len();
    let (zi, zf, zg, zo) = (&zi[..n], &zf[..n], &zg[..n], &zo[..n]);
    let (xi, xf, xg, xo) = (&xi[..n], &xf[..n], &xg[..n], &xo[..n]);
    let (bi, bf, bg, bo) = (&bi[..n], &bf[..n], &bg[..n], &bo[..n]);
    let h = &mut h[..n];
    for j in 0..n {
        let i = sigmoid::<M>(zi[j] + xi[j] + bi[j]);
        let f = sigmoid::<M>(zf[j] + xf[j] + bf[j]);
        let g = tanh::<M>(zg[j] + xg[j] + bg[j]);
        let o = sigmoid::<M>(zo[j] + xo[j] + bo[j]);
        let cn = M::mul_add(f, c[j], i * g);
        c[j] = cn;
        h[j] = o * tanh::<M>(cn);
    }
}

/// One step backward: from dh (into h_t) and dc (into c_t, updated in place to flow into
/// c_{t-1}) to dz `[B, 4H]`, the gradient w.r.t. the pre-activations, which is also added to
/// the bias gradient `db` `[4H]` while it is in L1.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn cell_backward<M: MulAdd>(
    a: &[f32],
    c_prev: &[f32],
    tc: &[f32],
    dh: &[f32],
    dc: &mut [f32],
    dz: &mut [f32],
    db: &mut [f32],
    hu: usize,
) {
    let [dbi, dbf, dbg, dbo] = gates_mut(db, hu);
    let ins = a
        .chunks_exact(4 * hu)
        .zip(c_prev.chunks_exact(hu))
        .zip(tc.chunks_exact(hu))
        .zip(dh.chunks_exact(hu));
    for ((((ar, cp), tcr), dhr), (dcr, dzr)) in
        ins.zip(dc.chunks_exact_mut(hu).zip(dz.chunks_exact_mut(4 * hu)))
    {
        let [zi, zf, zg, zo] = gates_mut(dzr, hu);
        row_backward::<M>(ar, cp, tcr, dhr, dcr, zi, zf, zg, zo, dbi, dbf, dbg, dbo);
    }
}

/// One row of [`cell_backward`]; `a` is the row's `[4H]` activations. Separate slice
/// arguments, as in [`row_forward`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn row_backward<M: MulAdd>(
    a: &[f32],
    cp: &[f32],
    tc: &[f32],
    dh: &[f32],
    dc: &mut [f32],
    zi: &mut [f32],
    zf: &mut [f32],
    zg: &mut [f32],
    zo: &mut [f32],
    bi: &mut [f32],
    bf: &mut [f32],
    bg: &mut [f32],
    bo: &mut [f32],
) {
    let n = cp.len();
    let [ai, af, ag, ao] = gates(a, n);
    let (zi, zf, zg, zo, tc, dh, dc) = (
        &mut zi[..n],
        &mut zf[..n],
        &mut zg[..n],
        &mut zo[..n],
        &tc[..n],
        &dh[..n],
        &mut dc[..n],
    );
    let (bi, bf, bg, bo) = (&mut bi[..n], &mut bf[..n], &mut bg[..n], &mut bo[..n]);
    for j in 0..n {
        let (i, f, g, o, t) = (ai[j], af[j], ag[j], ao[j], tc[j]);
        let dct = M::mul_add(dh[j] * o, 1.0 - t * t, dc[j]);
        let (di, df) = (dct * g * i * (1.0 - i), dct * cp[j] * f * (1.0 - f));
        let (dg, d_o) = (dct * i * (1.0 - g * g), dh[j] * t * o * (1.0 - o));
        (zi[j], zf[j], zg[j], zo[j]) = (di, df, dg, d_o);
        (bi[j], bf[j], bg[j], bo[j]) = (bi[j] + di, bf[j] + df, bg[j] + dg, bo[j] + d_o);
        dc[j] = dct * f;
    }
}
