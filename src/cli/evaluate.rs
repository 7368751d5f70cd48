//! `imdb-lstm evaluate`: the model file against the test reviews, encoded with the model's own
//! vocabulary and preprocessing.

use super::{DataArgs, FormatArgs};
use crate::data::labelled::{read_labelled, LabelSet, TaskKind};
use crate::infer::{ClassReport, Classifier, MultiLabelReport, Scores};
use anyhow::{bail, Result};
use clap::Args;
use std::path::{Path, PathBuf};

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
    /// A multi-label model gives a text each label whose probability is at least this
    /// [default: 0.5].
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    pub threshold: Option<f64>,
}

pub fn run(args: &EvaluateArgs) -> Result<()> {
    let threads = super::threads(args.threads)?;
    if args.limit == Some(0) {
        bail!("--limit 0: use at least 1 review (or leave --limit out to use them all)");
    }
    let mut model = crate::infer::Classifier::load(&args.model, threads)?;
    let threshold = super::threshold(args.threshold, &model)?;
    // Own labelled data (`--data FILE`), which must use the model's labels.
    let data = args.data.data.as_deref();
    if let (Some(format), Some(path)) = (args.format.own_format(data)?, data) {
        let (probs, truth) = read_and_answer(args, path, format, &mut model)?;
        let labels = model.labels();
        let source = path.display().to_string();
        let lines = if model.multi_label() {
            let r = crate::infer::multi_label_report(&probs, &truth, labels, threshold);
            match args.json {
                true => vec![serde_json::to_string(&r)?],
                false => multi_label_lines(&r, labels, &source),
            }
        } else {
            let truth: Vec<u32> = truth.iter().map(|t| t[0]).collect();
            let r = crate::infer::class_report(&probs, &truth, labels);
            match args.json {
                true => vec![serde_json::to_string(&r)?],
                false => report_lines(&r, labels, &source),
            }
        };
        return super::predict::write_stdout(lines, "the metrics");
    }
    if model.labels().len() != 2 || model.multi_label() {
        bail!(
            "{} tells apart {} labels ({}); the aclImdb reviews have two: evaluate it on data of \
             its own labels with --data FILE",
            args.model.display(),
            model.labels().len(),
            model.labels().join(", ")
        );
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

/// Each text's probability of every label, and its true label ids.
type Answers = (Vec<Vec<f32>>, Vec<Vec<u32>>);

/// The texts of `--data` (the first `--limit`) with the model's probabilities for every label,
/// and each text's true label ids (the model's labels, checked).
fn read_and_answer(
    args: &EvaluateArgs,
    path: &Path,
    format: crate::data::Format,
    model: &mut Classifier,
) -> Result<Answers> {
    let labels = model.labels().to_vec();
    let kind = match (labels.len(), model.multi_label()) {
        (_, true) => TaskKind::MultiLabel,
        (2, false) => TaskKind::Binary,
        _ => TaskKind::MultiClass,
    };
    let known = LabelSet::in_order(labels, kind);
    let opts = args.format.read_options(format);
    let mut count = 0usize;
    let limit = args.limit.unwrap_or(usize::MAX);
    let d = read_labelled(path, &opts, Some(&known), |t| {
        count += 1;
        (count <= limit).then(|| model.encode(&[t]))
    })?;
    let n = d.items.iter().filter(|r| r.is_some()).count();
    let truth: Vec<Vec<u32>> = (0..n).map(|i| d.labels.get(i).to_vec()).collect();
    let mut probs = Vec::with_capacity(n);
    for rows in d.items[..n].chunks(BATCH) {
        let ids: Vec<u32> = rows.iter().flatten().flatten().copied().collect();
        probs.extend(model.label_probabilities(&ids));
    }
    Ok((probs, truth))
}

/// A multi-label report as text: the scores per label (with its AUCs and counts) and averaged.
fn multi_label_lines(r: &MultiLabelReport, labels: &[String], source: &str) -> Vec<String> {
    let w = name_width(labels);
    let mut lines = vec![
        format!(
            "Evaluated {} texts from {source} (a label is given at probability >= {})",
            r.count, r.threshold
        ),
        format!(
            "loss: {:.4} - accuracy: {:.4} (per label) - exact match: {:.4} - hamming loss: {:.4}",
            r.loss, r.accuracy, r.subset_accuracy, r.hamming_loss
        ),
        format!(
            "{}  {:>7}  {:>7}  {:>6}  {:>6}  {:>6}  {:>6}",
            score_header(w),
            "roc_auc",
            "pr_auc",
            "tp",
            "fp",
            "fn",
            "tn"
        ),
    ];
    let row = |name: &str, s: &Scores| score_row(w, name, s);
    for (i, l) in r.per_label.iter().enumerate() {
        let c = r.confusion[i];
        lines.push(format!(
            "{}  {:>7.4}  {:>7.4}  {:>6}  {:>6}  {:>6}  {:>6}",
            row(&l.label, &l.scores),
            r.roc_auc[i],
            r.pr_auc[i],
            c[1][1],
            c[0][1],
            c[1][0],
            c[0][0]
        ));
    }
    lines.push(row("micro avg", &r.micro_avg));
    lines.push(row("macro avg", &r.macro_avg));
    lines.push(row("weighted avg", &r.weighted_avg));
    lines.push(row("samples avg", &r.samples_avg));
    lines
}

/// The width of the label column: the longest label, at least "weighted avg".
fn name_width(labels: &[String]) -> usize {
    labels
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0)
        .max(12)
}

/// The scores table's header, the label column `w` wide.
fn score_header(w: usize) -> String {
    format!(
        "{:<w$}  {:>9}  {:>9}  {:>9}  {:>9}",
        "", "precision", "recall", "f1", "support"
    )
}

/// One row of the scores table.
fn score_row(w: usize, name: &str, s: &Scores) -> String {
    format!(
        "{name:<w$}  {:>9.4}  {:>9.4}  {:>9.4}  {:>9}",
        s.precision, s.recall, s.f1, s.support
    )
}

/// The report as text: the scores per label and averaged, the confusion matrix, the AUCs.
fn report_lines(r: &ClassReport, labels: &[String], source: &str) -> Vec<String> {
    let w = name_width(labels);
    let mut lines = vec![
        format!("Evaluated {} texts from {source}", r.count),
        format!("loss: {:.4} - accuracy: {:.4}", r.loss, r.accuracy),
        score_header(w),
    ];
    let row = |name: &str, s: &Scores| score_row(w, name, s);
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
