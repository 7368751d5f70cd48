//! Where a preset's training step goes, on random ids: the whole epoch as `train` runs it (with
//! dense Adam, then with lazy embedding rows), and the parts outside the layers timed alone the
//! same number of times (dropout masks, Adam dense and with lazy embedding rows, repacking the
//! weights). The layers' forward and backward are the rest.
//!
//! `cargo run --release --example step_parts -- [preset] [batches] [threads]`
//! (default cnn-lstm, 200 batches, all cores).

use imdb_lstm::nn::adam::LazyRows;
use imdb_lstm::nn::arch::preset;
use imdb_lstm::nn::{NetMasks, Network};
use imdb_lstm::train::{run_epoch_with, Silent, Split, TrainConfig, TrainState};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().map_or("cnn-lstm", |s| s.as_str());
    let batches: usize = args.get(1).map_or(Ok(200), |s| s.parse())?;
    let threads = match args.get(2) {
        Some(s) => s.parse()?,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let p = preset(name)?;
    let (arch, bs) = (p.arch, p.batch_size);
    let (rows, width) = arch
        .embedding()
        .expect("every preset starts with an Embedding");
    let cfg = TrainConfig {
        batch_size: bs,
        threads,
        ..TrainConfig::default()
    };
    // Zipf-like word ids (low ids common), as in real reviews.
    let mut rng = Pcg64::seed_from_u64(7);
    let (n, t) = (batches * bs, arch.maxlen);
    let x: Vec<u32> = (0..n * t)
        .map(|_| 1 + (rng.gen_range(0.0f64..1.0).powi(3) * (rows - 1) as f64) as u32)
        .collect();
    let y: Vec<f32> = (0..n).map(|i| (i % 2) as f32).collect();
    let mut state = TrainState::new(&arch, &cfg)?;
    let mut net = Network::new(&arch, threads)?;
    let ms = |s: f64| s * 1e3 / batches as f64;
    println!(
        "{name}: {batches} batches of {bs}, {threads} threads, {} parameters ({} x {width} embedding)",
        state.params.len(),
        rows
    );

    let stop = AtomicBool::new(false);
    let split = Split { x: &x, y: &y };
    for (what, lazy) in [
        ("whole step (train's loop, dense Adam):", None),
        (
            "whole step, lazy embedding rows:      ",
            Some((rows, width)),
        ),
    ] {
        let t0 = Instant::now();
        run_epoch_with(
            &mut state,
            &mut net,
            &cfg,
            split,
            None,
            &mut Silent,
            &stop,
            lazy,
        )?;
        println!("{what} {:7.3} ms", ms(t0.elapsed().as_secs_f64()));
    }

    let mut masks = NetMasks::default();
    let t0 = Instant::now();
    for _ in 0..batches {
        net.draw_masks(&mut state.rng, bs, true, &mut masks);
    }
    println!(
        "  dropout masks (the network's threads): {:7.3} ms",
        ms(t0.elapsed().as_secs_f64())
    );

    let g: Vec<f32> = (0..state.params.len())
        .map(|i| ((i % 13) as f32 - 6.0) * 1e-4)
        .collect();
    let t0 = Instant::now();
    for _ in 0..batches {
        state.adam.update(&mut state.params, &g, threads);
    }
    println!(
        "  Adam, every parameter:               {:7.3} ms",
        ms(t0.elapsed().as_secs_f64())
    );

    let t0 = Instant::now();
    for _ in 0..batches {
        net.refresh(&state.params);
    }
    println!(
        "  repacking the weights:               {:7.3} ms",
        ms(t0.elapsed().as_secs_f64())
    );

    // Adam with the embedding rows lazy (same bits): each batch's rows caught up and stepped,
    // the rest replayed once at the end (the flush before validation).
    let mut lazy = LazyRows::new(&state.adam, rows, width);
    let (mut g_rows, mut steps) = (g.clone(), 0.0);
    for ids in x.chunks(bs * t) {
        let mut seen: Vec<u32> = ids.to_vec();
        seen.sort_unstable();
        seen.dedup();
        g_rows[..rows * width].fill(0.0);
        for &r in &seen {
            let r = r as usize;
            g_rows[r * width..(r + 1) * width].copy_from_slice(&g[r * width..(r + 1) * width]);
        }
        let t0 = Instant::now();
        lazy.catch_up(&mut state.adam, &mut state.params, ids, threads);
        lazy.update(&mut state.adam, &mut state.params, &g_rows, &seen, threads);
        steps += t0.elapsed().as_secs_f64();
    }
    let t0 = Instant::now();
    lazy.flush(&mut state.adam, &mut state.params, threads);
    let flush = t0.elapsed().as_secs_f64();
    println!(
        "  Adam, lazy embedding rows:           {:7.3} ms + flush {:.3} ms",
        ms(steps),
        ms(flush)
    );
    Ok(())
}
