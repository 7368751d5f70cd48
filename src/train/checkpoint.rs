//! The run's checkpoint, `checkpoint.safetensors` in the run folder, rewritten atomically after
//! every epoch: enough to continue the run bit for bit (`imdb-lstm train --resume RUN_DIR`).
//!
//! Layout: a safetensors file with flat f32 tensors `params`, `adam_m`, `adam_v` (each
//! `[parameter count]`, in [`crate::nn::arch::Arch::layout`] order) and `best_params` when early
//! stopping keeps the best weights. The `__metadata__` holds strings: `format`
//! (`imdb-lstm-checkpoint`), `checkpoint_version`, `program_version`, `run` (the [`RunSpec`] as
//! JSON), `data_fingerprint`, `adam_step`, `rng` (the training `Pcg64` as JSON), `history`
//! (JSON), `early_stopping` (the [`EarlyStopper`] as JSON, when on) and `finished`.

use super::history::History;
use super::{EarlyStopper, TrainPlan, TrainState};
use crate::data::Dataset;
use crate::nn::adam::Adam;
use crate::nn::arch::Arch;
use crate::validate::{self, Section};
use anyhow::{anyhow, bail, ensure, Context, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// The checkpoint's file name inside a run folder.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// The value of the `format` metadata key.
pub const FORMAT_NAME: &str = "imdb-lstm-checkpoint";
/// The checkpoint layout this build writes and reads; any other version is refused.
pub const CHECKPOINT_VERSION: u32 = 1;

/// A run's settings and where its data is: the `run` metadata, one JSON object (the plan's fields
/// and `data`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    #[serde(flatten)]
    pub plan: TrainPlan,
    /// The dataset the run read (absolute when it could be made so).
    pub data: PathBuf,
}

/// A run between two epochs.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// How to rebuild the run.
    pub spec: RunSpec,
    /// [`fingerprint`] of the prepared data, so a resume on other data is refused.
    pub data_fingerprint: String,
    /// Weights, Adam, training RNG and history after the last completed epoch.
    pub state: TrainState,
    /// Early stopping's state (with the best weights when they are to be restored).
    pub early: Option<EarlyStopper>,
    /// True once the model file and reports of the finished run were written.
    pub finished: bool,
}

/// `RUN_DIR/checkpoint.safetensors`.
pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(CHECKPOINT_FILE)
}

