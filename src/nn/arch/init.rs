//! Keras's default initialisers for any stack, drawn tensor by tensor in file order from one
//! stream: embeddings uniform(-0.05, 0.05); kernels glorot_uniform; recurrent kernels
//! orthogonal; biases zeros, with an LSTM's forget-gate slice at 1 (unit_forget_bias).

use super::{Arch, LayerSpec};
use crate::nn::params::{glorot_uniform, orthogonal};
use anyhow::Result;
use rand::Rng;
use rand_pcg::Pcg64;

impl Arch {
    /// Fresh weights in [`Arch::layout`] order. For Embedding -> LSTM -> Dense this is the
    /// stream the tool has always drawn, so a seed keeps giving the same weights.
    pub fn init(&self, rng: &mut Pcg64) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(self.param_count()?);
        for (layer, info) in self.layers.iter().zip(self.describe()?) {
            let inner = match layer {
                LayerSpec::Bidirectional { layer, .. } => &**layer,
                l => l,
            };
            for t in &info.tensors {
                let start = out.len();
                out.resize(start + t.len(), 0.0);
                let w = &mut out[start..];
                match t.name.rsplit('/').next() {
                    Some("embeddings") => {
                        w.iter_mut().for_each(|x| *x = rng.gen_range(-0.05..0.05))
                    }
                    // Conv1D's [k, c, f]: Keras's fans count the receptive field k.
                    Some("kernel") => {
                        let k: usize = t.shape[..t.shape.len() - 2].iter().product();
                        let (i, o) = (t.shape[t.shape.len() - 2], t.shape[t.shape.len() - 1]);
                        glorot_uniform(w, k * i, k * o, rng);
                    }
                    Some("recurrent_kernel") => {
                        w.copy_from_slice(&orthogonal(t.shape[0], t.shape[1], rng))
                    }
                    _ => {
                        if let LayerSpec::LSTM(r) = inner {
                            w[r.units..2 * r.units].fill(1.0);
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{preset, PRESETS};
    use crate::nn::ModelConfig;
    use rand::SeedableRng;
    use rand_pcg::Pcg64;

    #[test]
    fn init_follows_keras_initialisers() {
        let cfg = ModelConfig {
            num_words: 100,
            embed_dim: 8,
            units: 4,
            ..ModelConfig::default()
        };
        let arch = cfg.arch();
        let p = arch.init(&mut Pcg64::seed_from_u64(7)).unwrap();
        let l = arch.layout().unwrap();
        let t = |i: usize| &p[l[i].1.clone()];
        assert!(t(0).iter().all(|x| x.abs() <= 0.05));
        let limit = (6.0f32 / (8.0 + 16.0)).sqrt();
        assert!(t(1).iter().all(|x| x.abs() <= limit));
        assert!(t(1).iter().any(|x| x.abs() > limit / 2.0));
        let b = t(3);
        assert!(b[..4].iter().chain(&b[8..]).all(|&x| x == 0.0));
        assert!(b[4..8].iter().all(|&x| x == 1.0));
        assert_eq!(t(5), &[0.0]);
        assert_eq!(p, arch.init(&mut Pcg64::seed_from_u64(7)).unwrap());
    }

    /// Every preset: the layout's length, no NaN, kernels drawn (not zero), biases zero except
    /// an LSTM's forget gates, each direction of a Bidirectional LSTM with its own.
    #[test]
    fn every_preset_is_initialised() {
        for name in PRESETS {
            let mut arch = preset(name).unwrap().arch;
            arch.set_input_dim(50);
            let p = arch.init(&mut Pcg64::seed_from_u64(1)).unwrap();
            assert_eq!(p.len(), arch.param_count().unwrap(), "{name}");
            for (t, r) in arch.layout().unwrap() {
                let w = &p[r];
                if t.name.ends_with("bias") {
                    let ones = w.iter().filter(|&&x| x == 1.0).count();
                    let want = if t.name.contains("lstm") {
                        w.len() / 4
                    } else {
                        0
                    };
                    assert_eq!(ones, want, "{name}: {}", t.name);
                    assert_eq!(ones + w.iter().filter(|&&x| x == 0.0).count(), w.len());
                } else {
                    assert!(w.iter().all(|x| x.is_finite() && x.abs() <= 1.0), "{name}");
                    assert!(w.iter().any(|&x| x != 0.0), "{name}: {}", t.name);
                }
            }
        }
    }
}
