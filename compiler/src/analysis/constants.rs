//! Constant values: those computable from initializers alone.
//!
//! A value is constant when it is an initializer, the output of a
//! `Constant` op, or the output of an op whose every data input is constant
//! (and that has at least one input and no subgraph). Graph inputs are never
//! constant, not even those with an initializer as default; before IR
//! version 4 an initializer declared as an input is not a default but a
//! constant, and consumers read the initializer (see
//! `Graph::initializers_are_constant`). One pass in
//! topological order: O(V + E).

use std::collections::HashSet;

use petgraph::stable_graph::NodeIndex;

use crate::ir::{Graph, Node};
use crate::onnx::subgraph::has_subgraphs;

/// The op nodes and initializers whose outputs are all constant.
#[must_use]
pub fn constant_nodes(g: &Graph) -> HashSet<NodeIndex> {
    let mut constant: HashSet<NodeIndex> = g
        .initializers
        .iter()
        .chain(&g.sparse_initializers)
        .copied()
        .collect();
    // An initializer shadowed by a graph input of the same name (IR >= 4) is a default, not a
    // constant; the input node is what consumers read, so the initializer is never reached.
    let Ok(order) = g.topo_ops() else {
        return constant;
    };
    for n in order {
        let Node::Op(op) = &g.dag[n] else { continue };
        let is_const = if op.proto.op_type == "Constant" {
            true
        } else {
            let inputs = g.op_inputs(n);
            let data: Vec<NodeIndex> = inputs.iter().flatten().map(|(src, _)| *src).collect();
            !data.is_empty()
                && !has_subgraphs(&op.proto)
                && crate::ir::is_onnx_domain(&op.proto.domain)
                && !matches!(
                    op.proto.op_type.as_str(),
                    "RandomNormal"
                        | "RandomUniform"
                        | "RandomNormalLike"
                        | "RandomUniformLike"
                        | "Multinomial"
                        | "Bernoulli"
                        | "Dropout"
                )
                && data.iter().all(|s| constant.contains(s))
        };
        if is_const {
            constant.insert(n);
        }
    }
    constant
}
