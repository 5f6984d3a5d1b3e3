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
//! Complexity: `make` is linear in the operands' ranks (plus a hash lookup
//! for leaves); `merge` is linear in the ranks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use egg::{Analysis, DidMerge, EGraph, Id, Language};

use crate::block::Block;
use crate::lang::{OpRef, ParamRef, Scalar, TensorLang, ValueRef};
use crate::semantics::{ChannelMap, OpSemantics};
use crate::shape::{DType, Dim, Mismatch, Shape, ShapeError, TensorType, broadcast};

/// The e-graph of this crate.
pub type TensorEGraph = EGraph<TensorLang, TensorAnalysis>;

/// What the analysis knows of an e-class.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TensorData {
    /// The shape, when known.
    pub shape: Option<Shape>,
    /// The element type, when known.
    pub dtype: Option<DType>,
    /// The value, when the class is a known scalar.
    pub constant: Option<Scalar>,
    /// The residual block, for a `resadd` class (and what it is rewritten to).
    pub block: Option<Block>,
    /// Whether the class is computed from constants alone (declared weight
    /// values and `Num`s, through `+ - * /`, `sigmoid`, `matmul`,
    /// `conv1x1`): a weight the compiler can materialise, which costs
    /// nothing at inference.
    pub weight: bool,
}

impl TensorData {
    /// The shape and element type.
    #[must_use]
    pub fn ty(&self) -> TensorType {
        TensorType {
            shape: self.shape.clone(),
            dtype: self.dtype.clone(),
        }
    }

    fn of_type(ty: &TensorType) -> Self {
        Self {
            shape: ty.shape.clone(),
            dtype: ty.dtype.clone(),
            ..Self::default()
        }
    }
}

/// A term whose type comes from the lowering.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Leaf {
    /// An IR value.
    Value(ValueRef),
    /// A `LAuReL` parameter.
    Param(ParamRef),
    /// An output of a generic ONNX op.
    Op(OpRef),
}

impl Leaf {
    /// The leaf a term's type is looked up by, if it is one.
    #[must_use]
    pub fn of(node: &TensorLang) -> Option<Self> {
        match node {
            TensorLang::Value(v) => Some(Self::Value(*v)),
            TensorLang::Param(p) => Some(Self::Param(*p)),
            TensorLang::Onnx(op, _) => Some(Self::Op(*op)),
            _ => None,
        }
    }
}

impl fmt::Display for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Leaf::Value(v) => write!(f, "{v}"),
            Leaf::Param(p) => write!(f, "{p}"),
            Leaf::Op(o) => write!(f, "{o}"),
        }
    }
}

/// The types of leaves and generic ops, as the lowering declares them. A
/// leaf that is not declared has an unknown type.
#[derive(Debug, Clone, Default)]
pub struct LeafTable {
    types: HashMap<Leaf, TensorType>,
    weights: HashSet<ValueRef>,
}

impl LeafTable {
    /// The declared type of `leaf`.
    #[must_use]
    pub fn get(&self, leaf: &Leaf) -> Option<&TensorType> {
        self.types.get(leaf)
    }

    /// Declares `leaf`'s type, returning the previous declaration.
    pub fn insert(&mut self, leaf: Leaf, ty: TensorType) -> Option<TensorType> {
        self.types.insert(leaf, ty)
    }

    /// Removes a declaration (an applier undoing its own).
    pub(crate) fn remove(&mut self, leaf: &Leaf) -> Option<TensorType> {
        self.types.remove(leaf)
    }

    /// Declares `value` a weight: a constant the compiler may compute with.
    pub fn insert_weight(&mut self, value: ValueRef) {
        self.weights.insert(value);
    }

    /// Whether `value` is a declared weight.
    #[must_use]
    pub fn is_weight(&self, value: &ValueRef) -> bool {
        self.weights.contains(value)
    }

    /// How many leaves are declared.
    #[must_use]
    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// Whether no leaf is declared.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }
}

/// Two merged classes that disagreed: a bug in a rule or in the lowering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeConflict {
    /// Different known shapes.
    Shape(Shape, Shape),
    /// Different known element types.
    DType(DType, DType),
    /// Different known constants.
    Constant(Scalar, Scalar),
    /// Different residual blocks.
    Block(Block, Block),
}

impl fmt::Display for MergeConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |s: &Shape| TensorType {
            shape: Some(s.clone()),
            dtype: None,
        };
        match self {
            MergeConflict::Shape(a, b) => {
                write!(f, "merged shapes {} and {}", show(a), show(b))
            }
            MergeConflict::DType(a, b) => write!(f, "merged element types {a} and {b}"),
            MergeConflict::Constant(a, b) => write!(f, "merged constants {a} and {b}"),
            MergeConflict::Block(a, b) => write!(f, "merged blocks {} and {}", a.id, b.id),
        }
    }
}

