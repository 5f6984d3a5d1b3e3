//! Reductions.
//!
//! ```text
//! y = ReduceSum_A(x)    ∂x = Expand(reshape(g, keepdims shape), shape(x))
//! y = ReduceMean_A(x)   ∂x = the same / Π_{a∈A} dim(x, a)
//! GlobalAveragePool     ∂x = Expand(g, shape(x)) / Π spatial dims
//! ReduceMax, ReduceMin, GlobalMaxPool
//!                       ∂x = m·g′ / Σ_A m,  m = (x = y′), g′ and y′ with keepdims
//!                       (ties share the gradient evenly, as PyTorch's amax)
//! ```
//! The axes come from the attribute (before opset 13 for `ReduceSum`, 18 for
//! `ReduceMean`) or the constant `axes` input; none means every axis, unless
//! `noop_with_empty_axes`.

use super::{Grads, Vjp, required, single};
use crate::autodiff::AutodiffError;
use crate::autodiff::emit::{Emitter, to_f64, to_i64};
use crate::ir::attr;

/// The reduced axes of a reduce node over an input of `rank`, or `None`
/// when the node reduces nothing.
fn reduced_axes(v: &Vjp<'_>, rank: usize) -> Result<Option<Vec<usize>>, AutodiffError> {
    let axes = match attr::ints(v.node, "axes") {
        Some(a) => Some(a),
        None => v.const_input(1)?,
    };
    let axes = match axes {
        Some(a) if !a.is_empty() => a,
        _ if attr::int(v.node, "noop_with_empty_axes", 0) != 0 => return Ok(None),
        _ => (0..to_i64(rank)).collect(),
    };
    let mut out = axes
        .iter()
        .map(|&a| v.axis(a, rank))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_unstable();
    out.dedup();
    Ok(Some(out))
}

/// The gradient of a sum over `axes` of `x`, times `factor`.
fn spread(
    e: &mut Emitter,
    x: &str,
    g: &str,
    axes: &[usize],
    factor: f64,
) -> Result<String, AutodiffError> {
    let tx = e.ty(x)?.clone();
    let kept: Vec<i64> = tx
        .dims
        .iter()
        .enumerate()
        .map(|(i, &d)| if axes.contains(&i) { 1 } else { d })
        .collect();
    let r = e.reshape(g, &kept)?;
    let s = e.scale(&r, factor)?;
    if kept == tx.dims {
        return Ok(s);
    }
    let shape = e.ints(&tx.dims);
    Ok(e.op("Expand", &[&s, &shape], Vec::new(), tx))
}

fn reduce(
    e: &mut Emitter,
    v: &Vjp<'_>,
    g: &[Option<String>],
    mean: bool,
) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let x = required(v, 0)?;
    let tx = e.ty(x)?.clone();
    let mut out: Grads = vec![None; v.inputs.len()];
    let Some(axes) = reduced_axes(v, tx.rank())? else {
        out[0] = Some(g);
        return Ok(out);
    };
    let count: i64 = axes.iter().map(|&a| tx.dims[a]).product();
    let factor = if mean {
        1.0 / to_f64(count.max(1))
    } else {
        1.0
    };
    out[0] = Some(spread(e, x, &g, &axes, factor)?);
    Ok(out)
}

/// `ReduceMean`.
///
/// # Errors
/// Non-constant axes; no static type.
pub fn reduce_mean(
    e: &mut Emitter,
    v: &Vjp<'_>,
    g: &[Option<String>],
) -> Result<Grads, AutodiffError> {
    reduce(e, v, g, true)
}

/// `ReduceSum`.
///
/// # Errors
/// Non-constant axes; no static type.
pub fn reduce_sum(
    e: &mut Emitter,
    v: &Vjp<'_>,
    g: &[Option<String>],
) -> Result<Grads, AutodiffError> {
    reduce(e, v, g, false)
}

/// `GlobalAveragePool`.
///
/// # Errors
/// No static type.
pub fn global_average_pool(
    e: &mut Emitter,
    v: &Vjp<'_>,
    g: &[Option<String>],
) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let x = required(v, 0)?;
    let tx = e.ty(x)?.clone();
    let axes: Vec<usize> = (2..tx.rank()).collect();
    let count: i64 = tx.dims[2..].iter().product();
    Ok(vec![Some(spread(
        e,
        x,
        &g,
        &axes,
        1.0 / to_f64(count.max(1)),
    )?)])
}

/// The gradient of a max or min over `axes` of `x`: shared evenly by the
/// elements that attain it.
fn extremum(
    e: &mut Emitter,
    x: &str,
    y: &str,
    g: &str,
    axes: &[usize],
) -> Result<String, AutodiffError> {
    let tx = e.ty(x)?.clone();
    let kept: Vec<i64> = tx
        .dims
        .iter()
        .enumerate()
        .map(|(i, &d)| if axes.contains(&i) { 1 } else { d })
        .collect();
    let yk = e.reshape(y, &kept)?;
    let gk = e.reshape(g, &kept)?;
    let eq = e.equal(x, &yk)?;
    let m = e.cast(&eq, tx.elem)?;
    let count = e.reduce_sum(&m, axes, true)?;
    let share = e.div(&gk, &count)?;
    e.mul(&m, &share)
}

fn reduce_extremum(
    e: &mut Emitter,
    v: &Vjp<'_>,
    g: &[Option<String>],
) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let x = required(v, 0)?;
    let rank = e.ty(x)?.rank();
    let mut out: Grads = vec![None; v.inputs.len()];
    let Some(axes) = reduced_axes(v, rank)? else {
        out[0] = Some(g);
        return Ok(out);
    };
    out[0] = Some(extremum(e, x, &v.outputs[0], &g, &axes)?);
    Ok(out)
}

/// `ReduceMax` and `ReduceMin`.
///
/// # Errors
/// Non-constant axes; no static type.
pub fn reduce_max(
    e: &mut Emitter,
    v: &Vjp<'_>,
    g: &[Option<String>],
) -> Result<Grads, AutodiffError> {
    reduce_extremum(e, v, g)
}

/// `GlobalMaxPool`.
///
/// # Errors
/// No static type.
pub fn global_max_pool(
    e: &mut Emitter,
    v: &Vjp<'_>,
    g: &[Option<String>],
) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let x = required(v, 0)?;
    let rank = e.ty(x)?.rank();
    let axes: Vec<usize> = (2..rank).collect();
    Ok(vec![Some(extremum(e, x, &v.outputs[0], &g, &axes)?)])
}
