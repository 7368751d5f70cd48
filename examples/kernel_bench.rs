//! Single-threaded timing of the LSTM's per-step GEMM shapes: the general `nn::gemm::matmul`
//! (gemm crate) against the prepacked `nn::packed::matmul_packed`, with B packed for each ISA
//! this CPU has (AVX2, and AVX-512 where present), all timed alternately in one process.
//!
//! `cargo run --release --example kernel_bench [reps]` — each measurement is repeated `reps`
//! times (default 30) and the best is kept, because the machine is shared and noisy.

use imdb_lstm::nn::activation::{detected, Isa};
use imdb_lstm::nn::gemm::{matmul, Op};
use imdb_lstm::nn::packed::{matmul_packed, PackedB};
use std::hint::black_box;
use std::time::Instant;

fn data(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

/// Calls of `f` that take about 2 ms: short windows are less likely to be preempted.
fn calibrate(f: &mut impl FnMut()) -> usize {
    let t = Instant::now();
    let mut calls = 0;
    while t.elapsed().as_secs_f64() < 0.002 {
        f();
        calls += 1;
    }
    calls
}

/// Best seconds per call of `f(i)` for each variant i < `n`, measured alternately so all see
/// the same noise.
fn best(reps: usize, n: usize, mut f: impl FnMut(usize)) -> Vec<f64> {
    let calls: Vec<usize> = (0..n).map(|i| calibrate(&mut || f(i))).collect();
    let mut t = vec![f64::INFINITY; n];
    for _ in 0..reps {
        for (i, &c) in calls.iter().enumerate() {
            let start = Instant::now();
            for _ in 0..c {
                f(i);
            }
            t[i] = t[i].min(start.elapsed().as_secs_f64() / c as f64);
        }
    }
    t
}

/// The packed kernels this CPU can run, narrowest first.
fn isas() -> Vec<Isa> {
    [Isa::Avx2, Isa::Avx512]
        .into_iter()
        .filter(|&i| i <= detected())
        .collect()
}

/// Times `gemm` and `packed(w)` for each ISA `isas()[w]`; prints GFLOP/s and the speed-up of
/// the widest ISA over AVX2.
fn compare(
    reps: usize,
    name: &str,
    flops: f64,
    mut gemm: impl FnMut(),
    mut packed: impl FnMut(usize),
) {
    let isas = isas();
    let t = best(reps, 1 + isas.len(), |i| match i {
        0 => gemm(),
        w => packed(w - 1),
    });
    let mut line = format!("{name:<46} gemm {:6.1}", flops / t[0] / 1e9);
    for (isa, tp) in isas.iter().zip(&t[1..]) {
        line += &format!("  {isa:?} {:6.1} ({:8.2} us)", flops / tp / 1e9, tp * 1e6);
    }
    if t.len() == 3 {
        line += &format!("  x{:.2}", t[1] / t[2]);
    }
    println!("{line}");
}

/// `n` iterations of `N` independent FMAs of `S`'s width: the core's FMA throughput with no
/// memory traffic.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_peak_avx2(n: usize) -> f32 {
    use std::arch::x86_64::*;
    let (x, y) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    let mut acc = [_mm256_set1_ps(1.0); 12];
    for _ in 0..n {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, x, y);
        }
    }
    let mut s = _mm256_setzero_ps();
    for v in acc {
        s = _mm256_add_ps(s, v);
    }
    _mm256_cvtss_f32(s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_peak_avx512(n: usize) -> f32 {
    use std::arch::x86_64::*;
    let (x, y) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    let mut acc = [_mm512_set1_ps(1.0); 24];
    for _ in 0..n {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, x, y);
        }
    }
    let mut s = _mm512_setzero_ps();
    for v in acc {
        s = _mm512_add_ps(s, v);
    }
    _mm512_reduce_add_ps(s)
}

/// Packs `b` (k x n, stride ldb) for `isa`, or `b^T` from s (n x k, stride ldb).
fn packed_for(isa: Isa, b: &[f32], ldb: usize, k: usize, n: usize, transposed: bool) -> PackedB {
    let mut p = PackedB::new();
    if transposed {
        p.pack_transposed_for(isa, b, ldb, k, n);
    } else {
        p.pack_for(isa, b, ldb, k, n);
    }
    p
}

