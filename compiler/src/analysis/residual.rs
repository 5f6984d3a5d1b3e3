//! Canonical residual adds and projection shortcuts.
//!
//! A **canonical (identity) residual** is an `Add`, or a two-input `Sum`, of
//! two computed (non-constant) operands `x` and `y` where:
//! - `x` is a data ancestor of `y = f(x)` (paths through `Shape`/`Size` do
//!   not count, see [`super::reach`]);
//! - the branch, the ops between `x` and `y`, holds a parametric op
//!   ([`super::PARAMETRIC_OPS`]);
//! - both operands have the same shape, static or symbolic, with no
//!   broadcasting, as tract's type inference gives it (symbolic shapes are
//!   equal only when their expressions are).
//!
//! Bias adds fail the first rule (a constant operand), GELU-tanh's
//! `x + c·x³` the second (no parametric op), and BERT's attention-mask add
//! the reachability or the shape rule.
//!
//! A **projection shortcut** is `Add(P(x), f(x))` where neither operand is an
//! ancestor of the other, both fork from a common computed value `x`, both
//! branches hold a parametric op, the shapes agree, `P` is the shorter
//! branch, of at most [`MAX_PROJECTION_OPS`] ops, and `P` reads `x` whole:
//! no op of `P` that reads `x` is a slicing op ([`SLICING_OPS`]).
//!
//! Two refinements keep out adds that pass those rules but are no residual
//! connection (`fixtures/traps.py` has a `PyTorch` export of each):
//! - **Attention logits.** An add whose sum reaches a `Softmax` or
//!   `LogSoftmax` through at most [`LOGIT_HOPS`] ops that keep it logits
//!   ([`LOGIT_OPS`]: scaling, masking, reshaping) is scores plus a bias.
//!   A bias computed once and added to every layer's scores (a relative
//!   position or graph-distance bias) is an ancestor of the later layers'
//!   scores through the stream, with their `[B, H, T, T]` shape, and would
//!   otherwise pass as an identity residual. A residual's sum is the next
//!   state of a stream; it is normalised over channels or fed to the next
//!   block, never turned into a distribution by the next few ops.
//! - **Recurrent cells.** In an LSTM or GRU unrolled into `Gemm` cells,
//!   `Gemm(x_t) + Gemm(h_{t−1})` forks from the input sequence: `x_t` is one
//!   step of it (`Gather`, `Slice`) and `h_{t−1}` a function of the earlier
//!   steps. That is why `P` must read the fork whole: a projection maps the
//!   stream's state `x`, not a part of it.
//!
//! U-Net long skips (encoder feature + upsampled decoder feature, equal
//! shapes) stay identity residuals, nested ones too.
//!
//! **`LAuReL` blocks already in the model** (`fixtures/laurel_torch.py`):
//! - RW's `α·f + β·x`: an operand that is `Mul(v, c)`, `Mul(c, v)` or
//!   `Div(v, c)` with `c` a one-element constant is read as `v` for the
//!   rules above; the add is reported with its operands as they are, the
//!   scalars in [`LaurelForm`], and (an identity) `v` as the value its
//!   stream starts from.
//! - LR's `(α·f + β·x) + B(A(x))`: a projection shortcut whose longer
//!   operand is the sum of a residual forking from the same value, and whose
//!   projection is two bias-free linear maps ([`LOW_RANK_MAPS`]) through a
//!   narrower width, is that residual's [`LowRankTerm`]: before, each such
//!   term was counted as a projection shortcut of its own.
//! - Gemma 3n's `h + RMSNorm(B(A(h)))`: an identity residual whose branch is
//!   those two maps (`A` reading the fork) and norm ops only
//!   ([`NORM_OPS`]) is LR with a norm after `B` ([`LowRankTerm::normed`]).
//! - RW weights the branch: a scale on the skip alone (Gemma's `/√2` of the
//!   stream, the end of the previous sum) is no `LaurelForm`.
//!
//! An add of two computed operands one of which has no inferred shape (after
//! the fallbacks of [`super::infer_values`]) cannot be decided: it is
//! returned as [`Undecided`], never dropped silently.
//!
//! For each residual the channel axis and `D` come from the branch's last
//! parametric op: axis 1 after a convolution, the last axis after a matrix
//! product or recurrent op.
//!
//! Complexity: O(A · (V + E)) for A candidate adds.