/// A bug the analysis recorded: a merge of disagreeing classes, or an
/// ill-shaped term that entered without the check. Passes fail on either.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordedBug {
    /// Two classes with different known types were merged.
    #[error("{count} merge conflict(s), the first: {first}")]
    Conflict {
        /// The first conflict.
        first: Box<MergeConflict>,
        /// How many.
        count: usize,
    },
    /// A term entered the e-graph without the check and was ill-shaped.
    #[error("{count} ill-shaped term(s) entered the e-graph, the first: {first}")]
    IllShaped {
        /// The first one.
        first: Box<ShapeError>,
        /// How many.
        count: usize,
    },
}

/// Why a rule application was refused (see [`crate::checked`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The right-hand side would be ill-shaped.
    IllShaped(ShapeError),
    /// The matched `resadd` class carries no block tag.
    NoBlock,
    /// The block's channel axis fits no layout the rule knows.
    Layout {
        /// The channel axis.
        axis: usize,
        /// The tensor's rank.
        rank: Option<usize>,
    },
    /// The channel count is unknown or symbolic, so the parameters cannot be shaped.
    Channels,
    /// A parameter is already declared with another type.
    ParamType(ParamRef),
    /// The variant has none of RW, LR and PA.
    NoPart,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::IllShaped(e) => write!(f, "{e}"),
            Refusal::NoBlock => write!(f, "the residual add carries no block"),
            Refusal::Layout { axis, rank } => match rank {
                Some(r) => write!(f, "channel axis {axis} of a rank-{r} tensor fits no layout"),
                None => write!(f, "channel axis {axis} of a tensor of unknown rank"),
            },
            Refusal::Channels => write!(f, "the channel count is not a known number"),
            Refusal::ParamType(p) => write!(f, "{p} is already declared with another type"),
            Refusal::NoPart => write!(f, "the variant has none of RW, LR and PA"),
        }
    }
}

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

    fn modify(egraph: &mut TensorEGraph, id: Id) {
        if let Some(c) = egraph[id].data.constant.clone() {
            let num = egraph.add(TensorLang::Num(c));
            egraph.union(id, num);
        }
    }
}

/// Whether two possibly unknown shapes may be equal (unknown fits anything).
fn same(a: Option<&Shape>, b: Option<&Shape>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// Whether a coefficient broadcasts to `target` without changing it.
fn scales(coefficient: Option<&Shape>, target: Option<&Shape>) -> bool {
    match (coefficient, target) {
        (Some(c), Some(t)) => broadcast(c, t).is_ok_and(|s| s == *t),
        _ => true,
    }
}

/// The common element type of `operands`, ignoring unknown ones.
fn agree(operands: &[&TensorData]) -> Result<Option<DType>, Mismatch> {
    let mut known = operands.iter().filter_map(|d| d.dtype.as_ref());
    let Some(first) = known.next() else {
        return Ok(None);
    };
    match known.find(|d| *d != first) {
        Some(other) => Err(Mismatch::DType {
            left: first.clone(),
            right: other.clone(),
        }),
        None => Ok(Some(first.clone())),
    }
}

/// The operands' shapes, by position (`None`: unknown or absent).
struct Shapes<'a>(Vec<Option<&'a Shape>>);

impl<'a> Shapes<'a> {
    fn get(&self, i: usize) -> Option<&'a Shape> {
        self.0.get(i).copied().flatten()
    }

    /// Fails unless operand `i`, when known, has a rank `ok` accepts.
    fn rank(
        &self,
        i: usize,
        expected: &'static str,
        ok: fn(usize) -> bool,
    ) -> Result<(), Mismatch> {
        match self.get(i) {
            Some(s) if !ok(s.len()) => Err(Mismatch::Rank {
                operand: i,
                expected,
                got: s.len(),
            }),
            _ => Ok(()),
        }
    }

    /// Fails unless operand `i` may have operand 0's shape.
    fn equal_to_f(&self, i: usize) -> Result<(), Mismatch> {
        if same(self.get(0), self.get(i)) {
            Ok(())
        } else {
            Err(Mismatch::NotSameShape { operand: i })
        }
    }

    /// Fails unless coefficient `c` may scale operand `target` in place.
    fn coefficient(&self, c: usize, target: usize) -> Result<(), Mismatch> {
        if scales(self.get(c), self.get(target)) {
            Ok(())
        } else {
            Err(Mismatch::Coefficient { operand: c })
        }
    }

    /// The shape of `f`, or of `x` when `f`'s is unknown.
    fn of_f(&self) -> Option<Shape> {
        self.get(0).or(self.get(1)).cloned()
    }
}

