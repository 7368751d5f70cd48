//! history.png / history.svg: decodable, right size, not blank, labelled; odd histories
//! (1 epoch, 200 epochs, no validation) still plot; failures are errors, not panics.

mod common;
use common::file_names;
use imdb_lstm::report::plot::PLOT_SIZE;
use imdb_lstm::report::{plot_history, redraw, write_history};
use imdb_lstm::train::history::{EpochRecord, History};
use std::collections::HashSet;
use std::fs;
use std::path::Path;

const LOSS: [u8; 3] = [31, 119, 180];
const VAL_LOSS: [u8; 3] = [255, 127, 14];
const ACC: [u8; 3] = [44, 160, 44];
const VAL_ACC: [u8; 3] = [214, 39, 40];

/// A plausible run: loss falls, val_loss bottoms out at epoch `n / 3 + 1`.
fn history(n: usize, with_val: bool) -> History {
    let best = (n / 3 + 1) as f64;
    History {
        epochs: (1..=n)
            .map(|e| {
                let t = e as f64;
                EpochRecord {
                    epoch: e,
                    loss: 0.6 * (-t / 5.0).exp() + 0.05,
                    accuracy: 0.95 - 0.3 * (-t / 4.0).exp(),
                    val_loss: with_val.then(|| 0.45 + 0.002 * (t - best).powi(2)),
                    val_accuracy: with_val.then(|| 0.83 - 0.001 * (t - best).abs()),
                    seconds: 12.5,
                }
            })
            .collect(),
    }
}

struct Png {
    width: u32,
    height: u32,
    pixels: Vec<[u8; 3]>,
}

fn load_png(path: &Path) -> Png {
    let img = image::open(path).expect("history.png decodes").to_rgb8();
    Png {
        width: img.width(),
        height: img.height(),
        pixels: img.pixels().map(|p| p.0).collect(),
    }
}

impl Png {
    /// Pixels within a small distance of `c` (the curves are drawn in flat colours).
    fn count_near(&self, c: [u8; 3]) -> usize {
        self.pixels
            .iter()
            .filter(|p| (0..3).map(|i| p[i].abs_diff(c[i]) as u32).sum::<u32>() <= 9)
            .count()
    }
}

fn svg_texts(path: &Path) -> Vec<String> {
    let svg = fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("history.svg is well-formed XML");
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| {
            n.descendants()
                .filter(|t| t.is_text())
                .filter_map(|t| t.text())
                .collect::<String>()
                .trim()
                .to_string()
        })
        .collect()
}

/// Plot `h` into a fresh folder and check both pictures; returns the PNG and SVG texts.
fn plot_and_check(h: &History) -> (Png, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    plot_history(dir.path(), h).unwrap();
    assert_eq!(file_names(dir.path()), ["history.png", "history.svg"]);

    let png = load_png(&dir.path().join("history.png"));
    assert_eq!((png.width, png.height), PLOT_SIZE);
    assert_eq!(PLOT_SIZE, (1000, 600));
    // Not blank: the plot area holds many non-white pixels in many colours.
    let mut colours = HashSet::new();
    let mut non_white = 0usize;
    for y in 60..500 {
        for x in 100..900 {
            let p = png.pixels[(y * png.width + x) as usize];
            colours.insert(p);
            if p != [255, 255, 255] {
                non_white += 1;
            }
        }
    }
    assert!(colours.len() > 20, "only {} colours", colours.len());
    assert!(non_white > 3_000, "only {non_white} non-white pixels");
    // Text was rendered (dark glyph pixels in the title band and axis-label strips).
    let dark_in = |x0: u32, x1: u32, y0: u32, y1: u32| {
        (y0..y1)
            .flat_map(|y| (x0..x1).map(move |x| (x, y)))
            .filter(|&(x, y)| {
                png.pixels[(y * png.width + x) as usize]
                    .iter()
                    .all(|&v| v < 100)
            })
            .count()
    };
    assert!(dark_in(200, 800, 0, 30) > 200, "title not rendered");
    assert!(
        dark_in(400, 600, 535, 560) > 50,
        "x axis label not rendered"
    );

    let texts = svg_texts(&dir.path().join("history.svg"));
    for want in ["epoch", "loss", "accuracy"] {
        assert!(
            texts.iter().any(|t| t == want),
            "no axis label {want:?} in {texts:?}"
        );
    }
    (png, texts)
}

