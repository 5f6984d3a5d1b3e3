//! Scale through positively homogeneous and linear ONNX ops.
//!
//! A scalar factor moves out of an op's input to its result, towards the
//! consumers where it can be absorbed (a weight, a norm, the next residual's
//! scalars). One direction only: nothing pushes a factor back in, so the
//! rules terminate.
//!
//! | rule | rewrite | guard |
//! |---|---|---|
//! | `scale-out-of-homogeneous` | `f(…, c·x, …) ⇒ c·f(…, x, …)` | `f` homogeneous in that input; `c > 0` when only positively homogeneous (`Relu`, `MaxPool`), `c ≠ 0` otherwise |
//! | `scale-out-of-uniform` | `f(c·x_0, …, c·x_n) ⇒ c·f(x_0, …, x_n)` | every input carries the same `c` (`Concat`) |
//!
//! Examples (before → after):
//! - `(onnx:Relu@n4.0 (* 2 $x))` → `(* 2 (onnx:Relu@n4.0 $x))`;
//! - `(onnx:Relu@n4.0 (* -2 $x))` stays: `Relu(−2x) ≠ −2·Relu(x)`;
//! - `(onnx:Concat@n9.0 (* 3 $a) (* 3 $b))` → `(* 3 (onnx:Concat@n9.0 $a $b))`.
//!
//! Complexity: per class, linear in its e-nodes and their inputs' e-nodes.

use egg::Id;

use super::class::{Child, ClassRule, onnx_node, onnx_nodes, scaled_forms, times};
use crate::analysis::TensorEGraph;
use crate::checked::Rhs;
use crate::lang::Scalar;
use crate::semantics::OpSemantics;

/// Whether `c` may move through an op that is homogeneous for positive
/// factors only (`positive_only`) or for all non-zero ones.
fn allowed(c: &Scalar, positive_only: bool) -> bool {
    if positive_only {
        c.is_positive()
    } else {
        !c.is_zero()
    }
}

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
                let args: Vec<Child> = children
                    .iter()
                    .enumerate()
                    .map(|(j, &k)| Child::Class(if j == i { x } else { k }))
                    .collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::class::tests::{holds, numerically_equal, run_class_rule};
    use crate::shape::fixed;

    #[allow(clippy::unnecessary_wraps)] // the tables take an optional semantics
    fn relu() -> Option<OpSemantics> {
        Some(OpSemantics::Homogeneous {
            inputs: vec![0],
            positive_only: true,
        })
    }

    #[test]
    fn scale_leaves_a_relu_only_when_positive() {
        let v = [("x", fixed(&[2, 3]))];
        let ops = [("onnx:Relu@n1.0", relu(), fixed(&[2, 3]))];
        let (e, root) = run_class_rule(
            SCALE_OUT_OF_HOMOGENEOUS,
            &v,
            &ops,
            "(onnx:Relu@n1.0 (* 3/2 $x))",
        );
        assert!(holds(&e, root, "(* 3/2 (onnx:Relu@n1.0 $x))"));
        numerically_equal(
            &v,
            "(onnx:Relu@n1.0 (* 3/2 $x))",
            "(* 3/2 (onnx:Relu@n1.0 $x))",
        );
        let (e, root) = run_class_rule(
            SCALE_OUT_OF_HOMOGENEOUS,
            &v,
            &ops,
            "(onnx:Relu@n1.0 (* -3/2 $x))",
        );
        assert_eq!(e[e.find(root)].nodes.len(), 1, "Relu(−c·x) ≠ −c·Relu(x)");
    }

    #[test]
    fn a_linear_op_passes_negative_scales_too() {
        let v = [("x", fixed(&[2, 3]))];
        let ops = [(
            "onnx:ReduceMean@n1.0",
            Some(OpSemantics::Homogeneous {
                inputs: vec![0],
                positive_only: false,
            }),
            fixed(&[2, 1]),
        )];
        let lhs = "(onnx:ReduceMean@n1.0 (* -2 $x))";
        let (e, root) = run_class_rule(SCALE_OUT_OF_HOMOGENEOUS, &v, &ops, lhs);
        assert!(holds(&e, root, "(* -2 (onnx:ReduceMean@n1.0 $x))"));
        numerically_equal(&v, lhs, "(* -2 (onnx:ReduceMean@n1.0 $x))");
        // An op without semantics is opaque.
        let opaque = [("onnx:ReduceMean@n1.0", None, fixed(&[2, 1]))];
        let (e, root) = run_class_rule(SCALE_OUT_OF_HOMOGENEOUS, &v, &opaque, lhs);
        assert_eq!(e[e.find(root)].nodes.len(), 1);
    }

    #[test]
    fn concat_needs_the_same_scale_on_every_input() {
        let v = [("a", fixed(&[2, 3])), ("b", fixed(&[2, 3]))];
        let ops = [(
            "onnx:Concat@n1.0",
            Some(OpSemantics::Uniform {
                positive_only: false,
            }),
            fixed(&[4, 3]),
        )];
        let lhs = "(onnx:Concat@n1.0 (* 3 $a) (* 3 $b))";
        let (e, root) = run_class_rule(SCALE_OUT_OF_UNIFORM, &v, &ops, lhs);
        assert!(holds(&e, root, "(* 3 (onnx:Concat@n1.0 $a $b))"));
        numerically_equal(&v, lhs, "(* 3 (onnx:Concat@n1.0 $a $b))");
        let (e, root) = run_class_rule(
            SCALE_OUT_OF_UNIFORM,
            &v,
            &ops,
            "(onnx:Concat@n1.0 (* 3 $a) (* 2 $b))",
        );
        assert_eq!(e[e.find(root)].nodes.len(), 1);
    }
}
