//! The slow, obviously-correct twin of [`super::Network`]: any [`Arch`] in f64, one layer at a
//! time over the whole batch, composed from the naive twins of the layers
//! ([`crate::nn::reference`]'s recurrent layers, the `naive` modules of conv, pool and dense).
//! Tests check the fast path against it and it against finite differences.

use super::{LayerMasks, NetMasks};
use crate::nn::arch::{Activation, Arch, Head, LayerSpec, Shape};
use crate::nn::conv::naive as conv;
use crate::nn::dense::{self, naive};
use crate::nn::pool::naive as pool;
use crate::nn::reference::{gru_layer, lstm_layer, RefMasks, RefWeights};
use anyhow::Result;

/// Result of [`forward_backward`].
#[derive(Clone, Debug)]
pub struct RefOutput {
    /// Mean loss over the batch.
    pub loss: f64,
    /// `[B, K]` the output layer's pre-activations.
    pub logits: Vec<f64>,
    /// Gradient of the mean loss, in the arch's flat layout.
    pub grads: Vec<f64>,
}

/// y = f(y) in place on rows of `width`, tanh included.
fn activate(a: Activation, y: &mut [f64], width: usize) {
    match kernel(a) {
        Some(k) => naive::activate(k, y, width),
        None => y.iter_mut().for_each(|v| *v = v.tanh()),
    }
}

/// dz from y = f(z) and dy.
fn activate_backward(a: Activation, y: &[f64], dy: &[f64], width: usize) -> Vec<f64> {
    match kernel(a) {
        Some(k) => naive::activate_backward(k, y, dy, width),
        None => y.iter().zip(dy).map(|(y, g)| g * (1.0 - y * y)).collect(),
    }
}

/// The kernels' activation, or `None` for tanh.
fn kernel(a: Activation) -> Option<dense::Activation> {
    Some(match a {
        Activation::Linear => dense::Activation::Linear,
        Activation::Relu => dense::Activation::Relu,
        Activation::Sigmoid => dense::Activation::Sigmoid,
        Activation::Softmax => dense::Activation::Softmax,
        Activation::Tanh => return None,
    })
}

/// Each sequence of `[B, T, W]` reversed in time.
fn reverse_time(v: &[f64], t: usize, w: usize) -> Vec<f64> {
    let mut out = vec![0.0; v.len()];
    for (o, s) in out.chunks_exact_mut(t * w).zip(v.chunks_exact(t * w)) {
        for tt in 0..t {
            o[tt * w..(tt + 1) * w].copy_from_slice(&s[(t - 1 - tt) * w..(t - tt) * w]);
        }
    }
    out
}

fn to_f64(v: &Option<Vec<f32>>) -> Option<Vec<f64>> {
    v.as_ref().map(|v| v.iter().map(|&x| x as f64).collect())
}

