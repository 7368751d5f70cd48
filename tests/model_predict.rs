//! save -> load -> predict gives bit-identical probabilities on raw strings.

mod common;
use imdb_lstm::data::{self, Preprocessing};
use imdb_lstm::infer::Classifier;
use imdb_lstm::model_file::{self, ModelFile};
use imdb_lstm::nn::{ModelConfig, Network};
use imdb_lstm::train::{run_epoch, Silent, Split, TrainConfig, TrainState};

#[test]
fn saved_model_predicts_bit_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = common::tiny_archive(tmp.path(), 30);
    let raw = data::load_reviews(&archive).unwrap();
    let pre = Preprocessing {
        num_words: 60,
        maxlen: 24,
        ..Preprocessing::default()
    };
    let ds = data::prepare(&raw, &pre, 3).unwrap();
    let model = ModelConfig {
        num_words: 60,
        embed_dim: 8,
        units: 6,
        maxlen: 24,
        ..ModelConfig::default()
    };
    let cfg = TrainConfig {
        threads: 2,
        batch_size: 8,
        ..TrainConfig::default()
    };
    let mut state = TrainState::new(&model.arch(), &cfg).unwrap();
    let mut net = Network::new(&model.arch(), 2).unwrap();
    run_epoch(
        &mut state,
        &mut net,
        &cfg,
        Split {
            x: &ds.train.x,
            y: &ds.train.y,
        },
        None,
        &mut Silent,
    )
    .unwrap();

    let file = ModelFile {
        arch: model.arch(),
        labels: model_file::imdb_labels(),
        preprocessing: pre.clone(),
        vocabulary: ds.vocab.words().to_vec(),
        ngrams: None,
        training: None,
        tensors: model.arch().named(&state.params).unwrap(),
    };
    let texts: Vec<String> = vec![
        "A superb film, I loved it.".into(),
        "boring, awful".into(),
        "Ünïcödé <br />words and 123 numbers".into(),
        "x".repeat(5000),
    ];
    let before = Classifier::new(file.clone(), state.params.clone(), 2)
        .unwrap()
        .probabilities(&texts);

    let path = tmp.path().join("model.safetensors");
    model_file::save(&path, &file).unwrap();
    let loaded = model_file::load(&path).unwrap();
    let params = loaded.arch.from_named(&loaded.tensors).unwrap();
    assert_eq!(params, state.params);
    let after = Classifier::load(&path, 2).unwrap().probabilities(&texts);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&before), bits(&after));
    // And the file's preprocessing rebuilds the very rows training used.
    let vocab = data::Vocabulary::from_words(loaded.vocabulary.clone());
    let rebuilt: Vec<u32> = raw
        .test
        .iter()
        .flat_map(|r| loaded.preprocessing.encode_padded(&vocab, None, &r.text))
        .collect();
    let mut sorted_rows: Vec<&[u32]> = rebuilt.chunks(24).collect();
    let mut trained_rows: Vec<&[u32]> = ds.test.x.chunks(24).collect();
    sorted_rows.sort();
    trained_rows.sort();
    assert_eq!(sorted_rows, trained_rows);
}
