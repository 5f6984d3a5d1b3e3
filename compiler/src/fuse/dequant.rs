//! A scale on a dequantized weight goes into the dequantization scale.
//!
//! Fusion moves `LAuReL`'s scalars into the weights they meet (`c·W`), and
//! the last constant folding computes `c·W` into an initializer. When `W` is
//! stored as int8 and dequantized at run time, that would store a float
//! copy four times the size, so folding keeps `c·W` as a run-time `Mul` and
//! the RW model has one op more than the plain one. The scale belongs in the
//! dequantization scale instead, where it costs nothing:
//!
//! ```text
//! before:  W = DequantizeLinear(q, s, z);  y = Mul(c, W)
//! after:   y = DequantizeLinear(q, c·s, z)             ((q − z)·s·c = (q − z)·(c·s))
//!
//! before:  W = Mul(Cast(q), s);            y = Mul(c, W)
//! after:   y = Mul(Cast(q), c·s)                       (the same, as exporters write it)
//! ```
//! The identity holds for every `c` (the dequantization is linear in its
//! scale). It applies when `c` and `s` are initializers, `c` one element of
//! rank at most `s`'s (so `c·s` has `s`'s shape, as `DequantizeLinear`'s
//! scale must), both float32, and `W` is read by this `Mul` alone; `c·s`
//! becomes a new initializer `<s>.scaled_<k>` of `s`'s small size (in
//! float32, as tract or onnxruntime would compute it).
//!
//! Complexity: O(V + E).

use petgraph::Direction;
use petgraph::stable_graph::NodeIndex;
use petgraph::visit::EdgeRef;

use crate::build::GraphBuilder;
use crate::ir::{Edge, Graph, Node, is_onnx_domain};

/// An initializer's element count and rank, if `name` is one.
fn initializer_shape(g: &Graph, n: NodeIndex) -> Option<(i64, usize)> {
    match &g.dag[n] {
        Node::Initializer(i) => Some((i.proto.dims.iter().product(), i.proto.dims.len())),
        _ => None,
    }
}

/// A rewrite found: the scaling `Mul`, the dequantizing op, the value `c`,
/// and the dequantizing op's scale slot.
struct Site {
    mul: NodeIndex,
    dequant: NodeIndex,
    scale_slot: usize,
    /// The scale's tensor (its shape and type) and values, and `c`.
    scale: onnx_protobuf::TensorProto,
    values: Vec<f32>,
    factor: f32,
}

/// The values of a float32 initializer.
fn f32_values(g: &Graph, n: NodeIndex) -> Option<(onnx_protobuf::TensorProto, Vec<f32>)> {
    let Node::Initializer(i) = &g.dag[n] else {
        return None;
    };
    if i.proto.data_type != 1 {
        return None;
    }
    let t = i.inline_proto();
    let values: Vec<f32> = if t.raw_data.is_empty() {
        t.float_data.clone()
    } else {
        t.raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let elements: i64 = t.dims.iter().product();
    (i64::try_from(values.len()).ok() == Some(elements)).then_some((t, values))
}

fn find(g: &Graph) -> Vec<Site> {
    let outputs: std::collections::HashSet<&str> =
        g.header.output.iter().map(|o| o.name.as_str()).collect();
    let mut sites = Vec::new();
    for &m in &g.op_order {
        let Some(op) = g.dag[m].as_op() else { continue };
        if op.proto.op_type != "Mul" || !is_onnx_domain(&op.proto.domain) {
            continue;
        }
        let ins = g.op_inputs(m);
        let [Some((a, _)), Some((b, _))] = ins.as_slice() else {
            continue;
        };
        for (c_node, w_node) in [(*a, *b), (*b, *a)] {
            let Some((1, c_rank)) = initializer_shape(g, c_node) else {
                continue;
            };
            let Some(w) = g.dag[w_node].as_op() else {
                continue;
            };
            let w_out = w
                .proto
                .output
                .first()
                .map(String::as_str)
                .unwrap_or_default();
            let sole_reader = g.dag.edges_directed(w_node, Direction::Outgoing).count() == 1
                && !outputs.contains(w_out);
            if !sole_reader || !is_onnx_domain(&w.proto.domain) || w.proto.output.len() != 1 {
                continue;
            }
            let w_ins = g.op_inputs(w_node);
            let scale_slot = match w.proto.op_type.as_str() {
                "DequantizeLinear" => Some(1),
                "Mul" => w_ins.iter().position(|i| {
                    i.is_some_and(|(p, _)| {
                        initializer_shape(g, p).is_some()
                            && w_ins.iter().flatten().any(|(o, _)| {
                                *o != p
                                    && g.dag[*o]
                                        .as_op()
                                        .is_some_and(|op| op.proto.op_type == "Cast")
                            })
                    })
                }),
                _ => None,
            };
            let Some(scale_slot) = scale_slot else {
                continue;
            };
            let Some(Some((s_node, _))) = w_ins.get(scale_slot) else {
                continue;
            };
            let fits = initializer_shape(g, *s_node).is_some_and(|(_, s_rank)| c_rank <= s_rank);
            if let (true, Some((_, c)), Some((scale, values))) =
                (fits, f32_values(g, c_node), f32_values(g, *s_node))
            {
                sites.push(Site {
                    mul: m,
                    dequant: w_node,
                    scale_slot,
                    scale,
                    values,
                    factor: c[0],
                });
                break;
            }
        }
    }
    sites
}

/// Moves every such scale into its dequantization scale; returns how many.
///
/// # Errors
/// A value the rewrite reads has no producer (a bug), as a message.
pub fn scale_into_dequantization(g: &mut Graph) -> Result<usize, String> {
    let sites = find(g);
    let count = sites.len();
    let mut b = GraphBuilder::new(g);
    for s in sites {
        let consumers: Vec<(NodeIndex, Edge)> = b
            .graph()
            .dag
            .edges_directed(s.mul, Direction::Outgoing)
            .map(|e| (e.target(), e.weight().clone()))
            .collect();
        let inputs: Vec<String> = b
            .graph()
            .op_inputs(s.dequant)
            .iter()
            .map(|i| i.map(|(_, e)| e.name.clone()).unwrap_or_default())
            .collect();
        let anchor = b.position(s.mul).unwrap_or(usize::MAX);
        let mul = b.remove_op(s.mul).ok_or("the scaling Mul is gone")?;
        let mut dq = b
            .remove_op(s.dequant)
            .ok_or("the dequantizing op is gone")?
            .proto;
        let scale = &inputs[s.scale_slot];
        let scaled = b.free_name(&format!("{scale}.scaled"), 1);
        let mut t = s.scale.clone();
        t.name.clone_from(&scaled);
        t.raw_data = s
            .values
            .iter()
            .flat_map(|v| (v * s.factor).to_le_bytes())
            .collect();
        t.float_data.clear();
        b.initializer(t);
        let mut new_inputs = inputs.clone();
        new_inputs[s.scale_slot] = scaled;
        dq.output.clone_from(&mul.proto.output);
        b.op(dq, &new_inputs, anchor).map_err(|e| e.to_string())?;
        for (target, edge) in consumers {
            b.connect(target, edge).map_err(|e| e.to_string())?;
        }
    }
    let _ = b.finish();
    Ok(count)
}
