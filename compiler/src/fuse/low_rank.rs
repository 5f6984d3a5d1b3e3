//! `low_rank`: for `--target tract`, a sum with low-rank products becomes a
//! `LaurelResidual` that computes them (its `low_rank` pairs).
//!
//! ```text
//! before:  u = MatMul(p, B)          (B a float initializer [r, d], r ≤ 64, 4·r ≤ d;
//!          s = Add(x, u)              u read by this sum only)
//!          y = Add(f, s)
//! after:   y = ai.laurel::LaurelResidual(f, x, p, B; low_rank = 1)
//! ```
//!
//! tract runs each such product as a matrix product of depth `r`, whose cost is
//! mostly per output tile, and fuses the following `Add` into it at a further cost;
//! laurel-runtime's low-rank kernel adds every product of the sum into the output
//! in one pass (`docs/laurel-op.md`). On paraphrase-MiniLM-L3 with RW+LR+PA at 64
//! tokens that takes the fused model from 1.08 to 1.03 of the baseline
//! (`docs/benchmarks.md`). This runs after extraction, like instruction selection:
//! the cost model prices ONNX ops, and this choice is the same for every
//! extraction on tract.
//!
//! A sum is a tree of `Add`s without an initializer operand (an `Add` of a bias
//! is left to tract, which folds it into the matrix product before it), each read
//! only by the next; its leaves are the terms, in order, and the products. A sum
//! needs a term besides its products. An existing `LaurelResidual` takes in the
//! products among its inputs likewise, with their coefficients. The new op adds
//! the terms first and the products after them, so a sum such as `f + (x + u)`
//! becomes `(f + x) + u`: a reassociation, equal to rounding, like the products
//! themselves.
//!
//! Complexity: O(V + E).

use std::collections::{HashMap, HashSet};

use laurel_runtime::ops::laurel_residual;
use onnx_protobuf::NodeProto;
use petgraph::Direction;
use petgraph::stable_graph::NodeIndex;
use petgraph::visit::EdgeRef as _;

use crate::ir::is_onnx_domain;
use crate::ir::{Edge, Graph, Node};

/// The deepest product the pass gives the kernel.
pub const MAX_RANK: i64 = 64;

/// How much narrower than its output a product's depth must be: tract's own
/// matrix products are efficient once they are deep.
pub const MIN_THINNESS: i64 = 4;

/// An input of an op: where it comes from.
#[derive(Debug, Clone)]
struct Source {
    node: NodeIndex,
    slot: usize,
    name: String,
}

/// The proto of op `n`.
fn op(g: &Graph, n: NodeIndex) -> Option<&NodeProto> {
    g.dag[n].as_op().map(|o| &o.proto)
}

/// Rewrites the sums of `g` with low-rank products into `LaurelResidual`s.
/// Returns how many products the new or widened ops compute.
pub fn low_rank_residuals(g: &mut Graph) -> usize {
    let outputs: HashSet<String> = g.header.output.iter().map(|o| o.name.clone()).collect();
    let producers: HashMap<String, NodeIndex> = g
        .producers()
        .into_iter()
        .map(|(k, (n, _))| (k.to_owned(), n))
        .collect();
    let sources = |g: &Graph, n: NodeIndex| -> Option<Vec<Source>> {
        g.op_inputs(n)
            .into_iter()
            .map(|s| {
                s.map(|(node, e)| Source {
                    node,
                    slot: e.src_slot,
                    name: e.name.clone(),
                })
            })
            .collect()
    };
    let sole_consumer = |g: &Graph, n: NodeIndex| -> Option<NodeIndex> {
        let proto = op(g, n)?;
        if proto.output.len() != 1 || outputs.contains(&proto.output[0]) {
            return None;
        }
        match g.consumers(n, 0).as_slice() {
            [(c, _)] => Some(*c),
            _ => None,
        }
    };
    // Products `MatMul(p, B)` with a thin float initializer `B`, read once.
    let mut products: HashMap<NodeIndex, (Source, Source)> = HashMap::new();
    for &n in &g.op_order {
        let Some(proto) = op(g, n) else { continue };
        if proto.op_type != "MatMul" || !is_onnx_domain(&proto.domain) {
            continue;
        }
        let Some(ins) = sources(g, n) else { continue };
        let [left, right] = ins.as_slice() else {
            continue;
        };
        let thin = match &g.dag[right.node] {
            Node::Initializer(i) => {
                i.proto.data_type == 1
                    && matches!(i.proto.dims.as_slice(),
                        [r, d] if (1..=MAX_RANK).contains(r) && r.saturating_mul(MIN_THINNESS) <= *d)
                    && producers.get(&right.name) == Some(&right.node)
            }
            _ => false,
        };
        if thin && sole_consumer(g, n).is_some() {
            products.insert(n, (left.clone(), right.clone()));
        }
    }
    // An `Add` of a sum: two inputs, neither an initializer.
    let is_sum_add = |g: &Graph, n: NodeIndex| -> bool {
        // No attributes: before opset 7 `Add` could broadcast by `axis`.
        op(g, n).is_some_and(|p| {
            p.op_type == "Add" && is_onnx_domain(&p.domain) && p.attribute.is_empty()
        }) && sources(g, n).is_some_and(|ins| {
            ins.len() == 2
                && ins
                    .iter()
                    .all(|s| !matches!(g.dag[s.node], Node::Initializer(_)))
        })
    };
    let is_laurel = |g: &Graph, n: NodeIndex| -> bool {
        op(g, n).is_some_and(|p| {
            p.op_type == laurel_residual::OP_TYPE
                && p.domain == laurel_residual::DOMAIN
                && !p
                    .attribute
                    .iter()
                    .any(|a| a.name == laurel_residual::LOW_RANK)
        })
    };
    // The roots: the top of each product's sum.
    let mut roots: Vec<NodeIndex> = Vec::new();
    let mut order: Vec<NodeIndex> = products.keys().copied().collect();
    order.sort_unstable();
    for &m in &order {
        let Some(mut root) = sole_consumer(g, m) else {
            continue;
        };
        if is_sum_add(g, root) {
            while let Some(up) = sole_consumer(g, root).filter(|&c| is_sum_add(g, c)) {
                root = up;
            }
        } else if !is_laurel(g, root) {
            continue;
        }
        if !roots.contains(&root) {
            roots.push(root);
        }
    }
    let mut absorbed = 0;
    for root in roots {
        absorbed += rewrite(g, root, &products, &is_sum_add, &sole_consumer);
    }
    absorbed
}

