//! The model described once, as Keras describes it: an ordered list of layer specs with Keras's
//! class and argument names, plus the input length. Everything else is derived from it here:
//! each layer's output shape and Keras name, the parameter tensors (names and shapes in
//! `get_weights()` order) and their flat layout, parameter counts, FLOPs and size limits.
//! Pure data and checks; the kernels live elsewhere.

mod init;
mod keras_json;
mod presets;

pub use keras_json::{parse_arch_json, read_arch_file, ArchFile};
pub use presets::{preset, Preset, PRESETS};

use anyhow::{bail, ensure, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::Range;

/// The most parameters a model may have (1 GiB of f32), as `train` refuses today.
pub const MAX_PARAMS: usize = 1 << 28;

/// A parameter tensor by name, as a model file holds it: (name, shape, values).
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// An activation function, by its Keras name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Linear,
    Relu,
    Sigmoid,
    Softmax,
    Tanh,
}

impl Activation {
    pub const ALL: [Activation; 5] = [
        Activation::Linear,
        Activation::Relu,
        Activation::Sigmoid,
        Activation::Softmax,
        Activation::Tanh,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Softmax => "softmax",
            Activation::Tanh => "tanh",
        }
    }
}

/// Convolution and pooling padding; only Keras's default 'valid' (no padding) is supported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    Valid,
}

/// Bidirectional's merge of the two directions; only Keras's default 'concat'.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeMode {
    Concat,
}

/// The arguments LSTM and GRU share (GRU always with Keras's default reset_after=True).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recurrent {
    pub units: usize,
    /// Fraction of the inputs dropped (Keras `dropout`).
    pub dropout: f32,
    /// Fraction of the recurrent state dropped (Keras `recurrent_dropout`).
    pub recurrent_dropout: f32,
    /// Output every step `(None, steps, units)` instead of the last `(None, units)`.
    pub return_sequences: bool,
}

impl Recurrent {
    /// Keras's defaults for `units` units.
    pub fn new(units: usize) -> Recurrent {
        Recurrent {
            units,
            dropout: 0.0,
            recurrent_dropout: 0.0,
            return_sequences: false,
        }
    }
}

/// One layer, serialised as Keras writes it: `{"class_name": ..., "config": {...}}`.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "class_name", content = "config")]
pub enum LayerSpec {
    Embedding {
        input_dim: usize,
        output_dim: usize,
    },
    LSTM(Recurrent),
    GRU(Recurrent),
    /// Runs `layer` (an LSTM or GRU) forwards and backwards; outputs concatenated.
    Bidirectional {
        layer: Box<LayerSpec>,
        merge_mode: MergeMode,
    },
    Dropout {
        rate: f32,
    },
    Dense {
        units: usize,
        activation: Activation,
    },
    Activation {
        activation: Activation,
    },
    Conv1D {
        filters: usize,
        kernel_size: usize,
        padding: Padding,
        strides: usize,
        activation: Activation,
    },
    MaxPooling1D {
        pool_size: usize,
        strides: usize,
        padding: Padding,
    },
    GlobalMaxPooling1D {},
    GlobalAveragePooling1D {},
}

/// Class names in the order the help lists them.
pub const SUPPORTED: &str = "Embedding, LSTM, GRU, Bidirectional, Dropout, Dense, Activation, \
                             Conv1D, MaxPooling1D, GlobalMaxPooling1D, GlobalAveragePooling1D";

