//! Layout: ops that move, copy or select elements without arithmetic.
//!
//! ```text
//! Reshape, Flatten, Squeeze, Unsqueeze   ∂x = reshape(g, shape(x))
//! Transpose_p                            ∂x = Transpose_{p⁻¹}(g)
//! Expand                                 ∂x = unbroadcast(g)
//! Concat_axis(x₁ … xₙ)                   ∂xᵢ = Slice(g, offsetᵢ, offsetᵢ + dimᵢ, axis)
//! Slice (steps 1)                        ∂x = Pad(g, start, dim − end)
//! ```

use super::{Grads, Vjp, required, single};
use crate::autodiff::AutodiffError;
use crate::autodiff::emit::{Emitter, to_i64};
use crate::ir::attr;

/// `Reshape`, `Flatten`, `Squeeze`, `Unsqueeze`: the gradient takes the
/// input's shape back; shape and axes inputs get none.
///
/// # Errors
/// No static type.
pub fn reshape(e: &mut Emitter, v: &Vjp<'_>, g: &[Option<String>]) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let dims = e.ty(required(v, 0)?)?.dims.clone();
    let mut out: Grads = vec![None; v.inputs.len()];
    out[0] = Some(e.reshape(&g, &dims)?);
    Ok(out)
}

/// `Transpose`.
///
/// # Errors
/// A `perm` that is not a permutation; no static type.
pub fn transpose(
    e: &mut Emitter,
    v: &Vjp<'_>,
    g: &[Option<String>],
) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let r = e.ty(required(v, 0)?)?.rank();
    let perm: Vec<usize> = match attr::ints(v.node, "perm") {
        None => (0..r).rev().collect(),
        Some(p) => p.iter().map(|&a| v.axis(a, r)).collect::<Result<_, _>>()?,
    };
    let mut inverse = vec![usize::MAX; r];
    for (i, &p) in perm.iter().enumerate() {
        if p >= r || inverse[p] != usize::MAX {
            return Err(v.unsupported("`perm` is not a permutation"));
        }
        inverse[p] = i;
    }
    if perm.len() != r {
        return Err(v.unsupported("`perm` is not a permutation"));
    }
    Ok(vec![Some(e.transpose(&g, &inverse)?)])
}

/// `Expand`.
///
/// # Errors
/// No static type.
pub fn expand(e: &mut Emitter, v: &Vjp<'_>, g: &[Option<String>]) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let to = e.ty(required(v, 0)?)?.clone();
    Ok(vec![Some(e.unbroadcast(&g, &to)?), None])
}

/// A `Slice` of `x` along `axes` from `starts` to `ends`, typed `dims`.
pub(crate) fn slice_of(
    e: &mut Emitter,
    x: &str,
    starts: &[i64],
    ends: &[i64],
    axes: &[i64],
    dims: &[i64],
) -> Result<String, AutodiffError> {
    let ty = e.ty(x)?.with_dims(dims);
    if e.opset() >= 10 {
        let (s, en, a) = (e.ints(starts), e.ints(ends), e.ints(axes));
        Ok(e.op("Slice", &[x, &s, &en, &a], Vec::new(), ty))
    } else {
        Ok(e.op(
            "Slice",
            &[x],
            vec![
                attr::make_ints("starts", starts),
                attr::make_ints("ends", ends),
                attr::make_ints("axes", axes),
            ],
            ty,
        ))
    }
}

/// `Concat`.
///
/// # Errors
/// No static type; an axis out of range.
pub fn concat(e: &mut Emitter, v: &Vjp<'_>, g: &[Option<String>]) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let tg = e.ty(&g)?.clone();
    let axis = v.axis(attr::int(v.node, "axis", 0), tg.rank())?;
    let mut offset = 0;
    let mut out = Vec::with_capacity(v.inputs.len());
    for i in 0..v.inputs.len() {
        let x = required(v, i)?;
        let tx = e.ty(x)?.clone();
        let len = tx.dims[axis];
        out.push(if v.need(i) {
            Some(slice_of(
                e,
                &g,
                &[offset],
                &[offset + len],
                &[to_i64(axis)],
                &tx.dims,
            )?)
        } else {
            None
        });
        offset += len;
    }
    Ok(out)
}

/// `Split`: the outputs' gradients concatenated back along the axis, with
/// zeros for the outputs the loss does not read.
///
/// # Errors
/// No static type of the input or of an output without a gradient.
pub fn split(e: &mut Emitter, v: &Vjp<'_>, g: &[Option<String>]) -> Result<Grads, AutodiffError> {
    let x = required(v, 0)?;
    let tx = e.ty(x)?.clone();
    let axis = v.axis(attr::int(v.node, "axis", 0), tx.rank())?;
    let mut parts = Vec::with_capacity(v.outputs.len());
    for (k, out) in v.outputs.iter().enumerate() {
        let part = if let Some(gk) = g.get(k).cloned().flatten() {
            gk
        } else {
            let ty = e.ty(out)?.clone();
            e.filled(&ty, 0.0)?
        };
        parts.push(part);
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let mut out: Grads = vec![None; v.inputs.len()];
    out[0] = Some(e.op(
        "Concat",
        &refs,
        vec![attr::make_int("axis", to_i64(axis))],
        tx,
    ));
    Ok(out)
}

/// `Slice` with steps of 1: the gradient padded with zeros back to the
/// input's shape.
///
/// # Errors
/// Non-constant starts, ends or axes; steps other than 1; no static type.
pub fn slice(e: &mut Emitter, v: &Vjp<'_>, g: &[Option<String>]) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let x = required(v, 0)?;
    let tx = e.ty(x)?.clone();
    let r = tx.rank();
    let (starts, ends, axes, steps) = if e.opset() >= 10 {
        (
            v.const_input(1)?.unwrap_or_default(),
            v.const_input(2)?.unwrap_or_default(),
            v.const_input(3)?,
            v.const_input(4)?,
        )
    } else {
        (
            attr::ints(v.node, "starts").unwrap_or_default(),
            attr::ints(v.node, "ends").unwrap_or_default(),
            attr::ints(v.node, "axes"),
            None,
        )
    };
    let axes = axes.unwrap_or_else(|| (0..to_i64(starts.len())).collect());
    if axes.len() != starts.len() || ends.len() != starts.len() {
        return Err(v.unsupported("starts, ends and axes of different lengths"));
    }
    if steps.as_ref().is_some_and(|s| s.iter().any(|&k| k != 1)) {
        return Err(v.unsupported("steps other than 1"));
    }
    let mut begin = vec![0i64; r];
    let mut end = vec![0i64; r];
    for ((&a, &s), &en) in axes.iter().zip(&starts).zip(&ends) {
        let a = v.axis(a, r)?;
        let d = tx.dims[a];
        let clamp = |p: i64| -> i64 {
            let p = if p < 0 { p.saturating_add(d) } else { p };
            p.clamp(0, d)
        };
        let (s, en) = (clamp(s), clamp(en));
        begin[a] = s;
        end[a] = d - en.max(s);
    }
    let pads: Vec<i64> = begin.iter().chain(&end).copied().collect();
    let mut out: Grads = vec![None; v.inputs.len()];
    out[0] = Some(if e.opset() >= 11 {
        let p = e.ints(&pads);
        e.op("Pad", &[&g, &p], Vec::new(), tx)
    } else {
        e.op("Pad", &[&g], vec![attr::make_ints("pads", &pads)], tx)
    });
    Ok(out)
}