/// `+ - * /`: numpy broadcasting.
fn elementwise(s: &Shapes<'_>) -> Result<Option<Shape>, Mismatch> {
    match (s.get(0), s.get(1)) {
        (Some(a), Some(b)) => broadcast(a, b).map(Some),
        _ => Ok(None),
    }
}

/// `matmul [x w]`: `[.., K] · [K, N] → [.., N]`.
fn matmul(s: &Shapes<'_>) -> Result<Option<Shape>, Mismatch> {
    s.rank(0, "≥ 1", |r| r >= 1)?;
    s.rank(1, "2", |r| r == 2)?;
    let (Some(x), Some(w)) = (s.get(0), s.get(1)) else {
        return Ok(None);
    };
    let (Some((k, batch)), [w_in, w_out]) = (x.split_last(), w.as_slice()) else {
        return Ok(None);
    };
    if k != w_in {
        return Err(Mismatch::Contraction {
            input: k.clone(),
            weight: w_in.clone(),
        });
    }
    let mut out = batch.to_vec();
    out.push(w_out.clone());
    Ok(Some(out))
}

/// `conv1x1 [x w]`: `[N, C, ...]` with `w: [O, C]` (or an ONNX kernel
/// `[O, C, 1, 1]`) → `[N, O, ...]`.
fn conv1x1(s: &Shapes<'_>) -> Result<Option<Shape>, Mismatch> {
    s.rank(0, "≥ 3", |r| r >= 3)?;
    s.rank(1, "2 or 4", |r| r == 2 || r == 4)?;
    let (Some(x), Some(w)) = (s.get(0), s.get(1)) else {
        return Ok(None);
    };
    let one = Dim::Fixed(1);
    let (Some(c), [w_out, w_in] | [w_out, w_in, _, _]) = (x.get(1), w.as_slice()) else {
        return Ok(None);
    };
    if w.len() == 4 && (w[2] != one || w[3] != one) {
        return Err(Mismatch::Rank {
            operand: 1,
            expected: "a [out, in, 1, 1] kernel",
            got: 4,
        });
    }
    if c != w_in {
        return Err(Mismatch::Contraction {
            input: c.clone(),
            weight: w_in.clone(),
        });
    }
    let mut out = x.clone();
    out[1] = w_out.clone();
    Ok(Some(out))
}

/// A channel-map weight: `[in, out]` (rank 2) or `[out, in, 1, 1]` (rank 4);
/// its (in, out) dims.
pub(crate) fn map_dims(w: &Shape) -> Option<(&Dim, &Dim)> {
    match w.as_slice() {
        [i, o] | [o, i, Dim::Fixed(1), Dim::Fixed(1)] => Some((i, o)),
        _ => None,
    }
}

/// `compose [w1 w2]`: `w1` then `w2`, both `[in, out]` or both
/// `[out, in, 1, 1]`.
fn compose(s: &Shapes<'_>) -> Result<Option<Shape>, Mismatch> {
    s.rank(0, "2 or 4", |r| r == 2 || r == 4)?;
    s.rank(1, "2 or 4", |r| r == 2 || r == 4)?;
    let (Some(w1), Some(w2)) = (s.get(0), s.get(1)) else {
        return Ok(None);
    };
    if w1.len() != w2.len() {
        return Err(Mismatch::Rank {
            operand: 1,
            expected: "the rank of operand 0",
            got: w2.len(),
        });
    }
    let bad = |operand| Mismatch::Rank {
        operand,
        expected: "a channel-map weight ([in, out] or [out, in, 1, 1])",
        got: 4,
    };
    let (i1, o1) = map_dims(w1).ok_or(bad(0))?;
    let (i2, o2) = map_dims(w2).ok_or(bad(1))?;
    if o1 != i2 {
        return Err(Mismatch::Contraction {
            input: o1.clone(),
            weight: i2.clone(),
        });
    }
    Ok(Some(if w1.len() == 2 {
        vec![i1.clone(), o2.clone()]
    } else {
        vec![o2.clone(), i1.clone(), Dim::Fixed(1), Dim::Fixed(1)]
    }))
}

