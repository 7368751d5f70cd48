//! TEST-ONLY COPY of the tutorial-only engine that `nn::Network` replaced (src/nn/model.rs as it
//! was), kept so tests/wire.rs and tests/nn_network.rs can prove the new path gives its bits.
//!
//! The whole network on a batch: Embedding -> LSTM -> Dense(1) -> sigmoid / binary
//! cross-entropy, forward and backward, with the batch split across threads.
//!
//! Each thread runs its own chunk of sequences through its own [`Workspace`] with a
//! single-threaded GEMM. Dense-layer and LSTM weight gradients are partial sums per thread,
//! added in thread order; the embedding gradient is scattered from each thread's input
//! gradient in thread order. The result depends only on the thread count, never on timing.

use imdb_lstm::nn::gemm::{matmul, Op};
use imdb_lstm::nn::lstm::{LstmCache, LstmGrads, LstmWeights, Mask, PackedGates};
use imdb_lstm::nn::params::{Params, BIAS, DENSE_BIAS, DENSE_KERNEL, EMBEDDING, KERNEL, RECURRENT};
use imdb_lstm::nn::ModelConfig;

/// Dropout masks for a whole batch, drawn by the training loop.
#[derive(Clone, Debug, Default)]
pub struct BatchMasks {
    /// Groups per mask: 4 (one per gate, the default) or 1 (shared by the gates).
    pub groups: usize,
    /// `[B, G, D]` input masks, when dropout > 0.
    pub x: Option<Vec<f32>>,
    /// `[B, G, H]` recurrent masks, when recurrent_dropout > 0.
    pub h: Option<Vec<f32>>,
}

/// Sums over a batch (not means), so partial batches and threads add up exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BatchStats {
    pub loss_sum: f64,
    pub correct: usize,
    pub count: usize,
}

impl std::ops::AddAssign for BatchStats {
    fn add_assign(&mut self, o: BatchStats) {
        self.loss_sum += o.loss_sum;
        self.correct += o.correct;
        self.count += o.count;
    }
}

/// Binary cross-entropy of a logit against a 0/1 label, computed stably from the logit.
pub fn bce_from_logit(z: f64, y: f64) -> f64 {
    z.max(0.0) - z * y + (-z.abs()).exp().ln_1p()
}

/// A batch's gradient, laid out like the parameters, as [`Engine::train_batch`] writes it.
///
/// Only the embedding rows of the batch's tokens can be nonzero, and it remembers which: the
/// next batch clears just those rows instead of the whole table (2.5 MB at the defaults), and
/// [`Gradients::is_finite`] reads only them.
#[derive(Clone, Debug)]
pub struct Gradients {
    params: Params,
    /// The embedding rows that may be nonzero, each once.
    rows: Vec<u32>,
    /// `[V]`: whether a row is in `rows`.
    listed: Vec<bool>,
}

impl Gradients {
    /// All zeros.
    pub fn zeros(cfg: &ModelConfig) -> Gradients {
        Gradients {
            params: Params::zeros(cfg),
            rows: Vec::new(),
            listed: vec![false; cfg.num_words],
        }
    }

    /// The whole gradient, in the parameters' layout.
    pub fn data(&self) -> &[f32] {
        &self.params.data
    }

    /// The embedding rows that may be nonzero (the batch's distinct tokens), in first-seen order.
    pub fn embedding_rows(&self) -> &[u32] {
        &self.rows
    }

    /// Whether every value is finite (no NaN or infinity). Reads the layers after the embedding
    /// and the batch's embedding rows: every other value is zero.
    pub fn is_finite(&self) -> bool {
        let finite = |v: &[f32]| v.iter().fold(true, |ok, g| ok & g.is_finite());
        let d = self.params.cfg.embed_dim;
        let emb = self.params.tensor(EMBEDDING);
        finite(&self.params.data[self.params.layout.dense_part()])
            && self
                .rows
                .iter()
                .all(|&r| finite(&emb[r as usize * d..(r as usize + 1) * d]))
    }

    /// Zeroes the embedding rows of the previous batch.
    fn clear_embedding(&mut self) {
        let d = self.params.cfg.embed_dim;
        let emb = self.params.tensor_mut(EMBEDDING);
        for &r in &self.rows {
            emb[r as usize * d..(r as usize + 1) * d].fill(0.0);
            self.listed[r as usize] = false;
        }
        self.rows.clear();
    }

    /// `row += src` for embedding row `tok`, remembering the row.
    fn add_to_row(&mut self, tok: usize, src: &[f32]) {
        if !self.listed[tok] {
            self.listed[tok] = true;
            self.rows.push(tok as u32);
        }
        let d = src.len();
        let row = &mut self.params.tensor_mut(EMBEDDING)[tok * d..(tok + 1) * d];
        for (g, v) in row.iter_mut().zip(src) {
            *g += v;
        }
    }
}