/// SHA-256 of the prepared data (vocabulary, train and test ids and labels), hex: equal
/// fingerprints mean identical sequences.
pub fn fingerprint(ds: &Dataset) -> String {
    let mut h = Sha256::new();
    for w in ds.vocab.words() {
        h.update((w.len() as u64).to_le_bytes());
        h.update(w.as_bytes());
    }
    let mut buf = Vec::with_capacity(4 * 4096);
    for split in [&ds.train, &ds.test] {
        h.update((split.len() as u64).to_le_bytes());
        for chunk in split.x.chunks(4096) {
            buf.clear();
            buf.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
            h.update(&buf);
        }
        for chunk in split.y.chunks(4096) {
            buf.clear();
            buf.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
            h.update(&buf);
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes the checkpoint into `dir` atomically (temp file in `dir`, fsync, rename, fsync of
/// the folder): a crash at any moment leaves the previous checkpoint or this one.
pub fn save(dir: &Path, c: &Checkpoint) -> Result<()> {
    let path = path_in(dir);
    let shown = path.display();
    // A checkpoint that `load` would refuse is never written.
    check_spec(&c.spec).with_context(|| format!("cannot save checkpoint {shown}"))?;
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), FORMAT_NAME.to_string());
    meta.insert(
        "checkpoint_version".to_string(),
        CHECKPOINT_VERSION.to_string(),
    );
    meta.insert(
        "program_version".to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    meta.insert("run".to_string(), serde_json::to_string(&c.spec)?);
    meta.insert("data_fingerprint".to_string(), c.data_fingerprint.clone());
    meta.insert("adam_step".to_string(), c.state.adam.step.to_string());
    meta.insert("rng".to_string(), serde_json::to_string(&c.state.rng)?);
    let history = &c.state.history;
    ensure!(
        history
            .epochs
            .iter()
            .all(|e| e.loss.is_finite() && e.val_loss.is_none_or(f64::is_finite)),
        "cannot save checkpoint {shown}: the history holds a non-finite loss"
    );
    meta.insert("history".to_string(), serde_json::to_string(history)?);
    if let Some(e) = &c.early {
        meta.insert("early_stopping".to_string(), serde_json::to_string(e)?);
    }
    meta.insert("finished".to_string(), c.finished.to_string());

    let n = c.state.params.len();
    let mut tensors: Vec<(&str, Vec<u8>)> = vec![
        ("params", le_bytes(&c.state.params)),
        ("adam_m", le_bytes(&c.state.adam.m)),
        ("adam_v", le_bytes(&c.state.adam.v)),
    ];
    if let Some(best) = c.early.as_ref().and_then(|e| e.best_params.as_ref()) {
        tensors.push(("best_params", le_bytes(best)));
    }
    let mut views = Vec::with_capacity(tensors.len());
    for (name, bytes) in &tensors {
        let view = TensorView::new(Dtype::F32, vec![bytes.len() / 4], bytes)
            .map_err(|e| anyhow!("cannot save checkpoint {shown}: tensor {name}: {e:?}"))?;
        ensure!(
            bytes.len() == 4 * n,
            "cannot save checkpoint {shown}: tensor {name} has {} values, the model has {n}",
            bytes.len() / 4
        );
        views.push((*name, view));
    }
    let bytes = safetensors::serialize(views, &Some(meta))
        .map_err(|e| anyhow!("cannot save checkpoint {shown}: {e:?}"))?;
    crate::atomic::write(&path, &bytes).with_context(|| format!("cannot save checkpoint {shown}"))
}

/// Reads the checkpoint of the run folder `dir` (or the checkpoint file itself). Every problem
/// is one line naming the file and what to do: no checkpoint, not a checkpoint, another
/// version, damaged content.
pub fn load(dir: &Path) -> Result<Checkpoint> {
    let path = if dir.is_file() {
        dir.to_path_buf()
    } else {
        path_in(dir)
    };
    let shown = path.display();
    let bytes = match crate::model_file::read_safetensors(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if dir.is_dir() {
                bail!(
                    "{} holds no {CHECKPOINT_FILE}: there is no run to resume there (start one with \
                     `imdb-lstm train --out {}`)",
                    dir.display(),
                    dir.display()
                )
            }
            bail!(
                "no run folder {}: give the folder of the run to resume",
                dir.display()
            )
        }
        Err(e) if e.kind() == ErrorKind::InvalidData => bail!("checkpoint {shown}: {e}"),
        Err(e) => bail!("cannot read checkpoint {shown}: {e}"),
    };
    load_bytes(&bytes).map_err(|e| anyhow!("checkpoint {shown}: {e:#}"))
}

/// The metadata string under `key`.
fn meta_str<'a>(meta: &'a HashMap<String, String>, key: &str) -> Result<&'a str> {
    meta.get(key)
        .map(String::as_str)
        .ok_or_else(|| anyhow!("the metadata has no \"{key}\" entry; the file is damaged"))
}

/// The metadata JSON under `key`, parsed.
fn meta_json<T: serde::de::DeserializeOwned>(
    meta: &HashMap<String, String>,
    key: &str,
) -> Result<T> {
    serde_json::from_str(meta_str(meta, key)?)
        .map_err(|e| anyhow!("the \"{key}\" metadata is not valid ({e}); the file is damaged"))
}

/// Where each section of the settings is stored in a checkpoint: the `run` metadata's JSON.
fn run_key(s: Section) -> &'static str {
    match s {
        Section::Model => "run.arch.",
        Section::Preprocessing => "run.preprocessing.",
        Section::Train => "run.train.",
        Section::Run => "run.",
    }
}

