//! Lowering for fusion: the whole graph → terms.
//!
//! Every op of the main graph (or of the window) becomes a term, except ops
//! holding subgraphs (`If`, `Loop`, `Scan`), whose outputs stay opaque values,
//! and constant ops
//! (those constant folding kept because their values are large, such as a
//! `ConstantOfShape`), whose outputs are weights:
//! - `Add`, `Sub`, `Mul`, `Div` of floating-point values become `+ - * /`; a
//!   one-element float initializer operand that broadcasts without changing
//!   the other operand's shape becomes an exact `Num` (every float is a
//!   dyadic rational);
//! - every other op becomes `Onnx(OpRef, present inputs…)`, one e-node per
//!   named output, with its [`OpSemantics`] declared
//!   ([`super::semantics::semantics_of`]); a norm gets its ε as a last
//!   `Num` child.
//!
//! Graph inputs, initializers and opaque outputs are `Value` leaves; a float
//! constant (an initializer that is not an overridable graph input, or a
//! constant op's output) is declared a weight. Types
//! come from tract's inference ([`crate::analysis::types`]) and, for
//! initializers, from the tensors themselves. The roots are the graph
//! outputs and the values read by ops that are not lowered (including
//! subgraph captures).
//!
//! Complexity: O(V + E) plus shape inference.

use std::collections::{BTreeMap, HashMap, HashSet};

use egg::Id;
use laurel_passes::analysis::Leaf;
use laurel_passes::lang::{OpRef, Scalar, ValueRef};
use laurel_passes::semantics::OpSemantics;
use laurel_passes::shape::{Dim, Sizes, TensorType, broadcast};
use laurel_passes::{TensorGraph, TensorLang};
use petgraph::stable_graph::NodeIndex;

use super::semantics::{InputKind, channel_map_of, norm_epsilon, semantics_of};
use crate::analysis::types::{ValueTypes, initializer_type, is_float};
use crate::error::{Error, Result};
use crate::ir::{Graph, Initializer, Model, Node};

fn err(message: impl Into<String>) -> Error {
    Error::Fuse {
        message: format!("lowering: {}", message.into()),
    }
}

/// One lowered op: what lifting needs to rebuild it.
#[derive(Debug, Clone)]
pub struct LoweredOp {
    /// The IR node.
    pub node: NodeIndex,
    /// Its input names by slot (`None`: absent).
    pub inputs: Vec<Option<String>>,
    /// Its position in the preferred node order.
    pub position: usize,
}

/// The lowered graph and what lifting needs.
pub struct Lowered {
    /// The e-graph.
    pub graph: TensorGraph,
    /// The root classes, one per root name.
    pub roots: Vec<Id>,
    /// The values the roots stand for (graph outputs first).
    pub root_names: Vec<String>,
    /// Every lowered value's name and class (of the lowered graph), in
    /// lowering order.
    pub named: Vec<(String, Id)>,
    /// The lowered ops, by IR node number (the `OpRef` node).
    pub ops: BTreeMap<u32, LoweredOp>,
    /// The semantics declared for each op output.
    pub semantics: HashMap<OpRef, OpSemantics>,
}

/// `t` with the symbols `sizes` knows made fixed (for cost estimates).
fn sized(mut t: TensorType, sizes: &Sizes) -> TensorType {
    if let Some(shape) = t.shape.as_mut() {
        for d in shape {
            if let Dim::Sym(s) = d
                && let Some(&n) = sizes.get(s.as_str())
            {
                *d = Dim::Fixed(n);
            }
        }
    }
    t
}

/// The values of a `float` or `double` initializer (inline, external or in
/// `float_data`/`double_data`); `None` for other element types.
pub(crate) fn element_values(init: &Initializer) -> Option<Vec<f64>> {
    let t = &init.proto;
    let raw: &[u8] = match &init.external {
        Some(e) => e.bytes(),
        None => &t.raw_data,
    };
    match t.data_type {
        1 if !raw.is_empty() => Some(
            raw.chunks_exact(4)
                .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
        ),
        1 => Some(t.float_data.iter().map(|&v| f64::from(v)).collect()),
        11 if !raw.is_empty() => Some(
            raw.chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        ),
        11 => Some(t.double_data.clone()),
        _ => None,
    }
}

/// The value of a one-element float initializer.
pub(crate) fn scalar_value(init: &Initializer) -> Option<f64> {
    let n: i64 = init.proto.dims.iter().product();
    if n != 1 {
        return None;
    }
    match element_values(init)?.as_slice() {
        [v] if v.is_finite() => Some(*v),
        _ => None,
    }
}

/// Whether fusion can lower an op: no subgraphs, an identifier op type.
#[must_use]
pub fn lowerable(g: &Graph, n: NodeIndex) -> bool {
    g.dag[n].as_op().is_some_and(|op| {
        crate::onnx::subgraph::subgraphs(&op.proto).next().is_none()
            && OpRef::new(&op.proto.op_type, 0, 0).is_ok()
    })
}

