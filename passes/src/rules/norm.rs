//! Norm scale invariance, whole and decomposed.
//!
//! | rule | rewrite | guard |
//! |---|---|---|
//! | `norm-absorbs-scale` | `N(c·x, …; ε) ⇒ N(x, …; ε/c²)` | `c > 0`; `N` a declared norm (`LayerNormalization`, `RMSNormalization`, …) |
//! | `pow-of-scaled` | `Pow(c·x, p) ⇒ c^p·Pow(x, p)` | `p` a constant integer, `c ≠ 0` |
//! | `sqrt-of-scaled` | `Sqrt(c·x) ⇒ √c·Sqrt(x)` | `c > 0` with a rational root |
//! | `reciprocal-of-scaled` | `Reciprocal(c·x) ⇒ (1/c)·Reciprocal(x)` | `c ≠ 0` |
//!
//! The decomposed norms exporters emit (`ReduceMean`, `Sub`, `Pow`,
//! `ReduceMean`, `Add ε`, `Sqrt`, `Div`; or `RMSNorm`'s `x·Reciprocal(Sqrt(…))`)
//! need no pattern of their own: `ReduceMean` is linear
//! ([`super::homogeneous`]), the difference and the `+ ε` factor out
//! ([`super::scale`]), and these rules carry `c²` through `Pow` and back to
//! `c` through `Sqrt`, where the quotient cancels it. A factor that varies
//! along the normalised axes is not a scalar, so no rule moves it.
//!
//! Examples (before → after):
//! - `(onnx:LayerNormalization@n7.0 (* 4 $x) $g $b 1/100000)` →
//!   `(onnx:LayerNormalization@n7.0 $x $g $b 1/1600000)`;
//! - `(onnx:Sqrt@n8.0 (* 4 $v))` → `(* 2 (onnx:Sqrt@n8.0 $v))`.
//!
//! Complexity: per class, linear in its e-nodes and their inputs' e-nodes.

use egg::Id;

use super::class::{Child, ClassRule, onnx_node, onnx_nodes, scalar, scaled_forms, times};
use crate::analysis::TensorEGraph;
use crate::checked::Rhs;
use crate::lang::{Scalar, TensorLang};
use crate::semantics::OpSemantics;

fn norm(egraph: &TensorEGraph, id: Id) -> Vec<Rhs> {
    let mut out = Vec::new();
    for (op, children, sem) in onnx_nodes(egraph, id) {
        let OpSemantics::Norm { input, eps } = sem else {
            continue;
        };
        let (Some(&x), Some(eps_class)) = (children.get(*input), children.get(*eps)) else {
            continue;
        };
        let Some(epsilon) = scalar(egraph, *eps_class) else {
            continue;
        };
        for (c, inner) in scaled_forms(egraph, x) {
            if !c.is_positive() {
                continue;
            }
            let Some(new_eps) = (&c * &c).recip().map(|r| epsilon * &r) else {
                continue;
            };
            let mut rhs = Rhs::new();
            let e = rhs.node(TensorLang::Num(new_eps));
            let args: Vec<Child> = children
                .iter()
                .enumerate()
                .map(|(j, &k)| {
                    if j == *input {
                        Child::Class(inner)
                    } else if j == *eps {
                        Child::Built(e)
                    } else {
                        Child::Class(k)
                    }
                })
                .collect();
            onnx_node(&mut rhs, op, &args);
            out.push(rhs);
        }
    }
    out
}

/// `g(c·x, rest) ⇒ k(c)·g(x, rest)` for the unary ops of `kind`.
fn unary(
    egraph: &TensorEGraph,
    id: Id,
    factor: fn(&OpSemantics, &Scalar) -> Option<Scalar>,
) -> Vec<Rhs> {
    let mut out = Vec::new();
    for (op, children, sem) in onnx_nodes(egraph, id) {
        let Some(&x) = children.first() else {
            continue;
        };
        for (c, inner) in scaled_forms(egraph, x) {
            let Some(k) = factor(sem, &c) else {
                continue;
            };
            let mut rhs = Rhs::new();
            let args: Vec<Child> = children
                .iter()
                .enumerate()
                .map(|(j, &ch)| Child::Class(if j == 0 { inner } else { ch }))
                .collect();
            let g = onnx_node(&mut rhs, op, &args);
            times(&mut rhs, &k, g);
            out.push(rhs);
        }
    }
    out
}

fn pow_factor(sem: &OpSemantics, c: &Scalar) -> Option<Scalar> {
    match sem {
        OpSemantics::Power { exponent } if !c.is_zero() => c.powi(*exponent),
        _ => None,
    }
}

fn sqrt_factor(sem: &OpSemantics, c: &Scalar) -> Option<Scalar> {
    match sem {
        OpSemantics::Sqrt if c.is_positive() => c.sqrt_exact(),
        _ => None,
    }
}