use std::collections::{BTreeMap, HashMap, HashSet};

use laurel_passes::shape::{DType, Shape};
use laurel_runtime::{DimSpec, InferredValue};
use petgraph::stable_graph::NodeIndex;
use serde::Serialize;

use super::constants::constant_nodes;
use super::is_parametric;
use super::reach::{Value, Window, ancestors, descendants, flows_into};
use super::types::dtype_of_kind;
use crate::ir::is_onnx_domain;
use crate::ir::{Graph, Node};

/// The longest projection branch, in ops (a ResNet-D shortcut is `AvgPool`, Conv, BN).
pub const MAX_PROJECTION_OPS: usize = 4;

/// Ops that read a part of a tensor: a projection branch must not start with one.
pub const SLICING_OPS: &[&str] = &["Gather", "GatherElements", "GatherND", "Slice", "Split"];

/// Ops through which a sum stays attention logits on its way to a `Softmax`:
/// scaling, masking and reshaping, casts and copies.
pub const LOGIT_OPS: &[&str] = &[
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Where",
    "Reshape",
    "Squeeze",
    "Unsqueeze",
    "Cast",
    "Identity",
    "Dropout",
    "Clip",
    "Min",
    "Max",
];

/// How many [`LOGIT_OPS`] may lie between an add and the `Softmax` that
/// makes it attention logits.
pub const LOGIT_HOPS: usize = 4;

/// What kind of residual connection an add is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResidualKind {
    /// `x + f(x)`.
    Identity,
    /// `P(x) + f(x)` with a short parametric `P`.
    Projection,
}

/// A residual add found by [`find_residuals`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Residual {
    /// The `Add`/`Sum` node.
    #[serde(skip)]
    pub node: NodeIndex,
    /// Its ONNX name (or `#i (Add)` when unnamed).
    #[serde(rename = "node")]
    pub name: String,
    /// Identity or projection.
    pub kind: ResidualKind,
    /// The skip operand: `x`, or `P(x)` for a projection.
    pub skip: String,
    /// The branch operand `f(x)`.
    pub branch: String,
    /// The input slot of the skip operand (0 or 1).
    #[serde(skip)]
    pub skip_slot: usize,
    /// For a projection, the value both branches fork from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fork: Option<String>,
    /// The channel count `D`, or `None` when symbolic or unknown.
    pub channels: Option<usize>,
    /// The channel axis (non-negative).
    pub axis: usize,
    /// The operands' shape, as tract infers it (written as strings in JSON:
    /// `["1", "N", "8"]`).
    #[serde(serialize_with = "serialize_shape")]
    pub shape: Shape,
    /// The operands' element type, when inferred (`"f32"` in JSON).
    #[serde(serialize_with = "serialize_dtype")]
    pub dtype: Option<DType>,
    /// The branch's last parametric op.
    #[serde(skip)]
    pub last_parametric: NodeIndex,
    /// Ops on the branch (between the skip value and the add, exclusive).
    pub branch_ops: usize,
    /// The residual stream it belongs to (see [`super::stream`]).
    pub stream: usize,
    /// Its position in that stream.
    pub index: usize,
    /// What of `LAuReL` the residual already has, when it was written as a
    /// `LAuReL` block (a model exported from a `LAuReL` implementation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub laurel: Option<LaurelForm>,
}

