//! Why a model answered as it did: each token's contribution to the probability of the label it
//! predicted, by occlusion or by integrated gradients on the embedding output. [`explain`] is
//! the one entry point (`predict --explain` and the HTTP server call it).

use crate::data::{for_each_token, Side};
use crate::infer::Classifier;
use crate::nn::arch::Head;
use crate::nn::network::{class_probability, Input};
use crate::nn::Network;
use anyhow::{bail, Result};
use serde::Serialize;

/// Integration steps when none are asked for.
pub const DEFAULT_STEPS: usize = 32;
/// The most integration steps: far past where the sum stops changing, and a bound on the work.
pub const MAX_STEPS: usize = 4096;
/// The names [`Method::from_name`] takes.
pub const METHODS: [&str; 2] = ["occlusion", "integrated-gradients"];
/// Cut words listed in [`Explanation::cut`]; [`Explanation::cut_words`] counts them all.
pub const MAX_CUT_LISTED: usize = 1000;
/// Token ids (rows x maxlen) per engine call, so an explanation's memory stays bounded however
/// long the model's maxlen is or however many steps are asked for.
const TOKENS_PER_CALL: usize = 1 << 16;

/// How contributions are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// p(label | text) - p(label | text with the token replaced by the OOV id).
    Occlusion,
    /// Integrated gradients of p(label) on the embedding output, on the straight path from the
    /// all-padding input (every position the pad id's embedding row), by the midpoint rule with
    /// `steps` points: (x - x') . mean of the gradients at x' + (s + 1/2)/steps (x - x').
    IntegratedGradients { steps: usize },
}

impl Method {
    /// The method called `name` (one of [`METHODS`]); `steps` for integrated gradients
    /// ([`DEFAULT_STEPS`] when `None`). `None` for an unknown name.
    pub fn from_name(name: &str, steps: Option<usize>) -> Option<Method> {
        match name {
            "occlusion" => Some(Method::Occlusion),
            "integrated-gradients" => Some(Method::IntegratedGradients {
                steps: steps.unwrap_or(DEFAULT_STEPS),
            }),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::Occlusion => METHODS[0],
            Method::IntegratedGradients { .. } => METHODS[1],
        }
    }
}

/// What is wrong with `steps` integration steps, to follow the name of the setting that gave
/// them (`--steps 0 is ...`), or `None` when they are fine.
pub fn steps_problem(steps: usize) -> Option<String> {
    (!(1..=MAX_STEPS).contains(&steps)).then(|| {
        format!(
            "{steps} is outside 1 to {MAX_STEPS}: use {DEFAULT_STEPS} (the default), or more \
             (up to {MAX_STEPS}) for a closer integral"
        )
    })
}

/// What a position of the model's input holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// The start-of-sequence marker.
    Start,
    /// A word of the vocabulary.
    Word,
    /// A word the model does not know: it sees the out-of-vocabulary id.
    Oov,
    /// Padding (never part of the text; its contribution is 0).
    Pad,
}

/// One position of the model's input.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Token {
    /// The word as the tokeniser gave it (lowercased), also for an OOV word; `<start>` or
    /// `<pad>` for the markers.
    pub text: String,
    /// The id the model reads.
    pub id: u32,
    pub kind: TokenKind,
    /// Its share of the label's probability (see [`Method`]); 0 for padding.
    pub contribution: f64,
}

/// One text explained.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explanation {
    /// One of [`METHODS`].
    pub method: &'static str,
    /// Integration steps (integrated gradients), else `None` (`null`).
    pub steps: Option<usize>,
    /// The predicted label: `negative` or `positive` for a sigmoid head, `class K` for a
    /// softmax head's class K (the most probable).
    pub label: String,
    /// Its index: 0 or 1 for a sigmoid head (1 = positive), the class for a softmax head.
    pub class: usize,
    /// p(label | text).
    pub probability: f64,
    /// p(label | all padding): the integrated-gradients baseline; their contributions add up to
    /// `probability - baseline_probability`.
    pub baseline_probability: f64,
    /// Every position of the model's input (maxlen of them), in order, padding included.
    pub tokens: Vec<Token>,
    /// Whether words were cut to fit maxlen.
    pub truncated: bool,
    /// How many words were cut.
    pub cut_words: usize,
    /// The cut words in text order, at most [`MAX_CUT_LISTED`] (the first ones).
    pub cut: Vec<String>,
}