/// The run's layers, checked. Checkpoints written before models were layer lists hold the
/// tutorial's `model` settings instead of an `arch`: check them (naming `run.model.KEY`), then put
/// their layers in its place.
fn arch_from_format1(run: &mut serde_json::Value) -> Result<()> {
    let Some(obj) = run.as_object_mut() else {
        return Ok(()); // RunSpec's parse says what is wrong
    };
    if let Some(arch) = obj.get("arch") {
        // Parsed alone first, so that a bad layer is named plainly.
        Arch::deserialize(arch).map_err(|e| {
            anyhow!("run.arch: {e}; the file is damaged or was not written by imdb-lstm")
        })?;
        return Ok(());
    }
    let Some(model) = obj.remove("model") else {
        return Ok(());
    };
    let m: crate::nn::ModelConfig = serde_json::from_value(model).map_err(|e| {
        anyhow!("the \"run\" metadata's model is not valid ({e}); the file is damaged")
    })?;
    let key = |s| match s {
        Section::Model => "run.model.",
        other => run_key(other),
    };
    validate::model(&m).map_err(|e| anyhow!("{}", e.in_file(key)))?;
    obj.insert("arch".into(), serde_json::to_value(m.arch())?);
    Ok(())
}

/// The run's settings, checked as `train` checks its flags.
fn check_spec(spec: &RunSpec) -> Result<()> {
    validate::run(&spec.plan).map_err(|e| anyhow!("{}", e.in_file(run_key)))
}

/// The history and early stopping's state must describe epochs this run can have had.
fn check_progress(
    spec: &RunSpec,
    history: &History,
    early: Option<&EarlyStopper>,
    finished: bool,
    step: u64,
) -> Result<()> {
    let done = history.epochs.len();
    let epochs = spec.plan.train.epochs;
    ensure!(
        done <= epochs,
        "the history lists {done} epochs, but run.train.epochs is {epochs}; the file is damaged"
    );
    for (i, e) in history.epochs.iter().enumerate() {
        ensure!(
            e.epoch == i + 1,
            "the history lists epoch {} in place {}; the file is damaged",
            e.epoch,
            i + 1
        );
        let fraction = |v: f64| (0.0..=1.0).contains(&v);
        let ok = e.loss.is_finite()
            && e.val_loss.is_none_or(f64::is_finite)
            && fraction(e.accuracy)
            && e.val_accuracy.is_none_or(fraction)
            && e.seconds.is_finite()
            && e.seconds >= 0.0;
        ensure!(
            ok,
            "the history's epoch {} holds an impossible value (a loss that is not finite, an \
             accuracy outside [0, 1] or negative seconds); the file is damaged",
            e.epoch
        );
    }
    // Every epoch takes at least one step.
    ensure!(
        step >= done as u64,
        "adam_step is {step}, fewer than the {done} epochs done; the file is damaged"
    );
    let stopped = match early {
        Some(e) => {
            let at_most_done = |v: Option<usize>| v.is_none_or(|v| (1..=done).contains(&v));
            ensure!(
                at_most_done(e.best_epoch)
                    && e.stopped_epoch.is_none_or(|s| s == done)
                    && e.wait <= done
                    && e.best.is_none_or(f64::is_finite),
                "the early-stopping state (best epoch {:?}, stopped after {:?}, wait {}) does not \
                 fit the {done} epochs done; the file is damaged",
                e.best_epoch,
                e.stopped_epoch,
                e.wait
            );
            e.stopped()
        }
        None => false,
    };
    ensure!(
        !finished || done == epochs || stopped,
        "the run is marked finished after {done} of {epochs} epochs without stopping early; the \
         file is damaged"
    );
    Ok(())
}