fn main() {
    let reps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let isas = isas();
    let (h, g4, steps) = (128, 512, 80);
    let u = data(h * g4, 1); // recurrent kernel [H, 4H]
    let mut ut = vec![0.0; g4 * h]; // its transpose [4H, H]
    for i in 0..h {
        for j in 0..g4 {
            ut[j * h + i] = u[i * g4 + j];
        }
    }
    println!("single thread, best of {reps}; packed kernels {isas:?}; GFLOP/s");
    #[cfg(target_arch = "x86_64")]
    {
        let n = 1 << 20;
        if detected() >= Isa::Avx2 {
            // SAFETY: AVX2+FMA present (checked just above).
            let t = best(reps, 1, |_| unsafe {
                black_box(fma_peak_avx2(black_box(n)));
            })[0];
            println!(
                "AVX2 FMA peak probe (registers only, 12 chains): {:.1} GFLOP/s",
                (n * 12 * 16) as f64 / t / 1e9
            );
        }
        if detected() >= Isa::Avx512 {
            // SAFETY: AVX-512F present (checked just above).
            let t = best(reps, 1, |_| unsafe {
                black_box(fma_peak_avx512(black_box(n / 2)));
            })[0];
            println!(
                "AVX-512 FMA peak probe (registers only, 24 chains): {:.1} GFLOP/s",
                (n / 2 * 24 * 32) as f64 / t / 1e9
            );
        }
    }
    // Gate products: C[m x n] += A[m x k] * B for the shapes of the time loop (m = one
    // thread's rows), the backward (k = 512) and the input projection (m = 80 steps x 16 or 32).
    for &(m, n, k, transposed, what) in &[
        (6, 16, 128, false, "L1 tile"),
        (12, 32, 128, false, "L1 tile"),
        (16, 512, 128, false, "fwd shared"),
        (32, 512, 128, false, "fwd shared"),
        (64, 512, 128, false, "fwd shared / inference"),
        (16, 128, 128, false, "fwd per-gate"),
        (32, 128, 128, false, "fwd per-gate"),
        (64, 128, 128, false, "fwd per-gate"),
        (16, 128, 512, true, "bwd shared (B = U^T)"),
        (16, 128, 128, true, "bwd per-gate (B = U_g^T)"),
        (64, 128, 512, true, "bwd shared (B = U^T)"),
        (1280, 128, 128, false, "input proj per gate"),
        (2560, 128, 128, false, "input proj per gate"),
    ] {
        // B is U (or a gate's block of it), or U^T packed from U itself.
        let a = data(m * k, (m + n + k) as u32);
        let (mut c1, mut c2) = (data(m * n, 3), data(m * n, 3));
        let bt: Vec<f32> = if transposed {
            (0..k * n).map(|i| ut[(i / n) * h + i % n]).collect()
        } else {
            Vec::new()
        };
        let ps: Vec<PackedB> = isas
            .iter()
            .map(|&i| packed_for(i, &u, g4, k, n, transposed))
            .collect();
        let (bg, ldbg) = if transposed {
            (&bt[..], n)
        } else {
            (&u[..], g4)
        };
        compare(
            reps,
            &format!("{what} m={m} n={n} k={k}"),
            2.0 * (m * n * k) as f64,
            || {
                matmul(
                    m,
                    n,
                    k,
                    black_box(&a),
                    k,
                    Op::N,
                    bg,
                    ldbg,
                    Op::N,
                    &mut c1,
                    n,
                    true,
                )
            },
            |w| matmul_packed(m, black_box(&a), k, &ps[w], &mut c2, n, true),
        );
    }

    // The forward time loop of one thread's batch half: pack once (timed), then 80 steps, each
    // reading its own masked h and writing its own gate rows.
    for m in [16, 32] {
        let flops = 2.0 * (steps * m * g4 * h) as f64;
        let hm = data(4 * steps * m * h, 8);
        let (mut z1, mut z2) = (data(steps * m * g4, 9), data(steps * m * g4, 9));
        let mut ps: Vec<PackedB> = (0..4).map(|_| PackedB::new()).collect();
        compare(
            reps,
            &format!("80-step fwd loop m={m}, per-gate (incl. packing)"),
            flops,
            || {
                for t in 0..steps {
                    let z = &mut z1[t * m * g4..(t + 1) * m * g4];
                    for g in 0..4 {
                        let a = black_box(&hm[(g * steps + t) * m * h..]);
                        matmul(
                            m,
                            h,
                            h,
                            a,
                            h,
                            Op::N,
                            &u[g * h..],
                            g4,
                            Op::N,
                            &mut z[g * h..],
                            g4,
                            true,
                        );
                    }
                }
            },
            |w| {
                for (g, p) in ps.iter_mut().enumerate() {
                    p.pack_for(isas[w], &u[g * h..], g4, h, h);
                }
                for t in 0..steps {
                    let z = &mut z2[t * m * g4..(t + 1) * m * g4];
                    for (g, p) in ps.iter().enumerate() {
                        let a = black_box(&hm[(g * steps + t) * m * h..]);
                        matmul_packed(m, a, h, p, &mut z[g * h..], g4, true);
                    }
                }
            },
        );
    }
    let mut p = PackedB::new();
    for &isa in &isas {
        let t = best(reps, 1, |_| p.pack_for(isa, black_box(&u), g4, h, g4))[0];
        println!("pack U [128 x 512] for {isa:?}: {:.2} us", t * 1e6);
    }
}
