//! Training: Keras's `model.fit` for this network — shuffle every epoch, batches, dropout
//! masks, Adam, validation after each epoch, history.

pub mod checkpoint;
pub mod history;
pub mod progress;

use crate::data::Preprocessing;
use crate::nn::adam::{Adam, AdamConfig, LazyRows};
use crate::nn::arch::Arch;
use crate::nn::{BatchStats, Gradients, NetMasks, Network};
use history::{EpochRecord, History};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_pcg::Pcg64;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// How dropout masks are shared between the LSTM's four gates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum MaskMode {
    /// A separate mask per gate (Keras's implementation 1; the default). Keras 2 always does
    /// this; Keras >= 3.8 does it whenever recurrent_dropout > 0 (`LSTMCell` switches to
    /// implementation 1 and draws 4 masks for the inputs and 4 for the state).
    PerGate,
    /// One mask shared by the four gates (Keras 3.0-3.7 with dropout, and Keras >= 3.8 when
    /// recurrent_dropout is 0; one GEMM per step instead of four).
    Shared,
}

/// How to fit, with Keras's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Passes over the training data (default 2).
    pub epochs: usize,
    /// Sequences per gradient step (default 32).
    pub batch_size: usize,
    /// Adam's settings (Keras defaults).
    pub adam: AdamConfig,
    /// The only source of randomness: initialisation, shuffling, dropout (default 1337).
    pub seed: u64,
    /// Worker threads; the batch is split across them (default: all cores).
    pub threads: usize,
    /// Dropout mask sharing (default per-gate).
    pub mask_mode: MaskMode,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 2,
            batch_size: 32,
            adam: AdamConfig::default(),
            seed: 1337,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            mask_mode: MaskMode::PerGate,
        }
    }
}

/// Independent random streams derived from the one seed.
pub fn rng_for(seed: u64, purpose: u64) -> Pcg64 {
    Pcg64::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ purpose)
}
/// Stream ids for [`rng_for`].
pub const RNG_INIT: u64 = 1;
pub const RNG_TRAIN: u64 = 2;

/// A labelled set of padded sequences: `x` is `[n, maxlen]`, `y` is `[n]` (1.0 = positive).
#[derive(Clone, Copy, Debug)]
pub struct Split<'a> {
    pub x: &'a [u32],
    pub y: &'a [f32],
}

/// Everything that changes during training: enough to resume exactly.
#[derive(Clone, Debug)]
pub struct TrainState {
    /// The weights, in the arch's [`Arch::layout`].
    pub params: Vec<f32>,
    pub adam: Adam,
    /// Shuffling and dropout draws.
    pub rng: Pcg64,
    pub history: History,
}

impl TrainState {
    /// Fresh weights (Keras's initialisers, [`Arch::init`]) from the seed.
    pub fn new(arch: &Arch, cfg: &TrainConfig) -> anyhow::Result<TrainState> {
        let params = arch.init(&mut rng_for(cfg.seed, RNG_INIT))?;
        let adam = Adam::new(cfg.adam.clone(), params.len());
        Ok(TrainState {
            params,
            adam,
            rng: rng_for(cfg.seed, RNG_TRAIN),
            history: History::default(),
        })
    }

    /// Epochs completed so far.
    pub fn epochs_done(&self) -> usize {
        self.history.epochs.len()
    }
}

/// Called as training goes, for progress display.
pub trait Observer {
    /// After each batch: 1-based step of `steps`, and the epoch's running means so far.
    fn on_batch(&mut self, _epoch: usize, _step: usize, _steps: usize, _loss: f64, _accuracy: f64) {
    }
    /// After each epoch, with its record.
    fn on_epoch_end(&mut self, _record: &EpochRecord, _epochs: usize) {}
}

/// An observer that shows nothing.
pub struct Silent;
impl Observer for Silent {}

