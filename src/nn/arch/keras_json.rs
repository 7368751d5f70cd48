//! `--arch-file`: a JSON list of `{"class_name": ..., "config": {...}}` layers, or the whole
//! file Keras 3 writes with `model.to_json()` for a Sequential model. Settings this tool does
//! not model must be at Keras's defaults; anything else is refused in one line naming the
//! layer (1-based, the InputLayer not counted, as in the summary), its class and the argument.

use super::{Activation, Arch, LayerSpec, MergeMode, Padding, Recurrent, SUPPORTED};
use anyhow::{anyhow, bail, Result};
use serde_json::{Map, Value};
use std::io::Read;
use std::path::Path;

/// An arch file is a few KB; anything far larger is not one.
const MAX_FILE_BYTES: u64 = 16 << 20;

/// The layers an arch file describes, and the sequence length its InputLayer gives, if any.
#[derive(Clone, Debug, PartialEq)]
pub struct ArchFile {
    pub layers: Vec<LayerSpec>,
    pub maxlen: Option<usize>,
}

impl ArchFile {
    /// The checked model, on the file's maxlen or else `default_maxlen`.
    pub fn into_arch(self, default_maxlen: usize) -> Result<Arch> {
        Arch::new(self.layers, self.maxlen.unwrap_or(default_maxlen))
    }
}

/// The checked model in the file at `path`, on the sequence length its InputLayer gives or
/// else `default_maxlen`; every error is one line starting `--arch-file PATH:`.
pub fn read_arch_file(path: &Path, default_maxlen: usize) -> Result<Arch> {
    let read = || -> Result<String> {
        let file = std::fs::File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow!(
                "no such file; give a JSON list of layers or the file Keras model.to_json() writes"
            ),
            _ => anyhow!("cannot read it ({e})"),
        })?;
        let mut bytes = vec![];
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| anyhow!("cannot read it ({e})"))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            bail!(
                "larger than {} MiB; a model description is a few KB",
                MAX_FILE_BYTES >> 20
            );
        }
        String::from_utf8(bytes).map_err(|_| anyhow!("not UTF-8 text, so not JSON"))
    };
    read()
        .and_then(|text| parse_arch_json(&text)?.into_arch(default_maxlen))
        .map_err(|e| anyhow!("--arch-file {}: {e}", path.display()))
}

/// Parses the text of an arch file (see the module comment).
pub fn parse_arch_json(text: &str) -> Result<ArchFile> {
    let top: Value = serde_json::from_str(text).map_err(|e| anyhow!("not JSON: {e}"))?;
    let expected = "expected a JSON list of layers ([{\"class_name\": \"Embedding\", \"config\": {...}}, ...]) \
                    or a Keras Sequential model (model.to_json())";
    let (layers, mut maxlen) = match &top {
        Value::Array(layers) => (layers, None),
        Value::Object(obj) => match obj.get("class_name").and_then(Value::as_str) {
            Some("Sequential") => {
                let config = obj.get("config");
                let Some(layers) = config.and_then(|c| c.get("layers")).and_then(Value::as_array)
                else {
                    bail!("the Sequential model has no config.layers list")
                };
                // Used when there is no InputLayer.
                let built = config.and_then(|c| c.get("build_input_shape"));
                let maxlen = match built {
                    Some(s) if !s.is_null() => input_length("build_input_shape", s)?,
                    _ => None,
                };
                (layers, maxlen)
            }
            Some(other) => bail!(
                "a Keras {other} model is not supported: only a Sequential model or a list of layers"
            ),
            None => bail!("{expected}; got an object without \"class_name\""),
        },
        other => bail!("{expected}; got {}", kind(other)),
    };
    let mut specs = vec![];
    for value in layers {
        let at = format!("layer {}", specs.len() + 1);
        let (class, config) = class_and_config(&at, value)?;
        if class == "InputLayer" {
            if !specs.is_empty() {
                bail!("{at} (InputLayer): an InputLayer may only come first");
            }
            let shape = config
                .get("batch_shape")
                .or_else(|| config.get("batch_input_shape"));
            maxlen = match shape {
                Some(s) => input_length("InputLayer batch_shape", s)?,
                None => bail!("InputLayer: batch_shape is missing; expected [null, maxlen]"),
            };
            continue;
        }
        specs.push(parse_layer(&at, class, config, false)?);
    }
    if specs.is_empty() {
        bail!("no layers: the model must start with an Embedding");
    }
    Ok(ArchFile {
        layers: specs,
        maxlen,
    })
}