/// One thread's buffers.
#[derive(Default)]
struct Workspace {
    lstm: LstmCache,
    /// `[B]` logits of this chunk.
    logits: Vec<f32>,
    /// `[B, H]` gradient into the LSTM's output.
    dh: Vec<f32>,
    /// Partial gradient of everything after the embedding (the `Layout::dense_part`).
    grads: Vec<f32>,
    stats: BatchStats,
}

/// Runs the network on batches; owns the per-thread workspaces and the packed weights.
pub struct Engine {
    cfg: ModelConfig,
    threads: usize,
    workspaces: Vec<Workspace>,
    /// The kernel packed for the input projection and input gradient, refreshed by
    /// [`Engine::refresh`] after each weight update.
    kernel_packed: PackedGates,
    /// The recurrent kernel packed for the per-step products.
    recurrent_packed: PackedGates,
    /// `[V, 4H]` embeddings * kernel: inference's input projection as a lookup table,
    /// rebuilt on the first inference after each refresh.
    table: Vec<f32>,
    table_fresh: bool,
}

/// Rows `[start, end)` of a batch of `n` given to thread `k` of `threads`.
fn chunk(n: usize, threads: usize, k: usize) -> (usize, usize) {
    (n * k / threads, n * (k + 1) / threads)
}

impl Engine {
    pub fn new(cfg: &ModelConfig, threads: usize) -> Engine {
        let threads = threads.max(1);
        Engine {
            cfg: cfg.clone(),
            threads,
            workspaces: (0..threads).map(|_| Workspace::default()).collect(),
            kernel_packed: PackedGates::default(),
            recurrent_packed: PackedGates::default(),
            table: Vec::new(),
            table_fresh: false,
        }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Repack the weights for the GEMM kernels; call after every change to `params`.
    pub fn refresh(&mut self, params: &Params) {
        let (d, h) = (self.cfg.embed_dim, self.cfg.units);
        let (kp, rp) = (&mut self.kernel_packed, &mut self.recurrent_packed);
        // Every batch waits for this: the two matrices are packed side by side when there are
        // two threads.
        if self.threads > 1 {
            std::thread::scope(|s| {
                s.spawn(|| kp.pack(params.tensor(KERNEL), d, h));
                rp.pack(params.tensor(RECURRENT), h, h);
            });
        } else {
            kp.pack(params.tensor(KERNEL), d, h);
            rp.pack(params.tensor(RECURRENT), h, h);
        }
        self.table_fresh = false;
    }

    /// Forward and backward on one training batch. `ids` is `[B, T]`, `y` `[B]`; `grads` is
    /// overwritten with the gradient of the batch's mean loss. Returns the batch's sums.
    pub fn train_batch(
        &mut self,
        params: &Params,
        ids: &[u32],
        y: &[f32],
        masks: &BatchMasks,
        grads: &mut Gradients,
    ) -> BatchStats {
        let t_len = self.cfg.maxlen;
        let n = y.len();
        assert_eq!(ids.len(), n * t_len, "ids must be [batch, maxlen]");
        let w = LstmWeights {
            kernel: params.tensor(KERNEL),
            recurrent: params.tensor(RECURRENT),
            bias: params.tensor(BIAS),
            kernel_packed: &self.kernel_packed,
            recurrent_packed: &self.recurrent_packed,
        };
        // Never more threads than sequences: an empty chunk has nothing to do.
        let threads = self.threads.min(n).max(1);
        let (cfg, dense_len) = (&self.cfg, params.layout.dense_part().len());
        let scale = 1.0 / n as f32;
        std::thread::scope(|s| {
            let mut handles = Vec::new();
            for (k, ws) in self.workspaces.iter_mut().take(threads).enumerate() {
                let (r0, r1) = chunk(n, threads, k);
                let mut job = move || {
                    ws.grads.clear();
                    ws.grads.resize(dense_len, 0.0);
                    ws.train_chunk(
                        cfg,
                        params,
                        &w,
                        &ids[r0 * t_len..r1 * t_len],
                        &y[r0..r1],
                        masks,
                        r0,
                        scale,
                    );
                };
                if k + 1 == threads {
                    job(); // the calling thread takes the last chunk
                } else {
                    handles.push(s.spawn(job));
                }
            }
            for hnd in handles {
                if let Err(e) = hnd.join() {
                    std::panic::resume_unwind(e);
                }
            }
        });
        // Reduce in thread order: deterministic for a given thread count.
        let dense = params.layout.dense_part();
        grads.clear_embedding();
        let mut stats = BatchStats::default();
        let d = cfg.embed_dim;
        for (k, ws) in self.workspaces.iter().take(threads).enumerate() {
            let out = &mut grads.params.data[dense.clone()];
            if k == 0 {
                out.copy_from_slice(&ws.grads);
            } else {
                for (g, p) in out.iter_mut().zip(&ws.grads) {
                    *g += p;
                }
            }
            stats += ws.stats;
            let (r0, r1) = chunk(n, threads, k);
            let b = r1 - r0;
            for t in 0..t_len {
                for bi in 0..b {
                    let tok = ids[(r0 + bi) * t_len + t] as usize;
                    grads.add_to_row(tok, &ws.lstm.dx[(t * b + bi) * d..(t * b + bi + 1) * d]);
                }
            }
        }
        stats
    }

    /// Logits for `[N, T]` ids (no dropout), written to `out` `[N]`. Both cores, chunked.
    pub fn predict_logits(&mut self, params: &Params, ids: &[u32], out: &mut [f32]) {
        let t_len = self.cfg.maxlen;
        let n = out.len();
        assert_eq!(ids.len(), n * t_len, "ids must be [n, maxlen]");
        let (v, d, h) = (self.cfg.num_words, self.cfg.embed_dim, self.cfg.units);
        if !self.table_fresh {
            // Without dropout, x_t W = (E W)[id]: one GEMM over the vocabulary replaces
            // the input projection of every step of every sequence.
            self.table.resize(v * 4 * h, 0.0);
            matmul(
                v,
                4 * h,
                d,
                params.tensor(EMBEDDING),
                d,
                Op::N,
                params.tensor(KERNEL),
                4 * h,
                Op::N,
                &mut self.table,
                4 * h,
                false,
            );
            self.table_fresh = true;
        }
        let (table, packed, bias) = (&self.table, &self.recurrent_packed, params.tensor(BIAS));
        let threads = self.threads.min(n).max(1);
        let (wd, bd) = (params.tensor(DENSE_KERNEL), params.tensor(DENSE_BIAS)[0]);
        std::thread::scope(|s| {
            let mut rest = &mut out[..];
            let mut handles = Vec::new();
            for (k, ws) in self.workspaces.iter_mut().take(threads).enumerate() {
                let (r0, r1) = chunk(n, threads, k);
                let (mine, tail) = rest.split_at_mut(r1 - r0);
                rest = tail;
                let ids = &ids[r0 * t_len..r1 * t_len];
                let mut job = move || {
                    const EVAL_ROWS: usize = 128;
                    for (ids, out) in ids
                        .chunks(EVAL_ROWS * t_len)
                        .zip(mine.chunks_mut(EVAL_ROWS))
                    {
                        let hs = ws.lstm.infer(table, bias, ids, t_len, h, packed);
                        for (o, hrow) in out.iter_mut().zip(hs.chunks_exact(h)) {
                            *o = hrow.iter().zip(wd).map(|(a, b)| a * b).sum::<f32>() + bd;
                        }
                    }
                };
                if k + 1 == threads {
                    job();
                } else {
                    handles.push(s.spawn(job));
                }
            }
            for hnd in handles {
                if let Err(e) = hnd.join() {
                    std::panic::resume_unwind(e);
                }
            }
        });
    }

    /// Loss and accuracy sums over a labelled set (no dropout).
    pub fn evaluate(&mut self, params: &Params, ids: &[u32], y: &[f32]) -> (BatchStats, Vec<f32>) {
        let mut logits = vec![0.0; y.len()];
        self.predict_logits(params, ids, &mut logits);
        let mut stats = BatchStats {
            count: y.len(),
            ..Default::default()
        };
        for (&z, &label) in logits.iter().zip(y) {
            stats.loss_sum += bce_from_logit(z as f64, label as f64);
            stats.correct += ((z > 0.0) == (label > 0.5)) as usize;
        }
        (stats, logits)
    }
}

/// The sub-slice of a `[B, G, W]` batch mask for rows `[r0, r0 + b)`.
fn mask_rows(
    m: &Option<Vec<f32>>,
    groups: usize,
    width: usize,
    r0: usize,
    b: usize,
) -> Option<Mask<'_>> {
    m.as_ref().map(|v| Mask {
        groups,
        data: &v[r0 * groups * width..(r0 + b) * groups * width],
    })
}

