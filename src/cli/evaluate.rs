//! `imdb-lstm evaluate`: the model file against the test reviews, encoded with the model's own
//! vocabulary and preprocessing.

use super::{DataArgs, FormatArgs};
use crate::data::labelled::{read_labelled, LabelSet, TaskKind};
use crate::infer::{ClassReport, Classifier};
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
    #[command(flatten)]
    pub format: FormatArgs,
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
    if let Some(format) = args.format.own_format(args.data.data.as_deref())? {
        return own_data(args, format, &mut model);
    }
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

/// Rows encoded and run through the model at a time.
const BATCH: usize = 1024;

/// `evaluate --data FILE` on own labelled data: the labels must be the model's.
fn own_data(
    args: &EvaluateArgs,
    format: crate::data::Format,
    model: &mut Classifier,
) -> Result<()> {
    let path = args
        .data
        .data
        .as_deref()
        .expect("own data comes with --data");
    let labels = model.labels().to_vec();
    let kind = match labels.len() {
        2 => TaskKind::Binary,
        _ => TaskKind::MultiClass,
    };
    let known = LabelSet::in_order(labels.clone(), kind);
    let opts = args.format.read_options(format);
    let mut count = 0usize;
    let limit = args.limit.unwrap_or(usize::MAX);
    let d = read_labelled(path, &opts, Some(&known), |t| {
        count += 1;
        (count <= limit).then(|| model.encode(&[t]))
    })?;
    let n = d.items.iter().filter(|r| r.is_some()).count();
    let truth: Vec<u32> = (0..n).map(|i| d.labels.get(i)[0]).collect();
    let mut probs = Vec::with_capacity(n);
    for rows in d.items[..n].chunks(BATCH) {
        let ids: Vec<u32> = rows.iter().flatten().flatten().copied().collect();
        probs.extend(model.label_probabilities(&ids));
    }
    let r = crate::infer::class_report(&probs, &truth, &labels);
    let lines = if args.json {
        vec![serde_json::to_string(&r)?]
    } else {
        report_lines(&r, &labels, &path.display().to_string())
    };
    super::predict::write_stdout(lines, "the metrics")
}

/// The report as text: the scores per label and averaged, the confusion matrix, the AUCs.
fn report_lines(r: &ClassReport, labels: &[String], source: &str) -> Vec<String> {
    let w = labels
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0)
        .max(12);
    let mut lines = vec![
        format!("Evaluated {} texts from {source}", r.count),
        format!("loss: {:.4} - accuracy: {:.4}", r.loss, r.accuracy),
        format!(
            "{:<w$}  {:>9}  {:>9}  {:>9}  {:>9}",
            "", "precision", "recall", "f1", "support"
        ),
    ];
    let row = |name: &str, s: &crate::infer::Scores| {
        format!(
            "{name:<w$}  {:>9.4}  {:>9.4}  {:>9.4}  {:>9}",
            s.precision, s.recall, s.f1, s.support
        )
    };
    for l in &r.per_label {
        lines.push(row(&l.label, &l.scores));
    }
    lines.push(row("macro avg", &r.macro_avg));
    lines.push(row("weighted avg", &r.weighted_avg));
    lines.push("Confusion matrix (rows: true, columns: predicted):".to_string());
    let cw = labels
        .iter()
        .map(|l| l.chars().count())
        .chain(r.confusion.iter().flatten().map(|c| c.to_string().len()))
        .max()
        .unwrap_or(1);
    let head: String = labels.iter().map(|l| format!("  {l:>cw$}")).collect();
    lines.push(format!("{:<w$}{head}", ""));
    for (l, counts) in labels.iter().zip(&r.confusion) {
        let cells: String = counts.iter().map(|c| format!("  {c:>cw$}")).collect();
        lines.push(format!("{l:<w$}{cells}"));
    }
    if let (Some(roc), Some(pr)) = (r.roc_auc, r.pr_auc) {
        lines.push(format!(
            "ROC AUC: {roc:.4} - PR AUC: {pr:.4} (positive label: {})",
            labels[1]
        ));
    }
    lines
}
