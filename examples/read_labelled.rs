//! Loading throughput of `data::labelled::read_labelled` on a labelled text file or folder.
//!
//! `cargo run --release --example read_labelled PATH` — reads PATH (any own-data format), keeping
//! only each text's length (so memory shows what reading itself costs), and prints records, MB/s
//! and labels. Peak RSS: run it under `/usr/bin/time -v`.

use std::path::PathBuf;
use std::time::Instant;

use imdb_lstm::data::labelled::{read_labelled, ReadOptions};

fn main() -> anyhow::Result<()> {
    let path: PathBuf = std::env::args_os()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: read_labelled PATH"))?
        .into();
    let start = Instant::now();
    let d = read_labelled(&path, &ReadOptions::default(), None, |t| t.len())?;
    let secs = start.elapsed().as_secs_f64();
    let bytes: usize = d.items.iter().sum();
    let file_bytes = std::fs::metadata(&path)?.len();
    println!(
        "{} records, {:.1} MB of text in {:.1} MB, {secs:.2} s, {:.0} MB/s, {} labels ({:?})",
        d.items.len(),
        bytes as f64 / 1e6,
        file_bytes as f64 / 1e6,
        file_bytes as f64 / 1e6 / secs,
        d.label_set.names().len(),
        d.label_set.kind()
    );
    Ok(())
}