/// Each class's probability from one row of logits of a `head` (a sigmoid head has two
/// classes).
fn probabilities(head: Head, z: &[f32]) -> Vec<f64> {
    let mut dz = vec![0.0; z.len()];
    (0..z.len().max(2))
        .map(|c| class_probability(head, z, c, &mut dz))
        .collect()
}

/// The positions of `text` as the model's preprocessing lays them out (contributions 0), and
/// (how many words were cut, the first [`MAX_CUT_LISTED`] of them). Two passes over the text,
/// so a huge review costs no more than the words kept.
fn positions(c: &Classifier, text: &str) -> (Vec<Token>, usize, Vec<String>) {
    let pre = &c.file.preprocessing;
    let vocab = c.vocabulary();
    let maxlen = pre.maxlen;
    let mut n: usize = 1; // the start marker
    for_each_token(text, |_| n += 1);
    let cut_n = n.saturating_sub(maxlen);
    // Positions [keep_from, keep_to) of the sequence (start marker at 0) are kept.
    let (keep_from, keep_to) = match pre.truncating {
        Side::Pre => (cut_n, n),
        Side::Post => (0, n - cut_n),
    };
    let token = |text: String, id, kind| Token {
        text,
        id,
        kind,
        contribution: 0.0,
    };
    let mut kept = Vec::with_capacity(maxlen);
    if keep_from == 0 {
        kept.push(token("<start>".into(), pre.start_id, TokenKind::Start));
    }
    let mut cut = Vec::new();
    let mut i = 0;
    for_each_token(text, |w| {
        i += 1;
        if (keep_from..keep_to).contains(&i) {
            let id = vocab.token_id(w, pre);
            let kind = if id == pre.oov_id {
                TokenKind::Oov
            } else {
                TokenKind::Word
            };
            kept.push(token(w.to_string(), id, kind));
        } else if cut.len() < MAX_CUT_LISTED {
            cut.push(w.to_string());
        }
    });
    let pads = (0..maxlen - kept.len()).map(|_| token("<pad>".into(), pre.pad_id, TokenKind::Pad));
    let tokens = match pre.padding {
        Side::Pre => pads.chain(kept).collect(),
        Side::Post => kept.into_iter().chain(pads).collect(),
    };
    // The start marker is not a word: only words count as cut.
    (tokens, cut_n - (keep_from > 0) as usize, cut)
}

/// Explains the model's answer on `text`: the tokens it sees, the label it predicts, and each
/// token's contribution to that label's probability by `method`. Refuses (one line) integration
/// steps outside 1 to [`MAX_STEPS`].
pub fn explain(classifier: &mut Classifier, text: &str, method: Method) -> Result<Explanation> {
    let (mut tokens, cut_words, cut) = positions(classifier, text);
    let ids: Vec<u32> = tokens.iter().map(|t| t.id).collect();
    let (pad, oov) = {
        let pre = &classifier.file.preprocessing;
        (pre.pad_id, pre.oov_id)
    };
    let labels = classifier.labels().to_vec();
    let (net, params) = classifier.engine();
    let a = attribute(net, params, &ids, (pad, oov), method)?;
    for (t, c) in tokens.iter_mut().zip(&a.contributions) {
        t.contribution = *c;
    }
    Ok(Explanation {
        method: method.name(),
        steps: match method {
            Method::IntegratedGradients { steps } => Some(steps),
            Method::Occlusion => None,
        },
        label: crate::infer::label_name(&labels, a.class),
        class: a.class,
        probability: a.probability,
        baseline_probability: a.baseline_probability,
        truncated: cut_words > 0,
        cut_words,
        cut,
        tokens,
    })
}

/// What [`attribute`] finds for one sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct Attribution {
    /// The predicted class (see [`Explanation::class`]).
    pub class: usize,
    /// p(class | ids).
    pub probability: f64,
    /// p(class | all padding).
    pub baseline_probability: f64,
    /// Per position; 0 at padding.
    pub contributions: Vec<f64>,
}

