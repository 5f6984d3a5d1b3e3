//! Cost models for extraction.
//!
//! A [`CostModel`] prices one e-node; the extractor ([`crate::extract`])
//! sums the prices of the e-nodes of the extracted DAG, counting a shared
//! sub-DAG once. `f64::INFINITY` forbids a node outright.
//!
//! [`AugmentCost`] is the augmentation's model: it forbids `resadd` (every
//! residual add must become a `LAuReL` term) and the `LAuReL` terms themselves
//! (nothing lifts them to ONNX yet, so their expansions are taken), leaves
//! are free and every other op costs 1. [`FuseCost`] is fusion's: FLOPs,
//! elements moved and a per-op overhead, calibrated on tract
//! (`bench/calibrate.py`, `docs/benchmarks.md`).
//!
//! Complexity: O(1) per node.

use egg::Language as _;

use crate::analysis::TensorEGraph;
use crate::lang::{OpRef, TensorLang};

/// The price of one e-node.
pub trait CostModel {
    /// The cost of `node` (its children are e-class ids of `egraph`, whose
    /// analysis data gives their shapes). Must be ≥ 0; `f64::INFINITY`
    /// means the node may not be extracted; NaN and negative costs are
    /// errors at extraction.
    fn node_cost(&self, node: &TensorLang, egraph: &TensorEGraph) -> f64;
}

/// Augmentation's cost: `resadd` and the `LAuReL` terms forbidden, leaves
/// free, every other op 1.
#[derive(Debug, Clone, Copy, Default)]
pub struct AugmentCost;

impl CostModel for AugmentCost {
    fn node_cost(&self, node: &TensorLang, _egraph: &TensorEGraph) -> f64 {
        match node {
            TensorLang::ResAdd(_)
            | TensorLang::LaurelRw(_)
            | TensorLang::LaurelLr(_)
            | TensorLang::LaurelPa(_) => f64::INFINITY,
            TensorLang::Num(_) | TensorLang::Param(_) | TensorLang::Value(_) => 0.0,
            TensorLang::Add(_)
            | TensorLang::Sub(_)
            | TensorLang::Mul(_)
            | TensorLang::Div(_)
            | TensorLang::Sigmoid(_)
            | TensorLang::MatMul(_)
            | TensorLang::Conv1x1(_)
            | TensorLang::Compose(_)
            | TensorLang::AddEye(_)
            | TensorLang::LaurelResidual(_)
            | TensorLang::Concat(_)
            | TensorLang::Slice(_)
            | TensorLang::Onnx(..) => 1.0,
        }
    }
}

/// Fusion's cost: an estimate of inference time in microseconds on tract,
/// from a per-op overhead and a per-element cost of the result.
///
/// - Leaves (`Num`, `Value`, `Param`) are free.
/// - A weight term (computed from constants alone: the compiler folds it) costs
///   [`FuseCost::weight`], a tie-breaker that prefers fewer new weights.
/// - Every other op costs `overhead + per_element · elements + per_flop ·
///   flops`, plus [`FuseCost::flop_overhead`] when it has FLOPs, with
///   symbolic dimensions at their declared sizes
///   ([`crate::graph::TensorGraph::declare_sizes`]) or 1 and the FLOPs of a generic op as the
///   lowering declared them (matrix products and convolutions; 0
///   otherwise; a channel map's from its children). A `concat` moves both
///   operands.
/// - `laurel-residual` of `n` terms: when a term other than the first is
///   scaled, laurel-runtime's kernel, one pass at `overhead + per_element ·
///   elements · 0.8 · n` (measured: 1.4–2.6× faster than the `Mul`s and
///   `Add`s it replaces); otherwise tract runs it as its `Add`s and it costs
///   what they do (and a `Mul` for a scaled first term).
/// - An e-node that was not in the lowered graph costs [`FuseCost::novelty`]
///   more, so that among equally cheap terms the original is kept: the graph
///   only changes where that is strictly better.
/// - `resadd` and the `LAuReL` terms are forbidden (fusion lifts standard ops).
///
/// The constants are calibrated on tract (see `docs/egraph.md`).
#[derive(Debug, Clone)]
pub struct FuseCost {
    /// Microseconds per op.
    pub overhead: f64,
    /// Microseconds per element of an op's result.
    pub per_element: f64,
    /// Microseconds per floating-point operation.
    pub per_flop: f64,
    /// Microseconds of set-up per op with FLOPs (a matrix product's or a
    /// convolution's packing and dispatch).
    pub flop_overhead: f64,
    /// Elements per term of `laurel-residual`'s kernel, per element of its
    /// result (its per-term memory traffic, relative to an op's).
    pub laurel_residual_per_term: f64,
    /// The cost of a weight term.
    pub weight: f64,
    /// The extra cost of an e-node the rules created.
    pub novelty: f64,
    originals: std::collections::HashSet<TensorLang>,
    /// Classes whose value later windows read: a scale on them is carried
    /// into the next window rather than paid for here.
    carried: std::collections::HashSet<egg::Id>,
}

