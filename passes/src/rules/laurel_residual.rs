//! The fused `LaurelResidual` op: a weighted sum in one pass over memory.
//!
//! | rule | rewrite | guard |
//! |---|---|---|
//! | `sum-to-laurel-residual` | `Σᵢ cᵢ·tᵢ ⇒ (laurel-residual c₀ t₀ c₁ t₁ …)` | at least 3 terms, or 2 with a coefficient other than 1; float terms of known shapes |
//!
//! Equation: a tree of `+` whose leaves are terms `tᵢ` or scaled terms
//! `cᵢ·tᵢ` (a known scalar `cᵢ`) equals `LaurelResidual(t₀, t₁, …;
//! coefficients = [c₀, c₁, …])` (`docs/laurel-op.md`); equal terms combine
//! their coefficients. The rule flattens a sum through classes that are
//! sums, and takes a class as a scaled term only when it has no other form
//! (a class that also has, say, a `Conv` with the scale in its weights is
//! a plain term). Where the cost model prefers the op to the `Add`s and
//! `Mul`s it replaces, extraction takes it: for PA's sums of several scaled
//! states, and for an RW scale that nothing could absorb.
//!
//! The rule runs once, after the fusion rules saturate, and only for
//! [`crate::fuse::Target::Tract`] (onnxruntime does not know the op).
//!
//! Example (before → after):
//! `(+ (+ $f $x) (* 1/4 $s))` → `(laurel-residual 1 $f 1 $x 1/4 $s)`.
//!
//! Complexity: per class, linear in the sum tree's size (at most
//! [`MAX_TERMS`] terms).

use egg::Id;

use super::class::{ClassRule, scalar};
use crate::analysis::TensorEGraph;
use crate::checked::Rhs;
use crate::lang::{Scalar, TensorLang};
use crate::shape::DType;

/// The most terms one `laurel-residual` takes.
pub const MAX_TERMS: usize = 16;

/// The first `+` e-node of a class whose operands are not both constants.
fn sum_node(egraph: &TensorEGraph, id: Id) -> Option<[Id; 2]> {
    egraph[id].nodes.iter().find_map(|n| match n {
        TensorLang::Add([a, b]) if scalar(egraph, *a).is_none() || scalar(egraph, *b).is_none() => {
            Some([*a, *b])
        }
        _ => None,
    })
}

/// `(c, t)` when every e-node of the class is `c·t` for one known scalar
/// `c` and one non-constant `t`.
fn scaled_only(egraph: &TensorEGraph, id: Id) -> Option<(Scalar, Id)> {
    let mut found: Option<(Scalar, Id)> = None;
    for n in &egraph[id].nodes {
        let TensorLang::Mul([p, q]) = n else {
            return None;
        };
        let (c, t) = match (scalar(egraph, *p), scalar(egraph, *q)) {
            (Some(c), None) => (c.clone(), egraph.find(*q)),
            (None, Some(c)) => (c.clone(), egraph.find(*p)),
            _ => return None,
        };
        if found.as_ref().is_none_or(|f| f.0 == c && f.1 == t) {
            found = Some((c, t));
        } else {
            return None;
        }
    }
    found
}

/// The terms of the sum rooted at `id`, coefficients multiplied by `scale`;
/// `false` when there are more than [`MAX_TERMS`] or the tree is deeper
/// than [`MAX_TERMS`] levels.
fn collect(
    egraph: &TensorEGraph,
    id: Id,
    scale: &Scalar,
    depth: usize,
    out: &mut Vec<(Scalar, Id)>,
) -> bool {
    if out.len() > MAX_TERMS || depth > MAX_TERMS {
        return false;
    }
    let id = egraph.find(id);
    if let Some([a, b]) = sum_node(egraph, id) {
        return collect(egraph, a, scale, depth + 1, out)
            && collect(egraph, b, scale, depth + 1, out);
    }
    if let Some((c, t)) = scaled_only(egraph, id) {
        return collect(egraph, t, &(&c * scale), depth + 1, out);
    }
    if let Some(term) = out.iter_mut().find(|(_, u)| *u == id) {
        term.0 = &term.0 + scale;
    } else {
        out.push((scale.clone(), id));
    }
    true
}

fn to_laurel_residual(egraph: &TensorEGraph, id: Id) -> Vec<Rhs> {
    let data = &egraph[id].data;
    let float = matches!(data.dtype, Some(DType::F16 | DType::F32 | DType::F64));
    if !float || data.shape.is_none() || data.weight || sum_node(egraph, id).is_none() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    if !collect(egraph, id, &Scalar::from_integer(1), 0, &mut terms) || terms.len() > MAX_TERMS {
        return Vec::new();
    }
    terms.retain(|(c, _)| !c.is_zero());
    let scaled = terms.iter().any(|(c, _)| !c.is_one());
    let known = terms.iter().all(|(_, t)| egraph[*t].data.shape.is_some());
    if !known || terms.len() < 2 || (terms.len() == 2 && !scaled) {
        return Vec::new();
    }
    let mut rhs = Rhs::new();
    let mut children = Vec::with_capacity(2 * terms.len());
    for (c, t) in terms {
        children.push(rhs.node(TensorLang::Num(c)));
        children.push(rhs.class(t));
    }
    rhs.node(TensorLang::LaurelResidual(children));
    vec![rhs]
}

/// `sum-to-laurel-residual`: `Σᵢ cᵢ·tᵢ ⇒ LaurelResidual(t; c)`.
pub const SUM_TO_LAUREL_RESIDUAL: ClassRule = ClassRule {
    name: "sum-to-laurel-residual",
    find: to_laurel_residual,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::class::tests::{holds, numerically_equal, run_class_rule};
    use crate::shape::fixed;

    fn values() -> [(&'static str, crate::shape::Shape); 3] {
        [
            ("f", fixed(&[2, 3])),
            ("x", fixed(&[2, 3])),
            ("s", fixed(&[2, 3])),
        ]
    }

    #[test]
    fn a_sum_of_scaled_states_becomes_one_op() {
        let lhs = "(+ (+ $f $x) (* 1/4 $s))";
        let rhs = "(laurel-residual 1 $f 1 $x 1/4 $s)";
        let (e, root) = run_class_rule(SUM_TO_LAUREL_RESIDUAL, &values(), &[], lhs);
        assert!(holds(&e, root, rhs));
        numerically_equal(&values(), lhs, rhs);
    }

    #[test]
    fn equal_terms_combine_and_scales_distribute() {
        let lhs = "(+ (* -2 (+ $f $x)) (* 3 $x))";
        let rhs = "(laurel-residual -2 $f 1 $x)";
        let (e, root) = run_class_rule(SUM_TO_LAUREL_RESIDUAL, &values(), &[], lhs);
        assert!(holds(&e, root, rhs));
        numerically_equal(&values(), lhs, rhs);
    }

    #[test]
    fn a_plain_add_of_two_terms_stays_an_add() {
        let (e, root) = run_class_rule(SUM_TO_LAUREL_RESIDUAL, &values(), &[], "(+ $f $x)");
        assert_eq!(e[e.find(root)].nodes.len(), 1);
    }
}
