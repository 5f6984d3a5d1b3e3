//! Evaluation numbers from a model's predictions, computed on the host.
//!
//! ```text
//! accuracy  = #{argmax_c p[i, c] = t[i]} / #positions        (class ids)
//! ce        = mean_i (logsumexp_c p[i, c] − p[i, t[i]])      (class ids)
//! mse       = mean (p − t)²                                   (float targets)
//! kd        = −T²·mean_i Σ_c q[i, c]·log_softmax(p[i]/T)_c    (a teacher's probabilities)
//! ```
//!
//! The same definitions as the step's losses, evaluated per example so that a
//! padded last batch counts only its real rows. O(elements).

use serde::Serialize;
use tract_onnx::prelude::Tensor;

use crate::error::RuntimeError;

/// Numbers of an evaluation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Metrics {
    /// The mean loss.
    pub loss: f64,
    /// The accuracy (class-id targets only).
    pub accuracy: Option<f64>,
    /// The examples evaluated.
    pub examples: usize,
}

fn f32s<'a>(t: &'a Tensor, what: &str) -> Result<&'a [f32], RuntimeError> {
    super::elements::<f32>(t).ok_or_else(|| RuntimeError::StepInterface {
        reason: format!("the {what} is {:?}, not float32", t.datum_type()),
    })
}

/// The loss an evaluation reports for float targets (class ids always get
/// the cross-entropy).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum FloatLoss {
    /// The mean squared error.
    #[default]
    SquaredError,
    /// Distillation from a teacher's probabilities at a temperature.
    Distillation {
        /// The temperature.
        temperature: f64,
    },
}

/// Per-position sums over the first `rows` examples of a batch: (loss sum,
/// correct, positions) for class ids, (loss sum, 0, elements or positions)
/// for float targets.
///
/// # Errors
/// [`RuntimeError::StepInterface`] when prediction and target do not fit.
pub fn sums(
    pred: &Tensor,
    target: &Tensor,
    rows: usize,
    float_loss: FloatLoss,
) -> Result<(f64, u64, u64), RuntimeError> {
    let p = f32s(pred, "prediction")?;
    let batch = pred.shape().first().copied().unwrap_or(1).max(1);
    let per_row = p.len() / batch;
    if let Some(t) = super::elements::<i64>(target) {
        let classes = pred.shape().last().copied().unwrap_or(1).max(1);
        let positions = p.len() / classes;
        if t.len() != positions {
            return Err(RuntimeError::StepInterface {
                reason: format!(
                    "{} class ids for a prediction of {positions} positions",
                    t.len()
                ),
            });
        }
        let per_row_positions = per_row / classes;
        let (mut loss, mut correct) = (0.0, 0_u64);
        for i in 0..rows * per_row_positions {
            let z = &p[i * classes..(i + 1) * classes];
            let (arg, max) =
                z.iter()
                    .enumerate()
                    .fold(
                        (0, f32::NEG_INFINITY),
                        |(a, m), (j, &v)| if v > m { (j, v) } else { (a, m) },
                    );
            let lse = f64::from(max)
                + z.iter()
                    .map(|&v| (f64::from(v) - f64::from(max)).exp())
                    .sum::<f64>()
                    .ln();
            let label = usize::try_from(t[i]).ok().filter(|&c| c < classes);
            if let Some(c) = label {
                loss += lse - f64::from(z[c]);
                correct += u64::from(arg == c);
            }
        }
        return Ok((loss, correct, (rows * per_row_positions) as u64));
    }
    let t = f32s(target, "target")?;
    if t.len() != p.len() {
        return Err(RuntimeError::StepInterface {
            reason: format!(
                "a target of {} values for a prediction of {}",
                t.len(),
                p.len()
            ),
        });
    }
    let n = rows * per_row;
    if let FloatLoss::Distillation { temperature } = float_loss {
        let classes = pred.shape().last().copied().unwrap_or(1).max(1);
        let mut loss = 0.0;
        for (z, q) in p[..n].chunks(classes).zip(t[..n].chunks(classes)) {
            let z: Vec<f64> = z.iter().map(|&v| f64::from(v) / temperature).collect();
            let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + z.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            loss -= temperature
                * temperature
                * z.iter()
                    .zip(q)
                    .map(|(v, &w)| f64::from(w) * (v - lse))
                    .sum::<f64>();
        }
        return Ok((loss, 0, (n / classes) as u64));
    }
    let se = p[..n]
        .iter()
        .zip(&t[..n])
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
        .sum();
    Ok((se, 0, n as u64))
}

