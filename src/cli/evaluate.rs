//! `imdb-lstm evaluate`: the model file against the test reviews, encoded with the model's own
//! vocabulary and preprocessing.

use super::DataArgs;
use anyhow::{bail, Result};
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
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub limit: Option<usize>,
    /// Print the metrics as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Worker threads [default: all cores].
    #[arg(long, allow_negative_numbers = true)]
    pub threads: Option<usize>,
}

pub fn run(args: &EvaluateArgs) -> Result<()> {
    let threads = super::threads(args.threads)?;
    if args.limit == Some(0) {
        bail!("--limit 0: use at least 1 review (or leave --limit out to use them all)");
    }
    let mut model = crate::infer::Classifier::load(&args.model, threads)?;
    let source = crate::data::resolve_source(args.data.data.as_deref(), !args.json)?;
    let raw = crate::data::load_reviews(&source)?;
    // Same order as training saw (prepare's shuffle), so --limit picks the same reviews.
    let seed = model.file.training.as_ref().map(|t| t.seed).unwrap_or(0);
    let (_, mut order) = crate::data::shuffled_orders(raw.train.len(), raw.test.len(), seed);
    if let Some(n) = args.limit {
        order.truncate(n);
    }
    let texts: Vec<&str> = order.iter().map(|&i| raw.test[i].text.as_str()).collect();
    let y: Vec<f32> = order.iter().map(|&i| raw.test[i].label as f32).collect();
    let ids = model.encode(&texts);
    let r = crate::infer::metrics(&model.logits(&ids), &y);
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
