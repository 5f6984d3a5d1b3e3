//! `If` nodes whose branches read weights become both branches and a
//! `Where`, so that the training step can differentiate through them.
//!
//! ```text
//! before:  y = If(c) then_branch = { … t = f(x, W1) }  else_branch = { … e = g(x, W2) }
//! after:   t = f(x, W1);  e = g(x, W2);  y = Where(c, t, e)
//! ```
//! The same function: the branches' nodes join the main graph (ONNX value
//! names are unique across a model and its subgraphs, so none clashes), the
//! branch-local initializers become main-graph ones, and each output picks
//! its branch's value. `Where`'s gradient rule sends the cotangent to the
//! selected branch and zeros to the other, so each branch's weights get the
//! gradient the `If` would have given them: the other branch's are 0.
//!
//! Costs and limits:
//! - the training step computes both branches (an inference model is never
//!   changed: this runs on the step's copy);
//! - the branch not taken must compute without fault: an op that only
//!   works on the taken branch's inputs (an index out of range) makes the
//!   step fail, and a non-finite value there can reach the other branch's
//!   weight gradients through a zero cotangent times infinity;
//! - only `If`s whose branches read a float initializer (at any depth) are
//!   inlined, and only when both branches declare outputs of equal rank
//!   where they declare one (an `If` selecting between a `Squeeze` and an
//!   `Identity` is left alone, and stays an op without a gradient rule).
//!   Nested `If`s surface in the main graph and are inlined in turn.
//!
//! Complexity: O(size of the inlined branches) per `If`, O(V) to find them.

use std::collections::HashSet;

use onnx_protobuf::{GraphProto, NodeProto};
use petgraph::Direction;
use petgraph::stable_graph::NodeIndex;
use petgraph::visit::EdgeRef;

use super::AutodiffError;
use crate::build::GraphBuilder;
use crate::ir::{Edge, Initializer, Model, Node};
use crate::onnx::subgraph::{captures, recapture};

/// Inlines every `If` of the main graph whose branches read a float
/// initializer; returns how many were inlined.
///
/// # Errors
/// [`AutodiffError::Internal`] when a branch reads a value nothing
/// produces (the model did not import so).
pub fn inline_weighted_ifs(m: &mut Model) -> Result<usize, AutodiffError> {
    let mut inlined = 0;
    // Each round inlines the Ifs found; the nested Ifs they held are next.
    loop {
        let targets = targets(m);
        if targets.is_empty() {
            return Ok(inlined);
        }
        for n in targets {
            inline(m, n)?;
            inlined += 1;
        }
    }
}

/// The `If`s to inline, in graph order.
fn targets(m: &Model) -> Vec<NodeIndex> {
    let g = &m.graph;
    let weights: HashSet<&str> = g
        .initializers
        .iter()
        .filter_map(|&n| match &g.dag[n] {
            Node::Initializer(i) if super::emit::elem::is_float(i.proto.data_type) => {
                Some(i.proto.name.as_str())
            }
            _ => None,
        })
        .collect();
    g.op_order
        .iter()
        .copied()
        .filter(|&n| {
            let Some(op) = g.dag[n].as_op() else {
                return false;
            };
            op.proto.op_type == "If"
                && crate::ir::is_onnx_domain(&op.proto.domain)
                && branches(&op.proto).is_some_and(|(t, e)| ranks_agree(t, e))
                && captures(&op.proto)
                    .iter()
                    .any(|c| weights.contains(c.as_str()))
        })
        .collect()
}

/// The `then_branch` and `else_branch` of an `If`.
fn branches(op: &NodeProto) -> Option<(&GraphProto, &GraphProto)> {
    let get = |name: &str| {
        op.attribute
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| a.g.as_ref())
    };
    let (t, e) = (get("then_branch")?, get("else_branch")?);
    (t.output.len() == e.output.len() && t.output.len() == op.output.len()).then_some((t, e))
}

/// Whether the branches' outputs have equal ranks wherever both declare one.
fn ranks_agree(t: &GraphProto, e: &GraphProto) -> bool {
    let rank = |v: &onnx_protobuf::ValueInfoProto| match v.type_.as_ref()?.value.as_ref()? {
        onnx_protobuf::type_proto::Value::TensorType(t) => t.shape.as_ref().map(|s| s.dim.len()),
        _ => None,
    };
    t.output
        .iter()
        .zip(&e.output)
        .all(|(a, b)| match (rank(a), rank(b)) {
            (Some(x), Some(y)) => x == y,
            _ => true,
        })
}

fn internal(message: String) -> AutodiffError {
    AutodiffError::Internal { message }
}

/// Inlines the `If` node `n`.
fn inline(m: &mut Model, n: NodeIndex) -> Result<(), AutodiffError> {
    let g = &mut m.graph;
    let Some(op) = g.dag[n].as_op().cloned() else {
        return Ok(());
    };
    let (then_b, else_b) = branches(&op.proto)
        .map(|(t, e)| (t.clone(), e.clone()))
        .ok_or_else(|| internal("an If without its two branches".into()))?;
    let cond = g
        .op_inputs(n)
        .first()
        .copied()
        .flatten()
        .map(|(_, e)| e.name.clone())
        .ok_or_else(|| internal("an If without a condition".into()))?;
    let consumers: Vec<(NodeIndex, Edge)> = g
        .dag
        .edges_directed(n, Direction::Outgoing)
        .map(|e| (e.target(), e.weight().clone()))
        .collect();
    for branch in [&then_b, &else_b] {
        for t in &branch.initializer {
            g.add_initializer(Initializer {
                proto: t.clone(),
                external: None,
            });
        }
    }
    let mut b = GraphBuilder::new(g);
    let anchor = b.position(n).unwrap_or(usize::MAX);
    b.remove_op(n);
    let mut holders = Vec::new();
    for branch in [&then_b, &else_b] {
        for node in &branch.node {
            let mut proto = node.clone();
            let inputs = std::mem::take(&mut proto.input);
            let holds = crate::onnx::subgraph::has_subgraphs(&proto);
            let k = b
                .op(proto, &inputs, anchor)
                .map_err(|e| internal(format!("inlining `{}`: {e}", op.proto.name)))?;
            if holds {
                holders.push(k);
            }
        }
    }
    for (i, out) in op.proto.output.iter().enumerate() {
        if out.is_empty() {
            continue;
        }
        let (t, e) = (&then_b.output[i].name, &else_b.output[i].name);
        let name = b.node_name(&format!("{}/Where_{i}", op.proto.name));
        let proto = NodeProto {
            op_type: "Where".into(),
            name,
            output: vec![out.clone()],
            ..NodeProto::default()
        };
        b.op(proto, &[cond.clone(), t.clone(), e.clone()], anchor)
            .map_err(|e| internal(format!("inlining `{}`: {e}", op.proto.name)))?;
    }
    for (target, edge) in consumers {
        b.connect(target, edge)
            .map_err(|e| internal(format!("inlining `{}`: {e}", op.proto.name)))?;
    }
    let _ = b.finish();
    for k in holders {
        recapture(g, k).map_err(internal)?;
    }
    Ok(())
}
