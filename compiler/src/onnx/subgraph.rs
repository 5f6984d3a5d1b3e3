//! Subgraphs held in node attributes (`If`, `Loop`, `Scan`, …).
//!
//! The IR keeps subgraphs verbatim inside their node's attributes. What the
//! outer graph needs to know is which outer-scope values they read: ONNX lets
//! a subgraph use any name visible in an enclosing scope without declaring
//! it. [`captures`] finds those names, so that import can add capture edges
//! that keep the producers alive and ordered before the node.
//!
//! A pass that works on whole models reaches into a subgraph through a
//! *standalone* model ([`standalone`]): the subgraph as a main graph, its
//! outer-scope values declared (initializers copied, other values as typed
//! graph inputs), under the outer model's header. After the pass,
//! [`splice`] turns the standalone graph back into the subgraph: the declared
//! captures go, and the `laurel.*` parameters the pass added are handed to
//! the enclosing graph, whose initializers they become (read through outer
//! scope, so a training step sees them as the model's own); [`recapture`]
//! then gives the holder node the capture edges of what its subgraph reads
//! now. [`put_back`] does the three.

use std::collections::{BTreeSet, HashSet};

use onnx_protobuf::{GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto};
use petgraph::Direction;
use petgraph::stable_graph::NodeIndex;

use crate::ir::{Edge, Graph, Node};

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

/// Where a subgraph is held: its holder's attribute, and the position in
/// the attribute's `graphs` list (`None` for the single `g`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The attribute's index in the holder's `attribute` list.
    pub attribute: usize,
    /// The graph's index in a `graphs` attribute; `None` for `g`.
    pub graph: Option<usize>,
}

/// Every subgraph `node` holds, with its slot and the attribute's name, in
/// attribute order.
#[must_use]
pub fn subgraph_slots(node: &NodeProto) -> Vec<(Slot, &str, &GraphProto)> {
    let mut out = Vec::new();
    for (attribute, a) in node.attribute.iter().enumerate() {
        if let Some(g) = a.g.as_ref() {
            out.push((
                Slot {
                    attribute,
                    graph: None,
                },
                a.name.as_str(),
                g,
            ));
        }
        for (i, g) in a.graphs.iter().enumerate() {
            out.push((
                Slot {
                    attribute,
                    graph: Some(i),
                },
                a.name.as_str(),
                g,
            ));
        }
    }
    out
}

/// The subgraph at `slot`, mutably; `None` when the slot holds none.
pub fn subgraph_mut(node: &mut NodeProto, slot: Slot) -> Option<&mut GraphProto> {
    let a = node.attribute.get_mut(slot.attribute)?;
    match slot.graph {
        None => a.g.as_mut(),
        Some(i) => a.graphs.get_mut(i),
    }
}

/// An outer-scope value a subgraph reads, as its standalone model declares it.
#[derive(Debug, Clone)]
pub enum Captured {
    /// An initializer of an enclosing graph, copied with its data inline.
    Initializer(Box<TensorProto>),
    /// Any other value: a graph input of the value's type.
    Value(ValueInfoProto),
}

/// The subgraph `sub` as a model of its own, under `header` (the outer
/// model's, without its graph): its own inputs first, then one per captured
/// value, in `captured`'s order; the captured initializers after its own.
/// An IR version below 4 is raised to 4, so that the copied initializers
/// need no input declarations. O(size of `sub` and `captured`).
#[must_use]
pub fn standalone(header: &ModelProto, sub: &GraphProto, captured: Vec<Captured>) -> ModelProto {
    let mut m = header.clone();
    if (1..4).contains(&m.ir_version) {
        m.ir_version = 4;
    }
    let mut g = sub.clone();
    for c in captured {
        match c {
            Captured::Initializer(t) => g.initializer.push(*t),
            Captured::Value(v) => g.input.push(v),
        }
    }
    m.graph = Some(g).into();
    m
}

/// A standalone graph made a subgraph again by [`splice`].
#[derive(Debug, Clone)]
pub struct Spliced {
    /// The subgraph.
    pub graph: GraphProto,
    /// The `laurel.*` initializers the pass added, for the enclosing graph.
    pub lifted: Vec<TensorProto>,
}

