//! FLOPs estimates of matrix products and convolutions.
//!
//! Only the dominant terms are counted: `MatMul`, `Gemm`, `Conv` and
//! `ConvTranspose` of the default ONNX domain ([`COUNTED_OPS`]). Elementwise
//! ops, norms, pooling, softmax, bias adds and the like are left out, and so
//! are ops outside the default domain and the insides of subgraphs (`If`,
//! `Loop`, `Scan`). A `LAuReL` low-rank branch is a pair of `MatMul`s
//! (channel-last tensors) or 1×1 `Conv`s (channel-first), so its FLOPs are
//! counted.
//!
//! Conventions: a multiply-add is 2 FLOPs; shapes come from tract's
//! inference, and a symbolic dimension counts as 1
//! ([`laurel_passes::shape::estimated_elements`]), so a model with symbolic
//! sizes is estimated at size 1 along them (exact for fixed shapes).
//!
//! - `MatMul`: `2 · elements(Y) · K`, `K` the last dimension of `A`.
//! - `Gemm`: `2 · elements(Y) · K`, `K` the second dimension of `A` (the
//!   first with `transA`).
//! - `Conv`: `2 · elements(Y) · C_in/group · k_1 ⋯ k_n` (the elements of one
//!   output channel's weight, `W` being `[C_out, C_in/group, k_1, …]`).
//! - `ConvTranspose`: `2 · elements(X) · C_out/group · k_1 ⋯ k_n` (every input
//!   element is scattered through one input channel's weight, `W` being
//!   `[C_in, C_out/group, k_1, …]`).

use laurel_passes::shape::{Dim, TensorType, estimated_elements};
use onnx_protobuf::NodeProto;
use serde::Serialize;

use crate::analysis::types::ValueTypes;
use crate::error::Result;
use crate::ir::{Model, Node};

/// The op types (default ONNX domain) whose FLOPs are estimated.
pub const COUNTED_OPS: &[&str] = &["MatMul", "Gemm", "Conv", "ConvTranspose"];

/// The elements of a tensor, symbolic dimensions counted as 1; `None` for an
/// unknown shape. O(rank).
#[must_use]
pub fn elements(t: &TensorType) -> Option<f64> {
    t.shape.as_deref().map(estimated_elements)
}

/// The estimated FLOPs of one op (see the [module docs](self) for the
/// formulas): `None` when the op is not a matrix product or convolution, or
/// a shape it needs is unknown. The op's domain is not checked.
///
/// `inputs` are the op's input names by slot (`None`: absent), `out` the
/// type of its (first) output, and `type_of` the type of a value by name.
/// O(rank) plus the calls to `type_of`.
#[must_use]
#[allow(clippy::cast_precision_loss)] // an estimate
pub fn op_flops(
    op: &NodeProto,
    inputs: &[Option<String>],
    out: &TensorType,
    type_of: &dyn Fn(&str) -> TensorType,
) -> Option<f64> {
    let input = |i: usize| inputs.get(i)?.as_deref().map(type_of);
    let dim = |t: &TensorType, i: usize| match t.shape.as_ref()?.get(i)? {
        Dim::Fixed(n) => Some(*n as f64),
        Dim::Sym(_) => Some(1.0),
    };
    let trailing = |t: &TensorType| {
        t.shape
            .as_deref()
            .map(|s| estimated_elements(s.get(1..).unwrap_or(&[])))
    };
    match op.op_type.as_str() {
        "MatMul" => {
            let a = input(0)?;
            let k = dim(&a, a.shape.as_ref()?.len().checked_sub(1)?)?;
            Some(2.0 * elements(out)? * k)
        }
        "Gemm" => {
            let a = input(0)?;
            let trans = op.attribute.iter().any(|x| x.name == "transA" && x.i != 0);
            let k = dim(&a, usize::from(!trans))?;
            Some(2.0 * elements(out)? * k)
        }
        "Conv" => Some(2.0 * elements(out)? * trailing(&input(1)?)?),
        "ConvTranspose" => Some(2.0 * elements(&input(0)?)? * trailing(&input(1)?)?),
        _ => None,
    }
}

