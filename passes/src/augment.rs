//! The augmentation pass: every residual add becomes a `LAuReL` residual.
//!
//! [`augment()`] runs the augmentation rules of the chosen [`Variant`] and the
//! expansion rules ([`crate::rules`]) on the lowered graph under [`Limits`],
//! then extracts the roots with [`AugmentCost`] (no `resadd` may remain, and
//! `LAuReL` terms are taken in their expanded, ONNX-liftable form) and
//! reports what fired, what was refused, the e-graph's size and why the
//! runner stopped.
//!
//! The rules terminate on their own (each `resadd` is augmented once, each
//! `LAuReL` term expanded once), so the runner normally saturates in three
//! iterations; the limits guard against the unexpected.
//!
//! Complexity: the runner is linear in the number of residual adds per
//! iteration; extraction is [`crate::extract`]'s. Errors: [`AugmentError`].

use std::collections::BTreeMap;

use egg::{Id, RecExpr, Runner, SimpleScheduler};

use crate::analysis::RecordedBug;
use crate::analysis::TensorData;
use crate::cost::AugmentCost;
use crate::extract::{DagExtractor, ExtractError};
use crate::graph::{TensorGraph, is_id};
use crate::lang::TensorLang;
use crate::limits::{Limits, StopReport};
use crate::params::{InitMode, ParamSpec};
use crate::rules::{RuleError, augment_rules, expand_rules};
use crate::variant::Variant;

/// What an augmentation did.
#[derive(Debug, Clone)]
pub struct AugmentReport {
    /// The variant applied.
    pub variant: Variant,
    /// The extracted term holding every root.
    pub expr: RecExpr<TensorLang>,
    /// The roots' positions in `expr`, in the order given.
    pub roots: Vec<Id>,
    /// The analysis data (shape, element type) of each node of `expr`, by
    /// position.
    pub data: Vec<TensorData>,
    /// The parameters added, ordered by block and role; each block's
    /// [`ParamSpec`]s say what every `Param` leaf of its term is, and which
    /// tensors the term's derived coefficients are computed from.
    pub params: Vec<ParamSpec>,
    /// The extracted term's cost under [`AugmentCost`].
    pub cost: f64,
    /// How many times each rule fired (changed the e-graph), by name.
    pub fired: BTreeMap<String, usize>,
    /// How many distinct matches each rule refused, by name.
    pub refused: BTreeMap<String, usize>,
    /// The refusals, in words: `rule: reason`.
    pub refusals: Vec<String>,
    /// E-classes in the final e-graph.
    pub classes: usize,
    /// E-nodes in the final e-graph.
    pub nodes: usize,
    /// Why the runner stopped.
    pub stop: StopReport,
    /// Whether extraction reached its fixed point.
    pub converged: bool,
}

/// Why an augmentation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AugmentError {
    /// A rule table did not build (a bug).
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// A root is not an e-class of the graph.
    #[error("root {0} is not an e-class of the graph")]
    UnknownRoot(Id),
    /// The analysis recorded a bug (a merge conflict or an ill-shaped term).
    #[error(transparent)]
    Bug(#[from] RecordedBug),
    /// Extraction failed, typically a residual add that could not be
    /// augmented (see the refusals).
    #[error("extraction failed: {source}; refused: [{}]", .refusals.join("; "))]
    Extract {
        /// The extraction error.
        source: ExtractError,
        /// The refusals, `rule: reason`.
        refusals: Vec<String>,
    },
}

