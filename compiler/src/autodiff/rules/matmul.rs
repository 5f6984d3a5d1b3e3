//! Products: `MatMul` (numpy semantics, batched and broadcasting) and `Gemm`.
//!
//! ```text
//! Y = A·B          ∂A = unbroadcast(G·Bᵀ)     ∂B = unbroadcast(Aᵀ·G)
//!                  (a 1-D A is [1, K], a 1-D B is [K, 1], as numpy)
//! Y = α·A′·B′ + β·C,  A′ = transA ? Aᵀ : A,  B′ = transB ? Bᵀ : B
//!                  ∂A′ = α·G·B′ᵀ   ∂B′ = α·A′ᵀ·G   ∂C = unbroadcast(β·G)
//! ```
//! Transposes swap the last two axes.

use super::{Grads, Vjp, required, single};
use crate::autodiff::AutodiffError;
use crate::autodiff::emit::{Emitter, broadcast};
use crate::ir::attr;

/// `x` with its last two axes swapped.
fn swap_last(e: &mut Emitter, x: &str) -> Result<String, AutodiffError> {
    let r = e.ty(x)?.rank();
    let mut perm: Vec<usize> = (0..r).collect();
    perm.swap(r - 2, r - 1);
    e.transpose(x, &perm)
}

/// `a · b` by `MatMul`, typed by numpy's rules (both of rank ≥ 2).
fn matmul_op(e: &mut Emitter, a: &str, b: &str) -> Result<String, AutodiffError> {
    let (ta, tb) = (e.ty(a)?.clone(), e.ty(b)?.clone());
    let (ra, rb) = (ta.rank(), tb.rank());
    let batch = broadcast(&ta.dims[..ra - 2], &tb.dims[..rb - 2]).ok_or_else(|| {
        AutodiffError::Internal {
            message: format!("MatMul batch dims {:?} and {:?}", ta.dims, tb.dims),
        }
    })?;
    let mut dims = batch;
    dims.push(ta.dims[ra - 2]);
    dims.push(tb.dims[rb - 1]);
    Ok(e.op("MatMul", &[a, b], Vec::new(), ta.with_dims(&dims)))
}

/// `MatMul`.
///
/// # Errors
/// A value without a static type, or of rank 0.
pub fn matmul(e: &mut Emitter, v: &Vjp<'_>, g: &[Option<String>]) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let (a, b) = (required(v, 0)?, required(v, 1)?);
    let (ta, tb) = (e.ty(a)?.clone(), e.ty(b)?.clone());
    if ta.rank() == 0 || tb.rank() == 0 {
        return Err(v.unsupported("a scalar operand"));
    }
    // Promote 1-D operands as numpy does, and the gradient with them.
    let a2 = if ta.rank() == 1 {
        e.reshape(a, &[1, ta.dims[0]])?
    } else {
        a.to_owned()
    };
    let b2 = if tb.rank() == 1 {
        e.reshape(b, &[tb.dims[0], 1])?
    } else {
        b.to_owned()
    };
    let (ta2, tb2) = (e.ty(&a2)?.clone(), e.ty(&b2)?.clone());
    let batch = broadcast(&ta2.dims[..ta2.rank() - 2], &tb2.dims[..tb2.rank() - 2])
        .ok_or_else(|| v.unsupported("batch dims do not broadcast"))?;
    let mut gdims = batch;
    gdims.push(ta2.dims[ta2.rank() - 2]);
    gdims.push(tb2.dims[tb2.rank() - 1]);
    let g2 = e.reshape(&g, &gdims)?;
    let ga = if v.need(0) {
        let bt = swap_last(e, &b2)?;
        let p = matmul_op(e, &g2, &bt)?;
        let u = e.unbroadcast(&p, &ta2)?;
        Some(e.reshape(&u, &ta.dims)?)
    } else {
        None
    };
    let gb = if v.need(1) {
        let at = swap_last(e, &a2)?;
        let p = matmul_op(e, &at, &g2)?;
        let u = e.unbroadcast(&p, &tb2)?;
        Some(e.reshape(&u, &tb.dims)?)
    } else {
        None
    };
    Ok(vec![ga, gb])
}

/// `Gemm`.
///
/// # Errors
/// A value without a static type.
pub fn gemm(e: &mut Emitter, v: &Vjp<'_>, g: &[Option<String>]) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let (a, b) = (required(v, 0)?, required(v, 1)?);
    let alpha = f64::from(attr::float(v.node, "alpha", 1.0));
    let beta = f64::from(attr::float(v.node, "beta", 1.0));
    let trans_a = attr::int(v.node, "transA", 0) != 0;
    let trans_b = attr::int(v.node, "transB", 0) != 0;
    let ga = if v.need(0) {
        // ∂A′ = α·G·B′ᵀ; B′ᵀ is B itself when transB.
        let bpt = if trans_b {
            b.to_owned()
        } else {
            swap_last(e, b)?
        };
        let p = matmul_op(e, &g, &bpt)?;
        let p = e.scale(&p, alpha)?;
        Some(if trans_a { swap_last(e, &p)? } else { p })
    } else {
        None
    };
    let gb = if v.need(1) {
        let apt = if trans_a {
            a.to_owned()
        } else {
            swap_last(e, a)?
        };
        let p = matmul_op(e, &apt, &g)?;
        let p = e.scale(&p, alpha)?;
        Some(if trans_b { swap_last(e, &p)? } else { p })
    } else {
        None
    };
    let gc = match v.input(2) {
        Some(c) if v.need(2) => {
            let to = e.ty(c)?.clone();
            let s = e.scale(&g, beta)?;
            Some(e.unbroadcast(&s, &to)?)
        }
        _ => None,
    };
    Ok(vec![ga, gb, gc])
}
