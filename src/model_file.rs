//! The self-contained, versioned model file: one safetensors file holding the weights, the model
//! configuration, the vocabulary and the text-preprocessing settings, so `predict` works on a
//! machine that has never seen the dataset.
//!
//! Layout (the safetensors format, <https://github.com/huggingface/safetensors>): 8 bytes of
//! little-endian u64 header length N, N bytes of JSON header, then the raw tensor data. Tensors are
//! f32 little-endian, row-major, named and shaped as the model's [`Arch::tensors`] (Keras's layer
//! weights and names: `lstm/kernel`, `bidirectional/forward_lstm/kernel`, ...). The header's
//! `__metadata__` holds string values: `format`, `format_version`, `arch` (the layers, as
//! Keras's `{"class_name", "config"}` objects, and maxlen), `labels`, `task` (`binary`,
//! `multi-class` or `multi-label`, as the output layer makes it; files without it are binary),
//! `preprocessing`, `vocabulary` and, when known, `training`.
//!
//! Format 1 (the tutorial's model only) stored a `config` ([`ModelConfig`]) instead of `arch`
//! and `labels`; it still loads, as the layers it describes and the labels neg, pos.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, ErrorKind, Read};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, ensure, Context, Result};
use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::data::ngrams::NgramTable;
use crate::data::{for_each_token, Preprocessing};
use crate::nn::arch::Arch;
use crate::nn::ModelConfig;
use crate::validate::{self, Section};

/// The value of the `format` metadata key; anything else is not our file.
pub const FORMAT_NAME: &str = "imdb-lstm";
/// The newest file layout this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;

/// The labels of a model without any (format 1, the IMDB reviews): index 1 is the positive class.
pub fn imdb_labels() -> Vec<String> {
    vec!["neg".to_string(), "pos".to_string()]
}

/// Mirrors the safetensors crate's own limit, so we can tell "not safetensors" from "truncated".
const MAX_HEADER_LEN: u64 = 100_000_000;

pub use crate::validate::{MAX_ACTIVATIONS_PER_REVIEW, MAX_MAXLEN};

/// Facts about the training run, stored in the file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingFacts {
    /// Epochs trained.
    pub epochs: usize,
    /// The epoch (1-based) with the lowest val_loss, when there was validation data.
    pub best_epoch: Option<usize>,
    /// Last epoch's training loss.
    pub loss: f64,
    /// Last epoch's training accuracy.
    pub accuracy: f64,
    /// Last epoch's validation loss, if any.
    pub val_loss: Option<f64>,
    /// Last epoch's validation accuracy, if any.
    pub val_accuracy: Option<f64>,
    /// The seed the run used.
    pub seed: u64,
    /// When the model was saved, RFC 3339 in UTC (`2026-01-31T12:34:56Z`).
    pub date: String,
    /// The imdb-lstm version that trained it (`env!("CARGO_PKG_VERSION")`).
    pub program_version: String,
}

impl TrainingFacts {
    /// The current time as RFC 3339 UTC with whole seconds, e.g. `2026-01-31T12:34:56Z`.
    pub fn now_date() -> String {
        // A clock before 1970 is a misconfigured machine; report the epoch rather than fail a save.
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        rfc3339_utc(secs)
    }
}

/// Formats seconds since the Unix epoch as RFC 3339 UTC (proleptic Gregorian calendar).
pub fn rfc3339_utc(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 -> (year, month, day); Howard Hinnant's `civil_from_days`, avoiding a
/// date crate for one conversion.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Everything `predict` needs, in one value: what [`save`] writes and [`load`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelFile {
    /// The model's layers and the sequence length it reads.
    pub arch: Arch,
    /// The class names in output order (a sigmoid head's probability is of `labels[1]`).
    pub labels: Vec<String>,
    /// The text-to-ids settings training used.
    pub preprocessing: Preprocessing,
    /// Kept words in rank order (words[0] = rank 1 = id index_from + 1).
    pub vocabulary: Vec<String>,
    /// The n-gram table training built, when `preprocessing.ngrams` > 1 (metadata `ngrams`).
    pub ngrams: Option<NgramTable>,
    /// Facts about the training run, when the model was trained (absent for e.g. a fresh model).
    pub training: Option<TrainingFacts>,
    /// (name, shape, values), exactly in [`Arch::tensors`] order, names and shapes.
    pub tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
}