/// The elementwise ops [`op_flops_with_elementwise`] counts at one FLOP per
/// element of the result (what an augmentation's scalars, sums and gates cost).
pub const ELEMENTWISE_OPS: &[&str] = &["Add", "Sub", "Mul", "Div", "Neg", "Sigmoid"];

/// [`op_flops`] for matrix products and convolutions, and one FLOP per
/// element of the result for an [`ELEMENTWISE_OPS`] op: the FLOPs an
/// augmentation adds are counted so from the ops it built. `None` for
/// another op or an unknown shape. O(rank).
#[must_use]
#[allow(clippy::cast_precision_loss)] // an estimate
pub fn op_flops_with_elementwise(
    op: &NodeProto,
    inputs: &[Option<String>],
    out: &TensorType,
    type_of: &dyn Fn(&str) -> TensorType,
) -> Option<f64> {
    if ELEMENTWISE_OPS.contains(&op.op_type.as_str()) {
        return elements(out);
    }
    op_flops(op, inputs, out, type_of)
}

/// The estimated FLOPs of a model: the sum over its matrix products and
/// convolutions (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct ModelFlops {
    /// FLOPs of the ops whose shapes are known.
    pub total: f64,
    /// Ops of the [`COUNTED_OPS`] types in the main graph.
    pub ops: usize,
    /// Of those, the ops left out of `total` because a shape they need is
    /// unknown (`total` is then a lower bound).
    pub unknown_ops: usize,
}

impl std::fmt::Display for ModelFlops {
    /// `1.75 M`, with ` (2 of 9 ops with unknown shapes not counted)` when
    /// some are unknown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&human(self.total))?;
        if self.unknown_ops > 0 {
            write!(
                f,
                " ({} of {} ops with unknown shapes not counted)",
                self.unknown_ops, self.ops
            )?;
        }
        Ok(())
    }
}

/// A number with an SI suffix and two decimals: `1.75 M`, `3.10 G`, `512`.
#[must_use]
pub fn human(x: f64) -> String {
    const UNITS: [(f64, &str); 4] = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")];
    UNITS
        .iter()
        .find(|(scale, _)| x.abs() >= *scale)
        .map_or_else(
            || format!("{x}"),
            |(scale, u)| format!("{:.2} {u}", x / scale),
        )
}

/// The estimated FLOPs of `model`'s matrix products and convolutions, with
/// value types from `types` (as [`crate::analysis::types::value_types`] gives
/// them); an initializer's shape is read from the tensor itself. Ops outside
/// the default ONNX domain and inside subgraphs are not counted.
/// O(V + E) (each op's inputs, plus a hash lookup per shape needed).
#[must_use]
pub fn model_flops(model: &Model, types: &ValueTypes) -> ModelFlops {
    let g = &model.graph;
    let producers = g.producers();
    let type_of = |name: &str| -> TensorType {
        if let Some(&(p, _)) = producers.get(name)
            && let Node::Initializer(i) = &g.dag[p]
        {
            return TensorType {
                shape: Some(
                    i.proto
                        .dims
                        .iter()
                        .map(|&d| Dim::Fixed(u64::try_from(d).unwrap_or(0)))
                        .collect(),
                ),
                dtype: None,
            };
        }
        types.get(name).cloned().unwrap_or_else(TensorType::unknown)
    };
    let mut flops = ModelFlops::default();
    for &n in &g.op_order {
        let Node::Op(op) = &g.dag[n] else { continue };
        if !crate::ir::is_onnx_domain(&op.proto.domain)
            || !COUNTED_OPS.contains(&op.proto.op_type.as_str())
        {
            continue;
        }
        flops.ops += 1;
        let inputs: Vec<Option<String>> = g
            .op_inputs(n)
            .into_iter()
            .map(|s| s.map(|(_, e)| e.name.clone()))
            .collect();
        let out = op
            .proto
            .output
            .first()
            .map_or_else(TensorType::unknown, |o| type_of(o));
        match op_flops(&op.proto, &inputs, &out, &type_of) {
            Some(f) => flops.total += f,
            None => flops.unknown_ops += 1,
        }
    }
    flops
}

