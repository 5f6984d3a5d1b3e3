//! Scalar algebra on elementwise terms: canonical placement of scalar
//! factors, combining them, and factoring them out of sums, products and
//! quotients so they can travel to where they are absorbed.
//!
//! ```text
//! mul-scalar-first            (* ?x ?c)          => (* ?c ?x)                          x·c = c·x
//! mul-one                     (* 1 ?x)           => ?x                                 1·x = x
//! combine-scalars             (* ?c (* ?d ?x))   => (* (* ?c ?d) ?x)                   c·(d·x) = (cd)·x
//! factor-sum-left             (+ (* ?c ?a) (* ?d ?b)) => (* ?c (+ ?a (* (/ ?d ?c) ?b)))   c·a + d·b = c·(a + (d/c)·b)
//! factor-sum-right            (+ (* ?c ?a) (* ?d ?b)) => (* ?d (+ (* (/ ?c ?d) ?a) ?b))   c·a + d·b = d·((c/d)·a + b)
//! factor-sum-bias-left        (+ (* ?c ?a) ?k)        => (* ?c (+ ?a (* (/ 1 ?c) ?k)))    c·a + k = c·(a + k/c)
//! factor-sum-bias-right       (+ ?k (* ?c ?a))        => (* ?c (+ (* (/ 1 ?c) ?k) ?a))    k + c·a = c·(k/c + a)
//! factor-difference-left      (- (* ?c ?a) (* ?d ?b)) => (* ?c (- ?a (* (/ ?d ?c) ?b)))   c·a − d·b = c·(a − (d/c)·b)
//! factor-difference-right     (- (* ?c ?a) (* ?d ?b)) => (* ?d (- (* (/ ?c ?d) ?a) ?b))   c·a − d·b = d·((c/d)·a − b)
//! factor-difference-bias      (- (* ?c ?a) ?k)        => (* ?c (- ?a (* (/ 1 ?c) ?k)))    c·a − k = c·(a − k/c)
//! distribute-over-bias-right  (* ?c (+ ?a ?k))   => (+ (* ?c ?a) (* ?c ?k))            c·(a + k) = c·a + c·k
//! distribute-over-bias-left   (* ?c (+ ?k ?a))   => (+ (* ?c ?k) (* ?c ?a))            c·(k + a) = c·k + c·a
//! distribute-over-difference  (* ?c (- ?a ?k))   => (- (* ?c ?a) (* ?c ?k))            c·(a − k) = c·a − c·k
//! scalar-out-of-product-left  (* (* ?c ?a) ?b)   => (* ?c (* ?a ?b))                   (c·a)·b = c·(a·b)
//! scalar-out-of-product-right (* ?a (* ?c ?b))   => (* ?c (* ?a ?b))                   a·(c·b) = c·(a·b)
//! scalar-into-weight-factor   (* ?c (* ?a ?k))   => (* ?a (* ?c ?k))                   c·(a·k) = a·(c·k)
//! scalar-into-weight-factor-left (* ?c (* ?k ?a)) => (* (* ?c ?k) ?a)                   c·(k·a) = (c·k)·a
//! scalar-into-weight-of-product  (* (* ?c ?a) ?k) => (* ?a (* ?c ?k))                   (c·a)·k = a·(c·k)
//! scalar-out-of-numerator     (/ (* ?c ?a) ?b)   => (* ?c (/ ?a ?b))                   (c·a)/b = c·(a/b)
//! scalar-out-of-denominator   (/ ?b (* ?d ?a))   => (* (/ 1 ?d) (/ ?b ?a))             b/(d·a) = (1/d)·(b/a)
//! combine-like-terms          (… x …) + (… c·x …) ⇒ (… …) + (… (1+c)·x …)            (a class rule)
//! ```
//!
//! `combine-like-terms` finds a term `x` of one operand's sum and a term
//! `c·x` of the other's, each up to [`MAX_LIKE_TERM_DEPTH`] sums down (PA's
//! own-state term `γ₀·x` and the skip `x`), and drops `x`, leaving
//! `(1 + c)·x`: one `+` fewer, and `1 + c` rides with the stream's other
//! scales. It is not offered when `1 + c = 0`, and gives a class at most
//! [`MAX_LIKE_TERM_RHS`] right-hand sides.
//!
//! A sum is factored only when both sides carry a scale (or one side is a
//! weight, which takes the inverse scale for free): a scale on one computed
//! side is for its producer to absorb, and factoring it out would add a
//! scale to the other side. This keeps the number of scaled forms of a
//! residual stream's value from growing with depth.
//!
//! `c`, `d` are known scalars (`c ≠ 0` where it divides), `k` is a weight
//! (computed from constants alone: the compiler folds `c·k`), `a`, `b` are
//! computed at inference (not weights). These are equalities for every such
//! value; which direction a scale should go is the cost model's choice.
//!
//! Policy: no blanket commutativity, associativity or distributivity. Scalars
//! only move outwards (factoring) or into weights (the bias rules): the
//! guards keep `(+ (* c a) k)` and `(* c (+ a k/c))` from generating new
//! terms forever, since combining brings each back to a class that exists.
//!
//! Complexity: building the table parses a few patterns.