impl ModelFile {
    /// The values of the tensor called `name`, if present.
    pub fn tensor(&self, name: &str) -> Option<&[f32]> {
        self.tensors
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, v)| v.as_slice())
    }
}

/// Writes `model` to `path` as a safetensors file (see the module docs for the layout).
///
/// The model is validated first (tensor names, shapes and finiteness, vocabulary size), so a file
/// that [`load`] would reject is never written. The bytes go to a temp file in the same folder,
/// which is fsynced and renamed into place: a crash leaves the old file or the new one, never a
/// half-written one.
pub fn save(path: &Path, model: &ModelFile) -> Result<()> {
    let shown = path.display();
    validate::arch_and_preprocessing(&model.arch, &model.preprocessing)
        .map_err(|e| anyhow!("cannot save model to {shown}: {}", e.in_file(section_key)))?;
    check_vocabulary(&model.preprocessing, &model.vocabulary)
        .with_context(|| format!("cannot save model to {shown}"))?;
    check_labels(&model.arch, &model.labels)
        .with_context(|| format!("cannot save model to {shown}"))?;
    check_ngrams(&model.arch, &model.preprocessing, model.ngrams.as_ref())
        .with_context(|| format!("cannot save model to {shown}"))?;
    if let Some(t) = &model.training {
        check_training(t).with_context(|| format!("cannot save model to {shown}"))?;
    }
    let expected = model.arch.tensors()?;
    if model.tensors.len() != expected.len() {
        bail!(
            "cannot save model to {shown}: it has {} tensors, the model's layers need {} ({})",
            model.tensors.len(),
            expected.len(),
            names(&expected)
        );
    }
    for ((name, shape, values), want) in model.tensors.iter().zip(&expected) {
        if *name != want.name {
            bail!("cannot save model to {shown}: tensor \"{name}\" is where \"{}\" belongs (tensors must follow the layers' order)", want.name);
        }
        if *shape != want.shape {
            bail!("cannot save model to {shown}: tensor \"{name}\" has shape {shape:?}, the model's layers need {:?}", want.shape);
        }
        let n: usize = shape.iter().product();
        if values.len() != n {
            bail!(
                "cannot save model to {shown}: tensor \"{name}\" of shape {shape:?} has {} values, expected {n}",
                values.len()
            );
        }
        check_finite(name, values).with_context(|| format!("cannot save model to {shown}"))?;
    }

    let bytes = encode(model).with_context(|| format!("cannot save model to {shown}"))?;
    crate::atomic::write(path, &bytes).with_context(|| format!("cannot save model to {shown}"))
}

/// Serialises the (already validated) model into safetensors bytes.
fn encode(model: &ModelFile) -> Result<Vec<u8>> {
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), FORMAT_NAME.to_string());
    meta.insert("format_version".to_string(), FORMAT_VERSION.to_string());
    meta.insert("arch".to_string(), serde_json::to_string(&model.arch)?);
    meta.insert("labels".to_string(), serde_json::to_string(&model.labels)?);
    meta.insert("task".to_string(), task_of(&model.arch)?.to_string());
    if let Some(t) = &model.ngrams {
        meta.insert("ngrams".to_string(), serde_json::to_string(t)?);
    }
    meta.insert(
        "preprocessing".to_string(),
        serde_json::to_string(&model.preprocessing)?,
    );
    meta.insert(
        "vocabulary".to_string(),
        serde_json::to_string(&model.vocabulary)?,
    );
    if let Some(t) = &model.training {
        meta.insert("training".to_string(), serde_json::to_string(t)?);
    }

    // Little-endian bytes regardless of the host, as the format requires.
    let raw: Vec<Vec<u8>> = model
        .tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let mut views = Vec::with_capacity(raw.len());
    for ((name, shape, _), bytes) in model.tensors.iter().zip(&raw) {
        let view = TensorView::new(Dtype::F32, shape.clone(), bytes)
            .map_err(|e| anyhow!("tensor \"{name}\": {}", describe_st_error(&e)))?;
        views.push((name.as_str(), view));
    }
    safetensors::serialize(views, &Some(meta)).map_err(|e| {
        anyhow!(
            "safetensors serialisation failed: {}",
            describe_st_error(&e)
        )
    })
}

