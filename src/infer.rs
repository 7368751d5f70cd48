//! Answering with a trained model: a [`Classifier`] holds a model file's weights, vocabulary
//! and preprocessing with a ready inference engine, and turns raw text into probabilities;
//! [`metrics`] scores its answers on labelled data. `predict`, `evaluate` and `bench` are thin
//! shells over this module.

use crate::data::Vocabulary;
use crate::model_file::ModelFile;
use crate::nn::arch::Head;
use crate::nn::Network;
use anyhow::{Context, Result};
use std::path::Path;

/// A trained model ready to answer.
pub struct Classifier {
    /// The model file it came from (layers, labels, preprocessing, training facts).
    pub file: ModelFile,
    /// The weights, in the layers' flat layout ([`crate::nn::arch::Arch::layout`]).
    pub params: Vec<f32>,
    vocab: Vocabulary,
    net: Network,
}

impl Classifier {
    /// Loads a model file (the reader checks every setting) and packs its weights for `threads`
    /// threads.
    pub fn load(path: &Path, threads: usize) -> Result<Classifier> {
        let file = crate::model_file::load(path)?;
        let params = file
            .arch
            .from_named(&file.tensors)
            .with_context(|| path.display().to_string())?;
        Classifier::new(file, params, threads).with_context(|| path.display().to_string())
    }

    /// A classifier from a model description and its weights (`file.tensors` is not read).
    pub fn new(file: ModelFile, params: Vec<f32>, threads: usize) -> Result<Classifier> {
        let mut net = Network::new(&file.arch, threads)?;
        net.refresh(&params);
        Ok(Classifier {
            vocab: Vocabulary::from_words(file.vocabulary.clone()),
            file,
            params,
            net,
        })
    }

    /// Each text as the model sees it: `[N, maxlen]` ids through the model's own preprocessing.
    pub fn encode(&self, texts: &[impl AsRef<str>]) -> Vec<u32> {
        let pre = &self.file.preprocessing;
        let mut ids = Vec::with_capacity(texts.len() * pre.maxlen);
        for t in texts {
            ids.extend(pre.encode_padded(&self.vocab, self.file.ngrams.as_ref(), t.as_ref()));
        }
        ids
    }

    /// Logits for `[N, maxlen]` ids, on all the engine's threads.
    pub fn logits(&mut self, ids: &[u32]) -> Vec<f32> {
        let rows = ids.len() / self.file.preprocessing.maxlen.max(1);
        let mut logits = vec![0.0; rows * self.net.classes()];
        self.net.predict_logits(&self.params, ids, &mut logits);
        logits
    }

    /// Probability of the positive class (`labels()[1]`) for each raw text, for a model with
    /// one sigmoid output.
    pub fn probabilities(&mut self, texts: &[impl AsRef<str>]) -> Vec<f32> {
        let ids = self.encode(texts);
        self.logits(&ids).into_iter().map(sigmoid).collect()
    }

    /// The class names, in output order.
    pub fn labels(&self) -> &[String] {
        &self.file.labels
    }

    /// Every label's probability for each row of `[N, maxlen]` ids, in [`Classifier::labels`]
    /// order: `[1 - p, p]` for a sigmoid output, the softmax of K outputs, or each label's own
    /// sigmoid for a multi-label model (they need not sum to 1).
    pub fn label_probabilities(&mut self, ids: &[u32]) -> Vec<Vec<f32>> {
        let (k, head) = (self.net.classes(), self.net.head());
        self.logits(ids)
            .chunks(k.max(1))
            .map(|z| match (head, z) {
                (Head::Sigmoids(_), z) => z.iter().map(|&v| sigmoid(v)).collect(),
                (_, [z]) => {
                    let p = sigmoid(*z);
                    vec![1.0 - p, p]
                }
                (_, z) => softmax(z),
            })
            .collect()
    }

    /// Whether a text may have several labels (one sigmoid output per label).
    pub fn multi_label(&self) -> bool {
        matches!(self.net.head(), Head::Sigmoids(_))
    }

    /// The vocabulary the model file carries.
    pub fn vocabulary(&self) -> &Vocabulary {
        &self.vocab
    }

    /// The engine and the weights it runs (for [`crate::explain`]).
    pub fn engine(&mut self) -> (&mut Network, &[f32]) {
        (&mut self.net, &self.params)
    }
}