/// The `LAuReL` form of a residual found in a model: RW's scalar weights on
/// its operands, and LR's low-rank term added to its sum.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct LaurelForm {
    /// The scalar constant scaling the branch (`α` of `α·f + β·x`), by value name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch_weight: Option<String>,
    /// The scalar constant scaling the skip (`β`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_weight: Option<String>,
    /// LR's term `B·A·x` added to the residual's sum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub low_rank: Option<LowRankTerm>,
}

/// LR's `+ B·A·x`: the add that adds it and the rank of `A`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LowRankTerm {
    /// The add of the low-rank term to the residual's sum.
    pub add: String,
    /// The rank `r` (`A`'s output channels), when known.
    pub rank: Option<usize>,
    /// Whether a norm follows `B` inside the residual's branch: Gemma 3n's
    /// `h + RMSNorm(B·A·h)`, whose add is the residual's own.
    pub normed: bool,
}

impl LaurelForm {
    /// `RW`, `LR r=4`, `RW+LR r=4`: what the form has, for `inspect`.
    #[must_use]
    pub fn label(&self) -> String {
        let rw = self.branch_weight.is_some() || self.skip_weight.is_some();
        let lr = self.low_rank.as_ref().map(|l| {
            let rank = l.rank.map(|r| format!(" r={r}")).unwrap_or_default();
            let normed = if l.normed { " normed" } else { "" };
            format!("LR{rank}{normed}")
        });
        match (rw, lr) {
            (true, Some(lr)) => format!("RW+{lr}"),
            (true, None) => "RW".to_owned(),
            (false, Some(lr)) => lr,
            (false, None) => String::new(),
        }
    }
}

/// An add that could be a residual but whose operands' shapes are unknown,
/// so it could not be decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Undecided {
    /// The `Add`/`Sum` node's name.
    pub node: String,
    /// Why: the operands without a shape.
    pub reason: String,
}

fn serialize_shape<S: serde::Serializer>(shape: &Shape, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(shape.iter().map(ToString::to_string))
}

#[allow(clippy::ref_option)] // serde's signature
fn serialize_dtype<S: serde::Serializer>(dtype: &Option<DType>, s: S) -> Result<S::Ok, S::Error> {
    match dtype {
        Some(d) => s.collect_str(d),
        None => s.serialize_none(),
    }
}

fn value_of(g: &Graph, n: NodeIndex, slot: usize) -> Option<Value> {
    g.op_inputs(n)
        .get(slot)
        .copied()
        .flatten()
        .map(|(src, e)| (src, e.src_slot))
}