/// The run was stopped by a request (the `stop` flag: Ctrl-C, SIGTERM, ...) between two batches;
/// the epoch in progress is lost and the caller keeps its last checkpoint.
#[derive(Debug)]
pub struct Interrupted;
impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "interrupted")
    }
}
impl std::error::Error for Interrupted {}

/// One epoch: shuffle, train on every batch, then validate. Appends to `state.history`.
/// Stops with an error naming the epoch and step if the loss becomes NaN or infinite; the
/// state is then left as it was after the last good step.
pub fn run_epoch(
    state: &mut TrainState,
    net: &mut Network,
    cfg: &TrainConfig,
    train: Split,
    val: Option<Split>,
    obs: &mut dyn Observer,
) -> anyhow::Result<EpochRecord> {
    static NEVER: AtomicBool = AtomicBool::new(false);
    run_epoch_until(state, net, cfg, train, val, obs, &NEVER)
}

/// [`run_epoch`] that also stops with [`Interrupted`] as soon as `stop` is set (checked before
/// each batch with one relaxed atomic load, so the hot loop gains no syscall). After an
/// interruption `state` is mid-epoch: discard it and resume from the last checkpoint.
pub fn run_epoch_until(
    state: &mut TrainState,
    net: &mut Network,
    cfg: &TrainConfig,
    train: Split,
    val: Option<Split>,
    obs: &mut dyn Observer,
    stop: &AtomicBool,
) -> anyhow::Result<EpochRecord> {
    run_epoch_with(state, net, cfg, train, val, obs, stop, None)
}

/// [`run_epoch_until`]; with `embedding` (the arch's Embedding `(input_dim, output_dim)`),
/// Adam updates the table's rows lazily ([`LazyRows`]): the same bits, without stepping
/// every row at every step. The table is brought up to date before validation and before
/// returning, so `state` is always whole between epochs (checkpoints, saving).
#[allow(clippy::too_many_arguments)]
pub fn run_epoch_with(
    state: &mut TrainState,
    net: &mut Network,
    cfg: &TrainConfig,
    train: Split,
    val: Option<Split>,
    obs: &mut dyn Observer,
    stop: &AtomicBool,
    embedding: Option<(usize, usize)>,
) -> anyhow::Result<EpochRecord> {
    let start = Instant::now();
    let (t_len, per) = (net.maxlen(), net.head().targets());
    let n = train.x.len() / t_len;
    anyhow::ensure!(n > 0, "no training sequences");
    let epoch = state.epochs_done() + 1;
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut state.rng);
    let steps = n.div_ceil(cfg.batch_size);
    let mut grads = Gradients::zeros(net);
    let mut masks = NetMasks::default();
    let (mut xbuf, mut ybuf) = (
        Vec::with_capacity(cfg.batch_size * t_len),
        Vec::with_capacity(cfg.batch_size * per),
    );
    let mut total = BatchStats::default();
    let mut lazy = embedding.map(|(rows, width)| LazyRows::new(&state.adam, rows, width));
    net.refresh(&state.params);
    let trained = (|| {
        for (step, idx) in order.chunks(cfg.batch_size).enumerate() {
            if stop.load(Ordering::Relaxed) {
                return Err(Interrupted.into());
            }
            xbuf.clear();
            ybuf.clear();
            for &i in idx {
                xbuf.extend_from_slice(&train.x[i * t_len..(i + 1) * t_len]);
                ybuf.extend_from_slice(&train.y[i * per..(i + 1) * per]);
            }
            if let Some(lazy) = &mut lazy {
                lazy.catch_up(&mut state.adam, &mut state.params, &xbuf, cfg.threads);
            }
            let per_gate = cfg.mask_mode == MaskMode::PerGate;
            net.draw_masks(&mut state.rng, idx.len(), per_gate, &mut masks);
            let stats = net.train_batch(&state.params, &xbuf, &ybuf, &masks, &mut grads);
            anyhow::ensure!(
                stats.loss_sum.is_finite() && grads.is_finite(),
                "the loss became {} at epoch {epoch}, step {}/{steps}; try a lower --learning-rate",
                stats.loss_sum / stats.count as f64,
                step + 1
            );
            let (adam, params, g) = (&mut state.adam, &mut state.params, grads.data());
            match &mut lazy {
                Some(lazy) => lazy.update(adam, params, g, grads.embedding_rows(), cfg.threads),
                None => adam.update(params, g, cfg.threads),
            }
            net.refresh(&state.params);
            total += stats;
            obs.on_batch(
                epoch,
                step + 1,
                steps,
                total.loss_sum / total.count as f64,
                total.correct as f64 / total.count as f64,
            );
        }
        Ok(())
    })();
    // Whatever happened, nothing reads a stale row after this: validation, the caller's
    // checkpoint and model file, or the state kept after an error.
    if let Some(lazy) = &mut lazy {
        lazy.flush(&mut state.adam, &mut state.params, cfg.threads);
    }
    trained?;
    let (val_loss, val_accuracy) = match val {
        Some(v) if !v.y.is_empty() => {
            let s = evaluate(net, &state.params, v.x, v.y);
            (
                Some(s.loss_sum / s.count as f64),
                Some(s.correct as f64 / s.count as f64),
            )
        }
        _ => (None, None),
    };
    let record = EpochRecord {
        epoch,
        loss: total.loss_sum / total.count as f64,
        accuracy: total.correct as f64 / total.count as f64,
        val_loss,
        val_accuracy,
        seconds: start.elapsed().as_secs_f64(),
    };
    state.history.epochs.push(record.clone());
    obs.on_epoch_end(&record, cfg.epochs);
    Ok(record)
}