/// `[null, maxlen]` -> maxlen (`[null, null]`: any length, so none given).
fn input_length(what: &str, shape: &Value) -> Result<Option<usize>> {
    match shape.as_array().map(Vec::as_slice) {
        Some([Value::Null, Value::Null]) => Ok(None),
        Some([Value::Null, n]) => match n.as_u64() {
            Some(n) => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
            None => bail!("{what} must be [null, maxlen], got {}", short(shape)),
        },
        _ => bail!(
            "{what} must be [null, maxlen] (a batch of token id sequences), got {}",
            short(shape)
        ),
    }
}

/// The class name and config of one `{"class_name": ..., "config": {...}}` entry.
fn class_and_config<'a>(at: &str, value: &'a Value) -> Result<(&'a str, &'a Map<String, Value>)> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    let Some(obj) = value.as_object() else {
        bail!(
            "{at}: expected an object {{\"class_name\": ..., \"config\": {{...}}}}, got {}",
            short(value)
        )
    };
    let Some(class) = obj.get("class_name").and_then(Value::as_str) else {
        bail!("{at}: \"class_name\" is missing or not a string")
    };
    let config = match obj.get("config") {
        None | Some(Value::Null) => EMPTY.get_or_init(Map::new),
        Some(Value::Object(c)) => c,
        Some(other) => bail!(
            "{at} ({class}): \"config\" must be an object, got {}",
            short(other)
        ),
    };
    Ok((class, config))
}

