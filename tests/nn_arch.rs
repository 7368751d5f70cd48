//! The model description (src/nn/arch.rs): every preset against what Keras 3 says about the same
//! model (tests/fixtures/keras, written by compare/keras_arch.py), the tutorial against today's
//! hard-wired model, and one clear line for each stack or setting this tool cannot run.

use imdb_lstm::nn::arch::{
    parse_arch_json, preset, read_arch_file, Arch, Head, LayerSpec, Shape, PRESETS,
};
use imdb_lstm::nn::ModelConfig;
use serde_json::Value;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/keras/{name}"))
}

/// What Keras said about a preset: per layer (name, class, output shape, params), and every
/// weight's (name, shape).
fn keras_facts(preset: &str) -> Value {
    let text = std::fs::read_to_string(fixture(&format!("{preset}.weights.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn shape_as_keras(s: Shape) -> Value {
    match s {
        Shape::Seq { steps, features } => serde_json::json!([null, steps, features]),
        Shape::Flat { features } => serde_json::json!([null, features]),
    }
}

/// Every model compare/keras_arch.py built: the presets and a few extras.
fn keras_models() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixture(""))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".weights.json").map(str::to_string)
        })
        .collect();
    names.sort();
    assert_eq!(names.len(), PRESETS.len() + 3, "{names:?}");
    names
}

#[test]
fn arch_of_each_keras_file_matches_keras_layer_by_layer() {
    for name in keras_models() {
        let arch = read_arch_file(&fixture(&format!("{name}.json")), 1).unwrap();
        let info = arch.describe().unwrap();
        let facts = keras_facts(&name);
        let layers = facts["layers"].as_array().unwrap();
        assert_eq!(info.len(), layers.len(), "{name}: layer count");
        for (ours, keras) in info.iter().zip(layers) {
            assert_eq!(ours.name, keras["name"], "{name}");
            assert_eq!(ours.class_name, keras["class"], "{name}");
            assert_eq!(
                shape_as_keras(ours.output),
                keras["output_shape"],
                "{name} {}",
                ours.name
            );
            assert_eq!(ours.params as u64, keras["params"], "{name} {}", ours.name);
        }
        let tensors: Vec<Value> = arch
            .tensors()
            .unwrap()
            .into_iter()
            .map(|t| serde_json::json!([t.name, t.shape]))
            .collect();
        assert_eq!(Value::from(tensors), facts["tensors"], "{name}: tensors");
        assert_eq!(
            arch.param_count().unwrap() as u64,
            facts["total_params"],
            "{name}"
        );
        let head = match name.as_str() {
            "x-cnn-gru-softmax" => Head::Softmax(3),
            _ => Head::Sigmoid,
        };
        assert_eq!(arch.head().unwrap(), head, "{name}");
    }
}

#[test]
fn arch_keras_files_parse_to_the_presets() {
    for name in PRESETS {
        // maxlen comes from the file's InputLayer, not the default.
        let arch = read_arch_file(&fixture(&format!("{name}.json")), 1).unwrap();
        assert_eq!(arch, preset(name).unwrap().arch, "{name}");
    }
}

#[test]
fn arch_tutorial_has_todays_tensor_names_shapes_and_flops() {
    let arch = preset("lstm").unwrap().arch;
    let ours: Vec<(String, Vec<usize>)> = arch
        .tensors()
        .unwrap()
        .into_iter()
        .map(|t| (t.name, t.shape))
        .collect();
    let cfg = ModelConfig::default();
    let today: Vec<(String, Vec<usize>)> = cfg
        .tensor_shapes()
        .into_iter()
        .map(|(n, s)| (n.to_string(), s))
        .collect();
    assert_eq!(ours, today);
    assert_eq!(arch.maxlen, cfg.maxlen);
    assert_eq!(arch, cfg.arch(), "the preset is the default config's stack");
    // bench's count before it read the arch: the input and recurrent products of every step,
    // and the dense layer.
    let (d, h, t) = (128.0, 128.0, 80.0);
    let forward = t * (2.0 * d * 4.0 * h + 2.0 * h * 4.0 * h) + 2.0 * h;
    assert_eq!(arch.forward_flops().unwrap(), forward);
    assert_eq!(arch.train_flops().unwrap(), 3.0 * forward);
    // The layout is contiguous in file order.
    let layout = arch.layout().unwrap();
    assert_eq!(layout[0].1, 0..640_000);
    assert!(layout.windows(2).all(|w| w[0].1.end == w[1].1.start));
    assert_eq!(layout.last().unwrap().1.end, 771_713);
}

