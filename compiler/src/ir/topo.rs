//! Order-preserving topological sort of op nodes.
//!
//! Kahn's algorithm with a min-heap keyed by each op's position in
//! [`Graph::op_order`]: when the preferred order is already topological it is
//! returned unchanged, so an untouched graph is written back in its original
//! node order. Ops missing from `op_order` sort after all listed ones, by
//! node index. Complexity O((V + E) log V).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use petgraph::Direction;
use petgraph::stable_graph::NodeIndex;
use petgraph::visit::EdgeRef;

use super::{Graph, Node};

/// The graph has a cycle; `node` is an op on it (or waiting behind it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cycle through node {node:?}")]
pub struct CycleError {
    /// An op that could not be ordered.
    pub node: NodeIndex,
}

pub(super) fn ordered_toposort(g: &Graph) -> Result<Vec<NodeIndex>, CycleError> {
    let rank: HashMap<NodeIndex, usize> = g
        .op_order
        .iter()
        .enumerate()
        .map(|(i, &n)| (n, i))
        .collect();
    let key = |n: NodeIndex| (rank.get(&n).copied().unwrap_or(usize::MAX), n.index());

    let ops: Vec<NodeIndex> = g
        .dag
        .node_indices()
        .filter(|&n| matches!(g.dag[n], Node::Op(_)))
        .collect();
    let mut indegree: HashMap<NodeIndex, usize> = HashMap::with_capacity(ops.len());
    for &n in &ops {
        let d = g
            .dag
            .edges_directed(n, Direction::Incoming)
            .filter(|e| matches!(g.dag[e.source()], Node::Op(_)))
            .count();
        indegree.insert(n, d);
    }
    let mut heap: BinaryHeap<Reverse<((usize, usize), NodeIndex)>> = indegree
        .iter()
        .filter(|&(_, &d)| d == 0)
        .map(|(&n, _)| Reverse((key(n), n)))
        .collect();
    let mut out = Vec::with_capacity(ops.len());
    while let Some(Reverse((_, n))) = heap.pop() {
        out.push(n);
        for e in g.dag.edges_directed(n, Direction::Outgoing) {
            let t = e.target();
            if let Some(d) = indegree.get_mut(&t) {
                *d -= 1;
                if *d == 0 {
                    heap.push(Reverse((key(t), t)));
                }
            }
        }
    }
    if out.len() == ops.len() {
        Ok(out)
    } else {
        let stuck = ops
            .iter()
            .copied()
            .filter(|n| indegree.get(n).is_some_and(|&d| d > 0))
            .min_by_key(|&n| key(n))
            .unwrap_or(NodeIndex::end());
        Err(CycleError { node: stuck })
    }
}
