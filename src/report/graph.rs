//! model.svg and model.dot: the layer graph as Keras's `plot_model(show_shapes=True)` draws it,
//! written by hand (no Graphviz needed to get the picture).

use crate::nn::arch::Arch;
use anyhow::{bail, Result};
use std::fmt::Write as _;
use std::path::Path;

/// File name of the drawn graph inside a run folder.
pub const MODEL_SVG: &str = "model.svg";
/// File name of the Graphviz source inside a run folder.
pub const MODEL_DOT: &str = "model.dot";

/// One layer as plot_model shows it: name, class name, input and output shapes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    pub name: String,
    pub kind: &'static str,
    pub input_shape: String,
    pub output_shape: String,
}

/// Keras's shape notation: `(None, 80, 128)`; the batch dimension is `None`.
pub fn keras_shape(dims: &[usize]) -> String {
    let mut s = String::from("(None");
    for d in dims {
        let _ = write!(s, ", {d}");
    }
    s.push(')');
    s
}

/// The model's layers in order, InputLayer first, with the shapes Keras reports for them.
pub fn model_layers(arch: &Arch) -> Result<Vec<LayerInfo>> {
    let input = keras_shape(&[arch.maxlen]);
    let mut layers = vec![LayerInfo {
        name: "input_layer".into(),
        kind: "InputLayer",
        input_shape: input.clone(),
        output_shape: input,
    }];
    for l in arch.describe()? {
        let input_shape = layers.last().expect("the input layer").output_shape.clone();
        layers.push(LayerInfo {
            name: l.name,
            kind: l.class_name,
            input_shape,
            output_shape: l.output.to_string(),
        });
    }
    Ok(layers)
}

/// model.svg drawn like Keras's plot_model(show_shapes=True): one box per layer, top to
/// bottom, InputLayer first, each with the layer name, its type, input and output shape,
/// arrows between them; and model.dot (Graphviz DOT of the same graph, record nodes).
/// Both are written atomically into `dir`, which must exist.
pub fn write_model_graph(dir: &Path, arch: &Arch) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        bail!(
            "{} is a file, not a folder; give a folder for {MODEL_SVG} and {MODEL_DOT}",
            dir.display()
        );
    }
    if !dir.is_dir() {
        bail!(
            "folder {} does not exist; create it before writing the model graph",
            dir.display()
        );
    }
    let layers = model_layers(arch)?;
    crate::atomic::write(&dir.join(MODEL_SVG), model_svg(&layers).as_bytes())?;
    crate::atomic::write(&dir.join(MODEL_DOT), model_dot(&layers).as_bytes())?;
    Ok(())
}

/// Escape text for SVG/XML content and attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

// Layout, in SVG user units (pixels).
const TITLE_SIZE: f64 = 15.0;
const TEXT_SIZE: f64 = 13.0;
const MARGIN: f64 = 20.0;
const HEADER_H: f64 = 30.0;
const ROW_H: f64 = 24.0;
const BOX_H: f64 = HEADER_H + 2.0 * ROW_H;
const GAP: f64 = 44.0;
const PAD: f64 = 16.0;

/// A generous width estimate for DejaVu Sans/Verdana-like faces (the viewer picks
/// the font, so boxes are sized with room to spare rather than measured).
fn text_width(s: &str, size: f64) -> f64 {
    s.chars().count() as f64 * size * 0.64
}