/// Augments every tagged residual add of `graph` with `variant`, its
/// parameters starting as `init` says, and extracts `roots`.
///
/// # Errors
/// [`AugmentError`]; in particular [`AugmentError::Extract`] when a residual
/// add could not be augmented (untagged, or the rule was refused), since no
/// term without `resadd` exists for it.
pub fn augment(
    graph: TensorGraph,
    roots: &[Id],
    variant: Variant,
    init: InitMode,
    limits: Limits,
) -> Result<AugmentReport, AugmentError> {
    let egraph = graph.into_egraph();
    if let Some(&bad) = roots.iter().find(|&&r| !is_id(&egraph, r)) {
        return Err(AugmentError::UnknownRoot(bad));
    }
    let mut rules = augment_rules(variant, init)?;
    rules.extend(expand_rules()?);
    let runner = limits
        .apply(
            Runner::default()
                .with_scheduler(SimpleScheduler)
                .with_egraph(egraph),
        )
        .run(&rules);
    let stop = StopReport::of(&runner);
    let fired = crate::limits::fired(&runner);
    let mut egraph = runner.egraph;
    // A run stopped by a limit may end between an apply and its rebuild.
    egraph.rebuild();
    let egraph = &egraph;
    let analysis = &egraph.analysis;
    analysis.check_records()?;
    let refusals: Vec<String> = analysis
        .refusals()
        .iter()
        .map(|((rule, class), why)| format!("{rule} at e-class {class}: {why}"))
        .collect();
    let extract_err = |source| AugmentError::Extract {
        source,
        refusals: refusals.clone(),
    };
    let extractor = DagExtractor::new(egraph, &AugmentCost).map_err(extract_err)?;
    let (expr, extracted, classes) = extractor.extract_with_classes(roots).map_err(extract_err)?;
    let data: Vec<TensorData> = classes.iter().map(|&c| egraph[c].data.clone()).collect();
    let cost = extractor.dag_cost(roots).map_err(extract_err)?;
    Ok(AugmentReport {
        variant,
        expr,
        roots: extracted,
        data,
        params: analysis.params(),
        cost,
        fired,
        refused: analysis.refusal_counts(),
        refusals,
        classes: egraph.number_of_classes(),
        nodes: egraph.total_number_of_nodes(),
        stop,
        converged: extractor.converged(),
    })
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // the costs compared are small integers, exact in f64
mod tests {
    use std::num::NonZeroU64;
    use std::time::Duration;

    use super::*;
    use crate::extract::ExtractError;
    use crate::shape::fixed;
    use crate::testing::{add, block, f32, graph, op};
    use crate::variant::RwParam;

    /// `x + conv(x)`, `x: [1, 8, 4, 4]`, block 0 with channel axis 1.
    fn conv_block() -> (TensorGraph, Id) {
        let mut g = graph(&[("x", fixed(&[1, 8, 4, 4])), ("w", fixed(&[8, 8, 3, 3]))]);
        g.declare(op("onnx:Conv@n3.0"), f32(fixed(&[1, 8, 4, 4])))
            .unwrap();
        let root = add(&mut g, "(resadd $x (onnx:Conv@n3.0 $x $w))");
        g.tag_block(root, block(0, 1)).unwrap();
        (g, root)
    }

    #[test]
    fn rw_turns_a_residual_into_weighted_terms() {
        let (g, root) = conv_block();
        let report = augment(
            g,
            &[root],
            Variant::rw(RwParam::Raw),
            InitMode::Identity,
            Limits::default(),
        )
        .unwrap();
        assert_eq!(
            report.expr.to_string(),
            "(+ (* laurel.0.alpha (onnx:Conv@n3.0 $x $w)) (* laurel.0.beta $x))"
        );
        assert!(
            !report
                .expr
                .iter()
                .any(|n| matches!(n, TensorLang::ResAdd(_)))
        );
        assert_eq!(report.fired.get("resadd-to-rw"), Some(&1));
        assert_eq!(report.fired.get("expand-rw"), Some(&1));
        assert!(report.refused.is_empty());
        assert_eq!(report.stop, StopReport::Saturated);
        assert_eq!(report.cost, 4.0, "conv, two products and a sum");
        assert!(report.converged);
        assert!(report.classes > 0 && report.nodes >= report.classes);
    }

    #[test]
    fn lr_on_a_convolution_uses_conv1x1_factors() {
        let (g, root) = conv_block();
        let rank = NonZeroU64::new(2).unwrap();
        let report = augment(
            g,
            &[root],
            Variant::lr(rank),
            InitMode::Identity,
            Limits::default(),
        )
        .unwrap();
        assert_eq!(
            report.expr.to_string(),
            "(+ (+ (onnx:Conv@n3.0 $x $w) $x) (conv1x1 (conv1x1 $x laurel.0.A) laurel.0.B))"
        );
        assert_eq!(report.fired.get("expand-lr-channel-first"), Some(&1));
        assert_eq!(report.fired.get("expand-lr-channel-last"), None);
    }

    #[test]
    fn a_chain_of_blocks_is_extracted_as_a_dag() {
        // y = x + xW, z = y + yW: y is used three times in z's term.
        let mut g = graph(&[("x", fixed(&[4, 8])), ("w", fixed(&[8, 8]))]);
        let y = add(&mut g, "(resadd $x (matmul $x $w))");
        let z = add(
            &mut g,
            "(resadd (resadd $x (matmul $x $w)) (matmul (resadd $x (matmul $x $w)) $w))",
        );
        g.tag_block(y, block(0, 1)).unwrap();
        g.tag_block(z, block(1, 1)).unwrap();
        let report = augment(
            g,
            &[z, y],
            Variant::rw(RwParam::Raw),
            InitMode::Identity,
            Limits::default(),
        )
        .unwrap();
        // z's term holds y's once: x, w, αs, βs, 2 matmuls, 4 products, 2 sums.
        assert_eq!(report.expr.len(), 14, "{}", report.expr);
        assert_eq!(report.cost, 8.0);
        assert_eq!(report.fired.get("resadd-to-rw"), Some(&2));
        let y_term = report.expr[report.roots[1]].to_string();
        assert_eq!(y_term, "+");
    }

    #[test]
    fn pa_reads_the_recorded_earlier_states() {
        // y = x + xW (block 0), z = y + yW (block 1, whose earlier state is x).
        let mut g = graph(&[("x", fixed(&[4, 8])), ("w", fixed(&[8, 8]))]);
        let y = add(&mut g, "(resadd $x (matmul $x $w))");
        let z = add(
            &mut g,
            "(resadd (resadd $x (matmul $x $w)) (matmul (resadd $x (matmul $x $w)) $w))",
        );
        g.tag_block(y, block(0, 1)).unwrap();
        g.tag_block(z, block(1, 1)).unwrap();
        let x = add(&mut g, "$x");
        g.record_states(crate::block::BlockId(1), vec![x]).unwrap();
        let variant = Variant::of(true, true, true)
            .with_rank(NonZeroU64::new(2).unwrap())
            .with_rw_param(RwParam::Raw);
        let report = augment(g, &[y], variant, InitMode::Identity, Limits::default()).unwrap();
        assert_eq!(
            report.expr.to_string(),
            "(+ (* laurel.0.alpha (matmul $x $w)) (* laurel.0.beta (+ $x (* laurel.0.gamma0 \
             (matmul (matmul $x laurel.0.A0) laurel.0.B0)))))"
        );
        let (g, roots) = {
            let mut g = graph(&[("x", fixed(&[4, 8])), ("w", fixed(&[8, 8]))]);
            let y = add(&mut g, "(resadd $x (matmul $x $w))");
            let z = add(
                &mut g,
                "(resadd (resadd $x (matmul $x $w)) (matmul (resadd $x (matmul $x $w)) $w))",
            );
            g.tag_block(y, block(0, 1)).unwrap();
            g.tag_block(z, block(1, 1)).unwrap();
            let x = add(&mut g, "$x");
            g.record_states(crate::block::BlockId(1), vec![x]).unwrap();
            (g, [z])
        };
        let report = augment(
            g,
            &roots,
            Variant::of(false, false, true),
            InitMode::Identity,
            Limits::default(),
        )
        .unwrap();
        let text = report.expr.to_string();
        assert!(
            text.contains("(* laurel.1.gamma1 $x)")
                && text.contains("(* laurel.1.gamma0 (+ (+ (matmul $x $w) $x)"),
            "{text}"
        );
        assert_eq!(report.fired.get("resadd-to-pa"), Some(&2));
        assert_eq!(report.fired.get("expand-pa"), Some(&2));
        assert!(report.refused.is_empty());
    }

    #[test]
    fn an_untagged_residual_fails_extraction_with_the_reason() {
        let mut g = graph(&[("x", fixed(&[2, 8])), ("f", fixed(&[2, 8]))]);
        let root = add(&mut g, "(resadd $x $f)");
        let err = augment(
            g,
            &[root],
            Variant::rw(RwParam::Raw),
            InitMode::Identity,
            Limits::default(),
        )
        .unwrap_err();
        let AugmentError::Extract { source, refusals } = &err else {
            panic!("{err}");
        };
        assert_eq!(*source, ExtractError::NoFiniteTerm(root));
        assert_eq!(refusals.len(), 1);
        assert!(err.to_string().contains("carries no block"), "{err}");
    }

    #[test]
    fn a_run_cut_short_does_not_hide_a_residual() {
        let (g, root) = conv_block();
        let limits = Limits {
            iterations: 1,
            nodes: 10_000,
            time: Duration::from_secs(5),
        };
        // One iteration augments but does not expand: nothing liftable.
        let err = augment(
            g,
            &[root],
            Variant::rw(RwParam::Raw),
            InitMode::Identity,
            limits,
        )
        .unwrap_err();
        assert!(matches!(err, AugmentError::Extract { .. }), "{err}");
    }

    #[test]
    fn unknown_roots_are_refused() {
        let (g, _) = conv_block();
        let bad = Id::from(1000);
        assert_eq!(
            augment(
                g,
                &[bad],
                Variant::rw(RwParam::Raw),
                InitMode::Identity,
                Limits::default()
            )
            .unwrap_err(),
            AugmentError::UnknownRoot(bad)
        );
    }
}
