//! Data reachability: which ops a value flows into, and which values an op
//! depends on.
//!
//! Paths through `Shape` and `Size` do not count: those ops read only a
//! tensor's shape, so a value that reaches another only through them is not
//! a data ancestor of it (BERT's attention mask is built from the hidden
//! state's *shape*, not its values). Subgraph captures count as data.
//! Each query is a breadth-first search, O(V + E) at worst; a [`Window`] of
//! topological positions bounds it to the part of the graph between two
//! values, which keeps the residual analysis near-linear on deep models.

use std::collections::{HashMap, HashSet, VecDeque};

use petgraph::Direction;
use petgraph::stable_graph::NodeIndex;
use petgraph::visit::EdgeRef;

use crate::ir::{Graph, Node};

/// A value: its producer and output slot.
pub type Value = (NodeIndex, usize);

/// The op positions a search may visit: `lo..=hi` in topological order.
/// Non-op nodes (inputs, initializers) have no position and are always inside.
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    /// Topological position of every op.
    pub pos: &'a HashMap<NodeIndex, usize>,
    /// The lowest position visited.
    pub lo: usize,
    /// The highest position visited.
    pub hi: usize,
}

impl Window<'_> {
    /// Whether a search may visit `n`.
    #[must_use]
    pub fn contains(&self, n: NodeIndex) -> bool {
        self.pos
            .get(&n)
            .is_none_or(|&p| self.lo <= p && p <= self.hi)
    }
}

/// Whether `n` is a `Shape` or `Size` op, which reads only its input's shape.
#[must_use]
pub fn shape_only(g: &Graph, n: NodeIndex) -> bool {
    matches!(&g.dag[n], Node::Op(op) if matches!(op.proto.op_type.as_str(), "Shape" | "Size"))
}

/// The op nodes whose outputs depend on the data of `v` (not through
/// `Shape`/`Size`), `v`'s consumers included.
#[must_use]
pub fn descendants(g: &Graph, v: Value, window: Window<'_>) -> HashSet<NodeIndex> {
    let mut seen = HashSet::new();
    let mut queue: VecDeque<NodeIndex> = g
        .dag
        .edges_directed(v.0, Direction::Outgoing)
        .filter(|e| e.weight().src_slot == v.1)
        .map(|e| e.target())
        .collect();
    while let Some(n) = queue.pop_front() {
        if shape_only(g, n) || !window.contains(n) || !seen.insert(n) {
            continue;
        }
        queue.extend(g.dag.neighbors_directed(n, Direction::Outgoing));
    }
    seen
}

/// The nodes (ops, inputs, initializers) whose data `n`'s outputs depend on
/// (not through `Shape`/`Size`), `n` included.
#[must_use]
pub fn ancestors(g: &Graph, n: NodeIndex, window: Window<'_>) -> HashSet<NodeIndex> {
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([n]);
    while let Some(m) = queue.pop_front() {
        if !window.contains(m) || !seen.insert(m) {
            continue;
        }
        queue.extend(
            g.dag
                .neighbors_directed(m, Direction::Incoming)
                .filter(|&p| !shape_only(g, p)),
        );
    }
    seen
}

/// Whether value `v` is a data ancestor of op `n` (its data flows into `n`).
#[must_use]
pub fn flows_into(g: &Graph, v: Value, n: NodeIndex, window: Window<'_>) -> bool {
    // Backward from n, looking for an edge that carries v.
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([n]);
    while let Some(m) = queue.pop_front() {
        if !window.contains(m) || !seen.insert(m) {
            continue;
        }
        for e in g.dag.edges_directed(m, Direction::Incoming) {
            if e.source() == v.0 && e.weight().src_slot == v.1 {
                return true;
            }
            if !shape_only(g, e.source()) {
                queue.push_back(e.source());
            }
        }
    }
    false
}
