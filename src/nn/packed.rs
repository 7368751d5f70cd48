//! A small-matrix GEMM with a prepacked right-hand operand, for the LSTM's per-step products.
//!
//! Each training step multiplies a thin A (16..64 rows) by the same recurrent weights 80 times
//! per batch. A general GEMM repacks B and re-plans its blocking on every call. Here B is packed
//! once ([`PackedB::pack`]) into column panels of `nr` floats per k-row (two vector registers:
//! 16 on AVX2 and the portable path, 32 on AVX-512, chosen at pack time from [`isa`] and n),
//! 64-byte aligned and zero-padded, which the microkernel streams; A is read in place
//! (broadcasts of single elements) and C is updated in place, with the C tile prefetched because
//! in the time loop it is cold. Single-threaded the AVX2 kernel reaches ~93% of the core's FMA
//! peak at these shapes, 1.05-1.25x the `gemm` crate per product and ~1.27x over an 80-step loop
//! (see `examples/kernel_bench.rs` and BENCHMARKS.md for AVX-512).
//!
//! Math: every element of C is `sum_p a[i,p] * b[p,j]`, accumulated in order p = 0..k from 0
//! (fused multiply-add on AVX2 and AVX-512, multiply then add in the portable path), then stored
//! or added to C, the same order as `nn::gemm::matmul`. The vector width only changes how many
//! columns one instruction computes, never an element's arithmetic, so AVX2 and AVX-512 give
//! bit-identical results (tested), and on AVX2 they are bit-identical to `nn::gemm::matmul`
//! (tested); the portable path rounds multiply and add separately, so it can differ in the last
//! bits.

use super::activation::{isa, Isa};

/// Columns per packed panel on AVX2 and the portable path: two AVX2 registers of 8 floats.
pub const NR: usize = 16;
/// The widest panel (AVX-512: two registers of 16 floats).
const MAX_NR: usize = 32;
/// Floats per 64-byte cache line; the panels start on a line boundary.
const LINE: usize = 16;

/// Panel width for the kernel of `isa`.
fn panel_width(isa: Isa) -> usize {
    match isa {
        // simd::Avx512: NV = 2 registers of 16 lanes.
        Isa::Avx512 => 32,
        Isa::Avx2 | Isa::Baseline => NR,
    }
}

/// The kernel for n columns: the widest, unless AVX2's narrower panels pad fewer columns (n = 16
/// computes 16 columns on AVX2 but 32 on AVX-512, which is only ~5% faster per column). The
/// choice never changes a result: the two kernels agree bit for bit.
fn best_for(n: usize) -> Isa {
    let widest = isa();
    let padded = |isa| n.div_ceil(panel_width(isa)) * panel_width(isa);
    if widest == Isa::Avx512 && padded(Isa::Avx2) < padded(widest) {
        Isa::Avx2
    } else {
        widest
    }
}

impl Clone for PackedB {
    /// A copy with its own aligned layout (a derived clone would keep an offset that aligned the
    /// original buffer, not the new one).
    fn clone(&self) -> Self {
        let mut out = PackedB::new();
        out.layout(self.isa, self.k, self.n)
            .copy_from_slice(self.panels());
        out
    }
}

/// B (k x n, row-major, any row stride) packed once into column panels laid out for the
/// microkernel: panel `q` holds columns `q*nr..q*nr+nr` as k rows of `nr` contiguous floats,
/// zero-padded past `n`.
#[derive(Debug, Default)]
pub struct PackedB {
    k: usize,
    n: usize,
    /// The kernel the panels are laid out for, and their width.
    isa: Isa,
    nr: usize,
    /// Backing store; the panels start at `off`, which makes them 64-byte aligned.
    buf: Vec<f32>,
    off: usize,
}

impl PackedB {
    /// An empty packing (k = n = 0), to be filled by [`PackedB::pack`]; reusable across batches.
    pub fn new() -> Self {
        Self::default()
    }

    /// (Re)pack from `b[k x n]` stored row-major with row stride `ldb`, reusing the allocation.
    ///
    /// Panics if `ldb < n` or `b` is too short for k rows of stride `ldb`.
    pub fn pack(&mut self, b: &[f32], ldb: usize, k: usize, n: usize) {
        self.pack_for(best_for(n), b, ldb, k, n);
    }