impl LayerSpec {
    /// Keras's class name.
    pub fn class_name(&self) -> &'static str {
        match self {
            LayerSpec::Embedding { .. } => "Embedding",
            LayerSpec::LSTM(_) => "LSTM",
            LayerSpec::GRU(_) => "GRU",
            LayerSpec::Bidirectional { .. } => "Bidirectional",
            LayerSpec::Dropout { .. } => "Dropout",
            LayerSpec::Dense { .. } => "Dense",
            LayerSpec::Activation { .. } => "Activation",
            LayerSpec::Conv1D { .. } => "Conv1D",
            LayerSpec::MaxPooling1D { .. } => "MaxPooling1D",
            LayerSpec::GlobalMaxPooling1D {} => "GlobalMaxPooling1D",
            LayerSpec::GlobalAveragePooling1D {} => "GlobalAveragePooling1D",
        }
    }

    /// The prefix Keras names layers of this class with (`conv1d`, `max_pooling1d`, ...).
    fn name_prefix(&self) -> &'static str {
        match self {
            LayerSpec::Embedding { .. } => "embedding",
            LayerSpec::LSTM(_) => "lstm",
            LayerSpec::GRU(_) => "gru",
            LayerSpec::Bidirectional { .. } => "bidirectional",
            LayerSpec::Dropout { .. } => "dropout",
            LayerSpec::Dense { .. } => "dense",
            LayerSpec::Activation { .. } => "activation",
            LayerSpec::Conv1D { .. } => "conv1d",
            LayerSpec::MaxPooling1D { .. } => "max_pooling1d",
            LayerSpec::GlobalMaxPooling1D {} => "global_max_pooling1d",
            LayerSpec::GlobalAveragePooling1D {} => "global_average_pooling1d",
        }
    }

    /// The recurrent arguments and gate count (LSTM 4, GRU 3) of an LSTM or GRU.
    pub fn recurrent(&self) -> Option<(&Recurrent, usize)> {
        match self {
            LayerSpec::LSTM(r) => Some((r, 4)),
            LayerSpec::GRU(r) => Some((r, 3)),
            _ => None,
        }
    }

    /// The recurrent arguments of an LSTM, GRU or Bidirectional (its inner layer's).
    fn sequence_layer(&self) -> Option<&Recurrent> {
        match self {
            LayerSpec::Bidirectional { layer, .. } => layer.recurrent().map(|r| r.0),
            other => other.recurrent().map(|r| r.0),
        }
    }
}

/// A layer's output shape, batch axis left out (Keras prints it as `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `(None, steps, features)`
    Seq { steps: usize, features: usize },
    /// `(None, features)`
    Flat { features: usize },
}

impl Shape {
    /// Values per sequence.
    pub fn len(&self) -> usize {
        match *self {
            Shape::Seq { steps, features } => steps.saturating_mul(features),
            Shape::Flat { features } => features,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn features(&self) -> usize {
        match *self {
            Shape::Seq { features, .. } | Shape::Flat { features } => features,
        }
    }
}

impl fmt::Display for Shape {
    /// As Keras's summary prints it: `(None, 80, 128)`.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Shape::Seq { steps, features } => write!(f, "(None, {steps}, {features})"),
            Shape::Flat { features } => write!(f, "(None, {features})"),
        }
    }
}

/// What the model's output means, decided by its last Dense or Activation layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    /// One sigmoid unit: P(positive); binary cross-entropy.
    Sigmoid,
    /// K >= 2 softmax units: a distribution over K classes; categorical cross-entropy.
    Softmax(usize),
    /// K >= 2 sigmoid units: K independent yes/no labels (multi-label); binary cross-entropy
    /// per label, averaged over the labels as Keras's `binary_crossentropy` does.
    Sigmoids(usize),
}

impl Head {
    /// Logits per sequence: 1 for a sigmoid head, K otherwise.
    pub fn outputs(self) -> usize {
        match self {
            Head::Sigmoid => 1,
            Head::Softmax(k) | Head::Sigmoids(k) => k,
        }
    }

    /// Training targets per sequence: K 0/1 values for a multi-label head, else one (0/1 for a
    /// sigmoid, the class index for a softmax).
    pub fn targets(self) -> usize {
        match self {
            Head::Sigmoids(k) => k,
            _ => 1,
        }
    }

    /// The labels the head tells apart (a single sigmoid: two).
    pub fn labels(self) -> usize {
        match self {
            Head::Sigmoid => 2,
            Head::Softmax(k) | Head::Sigmoids(k) => k,
        }
    }
}

/// One parameter tensor: Keras's name (`lstm/kernel`) and shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
}