/// Loss and accuracy sums over a labelled set, without dropout: `y` holds 0/1 for a sigmoid
/// head, class indices for a softmax head (categorical cross-entropy, computed in f64), K 0/1
/// per row for a multi-label head (binary cross-entropy and accuracy per label, so the sums
/// count rows * K terms, as training's do).
pub fn evaluate(net: &mut Network, params: &[f32], x: &[u32], y: &[f32]) -> BatchStats {
    let k = net.classes();
    if k == 1 || matches!(net.head(), crate::nn::arch::Head::Sigmoids(_)) {
        return net.evaluate(params, x, y).0;
    }
    let mut logits = vec![0.0; y.len() * k];
    net.predict_logits(params, x, &mut logits);
    let mut stats = BatchStats {
        count: y.len(),
        ..Default::default()
    };
    for (z, &c) in logits.chunks_exact(k).zip(y) {
        let best = (1..k).fold(0, |m, j| if z[j] > z[m] { j } else { m });
        let max = z[best] as f64;
        let sum: f64 = z.iter().map(|&v| (v as f64 - max).exp()).sum();
        stats.loss_sum += max + sum.ln() - z[c as usize] as f64;
        stats.correct += (best == c as usize) as usize;
    }
    stats
}

/// The user's own labelled data (`train --data FILE`): the format and how to read it, the test
/// and validation files. The training file itself is the run's data path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OwnData {
    pub format: crate::data::Format,
    pub text_column: String,
    pub label_column: String,
    pub max_labels: usize,
    /// The test file; without it `holdout` of each label is held out of the training file.
    pub test: Option<std::path::PathBuf>,
    /// The per-epoch validation file (early stopping watches it), if any.
    pub validation: Option<std::path::PathBuf>,
    pub holdout: f64,
    /// The positive one of two labels [default: the second in sorted order].
    pub positive_label: Option<String>,
    /// The model is the user's (--arch-file): its output layer must fit the labels, where a
    /// preset's is made to fit them.
    pub fixed_head: bool,
    /// `--multi-label`: one sigmoid output per label (checkpoints before it: off).
    #[serde(default)]
    pub multi_label: bool,
    /// `--multi-label SEP`: label values are split on SEP.
    #[serde(default)]
    pub label_separator: Option<String>,
}

