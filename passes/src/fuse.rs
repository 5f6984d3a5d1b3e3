//! The fusion pass: equality saturation with the fusion rules, then
//! DAG-aware extraction of the cheapest equivalent graph.
//!
//! [`fuse()`] runs [`crate::rules::fusion_rules`] on a lowered graph under
//! [`Limits`] and extracts the roots with [`FuseCost`]. Every rule is an
//! equality, so whatever the runner reached when it stopped, the extracted
//! graph computes the same function: a run cut short by a limit is correct,
//! only less optimised, and [`FuseReport::stop`] says so.
//!
//! Complexity: each iteration searches every class (linear in the e-graph);
//! the e-graph's growth is bounded by the limits. Extraction is
//! [`crate::extract`]'s. Errors: [`FuseError`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use egg::{Id, RecExpr, Runner, SimpleScheduler};

use crate::analysis::{RecordedBug, TensorData};
use crate::cost::{CostParams, FuseCost};
use crate::extract::{DagExtractor, ExtractError};
use crate::graph::{TensorGraph, is_id};
use crate::lang::TensorLang;
use crate::limits::{Limits, StopReport};
use crate::refine::Choices;
use crate::rules::registry::{Pass, rules_of};
use crate::rules::{RuleError, fusion_rules};
use crate::shape::Sizes;
use crate::target::Capabilities;

/// Passes of local search over the extraction (see [`crate::refine`]).
pub const REFINE_PASSES: usize = 8;

/// What a fusion did.
#[derive(Debug, Clone)]
pub struct FuseReport {
    /// The extracted term holding every root.
    pub expr: RecExpr<TensorLang>,
    /// The roots' positions in `expr`, in the order given.
    pub roots: Vec<Id>,
    /// The analysis data of each node of `expr`'s e-class, by position.
    pub data: Vec<TensorData>,
    /// The e-class of each node of `expr`, by position (ids of the final e-graph).
    pub classes_of: Vec<Id>,
    /// The final classes of the `keep` ids given to [`fuse()`], in order.
    pub kept: Vec<Id>,
    /// The cost of the lowered graph under [`FuseCost`].
    pub cost_before: f64,
    /// The cost of the extracted graph.
    pub cost_after: f64,
    /// How many times each rule fired (changed the e-graph), by name.
    pub fired: BTreeMap<String, usize>,
    /// How many distinct matches each rule refused, by name.
    pub refused: BTreeMap<String, usize>,
    /// E-classes in the final e-graph.
    pub classes: usize,
    /// E-nodes in the final e-graph.
    pub nodes: usize,
    /// Rewrite iterations run.
    pub iterations: usize,
    /// Why the runner stopped.
    pub stop: StopReport,
    /// Whether extraction reached its fixed point.
    pub converged: bool,
    /// Time spent saturating.
    pub saturation_time: Duration,
    /// Time spent extracting.
    pub extraction_time: Duration,
}

/// What [`fuse()`] is given besides the graph: the runner's limits, what the
/// runtime can do, the cost model's constants and the sizes it prices
/// symbolic dimensions at.
#[derive(Debug, Clone, Default)]
pub struct FuseSettings {
    /// The e-graph runner's limits.
    pub limits: Limits,
    /// What the fused graph may contain (see [`Capabilities`]).
    pub capabilities: Capabilities,
    /// The cost model's constants (the calibrated ones by default).
    pub costs: CostParams,
    /// Sizes of symbolic dimensions for the cost model only (shapes stay
    /// symbolic); unknown symbols count 1.
    pub sizes: Sizes,
}