impl TensorSpec {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Everything derived about one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerInfo {
    /// Keras's name: `lstm`, `lstm_1`, `dense`, ...
    pub name: String,
    pub class_name: &'static str,
    pub output: Shape,
    /// Parameter tensors in `get_weights()` order.
    pub tensors: Vec<TensorSpec>,
    /// Parameters of this layer (Keras's `count_params()`).
    pub params: usize,
    /// Floating-point operations of one sequence's forward pass: 2 per multiply-add of the
    /// matrix products (elementwise work, pooling and lookups are not counted, as in `bench`).
    pub flops: f64,
    /// f32 values one sequence's forward pass keeps for the backward pass: the output, plus
    /// the gate pre-activations of every step of a recurrent layer.
    pub activations: usize,
}

/// A model: the layers in order, applied to `maxlen` token ids per sequence. Read from a
/// file (serde), it is checked as [`Arch::new`] checks it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Unchecked")]
pub struct Arch {
    pub maxlen: usize,
    pub layers: Vec<LayerSpec>,
}

/// [`Arch`]'s fields as stored, before the checks.
#[derive(Deserialize)]
struct Unchecked {
    maxlen: usize,
    layers: Vec<LayerSpec>,
}

impl TryFrom<Unchecked> for Arch {
    type Error = anyhow::Error;

    fn try_from(a: Unchecked) -> Result<Arch> {
        Arch::new(a.layers, a.maxlen)
    }
}

impl Arch {
    /// The layers, checked: [`Arch::describe`] succeeds on the result.
    pub fn new(layers: Vec<LayerSpec>, maxlen: usize) -> Result<Arch> {
        let arch = Arch { maxlen, layers };
        arch.describe()?;
        Ok(arch)
    }

