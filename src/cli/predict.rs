//! `imdb-lstm predict`: raw review text in, probability of positive out, using only the model file.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::Read;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct PredictArgs {
    /// The model file (model.safetensors in a run folder).
    #[arg(long)]
    pub model: PathBuf,
    /// Reviews to classify.
    pub texts: Vec<String>,
    /// Read reviews from a file, one per line ("-" reads standard input).
    #[arg(long, value_name = "F")]
    pub file: Option<PathBuf>,
    /// One JSON object per review: {"index", "probability", "label"}.
    #[arg(long)]
    pub json: bool,
    /// Worker threads [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
}

/// The most text `--file` reads (256 MiB): far beyond any list of reviews, far below memory.
pub const MAX_INPUT_BYTES: u64 = 256 << 20;

/// The reviews from the arguments and the file, each checked: not empty, with words in it.
fn inputs(args: &PredictArgs) -> Result<Vec<String>> {
    let mut texts = args.texts.clone();
    if let Some(f) = &args.file {
        let name = if f.as_os_str() == "-" {
            "standard input".to_string()
        } else {
            f.display().to_string()
        };
        let reader: Box<dyn Read> = if f.as_os_str() == "-" {
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
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let line = e.as_bytes()[..e.utf8_error().valid_up_to()]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1;
                bail!(
                    "{name}, line {line}: not UTF-8 text; give reviews as UTF-8 text, one per line"
                );
            }
        };
        texts.extend(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string),
        );
    }
    if texts.is_empty() {
        bail!("no reviews given: pass them as arguments or with --file F (one per line, - for standard input)");
    }
    for (i, t) in texts.iter().enumerate() {
        if t.trim().is_empty() {
            bail!("review {} is empty: give some review text", i + 1);
        }
        let mut words = 0;
        crate::data::for_each_token(t, |_| words += 1);
        if words == 0 {
            bail!("review {} has no words in it (only symbols, control or binary characters): give review text", i + 1);
        }
    }
    Ok(texts)
}

/// Probabilities of positive for raw texts, through the model's own preprocessing.
pub fn predict_texts(
    m: &crate::model_file::ModelFile,
    params: &crate::nn::Params,
    engine: &mut crate::nn::Engine,
    texts: &[String],
) -> Vec<f32> {
    let vocab = crate::data::Vocabulary::from_words(m.vocabulary.clone());
    let pre = &m.preprocessing;
    let mut ids = Vec::with_capacity(texts.len() * pre.maxlen);
    for t in texts {
        ids.extend(pre.encode_padded(&vocab, t));
    }
    let mut logits = vec![0.0; texts.len()];
    engine.predict_logits(params, &ids, &mut logits);
    logits
        .iter()
        .map(|&z| (1.0 / (1.0 + (-z as f64).exp())) as f32)
        .collect()
}

pub fn run(args: &PredictArgs) -> Result<()> {
    super::threads(args.threads)?;
    let texts = inputs(args)?;
    let (m, params, mut engine) = super::load_model(&args.model, args.threads)?;
    m.preprocessing
        .validate()
        .with_context(|| args.model.display().to_string())?;
    let probs = predict_texts(&m, &params, &mut engine, &texts);
    let lines = probs.iter().zip(&texts).enumerate().map(|(i, (p, t))| {
        let label = if *p > 0.5 { "positive" } else { "negative" };
        if args.json {
            serde_json::json!({ "index": i, "probability": p, "label": label }).to_string()
        } else {
            let preview: String = t.chars().take(60).collect();
            let more = if t.chars().nth(60).is_some() {
                "..."
            } else {
                ""
            };
            format!("{p:.4}  {label:<8}  {preview}{more}")
        }
    });
    write_stdout(lines, "the predictions")
}

/// Writes `lines` to standard output. A reader that went away (`| head -1`) ends the output
/// quietly, as command-line tools do; any other failure (a full disk) is one clear error instead
/// of `println!`'s panic.
pub fn write_stdout(lines: impl IntoIterator<Item = String>, what: &str) -> Result<()> {
    use std::io::{ErrorKind, Write};
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
