//! model.svg / model.dot: every layer with its type and shapes, top to bottom, arrows between.

mod common;
use common::file_names;
use imdb_lstm::nn::ModelConfig;
use imdb_lstm::report::graph::{keras_shape, xml_escape};
use imdb_lstm::report::write_model_graph;
use std::fs;

const LAYERS: [(&str, &str); 4] = [
    ("input_layer", "InputLayer"),
    ("embedding", "Embedding"),
    ("lstm", "LSTM"),
    ("dense", "Dense"),
];

fn texts_of(node: roxmltree::Node, class: &str) -> Vec<String> {
    node.descendants()
        .filter(|n| n.has_tag_name("text") && n.attribute("class") == Some(class))
        .map(|n| n.text().unwrap_or("").to_string())
        .collect()
}

fn check_graph(cfg: &ModelConfig, expect: [(&str, &str); 4]) {
    let dir = tempfile::tempdir().unwrap();
    write_model_graph(dir.path(), &cfg.arch()).unwrap();
    let svg = fs::read_to_string(dir.path().join("model.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("model.svg is well-formed XML");
    let groups: Vec<roxmltree::Node> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("layer"))
        .collect();
    assert_eq!(groups.len(), 4);
    let mut last_y = f64::NEG_INFINITY;
    for (g, ((name, kind), (input, output))) in groups.iter().zip(LAYERS.iter().zip(expect)) {
        assert_eq!(g.attribute("data-name"), Some(*name));
        assert_eq!(g.attribute("data-type"), Some(*kind));
        assert_eq!(texts_of(*g, "layer-title"), [format!("{name} ({kind})")]);
        assert_eq!(texts_of(*g, "input-shape"), [input]);
        assert_eq!(texts_of(*g, "output-shape"), [output]);
        let y: f64 = g
            .children()
            .find(|n| n.has_tag_name("rect"))
            .and_then(|r| r.attribute("y"))
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            y > last_y,
            "{name} at y={y} is not below the previous layer ({last_y})"
        );
        last_y = y;
    }
    let edges = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("edge"))
        .count();
    assert_eq!(edges, 3);

    let dot = fs::read_to_string(dir.path().join("model.dot")).unwrap();
    assert!(dot.starts_with("digraph"));
    assert!(dot.contains("shape=record"));
    for (name, kind) in LAYERS {
        assert_eq!(
            dot.matches(&format!("\"{name}\" [label=")).count(),
            1,
            "{dot}"
        );
        assert!(dot.contains(&format!("{name} ({kind})")));
    }
    for (input, output) in expect {
        assert!(dot.contains(input) && dot.contains(output), "{dot}");
    }
    assert_eq!(dot.matches("->").count(), 3);
    for e in [
        "\"input_layer\" -> \"embedding\";",
        "\"embedding\" -> \"lstm\";",
        "\"lstm\" -> \"dense\";",
    ] {
        assert!(dot.contains(e), "missing edge {e}: {dot}");
    }
    assert_eq!(
        file_names(dir.path()),
        ["model.dot", "model.svg"],
        "no temp files left behind"
    );
}

#[test]
fn default_model_graph_has_keras_shapes() {
    check_graph(
        &ModelConfig::default(),
        [
            ("(None, 80)", "(None, 80)"),
            ("(None, 80)", "(None, 80, 128)"),
            ("(None, 80, 128)", "(None, 128)"),
            ("(None, 128)", "(None, 1)"),
        ],
    );
}

#[test]
fn graph_follows_the_config() {
    let cfg = ModelConfig {
        maxlen: 200,
        embed_dim: 32,
        units: 16,
        ..ModelConfig::default()
    };
    check_graph(
        &cfg,
        [
            ("(None, 200)", "(None, 200)"),
            ("(None, 200)", "(None, 200, 32)"),
            ("(None, 200, 32)", "(None, 16)"),
            ("(None, 16)", "(None, 1)"),
        ],
    );
}

#[test]
fn shapes_and_escaping() {
    assert_eq!(keras_shape(&[80, 128]), "(None, 80, 128)");
    assert_eq!(keras_shape(&[]), "(None)");
    assert_eq!(xml_escape(r#"a<b>&"c'"#), "a&lt;b&gt;&amp;&quot;c&apos;");
}

#[test]
fn missing_dir_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent");
    assert!(write_model_graph(&missing, &ModelConfig::default().arch()).is_err());
    assert!(!missing.exists());
}