fn value_name(g: &Graph, v: Value) -> String {
    g.dag[v.0]
        .outputs()
        .get(v.1)
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// Finds every identity residual and projection shortcut of the main graph,
/// in topological order, and the adds that could not be decided because an
/// operand has no shape. `shapes` maps value names to tract's inferred
/// facts; an add whose operands do not both have a shape there takes both
/// from `fallback` ([`super::infer_values_in_two`]), never one from each.
/// Streams are not yet assigned (see [`super::assign_streams`]).
#[must_use]
#[allow(clippy::too_many_lines)] // each add through the rules in order, one pass
pub fn find_residuals(
    g: &Graph,
    shapes: &BTreeMap<String, InferredValue>,
    fallback: Option<&BTreeMap<String, InferredValue>>,
) -> (Vec<Residual>, Vec<Undecided>) {
    let constant = constant_nodes(g);
    let Ok(order) = g.topo_ops() else {
        return (Vec::new(), Vec::new());
    };
    let mut undecided = Vec::new();
    let position: HashMap<NodeIndex, usize> =
        order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let mut found = Vec::new();
    for &n in &order {
        let Node::Op(op) = &g.dag[n] else { continue };
        let is_add = is_onnx_domain(&op.proto.domain)
            && (op.proto.op_type == "Add" || op.proto.op_type == "Sum")
            && op.num_inputs == 2;
        if !is_add {
            continue;
        }
        let (Some(a), Some(b)) = (value_of(g, n, 0), value_of(g, n, 1)) else {
            continue;
        };
        if constant.contains(&a.0) || constant.contains(&b.0) || a == b {
            continue;
        }
        if feeds_softmax(g, n) {
            continue;
        }
        let (sa, sb) = match operand_shapes(g, (a, b), shapes, fallback) {
            Ok(pair) => pair,
            Err(reason) => {
                undecided.push(Undecided {
                    node: add_name(g, n, &op.proto.name),
                    reason,
                });
                continue;
            }
        };
        if sa != sb {
            continue;
        }
        // RW's `α·f + β·x`: the rules read the values the scalars scale.
        let is_scalar = |v: Value| scalar_constant(g, v, &constant, shapes, fallback);
        let ((ua, wa), (ub, wb)) = (unscaled(g, a, &is_scalar), unscaled(g, b, &is_scalar));
        let candidate =
            identity(g, ua, ub, &position).or_else(|| projection(g, ua, ub, &constant, &position));
        let Some((skip_slot, branch_nodes, kind, fork)) = candidate else {
            continue;
        };
        let (mut laurel, fork) = rw_form(g, skip_slot, kind, fork, (ua, wa), (ub, wb));
        let start = if skip_slot == 0 { ua } else { ub };
        if kind == ResidualKind::Identity
            && let Some(width) = normed_low_rank(g, &branch_nodes, start, shapes, &sa)
        {
            laurel.get_or_insert_with(LaurelForm::default).low_rank =
                Some(width.term(add_name(g, n, &op.proto.name), true));
        }
        let Some(&last) = branch_nodes
            .iter()
            .filter(|&&m| {
                g.dag[m]
                    .as_op()
                    .is_some_and(|o| is_parametric(&o.proto.op_type))
            })
            .max_by_key(|&&m| position.get(&m).copied().unwrap_or(0))
        else {
            continue;
        };
        let last_op = g.dag[last].as_op().map_or("", |o| o.proto.op_type.as_str());
        let axis = if matches!(
            last_op,
            "Conv" | "ConvTranspose" | "ConvInteger" | "QLinearConv"
        ) {
            1
        } else {
            sa.len().saturating_sub(1)
        };
        let channels = match sa.get(axis) {
            Some(DimSpec::Fixed(d)) => Some(*d),
            _ => None,
        };
        let (skip, branch) = if skip_slot == 0 { (a, b) } else { (b, a) };
        found.push(Residual {
            node: n,
            name: add_name(g, n, &op.proto.name),
            kind,
            skip: value_name(g, skip),
            branch: value_name(g, branch),
            skip_slot,
            fork: fork.map(|v| value_name(g, v)),
            channels,
            axis,
            shape: super::types::shape_of(&sa),
            dtype: shapes
                .get(&value_name(g, a))
                .and_then(|f| f.datum)
                .or_else(|| fallback?.get(&value_name(g, a))?.datum)
                .map(dtype_of_kind),
            last_parametric: last,
            branch_ops: branch_nodes.len(),
            stream: 0,
            index: 0,
            laurel,
        });
    }
    let found = low_rank_terms(g, found, shapes);
    (found, undecided)
}

/// RW's scalars of a residual found on the unscaled operands `(u, w)`
/// (value, its scalar), and the fork: a weighted identity residual's stream
/// starts at the value `β` scales.
fn rw_form(
    g: &Graph,
    skip_slot: usize,
    kind: ResidualKind,
    fork: Option<Value>,
    a: (Value, Option<Value>),
    b: (Value, Option<Value>),
) -> (Option<LaurelForm>, Option<Value>) {
    let (skip, branch) = if skip_slot == 0 { (a, b) } else { (b, a) };
    // RW weights the branch; a scale on the skip alone is the end of what
    // came before (Gemma 3n's `/√2` of the stream), not a LAuReL weight.
    if branch.1.is_none() {
        return (None, fork);
    }
    let laurel = Some(LaurelForm {
        branch_weight: branch.1.map(|w| value_name(g, w)),
        skip_weight: skip.1.map(|w| value_name(g, w)),
        low_rank: None,
    });
    let fork = match (kind, skip.1) {
        (ResidualKind::Identity, Some(_)) => Some(skip.0),
        _ => fork,
    };
    (laurel, fork)
}

/// Whether `v` is a one-element constant (an initializer or a constant
/// op's output).
fn scalar_constant(
    g: &Graph,
    v: Value,
    constant: &HashSet<NodeIndex>,
    shapes: &BTreeMap<String, InferredValue>,
    fallback: Option<&BTreeMap<String, InferredValue>>,
) -> bool {
    if !constant.contains(&v.0) {
        return false;
    }
    let name = value_name(g, v);
    let shape = shapes
        .get(&name)
        .and_then(|f| f.shape.as_ref())
        .or_else(|| fallback?.get(&name)?.shape.as_ref());
    shape.is_some_and(|dims| dims.iter().all(|d| matches!(d, DimSpec::Fixed(1))))
}

/// `v` without a scalar factor: `x` for `Mul(x, c)`, `Mul(c, x)` or
/// `Div(x, c)` with `c` a one-element constant, and `c`; else `v` itself.
fn unscaled(g: &Graph, v: Value, is_scalar: &dyn Fn(Value) -> bool) -> (Value, Option<Value>) {
    let Some(op) = g.dag[v.0].as_op() else {
        return (v, None);
    };
    if !is_onnx_domain(&op.proto.domain) || op.num_inputs != 2 {
        return (v, None);
    }
    let (Some(p), Some(q)) = (value_of(g, v.0, 0), value_of(g, v.0, 1)) else {
        return (v, None);
    };
    match op.proto.op_type.as_str() {
        "Mul" | "Div" if is_scalar(q) && !is_scalar(p) => (p, Some(q)),
        "Mul" if is_scalar(p) && !is_scalar(q) => (q, Some(p)),
        _ => (v, None),
    }
}

/// The ops a low-rank term `B·A·x` may be made of: two bias-free linear maps.
const LOW_RANK_MAPS: &[&str] = &["MatMul", "Conv"];

/// LR's `(α·f + β·x) + B·A·x`: a projection shortcut whose longer operand is
/// the sum of a residual, whose fork is that residual's skip value, and whose
/// projection is two linear maps through a narrower width is the residual's
/// low-rank term, not a residual of its own. It is removed from `found` and
/// recorded in the residual's [`LaurelForm::low_rank`]. O(R).
fn low_rank_terms(
    g: &Graph,
    found: Vec<Residual>,
    shapes: &BTreeMap<String, InferredValue>,
) -> Vec<Residual> {
    let by_sum: HashMap<String, usize> = found
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((g.dag[r.node].outputs().first()?.to_string(), i)))
        .collect();
    let producers = g.producers();
    let mut keep = vec![true; found.len()];
    let mut terms: Vec<(usize, LowRankTerm)> = Vec::new();
    for (i, p) in found.iter().enumerate() {
        if p.kind != ResidualKind::Projection {
            continue;
        }
        let Some(&j) = by_sum.get(&p.branch) else {
            continue;
        };
        let inner = &found[j];
        let inner_start = inner.fork.as_deref().unwrap_or(&inner.skip);
        if p.fork.as_deref() != Some(inner_start) {
            continue;
        }
        let Some(width) = low_rank_chain(g, &producers, p, shapes) else {
            continue;
        };
        keep[i] = false;
        terms.push((j, width.term(p.name.clone(), false)));
    }
    let mut found = found;
    for (j, term) in terms {
        found[j]
            .laurel
            .get_or_insert_with(LaurelForm::default)
            .low_rank = Some(term);
    }
    found
        .into_iter()
        .zip(keep)
        .filter_map(|(r, k)| k.then_some(r))
        .collect()
}

