//! `imdb-lstm predict`: raw review text in, probability of positive out, using only the model file;
//! with `--explain`, each token's contribution to the answer ([`crate::explain`]).

use crate::explain::{self, Explanation, Method, TokenKind};
use crate::infer::{label_name, Classifier};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[derive(Args, Debug, Clone)]
pub struct PredictArgs {
    /// The model file (model.safetensors in a run folder).
    #[arg(long)]
    pub model: PathBuf,
    /// Reviews to classify.
    pub texts: Vec<String>,
    /// Read reviews from a file, one per line ("-" reads standard input); every line gets an answer.
    #[arg(long, value_name = "F")]
    pub file: Option<PathBuf>,
    /// One JSON object per review: {"index", "line", "probability", "label"}; "line" is the
    /// 1-based line of the file, or the position of the review among the arguments.
    #[arg(long)]
    pub json: bool,
    /// Worker threads [default: all cores].
    #[arg(long, allow_negative_numbers = true)]
    pub threads: Option<usize>,
    /// Explain each answer: every token's contribution to the predicted label's probability
    /// (at most 1000 reviews at a time); with --json, one object per review.
    #[arg(long)]
    pub explain: bool,
    /// With --explain: occlusion (the change in probability when the token becomes unknown) or
    /// integrated-gradients (along the path from an input of padding alone) [default:
    /// integrated-gradients].
    #[arg(long, value_name = "METHOD", requires = "explain")]
    pub method: Option<String>,
    /// Show the N most probable labels of each review with their probabilities (models with
    /// more than two labels).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub top_k: Option<usize>,
    /// A multi-label model gives a review each label whose probability is at least this
    /// [default: 0.5].
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    pub threshold: Option<f64>,
    /// With --explain: integration steps of integrated-gradients, 1 to 4096 [default: 32].
    #[arg(
        long,
        value_name = "N",
        requires = "explain",
        allow_negative_numbers = true
    )]
    pub steps: Option<usize>,
}

/// The most reviews `--explain` takes at a time: each costs a batch of forward (and backward)
/// passes, so a whole file of reviews is refused rather than left running for hours.
pub const MAX_EXPLAINED: usize = 1000;

/// The most text `--file` reads (256 MiB): far beyond any list of reviews, far below memory.
pub const MAX_INPUT_BYTES: u64 = 256 << 20;

/// Reviews encoded and run through the model at a time, so memory stays bounded however many
/// lines the input has (as in `bench`).
const BATCH: usize = 1024;

/// One review to answer: its text and where it came from.
struct Review<'a> {
    text: &'a str,
    /// The file's name, or None for a review given as an argument.
    file: Option<&'a str>,
    /// 1-based: the line in the file, or the position among the arguments.
    line: usize,
}

/// The name and the whole text of `--file` (UTF-8, at most [`MAX_INPUT_BYTES`]).
fn read_file(f: &Path) -> Result<(String, String)> {
    let stdin = f.as_os_str() == "-";
    let name = if stdin {
        "standard input".to_string()
    } else {
        f.display().to_string()
    };
    let reader: Box<dyn Read> = if stdin {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(f).with_context(|| format!("cannot read {name}"))?)
    };
    // Bounded, so `--file /dev/zero` or an endless pipe is an error, not an out-of-memory abort.
    let mut bytes = Vec::new();
    reader
        .take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {name}"))?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        bail!(
            "{name} holds more than {} MiB of text; split it into smaller files",
            MAX_INPUT_BYTES >> 20
        );
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok((name, text)),
        Err(e) => {
            let line = e.as_bytes()[..e.utf8_error().valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            bail!("{name}, line {line}: not UTF-8 text; give reviews as UTF-8 text, one per line")
        }
    }
}