/// Why a fusion failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FuseError {
    /// A rule table did not build (a bug).
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// A root is not an e-class of the graph.
    #[error("root {0} is not an e-class of the graph")]
    UnknownRoot(Id),
    /// The analysis recorded a bug (a merge conflict or an ill-shaped term).
    #[error(transparent)]
    Bug(#[from] RecordedBug),
    /// Extraction failed.
    #[error("extraction failed: {0}")]
    Extract(#[from] ExtractError),
}

/// Fuses the lowered graph and extracts `roots`; `keep` are classes of the
/// lowered graph whose final classes the caller wants back
/// ([`FuseReport::kept`]), to name the extracted values; `carried` are
/// roots later windows read, where a scale is carried rather than paid for
/// (see [`FuseCost::with_carried`]). Once the rules saturate (or a limit
/// stops them), one more pass runs the registry's after-saturation rules the
/// capabilities allow ([`crate::rules::laurel_residual`] with
/// [`Capabilities::fused_residual`]: each weighted sum as one
/// `LaurelResidual` op), under the same time limit.
///
/// # Errors
/// [`FuseError`].
#[allow(clippy::too_many_lines)] // saturate, check, extract, refine: one sequence
pub fn fuse(
    graph: TensorGraph,
    roots: &[Id],
    keep: &[Id],
    carried: &[Id],
    settings: &FuseSettings,
) -> Result<FuseReport, FuseError> {
    let limits = settings.limits;
    let new_cost = |originals: &[TensorLang], egraph: &crate::analysis::TensorEGraph| {
        FuseCost::new(originals, egraph, &settings.costs, &settings.sizes)
            .with_carried(carried, egraph)
    };
    let egraph = graph.into_egraph();
    if let Some(&bad) = roots.iter().chain(keep).find(|&&r| !is_id(&egraph, r)) {
        return Err(FuseError::UnknownRoot(bad));
    }
    let originals: Vec<TensorLang> = egraph
        .classes()
        .flat_map(|c| c.nodes.iter().cloned())
        .collect();
    // The input's own e-node of each class (its first; the lowering adds one
    // per class, plus a `Num` for a folded constant).
    let originals_by_class: Vec<(Id, TensorLang)> = egraph
        .classes()
        .filter_map(|c| Some((c.id, c.nodes.first()?.clone())))
        .collect();
    let cost_before = {
        let cost = new_cost(&originals, &egraph);
        DagExtractor::new(&egraph, &cost)?.dag_cost(roots)?
    };
    let rules = fusion_rules(settings.capabilities)?;
    let after = rules_of(Pass::AfterFuse, settings.capabilities)?;
    let start = Instant::now();
    // One iteration can add far more than the node limit; when the e-graph
    // it leaves is too large to extract, saturation runs again with fewer
    // iterations (the same rules, so the same e-graph up to the cut).
    let mut cap = limits.iterations;
    let (mut egraph, stop, iterations, fired) = loop {
        let run = saturate(&egraph, cap, &limits, &rules, &after, &originals, &new_cost)?;
        let too_large = crate::extract::set_bytes(&run.egraph) > crate::extract::SET_BUDGET_BYTES;
        if too_large && run.iterations > 0 {
            cap = run.iterations - 1;
            continue;
        }
        let stop = if cap < limits.iterations {
            StopReport::ExtractionBudget(cap)
        } else {
            run.stop
        };
        break (run.egraph, stop, run.iterations, run.fired);
    };
    let saturation_time = start.elapsed();
    // A run stopped by a limit may end between an apply and its rebuild.
    egraph.rebuild();
    let analysis = &egraph.analysis;
    analysis.check_records()?;
    let start = Instant::now();
    let cost = new_cost(&originals, &egraph);
    let extractor = DagExtractor::new(&egraph, &cost)?;
    let greedy: Vec<(Id, TensorLang)> = extractor.choices().collect();
    // Two starting points: the greedy choice, and the input's own e-nodes
    // (the greedy choice elsewhere). Each is refined; the cheaper is kept,
    // so fusion is never worse than its input under the cost model.
    let mut from_greedy = Choices::from_nodes(&egraph, greedy.iter().cloned());
    let mut from_input = Choices::from_nodes(
        &egraph,
        greedy
            .iter()
            .cloned()
            .chain(originals_by_class.iter().cloned()),
    );
    let a = from_greedy.refine(&egraph, &cost, roots, REFINE_PASSES);
    let b = from_input.refine(&egraph, &cost, roots, REFINE_PASSES);
    let (choices, cost_after) = match (a, b) {
        (Some(a), Some(b)) if b < a => (from_input, b),
        (Some(a), _) => (from_greedy, a),
        (None, Some(b)) => (from_input, b),
        (None, None) => {
            return Err(FuseError::Extract(ExtractError::NoFiniteTerm(
                roots.first().copied().unwrap_or(Id::from(0)),
            )));
        }
    };
    let (expr, extracted, classes) = choices.build(&egraph, roots)?;
    let extraction_time = start.elapsed();
    let data = classes.iter().map(|&c| egraph[c].data.clone()).collect();
    let kept = keep.iter().map(|&k| egraph.find(k)).collect();
    Ok(FuseReport {
        expr,
        roots: extracted,
        data,
        classes_of: classes,
        kept,
        cost_before,
        cost_after,
        fired,
        refused: analysis.refusal_counts(),
        classes: egraph.number_of_classes(),
        nodes: egraph.total_number_of_nodes(),
        iterations,
        stop,
        converged: extractor.converged(),
        saturation_time,
        extraction_time,
    })
}

/// What one saturation left.
struct Saturation {
    egraph: crate::analysis::TensorEGraph,
    stop: StopReport,
    iterations: usize,
    fired: BTreeMap<String, usize>,
}

/// Saturates a copy of `egraph` with `rules` for at most `iterations`
/// iterations (the other limits as given), then runs the after-saturation
/// rules `after` once, as [`fuse()`] describes.
fn saturate<'c, C: crate::cost::CostModel + 'c>(
    egraph: &crate::analysis::TensorEGraph,
    iterations: usize,
    limits: &Limits,
    rules: &[crate::rules::TensorRewrite],
    after: &[crate::rules::TensorRewrite],
    originals: &[TensorLang],
    new_cost: &dyn Fn(&[TensorLang], &crate::analysis::TensorEGraph) -> C,
) -> Result<Saturation, FuseError> {
    let runner = Limits {
        iterations,
        ..*limits
    }
    .apply(
        Runner::default()
            .with_scheduler(SimpleScheduler)
            .with_egraph(egraph.clone()),
    )
    .run(rules);
    let stop = StopReport::of(&runner);
    let iterations = runner.iterations.len();
    let mut fired = crate::limits::fired(&runner);
    let mut egraph = runner.egraph;
    // The rules that run once after saturation, where the runtime allows them
    // (the fused residual op); not on an e-graph too large to extract, which
    // the caller saturates again with fewer iterations.
    if !after.is_empty() && crate::extract::set_bytes(&egraph) <= crate::extract::SET_BUDGET_BYTES {
        egraph.rebuild();
        // Sums are flattened along what extraction would take now.
        let cost = new_cost(originals, &egraph);
        let choices: Vec<(Id, TensorLang)> = DagExtractor::new(&egraph, &cost)?.choices().collect();
        egraph.analysis.record_choices(choices);
        // One pass: it adds at most one term per class.
        let nodes = egraph.total_number_of_nodes();
        let post = Runner::default()
            .with_scheduler(SimpleScheduler)
            .with_egraph(egraph)
            .with_iter_limit(1)
            .with_node_limit(nodes + limits.nodes)
            .with_time_limit(limits.time)
            .run(after);
        for (rule, n) in crate::limits::fired(&post) {
            *fired.entry(rule).or_default() += n;
        }
        egraph = post.egraph;
    }
    Ok(Saturation {
        egraph,
        stop,
        iterations,
        fired,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::{OpRef, ValueRef};
    use crate::semantics::OpSemantics;
    use crate::shape::fixed;
    use crate::testing::{add, f32, graph, op};

    fn linear() -> OpSemantics {
        OpSemantics::Linear {
            input: 0,
            output_into: vec![(1, 1), (2, 1)],
            input_into: vec![(1, 1)],
            contraction: None,
        }
    }

    fn relu() -> OpSemantics {
        OpSemantics::Homogeneous {
            inputs: vec![0],
            positive_only: true,
        }
    }

    /// A graph with weights `$w*`, `$b*` and declared ops.
    fn resnet_like(alpha: &str, beta: &str) -> (TensorGraph, Id) {
        let s = fixed(&[1, 8, 4, 4]);
        let mut g = graph(&[
            ("x", s.clone()),
            ("w1", fixed(&[8, 8, 3, 3])),
            ("b1", fixed(&[8])),
            ("w2", fixed(&[8, 8, 3, 3])),
            ("b2", fixed(&[8])),
            ("fc", fixed(&[8, 10])),
        ]);
        for w in ["w1", "b1", "w2", "b2", "fc"] {
            g.declare_weight(ValueRef::new(w).unwrap()).unwrap();
        }
        for (text, sem, shape) in [
            ("onnx:Conv@n1.0", Some(linear()), s.clone()),
            ("onnx:Relu@n2.0", Some(relu()), s.clone()),
            ("onnx:Conv@n3.0", Some(linear()), s.clone()),
            ("onnx:Relu@n4.0", Some(relu()), s.clone()),
            (
                "onnx:GlobalAveragePool@n5.0",
                Some(OpSemantics::Homogeneous {
                    inputs: vec![0],
                    positive_only: false,
                }),
                fixed(&[1, 8, 1, 1]),
            ),
            (
                "onnx:Flatten@n6.0",
                Some(OpSemantics::Homogeneous {
                    inputs: vec![0],
                    positive_only: false,
                }),
                fixed(&[1, 8]),
            ),
            (
                "onnx:MatMul@n7.0",
                Some(OpSemantics::Linear {
                    input: 0,
                    output_into: vec![(1, 1)],
                    input_into: vec![(1, 1)],
                    contraction: None,
                }),
                fixed(&[1, 10]),
            ),
        ] {
            g.declare(op(text), f32(shape)).unwrap();
            if let Some(sem) = sem {
                g.declare_semantics(text.parse::<OpRef>().unwrap(), sem);
            }
        }
        let block = format!(
            "(onnx:Relu@n4.0 (+ (* {alpha} (onnx:Conv@n3.0 (onnx:Relu@n2.0 (onnx:Conv@n1.0 $x $w1 $b1)) $w2 $b2)) (* {beta} $x)))"
        );
        let root = add(
            &mut g,
            &format!(
                "(onnx:MatMul@n7.0 (onnx:Flatten@n6.0 (onnx:GlobalAveragePool@n5.0 {block})) $fc)"
            ),
        );
        (g, root)
    }

    /// A runtime with the fused residual op and no merges (tract's).
    fn tract() -> FuseSettings {
        FuseSettings {
            capabilities: Capabilities {
                fused_residual: true,
                channel_map_merges: false,
            },
            ..FuseSettings::default()
        }
    }

    fn computed_muls(report: &FuseReport) -> usize {
        report
            .expr
            .iter()
            .zip(&report.data)
            .filter(|(n, d)| matches!(n, TensorLang::Mul(_)) && !d.weight)
            .count()
    }

    #[test]
    fn rw_with_positive_scalars_fuses_into_weights() {
        let (g, root) = resnet_like("1/2", "3/2");
        let report = fuse(g, &[root], &[], &[], &FuseSettings::default()).unwrap();
        assert_eq!(computed_muls(&report), 0, "{}", report.expr);
        assert_eq!(report.stop, StopReport::Saturated);
        assert!(report.cost_after < report.cost_before);
        let text = report.expr.to_string();
        assert!(
            text.contains("(* 1/3 $w2)") && text.contains("(* 3/2 $fc)"),
            "{text}"
        );
    }

    #[test]
    fn like_terms_combine_even_where_the_greedy_choice_recomputes_a_value() {
        // Two PA-like blocks: r₁ = f₁ + x + (3/10)·x, y = (f₂ + r₁) + ((2/5)·r₁ + (1/2)·x).
        // Combined, y = f₂ + ((7/5)·r₁ + (1/2)·x); but the greedy choice for
        // the new sum `(7/5)·r₁ + (1/2)·x` is a form that computes r₁ again
        // (a tie in isolation), so only a refinement move that re-chooses it
        // with the switch finds the sum with one Add fewer.
        let s = fixed(&[4, 16]);
        let mut g = graph(&[
            ("x", s.clone()),
            ("w1", fixed(&[16, 16])),
            ("w2", fixed(&[16, 16])),
        ]);
        for w in ["w1", "w2"] {
            g.declare_weight(ValueRef::new(w).unwrap()).unwrap();
        }
        let matmul = OpSemantics::Linear {
            input: 0,
            output_into: vec![(1, 1)],
            input_into: vec![(1, 1)],
            contraction: None,
        };
        for (text, sem) in [
            ("onnx:Relu@n1.0", relu()),
            ("onnx:MatMul@n2.0", matmul.clone()),
            ("onnx:Relu@n3.0", relu()),
            ("onnx:MatMul@n4.0", matmul),
        ] {
            g.declare(op(text), f32(s.clone())).unwrap();
            g.declare_semantics(text.parse::<OpRef>().unwrap(), sem);
        }
        let r1 = "(+ (+ (onnx:MatMul@n2.0 (onnx:Relu@n1.0 $x) $w1) $x) (* 3/10 $x))";
        let f2 = format!("(onnx:MatMul@n4.0 (onnx:Relu@n3.0 {r1}) $w2)");
        let root = add(
            &mut g,
            &format!("(+ (+ {f2} {r1}) (+ (* 2/5 {r1}) (* 1/2 $x)))"),
        );
        let report = fuse(g, &[root], &[], &[], &FuseSettings::default()).unwrap();
        let adds = report
            .expr
            .iter()
            .zip(&report.data)
            .filter(|(n, d)| matches!(n, TensorLang::Add(_)) && !d.weight)
            .count();
        assert_eq!(adds, 3, "{}", report.expr);
    }

    #[test]
    fn a_negative_skip_scale_keeps_one_mul() {
        let (g, root) = resnet_like("1/2", "-3/2");
        let report = fuse(g, &[root], &[], &[], &FuseSettings::default()).unwrap();
        assert_eq!(computed_muls(&report), 1, "{}", report.expr);
    }

    #[test]
    fn for_tract_a_scale_nothing_absorbs_joins_a_laurel_residual() {
        let (g, root) = resnet_like("1/2", "-3/2");
        let report = fuse(g, &[root], &[], &[], &tract()).unwrap();
        assert_eq!(computed_muls(&report), 0, "{}", report.expr);
        let text = report.expr.to_string();
        assert!(text.contains("(laurel-residual "), "{text}");
        assert!(text.contains(" -3/2 "), "{text}");
        assert_eq!(
            report
                .fired
                .get("sum-to-laurel-residual")
                .copied()
                .map(|n| n > 0),
            Some(true)
        );
    }
}
