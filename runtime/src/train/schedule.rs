//! Learning-rate schedules.
//!
//! ```text
//! constant   η(t) = η
//! cosine     η(t) = η·(t + 1)/(w + 1)                      for t < w (linear warm-up, never 0)
//!            η(t) = η·½·(1 + cos(π·(t − w)/(T − w)))       for w ≤ t < T (down to near 0)
//! ```
//!
//! `t` counts updates from 0, `T` is the run's total number of updates and
//! `w` the warm-up. O(1) per call.

use serde::{Deserialize, Serialize};

/// A learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Schedule {
    /// The same rate throughout.
    Constant,
    /// A linear warm-up over `warmup` updates, then a cosine decay to 0.
    Cosine {
        /// Warm-up updates.
        warmup: u64,
    },
}

impl Schedule {
    /// The rate of update `t` (from 0) of `total`, for a peak rate `lr`.
    #[must_use]
    pub fn rate(&self, lr: f32, t: u64, total: u64) -> f32 {
        match *self {
            Self::Constant => lr,
            Self::Cosine { warmup } => {
                #[allow(clippy::cast_precision_loss)] // step counts far below 2^52
                let (t, w, n) = (t as f64, warmup as f64, total.max(1) as f64);
                let f = if t < w {
                    (t + 1.0) / (w + 1.0)
                } else if n <= w {
                    1.0
                } else {
                    0.5 * (1.0 + (std::f64::consts::PI * ((t - w) / (n - w)).min(1.0)).cos())
                };
                #[allow(clippy::cast_possible_truncation)] // a factor in [0, 1]
                let f = f as f32;
                lr * f
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_is_constant() {
        assert!((Schedule::Constant.rate(0.1, 57, 100) - 0.1).abs() < f32::EPSILON);
    }

    #[test]
    fn cosine_warms_up_peaks_halves_and_ends_near_zero() {
        let s = Schedule::Cosine { warmup: 9 };
        // Warm-up: (t + 1)/(w + 1), never 0 on the first update.
        assert!((s.rate(1.0, 0, 109) - 0.1).abs() < 1e-6);
        assert!((s.rate(1.0, 4, 109) - 0.5).abs() < 1e-6);
        assert!((s.rate(1.0, 9, 109) - 1.0).abs() < 1e-6);
        // Halfway through the decay: cos(π/2) = 0, so ½.
        assert!((s.rate(1.0, 59, 109) - 0.5).abs() < 1e-6);
        assert!(s.rate(1.0, 108, 109) < 1e-3);
    }

    #[test]
    fn warm_up_longer_than_the_run_holds_the_peak() {
        let s = Schedule::Cosine { warmup: 50 };
        assert!((s.rate(2.0, 60, 40) - 2.0).abs() < 1e-6);
    }
}

/// The schedules by name, for command lines (the warm-up comes from its own
/// flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleKind {
    /// [`Schedule::Constant`].
    Constant,
    /// [`Schedule::Cosine`].
    Cosine,
}

impl ScheduleKind {
    /// Every kind.
    pub const ALL: [Self; 2] = [Self::Constant, Self::Cosine];

    /// Its name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Constant => "constant",
            Self::Cosine => "cosine",
        }
    }

    /// What it is.
    #[must_use]
    pub fn help(self) -> &'static str {
        match self {
            Self::Constant => "the same rate throughout",
            Self::Cosine => "a linear warm-up over --warmup updates, then a cosine decay to 0",
        }
    }
}

impl std::str::FromStr for ScheduleKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown schedule `{s}` (expected constant or cosine)"))
    }
}