    /// [`PackedB::pack`] for the kernel of `isa` rather than the widest (tests and
    /// `examples/kernel_bench.rs` compare the ISAs in one process).
    ///
    /// Panics if the CPU lacks `isa`, as well as for [`PackedB::pack`]'s reasons.
    pub fn pack_for(&mut self, isa: Isa, b: &[f32], ldb: usize, k: usize, n: usize) {
        // `matmul_packed` runs the kernel of the packing's ISA.
        assert!(
            isa <= super::activation::detected(),
            "PackedB::pack_for: this CPU lacks {}",
            isa.name()
        );
        if k > 0 && n > 0 {
            assert!(ldb >= n, "PackedB::pack: ldb ({ldb}) < n ({n})");
            assert!(
                (k - 1) * ldb + n <= b.len(),
                "PackedB::pack: B too small ({} < {})",
                b.len(),
                (k - 1) * ldb + n
            );
        }
        let nr = panel_width(isa);
        let dst = self.layout(isa, k, n);
        if k == 0 {
            return;
        }
        for (q, panel) in dst.chunks_exact_mut(k * nr).enumerate() {
            let (j0, nc) = (q * nr, nr.min(n - q * nr));
            for (p, row) in panel.chunks_exact_mut(nr).enumerate() {
                row[..nc].copy_from_slice(&b[p * ldb + j0..p * ldb + j0 + nc]);
                row[nc..].fill(0.0);
            }
        }
    }

    /// (Re)pack B = S^T from `s[n x k]` stored row-major with row stride `lds` (so B[p, j] =
    /// s[j * lds + p]). Lets the backward pass use the recurrent weights without keeping a
    /// transposed copy: `dH = dZ * U^T` packs from U itself.
    ///
    /// Panics if `lds < k` or `s` is too short for n rows of stride `lds`.
    pub fn pack_transposed(&mut self, s: &[f32], lds: usize, k: usize, n: usize) {
        self.pack_transposed_for(best_for(n), s, lds, k, n);
    }

    /// [`PackedB::pack_transposed`] for the kernel of `isa`; panics if the CPU lacks it.
    pub fn pack_transposed_for(&mut self, isa: Isa, s: &[f32], lds: usize, k: usize, n: usize) {
        assert!(
            isa <= super::activation::detected(),
            "PackedB::pack_transposed_for: this CPU lacks {}",
            isa.name()
        );
        if k > 0 && n > 0 {
            assert!(lds >= k, "PackedB::pack_transposed: lds ({lds}) < k ({k})");
            assert!(
                (n - 1) * lds + k <= s.len(),
                "PackedB::pack_transposed: source too small ({} < {})",
                s.len(),
                (n - 1) * lds + k
            );
        }
        let nr = panel_width(isa);
        let dst = self.layout(isa, k, n);
        if k == 0 {
            return;
        }
        for (q, panel) in dst.chunks_exact_mut(k * nr).enumerate() {
            let (j0, nc) = (q * nr, nr.min(n - q * nr));
            // Column by column: each source row is contiguous along p.
            for jj in 0..nr {
                if jj < nc {
                    let src = &s[(j0 + jj) * lds..(j0 + jj) * lds + k];
                    for (p, &v) in src.iter().enumerate() {
                        panel[p * nr + jj] = v;
                    }
                } else {
                    for p in 0..k {
                        panel[p * nr + jj] = 0.0;
                    }
                }
            }
        }
    }

    /// Sets the shape and kernel and returns the (aligned, possibly stale) panel storage to fill.
    fn layout(&mut self, isa: Isa, k: usize, n: usize) -> &mut [f32] {
        let nr = panel_width(isa);
        let len = n.div_ceil(nr) * k * nr;
        if self.buf.len() < len + LINE {
            self.buf.resize(len + LINE, 0.0);
        }
        // The buffer may have moved on resize, so the offset is recomputed every time.
        self.off = self
            .buf
            .as_ptr()
            .align_offset(LINE * std::mem::size_of::<f32>())
            .min(LINE - 1);
        (self.k, self.n, self.isa, self.nr) = (k, n, isa, nr);
        &mut self.buf[self.off..self.off + len]
    }

    /// Rows of B (the shared dimension).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns of B (columns of the product).
    pub fn n(&self) -> usize {
        self.n
    }

    /// The packed panels: `ceil(n / nr)` panels of `k * nr` floats.
    fn panels(&self) -> &[f32] {
        let len = match self.nr {
            0 => 0,
            nr => self.n.div_ceil(nr) * self.k * nr,
        };
        &self.buf[self.off..self.off + len]
    }
}