/// Reads and validates a model file written by [`save`]; every problem is one clear line naming
/// the path (and the tensor or version when relevant). Never panics, whatever the bytes.
pub fn load(path: &Path) -> Result<ModelFile> {
    let shown = path.display();
    let bytes = match read_safetensors(path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => bail!(
            "no such model file: {shown} (check the path, or train one with `imdb-lstm train`)"
        ),
        Err(e) if e.kind() == ErrorKind::InvalidData => bail!("{shown}: {e}"),
        Err(e) => bail!("cannot read model file {shown}: {e}"),
    };
    load_bytes(&bytes).map_err(|e| anyhow!("{shown}: {e:#}"))
}

/// Reads the safetensors file at `path` (a model file or a checkpoint), never more than its
/// header says it holds: the 8-byte length and the header first, then the data the header's
/// offsets cover. Devices, pipes and sockets (or links to them) are refused, since `/dev/zero`
/// or a FIFO never ends; bytes after the last tensor are an `InvalidData` error. A short file
/// comes back as it is, for the parser to explain.
pub fn read_safetensors(path: &Path) -> io::Result<Vec<u8>> {
    // Before opening: opening a FIFO blocks until something writes to it. A folder gets the
    // system's own error from the first read.
    let md = fs::metadata(path)?;
    if !md.is_file() && !md.is_dir() {
        return Err(io::Error::new(
            ErrorKind::InvalidInput,
            "it is not a regular file (a device, pipe or socket, or a link to one)",
        ));
    }
    let mut f = File::open(path)?;
    let mut bytes = Vec::new();
    (&mut f).take(8).read_to_end(&mut bytes)?;
    let Some(len_bytes) = bytes.get(..8) else {
        return Ok(bytes);
    };
    let header_len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
    if header_len > MAX_HEADER_LEN {
        return Ok(bytes);
    }
    (&mut f).take(header_len).read_to_end(&mut bytes)?;
    let Some(data_len) = data_len(&bytes[8..]) else {
        return Ok(bytes);
    };
    (&mut f).take(data_len).read_to_end(&mut bytes)?;
    if f.read(&mut [0u8])? > 0 {
        let extra = md.len().saturating_sub(bytes.len() as u64).max(1);
        return Err(io::Error::new(
            ErrorKind::InvalidData,
            trailing_bytes(extra, data_len),
        ));
    }
    Ok(bytes)
}

/// The size of the data section a safetensors header describes (the largest tensor end
/// offset), or None when the header is not a JSON object.
fn data_len(header: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(header).ok()?;
    let ends = v
        .as_object()?
        .iter()
        .filter(|(k, _)| k.as_str() != "__metadata__")
        .filter_map(|(_, t)| t.get("data_offsets")?.get(1)?.as_u64());
    Some(ends.max().unwrap_or(0))
}

/// The message for `extra` bytes after `need` bytes of tensor data.
fn trailing_bytes(extra: u64, need: u64) -> String {
    format!(
        "not a valid safetensors file: {extra} bytes follow the last tensor ({need} bytes of data \
         expected)"
    )
}

