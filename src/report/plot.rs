//! history.png and history.svg: loss (left axis) and accuracy (right axis) per epoch.
//!
//! Text is drawn with a DejaVu Sans face embedded in the binary, so the PNG
//! renders the same on a machine with no system fonts at all.

use super::history_files::{read_history, HISTORY_JSON};
use crate::atomic::{self, TempFile};
use crate::train::history::History;
use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Size of both pictures, in pixels (the SVG uses the same user units).
pub const PLOT_SIZE: (u32, u32) = (1000, 600);
/// File name of the bitmap plot inside a run folder.
pub const HISTORY_PNG: &str = "history.png";
/// File name of the vector plot inside a run folder.
pub const HISTORY_SVG: &str = "history.svg";
/// The most epochs a plot draws: far beyond any real run, while the SVG stays a few MiB.
pub const MAX_PLOT_EPOCHS: usize = 100_000;

/// The family name the embedded face is registered under; plotters' own
/// defaults ask for "sans-serif", so they find it too.
const FONT: &str = "sans-serif";
static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

// Series colours (matplotlib's tab10, as in the Keras tutorial's pictures).
const LOSS_COLOR: RGBColor = RGBColor(31, 119, 180);
const VAL_LOSS_COLOR: RGBColor = RGBColor(255, 127, 14);
const ACC_COLOR: RGBColor = RGBColor(44, 160, 44);
const VAL_ACC_COLOR: RGBColor = RGBColor(214, 39, 40);
const BEST_COLOR: RGBColor = RGBColor(110, 110, 110);

/// Register the embedded font with plotters exactly once per process.
fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU_SANS).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(anyhow!(
            "the embedded DejaVu Sans font could not be loaded; the binary is damaged, rebuild it"
        ))
    }
}

/// history.png (1000x600) and history.svg: x = epoch; left y axis = loss (train "loss" and
/// validation "val_loss"); right y axis = accuracy (train "accuracy", validation
/// "val_accuracy"); a legend naming the series present; axis labels "epoch", "loss",
/// "accuracy"; a title; and the best epoch by val_loss marked with a dashed line and
/// "best epoch N" when `History::best_epoch()` is Some. Both files are written atomically.
pub fn plot_history(dir: &Path, history: &History) -> Result<()> {
    if !dir.is_dir() {
        bail!(
            "run folder {} does not exist; create it (or train into it) before plotting",
            dir.display()
        );
    }
    if history.epochs.is_empty() {
        bail!("the history has no epochs; nothing to plot (train for at least one epoch)");
    }
    if history.epochs.len() > MAX_PLOT_EPOCHS {
        bail!(
            "the history has {} epochs; at most {MAX_PLOT_EPOCHS} can be plotted",
            history.epochs.len()
        );
    }
    ensure_font()?;
    let data = PlotData::new(history)?;

    // SVG: draw into a string, then write it atomically.
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, PLOT_SIZE).into_drawing_area();
        draw(&root, &data).context("drawing history.svg")?;
        root.present()
            .map_err(|e| anyhow!("finishing history.svg: {e}"))?;
    }
    atomic::write(&dir.join(HISTORY_SVG), svg.as_bytes())?;

    // PNG: the bitmap backend encodes to a path, so draw to the temp file's path (it keeps
    // the extension: the encoder picks the format from it).
    let tmp = TempFile::create(&dir.join(HISTORY_PNG))?;
    {
        let root = BitMapBackend::new(tmp.path(), PLOT_SIZE).into_drawing_area();
        draw(&root, &data).context("drawing history.png")?;
        root.present()
            .map_err(|e| anyhow!("encoding {}: {e}", tmp.path().display()))?;
    }
    tmp.commit()
}

/// `imdb-lstm plot RUN_DIR`: read RUN_DIR/history.json (or the history file given) and redraw
/// the two pictures next to it. Returns the folder they were written to.
pub fn redraw(run_dir: &Path) -> Result<PathBuf> {
    let (dir, file) = if run_dir.is_dir() {
        (run_dir, run_dir.join(HISTORY_JSON))
    } else {
        // A history.json path was given: draw next to it.
        let parent = run_dir.parent().filter(|p| !p.as_os_str().is_empty());
        (parent.unwrap_or(Path::new(".")), run_dir.to_path_buf())
    };
    let history = read_history(&file)?;
    plot_history(dir, &history).with_context(|| format!("cannot plot {}", file.display()))?;
    Ok(dir.to_path_buf())
}

/// One named series: its points (non-finite values dropped) and how to draw it.
struct Series {
    name: &'static str,
    color: RGBColor,
    dashed: bool,
    points: Vec<(i32, f64)>,
}