/// `C[m x n] = A[m x k] * B` (or `C += ...` when `accumulate`), with n, k taken from `b`.
/// A is row-major with row stride `lda`, C with row stride `ldc`. A's rows may overlap (`lda <
/// k`, any stride: A is only read), as the windows of a convolution do.
///
/// Same math as `nn::gemm::matmul` with `Op::N` operands. Uses the kernel `b` was packed for:
/// AVX-512 or AVX2+FMA when the CPU has it (detected once), else a portable one. Panics if
/// `ldc < n` or a slice is too short.
pub fn matmul_packed(
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedB,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    if !check(m, a, lda, b, c, ldc, accumulate) {
        return;
    }
    // `b.isa` came from `isa()` (or, in tests, from an ISA checked against the CPU).
    #[cfg(target_arch = "x86_64")]
    match b.isa {
        // SAFETY: the CPU has the ISA (run-time check), and `check` verified that every index
        // the kernel touches in A, B and C is inside the slices.
        Isa::Avx512 => unsafe {
            simd::matmul_avx512(m, a.as_ptr(), lda, b, c.as_mut_ptr(), ldc, accumulate)
        },
        // SAFETY: as above.
        Isa::Avx2 => unsafe {
            simd::matmul_avx2(m, a.as_ptr(), lda, b, c.as_mut_ptr(), ldc, accumulate)
        },
        Isa::Baseline => portable(m, a, lda, b, c, ldc, accumulate),
    }
    #[cfg(not(target_arch = "x86_64"))]
    portable(m, a, lda, b, c, ldc, accumulate);
}
/// Validates the operands and handles the empty cases; returns whether there is work to do.
fn check(
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedB,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) -> bool {
    let (n, k) = (b.n, b.k);
    if m == 0 || n == 0 {
        return false;
    }
    assert!(ldc >= n, "matmul_packed: ldc ({ldc}) < n ({n})");
    let need_c = span(m, ldc, n);
    assert!(
        need_c <= c.len(),
        "matmul_packed: C too small ({} < {need_c})",
        c.len()
    );
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                c[r * ldc..r * ldc + n].fill(0.0);
            }
        }
        return false;
    }
    let need_a = span(m, lda, k);
    assert!(
        need_a <= a.len(),
        "matmul_packed: A too small ({} < {need_a})",
        a.len()
    );
    true
}

/// Elements spanned by `rows` rows of `width` at row stride `stride` (rows >= 1); saturates on
/// overflow so absurd strides fail the length check instead of wrapping past it.
fn span(rows: usize, stride: usize, width: usize) -> usize {
    (rows - 1)
        .checked_mul(stride)
        .and_then(|x| x.checked_add(width))
        .unwrap_or(usize::MAX)
}

/// The portable kernel (any CPU): same panel order and accumulation order as the vector ones,
/// with separate multiply and add. Fixed-size rows let LLVM vectorise it for the baseline ISA.
fn portable(
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedB,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    match b.nr {
        NR => portable_nr::<NR>(m, a, lda, b, c, ldc, accumulate),
        _ => portable_nr::<MAX_NR>(m, a, lda, b, c, ldc, accumulate),
    }
}

fn portable_nr<const W: usize>(
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedB,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    const R: usize = 4;
    let (n, k) = (b.n, b.k);
    debug_assert_eq!(b.nr, W);
    for (q, panel) in b.panels().chunks_exact(k * W).enumerate() {
        let (j0, nc) = (q * W, W.min(n - q * W));
        for i0 in (0..m).step_by(R) {
            let mr = R.min(m - i0);
            let mut acc = [[0.0f32; W]; R];
            for (p, brow) in panel.chunks_exact(W).enumerate() {
                for (r, accr) in acc.iter_mut().enumerate().take(mr) {
                    let av = a[(i0 + r) * lda + p];
                    for (x, &bv) in accr.iter_mut().zip(brow) {
                        *x += av * bv;
                    }
                }
            }
            for (r, accr) in acc.iter().enumerate().take(mr) {
                let row = &mut c[(i0 + r) * ldc + j0..(i0 + r) * ldc + j0 + nc];
                if accumulate {
                    for (x, &v) in row.iter_mut().zip(accr) {
                        *x += v;
                    }
                } else {
                    row.copy_from_slice(&accr[..nc]);
                }
            }
        }
    }
}

/// The vector microkernel, written once over a register type and instantiated for AVX2 (8
/// lanes) and AVX-512 (16 lanes), so the AVX2 path any x86-64-v3 machine runs exercises the same
/// code as the AVX-512 one. A six-method trait over `core::arch` rather than the `pulp` crate
/// (which `gemm` uses): the kernel needs only load, store, broadcast, FMA and add, and its
/// inlining under `#[target_feature]` stays visible here instead of behind pulp's API.
#[cfg(target_arch = "x86_64")]
pub(crate) mod simd {
    use super::{PackedB, MAX_NR};
    use std::arch::x86_64::*;

