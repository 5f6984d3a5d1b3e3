//! What fusion made of each `LAuReL` block, for `fuse --explain`.
//!
//! A block is what augmentation added for one residual: its ops, named
//! `laurel.<k>/…`, and its parameters, initializers named `laurel.<k>.…`
//! (see [`crate::augment`]). A model exported elsewhere with the same math
//! has no such names and no blocks here. Comparing the model before and
//! after fusion, block `k` was:
//!
//! - **folded** when none of its ops and none of its parameters is left:
//!   its scalars went into weights, norms' ε, or cancelled;
//! - **merged** when weights computed from its parameters are read (an
//!   initializer `laurel.<k>.…` that did not exist before: a low-rank pair
//!   multiplied out, or `A`s / `B`s concatenated, with each other or with the
//!   model's weights; lifting names such a weight after the block's operand);
//! - **fused op** when a `LaurelResidual` computes or reads one of its
//!   values (a value computed anew is named `<name>.fused`);
//! - **left alone** when all of its ops are still there, under their names.
//!
//! Otherwise the outcome lists what applies, with the ops left (`2 of 5 ops
//! left`) or, when none is but its parameters are still read as they were,
//! `n parameters kept`.
//!
//! Complexity: O(V + E) of both graphs.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::ir::{Graph, Node};

/// What fusion made of one block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockOutcome {
    /// The block's number (`laurel.<block>`).
    pub block: u32,
    /// Its ops before fusion.
    pub ops_before: usize,
    /// Its ops still there after fusion (by name).
    pub ops_left: usize,
    /// `LaurelResidual` ops computing one of its values.
    pub fused_ops: usize,
    /// New initializers computed from its parameters.
    pub merged_weights: Vec<String>,
    /// Its parameters still read as they were.
    pub parameters_left: usize,
}

