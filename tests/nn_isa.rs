//! The kernels of every ISA this CPU has, through the real binary: `bench` measures its peak
//! with the widest FMA the kernels use and names it, and training gives bit-identical models
//! on the AVX2 and AVX-512 paths (same FMA chain per element, wider registers).

mod common;
use common::*;
use imdb_lstm::nn::activation::{detected, Isa};

/// `IMDB_LSTM_ISA` values and the ISA each gives on this CPU (never more than it has).
fn selectable() -> Vec<(Option<&'static str>, Isa)> {
    vec![
        (None, detected()),
        (Some("avx2"), detected().min(Isa::Avx2)),
        (Some("baseline"), Isa::Baseline),
    ]
}

#[test]
fn bench_measures_the_peak_of_the_widest_fma_and_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 6);
    if detected() < Isa::Avx512 {
        eprintln!("note: this CPU lacks AVX-512; checking the AVX2 and baseline peaks only");
    }
    for (env, isa) in selectable() {
        let mut c = bin();
        if let Some(v) = env {
            c.env("IMDB_LSTM_ISA", v);
        }
        let (code, out, err) = run(c
            .args([
                "bench",
                "--threads",
                "1",
                "--epochs",
                "1",
                "--limit",
                "8",
                "--data",
            ])
            .arg(&archive));
        assert_eq!(code, 0, "IMDB_LSTM_ISA={env:?}: {err}");
        let fma = match isa {
            Isa::Avx512 => "AVX-512 FMA",
            Isa::Avx2 => "AVX2 FMA",
            Isa::Baseline => "SSE2 multiply+add",
        };
        let peak = out
            .lines()
            .find(|l| l.starts_with("measured fp32 peak: "))
            .unwrap_or_else(|| panic!("no peak line:\n{out}"));
        assert!(
            peak.contains(" GFLOP/s on 1 threads ") && peak.ends_with(&format!(" with {fma}")),
            "IMDB_LSTM_ISA={env:?}: {peak}"
        );
        assert!(
            out.contains(&format!("{} element-wise kernels", isa.name())),
            "IMDB_LSTM_ISA={env:?}:\n{out}"
        );
    }
}

#[test]
fn training_is_bit_identical_on_avx2_and_avx512() {
    if detected() < Isa::Avx512 {
        eprintln!("skipping: this CPU lacks AVX-512, so only the AVX2 path can run here");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 30);
    let mut models = vec![];
    for (name, isa) in [("wide", None), ("avx2", Some("avx2"))] {
        let mut c = bin();
        if let Some(v) = isa {
            c.env("IMDB_LSTM_ISA", v);
        }
        c.args([
            "train",
            "--quiet",
            "--epochs",
            "2",
            "--threads",
            "2",
            "--data",
        ])
        .arg(&archive)
        .arg("--out")
        .arg(tmp.path().join(name))
        .args(small_model_flags());
        let (code, _, err) = run(&mut c);
        assert_eq!(code, 0, "{name}: {err}");
        models.push(std::fs::read(tmp.path().join(name).join("model.safetensors")).unwrap());
    }
    // The tensors, not the files: the metadata holds wall-clock times.
    let (wide, avx2) = (
        safetensors::SafeTensors::deserialize(&models[0]).unwrap(),
        safetensors::SafeTensors::deserialize(&models[1]).unwrap(),
    );
    let mut names = wide.names();
    names.sort();
    assert!(!names.is_empty());
    for name in names {
        assert!(
            wide.tensor(name).unwrap().data() == avx2.tensor(name).unwrap().data(),
            "the AVX-512 and AVX2 kernels trained a different {name}"
        );
    }
}
