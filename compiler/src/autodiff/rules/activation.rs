//! Activations: elementwise, with masks where they are piecewise.
//!
//! ```text
//! Relu       ∂x = Where(x > 0, g, 0)          (relu′(0) = 0, as PyTorch)
//! LeakyRelu  ∂x = Where(x > 0, g, α·g)
//! Sigmoid    ∂x = g·y·(1 − y)
//! Tanh       ∂x = g·(1 − y²)
//! Erf        ∂x = g·(2/√π)·exp(−x²)
//! Gelu       ∂x = g·(Φ(x) + x·φ(x))            approximate = "none"
//!            ∂x = g·½·(1 + t + x·(1 − t²)·√(2/π)·(1 + 3c·x²)),
//!                 t = tanh(√(2/π)·(x + c·x³)), c = 0.044715   "tanh"
//! Clip       ∂x = Where(min ≤ x ≤ max, g, 0)
//! HardSigmoid  ∂x = Where(0 < αx + β < 1, α·g, 0)
//! HardSwish    ∂x = g·(h + x·Where(0 < x/6 + ½ < 1, 1/6, 0)),  h = HardSigmoid(x; 1/6, ½)
//! ```

use std::f64::consts::{FRAC_2_SQRT_PI, PI, SQRT_2};

use super::{Grads, Vjp, required, single};
use crate::autodiff::AutodiffError;
use crate::autodiff::emit::{Emitter, Ty};
use crate::ir::attr;

/// `Where(mask, a, b)` of type `ty`.
fn select(e: &mut Emitter, mask: &str, a: &str, b: &str, ty: Ty) -> String {
    e.op("Where", &[mask, a, b], Vec::new(), ty)
}

/// `Relu`.
///
/// # Errors
/// A value without a static type.
pub fn relu(e: &mut Emitter, v: &Vjp<'_>, g: &[Option<String>]) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let x = required(v, 0)?;
    let t = e.ty(x)?.clone();
    let zero = e.scalar(t.elem, 0.0);
    let pos = e.binary("Greater", x, &zero)?;
    Ok(vec![Some(select(e, &pos, &g, &zero, t))])
}

/// `LeakyRelu`.
///
/// # Errors
/// A value without a static type.
pub fn leaky_relu(
    e: &mut Emitter,
    v: &Vjp<'_>,
    g: &[Option<String>],
) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let x = required(v, 0)?;
    let t = e.ty(x)?.clone();
    let alpha = f64::from(attr::float(v.node, "alpha", 0.01));
    let zero = e.scalar(t.elem, 0.0);
    let pos = e.binary("Greater", x, &zero)?;
    let neg = e.scale(&g, alpha)?;
    Ok(vec![Some(select(e, &pos, &g, &neg, t))])
}

/// `Sigmoid`.
///
/// # Errors
/// A value without a static type.
pub fn sigmoid(e: &mut Emitter, v: &Vjp<'_>, g: &[Option<String>]) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let y = &v.outputs[0];
    let one = e.scalar(e.ty(y)?.elem, 1.0);
    let omy = e.sub(&one, y)?;
    let d = e.mul(y, &omy)?;
    Ok(vec![Some(e.mul(&g, &d)?)])
}

/// `Tanh`.
///
/// # Errors
/// A value without a static type.
pub fn tanh(e: &mut Emitter, v: &Vjp<'_>, g: &[Option<String>]) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let y = &v.outputs[0];
    let one = e.scalar(e.ty(y)?.elem, 1.0);
    let y2 = e.mul(y, y)?;
    let d = e.sub(&one, &y2)?;
    Ok(vec![Some(e.mul(&g, &d)?)])
}

/// `Erf`.
///
/// # Errors
/// A value without a static type.
pub fn erf(e: &mut Emitter, v: &Vjp<'_>, g: &[Option<String>]) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let x = required(v, 0)?;
    let x2 = e.mul(x, x)?;
    let m = e.scale(&x2, -1.0)?;
    let ex = e.unary("Exp", &m)?;
    let d = e.scale(&ex, FRAC_2_SQRT_PI)?;
    Ok(vec![Some(e.mul(&g, &d)?)])
}