    /// Every layer's name, output shape, tensors, parameters and FLOPs, refusing (one line,
    /// naming the layer by its 1-based position and class) any stack this tool cannot run.
    pub fn describe(&self) -> Result<Vec<LayerInfo>> {
        let max_maxlen = crate::model_file::MAX_MAXLEN;
        ensure!(
            (1..=max_maxlen).contains(&self.maxlen),
            "maxlen {} is outside 1..={max_maxlen}",
            self.maxlen
        );
        match self.layers.first() {
            None => bail!("the model has no layers: it must start with an Embedding"),
            Some(LayerSpec::Embedding { .. }) => {}
            Some(l) => bail!(
                "layer 1 ({}): the first layer must be an Embedding (the model reads token ids)",
                l.class_name()
            ),
        }
        // Keras numbers each class apart: the second LSTM is `lstm_1`.
        let mut counters = std::collections::HashMap::<&str, usize>::new();
        let mut next_name = |prefix: &'static str| {
            let n = counters.entry(prefix).or_default();
            let name = match *n {
                0 => prefix.to_string(),
                k => format!("{prefix}_{k}"),
            };
            *n += 1;
            name
        };
        let (mut params, mut activations) = (0usize, 0usize);
        let mut out: Vec<LayerInfo> = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            let at = format!("layer {} ({})", i + 1, layer.class_name());
            check_values(&at, layer)?;
            // A wrapped layer is built (and named) before its wrapper.
            let inner_name = match layer {
                LayerSpec::Bidirectional { layer: inner, .. } => next_name(inner.name_prefix()),
                _ => String::new(),
            };
            let name = next_name(layer.name_prefix());
            let (output, tensors, flops, saved) = match out.last() {
                None => {
                    let LayerSpec::Embedding {
                        input_dim,
                        output_dim,
                    } = *layer
                    else {
                        unreachable!("checked above: the first layer is an Embedding")
                    };
                    let output = Shape::Seq {
                        steps: self.maxlen,
                        features: output_dim,
                    };
                    let t = tensor(&name, "embeddings", &[input_dim, output_dim]);
                    (output, vec![t], 0.0, 0)
                }
                Some(prev) => {
                    let input = Input {
                        at: &at,
                        shape: prev.output,
                        prev_at: format!("layer {} ({})", i, prev.class_name),
                        prev_recurrent: self.layers[i - 1].sequence_layer().is_some(),
                    };
                    next_layer(layer, &name, &inner_name, &input)?
                }
            };
            let layer_params = tensors
                .iter()
                .try_fold(0usize, |a, t| a.checked_add(t.checked_len()?));
            params = layer_params
                .and_then(|p| params.checked_add(p))
                .filter(|&p| p <= MAX_PARAMS)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "{at}: the model has more than {MAX_PARAMS} parameters by here: make it smaller"
                    )
                })?;
            let layer_activations = output.len().saturating_add(saved);
            activations = activations.saturating_add(layer_activations);
            let max_act = crate::model_file::MAX_ACTIVATIONS_PER_REVIEW;
            ensure!(
                activations <= max_act,
                "{at}: one sequence needs more than {max_act} activations by here: make the model or maxlen smaller"
            );
            out.push(LayerInfo {
                name,
                class_name: layer.class_name(),
                output,
                params: layer_params.unwrap_or_default(),
                tensors,
                flops,
                activations: layer_activations,
            });
        }
        head_of(&self.layers, &out)?;
        Ok(out)
    }

    /// What the output means: one sigmoid unit or K softmax units.
    pub fn head(&self) -> Result<Head> {
        head_of(&self.layers, &self.describe()?)
    }

    /// All parameter tensors in file order.
    pub fn tensors(&self) -> Result<Vec<TensorSpec>> {
        Ok(self
            .describe()?
            .into_iter()
            .flat_map(|l| l.tensors)
            .collect())
    }

    /// Each tensor's range in the one flat parameter buffer, in file order.
    pub fn layout(&self) -> Result<Vec<(TensorSpec, Range<usize>)>> {
        let mut start = 0;
        Ok(self
            .tensors()?
            .into_iter()
            .map(|t| {
                let r = start..start + t.len();
                start = r.end;
                (t, r)
            })
            .collect())
    }

    /// The flat parameter buffer as (name, shape, values) tensors, in file order.
    pub fn named(&self, params: &[f32]) -> Result<Vec<NamedTensor>> {
        let layout = self.layout()?;
        let total = layout.last().map_or(0, |(_, r)| r.end);
        ensure!(
            params.len() == total,
            "{} parameters given, the layers have {total}",
            params.len()
        );
        Ok(layout
            .into_iter()
            .map(|(t, r)| (t.name, t.shape, params[r].to_vec()))
            .collect())
    }

    /// The flat parameter buffer from named tensors (as a model file holds them); every tensor
    /// of the layers must be there with its shape.
    pub fn from_named(&self, tensors: &[NamedTensor]) -> Result<Vec<f32>> {
        let layout = self.layout()?;
        let mut params = vec![0.0; layout.last().map_or(0, |(_, r)| r.end)];
        for (t, r) in layout {
            let Some((_, shape, values)) = tensors.iter().find(|n| n.0 == t.name) else {
                bail!("tensor {} is missing", t.name);
            };
            ensure!(
                *shape == t.shape && values.len() == r.len(),
                "tensor {} has shape {shape:?}; the model's layers need {:?}",
                t.name,
                t.shape
            );
            params[r].copy_from_slice(values);
        }
        Ok(params)
    }

    /// Total parameters (Keras's `count_params()`).
    pub fn param_count(&self) -> Result<usize> {
        Ok(self.describe()?.iter().map(|l| l.params).sum())
    }

    /// FLOPs of one sequence's forward pass.
    pub fn forward_flops(&self) -> Result<f64> {
        Ok(self.describe()?.iter().map(|l| l.flops).sum())
    }

    /// FLOPs of one sequence's training step: the backward pass costs about twice the forward.
    pub fn train_flops(&self) -> Result<f64> {
        Ok(3.0 * self.forward_flops()?)
    }

    /// Sets the Embedding's `input_dim` (the data step knows it once its vocabulary, and
    /// fasttext's n-gram table, are built).
    pub fn set_input_dim(&mut self, n: usize) {
        if let Some(LayerSpec::Embedding { input_dim, .. }) = self.layers.first_mut() {
            *input_dim = n;
        }
    }

    /// The Embedding's `(input_dim, output_dim)` (every checked model starts with one).
    pub fn embedding(&self) -> Option<(usize, usize)> {
        match self.layers.first() {
            Some(&LayerSpec::Embedding {
                input_dim,
                output_dim,
            }) => Some((input_dim, output_dim)),
            _ => None,
        }
    }

    /// Makes a preset's output fit `classes` labels: its last Dense layer (and a sigmoid
    /// Activation after it) becomes Dense(1, sigmoid) for two classes, K softmax units for K > 2,
    /// K sigmoid units for K labels of which a text may have several (`multi_label`).
    /// This is the one place a preset's head is replaced; a model from a file is never changed.
    pub fn set_classes(&mut self, classes: usize, multi_label: bool) {
        let (units, act) = match (classes, multi_label) {
            (k, true) => (k, Activation::Sigmoid),
            (2, false) => (1, Activation::Sigmoid),
            (k, false) => (k, Activation::Softmax),
        };
        let Some(at) = self
            .layers
            .iter()
            .rposition(|l| matches!(l, LayerSpec::Dense { .. }))
        else {
            return;
        };
        let after = self.layers[at + 1..].iter_mut().find_map(|l| match l {
            LayerSpec::Activation { activation } => Some(activation),
            _ => None,
        });
        let dense_act = match after {
            Some(a) => {
                *a = act;
                Activation::Linear
            }
            None => act,
        };
        self.layers[at] = LayerSpec::Dense {
            units,
            activation: dense_act,
        };
    }

    /// Sets the Embedding's `output_dim`.
    pub fn set_embed_dim(&mut self, n: usize) {
        if let Some(LayerSpec::Embedding { output_dim, .. }) = self.layers.first_mut() {
            *output_dim = n;
        }
    }

    /// The arguments of every LSTM and GRU, wrapped ones included, in order.
    pub fn recurrent_mut(&mut self) -> impl Iterator<Item = &mut Recurrent> {
        self.layers.iter_mut().filter_map(|l| {
            let l = match l {
                LayerSpec::Bidirectional { layer, .. } => layer.as_mut(),
                other => other,
            };
            match l {
                LayerSpec::LSTM(r) | LayerSpec::GRU(r) => Some(r),
                _ => None,
            }
        })
    }
}

