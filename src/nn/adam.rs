//! Adam in Keras's form (keras/src/optimizers/adam.py): bias correction folded into the step
//! size, epsilon added to sqrt(v) after correction-free accumulation.

use serde::{Deserialize, Serialize};

/// Adam's hyper-parameters, Keras's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    /// Step size (default 1e-3).
    pub learning_rate: f32,
    /// Decay of the first moment (default 0.9).
    pub beta_1: f32,
    /// Decay of the second moment (default 0.999).
    pub beta_2: f32,
    /// Added to sqrt(v) (default 1e-7, Keras's value; PyTorch uses 1e-8).
    pub epsilon: f32,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            learning_rate: 1e-3,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
        }
    }
}

/// Optimiser state: moments for every parameter and the step count.
#[derive(Clone, Debug, PartialEq)]
pub struct Adam {
    pub cfg: AdamConfig,
    /// Steps taken so far (Keras's `iterations`).
    pub step: u64,
    /// First moments, same layout as the parameters.
    pub m: Vec<f32>,
    /// Second moments, same layout as the parameters.
    pub v: Vec<f32>,
}

impl Adam {
    pub fn new(cfg: AdamConfig, len: usize) -> Adam {
        Adam {
            cfg,
            step: 0,
            m: vec![0.0; len],
            v: vec![0.0; len],
        }
    }

    /// One update of every parameter (rows absent from the batch included, as Keras does with
    /// dense gradients). Splits the buffer across `threads`; each element's arithmetic is the
    /// same whatever the split.
    pub fn update(&mut self, params: &mut [f32], grads: &[f32], threads: usize) {
        assert_eq!(params.len(), grads.len());
        self.step += 1;
        let c = &self.cfg;
        let t = self.step as f64;
        let alpha = (c.learning_rate as f64 * (1.0 - (c.beta_2 as f64).powf(t)).sqrt()
            / (1.0 - (c.beta_1 as f64).powf(t))) as f32;
        let (one_b1, one_b2, eps) = (1.0 - c.beta_1, 1.0 - c.beta_2, c.epsilon);
        let per = params.len().div_ceil(threads.max(1)).max(1);
        let kernel = move |p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]| {
            crate::dispatch!(for (((p, &g), m), v) in
                p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut())
            {
                *m += (g - *m) * one_b1;
                *v += (g * g - *v) * one_b2;
                *p -= *m * alpha / (v.sqrt() + eps);
            })
        };
        std::thread::scope(|s| {
            let parts = params
                .chunks_mut(per)
                .zip(grads.chunks(per))
                .zip(self.m.chunks_mut(per))
                .zip(self.v.chunks_mut(per));
            let mut parts = parts.peekable();
            while let Some((((p, g), m), v)) = parts.next() {
                if parts.peek().is_none() {
                    kernel(p, g, m, v); // the calling thread takes the last part
                } else {
                    s.spawn(move || kernel(p, g, m, v));
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// keras/src/optimizers/adam_test.py::test_single_step (the values are also collected in
    /// `../shared/reference/keras_lstm_golden.md` beside the checkout).
    #[test]
    fn keras_single_step_golden() {
        let mut adam = Adam::new(
            AdamConfig {
                learning_rate: 0.5,
                ..Default::default()
            },
            4,
        );
        let mut p = vec![1.0, 2.0, 3.0, 4.0];
        adam.update(&mut p, &[1.0, 6.0, 7.0, 2.0], 1);
        // Keras's own test allows 1e-4: epsilon moves the result by ~1.5e-6.
        for (got, want) in p.iter().zip([0.5, 1.5, 2.5, 3.5]) {
            assert!((got - want).abs() < 1e-4, "{p:?}");
        }
    }

    /// Several steps against the textbook formula in f64, and thread count changes nothing.
    #[test]
    fn matches_formula_over_steps_and_threads() {
        let cfg = AdamConfig::default();
        let n = 1001;
        let mut p1: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut p2 = p1.clone();
        let mut pref: Vec<f64> = p1.iter().map(|&x| x as f64).collect();
        let (mut m, mut v) = (vec![0.0f64; n], vec![0.0f64; n]);
        let (mut a1, mut a2) = (Adam::new(cfg.clone(), n), Adam::new(cfg.clone(), n));
        for step in 1..=5 {
            let g: Vec<f32> = (0..n)
                .map(|i| ((i * step) as f32 * 0.11).cos() * 0.1)
                .collect();
            a1.update(&mut p1, &g, 1);
            a2.update(&mut p2, &g, 3);
            for i in 0..n {
                let gi = g[i] as f64;
                m[i] = 0.9 * m[i] + 0.1 * gi;
                v[i] = 0.999 * v[i] + 0.001 * gi * gi;
                let mhat = m[i] / (1.0 - 0.9f64.powi(step as i32));
                let vhat = v[i] / (1.0 - 0.999f64.powi(step as i32));
                // Keras's form: epsilon is scaled by sqrt(1 - beta_2^t) relative to the textbook one.
                let eps_hat = 1e-7 / (1.0 - 0.999f64.powi(step as i32)).sqrt();
                pref[i] -= 1e-3 * mhat / (vhat.sqrt() + eps_hat);
            }
        }
        assert_eq!(p1, p2, "the thread split must not change any value");
        for i in 0..n {
            assert!(
                (p1[i] as f64 - pref[i]).abs() < 1e-6,
                "param {i}: {} vs {}",
                p1[i],
                pref[i]
            );
        }
        assert_eq!(a1.step, 5);
    }
}