#[test]
fn arch_flops_count_every_matrix_product() {
    let cnn = preset("cnn").unwrap().arch.describe().unwrap();
    let flops: Vec<f64> = cnn.iter().map(|l| l.flops).collect();
    // conv: 398 steps x 2 x (3 x 50) x 250; dense 2 x 250 x 250; dense_1 2 x 250.
    assert_eq!(
        flops,
        [
            0.0,
            0.0,
            398.0 * 2.0 * 150.0 * 250.0,
            0.0,
            125_000.0,
            0.0,
            0.0,
            500.0,
            0.0
        ]
    );
    let bi = preset("bilstm").unwrap().arch.describe().unwrap();
    assert_eq!(
        bi[1].flops,
        2.0 * 100.0 * (2.0 * 128.0 * 256.0 + 2.0 * 64.0 * 256.0)
    );
    let gru = preset("gru").unwrap().arch.describe().unwrap();
    assert_eq!(
        gru[1].flops,
        80.0 * (2.0 * 128.0 * 384.0 + 2.0 * 128.0 * 384.0)
    );
}

#[test]
fn arch_round_trips_through_json() {
    for name in PRESETS {
        let arch = preset(name).unwrap().arch;
        // As a model file stores it.
        let stored = serde_json::to_string(&arch).unwrap();
        assert_eq!(
            serde_json::from_str::<Arch>(&stored).unwrap(),
            arch,
            "{name}"
        );
        // The layer list is itself an --arch-file.
        let list = serde_json::to_string_pretty(&arch.layers).unwrap();
        let file = parse_arch_json(&list).unwrap();
        assert_eq!(file.maxlen, None);
        assert_eq!(file.into_arch(arch.maxlen).unwrap(), arch, "{name}");
    }
    // A stored model is checked as it is read.
    let mut bad = serde_json::to_value(preset("cnn").unwrap().arch).unwrap();
    bad["layers"][2]["config"]["strides"] = 2.into();
    let err = serde_json::from_value::<Arch>(bad).unwrap_err().to_string();
    assert_eq!(
        err,
        "layer 3 (Conv1D): strides 2 is not supported; only strides 1"
    );
    let bi = serde_json::to_value(&preset("bilstm").unwrap().arch.layers[1]).unwrap();
    assert_eq!(bi["class_name"], "Bidirectional");
    assert_eq!(bi["config"]["layer"]["class_name"], "LSTM");
    assert_eq!(bi["config"]["merge_mode"], "concat");
}

#[test]
fn arch_fasttext_embedding_size_is_set_by_the_data_step() {
    let mut p = preset("fasttext").unwrap();
    assert_eq!((p.num_words, p.ngrams, p.epochs), (20000, 2, 5));
    p.arch.set_input_dim(1_234_567);
    assert_eq!(p.arch.tensors().unwrap()[0].shape, [1_234_567, 50]);
}

#[test]
fn arch_presets_carry_their_training_defaults() {
    let facts: Vec<(usize, usize, usize, usize)> = PRESETS
        .iter()
        .map(|n| {
            let p = preset(n).unwrap();
            (p.num_words, p.arch.maxlen, p.batch_size, p.epochs)
        })
        .collect();
    assert_eq!(
        facts,
        [
            (5000, 80, 32, 2),
            (5000, 80, 32, 2),
            (20000, 100, 32, 4),
            (5000, 80, 32, 2),
            (5000, 400, 32, 2),
            (20000, 100, 30, 2),
            (20000, 400, 32, 5),
        ]
    );
}

#[test]
fn arch_unknown_preset_lists_the_names() {
    let err = preset("transformer").unwrap_err().to_string();
    assert_eq!(
        err,
        "unknown model preset 'transformer'; the presets are lstm, gru, bilstm, stacked-lstm, cnn, cnn-lstm, fasttext"
    );
}

/// The one-line error for an --arch-file holding `json` (maxlen 10 unless it says), with the
/// temp folder shown as `…`.
fn arch_file_error(json: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("arch.json");
    std::fs::write(&path, json).unwrap();
    let err = read_arch_file(&path, 10).expect_err("refused").to_string();
    assert!(!err.contains('\n'), "one line: {err}");
    err.replace(&dir.path().display().to_string(), "…")
}