/// `name/suffix` with `shape`.
fn tensor(name: &str, suffix: &str, shape: &[usize]) -> TensorSpec {
    TensorSpec {
        name: format!("{name}/{suffix}"),
        shape: shape.to_vec(),
    }
}

impl TensorSpec {
    fn checked_len(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
    }
}

/// Argument values this tool cannot run, whatever the layers around.
fn check_values(at: &str, layer: &LayerSpec) -> Result<()> {
    let at_least_1 = |arg: &str, v: usize| -> Result<()> {
        ensure!(v >= 1, "{at}: {arg} {v} must be at least 1");
        Ok(())
    };
    let fraction = |arg: &str, v: f32| -> Result<()> {
        ensure!(
            (0.0..1.0).contains(&v),
            "{at}: {arg} {v} is outside [0, 1): use a fraction such as 0.2"
        );
        Ok(())
    };
    match layer {
        LayerSpec::Embedding {
            input_dim,
            output_dim,
        } => {
            at_least_1("input_dim", *input_dim)?;
            at_least_1("output_dim", *output_dim)?;
        }
        LayerSpec::LSTM(r) | LayerSpec::GRU(r) => {
            at_least_1("units", r.units)?;
            fraction("dropout", r.dropout)?;
            fraction("recurrent_dropout", r.recurrent_dropout)?;
        }
        LayerSpec::Bidirectional { layer, .. } => {
            ensure!(
                layer.recurrent().is_some(),
                "{at}: layer must be an LSTM or GRU, not {}",
                layer.class_name()
            );
            check_values(&format!("{at} layer ({})", layer.class_name()), layer)?;
        }
        LayerSpec::Dropout { rate } => fraction("rate", *rate)?,
        LayerSpec::Dense { units, .. } => at_least_1("units", *units)?,
        LayerSpec::Activation { .. } => {}
        LayerSpec::Conv1D {
            filters,
            kernel_size,
            strides,
            ..
        } => {
            at_least_1("filters", *filters)?;
            at_least_1("kernel_size", *kernel_size)?;
            ensure!(
                *strides == 1,
                "{at}: strides {strides} is not supported; only strides 1"
            );
        }
        LayerSpec::MaxPooling1D {
            pool_size, strides, ..
        } => {
            at_least_1("pool_size", *pool_size)?;
            ensure!(
                strides == pool_size,
                "{at}: strides {strides} is not supported; only strides equal to pool_size ({pool_size})"
            );
        }
        LayerSpec::GlobalMaxPooling1D {} | LayerSpec::GlobalAveragePooling1D {} => {}
    }
    Ok(())
}

