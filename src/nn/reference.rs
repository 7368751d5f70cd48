//! The slow, obviously-correct twin of the whole network, in f64 with plain loops, one
//! sequence at a time, written straight from Keras's equations. Tests check the fast path
//! against it and check it against finite differences.
#![allow(clippy::needless_range_loop)] // indices mirror the equations on purpose

use super::params::{Layout, BIAS, DENSE_BIAS, DENSE_KERNEL, EMBEDDING, KERNEL, RECURRENT};
use super::ModelConfig;

fn sig(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Per-sequence dropout masks (already scaled by 1/(1-rate)); `groups` is 1 or 4.
#[derive(Clone, Debug)]
pub struct RefMasks {
    pub groups: usize,
    /// `[B, G, D]`
    pub x: Option<Vec<f64>>,
    /// `[B, G, H]`
    pub h: Option<Vec<f64>>,
}

/// The mask value for sequence b, gate q (0..4), feature k.
fn mask(m: &Option<Vec<f64>>, groups: usize, width: usize, b: usize, q: usize, k: usize) -> f64 {
    match m {
        None => 1.0,
        Some(v) => v[(b * groups + q * groups / 4) * width + k],
    }
}

/// What the forward pass of one sequence keeps for its backward pass.
struct Trace {
    xs: Vec<Vec<f64>>,
    /// h_{t-1} for each step (h_{-1} = 0), then the final h.
    hs: Vec<Vec<f64>>,
    cs: Vec<Vec<f64>>,
    /// activated gates [i, f, g, o] per step, each `[H]`.
    gates: Vec<[Vec<f64>; 4]>,
}

/// LSTM over one sequence `xs` (`[T][D]`) with weights in Keras layout; `b` selects the masks.
fn lstm_seq(
    cfg: &ModelConfig,
    p: &[f64],
    layout: &Layout,
    xs: Vec<Vec<f64>>,
    m: &RefMasks,
    b: usize,
) -> Trace {
    let (d, h) = (cfg.embed_dim, cfg.units);
    let (w, u, bias) = (
        &p[layout.ranges[KERNEL].clone()],
        &p[layout.ranges[RECURRENT].clone()],
        &p[layout.ranges[BIAS].clone()],
    );
    let mut tr = Trace {
        xs,
        hs: vec![vec![0.0; h]],
        cs: vec![vec![0.0; h]],
        gates: vec![],
    };
    for t in 0..tr.xs.len() {
        let (x, hp, cp) = (&tr.xs[t], &tr.hs[t], &tr.cs[t]);
        let mut z = [vec![0.0; h], vec![0.0; h], vec![0.0; h], vec![0.0; h]];
        for q in 0..4 {
            for j in 0..h {
                let col = q * h + j;
                let mut s = bias[col];
                for k in 0..d {
                    s += x[k] * mask(&m.x, m.groups, d, b, q, k) * w[k * 4 * h + col];
                }
                for k in 0..h {
                    s += hp[k] * mask(&m.h, m.groups, h, b, q, k) * u[k * 4 * h + col];
                }
                z[q][j] = s;
            }
        }
        let a = [
            z[0].iter().map(|&v| sig(v)).collect::<Vec<_>>(),
            z[1].iter().map(|&v| sig(v)).collect(),
            z[2].iter().map(|&v| v.tanh()).collect(),
            z[3].iter().map(|&v| sig(v)).collect(),
        ];
        let c: Vec<f64> = (0..h)
            .map(|j| a[1][j] * cp[j] + a[0][j] * a[2][j])
            .collect();
        let hn: Vec<f64> = (0..h).map(|j| a[3][j] * c[j].tanh()).collect();
        tr.gates.push(a);
        tr.cs.push(c);
        tr.hs.push(hn);
    }
    tr
}

/// The LSTM layer alone: last h for each sequence of `x` (`[B, T, D]`, batch-major), no dropout.
pub fn lstm_last_h(cfg: &ModelConfig, p: &[f64], x: &[f64], b: usize) -> Vec<Vec<f64>> {
    let layout = Layout::new(cfg);
    let (t_len, d) = (x.len() / (b * cfg.embed_dim), cfg.embed_dim);
    let none = RefMasks {
        groups: 1,
        x: None,
        h: None,
    };
    (0..b)
        .map(|bi| {
            let xs = (0..t_len)
                .map(|t| x[(bi * t_len + t) * d..(bi * t_len + t + 1) * d].to_vec())
                .collect();
            lstm_seq(cfg, p, &layout, xs, &none, bi)
                .hs
                .pop()
                .unwrap_or_default()
        })
        .collect()
}

/// Result of [`forward_backward`].
pub struct RefOutput {
    /// Mean binary cross-entropy over the batch.
    pub loss: f64,
    /// `[B]`
    pub logits: Vec<f64>,
    /// Gradient of the mean loss, same layout as the parameters.
    pub grads: Vec<f64>,
}

/// Embedding -> LSTM -> Dense -> mean BCE, and its exact gradient by backpropagation.
/// `ids` is `[B, T]`, `y` `[B]`, `p` the flat parameters.
pub fn forward_backward(
    cfg: &ModelConfig,
    p: &[f64],
    ids: &[u32],
    y: &[f64],
    m: &RefMasks,
) -> RefOutput {
    let layout = Layout::new(cfg);
    let (d, h, t_len) = (cfg.embed_dim, cfg.units, cfg.maxlen);
    let bsz = y.len();
    let emb = &p[layout.ranges[EMBEDDING].clone()];
    let (w, u) = (
        &p[layout.ranges[KERNEL].clone()],
        &p[layout.ranges[RECURRENT].clone()],
    );
    let (wd, bd) = (
        &p[layout.ranges[DENSE_KERNEL].clone()],
        p[layout.ranges[DENSE_BIAS].start],
    );
    let mut grads = vec![0.0; p.len()];
    let mut out = RefOutput {
        loss: 0.0,
        logits: vec![],
        grads: vec![],
    };
    for b in 0..bsz {
        let seq = &ids[b * t_len..(b + 1) * t_len];
        let xs = seq
            .iter()
            .map(|&tok| emb[tok as usize * d..(tok as usize + 1) * d].to_vec())
            .collect();
        let tr = lstm_seq(cfg, p, &layout, xs, m, b);
        let hlast = &tr.hs[t_len];
        let z: f64 = (0..h).map(|j| hlast[j] * wd[j]).sum::<f64>() + bd;
        out.logits.push(z);
        out.loss += (z.max(0.0) - z * y[b] + (-z.abs()).exp().ln_1p()) / bsz as f64;
        let dz = (sig(z) - y[b]) / bsz as f64;
        for j in 0..h {
            grads[layout.ranges[DENSE_KERNEL].start + j] += hlast[j] * dz;
        }
        grads[layout.ranges[DENSE_BIAS].start] += dz;
        let mut dh: Vec<f64> = wd.iter().map(|&v| v * dz).collect();
        let mut dc = vec![0.0; h];
        for t in (0..t_len).rev() {
            let [gi, gf, gg, go] = &tr.gates[t];
            let (c, cp, hp, x) = (&tr.cs[t + 1], &tr.cs[t], &tr.hs[t], &tr.xs[t]);
            let mut dzs = [vec![0.0; h], vec![0.0; h], vec![0.0; h], vec![0.0; h]];
            for j in 0..h {
                let tc = c[j].tanh();
                let dct = dc[j] + dh[j] * go[j] * (1.0 - tc * tc);
                dzs[0][j] = dct * gg[j] * gi[j] * (1.0 - gi[j]);
                dzs[1][j] = dct * cp[j] * gf[j] * (1.0 - gf[j]);
                dzs[2][j] = dct * gi[j] * (1.0 - gg[j] * gg[j]);
                dzs[3][j] = dh[j] * tc * go[j] * (1.0 - go[j]);
                dc[j] = dct * gf[j];
            }
            let mut dh_prev = vec![0.0; h];
            for q in 0..4 {
                for j in 0..h {
                    let col = q * h + j;
                    let g = dzs[q][j];
                    grads[layout.ranges[BIAS].start + col] += g;
                    for k in 0..d {
                        let mk = mask(&m.x, m.groups, d, b, q, k);
                        grads[layout.ranges[KERNEL].start + k * 4 * h + col] += x[k] * mk * g;
                        grads[layout.ranges[EMBEDDING].start + seq[t] as usize * d + k] +=
                            w[k * 4 * h + col] * mk * g;
                    }
                    for k in 0..h {
                        let mk = mask(&m.h, m.groups, h, b, q, k);
                        grads[layout.ranges[RECURRENT].start + k * 4 * h + col] += hp[k] * mk * g;
                        dh_prev[k] += u[k * 4 * h + col] * mk * g;
                    }
                }
            }
            dh = dh_prev;
        }
    }
    out.grads = grads;
    out
}

/// One recurrent layer's weights in Keras layout, for [`lstm_layer`] and [`gru_layer`]: kernel
/// `[D, G*H]`, recurrent kernel `[H, G*H]`, bias `[G*H]` (LSTM) or `[2, G*H]` (GRU).
#[derive(Clone, Debug)]
pub struct RefWeights {
    pub d: usize,
    pub h: usize,
    pub kernel: Vec<f64>,
    pub recurrent: Vec<f64>,
    pub bias: Vec<f64>,
}

/// A recurrent layer's output sequence and its exact gradients by backpropagation.
#[derive(Clone, Debug)]
pub struct RefLayer {
    /// `[B, T, H]` every h_t.
    pub out: Vec<f64>,
    /// `[B, T, D]` gradient w.r.t. the inputs.
    pub dx: Vec<f64>,
    /// Gradients of the weights, shaped as in [`RefWeights`].
    pub kernel: Vec<f64>,
    pub recurrent: Vec<f64>,
    pub bias: Vec<f64>,
}

/// The mask value for sequence b, gate q of `gates`, feature k (groups is 1 or `gates`).
fn gate_mask(
    m: &Option<Vec<f64>>,
    groups: usize,
    gates: usize,
    width: usize,
    ix: [usize; 3],
) -> f64 {
    let [b, q, k] = ix;
    m.as_ref()
        .map_or(1.0, |v| v[(b * groups + q * groups / gates) * width + k])
}

/// One recurrent layer over `x` `[B, T, D]` (batch-major), given the gradient of the loss w.r.t.
/// every output h_t, `dout` `[B, T, H]` (zeros but at t = T-1 for a layer returning h_T).
/// `step` runs one step, (x masked per gate `[G][D]`, h_{t-1} masked per gate `[G][H]`, the
/// unmasked h_{t-1}, state) -> (h_t, what its backward needs); `back` maps (that, dh_t) to the
/// gradients w.r.t. the pre-activations (x part `[G][H]`, h part `[G][H]`) and the direct part
/// of dh_{t-1}. The products with the kernels and the masks are done here, for both layers.
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
fn recurrent_layer<S, F, Bk>(
    x: &[f64],
    bsz: usize,
    w: &RefWeights,
    m: &RefMasks,
    gates: usize,
    dout: &[f64],
    step: F,
    back: Bk,
) -> RefLayer
where
    F: Fn(&[Vec<f64>], &[Vec<f64>], &[f64], &mut Vec<f64>) -> (Vec<f64>, S),
    Bk: Fn(&S, &[f64], &mut Vec<f64>) -> (Vec<Vec<f64>>, Vec<Vec<f64>>, Vec<f64>),
{
    let (d, h) = (w.d, w.h);
    let n = gates * h;
    let t_len = x.len() / (bsz * d);
    let mut r = RefLayer {
        out: vec![0.0; bsz * t_len * h],
        dx: vec![0.0; x.len()],
        kernel: vec![0.0; w.kernel.len()],
        recurrent: vec![0.0; w.recurrent.len()],
        bias: vec![0.0; w.bias.len()],
    };
    let g = m.groups;
    for b in 0..bsz {
        let xt = |t: usize| &x[(b * t_len + t) * d..(b * t_len + t + 1) * d];
        let masked = |v: &[f64], mk: &Option<Vec<f64>>, width: usize| -> Vec<Vec<f64>> {
            (0..gates)
                .map(|q| {
                    (0..width)
                        .map(|k| v[k] * gate_mask(mk, g, gates, width, [b, q, k]))
                        .collect()
                })
                .collect()
        };
        // Forward, keeping each step's masked inputs and h_{t-1}, and its trace.
        let mut hp = vec![0.0; h];
        let mut state = vec![0.0; h];
        let mut steps = vec![];
        for t in 0..t_len {
            let (xm, hm) = (masked(xt(t), &m.x, d), masked(&hp, &m.h, h));
            let mut st = state.clone();
            let (hn, s) = step(&xm, &hm, &hp, &mut st);
            r.out[(b * t_len + t) * h..(b * t_len + t + 1) * h].copy_from_slice(&hn);
            steps.push((xm, hm, s));
            state = st;
            hp = hn;
        }
        // Backward; `dstate` is the gradient w.r.t. the carried state (the LSTM's c).
        let mut dh = vec![0.0; h];
        let mut dstate = vec![0.0; h];
        for t in (0..t_len).rev() {
            for j in 0..h {
                dh[j] += dout[(b * t_len + t) * h + j];
            }
            let (xm, hm, s) = &steps[t];
            let (dzx, dzh, direct) = back(s, &dh, &mut dstate);
            let mut dh_prev = direct;
            for q in 0..gates {
                for j in 0..h {
                    let col = q * h + j;
                    let (gx, gh) = (dzx[q][j], dzh[q][j]);
                    r.bias[col] += gx;
                    if w.bias.len() == 2 * n {
                        r.bias[n + col] += gh;
                    }
                    for k in 0..d {
                        r.kernel[k * n + col] += xm[q][k] * gx;
                        r.dx[(b * t_len + t) * d + k] +=
                            w.kernel[k * n + col] * gate_mask(&m.x, g, gates, d, [b, q, k]) * gx;
                    }
                    for k in 0..h {
                        r.recurrent[k * n + col] += hm[q][k] * gh;
                        dh_prev[k] +=
                            w.recurrent[k * n + col] * gate_mask(&m.h, g, gates, h, [b, q, k]) * gh;
                    }
                }
            }
            dh = dh_prev;
        }
    }
    r
}

/// xm W_q + hm U_q (+ biases) for gate q, unit j.
fn preact(
    w: &RefWeights,
    n: usize,
    xm: &[Vec<f64>],
    hm: &[Vec<f64>],
    q: usize,
    j: usize,
) -> (f64, f64) {
    let col = q * w.h + j;
    let sx: f64 = (0..w.d).map(|k| xm[q][k] * w.kernel[k * n + col]).sum();
    let sh: f64 = (0..w.h).map(|k| hm[q][k] * w.recurrent[k * n + col]).sum();
    (
        sx + w.bias[col],
        sh + w.bias.get(n + col).copied().unwrap_or(0.0),
    )
}

/// The LSTM layer alone (Keras, gate order i, f, c, o; bias `[4H]`) over `x` `[B, T, D]`
/// with per-sequence masks (groups 1 or 4): every h_t and the gradients for `dout`.
pub fn lstm_layer(x: &[f64], bsz: usize, w: &RefWeights, m: &RefMasks, dout: &[f64]) -> RefLayer {
    let (h, n) = (w.h, 4 * w.h);
    // Trace: (activated gates [i, f, g, o], c_{t-1}, tanh(c_t)).
    let step = |xm: &[Vec<f64>], hm: &[Vec<f64>], _hp: &[f64], c: &mut Vec<f64>| {
        let a: Vec<Vec<f64>> = (0..4)
            .map(|q| {
                (0..h)
                    .map(|j| {
                        let (sx, sh) = preact(w, n, xm, hm, q, j);
                        if q == 2 {
                            (sx + sh).tanh()
                        } else {
                            sig(sx + sh)
                        }
                    })
                    .collect()
            })
            .collect();
        let cp = c.clone();
        for j in 0..h {
            c[j] = a[1][j] * cp[j] + a[0][j] * a[2][j];
        }
        let tc: Vec<f64> = c.iter().map(|v| v.tanh()).collect();
        ((0..h).map(|j| a[3][j] * tc[j]).collect(), (a, cp, tc))
    };
    let back = |s: &(Vec<Vec<f64>>, Vec<f64>, Vec<f64>), dh: &[f64], dc: &mut Vec<f64>| {
        let (a, cp, tc) = s;
        let mut dz = vec![vec![0.0; h]; 4];
        for j in 0..h {
            let (i, f, g, o) = (a[0][j], a[1][j], a[2][j], a[3][j]);
            let dct = dc[j] + dh[j] * o * (1.0 - tc[j] * tc[j]);
            dz[0][j] = dct * g * i * (1.0 - i);
            dz[1][j] = dct * cp[j] * f * (1.0 - f);
            dz[2][j] = dct * i * (1.0 - g * g);
            dz[3][j] = dh[j] * tc[j] * o * (1.0 - o);
            dc[j] = dct * f;
        }
        (dz.clone(), dz, vec![0.0; h])
    };
    recurrent_layer(x, bsz, w, m, 4, dout, step, back)
}

/// Keras's default GRU alone (reset_after=True, gate order z, r, h; bias `[2, 3H]`) over `x`
/// `[B, T, D]` with per-sequence masks (groups 1 or 3): every h_t and the gradients for `dout`.
pub fn gru_layer(x: &[f64], bsz: usize, w: &RefWeights, m: &RefMasks, dout: &[f64]) -> RefLayer {
    let (h, n) = (w.h, 3 * w.h);
    // Trace: (z, r, hh, r_h, h_{t-1}).
    type Trace = (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>);
    let step = |xm: &[Vec<f64>], hm: &[Vec<f64>], hp: &[f64], _: &mut Vec<f64>| {
        let mut tr: Trace = (
            vec![0.0; h],
            vec![0.0; h],
            vec![0.0; h],
            vec![0.0; h],
            hp.to_vec(),
        );
        let mut hn = vec![0.0; h];
        for j in 0..h {
            let (xz, rz) = preact(w, n, xm, hm, 0, j);
            let (xr, rr) = preact(w, n, xm, hm, 1, j);
            let (xh, rh) = preact(w, n, xm, hm, 2, j);
            let (z, r) = (sig(xz + rz), sig(xr + rr));
            let hh = (xh + r * rh).tanh();
            (tr.0[j], tr.1[j], tr.2[j], tr.3[j]) = (z, r, hh, rh);
            hn[j] = z * hp[j] + (1.0 - z) * hh;
        }
        (hn, tr)
    };
    let back = |s: &Trace, dh: &[f64], _: &mut Vec<f64>| {
        let (z, r, hh, rh, hp) = s;
        let (mut dzx, mut dzh) = (vec![vec![0.0; h]; 3], vec![vec![0.0; h]; 3]);
        let mut direct = vec![0.0; h];
        for j in 0..h {
            let da_h = dh[j] * (1.0 - z[j]) * (1.0 - hh[j] * hh[j]);
            let da_z = dh[j] * (hp[j] - hh[j]) * z[j] * (1.0 - z[j]);
            let da_r = da_h * rh[j] * r[j] * (1.0 - r[j]);
            (dzx[0][j], dzx[1][j], dzx[2][j]) = (da_z, da_r, da_h);
            (dzh[0][j], dzh[1][j], dzh[2][j]) = (da_z, da_r, da_h * r[j]);
            direct[j] = dh[j] * z[j];
        }
        (dzx, dzh, direct)
    };
    recurrent_layer(x, bsz, w, m, 3, dout, step, back)
}
