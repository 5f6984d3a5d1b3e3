//! [`compare`]: element-wise comparison of two tensors with numpy `allclose` semantics.

use serde::{Deserialize, Serialize};
use tract_onnx::prelude::Tensor;

use crate::values::as_f64;

/// Result of [`compare`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Largest `|actual - expected|`.
    pub max_abs: f64,
    /// Largest `|actual - expected| / |expected|` over the elements with
    /// `|expected| > 0`.
    pub max_rel: f64,
    /// Largest finite `|expected|`: the output's scale, against which
    /// `max_abs` is read (0 when there is none).
    pub scale: f64,
    /// Number of elements that are not close.
    pub mismatches: usize,
    /// The shapes differ (no element-wise comparison was made).
    pub shape_mismatch: bool,
    /// The element types differ (values are still compared as `f64`).
    pub dtype_mismatch: bool,
}

impl Comparison {
    /// True when the shapes agree and every element is close. A dtype mismatch alone
    /// does not make tensors different (check [`Comparison::dtype_mismatch`] for that).
    #[must_use]
    pub fn is_close(&self) -> bool {
        !self.shape_mismatch && self.mismatches == 0
    }
}

/// Compares `actual` with `expected`, element-wise, as numpy's `allclose`:
/// an element is close when `|a - b| <= atol + rtol * |b|` (`b` from `expected`).
///
/// * Values are compared as `f64`; integers and booleans (as 0/1) therefore compare
///   exactly unless a tolerance is given.
/// * NaN equals NaN; equal infinities are equal (difference 0). A NaN against a
///   number, or an infinity against anything else, is a mismatch whose difference
///   counts as `+inf` in `max_abs` and `max_rel`.
/// * `max_rel` is the largest `|a - b| / |b|` over the elements with `|b| > 0`
///   (0 if there is none).
/// * No broadcasting: if the shapes differ, `shape_mismatch` is set, `mismatches` is
///   the larger element count and `max_abs` and `max_rel` are `+inf`.
/// * Non-numeric element types (strings) compare equal only when the tensors are
///   equal; otherwise every element is a mismatch.
#[must_use]
#[allow(clippy::float_cmp)] // exact equality (equal infinities, integers) is intended
pub fn compare(actual: &Tensor, expected: &Tensor, rtol: f64, atol: f64) -> Comparison {
    let dtype_mismatch = actual.datum_type() != expected.datum_type();
    if actual.shape() != expected.shape() {
        return Comparison {
            max_abs: f64::INFINITY,
            max_rel: f64::INFINITY,
            scale: 0.0,
            mismatches: actual.len().max(expected.len()),
            shape_mismatch: true,
            dtype_mismatch,
        };
    }
    let (Some(a), Some(b)) = (as_f64(actual), as_f64(expected)) else {
        let equal = actual == expected;
        let inf = if equal { 0.0 } else { f64::INFINITY };
        return Comparison {
            max_abs: inf,
            max_rel: inf,
            scale: 0.0,
            mismatches: if equal { 0 } else { expected.len() },
            shape_mismatch: false,
            dtype_mismatch,
        };
    };
    let mut c = Comparison {
        max_abs: 0.0,
        max_rel: 0.0,
        scale: b
            .iter()
            .filter(|v| v.is_finite())
            .fold(0.0f64, |m, v| m.max(v.abs())),
        mismatches: 0,
        shape_mismatch: false,
        dtype_mismatch,
    };
    for (&x, &y) in a.iter().zip(&b) {
        let both_nan = x.is_nan() && y.is_nan();
        if both_nan || x == y {
            continue;
        }
        let diff = (x - y).abs();
        if diff.is_nan() || diff.is_infinite() {
            c.mismatches += 1;
            c.max_abs = f64::INFINITY;
            c.max_rel = f64::INFINITY;
            continue;
        }
        c.max_abs = c.max_abs.max(diff);
        if y != 0.0 {
            c.max_rel = c.max_rel.max(diff / y.abs());
        }
        if diff > atol + rtol * y.abs() {
            c.mismatches += 1;
        }
    }
    c
}