/// Ops a norm after a low-rank branch's `B` may be made of (an `RMSNorm` or a
/// `LayerNorm`, decomposed or not).
const NORM_OPS: &[&str] = &[
    "Pow",
    "Mul",
    "Div",
    "Add",
    "Sub",
    "Sqrt",
    "Reciprocal",
    "ReduceMean",
    "ReduceSumSquare",
    "Cast",
    "LayerNormalization",
    "SimplifiedLayerNormalization",
];

/// Gemma 3n's `laurel(h) = h + RMSNorm(B(A(h)))`: whether an identity
/// residual's branch (`nodes`, forking from `x`) is two bias-free linear
/// maps, `A` reading `x` and `B` reading `A`, through a narrower width,
/// followed only by norm ops ([`NORM_OPS`]); the width.
fn normed_low_rank(
    g: &Graph,
    nodes: &HashSet<NodeIndex>,
    x: Value,
    shapes: &BTreeMap<String, InferredValue>,
    shape: &[DimSpec],
) -> Option<Width> {
    let maps: Vec<NodeIndex> = nodes
        .iter()
        .copied()
        .filter(|&node| {
            g.dag[node]
                .as_op()
                .is_some_and(|o| is_parametric(&o.proto.op_type))
        })
        .collect();
    let [first, second] = maps[..] else {
        return None;
    };
    let is_map = |node: NodeIndex| {
        g.dag[node]
            .as_op()
            .is_some_and(|o| LOW_RANK_MAPS.contains(&o.proto.op_type.as_str()) && o.num_inputs == 2)
    };
    let reads = |node: NodeIndex, v: Value| value_of(g, node, 0) == Some(v);
    let (map_a, map_b) = if reads(first, x) {
        (first, second)
    } else {
        (second, first)
    };
    if !is_map(map_a) || !is_map(map_b) || !reads(map_a, x) || !reads(map_b, (map_a, 0)) {
        return None;
    }
    let others_are_norm = nodes.iter().all(|&node| {
        node == map_a
            || node == map_b
            || g.dag[node]
                .as_op()
                .is_some_and(|o| NORM_OPS.contains(&o.proto.op_type.as_str()))
    });
    if !others_are_norm {
        return None;
    }
    let conv = g.dag[map_a]
        .as_op()
        .is_some_and(|o| o.proto.op_type == "Conv");
    let axis = if conv {
        1
    } else {
        shape.len().saturating_sub(1)
    };
    let channels = match shape.get(axis) {
        Some(DimSpec::Fixed(d)) => Some(*d),
        _ => None,
    };
    Width::of(shapes, &value_name(g, (map_a, 0)), axis, channels)
}

