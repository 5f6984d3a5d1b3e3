//! Scale through positively homogeneous and linear ONNX ops.
//!
//! A scalar factor moves out of an op's input to its result, towards the
//! consumers where it can be absorbed (a weight, a norm, the next residual's
//! scalars). One direction only: nothing pushes a factor back in, so the
//! rules terminate.
//!
//! The rules are [`TOPIC`]'s entries.
//!
//! Complexity: per class, linear in its e-nodes and their inputs' e-nodes.

use egg::Id;

use super::class::{
    Child, ClassRule, allowed, children_with, onnx_node, onnx_nodes, scaled_forms, times,
};
use super::entry::{Kind, Pass, Rule, Topic};
use crate::analysis::TensorEGraph;
use crate::checked::Rhs;
use crate::semantics::OpSemantics;

fn out_of_homogeneous(egraph: &TensorEGraph, id: Id) -> Vec<Rhs> {
    let mut out = Vec::new();
    for (op, children, sem) in onnx_nodes(egraph, id) {
        let OpSemantics::Homogeneous {
            inputs,
            positive_only,
        } = sem
        else {
            continue;
        };
        for &i in inputs {
            let Some(&child) = children.get(i) else {
                continue;
            };
            for (c, x) in scaled_forms(egraph, child) {
                if !allowed(&c, *positive_only) {
                    continue;
                }
                let mut rhs = Rhs::new();
                let args = children_with(&children, &[(i, Child::Class(x))]);
                let inner = onnx_node(&mut rhs, op, &args);
                times(&mut rhs, &c, inner);
                out.push(rhs);
            }
        }
    }
    out
}

fn out_of_uniform(egraph: &TensorEGraph, id: Id) -> Vec<Rhs> {
    let mut out = Vec::new();
    for (op, children, sem) in onnx_nodes(egraph, id) {
        let OpSemantics::Uniform { positive_only } = sem else {
            continue;
        };
        let Some(&first) = children.first() else {
            continue;
        };
        for (c, _) in scaled_forms(egraph, first) {
            if !allowed(&c, *positive_only) {
                continue;
            }
            let unscaled: Option<Vec<Child>> = children
                .iter()
                .map(|&k| {
                    scaled_forms(egraph, k)
                        .into_iter()
                        .find(|(d, _)| *d == c)
                        .map(|(_, x)| Child::Class(x))
                })
                .collect();
            if let Some(args) = unscaled {
                let mut rhs = Rhs::new();
                let inner = onnx_node(&mut rhs, op, &args);
                times(&mut rhs, &c, inner);
                out.push(rhs);
            }
        }
    }
    out
}

/// `scale-out-of-homogeneous`: `f(…, c·x, …) ⇒ c·f(…, x, …)`.
pub const SCALE_OUT_OF_HOMOGENEOUS: ClassRule = ClassRule {
    name: "scale-out-of-homogeneous",
    find: out_of_homogeneous,
};

/// `scale-out-of-uniform`: `f(c·x_0, …, c·x_n) ⇒ c·f(x_0, …, x_n)`.
pub const SCALE_OUT_OF_UNIFORM: ClassRule = ClassRule {
    name: "scale-out-of-uniform",
    find: out_of_uniform,
};

/// The rules. Examples: `$x`, `$a`, `$b` computed `[2, 3]`.
#[rustfmt::skip]
pub const TOPIC: Topic = Topic {
    name: "homogeneous",
    summary: "A scalar factor moves out of an op's input to its result, towards the consumers that absorb it (a weight, a norm, the next residual's scalars); one direction only.",
    pass: Pass::Fuse,
    context: "$x: f32[2, 3]\n$a: f32[2, 3]\n$b: f32[2, 3]\n\
              onnx:Relu@n1.0: f32[2, 3] homogeneous 0 positive\n\
              onnx:ReduceMean@n2.0: f32[2, 1] homogeneous 0\n\
              onnx:ReduceMean@n3.0: f32[2, 1]\n\
              onnx:Concat@n4.0: f32[4, 3] uniform",
    rules: &[
        Rule { when: "f homogeneous in that input; c > 0 when only positively homogeneous (Relu, MaxPool), c ≠ 0 otherwise",
               examples: &[
                   ("(onnx:Relu@n1.0 (* 3/2 $x))", "(* 3/2 (onnx:Relu@n1.0 $x))"),
                   ("(onnx:ReduceMean@n2.0 (* -2 $x))", "(* -2 (onnx:ReduceMean@n2.0 $x))"),
               ],
               // Relu(−c·x) ≠ −c·Relu(x); an op without semantics is opaque.
               non_examples: &["(onnx:Relu@n1.0 (* -3/2 $x))", "(onnx:ReduceMean@n3.0 (* -2 $x))"],
               ..Rule::new("scale-out-of-homogeneous", "f(…, c·x, …) = c·f(…, x, …)", Kind::Class(SCALE_OUT_OF_HOMOGENEOUS)) },
        Rule { when: "every input carries the same c (Concat)",
               examples: &[("(onnx:Concat@n4.0 (* 3 $a) (* 3 $b))", "(* 3 (onnx:Concat@n4.0 $a $b))")],
               non_examples: &["(onnx:Concat@n4.0 (* 3 $a) (* 2 $b))"],
               ..Rule::new("scale-out-of-uniform", "f(c·x₀, …, c·xₙ) = c·f(x₀, …, xₙ)", Kind::Class(SCALE_OUT_OF_UNIFORM)) },
    ],
};