/// `Gelu` (opset 20), exact or with the tanh approximation.
///
/// # Errors
/// A value without a static type; an unknown `approximate`.
pub fn gelu(e: &mut Emitter, v: &Vjp<'_>, g: &[Option<String>]) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let x = required(v, 0)?;
    let el = e.ty(x)?.elem;
    let one = e.scalar(el, 1.0);
    let d = match attr::string(v.node, "approximate").as_deref() {
        None | Some("none") => {
            // Φ(x) = ½(1 + erf(x/√2)), φ(x) = exp(−x²/2)/√(2π)
            let xs = e.scale(x, 1.0 / SQRT_2)?;
            let erf = e.unary("Erf", &xs)?;
            let cdf1 = e.add(&one, &erf)?;
            let cdf = e.scale(&cdf1, 0.5)?;
            let x2 = e.mul(x, x)?;
            let m = e.scale(&x2, -0.5)?;
            let ex = e.unary("Exp", &m)?;
            let pdf = e.scale(&ex, 1.0 / (2.0 * PI).sqrt())?;
            let xpdf = e.mul(x, &pdf)?;
            e.add(&cdf, &xpdf)?
        }
        Some("tanh") => {
            const C: f64 = 0.044_715;
            let k = (2.0 / PI).sqrt();
            let x2 = e.mul(x, x)?;
            let x3 = e.mul(&x2, x)?;
            let cx3 = e.scale(&x3, C)?;
            let inner = e.add(x, &cx3)?;
            let u = e.scale(&inner, k)?;
            let t = e.unary("Tanh", &u)?;
            let t2 = e.mul(&t, &t)?;
            let sech2 = e.sub(&one, &t2)?;
            let c3x2 = e.scale(&x2, 3.0 * C)?;
            let du1 = e.add(&one, &c3x2)?;
            let du = e.scale(&du1, k)?;
            let xs = e.mul(x, &sech2)?;
            let xsdu = e.mul(&xs, &du)?;
            let opt = e.add(&one, &t)?;
            let s = e.add(&opt, &xsdu)?;
            e.scale(&s, 0.5)?
        }
        Some(other) => return Err(v.unsupported(&format!("approximate = \"{other}\""))),
    };
    Ok(vec![Some(e.mul(&g, &d)?)])
}

/// `Clip`: bounds from inputs 1 and 2 (opset ≥ 11) or the `min`/`max`
/// attributes; the gradient passes where `min ≤ x ≤ max`, and the bounds get
/// none.
///
/// # Errors
/// A value without a static type.
pub fn clip(e: &mut Emitter, v: &Vjp<'_>, g: &[Option<String>]) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let x = required(v, 0)?;
    let t = e.ty(x)?.clone();
    let bound = |e: &mut Emitter, slot: usize, name: &str| -> Option<String> {
        if e.opset() >= 11 {
            v.input(slot).map(str::to_owned)
        } else {
            attr::get(v.node, name).map(|a| e.scalar(t.elem, f64::from(a.f)))
        }
    };
    let lo = bound(e, 1, "min");
    let hi = bound(e, 2, "max");
    let mut mask: Option<String> = None;
    for (b, op) in [(lo, "Less"), (hi, "Greater")] {
        let Some(b) = b else { continue };
        let b = e.cast(&b, t.elem)?;
        let out = e.binary(op, x, &b)?;
        let inside = e.op("Not", &[&out], Vec::new(), e.ty(&out)?.clone());
        mask = Some(match mask {
            None => inside,
            Some(m) => {
                let ty = e.ty(&m)?.clone();
                e.op("And", &[&m, &inside], Vec::new(), ty)
            }
        });
    }
    let Some(mask) = mask else {
        return Ok(vec![Some(g)]);
    };
    let zero = e.scalar(t.elem, 0.0);
    let mut out = vec![Some(select(e, &mask, &g, &zero, t))];
    out.resize(v.inputs.len(), None);
    Ok(out)
}

/// The mask `0 < α·x + β < 1` of a hard sigmoid, and `α·x + β`.
fn hard_mask(e: &mut Emitter, x: &str, alpha: f64, beta: f64) -> Result<String, AutodiffError> {
    let t = e.ty(x)?.clone();
    let ax = e.scale(x, alpha)?;
    let b = e.scalar(t.elem, beta);
    let u = e.add(&ax, &b)?;
    let zero = e.scalar(t.elem, 0.0);
    let one = e.scalar(t.elem, 1.0);
    let above = e.binary("Greater", &u, &zero)?;
    let below = e.binary("Less", &u, &one)?;
    let ty = e.ty(&above)?.clone();
    Ok(e.op("And", &[&above, &below], Vec::new(), ty))
}

/// `HardSigmoid`.
///
/// # Errors
/// No static type.
pub fn hard_sigmoid(
    e: &mut Emitter,
    v: &Vjp<'_>,
    g: &[Option<String>],
) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let x = required(v, 0)?;
    let t = e.ty(x)?.clone();
    let alpha = f64::from(attr::float(v.node, "alpha", 0.2));
    let beta = f64::from(attr::float(v.node, "beta", 0.5));
    let mask = hard_mask(e, x, alpha, beta)?;
    let ag = e.scale(&g, alpha)?;
    let zero = e.scalar(t.elem, 0.0);
    Ok(vec![Some(select(e, &mask, &ag, &zero, t))])
}

/// `HardSwish`.
///
/// # Errors
/// No static type.
pub fn hard_swish(
    e: &mut Emitter,
    v: &Vjp<'_>,
    g: &[Option<String>],
) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let x = required(v, 0)?;
    let t = e.ty(x)?.clone();
    let (alpha, beta) = (1.0 / 6.0, 0.5);
    let h = e.op(
        "HardSigmoid",
        &[x],
        vec![
            attr::make_float("alpha", 1.0 / 6.0),
            attr::make_float("beta", 0.5),
        ],
        t.clone(),
    );
    let mask = hard_mask(e, x, alpha, beta)?;
    let slope = e.scalar(t.elem, alpha);
    let zero = e.scalar(t.elem, 0.0);
    let d = select(e, &mask, &slope, &zero, t);
    let xd = e.mul(x, &d)?;
    let total = e.add(&h, &xd)?;
    Ok(vec![Some(e.mul(&g, &total)?)])
}
