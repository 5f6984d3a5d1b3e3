//! Constant folding: every value computable from initializers alone, and read
//! by a non-constant op or a graph output, becomes an initializer.
//!
//! The constant ops ([`crate::analysis::constants`]) are evaluated together on
//! tract, so every ONNX op folds with the runtime's own semantics. A folded
//! value replaces its producer's output (same name, same consumers); ops and
//! initializers that nothing reads any more are removed. A value is folded
//! only when it is no larger than the initializers and `Constant` tensors it
//! is computed from (or 4 KiB): a `ConstantOfShape` that expands a shape into megabytes of weights
//! stays as it is, so folding never bloats a model. A larger value whose
//! elements are all equal (say such a weight scaled by a folded scalar) is
//! written as a `ConstantOfShape` of a shape initializer instead (opset ≥ 9).
//!
//! Complexity: O(V + E) plus tract's evaluation of the constant ops.

use std::collections::HashSet;

use laurel_runtime::{LoadOptions, ModelSource};
use onnx_protobuf::{GraphProto, Message, ModelProto, TensorProto, ValueInfoProto};
use petgraph::Direction;
use petgraph::stable_graph::NodeIndex;
use petgraph::visit::EdgeRef;
use serde::Serialize;

use crate::analysis::constants::constant_nodes;
use crate::error::{Error, Result};
use crate::ir::{Edge, Graph, Initializer, Model, Node};

/// A folded value may always be this large, whatever it is computed from.
pub const SMALL_BYTES: usize = 4096;

/// What [`fold_constants`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FoldReport {
    /// Values that became initializers or `ConstantOfShape` fills.
    pub folded_values: usize,
    /// Ops removed.
    pub removed_ops: usize,
    /// Initializers removed because nothing reads them any more.
    pub removed_initializers: usize,
    /// Values left unfolded because folding would have grown the model.
    pub kept_large: usize,
    /// Large values of one repeated element, written as a `ConstantOfShape`
    /// of a shape initializer instead (counted in `folded_values` too).
    pub filled_values: usize,
}

fn err(message: impl Into<String>) -> Error {
    Error::Fuse {
        message: format!("constant folding: {}", message.into()),
    }
}

fn tensor_bytes(t: &TensorProto) -> usize {
    t.raw_data.len()
        + 4 * t.float_data.len()
        + 4 * t.int32_data.len()
        + 8 * t.int64_data.len()
        + 8 * t.double_data.len()
        + 8 * t.uint64_data.len()
}

/// Folds the model's constant subgraphs in place.
///
/// # Errors
/// [`Error::Fuse`] when tract cannot evaluate the constant ops.
pub fn fold_constants(model: &mut Model) -> Result<FoldReport> {
    let g = &model.graph;
    let constant = constant_nodes(g);
    let order = g.topo_ops().map_err(|e| err(e.to_string()))?;
    let const_ops: Vec<NodeIndex> = order
        .iter()
        .copied()
        .filter(|n| constant.contains(n))
        .collect();
    let outputs: HashSet<&str> = g.header.output.iter().map(|o| o.name.as_str()).collect();
    // Frontier: constant values read by a non-constant node, or graph outputs.
    let mut frontier: Vec<(NodeIndex, usize, String)> = Vec::new();
    for &n in &const_ops {
        for (slot, name) in g.dag[n].outputs().into_iter().enumerate() {
            if name.is_empty() {
                continue;
            }
            let read_outside = g
                .dag
                .edges_directed(n, Direction::Outgoing)
                .any(|e| e.weight().src_slot == slot && !constant.contains(&e.target()));
            if read_outside || outputs.contains(name) {
                frontier.push((n, slot, name.to_string()));
            }
        }
    }
    if frontier.is_empty() {
        return Ok(FoldReport::default());
    }
    let values = evaluate(model, &const_ops, &frontier)?;

    let fills = model.onnx_opset().unwrap_or(1) >= 9;
    let g = &mut model.graph;
    let mut names = Names::of(g);
    let mut report = FoldReport::default();
    for ((producer, slot, name), raw) in frontier.iter().zip(values) {
        let init = if raw.raw_data.len() <= SMALL_BYTES.max(ancestry_bytes(g, *producer, &constant))
        {
            let proto = TensorProto {
                name: name.clone(),
                dims: raw.dims,
                data_type: raw.data_type,
                raw_data: raw.raw_data,
                ..TensorProto::default()
            };
            g.add_initializer(Initializer {
                proto,
                external: None,
            })
        } else if let Some(fill) = fills
            .then(|| uniform_element(&raw))
            .flatten()
            .filter(|_| !is_fill(g, *producer))
        {
            report.filled_values += 1;
            constant_of_shape(g, &mut names, *producer, name, &raw, fill)
        } else {
            report.kept_large += 1;
            continue;
        };
        let readers: Vec<(NodeIndex, Edge, petgraph::stable_graph::EdgeIndex)> = g
            .dag
            .edges_directed(*producer, Direction::Outgoing)
            .filter(|e| e.weight().src_slot == *slot)
            .map(|e| (e.target(), e.weight().clone(), e.id()))
            .collect();
        for (target, edge, id) in readers {
            g.dag.remove_edge(id);
            g.dag.add_edge(
                init,
                target,
                Edge {
                    src_slot: 0,
                    ..edge
                },
            );
        }
        // The producer no longer outputs this name.
        if let Node::Op(op) = &mut g.dag[*producer]
            && let Some(o) = op.proto.output.get_mut(*slot)
        {
            o.clear();
        }
        report.folded_values += 1;
    }
    let fed_folding: HashSet<NodeIndex> = g
        .initializers
        .iter()
        .copied()
        .filter(|&i| {
            g.dag
                .neighbors_directed(i, Direction::Outgoing)
                .any(|t| constant.contains(&t))
        })
        .collect();
    remove_dead(g, &constant, &fed_folding, &mut report);
    Ok(report)
}

