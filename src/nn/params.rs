//! All weights in one contiguous buffer with named views, in Keras's layout, so zeroing,
//! the optimiser step, counting and saving are each one loop or one write.

use super::ModelConfig;
use rand::Rng;
use rand_pcg::Pcg64;
use std::ops::Range;

/// Index of each tensor in [`ModelConfig::tensor_shapes`] order.
pub const EMBEDDING: usize = 0;
pub const KERNEL: usize = 1;
pub const RECURRENT: usize = 2;
pub const BIAS: usize = 3;
pub const DENSE_KERNEL: usize = 4;
pub const DENSE_BIAS: usize = 5;

/// Where each tensor lives in the flat buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    pub ranges: [Range<usize>; 6],
}

impl Layout {
    pub fn new(cfg: &ModelConfig) -> Layout {
        let mut start = 0;
        let shapes = cfg.tensor_shapes();
        let ranges = std::array::from_fn(|i| {
            let len: usize = shapes[i].1.iter().product();
            let r = start..start + len;
            start += len;
            r
        });
        Layout { ranges }
    }

    /// Total number of parameters.
    pub fn len(&self) -> usize {
        self.ranges[DENSE_BIAS].end
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Everything after the embedding table: the part each thread accumulates on its own.
    pub fn dense_part(&self) -> Range<usize> {
        self.ranges[KERNEL].start..self.len()
    }
}

/// The model's weights. `data` is `[embeddings | kernel | recurrent_kernel | bias | dense kernel | dense bias]`:
/// - embeddings `[num_words, embed_dim]`
/// - kernel `[embed_dim, 4*units]`, recurrent_kernel `[units, 4*units]`, bias `[4*units]` (gates i, f, c, o)
/// - dense kernel `[units, 1]`, dense bias `[1]`
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    pub cfg: ModelConfig,
    pub layout: Layout,
    pub data: Vec<f32>,
}

impl Params {
    /// `data` as the weights of `cfg` (in its layout).
    pub fn of(cfg: &ModelConfig, data: Vec<f32>) -> Params {
        let layout = Layout::new(cfg);
        assert_eq!(data.len(), layout.len(), "data must be the config's layout");
        Params {
            cfg: cfg.clone(),
            layout,
            data,
        }
    }

    /// All zeros (a gradient or moment buffer of the same layout).
    pub fn zeros(cfg: &ModelConfig) -> Params {
        let layout = Layout::new(cfg);
        Params {
            cfg: cfg.clone(),
            data: vec![0.0; layout.len()],
            layout,
        }
    }

    pub fn tensor(&self, i: usize) -> &[f32] {
        &self.data[self.layout.ranges[i].clone()]
    }

    pub fn tensor_mut(&mut self, i: usize) -> &mut [f32] {
        &mut self.data[self.layout.ranges[i].clone()]
    }

    /// (name, shape, values) of every tensor, in file order.
    pub fn named(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        self.cfg
            .tensor_shapes()
            .into_iter()
            .enumerate()
            .map(|(i, (name, shape))| (name.to_string(), shape, self.tensor(i).to_vec()))
            .collect()
    }

    /// Rebuild from named tensors (as a model file holds them); names and shapes must match `cfg`.
    pub fn from_named(
        cfg: &ModelConfig,
        tensors: &[(String, Vec<usize>, Vec<f32>)],
    ) -> anyhow::Result<Params> {
        let mut p = Params::zeros(cfg);
        for (i, (name, shape)) in cfg.tensor_shapes().into_iter().enumerate() {
            let Some((_, got_shape, values)) = tensors.iter().find(|t| t.0 == name) else {
                anyhow::bail!("tensor {name} is missing");
            };
            anyhow::ensure!(
                *got_shape == shape && values.len() == p.layout.ranges[i].len(),
                "tensor {name} has shape {got_shape:?}; the model's configuration needs {shape:?}"
            );
            p.tensor_mut(i).copy_from_slice(values);
        }
        Ok(p)
    }
}