impl OwnData {
    /// How to read the files.
    pub fn read_options(&self) -> crate::data::ReadOptions {
        crate::data::ReadOptions {
            format: Some(self.format),
            text_column: self.text_column.clone(),
            label_column: self.label_column.clone(),
            max_labels: self.max_labels,
            multi_label: self.multi_label,
            label_separator: self.label_separator.clone(),
            ..Default::default()
        }
    }
}

/// Keras's `EarlyStopping(monitor="val_loss", mode="min")` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// Epochs without improvement after which training stops.
    pub patience: usize,
    /// A val_loss counts as an improvement only when it is below the best by more than this.
    pub min_delta: f64,
    /// Put the best epoch's weights back at the end (Keras `restore_best_weights`).
    pub restore_best: bool,
}

/// Everything a run needs besides its data, checked: the same values give the same sequences,
/// the same initial weights and the same training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainPlan {
    /// The model: its layers and the sequence length it reads.
    pub arch: Arch,
    /// The text-to-ids settings.
    #[serde(rename = "preprocessing")]
    pub pre: Preprocessing,
    /// Epochs, batch size, Adam, seed, threads, mask mode.
    pub train: TrainConfig,
    /// Validation fraction of the training data (0.2 by default with early stopping); None
    /// validates on the test set, as the tutorial does.
    pub validation_split: Option<f64>,
    /// `--limit`: only the first N train and N test reviews.
    pub limit: Option<usize>,
    /// Early stopping on val_loss, when asked for.
    pub early_stopping: Option<EarlyStopping>,
    /// The user's own labelled data; `None`: the aclImdb reviews.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own: Option<OwnData>,
}

/// The running state of early stopping, following Keras 3's `EarlyStopping.on_epoch_end`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopper {
    /// The settings.
    pub cfg: EarlyStopping,
    /// The val_loss of the last improvement (None before the first epoch).
    pub best: Option<f64>,
    /// The 1-based epoch of the last improvement: the weights restored at the end.
    pub best_epoch: Option<usize>,
    /// Epochs since the last improvement.
    pub wait: usize,
    /// The epoch after which training stopped, once it has.
    pub stopped_epoch: Option<usize>,
    /// The best epoch's weights, kept when `restore_best` (saved in the checkpoint as a tensor).
    #[serde(skip)]
    pub best_params: Option<Vec<f32>>,
}

impl EarlyStopper {
    /// Nothing seen yet.
    pub fn new(cfg: EarlyStopping) -> EarlyStopper {
        EarlyStopper {
            cfg,
            best: None,
            best_epoch: None,
            wait: 0,
            stopped_epoch: None,
            best_params: None,
        }
    }

    /// Takes the epoch just finished (`params` are its weights); returns true when training
    /// must stop. Keras's rule: an improvement is `val_loss < best - min_delta`; after one,
    /// `wait` restarts; otherwise training stops once `wait` reaches `patience` (never after
    /// the first epoch).
    pub fn on_epoch_end(&mut self, record: &EpochRecord, params: &[f32]) -> anyhow::Result<bool> {
        let current = record.val_loss.ok_or_else(|| {
            anyhow::anyhow!(
                "early stopping watches val_loss, but epoch {} has none: give --validation-split",
                record.epoch
            )
        })?;
        if self.cfg.restore_best && self.best_params.is_none() {
            self.best_params = Some(params.to_vec());
            self.best_epoch = Some(record.epoch);
        }
        self.wait += 1;
        // NaN never improves (the comparison is false), as in Keras.
        let improved = current + self.cfg.min_delta < self.best.unwrap_or(f64::INFINITY);
        if improved {
            self.best = Some(current);
            self.best_epoch = Some(record.epoch);
            if self.cfg.restore_best {
                match &mut self.best_params {
                    Some(b) => b.copy_from_slice(params),
                    None => self.best_params = Some(params.to_vec()),
                }
            }
            self.wait = 0;
            return Ok(false);
        }
        if self.wait >= self.cfg.patience && record.epoch > 1 {
            self.stopped_epoch = Some(record.epoch);
        }
        Ok(self.stopped_epoch.is_some())
    }

