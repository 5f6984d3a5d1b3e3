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

/// The constants of [`FuseCost`], in microseconds; by default those
/// calibrated on tract on this project's machine (`bench/calibrate.py`,
/// `docs/benchmarks.md`). Another machine or runtime may set its own
/// ([`CostParams::set`], `laurelc fuse --cost NAME=VALUE`).
#[derive(Debug, Clone, PartialEq)]
pub struct CostParams {
    /// Per op (`overhead`).
    pub overhead: f64,
    /// Per element of an op's result (`per-element`).
    pub per_element: f64,
    /// Per floating-point operation (`per-flop`).
    pub per_flop: f64,
    /// Set-up per op with FLOPs, a matrix product's or a convolution's
    /// packing and dispatch (`flop-overhead`).
    pub flop_overhead: f64,
    /// More for a `slice` or `concat` of computed values, what such a copy
    /// between channel maps costs in context (`copy-overhead`).
    pub copy_overhead: f64,
    /// Elements per term of `laurel-residual`'s kernel, per element of its
    /// result (`laurel-residual-per-term`; a ratio, not microseconds).
    pub laurel_residual_per_term: f64,
    /// More for a `laurel-residual` with a term a matrix product computes
    /// (directly or plus a bias weight), measured in context; the `Add`s it
    /// replaces would have run in tract's plan for the product
    /// (`epilogue-overhead`).
    pub epilogue_overhead: f64,
}

impl Default for CostParams {
    fn default() -> Self {
        Self {
            // bench/calibrate.py: chains of K identical ops on tract.
            overhead: 0.3,
            per_element: 0.000_2,
            per_flop: 0.000_016,
            flop_overhead: 5.0,
            // Not from the chains: isolated `Slice`/`Concat` chains cost what
            // elementwise ops do, but merged maps measured slower than the
            // maps apart on tract (40 interleaved rounds, `laurelc bench`):
            // MiniLM rw+lr+pa at 1×8 tokens 1.139 vs 1.066 of the baseline,
            // at 8×8 tokens 1.078 vs 1.057; ppocrv4_det at 1×3×64×64 1.060
            // vs 1.037. Per copy that is 7–19 µs more than this model said
            // (the `MatMul`s saved included): the slices and concats keep
            // tract from fusing a bias or residual `Add` into the product,
            // or a reshape into its layout.
            copy_overhead: 10.0,
            laurel_residual_per_term: 0.8,
            // Also measured in context, and rough: MiniLM rw+lr+pa at 1×8
            // tokens, the `--target tract` file (9 `LaurelResidual`s in place
            // of 29 `Add`s and a `Mul`) ran at 1.168 of the baseline against
            // 1.142 for the `--target onnx` one (100 rounds), about 9 µs
            // more per op than the kernel's price. Our reading: tract runs a
            // residual `Add` after a `MatMul` within its plan for the product,
            // an opaque op not (unproven: the calibration chains found an
            // `Add` in a matmul epilogue no cheaper than alone, so the 9 µs
            // is empirical, not derived). With this price 3 remain,
            // and that file measured fastest of the three in two more runs
            // (1.085 and 1.057 against 1.096–1.125 and 1.100–1.135), though
            // a model's time moves by ±5% between loads at this size.
            epilogue_overhead: 9.0,
        }
    }
}

/// A cost constant [`CostParams::set`] does not know, or a value that is
/// not a finite non-negative number.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("cost `{name}` = {value}: {reason}")]
pub struct CostParamError {
    /// The name given.
    pub name: String,
    /// The value given.
    pub value: f64,
    /// What is wrong.
    pub reason: String,
}

impl CostParams {
    /// The names [`CostParams::set`] takes, in field order.
    pub const NAMES: [&'static str; 7] = [
        "overhead",
        "per-element",
        "per-flop",
        "flop-overhead",
        "copy-overhead",
        "laurel-residual-per-term",
        "epilogue-overhead",
    ];