/// One layer. `backward`: the backward_layer of a Bidirectional (go_backwards true).
fn parse_layer(
    at: &str,
    class: &str,
    config: &Map<String, Value>,
    backward: bool,
) -> Result<LayerSpec> {
    let c = Config {
        at: format!("{at} ({class})"),
        map: config,
    };
    c.flag_is("trainable", true)?;
    Ok(match class {
        "Embedding" => {
            c.initializer("embeddings_initializer", "RandomUniform")?;
            c.flag_is("mask_zero", false)?;
            c.flag_is("sparse", false)?;
            c.absent(&[
                "embeddings_regularizer",
                "activity_regularizer",
                "embeddings_constraint",
                "lora_rank",
                "quantization_config",
            ])?;
            LayerSpec::Embedding {
                input_dim: c.count("input_dim", None)?,
                output_dim: c.count("output_dim", None)?,
            }
        }
        "LSTM" | "GRU" => {
            c.string_is("activation", "tanh")?;
            c.string_is("recurrent_activation", "sigmoid")?;
            c.flag_is("use_bias", true)?;
            c.initializer("kernel_initializer", "GlorotUniform")?;
            c.initializer("recurrent_initializer", "Orthogonal")?;
            c.initializer("bias_initializer", "Zeros")?;
            c.absent(&[
                "kernel_regularizer",
                "recurrent_regularizer",
                "bias_regularizer",
                "activity_regularizer",
                "kernel_constraint",
                "recurrent_constraint",
                "bias_constraint",
            ])?;
            c.flag_is("return_state", false)?;
            c.flag_is("go_backwards", backward)?;
            c.flag_is("stateful", false)?;
            let r = Recurrent {
                units: c.count("units", None)?,
                dropout: c.number("dropout", 0.0)?,
                recurrent_dropout: c.number("recurrent_dropout", 0.0)?,
                return_sequences: c.flag("return_sequences", false)?,
            };
            if class == "LSTM" {
                c.flag_is("unit_forget_bias", true)?;
                LayerSpec::LSTM(r)
            } else {
                c.flag_is("reset_after", true)?;
                LayerSpec::GRU(r)
            }
        }
        "Bidirectional" => {
            c.string_is("merge_mode", "concat")?;
            let parse_inner = |key: &str, backward: bool| -> Result<LayerSpec> {
                let value = c.map.get(key).unwrap_or(&Value::Null);
                let (inner_class, config) = class_and_config(&format!("{}: {key}", c.at), value)?;
                if !matches!(inner_class, "LSTM" | "GRU") {
                    bail!("{}: {key} must be an LSTM or GRU, not {inner_class}", c.at);
                }
                parse_layer(
                    &format!("{at} (Bidirectional) {key}"),
                    inner_class,
                    config,
                    backward,
                )
            };
            let layer = parse_inner("layer", false)?;
            if c.map.get("backward_layer").is_some_and(|v| !v.is_null())
                && parse_inner("backward_layer", true)? != layer
            {
                bail!(
                    "{}: backward_layer differs from layer; only a backward copy of layer is supported",
                    c.at
                );
            }
            LayerSpec::Bidirectional {
                layer: Box::new(layer),
                merge_mode: MergeMode::Concat,
            }
        }
        "Dropout" => {
            c.absent(&["noise_shape"])?;
            LayerSpec::Dropout {
                rate: c.number("rate", f32::NAN).and_then(|r| {
                    if r.is_nan() {
                        bail!("{}: rate is missing", c.at)
                    }
                    Ok(r)
                })?,
            }
        }
        "Activation" => LayerSpec::Activation {
            activation: c.activation(true)?,
        },
        "Dense" => {
            c.dense_defaults()?;
            LayerSpec::Dense {
                units: c.count("units", None)?,
                activation: c.activation(false)?,
            }
        }
        "Conv1D" => {
            c.dense_defaults()?;
            c.string_is("padding", "valid")?;
            c.string_is("data_format", "channels_last")?;
            c.count_is("dilation_rate", 1)?;
            c.count_is("groups", 1)?;
            LayerSpec::Conv1D {
                filters: c.count("filters", None)?,
                kernel_size: c.count("kernel_size", None)?,
                padding: Padding::Valid,
                strides: c.count("strides", Some(1))?,
                activation: c.activation(false)?,
            }
        }
        "MaxPooling1D" => {
            c.string_is("padding", "valid")?;
            c.string_is("data_format", "channels_last")?;
            let pool_size = c.count("pool_size", Some(2))?;
            LayerSpec::MaxPooling1D {
                pool_size,
                strides: c.count("strides", Some(pool_size))?,
                padding: Padding::Valid,
            }
        }
        "GlobalMaxPooling1D" | "GlobalAveragePooling1D" => {
            c.string_is("data_format", "channels_last")?;
            c.flag_is("keepdims", false)?;
            if class == "GlobalMaxPooling1D" {
                LayerSpec::GlobalMaxPooling1D {}
            } else {
                LayerSpec::GlobalAveragePooling1D {}
            }
        }
        _ => bail!("{at} ({class}) is not supported; supported: {SUPPORTED}"),
    })
}

/// One layer's config, read with errors naming the layer and the argument.
struct Config<'a> {
    /// `layer 3 (Dense)`
    at: String,
    map: &'a Map<String, Value>,
}