fn reciprocal_factor(sem: &OpSemantics, c: &Scalar) -> Option<Scalar> {
    match sem {
        OpSemantics::Reciprocal => c.recip(),
        _ => None,
    }
}

/// `norm-absorbs-scale`: `N(c·x; ε) ⇒ N(x; ε/c²)` for `c > 0`.
pub const NORM_ABSORBS_SCALE: ClassRule = ClassRule {
    name: "norm-absorbs-scale",
    find: norm,
};

/// `pow-of-scaled`: `Pow(c·x, p) ⇒ c^p·Pow(x, p)`.
pub const POW_OF_SCALED: ClassRule = ClassRule {
    name: "pow-of-scaled",
    find: |e, id| unary(e, id, pow_factor),
};

/// `sqrt-of-scaled`: `Sqrt(c·x) ⇒ √c·Sqrt(x)` for `c > 0` with a rational root.
pub const SQRT_OF_SCALED: ClassRule = ClassRule {
    name: "sqrt-of-scaled",
    find: |e, id| unary(e, id, sqrt_factor),
};

/// `reciprocal-of-scaled`: `Reciprocal(c·x) ⇒ (1/c)·Reciprocal(x)`.
pub const RECIPROCAL_OF_SCALED: ClassRule = ClassRule {
    name: "reciprocal-of-scaled",
    find: |e, id| unary(e, id, reciprocal_factor),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::class::tests::{holds, numerically_equal, run_class_rule};
    use crate::shape::fixed;

    fn ln_values() -> [(&'static str, crate::shape::Shape); 3] {
        [
            ("x", fixed(&[2, 4])),
            ("g", fixed(&[4])),
            ("b", fixed(&[4])),
        ]
    }

    fn ln() -> [(&'static str, Option<OpSemantics>, crate::shape::Shape); 1] {
        [(
            "onnx:LayerNormalization@n1.0",
            Some(OpSemantics::Norm { input: 0, eps: 3 }),
            fixed(&[2, 4]),
        )]
    }

    #[test]
    fn a_norm_absorbs_a_positive_scale_into_epsilon() {
        let lhs = "(onnx:LayerNormalization@n1.0 (* 4 $x) $g $b 1/100)";
        let rhs = "(onnx:LayerNormalization@n1.0 $x $g $b 1/1600)";
        let (e, root) = run_class_rule(NORM_ABSORBS_SCALE, &ln_values(), &ln(), lhs);
        assert!(holds(&e, root, rhs));
        numerically_equal(&ln_values(), lhs, rhs);
    }

    #[test]
    fn a_norm_keeps_a_negative_scale() {
        let lhs = "(onnx:LayerNormalization@n1.0 (* -4 $x) $g $b 1/100)";
        let (e, root) = run_class_rule(NORM_ABSORBS_SCALE, &ln_values(), &ln(), lhs);
        assert_eq!(e[e.find(root)].nodes.len(), 1, "LN(−c·x) = −LN(x) ≠ LN(x)");
    }

    #[test]
    fn pow_sqrt_and_reciprocal_carry_the_scale() {
        let v = [("px", fixed(&[2, 3])), ("two", fixed(&[]))];
        let cases = [
            (
                POW_OF_SCALED,
                "onnx:Pow@n1.0",
                OpSemantics::Power { exponent: 2 },
                "(onnx:Pow@n1.0 (* -3 $px) 2)",
                "(* 9 (onnx:Pow@n1.0 $px 2))",
            ),
            (
                SQRT_OF_SCALED,
                "onnx:Sqrt@n1.0",
                OpSemantics::Sqrt,
                "(onnx:Sqrt@n1.0 (* 9/4 $px))",
                "(* 3/2 (onnx:Sqrt@n1.0 $px))",
            ),
            (
                RECIPROCAL_OF_SCALED,
                "onnx:Reciprocal@n1.0",
                OpSemantics::Reciprocal,
                "(onnx:Reciprocal@n1.0 (* -4 $px))",
                "(* -1/4 (onnx:Reciprocal@n1.0 $px))",
            ),
        ];
        for (rule, op, sem, lhs, rhs) in cases {
            let ops = [(op, Some(sem), fixed(&[2, 3]))];
            let (e, root) = run_class_rule(rule, &v, &ops, lhs);
            assert!(holds(&e, root, rhs), "{lhs}");
            numerically_equal(&v, lhs, rhs);
        }
        // √2 is irrational: no exact factor, no rewrite.
        let ops = [("onnx:Sqrt@n1.0", Some(OpSemantics::Sqrt), fixed(&[2, 3]))];
        let (e, root) = run_class_rule(SQRT_OF_SCALED, &v, &ops, "(onnx:Sqrt@n1.0 (* 2 $px))");
        assert_eq!(e[e.find(root)].nodes.len(), 1);
    }
}
