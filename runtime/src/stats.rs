//! [`summarize`]: shape, element type and basic statistics of a tensor.

use serde::{Deserialize, Serialize};
use tract_onnx::prelude::Tensor;

use crate::datum::datum_name;
use crate::values::as_f64;

/// Statistics of a tensor, see [`summarize`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The shape.
    pub shape: Vec<usize>,
    /// The element type name (`f32`, `i64`, `bool`, ... see [`crate::DatumKind::as_str`]).
    pub dtype: String,
    /// Smallest non-NaN element.
    pub min: f64,
    /// Largest non-NaN element.
    pub max: f64,
    /// Mean of the non-NaN elements.
    pub mean: f64,
    /// Population standard deviation of the non-NaN elements.
    pub std: f64,
    /// Number of NaN elements.
    pub nan_count: usize,
}

impl std::fmt::Display for Summary {
    /// `f32[1, 10]\tmin=… max=… mean=… std=…`, with ` nan=N` when some are NaN,
    /// as `laurelc run` prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{:?}\tmin={:.6} max={:.6} mean={:.6} std={:.6}",
            self.dtype, self.shape, self.min, self.max, self.mean, self.std
        )?;
        if self.nan_count > 0 {
            write!(f, " nan={}", self.nan_count)?;
        }
        Ok(())
    }
}

/// Summarizes a tensor. Statistics are computed in `f64` over the non-NaN elements
/// (booleans count as 0/1); they are NaN when there is no such element (empty or
/// all-NaN tensors) and for non-numeric element types. Infinities take part as they
/// are (so `mean` may be infinite or NaN).
#[must_use]
pub fn summarize(t: &Tensor) -> Summary {
    let mut s = Summary {
        shape: t.shape().to_vec(),
        dtype: datum_name(t.datum_type()),
        min: f64::NAN,
        max: f64::NAN,
        mean: f64::NAN,
        std: f64::NAN,
        nan_count: 0,
    };
    let Some(values) = as_f64(t) else {
        return s;
    };
    let mut count = 0usize;
    let mut sum = 0.0f64;
    let mut min = f64::INFINITY;
    let mut max = f64::NEG_INFINITY;
    for &v in &values {
        if v.is_nan() {
            s.nan_count += 1;
            continue;
        }
        count += 1;
        sum += v;
        min = min.min(v);
        max = max.max(v);
    }
    if count == 0 {
        return s;
    }
    #[allow(clippy::cast_precision_loss)]
    let n = count as f64;
    let mean = sum / n;
    let var = values
        .iter()
        .filter(|v| !v.is_nan())
        .map(|v| (v - mean) * (v - mean))
        .sum::<f64>()
        / n;
    s.min = min;
    s.max = max;
    s.mean = mean;
    s.std = var.sqrt();
    s
}