impl Config<'_> {
    /// The value of `key`; null counts as not given (Keras writes null for "the default").
    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// A count: `n` or Keras's one-element tuple `[n]`; `default` when not given.
    fn count(&self, key: &str, default: Option<usize>) -> Result<usize> {
        let Some(v) = self.get(key) else {
            return default.ok_or_else(|| anyhow!("{}: {key} is missing", self.at));
        };
        let n = match v {
            Value::Array(a) if a.len() == 1 => a[0].as_u64(),
            v => v.as_u64(),
        };
        n.map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            .ok_or_else(|| {
                anyhow!(
                    "{}: {key} must be a whole number, got {}",
                    self.at,
                    short(v)
                )
            })
    }

    fn number(&self, key: &str, default: f32) -> Result<f32> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .map(|x| x as f32)
                .ok_or_else(|| anyhow!("{}: {key} must be a number, got {}", self.at, short(v))),
        }
    }

    fn flag(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| {
                anyhow!("{}: {key} must be true or false, got {}", self.at, short(v))
            }),
        }
    }

    /// The `activation` argument: required for an Activation layer, else linear by default.
    fn activation(&self, required: bool) -> Result<Activation> {
        let names = || {
            Activation::ALL
                .iter()
                .map(|a| a.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Some(v) = self.get("activation") else {
            if required {
                bail!("{}: activation is missing", self.at);
            }
            return Ok(Activation::Linear);
        };
        let Some(name) = v.as_str() else {
            bail!(
                "{}: activation must be one of {}, got {}",
                self.at,
                names(),
                short(v)
            )
        };
        Activation::ALL
            .into_iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| {
                anyhow!(
                    "{}: activation '{name}' is not supported; supported: {}",
                    self.at,
                    names()
                )
            })
    }

    /// A setting this tool has only at `want` (its Keras default).
    fn flag_is(&self, key: &str, want: bool) -> Result<()> {
        if self.flag(key, want)? != want {
            bail!("{}: {key} {} is not supported; only {want}", self.at, !want);
        }
        Ok(())
    }

    fn count_is(&self, key: &str, want: usize) -> Result<()> {
        let got = self.count(key, Some(want))?;
        if got != want {
            bail!("{}: {key} {got} is not supported; only {want}", self.at);
        }
        Ok(())
    }

    /// A string setting this tool has only at `want`.
    fn string_is(&self, key: &str, want: &str) -> Result<()> {
        match self.map.get(key) {
            None => Ok(()),
            Some(Value::String(s)) if s == want => Ok(()),
            Some(Value::String(s)) => {
                bail!("{}: {key} '{s}' is not supported; only '{want}'", self.at)
            }
            Some(v) => bail!(
                "{}: {key} {} is not supported; only '{want}'",
                self.at,
                short(v)
            ),
        }
    }

    /// Settings this tool does not have (regularizers, constraints, ...): must be null.
    fn absent(&self, keys: &[&str]) -> Result<()> {
        for key in keys {
            if let Some(v) = self.get(key) {
                bail!(
                    "{}: {key} {} is not supported; only null",
                    self.at,
                    short(v)
                );
            }
        }
        Ok(())
    }

    /// An initializer: Keras's default `class` (as `{"class_name": ...}` or a name like
    /// "glorot_uniform"), which is what this tool initialises with.
    fn initializer(&self, key: &str, class: &str) -> Result<()> {
        let Some(v) = self.get(key) else {
            return Ok(());
        };
        let name = match v {
            Value::String(s) => s.replace('_', ""),
            v => v
                .get("class_name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        };
        if !name.eq_ignore_ascii_case(class) {
            bail!(
                "{}: {key} {} is not supported; only {class}",
                self.at,
                short(v)
            );
        }
        Ok(())
    }

    /// What Dense and Conv1D share: bias, Keras's default initializers, nothing else.
    fn dense_defaults(&self) -> Result<()> {
        self.flag_is("use_bias", true)?;
        self.initializer("kernel_initializer", "GlorotUniform")?;
        self.initializer("bias_initializer", "Zeros")?;
        self.absent(&[
            "kernel_regularizer",
            "bias_regularizer",
            "activity_regularizer",
            "kernel_constraint",
            "bias_constraint",
            "lora_rank",
            "quantization_config",
        ])
    }
}

/// A value as the user wrote it, cut short for a one-line message.
fn short(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "true or false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
