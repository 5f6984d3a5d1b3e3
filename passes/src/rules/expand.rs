//! Expansion: each `LAuReL` term rewritten into elementwise and low-rank terms.
//!
//! These are equalities (the definitions of the `LAuReL` terms), so they keep
//! the function exactly. Which low-rank form applies depends on the layout
//! of the block the term belongs to (its class's block tag and rank, see
//! [`Layout::of`]): [`channel_axis_is_last`] and [`channel_axis_is_first`]
//! are the guards. A `LAuReL` term without a block tag does not expand to a
//! low-rank form. `laurel-pa` has no expansion yet (it is not produced yet).
//!
//! Complexity: O(1) per match plus the checked instantiation.

use egg::{Id, Subst};

use super::{RuleError, TensorRewrite, rule};
use crate::analysis::TensorEGraph;
use crate::block::Layout;

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

/// The expansion rules.
///
/// # Errors
/// [`RuleError`] if a rule does not build (a bug).
#[rustfmt::skip]
pub fn expand_rules() -> Result<Vec<TensorRewrite>, RuleError> {
    Ok(vec![
        // α·f + β·x
        rule!("expand-rw";               "(laurel-rw ?f ?x ?a ?b)" => "(+ (* ?a ?f) (* ?b ?x))")?,
        // f + x + (x·a)·b, with a: [C, r], b: [r, C] on the last axis
        rule!("expand-lr-channel-last";  "(laurel-lr ?f ?x ?a ?b)" => "(+ (+ ?f ?x) (matmul (matmul ?x ?a) ?b))"
                                                                       if channel_axis_is_last)?,
        // f + x + conv1x1(conv1x1(x, a), b), with a: [r, C], b: [C, r] on axis 1
        rule!("expand-lr-channel-first"; "(laurel-lr ?f ?x ?a ?b)" => "(+ (+ ?f ?x) (conv1x1 (conv1x1 ?x ?a) ?b))"
                                                                       if channel_axis_is_first)?,
    ])
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
                "expand-lr-channel-first"
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
    fn expand_lr_channel_first_is_numerically_exact() {
        numerically_equal(&[2, 6, 3, 3], &[2, 6], &[6, 2], 1, LR, FIRST);
        numerically_equal(&[1, 4, 5], &[3, 4], &[4, 3], 1, LR, FIRST);
    }
}
