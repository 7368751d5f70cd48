//! `imdb-lstm export`: a model file as `model.onnx`, `preprocessing.json` and `README.md` in a
//! folder (see [`crate::export`]).

use crate::export::{self, MODEL_ONNX, PREPROCESSING_JSON, README_MD};
use crate::model_file::ModelFile;
use crate::nn::arch::Arch;
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    /// The model file.
    #[arg(long)]
    pub model: PathBuf,
    /// The format to write.
    #[arg(long, value_enum, default_value = "onnx")]
    pub format: Format,
    /// Folder for model.onnx, preprocessing.json and README.md (created when missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Write into an --out folder that is not empty, replacing those three files there.
    #[arg(long)]
    pub force: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// ONNX (opset 17), runnable with onnxruntime.
    Onnx,
}

pub fn run(args: &ExportArgs) -> Result<()> {
    let file = crate::model_file::load(&args.model)?;
    let (arch, params, labels) =
        model_parts(&file).with_context(|| args.model.display().to_string())?;
    let onnx = export::onnx::model_bytes(&arch, &params)
        .with_context(|| format!("cannot export {}", args.model.display()))?;
    let multi_label = matches!(arch.head()?, crate::nn::arch::Head::Sigmoids(_));
    let json = export::preprocessing_json(
        &file.preprocessing,
        &file.vocabulary,
        file.ngrams.as_ref(),
        &labels,
        multi_label,
    )
    .with_context(|| format!("cannot export {}", args.model.display()))?;
    let readme = export::readme(&labels, multi_label);
    let files: [(&str, &[u8]); 3] = [
        (MODEL_ONNX, &onnx),
        (PREPROCESSING_JSON, json.as_bytes()),
        (README_MD, readme.as_bytes()),
    ];
    export::write_folder(&args.out, args.force, &files)?;
    let msg = format!(
        "wrote {}, {} and {}",
        args.out.join(MODEL_ONNX).display(),
        args.out.join(PREPROCESSING_JSON).display(),
        args.out.join(README_MD).display()
    );
    super::predict::write_stdout([msg], "the result")
}

/// The model file as the exporter takes it: the layers, the weights in the arch's flat layout,
/// and the label names.
fn model_parts(file: &ModelFile) -> Result<(Arch, Vec<f32>, Vec<String>)> {
    let params = file.arch.from_named(&file.tensors)?;
    Ok((file.arch.clone(), params, file.labels.clone()))
}