/// Turns `transformed`, the graph of [`standalone`]'s model of `original`
/// after a pass, back into a subgraph: the inputs that `original` did not
/// declare (the captures) are dropped, and so are the copies of captured
/// initializers (`captured`, by name: the pass must not have changed them in
/// place); the `laurel.*` initializers that `original` did not hold are
/// returned apart, to become the enclosing graph's; every other
/// initializer (the subgraph's own, or one the pass made) stays.
/// O(size of `transformed`).
#[must_use]
pub fn splice(
    original: &GraphProto,
    mut transformed: GraphProto,
    captured: &BTreeSet<String>,
) -> Spliced {
    let own_inputs: HashSet<&str> = original.input.iter().map(|v| v.name.as_str()).collect();
    let own_inits: HashSet<&str> = original
        .initializer
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    transformed
        .input
        .retain(|v| own_inputs.contains(v.name.as_str()));
    let mut lifted = Vec::new();
    let mut kept = Vec::new();
    for t in std::mem::take(&mut transformed.initializer) {
        if own_inits.contains(t.name.as_str()) {
            kept.push(t);
        } else if captured.contains(&t.name) {
            // A copy of an outer initializer: read from the outer scope again.
        } else if t.name.starts_with("laurel.") {
            lifted.push(t);
        } else {
            kept.push(t);
        }
    }
    transformed.initializer = kept;
    Spliced {
        graph: transformed,
        lifted,
    }
}

/// Puts `transformed`, a pass's result on the standalone model of the
/// subgraph at `slot` of `holder` (a node of `model`), back in its place:
/// [`splice`]d (`captured` naming the outer initializers copied in), each
/// value it defines anew whose name the enclosing graph uses already
/// renamed (`<name>.sub<k>`), its `laurel.*` initializers added to
/// `model`'s (once: a `laurel.const.*` of one value may come from two
/// subgraphs), the holder's capture edges made again. O(size of the model).
///
/// # Errors
/// The holder or its subgraph is gone, `transformed` does not encode, or
/// the subgraph reads a value nothing produces; as a message.
pub fn put_back(
    model: &mut crate::ir::Model,
    holder: NodeIndex,
    slot: Slot,
    transformed: &crate::ir::Model,
    captured: &BTreeSet<String>,
) -> Result<(), String> {
    let graph = crate::onnx::to_proto(transformed)
        .map_err(|e| e.to_string())?
        .graph
        .into_option()
        .ok_or("the transformed subgraph has no graph")?;
    let outer: HashSet<String> = model
        .graph
        .dag
        .node_indices()
        .filter(|&n| n != holder)
        .flat_map(|n| model.graph.dag[n].outputs().into_iter().map(str::to_owned))
        .collect();
    let Some(Node::Op(op)) = model.graph.dag.node_weight_mut(holder) else {
        return Err("the subgraph's holder is gone".into());
    };
    let original =
        subgraph_mut(&mut op.proto, slot).ok_or("the holder no longer holds the subgraph")?;
    let before = defined(original);
    let mut spliced = splice(original, graph, captured);
    let mut fresh_names: Vec<String> = defined(&spliced.graph)
        .into_iter()
        .filter(|name| !before.contains(name) && outer.contains(name))
        .collect();
    fresh_names.sort();
    for name in fresh_names {
        // Of outer.len() + 1 candidates one is free.
        let fresh = (1..=outer.len() + 1)
            .map(|k| format!("{name}.sub{k}"))
            .find(|c| !outer.contains(c))
            .unwrap_or_default();
        rename(&mut spliced.graph, &name, &fresh);
    }
    *original = spliced.graph;
    let mut initializers: HashSet<String> = model
        .graph
        .initializers
        .iter()
        .flat_map(|&n| model.graph.dag[n].outputs().into_iter().map(str::to_owned))
        .collect();
    for t in spliced.lifted {
        if initializers.insert(t.name.clone()) {
            model.graph.add_initializer(crate::ir::Initializer {
                proto: t,
                external: None,
            });
        }
    }
    recapture(&mut model.graph, holder)
}

/// The names a graph defines: its initializers and its nodes' outputs.
fn defined(g: &GraphProto) -> HashSet<String> {
    g.initializer
        .iter()
        .map(|t| t.name.clone())
        .chain(g.node.iter().flat_map(|n| n.output.iter().cloned()))
        .filter(|s| !s.is_empty())
        .collect()
}

