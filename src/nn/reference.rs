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