    /// Sets the constant `name` (kebab-case, see [`CostParams::NAMES`]).
    ///
    /// # Errors
    /// [`CostParamError`] for an unknown name, or a value that is negative
    /// or not finite.
    pub fn set(&mut self, name: &str, value: f64) -> Result<(), CostParamError> {
        let error = |reason: String| CostParamError {
            name: name.to_owned(),
            value,
            reason,
        };
        if !value.is_finite() || value < 0.0 {
            return Err(error("must be a finite number ≥ 0".into()));
        }
        let field = match name {
            "overhead" => &mut self.overhead,
            "per-element" => &mut self.per_element,
            "per-flop" => &mut self.per_flop,
            "flop-overhead" => &mut self.flop_overhead,
            "copy-overhead" => &mut self.copy_overhead,
            "laurel-residual-per-term" => &mut self.laurel_residual_per_term,
            "epilogue-overhead" => &mut self.epilogue_overhead,
            _ => return Err(error(format!("not one of {}", Self::NAMES.join(", ")))),
        };
        *field = value;
        Ok(())
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
///   symbolic dimensions at the sizes given to [`FuseCost::new`] or 1 and the FLOPs of a generic op as the
///   lowering declared them (matrix products and convolutions; 0
///   otherwise; a channel map's from its children). A `concat` moves both
///   operands; a `slice` or `concat` of computed values costs
///   [`FuseCost::copy_overhead`] more.
/// - `laurel-residual` of `n` terms: when a term other than the first is
///   scaled, laurel-runtime's kernel, one pass at `overhead + per_element ·
///   elements · 0.8 · n` (measured: 1.4–2.6× faster than the `Mul`s and
///   `Add`s it replaces), plus [`FuseCost::epilogue_overhead`] when a term
///   is a matrix product's (whose `Add` tract would fuse into it);
///   otherwise tract runs it as its `Add`s and it costs what they do (and a
///   `Mul` for a scaled first term).
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
    /// Microseconds more for a `slice` or `concat` of computed values (see
    /// [`CostParams::copy_overhead`]).
    pub copy_overhead: f64,
    /// Microseconds more for a `laurel-residual` reading a matrix product
    /// (see [`CostParams::epilogue_overhead`]).
    pub epilogue_overhead: f64,
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
    /// Sizes of symbolic dimensions; unknown ones count 1.
    sizes: crate::shape::Sizes,
}

impl FuseCost {
    /// The model with the constants `p` and symbolic dimensions priced at
    /// `sizes` (unknown ones at 1), with `originals` the e-nodes of the
    /// lowered graph (canonicalised against `egraph`).
    #[must_use]
    pub fn new(
        originals: &[TensorLang],
        egraph: &TensorEGraph,
        p: &CostParams,
        sizes: &crate::shape::Sizes,
    ) -> Self {
        Self {
            overhead: p.overhead,
            per_element: p.per_element,
            per_flop: p.per_flop,
            flop_overhead: p.flop_overhead,
            copy_overhead: p.copy_overhead,
            epilogue_overhead: p.epilogue_overhead,
            laurel_residual_per_term: p.laurel_residual_per_term,
            weight: 1e-6,
            novelty: 1e-4,
            originals: originals
                .iter()
                .map(|n| n.clone().map_children(|c| egraph.find(c)))
                .collect(),
            carried: std::collections::HashSet::new(),
            sizes: sizes.clone(),
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

    fn elements(&self, egraph: &TensorEGraph, node: &TensorLang) -> f64 {
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
                        egraph[c]
                            .data
                            .shape
                            .as_deref()
                            .map_or(1.0, |s| crate::shape::sized_elements(s, &self.sizes))
                    })
                    .sum();
            }
            _ => node
                .children()
                .iter()
                .filter_map(|&c| egraph[c].data.shape.clone())
                .max_by_key(Vec::len),
        };
        shape.map_or(1.0, |s| crate::shape::sized_elements(&s, &self.sizes))
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
        let elements = crate::shape::sized_elements(xs, &self.sizes) / inputs.max(1.0) * outputs;
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
        let elementwise = self.overhead + self.per_element * self.elements(egraph, node);
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
            let epilogue = if children
                .iter()
                .skip(1)
                .step_by(2)
                .any(|&t| Self::product_or_biased(egraph, t))
            {
                self.epilogue_overhead
            } else {
                0.0
            };
            self.overhead
                + epilogue
                + self.per_element
                    * self.elements(egraph, node)
                    * self.laurel_residual_per_term
                    * terms
        } else {
            let first = children.first().is_some_and(scaled);
            elementwise * ((terms - 1.0).max(1.0) + f64::from(u8::from(first)))
        }
    }

    /// Whether `id`'s class is a matrix product (`MatMul`, `Gemm`, or a
    /// `matmul` term), or one plus a weight (its bias): what tract fuses a
    /// following `Add` into.
    fn product_or_biased(egraph: &TensorEGraph, id: egg::Id) -> bool {
        let product = |id: egg::Id| {
            egraph[id].nodes.iter().any(|n| match n {
                TensorLang::Onnx(op, _) => matches!(op.op_type(), "MatMul" | "Gemm"),
                TensorLang::MatMul(_) => true,
                _ => false,
            })
        };
        product(id)
            || egraph[id].nodes.iter().any(|n| match n {
                TensorLang::Add([a, b]) => {
                    (product(*a) && egraph[*b].data.weight)
                        || (product(*b) && egraph[*a].data.weight)
                }
                _ => false,
            })
    }

    /// A generic op's FLOPs: a channel map's from its weight child (the
    /// low-rank rules give an op other children), any other op's as the
    /// lowering declared them.
    fn flops(
        &self,
        egraph: &TensorEGraph,
        node: &TensorLang,
        op: OpRef,
        children: &[egg::Id],
    ) -> f64 {
        let from_children = egraph.analysis.channel_map(&op).and_then(|m| {
            let w = egraph[*children.get(m.weight)?].data.shape.clone()?;
            let inputs = match w.as_slice() {
                [i, _] | [_, i, _, _] => {
                    crate::shape::sized_elements(std::slice::from_ref(i), &self.sizes)
                }
                _ => return None,
            };
            Some(2.0 * self.elements(egraph, node) * inputs)
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
                let flops = self.flops(egraph, node, *op, children);
                let setup = if flops > 0.0 { self.flop_overhead } else { 0.0 };
                self.overhead
                    + setup
                    + self.per_element * self.elements(egraph, node)
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
            TensorLang::Slice(_) | TensorLang::Concat(_) => {
                self.overhead
                    + self.copy_overhead
                    + self.per_element * self.elements(egraph, node)
                    + novelty
            }
            _ => self.overhead + self.per_element * self.elements(egraph, node) + novelty,
        }
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // the costs compared are small integers, exact in f64
mod tests {
    use super::*;
    use crate::shape::Sizes;

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
        let cost = FuseCost::new(&[], &egraph, &CostParams::default(), &Sizes::new());
        let extractor = crate::extract::DagExtractor::new(&egraph, &cost).unwrap();
        roots
            .iter()
            .map(|&r| extractor.dag_cost(&[r]).unwrap())
            .collect()
    }

    #[test]
    fn cost_constants_are_set_by_name_and_checked() {
        let mut p = CostParams::default();
        for (i, name) in CostParams::NAMES.iter().enumerate() {
            #[allow(clippy::cast_precision_loss)] // small integers
            p.set(name, i as f64 + 0.5).unwrap();
        }
        assert_eq!(
            p,
            CostParams {
                overhead: 0.5,
                per_element: 1.5,
                per_flop: 2.5,
                flop_overhead: 3.5,
                copy_overhead: 4.5,
                laurel_residual_per_term: 5.5,
                epilogue_overhead: 6.5,
            }
        );
        assert!(p.set("overheads", 1.0).is_err());
        assert!(p.set("overhead", -1.0).is_err());
        assert!(p.set("per-flop", f64::NAN).is_err());
    }

    #[test]
    fn a_copy_of_computed_values_costs_the_declared_copy_overhead_more() {
        use crate::shape::fixed;
        use crate::testing::{add, graph};
        let cost_of = |costs: CostParams| {
            let mut g = graph(&[("x", fixed(&[4, 6])), ("w", fixed(&[6, 6]))]);
            g.declare_weight(crate::lang::ValueRef::new("w").unwrap())
                .unwrap();
            let terms = ["(slice 1 0 2 $x)", "(concat 1 $x $x)", "(concat 1 $w $w)"];
            let roots: Vec<egg::Id> = terms.iter().map(|t| add(&mut g, t)).collect();
            let egraph = g.into_egraph();
            let cost = FuseCost::new(&[], &egraph, &costs, &Sizes::new());
            roots
                .iter()
                .map(|&r| {
                    let node = egraph[r].nodes[0].clone();
                    cost.node_cost(&node, &egraph)
                })
                .collect::<Vec<f64>>()
        };
        let calibrated = cost_of(CostParams::default());
        let free = cost_of(CostParams {
            copy_overhead: 0.0,
            ..CostParams::default()
        });
        let d = CostParams::default().copy_overhead;
        assert!(
            (calibrated[0] - free[0] - d).abs() < 1e-9,
            "{calibrated:?} {free:?}"
        );
        assert!(
            (calibrated[1] - free[1] - d).abs() < 1e-9,
            "{calibrated:?} {free:?}"
        );
        // A concatenation of weights is folded at compile time: no copy.
        assert!((calibrated[2] - free[2]).abs() < 1e-12 && calibrated[2] < 1e-3);
    }

    #[test]
    fn a_laurel_residual_reading_a_matrix_product_pays_the_lost_epilogue() {
        use crate::shape::fixed;
        use crate::testing::{add, graph};
        let mut g = graph(&[
            ("x", fixed(&[8, 16])),
            ("s", fixed(&[8, 16])),
            ("w", fixed(&[16, 16])),
            ("b", fixed(&[16])),
        ]);
        for w in ["w", "b"] {
            g.declare_weight(crate::lang::ValueRef::new(w).unwrap())
                .unwrap();
        }
        let terms = [
            "(laurel-residual 1 (+ (matmul $x $w) $b) 1 $x 1/4 $s)",
            "(laurel-residual 1 (matmul $x $w) 1 $x 1/4 $s)",
            "(laurel-residual 1 (* $x $s) 1 $x 1/4 $s)",
        ];
        let roots: Vec<egg::Id> = terms.iter().map(|t| add(&mut g, t)).collect();
        let egraph = g.into_egraph();
        let cost = FuseCost::new(&[], &egraph, &CostParams::default(), &Sizes::new());
        let c: Vec<f64> = roots
            .iter()
            .map(|&r| cost.node_cost(&egraph[r].nodes[0], &egraph))
            .collect();
        let e = CostParams::default().epilogue_overhead;
        assert!((c[0] - c[2] - e).abs() < 1e-9, "{c:?}");
        assert!((c[1] - c[2] - e).abs() < 1e-9, "{c:?}");
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