/// `text` as one line of output: control and other invisible characters escaped as Rust's
/// `escape_debug` writes them (`\n`, `\u{1b}`), so no input can print what looks like another
/// prediction; `\` is escaped too, so no escape can be faked. Letters of any script and quotes
/// stay as they are.
fn shown(text: &str) -> String {
    let is_quote = |c: char| c == '\'' || c == '"';
    text.split_inclusive(is_quote)
        .map(|part| {
            let body = part.strip_suffix(is_quote).unwrap_or(part);
            format!("{}{}", body.escape_debug(), &part[body.len()..])
        })
        .collect()
}

/// How `predict` answers: the labels, how many to show, the multi-label threshold, JSON or not.
struct Answering<'a> {
    labels: &'a [String],
    top_k: usize,
    /// A multi-label model's threshold; `None` for one label per review.
    threshold: Option<f64>,
    json: bool,
}

/// The output line for review `r`, number `index` (0-based) of the input, with every label's
/// probability `probs` (in `labels` order). Two labels: the probability of the second (positive)
/// one and the label it decides; more: the most probable label and its probability, or the
/// `top_k` most probable; multi-label: every label at or above the threshold, most probable
/// first. `--json` adds every label's probability.
fn answer(index: usize, r: &Review, probs: &[f32], how: &Answering) -> String {
    let Answering {
        labels,
        top_k,
        json,
        ..
    } = *how;
    let mut ranked: Vec<usize> = (0..probs.len()).collect();
    ranked.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    if let Some(t) = how.threshold {
        return multi_label_answer(index, r, probs, &ranked, how, t);
    }
    let (p, label) = match probs {
        [_, p] => (*p, label_name(labels, (*p > 0.5) as usize)),
        _ => (probs[ranked[0]], label_name(labels, ranked[0])),
    };
    if json {
        let all: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .zip(probs)
            .map(|(l, &p)| (l.clone(), p.into()))
            .collect();
        serde_json::json!({ "index": index, "line": r.line, "probability": p, "label": label,
            "probabilities": all })
        .to_string()
    } else {
        let label = match top_k {
            0 | 1 => format!("{label:<8}"),
            k => ranked
                .iter()
                .take(k)
                .map(|&c| format!("{:.4} {}", probs[c], label_name(labels, c)))
                .collect::<Vec<_>>()
                .join("  "),
        };
        match top_k {
            0 | 1 => format!("{p:.4}  {label}  {}", preview(r.text)),
            _ => format!("{label}  |  {}", preview(r.text)),
        }
    }
}

/// [`answer`] for a multi-label model: `ranked` is the labels by falling probability.
fn multi_label_answer(
    index: usize,
    r: &Review,
    probs: &[f32],
    ranked: &[usize],
    how: &Answering,
    threshold: f64,
) -> String {
    let given: Vec<usize> = ranked
        .iter()
        .copied()
        .filter(|&c| probs[c] as f64 >= threshold)
        .collect();
    if how.json {
        let all: serde_json::Map<String, serde_json::Value> = how
            .labels
            .iter()
            .zip(probs)
            .map(|(l, &p)| (l.clone(), p.into()))
            .collect();
        let names: Vec<&str> = given.iter().map(|&c| how.labels[c].as_str()).collect();
        return serde_json::json!({ "index": index, "line": r.line, "labels": names,
            "probabilities": all })
        .to_string();
    }
    let shown_labels = match how.top_k {
        0 | 1 if given.is_empty() => format!("(no label at >= {threshold})"),
        0 | 1 => given
            .iter()
            .map(|&c| format!("{:.4} {}", probs[c], how.labels[c]))
            .collect::<Vec<_>>()
            .join("  "),
        k => ranked
            .iter()
            .take(k)
            .map(|&c| format!("{:.4} {}", probs[c], how.labels[c]))
            .collect::<Vec<_>>()
            .join("  "),
    };
    format!("{shown_labels}  |  {}", preview(r.text))
}

/// The first 60 characters of `text`, shown safely, with `...` when there is more.
fn preview(text: &str) -> String {
    let head: String = text.chars().take(60).collect();
    let more = if text.chars().nth(60).is_some() {
        "..."
    } else {
        ""
    };
    format!("{}{more}", shown(&head))
}

