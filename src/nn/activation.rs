//! Fast, vectorisable sigmoid and tanh, and the run-time CPU-feature dispatch for the
//! element-wise kernels.
//!
//! `std`'s `exp` is a scalar library call; the gate arithmetic calls it 5 times per unit per
//! step, which would cost as much as the GEMMs. [`exp`] is a branch-free Cephes-style
//! polynomial that LLVM vectorises, with max relative error ~2e-7 (tested below).
//!
//! The functions are generic over [`MulAdd`]: Rust never fuses `a * b + c` on its own, so the
//! AVX2 path asks for fused multiply-adds explicitly ([`Fused`], half the instructions of the
//! polynomial) and the baseline path keeps a multiply and an add ([`Separate`]), where a fused
//! one would be a slow library call. [`dispatch!`](crate::dispatch) picks one per ISA
//! (AVX-512, AVX2+FMA, baseline).

use std::sync::OnceLock;

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 * 2^23: adding and subtracting it rounds to the nearest integer with plain adds.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// How the element-wise kernels compute `a * b + c`.
pub trait MulAdd {
    fn mul_add(a: f32, b: f32, c: f32) -> f32;
}

/// One fused multiply-add, rounded once: a single instruction where the CPU has FMA.
pub struct Fused;

/// A multiply, then an add: for CPUs without FMA.
pub struct Separate;

impl MulAdd for Fused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

impl MulAdd for Separate {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// e^x for x in f32 range (clamped to [-87.3, 88.3], so never inf or denormal).
#[inline(always)]
pub fn exp<M: MulAdd>(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.3); // NaN stays NaN, so a broken weight is never hidden
                                  // t's low mantissa bits hold n = round(x / ln 2) exactly; no float-to-int conversion
                                  // (Rust's saturating cast would stop vectorisation).
    let t = M::mul_add(x, LOG2E, ROUND_MAGIC);
    let n = t - ROUND_MAGIC;
    let r = M::mul_add(-n, LN2_LO, M::mul_add(-n, LN2_HI, x));
    let mut p = 1.987_569_1e-4_f32;
    p = M::mul_add(p, r, 1.398_199_9e-3);
    p = M::mul_add(p, r, 8.333_452e-3);
    p = M::mul_add(p, r, 4.166_579_6e-2);
    p = M::mul_add(p, r, 1.666_666_5e-1);
    p = M::mul_add(p, r, 0.5);
    let y = M::mul_add(p, r * r, r) + 1.0;
    // 2^n: exponent field n + 127; bits(t) = 0x4B40_0000 + n.
    let two_n = f32::from_bits(t.to_bits().wrapping_add(127u32.wrapping_sub(0x4B40_0000)) << 23);
    y * two_n
}

/// 1 / (1 + e^-x).
#[inline(always)]
pub fn sigmoid<M: MulAdd>(x: f32) -> f32 {
    1.0 / (1.0 + exp::<M>(-x))
}

/// tanh(x) = 1 - 2 / (1 + e^2x); absolute error below 3e-7.
#[inline(always)]
pub fn tanh<M: MulAdd>(x: f32) -> f32 {
    1.0 - 2.0 / (1.0 + exp::<M>(2.0 * x))
}

/// Which instruction set the kernels were compiled for at run time, narrowest first (so
/// `isa() >= Isa::Avx2` means "AVX2 and FMA at least").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Baseline x86-64 (SSE2) or a non-x86 target.
    #[default]
    Baseline,
    /// AVX2 + FMA (x86-64-v3).
    Avx2,
    /// AVX-512 F, BW, DQ, VL on top of AVX2 + FMA (x86-64-v4).
    Avx512,
}

impl Isa {
    /// The name `bench` prints.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Baseline => "baseline SSE2",
            Isa::Avx2 => "AVX2+FMA",
            Isa::Avx512 => "AVX-512",
        }
    }
}

/// The widest ISA this CPU supports, detected once. `IMDB_LSTM_ISA=baseline` or `=avx2` caps
/// it (to run the path a narrower CPU takes); other values are ignored.
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        let cap = match std::env::var("IMDB_LSTM_ISA").as_deref() {
            Ok("baseline") => Isa::Baseline,
            Ok("avx2") => Isa::Avx2,
            _ => Isa::Avx512,
        };
        detected().min(cap)
    })
}

/// The widest ISA the CPU has, ignoring `IMDB_LSTM_ISA`.
pub fn detected() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        use std::is_x86_feature_detected as has;
        if has!("avx2") && has!("fma") {
            if has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl") {
                return Isa::Avx512;
            }
            return Isa::Avx2;
        }
    }
    Isa::Baseline
}

