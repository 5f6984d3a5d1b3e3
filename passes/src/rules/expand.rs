//! Expansion: each `LAuReL` term rewritten into elementwise and low-rank terms.
//!
//! These are equalities (the definitions of the `LAuReL` terms), so they keep
//! the function exactly. Which low-rank form applies depends on the layout
//! of the block the term belongs to (its class's block tag and rank, see
//! [`Layout::of`]): [`channel_axis_is_last`] and [`channel_axis_is_first`]
//! are the guards. A `LAuReL` term without a block tag does not expand to a
//! low-rank form. The rules are [`TOPIC`]'s entries.
//!
//! `expand-pa` is variadic (`laurel-pa` has `2 + 2k` children), which a
//! pattern cannot say, so it is a searcher of its own ([`LaurelPaSearcher`],
//! binding child `i` to the numbered variable `i`) with a checked applier
//! ([`ExpandPa`]):
//!
//! `(laurel-pa ?f ?x ?g0 ?h0 … ?gk ?hk)` becomes `(+ (+ ?f ?x) (+ … (+ (* ?g0 ?h0)
//! (* ?g1 ?h1)) … (* ?gk ?hk)))`, and `(+ ?f ?x)` when there are no pairs.
//!
//! Complexity: O(1) per match (O(k) for `expand-pa`) plus the checked
//! instantiation.

use std::borrow::Cow;

use egg::{
    Applier, ENodeOrVar, Id, Language, PatternAst, Rewrite, SearchMatches, Searcher, Subst, Symbol,
    Var,
};

use super::entry::{Kind, Pass, Rule, Topic};
use super::{RuleError, TensorRewrite, guard, pattern};
use crate::analysis::{Refusal, TensorAnalysis, TensorEGraph};
use crate::block::Layout;
use crate::checked::apply_checked;
use crate::lang::TensorLang;

/// Matches every `laurel-pa` e-node, binding child `i` to `Var::from(i)`.
#[derive(Debug, Clone, Copy)]
pub struct LaurelPaSearcher;

fn child_var(i: usize) -> Var {
    Var::from(u32::try_from(i).unwrap_or(u32::MAX))
}

impl Searcher<TensorLang, TensorAnalysis> for LaurelPaSearcher {
    fn search_eclass_with_limit(
        &self,
        egraph: &TensorEGraph,
        eclass: Id,
        limit: usize,
    ) -> Option<SearchMatches<'_, TensorLang>> {
        let substs: Vec<Subst> = egraph[eclass]
            .nodes
            .iter()
            .filter(|n| matches!(n, TensorLang::LaurelPa(_)))
            .take(limit)
            .map(|n| {
                let mut subst = Subst::default();
                for (i, &c) in n.children().iter().enumerate() {
                    subst.insert(child_var(i), c);
                }
                subst
            })
            .collect();
        (!substs.is_empty()).then_some(SearchMatches {
            eclass,
            substs,
            ast: None::<Cow<'_, PatternAst<TensorLang>>>,
        })
    }

    fn vars(&self) -> Vec<Var> {
        vec![child_var(0), child_var(1)]
    }
}

/// `f + x + Σ_j γ_j·h_j`, instantiated through the check.
#[derive(Debug, Clone, Copy)]
pub struct ExpandPa;

impl ExpandPa {
    /// The expansion of a match with `n` children.
    #[allow(clippy::many_single_char_names)] // the paper's names: f, x, γ (g), h
    fn rhs(n: usize) -> PatternAst<TensorLang> {
        let mut ast = PatternAst::default();
        let f = ast.add(ENodeOrVar::Var(child_var(0)));
        let x = ast.add(ENodeOrVar::Var(child_var(1)));
        let fx = ast.add(ENodeOrVar::ENode(TensorLang::Add([f, x])));
        let mut sum: Option<Id> = None;
        for j in 0..(n.saturating_sub(2) / 2) {
            let g = ast.add(ENodeOrVar::Var(child_var(2 + 2 * j)));
            let h = ast.add(ENodeOrVar::Var(child_var(3 + 2 * j)));
            let t = ast.add(ENodeOrVar::ENode(TensorLang::Mul([g, h])));
            sum = Some(match sum {
                Some(s) => ast.add(ENodeOrVar::ENode(TensorLang::Add([s, t]))),
                None => t,
            });
        }
        if let Some(s) = sum {
            ast.add(ENodeOrVar::ENode(TensorLang::Add([fx, s])));
        }
        ast
    }
}