/// The explanation method the flags ask for, checked (each error names the flag).
fn method(args: &PredictArgs) -> Result<Method> {
    let name = args.method.as_deref().unwrap_or(explain::METHODS[1]);
    let Some(method) = Method::from_name(name, args.steps) else {
        bail!(
            "--method {}: unknown method; use {}",
            shown(name),
            explain::METHODS.join(" or ")
        )
    };
    match (method, args.steps) {
        (Method::Occlusion, Some(_)) => {
            bail!("--steps is for --method integrated-gradients; occlusion takes no steps")
        }
        (_, Some(s)) => match explain::steps_problem(s) {
            Some(p) => bail!("--steps {p}"),
            None => Ok(method),
        },
        _ => Ok(method),
    }
}

/// Review `r`'s explanation as text: a header, then one line per position the model reads (the
/// padding summed up in one line), each with its contribution and a bar; green and red on a
/// terminal.
fn explained(r: &Review, e: &Explanation) -> String {
    use std::fmt::Write;
    let mut s = format!(
        "{}: {} {:.4} (all padding: {:.4}); {}",
        place(r),
        e.label,
        e.probability,
        e.baseline_probability,
        match e.steps {
            Some(n) => format!("integrated gradients, {n} steps"),
            None => "occlusion".into(),
        }
    );
    let largest = e
        .tokens
        .iter()
        .fold(0.0f64, |m, t| m.max(t.contribution.abs()));
    let (green, red) = (console::Style::new().green(), console::Style::new().red());
    let mut pads = 0;
    for t in &e.tokens {
        let c = t.contribution;
        let text = match t.kind {
            TokenKind::Pad => {
                pads += 1;
                continue;
            }
            TokenKind::Oov => format!("{} (unknown)", t.text),
            _ => t.text.clone(),
        };
        let n = if largest > 0.0 {
            (c.abs() / largest * 20.0).round() as usize
        } else {
            0
        };
        let (style, bar) = if c < 0.0 {
            (&red, "-".repeat(n))
        } else {
            (&green, "+".repeat(n))
        };
        let _ = write!(
            s,
            "\n  {c:+.4}  {}",
            style.apply_to(format!("{text:<16} {bar}").trim_end())
        );
    }
    if pads > 0 {
        let _ = write!(s, "\n  {:+.4}  ({pads} padding positions)", 0.0);
    }
    let sum: f64 = e.tokens.iter().map(|t| t.contribution).sum();
    let _ = write!(s, "\n  sum {sum:+.4}");
    if e.truncated {
        let more = if e.cut_words > e.cut.len() {
            " ..."
        } else {
            ""
        };
        let _ = write!(
            s,
            "\n  cut to fit the model ({} words): {}{more}",
            e.cut_words,
            e.cut.join(" ")
        );
    }
    s
}

/// Where review `r` came from, for messages: `FILE, line N` or `argument N`.
fn place(r: &Review) -> String {
    match r.file {
        Some(name) => format!("{name}, line {}", r.line),
        None => format!("argument {}", r.line),
    }
}

