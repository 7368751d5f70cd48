//! Any layer stack an [`Arch`] describes, trained and run on batches with the layer kernels of
//! [`super::lstm`], [`super::gru`], [`super::conv`], [`super::pool`] and [`super::dense`].
//!
//! The stack becomes a list of nodes, one per layer that computes something: the output layer's
//! sigmoid or softmax is left out (the loss takes logits), Activation('linear') is left out, and
//! a Dense or Conv1D with tanh becomes the linear layer plus a tanh node (the kernels have no
//! tanh). Between nodes activations are batch-major `[B, ...]`; a recurrent node transposes to
//! and from its kernels' time-major layout, and feeds a Bidirectional's backward layer the
//! time-reversed input.
//!
//! Threads: each runs its chunk of the batch through its own [`Workspace`], the calling thread
//! the last chunk; the weight gradients after the embedding are added in thread order, then the
//! embedding gradient is scattered row by row in thread, step, sequence order. The result
//! depends only on the thread count. For Embedding -> LSTM -> Dense(1, sigmoid) every operation
//! is the one the tutorial-only engine it replaced did, in its order, so trainings saved before
//! go on with the same bits (tests/wire.rs).

pub mod reference;

use super::arch::{self, Arch, Head, LayerSpec, Shape};
use super::conv::Conv1d;
use super::dense::{self, sigmoid_cross_entropy, softmax_cross_entropy, Cache, Dense, Grads};
use super::gemm::{matmul, Op};
use super::gru::{GruCache, GruGrads, GruWeights};
use super::lstm::{LstmCache, LstmGrads, LstmWeights, Mask, PackedGates, Upstream};
use super::parallel::{on_threads, run_jobs, Job};
use super::pool::{GlobalAvgPool1d, GlobalMaxPool1d, MaxPool1d};
use anyhow::{bail, Result};
use rand::Rng;
use rand_pcg::Pcg64;
use std::ops::Range;

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

/// Dropout masks for one batch, per layer of the arch (missing or `None`: nothing dropped).
/// Values are 0 or 1/(1-rate) (inverted dropout).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetMasks {
    pub layers: Vec<LayerMasks>,
}

/// One layer's dropout masks.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum LayerMasks {
    #[default]
    None,
    /// A Dropout layer's `[B, len]`, one value per element of a sequence's input.
    Dropout(Vec<f32>),
    /// An LSTM's or GRU's masks, one set per direction (forward, then a Bidirectional's
    /// backward layer).
    Recurrent(Vec<RecurrentMasks>),
}

/// A recurrent layer's masks: one per sequence, reused at every step; `groups` is 1 (shared by
/// the gates) or the gate count (4 LSTM, 3 GRU).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecurrentMasks {
    pub groups: usize,
    /// `[B, G, D]` on the inputs, when dropout > 0.
    pub x: Option<Vec<f32>>,
    /// `[B, G, H]` on h_{t-1}, when recurrent_dropout > 0.
    pub h: Option<Vec<f32>>,
}

/// A batch's gradient in the arch's flat layout, as [`Network::train_batch`] writes it. Only the
/// embedding rows of the batch's tokens can be nonzero, and it remembers which: the next batch
/// clears just those rows instead of the whole table, and [`Gradients::is_finite`] reads only them.
#[derive(Clone, Debug)]
pub struct Gradients {
    data: Vec<f32>,
    /// Embedding width; the table is `data[..listed.len() * d]`.
    d: usize,
    rows: Vec<u32>,
    listed: Vec<bool>,
}

impl Gradients {
    /// All zeros, for `net`'s parameters.
    pub fn zeros(net: &Network) -> Gradients {
        Gradients {
            data: vec![0.0; net.param_count],
            d: net.embed_dim,
            rows: Vec::new(),
            listed: vec![false; net.vocab],
        }
    }

    /// The whole gradient, in the parameters' layout.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The embedding rows that may be nonzero (the batch's distinct tokens), in first-seen order.
    pub fn embedding_rows(&self) -> &[u32] {
        &self.rows
    }

    /// Whether every value is finite; reads the layers after the embedding and the batch's rows.
    pub fn is_finite(&self) -> bool {
        // Branch-free and compiled for the vector ISA: no early exit.
        #[inline(always)]
        fn finite(v: &[f32]) -> bool {
            v.iter().fold(0u32, |bad, g| bad | !g.is_finite() as u32) == 0
        }
        let (d, emb) = (self.d, self.listed.len() * self.d);
        crate::dispatch!(
            finite(&self.data[emb..])
                & self.rows.iter().fold(true, |ok, &r| {
                    ok & finite(&self.data[r as usize * d..(r as usize + 1) * d])
                })
        )
    }

    fn clear_embedding(&mut self) {
        let d = self.d;
        for &r in &self.rows {
            self.data[r as usize * d..(r as usize + 1) * d].fill(0.0);
            self.listed[r as usize] = false;
        }
        self.rows.clear();
    }

    /// Adds each chunk's embedding-output gradient `dx` `[b, T, D]` to the rows of its tokens
    /// `ids` `[b, T]`, remembering the rows in first-seen order. Every row sums its terms in
    /// one order (chunk, then step, then sequence), the serial sum's, whatever `threads`: a
    /// large batch splits the table into `threads` ranges of rows holding about as many of the
    /// batch's rows each, and each thread adds the terms of its range.
    fn add_rows(&mut self, chunks: &[(&[u32], &[f32])], t_len: usize, threads: usize) {
        let d = self.d;
        let terms: usize = chunks.iter().map(|(ids, _)| ids.len()).sum();
        for (ids, _) in chunks {
            let b = ids.len() / t_len;
            for t in 0..t_len {
                for bi in 0..b {
                    let tok = ids[bi * t_len + t];
                    if !self.listed[tok as usize] {
                        self.listed[tok as usize] = true;
                        self.rows.push(tok);
                    }
                }
            }
        }
        // Below this many floats a thread costs more than it saves.
        let threads = if terms * d >= 1 << 16 {
            threads.max(1)
        } else {
            1
        };
        // Row boundaries at the quantiles of the batch's distinct rows: a row's first term
        // costs a read of it from memory, which outweighs the additions.
        let mut bounds = vec![0usize];
        if threads > 1 {
            let mut rows = self.rows.clone();
            let distinct = rows.len();
            for k in 1..threads {
                let (_, &mut q, _) = rows.select_nth_unstable(distinct * k / threads);
                bounds.push((q as usize).max(*bounds.last().expect("starts with 0")));
            }
        }
        bounds.push(self.listed.len());
        let mut parts = Vec::with_capacity(threads);
        let mut rest = &mut self.data[..self.listed.len() * d];
        for w in bounds.windows(2) {
            let (mine, tail) = std::mem::take(&mut rest).split_at_mut((w[1] - w[0]) * d);
            parts.push((w[0]..w[1], mine));
            rest = tail;
        }
        let add = |(rows, table): (Range<usize>, &mut [f32])| {
            for &(ids, dx) in chunks {
                let b = ids.len() / t_len;
                for t in 0..t_len {
                    for bi in 0..b {
                        let tok = ids[bi * t_len + t] as usize;
                        if rows.contains(&tok) {
                            let (at, row) = ((bi * t_len + t) * d, (tok - rows.start) * d);
                            let src = &dx[at..at + d];
                            for (g, v) in table[row..row + d].iter_mut().zip(src) {
                                *g += v;
                            }
                        }
                    }
                }
            }
        };
        on_threads(parts, add);
    }
}