/// The forward pass, the mean loss and its exact gradient by backpropagation. `p` is the flat
/// parameters in the arch's layout, `ids` `[B, maxlen]`, `targets` `[B]` (0/1 for a sigmoid
/// head, class indices for a softmax head) or `[B, K]` (0/1 per label, a multi-label head);
/// `masks` as [`super::Network::train_batch`] takes them.
pub fn forward_backward(
    arch: &Arch,
    p: &[f64],
    ids: &[u32],
    targets: &[f64],
    masks: &NetMasks,
) -> Result<RefOutput> {
    let infos = arch.describe()?;
    let head = arch.head()?;
    let head_at = arch
        .layers
        .iter()
        .rposition(|l| matches!(l, LayerSpec::Dense { .. } | LayerSpec::Activation { .. }))
        .expect("describe checked the head");
    let (bsz, t_len) = (targets.len() / head.targets(), arch.maxlen);
    let mut starts = Vec::new();
    let mut s = 0;
    for info in &infos {
        starts.push(s);
        s += info.tensors.iter().map(|t| t.len()).sum::<usize>();
    }
    anyhow::ensure!(p.len() == s, "the parameters must be the arch's layout");
    let layer_masks = |i: usize| masks.layers.get(i).unwrap_or(&LayerMasks::None);
    let ref_masks = |i: usize, k: usize| match layer_masks(i) {
        LayerMasks::Recurrent(sets) => RefMasks {
            groups: sets[k].groups,
            x: to_f64(&sets[k].x),
            h: to_f64(&sets[k].h),
        },
        _ => RefMasks {
            groups: 1,
            x: None,
            h: None,
        },
    };
    // (inner layer, directions) of a recurrent layer.
    let recurrent = |l: &LayerSpec| match l {
        LayerSpec::Bidirectional { layer, .. } => Some((layer.as_ref().clone(), 2)),
        LayerSpec::LSTM(_) | LayerSpec::GRU(_) => Some((l.clone(), 1)),
        _ => None,
    };
    // Direction k's weights of the recurrent layer i on d inputs.
    let weights = |i: usize, inner: &LayerSpec, d: usize, k: usize| {
        let (r, gates) = inner.recurrent().expect("a recurrent layer");
        let (h, gh) = (r.units, gates * r.units);
        let bias = if gates == 3 { 2 * gh } else { gh };
        let at = starts[i] + k * (d * gh + h * gh + bias);
        RefWeights {
            d,
            h,
            kernel: p[at..at + d * gh].to_vec(),
            recurrent: p[at + d * gh..at + d * gh + h * gh].to_vec(),
            bias: p[at + d * gh + h * gh..at + d * gh + h * gh + bias].to_vec(),
        }
    };
    let run_layer =
        |inner: &LayerSpec, x: &[f64], w: &RefWeights, m: &RefMasks, dout: &[f64]| match inner {
            LayerSpec::GRU(_) => gru_layer(x, bsz, w, m, dout),
            _ => lstm_layer(x, bsz, w, m, dout),
        };
    // The activation a Dense or Conv1D applies (the output layer's is the loss's).
    let own_act = |i: usize, a: Activation| if i == head_at { Activation::Linear } else { a };
    let seq = |i: usize| match infos[i].output {
        Shape::Seq { steps, features } => (steps, features),
        Shape::Flat { features } => (1, features),
    };

    // Forward: acts[i] is layer i's output, batch-major.
    let LayerSpec::Embedding { output_dim: d0, .. } = arch.layers[0] else {
        unreachable!("describe checked the Embedding")
    };
    let mut acts: Vec<Vec<f64>> = vec![ids
        .iter()
        .flat_map(|&tok| p[tok as usize * d0..(tok as usize + 1) * d0].to_vec())
        .collect()];
    for (i, layer) in arch.layers.iter().enumerate().skip(1) {
        let x = &acts[i - 1];
        let (t, c) = seq(i - 1);
        let out = if let Some((inner, dirs)) = recurrent(layer) {
            let h = inner.recurrent().expect("recurrent").0.units;
            let width = dirs * h;
            let return_seq = matches!(infos[i].output, Shape::Seq { .. });
            let mut out = vec![0.0; infos[i].output.len() * bsz];
            for k in 0..dirs {
                let xin = if k == 1 {
                    reverse_time(x, t, c)
                } else {
                    x.clone()
                };
                let zeros = vec![0.0; bsz * t * h];
                let r = run_layer(
                    &inner,
                    &xin,
                    &weights(i, &inner, c, k),
                    &ref_masks(i, k),
                    &zeros,
                );
                let hs = if k == 1 {
                    reverse_time(&r.out, t, h)
                } else {
                    r.out
                };
                for b in 0..bsz {
                    for tt in 0..t {
                        let src = &hs[(b * t + tt) * h..(b * t + tt + 1) * h];
                        if return_seq {
                            let at = (b * t + tt) * width + k * h;
                            out[at..at + h].copy_from_slice(src);
                        }
                    }
                    // The last state: step T-1 of the forward layer, step 0 (in input order)
                    // of the backward one.
                    if !return_seq {
                        let tt = if k == 1 { 0 } else { t - 1 };
                        let at = b * width + k * h;
                        out[at..at + h]
                            .copy_from_slice(&hs[(b * t + tt) * h..(b * t + tt + 1) * h]);
                    }
                }
            }
            out
        } else {
            let w = &p[starts[i]..];
            match layer {
                LayerSpec::Dropout { .. } => match layer_masks(i) {
                    LayerMasks::Dropout(m) => x.iter().zip(m).map(|(v, &k)| v * k as f64).collect(),
                    _ => x.clone(),
                },
                LayerSpec::Dense { units, activation } => {
                    let inp = x.len() / bsz;
                    let bias = &w[inp * units..inp * units + units];
                    let mut y =
                        naive::dense(x, &w[..inp * units], bias, inp, dense::Activation::Linear);
                    activate(own_act(i, *activation), &mut y, *units);
                    y
                }
                LayerSpec::Activation { activation } => {
                    let mut y = x.clone();
                    activate(own_act(i, *activation), &mut y, c);
                    y
                }
                LayerSpec::Conv1D {
                    filters,
                    kernel_size: k,
                    activation,
                    ..
                } => {
                    let wl = k * c * filters;
                    let bias = &w[wl..wl + filters];
                    let lin = dense::Activation::Linear;
                    let mut y = conv::conv1d(x, &w[..wl], bias, t, c, *k, lin);
                    activate(own_act(i, *activation), &mut y, *filters);
                    y
                }
                LayerSpec::MaxPooling1D { pool_size, .. } => {
                    pool::max_pool(x, &vec![0.0; bsz * (t / pool_size) * c], t, c, *pool_size).0
                }
                LayerSpec::GlobalMaxPooling1D {} => {
                    pool::global_max_pool(x, &vec![0.0; bsz * c], t, c).0
                }
                LayerSpec::GlobalAveragePooling1D {} => {
                    pool::global_avg_pool(x, &vec![0.0; bsz * c], t, c).0
                }
                _ => unreachable!("recurrent layers above; the Embedding is first"),
            }
        };
        acts.push(out);
    }

    // Loss and its gradient w.r.t. the logits.
    let logits = acts.last().expect("layers").clone();
    let k_out = logits.len() / bsz;
    let mut loss = 0.0;
    let mut dy = vec![0.0; logits.len()];
    let n = bsz as f64;
    for b in 0..bsz {
        let z = &logits[b * k_out..(b + 1) * k_out];
        match head {
            Head::Sigmoid => {
                let (z, y) = (z[0], targets[b]);
                loss += (z.max(0.0) - z * y + (-z.abs()).exp().ln_1p()) / n;
                dy[b] = (1.0 / (1.0 + (-z).exp()) - y) / n;
            }
            Head::Softmax(_) => {
                let c = targets[b] as usize;
                let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
                loss += (lse - z[c]) / n;
                for j in 0..k_out {
                    let onehot = if j == c { 1.0 } else { 0.0 };
                    dy[b * k_out + j] = ((z[j] - lse).exp() - onehot) / n;
                }
            }
            Head::Sigmoids(k) => {
                // Keras's binary_crossentropy: the mean of the K labels' terms.
                let per = n * k as f64;
                for j in 0..k {
                    let (z, y) = (z[j], targets[b * k + j]);
                    loss += (z.max(0.0) - z * y + (-z.abs()).exp().ln_1p()) / per;
                    dy[b * k + j] = (1.0 / (1.0 + (-z).exp()) - y) / per;
                }
            }
        }
    }

    // Backward, layer by layer in reverse.
    let mut grads = vec![0.0; p.len()];
    for (i, layer) in arch.layers.iter().enumerate().skip(1).rev() {
        let x = &acts[i - 1];
        let (t, c) = seq(i - 1);
        let dx = if let Some((inner, dirs)) = recurrent(layer) {
            let h = inner.recurrent().expect("recurrent").0.units;
            let width = dirs * h;
            let return_seq = matches!(infos[i].output, Shape::Seq { .. });
            let mut dx = vec![0.0; x.len()];
            for k in 0..dirs {
                // dout in the direction's own step order.
                let mut dout = vec![0.0; bsz * t * h];
                for b in 0..bsz {
                    for tt in 0..t {
                        let src_t = if k == 1 { t - 1 - tt } else { tt };
                        let at = (b * t + tt) * h;
                        if return_seq {
                            let from = (b * t + src_t) * width + k * h;
                            dout[at..at + h].copy_from_slice(&dy[from..from + h]);
                        } else if tt == t - 1 {
                            let from = b * width + k * h;
                            dout[at..at + h].copy_from_slice(&dy[from..from + h]);
                        }
                    }
                }
                let xin = if k == 1 {
                    reverse_time(x, t, c)
                } else {
                    x.clone()
                };
                let w = weights(i, &inner, c, k);
                let r = run_layer(&inner, &xin, &w, &ref_masks(i, k), &dout);
                let at = starts[i] + k * (r.kernel.len() + r.recurrent.len() + r.bias.len());
                let parts = r.kernel.iter().chain(&r.recurrent).chain(&r.bias);
                for (g, v) in grads[at..].iter_mut().zip(parts) {
                    *g += v;
                }
                let rdx = if k == 1 {
                    reverse_time(&r.dx, t, c)
                } else {
                    r.dx
                };
                for (a, v) in dx.iter_mut().zip(rdx) {
                    *a += v;
                }
            }
            dx
        } else {
            let w = &p[starts[i]..];
            let y = &acts[i];
            match layer {
                LayerSpec::Dropout { .. } => match layer_masks(i) {
                    LayerMasks::Dropout(m) => {
                        dy.iter().zip(m).map(|(g, &k)| g * k as f64).collect()
                    }
                    _ => dy.clone(),
                },
                LayerSpec::Dense { units, activation } => {
                    let inp = x.len() / bsz;
                    let dz = activate_backward(own_act(i, *activation), y, &dy, *units);
                    let (kw, bias) = (&w[..inp * units], &w[inp * units..inp * units + units]);
                    let lin = dense::Activation::Linear;
                    let (dx, dw, db) = naive::dense_backward(x, kw, bias, inp, lin, &dz);
                    let at = starts[i];
                    for (g, v) in grads[at..].iter_mut().zip(dw.iter().chain(&db)) {
                        *g += v;
                    }
                    dx
                }
                LayerSpec::Activation { activation } => {
                    activate_backward(own_act(i, *activation), y, &dy, c)
                }
                LayerSpec::Conv1D {
                    filters,
                    kernel_size: k,
                    activation,
                    ..
                } => {
                    let dz = activate_backward(own_act(i, *activation), y, &dy, *filters);
                    let wl = k * c * filters;
                    let (kw, bias) = (&w[..wl], &w[wl..wl + filters]);
                    let lin = dense::Activation::Linear;
                    let (dx, dw, db) = conv::conv1d_backward(x, kw, bias, t, c, *k, lin, &dz);
                    let at = starts[i];
                    for (g, v) in grads[at..].iter_mut().zip(dw.iter().chain(&db)) {
                        *g += v;
                    }
                    dx
                }
                LayerSpec::MaxPooling1D { pool_size, .. } => {
                    pool::max_pool(x, &dy, t, c, *pool_size).1
                }
                LayerSpec::GlobalMaxPooling1D {} => pool::global_max_pool(x, &dy, t, c).1,
                LayerSpec::GlobalAveragePooling1D {} => pool::global_avg_pool(x, &dy, t, c).1,
                _ => unreachable!("recurrent layers above; the Embedding is first"),
            }
        };
        dy = dx;
    }
    for (b, seq_ids) in ids.chunks_exact(t_len).enumerate() {
        for (tt, &tok) in seq_ids.iter().enumerate() {
            let at = (b * t_len + tt) * d0;
            for j in 0..d0 {
                grads[tok as usize * d0 + j] += dy[at + j];
            }
        }
    }
    Ok(RefOutput {
        loss,
        logits,
        grads,
    })
}
