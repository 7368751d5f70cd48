//! The model file: round-trip, the exact safetensors layout (checked without the safetensors
//! crate), every kind of bad input, atomic saving, and the Keras-style summary.

mod common;
use common::{bin, file_names, run};
use std::collections::BTreeMap;
use std::path::Path;

use imdb_lstm::data::{Preprocessing, Side};
use imdb_lstm::model_file::{self, ModelFile, TrainingFacts, FORMAT_NAME, FORMAT_VERSION};
use imdb_lstm::nn::arch::Arch;
use imdb_lstm::nn::ModelConfig;
use imdb_lstm::report::summary::summary;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

fn small_config() -> ModelConfig {
    ModelConfig {
        num_words: 50,
        embed_dim: 4,
        units: 3,
        maxlen: 10,
        dropout: 0.25,
        recurrent_dropout: 0.1,
    }
}

fn small_model(seed: u64) -> ModelFile {
    let arch = small_config().arch();
    let preprocessing = Preprocessing {
        num_words: 50,
        maxlen: 10,
        padding: Side::Post,
        ..Preprocessing::default()
    };
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let tensors = arch
        .tensors()
        .unwrap()
        .into_iter()
        .map(|t| {
            let (name, shape) = (t.name, t.shape);
            let n: usize = shape.iter().product();
            // Full-range values, including tiny and huge exponents, to catch any lossy encoding.
            let values = (0..n)
                .map(|_| {
                    let m: f32 = rng.gen_range(-1.0..1.0);
                    m * 2f32.powi(rng.gen_range(-30..30))
                })
                .collect();
            (name, shape, values)
        })
        .collect();
    let vocabulary = [
        "the",
        "a",
        "movie",
        "film",
        "naïve",
        "don't",
        "日本語",
        "élan",
        "x",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain((0..30).map(|i| format!("w{i}")))
    .collect();
    ModelFile {
        arch,
        labels: model_file::imdb_labels(),
        preprocessing,
        vocabulary,
        ngrams: None,
        training: Some(TrainingFacts {
            epochs: 3,
            best_epoch: Some(2),
            loss: rng.gen(),
            accuracy: rng.gen(),
            val_loss: Some(rng.gen()),
            val_accuracy: None,
            seed,
            date: TrainingFacts::now_date(),
            program_version: env!("CARGO_PKG_VERSION").to_string(),
        }),
        tensors,
    }
}

fn bits(m: &ModelFile) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    m.tensors
        .iter()
        .map(|(n, s, v)| {
            (
                n.clone(),
                s.clone(),
                v.iter().map(|x| x.to_bits()).collect(),
            )
        })
        .collect()
}

/// Splits a file into (header JSON, data section) by the spec, without the safetensors crate.
fn split(bytes: &[u8]) -> (Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (header, bytes[8 + n..].to_vec())
}