/// What a layer after the first gets.
struct Input<'a> {
    /// `layer 3 (LSTM)`
    at: &'a str,
    shape: Shape,
    /// `layer 2 (Dense)`
    prev_at: String,
    /// Whether the previous layer is an LSTM, GRU or Bidirectional.
    prev_recurrent: bool,
}

impl Input<'_> {
    /// (steps, features) of a 3-D input, or the error naming both layers.
    fn sequence(&self) -> Result<(usize, usize)> {
        match self.shape {
            Shape::Seq { steps, features } => Ok((steps, features)),
            Shape::Flat { .. } => {
                let fix = if self.prev_recurrent {
                    format!(": set return_sequences=True on {}", self.prev_at)
                } else {
                    String::new()
                };
                bail!(
                    "{} needs a sequence (None, steps, features), but {} gives {}{fix}",
                    self.at,
                    self.prev_at,
                    self.shape
                )
            }
        }
    }
}

/// (output shape, tensors, forward FLOPs, values saved besides the output) of a layer after
/// the first.
fn next_layer(
    layer: &LayerSpec,
    name: &str,
    inner_name: &str,
    input: &Input,
) -> Result<(Shape, Vec<TensorSpec>, f64, usize)> {
    let at = input.at;
    let same = (input.shape, vec![], 0.0, 0);
    Ok(match layer {
        LayerSpec::Embedding { .. } => bail!("{at}: only the first layer may be an Embedding"),
        LayerSpec::LSTM(_) | LayerSpec::GRU(_) => {
            let (t, d) = input.sequence()?;
            recurrent(layer, name, t, d, 1)
        }
        LayerSpec::Bidirectional { layer: inner, .. } => {
            let (t, d) = input.sequence()?;
            let (_, mut tensors, flops, saved) =
                recurrent(inner, &format!("{name}/forward_{inner_name}"), t, d, 2);
            let (output, backward, _, _) =
                recurrent(inner, &format!("{name}/backward_{inner_name}"), t, d, 2);
            tensors.extend(backward);
            (output, tensors, 2.0 * flops, saved.saturating_mul(2))
        }
        LayerSpec::Dropout { .. } | LayerSpec::Activation { .. } => same,
        LayerSpec::Dense { units, .. } => {
            let d = match input.shape {
                Shape::Flat { features } => features,
                Shape::Seq { .. } => bail!(
                    "{at} gets the sequence {} from {}, but Dense here takes only (None, features): \
                     put GlobalMaxPooling1D or GlobalAveragePooling1D before it, or use \
                     return_sequences=False on the recurrent layer",
                    input.shape,
                    input.prev_at
                ),
            };
            let tensors = vec![
                tensor(name, "kernel", &[d, *units]),
                tensor(name, "bias", &[*units]),
            ];
            let flops = 2.0 * d as f64 * *units as f64;
            (Shape::Flat { features: *units }, tensors, flops, 0)
        }
        LayerSpec::Conv1D {
            filters,
            kernel_size: k,
            ..
        } => {
            let (t, c) = input.sequence()?;
            ensure!(
                *k <= t,
                "{at}: kernel_size {k} is longer than the {t} steps it gets from {}",
                input.prev_at
            );
            let steps = t - k + 1;
            let tensors = vec![
                tensor(name, "kernel", &[*k, c, *filters]),
                tensor(name, "bias", &[*filters]),
            ];
            let flops = steps as f64 * 2.0 * (*k as f64) * c as f64 * *filters as f64;
            let output = Shape::Seq {
                steps,
                features: *filters,
            };
            (output, tensors, flops, 0)
        }
        LayerSpec::MaxPooling1D {
            pool_size, strides, ..
        } => {
            let (t, c) = input.sequence()?;
            ensure!(
                *pool_size <= t,
                "{at}: pool_size {pool_size} leaves no steps from the {t} it gets from {}",
                input.prev_at
            );
            let output = Shape::Seq {
                steps: (t - pool_size) / strides + 1,
                features: c,
            };
            (output, vec![], 0.0, 0)
        }
        LayerSpec::GlobalMaxPooling1D {} | LayerSpec::GlobalAveragePooling1D {} => {
            let (_, c) = input.sequence()?;
            (Shape::Flat { features: c }, vec![], 0.0, 0)
        }
    })
}