/// Runs `$body` (an expression using only `#[inline(always)]` code) compiled for the widest ISA
/// the CPU has: AVX-512, AVX2+FMA or the baseline. The body is duplicated into one function per
/// ISA so LLVM vectorises each for its own registers (zmm, ymm, xmm); the per-element
/// arithmetic is the same on the two FMA paths, so they give bit-identical results.
///
/// `dispatch!(<M> body)` also names a [`MulAdd`] type `M` for the body: [`Fused`] on the AVX2
/// and AVX-512 paths, [`Separate`] on the baseline.
#[macro_export]
macro_rules! dispatch {
    (<$m:ident> $body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            // No "prefer-256-bit" is set for a generic x86-64 target, so LLVM vectorises this
            // one with zmm registers (checked in the asm).
            #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
            unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            match $crate::nn::activation::isa() {
                $crate::nn::activation::Isa::Avx512 => {
                    type $m = $crate::nn::activation::Fused;
                    // SAFETY: the CPU supports AVX-512 F/BW/DQ/VL, AVX2 and FMA (run-time check).
                    unsafe { avx512(|| $body) }
                }
                $crate::nn::activation::Isa::Avx2 => {
                    type $m = $crate::nn::activation::Fused;
                    // SAFETY: the CPU supports AVX2 and FMA (checked at run time).
                    unsafe { avx2(|| $body) }
                }
                $crate::nn::activation::Isa::Baseline => {
                    type $m = $crate::nn::activation::Separate;
                    $body
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            type $m = $crate::nn::activation::Separate;
            $body
        }
    }};
    ($body:expr) => {
        $crate::dispatch!(<_Unused> $body)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> impl Iterator<Item = f32> {
        (-400_000..=400_000).map(|i| i as f32 * 5e-5)
    }

    /// Both forms of multiply-add (on a CPU without FMA, `Fused` is a slow but exact library call).
    fn exp_relative_error<M: MulAdd>() {
        for x in grid().chain([-87.0, -50.0, 40.0, 88.0]) {
            let want = (x as f64).exp();
            let got = exp::<M>(x) as f64;
            assert!(
                ((got - want) / want).abs() < 3e-7,
                "exp({x}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn exp_relative_error_is_below_3e_7() {
        exp_relative_error::<Separate>();
        exp_relative_error::<Fused>();
    }

    fn sigmoid_and_tanh_error<M: MulAdd>() {
        for x in grid().chain([-1000.0, -90.0, 90.0, 1000.0, f32::MAX, f32::MIN]) {
            let xs = x as f64;
            let s = 1.0 / (1.0 + (-xs).exp());
            assert!((sigmoid::<M>(x) as f64 - s).abs() < 3e-7, "sigmoid({x})");
            assert!((tanh::<M>(x) as f64 - xs.tanh()).abs() < 3e-7, "tanh({x})");
        }
    }

    #[test]
    fn sigmoid_and_tanh_absolute_error_is_below_3e_7() {
        sigmoid_and_tanh_error::<Separate>();
        sigmoid_and_tanh_error::<Fused>();
    }

    #[test]
    fn saturates_to_exact_limits() {
        fn check<M: MulAdd>() {
            assert_eq!(tanh::<M>(30.0), 1.0);
            assert_eq!(tanh::<M>(-30.0), -1.0);
            assert_eq!(sigmoid::<M>(100.0), 1.0);
            assert!(sigmoid::<M>(-100.0) >= 0.0 && sigmoid::<M>(-100.0) < 1e-37);
        }
        check::<Separate>();
        check::<Fused>();
    }

    #[test]
    fn dispatch_gives_the_same_answer_as_the_baseline() {
        let xs: Vec<f32> = grid().step_by(97).collect();
        let fast: Vec<f32> = dispatch!(<M> xs.iter().map(|&x| tanh::<M>(x)).collect::<Vec<_>>());
        let base: Vec<f32> = xs.iter().map(|&x| tanh::<Separate>(x)).collect();
        for (a, b) in fast.iter().zip(&base) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn dispatch_picks_fused_multiply_add_exactly_when_the_cpu_has_fma() {
        // 1 + 2^-12 squared, minus its rounded square: zero when rounded twice, 2^-24 when fused.
        let a = 1.0 + f32::EPSILON * 2048.0;
        let sq = a * a;
        let fused: f32 = dispatch!(<M> M::mul_add(std::hint::black_box(a), a, -sq));
        let want = if isa() >= Isa::Avx2 {
            2f32.powi(-24)
        } else {
            0.0
        };
        assert_eq!(fused, want);
    }
}