/// One tensor for [`build`]: (name, dtype, shape, raw bytes).
type RawTensor = (String, &'static str, Vec<usize>, Vec<u8>);

/// Builds a safetensors file by hand from metadata and tensors, computing contiguous offsets.
fn build(meta: &BTreeMap<String, String>, tensors: &[RawTensor]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!(meta));
    let mut data = Vec::new();
    for (name, dtype, shape, raw) in tensors {
        let start = data.len();
        data.extend_from_slice(raw);
        header.insert(
            name.clone(),
            json!({"dtype": dtype, "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let mut h = serde_json::to_vec(&Value::Object(header)).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    out
}

/// The parts of a valid file, for tests that corrupt one piece.
fn parts(m: &ModelFile) -> (BTreeMap<String, String>, Vec<RawTensor>) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.safetensors");
    model_file::save(&p, m).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    let (header, data) = split(&bytes);
    let meta: BTreeMap<String, String> =
        serde_json::from_value(header["__metadata__"].clone()).unwrap();
    let tensors = m
        .tensors
        .iter()
        .map(|(name, _, _)| {
            let t = &header[name];
            let s = t["data_offsets"][0].as_u64().unwrap() as usize;
            let e = t["data_offsets"][1].as_u64().unwrap() as usize;
            let shape = serde_json::from_value(t["shape"].clone()).unwrap();
            (name.clone(), "F32", shape, data[s..e].to_vec())
        })
        .collect();
    (meta, tensors)
}

/// Writes `bytes` to a file and loads it, expecting an error; returns the message.
fn load_err(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    let msg = match model_file::load(&p) {
        Ok(_) => panic!("{name}: a bad file loaded"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        msg.contains(&p.display().to_string()),
        "{name}: message does not name the path: {msg}"
    );
    assert!(
        !msg.contains('\n'),
        "{name}: message is not one line: {msg}"
    );
    msg
}

#[test]
fn round_trip_is_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    for seed in [1u64, 2, 3] {
        let m = small_model(seed);
        let p = dir.path().join(format!("model{seed}.safetensors"));
        model_file::save(&p, &m).unwrap();
        let back = model_file::load(&p).unwrap();
        assert_eq!(bits(&back), bits(&m));
        assert_eq!(back.arch, m.arch);
        assert_eq!(back.labels, m.labels);
        assert_eq!(back.preprocessing, m.preprocessing);
        assert_eq!(back.vocabulary, m.vocabulary);
        assert_eq!(back.training, m.training);
        assert_eq!(back, m);
    }
    // Without training facts, and with an empty vocabulary.
    let mut m = small_model(9);
    m.training = None;
    m.vocabulary.clear();
    let p = dir.path().join("bare.safetensors");
    model_file::save(&p, &m).unwrap();
    assert_eq!(model_file::load(&p).unwrap(), m);
}

#[test]
fn the_default_config_round_trips_too() {
    let config = ModelConfig::default();
    let tensors = config
        .tensor_shapes()
        .into_iter()
        .map(|(n, s)| {
            let len: usize = s.iter().product();
            let v = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            (n.to_string(), s, v)
        })
        .collect();
    let m = ModelFile {
        arch: config.arch(),
        labels: model_file::imdb_labels(),
        preprocessing: Preprocessing::default(),
        vocabulary: (0..4996).map(|i| format!("word{i}")).collect(),
        ngrams: None,
        training: None,
        tensors,
    };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("default.safetensors");
    model_file::save(&p, &m).unwrap();
    assert_eq!(model_file::load(&p).unwrap(), m);
}

#[test]
fn layout_follows_the_safetensors_spec() {
    let m = small_model(5);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.safetensors");
    model_file::save(&p, &m).unwrap();
    let bytes = std::fs::read(&p).unwrap();

    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert!(8 + n <= bytes.len());
    assert_eq!(bytes[8], b'{');
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let obj = header.as_object().unwrap();
    let data = &bytes[8 + n..];

    // Every tensor: F32, the config's shape, offsets whose f32 bytes are the weights.
    let mut ranges = Vec::new();
    for (name, shape, values) in &m.tensors {
        let t = &obj[name.as_str()];
        assert_eq!(t["dtype"], "F32", "{name}");
        let got_shape: Vec<usize> = serde_json::from_value(t["shape"].clone()).unwrap();
        assert_eq!(&got_shape, shape, "{name}");
        let s = t["data_offsets"][0].as_u64().unwrap() as usize;
        let e = t["data_offsets"][1].as_u64().unwrap() as usize;
        assert!(
            s <= e && e <= data.len(),
            "{name}: offsets {s}..{e} out of bounds"
        );
        assert_eq!(e - s, values.len() * 4, "{name}");
        let want: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(&data[s..e], &want[..], "{name}: bytes differ");
        ranges.push((s, e));
    }
    // Contiguous, from 0, covering the data section exactly.
    ranges.sort();
    assert_eq!(ranges[0].0, 0);
    for w in ranges.windows(2) {
        assert_eq!(w[0].1, w[1].0, "gap or overlap between tensors");
    }
    assert_eq!(ranges.last().unwrap().1, data.len());
    // Nothing but the six tensors and the metadata.
    let tensors = m.arch.tensors().unwrap();
    let expected_names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
    for k in obj.keys() {
        assert!(
            k == "__metadata__" || expected_names.contains(&k.as_str()),
            "{k}"
        );
    }
    assert_eq!(obj.len(), expected_names.len() + 1);

    let meta = obj["__metadata__"].as_object().unwrap();
    for k in [
        "format",
        "format_version",
        "arch",
        "labels",
        "preprocessing",
        "vocabulary",
        "training",
    ] {
        assert!(
            meta[k].is_string(),
            "__metadata__.{k} missing or not a string"
        );
    }
    assert_eq!(meta["format"], FORMAT_NAME);
    assert_eq!(meta["format_version"], FORMAT_VERSION.to_string());
    let arch: Arch = serde_json::from_str(meta["arch"].as_str().unwrap()).unwrap();
    assert_eq!(arch, m.arch);
    // Keras's vocabulary: {"class_name": "LSTM", "config": {"units": 3, ...}}.
    let layers: Value = serde_json::from_str(meta["arch"].as_str().unwrap()).unwrap();
    assert_eq!(layers["layers"][1]["class_name"], "LSTM");
    assert_eq!(layers["layers"][1]["config"]["units"], 3);
    let labels: Vec<String> = serde_json::from_str(meta["labels"].as_str().unwrap()).unwrap();
    assert_eq!(labels, ["neg", "pos"]);
    let pre: Preprocessing = serde_json::from_str(meta["preprocessing"].as_str().unwrap()).unwrap();
    assert_eq!(pre, m.preprocessing);
    let vocab: Vec<String> = serde_json::from_str(meta["vocabulary"].as_str().unwrap()).unwrap();
    assert_eq!(vocab, m.vocabulary);
    let facts: TrainingFacts = serde_json::from_str(meta["training"].as_str().unwrap()).unwrap();
    assert_eq!(Some(facts), m.training);

    // Without training facts the key is absent.
    let mut bare = m.clone();
    bare.training = None;
    model_file::save(&p, &bare).unwrap();
    let (header, _) = split(&std::fs::read(&p).unwrap());
    assert!(header["__metadata__"].get("training").is_none());
}

#[test]
fn the_hand_built_file_loads() {
    // Guards the bad-input tests below: their builder makes valid files when nothing is broken.
    let m = small_model(6);
    let (meta, tensors) = parts(&m);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("hand.safetensors");
    std::fs::write(&p, build(&meta, &tensors)).unwrap();
    assert_eq!(model_file::load(&p).unwrap(), m);
}

#[test]
fn missing_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nope.safetensors");
    let msg = format!("{:#}", model_file::load(&p).unwrap_err());
    assert!(msg.contains("no such"), "{msg}");
    assert!(msg.contains(&p.display().to_string()), "{msg}");
}

#[test]
fn garbage_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let msg = load_err(dir.path(), "empty", b"");
    assert!(msg.contains("empty"), "{msg}");
    let msg = load_err(dir.path(), "short", b"abc");
    assert!(msg.contains("truncated") || msg.contains("not"), "{msg}");
    let msg = load_err(
        dir.path(),
        "text.txt",
        b"This movie was great, I loved every minute of it.\n",
    );
    assert!(msg.contains("not a safetensors file"), "{msg}");
    let msg = load_err(dir.path(), "json", br#"{"format": "imdb-lstm"}"#);
    assert!(msg.contains("not a safetensors file"), "{msg}");
    let mut rng = rand_pcg::Pcg64::seed_from_u64(42);
    for i in 0..50 {
        let len = rng.gen_range(1..3000);
        let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        load_err(dir.path(), &format!("random{i}"), &bytes);
    }
    // Random bytes behind a plausible header length and '{'.
    for i in 0..50 {
        let len = rng.gen_range(1..500);
        let mut bytes = (len as u64).to_le_bytes().to_vec();
        bytes.push(b'{');
        bytes.extend((0..len + rng.gen_range(0..100)).map(|_| rng.gen::<u8>()));
        load_err(dir.path(), &format!("random-brace{i}"), &bytes);
    }
}

#[test]
fn header_length_larger_than_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = 1000u64.to_le_bytes().to_vec();
    bytes.extend(br#"{"__metadata__":{"format":"imdb-lstm"}}"#);
    let msg = load_err(dir.path(), "long-header", &bytes);
    assert!(msg.contains("truncated") && msg.contains("1000"), "{msg}");
    // An absurd length (e.g. a text file's first bytes).
    let mut bytes = u64::MAX.to_le_bytes().to_vec();
    bytes.extend(b"{}");
    let msg = load_err(dir.path(), "huge-header", &bytes);
    assert!(msg.contains("not a safetensors file"), "{msg}");
}

#[test]
fn every_truncation_is_a_clear_error() {
    let m = small_model(7);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("full.safetensors");
    model_file::save(&p, &m).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert!(header_end < bytes.len());
    // Every cut point: inside the length field, inside the header, inside the data.
    for cut in 0..bytes.len() {
        let msg = load_err(dir.path(), "cut.safetensors", &bytes[..cut]);
        if cut >= 8 {
            assert!(msg.contains("truncated"), "cut at {cut}: {msg}");
        }
    }
    // Extra bytes after the data are rejected as well.
    let mut longer = bytes.clone();
    longer.extend([0u8; 4]);
    load_err(dir.path(), "longer.safetensors", &longer);
}

#[test]
fn missing_tensor_names_it() {
    let m = small_model(8);
    let (meta, mut tensors) = parts(&m);
    tensors.retain(|t| t.0 != "lstm/recurrent_kernel");
    let dir = tempfile::tempdir().unwrap();
    let msg = load_err(dir.path(), "missing", &build(&meta, &tensors));
    assert!(
        msg.contains("lstm/recurrent_kernel") && msg.contains("missing"),
        "{msg}"
    );
    assert!(msg.contains("[3, 12]"), "{msg}");
}

#[test]
fn wrong_shape_names_tensor_and_both_shapes() {
    let m = small_model(10);
    let (meta, mut tensors) = parts(&m);
    // Same byte count, different shape: only the shape check can catch it.
    let t = tensors.iter_mut().find(|t| t.0 == "lstm/kernel").unwrap();
    t.2 = vec![12, 4];
    let dir = tempfile::tempdir().unwrap();
    let msg = load_err(dir.path(), "shape", &build(&meta, &tensors));
    assert!(
        msg.contains("lstm/kernel") && msg.contains("[12, 4]") && msg.contains("[4, 12]"),
        "{msg}"
    );

    // Layers that disagree with the stored tensors (units 5 instead of 3).
    let (mut meta, tensors) = parts(&m);
    let mut cfg = small_config();
    cfg.units = 5;
    meta.insert("arch".into(), serde_json::to_string(&cfg.arch()).unwrap());
    let msg = load_err(dir.path(), "config", &build(&meta, &tensors));
    assert!(
        msg.contains("lstm/kernel") && msg.contains("[4, 20]"),
        "{msg}"
    );
}

#[test]
fn wrong_dtype_and_extra_tensor() {
    let m = small_model(11);
    let (meta, mut tensors) = parts(&m);
    let t = tensors.iter_mut().find(|t| t.0 == "dense/bias").unwrap();
    t.1 = "I32";
    let dir = tempfile::tempdir().unwrap();
    let msg = load_err(dir.path(), "dtype", &build(&meta, &tensors));
    assert!(
        msg.contains("dense/bias") && msg.contains("I32") && msg.contains("F32"),
        "{msg}"
    );

    let (meta, mut tensors) = parts(&m);
    tensors.push(("extra/thing".into(), "F32", vec![1], vec![0; 4]));
    let msg = load_err(dir.path(), "extra", &build(&meta, &tensors));
    assert!(msg.contains("extra/thing"), "{msg}");
}

#[test]
fn newer_or_missing_format_version() {
    let m = small_model(12);
    let dir = tempfile::tempdir().unwrap();
    let (mut meta, tensors) = parts(&m);
    meta.insert("format_version".into(), "3".into());
    let msg = load_err(dir.path(), "v3", &build(&meta, &tensors));
    assert!(
        msg.contains("format version 3")
            && msg.contains("reads version 2")
            && msg.contains("upgrade"),
        "{msg}"
    );

    meta.remove("format_version");
    let msg = load_err(dir.path(), "nov", &build(&meta, &tensors));
    assert!(msg.contains("format_version"), "{msg}");

    meta.insert("format_version".into(), "one".into());
    let msg = load_err(dir.path(), "badv", &build(&meta, &tensors));
    assert!(
        msg.contains("format_version") && msg.contains("one"),
        "{msg}"
    );
}

#[test]
fn other_format_or_no_metadata() {
    let m = small_model(13);
    let dir = tempfile::tempdir().unwrap();
    let (mut meta, tensors) = parts(&m);
    meta.insert("format".into(), "other".into());
    let msg = load_err(dir.path(), "other", &build(&meta, &tensors));
    assert!(
        msg.contains("\"other\"") && msg.contains("imdb-lstm"),
        "{msg}"
    );

    meta.remove("format");
    let msg = load_err(dir.path(), "noformat", &build(&meta, &tensors));
    assert!(msg.contains("format"), "{msg}");

    // A plain safetensors file with no metadata at all (e.g. someone else's weights).
    let mut h = br#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#.to_vec();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
    bytes.extend(h);
    bytes.extend(1.0f32.to_le_bytes());
    let msg = load_err(dir.path(), "nometa", &bytes);
    assert!(msg.contains("__metadata__"), "{msg}");
}

#[test]
fn bad_metadata_json() {
    let m = small_model(14);
    let dir = tempfile::tempdir().unwrap();
    for key in ["arch", "labels", "preprocessing", "vocabulary", "training"] {
        let (mut meta, tensors) = parts(&m);
        meta.insert(key.into(), "{not json".into());
        let msg = load_err(dir.path(), key, &build(&meta, &tensors));
        assert!(msg.contains(key) && msg.contains("JSON"), "{key}: {msg}");
    }
    for key in ["arch", "labels", "preprocessing", "vocabulary"] {
        let (mut meta, tensors) = parts(&m);
        meta.remove(key);
        let msg = load_err(dir.path(), key, &build(&meta, &tensors));
        assert!(msg.contains(key), "{key}: {msg}");
    }
    // Layers with absurd sizes must not overflow or allocate, just fail.
    let (mut meta, tensors) = parts(&m);
    let absurd = ModelConfig {
        num_words: usize::MAX,
        embed_dim: usize::MAX,
        units: usize::MAX,
        ..small_config()
    };
    meta.insert(
        "arch".into(),
        serde_json::to_string(&absurd.arch()).unwrap(),
    );
    let msg = load_err(dir.path(), "absurd", &build(&meta, &tensors));
    assert!(msg.contains("arch") && msg.contains("parameters"), "{msg}");
    // Labels that do not fit the output layer.
    let (mut meta, tensors) = parts(&m);
    meta.insert("labels".into(), json!(["a", "b", "c"]).to_string());
    let msg = load_err(dir.path(), "labels", &build(&meta, &tensors));
    assert!(
        msg.contains("3 labels") && msg.contains("2 classes"),
        "{msg}"
    );
}

/// A format-1 file (a `config` instead of `arch` and `labels`) loads as the tutorial's layers
/// with the labels neg, pos; its settings are checked under their format-1 names.
#[test]
fn format_1_files_load_as_the_tutorial_stack() {
    let m = small_model(18);
    let (mut meta, tensors) = parts(&m);
    meta.insert("format_version".into(), "1".into());
    meta.remove("arch");
    meta.remove("labels");
    meta.insert(
        "config".into(),
        serde_json::to_string(&small_config()).unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v1.safetensors");
    std::fs::write(&p, build(&meta, &tensors)).unwrap();
    assert_eq!(model_file::load(&p).unwrap(), m);

    let mut bad = small_config();
    bad.dropout = 3.0;
    meta.insert("config".into(), serde_json::to_string(&bad).unwrap());
    let msg = load_err(dir.path(), "v1bad", &build(&meta, &tensors));
    assert!(msg.contains("config dropout is 3, outside [0, 1)"), "{msg}");
}

#[test]
fn vocabulary_too_long_or_inconsistent() {
    let m = small_model(15);
    let dir = tempfile::tempdir().unwrap();
    // num_words 50, index_from 3: at most 46 words (ids 4..=49).
    let (mut meta, tensors) = parts(&m);
    let ok: Vec<String> = (0..46).map(|i| format!("v{i}")).collect();
    meta.insert("vocabulary".into(), serde_json::to_string(&ok).unwrap());
    let p = dir.path().join("vocab46");
    std::fs::write(&p, build(&meta, &tensors)).unwrap();
    assert_eq!(model_file::load(&p).unwrap().vocabulary.len(), 46);

    let long: Vec<String> = (0..47).map(|i| format!("v{i}")).collect();
    meta.insert("vocabulary".into(), serde_json::to_string(&long).unwrap());
    let msg = load_err(dir.path(), "vocab47", &build(&meta, &tensors));
    assert!(msg.contains("47") && msg.contains("46"), "{msg}");

    // Preprocessing num_words that disagrees with the embedding table.
    let (mut meta, tensors) = parts(&m);
    let pre = Preprocessing {
        num_words: 60,
        maxlen: 10,
        ..Preprocessing::default()
    };
    meta.insert("preprocessing".into(), serde_json::to_string(&pre).unwrap());
    let msg = load_err(dir.path(), "pre", &build(&meta, &tensors));
    assert!(msg.contains("num_words") && msg.contains("60"), "{msg}");

    // save refuses a too-long vocabulary too.
    let mut bad = m.clone();
    bad.vocabulary = long;
    assert!(model_file::save(&dir.path().join("x"), &bad).is_err());
}

#[test]
fn non_finite_weights_are_rejected() {
    let m = small_model(16);
    let dir = tempfile::tempdir().unwrap();
    for (value, label) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf")] {
        let (meta, mut tensors) = parts(&m);
        let t = tensors.iter_mut().find(|t| t.0 == "lstm/bias").unwrap();
        t.3[20..24].copy_from_slice(&value.to_le_bytes());
        let msg = load_err(dir.path(), label, &build(&meta, &tensors));
        assert!(
            msg.contains("lstm/bias") && msg.contains("non-finite") && msg.contains("index 5"),
            "{msg}"
        );
    }
    // And save will not write one.
    let mut bad = m.clone();
    bad.tensors[0].2[3] = f32::NAN;
    let p = dir.path().join("nan.safetensors");
    let msg = format!("{:#}", model_file::save(&p, &bad).unwrap_err());
    assert!(
        msg.contains("embedding/embeddings") && msg.contains("non-finite"),
        "{msg}"
    );
    assert!(!p.exists());
}

#[test]
fn save_rejects_mismatched_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.safetensors");
    let mut m = small_model(17);
    m.tensors.swap(0, 1);
    assert!(model_file::save(&p, &m).is_err());
    let mut m = small_model(17);
    m.tensors[2].2.pop();
    let msg = format!("{:#}", model_file::save(&p, &m).unwrap_err());
    assert!(msg.contains("lstm/recurrent_kernel"), "{msg}");
    let mut m = small_model(17);
    m.tensors.pop();
    assert!(model_file::save(&p, &m).is_err());
    assert!(!p.exists());
}

#[test]
fn save_is_atomic_and_leaves_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("model.safetensors");
    std::fs::write(&p, b"old contents that are not a model").unwrap();
    let a = small_model(20);
    model_file::save(&p, &a).unwrap();
    assert_eq!(model_file::load(&p).unwrap(), a);
    let b = small_model(21);
    model_file::save(&p, &b).unwrap();
    assert_eq!(model_file::load(&p).unwrap(), b);

    assert_eq!(file_names(dir.path()), ["model.safetensors"]);

    // A failed save (NaN) leaves the previous file untouched and no temp file.
    let mut bad = small_model(22);
    bad.tensors[5].2[0] = f32::NAN;
    assert!(model_file::save(&p, &bad).is_err());
    assert_eq!(model_file::load(&p).unwrap(), b);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    // A folder that does not exist.
    let missing = dir.path().join("no-such-dir").join("model.safetensors");
    let msg = format!("{:#}", model_file::save(&missing, &a).unwrap_err());
    assert!(msg.contains(&missing.display().to_string()), "{msg}");
    assert!(msg.contains("does not exist"), "{msg}");
    assert!(!dir.path().join("no-such-dir").exists());
}

