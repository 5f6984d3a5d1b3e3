//! The fused `LaurelResidual` op: a weighted sum in one pass over memory.
//!
//! The rule is [`TOPIC`]'s entry.
//!
//! Equation: a tree of `+` whose leaves are terms `tᵢ` or scaled terms
//! `cᵢ·tᵢ` (a known scalar `cᵢ`) equals `LaurelResidual(t₀, t₁, …;
//! coefficients = [c₀, c₁, …])` (`docs/laurel-op.md`); equal terms combine
//! their coefficients. The rule flattens each `+` e-node of a class (up to
//! [`MAX_SUMS`]) through classes that are sums (their first), and takes a class as a scaled term only when it has no other form
//! (a class that also has, say, a `Conv` with the scale in its weights is
//! a plain term). Where the cost model prefers the op to the `Add`s and
//! `Mul`s it replaces, extraction takes it: for PA's sums of several scaled
//! states, and for an RW scale that nothing could absorb.
//!
//! The rule runs once, after the fusion rules saturate, and only for
//! runtimes with [`crate::target::Capabilities::fused_residual`] (onnxruntime does not know the op).
//!
//! Complexity: per class, linear in the sum tree's size (at most
//! [`MAX_TERMS`] terms).

use egg::Id;

use super::class::{ClassRule, sum_terms_of};
use super::entry::{Kind, Pass, Requires, Rule, Topic};
use crate::analysis::TensorEGraph;
use crate::checked::Rhs;
use crate::lang::{Scalar, TensorLang};
use crate::shape::DType;

/// The most terms one `laurel-residual` takes.
pub const MAX_TERMS: usize = 16;

/// The most `+` e-nodes of one class the rule flattens.
pub const MAX_SUMS: usize = 8;

fn to_laurel_residual(egraph: &TensorEGraph, id: Id) -> Vec<Rhs> {
    let data = &egraph[id].data;
    // The op's coefficients are an f32 attribute: an f64 sum would lose
    // its coefficients' precision.
    let float = matches!(data.dtype, Some(DType::F16 | DType::F32));
    if !float || data.shape.is_none() || data.weight {
        return Vec::new();
    }
    // Each of the class's sums (a few), flattened: rules may have made a
    // sum of fewer or cheaper terms than the first.
    let mut found: Vec<Vec<(Scalar, Id)>> = Vec::new();
    let sums = egraph[id].nodes.iter().filter_map(|n| match n {
        TensorLang::Add(pair) => Some(pair),
        _ => None,
    });
    for pair in sums.take(MAX_SUMS) {
        let Some(terms) = sum_terms_of(egraph, *pair, MAX_TERMS) else {
            continue;
        };
        let scaled = terms.iter().any(|(c, _)| !c.is_one());
        let known = terms.iter().all(|(_, t)| egraph[*t].data.shape.is_some());
        if known && terms.len() >= 2 && (terms.len() > 2 || scaled) && !found.contains(&terms) {
            found.push(terms);
        }
    }
    found
        .into_iter()
        .map(|terms| {
            let mut rhs = Rhs::new();
            let mut children = Vec::with_capacity(2 * terms.len());
            for (c, t) in terms {
                children.push(rhs.node(TensorLang::Num(c)));
                children.push(rhs.class(t));
            }
            rhs.node(TensorLang::LaurelResidual(children));
            rhs
        })
        .collect()
}

/// `sum-to-laurel-residual`: `Σᵢ cᵢ·tᵢ ⇒ LaurelResidual(t; c)`.
pub const SUM_TO_LAUREL_RESIDUAL: ClassRule = ClassRule {
    name: "sum-to-laurel-residual",
    find: to_laurel_residual,
};

/// The rule. Examples: `$f`, `$x`, `$s` `[2, 3]`.
#[rustfmt::skip]
pub const TOPIC: Topic = Topic {
    name: "laurel_residual",
    summary: "Weighted sums into laurel-runtime's fused `LaurelResidual` op, one pass over memory.",
    pass: Pass::AfterFuse,
    context: "$f: f32[2, 3]\n$x: f32[2, 3]\n$s: f32[2, 3]",
    rules: &[
        Rule { when: "at least 3 terms, or 2 with a coefficient other than 1; f16/f32 terms of known shapes",
               requires: Requires::FusedResidual,
               examples: &[
                   ("(+ (+ $f $x) (* 1/4 $s))", "(laurel-residual 1 $f 1 $x 1/4 $s)"),
                   // Equal terms combine, scales distribute.
                   ("(+ (* -2 (+ $f $x)) (* 3 $x))", "(laurel-residual -2 $f 1 $x)"),
               ],
               non_examples: &["(+ $f $x)"],
               ..Rule::new("sum-to-laurel-residual", "Σᵢ cᵢ·tᵢ = LaurelResidual(t₀, t₁, …; coefficients = [c₀, c₁, …])", Kind::Class(SUM_TO_LAUREL_RESIDUAL)) },
    ],
};