/// The width between a low-rank term's two maps.
enum Width {
    /// Known, and narrower than `D`: the rank.
    Narrower(usize),
    /// Symbolic or unknown (`D` or the width).
    Unknown,
}

impl Width {
    /// The width of `middle` (`A`'s output) at `axis` against `channels`
    /// (`D`): `None` when both are known and the width is not narrower.
    fn of(
        shapes: &BTreeMap<String, InferredValue>,
        middle: &str,
        axis: usize,
        channels: Option<usize>,
    ) -> Option<Self> {
        let width = shapes
            .get(middle)
            .and_then(|f| f.shape.as_ref())
            .and_then(|dims| match dims.get(axis) {
                Some(DimSpec::Fixed(r)) => Some(*r),
                _ => None,
            });
        match (width, channels) {
            (Some(r), Some(d)) if r < d => Some(Width::Narrower(r)),
            (Some(_), Some(_)) => None,
            _ => Some(Width::Unknown),
        }
    }

    /// The term added by `add`, of this rank.
    fn term(self, add: String, normed: bool) -> LowRankTerm {
        LowRankTerm {
            add,
            rank: match self {
                Width::Narrower(r) => Some(r),
                Width::Unknown => None,
            },
            normed,
        }
    }
}

/// When projection `p`'s skip is `B(A(fork))`, two bias-free maps of
/// [`LOW_RANK_MAPS`] whose middle width is not known to be `D` or more: the
/// width.
fn low_rank_chain(
    g: &Graph,
    producers: &HashMap<&str, (NodeIndex, usize)>,
    p: &Residual,
    shapes: &BTreeMap<String, InferredValue>,
) -> Option<Width> {
    let map = |name: &str| -> Option<(NodeIndex, String)> {
        let &(n, _) = producers.get(name)?;
        let op = g.dag[n].as_op()?;
        if !LOW_RANK_MAPS.contains(&op.proto.op_type.as_str()) || op.num_inputs != 2 {
            return None;
        }
        Some((n, value_name(g, value_of(g, n, 0)?)))
    };
    let (_, middle) = map(&p.skip)?;
    let (_, input) = map(&middle)?;
    if Some(input.as_str()) != p.fork.as_deref() {
        return None;
    }
    Width::of(shapes, &middle, p.axis, p.channels)
}

