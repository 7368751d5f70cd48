//! Single-threaded timing of the LSTM's per-step GEMM shapes: the general `nn::gemm::matmul`
//! (gemm crate) against the prepacked `nn::packed::matmul_packed`.
//!
//! `cargo run --release --example kernel_bench [reps]` — each measurement is repeated `reps`
//! times (default 30) and the best is kept, because the machine is shared and noisy.

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

fn time(calls: usize, f: &mut impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..calls {
        f();
    }
    t.elapsed().as_secs_f64() / calls as f64
}

/// Best seconds per call of `f` over `reps` windows.
fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    let calls = calibrate(&mut f);
    (0..reps)
        .map(|_| time(calls, &mut f))
        .fold(f64::INFINITY, f64::min)
}

/// Best seconds per call of `f` and of `g`, measured alternately so both see the same noise.
fn best2(reps: usize, mut f: impl FnMut(), mut g: impl FnMut()) -> (f64, f64) {
    let (cf, cg) = (calibrate(&mut f), calibrate(&mut g));
    let (mut tf, mut tg) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..reps {
        tf = tf.min(time(cf, &mut f));
        tg = tg.min(time(cg, &mut g));
    }
    (tf, tg)
}

/// `n` iterations of 12 independent 8-lane FMAs: the core's FMA throughput with no memory traffic.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_peak(n: usize) -> f32 {
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

fn report(name: &str, flops: f64, t_gemm: f64, t_packed: f64) {
    println!(
        "{name:<44} gemm {:7.1} GFLOP/s ({:8.2} us)   packed {:7.1} GFLOP/s ({:8.2} us)   x{:.2}",
        flops / t_gemm / 1e9,
        t_gemm * 1e6,
        flops / t_packed / 1e9,
        t_packed * 1e6,
        t_gemm / t_packed
    );
}

