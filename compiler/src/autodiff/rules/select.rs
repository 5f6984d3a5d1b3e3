//! Selection: `Where` and `Gather`.
//!
//! ```text
//! y = Where(c, a, b)       ∂a = unbroadcast(Where(c, g, 0))   ∂b = unbroadcast(Where(c, 0, g))
//! y = Gather_axis(x, i)    ∂x = ScatterND(zeros(x), i, g, reduction = add)
//!                          (the axis moved to the front and back; negative
//!                          indices normalised; repeated indices accumulate)
//! ```
//! Scatter-add needs opset 16; before it, the gradient is a one-hot product,
//! `onehot(i, dim)ᵀ · g`, which costs `n · dim` elements for `n` indices.

use super::{Grads, Vjp, required, single};
use crate::autodiff::AutodiffError;
use crate::autodiff::emit::{Emitter, elem};
use crate::ir::attr;

/// `Where`.
///
/// # Errors
/// No static type.
pub fn where_(e: &mut Emitter, v: &Vjp<'_>, g: &[Option<String>]) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let c = required(v, 0)?;
    let tg = e.ty(&g)?.clone();
    let zero = e.scalar(tg.elem, 0.0);
    let mut out: Grads = vec![None; 3];
    for (slot, (then, other)) in [(1, (&g, &zero)), (2, (&zero, &g))] {
        if !v.need(slot) {
            continue;
        }
        let to = e.ty(required(v, slot)?)?.clone();
        let w = e.op("Where", &[c, then, other], Vec::new(), tg.clone());
        out[slot] = Some(e.unbroadcast(&w, &to)?);
    }
    Ok(out)
}

/// `Gather`.
///
/// # Errors
/// No static type.
pub fn gather(e: &mut Emitter, v: &Vjp<'_>, g: &[Option<String>]) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    if !v.need(0) {
        return Ok(vec![None, None]);
    }
    let (x, i) = (required(v, 0)?, required(v, 1)?);
    let (tx, ti) = (e.ty(x)?.clone(), e.ty(i)?.clone());
    let axis = v.axis(attr::int(v.node, "axis", 0), tx.rank())?;
    let q = ti.rank();
    let n = ti.numel();
    let vsize = tx.dims[axis];
    // Indices as int64, negatives normalised, shaped [n, 1].
    let i64s = e.cast(i, elem::I64)?;
    let zero = e.ints_shaped(&[], &[0]);
    let size = e.ints_shaped(&[], &[vsize]);
    let neg = e.binary("Less", &i64s, &zero)?;
    let wrapped = e.add(&i64s, &size)?;
    let norm = e.op(
        "Where",
        &[&neg, &wrapped, &i64s],
        Vec::new(),
        e.ty(&i64s)?.clone(),
    );
    let idx = e.reshape(&norm, &[n, 1])?;
    // g: [pre, I…, post] → [I…, pre, post] → [n, pre, post]
    let pre = &tx.dims[..axis];
    let post = &tx.dims[axis + 1..];
    let mut perm: Vec<usize> = (axis..axis + q).collect();
    perm.extend(0..axis);
    perm.extend(axis + q..axis + q + post.len());
    let gt = e.transpose(&g, &perm)?;
    let mut upd = vec![n];
    upd.extend_from_slice(pre);
    upd.extend_from_slice(post);
    let updates = e.reshape(&gt, &upd)?;
    let mut zdims = vec![vsize];
    zdims.extend_from_slice(pre);
    zdims.extend_from_slice(post);
    let zty = tx.with_dims(&zdims);
    let scattered = if e.opset() >= 16 {
        let zeros = e.filled(&zty, 0.0)?;
        e.op(
            "ScatterND",
            &[&zeros, &idx, &updates],
            vec![attr::make_string("reduction", "add")],
            zty,
        )
    } else {
        // onehot [n, V]ᵀ · updates [n, pre·post] → [V, pre·post]
        let range: Vec<i64> = (0..vsize).collect();
        let range = e.ints(&range);
        let hit = e.binary("Equal", &idx, &range)?;
        let onehot = e.cast(&hit, tx.elem)?;
        let ot = e.transpose(&onehot, &[1, 0])?;
        let inner: i64 = pre.iter().chain(post).product();
        let flat = e.reshape(&updates, &[n, inner])?;
        let p = e.op(
            "MatMul",
            &[&ot, &flat],
            Vec::new(),
            tx.with_dims(&[vsize, inner]),
        );
        e.reshape(&p, &zdims)?
    };
    // [V, pre, post] → [pre, V, post]
    let mut back: Vec<usize> = (1..=axis).collect();
    back.push(0);
    back.extend(axis + 1..tx.rank());
    Ok(vec![Some(e.transpose(&scattered, &back)?), None])
}
