//! The e-class analysis: shape, element type, constant value and block tag.
//!
//! Every e-class carries a [`TensorData`]. Leaves ([`TensorLang::Value`],
//! [`TensorLang::Param`]) and generic ops ([`TensorLang::Onnx`]) take their
//! type from the [`LeafTable`] the lowering fills (tract's inference); every
//! other term computes it with [`infer`]:
//!
//! - `+ - * /`: numpy broadcasting ([`crate::shape::broadcast`]);
//! - `sigmoid`: the operand's shape;
//! - `matmul [x w]`: `[.., K] · [K, N] → [.., N]`;
//! - `conv1x1 [x w]`: `[N, C, ...]` with `w: [O, C]` → `[N, O, ...]` (rank ≥ 3);
//! - `resadd` and `laurel-*`: the shape of `f`, which `x` (and every `h_j`)
//!   must equal; coefficients must broadcast to the shape they scale without
//!   changing it; `laurel-lr`'s factors are `[p, q]` and `[q, p]`, acting on
//!   `x`'s last axis or axis 1;
//! - all operands of a term other than `Onnx` share one element type (`Num`
//!   has none: a literal takes its context's).
//!
//! Constants fold exactly for `Num` and `+ - * /` of known constants
//! (division by zero does not fold), and for `sigmoid 0 = 1/2`: `sigmoid q`
//! is irrational for every other rational `q` (by Lindemann–Weierstrass
//! `e^q` is transcendental for rational `q ≠ 0`), so no other sigmoid
//! folds. A class with a known constant also gets the `Num` e-node.
//!
//! Nothing here panics on a bad term. A term added without the checked
//! builder ([`crate::graph::TensorGraph`]) whose shape does not fit is
//! recorded in [`TensorAnalysis::ill_shaped`] and gets unknown data; a merge
//! of two classes whose known shapes, element types, constants or blocks
//! differ is a bug, recorded in [`TensorAnalysis::conflicts`] (the class keeps
//! the first side's value). Callers assert both lists are empty.
//!
//! Files, one job each: `data` (what a class and a leaf carry),
//! `records` (what went wrong: merge conflicts, ill-shaped terms, refused
//! rules), [`infer()`] (the shape, type, constant and weight of a term from its
//! operands); this module holds the analysis itself and egg's hooks.
//!
//! Complexity: `make` is linear in the operands' ranks (plus a hash lookup
//! for leaves); `merge` is linear in the ranks.

mod data;
mod infer;
mod records;

use std::collections::{BTreeMap, HashMap};

use egg::{Analysis, DidMerge, EGraph, Id, Language};

pub use data::{Leaf, LeafTable, TensorData};
pub use infer::infer;
pub(crate) use infer::map_dims;
pub use records::{MergeConflict, RecordedBug, Refusal};

use crate::lang::{OpRef, ParamRef, TensorLang};
use crate::semantics::{ChannelMap, OpSemantics};
use crate::shape::ShapeError;

/// The e-graph of this crate.
pub type TensorEGraph = EGraph<TensorLang, TensorAnalysis>;

/// The analysis: the leaf table and the records of what went wrong.
#[derive(Debug, Clone, Default)]
pub struct TensorAnalysis {
    pub(crate) leaves: LeafTable,
    conflicts: Vec<MergeConflict>,
    ill_shaped: Vec<ShapeError>,
    refusals: BTreeMap<(String, Id), Refusal>,
    /// Per block, the earlier states of its residual stream that PA reads
    /// (`x_{i−1}, x_{i−2}, …`, nearest first), set by
    /// [`crate::graph::TensorGraph::record_states`].
    pub(crate) states: BTreeMap<crate::block::BlockId, Vec<Id>>,
    /// What fusion may assume of each generic op output, set by
    /// [`crate::graph::TensorGraph::declare_semantics`].
    pub(crate) semantics: HashMap<OpRef, OpSemantics>,
    /// Floating-point operations of each generic op output, when the
    /// lowering could count them (set by
    /// [`crate::graph::TensorGraph::declare_flops`]).
    pub(crate) flops: HashMap<OpRef, f64>,
    /// Generic ops that are channel maps (set by
    /// [`crate::graph::TensorGraph::declare_channel_map`]).
    pub(crate) channel_maps: HashMap<OpRef, ChannelMap>,
    /// An extraction's choice per class, when one was recorded
    /// ([`TensorAnalysis::record_choices`]): rules that read a term along
    /// what extraction would take (the sum flattening of
    /// [`crate::rules::class::sum_terms_of`]) follow it.
    pub(crate) chosen: HashMap<Id, TensorLang>,
    /// The parameters augmentation added, by leaf (set by
    /// [`crate::rules::augment`] when a match is applied).
    pub(crate) params: HashMap<ParamRef, crate::params::ParamSpec>,
}

