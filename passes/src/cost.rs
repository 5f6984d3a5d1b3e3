//! Cost models for extraction.
//!
//! A [`CostModel`] prices one e-node; the extractor ([`crate::extract`])
//! sums the prices of the e-nodes of the extracted DAG, counting a shared
//! sub-DAG once. `f64::INFINITY` forbids a node outright.
//!
//! [`AugmentCost`] is the augmentation's model: it forbids `resadd` (every
//! residual add must become a `LAuReL` term) and the `LAuReL` terms themselves
//! (nothing lifts them to ONNX yet, so their expansions are taken), leaves
//! are free and every other op costs 1. The calibrated model (FLOPs, bytes
//! moved and a per-op overhead, measured on tract) that fusion will minimise
//! comes later, behind the same trait.
//!
//! Complexity: O(1) per node.

use crate::analysis::TensorEGraph;
use crate::lang::TensorLang;

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
            | TensorLang::Onnx(..) => 1.0,
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
}