/// `add-eye w`: a square channel-map weight.
fn add_eye(s: &Shapes<'_>) -> Result<Option<Shape>, Mismatch> {
    s.rank(0, "2 or 4", |r| r == 2 || r == 4)?;
    let Some(w) = s.get(0) else {
        return Ok(None);
    };
    match map_dims(w) {
        Some((i, o)) if i == o && matches!(i, Dim::Fixed(_)) => Ok(Some(w.clone())),
        _ => Err(Mismatch::Rank {
            operand: 0,
            expected: "a square channel-map weight of fixed size",
            got: w.len(),
        }),
    }
}

/// `laurel-residual [c₀ t₀ c₁ t₁ …]`: scalar coefficients, terms that
/// broadcast together (at least two of them).
fn laurel_residual(s: &Shapes<'_>) -> Result<Option<Shape>, Mismatch> {
    let n = s.0.len();
    if n < 4 || !n.is_multiple_of(2) {
        return Err(Mismatch::Arity {
            expected: "an even number, at least 4",
            got: n,
        });
    }
    let mut out: Option<Shape> = Some(Vec::new());
    for i in (0..n).step_by(2) {
        if s.get(i).is_some_and(|c| !c.is_empty()) {
            return Err(Mismatch::Coefficient { operand: i });
        }
        out = match (out, s.get(i + 1)) {
            (Some(a), Some(b)) => Some(broadcast(&a, b)?),
            _ => None,
        };
    }
    Ok(out)
}

/// `concat [k a b]`: equal ranks, equal dims but on axis `k`, which adds up.
fn concat(operands: &[&TensorData]) -> Result<Option<Shape>, Mismatch> {
    let shapes = Shapes(operands.iter().map(|d| d.shape.as_ref()).collect());
    shapes.rank(0, "0 (the axis)", |r| r == 0)?;
    let axis = operands.first().and_then(|d| d.constant.as_ref());
    let (Some(axis), Some(a), Some(b)) = (axis, shapes.get(1), shapes.get(2)) else {
        return Ok(None);
    };
    let k = axis
        .to_usize()
        .filter(|&k| k < a.len())
        .ok_or(Mismatch::Coefficient { operand: 0 })?;
    if a.len() != b.len() {
        return Err(Mismatch::NotSameShape { operand: 2 });
    }
    let mut out = a.clone();
    for (i, (p, q)) in a.iter().zip(b).enumerate() {
        if i == k {
            out[i] = match (p, q) {
                (Dim::Fixed(left), Dim::Fixed(right)) => Dim::Fixed(left + right),
                _ => return Err(Mismatch::NotSameShape { operand: 2 }),
            };
        } else if p != q {
            return Err(Mismatch::NotSameShape { operand: 2 });
        }
    }
    Ok(Some(out))
}

/// `slice [k start end x]`: `x` with axis `k` cut to `start..end`.
fn slice(operands: &[&TensorData]) -> Result<Option<Shape>, Mismatch> {
    let index = |i: usize| {
        operands
            .get(i)
            .and_then(|d| d.constant.as_ref())
            .and_then(Scalar::to_usize)
    };
    let Some(x) = operands.get(3).and_then(|d| d.shape.as_ref()) else {
        return Ok(None);
    };
    let (Some(k), Some(start), Some(end)) = (index(0), index(1), index(2)) else {
        return Err(Mismatch::Coefficient { operand: 0 });
    };
    match x.get(k) {
        Some(Dim::Fixed(n)) if start < end && u64::try_from(end).is_ok_and(|e| e <= *n) => {
            let mut out = x.clone();
            out[k] = Dim::Fixed(u64::try_from(end - start).unwrap_or(u64::MAX));
            Ok(Some(out))
        }
        _ => Err(Mismatch::NotSameShape { operand: 3 }),
    }
}

/// `laurel-lr [f x a b]`: `a`, `b` are `[p, q]`, `[q, p]` acting on `x`'s
/// last axis (`p = C`) or axis 1 (`q = C`).
fn laurel_lr(s: &Shapes<'_>) -> Result<Option<Shape>, Mismatch> {
    s.equal_to_f(1)?;
    s.rank(2, "2", |r| r == 2)?;
    s.rank(3, "2", |r| r == 2)?;
    if let (Some(a), Some(b)) = (s.get(2), s.get(3)) {
        let transposed = a[0] == b[1] && a[1] == b[0];
        let acts_on_x = s
            .of_f()
            .is_none_or(|x| x.last() == Some(&a[0]) || (x.len() >= 3 && x[1] == a[1]));
        if !transposed || !acts_on_x {
            return Err(Mismatch::LowRankFactors);
        }
    }
    Ok(s.of_f())
}

