//! Answering with a trained model: a [`Classifier`] holds a model file's weights, vocabulary
//! and preprocessing with a ready inference engine, and turns raw text into probabilities;
//! [`metrics`] scores its answers on labelled data. `predict`, `evaluate` and `bench` are thin
//! shells over this module.

use crate::data::Vocabulary;
use crate::model_file::ModelFile;
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
    /// order: `[1 - p, p]` for a sigmoid output, the softmax otherwise.
    pub fn label_probabilities(&mut self, ids: &[u32]) -> Vec<Vec<f32>> {
        let k = self.net.classes();
        self.logits(ids)
            .chunks(k.max(1))
            .map(|z| match z {
                [z] => {
                    let p = sigmoid(*z);
                    vec![1.0 - p, p]
                }
                z => softmax(z),
            })
            .collect()
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
}