/// Layer entries around `middle`: an Embedding(50, 4) first, a sigmoid Dense(1) last.
fn stack(middle: &str) -> String {
    format!(
        r#"[{{"class_name": "Embedding", "config": {{"input_dim": 50, "output_dim": 4}}}},
           {middle},
           {{"class_name": "Dense", "config": {{"units": 1, "activation": "sigmoid"}}}}]"#
    )
}

#[test]
fn arch_file_refuses_unsupported_layers_and_settings() {
    let cases: &[(&str, &str)] = &[
        (
            r#"{"class_name": "LayerNormalization", "config": {}}"#,
            "--arch-file …/arch.json: layer 2 (LayerNormalization) is not supported; supported: Embedding, LSTM, GRU, Bidirectional, Dropout, Dense, Activation, Conv1D, MaxPooling1D, GlobalMaxPooling1D, GlobalAveragePooling1D",
        ),
        (
            r#"{"class_name": "LSTM", "config": {"units": "64"}}"#,
            "--arch-file …/arch.json: layer 2 (LSTM): units must be a whole number, got \"64\"",
        ),
        (
            r#"{"class_name": "LSTM", "config": {"units": 8, "go_backwards": true}}"#,
            "--arch-file …/arch.json: layer 2 (LSTM): go_backwards true is not supported; only false",
        ),
        (
            r#"{"class_name": "LSTM", "config": {"units": 8, "stateful": true}}"#,
            "--arch-file …/arch.json: layer 2 (LSTM): stateful true is not supported; only false",
        ),
        (
            r#"{"class_name": "GRU", "config": {"units": 8, "reset_after": false}}"#,
            "--arch-file …/arch.json: layer 2 (GRU): reset_after false is not supported; only true",
        ),
        (
            r#"{"class_name": "Bidirectional", "config": {"merge_mode": "sum", "layer": {"class_name": "LSTM", "config": {"units": 8}}}}"#,
            "--arch-file …/arch.json: layer 2 (Bidirectional): merge_mode 'sum' is not supported; only 'concat'",
        ),
        (
            r#"{"class_name": "Bidirectional", "config": {"layer": {"class_name": "Dense", "config": {"units": 8}}}}"#,
            "--arch-file …/arch.json: layer 2 (Bidirectional): layer must be an LSTM or GRU, not Dense",
        ),
        (
            r#"{"class_name": "Bidirectional", "config": {"layer": {"class_name": "LSTM", "config": {"units": 8, "go_backwards": true}}}}"#,
            "--arch-file …/arch.json: layer 2 (Bidirectional) layer (LSTM): go_backwards true is not supported; only false",
        ),
        (
            r#"{"class_name": "Bidirectional", "config": {"layer": {"class_name": "LSTM", "config": {"units": 8}}, "backward_layer": {"class_name": "LSTM", "config": {"units": 9, "go_backwards": true}}}}"#,
            "--arch-file …/arch.json: layer 2 (Bidirectional): backward_layer differs from layer; only a backward copy of layer is supported",
        ),
        (
            r#"{"class_name": "Conv1D", "config": {"filters": 8, "kernel_size": [3], "padding": "same"}}"#,
            "--arch-file …/arch.json: layer 2 (Conv1D): padding 'same' is not supported; only 'valid'",
        ),
        (
            r#"{"class_name": "Conv1D", "config": {"filters": 8, "kernel_size": [3], "strides": [2]}}"#,
            "--arch-file …/arch.json: layer 2 (Conv1D): strides 2 is not supported; only strides 1",
        ),
        (
            r#"{"class_name": "Conv1D", "config": {"filters": 8, "kernel_size": 3, "activation": "elu"}}"#,
            "--arch-file …/arch.json: layer 2 (Conv1D): activation 'elu' is not supported; supported: linear, relu, sigmoid, softmax, tanh",
        ),
        (
            r#"{"class_name": "Dense", "config": {"units": 8, "use_bias": false}}"#,
            "--arch-file …/arch.json: layer 2 (Dense): use_bias false is not supported; only true",
        ),
        (
            r#"{"class_name": "Dense", "config": {"units": 8, "kernel_regularizer": {"class_name": "L2"}}}"#,
            "--arch-file …/arch.json: layer 2 (Dense): kernel_regularizer {\"class_name\":\"L2\"} is not supported; only null",
        ),
        (
            r#"{"class_name": "Dense", "config": {"units": 8, "kernel_initializer": "he_normal"}}"#,
            "--arch-file …/arch.json: layer 2 (Dense): kernel_initializer \"he_normal\" is not supported; only GlorotUniform",
        ),
        (
            r#"{"class_name": "MaxPooling1D", "config": {"pool_size": 2, "strides": 1}}"#,
            "--arch-file …/arch.json: layer 2 (MaxPooling1D): strides 1 is not supported; only strides equal to pool_size (2)",
        ),
        (
            r#"{"class_name": "Dropout", "config": {"rate": 1.0}}"#,
            "--arch-file …/arch.json: layer 2 (Dropout): rate 1 is outside [0, 1): use a fraction such as 0.2",
        ),
        (
            r#"{"class_name": "LSTM", "config": {"units": 8, "recurrent_dropout": -0.1}}"#,
            "--arch-file …/arch.json: layer 2 (LSTM): recurrent_dropout -0.1 is outside [0, 1): use a fraction such as 0.2",
        ),
        (
            r#"{"class_name": "Bidirectional", "config": {"layer": {"class_name": "GRU", "config": {"units": 8, "dropout": 2}}}}"#,
            "--arch-file …/arch.json: layer 2 (Bidirectional) layer (GRU): dropout 2 is outside [0, 1): use a fraction such as 0.2",
        ),
        (
            r#"{"class_name": "LSTM", "config": {"units": 0}}"#,
            "--arch-file …/arch.json: layer 2 (LSTM): units 0 must be at least 1",
        ),
    ];
    for (middle, want) in cases {
        assert_eq!(arch_file_error(&stack(middle)), *want, "{middle}");
    }
    let mask = r#"[{"class_name": "Embedding", "config": {"input_dim": 50, "output_dim": 4, "mask_zero": true}}]"#;
    assert_eq!(
        arch_file_error(mask),
        "--arch-file …/arch.json: layer 1 (Embedding): mask_zero true is not supported; only false"
    );
}