/// The shape of a term other than a leaf or a generic op.
fn shape(node: &TensorLang, s: &Shapes<'_>) -> Result<Option<Shape>, Mismatch> {
    match node {
        TensorLang::Add(_) | TensorLang::Sub(_) | TensorLang::Mul(_) | TensorLang::Div(_) => {
            elementwise(s)
        }
        TensorLang::Sigmoid(_) => Ok(s.get(0).cloned()),
        TensorLang::MatMul(_) => matmul(s),
        TensorLang::Conv1x1(_) => conv1x1(s),
        TensorLang::ResAdd(_) => s.equal_to_f(1).map(|()| s.of_f()),
        TensorLang::LaurelRw(_) => {
            s.equal_to_f(1)?;
            s.coefficient(2, 0)?;
            s.coefficient(3, 1)?;
            Ok(s.of_f())
        }
        TensorLang::LaurelLr(_) => laurel_lr(s),
        TensorLang::Compose(_) => compose(s),
        TensorLang::AddEye(_) => add_eye(s),
        TensorLang::LaurelResidual(_) => laurel_residual(s),
        TensorLang::LaurelPa(_) => {
            s.equal_to_f(1)?;
            for i in (2..s.0.len()).step_by(2) {
                s.equal_to_f(i + 1)?;
                s.coefficient(i, i + 1)?;
            }
            Ok(s.of_f())
        }
        TensorLang::Num(_) => Ok(Some(Vec::new())),
        // A concat's axis is a constant, which shapes do not carry: see `concat`.
        TensorLang::Param(_)
        | TensorLang::Value(_)
        | TensorLang::Onnx(..)
        | TensorLang::Concat(_)
        | TensorLang::Slice(_) => Ok(None),
    }
}

/// The exact value of a term of known constants, when it has one.
fn fold(node: &TensorLang, operands: &[&TensorData]) -> Option<Scalar> {
    let constant = |i: usize| operands.get(i).and_then(|d| d.constant.as_ref());
    match node {
        TensorLang::Num(c) => Some(c.clone()),
        TensorLang::Add(_) => Some(constant(0)? + constant(1)?),
        TensorLang::Sub(_) => Some(constant(0)? - constant(1)?),
        TensorLang::Mul(_) => Some(constant(0)? * constant(1)?),
        TensorLang::Div(_) => constant(0)?.checked_div(constant(1)?),
        // σ(0) = 1/2; σ(q) is irrational for every other rational q.
        TensorLang::Sigmoid(_) if constant(0)?.is_zero() => Scalar::fraction(1, 2),
        _ => None,
    }
}

/// Whether `node` computes a weight from its operands' data.
fn computes_weights(node: &TensorLang, operands: &[&TensorData]) -> bool {
    match node {
        TensorLang::Num(_) => true,
        TensorLang::Add(_)
        | TensorLang::Sub(_)
        | TensorLang::Mul(_)
        | TensorLang::Div(_)
        | TensorLang::Sigmoid(_)
        | TensorLang::MatMul(_)
        | TensorLang::Conv1x1(_)
        | TensorLang::Compose(_)
        | TensorLang::AddEye(_)
        | TensorLang::Concat(_)
        | TensorLang::Slice(_) => operands.iter().all(|d| d.weight),
        _ => false,
    }
}

/// The data of the term `node` whose operands (in `node.children()` order)
/// have the data `operands`; leaves and generic ops read `leaves`. The
/// result carries no block tag.
///
/// # Errors
/// [`ShapeError`] when the operands do not fit the term.
pub fn infer(
    node: &TensorLang,
    operands: &[&TensorData],
    leaves: &LeafTable,
) -> Result<TensorData, ShapeError> {
    let fail = |mismatch: Mismatch| ShapeError {
        term: node.to_string(),
        operands: operands.iter().map(|d| d.ty()).collect(),
        mismatch,
    };
    if operands.len() != node.len() {
        return Err(fail(Mismatch::UnknownOperand {
            operand: operands.len().min(node.len()),
        }));
    }
    if let Some(leaf) = Leaf::of(node) {
        let mut data = leaves
            .get(&leaf)
            .map(TensorData::of_type)
            .unwrap_or_default();
        data.weight = matches!(node, TensorLang::Value(v) if leaves.is_weight(v));
        return Ok(data);
    }
    let dtype = agree(operands).map_err(fail)?;
    let shapes = Shapes(operands.iter().map(|d| d.shape.as_ref()).collect());
    Ok(TensorData {
        shape: match node {
            TensorLang::Concat(_) => concat(operands),
            TensorLang::Slice(_) => slice(operands),
            _ => shape(node, &shapes),
        }
        .map_err(fail)?,
        dtype,
        constant: fold(node, operands),
        block: None,
        weight: computes_weights(node, operands),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::TensorGraph;
    use crate::lang::BlockId;
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
