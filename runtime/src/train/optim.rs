//! Optimizers, run on the host over `f32` parameters.
//!
//! ```text
//! sgd     m ← μ·m + g;  θ ← θ − η·(m + λ·θ)                       (μ = 0: plain SGD)
//! adamw   m ← β₁·m + (1 − β₁)·g;  v ← β₂·v + (1 − β₂)·g²
//!         θ ← θ − η·( m/(1 − β₁ᵗ) / (√(v/(1 − β₂ᵗ)) + ε) + λ·θ )     (decoupled decay)
//! ```
//!
//! `t` counts the updates from 1. SGD's decay is added to the gradient
//! before the momentum in `PyTorch`; here it is applied with the step like
//! `AdamW`'s, so that λ means the same for both (decoupled weight decay,
//! Loshchilov & Hutter). Both are O(n) per tensor of n elements, with one
//! (SGD with momentum) or two (`AdamW`) state buffers of n floats.
//!
//! The optimizer runs on the host, not in the step graph: an update is a
//! handful of flops per parameter against the step's thousands, so the graph
//! stays the fixed interface `laurelc grad` documents and any optimizer fits.

use serde::{Deserialize, Serialize};

/// An optimizer and its hyper-parameters (the learning rate comes from the
/// schedule).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Optimizer {
    /// Stochastic gradient descent with (heavy-ball) momentum.
    Sgd {
        /// The momentum μ (0 for none).
        momentum: f32,
        /// The decoupled weight decay λ.
        weight_decay: f32,
    },
    /// Adam with decoupled weight decay.
    AdamW {
        /// β₁.
        beta1: f32,
        /// β₂.
        beta2: f32,
        /// ε.
        eps: f32,
        /// The decoupled weight decay λ.
        weight_decay: f32,
    },
}

impl Optimizer {
    /// SGD with momentum 0.9 and the given decay.
    #[must_use]
    pub fn sgd(weight_decay: f32) -> Self {
        Self::Sgd {
            momentum: 0.9,
            weight_decay,
        }
    }

    /// `AdamW` with β = (0.9, 0.999), ε = 1e-8 and the given decay.
    #[must_use]
    pub fn adamw(weight_decay: f32) -> Self {
        Self::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        }
    }

    /// The number of state buffers per parameter tensor.
    #[must_use]
    pub fn buffers(&self) -> usize {
        match self {
            Self::Sgd { momentum, .. } if *momentum == 0.0 => 0,
            Self::Sgd { .. } => 1,
            Self::AdamW { .. } => 2,
        }
    }

    /// Updates `theta` in place by its gradient `g` at learning rate `lr`,
    /// `t` being this update's number (from 1), with `state` holding
    /// [`Optimizer::buffers`] buffers of `theta`'s length.
    ///
    /// # Panics
    /// Never on consistent input; lengths are the caller's invariant, checked
    /// by debug assertions.
    pub fn update(&self, theta: &mut [f32], g: &[f32], state: &mut [Vec<f32>], lr: f32, t: u64) {
        debug_assert_eq!(theta.len(), g.len());
        debug_assert_eq!(state.len(), self.buffers());
        match *self {
            Self::Sgd {
                momentum,
                weight_decay,
            } => {
                if let [m] = state {
                    for ((p, &gi), mi) in theta.iter_mut().zip(g).zip(m.iter_mut()) {
                        *mi = momentum * *mi + gi;
                        *p -= lr * (*mi + weight_decay * *p);
                    }
                } else {
                    for (p, &gi) in theta.iter_mut().zip(g) {
                        *p -= lr * (gi + weight_decay * *p);
                    }
                }
            }
            Self::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                let [m, v] = state else {
                    debug_assert!(false, "AdamW keeps two buffers");
                    return;
                };
                let ti = i32::try_from(t).unwrap_or(i32::MAX);
                let c1 = 1.0 - beta1.powi(ti);
                let c2 = 1.0 - beta2.powi(ti);
                for (((p, &gi), mi), vi) in theta.iter_mut().zip(g).zip(m.iter_mut()).zip(v) {
                    *mi = beta1 * *mi + (1.0 - beta1) * gi;
                    *vi = beta2 * *vi + (1.0 - beta2) * gi * gi;
                    let mhat = *mi / c1;
                    let vhat = *vi / c2;
                    *p -= lr * (mhat / (vhat.sqrt() + eps) + weight_decay * *p);
                }
            }
        }
    }
}