use std::sync::LazyLock;

use egg::{Id, Subst, Var};

use super::class::{ClassRule, scaled_forms};
use super::{RuleError, TensorRewrite, rule};
use crate::analysis::TensorEGraph;
use crate::checked::Rhs;
use crate::lang::{Scalar, TensorLang};

/// The pattern variable `name`: the guards' own parsed once (parsing
/// interns a symbol, which took 8% of a 200-block fusion), others parsed.
fn var(name: &str) -> Option<Var> {
    static VARS: LazyLock<Vec<(&'static str, Var)>> = LazyLock::new(|| {
        ["?a", "?b", "?c", "?d", "?k", "?x"]
            .into_iter()
            .filter_map(|n| Some((n, n.parse().ok()?)))
            .collect()
    });
    VARS.iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .or_else(|| name.parse().ok())
}

/// The class bound to `name`, if any.
fn bound(subst: &Subst, name: &str) -> Option<Id> {
    subst.get(var(name)?).copied()
}

/// Whether `name` is bound to a known scalar (non-zero when `nonzero`).
fn is_scalar(egraph: &TensorEGraph, subst: &Subst, name: &str, nonzero: bool) -> bool {
    bound(subst, name)
        .and_then(|id| egraph[id].data.constant.as_ref())
        .is_some_and(|c| !nonzero || !c.is_zero())
}

/// Whether `name` is bound to a weight (computed from constants alone).
fn is_weight(egraph: &TensorEGraph, subst: &Subst, name: &str) -> bool {
    bound(subst, name).is_some_and(|id| egraph[id].data.weight)
}

/// Whether `name` is bound to a value computed at inference.
fn is_computed(egraph: &TensorEGraph, subst: &Subst, name: &str) -> bool {
    bound(subst, name).is_some_and(|id| !egraph[id].data.weight)
}

fn c_scalar_x_not(e: &TensorEGraph, _: Id, s: &Subst) -> bool {
    is_scalar(e, s, "?c", false) && !is_scalar(e, s, "?x", false)
}

fn c_one(e: &TensorEGraph, _: Id, s: &Subst) -> bool {
    bound(s, "?c")
        .and_then(|id| e[id].data.constant.as_ref())
        .is_some_and(crate::lang::Scalar::is_one)
}

fn c_d_scalars_x_not(e: &TensorEGraph, _: Id, s: &Subst) -> bool {
    is_scalar(e, s, "?c", false) && is_scalar(e, s, "?d", false) && !is_scalar(e, s, "?x", false)
}

fn c_nonzero_a_computed_k_weight(e: &TensorEGraph, _: Id, s: &Subst) -> bool {
    is_scalar(e, s, "?c", true) && is_computed(e, s, "?a") && is_weight(e, s, "?k")
}

/// A sum of two scaled computed terms: factoring moves one scale out (which
/// one is the cost model's choice: the skip's scale rides the stream).
fn both_scaled(e: &TensorEGraph, _: Id, s: &Subst) -> bool {
    is_scalar(e, s, "?c", true)
        && is_scalar(e, s, "?d", true)
        && is_computed(e, s, "?a")
        && is_computed(e, s, "?b")
}

fn d_nonzero_a_computed(e: &TensorEGraph, _: Id, s: &Subst) -> bool {
    is_scalar(e, s, "?d", true) && is_computed(e, s, "?a")
}

fn c_scalar_k_weight_a_computed(e: &TensorEGraph, _: Id, s: &Subst) -> bool {
    is_scalar(e, s, "?c", false) && is_weight(e, s, "?k") && is_computed(e, s, "?a")
}

