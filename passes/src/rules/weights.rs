//! Scalars into the weights of linear ONNX ops.
//!
//! | rule | rewrite | guard |
//! |---|---|---|
//! | `scale-into-weights` | `c·f(x, w) ⇒ f(x, w')`, `w'_j = c^e·w_j` per the op's `output_into` | `c ≠ 0`, `f` linear with constant weights |
//! | `absorb-input-scale` | `f(c·x, w) ⇒ f(x, w')`, `w'_j = c^e·w_j` per the op's `input_into` | `c ≠ 0`, `f` linear with constant weights |
//!
//! For `Conv`, `ConvTranspose`, `Gemm` (`B`, `C`) and `MatMul` with a
//! constant operand, `e = 1`; `BatchNormalization(c·x)` takes `c` into its
//! scale and `1/c` into its mean (`e = −1`). The scaled weights are weight
//! terms (`(* c $W)`), computed once by the compiler: at inference they cost
//! nothing.
//!
//! Examples (before → after):
//! - `(* 1/2 (onnx:Conv@n3.0 $x $W $b))` → `(onnx:Conv@n3.0 $x (* 1/2 $W) (* 1/2 $b))`;
//! - `(onnx:MatMul@n5.0 (* 3 $h) $W)` → `(onnx:MatMul@n5.0 $h (* 3 $W))`.
//!
//! Complexity: per class, linear in its e-nodes and their children's e-nodes.

use egg::Id;

use super::class::{Child, ClassRule, onnx_node, onnx_nodes, scaled_forms, times_class};
use crate::analysis::TensorEGraph;
use crate::checked::Rhs;
use crate::lang::Scalar;
use crate::semantics::OpSemantics;

/// `f(args)` with each listed child `j` scaled by `c^e`; `replace` swaps one
/// child for another class first.
fn scaled_op(
    op: crate::lang::OpRef,
    children: &[Id],
    c: &Scalar,
    into: &[(usize, i32)],
    replace: Option<(usize, Id)>,
) -> Option<Rhs> {
    let mut rhs = Rhs::new();
    let mut args = Vec::with_capacity(children.len());
    for (j, &k) in children.iter().enumerate() {
        let k = match replace {
            Some((i, x)) if i == j => x,
            _ => k,
        };
        let child = match into.iter().find(|(w, _)| *w == j) {
            Some(&(_, e)) => Child::Built(times_class(&mut rhs, &c.powi(e)?, k)),
            None => Child::Class(k),
        };
        args.push(child);
    }
    onnx_node(&mut rhs, op, &args);
    Some(rhs)
}

fn into_weights(egraph: &TensorEGraph, id: Id) -> Vec<Rhs> {
    let mut out = Vec::new();
    for (c, t) in scaled_forms(egraph, id) {
        if c.is_zero() {
            continue;
        }
        for (op, children, sem) in onnx_nodes(egraph, t) {
            if let OpSemantics::Linear { output_into, .. } = sem
                && let Some(rhs) = scaled_op(op, &children, &c, output_into, None)
            {
                out.push(rhs);
            }
        }
    }
    out
}

fn absorb_input(egraph: &TensorEGraph, id: Id) -> Vec<Rhs> {
    let mut out = Vec::new();
    for (op, children, sem) in onnx_nodes(egraph, id) {
        let OpSemantics::Linear {
            input, input_into, ..
        } = sem
        else {
            continue;
        };
        let Some(&x) = children.get(*input) else {
            continue;
        };
        for (c, inner) in scaled_forms(egraph, x) {
            if c.is_zero() {
                continue;
            }
            if let Some(rhs) = scaled_op(op, &children, &c, input_into, Some((*input, inner))) {
                out.push(rhs);
            }
        }
    }
    out
}

/// `scale-into-weights`: `c·f(x, w) ⇒ f(x, c·w)`.
pub const SCALE_INTO_WEIGHTS: ClassRule = ClassRule {
    name: "scale-into-weights",
    find: into_weights,
};

/// `absorb-input-scale`: `f(c·x, w) ⇒ f(x, c·w)`.
pub const ABSORB_INPUT_SCALE: ClassRule = ClassRule {
    name: "absorb-input-scale",
    find: absorb_input,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::class::tests::{holds, numerically_equal, run_class_rule};
    use crate::shape::fixed;

    #[allow(clippy::unnecessary_wraps)] // the tables take an optional semantics
    fn matmul() -> Option<OpSemantics> {
        Some(OpSemantics::Linear {
            input: 0,
            output_into: vec![(1, 1)],
            input_into: vec![(1, 1)],
        })
    }

    fn values() -> [(&'static str, crate::shape::Shape); 2] {
        [("x", fixed(&[2, 3])), ("w", fixed(&[3, 4]))]
    }

    #[test]
    fn a_scale_on_the_result_goes_into_the_weight() {
        let ops = [("onnx:MatMul@n1.0", matmul(), fixed(&[2, 4]))];
        let lhs = "(* 3/2 (onnx:MatMul@n1.0 $x $w))";
        let rhs = "(onnx:MatMul@n1.0 $x (* 3/2 $w))";
        let (e, root) = run_class_rule(SCALE_INTO_WEIGHTS, &values(), &ops, lhs);
        assert!(holds(&e, root, rhs));
        numerically_equal(&values(), lhs, rhs);
    }

    #[test]
    fn a_scale_on_the_input_goes_into_the_weight() {
        let ops = [("onnx:MatMul@n1.0", matmul(), fixed(&[2, 4]))];
        let lhs = "(onnx:MatMul@n1.0 (* -2 $x) $w)";
        let rhs = "(onnx:MatMul@n1.0 $x (* -2 $w))";
        let (e, root) = run_class_rule(ABSORB_INPUT_SCALE, &values(), &ops, lhs);
        assert!(holds(&e, root, rhs));
        numerically_equal(&values(), lhs, rhs);
    }

    #[test]
    fn an_op_that_is_not_linear_keeps_its_scale() {
        let ops = [("onnx:MatMul@n1.0", None, fixed(&[2, 4]))];
        let (e, root) = run_class_rule(
            SCALE_INTO_WEIGHTS,
            &values(),
            &ops,
            "(* 3/2 (onnx:MatMul@n1.0 $x $w))",
        );
        assert_eq!(e[e.find(root)].nodes.len(), 1);
    }
}