impl TensorAnalysis {
    /// Records an extraction's choice of e-node per (canonical) class.
    pub fn record_choices(&mut self, choices: impl IntoIterator<Item = (Id, TensorLang)>) {
        self.chosen = choices.into_iter().collect();
    }

    /// The recorded choice of `class` (canonical id), if any.
    #[must_use]
    pub fn chosen(&self, class: Id) -> Option<&TensorLang> {
        self.chosen.get(&class)
    }

    /// The parameters augmentation added, ordered by block and role.
    #[must_use]
    pub fn params(&self) -> Vec<crate::params::ParamSpec> {
        let mut out: Vec<crate::params::ParamSpec> = self.params.values().cloned().collect();
        out.sort_by_key(|p| (p.block(), p.role));
        out
    }

    /// The leaf table.
    #[must_use]
    pub fn leaves(&self) -> &LeafTable {
        &self.leaves
    }

    /// Merges of disagreeing classes (each one a bug).
    #[must_use]
    pub fn conflicts(&self) -> &[MergeConflict] {
        &self.conflicts
    }

    /// The first recorded bug, if any: conflicts first, then ill-shaped terms.
    ///
    /// # Errors
    /// [`RecordedBug`] when either record is not empty.
    pub fn check_records(&self) -> Result<(), RecordedBug> {
        if let Some(first) = self.conflicts.first() {
            return Err(RecordedBug::Conflict {
                first: Box::new(first.clone()),
                count: self.conflicts.len(),
            });
        }
        if let Some(first) = self.ill_shaped.first() {
            return Err(RecordedBug::IllShaped {
                first: Box::new(first.clone()),
                count: self.ill_shaped.len(),
            });
        }
        Ok(())
    }

    /// Terms added without the check whose shapes did not fit (each one a bug).
    #[must_use]
    pub fn ill_shaped(&self) -> &[ShapeError] {
        &self.ill_shaped
    }

    /// Refused rule applications: (rule, e-class) → the first reason. A match
    /// refused again in a later iteration is counted once.
    #[must_use]
    pub fn refusals(&self) -> &BTreeMap<(String, Id), Refusal> {
        &self.refusals
    }