fn c_scalar_a_b_computed(e: &TensorEGraph, _: Id, s: &Subst) -> bool {
    is_scalar(e, s, "?c", false) && is_computed(e, s, "?a") && is_computed(e, s, "?b")
}

fn c_scalar_a_computed(e: &TensorEGraph, _: Id, s: &Subst) -> bool {
    is_scalar(e, s, "?c", false) && is_computed(e, s, "?a")
}

/// How many sums deep `combine-like-terms` looks for `c·x`.
pub const MAX_LIKE_TERM_DEPTH: usize = 4;

/// The most right-hand sides `combine-like-terms` gives one class.
pub const MAX_LIKE_TERM_RHS: usize = 16;

/// A way down a sum: each step is `(the sum's other operand, it is on the
/// left)`, from the top down.
type SumPath = Vec<(Id, bool)>;

/// The terms of the sum `id` reached through at most `depth` sums (`id`
/// itself first, with an empty path), with how to reach them.
fn sum_leaves(egraph: &TensorEGraph, id: Id, depth: usize, out: &mut Vec<(SumPath, Id)>) {
    fn walk(
        egraph: &TensorEGraph,
        id: Id,
        depth: usize,
        path: &mut SumPath,
        out: &mut Vec<(SumPath, Id)>,
    ) {
        let id = egraph.find(id);
        out.push((path.clone(), id));
        if depth == 0 {
            return;
        }
        for node in &egraph[id].nodes {
            let TensorLang::Add([a, b]) = node else {
                continue;
            };
            for (down, other, other_left) in [(*a, *b, false), (*b, *a, true)] {
                path.push((egraph.find(other), other_left));
                walk(egraph, down, depth - 1, path, out);
                path.pop();
            }
        }
    }
    walk(egraph, id, depth, &mut Vec::new(), out);
}

/// Rebuilds the sum along `path` (from the top down) with `leaf` in place
/// of the term it reaches; `None` as `leaf` drops that term (the last sum
/// on the path becomes its other operand). Returns the new top.
fn rebuild(rhs: &mut Rhs, path: &[(Id, bool)], leaf: Option<Id>) -> Option<Id> {
    let mut term = leaf;
    for &(other, other_left) in path.iter().rev() {
        let o = rhs.class(other);
        term = Some(match term {
            None => o,
            Some(t) => rhs.node(TensorLang::Add(if other_left { [o, t] } else { [t, o] })),
        });
    }
    term
}

/// `combine-like-terms`: a term `x` of one operand of a sum and a term
/// `c·x` of the other become one term `(1 + c)·x`.
fn combine_like_terms(egraph: &TensorEGraph, id: Id) -> Vec<Rhs> {
    let mut out = Vec::new();
    for node in &egraph[id].nodes {
        let TensorLang::Add([lhs, rhs_operand]) = node else {
            continue;
        };
        let (mut left, mut right) = (Vec::new(), Vec::new());
        sum_leaves(egraph, *lhs, MAX_LIKE_TERM_DEPTH, &mut left);
        sum_leaves(egraph, *rhs_operand, MAX_LIKE_TERM_DEPTH, &mut right);
        // (the side holding x, the side holding c·x, x's side is the left)
        for (plain, scaled, plain_left) in [(&left, &right, true), (&right, &left, false)] {
            for (scaled_path, t) in scaled {
                for (c, x) in scaled_forms(egraph, *t) {
                    let one_plus_c = &Scalar::from_integer(1) + &c;
                    if one_plus_c.is_zero() || egraph[x].data.constant.is_some() {
                        continue;
                    }
                    for (plain_path, _) in plain.iter().filter(|(_, y)| *y == x) {
                        let mut rhs = Rhs::new();
                        let factor = rhs.node(TensorLang::Num(one_plus_c.clone()));
                        let xc = rhs.class(x);
                        let combined = rhs.node(TensorLang::Mul([factor, xc]));
                        let with_combined = rebuild(&mut rhs, scaled_path, Some(combined));
                        let without_x = rebuild(&mut rhs, plain_path, None);
                        match (with_combined, without_x) {
                            (Some(with), Some(rest)) => {
                                rhs.node(TensorLang::Add(if plain_left {
                                    [rest, with]
                                } else {
                                    [with, rest]
                                }));
                            }
                            // x was the whole operand: the sum is the other one.
                            (Some(_), None) => {}
                            _ => continue,
                        }
                        out.push(rhs);
                        if out.len() >= MAX_LIKE_TERM_RHS {
                            return out;
                        }
                    }
                }
            }
        }
    }
    out
}