/// Everything the drawing needs, computed once for both backends.
struct PlotData {
    loss: [Series; 2],
    acc: [Series; 2],
    x_range: Range<i32>,
    loss_range: Range<f64>,
    acc_range: Range<f64>,
    best: Option<i32>,
    marker: u32,
}

impl PlotData {
    fn new(h: &History) -> Result<Self> {
        let pts = |f: &dyn Fn(&crate::train::history::EpochRecord) -> Option<f64>| {
            h.epochs
                .iter()
                .filter_map(|e| {
                    f(e).filter(|v| v.is_finite())
                        .map(|v| (epoch_x(e.epoch), v))
                })
                .collect::<Vec<_>>()
        };
        let series = |name, color, dashed, points| Series {
            name,
            color,
            dashed,
            points,
        };
        let loss = [
            series("loss", LOSS_COLOR, false, pts(&|e| Some(e.loss))),
            series("val_loss", VAL_LOSS_COLOR, true, pts(&|e| e.val_loss)),
        ];
        let acc = [
            series("accuracy", ACC_COLOR, false, pts(&|e| Some(e.accuracy))),
            series(
                "val_accuracy",
                VAL_ACC_COLOR,
                true,
                pts(&|e| e.val_accuracy),
            ),
        ];
        let first = h.epochs.iter().map(|e| epoch_x(e.epoch)).min().unwrap_or(1);
        let last = h.epochs.iter().map(|e| epoch_x(e.epoch)).max().unwrap_or(1);
        let values = |s: &[Series; 2]| {
            s.iter()
                .flat_map(|s| s.points.iter().map(|p| p.1))
                .collect::<Vec<_>>()
        };
        Ok(PlotData {
            // One epoch of room each side keeps the end points off the frame.
            x_range: first.saturating_sub(1)..last.saturating_add(1),
            loss_range: padded_range("loss", &values(&loss))?,
            acc_range: padded_range("accuracy", &values(&acc))?,
            loss,
            acc,
            best: h.best_epoch().map(epoch_x),
            // Markers keep a lone epoch visible; on long runs they would only clutter.
            marker: match h.epochs.len() {
                0..=3 => 5,
                4..=60 => 3,
                _ => 0,
            },
        })
    }
}

/// Epoch numbers as plot coordinates (saturating: absurd epochs must not panic).
fn epoch_x(epoch: usize) -> i32 {
    i32::try_from(epoch).unwrap_or(i32::MAX - 1)
}

/// The data's range with 5% head-room each side, never below zero (losses and
/// accuracies are non-negative), and never empty (a single value gets a band).
/// Refused when its width overflows: plotters' tick search never ends on an infinite span.
fn padded_range(axis: &str, values: &[f64]) -> Result<Range<f64>> {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return Ok(0.0..1.0);
    }
    let span = hi - lo;
    let pad = if span > 1e-12 {
        span * 0.05
    } else {
        (hi.abs() * 0.05).max(0.05)
    };
    let start = if lo >= 0.0 {
        (lo - pad).max(0.0)
    } else {
        lo - pad
    };
    let end = hi + pad;
    if !(end - start).is_finite() {
        bail!(
            "the history's {axis} values run from {lo:e} to {hi:e}, more than a plot axis can \
             span; fix or remove those epochs"
        );
    }
    Ok(start..end)
}