/// Rewrites the sum at `root` (an `Add` tree or a `LaurelResidual`); returns how
/// many products it took in.
fn rewrite(
    g: &mut Graph,
    root: NodeIndex,
    products: &HashMap<NodeIndex, (Source, Source)>,
    is_sum_add: &dyn Fn(&Graph, NodeIndex) -> bool,
    sole_consumer: &dyn Fn(&Graph, NodeIndex) -> Option<NodeIndex>,
) -> usize {
    let Some(proto) = g.dag[root].as_op().map(|o| o.proto.clone()) else {
        return 0;
    };
    let laurel = proto.op_type == laurel_residual::OP_TYPE;
    let coefficients: Vec<f32> = proto
        .attribute
        .iter()
        .find(|a| a.name == laurel_residual::COEFFICIENTS)
        .map(|a| a.floats.clone())
        .unwrap_or_default();
    // Leaves in order, with their coefficients; the tree's inner `Add`s.
    let mut leaves: Vec<(Source, f32)> = Vec::new();
    let mut inner: Vec<NodeIndex> = Vec::new();
    if laurel {
        let inputs = g.op_inputs(root);
        // One coefficient per input, or none (all 1); anything else is not ours to mend.
        if !coefficients.is_empty() && coefficients.len() != inputs.len() {
            return 0;
        }
        for (slot, input) in inputs.into_iter().enumerate() {
            let Some((src, e)) = input else { return 0 };
            let source = Source {
                node: src,
                slot: e.src_slot,
                name: e.name.clone(),
            };
            leaves.push((source, coefficients.get(slot).copied().unwrap_or(1.0)));
        }
    } else {
        collect_sum(g, root, is_sum_add, sole_consumer, &mut leaves, &mut inner);
    }
    let (taken, terms): (Vec<_>, Vec<_>) = leaves
        .into_iter()
        .partition(|(s, _)| products.contains_key(&s.node));
    if taken.is_empty() || terms.is_empty() {
        return 0;
    }
    // The new inputs: terms, then (p, B) pairs.
    let mut new_inputs: Vec<Source> = terms.iter().map(|(s, _)| s.clone()).collect();
    let mut new_coefficients: Vec<f32> = terms.iter().map(|&(_, c)| c).collect();
    let mut dead: Vec<NodeIndex> = inner;
    for (s, c) in &taken {
        let (p, b) = &products[&s.node];
        new_inputs.push(p.clone());
        new_inputs.push(b.clone());
        new_coefficients.push(*c);
        dead.push(s.node);
    }
    let incoming: Vec<_> = g
        .dag
        .edges_directed(root, Direction::Incoming)
        .map(|e| e.id())
        .collect();
    for e in incoming {
        g.dag.remove_edge(e);
    }
    for (slot, s) in new_inputs.iter().enumerate() {
        g.dag.add_edge(
            s.node,
            root,
            Edge {
                name: s.name.clone(),
                src_slot: s.slot,
                dst_slot: Some(slot),
            },
        );
    }
    let k = taken.len();
    if let Some(Node::Op(o)) = g.dag.node_weight_mut(root) {
        let output = proto.output.into_iter().next().unwrap_or_default();
        o.proto = crate::build::laurel_residual(proto.name, output, new_coefficients, k);
        o.num_inputs = new_inputs.len();
    }
    for &n in &dead {
        g.dag.remove_node(n);
    }
    g.op_order.retain(|n| !dead.contains(n));
    k
}

/// The leaves of the `Add` tree at `n`, left to right (coefficient 1), and its inner
/// `Add`s: an operand is inner when it is a sum's `Add` that only `n` reads.
fn collect_sum(
    g: &Graph,
    n: NodeIndex,
    is_sum_add: &dyn Fn(&Graph, NodeIndex) -> bool,
    sole_consumer: &dyn Fn(&Graph, NodeIndex) -> Option<NodeIndex>,
    leaves: &mut Vec<(Source, f32)>,
    inner: &mut Vec<NodeIndex>,
) {
    for (src, e) in g.op_inputs(n).into_iter().flatten() {
        if is_sum_add(g, src) && sole_consumer(g, src) == Some(n) {
            inner.push(src);
            collect_sum(g, src, is_sum_add, sole_consumer, leaves, inner);
        } else {
            let source = Source {
                node: src,
                slot: e.src_slot,
                name: e.name.clone(),
            };
            leaves.push((source, 1.0));
        }
    }
}