    /// How many distinct matches each rule refused.
    #[must_use]
    pub fn refusal_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for (rule, _) in self.refusals.keys() {
            *counts.entry(rule.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// The declared semantics of a generic op output (`None`: opaque).
    #[must_use]
    pub fn semantics(&self, op: &OpRef) -> Option<&OpSemantics> {
        self.semantics.get(op)
    }

    /// The declared floating-point operations of a generic op output.
    #[must_use]
    pub fn flops(&self, op: &OpRef) -> Option<f64> {
        self.flops.get(op).copied()
    }

    /// The channel map a generic op output was declared to be.
    #[must_use]
    pub fn channel_map(&self, op: &OpRef) -> Option<ChannelMap> {
        self.channel_maps.get(op).copied()
    }

    /// The earlier stream states recorded for `block` (nearest first); empty
    /// when none were recorded.
    #[must_use]
    pub fn states(&self, block: crate::block::BlockId) -> &[Id] {
        self.states.get(&block).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn refuse(&mut self, rule: &str, eclass: Id, why: Refusal) {
        self.refusals
            .entry((rule.to_owned(), eclass))
            .or_insert(why);
    }
}

/// Merges one field: a known value wins over an unknown one; two known,
/// different values are a conflict (the first is kept).
fn merge_field<T: PartialEq + Clone>(
    to: &mut Option<T>,
    from: Option<T>,
    conflicts: &mut Vec<MergeConflict>,
    conflict: impl FnOnce(T, T) -> MergeConflict,
) -> DidMerge {
    match (to.take(), from) {
        (None, None) => DidMerge(false, false),
        (None, Some(b)) => {
            *to = Some(b);
            DidMerge(true, false)
        }
        (Some(a), None) => {
            *to = Some(a);
            DidMerge(false, true)
        }
        (Some(a), Some(b)) if a == b => {
            *to = Some(a);
            DidMerge(false, false)
        }
        (Some(a), Some(b)) => {
            // Keep `to`'s value; `from`'s differs, so it "would change".
            conflicts.push(conflict(a.clone(), b));
            *to = Some(a);
            DidMerge(false, true)
        }
    }
}

impl Analysis<TensorLang> for TensorAnalysis {
    type Data = TensorData;

    fn make(egraph: &mut TensorEGraph, enode: &TensorLang, _id: Id) -> TensorData {
        let inferred = {
            let operands: Vec<&TensorData> =
                enode.children().iter().map(|&c| &egraph[c].data).collect();
            infer(enode, &operands, &egraph.analysis.leaves)
        };
        inferred.unwrap_or_else(|e| {
            egraph.analysis.ill_shaped.push(e);
            TensorData::default()
        })
    }

    fn merge(&mut self, to: &mut TensorData, from: TensorData) -> DidMerge {
        let c = &mut self.conflicts;
        // One value, two ways to compute it: a weight if either way is.
        let weight = DidMerge(from.weight && !to.weight, to.weight && !from.weight);
        to.weight |= from.weight;
        merge_field(&mut to.shape, from.shape, c, MergeConflict::Shape)
            | merge_field(&mut to.dtype, from.dtype, c, MergeConflict::DType)
            | merge_field(&mut to.constant, from.constant, c, MergeConflict::Constant)
            | merge_field(&mut to.block, from.block, c, MergeConflict::Block)
            | weight
    }

    /// A class of a known scalar gets its `Num` and keeps only its leaves
    /// (the `Num`, and the names of scalar weights): the value is known, so
    /// the ways of computing it are of no use to extraction, and keeping
    /// them grows the e-graph with the square of the scalars it holds (every
    /// product `c·d` of two of them is an e-node of the class of `cd`; a
    /// 4-block GPT had 149 in the class of 1).
    fn modify(egraph: &mut TensorEGraph, id: Id) {
        if let Some(c) = egraph[id].data.constant.clone() {
            let num = egraph.add(TensorLang::Num(c));
            egraph.union(id, num);
            let id = egraph.find(id);
            egraph[id].nodes.retain(egg::Language::is_leaf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::Block;
    use crate::graph::TensorGraph;
    use crate::lang::BlockId;
    use crate::lang::{Scalar, ValueRef};
    use crate::shape::{DType, Mismatch, Shape, TensorType};
    use crate::shape::{Dim, fixed};
    use egg::RecExpr;

    fn sym(s: &str) -> Dim {
        Dim::Sym(s.into())
    }

    fn value(name: &str) -> Leaf {
        Leaf::Value(ValueRef::new(name).unwrap())
    }

    /// A graph with `$name` leaves of the given shapes, all f32.
    fn graph(leaves: &[(&str, Shape)]) -> TensorGraph {
        let mut g = TensorGraph::new();
        for (name, shape) in leaves {
            g.declare(value(name), TensorType::new(shape.clone(), DType::F32))
                .unwrap();
        }
        g
    }

    fn shape_of(g: &mut TensorGraph, term: &str) -> Result<Option<Shape>, Mismatch> {
        let expr: RecExpr<TensorLang> = term.parse().unwrap();
        g.add_expr_checked(&expr)
            .map(|id| g.data(id).unwrap().shape.clone())
            .map_err(|e| e.mismatch)
    }

    #[test]
    fn a_known_scalar_keeps_only_its_leaves() {
        // 3/4 · 4/3 is 1: its class holds the `Num` 1 and no product, so
        // the products of a model's scalars do not pile up in the classes
        // of their values (a 4-block GPT had 149 in the class of 1).
        let mut g = graph(&[("x", fixed(&[2]))]);
        let one = g.add_expr_checked(&"(* 3/4 4/3)".parse().unwrap()).unwrap();
        let scaled = g
            .add_expr_checked(&"(* (* 3/4 4/3) $x)".parse().unwrap())
            .unwrap();
        let egraph = g.into_egraph();
        let one = egraph.find(one);
        assert_eq!(
            egraph[one].nodes,
            vec![TensorLang::Num(Scalar::from_integer(1))]
        );
        // A computed class keeps its e-nodes.
        assert_eq!(egraph[egraph.find(scaled)].nodes.len(), 1);
    }

    #[test]
    fn elementwise_terms_broadcast() {
        let mut g = graph(&[
            ("x", vec![sym("N"), Dim::Fixed(8)]),
            ("y", vec![sym("M"), Dim::Fixed(8)]),
            ("c", fixed(&[8])),
        ]);
        assert_eq!(
            shape_of(&mut g, "(* $c (sigmoid $x))"),
            Ok(Some(vec![sym("N"), Dim::Fixed(8)]))
        );
        assert_eq!(shape_of(&mut g, "(- 1 $c)"), Ok(Some(fixed(&[8]))));
        assert!(matches!(
            shape_of(&mut g, "(+ $x $y)"),
            Err(Mismatch::Broadcast { .. })
        ));
        assert_eq!(shape_of(&mut g, "(/ $x $unknown)"), Ok(None));
    }

    #[test]
    fn fusion_terms_have_their_shapes() {
        let mut g = graph(&[
            ("a", fixed(&[8, 2])),
            ("b", fixed(&[2, 8])),
            ("k", fixed(&[2, 8, 1, 1])),
            ("j", fixed(&[8, 2, 1, 1])),
            ("x", fixed(&[3, 8])),
            ("y", fixed(&[1, 8])),
        ]);
        assert_eq!(
            shape_of(&mut g, "(compose $a $b)"),
            Ok(Some(fixed(&[8, 8])))
        );
        assert_eq!(
            shape_of(&mut g, "(compose $b $a)"),
            Ok(Some(fixed(&[2, 2])))
        );
        // Kernels: k (8 → 2) then j (2 → 8) is [8, 8, 1, 1].
        assert_eq!(
            shape_of(&mut g, "(compose $k $j)"),
            Ok(Some(fixed(&[8, 8, 1, 1])))
        );
        assert!(matches!(
            shape_of(&mut g, "(compose $a $a)"),
            Err(Mismatch::Contraction { .. })
        ));
        assert!(matches!(
            shape_of(&mut g, "(compose $a $k)"),
            Err(Mismatch::Rank { .. })
        ));
        assert_eq!(
            shape_of(&mut g, "(add-eye (compose $a $b))"),
            Ok(Some(fixed(&[8, 8])))
        );
        assert!(matches!(
            shape_of(&mut g, "(add-eye $a)"),
            Err(Mismatch::Rank { .. })
        ));
        assert_eq!(
            shape_of(&mut g, "(laurel-residual 1 $x 1/2 $y)"),
            Ok(Some(fixed(&[3, 8])))
        );
        assert!(matches!(
            shape_of(&mut g, "(laurel-residual $y $x 1 $x)"),
            Err(Mismatch::Coefficient { operand: 0 })
        ));
        assert!(matches!(
            shape_of(&mut g, "(laurel-residual 1 $x 1)"),
            Err(Mismatch::Arity { got: 3, .. })
        ));
        assert_eq!(
            shape_of(&mut g, "(slice 1 2 5 $x)"),
            Ok(Some(fixed(&[3, 3])))
        );
        assert!(shape_of(&mut g, "(slice 1 2 9 $x)").is_err());
        assert!(shape_of(&mut g, "(slice 1 5 2 $x)").is_err());
        assert_eq!(
            shape_of(&mut g, "(concat 1 $x $x)"),
            Ok(Some(fixed(&[3, 16])))
        );
        assert!(shape_of(&mut g, "(concat 1 $x $a)").is_err());
    }

    #[test]
    fn matmul_and_conv1x1_contract_the_channel_axis() {
        let mut g = graph(&[
            ("t", vec![sym("B"), Dim::Fixed(5), Dim::Fixed(8)]),
            ("a", fixed(&[8, 2])),
            ("img", fixed(&[1, 8, 4, 4])),
            ("w", fixed(&[2, 8])),
        ]);
        assert_eq!(
            shape_of(&mut g, "(matmul $t $a)"),
            Ok(Some(vec![sym("B"), Dim::Fixed(5), Dim::Fixed(2)]))
        );
        assert_eq!(
            shape_of(&mut g, "(conv1x1 $img $w)"),
            Ok(Some(fixed(&[1, 2, 4, 4])))
        );
        assert!(matches!(
            shape_of(&mut g, "(matmul $t $w)"),
            Err(Mismatch::Contraction { .. })
        ));
        assert!(matches!(
            shape_of(&mut g, "(conv1x1 $img $a)"),
            Err(Mismatch::Contraction { .. })
        ));
        assert!(matches!(
            shape_of(&mut g, "(matmul $a $img)"),
            Err(Mismatch::Rank { operand: 1, .. })
        ));
        assert!(matches!(
            shape_of(&mut g, "(conv1x1 $a $w)"),
            Err(Mismatch::Rank { operand: 0, .. })
        ));
    }

    #[test]
    fn laurel_terms_have_the_shape_of_f() {
        let mut g = graph(&[
            ("f", fixed(&[2, 6, 8])),
            ("x", fixed(&[2, 6, 8])),
            ("h", fixed(&[2, 6, 8])),
            ("short", fixed(&[2, 6, 4])),
            ("s", fixed(&[])),
            ("v", fixed(&[8])),
            ("A", fixed(&[8, 3])),
            ("B", fixed(&[3, 8])),
            ("wide", fixed(&[2, 6, 8, 8])),
        ]);
        let f = Some(fixed(&[2, 6, 8]));
        assert_eq!(shape_of(&mut g, "(laurel-rw $f $x $s $v)"), Ok(f.clone()));
        assert_eq!(shape_of(&mut g, "(laurel-lr $f $x $A $B)"), Ok(f.clone()));
        assert_eq!(
            shape_of(&mut g, "(laurel-pa $f $x $s $h $v $h)"),
            Ok(f.clone())
        );
        assert_eq!(shape_of(&mut g, "(resadd $x $f)"), Ok(f));
        assert_eq!(
            shape_of(&mut g, "(laurel-rw $f $short $s $s)"),
            Err(Mismatch::NotSameShape { operand: 1 })
        );
        assert_eq!(
            shape_of(&mut g, "(laurel-rw $f $x $wide $s)"),
            Err(Mismatch::Coefficient { operand: 2 })
        );
        assert_eq!(
            shape_of(&mut g, "(laurel-lr $f $x $A $A)"),
            Err(Mismatch::LowRankFactors)
        );
        assert_eq!(
            shape_of(&mut g, "(laurel-pa $f $x $s $short)"),
            Err(Mismatch::NotSameShape { operand: 3 })
        );
    }

    #[test]
    fn element_types_must_agree() {
        let mut g = graph(&[("x", fixed(&[2]))]);
        g.declare(value("i"), TensorType::new(fixed(&[2]), DType::I64))
            .unwrap();
        assert!(matches!(
            shape_of(&mut g, "(+ $x $i)"),
            Err(Mismatch::DType { .. })
        ));
        let expr: RecExpr<TensorLang> = "(* 2 $x)".parse().unwrap();
        let id = g.add_expr_checked(&expr).unwrap();
        assert_eq!(
            g.data(id).unwrap().dtype,
            Some(DType::F32),
            "a literal adopts its context's type"
        );
    }

    #[test]
    fn constants_fold_exactly() {
        let mut g = TensorGraph::new();
        let mut constant = |term: &str| {
            let expr: RecExpr<TensorLang> = term.parse().unwrap();
            let id = g.add_expr_checked(&expr).unwrap();
            g.data(id).unwrap().constant.clone()
        };
        let num = |s: &str| Some(s.parse::<Scalar>().unwrap());
        assert_eq!(constant("(+ 1 (/ 1 2))"), num("3/2"));
        assert_eq!(constant("(- 0.1 (* 3 0.1))"), num("-1/5"));
        assert_eq!(constant("(/ 1 0)"), None);
        assert_eq!(constant("(sigmoid 0)"), num("1/2"));
        assert_eq!(constant("(sigmoid 1)"), None, "σ(1) is irrational");
        assert_eq!(constant("(+ 1 $x)"), None);
    }

    #[test]
    fn a_folded_class_holds_its_number() {
        let mut g = TensorGraph::new();
        let expr: RecExpr<TensorLang> = "(/ (/ 1 2) 3)".parse().unwrap();
        let id = g.add_expr_checked(&expr).unwrap();
        let sixth = TensorLang::Num("1/6".parse().unwrap());
        assert_eq!(g.egraph().lookup(sixth), Some(g.egraph().find(id)));
    }

    #[test]
    fn merging_different_shapes_is_recorded_not_panicked() {
        let g = graph(&[("a", fixed(&[2, 3])), ("b", fixed(&[4, 5]))]);
        let mut egraph = g.into_egraph();
        let a = egraph.add_expr(&"$a".parse().unwrap());
        let b = egraph.add_expr(&"$b".parse().unwrap());
        egraph.union(a, b);
        egraph.rebuild();
        assert_eq!(
            egraph.analysis.conflicts(),
            &[MergeConflict::Shape(fixed(&[2, 3]), fixed(&[4, 5]))]
        );
        assert_eq!(
            egraph[a].data.shape,
            Some(fixed(&[2, 3])),
            "the first side is kept"
        );
    }

    #[test]
    fn unchecked_ill_shaped_terms_are_recorded() {
        let g = graph(&[("a", fixed(&[2, 3])), ("b", fixed(&[4, 5]))]);
        let mut egraph = g.into_egraph();
        let id = egraph.add_expr(&"(+ $a $b)".parse().unwrap());
        assert_eq!(egraph[id].data, TensorData::default());
        assert_eq!(egraph.analysis.ill_shaped().len(), 1);
        assert_eq!(egraph.analysis.ill_shaped()[0].term, "+");
    }

    #[test]
    fn blocks_merge_like_the_other_fields() {
        let mut analysis = TensorAnalysis::default();
        let block = |k| Block {
            id: BlockId(k),
            channel_axis: 1,
        };
        let mut to = TensorData::default();
        let from = TensorData {
            block: Some(block(0)),
            ..TensorData::default()
        };
        let DidMerge(changed, other) = analysis.merge(&mut to, from.clone());
        assert_eq!((changed, other), (true, false));
        let DidMerge(changed, other) = analysis.merge(&mut to, from);
        assert_eq!((changed, other), (false, false));
        let other = TensorData {
            block: Some(block(1)),
            ..TensorData::default()
        };
        let DidMerge(changed, other) = analysis.merge(&mut to, other);
        assert_eq!((changed, other), (false, true));
        assert_eq!(
            analysis.conflicts(),
            &[MergeConflict::Block(block(0), block(1))]
        );
    }
}