impl Applier<TensorLang, TensorAnalysis> for ExpandPa {
    fn apply_one(
        &self,
        egraph: &mut TensorEGraph,
        eclass: Id,
        subst: &Subst,
        _searcher_ast: Option<&PatternAst<TensorLang>>,
        rule_name: Symbol,
    ) -> Vec<Id> {
        // `laurel-pa` has at most u32::MAX children: the variables are u32s.
        let n = (0..=u32::MAX as usize)
            .take_while(|&i| subst.get(child_var(i)).is_some())
            .count();
        match apply_checked(egraph, eclass, &Self::rhs(n), subst) {
            Ok(true) => vec![eclass],
            Ok(false) => vec![],
            Err(e) => {
                egraph
                    .analysis
                    .refuse(rule_name.as_str(), eclass, Refusal::IllShaped(e));
                vec![]
            }
        }
    }
}

/// `expand-pa`: `(laurel-pa f x γ_0 h_0 …) ⇒ f + x + Σ_j γ_j·h_j`.
///
/// # Errors
/// [`RuleError`] if the rule does not build (a bug).
pub fn expand_pa() -> Result<TensorRewrite, RuleError> {
    Rewrite::new("expand-pa", LaurelPaSearcher, ExpandPa)
        .map_err(|e| RuleError::new("expand-pa", &e))
}

/// The layout of the block `eclass` belongs to, from its tag and rank.
fn layout(egraph: &TensorEGraph, eclass: Id) -> Option<Layout> {
    let data = &egraph[eclass].data;
    Layout::of(data.block?.channel_axis, data.shape.as_ref()?.len())
}

/// Guard: the matched class's block has its channel axis last.
#[must_use]
pub fn channel_axis_is_last(egraph: &TensorEGraph, eclass: Id, _: &Subst) -> bool {
    layout(egraph, eclass) == Some(Layout::ChannelLast)
}

/// Guard: the matched class's block has its channel axis at 1 (rank ≥ 3).
#[must_use]
pub fn channel_axis_is_first(egraph: &TensorEGraph, eclass: Id, _: &Subst) -> bool {
    layout(egraph, eclass) == Some(Layout::ChannelFirst)
}

/// The expansion rules. Examples: `$f`, `$x` `[2, 4]` (channel-last, the
/// block's axis 1 is the last) and `$f4`, `$x4` `[1, 4, 2, 2]` (channel-first),
/// each term tagged as block 0 with axis 1.
#[rustfmt::skip]
pub const TOPIC: Topic = Topic {
    name: "expand",
    summary: "Each `LAuReL` term rewritten into elementwise and low-rank terms, its definition: equalities, so augmentation keeps the function it chose.",
    pass: Pass::Expand,
    context: "$f: f32[2, 4]\n$x: f32[2, 4]\n$s: f32[2, 4]\n$g0: f32[]\n$g1: f32[]\n\
              $a: f32[4, 2]\n$b: f32[2, 4]\n$f4: f32[1, 4, 2, 2]\n$x4: f32[1, 4, 2, 2]\n\
              $a4: f32[2, 4]\n$b4: f32[4, 2]\nblock 0 axis 1",
    rules: &[
        Rule { examples: &[("(laurel-rw $f $x $g0 $g1)", "(+ (* $g0 $f) (* $g1 $x))")],
               ..Rule::new("expand-rw", "laurel-rw(f, x, α, β) = α·f + β·x", pattern("(laurel-rw ?f ?x ?a ?b)", "(+ (* ?a ?f) (* ?b ?x))")) },
        Rule { guard: guard!(channel_axis_is_last), when: "the block's channel axis is the last",
               examples: &[("(laurel-lr $f $x $a $b)", "(+ (+ $f $x) (matmul (matmul $x $a) $b))")],
               non_examples: &["(laurel-lr $f4 $x4 $a4 $b4)"],
               ..Rule::new("expand-lr-channel-last", "laurel-lr(f, x, A, B) = f + x + (x·A)·B, A: [C, r], B: [r, C]", pattern("(laurel-lr ?f ?x ?a ?b)", "(+ (+ ?f ?x) (matmul (matmul ?x ?a) ?b))")) },
        Rule { guard: guard!(channel_axis_is_first), when: "the block's channel axis is 1, of a rank ≥ 3 tensor",
               examples: &[("(laurel-lr $f4 $x4 $a4 $b4)", "(+ (+ $f4 $x4) (conv1x1 (conv1x1 $x4 $a4) $b4))")],
               non_examples: &["(laurel-lr $f $x $a $b)"],
               ..Rule::new("expand-lr-channel-first", "laurel-lr(f, x, A, B) = f + x + conv1x1(conv1x1(x, A), B), A: [r, C], B: [C, r]", pattern("(laurel-lr ?f ?x ?a ?b)", "(+ (+ ?f ?x) (conv1x1 (conv1x1 ?x ?a) ?b))")) },
        Rule { when: "variadic: a searcher and a checked applier of its own",
               examples: &[
                   ("(laurel-pa $f $x $g0 $x $g1 $s)", "(+ (+ $f $x) (+ (* $g0 $x) (* $g1 $s)))"),
                   ("(laurel-pa $f $x)", "(+ $f $x)"),
               ],
               ..Rule::new("expand-pa", "laurel-pa(f, x, γ₀, h₀, …) = f + x + Σ_j γ_j·h_j", Kind::Custom(expand_pa)) },
    ],
};