/// Renames the value `old` to `new` everywhere in `g`: node inputs and
/// outputs, initializers, graph inputs and outputs, `value_info`, and the
/// subgraphs of its nodes (which may read it). O(size of `g`).
pub fn rename(g: &mut GraphProto, old: &str, new: &str) {
    let swap = |s: &mut String| {
        if s == old {
            new.clone_into(s);
        }
    };
    for n in &mut g.node {
        n.input.iter_mut().for_each(swap);
        n.output.iter_mut().for_each(swap);
        for a in &mut n.attribute {
            if let Some(sub) = a.g.as_mut() {
                rename(sub, old, new);
            }
            for sub in &mut a.graphs {
                rename(sub, old, new);
            }
        }
    }
    for t in &mut g.initializer {
        swap(&mut t.name);
    }
    for v in g
        .input
        .iter_mut()
        .chain(&mut g.output)
        .chain(&mut g.value_info)
    {
        swap(&mut v.name);
    }
}

/// Replaces the capture edges into `holder` by one per outer value its
/// subgraphs read now (after a pass changed them). O(size of the subgraphs
/// + V).
///
/// # Errors
/// The name of a captured value no node of `g` produces.
pub fn recapture(g: &mut Graph, holder: NodeIndex) -> Result<(), String> {
    let Some(op) = g.dag[holder].as_op() else {
        return Ok(());
    };
    let names = captures(&op.proto);
    let old: Vec<_> = g
        .dag
        .edges_directed(holder, Direction::Incoming)
        .filter(|e| e.weight().dst_slot.is_none())
        .map(|e| petgraph::visit::EdgeRef::id(&e))
        .collect();
    for e in old {
        g.dag.remove_edge(e);
    }
    let producers: std::collections::HashMap<String, (NodeIndex, usize)> = g
        .producers()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    for name in names {
        let &(src, src_slot) = producers
            .get(&name)
            .ok_or_else(|| format!("nothing produces `{name}`, which a subgraph reads"))?;
        g.dag.add_edge(
            src,
            holder,
            Edge {
                name,
                src_slot,
                dst_slot: None,
            },
        );
    }
    Ok(())
}

/// The op nodes of `g` and of every subgraph its nodes hold, at any
/// depth. O(nodes).
#[must_use]
pub fn op_count_with_subgraphs(g: &Graph) -> usize {
    fn nested(gp: &GraphProto) -> usize {
        gp.node
            .iter()
            .map(|n| 1 + subgraphs(n).map(nested).sum::<usize>())
            .sum()
    }
    g.op_order
        .iter()
        .filter_map(|&n| g.dag[n].as_op())
        .map(|op| 1 + subgraphs(&op.proto).map(nested).sum::<usize>())
        .sum()
}

/// Whether a node of `g` satisfies `p`, in `g` itself or in a subgraph
/// its nodes hold, at any depth. O(nodes).
pub fn any_node(g: &GraphProto, p: &dyn Fn(&NodeProto) -> bool) -> bool {
    g.node
        .iter()
        .any(|n| p(n) || subgraphs(n).any(|sub| any_node(sub, p)))
}

