//! Norm scale invariance, whole and decomposed.
//!
//! The rules are [`TOPIC`]'s entries.
//!
//! The decomposed norms exporters emit (`ReduceMean`, `Sub`, `Pow`,
//! `ReduceMean`, `Add ε`, `Sqrt`, `Div`; or `RMSNorm`'s `x·Reciprocal(Sqrt(…))`)
//! need no pattern of their own: `ReduceMean` is linear
//! ([`super::homogeneous`]), the difference and the `+ ε` factor out
//! ([`super::scale`]), and these rules carry `c²` through `Pow` and back to
//! `c` through `Sqrt`, where the quotient cancels it. A factor that varies
//! along the normalised axes is not a scalar, so no rule moves it.
//!
//! Complexity: per class, linear in its e-nodes and their inputs' e-nodes.

use egg::Id;

use super::class::{
    Child, ClassRule, children_with, onnx_node, onnx_nodes, scalar, scaled_forms, times,
};
use super::entry::{Kind, Pass, Rule, Topic};
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
            let args = children_with(
                &children,
                &[(*input, Child::Class(inner)), (*eps, Child::Built(e))],
            );
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
            let args = children_with(&children, &[(0, Child::Class(inner))]);
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

/// The rules. Examples: `$x` `[2, 4]` with `$g`, `$b` `[4]` for the norm;
/// `$px` `[2, 3]`, positive, for the unary ops.
#[rustfmt::skip]
pub const TOPIC: Topic = Topic {
    name: "norm",
    summary: "Norm scale invariance, whole (a declared norm takes c into its ε) and decomposed (Pow, Sqrt and Reciprocal carry c through, so the quotient cancels it).",
    pass: Pass::Fuse,
    context: "$x: f32[2, 4]\n$g: f32[4]\n$b: f32[4]\n$px: f32[2, 3]\n\
              onnx:LayerNormalization@n1.0: f32[2, 4] norm input=0 eps=3\n\
              onnx:Pow@n2.0: f32[2, 3] power 2\n\
              onnx:Sqrt@n3.0: f32[2, 3] sqrt\n\
              onnx:Reciprocal@n4.0: f32[2, 3] reciprocal",
    rules: &[
        Rule { when: "c > 0; N a declared norm (LayerNormalization, RMSNormalization, …)",
               examples: &[("(onnx:LayerNormalization@n1.0 (* 4 $x) $g $b 1/100)", "(onnx:LayerNormalization@n1.0 $x $g $b 1/1600)")],
               // LN(−c·x) = −LN(x) ≠ LN(x).
               non_examples: &["(onnx:LayerNormalization@n1.0 (* -4 $x) $g $b 1/100)"],
               ..Rule::new("norm-absorbs-scale", "N(c·x, …; ε) = N(x, …; ε/c²)", Kind::Class(NORM_ABSORBS_SCALE)) },
        Rule { when: "p a constant integer, c ≠ 0",
               examples: &[("(onnx:Pow@n2.0 (* -3 $px) 2)", "(* 9 (onnx:Pow@n2.0 $px 2))")],
               non_examples: &["(onnx:Pow@n2.0 (* 0 $px) 2)"],
               ..Rule::new("pow-of-scaled", "Pow(c·x, p) = cᵖ·Pow(x, p)", Kind::Class(POW_OF_SCALED)) },
        Rule { when: "c > 0 with a rational square root",
               examples: &[("(onnx:Sqrt@n3.0 (* 9/4 $px))", "(* 3/2 (onnx:Sqrt@n3.0 $px))")],
               // √2 is irrational: no exact factor.
               non_examples: &["(onnx:Sqrt@n3.0 (* 2 $px))", "(onnx:Sqrt@n3.0 (* -4 $px))"],
               ..Rule::new("sqrt-of-scaled", "Sqrt(c·x) = √c·Sqrt(x)", Kind::Class(SQRT_OF_SCALED)) },
        Rule { when: "c ≠ 0",
               examples: &[("(onnx:Reciprocal@n4.0 (* -4 $px))", "(* -1/4 (onnx:Reciprocal@n4.0 $px))")],
               non_examples: &["(onnx:Reciprocal@n4.0 (* 0 $px))"],
               ..Rule::new("reciprocal-of-scaled", "Reciprocal(c·x) = (1/c)·Reciprocal(x)", Kind::Class(RECIPROCAL_OF_SCALED)) },
    ],
};
