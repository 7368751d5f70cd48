//! Keras-like progress output: a bar on stderr when it is a terminal, one line per epoch
//! otherwise (logs, CI), one JSON object per epoch and per event on stdout with
//! `--log-format json`, or nothing with `--quiet`.

use super::history::EpochRecord;
use super::Observer;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::io::{IsTerminal, Write};

/// How training reports itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// A progress bar on a terminal, else one line per epoch (Keras's verbose=1 / verbose=2).
    #[default]
    Text,
    /// One JSON object per line on stdout, each with an "event": "epoch" for every epoch, then
    /// what ends the run ("early_stopping", "restored_best_weights", "test", "saved").
    Json,
}

/// The observer the command line uses.
pub struct Progress {
    format: LogFormat,
    quiet: bool,
    bar: Option<ProgressBar>,
    interactive: bool,
    /// Total epochs of the run, for the "Epoch 3/10" header (0 = unknown).
    epochs: usize,
}

impl Progress {
    pub fn new(format: LogFormat, quiet: bool) -> Progress {
        Progress {
            format,
            quiet,
            bar: None,
            interactive: std::io::stderr().is_terminal(),
            epochs: 0,
        }
    }

    /// The run's total epochs, shown in each epoch's header.
    pub fn set_epochs(&mut self, epochs: usize) {
        self.epochs = epochs;
    }

    /// In json mode (unless quiet), one line on stdout: `{"event": EVENT, ...fields}`. A closed
    /// or full stdout never stops training.
    pub fn event(&self, event: &str, fields: impl Serialize) {
        #[derive(Serialize)]
        struct Line<'a, T> {
            event: &'a str,
            #[serde(flatten)]
            fields: T,
        }
        if self.quiet || self.format != LogFormat::Json {
            return;
        }
        if let Ok(line) = serde_json::to_string(&Line { event, fields }) {
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        }
    }

    /// Remove the bar (on interrupt or error) so the next message starts on a clean line.
    pub fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// stderr as indicatif sees it, 3 columns narrower than it is. indicatif pads the bar's line
/// to the full width, leaving the cursor in the last column; the "^C" a terminal echoes on
/// Ctrl-C then wraps to a new line, and clearing the bar would erase that line instead of the
/// bar. With a few free columns the echo stays on the bar's line and is cleared with it.
#[derive(Debug)]
struct NarrowTerm(console::Term);

impl indicatif::TermLike for NarrowTerm {
    fn width(&self) -> u16 {
        self.0.size().1.saturating_sub(3).max(20)
    }
    fn height(&self) -> u16 {
        self.0.size().0
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_up(n)
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_down(n)
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_right(n)
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_left(n)
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.0.write_line(s)
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.0.write_str(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.0.clear_line()
    }
    fn flush(&self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// "loss: 0.4580 - accuracy: 0.7831 - val_loss: ..." as Keras prints it.
pub fn metrics_line(r: &EpochRecord) -> String {
    let mut s = format!("loss: {:.4} - accuracy: {:.4}", r.loss, r.accuracy);
    if let (Some(vl), Some(va)) = (r.val_loss, r.val_accuracy) {
        s += &format!(" - val_loss: {vl:.4} - val_accuracy: {va:.4}");
    }
    s
}

impl Observer for Progress {
    fn on_batch(&mut self, epoch: usize, step: usize, steps: usize, loss: f64, accuracy: f64) {
        if self.quiet || self.format == LogFormat::Json || !self.interactive {
            return;
        }
        let bar = self.bar.get_or_insert_with(|| {
            match self.epochs {
                0 => eprintln!("Epoch {epoch}"),
                n => eprintln!("Epoch {epoch}/{n}"),
            }
            let term = Box::new(NarrowTerm(console::Term::stderr()));
            let target = ProgressDrawTarget::term_like_with_hz(term, 10);
            let bar = ProgressBar::with_draw_target(Some(steps as u64), target);
            bar.set_style(
                ProgressStyle::with_template(
                    "{pos:>5}/{len} [{bar:30.cyan/blue}] - ETA {eta} - {msg}",
                )
                .expect("static template")
                .progress_chars("=> "),
            );
            bar
        });
        bar.set_position(step as u64);
        if step == steps || step.is_multiple_of(8) {
            bar.set_message(format!("loss: {loss:.4} - accuracy: {accuracy:.4}"));
        }
    }

    fn on_epoch_end(&mut self, r: &EpochRecord, epochs: usize) {
        // On a terminal the bar's line becomes the epoch's summary, as Keras does.
        let had_bar = self.bar.as_ref().map(|b| b.length().unwrap_or(0));
        self.clear();
        if self.quiet {
            return;
        }
        match self.format {
            LogFormat::Json => self.event("epoch", r),
            LogFormat::Text => match had_bar {
                Some(steps) => {
                    eprintln!("{steps}/{steps} - {:.1}s - {}", r.seconds, metrics_line(r))
                }
                None => eprintln!(
                    "Epoch {}/{epochs} - {:.1}s - {}",
                    r.epoch,
                    r.seconds,
                    metrics_line(r)
                ),
            },
        }
    }
}