fn has_text(texts: &[String], needle: &str) -> bool {
    texts.iter().any(|t| t.contains(needle))
}

#[test]
fn fifteen_epochs_with_validation() {
    let h = history(15, true);
    let (png, texts) = plot_and_check(&h);
    for name in ["loss", "val_loss", "accuracy", "val_accuracy"] {
        assert!(
            texts
                .iter()
                .any(|t| t.split_whitespace().next() == Some(name)),
            "no legend entry {name:?} in {texts:?}"
        );
    }
    assert_eq!(h.best_epoch(), Some(6));
    assert!(has_text(&texts, "best epoch 6"), "{texts:?}");
    assert!(texts.iter().any(|t| t.contains("Training history")));
    for c in [LOSS, VAL_LOSS, ACC, VAL_ACC] {
        assert!(png.count_near(c) > 100, "series colour {c:?} missing");
    }
}

#[test]
fn one_epoch_is_visible() {
    let (png, texts) = plot_and_check(&history(1, true));
    assert!(has_text(&texts, "best epoch 1"));
    // A single point per series still leaves a visible marker of each colour.
    for c in [LOSS, VAL_LOSS, ACC, VAL_ACC] {
        assert!(
            png.count_near(c) > 15,
            "single point of colour {c:?} not visible"
        );
    }
}

#[test]
fn two_hundred_epochs() {
    let (png, texts) = plot_and_check(&history(200, true));
    assert!(has_text(&texts, "best epoch 67"));
    assert!(
        has_text(&texts, "200"),
        "last epoch tick missing: {texts:?}"
    );
    assert!(png.count_near(LOSS) > 200);
}

#[test]
fn no_validation_values() {
    let h = history(5, false);
    assert_eq!(h.best_epoch(), None);
    let (png, texts) = plot_and_check(&h);
    assert!(!has_text(&texts, "best epoch"));
    assert!(!has_text(&texts, "val_loss"));
    assert!(png.count_near(LOSS) > 100 && png.count_near(ACC) > 100);
    assert_eq!(png.count_near(VAL_LOSS), 0);
    assert_eq!(png.count_near(VAL_ACC), 0);
}

#[test]
fn non_finite_values_are_skipped_not_fatal() {
    let mut h = history(6, true);
    h.epochs[2].loss = f64::NAN;
    h.epochs[3].val_loss = Some(f64::INFINITY);
    plot_and_check(&h);
}

#[test]
fn missing_dir_and_empty_history_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent");
    let msg = format!(
        "{:#}",
        plot_history(&missing, &history(3, true)).unwrap_err()
    );
    assert!(msg.contains("absent"), "{msg}");
    assert!(!missing.exists());
    let msg = format!(
        "{:#}",
        plot_history(dir.path(), &History::default()).unwrap_err()
    );
    assert!(msg.contains("no epochs"), "{msg}");
    assert!(
        file_names(dir.path()).is_empty(),
        "nothing written on error"
    );
}

#[test]
fn redraw_reads_history_json() {
    let dir = tempfile::tempdir().unwrap();
    assert!(redraw(dir.path()).is_err(), "no history.json yet");
    write_history(dir.path(), &history(4, true)).unwrap();
    redraw(dir.path()).unwrap();
    assert_eq!(
        file_names(dir.path()),
        ["history.csv", "history.json", "history.png", "history.svg"]
    );
    let texts = svg_texts(&dir.path().join("history.svg"));
    assert!(has_text(&texts, "best epoch 2"));
    // A path to the JSON file itself also works and draws next to it.
    fs::remove_file(dir.path().join("history.png")).unwrap();
    redraw(&dir.path().join("history.json")).unwrap();
    assert!(dir.path().join("history.png").exists());
}

#[test]
fn epoch_numbers_beyond_i32_still_plot() {
    // Epochs past i32::MAX share the last plottable x; the best-epoch label must not overflow.
    let mut h = history(2, true);
    h.epochs[0].epoch = usize::MAX - 1;
    h.epochs[1].epoch = usize::MAX;
    let dir = tempfile::tempdir().unwrap();
    plot_history(dir.path(), &h).unwrap();
    assert!(dir.path().join("history.png").is_file());
}