/// An inferred shape.
type Dims = Vec<DimSpec>;

/// The shapes of an add's two operands, both from `shapes` or else both
/// from `fallback` (never one from each: they name varying sizes
/// differently); or why there are none.
fn operand_shapes(
    g: &Graph,
    operands: (Value, Value),
    shapes: &BTreeMap<String, InferredValue>,
    fallback: Option<&BTreeMap<String, InferredValue>>,
) -> Result<(Dims, Dims), String> {
    let shape_in = |map: &BTreeMap<String, InferredValue>, v: Value| {
        map.get(&value_name(g, v)).and_then(|f| f.shape.clone())
    };
    let pair = |map: &BTreeMap<String, InferredValue>| {
        Some((shape_in(map, operands.0)?, shape_in(map, operands.1)?))
    };
    if let Some(found) = pair(shapes).or_else(|| fallback.and_then(pair)) {
        return Ok(found);
    }
    let known = |v: Value| {
        shape_in(shapes, v).is_some() || fallback.is_some_and(|f| shape_in(f, v).is_some())
    };
    let missing: Vec<String> = [operands.0, operands.1]
        .into_iter()
        .filter(|&v| !known(v))
        .map(|v| format!("`{}`", value_name(g, v)))
        .collect();
    Err(if missing.is_empty() {
        "its operands' shapes come from two inferences that cannot be compared".to_owned()
    } else {
        format!("no shape for {}", missing.join(" and "))
    })
}

/// An add's ONNX name, or `#i (Add)` when it has none.
fn add_name(g: &Graph, n: NodeIndex, name: &str) -> String {
    if name.is_empty() {
        g.display_name(n)
    } else {
        name.to_owned()
    }
}

type Candidate = (usize, HashSet<NodeIndex>, ResidualKind, Option<Value>);

/// Whether the sum of add `n` reaches a `Softmax`/`LogSoftmax` through at
/// most [`LOGIT_HOPS`] ops of [`LOGIT_OPS`] (the add's own output first).
/// O(consumers within the hops).
fn feeds_softmax(g: &Graph, n: NodeIndex) -> bool {
    let mut frontier = vec![n];
    let mut seen: HashSet<NodeIndex> = HashSet::from([n]);
    for _ in 0..=LOGIT_HOPS {
        let mut next = Vec::new();
        for m in frontier {
            for (c, _) in g.consumers(m, 0) {
                let Some(op) = g.dag[c].as_op() else { continue };
                if !is_onnx_domain(&op.proto.domain) || !seen.insert(c) {
                    continue;
                }
                match op.proto.op_type.as_str() {
                    "Softmax" | "LogSoftmax" => return true,
                    t if LOGIT_OPS.contains(&t) => next.push(c),
                    _ => {}
                }
            }
        }
        frontier = next;
    }
    false
}

