//! `imdb-lstm evaluate`: the model file against the test reviews, encoded with the model's own
//! vocabulary and preprocessing.

use super::DataArgs;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct EvaluateArgs {
    /// The model file.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Use only the first N test reviews (in the dataset's shuffled order for the seed the model was trained with).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Print the metrics as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Worker threads [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
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
        loss += crate::nn::model::bce_from_logit(z as f64, t as f64);
    }
    let n = logits.len().max(1) as f64;
    let (tp, fp, fneg) = (c[1][1] as f64, c[0][1] as f64, c[1][0] as f64);
    let precision = if tp + fp > 0.0 { tp / (tp + fp) } else { 0.0 };
    let recall = if tp + fneg > 0.0 {
        tp / (tp + fneg)
    } else {
        0.0
    };
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
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

pub fn run(args: &EvaluateArgs) -> Result<()> {
    super::threads(args.threads)?;
    if args.limit == Some(0) {
        bail!("--limit 0: use at least 1 review (or leave --limit out to use them all)");
    }
    let (m, params, mut engine) = super::load_model(&args.model, args.threads)?;
    m.preprocessing
        .validate()
        .with_context(|| args.model.display().to_string())?;
    let source = crate::data::resolve_source(args.data.data.as_deref(), !args.json)?;
    let raw = crate::data::load_reviews(&source)?;
    // Same order as training saw (prepare's shuffle), so --limit picks the same reviews.
    let seed = m.training.as_ref().map(|t| t.seed).unwrap_or(0);
    let vocab = crate::data::Vocabulary::from_words(m.vocabulary.clone());
    let pre = &m.preprocessing;
    let (_, mut order) = crate::data::shuffled_orders(raw.train.len(), raw.test.len(), seed);
    if let Some(n) = args.limit {
        order.truncate(n);
    }
    let mut ids = Vec::with_capacity(order.len() * pre.maxlen);
    let mut y = Vec::with_capacity(order.len());
    for &i in &order {
        ids.extend(pre.encode_padded(&vocab, &raw.test[i].text));
        y.push(raw.test[i].label as f32);
    }
    let mut logits = vec![0.0; y.len()];
    engine.predict_logits(&params, &ids, &mut logits);
    let r = metrics(&logits, &y);
    let lines = if args.json {
        vec![serde_json::to_string(&r)?]
    } else {
        vec![
            format!(
                "Evaluated {} test reviews from {}",
                r.count,
                source.display()
            ),
            format!(
                "loss: {:.4} - accuracy: {:.4} - precision: {:.4} - recall: {:.4} - f1: {:.4}",
                r.loss, r.accuracy, r.precision, r.recall, r.f1
            ),
            "Confusion matrix (rows: true, columns: predicted):".to_string(),
            "              negative  positive".to_string(),
            format!(
                "  negative  {:>10}{:>10}",
                r.confusion[0][0], r.confusion[0][1]
            ),
            format!(
                "  positive  {:>10}{:>10}",
                r.confusion[1][0], r.confusion[1][1]
            ),
        ]
    };
    super::predict::write_stdout(lines, "the metrics")
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
}