#[test]
fn summary_default_config_exact() {
    let cfg = ModelConfig::default();
    let pre = Preprocessing::default();
    assert_eq!(cfg.param_count(), 771_713);
    let s = summary(&cfg.arch(), &pre, Some(4996)).unwrap();
    let table: Vec<&str> = s.lines().take(14).collect();
    let expected = [
        "Model: \"sequential\"",
        "┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓",
        "┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃",
        "┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩",
        "│ embedding (Embedding)           │ (None, 80, 128)        │       640,000 │",
        "├─────────────────────────────────┼────────────────────────┼───────────────┤",
        "│ lstm (LSTM)                     │ (None, 128)            │       131,584 │",
        "├─────────────────────────────────┼────────────────────────┼───────────────┤",
        "│ dense (Dense)                   │ (None, 1)              │           129 │",
        "└─────────────────────────────────┴────────────────────────┴───────────────┘",
        " Total params: 771,713 (2.94 MB)",
        " Trainable params: 771,713 (2.94 MB)",
        " Non-trainable params: 0 (0.00 B)",
        "",
    ];
    assert_eq!(table, expected, "\n{s}");
    // Settings after the table.
    for needle in [
        "imdb-lstm-words (version 1)",
        "num_words:          5,000",
        "maxlen:             80",
        "padding:            pre",
        "truncating:         pre",
        "pad 0, start 1, oov 2, index_from 3",
        "4,996 words",
        "dropout:            0.2",
        "recurrent_dropout:  0.2",
    ] {
        assert!(s.contains(needle), "missing {needle:?} in\n{s}");
    }
    let unbuilt = summary(&cfg.arch(), &pre, None).unwrap();
    assert!(unbuilt.contains("at most 4,996 words"), "{unbuilt}");
}