/// What [`Network::probability_gradients`] runs on.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    /// Token ids `[B, maxlen]`.
    Ids(&'a [u32]),
    /// Embedding outputs `[B, maxlen, D]` given directly (any values, e.g. points between two
    /// inputs, as integrated gradients needs).
    Embedded(&'a [f32]),
}

/// LSTM or GRU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cell {
    Lstm,
    Gru,
}

impl Cell {
    fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru => 3,
        }
    }

    /// Bias values of one direction: LSTM `[4H]`, GRU `[2, 3H]` (reset_after).
    fn bias_len(self, h: usize) -> usize {
        match self {
            Cell::Lstm => 4 * h,
            Cell::Gru => 6 * h,
        }
    }
}

/// An element-wise activation: the kernels' own, or tanh (which they lack).
#[derive(Clone, Copy, Debug)]
enum Act {
    Kernel(dense::Activation),
    Tanh,
}

impl Act {
    fn forward(self, y: &mut [f32], width: usize) {
        match self {
            Act::Kernel(a) => a.forward(y, width),
            Act::Tanh => y.iter_mut().for_each(|v| *v = v.tanh()),
        }
    }

    fn backward(self, y: &[f32], dy: &[f32], dx: &mut [f32], width: usize) {
        match self {
            Act::Kernel(a) => a.backward(y, dy, dx, width),
            Act::Tanh => {
                for ((d, &y), &g) in dx.iter_mut().zip(y).zip(dy) {
                    *d = g * (1.0 - y * y);
                }
            }
        }
    }
}

/// One direction's weights packed for the GEMMs.
#[derive(Default)]
struct PackedCell {
    kernel: PackedGates,
    recurrent: PackedGates,
}

/// What a node computes.
enum Kind {
    /// Rows of width `d` looked up by token id.
    Embedding(usize),
    Recurrent {
        cell: Cell,
        t: usize,
        d: usize,
        h: usize,
        seq: bool,
        /// One per direction: forward, then a Bidirectional's backward layer.
        dirs: Vec<PackedCell>,
    },
    Dropout,
    Dense(Dense),
    /// Dense with one unit: a dot product per row, in the tutorial engine's order.
    Dense1(dense::Activation),
    Conv(Conv1d),
    MaxPool(MaxPool1d),
    GlobalMax(GlobalMaxPool1d),
    GlobalAvg(GlobalAvgPool1d),
    Act(Act, usize),
}

/// One step of the stack, shared read-only by the threads.
struct Node {
    kind: Kind,
    /// Index of the arch layer it runs (for its masks).
    layer: usize,
    /// Its tensors in the flat parameters.
    params: Range<usize>,
    /// Values per sequence in and out.
    inp: usize,
    out: usize,
}

/// A recurrent kernel's per-thread cache.
enum RecCache {
    Lstm(LstmCache),
    Gru(GruCache),
}

/// A node's per-thread buffers; every output and input gradient is batch-major.
enum NodeCache {
    /// The embedding output `[B, T, D]`.
    Embedding(Vec<f32>),
    Recurrent {
        dirs: Vec<RecCache>,
        y: Vec<f32>,
        dx: Vec<f32>,
        /// A direction's time-major upstream gradient.
        up: Vec<f32>,
    },
    /// Dropout, Activation, Dense1: output, input gradient, scratch.
    Plain {
        y: Vec<f32>,
        dx: Vec<f32>,
        dz: Vec<f32>,
    },
    Kernel(Cache),
}

impl NodeCache {
    fn new(node: &Node) -> NodeCache {
        match &node.kind {
            Kind::Embedding(_) => NodeCache::Embedding(Vec::new()),
            Kind::Recurrent { cell, dirs, .. } => NodeCache::Recurrent {
                dirs: dirs
                    .iter()
                    .map(|_| match cell {
                        Cell::Lstm => RecCache::Lstm(LstmCache::default()),
                        Cell::Gru => RecCache::Gru(GruCache::default()),
                    })
                    .collect(),
                y: Vec::new(),
                dx: Vec::new(),
                up: Vec::new(),
            },
            Kind::Dropout | Kind::Dense1(_) | Kind::Act(..) => NodeCache::Plain {
                y: Vec::new(),
                dx: Vec::new(),
                dz: Vec::new(),
            },
            _ => NodeCache::Kernel(Cache::default()),
        }
    }

    /// The last forward's output for `b` sequences, `[b, node.out]`.
    fn output(&self, node: &Node, b: usize) -> &[f32] {
        match self {
            NodeCache::Embedding(y)
            | NodeCache::Recurrent { y, .. }
            | NodeCache::Plain { y, .. } => &y[..b * node.out],
            NodeCache::Kernel(c) => c.output(node.out),
        }
    }

    /// The last backward's input gradient, `[b, node.inp]`.
    fn input_grad(&self, node: &Node, b: usize) -> &[f32] {
        match self {
            NodeCache::Recurrent { dx, .. } | NodeCache::Plain { dx, .. } => &dx[..b * node.inp],
            NodeCache::Kernel(c) => c.input_grad(node.inp),
            NodeCache::Embedding(_) => unreachable!("nothing flows into the token ids"),
        }
    }
}