/// Parses and validates the bytes of a model file, as [`load`] does after reading it; errors do
/// not name a path (the caller adds it). Never panics, whatever the bytes (it is fuzzed).
pub fn load_bytes(bytes: &[u8]) -> Result<ModelFile> {
    let len = bytes.len();
    if len == 0 {
        bail!("the file is empty (0 bytes), not an imdb-lstm model file");
    }
    if len < 8 {
        bail!("the file is only {len} bytes: truncated, or not a safetensors model file");
    }
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&bytes[..8]);
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_LEN {
        bail!("not a safetensors file (its first 8 bytes give an impossible header length of {header_len} bytes)");
    }
    if len > 8 && bytes[8] != b'{' {
        bail!("not a safetensors file (the header does not start with '{{')");
    }
    let available = (len - 8) as u64;
    if header_len > available {
        bail!("truncated file: the header should be {header_len} bytes but only {available} bytes follow the length field");
    }

    // read_metadata validates the header JSON and that the offsets are contiguous and cover the
    // data section exactly, so every slice taken below is in bounds.
    let (n, header) = SafeTensors::read_metadata(bytes).map_err(|e| {
        let header = &bytes[8..8 + header_len as usize];
        match (e, missing_tensor(header)) {
            (
                SafeTensorError::MetadataIncompleteBuffer | SafeTensorError::InvalidOffset(_),
                Some(name),
            ) => anyhow!("tensor \"{name}\" is missing from the header"),
            (SafeTensorError::MetadataIncompleteBuffer, None) => {
                incomplete_buffer(bytes, header_len as usize)
            }
            (other, _) => anyhow!(
                "not a valid safetensors file: {}",
                describe_st_error(&other)
            ),
        }
    })?;
    let data = &bytes[8 + n..];
    let meta = header.metadata().as_ref().ok_or_else(|| {
        anyhow!("not an imdb-lstm model file (the safetensors header has no __metadata__)")
    })?;

    match meta.get("format") {
        Some(f) if f == FORMAT_NAME => {}
        Some(f) => {
            bail!("not an imdb-lstm model file (format is \"{f}\", expected \"{FORMAT_NAME}\")")
        }
        None => bail!("not an imdb-lstm model file (the metadata has no \"format\" key)"),
    }
    let version_text = meta
        .get("format_version")
        .ok_or_else(|| anyhow!("the metadata has no \"format_version\" key; this file is damaged or was not written by imdb-lstm"))?;
    let version: u32 = version_text.trim().parse().map_err(|_| {
        anyhow!("the format_version \"{version_text}\" is not a whole number; this file is damaged")
    })?;
    if version > FORMAT_VERSION {
        bail!("this model file has format version {version}; this imdb-lstm reads version {FORMAT_VERSION}: upgrade imdb-lstm");
    }
    if version == 0 {
        bail!("format version 0 does not exist (this imdb-lstm reads version {FORMAT_VERSION}); this file is damaged");
    }

    let preprocessing: Preprocessing = parse_json(meta, "preprocessing")?;
    let (arch, labels) = if version == 1 {
        let config: ModelConfig = parse_json(meta, "config")?;
        validate::model_and_preprocessing(&config, &preprocessing)
            .map_err(|e| anyhow!("{}", e.in_file(section_key_v1)))?;
        (config.arch(), imdb_labels())
    } else {
        let arch: Arch = parse_json(meta, "arch")?;
        validate::arch_and_preprocessing(&arch, &preprocessing)
            .map_err(|e| anyhow!("{}", e.in_file(section_key)))?;
        let labels: Vec<String> = parse_json(meta, "labels")?;
        check_labels(&arch, &labels)?;
        // Files written before the key are binary: their heads say so.
        if let Some(task) = meta.get("task") {
            let want = task_of(&arch)?;
            if task != want {
                bail!(
                    "the task is {task:?}, but the output layer makes the model {want:?}; the \
                     file is damaged, or was written by a newer imdb-lstm: upgrade imdb-lstm"
                );
            }
        }
        (arch, labels)
    };
    let vocabulary: Vec<String> = parse_json(meta, "vocabulary")?;
    check_vocabulary(&preprocessing, &vocabulary)?;
    let ngrams: Option<NgramTable> = match meta.get("ngrams") {
        Some(_) => Some(parse_json(meta, "ngrams")?),
        None => None,
    };
    check_ngrams(&arch, &preprocessing, ngrams.as_ref())?;
    let training: Option<TrainingFacts> = match meta.get("training") {
        Some(_) => Some(parse_json(meta, "training")?),
        None => None,
    };

    let expected = arch.tensors()?;
    let wanted: HashSet<&str> = expected.iter().map(|t| t.name.as_str()).collect();
    let mut stored: Vec<String> = header.tensors().into_keys().collect();
    stored.sort();
    if let Some(extra) = stored.iter().find(|n| !wanted.contains(n.as_str())) {
        bail!(
            "unexpected tensor \"{extra}\" (this model's layers have only {})",
            names(&expected)
        );
    }
    let mut tensors = Vec::with_capacity(expected.len());
    for spec in expected {
        let (name, shape) = (spec.name.as_str(), spec.shape);
        let info = header.info(name).ok_or_else(|| {
            anyhow!(
                "tensor \"{name}\" is missing (expected shape {shape:?} for the model's layers)"
            )
        })?;
        if info.dtype != Dtype::F32 {
            bail!("tensor \"{name}\" has dtype {:?}, expected F32", info.dtype);
        }
        if info.shape != shape {
            bail!(
                "tensor \"{name}\" has shape {:?}, expected {shape:?} for the model's layers ({})",
                info.shape,
                summary_of(&arch)
            );
        }
        let (start, end) = info.data_offsets;
        let raw = data.get(start..end).ok_or_else(|| {
            anyhow!("tensor \"{name}\" has data offsets {start}..{end} outside the data section")
        })?;
        // chunks_exact: the data need not be 4-byte aligned inside the file.
        let values: Vec<f32> = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        check_finite(name, &values)?;
        tensors.push((name.to_string(), shape, values));
    }

    Ok(ModelFile {
        arch,
        labels,
        preprocessing,
        vocabulary,
        ngrams,
        training,
        tensors,
    })
}