    /// One vector register of `LANES` floats. Every method is `#[inline(always)]` and must only
    /// be called from a function compiled with the matching `#[target_feature]`.
    pub trait Simd {
        type V: Copy;
        const LANES: usize;
        /// Registers per panel row (1 or 2): the panel is NV * LANES floats wide.
        const NV: usize;
        /// Most rows of C one tile keeps in registers: NV * MR accumulators + NV of B + 1
        /// broadcast of A within the register file.
        const MR: usize;
        unsafe fn zero() -> Self::V;
        unsafe fn load(p: *const f32) -> Self::V;
        unsafe fn store(p: *mut f32, v: Self::V);
        unsafe fn splat(p: *const f32) -> Self::V;
        /// a * b + c, rounded once.
        unsafe fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
        unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    }

    /// 8 lanes in ymm; 6 x 2 + 2 + 1 = 15 of the 16 registers.
    pub struct Avx2;
    /// 16 lanes in zmm. NV = 2, MR = 6 (12 FMA chains, as on AVX2; 15 of 32 registers) measured
    /// best at the LSTM's shapes on Zen 4, 1.02-1.08x the AVX2 kernel, with MR 5 and 7 within
    /// noise; NV = 1 with MR 12..14 and NV = 2 with MR 8..12 were slower than AVX2 there
    /// (BENCHMARKS.md). 12 chains also cover the 2 FMA ports x 4 cycles of Intel's AVX-512.
    pub struct Avx512;

    // Unaligned-load instructions cost nothing extra on aligned data, and keep the kernel sound
    // even if the panels were ever misaligned.
    impl Simd for Avx2 {
        type V = __m256;
        const LANES: usize = 8;
        const NV: usize = 2;
        const MR: usize = 6;
        #[inline(always)]
        unsafe fn zero() -> __m256 {
            _mm256_setzero_ps()
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            _mm256_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            _mm256_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn splat(p: *const f32) -> __m256 {
            _mm256_broadcast_ss(&*p)
        }
        #[inline(always)]
        unsafe fn fmadd(a: __m256, b: __m256, c: __m256) -> __m256 {
            _mm256_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            _mm256_add_ps(a, b)
        }
    }

    impl Simd for Avx512 {
        type V = __m512;
        const LANES: usize = 16;
        const NV: usize = 2;
        const MR: usize = 6;
        #[inline(always)]
        unsafe fn zero() -> __m512 {
            _mm512_setzero_ps()
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            _mm512_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            _mm512_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn splat(p: *const f32) -> __m512 {
            _mm512_set1_ps(*p)
        }
        #[inline(always)]
        unsafe fn fmadd(a: __m512, b: __m512, c: __m512) -> __m512 {
            _mm512_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn add(a: __m512, b: __m512) -> __m512 {
            _mm512_add_ps(a, b)
        }
    }

    /// SAFETY: caller guarantees AVX2+FMA, `b` packed for AVX2, and the operands `check`ed.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn matmul_avx2(
        m: usize,
        a: *const f32,
        lda: usize,
        b: &PackedB,
        c: *mut f32,
        ldc: usize,
        acc: bool,
    ) {
        matmul::<Avx2>(m, a, lda, b, c, ldc, acc)
    }

    /// SAFETY: caller guarantees AVX-512F, `b` packed for AVX-512, and the operands `check`ed.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub unsafe fn matmul_avx512(
        m: usize,
        a: *const f32,
        lda: usize,
        b: &PackedB,
        c: *mut f32,
        ldc: usize,
        acc: bool,
    ) {
        matmul::<Avx512>(m, a, lda, b, c, ldc, acc)
    }

    /// Rows of A per block (24 KiB at k = 128).
    const BLOCK_ROWS: usize = 48;

