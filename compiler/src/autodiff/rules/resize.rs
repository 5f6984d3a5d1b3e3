//! Resampling: `Resize` in its `nearest` and `linear` modes.
//!
//! Both modes are separable: along each resized axis `a` of input size `I`
//! and output size `O`, an output position reads fixed input positions with
//! fixed weights, a matrix `Aₐ: [O, I]`, and `Y = X ×₁ A₁ ×₂ A₂ …` (the mode-`a`
//! product along every resized axis). So
//! ```text
//! ∂X = G ×₁ A₁ᵀ ×₂ A₂ᵀ …
//! ```
//! computed per axis as a `MatMul` with the constant `Aₐ` (the last axis:
//! `G·Aₐ`; the one before: `Aₐᵀ·G`; others between two `Transpose`s), or,
//! when `Aₐ` repeats each input position `f` times in a row (nearest
//! upsampling by an integer factor, as FPN and U-Net decoders do), as a
//! `Reshape` to `[…, I, f, …]` and a `ReduceSum` over `f`: O(|G|) work.
//!
//! `Aₐ` is built on the host from the ONNX definition, in float64: the
//! output coordinate `o` maps to the input coordinate `x` by the
//! `coordinate_transformation_mode` (`half_pixel`, `half_pixel_symmetric`,
//! `pytorch_half_pixel`, `align_corners`, `asymmetric`) with the scale of the
//! `scales` input, or `O / I` when `sizes` is given; `nearest` takes the
//! position `nearest_mode` rounds `x` to, `linear` weighs `⌊x⌋` and `⌊x⌋ + 1`
//! by `1 − (x − ⌊x⌋)` and `x − ⌊x⌋`; positions outside `[0, I)` are clamped
//! to the edge. The scales and sizes must be constants (they fix the shapes).
//! Refused with a clear error: `cubic` (tract has no kernel for it),
//! `tf_crop_and_resize`, `antialias`, `keep_aspect_ratio_policy` other than
//! `stretch`, opset 10's `Resize`.
//!
//! Cost: O(Σₐ O·I) host work for the matrices; per axis one `MatMul` of
//! O(|G|·I) or one `ReduceSum` of O(|G|).

// Exact float comparisons on purpose: a coordinate exactly halfway between
// two positions, and weights that are exactly 0 or 1.
#![allow(clippy::float_cmp)]

use super::{Grads, Vjp, required, single};
use crate::autodiff::AutodiffError;
use crate::autodiff::emit::{Emitter, to_usize};
use crate::ir::attr;

/// How output coordinates map to input coordinates along one axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Axis {
    /// Input size.
    pub input: i64,
    /// Output size.
    pub output: i64,
    /// The scale of the coordinate transform.
    pub scale: f64,
}

/// The input coordinate of output position `o` (ONNX's
/// `coordinate_transformation_mode`), or `None` for a mode not handled.
#[must_use]
#[allow(clippy::cast_precision_loss)] // sizes far below 2^52
pub fn coordinate(mode: &str, axis: Axis, o: i64) -> Option<f64> {
    let (i, out, s, o) = (axis.input as f64, axis.output as f64, axis.scale, o as f64);
    Some(match mode {
        "half_pixel" => (o + 0.5) / s - 0.5,
        "half_pixel_symmetric" => {
            let adjustment = out / (s * i);
            let center = i / 2.0;
            center * (1.0 - adjustment) + (o + 0.5) / s - 0.5
        }
        "pytorch_half_pixel" if axis.output > 1 => (o + 0.5) / s - 0.5,
        "pytorch_half_pixel" => 0.0,
        "align_corners" if axis.output == 1 => 0.0,
        "align_corners" => o * (i - 1.0) / (out - 1.0),
        "asymmetric" => o / s,
        _ => return None,
    })
}

/// The input position `nearest_mode` rounds `x` to.
#[must_use]
#[allow(clippy::cast_possible_truncation)] // coordinates far below 2^63
pub fn nearest(mode: &str, x: f64) -> Option<i64> {
    let r = match mode {
        "round_prefer_floor" if x.fract().abs() == 0.5 => x.floor(),
        "round_prefer_ceil" if x.fract().abs() == 0.5 => x.ceil(),
        "round_prefer_floor" | "round_prefer_ceil" => x.round(),
        "floor" => x.floor(),
        "ceil" => x.ceil(),
        _ => return None,
    };
    Some(r as i64)
}