/// How messages and `inspect` name the subgraph at `slot` of `node` (shown
/// as `name`): its op type, `name`, the attribute, and `[i]` for a
/// `graphs` attribute (`If`, the name `/If` in backticks, `then_branch`).
#[must_use]
pub fn slot_label(node: &NodeProto, name: &str, attr: &str, slot: Slot) -> String {
    let index = slot.graph.map(|i| format!("[{i}]")).unwrap_or_default();
    format!("{} {name} {attr}{index}", node.op_type)
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

    fn info(name: &str) -> ValueInfoProto {
        ValueInfoProto {
            name: name.into(),
            ..Default::default()
        }
    }

    fn tensor(name: &str) -> TensorProto {
        TensorProto {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_standalone_model_declares_the_captures_and_splice_takes_them_out_again() {
        // Loop body: (i, cond, h) -> h2 = h + W·h, reading the outer W and x.
        let mut body = GraphProto::default();
        body.input.extend([info("i"), info("cond"), info("h")]);
        body.initializer.push(tensor("own"));
        body.node.push(node(&["h", "W", "x", "own"], &["h2"]));
        body.output.push(info("h2"));
        let header = ModelProto {
            ir_version: 3,
            ..Default::default()
        };
        let caps = vec![
            Captured::Initializer(Box::new(tensor("W"))),
            Captured::Value(info("x")),
        ];
        let m = standalone(&header, &body, caps);
        assert_eq!(m.ir_version, 4, "no input declarations for the copies");
        let g = m.graph.as_ref().unwrap();
        let inputs: Vec<&str> = g.input.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(inputs, ["i", "cond", "h", "x"]);
        let inits: Vec<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(inits, ["own", "W"]);

        // A pass added a parameter and a weight of its own.
        let mut after = g.clone();
        after.initializer.push(tensor("laurel.3.alpha"));
        after.initializer.push(tensor("W.fused"));
        let captured: BTreeSet<String> = ["W".to_string()].into();
        let back = splice(&body, after, &captured);
        let inputs: Vec<&str> = back.graph.input.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(inputs, ["i", "cond", "h"]);
        let inits: Vec<&str> = back
            .graph
            .initializer
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(inits, ["own", "W.fused"]);
        let lifted: Vec<&str> = back.lifted.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(lifted, ["laurel.3.alpha"]);
    }

    #[test]
    fn rename_reaches_nested_readers_and_outputs() {
        let mut nested = GraphProto::default();
        nested.node.push(node(&["v"], &["w"]));
        let mut holder = node(&[], &["z"]);
        holder.attribute.push(AttributeProto {
            name: "body".into(),
            g: Some(nested).into(),
            ..Default::default()
        });
        let mut g = GraphProto::default();
        g.node.push(node(&["a"], &["v"]));
        g.node.push(holder);
        g.output.push(info("v"));
        rename(&mut g, "v", "v.sub1");
        assert_eq!(g.node[0].output, ["v.sub1"]);
        assert_eq!(g.output[0].name, "v.sub1");
        let inner = g.node[1].attribute[0].g.as_ref().unwrap();
        assert_eq!(inner.node[0].input, ["v.sub1"]);
        assert_eq!(inner.node[0].output, ["w"], "other names stay");
    }

    #[test]
    fn put_back_renames_a_new_value_the_enclosing_graph_has_already() {
        let typed = |name: &str| {
            crate::ir::tensor_input(&TensorProto {
                name: name.into(),
                dims: vec![2],
                data_type: 1,
                ..Default::default()
            })
        };
        let branch = |out: &str| {
            let mut b = GraphProto::default();
            let mut n = node(&["x"], &[out]);
            n.op_type = "Identity".into();
            b.node.push(n);
            b.output.push(typed(out));
            b
        };
        let mut main = GraphProto::default();
        main.input.push(typed("x"));
        main.input.push(typed("c"));
        let mut id = node(&["x"], &["t.fused"]);
        id.op_type = "Identity".into();
        let mut iff = node(&["c"], &["y"]);
        iff.op_type = "If".into();
        for (name, b) in [("then_branch", branch("a")), ("else_branch", branch("b"))] {
            iff.attribute.push(AttributeProto {
                name: name.into(),
                g: Some(b).into(),
                ..Default::default()
            });
        }
        main.node.extend([id, iff]);
        main.output.push(typed("y"));
        main.output.push(typed("t.fused"));
        let proto = ModelProto {
            ir_version: 8,
            graph: Some(main).into(),
            ..Default::default()
        };
        let mut model = crate::onnx::import_proto(proto, "test", None).unwrap();
        let holder = model
            .graph
            .op_order
            .iter()
            .copied()
            .find(|&n| model.graph.dag[n].as_op().unwrap().proto.op_type == "If")
            .unwrap();
        // A pass made the then-branch compute a value `t.fused` of its own.
        let mut then = branch("a");
        then.input.push(typed("x"));
        let mut neg = node(&["x"], &["t.fused"]);
        neg.op_type = "Neg".into();
        then.node[0].input = vec!["t.fused".into()];
        then.node.insert(0, neg);
        let transformed = crate::onnx::import_proto(
            ModelProto {
                ir_version: 8,
                graph: Some(then).into(),
                ..Default::default()
            },
            "then",
            None,
        )
        .unwrap();
        let slot = Slot {
            attribute: 0,
            graph: None,
        };
        put_back(&mut model, holder, slot, &transformed, &BTreeSet::new()).unwrap();
        let Node::Op(op) = &model.graph.dag[holder] else {
            unreachable!()
        };
        let g = op.proto.attribute[0].g.as_ref().unwrap();
        assert!(g.input.is_empty(), "the capture x is declared no more");
        assert_eq!(g.node[0].output, ["t.fused.sub1"]);
        assert_eq!(g.node[1].input, ["t.fused.sub1"]);
        // The outer value keeps its name; the model still exports and imports.
        let bytes = crate::onnx::to_bytes(&model).unwrap();
        crate::onnx::import_bytes(&bytes, "back").unwrap();
    }
}