#[test]
fn summary_non_default_config() {
    let cfg = ModelConfig {
        units: 64,
        maxlen: 200,
        num_words: 20_000,
        recurrent_dropout: 0.0,
        ..ModelConfig::default()
    };
    let pre = Preprocessing {
        num_words: 20_000,
        maxlen: 200,
        padding: Side::Post,
        ..Preprocessing::default()
    };
    // 20000*128 + 4*64*(128+64+1) + 65
    assert_eq!(cfg.param_count(), 2_560_000 + 49_408 + 65);
    let s = summary(&cfg.arch(), &pre, Some(123)).unwrap();
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(
        lines[4],
        "│ embedding (Embedding)           │ (None, 200, 128)       │     2,560,000 │"
    );
    assert_eq!(
        lines[6],
        "│ lstm (LSTM)                     │ (None, 64)             │        49,408 │"
    );
    assert_eq!(
        lines[8],
        "│ dense (Dense)                   │ (None, 1)              │            65 │"
    );
    assert_eq!(lines[10], " Total params: 2,609,473 (9.95 MB)");
    assert!(s.contains("padding:            post"), "{s}");
    assert!(s.contains("123 words (ids 4..=126)"), "{s}");
    assert!(s.contains("recurrent_dropout:  0 "), "{s}");
    // All table lines have the same display width.
    let widths: Vec<usize> = lines[1..10].iter().map(|l| l.chars().count()).collect();
    assert!(widths.iter().all(|&w| w == widths[0]), "{widths:?}");
}

