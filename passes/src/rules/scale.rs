//! Scalar algebra on elementwise terms: canonical placement of scalar
//! factors, combining them, and factoring them out of sums, products and
//! quotients so they can travel to where they are absorbed.
//!
//! The rules are [`TOPIC`]'s entries (name, equation, guard, examples);
//! `docs/egraph.md` shows them as a table generated from it.
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

use super::class::{ClassRule, onnx_nodes, scaled_forms, times};
use super::entry::{Kind, Pass, Rule, Topic};
use super::{guard, pattern};
use crate::analysis::TensorEGraph;
use crate::checked::Rhs;
use crate::lang::{Scalar, TensorLang};
use crate::semantics::OpSemantics;

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

/// Two terms of one non-zero scale: the difference carries it.
fn same_scale(e: &TensorEGraph, id: Id, s: &Subst) -> bool {
    both_scaled(e, id, s)
        && bound(s, "?c")
            .zip(bound(s, "?d"))
            .and_then(|(c, d)| Some(e[c].data.constant.as_ref()? == e[d].data.constant.as_ref()?))
            .unwrap_or(false)
}

fn c_scalar_k_weight_a_computed(e: &TensorEGraph, _: Id, s: &Subst) -> bool {
    is_scalar(e, s, "?c", false) && is_weight(e, s, "?k") && is_computed(e, s, "?a")
}