    /// Walks the panels of B; within a panel (k*nr floats, 8 or 16 KiB at k = 128, stays in L1)
    /// it sweeps all row tiles of a block of A, so each panel comes from L2 once per block.
    ///
    /// SAFETY: caller guarantees the ISA of `S`, `b.nr == S::NV * S::LANES`, m, k, n >= 1, A holds
    /// (m-1)*lda+k floats, C holds (m-1)*ldc+n floats, ldc >= n.
    #[inline(always)]
    unsafe fn matmul<S: Simd>(
        m: usize,
        a: *const f32,
        lda: usize,
        b: &PackedB,
        c: *mut f32,
        ldc: usize,
        acc: bool,
    ) {
        let (n, k, nr) = (b.n, b.k, S::NV * S::LANES);
        debug_assert_eq!(b.nr, nr);
        let panels = b.panels().as_ptr();
        // Split the rows into near-equal tiles of at most MR rows: on AVX2 16 = 5+5+6 rather
        // than 6+6+4, so every tile keeps >= 10 independent FMA chains (FMA latency 4 x 2
        // ports). Tile t covers rows start(t)..start(t+1).
        let tiles = m.div_ceil(S::MR);
        let start = |t: usize| t * m / tiles;
        let per_block = (BLOCK_ROWS / S::MR).max(1);
        // Tall A (the input projection, m = 1280) is swept in blocks so a block of A stays in
        // L1/L2 while all panels of B pass over it.
        for tb in (0..tiles).step_by(per_block) {
            for q in 0..n.div_ceil(nr) {
                let bp = panels.add(q * k * nr);
                let (j0, nc) = (q * nr, nr.min(n - q * nr));
                for t in tb..tiles.min(tb + per_block) {
                    let (i0, rows) = (start(t), start(t + 1) - start(t));
                    debug_assert!((1..=S::MR).contains(&rows));
                    let (ap, cp) = (a.add(i0 * lda), c.add(i0 * ldc + j0));
                    const { assert!(S::MR <= 6, "add match arms for taller tiles") };
                    match rows {
                        6 => tile::<S, 6>(k, ap, lda, bp, cp, ldc, nc, acc),
                        5 => tile::<S, 5>(k, ap, lda, bp, cp, ldc, nc, acc),
                        4 => tile::<S, 4>(k, ap, lda, bp, cp, ldc, nc, acc),
                        3 => tile::<S, 3>(k, ap, lda, bp, cp, ldc, nc, acc),
                        2 => tile::<S, 2>(k, ap, lda, bp, cp, ldc, nc, acc),
                        _ => tile::<S, 1>(k, ap, lda, bp, cp, ldc, nc, acc),
                    }
                }
            }
        }
    }

