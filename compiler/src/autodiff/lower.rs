//! Forward rewrites a training step needs: a `BatchNormalization` whose
//! scale, bias, mean or variance trains becomes elementwise ops, because
//! tract accepts a batch norm only with constant parameters.
//!
//! ```text
//! before:  y = BatchNormalization(x, scale, bias, mean, var; ε)
//! after:   k = scale / √(var + ε)
//!          y = (x − reshape(mean, [C, 1…]))·reshape(k, [C, 1…]) + reshape(bias, [C, 1…])
//! ```
//! The same function in inference mode; the elementwise ops have gradient
//! rules for every input.
//!
//! Complexity: one shape inference when a batch norm is lowered (for the
//! rank of its input), then O(V + E).

use std::collections::HashSet;

use laurel_runtime::{LoadOptions, ModelSource};
use onnx_protobuf::{NodeProto, TensorProto};
use petgraph::Direction;
use petgraph::stable_graph::NodeIndex;
use petgraph::visit::EdgeRef;

use super::AutodiffError;
use super::emit::elem;
use crate::build::GraphBuilder;
use crate::ir::{Edge, Model, Node, attr};

/// Lowers every inference-mode batch norm one of whose parameters is in
/// `trainable`; returns how many were lowered.
#[allow(clippy::too_many_lines)] // one rewrite, step by step
///
/// # Errors
/// Shape inference fails, or an input's rank is unknown.
pub fn lower_trainable_batch_norms(
    m: &mut Model,
    trainable: &[String],
    load: &LoadOptions,
) -> Result<usize, AutodiffError> {
    let wanted: HashSet<&str> = trainable.iter().map(String::as_str).collect();
    let targets: Vec<NodeIndex> = m
        .graph
        .op_order
        .iter()
        .copied()
        .filter(|&n| {
            matches!(&m.graph.dag[n], Node::Op(op)
                if op.proto.op_type == "BatchNormalization"
                    && crate::ir::is_onnx_domain(&op.proto.domain))
                && m.graph
                    .op_inputs(n)
                    .iter()
                    .skip(1)
                    .flatten()
                    .any(|(_, e)| wanted.contains(e.name.as_str()))
        })
        .collect();
    if targets.is_empty() {
        return Ok(0);
    }
    let probe = crate::onnx::to_shape_probe_bytes(m, crate::analysis::PROBE_MIN_ELEMENTS)
        .map_err(|err| AutodiffError::Encode(err.to_string()))?;
    let shapes = laurel_runtime::infer_shapes(ModelSource::Bytes(&probe), load)?;
    let mut b = GraphBuilder::new(&mut m.graph);
    for &n in &targets {
        let Some(Node::Op(op)) = b.graph().dag.node_weight(n).cloned() else {
            continue;
        };
        let display = b.graph().display_name(n);
        let unsupported = |reason: &str| AutodiffError::Unsupported {
            node: display.clone(),
            op_type: op.proto.op_type.clone(),
            reason: reason.into(),
        };
        if attr::int(&op.proto, "training_mode", 0) != 0
            || op.proto.output.iter().skip(1).any(|o| !o.is_empty())
        {
            return Err(unsupported("training mode (running statistics as outputs)"));
        }
        let ins: Vec<String> = b
            .graph()
            .op_inputs(n)
            .iter()
            .map(|s| s.map(|(_, e)| e.name.clone()).unwrap_or_default())
            .collect();
        if ins.len() < 5 || ins.iter().any(String::is_empty) {
            return Err(unsupported("an absent input"));
        }
        let x = &ins[0];
        let rank = shapes
            .values
            .get(x)
            .and_then(|v| v.shape.as_ref())
            .map(Vec::len)
            .ok_or_else(|| AutodiffError::UnknownShape { value: x.clone() })?;
        if rank < 2 {
            return Err(unsupported("an input of rank < 2"));
        }
        let var_elem = b
            .graph()
            .dag
            .node_indices()
            .find_map(|i| match &b.graph().dag[i] {
                Node::Initializer(t) if t.proto.name == ins[4] => Some(t.proto.data_type),
                _ => None,
            })
            .unwrap_or(elem::F32);
        let anchor = b.position(n).unwrap_or(0);
        let consumers: Vec<(NodeIndex, Edge)> = b
            .graph()
            .dag
            .edges_directed(n, Direction::Outgoing)
            .map(|e| (e.target(), e.weight().clone()))
            .collect();
        let y = op.proto.output[0].clone();
        let base = if op.proto.name.is_empty() {
            y.clone()
        } else {
            op.proto.name.clone()
        };
        b.remove_op(n);
        let eps = f64::from(attr::float(&op.proto, "epsilon", 1e-5));
        let eps_name = b.free_name(&format!("{base}.epsilon"), 0);
        let raw = if var_elem == elem::F64 {
            eps.to_le_bytes().to_vec()
        } else {
            #[allow(clippy::cast_possible_truncation)] // the model's precision
            (eps as f32).to_le_bytes().to_vec()
        };
        b.initializer(TensorProto {
            name: eps_name.clone(),
            data_type: var_elem,
            raw_data: raw,
            ..TensorProto::default()
        });
        let channels = {
            let mut d = vec![-1i64];
            d.resize(rank - 1, 1);
            d
        };
        let shape_name = b.free_name(&format!("{base}.shape"), 0);
        b.initializer(TensorProto {
            name: shape_name.clone(),
            dims: vec![super::emit::to_i64(channels.len())],
            data_type: elem::I64,
            raw_data: channels.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..TensorProto::default()
        });
        let emit = |b: &mut GraphBuilder<'_>,
                    op_type: &str,
                    inputs: &[&str],
                    out: Option<&str>|
         -> Result<String, AutodiffError> {
            let out = match out {
                Some(o) => {
                    b.claim(o);
                    o.to_owned()
                }
                None => b.free_name(&format!("{base}.{}", op_type.to_lowercase()), 0),
            };
            let node = NodeProto {
                op_type: op_type.into(),
                name: b.new_node_name(&base, op_type),
                output: vec![out.clone()],
                ..NodeProto::default()
            };
            let inputs: Vec<String> = inputs.iter().map(|s| (*s).to_owned()).collect();
            b.op(node, &inputs, anchor)
                .map_err(|err| AutodiffError::Internal {
                    message: err.to_string(),
                })?;
            Ok(out)
        };
        let ve = emit(&mut b, "Add", &[&ins[4], &eps_name], None)?;
        let sd = emit(&mut b, "Sqrt", &[&ve], None)?;
        let k = emit(&mut b, "Div", &[&ins[1], &sd], None)?;
        let kr = emit(&mut b, "Reshape", &[&k, &shape_name], None)?;
        let mr = emit(&mut b, "Reshape", &[&ins[3], &shape_name], None)?;
        let br = emit(&mut b, "Reshape", &[&ins[2], &shape_name], None)?;
        let xc = emit(&mut b, "Sub", &[x, &mr], None)?;
        let xs = emit(&mut b, "Mul", &[&xc, &kr], None)?;
        emit(&mut b, "Add", &[&xs, &br], Some(&y))?;
        for (t, e) in consumers {
            b.connect(t, e).map_err(|err| AutodiffError::Internal {
                message: err.to_string(),
            })?;
        }
    }
    let _placed = b.finish();
    Ok(targets.len())
}