/// The matrix `A: [O, I]` (row-major) of one axis.
///
/// # Errors
/// A mode not handled, as a reason.
#[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
pub fn matrix(
    mode: &str,
    transform: &str,
    nearest_mode: &str,
    axis: Axis,
) -> Result<Vec<f64>, String> {
    let (o_n, i_n) = (to_usize(axis.output), to_usize(axis.input));
    let mut a = vec![0.0; o_n * i_n];
    let clamp = |p: i64| to_usize(p.clamp(0, axis.input - 1));
    for o in 0..axis.output {
        let x = coordinate(transform, axis, o)
            .ok_or_else(|| format!("coordinate_transformation_mode = \"{transform}\""))?;
        let row = &mut a[to_usize(o) * i_n..(to_usize(o) + 1) * i_n];
        match mode {
            "nearest" => {
                let p = nearest(nearest_mode, x)
                    .ok_or_else(|| format!("nearest_mode = \"{nearest_mode}\""))?;
                row[clamp(p)] += 1.0;
            }
            "linear" => {
                let f = x.floor();
                let t = x - f;
                let p = f as i64;
                row[clamp(p)] += 1.0 - t;
                row[clamp(p + 1)] += t;
            }
            other => return Err(format!("mode = \"{other}\"")),
        }
    }
    Ok(a)
}

/// The factor `f` when `a` (`[O, I]`) maps output `o` to input `o / f` alone
/// with weight 1 (`O = f·I`).
#[must_use]
pub fn repeat_factor(a: &[f64], axis: Axis) -> Option<i64> {
    if axis.input == 0 || axis.output % axis.input != 0 {
        return None;
    }
    let f = axis.output / axis.input;
    let i_n = to_usize(axis.input);
    let blocky = (0..to_usize(axis.output)).all(|o| {
        let row = &a[o * i_n..(o + 1) * i_n];
        let want = o / to_usize(f);
        row.iter()
            .enumerate()
            .all(|(i, &w)| w == if i == want { 1.0 } else { 0.0 })
    });
    blocky.then_some(f)
}

/// `Resize`.
///
/// # Errors
/// A value without a static type; scales or sizes that are not constants;
/// a mode not handled (module docs).
#[allow(clippy::too_many_lines)] // attributes, axes, then one product per axis
pub fn resize(e: &mut Emitter, v: &Vjp<'_>, g: &[Option<String>]) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let x = required(v, 0)?;
    if !v.need(0) {
        return Ok(vec![None; v.inputs.len()]);
    }
    if e.opset() < 11 {
        return Err(
            v.unsupported("opset 10's Resize (its coordinates are not defined by the spec)")
        );
    }
    let (tx, tg) = (e.ty(x)?.clone(), e.ty(&g)?.clone());
    if tx.rank() != tg.rank() {
        return Err(v.unsupported("input and output ranks differ"));
    }
    let mode = attr::string(v.node, "mode").unwrap_or_else(|| "nearest".into());
    let transform = attr::string(v.node, "coordinate_transformation_mode")
        .unwrap_or_else(|| "half_pixel".into());
    let nearest_mode =
        attr::string(v.node, "nearest_mode").unwrap_or_else(|| "round_prefer_floor".into());
    if attr::int(v.node, "antialias", 0) != 0 {
        return Err(v.unsupported("antialias = 1"));
    }
    if attr::string(v.node, "keep_aspect_ratio_policy").is_some_and(|k| k != "stretch") {
        // `not_larger`/`not_smaller` share one scale across the axes.
        return Err(v.unsupported("keep_aspect_ratio_policy other than \"stretch\""));
    }
    if transform == "tf_crop_and_resize" {
        return Err(v.unsupported("coordinate_transformation_mode = \"tf_crop_and_resize\""));
    }
    let rank = tx.rank();
    // The axes `scales` and `sizes` speak of (opset 18's `axes`).
    let axes: Vec<usize> = match attr::ints(v.node, "axes") {
        None => (0..rank).collect(),
        Some(list) => list
            .iter()
            .map(|&a| v.axis(a, rank))
            .collect::<Result<_, _>>()?,
    };
    let scales = v.float_input(2)?.filter(|s| !s.is_empty());
    if let Some(s) = &scales
        && s.len() != axes.len()
    {
        return Err(v.unsupported(&format!("{} scales for {} axes", s.len(), axes.len())));
    }
    let mut grad = g.clone();
    let mut dims = tg.dims.clone();
    // The last axes first, so that the two trailing ones need no Transpose
    // while the others still have their output sizes.
    for a in (0..rank).rev() {
        let (input, output) = (tx.dims[a], tg.dims[a]);
        #[allow(clippy::cast_precision_loss)] // sizes far below 2^52
        let scale = match (&scales, axes.iter().position(|&b| b == a)) {
            (Some(s), Some(k)) => s[k],
            _ => output as f64 / input as f64,
        };
        let line = Axis {
            input,
            output,
            scale,
        };
        if input <= 0 || output <= 0 {
            return Err(v.unsupported("an empty axis"));
        }
        let m = matrix(&mode, &transform, &nearest_mode, line).map_err(|r| v.unsupported(&r))?;
        let identity = input == output
            && (0..to_usize(input)).all(|o| {
                (0..to_usize(input))
                    .all(|i| m[o * to_usize(input) + i] == if i == o { 1.0 } else { 0.0 })
            });
        if identity {
            continue;
        }
        let mut to = dims.clone();
        to[a] = input;
        grad = if let Some(f) = repeat_factor(&m, line) {
            // [… I·f …] → [… I, f …] → Σ over f.
            let mut split = dims[..a].to_vec();
            split.extend([input, f]);
            split.extend_from_slice(&dims[a + 1..]);
            let r = e.reshape(&grad, &split)?;
            e.reduce_sum(&r, &[a + 1], false)?
        } else if a + 1 == rank {
            // G·A, A: [O, I].
            let am = e.float_const(tg.elem, &[output, input], &m);
            e.op("MatMul", &[&grad, &am], Vec::new(), tg.with_dims(&to))
        } else if a + 2 == rank {
            // Aᵀ·G, Aᵀ: [I, O].
            let at = transposed(&m, line);
            let am = e.float_const(tg.elem, &[input, output], &at);
            e.op("MatMul", &[&am, &grad], Vec::new(), tg.with_dims(&to))
        } else {
            let mut perm: Vec<usize> = (0..rank).filter(|&b| b != a).collect();
            perm.push(a);
            let moved = e.transpose(&grad, &perm)?;
            let am = e.float_const(tg.elem, &[output, input], &m);
            let mut mdims: Vec<i64> = perm.iter().map(|&b| dims[b]).collect();
            if let Some(last) = mdims.last_mut() {
                *last = input;
            }
            let prod = e.op("MatMul", &[&moved, &am], Vec::new(), tg.with_dims(&mdims));
            let mut back = vec![0; rank];
            for (k, &b) in perm.iter().enumerate() {
                back[b] = k;
            }
            e.transpose(&prod, &back)?
        };
        dims = to;
    }
    if dims != tx.dims {
        return Err(AutodiffError::Internal {
            message: format!(
                "{}: the gradient has dims {dims:?}, the input {:?}",
                v.display, tx.dims
            ),
        });
    }
    let mut grads = vec![None; v.inputs.len()];
    grads[0] = Some(grad);
    Ok(grads)
}