/// Scales the gradients so that their global L2 norm is at most `max_norm`,
/// and returns the norm before clipping. O(total elements).
pub fn clip_global_norm(grads: &mut [Vec<f32>], max_norm: f32) -> f32 {
    let norm = grads
        .iter()
        .flat_map(|g| g.iter())
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm > f64::from(max_norm) && norm.is_finite() {
        #[allow(clippy::cast_possible_truncation)] // a factor in (0, 1)
        let s = (f64::from(max_norm) / norm) as f32;
        for x in grads.iter_mut().flat_map(|g| g.iter_mut()) {
            *x *= s;
        }
    }
    #[allow(clippy::cast_possible_truncation)] // a norm of f32 values; +inf above f32::MAX
    let norm = norm as f32;
    norm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_sgd_steps_against_the_gradient() {
        let opt = Optimizer::Sgd {
            momentum: 0.0,
            weight_decay: 0.0,
        };
        let mut theta = vec![1.0, -2.0];
        opt.update(&mut theta, &[0.5, -1.0], &mut [], 0.1, 1);
        assert_eq!(theta, vec![0.95, -1.9]);
    }

    #[test]
    fn momentum_accumulates_and_decay_is_decoupled() {
        let opt = Optimizer::Sgd {
            momentum: 0.5,
            weight_decay: 0.1,
        };
        let mut theta = vec![1.0];
        let mut state = vec![vec![0.0]];
        // m = 1; θ = 1 − 0.1·(1 + 0.1·1) = 0.89
        opt.update(&mut theta, &[1.0], &mut state, 0.1, 1);
        assert!((theta[0] - 0.89).abs() < 1e-7, "{theta:?}");
        // m = 0.5 + 1 = 1.5; θ = 0.89 − 0.1·(1.5 + 0.089) = 0.7311
        opt.update(&mut theta, &[1.0], &mut state, 0.1, 2);
        assert!((theta[0] - 0.7311).abs() < 1e-6, "{theta:?}");
        assert_eq!(state[0], vec![1.5]);
    }

    #[test]
    fn adamw_first_step_moves_each_weight_by_the_learning_rate() {
        // At t = 1 the bias-corrected m̂ = g and v̂ = g², so the step is
        // η·g/(|g| + ε): η times the gradient's sign, whatever its size.
        let opt = Optimizer::adamw(0.0);
        let mut theta = vec![0.0, 0.0, 0.0];
        let mut state = vec![vec![0.0; 3], vec![0.0; 3]];
        opt.update(&mut theta, &[1e-3, -5.0, 20.0], &mut state, 0.01, 1);
        for (got, want) in theta.iter().zip([-0.01, 0.01, -0.01]) {
            assert!((got - want).abs() < 1e-6, "{theta:?}");
        }
    }

    #[test]
    fn adamw_second_step_follows_the_formula() {
        let opt = Optimizer::AdamW {
            beta1: 0.9,
            beta2: 0.99,
            eps: 0.0,
            weight_decay: 0.5,
        };
        let mut theta = vec![1.0];
        let mut state = vec![vec![0.0], vec![0.0]];
        opt.update(&mut theta, &[2.0], &mut state, 0.1, 1);
        // θ₁ = 1 − 0.1·(1 + 0.5·1) = 0.85
        assert!((theta[0] - 0.85).abs() < 1e-6);
        opt.update(&mut theta, &[-1.0], &mut state, 0.1, 2);
        // m = 0.9·0.2 − 0.1 = 0.08, v = 0.99·0.04 + 0.01 = 0.0496
        // m̂ = 0.08/0.19, v̂ = 0.0496/0.0199
        let mhat = 0.08_f64 / 0.19;
        let vhat = 0.0496_f64 / 0.0199;
        let want = 0.85 - 0.1 * (mhat / vhat.sqrt() + 0.5 * 0.85);
        assert!(
            (f64::from(theta[0]) - want).abs() < 1e-6,
            "{theta:?} {want}"
        );
    }

    #[test]
    fn clipping_scales_to_the_norm_and_leaves_small_gradients() {
        let mut g = vec![vec![3.0], vec![4.0]];
        assert!((clip_global_norm(&mut g, 1.0) - 5.0).abs() < 1e-6);
        assert!((g[0][0] - 0.6).abs() < 1e-6 && (g[1][0] - 0.8).abs() < 1e-6);
        let mut small = vec![vec![0.3, 0.4]];
        clip_global_norm(&mut small, 1.0);
        assert_eq!(small, vec![vec![0.3, 0.4]]);
    }
}

/// The optimizers by name, for command lines (their hyper-parameters come
/// from their own flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptimizerKind {
    /// [`Optimizer::AdamW`].
    AdamW,
    /// [`Optimizer::Sgd`].
    Sgd,
}

impl OptimizerKind {
    /// Every kind.
    pub const ALL: [Self; 2] = [Self::AdamW, Self::Sgd];

    /// Its name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::AdamW => "adamw",
            Self::Sgd => "sgd",
        }
    }

    /// What it is.
    #[must_use]
    pub fn help(self) -> &'static str {
        match self {
            Self::AdamW => "Adam with decoupled weight decay, β = (0.9, 0.999), ε = 1e-8",
            Self::Sgd => "SGD with heavy-ball momentum (--momentum) and decoupled weight decay",
        }
    }
}

impl std::str::FromStr for OptimizerKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown optimizer `{s}` (expected adamw or sgd)"))
    }
}
