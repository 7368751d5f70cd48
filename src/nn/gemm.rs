//! The one place that multiplies matrices. Everything else calls [`matmul`], so the GEMM
//! library can change without touching the layers.
//!
//! Backed by the pure-Rust `gemm` crate, which picks AVX-512, AVX2+FMA or SSE kernels at run
//! time, so one binary runs on any x86-64. Always single-threaded: parallelism comes from
//! splitting the batch across cores (see `nn::lstm`), which beat a threaded GEMM at these sizes.

/// Whether an operand is used as stored or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Use the matrix as stored (row-major).
    N,
    /// Use its transpose.
    T,
}

/// `C = op(A) * op(B)` (or `C += ...` when `accumulate`), row-major, BLAS-style:
/// op(A) is m x k, op(B) is k x n, C is m x n with row stride `ldc`.
/// A is stored m x k with row stride `lda` (Op::N) or k x m (Op::T); likewise B.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    opa: Op,
    b: &[f32],
    ldb: usize,
    opb: Op,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                c[r * ldc..r * ldc + n].fill(0.0);
            }
        }
        return;
    }
    // (row stride, col stride) of op(X) in elements, and bounds checks that make the unsafe call sound.
    let (a_rs, a_cs) = strides(opa, lda);
    let (b_rs, b_cs) = strides(opb, ldb);
    assert!(
        last_index(m, k, a_rs, a_cs) < a.len(),
        "matmul: A too small"
    );
    assert!(
        last_index(k, n, b_rs, b_cs) < b.len(),
        "matmul: B too small"
    );
    assert!(last_index(m, n, ldc, 1) < c.len(), "matmul: C too small");
    assert!(n <= ldc, "matmul: ldc < n");
    // SAFETY: every index gemm touches is inside the slices (checked above); C does not alias
    // A or B because it is a unique borrow.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

fn strides(op: Op, ld: usize) -> (usize, usize) {
    match op {
        Op::N => (ld, 1),
        Op::T => (1, ld),
    }
}

fn last_index(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    (rows - 1) * rs + (cols - 1) * cs
}

/// The obviously-correct twin of [`matmul`], in f64, for tests.
#[allow(clippy::too_many_arguments)]
pub fn matmul_naive(
    m: usize,
    n: usize,
    k: usize,
    a: &[f64],
    lda: usize,
    opa: Op,
    b: &[f64],
    ldb: usize,
    opb: Op,
    c: &mut [f64],
    ldc: usize,
    accumulate: bool,
) {
    let (a_rs, a_cs) = strides(opa, lda);
    let (b_rs, b_cs) = strides(opb, ldb);
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0;
            for p in 0..k {
                s += a[i * a_rs + p * a_cs] * b[p * b_rs + j * b_cs];
            }
            let dst = &mut c[i * ldc + j];
            *dst = if accumulate { *dst + s } else { s };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn matches_naive_for_all_transposes_and_strides() {
        let (m, n, k) = (7, 5, 9);
        for opa in [Op::N, Op::T] {
            for opb in [Op::N, Op::T] {
                for accumulate in [false, true] {
                    let lda = if opa == Op::N { k + 2 } else { m + 1 };
                    let ldb = if opb == Op::N { n + 3 } else { k + 1 };
                    let a = data(lda * (if opa == Op::N { m } else { k }), 1);
                    let b = data(ldb * (if opb == Op::N { k } else { n }), 2);
                    let ldc = n + 1;
                    let mut c = data(ldc * m, 3);
                    let mut c64: Vec<f64> = c.iter().map(|&x| x as f64).collect();
                    let a64: Vec<f64> = a.iter().map(|&x| x as f64).collect();
                    let b64: Vec<f64> = b.iter().map(|&x| x as f64).collect();
                    matmul(m, n, k, &a, lda, opa, &b, ldb, opb, &mut c, ldc, accumulate);
                    matmul_naive(
                        m, n, k, &a64, lda, opa, &b64, ldb, opb, &mut c64, ldc, accumulate,
                    );
                    for (i, (x, y)) in c.iter().zip(&c64).enumerate() {
                        assert!(
                            (*x as f64 - y).abs() < 1e-5,
                            "{opa:?}{opb:?} acc={accumulate} at {i}: {x} vs {y}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "A too small")]
    fn rejects_short_operands() {
        let mut c = vec![0.0; 4];
        matmul(
            2,
            2,
            2,
            &[1.0; 3],
            2,
            Op::N,
            &[1.0; 4],
            2,
            Op::N,
            &mut c,
            2,
            false,
        );
    }
}