/// The expansion rules.
///
/// # Errors
/// [`RuleError`] if a rule does not build (a bug).
pub fn expand_rules() -> Result<Vec<TensorRewrite>, RuleError> {
    TOPIC.rules.iter().map(Rule::rewrite).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::cost::AugmentCost;
    use crate::extract::DagExtractor;
    use crate::shape::{Shape, fixed};
    use crate::testing::eval::{Rng, eval};
    use crate::testing::{add, block, expr, graph};
    use egg::{RecExpr, Runner};

    use crate::lang::TensorLang;

    /// `lhs` over `$f`, `$x` (of `shape`) and `$a`, `$b`, tagged with the
    /// channel axis when given, after running the expansion rules.
    fn expand(
        shape: &Shape,
        a: Shape,
        b: Shape,
        axis: Option<usize>,
        lhs: &str,
    ) -> (TensorEGraph, Id) {
        let mut g = graph(&[
            ("f", shape.clone()),
            ("x", shape.clone()),
            ("a", a),
            ("b", b),
        ]);
        let root = add(&mut g, lhs);
        if let Some(axis) = axis {
            g.tag_block(root, block(0, axis)).unwrap();
        }
        let runner = Runner::default()
            .with_egraph(g.into_egraph())
            .with_iter_limit(8)
            .run(&expand_rules().unwrap());
        let egraph = runner.egraph;
        assert!(egraph.analysis.conflicts().is_empty());
        (egraph, root)
    }

    fn holds(egraph: &TensorEGraph, root: Id, term: &str) -> bool {
        egraph.lookup_expr(&expr(term)) == Some(egraph.find(root))
    }

    const LR: &str = "(laurel-lr $f $x $a $b)";
    const LAST: &str = "(+ (+ $f $x) (matmul (matmul $x $a) $b))";
    const FIRST: &str = "(+ (+ $f $x) (conv1x1 (conv1x1 $x $a) $b))";

    #[test]
    fn expand_rw_fires_on_laurel_rw_only() {
        let s = fixed(&[2, 4]);
        let (egraph, root) = expand(&s, fixed(&[]), fixed(&[4]), None, "(laurel-rw $f $x $a $b)");
        assert!(holds(&egraph, root, "(+ (* $a $f) (* $b $x))"));
        let (egraph, root) = expand(&s, fixed(&[4, 2]), fixed(&[2, 4]), None, LR);
        assert_eq!(
            egraph[root].nodes.len(),
            1,
            "no tag: no expansion fires on laurel-lr"
        );
    }

    #[test]
    fn expand_lr_channel_last_fires_on_the_last_axis_only() {
        let s = fixed(&[2, 3, 8]);
        let (egraph, root) = expand(&s, fixed(&[8, 2]), fixed(&[2, 8]), Some(2), LR);
        assert!(holds(&egraph, root, LAST));
        assert!(!holds(&egraph, root, FIRST));
        // Rank 2: axis 1 is the last axis.
        let (egraph, root) = expand(&fixed(&[4, 8]), fixed(&[8, 2]), fixed(&[2, 8]), Some(1), LR);
        assert!(holds(&egraph, root, LAST));
    }

    #[test]
    fn expand_lr_channel_first_fires_on_axis_1_only() {
        // [1, 8, 4, 8]: the last axis also has 8 entries, so only the tag
        // tells the layouts apart.
        let s = fixed(&[1, 8, 4, 8]);
        let (egraph, root) = expand(&s, fixed(&[2, 8]), fixed(&[8, 2]), Some(1), LR);
        assert!(holds(&egraph, root, FIRST));
        assert!(
            !holds(&egraph, root, LAST),
            "expand-lr-channel-last does not fire channel-first"
        );
        let (egraph, root) = expand(&s, fixed(&[8, 2]), fixed(&[2, 8]), Some(3), LR);
        assert!(holds(&egraph, root, LAST));
        assert!(!holds(&egraph, root, FIRST));
    }

    #[test]
    fn no_expansion_without_a_layout() {
        let s = fixed(&[1, 8, 4, 8]);
        // Axis 2 of a rank-4 tensor is neither first nor last.
        let (egraph, root) = expand(&s, fixed(&[8, 2]), fixed(&[2, 8]), Some(2), LR);
        assert_eq!(egraph[root].nodes.len(), 1);
    }

    #[test]
    fn every_rule_has_a_distinct_kebab_case_name() {
        let rules = expand_rules().unwrap();
        let names: Vec<String> = rules.iter().map(|r| r.name.to_string()).collect();
        assert_eq!(
            names,
            [
                "expand-rw",
                "expand-lr-channel-last",
                "expand-lr-channel-first",
                "expand-pa"
            ]
        );
    }

    // Numeric checks: both sides of each expansion on random tensors.

    /// Expands `lhs`, extracts the expanded form (`LAuReL` terms forbidden) and
    /// compares it with the definition on random inputs, for several seeds.
    fn numerically_equal(shape: &[u64], a: &[u64], b: &[u64], axis: usize, lhs: &str, form: &str) {
        let (egraph, root) = expand(&fixed(shape), fixed(a), fixed(b), Some(axis), lhs);
        let rhs = DagExtractor::new(&egraph, &AugmentCost)
            .unwrap()
            .extract(root)
            .unwrap();
        assert_eq!(rhs.to_string(), form);
        let lhs: RecExpr<TensorLang> = expr(lhs);
        let dims = |s: &[u64]| {
            s.iter()
                .map(|&d| usize::try_from(d).unwrap())
                .collect::<Vec<_>>()
        };
        for seed in 0..5 {
            let mut rng = Rng(seed);
            let env: HashMap<String, _> = [("$f", shape), ("$x", shape), ("$a", a), ("$b", b)]
                .into_iter()
                .map(|(n, s)| (n.to_owned(), rng.tensor(&dims(s))))
                .collect();
            let (l, r) = (eval(&lhs, &env, axis), eval(&rhs, &env, axis));
            assert_eq!(l.shape, r.shape);
            for (p, q) in l.data.iter().zip(&r.data) {
                assert!((p - q).abs() <= 1e-12, "{p} vs {q} (seed {seed})");
            }
        }
    }

    #[test]
    fn expand_rw_is_numerically_exact() {
        let lhs = "(laurel-rw $f $x $a $b)";
        let form = "(+ (* $a $f) (* $b $x))";
        numerically_equal(&[2, 3, 4], &[], &[], 2, lhs, form);
        numerically_equal(&[2, 3, 4], &[4], &[3, 1], 2, lhs, form);
    }

    #[test]
    fn expand_lr_channel_last_is_numerically_exact() {
        numerically_equal(&[2, 3, 8], &[8, 3], &[3, 8], 2, LR, LAST);
        numerically_equal(&[5, 6], &[6, 2], &[2, 6], 1, LR, LAST);
    }

    #[test]
    fn expand_pa_sums_the_weighted_states() {
        let s = fixed(&[2, 4]);
        let pa = "(laurel-pa $f $x $a $f $b $x)";
        let (egraph, root) = expand(&s, fixed(&[]), fixed(&[]), None, pa);
        assert!(holds(
            &egraph,
            root,
            "(+ (+ $f $x) (+ (* $a $f) (* $b $x)))"
        ));
        let (egraph, root) = expand(&s, fixed(&[]), fixed(&[]), None, "(laurel-pa $f $x)");
        assert!(holds(&egraph, root, "(+ $f $x)"));
        // Not on other terms.
        let (egraph, root) = expand(&s, fixed(&[]), fixed(&[]), None, "(+ $f $x)");
        assert_eq!(egraph[root].nodes.len(), 1);
    }

    #[test]
    fn expand_pa_is_numerically_exact() {
        let lhs = "(laurel-pa $f $x $a $f $b $x)";
        let form = "(+ (+ $f $x) (+ (* $a $f) (* $b $x)))";
        numerically_equal(&[2, 3, 4], &[], &[], 2, lhs, form);
        numerically_equal(&[3, 5], &[], &[1, 5], 1, lhs, form);
        let lhs = "(laurel-pa $f $x $a $x)";
        numerically_equal(&[3, 5], &[], &[], 1, lhs, "(+ (+ $f $x) (* $a $x))");
        numerically_equal(&[3, 5], &[], &[], 1, "(laurel-pa $f $x)", "(+ $f $x)");
    }

    #[test]
    fn expand_lr_channel_first_is_numerically_exact() {
        numerically_equal(&[2, 6, 3, 3], &[2, 6], &[6, 2], 1, LR, FIRST);
        numerically_equal(&[1, 4, 5], &[3, 4], &[4, 3], 1, LR, FIRST);
    }
}
