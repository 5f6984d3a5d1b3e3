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

/// A rewrite found: the scaling `Mul`, the dequantizing op, its scale
/// slot, the scale's dims and values, and `c`.
struct Site {
    mul: NodeIndex,
    dequant: NodeIndex,
    scale_slot: usize,
    dims: Vec<i64>,
    values: Vec<f64>,
    factor: f64,
}

/// The dims and values of a float32 initializer holding all its elements.
fn f32_values(g: &Graph, n: NodeIndex) -> Option<(Vec<i64>, Vec<f64>)> {
    let Node::Initializer(i) = &g.dag[n] else {
        return None;
    };
    if i.proto.data_type != 1 {
        return None;
    }
    let values = super::lower::element_values(i)?;
    let elements: i64 = i.proto.dims.iter().product();
    (i64::try_from(values.len()).ok() == Some(elements)).then(|| (i.proto.dims.clone(), values))
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
        let [Some((left, _)), Some((right, _))] = ins.as_slice() else {
            continue;
        };
        for (c_node, w_node) in [(*left, *right), (*right, *left)] {
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
            let factor = match &g.dag[c_node] {
                Node::Initializer(i) if i.proto.data_type == 1 => super::lower::scalar_value(i),
                _ => None,
            };
            if let (true, Some(factor), Some((dims, values))) =
                (fits, factor, f32_values(g, *s_node))
            {
                sites.push(Site {
                    mul: m,
                    dequant: w_node,
                    scale_slot,
                    dims,
                    values,
                    factor,
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
        // The product of two float32s is exact in f64: rounded once, it is
        // the float32 product.
        #[allow(clippy::cast_possible_truncation)]
        let raw_data = s
            .values
            .iter()
            .flat_map(|v| ((v * s.factor) as f32).to_le_bytes())
            .collect();
        b.initializer(onnx_protobuf::TensorProto {
            name: scaled.clone(),
            dims: s.dims,
            data_type: 1,
            raw_data,
            ..onnx_protobuf::TensorProto::default()
        });
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