#[test]
fn summary_widens_columns_for_long_layer_names() {
    // Sizes are capped by the arch's limits; a layer's name can still outgrow the column.
    let arch = imdb_lstm::nn::arch::preset("fasttext").unwrap().arch;
    let s = summary(&arch, &Preprocessing::default(), None).unwrap();
    let lines: Vec<&str> = s.lines().collect();
    let name = "global_average_pooling1d (GlobalAveragePooling1D)";
    assert!(name.len() + 2 > 33 && s.contains(name), "{s}");
    let widths: Vec<usize> = lines[1..10].iter().map(|l| l.chars().count()).collect();
    assert!(widths.iter().all(|&w| w == widths[0]), "{widths:?}");
}

#[test]
fn mutated_files_never_panic() {
    // Random byte edits anywhere (length field, header JSON, data): load may succeed (a changed
    // weight is still a weight) but must never panic.
    let m = small_model(30);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.safetensors");
    model_file::save(&p, &m).unwrap();
    let good = std::fs::read(&p).unwrap();
    let mut rng = rand_pcg::Pcg64::seed_from_u64(31);
    let q = dir.path().join("mutated.safetensors");
    for _ in 0..400 {
        let mut bytes = good.clone();
        for _ in 0..rng.gen_range(1..4) {
            let i = rng.gen_range(0..bytes.len());
            bytes[i] = rng.gen();
        }
        std::fs::write(&q, &bytes).unwrap();
        let _ = model_file::load(&q);
    }
}