/// [`explain`]'s arithmetic on a bare engine: `ids` is one `[maxlen]` sequence, `(pad, oov)`
/// the padding and out-of-vocabulary ids. Refuses (one line) integration steps outside 1 to
/// [`MAX_STEPS`].
pub fn attribute(
    net: &mut Network,
    params: &[f32],
    ids: &[u32],
    (pad, oov): (u32, u32),
    method: Method,
) -> Result<Attribution> {
    if let Method::IntegratedGradients { steps } = method {
        if let Some(p) = steps_problem(steps) {
            bail!("steps {p}");
        }
    }
    let (k, head) = (net.classes(), net.head());
    // The text and the all-padding baseline, in one call.
    let mut both = ids.to_vec();
    both.resize(2 * ids.len(), pad);
    let mut logits = vec![0.0; 2 * k];
    net.predict_logits(params, &both, &mut logits);
    let (p_text, p_base) = (
        probabilities(head, &logits[..k]),
        probabilities(head, &logits[k..]),
    );
    // The first most probable class (a sigmoid head: positive when p > 0.5, as `predict`; a
    // multi-label head: the most probable label).
    let class = (1..p_text.len()).fold(0, |m, c| if p_text[c] > p_text[m] { c } else { m });
    let rows = (TOKENS_PER_CALL / ids.len().max(1)).max(1);
    let contributions = match method {
        Method::Occlusion => {
            // Padding is not part of the text, and an OOV word is the OOV id already.
            let at: Vec<usize> = (0..ids.len())
                .filter(|&t| ids[t] != pad && ids[t] != oov)
                .collect();
            let mut out = vec![0.0; ids.len()];
            let (mut z, mut dz) = (Vec::new(), vec![0.0; k]);
            for part in at.chunks(rows) {
                let mut edited = Vec::with_capacity(part.len() * ids.len());
                for &t in part {
                    edited.extend_from_slice(ids);
                    let row = edited.len() - ids.len();
                    edited[row + t] = oov;
                }
                z.resize(part.len() * k, 0.0);
                net.predict_logits(params, &edited, &mut z);
                for (&t, zr) in part.iter().zip(z.chunks_exact(k)) {
                    out[t] = p_text[class] - class_probability(head, zr, class, &mut dz);
                }
            }
            out
        }
        Method::IntegratedGradients { steps } => {
            let d = net.embed_dim();
            let row = |id: u32| &params[id as usize * d..(id as usize + 1) * d];
            let base: Vec<f32> = ids.iter().flat_map(|_| row(pad)).copied().collect();
            let x: Vec<f32> = ids.iter().flat_map(|&id| row(id)).copied().collect();
            let mut sum = vec![0.0f64; x.len()];
            let (mut inputs, mut grads, mut probs) = (Vec::new(), Vec::new(), Vec::new());
            let points: Vec<usize> = (0..steps).collect();
            for part in points.chunks(rows) {
                inputs.clear();
                for &s in part {
                    let alpha = (s as f64 + 0.5) / steps as f64;
                    inputs.extend(
                        base.iter()
                            .zip(&x)
                            .map(|(&b, &v)| (b as f64 + alpha * (v as f64 - b as f64)) as f32),
                    );
                }
                grads.resize(inputs.len(), 0.0);
                probs.resize(part.len(), 0.0);
                net.probability_gradients(
                    params,
                    Input::Embedded(&inputs),
                    &vec![class; part.len()],
                    &mut probs,
                    &mut grads,
                );
                for g in grads.chunks_exact(x.len()) {
                    sum.iter_mut().zip(g).for_each(|(a, &v)| *a += v as f64);
                }
            }
            // A padding position equals the baseline's: exactly 0.
            (0..ids.len())
                .map(|t| {
                    (t * d..(t + 1) * d)
                        .map(|j| (x[j] as f64 - base[j] as f64) * sum[j])
                        .sum::<f64>()
                        / steps as f64
                })
                .collect()
        }
    };
    Ok(Attribution {
        class,
        probability: p_text[class],
        baseline_probability: p_base[class],
        contributions,
    })
}