/// The SVG text of the graph for `layers`, top to bottom.
pub fn model_svg(layers: &[LayerInfo]) -> String {
    let headers: Vec<String> = layers
        .iter()
        .map(|l| format!("{} ({})", l.name, l.kind))
        .collect();
    let col_w = layers
        .iter()
        .flat_map(|l| [l.input_shape.as_str(), l.output_shape.as_str()])
        .chain(["Input shape", "Output shape"])
        .map(|s| text_width(s, TEXT_SIZE))
        .fold(0.0, f64::max)
        + 2.0 * PAD;
    let box_w = headers
        .iter()
        .map(|h| text_width(h, TITLE_SIZE) + 2.0 * PAD)
        .fold(2.0 * col_w, f64::max)
        .ceil();
    let col_w = box_w / 2.0;
    let width = box_w + 2.0 * MARGIN;
    let n = layers.len() as f64;
    let height = 2.0 * MARGIN + n * BOX_H + (n - 1.0).max(0.0) * GAP;
    let cx = MARGIN + box_w / 2.0;

    let mut s = String::new();
    let _ = writeln!(s, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Verdana, Arial, sans-serif" font-size="{TEXT_SIZE}">"#
    );
    s.push_str("<title>imdb-lstm model</title>\n");
    s.push_str(concat!(
        "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" ",
        "markerWidth=\"9\" markerHeight=\"9\" orient=\"auto\">",
        "<path d=\"M0,0 L10,5 L0,10 z\" fill=\"#333333\"/></marker></defs>\n"
    ));
    let _ = writeln!(
        s,
        r##"<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>"##
    );

    for (i, (l, header)) in layers.iter().zip(&headers).enumerate() {
        let x = MARGIN;
        let y = MARGIN + i as f64 * (BOX_H + GAP);
        let (name, kind) = (xml_escape(&l.name), xml_escape(l.kind));
        let _ = writeln!(
            s,
            r#"<g class="layer" id="layer-{name}" data-name="{name}" data-type="{kind}">"#
        );
        // Box, header band, and the two-column shape table beneath it.
        let _ = writeln!(
            s,
            r##"  <rect x="{x}" y="{y}" width="{box_w}" height="{BOX_H}" rx="4" fill="#ffffff" stroke="#333333" stroke-width="1.5"/>"##
        );
        let _ = writeln!(
            s,
            r##"  <rect x="{x}" y="{y}" width="{box_w}" height="{HEADER_H}" rx="4" fill="#dce8f5" stroke="#333333" stroke-width="1.5"/>"##
        );
        let _ = writeln!(
            s,
            r##"  <line x1="{x}" y1="{y1}" x2="{x2}" y2="{y1}" stroke="#333333"/>"##,
            y1 = y + HEADER_H + ROW_H,
            x2 = x + box_w
        );
        let _ = writeln!(
            s,
            r##"  <line x1="{cx}" y1="{y1}" x2="{cx}" y2="{y2}" stroke="#333333"/>"##,
            y1 = y + HEADER_H,
            y2 = y + BOX_H
        );
        let _ = writeln!(
            s,
            r#"  <text class="layer-title" x="{cx}" y="{ty}" text-anchor="middle" font-size="{TITLE_SIZE}" font-weight="bold">{}</text>"#,
            xml_escape(header),
            ty = y + HEADER_H / 2.0 + TITLE_SIZE * 0.35
        );
        let row = |r: usize| y + HEADER_H + r as f64 * ROW_H + ROW_H / 2.0 + TEXT_SIZE * 0.35;
        let (left, right) = (x + col_w / 2.0, x + col_w * 1.5);
        let cells = [
            ("shape-label", left, row(0), "Input shape"),
            ("shape-label", right, row(0), "Output shape"),
            ("input-shape", left, row(1), l.input_shape.as_str()),
            ("output-shape", right, row(1), l.output_shape.as_str()),
        ];
        for (class, tx, ty, text) in cells {
            let _ = writeln!(
                s,
                r#"  <text class="{class}" x="{tx}" y="{ty}" text-anchor="middle">{}</text>"#,
                xml_escape(text)
            );
        }
        s.push_str("</g>\n");
        if i + 1 < layers.len() {
            let _ = writeln!(
                s,
                r##"<line class="edge" x1="{cx}" y1="{y1}" x2="{cx}" y2="{y2}" stroke="#333333" stroke-width="1.5" marker-end="url(#arrow)"/>"##,
                y1 = y + BOX_H,
                y2 = y + BOX_H + GAP - 2.0
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

/// Escape text inside a Graphviz record label field.
fn record_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '{' | '}' | '|' | '<' | '>' | '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The Graphviz DOT text of the graph: record nodes laid out like the SVG (header
/// row, then an input column and an output column, each label above its shape).
pub fn model_dot(layers: &[LayerInfo]) -> String {
    let mut s = String::from("digraph model {\n");
    s.push_str("  rankdir=TB;\n");
    s.push_str("  node [shape=record, fontname=\"DejaVu Sans\", fontsize=12];\n");
    for l in layers {
        let _ = writeln!(
            s,
            "  \"{id}\" [label=\"{{{header}|{{{{Input shape|{i}}}|{{Output shape|{o}}}}}}}\"];",
            id = l.name.replace('"', "\\\""),
            header = record_escape(&format!("{} ({})", l.name, l.kind)),
            i = record_escape(&l.input_shape),
            o = record_escape(&l.output_shape),
        );
    }
    for pair in layers.windows(2) {
        let _ = writeln!(s, "  \"{}\" -> \"{}\";", pair[0].name, pair[1].name);
    }
    s.push_str("}\n");
    s
}
