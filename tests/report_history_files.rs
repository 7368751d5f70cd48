//! history.json / history.csv: exact CSV, JSON round-trip, clear errors, atomic writes.

mod common;
use common::file_names;
use imdb_lstm::report::history_files::{history_csv, CSV_HEADER};
use imdb_lstm::report::{read_history, write_history};
use imdb_lstm::train::history::{EpochRecord, History};
use std::fs;

fn two_epochs() -> History {
    History {
        epochs: vec![
            EpochRecord {
                epoch: 1,
                loss: 0.5,
                accuracy: 0.75,
                val_loss: Some(0.4),
                val_accuracy: Some(0.8125),
                seconds: 1.5,
            },
            EpochRecord {
                epoch: 2,
                loss: 0.25,
                accuracy: 0.875,
                val_loss: None,
                val_accuracy: None,
                seconds: 2.0,
            },
        ],
    }
}

#[test]
fn csv_has_exact_header_and_rows_with_empty_cells_for_none() {
    let dir = tempfile::tempdir().unwrap();
    write_history(dir.path(), &two_epochs()).unwrap();
    let csv = fs::read_to_string(dir.path().join("history.csv")).unwrap();
    assert_eq!(
        CSV_HEADER,
        "epoch,loss,accuracy,val_loss,val_accuracy,seconds"
    );
    assert_eq!(
        csv,
        "epoch,loss,accuracy,val_loss,val_accuracy,seconds\n\
         1,0.5,0.75,0.4,0.8125,1.5\n\
         2,0.25,0.875,,,2\n"
    );
    assert_eq!(csv, history_csv(&two_epochs()));
}

#[test]
fn csv_keeps_full_precision() {
    let mut h = two_epochs();
    h.epochs[0].loss = 0.1 + 0.2;
    let csv = history_csv(&h);
    let cell = csv.lines().nth(1).unwrap().split(',').nth(1).unwrap();
    assert_eq!(cell.parse::<f64>().unwrap(), 0.1 + 0.2);
}

#[test]
fn json_round_trips_from_dir_and_from_file() {
    let dir = tempfile::tempdir().unwrap();
    let h = two_epochs();
    write_history(dir.path(), &h).unwrap();
    assert_eq!(read_history(dir.path()).unwrap(), h);
    assert_eq!(read_history(&dir.path().join("history.json")).unwrap(), h);
    let text = fs::read_to_string(dir.path().join("history.json")).unwrap();
    assert!(
        text.contains("\n  \"epochs\""),
        "pretty JSON expected: {text}"
    );
    // Only the two files, no temp files left behind.
    assert_eq!(file_names(dir.path()), ["history.csv", "history.json"]);
}

#[test]
fn overwrite_replaces_previous_history() {
    let dir = tempfile::tempdir().unwrap();
    write_history(dir.path(), &two_epochs()).unwrap();
    let mut one = two_epochs();
    one.epochs.truncate(1);
    write_history(dir.path(), &one).unwrap();
    assert_eq!(read_history(dir.path()).unwrap(), one);
    assert_eq!(
        fs::read_to_string(dir.path().join("history.csv"))
            .unwrap()
            .lines()
            .count(),
        2
    );
}

#[test]
fn non_finite_loss_survives_as_nan() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = two_epochs();
    h.epochs[1].loss = f64::NAN;
    write_history(dir.path(), &h).unwrap();
    let back = read_history(dir.path()).unwrap();
    assert!(back.epochs[1].loss.is_nan());
    assert_eq!(back.epochs[0], h.epochs[0]);
}

#[test]
fn read_errors_on_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = read_history(dir.path()).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("not found"), "{msg}");
    assert!(msg.contains("history.json"), "{msg}");
    assert!(read_history(&dir.path().join("nope/history.json")).is_err());
}

#[test]
fn read_errors_on_garbage_and_wrong_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.json");
    fs::write(&path, "this is not json {").unwrap();
    let msg = format!("{:#}", read_history(dir.path()).unwrap_err());
    assert!(msg.contains("not valid JSON"), "{msg}");

    fs::write(&path, r#"{"foo": 1}"#).unwrap();
    let msg = format!("{:#}", read_history(dir.path()).unwrap_err());
    assert!(msg.contains("not a history"), "{msg}");

    fs::write(&path, r#"{"epochs": [{"epoch": 1, "loss": "high"}]}"#).unwrap();
    assert!(read_history(dir.path()).is_err());
}

#[test]
fn write_into_missing_dir_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("does-not-exist");
    let msg = format!("{:#}", write_history(&missing, &two_epochs()).unwrap_err());
    assert!(msg.contains("does-not-exist"), "{msg}");
    assert!(!missing.exists());
}