pub fn run(args: &PredictArgs) -> Result<()> {
    super::threads(args.threads)?;
    let method = method(args)?;
    let file = args.file.as_deref().map(read_file).transpose()?;
    let from_args = args.texts.iter().enumerate().map(|(i, t)| Review {
        text: t,
        file: None,
        line: i + 1,
    });
    let from_file = file.iter().flat_map(|(name, text)| {
        text.lines().enumerate().map(|(i, t)| Review {
            text: t,
            file: Some(name),
            line: i + 1,
        })
    });
    let mut reviews = from_args.chain(from_file).enumerate().peekable();
    if reviews.peek().is_none() {
        match &file {
            Some((name, _)) => bail!("no reviews given: {name} is empty; give reviews one per line"),
            None => bail!("no reviews given: pass them as arguments or with --file F (one per line, - for standard input)"),
        }
    }
    if args.explain {
        let count = args.texts.len() + file.as_ref().map_or(0, |(_, t)| t.lines().count());
        if count > MAX_EXPLAINED {
            bail!(
                "--explain takes at most {MAX_EXPLAINED} reviews at a time, and {count} were \
                 given: split them into smaller files"
            );
        }
    }
    let mut model = crate::infer::Classifier::load(&args.model, super::threads(args.threads)?)?;
    let labels = model.labels().to_vec();
    let threshold = super::threshold(args.threshold, &model)?;
    let top_k = match args.top_k {
        Some(0) => bail!("--top-k 0: use 1 or more"),
        Some(k) if labels.len() == 2 && k > 1 && !model.multi_label() => bail!(
            "--top-k {k}: this model has two labels, and prints the probability of {:?}; use \
             --json for both",
            labels[1]
        ),
        Some(k) => k.min(labels.len()),
        None => 1,
    };
    if args.explain {
        return explain_all(&mut model, reviews, method, args.json);
    }
    let batches = std::iter::from_fn(|| {
        let batch: Vec<_> = reviews.by_ref().take(BATCH).collect();
        (!batch.is_empty()).then_some(batch)
    });
    let how = Answering {
        labels: &labels,
        top_k,
        threshold: model.multi_label().then_some(threshold),
        json: args.json,
    };
    let lines = batches.flat_map(|batch| {
        let texts: Vec<&str> = batch.iter().map(|(_, r)| r.text).collect();
        let probs = model.label_probabilities(&model.encode(&texts));
        let mut stderr = std::io::stderr().lock();
        let mut lines = Vec::with_capacity(batch.len());
        for ((index, r), p) in batch.into_iter().zip(probs) {
            warn_if_empty(&mut stderr, &r);
            lines.push(answer(index, &r, &p, &how));
        }
        lines
    });
    write_stdout(lines, "the predictions")
}

/// Warns on stderr when review `r` has no words.
fn warn_if_empty(stderr: &mut impl Write, r: &Review) {
    let mut words = 0;
    crate::data::for_each_token(r.text, |_| words += 1);
    if words == 0 {
        // Encoded as the start id and padding alone, as any review without words is.
        // Best effort: a warning that cannot be shown must not stop the predictions.
        let _ = writeln!(
            stderr,
            "warning: {}: no words in it; answered as an empty review",
            place(r)
        );
    }
}

/// `predict --explain`: each review's explanation, written as it is computed.
fn explain_all<'a>(
    model: &mut Classifier,
    reviews: impl Iterator<Item = (usize, Review<'a>)>,
    method: Method,
    json: bool,
) -> Result<()> {
    let mut failed = None;
    let mut reviews = reviews;
    let outputs = std::iter::from_fn(|| {
        let (index, r) = reviews.next()?;
        warn_if_empty(&mut std::io::stderr().lock(), &r);
        match explain::explain(model, r.text, method) {
            Ok(e) if json => {
                let mut v = serde_json::to_value(&e).expect("an explanation is plain data");
                v["index"] = index.into();
                v["line"] = r.line.into();
                Some(v.to_string())
            }
            Ok(e) => Some(explained(&r, &e)),
            Err(e) => {
                failed = Some(e.context(place(&r)));
                None
            }
        }
    });
    write_stdout(outputs, "the explanations")?;
    failed.map_or(Ok(()), Err)
}

/// Writes `lines` to standard output. A reader that went away (`| head -1`) ends the output
/// quietly, as command-line tools do; any other failure (a full disk) is one clear error instead
/// of `println!`'s panic.
pub fn write_stdout(lines: impl IntoIterator<Item = String>, what: &str) -> Result<()> {
    use std::io::ErrorKind;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let result = lines
        .into_iter()
        .try_for_each(|l| writeln!(out, "{l}"))
        .and_then(|()| out.flush());
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        Err(e) => bail!("cannot write {what} to standard output: {e}"),
    }
}