/// `A` (`[O, I]`, row-major) transposed to `[I, O]`.
fn transposed(a: &[f64], axis: Axis) -> Vec<f64> {
    let (o_n, i_n) = (to_usize(axis.output), to_usize(axis.input));
    let mut t = vec![0.0; o_n * i_n];
    for o in 0..o_n {
        for i in 0..i_n {
            t[i * o_n + o] = a[o * i_n + i];
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn axis(input: i64, output: i64, scale: f64) -> Axis {
        Axis {
            input,
            output,
            scale,
        }
    }

    #[test]
    fn nearest_asymmetric_floor_doubling_repeats_each_position_twice() {
        let ax = axis(3, 6, 2.0);
        let a = matrix("nearest", "asymmetric", "floor", ax).unwrap();
        assert_eq!(repeat_factor(&a, ax), Some(2));
    }

    #[test]
    fn nearest_asymmetric_with_rounding_up_is_no_repetition() {
        // o/2 = 0, .5, 1, 1.5, 2, 2.5 → round_prefer_ceil: 0, 1, 1, 2, 2, 3 → clamped to 2.
        let ax = axis(3, 6, 2.0);
        let a = matrix("nearest", "asymmetric", "round_prefer_ceil", ax).unwrap();
        assert_eq!(repeat_factor(&a, ax), None);
        let picked: Vec<usize> = a
            .chunks(3)
            .map(|r| r.iter().position(|&w| w == 1.0).unwrap())
            .collect();
        assert_eq!(picked, [0, 1, 1, 2, 2, 2]);
    }

    #[test]
    fn linear_half_pixel_weights_sum_to_one_and_clamp_at_the_edges() {
        // Doubling 2 → 4: x = (o + .5)/2 − .5 = −.25, .25, .75, 1.25.
        let a = matrix("linear", "half_pixel", "floor", axis(2, 4, 2.0)).unwrap();
        let want = [1.0, 0.0, 0.75, 0.25, 0.25, 0.75, 0.0, 1.0];
        for (got, want) in a.iter().zip(want) {
            assert!((got - want).abs() < 1e-12, "{a:?}");
        }
    }

    #[test]
    fn align_corners_maps_the_ends_onto_the_ends() {
        let a = matrix("linear", "align_corners", "floor", axis(3, 5, 5.0 / 3.0)).unwrap();
        assert_eq!(&a[..3], &[1.0, 0.0, 0.0]);
        assert_eq!(&a[12..], &[0.0, 0.0, 1.0]);
        assert!(
            (a[3 * 2 + 1] - 1.0).abs() < 1e-12,
            "the middle reads the middle"
        );
    }

    #[test]
    fn modes_not_handled_are_named() {
        assert_eq!(
            matrix("cubic", "half_pixel", "floor", axis(2, 4, 2.0)).unwrap_err(),
            "mode = \"cubic\""
        );
        assert!(matrix("linear", "tf_crop_and_resize", "floor", axis(2, 4, 2.0)).is_err());
    }
}