/// Explains a header/data size mismatch: truncated data, or bytes beyond the last tensor.
fn incomplete_buffer(bytes: &[u8], header_len: usize) -> anyhow::Error {
    let have = (bytes.len() - 8 - header_len) as u64;
    match data_len(&bytes[8..8 + header_len]) {
        Some(need) if have < need => anyhow!(
            "truncated file: the tensors need {need} bytes of data but only {have} are present"
        ),
        Some(need) => anyhow!(trailing_bytes(have - need, need)),
        None => anyhow!("not a valid safetensors file: the tensor offsets do not cover the data"),
    }
}

/// The first of the model's tensors that the header of an imdb-lstm model file does not list: a
/// tensor cut out of the header leaves a gap in the offsets, which the safetensors crate blames
/// on its neighbour.
fn missing_tensor(header: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(header).ok()?;
    let meta = v.get("__metadata__")?;
    if meta.get("format")? != FORMAT_NAME {
        return None;
    }
    let arch = match meta.get("arch") {
        Some(a) => serde_json::from_str::<Arch>(a.as_str()?).ok()?,
        None => ModelConfig::default().arch(),
    };
    let listed = v.as_object()?;
    arch.tensors()
        .ok()?
        .into_iter()
        .map(|t| t.name)
        .find(|name| !listed.contains_key(name))
}