/// Value and node names in use, to pick fresh ones.
struct Names {
    values: HashSet<String>,
    nodes: HashSet<String>,
}

impl Names {
    fn of(g: &Graph) -> Self {
        let values = g.producers().keys().map(|&k| k.to_owned()).collect();
        let nodes = g
            .dag
            .node_weights()
            .filter_map(|n| n.as_op().map(|op| op.proto.name.clone()))
            .collect();
        Self { values, nodes }
    }

    /// `base`, or `base.k` for the first free `k ≥ 2`, now in use.
    fn fresh(used: &mut HashSet<String>, base: &str) -> String {
        let mut name = base.to_owned();
        let mut k = 2;
        while used.contains(&name) {
            name = format!("{base}.{k}");
            k += 1;
        }
        used.insert(name.clone());
        name
    }
}

/// The one element every element of `raw` equals (its little-endian bytes),
/// or `None` when two differ or `raw` is empty.
fn uniform_element(raw: &laurel_runtime::RawTensor) -> Option<Vec<u8>> {
    let count = raw
        .dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?))?;
    if count == 0 || !raw.raw_data.len().is_multiple_of(count) {
        return None;
    }
    let width = raw.raw_data.len() / count;
    let first = raw.raw_data.get(..width)?;
    raw.raw_data
        .chunks_exact(width)
        .all(|c| c == first)
        .then(|| first.to_vec())
}

/// Whether `n` is already a `ConstantOfShape` (of constants): writing its
/// value as one again would only rename it.
fn is_fill(g: &Graph, n: NodeIndex) -> bool {
    g.dag[n].as_op().is_some_and(|op| {
        op.proto.op_type == "ConstantOfShape" && crate::ir::is_onnx_domain(&op.proto.domain)
    })
}

/// Adds `ConstantOfShape(shape) → name` with `element` as its value, next
/// to `producer` in the op order, and returns the new op (which, like an
/// initializer, outputs at slot 0).
fn constant_of_shape(
    g: &mut Graph,
    names: &mut Names,
    producer: NodeIndex,
    name: &str,
    raw: &laurel_runtime::RawTensor,
    element: Vec<u8>,
) -> NodeIndex {
    let shape_name = Names::fresh(&mut names.values, &format!("{name}.shape"));
    let rank = i64::try_from(raw.dims.len()).unwrap_or(i64::MAX);
    let shape = g.add_initializer(Initializer {
        proto: TensorProto {
            name: shape_name.clone(),
            dims: vec![rank],
            data_type: onnx_protobuf::tensor_proto::DataType::INT64 as i32,
            raw_data: raw.dims.iter().flat_map(|d| d.to_le_bytes()).collect(),
            ..TensorProto::default()
        },
        external: None,
    });
    let value = onnx_protobuf::AttributeProto {
        name: "value".into(),
        type_: onnx_protobuf::attribute_proto::AttributeType::TENSOR.into(),
        t: Some(TensorProto {
            dims: vec![1],
            data_type: raw.data_type,
            raw_data: element,
            ..TensorProto::default()
        })
        .into(),
        ..onnx_protobuf::AttributeProto::default()
    };
    let proto = onnx_protobuf::NodeProto {
        name: Names::fresh(&mut names.nodes, name),
        op_type: "ConstantOfShape".into(),
        output: vec![name.to_owned()],
        attribute: vec![value],
        ..onnx_protobuf::NodeProto::default()
    };
    let op = g.dag.add_node(Node::Op(crate::ir::OpNode {
        proto,
        num_inputs: 1,
    }));
    g.dag.add_edge(
        shape,
        op,
        Edge {
            name: shape_name,
            src_slot: 0,
            dst_slot: Some(0),
        },
    );
    let at = g
        .op_order
        .iter()
        .position(|&m| m == producer)
        .unwrap_or(g.op_order.len());
    g.op_order.insert(at, op);
    op
}

