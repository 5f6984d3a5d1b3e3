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
        let candidate =
            identity(g, a, b, &position).or_else(|| projection(g, a, b, &constant, &position));
        let Some((skip_slot, branch_nodes, kind, fork)) = candidate else {
            continue;
        };
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
        });
    }
    (found, undecided)
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