/// `combine-like-terms` (see the table above).
pub const COMBINE_LIKE_TERMS: ClassRule = ClassRule {
    name: "combine-like-terms",
    find: combine_like_terms,
};

/// The scalar-algebra rules.
///
/// # Errors
/// [`RuleError`] if a pattern does not parse (a bug, caught by the tests).
pub fn scale_rules() -> Result<Vec<TensorRewrite>, RuleError> {
    Ok(vec![
        rule!("mul-scalar-first";            "(* ?x ?c)"        => "(* ?c ?x)"                      if c_scalar_x_not)?,
        rule!("mul-one";                     "(* ?c ?x)"        => "?x"                             if c_one)?,
        rule!("combine-scalars";             "(* ?c (* ?d ?x))" => "(* (* ?c ?d) ?x)"               if c_d_scalars_x_not)?,
        rule!("factor-sum-left";             "(+ (* ?c ?a) (* ?d ?b))" => "(* ?c (+ ?a (* (/ ?d ?c) ?b)))" if both_scaled)?,
        rule!("factor-sum-right";            "(+ (* ?c ?a) (* ?d ?b))" => "(* ?d (+ (* (/ ?c ?d) ?a) ?b))" if both_scaled)?,
        rule!("factor-sum-bias-left";        "(+ (* ?c ?a) ?k)"        => "(* ?c (+ ?a (* (/ 1 ?c) ?k)))"  if c_nonzero_a_computed_k_weight)?,
        rule!("factor-sum-bias-right";       "(+ ?k (* ?c ?a))"        => "(* ?c (+ (* (/ 1 ?c) ?k) ?a))"  if c_nonzero_a_computed_k_weight)?,
        rule!("factor-difference-left";      "(- (* ?c ?a) (* ?d ?b))" => "(* ?c (- ?a (* (/ ?d ?c) ?b)))" if both_scaled)?,
        rule!("factor-difference-right";     "(- (* ?c ?a) (* ?d ?b))" => "(* ?d (- (* (/ ?c ?d) ?a) ?b))" if both_scaled)?,
        rule!("factor-difference-bias";      "(- (* ?c ?a) ?k)"        => "(* ?c (- ?a (* (/ 1 ?c) ?k)))"  if c_nonzero_a_computed_k_weight)?,
        rule!("distribute-over-bias-right";  "(* ?c (+ ?a ?k))" => "(+ (* ?c ?a) (* ?c ?k))"        if c_scalar_k_weight_a_computed)?,
        rule!("distribute-over-bias-left";   "(* ?c (+ ?k ?a))" => "(+ (* ?c ?k) (* ?c ?a))"        if c_scalar_k_weight_a_computed)?,
        rule!("distribute-over-difference";  "(* ?c (- ?a ?k))" => "(- (* ?c ?a) (* ?c ?k))"        if c_scalar_k_weight_a_computed)?,
        rule!("scalar-out-of-product-left";  "(* (* ?c ?a) ?b)" => "(* ?c (* ?a ?b))"               if c_scalar_a_b_computed)?,
        rule!("scalar-out-of-product-right"; "(* ?a (* ?c ?b))" => "(* ?c (* ?a ?b))"               if c_scalar_a_b_computed)?,
        rule!("scalar-into-weight-factor";   "(* ?c (* ?a ?k))" => "(* ?a (* ?c ?k))"               if c_scalar_k_weight_a_computed)?,
        rule!("scalar-into-weight-factor-left"; "(* ?c (* ?k ?a))" => "(* (* ?c ?k) ?a)"            if c_scalar_k_weight_a_computed)?,
        rule!("scalar-into-weight-of-product"; "(* (* ?c ?a) ?k)" => "(* ?a (* ?c ?k))"             if c_scalar_k_weight_a_computed)?,
        rule!("scalar-out-of-numerator";     "(/ (* ?c ?a) ?b)" => "(* ?c (/ ?a ?b))"               if c_scalar_a_computed)?,
        rule!("scalar-out-of-denominator";   "(/ ?b (* ?d ?a))" => "(* (/ 1 ?d) (/ ?b ?a))"         if d_nonzero_a_computed)?,
        COMBINE_LIKE_TERMS.rewrite()?,
    ])
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use egg::{RecExpr, Runner};

    use super::*;
    use crate::lang::{TensorLang, ValueRef};
    use crate::shape::fixed;
    use crate::testing::eval::{Rng, eval};
    use crate::testing::{add, expr, graph};

    /// Each rule with an instance of its left-hand side and the right-hand
    /// side it must add (`$a`, `$b`, `$x`: computed `[2, 3]`; `$k`: a weight).
    const CASES: &[(&str, &str, &str)] = &[
        ("mul-scalar-first", "(* $x 3)", "(* 3 $x)"),
        ("mul-one", "(* 1 $x)", "$x"),
        ("combine-scalars", "(* 2 (* 3/4 $x))", "(* 3/2 $x)"),
        (
            "factor-sum-left",
            "(+ (* 2 $a) (* 3 $b))",
            "(* 2 (+ $a (* 3/2 $b)))",
        ),
        (
            "factor-sum-right",
            "(+ (* 2 $a) (* 3 $b))",
            "(* 3 (+ (* 2/3 $a) $b))",
        ),
        (
            "factor-sum-bias-left",
            "(+ (* 4 $a) $k)",
            "(* 4 (+ $a (* 1/4 $k)))",
        ),
        (
            "factor-sum-bias-right",
            "(+ $k (* 4 $a))",
            "(* 4 (+ (* 1/4 $k) $a))",
        ),
        (
            "factor-difference-left",
            "(- (* 2 $a) (* -3 $b))",
            "(* 2 (- $a (* -3/2 $b)))",
        ),
        (
            "factor-difference-right",
            "(- (* 2 $a) (* -3 $b))",
            "(* -3 (- (* -2/3 $a) $b))",
        ),
        (
            "factor-difference-bias",
            "(- (* 4 $a) $k)",
            "(* 4 (- $a (* 1/4 $k)))",
        ),
        (
            "distribute-over-bias-right",
            "(* 5 (+ $a $k))",
            "(+ (* 5 $a) (* 5 $k))",
        ),
        (
            "distribute-over-bias-left",
            "(* 5 (+ $k $a))",
            "(+ (* 5 $k) (* 5 $a))",
        ),
        (
            "distribute-over-difference",
            "(* 5 (- $a $k))",
            "(- (* 5 $a) (* 5 $k))",
        ),
        (
            "scalar-out-of-product-left",
            "(* (* 2 $a) $b)",
            "(* 2 (* $a $b))",
        ),
        (
            "scalar-out-of-product-right",
            "(* $a (* 2 $b))",
            "(* 2 (* $a $b))",
        ),
        (
            "scalar-into-weight-factor",
            "(* 2 (* $a $k))",
            "(* $a (* 2 $k))",
        ),
        (
            "scalar-into-weight-factor-left",
            "(* 2 (* $k $a))",
            "(* (* 2 $k) $a)",
        ),
        (
            "scalar-into-weight-of-product",
            "(* (* 2 $a) $k)",
            "(* $a (* 2 $k))",
        ),
        (
            "scalar-out-of-numerator",
            "(/ (* 2 $a) $b)",
            "(* 2 (/ $a $b))",
        ),
        (
            "scalar-out-of-denominator",
            "(/ $b (* 4 $a))",
            "(* 1/4 (/ $b $a))",
        ),
        (
            "combine-like-terms",
            "(+ $x (+ (+ (* 1/2 $x) (* 2 $a)) $b))",
            "(+ (+ (* 3/2 $x) (* 2 $a)) $b)",
        ),
    ];

    fn run_one(name: &str, lhs: &str) -> (crate::analysis::TensorEGraph, egg::Id) {
        let s = fixed(&[2, 3]);
        let mut g = graph(&[
            ("a", s.clone()),
            ("b", s.clone()),
            ("x", s.clone()),
            ("k", s),
        ]);
        g.declare_weight(ValueRef::new("k").unwrap()).unwrap();
        let root = add(&mut g, lhs);
        let rule = scale_rules()
            .unwrap()
            .into_iter()
            .find(|r| r.name.as_str() == name)
            .unwrap_or_else(|| panic!("no rule {name}"));
        let runner = Runner::default()
            .with_egraph(g.into_egraph())
            .with_iter_limit(1)
            .run(std::slice::from_ref(&rule));
        assert!(runner.egraph.analysis.refusals().is_empty(), "{name}");
        (runner.egraph, root)
    }

    #[test]
    fn every_rule_has_a_case_and_a_distinct_name() {
        let names: Vec<String> = scale_rules()
            .unwrap()
            .iter()
            .map(|r| r.name.to_string())
            .collect();
        let cases: Vec<&str> = CASES.iter().map(|c| c.0).collect();
        assert_eq!(names, cases);
    }

    #[test]
    fn each_rule_adds_its_right_hand_side() {
        for &(name, lhs, rhs) in CASES {
            let (egraph, root) = run_one(name, lhs);
            assert_eq!(
                egraph.lookup_expr(&expr(rhs)),
                Some(egraph.find(root)),
                "{name}: {lhs} should equal {rhs}"
            );
        }
    }

    #[test]
    fn each_rule_is_an_equality_on_random_tensors() {
        for &(name, lhs, rhs) in CASES {
            for seed in 0..3 {
                let mut rng = Rng(seed + 17);
                let env: HashMap<String, _> = ["$a", "$b", "$x", "$k"]
                    .into_iter()
                    .map(|n| (n.to_owned(), rng.tensor(&[2, 3])))
                    .collect();
                let (l, r): (RecExpr<TensorLang>, RecExpr<TensorLang>) = (expr(lhs), expr(rhs));
                let (l, r) = (eval(&l, &env, 1), eval(&r, &env, 1));
                for (p, q) in l.data.iter().zip(&r.data) {
                    assert!(
                        (p - q).abs() <= 1e-12 * p.abs().max(1.0),
                        "{name}: {p} vs {q}"
                    );
                }
            }
        }
    }

    #[test]
    fn like_terms_combine_wherever_they_sit_in_either_operand() {
        for (lhs, rhs) in [
            // PA alone: (f + x) + (γ₀·x + γ₁·x₁).
            (
                "(+ (+ $a $x) (+ (* 1/2 $x) $b))",
                "(+ $a (+ (* 3/2 $x) $b))",
            ),
            // The scaled term on the left, x two sums down on the right.
            ("(+ (* 2 $x) (+ $b (+ $x $a)))", "(+ (* 3 $x) (+ $b $a))"),
            // Directly: x + c·x.
            ("(+ $x (* -3 $x))", "(* -2 $x)"),
        ] {
            let (egraph, root) = run_one("combine-like-terms", lhs);
            assert_eq!(
                egraph.lookup_expr(&expr(rhs)),
                Some(egraph.find(root)),
                "{lhs} should equal {rhs}"
            );
            let mut rng = Rng(5);
            let env: HashMap<String, _> = ["$a", "$b", "$x"]
                .into_iter()
                .map(|n| (n.to_owned(), rng.tensor(&[2, 3])))
                .collect();
            let (l, r) = (eval(&expr(lhs), &env, 1), eval(&expr(rhs), &env, 1));
            for (p, q) in l.data.iter().zip(&r.data) {
                assert!(
                    (p - q).abs() <= 1e-12 * p.abs().max(1.0),
                    "{lhs}: {p} vs {q}"
                );
            }
        }
    }

    #[test]
    fn guards_keep_rules_from_firing_where_they_do_not_apply() {
        for (name, lhs) in [
            // Only one side scaled: the producer absorbs it, nothing is factored.
            ("factor-sum-right", "(+ $a (* 3 $b))"),
            ("factor-sum-left", "(+ (* 3 $a) $b)"),
            // Dividing by zero.
            ("factor-sum-bias-left", "(+ (* 0 $a) $k)"),
            // A weight on the wrong side of the bias rules.
            ("distribute-over-bias-right", "(* 5 (+ $a $b))"),
            // Scalars stay out of computed products only.
            ("scalar-out-of-product-left", "(* (* 2 $a) $k)"),
            ("mul-one", "(* 2 $x)"),
            // `1 + c = 0`; a scaled term of another value; deeper than the limit.
            ("combine-like-terms", "(+ $x (+ (* -1 $x) $a))"),
            ("combine-like-terms", "(+ $x (+ (* 2 $a) $b))"),
            (
                "combine-like-terms",
                "(+ $x (+ (+ (+ (+ (+ (* 2 $x) $a) $b) $a) $b) $a))",
            ),
        ] {
            let (egraph, root) = run_one(name, lhs);
            assert_eq!(
                egraph[egraph.find(root)].nodes.len(),
                1,
                "{name} fired on {lhs}: {:?}",
                egraph[egraph.find(root)].nodes
            );
        }
    }
}