/// An LSTM or GRU named `name` on `t` steps of `d` features, run `directions` times side by
/// side (2 in a Bidirectional, which concatenates their outputs).
fn recurrent(
    layer: &LayerSpec,
    name: &str,
    t: usize,
    d: usize,
    directions: usize,
) -> (Shape, Vec<TensorSpec>, f64, usize) {
    let (r, gates) = layer.recurrent().expect("checked: an LSTM or GRU");
    let (h, gh) = (r.units, gates.saturating_mul(r.units));
    let bias = match layer {
        // reset_after: separate input and recurrent biases.
        LayerSpec::GRU(_) => vec![2, gh],
        _ => vec![gh],
    };
    let tensors = vec![
        tensor(name, "kernel", &[d, gh]),
        tensor(name, "recurrent_kernel", &[h, gh]),
        tensor(name, "bias", &bias),
    ];
    let flops = t as f64 * (2.0 * d as f64 * gh as f64 + 2.0 * h as f64 * gh as f64);
    let features = h.saturating_mul(directions);
    let output = if r.return_sequences {
        Shape::Seq { steps: t, features }
    } else {
        Shape::Flat { features }
    };
    (output, tensors, flops, t.saturating_mul(gh))
}

/// The model must end in (None, 1) through a sigmoid or (None, K >= 2) through a softmax; the
/// last Dense or Activation decides (only Dropout can follow it: the rest need a sequence).
fn head_of(layers: &[LayerSpec], info: &[LayerInfo]) -> Result<Head> {
    let end = info.last().expect("at least the Embedding").output;
    let Shape::Flat { features: k } = end else {
        bail!(
            "the model ends in the sequence {end}; it must end in (None, 1) with a sigmoid or \
             (None, K) with a softmax or sigmoid: add GlobalMaxPooling1D and a Dense layer"
        )
    };
    let last = layers.iter().enumerate().rev().find_map(|(i, l)| match l {
        LayerSpec::Dense { activation, .. } | LayerSpec::Activation { activation } => {
            Some((i, *activation))
        }
        _ => None,
    });
    match (last, k) {
        (Some((_, Activation::Sigmoid)), 1) => Ok(Head::Sigmoid),
        (Some((_, Activation::Softmax)), k) if k >= 2 => Ok(Head::Softmax(k)),
        (Some((_, Activation::Sigmoid)), k) if k >= 2 => Ok(Head::Sigmoids(k)),
        (Some((i, act)), k) => bail!(
            "layer {} ({}) makes the output {} with activation '{}'; the model must end in 1 unit \
             with 'sigmoid' (two classes), K >= 2 units with 'softmax' (K classes) or K >= 2 \
             units with 'sigmoid' (K labels, several per text)",
            i + 1,
            layers[i].class_name(),
            Shape::Flat { features: k },
            act.name()
        ),
        (None, _) => bail!(
            "the model ends in {end} without a Dense layer; it must end in Dense(1, \
             activation='sigmoid'), Dense(K, activation='softmax') or Dense(K, \
             activation='sigmoid')"
        ),
    }
}
