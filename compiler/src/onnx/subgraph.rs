//! Subgraphs held in node attributes (`If`, `Loop`, `Scan`, …).
//!
//! The IR keeps subgraphs verbatim inside their node's attributes. What the
//! outer graph needs to know is which outer-scope values they read: ONNX lets
//! a subgraph use any name visible in an enclosing scope without declaring
//! it. [`captures`] finds those names, so that import can add capture edges
//! that keep the producers alive and ordered before the node.

use std::collections::{BTreeSet, HashSet};

use onnx_protobuf::{GraphProto, NodeProto};

/// The subgraphs held by a node's attributes (`g` and `graphs` fields).
pub fn subgraphs(node: &NodeProto) -> impl Iterator<Item = &GraphProto> {
    node.attribute
        .iter()
        .flat_map(|a| a.g.as_ref().into_iter().chain(a.graphs.iter()))
}

/// Whether a node holds any subgraph.
#[must_use]
pub fn has_subgraphs(node: &NodeProto) -> bool {
    subgraphs(node).next().is_some()
}

/// The outer-scope names that `node`'s subgraphs read, sorted. O(size of the
/// subgraphs, nested ones included).
#[must_use]
pub fn captures(node: &NodeProto) -> BTreeSet<String> {
    let mut free = BTreeSet::new();
    for g in subgraphs(node) {
        graph_free_names(g, &mut free);
    }
    free
}

/// Adds to `free` the names a graph reads but neither declares nor produces.
fn graph_free_names(g: &GraphProto, free: &mut BTreeSet<String>) {
    let mut defined: HashSet<&str> = HashSet::new();
    defined.extend(g.input.iter().map(|v| v.name.as_str()));
    defined.extend(g.initializer.iter().map(|t| t.name.as_str()));
    defined.extend(g.sparse_initializer.iter().map(|s| s.values.name.as_str()));
    for n in &g.node {
        defined.extend(n.output.iter().map(String::as_str));
    }
    let mut read: BTreeSet<String> = BTreeSet::new();
    for n in &g.node {
        read.extend(n.input.iter().filter(|s| !s.is_empty()).cloned());
        for sub in subgraphs(n) {
            graph_free_names(sub, &mut read);
        }
    }
    read.extend(g.output.iter().map(|v| v.name.clone()));
    free.extend(
        read.into_iter()
            .filter(|name| !defined.contains(name.as_str())),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use onnx_protobuf::AttributeProto;

    fn node(inputs: &[&str], outputs: &[&str]) -> NodeProto {
        NodeProto {
            input: inputs.iter().map(ToString::to_string).collect(),
            output: outputs.iter().map(ToString::to_string).collect(),
            ..NodeProto::default()
        }
    }

    #[test]
    fn captures_names_read_from_the_enclosing_scope_only() {
        // then-branch: t = Add(outer_a, local_in); output t and outer_b directly.
        let mut then = GraphProto::default();
        then.input.push(onnx_protobuf::ValueInfoProto {
            name: "local_in".into(),
            ..Default::default()
        });
        then.node.push(node(&["outer_a", "local_in"], &["t"]));
        then.output.push(onnx_protobuf::ValueInfoProto {
            name: "t".into(),
            ..Default::default()
        });
        then.output.push(onnx_protobuf::ValueInfoProto {
            name: "outer_b".into(),
            ..Default::default()
        });
        // A nested subgraph reading `t` (defined one level up) and `outer_c`.
        let mut nested = GraphProto::default();
        nested.node.push(node(&["t", "outer_c", ""], &["u"]));
        let mut holder = node(&[], &["v"]);
        holder.attribute.push(AttributeProto {
            name: "body".into(),
            g: Some(nested).into(),
            ..Default::default()
        });
        then.node.push(holder);

        let mut iff = node(&["cond"], &["y"]);
        iff.attribute.push(AttributeProto {
            name: "then_branch".into(),
            g: Some(then).into(),
            ..Default::default()
        });
        let got: Vec<String> = captures(&iff).into_iter().collect();
        assert_eq!(got, ["outer_a", "outer_b", "outer_c"]);
        assert!(has_subgraphs(&iff));
        assert!(!has_subgraphs(&node(&["a"], &["b"])));
    }
}