impl FuseCost {
    /// The calibrated model, with `originals` the e-nodes of the lowered
    /// graph (canonicalised against `egraph`).
    #[must_use]
    pub fn new(originals: &[TensorLang], egraph: &TensorEGraph) -> Self {
        Self {
            // bench/calibrate.py on this machine (docs/benchmarks.md).
            overhead: 0.3,
            per_element: 0.000_2,
            per_flop: 0.000_016,
            flop_overhead: 5.0,
            laurel_residual_per_term: 0.8,
            weight: 1e-6,
            novelty: 1e-4,
            originals: originals
                .iter()
                .map(|n| n.clone().map_children(|c| egraph.find(c)))
                .collect(),
            carried: std::collections::HashSet::new(),
        }
    }

    /// Marks `classes` as read by later windows: a scalar product `c·x` in
    /// one of them costs only [`FuseCost::novelty`], since the next window
    /// may move or absorb the scale.
    #[must_use]
    pub fn with_carried(mut self, classes: &[egg::Id], egraph: &TensorEGraph) -> Self {
        self.carried = classes.iter().map(|&c| egraph.find(c)).collect();
        self
    }

    /// Whether `node` is a scalar product in a carried class.
    fn is_carried_scale(&self, node: &TensorLang, egraph: &TensorEGraph) -> bool {
        if self.carried.is_empty() {
            return false;
        }
        matches!(node, TensorLang::Mul([c, _]) if egraph[*c].data.constant.is_some())
            && egraph
                .lookup(node.clone())
                .is_some_and(|class| self.carried.contains(&egraph.find(class)))
    }

    fn elements(egraph: &TensorEGraph, node: &TensorLang) -> f64 {
        let shape = match node {
            TensorLang::Onnx(op, _) => egraph
                .analysis
                .leaves()
                .get(&crate::analysis::Leaf::Op(*op))
                .and_then(|t| t.shape.clone()),
            // A copy of what it keeps: its own class's shape.
            TensorLang::Slice(_) => egraph
                .lookup(node.clone())
                .and_then(|c| egraph[c].data.shape.clone()),
            // A copy of both operands.
            TensorLang::Concat([_, a, b]) => {
                return [a, b]
                    .iter()
                    .map(|&&c| {
                        egraph[c].data.shape.as_deref().map_or(1.0, |s| {
                            crate::shape::sized_elements(s, egraph.analysis.sizes())
                        })
                    })
                    .sum();
            }
            _ => node
                .children()
                .iter()
                .filter_map(|&c| egraph[c].data.shape.clone())
                .max_by_key(Vec::len),
        };
        shape.map_or(1.0, |s| {
            crate::shape::sized_elements(&s, egraph.analysis.sizes())
        })
    }

    /// A `matmul` (`last`) or `conv1x1` of `x` by the weight `w`: like the
    /// generic op it stands for, with its FLOPs from the shapes.
    fn channel_map(&self, egraph: &TensorEGraph, last: bool, x: egg::Id, w: egg::Id) -> f64 {
        let (Some(xs), Some(ws)) = (&egraph[x].data.shape, &egraph[w].data.shape) else {
            return self.overhead + self.flop_overhead;
        };
        let dim = |d: Option<&crate::shape::Dim>| match d {
            #[allow(clippy::cast_precision_loss)] // an estimate
            Some(crate::shape::Dim::Fixed(n)) => *n as f64,
            _ => 1.0,
        };
        // (in, out): matmul weights are [in, out], conv1x1's [out, in, ..].
        let (inputs, outputs) = if last {
            (dim(ws.first()), dim(ws.get(1)))
        } else {
            (dim(ws.get(1)), dim(ws.first()))
        };
        let elements =
            crate::shape::sized_elements(xs, egraph.analysis.sizes()) / inputs.max(1.0) * outputs;
        self.overhead
            + self.flop_overhead
            + self.per_element * elements
            + self.per_flop * 2.0 * elements * inputs
    }

    /// `laurel-residual [c₀ t₀ …]`: the kernel's one pass when a term other
    /// than the first is scaled, else the `Add`s (and `Mul`) tract runs.
    fn laurel_residual(
        &self,
        egraph: &TensorEGraph,
        node: &TensorLang,
        children: &[egg::Id],
    ) -> f64 {
        let elementwise = self.overhead + self.per_element * Self::elements(egraph, node);
        let scaled = |c: &egg::Id| {
            egraph[*c]
                .data
                .constant
                .as_ref()
                .is_none_or(|c| !c.is_one())
        };
        #[allow(clippy::cast_precision_loss)] // a handful of terms
        let terms = (children.len() / 2) as f64;
        if children.iter().step_by(2).skip(1).any(scaled) {
            self.overhead
                + self.per_element
                    * Self::elements(egraph, node)
                    * self.laurel_residual_per_term
                    * terms
        } else {
            let first = children.first().is_some_and(scaled);
            elementwise * ((terms - 1.0).max(1.0) + f64::from(u8::from(first)))
        }
    }