#[test]
fn arch_refuses_impossible_stacks() {
    let cases: &[(&str, &str)] = &[
        (
            r#"[{"class_name": "LSTM", "config": {"units": 8}}]"#,
            "--arch-file …/arch.json: layer 1 (LSTM): the first layer must be an Embedding (the model reads token ids)",
        ),
        (
            &stack(r#"{"class_name": "LSTM", "config": {"units": 8}}, {"class_name": "LSTM", "config": {"units": 8}}"#),
            "--arch-file …/arch.json: layer 3 (LSTM) needs a sequence (None, steps, features), but layer 2 (LSTM) gives (None, 8): set return_sequences=True on layer 2 (LSTM)",
        ),
        (
            &stack(r#"{"class_name": "Dense", "config": {"units": 8}}"#),
            "--arch-file …/arch.json: layer 2 (Dense) gets the sequence (None, 10, 4) from layer 1 (Embedding), but Dense here takes only (None, features): put GlobalMaxPooling1D or GlobalAveragePooling1D before it, or use return_sequences=False on the recurrent layer",
        ),
        (
            &stack(r#"{"class_name": "Conv1D", "config": {"filters": 8, "kernel_size": 11}}"#),
            "--arch-file …/arch.json: layer 2 (Conv1D): kernel_size 11 is longer than the 10 steps it gets from layer 1 (Embedding)",
        ),
        (
            &stack(r#"{"class_name": "Conv1D", "config": {"filters": 8, "kernel_size": 3}}, {"class_name": "MaxPooling1D", "config": {"pool_size": 9}}"#),
            "--arch-file …/arch.json: layer 3 (MaxPooling1D): pool_size 9 leaves no steps from the 8 it gets from layer 2 (Conv1D)",
        ),
        (
            r#"[{"class_name": "Embedding", "config": {"input_dim": 50, "output_dim": 4}}, {"class_name": "LSTM", "config": {"units": 8, "return_sequences": true}}]"#,
            "--arch-file …/arch.json: the model ends in the sequence (None, 10, 8); it must end in (None, 1) with a sigmoid or (None, K) with a softmax or sigmoid: add GlobalMaxPooling1D and a Dense layer",
        ),
        (
            r#"[{"class_name": "Embedding", "config": {"input_dim": 50, "output_dim": 4}}, {"class_name": "GlobalAveragePooling1D"}, {"class_name": "Dense", "config": {"units": 3, "activation": "relu"}}]"#,
            "--arch-file …/arch.json: layer 3 (Dense) makes the output (None, 3) with activation 'relu'; the model must end in 1 unit with 'sigmoid' (two classes), K >= 2 units with 'softmax' (K classes) or K >= 2 units with 'sigmoid' (K labels, several per text)",
        ),
        (
            r#"[{"class_name": "Embedding", "config": {"input_dim": 50, "output_dim": 4}}, {"class_name": "GlobalAveragePooling1D"}, {"class_name": "Dense", "config": {"units": 1}}, {"class_name": "Dropout", "config": {"rate": 0.1}}]"#,
            "--arch-file …/arch.json: layer 3 (Dense) makes the output (None, 1) with activation 'linear'; the model must end in 1 unit with 'sigmoid' (two classes), K >= 2 units with 'softmax' (K classes) or K >= 2 units with 'sigmoid' (K labels, several per text)",
        ),
        (
            r#"[{"class_name": "Embedding", "config": {"input_dim": 50, "output_dim": 4}}, {"class_name": "LSTM", "config": {"units": 4}}]"#,
            "--arch-file …/arch.json: the model ends in (None, 4) without a Dense layer; it must end in Dense(1, activation='sigmoid'), Dense(K, activation='softmax') or Dense(K, activation='sigmoid')",
        ),
        (
            r#"[{"class_name": "Embedding", "config": {"input_dim": 268435456, "output_dim": 2}}]"#,
            "--arch-file …/arch.json: layer 1 (Embedding): the model has more than 268435456 parameters by here: make it smaller",
        ),
        (
            r#"[{"class_name": "Embedding", "config": {"input_dim": 18446744073709551615, "output_dim": 18446744073709551615}}]"#,
            "--arch-file …/arch.json: layer 1 (Embedding): the model has more than 268435456 parameters by here: make it smaller",
        ),
        (
            &stack(r#"{"class_name": "Embedding", "config": {"input_dim": 5, "output_dim": 4}}"#),
            "--arch-file …/arch.json: layer 2 (Embedding): only the first layer may be an Embedding",
        ),
    ];
    for (json, want) in cases {
        assert_eq!(arch_file_error(json), *want, "{json}");
    }
    let softmax = r#"[{"class_name": "Embedding", "config": {"input_dim": 50, "output_dim": 4}}, {"class_name": "GlobalMaxPooling1D"}, {"class_name": "Dense", "config": {"units": 3, "activation": "softmax"}}]"#;
    let arch = parse_arch_json(softmax).unwrap().into_arch(10).unwrap();
    assert_eq!(arch.head().unwrap(), Head::Softmax(3));
}

#[test]
fn arch_file_refuses_what_is_not_a_model_description() {
    let cases: &[(&str, &str)] = &[
        (
            "",
            "--arch-file …/arch.json: not JSON: EOF while parsing a value at line 1 column 0",
        ),
        (
            "[{\"class_name\": \"Embedding\",}]",
            "--arch-file …/arch.json: not JSON: trailing comma at line 1 column 29",
        ),
        (
            "42",
            "--arch-file …/arch.json: expected a JSON list of layers ([{\"class_name\": \"Embedding\", \"config\": {...}}, ...]) or a Keras Sequential model (model.to_json()); got a number",
        ),
        ("[]", "--arch-file …/arch.json: no layers: the model must start with an Embedding"),
        (
            "[7]",
            "--arch-file …/arch.json: layer 1: expected an object {\"class_name\": ..., \"config\": {...}}, got 7",
        ),
        (
            "[{\"config\": {}}]",
            "--arch-file …/arch.json: layer 1: \"class_name\" is missing or not a string",
        ),
        (
            r#"{"class_name": "Functional", "config": {}}"#,
            "--arch-file …/arch.json: a Keras Functional model is not supported: only a Sequential model or a list of layers",
        ),
        (
            r#"{"class_name": "Sequential", "config": {"layers": [{"class_name": "InputLayer", "config": {"batch_shape": [null, 80, 3]}}]}}"#,
            "--arch-file …/arch.json: InputLayer batch_shape must be [null, maxlen] (a batch of token id sequences), got [null,80,3]",
        ),
    ];
    for (json, want) in cases {
        assert_eq!(arch_file_error(json), *want, "{json}");
    }
    let missing = read_arch_file(std::path::Path::new("/nonexistent/arch.json"), 10)
        .unwrap_err()
        .to_string();
    assert_eq!(missing, "--arch-file /nonexistent/arch.json: no such file; give a JSON list of layers or the file Keras model.to_json() writes");
}

#[test]
fn arch_file_takes_maxlen_from_the_input_layer() {
    let mut keras: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("cnn.json")).unwrap()).unwrap();
    keras["config"]["layers"][0]["config"]["batch_shape"] = serde_json::json!([null, 120]);
    let arch = parse_arch_json(&keras.to_string())
        .unwrap()
        .into_arch(80)
        .unwrap();
    assert_eq!(arch.maxlen, 120);
    assert_eq!(
        arch.describe().unwrap()[2].output,
        Shape::Seq {
            steps: 118,
            features: 250
        }
    );
}

mod never_panics {
    use super::*;
    use imdb_lstm::nn::arch::{Activation, MergeMode, Padding, Recurrent};
    use proptest::prelude::*;

    /// Small sizes mostly (stacks that fit), now and then the extremes.
    fn size() -> impl Strategy<Value = usize> {
        prop_oneof![8 => 0..12usize, 1 => Just(usize::MAX), 1 => any::<usize>()]
    }

    /// A fraction mostly, any float now and then.
    fn rate() -> impl Strategy<Value = f32> {
        prop_oneof![4 => 0.0f32..1.0, 1 => any::<f32>()]
    }

    fn leaf() -> impl Strategy<Value = LayerSpec> {
        let act = prop::sample::select(Activation::ALL.to_vec());
        let rnn = || {
            (size(), rate(), rate(), any::<bool>()).prop_map(|(u, d, r, s)| Recurrent {
                units: u,
                dropout: d,
                recurrent_dropout: r,
                return_sequences: s,
            })
        };
        prop_oneof![
            (size(), size()).prop_map(|(input_dim, output_dim)| LayerSpec::Embedding {
                input_dim,
                output_dim
            }),
            rnn().prop_map(LayerSpec::LSTM),
            rnn().prop_map(LayerSpec::GRU),
            rate().prop_map(|rate| LayerSpec::Dropout { rate }),
            (size(), act.clone())
                .prop_map(|(units, activation)| LayerSpec::Dense { units, activation }),
            act.clone()
                .prop_map(|activation| LayerSpec::Activation { activation }),
            (size(), size(), prop_oneof![Just(1), size()], act).prop_map(
                |(filters, kernel_size, strides, activation)| {
                    LayerSpec::Conv1D {
                        filters,
                        kernel_size,
                        padding: Padding::Valid,
                        strides,
                        activation,
                    }
                }
            ),
            (size(), prop::option::of(size())).prop_map(|(pool_size, strides)| {
                LayerSpec::MaxPooling1D {
                    pool_size,
                    strides: strides.unwrap_or(pool_size),
                    padding: Padding::Valid,
                }
            }),
            Just(LayerSpec::GlobalMaxPooling1D {}),
            Just(LayerSpec::GlobalAveragePooling1D {}),
        ]
    }

    fn layer() -> impl Strategy<Value = LayerSpec> {
        prop_oneof![
            4 => leaf(),
            1 => leaf().prop_map(|l| LayerSpec::Bidirectional {
                layer: Box::new(l),
                merge_mode: MergeMode::Concat
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]
        /// Any stack is described or refused in one line; a described one is consistent.
        #[test]
        fn arch_any_stack_is_described_or_refused_in_one_line(
            emb in (size(), size()),
            rest in prop::collection::vec(layer(), 0..6),
            maxlen in size(),
            sigmoid_head in any::<bool>(),
        ) {
            let mut layers = vec![LayerSpec::Embedding { input_dim: emb.0, output_dim: emb.1 }];
            layers.extend(rest);
            if sigmoid_head {
                layers.push(LayerSpec::Dense { units: 1, activation: Activation::Sigmoid });
            }
            let arch = Arch { maxlen, layers };
            match arch.describe() {
                Err(e) => prop_assert!(!e.to_string().contains('\n'), "{e}"),
                Ok(info) => {
                    let layout = arch.layout().unwrap();
                    let total: usize = info.iter().map(|l| l.params).sum();
                    prop_assert_eq!(layout.last().map_or(0, |t| t.1.end), total);
                    prop_assert!(arch.head().is_ok());
                    let json = serde_json::to_string(&arch.layers).unwrap();
                    let back = parse_arch_json(&json).unwrap().into_arch(maxlen).unwrap();
                    prop_assert_eq!(back, arch);
                }
            }
        }
    }
}
