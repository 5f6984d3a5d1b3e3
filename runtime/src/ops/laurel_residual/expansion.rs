//! [`Implementation::Expansion`](super::Implementation::Expansion): `LaurelResidual` as
//! tract core ops.
//!
//! `y = Σᵢ cᵢ·tᵢ` becomes, left to right, `Mul(tᵢ, cᵢ)` by a scalar constant for every
//! scaled term (none for a coefficient of 1, no term at all for a coefficient of 0),
//! then `Add(acc, termᵢ)` with the running sum on the left. tract's optimiser treats
//! these like any other elementwise ops: a scalar `Mul` and unicast `Add`s after a
//! matrix product go into its epilogue, and what remains becomes one `OptBinChain`
//! pass over the accumulator.

use tract_onnx::tract_core::ops::array::MultiBroadcastTo;
use tract_onnx::tract_core::ops::math;
use tract_onnx::tract_hir::internal::{
    DatumType, IntoArcTensor, OutletId, ShapeFact, SpecialOps, TDim, TVec, Tensor, TractResult,
    TypedModel, tvec,
};

use super::{Term, term_tensor};

/// Wires the sum of `inputs` (already broadcast to the same rank, all of type `dt`)
/// weighted by `coefficients`, of output shape `shape`.
pub(super) fn wire(
    prefix: &str,
    model: &mut TypedModel,
    inputs: &[OutletId],
    coefficients: &[f32],
    dt: DatumType,
    shape: &[TDim],
) -> TractResult<TVec<OutletId>> {
    let rank = shape.len();
    let mut acc: Option<OutletId> = None;
    for (ix, (&input, &c)) in inputs.iter().zip(coefficients).enumerate() {
        let wire = match term_tensor(c, dt)? {
            Term::Dropped => continue,
            Term::Unscaled => input,
            Term::Scaled(k) => {
                let name = model.unique_name(format!("{prefix}.coefficient.{ix}"));
                let k = model.add_const(name, k.broadcast_into_rank(rank)?.into_arc_tensor())?;
                let name = model.unique_name(format!("{prefix}.scale.{ix}"));
                model.wire_node(name, math::mul(), &[input, k])?[0]
            }
        };
        acc = Some(match acc {
            None => wire,
            Some(acc) => {
                let name = model.unique_name(format!("{prefix}.add.{ix}"));
                model.wire_node(name, math::add(), &[acc, wire])?[0]
            }
        });
    }
    let acc = if let Some(acc) = acc {
        acc
    } else {
        // Every term dropped: +0.
        let zero = Tensor::zero_scalar_dt(dt)?.broadcast_into_rank(rank)?;
        let name = model.unique_name(format!("{prefix}.zero"));
        model.add_const(name, zero.into_arc_tensor())?
    };
    // A dropped term may be the one that gave the output its shape.
    if *model.outlet_fact(acc)?.shape != *shape {
        let name = model.unique_name(format!("{prefix}.broadcast"));
        let op = MultiBroadcastTo {
            shape: ShapeFact::from_dims(shape),
        };
        return model.wire_node(name, op, &[acc]);
    }
    Ok(tvec!(acc))
}