    /// A generic op's FLOPs: a channel map's from its weight child (the
    /// low-rank rules give an op other children), any other op's as the
    /// lowering declared them.
    fn flops(egraph: &TensorEGraph, node: &TensorLang, op: OpRef, children: &[egg::Id]) -> f64 {
        let from_children = egraph.analysis.channel_map(&op).and_then(|m| {
            let w = egraph[*children.get(m.weight)?].data.shape.clone()?;
            let inputs = match w.as_slice() {
                [i, _] | [_, i, _, _] => {
                    crate::shape::sized_elements(std::slice::from_ref(i), egraph.analysis.sizes())
                }
                _ => return None,
            };
            Some(2.0 * Self::elements(egraph, node) * inputs)
        });
        from_children
            .or_else(|| egraph.analysis.flops(&op))
            .unwrap_or(0.0)
    }
}

impl CostModel for FuseCost {
    fn node_cost(&self, node: &TensorLang, egraph: &TensorEGraph) -> f64 {
        let novelty = if self.originals.contains(node) {
            0.0
        } else {
            self.novelty
        };
        match node {
            TensorLang::ResAdd(_)
            | TensorLang::LaurelRw(_)
            | TensorLang::LaurelLr(_)
            | TensorLang::LaurelPa(_) => f64::INFINITY,
            TensorLang::Num(_) | TensorLang::Param(_) | TensorLang::Value(_) => 0.0,
            TensorLang::Onnx(op, children) => {
                let flops = Self::flops(egraph, node, *op, children);
                let setup = if flops > 0.0 { self.flop_overhead } else { 0.0 };
                self.overhead
                    + setup
                    + self.per_element * Self::elements(egraph, node)
                    + self.per_flop * flops
                    + novelty
            }
            TensorLang::LaurelResidual(children) => {
                self.laurel_residual(egraph, node, children) + 2.0 * self.novelty
            }
            _ if node.children().iter().all(|&c| egraph[c].data.weight) => self.weight + novelty,
            // A channel map the rules built (merging maps of one input).
            TensorLang::MatMul([x, w]) | TensorLang::Conv1x1([x, w]) => {
                self.channel_map(egraph, matches!(node, TensorLang::MatMul(_)), *x, *w) + novelty
            }
            _ if self.is_carried_scale(node, egraph) => self.novelty,
            _ => self.overhead + self.per_element * Self::elements(egraph, node) + novelty,
        }
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // the costs compared are small integers, exact in f64
mod tests {
    use super::*;

    #[test]
    fn augment_cost_forbids_residual_terms_and_frees_leaves() {
        let egraph = TensorEGraph::default();
        let cost = |s: &str| {
            let expr: egg::RecExpr<TensorLang> = s.parse().unwrap();
            let root = expr.as_ref().last().unwrap().clone();
            AugmentCost.node_cost(&root, &egraph)
        };
        assert_eq!(cost("(resadd $x $f)"), f64::INFINITY);
        assert_eq!(cost("(laurel-rw $f $x $a $b)"), f64::INFINITY);
        assert_eq!(cost("(laurel-lr $f $x $a $b)"), f64::INFINITY);
        assert_eq!(cost("(laurel-pa $f $x)"), f64::INFINITY);
        assert_eq!(cost("(+ $x $f)"), 1.0);
        assert_eq!(cost("(onnx:Conv@n1.0 $x $w)"), 1.0);
        assert_eq!(cost("laurel.0.alpha"), 0.0);
        assert_eq!(cost("1/2"), 0.0);
    }

    /// The DAG cost of `terms` (each added to one graph), under [`FuseCost`].
    fn fuse_costs(terms: &[&str]) -> Vec<f64> {
        use crate::shape::fixed;
        use crate::testing::{add, graph};
        let mut g = graph(&[
            ("f", fixed(&[4096])),
            ("x", fixed(&[4096])),
            ("s", fixed(&[4096])),
        ]);
        let roots: Vec<egg::Id> = terms.iter().map(|t| add(&mut g, t)).collect();
        let egraph = g.into_egraph();
        let cost = FuseCost::new(&[], &egraph);
        let extractor = crate::extract::DagExtractor::new(&egraph, &cost).unwrap();
        roots
            .iter()
            .map(|&r| extractor.dag_cost(&[r]).unwrap())
            .collect()
    }

    #[test]
    fn a_scaled_sum_is_cheaper_as_one_laurel_residual() {
        let c = fuse_costs(&[
            "(+ (+ $f $x) (* 1/4 $s))",
            "(laurel-residual 1 $f 1 $x 1/4 $s)",
        ]);
        // Measured on tract (bench/calibrate.py): 0.55× at n = 3.
        assert!(c[1] < 0.7 * c[0], "{c:?}");
    }

    #[test]
    fn an_unscaled_sum_is_no_cheaper_as_laurel_residual() {
        // tract runs it as the same Adds: the input's Adds are kept.
        let c = fuse_costs(&["(+ (+ $f $x) $s)", "(laurel-residual 1 $f 1 $x 1 $s)"]);
        assert!(c[1] >= c[0], "{c:?}");
        let c = fuse_costs(&["(+ $f $x)", "(laurel-residual 1 $f 1 $x)"]);
        assert!(c[1] >= c[0], "{c:?}");
    }
}