/// Decimal places that tell ticks apart on an axis spanning `span`.
fn decimals_for(span: f64) -> usize {
    if span <= 0.0 || !span.is_finite() {
        return 2;
    }
    ((-span.log10()).ceil() as i64 + 1).clamp(1, 6) as usize
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, d: &PlotData) -> Result<()> {
    let err = |what: &str| {
        let what = what.to_string();
        move |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("{what}: {e}")
    };
    root.fill(&WHITE).map_err(err("background"))?;
    let body = root
        .titled("Training history: loss and accuracy per epoch", (FONT, 24))
        .map_err(err("title"))?;
    let (chart_area, legend_area) = body.split_vertically(body.dim_in_pixel().1.saturating_sub(40));

    let mut chart = ChartBuilder::on(&chart_area)
        .margin_left(10)
        .margin_right(10)
        .margin_top(5)
        .x_label_area_size(50)
        .y_label_area_size(75)
        .right_y_label_area_size(75)
        .build_cartesian_2d(d.x_range.clone(), d.loss_range.clone())
        .map_err(err("chart"))?
        .set_secondary_coord(d.x_range.clone(), d.acc_range.clone());

    let loss_dec = decimals_for(d.loss_range.end - d.loss_range.start);
    let acc_dec = decimals_for(d.acc_range.end - d.acc_range.start);
    let loss_fmt = move |y: &f64| format!("{y:.loss_dec$}");
    let acc_fmt = move |y: &f64| format!("{y:.acc_dec$}");
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("loss")
        .x_labels(12)
        .y_label_formatter(&loss_fmt)
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 18))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()
        .map_err(err("axes"))?;
    chart
        .configure_secondary_axes()
        .y_desc("accuracy")
        .y_label_formatter(&acc_fmt)
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 18))
        .draw()
        .map_err(err("accuracy axis"))?;

    // Best epoch first, so the curves are drawn over it.
    if let Some(best) = d.best {
        let x = best;
        let (y0, y1) = (d.loss_range.start, d.loss_range.end);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(x, y0), (x, y1)],
                8,
                5,
                BEST_COLOR.stroke_width(2),
            ))
            .map_err(err("best epoch line"))?;
        // Put the label on the side of the line with more room.
        let mid = ((i64::from(d.x_range.start) + i64::from(d.x_range.end)) / 2) as i32;
        let (dx, h) = if x <= mid {
            (6, HPos::Left)
        } else {
            (-6, HPos::Right)
        };
        let style = TextStyle::from((FONT, 16).into_font())
            .color(&BEST_COLOR)
            .pos(Pos::new(h, VPos::Top));
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((x, y1)) + Text::new(format!("best epoch {best}"), (dx, 6), style),
            ))
            .map_err(err("best epoch label"))?;
    }

    for s in &d.loss {
        let drawn = draw_curve(s, d.marker, |series| chart.draw_series(series).map(|_| ()));
        drawn.map_err(err(s.name))?;
    }
    for s in &d.acc {
        let drawn = draw_curve(s, d.marker, |series| {
            chart.draw_secondary_series(series).map(|_| ())
        });
        drawn.map_err(err(s.name))?;
    }

    draw_legend(&legend_area, d).map_err(err("legend"))?;
    Ok(())
}

/// A drawable element of a curve, boxed so line, dashes and markers share one type.
type Piece<DB> = DynElement<'static, DB, (i32, f64)>;

/// Draw one series as a line (dashed for validation) plus markers, through `sink`
/// (the primary or the secondary axis).
fn draw_curve<DB: DrawingBackend, E>(
    s: &Series,
    marker: u32,
    mut sink: impl FnMut(Vec<Piece<DB>>) -> Result<(), E>,
) -> Result<(), E> {
    if s.points.is_empty() {
        return Ok(());
    }
    let style = s.color.stroke_width(2);
    let mut pieces: Vec<Piece<DB>> = Vec::new();
    if s.dashed {
        pieces.push(DashedPathElement::new(s.points.clone(), 8, 5, style).into_dyn());
    } else {
        pieces.push(PathElement::new(s.points.clone(), style).into_dyn());
    }
    let size = if s.points.len() == 1 {
        marker.max(5)
    } else {
        marker
    };
    if size > 0 {
        for &p in &s.points {
            // Validation markers are rings, so a train point under one stays visible.
            let marker = if s.dashed {
                Circle::new(p, size + 2, s.color.stroke_width(2))
            } else {
                Circle::new(p, size, s.color.filled())
            };
            pieces.push(marker.into_dyn());
        }
    }
    sink(pieces)
}

/// The legend, in its own strip under the chart so it never hides a curve.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    d: &PlotData,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let entries: Vec<(&Series, &str)> = d
        .loss
        .iter()
        .map(|s| (s, "left axis"))
        .chain(d.acc.iter().map(|s| (s, "right axis")))
        .filter(|(s, _)| !s.points.is_empty())
        .collect();
    let (w, h) = area.dim_in_pixel();
    let slot = 225i32;
    let total = slot * entries.len() as i32;
    let mut x = (w as i32 - total).max(0) / 2;
    let y = h as i32 / 2;
    let font = TextStyle::from((FONT, 16).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (s, axis) in entries {
        let style = s.color.stroke_width(3);
        if s.dashed {
            for k in 0..3 {
                let x0 = x + k * 12;
                area.draw(&PathElement::new(vec![(x0, y), (x0 + 7, y)], style))?;
            }
        } else {
            area.draw(&PathElement::new(vec![(x, y), (x + 31, y)], style))?;
        }
        let marker = if s.dashed {
            Circle::new((x + 15, y), 5, s.color.stroke_width(2))
        } else {
            Circle::new((x + 15, y), 4, s.color.filled())
        };
        area.draw(&marker)?;
        area.draw(&Text::new(
            format!("{} ({axis})", s.name),
            (x + 40, y),
            font.clone(),
        ))?;
        x += slot;
    }
    Ok(())
}
