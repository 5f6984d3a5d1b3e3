//! Arithmetic: broadcasting binary ops and elementwise unary ones.
//!
//! ```text
//! y = a + b    ∂a = unbroadcast(g)            ∂b = unbroadcast(g)
//! y = a − b    ∂a = unbroadcast(g)            ∂b = unbroadcast(−g)
//! y = a · b    ∂a = unbroadcast(g·b)          ∂b = unbroadcast(g·a)
//! y = a / b    ∂a = unbroadcast(g / b)        ∂b = unbroadcast(−g·y / b)
//! y = aᵇ       ∂a = unbroadcast(g·b·aᵇ⁻¹)     ∂b = unbroadcast(g·y·ln a)
//! y = −x  ∂x = −g      y = √x  ∂x = g·½ / y      y = 1/x  ∂x = −g·y²
//! y = eˣ  ∂x = g·y     y = ln x  ∂x = g / x      Identity, Cast, Sum: g
//! y = Max(x₁ … xₙ), Min(x₁ … xₙ)
//!              ∂xᵢ = unbroadcast(Where(xᵢ = y and no xⱼ = y for j < i, g, 0))
//! ```

use super::{Grads, Vjp, required, single};
use crate::autodiff::AutodiffError;
use crate::autodiff::emit::{Emitter, elem};

/// `g` unbroadcast to input `i`'s type, if it needs a gradient.
fn to_input(
    e: &mut Emitter,
    v: &Vjp<'_>,
    i: usize,
    g: impl FnOnce(&mut Emitter) -> Result<String, AutodiffError>,
) -> Result<Option<String>, AutodiffError> {
    if !v.need(i) {
        return Ok(None);
    }
    let to = e.ty(required(v, i)?)?.clone();
    let g = g(e)?;
    Ok(Some(e.unbroadcast(&g, &to)?))
}

/// `Add`.
///
/// # Errors
/// A value without a static type.
pub fn add(e: &mut Emitter, v: &Vjp<'_>, g: &[Option<String>]) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    Ok(vec![
        to_input(e, v, 0, |_| Ok(g.clone()))?,
        to_input(e, v, 1, |_| Ok(g.clone()))?,
    ])
}

/// `Sub`.
///
/// # Errors
/// A value without a static type.
pub fn sub(e: &mut Emitter, v: &Vjp<'_>, g: &[Option<String>]) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    Ok(vec![
        to_input(e, v, 0, |_| Ok(g.clone()))?,
        to_input(e, v, 1, |e| e.unary("Neg", &g))?,
    ])
}

/// `Mul`.
///
/// # Errors
/// A value without a static type.
pub fn mul(e: &mut Emitter, v: &Vjp<'_>, g: &[Option<String>]) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let (a, b) = (required(v, 0)?, required(v, 1)?);
    Ok(vec![
        to_input(e, v, 0, |e| e.mul(&g, b))?,
        to_input(e, v, 1, |e| e.mul(&g, a))?,
    ])
}

/// `Div`.
///
/// # Errors
/// A value without a static type.
pub fn div(e: &mut Emitter, v: &Vjp<'_>, g: &[Option<String>]) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let b = required(v, 1)?;
    let y = &v.outputs[0];
    Ok(vec![
        to_input(e, v, 0, |e| e.div(&g, b))?,
        to_input(e, v, 1, |e| {
            let gy = e.mul(&g, y)?;
            let q = e.div(&gy, b)?;
            e.unary("Neg", &q)
        })?,
    ])
}

/// `Neg`.
///
/// # Errors
/// A value without a static type.
pub fn neg(e: &mut Emitter, v: &Vjp<'_>, g: &[Option<String>]) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    Ok(vec![Some(e.unary("Neg", &g)?)])
}

/// `Sqrt`.
///
/// # Errors
/// A value without a static type.
pub fn sqrt(e: &mut Emitter, v: &Vjp<'_>, g: &[Option<String>]) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let half = e.scale(&g, 0.5)?;
    Ok(vec![Some(e.div(&half, &v.outputs[0])?)])
}