#[test]
fn concurrent_saves_to_one_path_leave_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.safetensors");
    let models: Vec<ModelFile> = (50..54).map(small_model).collect();
    std::thread::scope(|s| {
        for m in &models {
            let p = &p;
            s.spawn(move || model_file::save(p, m).unwrap());
        }
    });
    let back = model_file::load(&p).unwrap();
    assert!(models.contains(&back));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn saving_under_a_file_instead_of_a_folder_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain");
    std::fs::write(&file, b"x").unwrap();
    let target = file.join("m.safetensors");
    let msg = format!(
        "{:#}",
        model_file::save(&target, &small_model(1)).unwrap_err()
    );
    assert!(
        msg.contains(&target.display().to_string()) && msg.contains("not a folder"),
        "{msg}"
    );
}

/// A format-1 model file (num_words 40, maxlen 10, embed_dim 6, units 4) written by the format-1
/// writer: whatever format later versions write, this file must keep predicting the same.
#[test]
fn model_file_v1_fixture_predicts_as_recorded() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model_v1.safetensors");
    let (code, out, err) = run(bin()
        .args(["predict", "--json", "--threads", "1", "--model"])
        .arg(&model)
        .args(["a great film", "boring and awful", "unknownword"]));
    assert_eq!(code, 0, "{err}");
    let got: Vec<f64> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["probability"]
                .as_f64()
                .unwrap()
        })
        .collect();
    let want = [
        0.48546260595321655,
        0.48507314920425415,
        0.48660895228385925,
    ];
    assert_eq!(got.len(), want.len(), "{out}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{out}");
    }
}