/// `v` sized to exactly `len` values (grows only; reuse keeps allocation out of the loop).
fn sized(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

/// What [`Network::draw_masks`] draws for a layer.
enum MaskPlan {
    None,
    Dropout {
        rate: f32,
        len: usize,
    },
    Recurrent {
        dirs: usize,
        gates: usize,
        d: usize,
        h: usize,
        dropout: f32,
        recurrent_dropout: f32,
    },
}

/// One thread's buffers.
#[derive(Default)]
struct Workspace {
    caches: Vec<NodeCache>,
    /// `[b, K]` gradient of the loss w.r.t. the logits, and one-hot targets.
    dlogits: Vec<f32>,
    onehot: Vec<f32>,
    /// Partial gradient of everything after the embedding.
    grads: Vec<f32>,
    stats: BatchStats,
}

/// Rows `[start, end)` of a batch of `n` given to thread `k` of `threads`.
fn chunk(n: usize, threads: usize, k: usize) -> (usize, usize) {
    (n * k / threads, n * (k + 1) / threads)
}

/// Runs an [`Arch`] on batches; owns the per-thread workspaces and the packed weights.
pub struct Network {
    head: Head,
    maxlen: usize,
    vocab: usize,
    embed_dim: usize,
    param_count: usize,
    nodes: Vec<Node>,
    masks: Vec<MaskPlan>,
    threads: usize,
    workspaces: Vec<Workspace>,
    /// `[V, G*H]` embeddings * kernel of a first recurrent layer (inference's input projection
    /// as a lookup table), rebuilt on the first inference after each refresh.
    table: Vec<f32>,
    table_fresh: bool,
    /// Wall time [`Network::train_batch`] has spent in the layers (forward and backward on the
    /// threads), for `bench`'s split of the step.
    layer_time: std::time::Duration,
}

impl Network {
    /// The network for `arch` on `threads` threads. Refuses (one line) a stack whose output
    /// activation is followed by a Dropout: the loss could no longer take the logits.
    pub fn new(arch: &Arch, threads: usize) -> Result<Network> {
        let infos = arch.describe()?;
        let head = arch.head()?;
        let head_at = arch
            .layers
            .iter()
            .rposition(|l| matches!(l, LayerSpec::Dense { .. } | LayerSpec::Activation { .. }))
            .expect("describe checked the head");
        if head_at + 1 < arch.layers.len() {
            bail!(
                "layer {} ({}) comes after the output activation (layer {}); this tool trains \
                 from the logits: remove it or move it before layer {}",
                head_at + 2,
                arch.layers[head_at + 1].class_name(),
                head_at + 1,
                head_at + 1
            );
        }
        let LayerSpec::Embedding {
            input_dim: vocab,
            output_dim: embed_dim,
        } = arch.layers[0]
        else {
            unreachable!("describe checked the Embedding")
        };
        let mut nodes = Vec::new();
        let mut masks = Vec::new();
        let mut start = 0;
        for (i, (layer, info)) in arch.layers.iter().zip(&infos).enumerate() {
            let len: usize = info.tensors.iter().map(|t| t.len()).sum();
            let params = start..start + len;
            start += len;
            let (inp, out) = (
                i.checked_sub(1).map_or(0, |p| infos[p].output.len()),
                info.output.len(),
            );
            let node = |kind| Node {
                kind,
                layer: i,
                params: params.clone(),
                inp,
                out,
            };
            let seq_in = || match infos[i - 1].output {
                Shape::Seq { steps, features } => (steps, features),
                Shape::Flat { .. } => unreachable!("describe checked the input is a sequence"),
            };
            // The output layer runs linear; the loss applies its sigmoid or softmax.
            let (act, post) = match layer {
                LayerSpec::Dense { activation, .. } | LayerSpec::Conv1D { activation, .. } => {
                    if i == head_at {
                        (dense::Activation::Linear, None)
                    } else {
                        kernel_act(*activation)
                    }
                }
                _ => (dense::Activation::Linear, None),
            };
            let mut plan = MaskPlan::None;
            match layer {
                LayerSpec::Embedding { .. } => nodes.push(node(Kind::Embedding(embed_dim))),
                LayerSpec::LSTM(_) | LayerSpec::GRU(_) | LayerSpec::Bidirectional { .. } => {
                    let (inner, n_dirs) = match layer {
                        LayerSpec::Bidirectional { layer, .. } => (&**layer, 2),
                        l => (l, 1),
                    };
                    let (r, gates) = inner.recurrent().expect("describe checked");
                    let cell = if gates == 4 { Cell::Lstm } else { Cell::Gru };
                    let (t, d) = seq_in();
                    plan = MaskPlan::Recurrent {
                        dirs: n_dirs,
                        gates,
                        d,
                        h: r.units,
                        dropout: r.dropout,
                        recurrent_dropout: r.recurrent_dropout,
                    };
                    nodes.push(node(Kind::Recurrent {
                        cell,
                        t,
                        d,
                        h: r.units,
                        seq: r.return_sequences,
                        dirs: (0..n_dirs).map(|_| PackedCell::default()).collect(),
                    }));
                }
                LayerSpec::Dropout { rate } => {
                    if *rate > 0.0 {
                        plan = MaskPlan::Dropout {
                            rate: *rate,
                            len: inp,
                        };
                    }
                    nodes.push(node(Kind::Dropout));
                }
                LayerSpec::Dense { units, .. } => {
                    let kind = if *units == 1 {
                        Kind::Dense1(act)
                    } else {
                        Kind::Dense(Dense::new(inp, *units, act))
                    };
                    nodes.push(node(kind));
                }
                LayerSpec::Activation { activation } => {
                    let (a, post) = kernel_act(*activation);
                    let act = post.unwrap_or(Act::Kernel(a));
                    if i != head_at && !matches!(act, Act::Kernel(dense::Activation::Linear)) {
                        nodes.push(node(Kind::Act(act, info.output.features())));
                    }
                }
                LayerSpec::Conv1D {
                    filters,
                    kernel_size,
                    ..
                } => {
                    let (t, c) = seq_in();
                    nodes.push(node(Kind::Conv(Conv1d::new(
                        t,
                        c,
                        *kernel_size,
                        *filters,
                        act,
                    ))));
                }
                LayerSpec::MaxPooling1D { pool_size, .. } => {
                    let (steps, channels) = seq_in();
                    nodes.push(node(Kind::MaxPool(MaxPool1d {
                        steps,
                        channels,
                        pool: *pool_size,
                    })));
                }
                LayerSpec::GlobalMaxPooling1D {} => {
                    let (steps, channels) = seq_in();
                    nodes.push(node(Kind::GlobalMax(GlobalMaxPool1d { steps, channels })));
                }
                LayerSpec::GlobalAveragePooling1D {} => {
                    let (steps, channels) = seq_in();
                    nodes.push(node(Kind::GlobalAvg(GlobalAvgPool1d { steps, channels })));
                }
            }
            if let Some(post) = post {
                let mut n = node(Kind::Act(post, info.output.features()));
                (n.inp, n.params) = (out, params.end..params.end);
                nodes.push(n);
            }
            masks.push(plan);
        }
        let threads = threads.max(1);
        let workspaces = (0..threads)
            .map(|_| Workspace {
                caches: nodes.iter().map(NodeCache::new).collect(),
                ..Workspace::default()
            })
            .collect();
        Ok(Network {
            head,
            maxlen: arch.maxlen,
            vocab,
            embed_dim,
            param_count: start,
            nodes,
            masks,
            threads,
            workspaces,
            table: Vec::new(),
            table_fresh: false,
            layer_time: std::time::Duration::ZERO,
        })
    }

    /// Seconds of wall time the training batches so far spent in the layers: the forward and
    /// backward passes of every layer on the threads, from the embedding lookup to the loss.
    /// The rest of a step (Adam, dropout masks, the embedding gradient's scatter, repacking the
    /// weights) is outside.
    pub fn layer_seconds(&self) -> f64 {
        self.layer_time.as_secs_f64()
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Steps per sequence: ids come as `[N, maxlen]`.
    pub fn maxlen(&self) -> usize {
        self.maxlen
    }

    /// Logits per sequence: 1 (sigmoid head) or K (softmax or multi-label head).
    pub fn classes(&self) -> usize {
        self.head.outputs()
    }

    /// The output layer's kind (what the logits mean, and the loss).
    pub fn head(&self) -> Head {
        self.head
    }

    /// Length of the flat parameter buffer (the arch's [`Arch::layout`]).
    pub fn param_count(&self) -> usize {
        self.param_count
    }

    /// Repack the weights for the GEMM kernels; call after every change to `params`.
    pub fn refresh(&mut self, params: &[f32]) {
        assert_eq!(
            params.len(),
            self.param_count,
            "params must be the arch's layout"
        );
        // Every batch waits for this: the matrices are packed side by side on the threads.
        let mut jobs: Vec<Job> = Vec::new();
        for node in &mut self.nodes {
            let p = &params[node.params.clone()];
            match &mut node.kind {
                Kind::Recurrent {
                    cell, d, h, dirs, ..
                } => {
                    let (g, d, h) = (cell.gates(), *d, *h);
                    let dl = dir_len(*cell, d, h);
                    for (k, pc) in dirs.iter_mut().enumerate() {
                        let (w, u, _) = split_dir(&p[k * dl..(k + 1) * dl], d, h, g * h);
                        let (kp, rp) = (&mut pc.kernel, &mut pc.recurrent);
                        jobs.push(Box::new(move || kp.pack_gates(w, d, g, h)));
                        jobs.push(Box::new(move || rp.pack_gates(u, h, g, h)));
                    }
                }
                Kind::Dense(dense) => {
                    jobs.push(Box::new(move || dense.pack(&p[..dense.inp * dense.units])))
                }
                Kind::Conv(conv) => {
                    jobs.push(Box::new(move || conv.pack(&p[..p.len() - conv.filters])))
                }
                _ => {}
            }
        }
        let threads = self.threads.min(jobs.len()).max(1);
        let mut groups: Vec<Vec<Job>> = (0..threads).map(|_| Vec::new()).collect();
        for (i, job) in jobs.into_iter().enumerate() {
            groups[i % threads].push(job);
        }
        on_threads(groups, |g| g.into_iter().for_each(|job| job()));
        self.table_fresh = false;
    }

    /// Draws one batch's masks for every layer that drops, in layer order (a recurrent layer's
    /// input mask, then its state mask; a Bidirectional's forward layer first), each value
    /// `rng.gen::<f32>() < 1 - rate` as the training loop draws the LSTM's today. `per_gate`:
    /// one mask per gate, else one shared by the gates. Reuses `masks`' buffers.
    ///
    /// The values are those of one serial draw, whatever the thread count: a large batch's
    /// masks are drawn by the network's threads, each over its rows of every mask, from a copy
    /// of `rng` advanced to where those values sit in the stream (`Pcg64::advance` jumps in
    /// O(log n)); `rng` then moves past them all.
    pub fn draw_masks(&self, rng: &mut Pcg64, batch: usize, per_gate: bool, masks: &mut NetMasks) {
        masks
            .layers
            .resize_with(self.masks.len(), LayerMasks::default);
        // Size every buffer; then list them in stream order as (rate, buffer).
        for (plan, m) in self.masks.iter().zip(&mut masks.layers) {
            match *plan {
                MaskPlan::None => *m = LayerMasks::None,
                MaskPlan::Dropout { len, .. } => {
                    let mut v = match std::mem::take(m) {
                        LayerMasks::Dropout(v) => v,
                        _ => Vec::new(),
                    };
                    v.resize(batch * len, 0.0);
                    *m = LayerMasks::Dropout(v);
                }
                MaskPlan::Recurrent {
                    dirs,
                    gates,
                    d,
                    h,
                    dropout,
                    recurrent_dropout,
                } => {
                    let mut sets = match std::mem::take(m) {
                        LayerMasks::Recurrent(v) => v,
                        _ => Vec::new(),
                    };
                    sets.resize_with(dirs, RecurrentMasks::default);
                    let groups = if per_gate { gates } else { 1 };
                    for set in &mut sets {
                        set.groups = groups;
                        for (slot, rate, width) in
                            [(&mut set.x, dropout, d), (&mut set.h, recurrent_dropout, h)]
                        {
                            *slot = (rate > 0.0).then(|| {
                                let mut v = slot.take().unwrap_or_default();
                                v.resize(batch * groups * width, 0.0);
                                v
                            });
                        }
                    }
                    *m = LayerMasks::Recurrent(sets);
                }
            }
        }
        let mut bufs: Vec<(f32, &mut [f32])> = Vec::new();
        for (plan, m) in self.masks.iter().zip(&mut masks.layers) {
            match (plan, m) {
                (MaskPlan::Dropout { rate, .. }, LayerMasks::Dropout(v)) => bufs.push((*rate, v)),
                (
                    MaskPlan::Recurrent {
                        dropout,
                        recurrent_dropout,
                        ..
                    },
                    LayerMasks::Recurrent(sets),
                ) => {
                    for set in sets {
                        for (slot, rate) in
                            [(&mut set.x, *dropout), (&mut set.h, *recurrent_dropout)]
                        {
                            if let Some(v) = slot {
                                bufs.push((rate, v));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        let total: usize = bufs.iter().map(|(_, v)| v.len()).sum();
        // Below this a thread costs more than it saves (a draw is about 1.5 ns).
        const PARALLEL_FROM: usize = 1 << 16;
        let threads = if total >= PARALLEL_FROM {
            self.threads.min(batch).max(1)
        } else {
            1
        };
        // Each thread's share: its rows of every buffer, with their place in the stream.
        let mut shares: Vec<Vec<(u128, f32, &mut [f32])>> =
            (0..threads).map(|_| Vec::new()).collect();
        let mut at = 0u128;
        for (rate, buf) in bufs {
            let (len, per_row) = (buf.len(), buf.len() / batch.max(1));
            let mut rest = buf;
            for (k, share) in shares.iter_mut().enumerate() {
                let (r0, r1) = chunk(batch, threads, k);
                let (mine, tail) = std::mem::take(&mut rest).split_at_mut((r1 - r0) * per_row);
                share.push((at + (r0 * per_row) as u128, rate, mine));
                rest = tail;
            }
            at += len as u128;
        }
        let start = &*rng;
        let run = |share: Vec<(u128, f32, &mut [f32])>| {
            for (at, rate, out) in share {
                let mut r = start.clone();
                r.advance(at);
                draw(&mut r, rate, out);
            }
        };
        on_threads(shares, run);
        rng.advance(total as u128);
    }

    /// Forward and backward on one training batch: `ids` `[B, maxlen]`, `targets` `[B]` (0/1
    /// for a sigmoid head, class indices for a softmax head; the caller checks them) or `[B, K]`
    /// (0/1 per label for a multi-label head, [`Head::targets`]); `masks` as
    /// [`Network::draw_masks`] draws them for B sequences, or empty for none. `grads` is
    /// overwritten with the gradient of the batch's mean loss. Returns the batch's sums.
    pub fn train_batch(
        &mut self,
        params: &[f32],
        ids: &[u32],
        targets: &[f32],
        masks: &NetMasks,
        grads: &mut Gradients,
    ) -> BatchStats {
        let (t_len, per) = (self.maxlen, self.head.targets());
        let n = targets.len() / per;
        assert_eq!(targets.len(), n * per, "targets must be [batch, {per}]");
        assert_eq!(ids.len(), n * t_len, "ids must be [batch, maxlen]");
        assert_eq!(
            params.len(),
            self.param_count,
            "params must be the arch's layout"
        );
        grads.clear_embedding();
        let emb_len = self.vocab * self.embed_dim;
        if n == 0 {
            grads.data[emb_len..].fill(0.0);
            return BatchStats::default();
        }
        let threads = self.threads.min(n);
        let scale = 1.0 / n as f32;
        let (nodes, head) = (&self.nodes, self.head);
        let dense_len = self.param_count - emb_len;
        {
            let mut jobs: Vec<Job> = Vec::new();
            for (k, ws) in self.workspaces.iter_mut().take(threads).enumerate() {
                let (r0, r1) = chunk(n, threads, k);
                let ids = &ids[r0 * t_len..r1 * t_len];
                let targets = &targets[r0 * per..r1 * per];
                let job = move || {
                    ws.grads.clear();
                    ws.grads.resize(dense_len, 0.0);
                    let run = Run {
                        nodes,
                        params,
                        emb_len,
                        masks: Some((masks, r0)),
                    };
                    ws.train_chunk(&run, head, ids, targets, scale);
                };
                jobs.push(Box::new(job));
            }
            let start = std::time::Instant::now();
            run_jobs(jobs);
            self.layer_time += start.elapsed();
        }
        // Reduce in thread order: deterministic for a given thread count.
        let mut stats = BatchStats::default();
        let first = &self.nodes[1];
        let mut chunks = Vec::with_capacity(threads);
        for (k, ws) in self.workspaces.iter().take(threads).enumerate() {
            let out = &mut grads.data[emb_len..];
            if k == 0 {
                out.copy_from_slice(&ws.grads);
            } else {
                for (g, p) in out.iter_mut().zip(&ws.grads) {
                    *g += p;
                }
            }
            stats += ws.stats;
            let (r0, r1) = chunk(n, threads, k);
            let dx = ws.caches[1].input_grad(first, r1 - r0);
            chunks.push((&ids[r0 * t_len..r1 * t_len], dx));
        }
        grads.add_rows(&chunks, t_len, threads);
        stats
    }

    /// Loss and accuracy sums of a sigmoid or multi-label head over a labelled set (no
    /// dropout), and the logits: `y` holds one 0/1 target per logit, and the sums count every
    /// logit's term (a multi-label head's rows * K, as in training).
    pub fn evaluate(&mut self, params: &[f32], ids: &[u32], y: &[f32]) -> (BatchStats, Vec<f32>) {
        assert!(
            matches!(self.head, Head::Sigmoid | Head::Sigmoids(_)),
            "evaluate scores 0/1 targets"
        );
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

    /// For each sequence `b` of `input`, without dropout: the probability of class `classes[b]`
    /// (a sigmoid head: class 1 is the positive label, sigmoid(logit), class 0 the negative one,
    /// 1 - sigmoid(logit); a softmax head: class k's softmax output; a multi-label head: label
    /// k's sigmoid) written to `probs[b]`, and its gradient with respect to the embedding output
    /// `[maxlen, D]` of that sequence, written to `grads` `[B, maxlen, D]`. The forward and backward are training's (the weight
    /// gradients are computed and dropped); rows are split over the threads as in training.
    pub fn probability_gradients(
        &mut self,
        params: &[f32],
        input: Input,
        classes: &[usize],
        probs: &mut [f32],
        grads: &mut [f32],
    ) {
        let (t_len, row) = (self.maxlen, self.maxlen * self.embed_dim);
        let n = classes.len();
        match input {
            Input::Ids(ids) => assert_eq!(ids.len(), n * t_len, "ids must be [n, maxlen]"),
            Input::Embedded(x) => assert_eq!(x.len(), n * row, "rows must be [n, maxlen, D]"),
        }
        assert_eq!(probs.len(), n, "probs must be [n]");
        assert_eq!(grads.len(), n * row, "grads must be [n, maxlen, D]");
        assert_eq!(
            params.len(),
            self.param_count,
            "params must be the arch's layout"
        );
        let k = self.classes().max(2);
        assert!(classes.iter().all(|&c| c < k), "classes must be < {k}");
        if n == 0 {
            return;
        }
        let threads = self.threads.min(n);
        let (nodes, emb_len, head) = (&self.nodes, self.vocab * self.embed_dim, self.head);
        {
            let (mut probs, mut grads) = (probs, grads);
            let mut jobs: Vec<Job> = Vec::new();
            for (k, ws) in self.workspaces.iter_mut().take(threads).enumerate() {
                let (r0, r1) = chunk(n, threads, k);
                let (p, p_rest) = std::mem::take(&mut probs).split_at_mut(r1 - r0);
                let (g, g_rest) = std::mem::take(&mut grads).split_at_mut((r1 - r0) * row);
                (probs, grads) = (p_rest, g_rest);
                let input = match input {
                    Input::Ids(ids) => Input::Ids(&ids[r0 * t_len..r1 * t_len]),
                    Input::Embedded(x) => Input::Embedded(&x[r0 * row..r1 * row]),
                };
                let classes = &classes[r0..r1];
                let job = move || {
                    let run = Run {
                        nodes,
                        params,
                        emb_len,
                        masks: None,
                    };
                    ws.probability_chunk(&run, head, input, classes, p, g);
                };
                jobs.push(Box::new(job));
            }
            run_jobs(jobs);
        }
    }

    /// Embedding width D.
    pub fn embed_dim(&self) -> usize {
        self.embed_dim
    }

    /// Logits for `[N, maxlen]` ids (no dropout), written to `out` `[N, K]`. All threads, in
    /// chunks. A first LSTM or GRU returning its last state reads its input projections from
    /// an `[V, G*H]` table (embeddings * kernel), as the tutorial engine did.
    pub fn predict_logits(&mut self, params: &[f32], ids: &[u32], out: &mut [f32]) {
        let (t_len, k_out) = (self.maxlen, self.classes());
        assert_eq!(out.len() % k_out, 0, "out must be [n, classes]");
        let n = out.len() / k_out;
        assert_eq!(ids.len(), n * t_len, "ids must be [n, maxlen]");
        assert_eq!(
            params.len(),
            self.param_count,
            "params must be the arch's layout"
        );
        if n == 0 {
            return;
        }
        let emb_len = self.vocab * self.embed_dim;
        let use_table = matches!(
            self.nodes[1].kind,
            Kind::Recurrent { seq: false, ref dirs, .. } if dirs.len() == 1
        );
        if use_table && !self.table_fresh {
            let Kind::Recurrent { cell, h, .. } = self.nodes[1].kind else {
                unreachable!()
            };
            let (v, d, gh) = (self.vocab, self.embed_dim, cell.gates() * h);
            // Without dropout, x_t W = (E W)[id]: one GEMM over the vocabulary replaces the
            // input projection of every step of every sequence.
            self.table.resize(v * gh, 0.0);
            let w = &params[emb_len..emb_len + d * gh];
            matmul(
                v,
                gh,
                d,
                &params[..emb_len],
                d,
                Op::N,
                w,
                gh,
                Op::N,
                &mut self.table,
                gh,
                false,
            );
            self.table_fresh = true;
        }
        let table = use_table.then_some(&self.table[..]);
        let threads = self.threads.min(n);
        let nodes = &self.nodes;
        {
            let mut rest = &mut out[..];
            let mut jobs: Vec<Job> = Vec::new();
            for (k, ws) in self.workspaces.iter_mut().take(threads).enumerate() {
                let (r0, r1) = chunk(n, threads, k);
                let (mine, tail) = rest.split_at_mut((r1 - r0) * k_out);
                rest = tail;
                let ids = &ids[r0 * t_len..r1 * t_len];
                let job = move || {
                    const EVAL_ROWS: usize = 128;
                    let run = Run {
                        nodes,
                        params,
                        emb_len,
                        masks: None,
                    };
                    for (ids, out) in ids
                        .chunks(EVAL_ROWS * t_len)
                        .zip(mine.chunks_mut(EVAL_ROWS * k_out))
                    {
                        out.copy_from_slice(ws.infer(&run, table, ids));
                    }
                };
                jobs.push(Box::new(job));
            }
            run_jobs(jobs);
        }
    }
}

/// The probability of class `c` from one row of logits `z` of a `head` (a sigmoid head's one
/// logit: class 1 is sigmoid(z), class 0 is 1 - sigmoid(z); a softmax head: the softmax of `z`;
/// a multi-label head: sigmoid(z_c), each label on its own), and its gradient with respect to
/// `z`, written to `dz`. In f64, so saturated logits give 0 and 1, not NaN.
pub fn class_probability(head: Head, z: &[f32], c: usize, dz: &mut [f32]) -> f64 {
    if let Head::Sigmoids(_) = head {
        let p = 1.0 / (1.0 + (-z[c] as f64).exp());
        dz.fill(0.0);
        dz[c] = (p * (1.0 - p)) as f32;
        return p;
    }
    if let [z] = z {
        let p1 = 1.0 / (1.0 + (-*z as f64).exp());
        let g = p1 * (1.0 - p1);
        let (p, sign) = if c == 1 { (p1, 1.0) } else { (1.0 - p1, -1.0) };
        dz[0] = (sign * g) as f32;
        return p;
    }
    let m = z.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let sum: f64 = z.iter().map(|&v| (v as f64 - m).exp()).sum();
    let pc = (z[c] as f64 - m).exp() / sum;
    // d p_c / d z_j = p_c (1[j = c] - p_j)
    for (j, (d, &v)) in dz.iter_mut().zip(z).enumerate() {
        let pj = (v as f64 - m).exp() / sum;
        *d = (pc * ((j == c) as u8 as f64 - pj)) as f32;
    }
    pc
}

/// The arch's output activation split for the kernels: (their activation, a tanh node after).
fn kernel_act(a: arch::Activation) -> (dense::Activation, Option<Act>) {
    match a {
        arch::Activation::Linear => (dense::Activation::Linear, None),
        arch::Activation::Relu => (dense::Activation::Relu, None),
        arch::Activation::Sigmoid => (dense::Activation::Sigmoid, None),
        arch::Activation::Softmax => (dense::Activation::Softmax, None),
        arch::Activation::Tanh => (dense::Activation::Linear, Some(Act::Tanh)),
    }
}

/// Parameters of one direction of a recurrent layer.
fn dir_len(cell: Cell, d: usize, h: usize) -> usize {
    let gh = cell.gates() * h;
    d * gh + h * gh + cell.bias_len(h)
}

/// One direction's (kernel `[D, GH]`, recurrent kernel `[H, GH]`, bias).
fn split_dir<T>(p: &[T], d: usize, h: usize, gh: usize) -> (&[T], &[T], &[T]) {
    let (w, rest) = p.split_at(d * gh);
    let (u, b) = rest.split_at(h * gh);
    (w, u, b)
}

/// Fills `out` with inverted-dropout mask values, one draw each.
fn draw(rng: &mut Pcg64, rate: f32, out: &mut [f32]) {
    let keep = 1.0 - rate;
    let scale = 1.0 / keep;
    // scale * 1 or scale * 0, without a branch: the draws are random, so a branch on them
    // mispredicted a quarter of the time and made the draw three times slower.
    for v in out {
        *v = scale * (rng.gen::<f32>() < keep) as u32 as f32;
    }
}

/// What a chunk runs with: the nodes, the flat parameters and, in training, the batch's masks
/// and the chunk's first row.
struct Run<'a> {
    nodes: &'a [Node],
    params: &'a [f32],
    /// Parameters of the embedding table (the workspace's gradient starts after it).
    emb_len: usize,
    masks: Option<(&'a NetMasks, usize)>,
}

impl Run<'_> {
    /// Layer `layer`'s masks for rows `[r0, r0 + b)`.
    fn layer_masks(&self, layer: usize) -> Option<(&LayerMasks, usize)> {
        let (m, r0) = self.masks?;
        m.layers.get(layer).map(|l| (l, r0))
    }
}

/// The sub-slice of a `[B, G, W]` mask for rows `[r0, r0 + b)`.
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

/// One direction of a recurrent layer: its weights and their packed copies.
#[derive(Clone, Copy)]
struct DirWeights<'a> {
    kernel: &'a [f32],
    recurrent: &'a [f32],
    bias: &'a [f32],
    packed: &'a PackedCell,
}

impl RecCache {
    /// Sized for `b` sequences of `t` steps; returns the time-major input `[T*B, D]` to fill.
    fn prepare(&mut self, t: usize, b: usize, d: usize, h: usize) -> &mut [f32] {
        match self {
            RecCache::Lstm(c) => {
                c.prepare(t, b, d, h);
                &mut c.x[..t * b * d]
            }
            RecCache::Gru(c) => {
                c.prepare(t, b, d, h);
                &mut c.x[..t * b * d]
            }
        }
    }

    fn forward(&mut self, w: DirWeights, xm: Option<Mask>, hm: Option<Mask>) {
        let (kernel_packed, recurrent_packed) = (&w.packed.kernel, &w.packed.recurrent);
        match self {
            RecCache::Lstm(c) => {
                let lw = LstmWeights {
                    kernel: w.kernel,
                    recurrent: w.recurrent,
                    bias: w.bias,
                    kernel_packed,
                    recurrent_packed,
                };
                c.forward(&lw, xm, hm)
            }
            RecCache::Gru(c) => {
                let gw = GruWeights {
                    bias: w.bias,
                    kernel_packed,
                    recurrent_packed,
                };
                c.forward(&gw, xm, hm)
            }
        }
    }

    /// Backward from `up`; weight gradients added to (kernel, recurrent kernel, bias).
    fn backward(
        &mut self,
        w: DirWeights,
        xm: Option<Mask>,
        hm: Option<Mask>,
        up: Upstream,
        (kernel, recurrent, bias): (&mut [f32], &mut [f32], &mut [f32]),
    ) {
        let (kernel_packed, recurrent_packed) = (&w.packed.kernel, &w.packed.recurrent);
        match self {
            RecCache::Lstm(c) => {
                let lw = LstmWeights {
                    kernel: w.kernel,
                    recurrent: w.recurrent,
                    bias: w.bias,
                    kernel_packed,
                    recurrent_packed,
                };
                let g = LstmGrads {
                    kernel,
                    recurrent,
                    bias,
                };
                c.backward_from(&lw, xm, hm, up, g)
            }
            RecCache::Gru(c) => {
                let gw = GruWeights {
                    bias: w.bias,
                    kernel_packed,
                    recurrent_packed,
                };
                let g = GruGrads {
                    kernel,
                    recurrent,
                    bias,
                };
                c.backward_from(&gw, xm, hm, up, g)
            }
        }
    }

    /// Every h_t, `[T, B, H]` time-major.
    fn sequence(&self) -> &[f32] {
        match self {
            RecCache::Lstm(c) => c.sequence(),
            RecCache::Gru(c) => c.sequence(),
        }
    }

    /// h_T, `[B, H]`.
    fn output(&self) -> &[f32] {
        match self {
            RecCache::Lstm(c) => c.output(),
            RecCache::Gru(c) => c.output(),
        }
    }

    /// The last backward's input gradient, `[T*B, D]` time-major.
    fn dx(&self) -> &[f32] {
        match self {
            RecCache::Lstm(c) => &c.dx[..c.t * c.b * c.d],
            RecCache::Gru(c) => &c.dx[..c.t * c.b * c.d],
        }
    }

    /// h_T of `ids` `[B, T]` from the projection table (no dropout).
    fn infer(
        &mut self,
        table: &[f32],
        bias: &[f32],
        ids: &[u32],
        t: usize,
        h: usize,
        packed: &PackedGates,
    ) -> &[f32] {
        match self {
            RecCache::Lstm(c) => c.infer(table, bias, ids, t, h, packed),
            RecCache::Gru(c) => c.infer(table, bias, ids, t, h, packed),
        }
    }
}

/// Direction `k`'s (input, state) masks for rows `[r0, r0 + b)`.
fn rec_masks<'a>(
    lm: Option<(&'a LayerMasks, usize)>,
    k: usize,
    d: usize,
    h: usize,
    b: usize,
) -> (Option<Mask<'a>>, Option<Mask<'a>>) {
    match lm {
        Some((LayerMasks::Recurrent(sets), r0)) => {
            let s = &sets[k];
            (
                mask_rows(&s.x, s.groups, d, r0, b),
                mask_rows(&s.h, s.groups, h, r0, b),
            )
        }
        _ => (None, None),
    }
}

/// A Dropout layer's mask for rows `[r0, r0 + b)` of `len` values each.
fn dropout_rows(lm: Option<(&LayerMasks, usize)>, len: usize, b: usize) -> Option<&[f32]> {
    match lm {
        Some((LayerMasks::Dropout(m), r0)) => Some(&m[r0 * len..(r0 + b) * len]),
        _ => None,
    }
}

impl Workspace {
    /// Forward through nodes `from..` for the chunk `ids` (`b` sequences); node 0 gathers the
    /// embeddings.
    fn forward(&mut self, run: &Run, ids: &[u32], b: usize, from: usize) {
        for i in from..run.nodes.len() {
            let node = &run.nodes[i];
            let (before, rest) = self.caches.split_at_mut(i);
            let cache = &mut rest[0];
            match (&node.kind, cache) {
                (Kind::Embedding(d), NodeCache::Embedding(y)) => {
                    let emb = &run.params[node.params.clone()];
                    let y = sized(y, b * node.out);
                    for (row, &tok) in y.chunks_exact_mut(*d).zip(ids) {
                        let tok = tok as usize;
                        row.copy_from_slice(&emb[tok * d..(tok + 1) * d]);
                    }
                }
                (_, cache) => {
                    let x = before[i - 1].output(&run.nodes[i - 1], b);
                    forward_node(node, cache, run, x, b);
                }
            }
        }
    }

    /// Forward and backward of one chunk; `scale` = 1 / (whole batch size) for the mean loss.
    fn train_chunk(&mut self, run: &Run, head: Head, ids: &[u32], targets: &[f32], scale: f32) {
        let b = targets.len() / head.targets();
        self.forward(run, ids, b, 0);
        let last = run.nodes.len() - 1;
        let logits = self.caches[last].output(&run.nodes[last], b);
        let mut stats = BatchStats {
            count: b,
            ..Default::default()
        };
        let k_out = match head {
            Head::Sigmoid => {
                let dl = sized(&mut self.dlogits, b);
                for ((d, &z), &label) in dl.iter_mut().zip(logits).zip(targets) {
                    stats.loss_sum += bce_from_logit(z as f64, label as f64);
                    stats.correct += ((z > 0.0) == (label > 0.5)) as usize;
                    // d(mean loss)/dz = (sigmoid(z) - y) / B, as the tutorial engine computed it.
                    *d = ((1.0 / (1.0 + (-z as f64).exp())) as f32 - label) * scale;
                }
                1
            }
            Head::Softmax(k) => {
                let onehot = sized(&mut self.onehot, b * k);
                onehot.fill(0.0);
                for (row, &c) in onehot.chunks_exact_mut(k).zip(targets) {
                    row[c as usize] = 1.0;
                }
                let dl = sized(&mut self.dlogits, b * k);
                stats.loss_sum += softmax_cross_entropy(logits, onehot, k, scale, dl);
                for (z, &c) in logits.chunks_exact(k).zip(targets) {
                    let best = (1..k).fold(0, |m, j| if z[j] > z[m] { j } else { m });
                    stats.correct += (best == c as usize) as usize;
                }
                k
            }
            Head::Sigmoids(k) => {
                let dl = sized(&mut self.dlogits, b * k);
                // Keras's binary_crossentropy and binary_accuracy: means over the K labels, so
                // the sums count every label's term and `count` is rows * K.
                stats.loss_sum += sigmoid_cross_entropy(logits, targets, k, scale, dl) * k as f64;
                stats.correct = logits
                    .iter()
                    .zip(targets)
                    .filter(|(&z, &t)| (z > 0.0) == (t > 0.5))
                    .count();
                stats.count = b * k;
                k
            }
        };
        self.stats = stats;
        self.backward(run, b, k_out);
    }

    /// Backward from `dlogits` `[b, k_out]` through nodes `last..=1`: each node's input
    /// gradient, the weight gradients added to `grads`.
    fn backward(&mut self, run: &Run, b: usize, k_out: usize) {
        for i in (1..run.nodes.len()).rev() {
            let (before, rest) = self.caches.split_at_mut(i);
            let (me, after) = rest.split_first_mut().expect("node i exists");
            let dy = match after.first() {
                Some(c) => c.input_grad(&run.nodes[i + 1], b),
                None => &self.dlogits[..b * k_out],
            };
            let x = before[i - 1].output(&run.nodes[i - 1], b);
            backward_node(&run.nodes[i], me, run, x, dy, b, &mut self.grads);
        }
    }

    /// [`Network::probability_gradients`] on one chunk: `probs` `[b]`, `dx` `[b, T*D]`.
    fn probability_chunk(
        &mut self,
        run: &Run,
        head: Head,
        input: Input,
        classes: &[usize],
        probs: &mut [f32],
        dx: &mut [f32],
    ) {
        let b = classes.len();
        match input {
            Input::Ids(ids) => self.forward(run, ids, b, 0),
            Input::Embedded(x) => {
                let NodeCache::Embedding(y) = &mut self.caches[0] else {
                    unreachable!("node 0 is the Embedding")
                };
                sized(y, x.len()).copy_from_slice(x);
                self.forward(run, &[], b, 1);
            }
        }
        let last = run.nodes.len() - 1;
        let logits = self.caches[last].output(&run.nodes[last], b);
        let k_out = logits.len() / b;
        let dl = sized(&mut self.dlogits, b * k_out);
        for (((z, dz), &c), p) in logits
            .chunks_exact(k_out)
            .zip(dl.chunks_exact_mut(k_out))
            .zip(classes)
            .zip(probs.iter_mut())
        {
            *p = class_probability(head, z, c, dz) as f32;
        }
        self.grads.clear();
        self.grads.resize(run.params.len() - run.emb_len, 0.0);
        self.backward(run, b, k_out);
        dx.copy_from_slice(self.caches[1].input_grad(&run.nodes[1], b));
    }

    /// Logits `[b, K]` of the chunk `ids` without dropout; `table`: node 1's projection table.
    fn infer(&mut self, run: &Run, table: Option<&[f32]>, ids: &[u32]) -> &[f32] {
        let Kind::Embedding(d) = run.nodes[0].kind else {
            unreachable!("node 0 is the Embedding")
        };
        let t_len = run.nodes[0].out / d;
        let b = ids.len() / t_len;
        let mut from = 0;
        if let Some(table) = table {
            let node = &run.nodes[1];
            let (
                Kind::Recurrent {
                    cell, d, h, dirs, ..
                },
                NodeCache::Recurrent { dirs: rc, y, .. },
            ) = (&node.kind, &mut self.caches[1])
            else {
                unreachable!("the table is built for a first recurrent layer")
            };
            let p = &run.params[node.params.clone()];
            let (_, _, bias) = split_dir(p, *d, *h, cell.gates() * h);
            let hs = rc[0].infer(table, bias, ids, t_len, *h, &dirs[0].recurrent);
            sized(y, b * h).copy_from_slice(hs);
            from = 2;
        }
        self.forward(run, ids, b, from);
        let last = run.nodes.len() - 1;
        self.caches[last].output(&run.nodes[last], b)
    }
}

/// Node `node`'s forward on `x` `[b, node.inp]` (batch-major).
fn forward_node(node: &Node, cache: &mut NodeCache, run: &Run, x: &[f32], b: usize) {
    let p = &run.params[node.params.clone()];
    let lm = run.layer_masks(node.layer);
    match (&node.kind, cache) {
        (
            Kind::Recurrent {
                cell,
                t,
                d,
                h,
                seq,
                dirs,
            },
            NodeCache::Recurrent { dirs: rcs, y, .. },
        ) => {
            let (t, d, h) = (*t, *d, *h);
            let (gh, dl, width) = (cell.gates() * h, dir_len(*cell, d, h), dirs.len() * h);
            let y = sized(y, b * node.out);
            for (k, (packed, rc)) in dirs.iter().zip(rcs).enumerate() {
                let (kernel, recurrent, bias) = split_dir(&p[k * dl..(k + 1) * dl], d, h, gh);
                let w = DirWeights {
                    kernel,
                    recurrent,
                    bias,
                    packed,
                };
                // The backward layer reads the steps in reverse.
                let step = |tt: usize| if k == 1 { t - 1 - tt } else { tt };
                let cx = rc.prepare(t, b, d, h);
                for tt in 0..t {
                    for bi in 0..b {
                        let src = (bi * t + step(tt)) * d;
                        cx[(tt * b + bi) * d..(tt * b + bi + 1) * d]
                            .copy_from_slice(&x[src..src + d]);
                    }
                }
                let (xm, hm) = rec_masks(lm, k, d, h, b);
                rc.forward(w, xm, hm);
                if *seq {
                    // Keras flips the backward layer's sequence back into input order.
                    let s = rc.sequence();
                    for tt in 0..t {
                        for bi in 0..b {
                            let dst = (bi * t + step(tt)) * width + k * h;
                            y[dst..dst + h]
                                .copy_from_slice(&s[(tt * b + bi) * h..(tt * b + bi + 1) * h]);
                        }
                    }
                } else {
                    for (yr, o) in y.chunks_exact_mut(width).zip(rc.output().chunks_exact(h)) {
                        yr[k * h..(k + 1) * h].copy_from_slice(o);
                    }
                }
            }
        }
        (Kind::Dropout, NodeCache::Plain { y, .. }) => {
            let y = sized(y, b * node.out);
            match dropout_rows(lm, node.inp, b) {
                Some(m) => crate::dispatch!(for ((o, &v), &k) in y.iter_mut().zip(x).zip(m) {
                    *o = v * k;
                }),
                None => y.copy_from_slice(x),
            }
        }
        (Kind::Dense(dn), NodeCache::Kernel(c)) => dn.forward(&p[dn.inp * dn.units..], x, b, c),
        (Kind::Dense1(act), NodeCache::Plain { y, .. }) => {
            let (wd, bd) = (&p[..node.inp], p[node.inp]);
            let y = sized(y, b);
            for (o, row) in y.iter_mut().zip(x.chunks_exact(node.inp)) {
                *o = row.iter().zip(wd).map(|(a, b)| a * b).sum::<f32>() + bd;
            }
            act.forward(y, 1);
        }
        (Kind::Conv(cv), NodeCache::Kernel(c)) => cv.forward(&p[p.len() - cv.filters..], x, b, c),
        (Kind::MaxPool(mp), NodeCache::Kernel(c)) => mp.forward(x, b, c),
        (Kind::GlobalMax(gm), NodeCache::Kernel(c)) => gm.forward(x, b, c),
        (Kind::GlobalAvg(ga), NodeCache::Kernel(c)) => ga.forward(x, b, c),
        (Kind::Act(a, width), NodeCache::Plain { y, .. }) => {
            let y = sized(y, b * node.out);
            y.copy_from_slice(x);
            a.forward(y, *width);
        }
        _ => unreachable!("each node has its own kind of cache"),
    }
}

/// Node `node`'s backward from `dy` `[b, node.out]`, its forward input being `x`; weight
/// gradients are added to `grads` (the parameters after the embedding).
#[allow(clippy::too_many_arguments)]
fn backward_node(
    node: &Node,
    cache: &mut NodeCache,
    run: &Run,
    x: &[f32],
    dy: &[f32],
    b: usize,
    grads: &mut [f32],
) {
    let p = &run.params[node.params.clone()];
    let g = &mut grads[node.params.start - run.emb_len..node.params.end - run.emb_len];
    let lm = run.layer_masks(node.layer);
    match (&node.kind, cache) {
        (
            Kind::Recurrent {
                cell,
                t,
                d,
                h,
                seq,
                dirs,
            },
            NodeCache::Recurrent {
                dirs: rcs, dx, up, ..
            },
        ) => {
            let (t, d, h) = (*t, *d, *h);
            let (gh, dl, width) = (cell.gates() * h, dir_len(*cell, d, h), dirs.len() * h);
            let dx = sized(dx, b * node.inp);
            for (k, ((packed, rc), gk)) in
                dirs.iter().zip(rcs).zip(g.chunks_exact_mut(dl)).enumerate()
            {
                let (kernel, recurrent, bias) = split_dir(&p[k * dl..(k + 1) * dl], d, h, gh);
                let w = DirWeights {
                    kernel,
                    recurrent,
                    bias,
                    packed,
                };
                let (gw, rest) = gk.split_at_mut(d * gh);
                let (gu, gb) = rest.split_at_mut(h * gh);
                let step = |tt: usize| if k == 1 { t - 1 - tt } else { tt };
                let upstream = if *seq {
                    let u = sized(up, t * b * h);
                    for tt in 0..t {
                        for bi in 0..b {
                            let src = (bi * t + step(tt)) * width + k * h;
                            u[(tt * b + bi) * h..(tt * b + bi + 1) * h]
                                .copy_from_slice(&dy[src..src + h]);
                        }
                    }
                    Upstream::Steps(u)
                } else {
                    let u = sized(up, b * h);
                    for (ur, dr) in u.chunks_exact_mut(h).zip(dy.chunks_exact(width)) {
                        ur.copy_from_slice(&dr[k * h..(k + 1) * h]);
                    }
                    Upstream::Last(u)
                };
                let (xm, hm) = rec_masks(lm, k, d, h, b);
                rc.backward(w, xm, hm, upstream, (gw, gu, gb));
                let cdx = rc.dx();
                for tt in 0..t {
                    for bi in 0..b {
                        let dst = &mut dx[(bi * t + step(tt)) * d..(bi * t + step(tt) + 1) * d];
                        let src = &cdx[(tt * b + bi) * d..(tt * b + bi + 1) * d];
                        if k == 0 {
                            dst.copy_from_slice(src);
                        } else {
                            dst.iter_mut().zip(src).for_each(|(a, v)| *a += v);
                        }
                    }
                }
            }
        }
        (Kind::Dropout, NodeCache::Plain { dx, .. }) => {
            let dx = sized(dx, b * node.inp);
            match dropout_rows(lm, node.inp, b) {
                Some(m) => crate::dispatch!(for ((o, &v), &k) in dx.iter_mut().zip(dy).zip(m) {
                    *o = v * k;
                }),
                None => dx.copy_from_slice(dy),
            }
        }
        (Kind::Dense(dn), NodeCache::Kernel(c)) => {
            let (kernel, bias) = g.split_at_mut(dn.inp * dn.units);
            dn.backward(x, dy, c, Grads { kernel, bias });
        }
        (Kind::Dense1(act), NodeCache::Plain { y, dx, dz }) => {
            let inp = node.inp;
            let dz = sized(dz, b);
            act.backward(&y[..b], dy, dz, 1);
            let (gk, gb) = g.split_at_mut(inp);
            let wd = &p[..inp];
            let dx = sized(dx, b * inp);
            // Row by row, as the tutorial engine's output layer.
            for ((&gz, row), dxr) in dz
                .iter()
                .zip(x.chunks_exact(inp))
                .zip(dx.chunks_exact_mut(inp))
            {
                for (gv, hv) in gk.iter_mut().zip(row) {
                    *gv += hv * gz;
                }
                gb[0] += gz;
                for (dv, wv) in dxr.iter_mut().zip(wd) {
                    *dv = wv * gz;
                }
            }
        }
        (Kind::Conv(cv), NodeCache::Kernel(c)) => {
            let (kernel, bias) = g.split_at_mut(p.len() - cv.filters);
            cv.backward(x, dy, c, Grads { kernel, bias });
        }
        (Kind::MaxPool(mp), NodeCache::Kernel(c)) => mp.backward(dy, c),
        (Kind::GlobalMax(gm), NodeCache::Kernel(c)) => gm.backward(x, dy, c),
        (Kind::GlobalAvg(ga), NodeCache::Kernel(c)) => ga.backward(dy, c),
        (Kind::Act(a, width), NodeCache::Plain { y, dx, .. }) => {
            let dx = sized(dx, b * node.inp);
            a.backward(&y[..b * node.out], dy, dx, *width);
        }
        _ => unreachable!("each node has its own kind of cache"),
    }
}