impl BlockOutcome {
    /// The outcome in words: `folded`, `merged`, `fused op`, `left alone`,
    /// or the list of what applies.
    #[must_use]
    pub fn verdict(&self) -> String {
        if self.ops_before > 0
            && self.ops_left == self.ops_before
            && self.fused_ops == 0
            && self.merged_weights.is_empty()
        {
            return "left alone".to_owned();
        }
        let mut parts = Vec::new();
        if self.fused_ops > 0 {
            parts.push("fused op".to_owned());
        }
        if !self.merged_weights.is_empty() {
            parts.push("merged".to_owned());
        }
        if self.ops_left > 0 {
            parts.push(format!("{} of {} ops left", self.ops_left, self.ops_before));
        } else if self.parameters_left > 0 {
            // Its ops were rebuilt under other names, reading its parameters.
            parts.push(format!("{} parameters kept", self.parameters_left));
        }
        if parts.is_empty() {
            "folded".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// The block number of a name `laurel.<k>/…` or `laurel.<k>.…`.
fn block_of(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("laurel.")?;
    let end = rest.find(['/', '.'])?;
    rest[..end].parse().ok()
}

fn initializer_names(g: &Graph) -> HashSet<&str> {
    g.initializers
        .iter()
        .chain(&g.sparse_initializers)
        .flat_map(|&n| g.dag[n].outputs())
        .collect()
}

/// What [`block_outcomes`] needs of the model before fusion: each block's
/// op names, the block that produced each value, the initializers.
#[derive(Debug, Clone, Default)]
pub struct BlockSnapshot {
    ops_before: BTreeMap<u32, usize>,
    op_names: HashSet<String>,
    value_block: HashMap<String, u32>,
    initializers: HashSet<String>,
}

impl BlockSnapshot {
    /// The snapshot of `before`. O(V + E).
    #[must_use]
    pub fn of(before: &Graph) -> Self {
        let mut snap = Self::default();
        for &n in &before.op_order {
            let Node::Op(op) = &before.dag[n] else {
                continue;
            };
            if let Some(k) = block_of(&op.proto.name) {
                *snap.ops_before.entry(k).or_default() += 1;
                snap.op_names.insert(op.proto.name.clone());
                for o in &op.proto.output {
                    snap.value_block.insert(o.clone(), k);
                }
            }
        }
        snap.initializers = initializer_names(before)
            .into_iter()
            .map(str::to_owned)
            .collect();
        snap
    }
}

/// The outcome of every block of the snapshot's model in `after`, by block
/// number. O(V + E) of `after`.
#[must_use]
pub fn block_outcomes(before: &BlockSnapshot, after: &Graph) -> Vec<BlockOutcome> {
    let mut out: BTreeMap<u32, BlockOutcome> = before
        .ops_before
        .iter()
        .map(|(&k, &n)| {
            let outcome = BlockOutcome {
                block: k,
                ops_before: n,
                ops_left: 0,
                fused_ops: 0,
                merged_weights: Vec::new(),
                parameters_left: 0,
            };
            (k, outcome)
        })
        .collect();
    let mut read: HashSet<&str> = HashSet::new();
    for &n in &after.op_order {
        let Node::Op(op) = &after.dag[n] else {
            continue;
        };
        read.extend(
            after
                .dag
                .edges_directed(n, petgraph::Direction::Incoming)
                .map(|e| e.weight().name.as_str()),
        );
        if before.op_names.contains(&op.proto.name)
            && let Some(b) = block_of(&op.proto.name).and_then(|k| out.get_mut(&k))
        {
            b.ops_left += 1;
        }
        if op.proto.op_type == laurel_runtime::ops::laurel_residual::OP_TYPE {
            // Its block: the one whose value it computes or reads.
            let inputs = after
                .dag
                .edges_directed(n, petgraph::Direction::Incoming)
                .map(|e| e.weight().name.as_str());
            let blocks: HashSet<u32> = op
                .proto
                .output
                .iter()
                .map(String::as_str)
                .chain(inputs)
                .filter_map(|o| {
                    // A value computed anew is named after the one it
                    // replaces: `<name>.fused[.k]`.
                    let stem = o.find(".fused").map_or(o, |i| &o[..i]);
                    before.value_block.get(stem).copied()
                })
                .collect();
            for k in blocks {
                if let Some(b) = out.get_mut(&k) {
                    b.fused_ops += 1;
                }
            }
        }
    }
    let mut after_inits: Vec<&str> = initializer_names(after).into_iter().collect();
    after_inits.sort_unstable();
    for name in after_inits {
        let Some(b) = block_of(name).and_then(|k| out.get_mut(&k)) else {
            continue;
        };
        if !read.contains(name) {
            continue;
        }
        if before.initializers.contains(name) {
            b.parameters_left += 1;
        } else {
            b.merged_weights.push(name.to_owned());
        }
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(ops_before: usize, ops_left: usize, fused: usize, merged: usize) -> BlockOutcome {
        BlockOutcome {
            block: 0,
            ops_before,
            ops_left,
            fused_ops: fused,
            merged_weights: vec!["laurel.0.A.fused".to_owned(); merged],
            parameters_left: 0,
        }
    }

    #[test]
    fn verdicts_name_what_happened() {
        assert_eq!(outcome(3, 0, 0, 0).verdict(), "folded");
        assert_eq!(outcome(3, 3, 0, 0).verdict(), "left alone");
        assert_eq!(outcome(3, 0, 1, 0).verdict(), "fused op");
        assert_eq!(outcome(3, 0, 0, 1).verdict(), "merged");
        assert_eq!(
            outcome(5, 2, 1, 1).verdict(),
            "fused op, merged, 2 of 5 ops left"
        );
    }

    #[test]
    fn block_numbers_come_from_op_and_parameter_names() {
        assert_eq!(block_of("laurel.12/Add_3"), Some(12));
        assert_eq!(block_of("laurel.0.alpha"), Some(0));
        assert_eq!(block_of("laurel.x/Add"), None);
        assert_eq!(block_of("block1/add"), None);
    }
}