/// Lowers the ops of `window` (all lowerable ops when `None`), with value
/// types from `types`.
///
/// # Errors
/// [`Error::Fuse`] for a cycle, or a term the shape check refuses (a bug or
/// shapes tract inferred inconsistently).
#[allow(clippy::too_many_lines)] // one pass over the ops, in order
pub fn lower(
    model: &Model,
    types: &ValueTypes,
    window: Option<&HashSet<NodeIndex, impl std::hash::BuildHasher>>,
    sizes: &Sizes,
) -> Result<Lowered> {
    let g: &Graph = &model.graph;
    let order = g.topo_ops().map_err(|e| err(e.to_string()))?;
    let position: HashMap<NodeIndex, usize> = g
        .op_order
        .iter()
        .enumerate()
        .map(|(i, &n)| (n, i))
        .collect();
    let producers = g.producers();

    // Constant ops that constant folding left (their values are larger than
    // what they are computed from, say a `ConstantOfShape`) stay as they
    // are: their outputs are weights, like initializers.
    let constant = crate::analysis::constants::constant_nodes(g);
    let lowered: HashSet<NodeIndex> = order
        .iter()
        .copied()
        .filter(|&n| {
            lowerable(g, n) && !constant.contains(&n) && window.is_none_or(|w| w.contains(&n))
        })
        .collect();

    let mut tg = TensorGraph::new();
    let mut classes: HashMap<String, Id> = HashMap::new();
    let mut named: Vec<(String, Id)> = Vec::new();
    let mut ops = BTreeMap::new();
    let mut semantics = HashMap::new();

    let type_of_value = |name: &str| -> TensorType {
        if let Some(&(p, _)) = producers.get(name)
            && let Node::Initializer(i) = &g.dag[p]
        {
            return initializer_type(&i.proto);
        }
        types.get(name).cloned().unwrap_or_else(TensorType::unknown)
    };
    let initializer = |name: &str| -> Option<&Initializer> {
        match producers.get(name).map(|&(p, _)| &g.dag[p]) {
            Some(Node::Initializer(i)) => Some(i),
            _ => None,
        }
    };
    // A value computed from initializers alone: a weight when it is float.
    let is_constant = |name: &str| -> bool {
        producers
            .get(name)
            .is_some_and(|(p, _)| constant.contains(p))
    };

    // A leaf for a value no lowered op produces.
    let leaf =
        |tg: &mut TensorGraph, classes: &mut HashMap<String, Id>, name: &str| -> Result<Id> {
            if let Some(&id) = classes.get(name) {
                return Ok(id);
            }
            let v = ValueRef::new(name).map_err(|e| err(e.to_string()))?;
            let ty = type_of_value(name);
            let weight = is_constant(name) && is_float(ty.dtype.as_ref());
            tg.declare(Leaf::Value(v), ty)
                .map_err(|e| err(e.to_string()))?;
            if weight {
                tg.declare_weight(v).map_err(|e| err(e.to_string()))?;
            }
            let id = tg
                .add_checked(TensorLang::Value(v))
                .map_err(|e| err(e.to_string()))?;
            classes.insert(name.to_owned(), id);
            Ok(id)
        };

    for &n in &order {
        if !lowered.contains(&n) {
            continue;
        }
        let Node::Op(op) = &g.dag[n] else { continue };
        let node_no = u32::try_from(n.index()).map_err(|_| err("too many nodes"))?;
        let inputs: Vec<Option<String>> = g
            .op_inputs(n)
            .into_iter()
            .map(|s| s.map(|(_, e)| e.name.clone()))
            .collect();
        let mut children = Vec::new();
        for name in inputs.iter().flatten() {
            children.push(leaf(&mut tg, &mut classes, name)?);
        }
        let out_types: Vec<TensorType> = op.proto.output.iter().map(|o| type_of_value(o)).collect();
        let elementwise = match op.proto.op_type.as_str() {
            "Add" => Some(TensorLang::Add as fn([Id; 2]) -> TensorLang),
            "Sub" => Some(TensorLang::Sub as fn([Id; 2]) -> TensorLang),
            "Mul" => Some(TensorLang::Mul as fn([Id; 2]) -> TensorLang),
            "Div" => Some(TensorLang::Div as fn([Id; 2]) -> TensorLang),
            _ => None,
        }
        .filter(|_| {
            crate::ir::is_onnx_domain(&op.proto.domain)
                && children.len() == 2
                && inputs.len() == 2
                && out_types
                    .first()
                    .is_some_and(|t| is_float(t.dtype.as_ref()))
        });
        if let Some(make) = elementwise {
            // Scalar initializers become exact numbers where that keeps the shape.
            let mut operands = [children[0], children[1]];
            for i in 0..2 {
                let Some(name) = inputs[i].as_deref() else {
                    continue;
                };
                let Some(init) = initializer(name) else {
                    continue;
                };
                let Some(v) = scalar_value(init) else {
                    continue;
                };
                let other = type_of_value(inputs[1 - i].as_deref().unwrap_or_default());
                let own = initializer_type(&init.proto);
                let keeps = match (&other.shape, &own.shape) {
                    (Some(o), Some(s)) => broadcast(o, s).is_ok_and(|b| b == *o),
                    _ => false,
                };
                if keeps && let Some(q) = Scalar::from_f64(v) {
                    operands[i] = tg
                        .add_checked(TensorLang::Num(q))
                        .map_err(|e| err(e.to_string()))?;
                }
            }
            // Types tract inferred inconsistently (say f32 + f64) make the
            // term ill-shaped: the op is then lowered as an opaque op below.
            if let Ok(id) = tg.add_checked(make(operands)) {
                if let Some(out) = op.proto.output.first() {
                    classes.insert(out.clone(), id);
                    named.push((out.clone(), id));
                }
                ops.insert(
                    node_no,
                    LoweredOp {
                        node: n,
                        inputs,
                        position: position.get(&n).copied().unwrap_or(usize::MAX),
                    },
                );
                continue;
            }
        }
        {
            let kinds: Vec<InputKind> = inputs
                .iter()
                .map(|i| match i.as_deref() {
                    None => InputKind::Absent,
                    Some(name) if is_constant(name) => InputKind::Weight,
                    Some(_) => InputKind::Computed,
                })
                .collect();
            let exponent = (op.proto.op_type == "Pow")
                .then(|| {
                    inputs
                        .get(1)?
                        .as_deref()
                        .and_then(initializer)
                        .and_then(scalar_value)
                })
                .flatten();
            for (slot, out) in op.proto.output.iter().enumerate() {
                if out.is_empty() {
                    continue;
                }
                let slot_no = u32::try_from(slot).map_err(|_| err("too many outputs"))?;
                let r = OpRef::new(&op.proto.op_type, node_no, slot_no)
                    .map_err(|e| err(e.to_string()))?;
                tg.declare(Leaf::Op(r), out_types[slot].clone())
                    .map_err(|e| err(e.to_string()))?;
                // FLOPs at the declared sizes, as the cost model prices elements.
                if let Some(f) = crate::analysis::flops::op_flops(
                    &op.proto,
                    &inputs,
                    &sized(out_types[slot].clone(), sizes),
                    &|n: &str| sized(type_of_value(n), sizes),
                ) {
                    tg.declare_flops(r, f);
                }
                let mut term_children = children.clone();
                let sem = semantics_of(&op.proto, slot, &kinds, exponent);
                if let Some(OpSemantics::Norm { eps, .. }) = &sem {
                    let e = Scalar::from_f64(f64::from(norm_epsilon(&op.proto)))
                        .ok_or_else(|| err("a norm's epsilon is not finite"))?;
                    debug_assert_eq!(*eps, term_children.len());
                    term_children.push(
                        tg.add_checked(TensorLang::Num(e))
                            .map_err(|e| err(e.to_string()))?,
                    );
                }
                let weight_shape = inputs
                    .get(1)
                    .and_then(Option::as_deref)
                    .and_then(|w| type_of_value(w).shape);
                if let Some(map) = channel_map_of(&op.proto, &kinds, weight_shape.as_ref()) {
                    tg.declare_channel_map(r, map);
                }
                if let Some(sem) = sem {
                    tg.declare_semantics(r, sem.clone());
                    semantics.insert(r, sem);
                }
                let id = tg
                    .add_checked(TensorLang::Onnx(r, term_children))
                    .map_err(|e| err(format!("{}: {e}", g.display_name(n))))?;
                classes.insert(out.clone(), id);
                named.push((out.clone(), id));
            }
        }
        ops.insert(
            node_no,
            LoweredOp {
                node: n,
                inputs,
                position: position.get(&n).copied().unwrap_or(usize::MAX),
            },
        );
    }

    // Roots: the graph outputs and the values read by ops that stay, among
    // the values the lowered ops produce.
    let produced: HashSet<&str> = lowered
        .iter()
        .flat_map(|&n| g.dag[n].outputs())
        .filter(|o| !o.is_empty())
        .collect();
    let mut root_names: Vec<String> = Vec::new();
    for o in &g.header.output {
        if produced.contains(o.name.as_str()) && !root_names.contains(&o.name) {
            root_names.push(o.name.clone());
        }
    }
    for &n in &order {
        if lowered.contains(&n) {
            continue;
        }
        for e in g.dag.edges_directed(n, petgraph::Direction::Incoming) {
            let name = &e.weight().name;
            if produced.contains(name.as_str()) && !root_names.contains(name) {
                root_names.push(name.clone());
            }
        }
    }
    let mut roots = Vec::with_capacity(root_names.len());
    for name in &root_names {
        roots.push(leaf(&mut tg, &mut classes, name)?);
    }
    Ok(Lowered {
        graph: tg,
        roots,
        root_names,
        named,
        ops,
        semantics,
    })
}