/// `a, b, c`: the tensors' names.
fn names(tensors: &[crate::nn::arch::TensorSpec]) -> String {
    tensors
        .iter()
        .map(|t| t.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The layers in one line, Keras's class names with their main size: `Embedding(5000, 128),
/// LSTM(128), Dense(1)`.
fn summary_of(arch: &Arch) -> String {
    use crate::nn::arch::LayerSpec as L;
    let one = |l: &L| match l {
        L::Embedding {
            input_dim,
            output_dim,
        } => format!("Embedding({input_dim}, {output_dim})"),
        L::LSTM(r) | L::GRU(r) => format!("{}({})", l.class_name(), r.units),
        L::Dense { units, .. } => format!("Dense({units})"),
        L::Conv1D {
            filters,
            kernel_size,
            ..
        } => format!("Conv1D({filters}, {kernel_size})"),
        other => other.class_name().to_string(),
    };
    arch.layers
        .iter()
        .map(|l| match l {
            L::Bidirectional { layer, .. } => format!("Bidirectional({})", one(layer)),
            l => one(l),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A readable sentence for each safetensors error.
fn describe_st_error(e: &SafeTensorError) -> String {
    match e {
        SafeTensorError::InvalidHeader => "the header is not UTF-8 text".into(),
        SafeTensorError::InvalidHeaderStart => "the header does not start with '{'".into(),
        SafeTensorError::InvalidHeaderDeserialization => {
            "the header is not valid safetensors JSON".into()
        }
        SafeTensorError::HeaderTooLarge => "the header length is impossibly large".into(),
        SafeTensorError::HeaderTooSmall => {
            "the file is shorter than the 8-byte length field".into()
        }
        SafeTensorError::InvalidHeaderLength => {
            "the header length runs past the end of the file".into()
        }
        SafeTensorError::TensorNotFound(n) => format!("tensor \"{n}\" not found"),
        SafeTensorError::TensorInvalidInfo => {
            "a tensor's shape and dtype do not match its data size".into()
        }
        SafeTensorError::InvalidOffset(n) => {
            format!("tensor \"{n}\" has invalid data offsets (not contiguous)")
        }
        SafeTensorError::IoError(e) => format!("I/O error: {e}"),
        SafeTensorError::JsonError(e) => format!("JSON error: {e}"),
        SafeTensorError::InvalidTensorView(d, s, n) => {
            format!("a {d:?} tensor of shape {s:?} cannot hold {n} bytes")
        }
        SafeTensorError::MetadataIncompleteBuffer => {
            "the tensor offsets do not cover the data exactly".into()
        }
        SafeTensorError::ValidationOverflow => "a tensor's size overflows".into(),
        #[allow(unreachable_patterns)]
        other => format!("{other:?}"),
    }
}

/// Parses the JSON string stored under metadata `key`.
fn parse_json<T: serde::de::DeserializeOwned>(
    meta: &HashMap<String, String>,
    key: &str,
) -> Result<T> {
    let text = meta
        .get(key)
        .ok_or_else(|| anyhow!("the metadata has no \"{key}\" entry; this file is damaged"))?;
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        anyhow!("the \"{key}\" metadata is not valid JSON ({e}); this file is damaged")
    })?;
    T::deserialize(value).map_err(|e| {
        anyhow!("the \"{key}\" metadata is not valid for this version ({e}); this file is damaged")
    })
}

/// Where each section of the settings is stored in a model file: `arch maxlen`.
fn section_key(s: Section) -> &'static str {
    match s {
        Section::Model => "arch ",
        other => section_key_v1(other),
    }
}

/// The same for a format-1 file: `config maxlen`.
fn section_key_v1(s: Section) -> &'static str {
    match s {
        Section::Model => "config ",
        Section::Preprocessing => "preprocessing ",
        // A model file holds no training settings.
        Section::Train | Section::Run => "",
    }
}

/// The vocabulary must fit the ids below num_words, be unambiguous, and hold only words the
/// tokeniser can produce (lowercase, no space or punctuation): any other entry never matches.
fn check_vocabulary(p: &Preprocessing, vocab: &[String]) -> Result<()> {
    let max = p.num_words.saturating_sub(p.index_from as usize + 1);
    if vocab.len() > max {
        bail!(
            "the vocabulary has {} words but num_words {} with index_from {} allows at most {max}",
            vocab.len(),
            p.num_words,
            p.index_from
        );
    }
    let mut seen = HashSet::with_capacity(vocab.len());
    for (i, w) in vocab.iter().enumerate() {
        let (mut tokens, mut itself) = (0, false);
        for_each_token(w, |t| {
            tokens += 1;
            itself = t == w;
        });
        if tokens != 1 || !itself {
            bail!(
                "the vocabulary's entry {i} (rank {}), {w:?}, can never match a word of a review \
                 (the tokeniser lowercases and splits on anything but letters, digits and inner \
                 apostrophes); the file is damaged or was not written by imdb-lstm",
                i + 1
            );
        }
        if !seen.insert(w.as_str()) {
            bail!(
                "the vocabulary lists the word {w:?} twice (again at rank {})",
                i + 1
            );
        }
    }
    Ok(())
}

/// The kind of task a model's output layer makes, as the `task` key names it: `binary` (one
/// sigmoid unit), `multi-class` (K softmax units) or `multi-label` (K sigmoid units).
pub fn task_of(arch: &Arch) -> Result<&'static str> {
    Ok(match arch.head()? {
        crate::nn::arch::Head::Sigmoid => "binary",
        crate::nn::arch::Head::Softmax(_) => "multi-class",
        crate::nn::arch::Head::Sigmoids(_) => "multi-label",
    })
}