/// How `predict` names class `class` of a model with these `labels`: the label itself, except
/// for the IMDB reviews' `neg`/`pos`, said in full as predict always has.
pub fn label_name(labels: &[String], class: usize) -> String {
    match (labels, class) {
        ([n, p], 0) if n == "neg" && p == "pos" => "negative".into(),
        ([n, p], 1) if n == "neg" && p == "pos" => "positive".into(),
        (l, c) => l.get(c).cloned().unwrap_or_else(|| format!("class {c}")),
    }
}

/// exp(z - max) / sum, in f64.
fn softmax(z: &[f32]) -> Vec<f32> {
    let max = z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let e: Vec<f64> = z.iter().map(|&v| (v as f64 - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|v| (v / sum) as f32).collect()
}

/// The logistic function, in f64 so that large logits saturate cleanly.
fn sigmoid(z: f32) -> f32 {
    (1.0 / (1.0 + (-z as f64).exp())) as f32
}

/// Binary classification metrics at threshold 0.5.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Metrics {
    pub loss: f64,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// [[true negatives, false positives], [false negatives, true positives]]
    pub confusion: [[usize; 2]; 2],
    pub count: usize,
}

/// Metrics from logits and 0/1 labels.
pub fn metrics(logits: &[f32], y: &[f32]) -> Metrics {
    let mut c = [[0usize; 2]; 2];
    let mut loss = 0.0;
    for (&z, &t) in logits.iter().zip(y) {
        let (truth, pred) = ((t > 0.5) as usize, (z > 0.0) as usize);
        c[truth][pred] += 1;
        loss += crate::nn::network::bce_from_logit(z as f64, t as f64);
    }
    let n = logits.len().max(1) as f64;
    let (tp, fp, fneg) = (c[1][1] as f64, c[0][1] as f64, c[1][0] as f64);
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + fneg);
    let f1 = ratio(2.0 * precision * recall, precision + recall);
    Metrics {
        loss: loss / n,
        accuracy: (c[0][0] + c[1][1]) as f64 / n,
        precision,
        recall,
        f1,
        confusion: c,
        count: logits.len(),
    }
}

/// Precision, recall and F1 of one label (or their average), with the number of true cases.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Scores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

/// The scores of one label.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LabelScores {
    pub label: String,
    #[serde(flatten)]
    pub scores: Scores,
}

/// Metrics of a classifier over any number of labels (the predicted label is the most probable).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ClassReport {
    pub count: usize,
    /// Mean cross-entropy, -ln p(true label).
    pub loss: f64,
    pub accuracy: f64,
    pub per_label: Vec<LabelScores>,
    pub macro_avg: Scores,
    pub weighted_avg: Scores,
    /// `confusion[true][predicted]`, in label order.
    pub confusion: Vec<Vec<usize>>,
    /// For two labels: ROC AUC and PR AUC (average precision) of the second label's probability.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roc_auc: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pr_auc: Option<f64>,
}

/// The report for `probs` (one row of label probabilities per case, as
/// [`Classifier::label_probabilities`] gives them) against the true label ids `truth`.
pub fn class_report(probs: &[Vec<f32>], truth: &[u32], labels: &[String]) -> ClassReport {
    let k = labels.len();
    let mut confusion = vec![vec![0usize; k]; k];
    let mut loss = 0.0;
    for (p, &t) in probs.iter().zip(truth) {
        let best = (1..k).fold(0, |m, j| if p[j] > p[m] { j } else { m });
        confusion[t as usize][best] += 1;
        loss -= (p[t as usize] as f64).max(1e-12).ln();
    }
    let n = truth.len();
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let per_label: Vec<LabelScores> = (0..k)
        .map(|c| {
            let tp = confusion[c][c] as f64;
            let predicted: usize = confusion.iter().map(|row| row[c]).sum();
            let support: usize = confusion[c].iter().sum();
            let precision = ratio(tp, predicted as f64);
            let recall = ratio(tp, support as f64);
            LabelScores {
                label: labels[c].clone(),
                scores: Scores {
                    precision,
                    recall,
                    f1: ratio(2.0 * precision * recall, precision + recall),
                    support,
                },
            }
        })
        .collect();
    let average = |weight: &dyn Fn(&Scores) -> f64| {
        let total: f64 = per_label.iter().map(|l| weight(&l.scores)).sum();
        let mean = |f: fn(&Scores) -> f64| {
            let s: f64 = per_label
                .iter()
                .map(|l| f(&l.scores) * weight(&l.scores))
                .sum();
            ratio(s, total)
        };
        Scores {
            precision: mean(|s| s.precision),
            recall: mean(|s| s.recall),
            f1: mean(|s| s.f1),
            support: n,
        }
    };
    let (roc_auc, pr_auc) = match k {
        2 => {
            let scored: Vec<(f32, bool)> = probs
                .iter()
                .zip(truth)
                .map(|(p, &t)| (p[1], t == 1))
                .collect();
            (Some(roc_auc(&scored)), Some(average_precision(&scored)))
        }
        _ => (None, None),
    };
    ClassReport {
        count: n,
        loss: ratio(loss, n as f64),
        accuracy: ratio(
            (0..k).map(|c| confusion[c][c]).sum::<usize>() as f64,
            n as f64,
        ),
        macro_avg: average(&|_| 1.0),
        weighted_avg: average(&|s| s.support as f64),
        per_label,
        confusion,
        roc_auc,
        pr_auc,
    }
}