/// Parses and checks the bytes of a checkpoint, as [`load`] does after reading the file; errors
/// do not name the file (the caller does). Never panics and allocates nothing the settings have
/// not been checked for, whatever the bytes (it is fuzzed).
pub fn load_bytes(bytes: &[u8]) -> Result<Checkpoint> {
    let (header_len, header) = SafeTensors::read_metadata(bytes).map_err(|e| {
        anyhow!(
            "not a checkpoint: not a valid safetensors file ({e:?}); it is damaged or was \
             not written by imdb-lstm"
        )
    })?;
    let data = &bytes[8 + header_len..];
    let meta = header
        .metadata()
        .as_ref()
        .ok_or_else(|| anyhow!("not an imdb-lstm checkpoint (the header has no metadata)"))?;
    match meta.get("format") {
        Some(f) if f == FORMAT_NAME => {}
        Some(f) => bail!(
            "not an imdb-lstm checkpoint (format is \"{f}\", expected \"{FORMAT_NAME}\"); \
             give the run folder, not a model file"
        ),
        None => bail!("not an imdb-lstm checkpoint (the metadata has no \"format\" key)"),
    }
    let version = meta_str(meta, "checkpoint_version")?;
    let writer = meta
        .get("program_version")
        .map(String::as_str)
        .unwrap_or("unknown");
    if version.trim() != CHECKPOINT_VERSION.to_string() {
        bail!(
            "checkpoint version {version} (written by imdb-lstm {writer}) cannot be resumed by \
             imdb-lstm {}, which reads checkpoint version {CHECKPOINT_VERSION}: resume it with \
             the imdb-lstm that wrote it, or start a new run",
            env!("CARGO_PKG_VERSION")
        );
    }
    let mut run: serde_json::Value = meta_json(meta, "run")?;
    arch_from_format1(&mut run)?;
    let spec: RunSpec = serde_json::from_value(run)
        .map_err(|e| anyhow!("the \"run\" metadata is not valid ({e}); the file is damaged"))?;
    check_spec(&spec)?;
    let history: History = meta_json(meta, "history")?;
    let rng: rand_pcg::Pcg64 = meta_json(meta, "rng")?;
    let step: u64 = meta_str(meta, "adam_step")?.parse().map_err(|_| {
        anyhow!("the \"adam_step\" metadata is not a whole number; the file is damaged")
    })?;
    let finished: bool = meta_str(meta, "finished")?
        .parse()
        .map_err(|_| anyhow!("the \"finished\" metadata is not true/false; the file is damaged"))?;
    let data_fingerprint = meta_str(meta, "data_fingerprint")?.to_string();
    let mut early: Option<EarlyStopper> = match meta.get("early_stopping") {
        Some(_) => Some(meta_json(meta, "early_stopping")?),
        None => None,
    };
    ensure!(
        early.as_ref().map(|e| &e.cfg) == spec.plan.early_stopping.as_ref(),
        "the early-stopping state does not match the run's settings; the file is damaged"
    );
    check_progress(&spec, &history, early.as_ref(), finished, step)?;

    // Exactly the tensors this run has, each of the parameter count its (checked) config
    // implies, before any is copied.
    let n = spec.plan.arch.param_count()?;
    let keeps_best = early
        .as_ref()
        .is_some_and(|e| e.cfg.restore_best && e.best_epoch.is_some());
    let mut wanted = vec!["params", "adam_m", "adam_v"];
    if keeps_best {
        wanted.push("best_params");
    }
    if let Some(extra) = header
        .tensors()
        .keys()
        .find(|k| !wanted.contains(&k.as_str()))
    {
        bail!(
            "unexpected tensor {extra} (this run's checkpoint holds only {}); the file is damaged",
            wanted.join(", ")
        );
    }
    let tensor = |name: &str| -> Result<Vec<f32>> {
        let t = header
            .info(name)
            .ok_or_else(|| anyhow!("tensor {name} is missing; the file is damaged"))?;
        ensure!(
            t.dtype == Dtype::F32 && t.shape == [n],
            "tensor {name} is {:?} {:?}; the run's model needs F32 [{n}]: the file is damaged",
            t.dtype,
            t.shape
        );
        // read_metadata checked that the offsets cover the data exactly.
        let (start, end) = t.data_offsets;
        let values: Vec<f32> = data[start..end]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        // Adam's second moments are squares: a negative one would make its step NaN.
        let ok = |v: &f32| v.is_finite() && (name != "adam_v" || *v >= 0.0);
        if let Some(i) = values.iter().position(|v| !ok(v)) {
            bail!(
                "tensor {name} holds {} at index {i}; the file is damaged",
                values[i]
            );
        }
        Ok(values)
    };
    let params = tensor("params")?;
    let adam = Adam {
        cfg: spec.plan.train.adam.clone(),
        step,
        m: tensor("adam_m")?,
        v: tensor("adam_v")?,
    };
    if let Some(e) = &mut early {
        if keeps_best {
            e.best_params = Some(tensor("best_params")?);
        }
    }
    Ok(Checkpoint {
        spec,
        data_fingerprint,
        state: TrainState {
            params,
            adam,
            rng,
            history,
        },
        early,
        finished,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Preprocessing;
    use crate::nn::ModelConfig;
    use crate::train::history::EpochRecord;
    use crate::train::{EarlyStopping, TrainConfig};
    use rand::Rng;

    fn small_spec() -> RunSpec {
        RunSpec {
            plan: TrainPlan {
                arch: ModelConfig {
                    num_words: 20,
                    embed_dim: 3,
                    units: 2,
                    maxlen: 5,
                    dropout: 0.1,
                    recurrent_dropout: 0.2,
                }
                .arch(),
                pre: Preprocessing {
                    num_words: 20,
                    maxlen: 5,
                    ..Preprocessing::default()
                },
                train: TrainConfig {
                    threads: 2,
                    ..TrainConfig::default()
                },
                validation_split: Some(0.25),
                limit: Some(7),
                early_stopping: Some(EarlyStopping {
                    patience: 2,
                    min_delta: 0.001,
                    restore_best: true,
                }),
                own: None,
            },
            data: PathBuf::from("/data/x.tar.gz"),
        }
    }

    /// Every field comes back exactly, the RNG continues the same stream.
    #[test]
    fn round_trip_is_exact() {
        let spec = small_spec();
        let mut state = TrainState::new(&spec.plan.arch, &spec.plan.train).unwrap();
        let _: u64 = state.rng.gen();
        state.adam.step = 17;
        for (i, (m, v)) in state.adam.m.iter_mut().zip(&mut state.adam.v).enumerate() {
            *m = (i as f32 * 0.37).sin() / 3.0;
            *v = (i as f32 * 0.11).cos().abs() * 1e-7;
        }
        state.history.epochs.push(EpochRecord {
            epoch: 1,
            loss: 0.1 + 0.2,
            accuracy: 2.0 / 3.0,
            val_loss: Some(std::f64::consts::PI),
            val_accuracy: Some(1e-300),
            seconds: 0.123456789,
        });
        let mut es = EarlyStopper::new(spec.plan.early_stopping.clone().unwrap());
        es.on_epoch_end(&state.history.epochs[0], &state.params)
            .unwrap();
        let ck = Checkpoint {
            spec,
            data_fingerprint: "abc".into(),
            state,
            early: Some(es),
            finished: false,
        };
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &ck).unwrap();
        let mut back = load(dir.path()).unwrap();
        assert_eq!(back.spec, ck.spec);
        assert_eq!(back.data_fingerprint, "abc");
        assert_eq!(back.state.params, ck.state.params);
        assert_eq!(back.state.adam, ck.state.adam);
        assert_eq!(back.state.history, ck.state.history);
        assert_eq!(back.early, ck.early);
        assert!(!back.finished);
        let mut rng = ck.state.rng.clone();
        assert_eq!(back.state.rng.gen::<u64>(), rng.gen::<u64>());
        // Only the checkpoint is left in the folder: no temp file.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("holds no checkpoint.safetensors"), "{e}");
        std::fs::write(path_in(dir.path()), b"garbage, not safetensors").unwrap();
        let e = format!("{:#}", load(dir.path()).unwrap_err());
        assert!(e.contains("not a checkpoint"), "{e}");
        let spec = small_spec();
        let ck = Checkpoint {
            state: TrainState::new(&spec.plan.arch, &spec.plan.train).unwrap(),
            spec,
            data_fingerprint: String::new(),
            early: None,
            finished: true,
        };
        let e = format!("{:#}", {
            let mut c = ck.clone();
            c.spec.plan.early_stopping = None;
            save(dir.path(), &c).unwrap();
            let mut bytes = std::fs::read(path_in(dir.path())).unwrap();
            // Same length, other version: the header is JSON text, so edit it in place.
            let pat = b"\"checkpoint_version\":\"1\"";
            let at = bytes.windows(pat.len()).position(|w| w == pat).unwrap();
            bytes[at + pat.len() - 2] = b'9';
            std::fs::write(path_in(dir.path()), &bytes).unwrap();
            load(dir.path()).unwrap_err()
        });
        assert!(e.contains("checkpoint version 9"), "{e}");
    }
}