/// The search window from `x`'s producer to `y`'s (an input has position 0).
fn window(position: &HashMap<NodeIndex, usize>, x: Value, y: Value) -> Window<'_> {
    let lo = position.get(&x.0).copied().unwrap_or(0);
    let hi = position.get(&y.0).copied().unwrap_or(usize::MAX);
    Window {
        pos: position,
        lo,
        hi,
    }
}

/// The ops strictly after `x` and up to (and including) the producer of `y`.
fn branch(
    g: &Graph,
    x: Value,
    y: Value,
    position: &HashMap<NodeIndex, usize>,
) -> HashSet<NodeIndex> {
    let w = window(position, x, y);
    let down = descendants(g, x, w);
    let up = ancestors(g, y.0, w);
    down.intersection(&up)
        .copied()
        .filter(|m| matches!(g.dag[*m], Node::Op(_)))
        .collect()
}

fn has_parametric(g: &Graph, nodes: &HashSet<NodeIndex>) -> bool {
    nodes.iter().any(|&m| {
        g.dag[m]
            .as_op()
            .is_some_and(|o| is_parametric(&o.proto.op_type))
    })
}

fn identity(
    g: &Graph,
    a: Value,
    b: Value,
    position: &HashMap<NodeIndex, usize>,
) -> Option<Candidate> {
    for (skip_slot, x, y) in [(0, a, b), (1, b, a)] {
        // x can only flow into y if it comes first (graph inputs and initializers come before every op).
        let before = match (position.get(&x.0), position.get(&y.0)) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(px), Some(py)) => px < py,
        };
        if before && flows_into(g, x, y.0, window(position, x, y)) {
            let nodes = branch(g, x, y, position);
            if has_parametric(g, &nodes) {
                return Some((skip_slot, nodes, ResidualKind::Identity, None));
            }
            return None;
        }
    }
    None
}

fn projection(
    g: &Graph,
    a: Value,
    b: Value,
    constant: &HashSet<NodeIndex>,
    position: &HashMap<NodeIndex, usize>,
) -> Option<Candidate> {
    // The latest computed value both operands depend on.
    let everywhere = Window {
        pos: position,
        lo: 0,
        hi: usize::MAX,
    };
    let up_a = ancestors(g, a.0, everywhere);
    let up_b = ancestors(g, b.0, everywhere);
    let fork_node = up_a
        .intersection(&up_b)
        .copied()
        .filter(|m| !constant.contains(m))
        .max_by_key(|m| (position.get(m).map_or(0, |&p| p + 1), m.index()))?;
    // Among the fork node's outputs, the one both operands read.
    let outputs = g.dag[fork_node].outputs().len();
    let fork = (0..outputs)
        .map(|slot| (fork_node, slot))
        .find(|&v| flows_into(g, v, a.0, everywhere) && flows_into(g, v, b.0, everywhere))?;
    let pa = branch(g, fork, a, position);
    let pb = branch(g, fork, b, position);
    if !pa.is_disjoint(&pb) || !has_parametric(g, &pa) || !has_parametric(g, &pb) {
        return None;
    }
    // The shorter branch is the projection P; it must be short, and the other one longer.
    let (skip_slot, short, long) = if pa.len() <= pb.len() {
        (0, &pa, &pb)
    } else {
        (1, &pb, &pa)
    };
    if short.len() > MAX_PROJECTION_OPS || short.len() >= long.len() {
        return None;
    }
    // P reads the fork whole: a slice of it (one step of a sequence) is an
    // input of a recurrent cell, not the stream's state.
    let reads_a_part = short.iter().any(|&m| {
        g.dag[m].as_op().is_some_and(|o| {
            SLICING_OPS.contains(&o.proto.op_type.as_str())
                && g.op_inputs(m)
                    .first()
                    .copied()
                    .flatten()
                    .is_some_and(|(src, e)| (src, e.src_slot) == fork)
        })
    });
    if reads_a_part {
        return None;
    }
    Some((
        skip_slot,
        long.clone(),
        ResidualKind::Projection,
        Some(fork),
    ))
}
