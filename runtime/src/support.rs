//! Ops tract cannot build, found before tract parses the model.
//!
//! tract-onnx builds each node from its op registry (by op type, whatever
//! the domain), with laurel-runtime's custom ops added
//! ([`crate::ops::register`]). A node whose op type is not there becomes an
//! "unimplemented" op that fails much later, once per loader strategy, in
//! words about typing: a model with an onnxruntime contrib op
//! (`com.microsoft::FusedMatMul`, `DynamicQuantizeLSTM`) or a `Loop`
//! printed three such paragraphs. [`unsupported_ops`] names the first such
//! node in one line, before any strategy runs.
//!
//! Complexity: O(nodes), subgraphs included.

use tract_onnx::pb;

/// The nodes (subgraphs included, in file order) whose op type `known`
/// (tract's registry, as the loader builds it) lacks: `(node name, domain,
/// op type)`.
#[must_use]
pub fn unsupported_nodes(
    proto: &pb::ModelProto,
    known: &dyn Fn(&str) -> bool,
) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    if let Some(g) = &proto.graph {
        walk(g, known, &mut out);
    }
    out
}

fn walk(g: &pb::GraphProto, known: &dyn Fn(&str) -> bool, out: &mut Vec<(String, String, String)>) {
    for n in &g.node {
        if !known(&n.op_type) {
            out.push((n.name.clone(), n.domain.clone(), n.op_type.clone()));
        }
        for a in &n.attribute {
            for sub in a.g.iter().chain(&a.graphs) {
                walk(sub, known, out);
            }
        }
    }
}

/// One line naming the first node `known` lacks (see [`unsupported_nodes`]) and how many others
/// there are, or `None` when tract knows every op.
#[must_use]
pub fn unsupported_ops(proto: &pb::ModelProto, known: &dyn Fn(&str) -> bool) -> Option<String> {
    let nodes = unsupported_nodes(proto, known);
    let (name, domain, op) = nodes.first()?;
    let qualified = if domain.is_empty() || domain == "ai.onnx" {
        op.clone()
    } else {
        format!("{domain}::{op}")
    };
    let mut types: Vec<&str> = nodes.iter().map(|(_, _, t)| t.as_str()).collect();
    types.sort_unstable();
    types.dedup();
    let more = match (nodes.len(), types.len()) {
        (1, _) => String::new(),
        (n, 1) => format!(" ({} more nodes of that op)", n - 1),
        (n, t) => format!(
            " ({} more nodes; {} op types in all: {})",
            n - 1,
            t,
            types.join(", ")
        ),
    };
    let name = if name.is_empty() {
        "(unnamed)".to_string()
    } else {
        format!("`{name}`")
    };
    Some(format!(
        "node {name} is {qualified}, an op tract does not implement and laurel-runtime does not register{more}"
    ))
}