/// Metrics of a multi-label classifier: each label is decided on its own (probability >=
/// `threshold`), so a text may get none, one or several.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MultiLabelReport {
    pub count: usize,
    pub threshold: f64,
    /// Mean binary cross-entropy over every (text, label) pair, Keras's loss for this head.
    pub loss: f64,
    /// The share of (text, label) decisions that are right (Keras's binary accuracy).
    pub accuracy: f64,
    /// The share of texts whose whole set of labels is right (exact match).
    pub subset_accuracy: f64,
    /// The share of (text, label) decisions that are wrong: 1 - accuracy.
    pub hamming_loss: f64,
    pub per_label: Vec<LabelScores>,
    /// Counted over every (text, label) decision.
    pub micro_avg: Scores,
    pub macro_avg: Scores,
    pub weighted_avg: Scores,
    /// Each text's precision, recall and F1 of its label set, averaged over the texts.
    pub samples_avg: Scores,
    /// Per label: `[[true negatives, false positives], [false negatives, true positives]]`.
    pub confusion: Vec<[[usize; 2]; 2]>,
    /// Per label: ROC AUC and PR AUC (average precision) of its probability.
    pub roc_auc: Vec<f64>,
    pub pr_auc: Vec<f64>,
}

/// The report for `probs` (each text's probability of every label) against each text's true
/// label ids `truth`, deciding at `threshold`.
pub fn multi_label_report(
    probs: &[Vec<f32>],
    truth: &[Vec<u32>],
    labels: &[String],
    threshold: f64,
) -> MultiLabelReport {
    let k = labels.len();
    let n = truth.len();
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let f1 = |p: f64, r: f64| ratio(2.0 * p * r, p + r);
    let mut confusion = vec![[[0usize; 2]; 2]; k];
    let (mut loss, mut exact) = (0.0, 0usize);
    let mut samples = [0.0f64; 3];
    for (p, t) in probs.iter().zip(truth) {
        let (mut hit, mut predicted, mut wrong) = (0usize, 0usize, false);
        for c in 0..k {
            let (truth, pred) = (t.contains(&(c as u32)), p[c] as f64 >= threshold);
            confusion[c][truth as usize][pred as usize] += 1;
            let q = (p[c] as f64).clamp(1e-7, 1.0 - 1e-7);
            loss -= if truth { q.ln() } else { (1.0 - q).ln() };
            hit += (truth && pred) as usize;
            predicted += pred as usize;
            wrong |= truth != pred;
        }
        exact += !wrong as usize;
        let (sp, sr) = (
            ratio(hit as f64, predicted as f64),
            ratio(hit as f64, t.len() as f64),
        );
        samples[0] += sp;
        samples[1] += sr;
        samples[2] += ratio(2.0 * hit as f64, (predicted + t.len()) as f64);
    }
    let scores = |c: &[[usize; 2]; 2]| {
        let (tp, fp, fneg) = (c[1][1] as f64, c[0][1] as f64, c[1][0] as f64);
        let (p, r) = (ratio(tp, tp + fp), ratio(tp, tp + fneg));
        Scores {
            precision: p,
            recall: r,
            f1: f1(p, r),
            support: c[1][0] + c[1][1],
        }
    };
    let per_label: Vec<LabelScores> = labels
        .iter()
        .zip(&confusion)
        .map(|(l, c)| LabelScores {
            label: l.clone(),
            scores: scores(c),
        })
        .collect();
    let support: usize = per_label.iter().map(|l| l.scores.support).sum();
    let mut all = [[0usize; 2]; 2];
    for c in &confusion {
        for (a, b) in all.iter_mut().flatten().zip(c.iter().flatten()) {
            *a += b;
        }
    }
    let average = |weight: &dyn Fn(&Scores) -> f64| {
        let total: f64 = per_label.iter().map(|l| weight(&l.scores)).sum();
        let mean = |f: fn(&Scores) -> f64| {
            ratio(
                per_label
                    .iter()
                    .map(|l| f(&l.scores) * weight(&l.scores))
                    .sum(),
                total,
            )
        };
        Scores {
            precision: mean(|s| s.precision),
            recall: mean(|s| s.recall),
            f1: mean(|s| s.f1),
            support,
        }
    };
    let scored = |c: usize| -> Vec<(f32, bool)> {
        probs
            .iter()
            .zip(truth)
            .map(|(p, t)| (p[c], t.contains(&(c as u32))))
            .collect()
    };
    let decisions = (n * k) as f64;
    let right = (all[0][0] + all[1][1]) as f64;
    MultiLabelReport {
        count: n,
        threshold,
        loss: ratio(loss, decisions),
        accuracy: ratio(right, decisions),
        subset_accuracy: ratio(exact as f64, n as f64),
        hamming_loss: ratio(decisions - right, decisions),
        micro_avg: Scores {
            support,
            ..scores(&all)
        },
        macro_avg: average(&|_| 1.0),
        weighted_avg: average(&|s| s.support as f64),
        samples_avg: Scores {
            precision: ratio(samples[0], n as f64),
            recall: ratio(samples[1], n as f64),
            f1: ratio(samples[2], n as f64),
            support,
        },
        roc_auc: (0..k).map(|c| roc_auc(&scored(c))).collect(),
        pr_auc: (0..k).map(|c| average_precision(&scored(c))).collect(),
        per_label,
        confusion,
    }
}