impl Workspace {
    /// Embedding lookup, LSTM and dense forward for `ids` `[B, T]`; logits land in `self.logits`.
    fn forward_chunk(
        &mut self,
        cfg: &ModelConfig,
        p: &Params,
        w: &LstmWeights,
        ids: &[u32],
        masks: Option<(Option<Mask>, Option<Mask>)>,
    ) {
        let (t_len, d, h) = (cfg.maxlen, cfg.embed_dim, cfg.units);
        let b = ids.len() / t_len;
        self.lstm.prepare(t_len, b, d, h);
        let emb = p.tensor(EMBEDDING);
        // Time-major gather: row t*B + b holds the embedding of sequence b's token t.
        for t in 0..t_len {
            for bi in 0..b {
                let tok = ids[bi * t_len + t] as usize;
                self.lstm.x[(t * b + bi) * d..(t * b + bi + 1) * d]
                    .copy_from_slice(&emb[tok * d..(tok + 1) * d]);
            }
        }
        let (xm, hm) = masks.unwrap_or((None, None));
        self.lstm.forward(w, xm, hm);
        let (wd, bd) = (p.tensor(DENSE_KERNEL), p.tensor(DENSE_BIAS)[0]);
        self.logits.clear();
        for hrow in self.lstm.output().chunks_exact(h) {
            self.logits
                .push(hrow.iter().zip(wd).map(|(a, b)| a * b).sum::<f32>() + bd);
        }
    }