/// `Reciprocal`.
///
/// # Errors
/// A value without a static type.
pub fn reciprocal(
    e: &mut Emitter,
    v: &Vjp<'_>,
    g: &[Option<String>],
) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let y = &v.outputs[0];
    let y2 = e.mul(y, y)?;
    let gy2 = e.mul(&g, &y2)?;
    Ok(vec![Some(e.unary("Neg", &gy2)?)])
}

/// `Exp`.
///
/// # Errors
/// A value without a static type.
pub fn exp(e: &mut Emitter, v: &Vjp<'_>, g: &[Option<String>]) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    Ok(vec![Some(e.mul(&g, &v.outputs[0])?)])
}

/// `Log`.
///
/// # Errors
/// A value without a static type.
pub fn log(e: &mut Emitter, v: &Vjp<'_>, g: &[Option<String>]) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    Ok(vec![Some(e.div(&g, required(v, 0)?)?)])
}

/// `Pow`: the exponent may have another element type (it is cast to the
/// base's); its gradient needs a positive base.
///
/// # Errors
/// A value without a static type.
pub fn pow(e: &mut Emitter, v: &Vjp<'_>, g: &[Option<String>]) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let (a, b) = (required(v, 0)?, required(v, 1)?);
    let base = e.ty(a)?.elem;
    let bf = e.cast(b, base)?;
    let y = v.outputs[0].clone();
    Ok(vec![
        to_input(e, v, 0, |e| {
            let one = e.scalar(base, 1.0);
            let bm1 = e.sub(&bf, &one)?;
            let p = e.binary("Pow", a, &bm1)?;
            let bp = e.mul(&bf, &p)?;
            e.mul(&g, &bp)
        })?,
        to_input(e, v, 1, |e| {
            let ln = e.unary("Log", a)?;
            let gy = e.mul(&g, &y)?;
            e.mul(&gy, &ln)
        })?,
    ])
}

/// `Identity`.
///
/// # Errors
/// Never in practice.
pub fn identity(
    _: &mut Emitter,
    v: &Vjp<'_>,
    g: &[Option<String>],
) -> Result<Grads, AutodiffError> {
    Ok(vec![Some(single(v, g)?)])
}

/// `Cast`: between float types the gradient is cast back; from an integer
/// type there is none.
///
/// # Errors
/// A value without a static type.
pub fn cast(e: &mut Emitter, v: &Vjp<'_>, g: &[Option<String>]) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let from = e.ty(required(v, 0)?)?.elem;
    if !elem::is_float(from) {
        return Ok(vec![None]);
    }
    Ok(vec![Some(e.cast(&g, from)?)])
}

/// `Sum` (variadic, broadcasting).
///
/// # Errors
/// A value without a static type.
pub fn sum(e: &mut Emitter, v: &Vjp<'_>, g: &[Option<String>]) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    (0..v.inputs.len())
        .map(|i| to_input(e, v, i, |_| Ok(g.clone())))
        .collect()
}

/// `Max` and `Min` (variadic, broadcasting): the gradient goes to the first
/// input that attains the result, as `PyTorch`'s `maximum` sends it to one.
///
/// # Errors
/// No static type.
pub fn extremum(
    e: &mut Emitter,
    v: &Vjp<'_>,
    g: &[Option<String>],
) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let y = v.outputs[0].clone();
    let ty = e.ty(&y)?.clone();
    let zero = e.scalar(ty.elem, 0.0);
    let mut taken: Option<String> = None;
    let mut out = Vec::with_capacity(v.inputs.len());
    for i in 0..v.inputs.len() {
        let x = required(v, i)?;
        // Equal(xᵢ, y) has y's shape: xᵢ broadcasts to it.
        let eq = e.equal(x, &y)?;
        let hit = super::first_hit(e, eq, &mut taken)?;
        out.push(if v.need(i) {
            let to = e.ty(x)?.clone();
            let w = e.op("Where", &[&hit, &g, &zero], Vec::new(), ty.clone());
            Some(e.unbroadcast(&w, &to)?)
        } else {
            None
        });
    }
    Ok(out)
}
