//! Softmax and log-softmax.
//!
//! ```text
//! y = Softmax_A(x)      ∂x = y·(g − Σ_A g·y)
//! y = LogSoftmax_A(x)   ∂x = g − exp(y)·Σ_A g
//! ```
//! From opset 13, `A` is the one `axis` (default −1); before, the input is
//! flattened at `axis` (default 1), so `A` is every axis from it on.

use super::{Grads, Vjp, required, single};
use crate::autodiff::AutodiffError;
use crate::autodiff::emit::Emitter;
use crate::ir::attr;

fn axes(e: &Emitter, v: &Vjp<'_>, rank: usize) -> Result<Vec<usize>, AutodiffError> {
    if e.opset() >= 13 {
        Ok(vec![v.axis(attr::int(v.node, "axis", -1), rank)?])
    } else {
        Ok((v.axis(attr::int(v.node, "axis", 1), rank)?..rank).collect())
    }
}

/// `Softmax`.
///
/// # Errors
/// An axis out of range; no static type.
pub fn softmax(e: &mut Emitter, v: &Vjp<'_>, g: &[Option<String>]) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let y = &v.outputs[0];
    let rank = e.ty(required(v, 0)?)?.rank();
    let axes = axes(e, v, rank)?;
    let gy = e.mul(&g, y)?;
    let s = e.reduce_sum(&gy, &axes, true)?;
    let d = e.sub(&g, &s)?;
    Ok(vec![Some(e.mul(y, &d)?)])
}

/// `LogSoftmax`.
///
/// # Errors
/// An axis out of range; no static type.
pub fn log_softmax(
    e: &mut Emitter,
    v: &Vjp<'_>,
    g: &[Option<String>],
) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let y = &v.outputs[0];
    let rank = e.ty(required(v, 0)?)?.rank();
    let axes = axes(e, v, rank)?;
    let s = e.reduce_sum(&g, &axes, true)?;
    let p = e.unary("Exp", y)?;
    let ps = e.mul(&p, &s)?;
    Ok(vec![Some(e.sub(&g, &ps)?)])
}