    /// Forward + backward of one chunk; `scale` = 1 / (whole batch size) for the mean loss.
    #[allow(clippy::too_many_arguments)]
    fn train_chunk(
        &mut self,
        cfg: &ModelConfig,
        p: &Params,
        w: &LstmWeights,
        ids: &[u32],
        y: &[f32],
        masks: &BatchMasks,
        r0: usize,
        scale: f32,
    ) {
        let (d, h) = (cfg.embed_dim, cfg.units);
        let b = y.len();
        let xm = mask_rows(&masks.x, masks.groups, d, r0, b);
        let hm = mask_rows(&masks.h, masks.groups, h, r0, b);
        self.forward_chunk(cfg, p, w, ids, Some((xm, hm)));
        let wd = p.tensor(DENSE_KERNEL);
        let layout = &p.layout;
        let off = layout.dense_part().start;
        let r = |i: usize| layout.ranges[i].start - off..layout.ranges[i].end - off;
        self.dh.clear();
        self.dh.resize(b * h, 0.0);
        let mut stats = BatchStats {
            count: b,
            ..Default::default()
        };
        let (gk, gb) = (r(DENSE_KERNEL), r(DENSE_BIAS));
        for (bi, &label) in y.iter().enumerate() {
            let z = self.logits[bi];
            stats.loss_sum += bce_from_logit(z as f64, label as f64);
            stats.correct += ((z > 0.0) == (label > 0.5)) as usize;
            // d(mean loss)/dz = (sigmoid(z) - y) / B.
            let dz = ((1.0 / (1.0 + (-z as f64).exp())) as f32 - label) * scale;
            let hrow = &self.lstm.output()[bi * h..(bi + 1) * h];
            for (g, hv) in self.grads[gk.clone()].iter_mut().zip(hrow) {
                *g += hv * dz;
            }
            self.grads[gb.start] += dz;
            for (dh, wv) in self.dh[bi * h..(bi + 1) * h].iter_mut().zip(wd) {
                *dh = wv * dz;
            }
        }
        self.stats = stats;
        let (gk, gr, gbias) = (r(KERNEL), r(RECURRENT), r(BIAS));
        let (head, tail) = self.grads.split_at_mut(gr.start);
        let (rec, tail) = tail.split_at_mut(gr.len());
        let grads = LstmGrads {
            kernel: &mut head[gk],
            recurrent: rec,
            bias: &mut tail[..gbias.len()],
        };
        self.lstm.backward(w, xm, hm, &self.dh, grads);
    }
}

/// The tutorial stack's initialisation as `Params::init` drew it before `Arch::init`.
pub fn old_init(cfg: &ModelConfig, rng: &mut rand_pcg::Pcg64) -> Params {
    use rand::Rng;
    let glorot = |w: &mut [f32], fan_in: usize, fan_out: usize, rng: &mut rand_pcg::Pcg64| {
        let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
        for x in w {
            *x = rng.gen_range(-limit..limit);
        }
    };
    let mut p = Params::zeros(cfg);
    let (d, h) = (cfg.embed_dim, cfg.units);
    for w in p.tensor_mut(EMBEDDING) {
        *w = rng.gen_range(-0.05..0.05);
    }
    glorot(p.tensor_mut(KERNEL), d, 4 * h, rng);
    let q = imdb_lstm::nn::params::orthogonal(h, 4 * h, rng);
    p.tensor_mut(RECURRENT).copy_from_slice(&q);
    p.tensor_mut(BIAS)[h..2 * h].fill(1.0);
    glorot(p.tensor_mut(DENSE_KERNEL), h, 1, rng);
    p
}
