//! `bench --arch NAME` reports the rate against the measured peak for every preset, in training
//! and inference; fasttext, which has no matrix product, says so instead of a percentage.

mod common;

use imdb_lstm::nn::arch::PRESETS;

#[test]
fn speed_bench_prints_gflops_and_peak_share_for_every_preset() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = common::tiny_archive(tmp.path(), 6);
    for name in PRESETS {
        let (code, out, err) = common::run(
            common::bin()
                .args(["bench", "--arch", name, "--threads", "1", "--epochs", "1"])
                .arg("--data")
                .arg(&archive),
        );
        assert_eq!(code, 0, "{name}: {err}");
        let head = out
            .lines()
            .position(|l| l.trim_start().starts_with("epoch"));
        let head = head.unwrap_or_else(|| panic!("{name}: no table in {out}"));
        let cols: Vec<&str> = out.lines().nth(head).unwrap().split_whitespace().collect();
        assert_eq!(&cols[2..5], ["seq/s", "GFLOP/s", "%peak"], "{name}: {out}");
        let row: Vec<&str> = out
            .lines()
            .nth(head + 1)
            .unwrap()
            .split_whitespace()
            .collect();
        let inference: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("inference from token ids"))
            .collect();
        assert_eq!(inference.len(), 2, "{name}: {out}");
        if name == "fasttext" {
            assert_eq!(row[4], "-", "{name}: {out}");
            assert!(
                out.contains("fasttext: no layer is a matrix product"),
                "{out}"
            );
            for l in inference {
                assert!(l.contains(" GFLOP/s, no GEMM"), "{name}: {l}");
            }
        } else {
            let pct: f64 = row[4].trim_end_matches('%').parse().unwrap();
            assert!(row[4].ends_with('%') && pct >= 0.0, "{name}: {out}");
            for l in inference {
                assert!(
                    l.contains(" GFLOP/s, ") && l.contains("% of peak"),
                    "{name}: {l}"
                );
            }
        }
    }
}