/// uniform(-limit, limit) with limit = sqrt(6 / (fan_in + fan_out)).
pub(crate) fn glorot_uniform(w: &mut [f32], fan_in: usize, fan_out: usize, rng: &mut Pcg64) {
    let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
    for x in w {
        *x = rng.gen_range(-limit..limit);
    }
}

/// A standard normal sample (Box-Muller, f64).
fn normal(rng: &mut Pcg64) -> f64 {
    let u1: f64 = 1.0 - rng.gen::<f64>(); // in (0, 1]
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Keras's `Orthogonal` initialiser for a `[rows, cols]` matrix: QR of a normal matrix of the
/// taller orientation, Q's columns sign-fixed by diag(R), transposed back when rows < cols.
pub fn orthogonal(rows: usize, cols: usize, rng: &mut Pcg64) -> Vec<f32> {
    // a: [tall, short] with tall >= short; orthonormalise its columns (modified Gram-Schmidt in
    // f64, which equals QR's Q with diag(R) > 0 — exactly Keras's sign fix).
    let (tall, short) = (rows.max(cols), rows.min(cols));
    let mut a: Vec<f64> = (0..tall * short).map(|_| normal(rng)).collect();
    for j in 0..short {
        for k in 0..j {
            let dot: f64 = (0..tall).map(|i| a[i * short + j] * a[i * short + k]).sum();
            for i in 0..tall {
                a[i * short + j] -= dot * a[i * short + k];
            }
        }
        let norm = (0..tall)
            .map(|i| a[i * short + j].powi(2))
            .sum::<f64>()
            .sqrt();
        for i in 0..tall {
            a[i * short + j] /= norm;
        }
    }
    let mut out = vec![0.0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            // rows >= cols: out = a; rows < cols: out = a^T.
            out[r * cols + c] = if rows >= cols {
                a[r * short + c]
            } else {
                a[c * short + r]
            } as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn layout_matches_keras_parameter_counts() {
        let l = Layout::new(&ModelConfig::default());
        assert_eq!(l.ranges[EMBEDDING].len(), 640_000);
        assert_eq!(
            l.ranges[KERNEL].len() + l.ranges[RECURRENT].len() + l.ranges[BIAS].len(),
            131_584
        );
        assert_eq!(
            l.ranges[DENSE_KERNEL].len() + l.ranges[DENSE_BIAS].len(),
            129
        );
        assert_eq!(l.len(), 771_713);
    }

    #[test]
    fn orthogonal_rows_are_orthonormal_for_wide_matrices() {
        let mut rng = Pcg64::seed_from_u64(1);
        let (r, c) = (8, 32);
        let q = orthogonal(r, c, &mut rng);
        for i in 0..r {
            for j in 0..r {
                let dot: f64 = (0..c)
                    .map(|k| q[i * c + k] as f64 * q[j * c + k] as f64)
                    .sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-5, "row {i}.row {j} = {dot}");
            }
        }
    }

    #[test]
    fn named_round_trip_and_shape_errors() {
        let cfg = ModelConfig {
            num_words: 10,
            embed_dim: 3,
            units: 2,
            ..ModelConfig::default()
        };
        let p = Params {
            data: cfg.arch().init(&mut Pcg64::seed_from_u64(3)).unwrap(),
            ..Params::zeros(&cfg)
        };
        let named = p.named();
        assert_eq!(Params::from_named(&cfg, &named).unwrap(), p);
        let mut bad = named.clone();
        bad[2].1 = vec![3, 8];
        let err = Params::from_named(&cfg, &bad).unwrap_err().to_string();
        assert!(
            err.contains("lstm/recurrent_kernel") && err.contains("[2, 8]"),
            "{err}"
        );
        let err = Params::from_named(&cfg, &named[1..])
            .unwrap_err()
            .to_string();
        assert!(err.contains("embedding/embeddings"), "{err}");
    }
}