/// [`model_flops`] with the types from tract's inference
/// ([`crate::analysis::types::value_types`]). O(V + E) plus shape inference.
///
/// # Errors
/// As [`crate::analysis::infer_values`]: the shape probe cannot be encoded,
/// or shape inference fails outright.
pub fn estimate_model_flops(model: &Model) -> Result<ModelFlops> {
    let types = crate::analysis::types::value_types(model)?;
    Ok(model_flops(model, &types))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(dims: &[u64]) -> TensorType {
        TensorType {
            shape: Some(dims.iter().map(|&d| Dim::Fixed(d)).collect()),
            dtype: None,
        }
    }

    fn op(op_type: &str) -> NodeProto {
        NodeProto {
            op_type: op_type.into(),
            ..Default::default()
        }
    }

    fn names(n: &[&str]) -> Vec<Option<String>> {
        n.iter().map(|s| Some((*s).to_string())).collect()
    }

    #[test]
    fn matmul_is_two_m_n_k() {
        // [2, 3, 4] x [4, 5] -> [2, 3, 5]: 2 · 30 · 4 = 240.
        let ty = |name: &str| {
            if name == "a" {
                t(&[2, 3, 4])
            } else {
                t(&[4, 5])
            }
        };
        let f = op_flops(&op("MatMul"), &names(&["a", "b"]), &t(&[2, 3, 5]), &ty);
        assert_eq!(f, Some(240.0));
    }

    #[test]
    fn symbolic_dims_count_as_one() {
        let a = TensorType {
            shape: Some(vec![Dim::Sym("n".into()), Dim::Fixed(4)]),
            dtype: None,
        };
        let out = TensorType {
            shape: Some(vec![Dim::Sym("n".into()), Dim::Fixed(5)]),
            dtype: None,
        };
        let ty = move |name: &str| if name == "a" { a.clone() } else { t(&[4, 5]) };
        let f = op_flops(&op("MatMul"), &names(&["a", "b"]), &out, &ty);
        assert_eq!(f, Some(40.0));
    }

    #[test]
    fn gemm_reads_k_from_trans_a() {
        let mut g = op("Gemm");
        g.attribute.push(onnx_protobuf::AttributeProto {
            name: "transA".into(),
            i: 1,
            ..Default::default()
        });
        // A is [K, M] = [7, 3]; Y is [3, 2]: 2 · 6 · 7 = 84.
        let ty = |name: &str| if name == "a" { t(&[7, 3]) } else { t(&[7, 2]) };
        assert_eq!(
            op_flops(&g, &names(&["a", "b"]), &t(&[3, 2]), &ty),
            Some(84.0)
        );
    }

    #[test]
    fn conv_and_conv_transpose() {
        // Conv: Y [1, 4, 5, 5], W [4, 2, 3, 3] (group 1 of C_in 2): 2 · 100 · 18.
        let ty = |name: &str| {
            if name == "w" {
                t(&[4, 2, 3, 3])
            } else {
                t(&[1, 2, 5, 5])
            }
        };
        assert_eq!(
            op_flops(&op("Conv"), &names(&["x", "w"]), &t(&[1, 4, 5, 5]), &ty),
            Some(3600.0)
        );
        // ConvTranspose: X [1, 2, 5, 5], W [2, 4, 3, 3]: 2 · 50 · 36.
        let ty = |name: &str| {
            if name == "w" {
                t(&[2, 4, 3, 3])
            } else {
                t(&[1, 2, 5, 5])
            }
        };
        assert_eq!(
            op_flops(
                &op("ConvTranspose"),
                &names(&["x", "w"]),
                &t(&[1, 4, 11, 11]),
                &ty
            ),
            Some(3600.0)
        );
    }

    #[test]
    fn unknown_shapes_and_other_ops_give_none() {
        let ty = |_: &str| TensorType::unknown();
        assert_eq!(
            op_flops(&op("MatMul"), &names(&["a", "b"]), &t(&[2, 2]), &ty),
            None
        );
        assert_eq!(
            op_flops(&op("Relu"), &names(&["a"]), &t(&[2, 2]), &|_| t(&[2, 2])),
            None
        );
    }

    #[test]
    fn human_units() {
        assert_eq!(human(1_749_312.0), "1.75 M");
        assert_eq!(human(512.0), "512");
        assert_eq!(human(3.1e9), "3.10 G");
    }
}