    /// True once training has been stopped.
    pub fn stopped(&self) -> bool {
        self.stopped_epoch.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(epoch: usize, val_loss: f64) -> EpochRecord {
        EpochRecord {
            epoch,
            loss: 0.5,
            accuracy: 0.5,
            val_loss: Some(val_loss),
            val_accuracy: Some(0.5),
            seconds: 0.0,
        }
    }

    /// Feeds val losses until the stopper says stop; returns (epochs run, best epoch, best weights).
    fn drive(losses: &[f64], patience: usize, min_delta: f64) -> (usize, Option<usize>, f32) {
        let mut es = EarlyStopper::new(EarlyStopping {
            patience,
            min_delta,
            restore_best: true,
        });
        for (i, &l) in losses.iter().enumerate() {
            // The "weights" of epoch i+1 are just its number.
            if es.on_epoch_end(&rec(i + 1, l), &[(i + 1) as f32]).unwrap() {
                return (i + 1, es.best_epoch, es.best_params.unwrap()[0]);
            }
        }
        (losses.len(), es.best_epoch, es.best_params.unwrap()[0])
    }

    /// Keras's rule, by hand: stop after `patience` epochs without an improvement by more than
    /// min_delta; the best epoch is the last improvement, and its weights are kept.
    #[test]
    fn early_stopping_follows_keras() {
        // Best at 2, then two epochs without improvement.
        assert_eq!(drive(&[1.0, 0.5, 0.6, 0.7, 0.1], 2, 0.0), (4, Some(2), 2.0));
        // An equal value is no improvement.
        assert_eq!(drive(&[1.0, 0.5, 0.5, 0.5], 2, 0.0), (4, Some(2), 2.0));
        // A late improvement restarts the wait.
        assert_eq!(
            drive(&[1.0, 0.5, 0.6, 0.4, 0.45, 0.5], 2, 0.0),
            (6, Some(4), 4.0)
        );
        // With min_delta 0.1, 0.45 after 0.5 is not enough: best stays at epoch 2.
        assert_eq!(drive(&[1.0, 0.5, 0.45, 0.42], 2, 0.1), (4, Some(2), 2.0));
        // Patience 0 stops at the first epoch without improvement, never after the first epoch.
        assert_eq!(drive(&[1.0, 1.5, 0.1], 0, 0.0), (2, Some(1), 1.0));
        assert_eq!(drive(&[f64::NAN, 1.0, 2.0], 0, 0.0), (3, Some(2), 2.0));
        // Never stopping: runs all epochs.
        assert_eq!(drive(&[3.0, 2.0, 1.0], 2, 0.0), (3, Some(3), 3.0));
    }

    /// A set stop flag ends the epoch before its first batch with `Interrupted`.
    #[test]
    fn stop_flag_interrupts() {
        let model = crate::nn::ModelConfig {
            num_words: 10,
            embed_dim: 2,
            units: 2,
            maxlen: 3,
            dropout: 0.0,
            recurrent_dropout: 0.0,
        };
        let cfg = TrainConfig {
            threads: 1,
            ..TrainConfig::default()
        };
        let mut state = TrainState::new(&model.arch(), &cfg).unwrap();
        let before = state.params.clone();
        let mut net = Network::new(&model.arch(), 1).unwrap();
        let stop = AtomicBool::new(true);
        let x = [1u32, 2, 3, 4, 5, 6];
        let y = [1.0f32, 0.0];
        let err = run_epoch_until(
            &mut state,
            &mut net,
            &cfg,
            Split { x: &x, y: &y },
            None,
            &mut Silent,
            &stop,
        )
        .unwrap_err();
        assert!(err.is::<Interrupted>());
        assert_eq!(state.params, before);
        assert_eq!(state.epochs_done(), 0);
    }
}
