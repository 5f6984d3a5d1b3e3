//! `gelu`: the exact-GELU subgraphs a runtime fuses into one op, kept whole.
//!
//! Exporters write `gelu(x) = x · ½ · (1 + erf(x / √2))` as five ops, and
//! tract (`detect_gelu_exact`) and onnxruntime fuse exactly that shape into
//! one GELU kernel:
//!
//! ```text
//! s = Div(x, √2)   or  Mul(x, 1/√2)
//! e = Erf(s)
//! a = Add(e, 1)
//! y = Mul(Mul(x, a), ½)   or  Mul(Mul(x, ½), a)   (operands in either order)
//! ```
//!
//! Fusion must not take the `½` out: `c·x` rules would fold it into the next
//! matrix product (one `Mul` fewer), and the runtime would then run the four
//! ops left instead of its kernel. On paraphrase-MiniLM-L3 at 8×8 tokens,
//! tract's three `GeluExact` took 188 µs, the ops left 230 µs (per-node
//! medians, `docs/benchmarks.md`). Nothing is lost by keeping the pattern
//! out of the e-graph: GELU is not positively homogeneous, so no scale moves
//! through it.
//!
//! Complexity: O(V + E).

use std::collections::HashSet;

use petgraph::stable_graph::NodeIndex;

use super::lower::scalar_value;
use crate::ir::{Graph, Node};

/// How close a constant must be to √2, 1/√2, 1 or ½ (relative).
const TOLERANCE: f64 = 1e-4;

/// The ops of every exact-GELU subgraph of `g`'s main graph.
#[must_use]
pub fn gelu_ops(g: &Graph) -> HashSet<NodeIndex> {
    let producers = g.producers();
    let scalar = |name: &str| -> Option<f64> {
        match producers.get(name).map(|&(p, _)| &g.dag[p]) {
            Some(Node::Initializer(i)) => scalar_value(i),
            _ => None,
        }
    };
    let near = |v: f64, want: f64| (v - want).abs() <= TOLERANCE * want.abs();
    let outputs: std::collections::HashSet<&str> =
        g.header.output.iter().map(|o| o.name.as_str()).collect();
    // The op type of a default-domain op whose output is not a graph output.
    let op_type = |n: NodeIndex| {
        g.dag[n]
            .as_op()
            .filter(|op| crate::ir::is_onnx_domain(&op.proto.domain))
            .filter(|op| {
                op.proto
                    .output
                    .iter()
                    .all(|o| !outputs.contains(o.as_str()))
            })
            .map(|op| op.proto.op_type.as_str())
    };
    let inputs = |n: NodeIndex| -> Vec<String> {
        g.op_inputs(n)
            .into_iter()
            .map(|s| s.map_or_else(String::new, |(_, e)| e.name.clone()))
            .collect()
    };
    let output = |n: NodeIndex| -> &str { g.dag[n].outputs().first().copied().unwrap_or("") };
    // The sole consumer of `n`'s first output, if it has exactly one.
    let only_consumer = |n: NodeIndex| -> Option<NodeIndex> {
        match g.consumers(n, 0).as_slice() {
            [(c, _)] => Some(*c),
            _ => None,
        }
    };
    // `(operand, constant)` of a binary op with one scalar-initializer operand.
    let with_constant = |n: NodeIndex| -> Option<(String, f64)> {
        match inputs(n).as_slice() {
            [a, b] => scalar(b)
                .map(|c| (a.clone(), c))
                .or_else(|| scalar(a).map(|c| (b.clone(), c))),
            _ => None,
        }
    };
    let mut found = HashSet::new();
    for &erf in &g.op_order {
        if op_type(erf) != Some("Erf") {
            continue;
        }
        let Some(Some((scale, _))) = g.op_inputs(erf).into_iter().next() else {
            continue;
        };
        // s = x / √2 (Div: the constant is the divisor) or x · 1/√2.
        let x = match (op_type(scale), inputs(scale).as_slice()) {
            (Some("Div"), [x, c]) if scalar(c).is_some_and(|c| near(c, 2f64.sqrt())) => x.clone(),
            (Some("Mul"), _) => match with_constant(scale) {
                Some((x, c)) if near(c, 0.5f64.sqrt()) => x,
                _ => continue,
            },
            _ => continue,
        };
        let Some(add) = only_consumer(erf) else {
            continue;
        };
        if op_type(add) != Some("Add") || !with_constant(add).is_some_and(|(_, c)| near(c, 1.0)) {
            continue;
        }
        let Some(mul) = only_consumer(add) else {
            continue;
        };
        if op_type(mul) != Some("Mul") {
            continue;
        }
        let a = output(add);
        let Some(other) = inputs(mul).into_iter().find(|i| i != a) else {
            continue;
        };
        let half = if other == x {
            // y = Mul(Mul(x, a), ½)
            match only_consumer(mul) {
                Some(h)
                    if op_type(h) == Some("Mul")
                        && with_constant(h).is_some_and(|(_, c)| near(c, 0.5)) =>
                {
                    h
                }
                _ => continue,
            }
        } else {
            // y = Mul(Mul(x, ½), a), the half read by y only.
            match producers.get(other.as_str()).map(|&(p, _)| p) {
                Some(h)
                    if op_type(h) == Some("Mul")
                        && only_consumer(h) == Some(mul)
                        && with_constant(h).is_some_and(|(v, c)| v == x && near(c, 0.5)) =>
                {
                    h
                }
                _ => continue,
            }
        };
        found.extend([scale, erf, add, mul, half]);
    }
    found
}