/// One distinct, non-empty name per class the model's output distinguishes: 2 for a sigmoid
/// head (negative first), K for a K-way softmax or K sigmoid units.
fn check_labels(arch: &Arch, labels: &[String]) -> Result<()> {
    let want = arch.head()?.labels();
    if labels.len() != want {
        bail!(
            "the model has {} labels but its output layer distinguishes {want} classes; the file \
             is damaged",
            labels.len()
        );
    }
    let mut seen = HashSet::new();
    for l in labels {
        if l.is_empty() || l.len() > 1000 || !seen.insert(l.as_str()) {
            bail!("the label {l:?} is empty, too long or repeated; the file is damaged");
        }
    }
    Ok(())
}

/// A model reading n-grams has their table, numbered from num_words + 1 and filling the
/// embedding; any other model has none.
fn check_ngrams(arch: &Arch, p: &Preprocessing, t: Option<&NgramTable>) -> Result<()> {
    let input_dim = arch.embedding().map_or(0, |e| e.0);
    match (p.ngrams, t) {
        (1, None) => Ok(()),
        (1, Some(_)) => bail!("the file holds an n-gram table but preprocessing ngrams is 1"),
        (n, None) => bail!("preprocessing ngrams is {n} but the file holds no n-gram table"),
        (n, Some(t)) => {
            ensure!(
                t.n() == n && t.start_id() as usize == p.num_words + 1,
                "the n-gram table (n-grams up to {} words, ids from {}) does not match the \
                 preprocessing (ngrams {n}, num_words {}); the file is damaged",
                t.n(),
                t.start_id(),
                p.num_words
            );
            ensure!(
                t.input_dim() == input_dim,
                "the n-gram table ends at id {} but the embedding has {input_dim} rows; the file \
                 is damaged",
                t.input_dim()
            );
            Ok(())
        }
    }
}

/// Non-finite metrics would not survive JSON (serde_json writes them as null).
fn check_training(t: &TrainingFacts) -> Result<()> {
    let values = [
        ("loss", Some(t.loss)),
        ("accuracy", Some(t.accuracy)),
        ("val_loss", t.val_loss),
        ("val_accuracy", t.val_accuracy),
    ];
    for (name, v) in values {
        if let Some(v) = v {
            if !v.is_finite() {
                bail!("training fact {name} is {v}; only finite values can be stored");
            }
        }
    }
    Ok(())
}

/// A NaN or infinite weight means a diverged or corrupted model; refuse it by name and index.
fn check_finite(name: &str, values: &[f32]) -> Result<()> {
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        bail!(
            "tensor \"{name}\" has a non-finite weight ({}) at index {i}",
            values[i]
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_utc(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(rfc3339_utc(4_107_542_400), "2100-03-01T00:00:00Z");
    }

    #[test]
    fn now_date_is_rfc3339_shaped() {
        let d = TrainingFacts::now_date();
        assert_eq!(d.len(), 20, "{d}");
        assert!(
            d.ends_with('Z') && &d[4..5] == "-" && &d[10..11] == "T",
            "{d}"
        );
        assert!(d.as_str() >= "2024", "{d}");
    }
}
