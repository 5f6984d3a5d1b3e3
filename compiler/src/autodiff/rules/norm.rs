//! Normalisation: inference-mode `BatchNormalization` and
//! `LayerNormalization` (statistics recomputed in the backward graph).
//!
//! ```text
//! BatchNormalization (inference)   ∂x = g · scale / √(var + ε)   (per channel, axis 1)
//! LayerNormalization over axes A = [axis, rank):
//!   x̂ = (x − μ)·r,  r = 1/√(var + ε),  gh = g·γ
//!   ∂x = r·(gh − mean_A(gh) − x̂·mean_A(gh·x̂))
//!   ∂γ = unbroadcast(g·x̂)            ∂β = unbroadcast(g)
//! ```
//! A batch norm whose scale, bias or statistics train is lowered to
//! elementwise ops before differentiation (tract needs a batch norm's
//! parameters constant), so its rule differentiates `x` only.

use super::{Grads, Vjp, required, single};
use crate::autodiff::AutodiffError;
use crate::autodiff::emit::Emitter;
use crate::ir::attr;

/// `BatchNormalization` in inference mode.
///
/// # Errors
/// Training mode; a trainable parameter (lowering missed it); no static type.
pub fn batch_norm(
    e: &mut Emitter,
    v: &Vjp<'_>,
    g: &[Option<String>],
) -> Result<Grads, AutodiffError> {
    if attr::int(v.node, "training_mode", 0) != 0 || v.outputs.iter().skip(1).any(|o| !o.is_empty())
    {
        return Err(v.unsupported("training mode (running statistics as outputs)"));
    }
    if (1..5).any(|i| v.need(i)) {
        return Err(AutodiffError::Internal {
            message: format!("{}: a trainable batch norm was not lowered", v.display),
        });
    }
    let g = single(v, g)?;
    let x = required(v, 0)?;
    let (scale, var) = (required(v, 1)?, required(v, 4)?);
    let tx = e.ty(x)?.clone();
    if tx.rank() < 2 {
        return Err(v.unsupported("an input of rank < 2"));
    }
    let eps = f64::from(attr::float(v.node, "epsilon", 1e-5));
    let scale = e.cast(scale, tx.elem)?;
    let var = e.cast(var, tx.elem)?;
    let eps = e.scalar(tx.elem, eps);
    let ve = e.add(&var, &eps)?;
    let sd = e.unary("Sqrt", &ve)?;
    let k = e.div(&scale, &sd)?;
    let mut dims = vec![tx.dims[1]];
    dims.resize(tx.rank() - 1, 1);
    let k = e.reshape(&k, &dims)?;
    let mut out = vec![Some(e.mul(&g, &k)?)];
    out.resize(v.inputs.len(), None);
    Ok(out)
}

/// `LayerNormalization` (opset 17).
///
/// # Errors
/// Its mean or inverse-deviation outputs are used; no static type.
pub fn layer_norm(
    e: &mut Emitter,
    v: &Vjp<'_>,
    g: &[Option<String>],
) -> Result<Grads, AutodiffError> {
    if g.iter().skip(1).any(Option::is_some) {
        return Err(v.unsupported("a gradient through its Mean or InvStdDev output"));
    }
    let g = single(v, g)?;
    let (x, gamma) = (required(v, 0)?, required(v, 1)?);
    let tx = e.ty(x)?.clone();
    let first = v.axis(attr::int(v.node, "axis", -1), tx.rank())?;
    let axes: Vec<usize> = (first..tx.rank()).collect();
    let eps = f64::from(attr::float(v.node, "epsilon", 1e-5));
    let mu = e.reduce_mean(x, &axes, true)?;
    let d = e.sub(x, &mu)?;
    let d2 = e.mul(&d, &d)?;
    let var = e.reduce_mean(&d2, &axes, true)?;
    let eps = e.scalar(tx.elem, eps);
    let ve = e.add(&var, &eps)?;
    let sd = e.unary("Sqrt", &ve)?;
    let r = e.unary("Reciprocal", &sd)?;
    let xh = e.mul(&d, &r)?;
    let gx = if v.need(0) {
        let gh = e.mul(&g, gamma)?;
        let m1 = e.reduce_mean(&gh, &axes, true)?;
        let ghx = e.mul(&gh, &xh)?;
        let m2 = e.reduce_mean(&ghx, &axes, true)?;
        let xm2 = e.mul(&xh, &m2)?;
        let a = e.sub(&gh, &m1)?;
        let b = e.sub(&a, &xm2)?;
        Some(e.mul(&r, &b)?)
    } else {
        None
    };
    let gg = if v.need(1) {
        let to = e.ty(gamma)?.clone();
        let p = e.mul(&g, &xh)?;
        Some(e.unbroadcast(&p, &to)?)
    } else {
        None
    };
    let gb = match v.input(2) {
        Some(b) if v.need(2) => {
            let to = e.ty(b)?.clone();
            Some(e.unbroadcast(&g, &to)?)
        }
        _ => None,
    };
    Ok(vec![gx, gg, gb])
}