/// Bytes of the initializers a constant op's values are computed from.
fn ancestry_bytes(g: &Graph, n: NodeIndex, constant: &HashSet<NodeIndex>) -> usize {
    let mut seen = HashSet::new();
    let mut stack = vec![n];
    let mut bytes = 0;
    while let Some(m) = stack.pop() {
        if !seen.insert(m) {
            continue;
        }
        match &g.dag[m] {
            Node::Initializer(i) => {
                bytes += i
                    .external
                    .as_ref()
                    .map_or_else(|| tensor_bytes(&i.proto), |e| e.len);
            }
            // A weight held by a `Constant` node (as Paddle2ONNX writes them)
            // counts like an initializer.
            Node::Op(op) if op.proto.op_type == "Constant" => {
                bytes += op
                    .proto
                    .attribute
                    .iter()
                    .filter_map(|a| a.t.as_ref())
                    .map(tensor_bytes)
                    .sum::<usize>();
            }
            _ => {}
        }
        stack.extend(
            g.dag
                .neighbors_directed(m, Direction::Incoming)
                .filter(|p| constant.contains(p)),
        );
    }
    bytes
}

/// Removes the constant ops and initializers that nothing reads any more,
/// repeatedly. Nodes outside constant folding (including initializers and
/// ops that were already unread in the input) are left as they were.
fn remove_dead(
    g: &mut Graph,
    constant: &HashSet<NodeIndex>,
    fed_folding: &HashSet<NodeIndex>,
    report: &mut FoldReport,
) {
    let outputs: HashSet<String> = g.header.output.iter().map(|o| o.name.clone()).collect();
    loop {
        let dead: Vec<NodeIndex> = g
            .dag
            .node_indices()
            .filter(|&n| {
                g.dag
                    .edges_directed(n, Direction::Outgoing)
                    .next()
                    .is_none()
            })
            .filter(|&n| match &g.dag[n] {
                Node::Op(op) => {
                    constant.contains(&n) && !op.proto.output.iter().any(|o| outputs.contains(o))
                }
                Node::Initializer(i) => {
                    fed_folding.contains(&n) && !outputs.contains(&i.proto.name)
                }
                _ => false,
            })
            .collect();
        if dead.is_empty() {
            break;
        }
        let (ops, inits): (Vec<NodeIndex>, Vec<NodeIndex>) = dead
            .into_iter()
            .partition(|&n| matches!(g.dag[n], Node::Op(_)));
        let inits: HashSet<NodeIndex> = inits.into_iter().collect();
        for n in ops {
            g.op_order.retain(|&m| m != n);
            report.removed_ops += 1;
            g.dag.remove_node(n);
        }
        report.removed_initializers += inits.len();
        g.remove_initializers(&inits);
    }
}

/// Runs the constant ops on tract and returns the frontier values, in order.
fn evaluate(
    model: &Model,
    const_ops: &[NodeIndex],
    frontier: &[(NodeIndex, usize, String)],
) -> Result<Vec<laurel_runtime::RawTensor>> {
    let g = &model.graph;
    let ops: HashSet<NodeIndex> = const_ops.iter().copied().collect();
    let mut graph = GraphProto {
        name: "constants".into(),
        ..GraphProto::default()
    };
    let mut used_inits: HashSet<NodeIndex> = HashSet::new();
    for &n in const_ops {
        let Node::Op(op) = &g.dag[n] else { continue };
        let mut proto = op.proto.clone();
        proto.input = g
            .op_inputs(n)
            .into_iter()
            .map(|s| {
                s.map_or(String::new(), |(src, e)| {
                    if !ops.contains(&src) {
                        used_inits.insert(src);
                    }
                    e.name.clone()
                })
            })
            .collect();
        graph.node.push(proto);
    }
    let mut used: Vec<NodeIndex> = used_inits.into_iter().collect();
    used.sort_unstable();
    for n in used {
        match &g.dag[n] {
            Node::Initializer(i) => graph.initializer.push(i.inline_proto()),
            Node::SparseInitializer(s) => graph.sparse_initializer.push(s.clone()),
            _ => return Err(err("a constant op reads a non-constant value")),
        }
    }
    graph.output = frontier
        .iter()
        .map(|(_, _, name)| ValueInfoProto {
            name: name.clone(),
            ..ValueInfoProto::default()
        })
        .collect();
    let probe = ModelProto {
        ir_version: model.header.ir_version.max(4),
        opset_import: model.header.opset_import.clone(),
        functions: model.header.functions.clone(),
        graph: Some(graph).into(),
        ..ModelProto::default()
    };
    let bytes = probe.write_to_bytes().map_err(|e| err(e.to_string()))?;
    let runnable = laurel_runtime::load(ModelSource::Bytes(&bytes), &LoadOptions::default())?;
    let outputs = runnable.run(Vec::new())?;
    outputs
        .iter()
        .map(|(name, t)| {
            laurel_runtime::to_raw(t).ok_or_else(|| {
                err(format!(
                    "`{name}` has an element type that cannot be folded"
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_bytes_counts_every_storage_field() {
        let t = TensorProto {
            raw_data: vec![0; 3],
            float_data: vec![1.0; 2],
            int64_data: vec![1],
            ..TensorProto::default()
        };
        assert_eq!(tensor_bytes(&t), 3 + 8 + 8);
    }
}