fn main() {
    let reps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let (h, g4, steps) = (128, 512, 80);
    let u = data(h * g4, 1); // recurrent kernel [H, 4H]
    let mut ut = vec![0.0; g4 * h]; // its transpose [4H, H]
    for i in 0..h {
        for j in 0..g4 {
            ut[j * h + i] = u[i * g4 + j];
        }
    }
    println!(
        "single thread, best of {reps}; isa {:?}",
        imdb_lstm::nn::activation::isa()
    );
    #[cfg(target_arch = "x86_64")]
    if imdb_lstm::nn::activation::isa() == imdb_lstm::nn::activation::Isa::Avx2 {
        let n = 1 << 20;
        // SAFETY: AVX2+FMA present (checked just above).
        let t = best(reps, || unsafe {
            black_box(fma_peak(black_box(n)));
        });
        println!(
            "FMA peak probe (registers only, 12 chains): {:.1} GFLOP/s",
            (n * 12 * 16) as f64 / t / 1e9
        );
    }
    {
        // Microkernel ceiling: one 6 x 16 tile, k = 128, everything in L1.
        let (m, n, k) = (6, 16, 128);
        let (a, b) = (data(m * k, 10), data(k * n, 11));
        let (mut c1, mut c2) = (vec![0.0; m * n], vec![0.0; m * n]);
        let mut p = PackedB::new();
        p.pack(&b, n, k, n);
        let (tg, tp) = best2(
            reps,
            || {
                matmul(
                    m,
                    n,
                    k,
                    black_box(&a),
                    k,
                    Op::N,
                    &b,
                    n,
                    Op::N,
                    &mut c1,
                    n,
                    true,
                )
            },
            || matmul_packed(m, black_box(&a), k, &p, &mut c2, n, true),
        );
        report("L1 tile m=6 n=16 k=128", 2.0 * (m * n * k) as f64, tg, tp);
    }

    // Shared mask: C[m x 512] += A[m x 128] * U.
    for m in [16, 64] {
        let a = data(m * h, 2);
        let (mut c1, mut c2) = (data(m * g4, 3), data(m * g4, 3));
        let mut p = PackedB::new();
        p.pack(&u, g4, h, g4);
        let (tg, tp) = best2(
            reps,
            || {
                matmul(
                    m,
                    g4,
                    h,
                    black_box(&a),
                    h,
                    Op::N,
                    &u,
                    g4,
                    Op::N,
                    &mut c1,
                    g4,
                    true,
                )
            },
            || matmul_packed(m, black_box(&a), h, &p, &mut c2, g4, true),
        );
        report(
            &format!("fwd m={m} n=512 k=128"),
            2.0 * (m * g4 * h) as f64,
            tg,
            tp,
        );
    }

    // Per-gate masks: 4 x C[:, g*128..] += A_g[m x 128] * U[:, g*128..].
    for m in [16, 64] {
        let a = data(4 * m * h, 4);
        let (mut c1, mut c2) = (data(m * g4, 5), data(m * g4, 5));
        let ps = gate_packs(&u, h, g4, false);
        let (tg, tp) = best2(
            reps,
            || {
                for g in 0..4 {
                    let ag = black_box(&a[g * m * h..]);
                    matmul(
                        m,
                        h,
                        h,
                        ag,
                        h,
                        Op::N,
                        &u[g * h..],
                        g4,
                        Op::N,
                        &mut c1[g * h..],
                        g4,
                        true,
                    );
                }
            },
            || {
                for (g, p) in ps.iter().enumerate() {
                    matmul_packed(
                        m,
                        black_box(&a[g * m * h..]),
                        h,
                        p,
                        &mut c2[g * h..],
                        g4,
                        true,
                    );
                }
            },
        );
        report(
            &format!("fwd per-gate m={m} 4x(n=128 k=128)"),
            2.0 * (m * g4 * h) as f64,
            tg,
            tp,
        );
    }

    // Backward, shared mask: dH[16 x 128] = dZ[16 x 512] * U^T.
    {
        let m = 16;
        let dz = data(m * g4, 6);
        let (mut d1, mut d2) = (vec![0.0; m * h], vec![0.0; m * h]);
        let mut p = PackedB::new();
        p.pack_transposed(&u, g4, g4, h);
        let (tg, tp) = best2(
            reps,
            || {
                matmul(
                    m,
                    h,
                    g4,
                    black_box(&dz),
                    g4,
                    Op::N,
                    &ut,
                    h,
                    Op::N,
                    &mut d1,
                    h,
                    false,
                )
            },
            || matmul_packed(m, black_box(&dz), g4, &p, &mut d2, h, false),
        );
        report("bwd m=16 n=128 k=512", 2.0 * (m * g4 * h) as f64, tg, tp);
    }

    // Backward, per-gate: 4 x tmp[16 x 128] = dZ[:, g*128..] * U^T[g*128.., :].
    {
        let m = 16;
        let dz = data(m * g4, 7);
        let (mut t1, mut t2) = (vec![0.0; m * h], vec![0.0; m * h]);
        let ps = gate_packs(&u, h, g4, true);
        let (tg, tp) = best2(
            reps,
            || {
                for g in 0..4 {
                    let dzg = black_box(&dz[g * h..]);
                    matmul(
                        m,
                        h,
                        h,
                        dzg,
                        g4,
                        Op::N,
                        &ut[g * h * h..],
                        h,
                        Op::N,
                        &mut t1,
                        h,
                        false,
                    );
                }
            },
            || {
                for (g, p) in ps.iter().enumerate() {
                    matmul_packed(m, black_box(&dz[g * h..]), g4, p, &mut t2, h, false);
                }
            },
        );
        report(
            "bwd per-gate m=16 4x(n=128 k=128)",
            2.0 * (m * g4 * h) as f64,
            tg,
            tp,
        );
    }

    // The per-batch GEMMs outside the time loop (rows = 80 steps x 16 sequences), for scale:
    // input projection per gate (A row-major) and the weight gradient x^T dz (A transposed,
    // which matmul_packed does not take).
    {
        let rows = steps * 16;
        let x = data(rows * h, 12);
        let dz = data(rows * g4, 13);
        let (mut c1, mut c2) = (data(rows * g4, 14), data(rows * g4, 14));
        let ps = gate_packs(&u, h, g4, false);
        let (tg, tp) = best2(
            reps,
            || {
                for g in 0..4 {
                    matmul(
                        rows,
                        h,
                        h,
                        black_box(&x),
                        h,
                        Op::N,
                        &u[g * h..],
                        g4,
                        Op::N,
                        &mut c1[g * h..],
                        g4,
                        true,
                    );
                }
            },
            || {
                for (g, p) in ps.iter().enumerate() {
                    matmul_packed(rows, black_box(&x), h, p, &mut c2[g * h..], g4, true);
                }
            },
        );
        report(
            "input proj m=1280 4x(n=128 k=128)",
            2.0 * (rows * g4 * h) as f64,
            tg,
            tp,
        );
        let mut dw = vec![0.0; h * g4];
        let tg = best(reps, || {
            for g in 0..4 {
                let dzg = black_box(&dz[g * h..]);
                matmul(
                    h,
                    h,
                    rows,
                    &x,
                    h,
                    Op::T,
                    dzg,
                    g4,
                    Op::N,
                    &mut dw[g * h..],
                    g4,
                    true,
                );
            }
        });
        println!(
            "{:<44} gemm {:7.1} GFLOP/s ({:8.2} us)",
            "dW = x^T dz 4x(m=128 n=128 k=1280)",
            2.0 * (rows * g4 * h) as f64 / tg / 1e9,
            tg * 1e6
        );
    }

    // The forward time loop of one thread's batch half: pack once (timed), then 80 steps, each
    // reading its own masked h and writing its own gate rows.
    {
        let m = 16;
        let flops = 2.0 * (steps * m * g4 * h) as f64;
        let hm = data(4 * steps * m * h, 8);
        let (mut z1, mut z2) = (data(steps * m * g4, 9), data(steps * m * g4, 9));
        let mut ps: Vec<PackedB> = (0..4).map(|_| PackedB::new()).collect();
        let (tg, tp) = best2(
            reps,
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
            || {
                for (g, p) in ps.iter_mut().enumerate() {
                    p.pack(&u[g * h..], g4, h, h);
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
        report("80-step fwd loop, per-gate (incl. packing)", flops, tg, tp);

        // Same loop, shared mask: one packing, 80 products of n = 512.
        let mut p = PackedB::new();
        let (tg, tp) = best2(
            reps,
            || {
                for t in 0..steps {
                    let a = black_box(&hm[t * m * h..]);
                    matmul(
                        m,
                        g4,
                        h,
                        a,
                        h,
                        Op::N,
                        &u,
                        g4,
                        Op::N,
                        &mut z1[t * m * g4..(t + 1) * m * g4],
                        g4,
                        true,
                    );
                }
            },
            || {
                p.pack(&u, g4, h, g4);
                for t in 0..steps {
                    let a = black_box(&hm[t * m * h..]);
                    matmul_packed(m, a, h, &p, &mut z2[t * m * g4..(t + 1) * m * g4], g4, true);
                }
            },
        );
        report("80-step fwd loop, shared (incl. packing)", flops, tg, tp);

        let tpack = best(reps, || p.pack(black_box(&u), g4, h, g4));
        println!("pack U [128 x 512]: {:.2} us", tpack * 1e6);
    }
}

/// The 4 gate column blocks of U [h x 4h] packed as B = U[:, g*h..] (forward), or as
/// B = U[:, g*h..]^T (backward).
fn gate_packs(u: &[f32], h: usize, g4: usize, transposed: bool) -> Vec<PackedB> {
    (0..4)
        .map(|g| {
            let mut p = PackedB::new();
            if transposed {
                p.pack_transposed(&u[g * h..], g4, h, h);
            } else {
                p.pack(&u[g * h..], g4, h, h);
            }
            p
        })
        .collect()
}