/// Groups of cases with equal score, highest score first: (positives, negatives) in each.
fn tied_groups(scored: &[(f32, bool)]) -> Vec<(usize, usize)> {
    let mut sorted = scored.to_vec();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for (i, &(score, positive)) in sorted.iter().enumerate() {
        if i == 0 || score != sorted[i - 1].0 {
            groups.push((0, 0));
        }
        let g = groups.last_mut().expect("pushed above");
        if positive {
            g.0 += 1;
        } else {
            g.1 += 1;
        }
    }
    groups
}

/// The area under the ROC curve (ties count half, as the Mann-Whitney statistic counts them); 0
/// without positives or negatives.
pub fn roc_auc(scored: &[(f32, bool)]) -> f64 {
    let (mut area, mut negatives_above) = (0.0, 0.0);
    for (pos, neg) in tied_groups(scored) {
        area += pos as f64 * (negatives_above + neg as f64 / 2.0);
        negatives_above += neg as f64;
    }
    let pos: usize = scored.iter().filter(|s| s.1).count();
    let neg = scored.len() - pos;
    match pos * neg {
        0 => 0.0,
        pairs => 1.0 - area / pairs as f64,
    }
}

/// The area under the precision-recall curve as average precision (scikit-learn's): the sum of
/// precision times the gain in recall at each distinct threshold; 0 without positives.
pub fn average_precision(scored: &[(f32, bool)]) -> f64 {
    let total = scored.iter().filter(|s| s.1).count();
    if total == 0 {
        return 0.0;
    }
    let (mut tp, mut seen, mut ap) = (0usize, 0usize, 0.0);
    for (pos, neg) in tied_groups(scored) {
        tp += pos;
        seen += pos + neg;
        ap += pos as f64 / total as f64 * (tp as f64 / seen as f64);
    }
    ap
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_by_hand() {
        // truth: 1 1 1 0 0 ; predicted: 1 1 0 1 0
        let r = metrics(&[2.0, 1.0, -1.0, 0.5, -3.0], &[1.0, 1.0, 1.0, 0.0, 0.0]);
        assert_eq!(r.confusion, [[1, 1], [1, 2]]);
        assert!((r.accuracy - 0.6).abs() < 1e-12);
        assert!((r.precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((r.recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((r.f1 - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn metrics_without_positives_are_zero_not_nan() {
        let r = metrics(&[-1.0, -2.0], &[0.0, 0.0]);
        assert_eq!((r.precision, r.recall, r.f1), (0.0, 0.0, 0.0));
        assert_eq!(r.accuracy, 1.0);
    }

    /// Two labels: 5 of the 6 (positive, negative) pairs are in order, so ROC AUC is 5/6, and
    /// average precision as scikit-learn computes it; three labels: a report by hand.
    #[test]
    fn report_by_hand() {
        let labels: Vec<String> = ["a", "b"].map(String::from).to_vec();
        let p = |x: f32| vec![1.0 - x, x];
        let probs = [p(0.9), p(0.8), p(0.3), p(0.6), p(0.1)];
        let r = class_report(&probs, &[1, 1, 1, 0, 0], &labels);
        assert_eq!(r.confusion, [[1, 1], [1, 2]]);
        assert!((r.roc_auc.unwrap() - 5.0 / 6.0).abs() < 1e-12);
        // Thresholds 0.9, 0.8, 0.6, 0.3: precision 1, 1, 2/3, 3/4 at recall 1/3, 2/3, 2/3, 1.
        let ap = 1.0 / 3.0 + 1.0 / 3.0 + 0.75 / 3.0;
        assert!((r.pr_auc.unwrap() - ap).abs() < 1e-12);
        assert!((r.per_label[1].scores.precision - 2.0 / 3.0).abs() < 1e-12);
        let three: Vec<String> = ["x", "y", "z"].map(String::from).to_vec();
        let one = |c: usize| {
            let mut v = vec![0.1; 3];
            v[c] = 0.8;
            v
        };
        let r = class_report(&[one(0), one(0), one(1), one(2)], &[0, 1, 1, 2], &three);
        assert_eq!(r.confusion, [[1, 0, 0], [1, 1, 0], [0, 0, 1]]);
        assert_eq!(r.accuracy, 0.75);
        // x: p 1/2 r 1; y: p 1 r 1/2; z: p 1 r 1.
        assert!((r.macro_avg.precision - (0.5 + 1.0 + 1.0) / 3.0).abs() < 1e-12);
        assert!((r.weighted_avg.recall - (1.0 + 2.0 * 0.5 + 1.0) / 4.0).abs() < 1e-12);
        assert_eq!(r.roc_auc, None);
    }

    /// Three texts, labels a b c, threshold 0.5, by hand.
    #[test]
    fn multi_label_report_by_hand() {
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let probs = [
            vec![0.9, 0.6, 0.1], // predicted a b, true a b: exact
            vec![0.7, 0.2, 0.4], // predicted a, true a c
            vec![0.3, 0.8, 0.2], // predicted b, true c
        ];
        let truth = [vec![0, 1], vec![0, 2], vec![2]];
        let r = multi_label_report(&probs, &truth, &labels, 0.5);
        // a: tp 2; b: tp 1 fp 1; c: fn 2, tn 1.
        assert_eq!(r.confusion[0], [[1, 0], [0, 2]]);
        assert_eq!(r.confusion[1], [[1, 1], [0, 1]]);
        assert_eq!(r.confusion[2], [[1, 0], [2, 0]]);
        assert!((r.accuracy - 6.0 / 9.0).abs() < 1e-12);
        assert!((r.hamming_loss - 3.0 / 9.0).abs() < 1e-12);
        assert!((r.subset_accuracy - 1.0 / 3.0).abs() < 1e-12);
        // micro: tp 3, fp 1, fn 2.
        assert!((r.micro_avg.precision - 0.75).abs() < 1e-12);
        assert!((r.micro_avg.recall - 0.6).abs() < 1e-12);
        assert_eq!(r.micro_avg.support, 5);
        // macro precision: (1 + 1/2 + 0) / 3; weighted recall: (2*1 + 1*1 + 2*0) / 5.
        assert!((r.macro_avg.precision - 0.5).abs() < 1e-12);
        assert!((r.weighted_avg.recall - 0.6).abs() < 1e-12);
        // samples: precision (1 + 1 + 0) / 3, recall (1 + 1/2 + 0) / 3.
        assert!((r.samples_avg.precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((r.samples_avg.recall - 0.5).abs() < 1e-12);
        // Label a: both positives above the negative.
        assert_eq!(r.roc_auc[0], 1.0);
        let bce: f64 = [0.9f64, 0.6, 0.9, 0.7, 0.8, 0.4, 0.7, 0.2, 0.2]
            .iter()
            .map(|q| -q.ln())
            .sum::<f64>()
            / 9.0;
        assert!((r.loss - bce).abs() < 1e-6, "{} vs {bce}", r.loss);
    }
}