    /// One R x nr tile of C: NV * R accumulators live in registers across the whole k loop.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<S: Simd, const R: usize>(
        k: usize,
        a: *const f32,
        lda: usize,
        bp: *const f32,
        c: *mut f32,
        ldc: usize,
        nc: usize,
        accumulate: bool,
    ) {
        let (w, nr) = (S::LANES, S::NV * S::LANES);
        // C rows are touched only after the k loop; in the time loop they are cold (the gates of
        // all steps exceed L2), so fetch them now and let the k loop hide the latency.
        for r in 0..R {
            let cr = c.add(r * ldc);
            _mm_prefetch::<_MM_HINT_T0>(cr as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(cr.add(nc - 1) as *const i8);
        }
        let mut acc = [[S::zero(); 2]; R];
        // One base pointer per row, indexed by p: a single addressing mode per broadcast.
        let ap: [*const f32; R] = std::array::from_fn(|r| a.add(r * lda));
        // A macro, not a closure: closures do not inherit `target_feature`, so the intrinsics
        // inside one would become calls.
        macro_rules! step {
            ($p:expr) => {{
                let p = $p;
                let bv: [S::V; 2] = std::array::from_fn(|v| S::load(bp.add(p * nr + v * w)));
                for r in 0..R {
                    let av = S::splat(ap[r].add(p));
                    for v in 0..S::NV {
                        acc[r][v] = S::fmadd(av, bv[v], acc[r][v]);
                    }
                }
            }};
        }
        // Unrolled by 4 so loop overhead does not compete with the FMAs for issue slots.
        let mut p = 0;
        while p + 4 <= k {
            step!(p);
            step!(p + 1);
            step!(p + 2);
            step!(p + 3);
            p += 4;
        }
        while p < k {
            step!(p);
            p += 1;
        }
        if nc == nr {
            for (r, accr) in acc.iter().enumerate() {
                for (v, &x) in accr.iter().enumerate().take(S::NV) {
                    let cv = c.add(r * ldc + v * w);
                    S::store(
                        cv,
                        if accumulate {
                            S::add(S::load(cv), x)
                        } else {
                            x
                        },
                    );
                }
            }
        } else {
            // Partial panel at the right edge: spill and write only the nc real columns.
            let mut tmp = [0.0f32; MAX_NR];
            for (r, accr) in acc.iter().enumerate() {
                for (v, &x) in accr.iter().enumerate().take(S::NV) {
                    S::store(tmp.as_mut_ptr().add(v * w), x);
                }
                let cr = c.add(r * ldc);
                for (j, &v) in tmp.iter().enumerate().take(nc) {
                    *cr.add(j) = if accumulate { *cr.add(j) + v } else { v };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::gemm::{matmul_naive, Op};

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761) ^ seed.wrapping_mul(40503)) % 2001) as f32
                    / 1000.0
                    - 1.0
            })
            .collect()
    }

    type Kernel = fn(usize, &[f32], usize, &PackedB, &mut [f32], usize, bool);

    /// Runs `kernel` on B packed for `isa` and the f64 reference on one shape with padded
    /// strides; checks every element (within 1e-5 relative to the sum of |terms|) and that the
    /// padding of C is untouched. Returns C.
    #[allow(clippy::too_many_arguments)]
    fn check_shape(
        kernel: Kernel,
        isa: Isa,
        m: usize,
        n: usize,
        k: usize,
        accumulate: bool,
        transposed: bool,
    ) -> Vec<f32> {
        let (lda, ldb, ldc) = (k + 3, n + 5, n + 2);
        let a = data(m * lda, (m * 31 + n * 7 + k) as u32);
        let b = data(k * ldb, 99);
        let mut c = data(m * ldc, 7);
        let c0 = c.clone();
        let mut packed = PackedB::new();
        if transposed {
            // Same B, stored as its transpose (n x k, stride k + 1).
            let lds = k + 1;
            let mut s = vec![f32::NAN; n * lds];
            for p in 0..k {
                for j in 0..n {
                    s[j * lds + p] = b[p * ldb + j];
                }
            }
            packed.pack_transposed_for(isa, &s, lds, k, n);
        } else {
            packed.pack_for(isa, &b, ldb, k, n);
        }
        assert_eq!((packed.k(), packed.n()), (k, n));
        kernel(m, &a, lda, &packed, &mut c, ldc, accumulate);

        let f = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
        let (a64, b64) = (f(&a), f(&b));
        let mut want = f(&c0);
        matmul_naive(
            m,
            n,
            k,
            &a64,
            lda,
            Op::N,
            &b64,
            ldb,
            Op::N,
            &mut want,
            ldc,
            accumulate,
        );
        // Scale for the tolerance: sum of |a||b| (+|c|), so cancellation does not make it fail.
        let mut scale = vec![0.0f64; m * ldc];
        let (aa, ba): (Vec<f64>, Vec<f64>) = (
            a64.iter().map(|x| x.abs()).collect(),
            b64.iter().map(|x| x.abs()).collect(),
        );
        matmul_naive(
            m,
            n,
            k,
            &aa,
            lda,
            Op::N,
            &ba,
            ldb,
            Op::N,
            &mut scale,
            ldc,
            false,
        );
        for i in 0..m {
            for j in 0..ldc {
                let idx = i * ldc + j;
                if j >= n {
                    assert_eq!(
                        c[idx].to_bits(),
                        c0[idx].to_bits(),
                        "m{m} n{n} k{k}: padding of C at ({i},{j}) written"
                    );
                    continue;
                }
                let s = scale[idx]
                    + if accumulate {
                        (c0[idx] as f64).abs()
                    } else {
                        0.0
                    };
                let err = (c[idx] as f64 - want[idx]).abs();
                assert!(
                    err <= 1e-5 * s.max(1.0),
                    "m{m} n{n} k{k} acc={accumulate} t={transposed} at ({i},{j}): {} vs {}",
                    c[idx],
                    want[idx]
                );
            }
        }
        c
    }

    /// Every (m, n, k, accumulate) of the grid: m = 1..=30 covers one and two tiles of every
    /// kernel (MR 6 and 12) and their remainders, 64 is inference, 97 spans several row blocks;
    /// n below, at and past one and several panels of 16 and 32; k = 515 is long and not a
    /// multiple of the unroll. Calls `f` with each C.
    fn all_shapes(kernel: Kernel, isa: Isa, mut f: impl FnMut(Vec<f32>)) {
        for m in (1..=30).chain([64, 97]) {
            for n in [1, 7, 8, 16, 17, 31, 32, 33, 128, 136, 512] {
                for k in [1, 3, 128] {
                    for accumulate in [false, true] {
                        f(check_shape(kernel, isa, m, n, k, accumulate, false));
                    }
                }
            }
        }
        for (m, n) in [(1, 1), (13, 33), (64, 128), (25, 512)] {
            for accumulate in [false, true] {
                f(check_shape(kernel, isa, m, n, 515, accumulate, false));
            }
        }
    }

    #[test]
    fn dispatched_kernel_matches_naive_for_many_shapes() {
        all_shapes(matmul_packed, isa(), drop);
    }

    #[test]
    fn portable_kernel_matches_naive_for_many_shapes() {
        // Every panel width this CPU can pack: the portable kernel runs whatever a PackedB holds.
        all_shapes(portable, Isa::Baseline, drop);
        all_shapes(portable, isa(), drop);
    }

    /// Each ISA the CPU has, by its own packing and kernel (`matmul_packed` runs the kernel the
    /// panels were packed for); a visible note for each one it lacks. Returns every C, in order.
    fn isa_kernel_matches_naive(isa: Isa) -> Option<Vec<Vec<f32>>> {
        if super::super::activation::detected() < isa {
            eprintln!("skipping the {isa:?} kernel: this CPU lacks {}", isa.name());
            return None;
        }
        let mut out = vec![];
        all_shapes(matmul_packed, isa, |c| out.push(c));
        Some(out)
    }

    #[test]
    fn avx2_kernel_matches_naive_when_the_cpu_has_it() {
        isa_kernel_matches_naive(Isa::Avx2);
    }

    #[test]
    fn avx512_kernel_matches_naive_when_the_cpu_has_it() {
        isa_kernel_matches_naive(Isa::Avx512);
    }

    /// Same FMA chain per element, wider registers: AVX-512 and AVX2 agree bit for bit, so the
    /// seeds give the same model on either kind of machine.
    #[test]
    fn avx512_and_avx2_kernels_agree_bit_for_bit() {
        let (Some(wide), Some(narrow)) = (
            isa_kernel_matches_naive(Isa::Avx512),
            isa_kernel_matches_naive(Isa::Avx2),
        ) else {
            return;
        };
        for (x, y) in wide.iter().zip(&narrow) {
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(x), bits(y));
        }
    }

    #[test]
    fn transposed_packing_matches_naive() {
        for (m, n, k) in [
            (16, 128, 512),
            (5, 7, 3),
            (16, 136, 128),
            (1, 1, 1),
            (64, 17, 33),
        ] {
            for accumulate in [false, true] {
                check_shape(matmul_packed, isa(), m, n, k, accumulate, true);
                check_shape(
                    matmul_packed,
                    Isa::Avx2.min(isa()),
                    m,
                    n,
                    k,
                    accumulate,
                    true,
                );
                check_shape(portable, Isa::Baseline, m, n, k, accumulate, true);
                check_shape(portable, isa(), m, n, k, accumulate, true);
            }
        }
    }

    #[test]
    fn repacking_reuses_the_buffer_and_changes_the_shape() {
        let mut p = PackedB::new();
        p.pack(&data(128 * 512, 1), 512, 128, 512);
        let cap = p.buf.capacity();
        p.pack(&data(3 * 7, 2), 7, 3, 7);
        assert_eq!((p.k(), p.n()), (3, 7));
        assert_eq!(p.buf.capacity(), cap);
        assert_eq!(
            p.panels().as_ptr() as usize % 64,
            0,
            "panels must be 64-byte aligned"
        );
        // Stale data from the first pack must not leak into the padded columns.
        assert!(p
            .panels()
            .chunks_exact(p.nr)
            .all(|row| row[7..].iter().all(|&x| x == 0.0)));
        check_shape(matmul_packed, isa(), 4, 7, 3, false, false);
        // A clone gets its own aligned layout and gives the same product.
        let q = p.clone();
        assert_eq!((q.k(), q.n()), (3, 7));
        assert_eq!(q.panels().as_ptr() as usize % 64, 0);
        assert_eq!(q.panels(), p.panels());
        let a = data(2 * 3, 5);
        let (mut c1, mut c2) = (vec![0.0; 14], vec![0.0; 14]);
        matmul_packed(2, &a, 3, &p, &mut c1, 7, false);
        matmul_packed(2, &a, 3, &q, &mut c2, 7, false);
        assert_eq!(c1, c2);
    }

    #[test]
    fn packing_picks_the_panels_that_pad_fewer_columns() {
        let wide = panel_width(isa());
        for (n, want) in [
            (1, 16),
            (16, 16),
            (17, wide),
            (32, wide),
            (48, 16),
            (128, wide),
        ] {
            let mut p = PackedB::new();
            p.pack(&data(3 * n, 1), n, 3, n);
            assert_eq!(p.nr, want.min(wide), "n = {n}");
            p.pack_transposed(&data(n * 3, 1), 3, 3, n);
            assert_eq!(p.nr, want.min(wide), "n = {n}, transposed");
            let (a, mut c) = (data(2 * 3, 2), vec![0.0; 2 * n]);
            matmul_packed(2, &a, 3, &p, &mut c, n, false);
        }
    }

    #[test]
    fn k_zero_clears_or_keeps_c() {
        let mut p = PackedB::new();
        p.pack(&[], 3, 0, 3);
        let mut c = vec![2.0; 6];
        matmul_packed(2, &[], 0, &p, &mut c, 3, true);
        assert_eq!(c, vec![2.0; 6]);
        matmul_packed(2, &[], 0, &p, &mut c, 3, false);
        assert_eq!(c, vec![0.0; 6]);
    }

    #[test]
    fn matches_the_gemm_crate_bit_for_bit_on_avx2() {
        // Same accumulation order and FMA as gemm's AVX2 kernels, so the LSTM's results do not
        // change when it switches kernels. Without AVX2 (or with gemm's AVX-512 kernels) only
        // closeness is checked.
        #[cfg(target_arch = "x86_64")]
        let exact = isa() >= Isa::Avx2 && !std::is_x86_feature_detected!("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        let exact = false;
        for (m, n, k, accumulate) in [
            (16, 512, 128, true),
            (16, 128, 128, false),
            (16, 128, 512, false),
            (64, 512, 128, true),
            (97, 136, 128, true),
            (5, 7, 3, true),
        ] {
            let (a, b) = (data(m * k, 3), data(k * n, 4));
            let mut c1 = data(m * n, 5);
            let mut c2 = c1.clone();
            let mut p = PackedB::new();
            p.pack(&b, n, k, n);
            matmul_packed(m, &a, k, &p, &mut c1, n, accumulate);
            crate::nn::gemm::matmul(m, n, k, &a, k, Op::N, &b, n, Op::N, &mut c2, n, accumulate);
            for (i, (x, y)) in c1.iter().zip(&c2).enumerate() {
                if exact {
                    assert_eq!(
                        x.to_bits(),
                        y.to_bits(),
                        "m{m} n{n} k{k} at {i}: {x} vs {y}"
                    );
                } else {
                    assert!(
                        (x - y).abs() <= 1e-4 * x.abs().max(1.0),
                        "m{m} n{n} k{k} at {i}: {x} vs {y}"
                    );
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "A too small")]
    fn rejects_short_a() {
        let mut p = PackedB::new();
        p.pack(&[1.0; 4], 2, 2, 2);
        matmul_packed(2, &[1.0; 3], 2, &p, &mut [0.0; 4], 2, false);
    }

    #[test]
    #[should_panic(expected = "C too small")]
    fn rejects_short_c() {
        let mut p = PackedB::new();
        p.pack(&[1.0; 4], 2, 2, 2);
        matmul_packed(2, &[1.0; 4], 2, &p, &mut [0.0; 3], 2, false);
    }

    #[test]
    #[should_panic(expected = "A too small")]
    fn rejects_strides_that_overflow() {
        let mut p = PackedB::new();
        p.pack(&[1.0; 4], 2, 2, 2);
        matmul_packed(
            3,
            &[1.0; 4],
            usize::MAX / 2 + 1,
            &p,
            &mut [0.0; 6],
            2,
            false,
        );
    }

    #[test]
    #[should_panic(expected = "B too small")]
    fn rejects_short_b() {
        PackedB::new().pack(&[1.0; 5], 3, 2, 3);
    }

    /// Overlapping rows of A (stride below k, as a convolution's windows) give the bits of the
    /// same rows copied apart, on every kernel.
    #[test]
    fn overlapping_a_rows_equal_the_copied_rows() {
        let (m, k, n, lda) = (13, 40, 37, 7);
        let a: Vec<f32> = (0..(m - 1) * lda + k)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        let copied: Vec<f32> = (0..m)
            .flat_map(|r| a[r * lda..r * lda + k].to_vec())
            .collect();
        for isa in [Isa::Baseline, isa()] {
            let mut p = PackedB::new();
            p.pack_for(isa, &b, n, k, n);
            let (mut c1, mut c2) = (vec![0.0; m * n], vec![0.0; m * n]);
            matmul_packed(m, &a, lda, &p, &mut c1, n, false);
            matmul_packed(m, &copied, k, &p, &mut c2, n, false);
            assert_eq!(c1, c2, "{isa:?}");
        }
    }
}