fn c_scalar_a_b_computed(e: &TensorEGraph, _: Id, s: &Subst) -> bool {
    is_scalar(e, s, "?c", false) && is_computed(e, s, "?a") && is_computed(e, s, "?b")
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

/// The scaled forms of `id` whose scale is non-zero and whose term is
/// computed (a scaled weight is the weight rules' to absorb).
fn computed_forms(egraph: &TensorEGraph, id: Id) -> Vec<(Scalar, Id)> {
    scaled_forms(egraph, id)
        .into_iter()
        .filter(|(c, x)| !c.is_zero() && !egraph[*x].data.weight)
        .collect()
}

/// `scalar-out-of-quotient`: the scales of a quotient's operands, taken out
/// together. Taking them out one side at a time paired every form of the
/// numerator with every form of the denominator, each pair a new class of
/// the same value: a decomposed `LayerNorm` whose input carries k scaled
/// forms (the scale reaching it along k ways) made k² quotients, and each
/// was `c·` every other. So a side's forms come out alone only when the
/// other side has none; with forms on both sides, only pairs of one |scale|
/// (a norm's `(c·d)/(|c|·s)`), or the one form of each side, are taken.
fn out_of_quotient(egraph: &TensorEGraph, id: Id) -> Vec<Rhs> {
    let mut out = Vec::new();
    for node in &egraph[id].nodes {
        let TensorLang::Div([num, den]) = node else {
            continue;
        };
        let (top, bottom) = (computed_forms(egraph, *num), computed_forms(egraph, *den));
        let pairs: Vec<(Scalar, Id, Id)> = match (top.is_empty(), bottom.is_empty()) {
            (true, true) => continue,
            (false, true) => top
                .into_iter()
                .map(|(c, a)| (c, a, egraph.find(*den)))
                .collect(),
            (true, false) => bottom
                .into_iter()
                .filter_map(|(d, b)| Some((d.recip()?, egraph.find(*num), b)))
                .collect(),
            (false, false) => {
                let single = top.len() == 1 && bottom.len() == 1;
                top.iter()
                    .flat_map(|(c, a)| bottom.iter().map(move |(d, b)| (c, *a, d, *b)))
                    .filter(|(c, _, d, _)| single || c == d || (*c + *d).is_zero())
                    .filter_map(|(c, a, d, b)| Some((c.checked_div(d)?, a, b)))
                    .collect()
            }
        };
        for (k, a, b) in pairs {
            let mut rhs = Rhs::new();
            let (a, b) = (rhs.class(a), rhs.class(b));
            let quotient = rhs.node(TensorLang::Div([a, b]));
            if !k.is_one() {
                times(&mut rhs, &k, quotient);
            }
            out.push(rhs);
        }
    }
    out
}

/// `scalar-out-of-quotient` (see the table above).
pub const SCALAR_OUT_OF_QUOTIENT: ClassRule = ClassRule {
    name: "scalar-out-of-quotient",
    find: out_of_quotient,
};

/// Whether `id`'s class is a linear op with weights, or a product of a
/// computed value and a weight (a norm's learned scale), which takes a
/// scale into the weight at no cost (`scale-into-weights`,
/// `scalar-into-weight-factor`).
fn absorbs_scale(egraph: &TensorEGraph, id: Id) -> bool {
    if egraph[id].data.weight {
        return false;
    }
    let weighted_product = egraph[id].nodes.iter().any(|n| match n {
        TensorLang::Mul([p, q]) => {
            let (p, q) = (&egraph[*p].data, &egraph[*q].data);
            p.constant.is_none() && q.constant.is_none() && (p.weight != q.weight)
        }
        _ => false,
    });
    weighted_product
        || onnx_nodes(egraph, id).iter().any(|(_, _, sem)| {
            matches!(sem, OpSemantics::Linear { output_into, .. } if !output_into.is_empty())
        })
}

/// `factor-sum-into-linear`: `c·a + m = c·(a + (1/c)·m)` where `m` is
/// unscaled and computed by a linear op with weights, or is a product with
/// a weight, which absorbs `1/c`: RW+LR's `β·x + B(A(x))` keeps `β` on the
/// stream, not on `x`, and Gemma 3n's `x/√2 + RMSNorm(MLP(…))·w` the `1/√2`.
fn factor_sum_into_linear(egraph: &TensorEGraph, id: Id) -> Vec<Rhs> {
    let mut out = Vec::new();
    for node in &egraph[id].nodes {
        let TensorLang::Add([l, r]) = node else {
            continue;
        };
        for (scaled, linear, scaled_left) in [(*l, *r, true), (*r, *l, false)] {
            if !absorbs_scale(egraph, linear) || !scaled_forms(egraph, linear).is_empty() {
                continue;
            }
            for (c, a) in computed_forms(egraph, scaled) {
                let Some(inverse) = c.recip() else { continue };
                let mut rhs = Rhs::new();
                let (a, m) = (rhs.class(a), rhs.class(linear));
                let m = times(&mut rhs, &inverse, m);
                let sum = rhs.node(TensorLang::Add(if scaled_left { [a, m] } else { [m, a] }));
                times(&mut rhs, &c, sum);
                out.push(rhs);
            }
        }
    }
    out
}

/// `factor-sum-into-linear` (see the table above).
pub const FACTOR_SUM_INTO_LINEAR: ClassRule = ClassRule {
    name: "factor-sum-into-linear",
    find: factor_sum_into_linear,
};

/// `combine-like-terms` (see the table above).
pub const COMBINE_LIKE_TERMS: ClassRule = ClassRule {
    name: "combine-like-terms",
    find: combine_like_terms,
};

/// The scalar-algebra rules. Examples: `$a`, `$b`, `$x` computed `[2, 3]`,
/// `$k` a weight.
#[rustfmt::skip]
pub const TOPIC: Topic = Topic {
    name: "scale",
    summary: "Scalar algebra on elementwise terms: scalar factors placed first, combined, and factored out of sums, differences, products and quotients, so they can travel to where they are absorbed.",
    pass: Pass::Fuse,
    context: "$a: f32[2, 3]\n$b: f32[2, 3]\n$x: f32[2, 3]\nweight $k: f32[2, 3]\nweight $w: f32[3, 3]\n\
              onnx:MatMul@n1.0: f32[2, 3] linear input=0 out=1 in=1\n\
              onnx:MatMul@n2.0: f32[2, 3]",
    rules: &[
        Rule { guard: guard!(c_scalar_x_not), when: "c a scalar, x not",
               examples: &[("(* $x 3)", "(* 3 $x)")], non_examples: &["(* $x $a)", "(* 2 3)"],
               ..Rule::new("mul-scalar-first", "x·c = c·x", pattern("(* ?x ?c)", "(* ?c ?x)")) },
        Rule { guard: guard!(c_one), when: "c = 1",
               examples: &[("(* 1 $x)", "$x")], non_examples: &["(* 2 $x)"],
               ..Rule::new("mul-one", "1·x = x", pattern("(* ?c ?x)", "?x")) },
        Rule { guard: guard!(c_d_scalars_x_not), when: "c, d scalars, x not",
               examples: &[("(* 2 (* 3/4 $x))", "(* 3/2 $x)")], non_examples: &["(* 2 (* $a $x))"],
               ..Rule::new("combine-scalars", "c·(d·x) = (cd)·x", pattern("(* ?c (* ?d ?x))", "(* (* ?c ?d) ?x)")) },
        Rule { guard: guard!(both_scaled), when: "c, d non-zero scalars, a, b computed",
               examples: &[("(+ (* 2 $a) (* 3 $b))", "(* 2 (+ $a (* 3/2 $b)))")],
               non_examples: &["(+ (* 3 $a) $b)", "(+ (* 0 $a) (* 3 $b))"],
               ..Rule::new("factor-sum-left", "c·a + d·b = c·(a + (d/c)·b)", pattern("(+ (* ?c ?a) (* ?d ?b))", "(* ?c (+ ?a (* (/ ?d ?c) ?b)))")) },
        Rule { guard: guard!(both_scaled), when: "c, d non-zero scalars, a, b computed",
               examples: &[("(+ (* 2 $a) (* 3 $b))", "(* 3 (+ (* 2/3 $a) $b))")],
               non_examples: &["(+ $a (* 3 $b))"],
               ..Rule::new("factor-sum-right", "c·a + d·b = d·((c/d)·a + b)", pattern("(+ (* ?c ?a) (* ?d ?b))", "(* ?d (+ (* (/ ?c ?d) ?a) ?b))")) },
        Rule { guard: guard!(c_nonzero_a_computed_k_weight), when: "c ≠ 0, a computed, k a weight",
               examples: &[("(+ (* 4 $a) $k)", "(* 4 (+ $a (* 1/4 $k)))")],
               non_examples: &["(+ (* 0 $a) $k)", "(+ (* 4 $a) $b)"],
               ..Rule::new("factor-sum-bias-left", "c·a + k = c·(a + k/c)", pattern("(+ (* ?c ?a) ?k)", "(* ?c (+ ?a (* (/ 1 ?c) ?k)))")) },
        Rule { guard: guard!(c_nonzero_a_computed_k_weight), when: "c ≠ 0, a computed, k a weight",
               examples: &[("(+ $k (* 4 $a))", "(* 4 (+ (* 1/4 $k) $a))")],
               non_examples: &["(+ $b (* 4 $a))"],
               ..Rule::new("factor-sum-bias-right", "k + c·a = c·(k/c + a)", pattern("(+ ?k (* ?c ?a))", "(* ?c (+ (* (/ 1 ?c) ?k) ?a))")) },
        Rule { when: "c ≠ 0, a computed, m unscaled and computed by a linear op with weights or the product of a computed value and a weight (either operand order)",
               examples: &[
                   ("(+ (* 4 $a) (onnx:MatMul@n1.0 $b $w))", "(* 4 (+ $a (* 1/4 (onnx:MatMul@n1.0 $b $w))))"),
                   ("(+ (onnx:MatMul@n1.0 $b $w) (* 4 $a))", "(* 4 (+ (* 1/4 (onnx:MatMul@n1.0 $b $w)) $a))"),
                   // A norm's learned scale: m = b·k.
                   ("(+ (* 4 $a) (* $b $k))", "(* 4 (+ $a (* 1/4 (* $b $k))))"),
               ],
               // m not linear (an op without semantics); a scaled weight.
               non_examples: &["(+ (* 4 $a) $b)", "(+ (* 4 $a) (onnx:MatMul@n2.0 $b $w))", "(+ (* 4 $k) (onnx:MatMul@n1.0 $b $w))"],
               ..Rule::new("factor-sum-into-linear", "c·a + m = c·(a + (1/c)·m), m = f(x, w) linear or x·w", Kind::Class(FACTOR_SUM_INTO_LINEAR)) },
        Rule { guard: guard!(same_scale), when: "c = d non-zero scalars, a, b computed",
               examples: &[("(- (* 2 $a) (* 2 $b))", "(* 2 (- $a $b))")],
               non_examples: &["(- (* 2 $a) (* -3 $b))", "(- (* 2 $a) $b)"],
               ..Rule::new("factor-difference", "c·a − c·b = c·(a − b)", pattern("(- (* ?c ?a) (* ?d ?b))", "(* ?c (- ?a ?b))")) },
        Rule { guard: guard!(c_nonzero_a_computed_k_weight), when: "c ≠ 0, a computed, k a weight",
               examples: &[("(- (* 4 $a) $k)", "(* 4 (- $a (* 1/4 $k)))")],
               non_examples: &["(- (* 4 $a) $b)"],
               ..Rule::new("factor-difference-bias", "c·a − k = c·(a − k/c)", pattern("(- (* ?c ?a) ?k)", "(* ?c (- ?a (* (/ 1 ?c) ?k)))")) },
        Rule { guard: guard!(c_scalar_k_weight_a_computed), when: "c a scalar, a computed, k a weight",
               examples: &[("(* 5 (+ $a $k))", "(+ (* 5 $a) (* 5 $k))")],
               non_examples: &["(* 5 (+ $a $b))"],
               ..Rule::new("distribute-over-bias-right", "c·(a + k) = c·a + c·k", pattern("(* ?c (+ ?a ?k))", "(+ (* ?c ?a) (* ?c ?k))")) },
        Rule { guard: guard!(c_scalar_k_weight_a_computed), when: "c a scalar, a computed, k a weight",
               examples: &[("(* 5 (+ $k $a))", "(+ (* 5 $k) (* 5 $a))")],
               non_examples: &["(* 5 (+ $b $a))"],
               ..Rule::new("distribute-over-bias-left", "c·(k + a) = c·k + c·a", pattern("(* ?c (+ ?k ?a))", "(+ (* ?c ?k) (* ?c ?a))")) },
        Rule { guard: guard!(c_scalar_k_weight_a_computed), when: "c a scalar, a computed, k a weight",
               examples: &[("(* 5 (- $a $k))", "(- (* 5 $a) (* 5 $k))")],
               non_examples: &["(* 5 (- $a $b))"],
               ..Rule::new("distribute-over-difference", "c·(a − k) = c·a − c·k", pattern("(* ?c (- ?a ?k))", "(- (* ?c ?a) (* ?c ?k))")) },
        Rule { guard: guard!(c_scalar_a_b_computed), when: "c a scalar, a, b computed",
               examples: &[("(* (* 2 $a) $b)", "(* 2 (* $a $b))")],
               non_examples: &["(* (* 2 $a) $k)"],
               ..Rule::new("scalar-out-of-product-left", "(c·a)·b = c·(a·b)", pattern("(* (* ?c ?a) ?b)", "(* ?c (* ?a ?b))")) },
        Rule { guard: guard!(c_scalar_a_b_computed), when: "c a scalar, a, b computed",
               examples: &[("(* $a (* 2 $b))", "(* 2 (* $a $b))")],
               non_examples: &["(* $k (* 2 $b))"],
               ..Rule::new("scalar-out-of-product-right", "a·(c·b) = c·(a·b)", pattern("(* ?a (* ?c ?b))", "(* ?c (* ?a ?b))")) },
        Rule { guard: guard!(c_scalar_k_weight_a_computed), when: "c a scalar, a computed, k a weight",
               examples: &[("(* 2 (* $a $k))", "(* $a (* 2 $k))")],
               non_examples: &["(* 2 (* $a $b))"],
               ..Rule::new("scalar-into-weight-factor", "c·(a·k) = a·(c·k)", pattern("(* ?c (* ?a ?k))", "(* ?a (* ?c ?k))")) },
        Rule { guard: guard!(c_scalar_k_weight_a_computed), when: "c a scalar, a computed, k a weight",
               examples: &[("(* 2 (* $k $a))", "(* (* 2 $k) $a)")],
               non_examples: &["(* 2 (* $b $a))"],
               ..Rule::new("scalar-into-weight-factor-left", "c·(k·a) = (c·k)·a", pattern("(* ?c (* ?k ?a))", "(* (* ?c ?k) ?a)")) },
        Rule { guard: guard!(c_scalar_k_weight_a_computed), when: "c a scalar, a computed, k a weight",
               examples: &[("(* (* 2 $a) $k)", "(* $a (* 2 $k))")],
               non_examples: &["(* (* 2 $a) $b)"],
               ..Rule::new("scalar-into-weight-of-product", "(c·a)·k = a·(c·k)", pattern("(* (* ?c ?a) ?k)", "(* ?a (* ?c ?k))")) },
        Rule { when: "c, d non-zero scalars, a, b computed; the scaled forms of one side only, or pairs of forms of the same |scale|, or one form on each side",
               examples: &[
                   ("(/ (* 2 $a) $b)", "(* 2 (/ $a $b))"),
                   ("(/ $b (* 4 $a))", "(* 1/4 (/ $b $a))"),
                   ("(/ (* 2 $a) (* -2 $b))", "(* -1 (/ $a $b))"),
                   ("(/ (* 3 $a) (* 2 $b))", "(* 3/2 (/ $a $b))"),
               ],
               non_examples: &["(/ (* 2 $k) $b)", "(/ $b (* 0 $a))"],
               ..Rule::new("scalar-out-of-quotient", "(c·a)/(d·b) = (c/d)·(a/b); (c·a)/b = c·(a/b); a/(d·b) = (1/d)·(a/b)", Kind::Class(SCALAR_OUT_OF_QUOTIENT)) },
        Rule { when: "a term x of one operand's sum and c·x of the other's, up to 4 sums down; 1 + c ≠ 0; at most 16 right-hand sides per class",
               examples: &[
                   ("(+ $x (+ (+ (* 1/2 $x) (* 2 $a)) $b))", "(+ (+ (* 3/2 $x) (* 2 $a)) $b)"),
                   // PA alone: (f + x) + (γ₀·x + γ₁·x₁).
                   ("(+ (+ $a $x) (+ (* 1/2 $x) $b))", "(+ $a (+ (* 3/2 $x) $b))"),
                   // The scaled term on the left, x two sums down on the right.
                   ("(+ (* 2 $x) (+ $b (+ $x $a)))", "(+ (* 3 $x) (+ $b $a))"),
                   // Directly: x + c·x.
                   ("(+ $x (* -3 $x))", "(* -2 $x)"),
               ],
               // 1 + c = 0; a scaled term of another value; deeper than the limit.
               non_examples: &[
                   "(+ $x (+ (* -1 $x) $a))",
                   "(+ $x (+ (* 2 $a) $b))",
                   "(+ $x (+ (+ (+ (+ (+ (* 2 $x) $a) $b) $a) $b) $a))",
               ],
               ..Rule::new("combine-like-terms", "(… + x + …) + (… + c·x + …) = (… + …) + (… + (1 + c)·x + …)", Kind::Class(COMBINE_LIKE_TERMS)) },
    ],
};