/// (correct, positions) of a whole batch of class-id predictions.
///
/// # Errors
/// As [`sums`].
pub fn correct(pred: &Tensor, target: &Tensor) -> Result<(u64, u64), RuntimeError> {
    let rows = pred.shape().first().copied().unwrap_or(1);
    let (_, c, n) = sums(pred, target, rows, FloatLoss::default())?;
    Ok((c, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_and_accuracy_by_hand() {
        // Two rows of two classes: logits (0, ln 3) → p = (¼, ¾); (2, 0).
        let p = Tensor::from_shape(&[2, 2], &[0.0f32, 3f32.ln(), 2.0, 0.0]).unwrap();
        let t = Tensor::from_shape(&[2], &[1i64, 1]).unwrap();
        let (loss, correct, n) = sums(&p, &t, 2, FloatLoss::default()).unwrap();
        let want = -(0.75f64).ln() + ((2f64).exp() + 1.0).ln();
        assert!((loss - want).abs() < 1e-6, "{loss} {want}");
        assert_eq!((correct, n), (1, 2));
        // Only the first row counts when the second is padding.
        let (loss, correct, n) = sums(&p, &t, 1, FloatLoss::default()).unwrap();
        assert!((loss + (0.75f64).ln()).abs() < 1e-6);
        assert_eq!((correct, n), (1, 1));
    }

    #[test]
    fn squared_error_by_hand() {
        let p = Tensor::from_shape(&[2, 1], &[1.0f32, 2.0]).unwrap();
        let t = Tensor::from_shape(&[2, 1], &[0.0f32, 4.0]).unwrap();
        assert_eq!(
            sums(&p, &t, 2, FloatLoss::SquaredError).unwrap(),
            (5.0, 0, 2)
        );
    }

    #[test]
    fn distillation_by_hand() {
        // One row, logits (0, ln 3) at T = 1: log p = (ln ¼, ln ¾); teacher (½, ½).
        let p = Tensor::from_shape(&[1, 2], &[0.0f32, 3f32.ln()]).unwrap();
        let q = Tensor::from_shape(&[1, 2], &[0.5f32, 0.5]).unwrap();
        let (loss, _, n) = sums(&p, &q, 1, FloatLoss::Distillation { temperature: 1.0 }).unwrap();
        let want = -0.5 * ((0.25f64).ln() + (0.75f64).ln());
        assert!((loss - want).abs() < 1e-6, "{loss} {want}");
        assert_eq!(n, 1);
        // At T = 2 the logits are halved and the loss scaled by T² = 4.
        let (loss, _, _) = sums(&p, &q, 1, FloatLoss::Distillation { temperature: 2.0 }).unwrap();
        let z = [0.0, (3f64).ln() / 2.0];
        let lse = (z[0].exp() + z[1].exp()).ln();
        let want = -4.0 * 0.5 * ((z[0] - lse) + (z[1] - lse));
        assert!((loss - want).abs() < 1e-6, "{loss} {want}");
    }

    #[test]
    fn mismatched_targets_are_errors() {
        let p = Tensor::from_shape(&[2, 3], &[0.0f32; 6]).unwrap();
        let t = Tensor::from_shape(&[3], &[0i64; 3]).unwrap();
        assert!(sums(&p, &t, 2, FloatLoss::default()).is_err());
    }
}
