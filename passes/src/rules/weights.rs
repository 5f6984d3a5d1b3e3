//! Scalars into the weights of linear ONNX ops.
//!
//! The rules are [`TOPIC`]'s entries.
//!
//! For `Conv`, `ConvTranspose`, `Gemm` (`B`, `C`) and `MatMul` with a
//! constant operand, `e = 1`; `BatchNormalization(c·x)` takes `c` into its
//! scale and `1/c` into its mean (`e = −1`). The scaled weights are weight
//! terms (`(* c $W)`), computed once by the compiler: at inference they cost
//! nothing.
//!
//! Complexity: per class, linear in its e-nodes and their children's e-nodes.

use egg::Id;

use super::class::{Child, ClassRule, onnx_node, onnx_nodes, scaled_forms, times_class};
use super::entry::{Kind, Pass, Rule, Topic};
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

/// The rules. Examples: `$x` `[2, 3]`, the weight `$w` `[3, 4]`.
#[rustfmt::skip]
pub const TOPIC: Topic = Topic {
    name: "weights",
    summary: "Scalars into the weights of linear ONNX ops (Conv, ConvTranspose, Gemm, MatMul with a constant operand, BatchNormalization), as weight terms the compiler computes once.",
    pass: Pass::Fuse,
    context: "$x: f32[2, 3]\nweight $w: f32[3, 4]\n\
              onnx:MatMul@n1.0: f32[2, 4] linear input=0 out=1 in=1\n\
              onnx:MatMul@n2.0: f32[2, 4]",
    rules: &[
        Rule { when: "c ≠ 0; f linear with constant weights (w'ⱼ = cᵉ·wⱼ per the op's output_into)",
               examples: &[
                   ("(* 3/2 (onnx:MatMul@n1.0 $x $w))", "(onnx:MatMul@n1.0 $x (* 3/2 $w))"),
                   // A linear map takes negative scales too.
                   ("(* -2 (onnx:MatMul@n1.0 $x $w))", "(onnx:MatMul@n1.0 $x (* -2 $w))"),
               ],
               non_examples: &["(* 3/2 (onnx:MatMul@n2.0 $x $w))", "(* 0 (onnx:MatMul@n1.0 $x $w))"],
               ..Rule::new("scale-into-weights", "c·f(x, w) = f(x, w′)", Kind::Class(SCALE_INTO_WEIGHTS)) },
        Rule { when: "c ≠ 0; f linear with constant weights (w'ⱼ = cᵉ·wⱼ per the op's input_into)",
               examples: &[("(onnx:MatMul@n1.0 (* -2 $x) $w)", "(onnx:MatMul@n1.0 $x (* -2 $w))")],
               non_examples: &["(onnx:MatMul@n2.0 (* -2 $x) $w)"],
               ..Rule::new("absorb-input-scale", "f(c·x, w) = f(x, w′)", Kind::Class(ABSORB_INPUT_SCALE)) },
    ],
};
