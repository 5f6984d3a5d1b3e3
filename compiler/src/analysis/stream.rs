//! Residual streams: the ordered chains of residual blocks.
//!
//! A block's predecessor is the residual whose output its skip input follows
//! from through non-residual, non-parametric ops: directly (pre-LN
//! transformers), through the `Relu` after a `ResNet` add, or through the
//! `LayerNormalization` of a post-LN block (fused or decomposed). For a
//! projection the walk starts from the value both of its branches fork from.
//! The walk goes backwards over non-constant data edges (not through
//! `Shape`/`Size`), through non-parametric ops only; the block has a
//! predecessor when the walk reaches exactly one residual add. Graph inputs
//! met on side operands (a padding mask multiplied in) do not stop it. A
//! skip that is a graph input, or a parametric op's output (a strided stage
//! transition without a shortcut), starts a new stream.
//!
//! When two blocks follow from the same predecessor, the first in
//! topological order continues the stream and the other starts a new one.
//! Streams are numbered by their first block's position. O(R · (V + E)).

use std::collections::{HashMap, HashSet, VecDeque};

use petgraph::Direction;
use petgraph::stable_graph::NodeIndex;
use petgraph::visit::EdgeRef;

use super::constants::constant_nodes;
use super::is_parametric;
use super::reach::shape_only;
use super::residual::Residual;
use crate::ir::{Graph, Node};

/// The residual add whose output `start` follows from (see the module doc).
fn predecessor(
    g: &Graph,
    start: NodeIndex,
    residual_nodes: &HashSet<NodeIndex>,
    constant: &HashSet<NodeIndex>,
) -> Option<NodeIndex> {
    if residual_nodes.contains(&start) {
        return Some(start);
    }
    let walkable =
        |n: NodeIndex| matches!(&g.dag[n], Node::Op(op) if !is_parametric(&op.proto.op_type));
    if !walkable(start) {
        // The skip is a graph input or a parametric op's output: a stream starts here.
        return None;
    }
    let mut frontier: HashSet<NodeIndex> = HashSet::new();
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        if !seen.insert(n) {
            continue;
        }
        for e in g.dag.edges_directed(n, Direction::Incoming) {
            let src = e.source();
            if constant.contains(&src) || shape_only(g, src) {
                continue;
            }
            if residual_nodes.contains(&src) {
                frontier.insert(src);
            } else if walkable(src) {
                queue.push_back(src);
            }
            // Graph inputs (a padding mask) and parametric ops on side operands are not the stream.
        }
    }
    if frontier.len() == 1 {
        frontier.into_iter().next()
    } else {
        None
    }
}

/// Fills in [`Residual::stream`] and [`Residual::index`]. `residuals` must be
/// in topological order, as [`super::find_residuals`] returns them.
pub fn assign_streams(g: &Graph, residuals: &mut [Residual]) {
    let constant = constant_nodes(g);
    let nodes: HashSet<NodeIndex> = residuals.iter().map(|r| r.node).collect();
    let by_node: HashMap<NodeIndex, usize> = residuals
        .iter()
        .enumerate()
        .map(|(i, r)| (r.node, i))
        .collect();
    let producers = g.producers();
    let mut continued: HashSet<NodeIndex> = HashSet::new();
    let mut next_stream = 0;
    for i in 0..residuals.len() {
        let start_value = residuals[i].fork.as_deref().unwrap_or(&residuals[i].skip);
        let Some(&(start, _)) = producers.get(start_value) else {
            continue;
        };
        let pred = predecessor(g, start, &nodes, &constant).filter(|p| continued.insert(*p));
        match pred.and_then(|p| by_node.get(&p).copied()) {
            Some(j) if j < i => {
                residuals[i].stream = residuals[j].stream;
                residuals[i].index = residuals[j].index + 1;
            }
            _ => {
                residuals[i].stream = next_stream;
                residuals[i].index = 0;
                next_stream += 1;
            }
        }
    }
}
