//! The IR builder both lifters use (augmentation's and fusion's), and the one
//! place the fused `ai.laurel::LaurelResidual` node is made.
//!
//! A [`GraphBuilder`] adds initializers and ops to a [`Graph`] by value name:
//! an op's inputs are wired to the current producer of each name, its outputs
//! become the producers of theirs. It keeps the names in use (values and op
//! nodes) so that new names are free, and it places what it built in the
//! graph's preferred node order when it is [finished](GraphBuilder::finish):
//! each op that stayed keeps its position, each new op goes at the position
//! of its *anchor* (the op it stands for), new ops of one anchor in the order
//! they were built; removed ops leave the order.
//!
//! Complexity: O(1) per name lookup, O(inputs) per op, O(V log V) to finish.

use std::collections::{HashMap, HashSet};

use laurel_runtime::ops::laurel_residual;
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::{AttributeProto, NodeProto, TensorProto};
use petgraph::stable_graph::NodeIndex;

use crate::ir::{Edge, Graph, Initializer, Node, OpNode};

/// An op input naming a value nothing produces (a bug in the caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no producer for `{0}`")]
pub struct MissingProducer(pub String);

/// Builds into a graph; see the [module docs](self).
pub struct GraphBuilder<'g> {
    g: &'g mut Graph,
    producers: HashMap<String, (NodeIndex, usize)>,
    /// Value names in use (produced now, or claimed for a value to come).
    used: HashSet<String>,
    /// Op node names in use, with how many nodes bear each (an input model
    /// may repeat one).
    node_names: HashMap<String, usize>,
    /// The position of every op of the preferred order when the builder
    /// started.
    positions: HashMap<NodeIndex, usize>,
    /// The ops removed (their indices may be reused by ops built later).
    removed: HashSet<NodeIndex>,
    /// The ops built, with their anchors.
    created: Vec<(NodeIndex, usize)>,
    /// The counter of new node names.
    counter: usize,
}

impl<'g> GraphBuilder<'g> {
    /// A builder over `g`: its values' producers, its names in use, its
    /// ops' positions. O(V + E).
    pub fn new(g: &'g mut Graph) -> Self {
        let producers: HashMap<String, (NodeIndex, usize)> = g
            .producers()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let used = producers.keys().cloned().collect();
        let mut node_names: HashMap<String, usize> = HashMap::new();
        for name in g
            .op_order
            .iter()
            .filter_map(|&n| g.dag[n].as_op().map(|o| o.proto.name.clone()))
            .filter(|n| !n.is_empty())
        {
            *node_names.entry(name).or_default() += 1;
        }
        let positions = g
            .op_order
            .iter()
            .enumerate()
            .map(|(i, &n)| (n, i))
            .collect();
        Self {
            g,
            producers,
            used,
            node_names,
            positions,
            removed: HashSet::new(),
            created: Vec::new(),
            counter: 0,
        }
    }

    /// The graph.
    #[must_use]
    pub fn graph(&self) -> &Graph {
        self.g
    }

    /// The graph, to change what the builder does not track (attributes,
    /// edges of nodes that stay).
    pub fn graph_mut(&mut self) -> &mut Graph {
        self.g
    }

    /// The node and output slot producing `name`, if any.
    #[must_use]
    pub fn producer(&self, name: &str) -> Option<(NodeIndex, usize)> {
        self.producers.get(name).copied()
    }

    /// Makes `(node, slot)` the producer of `name` (a node the caller reuses).
    pub fn set_producer(&mut self, name: &str, node: NodeIndex, slot: usize) {
        self.used.insert(name.to_owned());
        self.producers.insert(name.to_owned(), (node, slot));
    }

    /// The position of `n` in the preferred order when the builder started.
    #[must_use]
    pub fn position(&self, n: NodeIndex) -> Option<usize> {
        self.positions.get(&n).copied()
    }

    /// Whether the value name `name` is in use.
    #[must_use]
    pub fn is_used(&self, name: &str) -> bool {
        self.used.contains(name)
    }

    /// Claims `name` for a value to come; `false` if it was in use.
    pub fn claim(&mut self, name: &str) -> bool {
        self.used.insert(name.to_owned())
    }

    /// `base_k` for the first `k ≥ start` not in use, now claimed.
    pub fn free_name(&mut self, base: &str, start: usize) -> String {
        let mut k = start;
        let mut name = format!("{base}_{k}");
        while self.used.contains(&name) {
            k += 1;
            name = format!("{base}_{k}");
        }
        self.used.insert(name.clone());
        name
    }

    /// `base` as an op node name if unused, else `base.fused<k>` for the
    /// first free `k ≥ 2`; now in use.
    pub fn node_name(&mut self, base: &str) -> String {
        let mut name = base.to_owned();
        let mut k = 2;
        while self.node_names.contains_key(&name) {
            name = format!("{base}.fused{k}");
            k += 1;
        }
        self.node_names.insert(name.clone(), 1);
        name
    }

    /// `<prefix>/<op_type>_<k>` for the next free `k`, now in use.
    pub fn new_node_name(&mut self, prefix: &str, op_type: &str) -> String {
        loop {
            self.counter += 1;
            let name = format!("{prefix}/{op_type}_{}", self.counter);
            if !self.node_names.contains_key(&name) {
                self.node_names.insert(name.clone(), 1);
                return name;
            }
        }
    }

    /// Adds `proto` as an initializer (and as a graph input where the model
    /// declares its initializers so, IR < 4). Returns its name.
    pub fn initializer(&mut self, proto: TensorProto) -> String {
        let name = proto.name.clone();
        let n = self.g.add_initializer(Initializer {
            proto,
            external: None,
        });
        self.set_producer(&name, n, 0);
        name
    }

    /// The float32 initializer `name` of `dims` holding `values`, unless a
    /// value of that name exists already. Returns its name.
    pub fn f32_initializer(&mut self, name: &str, dims: &[i64], values: &[f32]) -> String {
        if !self.producers.contains_key(name) {
            self.initializer(TensorProto {
                name: name.into(),
                dims: dims.to_vec(),
                data_type: 1,
                raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ..TensorProto::default()
            });
        }
        name.into()
    }

    /// Adds the op `proto` reading `inputs` (by name, `""` for an absent
    /// optional input), placed at `anchor`'s position; its named outputs
    /// become produced by it.
    ///
    /// # Errors
    /// [`MissingProducer`] when an input names no value.
    pub fn op(
        &mut self,
        proto: NodeProto,
        inputs: &[String],
        anchor: usize,
    ) -> Result<NodeIndex, MissingProducer> {
        let outputs = proto.output.clone();
        let n = self.g.dag.add_node(Node::Op(OpNode {
            proto,
            num_inputs: inputs.len(),
        }));
        for (slot, name) in inputs.iter().enumerate() {
            if name.is_empty() {
                continue;
            }
            let Some(&(src, src_slot)) = self.producers.get(name) else {
                self.g.dag.remove_node(n);
                return Err(MissingProducer(name.clone()));
            };
            self.g.dag.add_edge(
                src,
                n,
                Edge {
                    name: name.clone(),
                    src_slot,
                    dst_slot: Some(slot),
                },
            );
        }
        for (slot, o) in outputs.iter().enumerate() {
            if !o.is_empty() {
                self.set_producer(o, n, slot);
            }
        }
        self.created.push((n, anchor));
        Ok(n)
    }

    /// Removes the op `n`; its outputs and node name are free again. Returns
    /// its node.
    pub fn remove_op(&mut self, n: NodeIndex) -> Option<OpNode> {
        let Some(Node::Op(op)) = self.g.dag.remove_node(n) else {
            return None;
        };
        self.removed.insert(n);
        // An op this builder made and took out again is not placed.
        self.created.retain(|&(c, _)| c != n);
        for o in &op.proto.output {
            if self.producers.get(o).is_some_and(|&(p, _)| p == n) {
                self.producers.remove(o);
                self.used.remove(o);
            }
        }
        if let Some(count) = self.node_names.get_mut(&op.proto.name) {
            *count -= 1;
            if *count == 0 {
                self.node_names.remove(&op.proto.name);
            }
        }
        Some(op)
    }

    /// Connects `edge`'s value, from its current producer, to `target`.
    ///
    /// # Errors
    /// [`MissingProducer`] when nothing produces it.
    pub fn connect(&mut self, target: NodeIndex, edge: Edge) -> Result<(), MissingProducer> {
        let &(src, src_slot) = self
            .producers
            .get(&edge.name)
            .ok_or_else(|| MissingProducer(edge.name.clone()))?;
        self.g.dag.add_edge(src, target, Edge { src_slot, ..edge });
        Ok(())
    }

    /// The ops built so far, in order.
    pub fn created(&self) -> impl Iterator<Item = NodeIndex> + '_ {
        self.created.iter().map(|&(n, _)| n)
    }

    /// How many ops were built so far.
    #[must_use]
    pub fn created_count(&self) -> usize {
        self.created.len()
    }

    /// Places the ops built in the preferred order (ops that stayed where
    /// they were, new ones at their anchors); returns them in build order.
    #[must_use = "the ops built, in build order"]
    pub fn finish(self) -> Vec<NodeIndex> {
        let g = self.g;
        // A removed op's index may now be a new op's: the order's entry is the old one.
        let mut order: Vec<(usize, usize, NodeIndex)> = g
            .op_order
            .iter()
            .filter(|&&n| !self.removed.contains(&n) && g.dag.contains_node(n))
            .filter_map(|&n| Some((*self.positions.get(&n)?, 0, n)))
            .collect();
        for (k, &(n, anchor)) in self.created.iter().enumerate() {
            if g.dag.contains_node(n) {
                order.push((anchor, k + 1, n));
            }
        }
        order.sort_unstable();
        g.op_order = order.into_iter().map(|(_, _, n)| n).collect();
        self.created.into_iter().map(|(n, _)| n).collect()
    }
}

/// The `ai.laurel::LaurelResidual` node `y = Σ cᵢ·tᵢ + Σ cⱼ·(pⱼ·Bⱼ)` over its
/// inputs: the terms, then `low_rank` pairs `(p, B)` (see
/// `docs/laurel-op.md`). Its `coefficients` attribute is written unless every
/// coefficient is exactly 1 (the op's default); `low_rank` only when there
/// are pairs. The node's inputs are the caller's to wire.
#[must_use]
pub fn laurel_residual(
    name: String,
    output: String,
    coefficients: Vec<f32>,
    low_rank: usize,
) -> NodeProto {
    let mut attribute = Vec::new();
    if coefficients.iter().any(|c| c.to_bits() != 1f32.to_bits()) {
        attribute.push(AttributeProto {
            name: laurel_residual::COEFFICIENTS.into(),
            type_: AttributeType::FLOATS.into(),
            floats: coefficients,
            ..AttributeProto::default()
        });
    }
    if low_rank > 0 {
        attribute.push(AttributeProto {
            name: laurel_residual::LOW_RANK.into(),
            type_: AttributeType::INT.into(),
            i: i64::try_from(low_rank).unwrap_or(i64::MAX),
            ..AttributeProto::default()
        });
    }
    NodeProto {
        op_type: laurel_residual::OP_TYPE.into(),
        domain: laurel_residual::DOMAIN.into(),
        name,
        output: vec![output],
        attribute,
        ..NodeProto::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Model;

    fn tiny() -> Model {
        use onnx_protobuf::{GraphProto, ModelProto, OperatorSetIdProto, ValueInfoProto};
        let model = ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                version: 17,
                ..OperatorSetIdProto::default()
            }],
            graph: Some(GraphProto {
                node: vec![NodeProto {
                    op_type: "Relu".into(),
                    name: "relu".into(),
                    input: vec!["x".into()],
                    output: vec!["y".into()],
                    ..NodeProto::default()
                }],
                input: vec![ValueInfoProto {
                    name: "x".into(),
                    ..ValueInfoProto::default()
                }],
                output: vec![ValueInfoProto {
                    name: "y".into(),
                    ..ValueInfoProto::default()
                }],
                ..GraphProto::default()
            })
            .into(),
            ..ModelProto::default()
        };
        crate::onnx::import::import_proto(model, "tiny", None).unwrap()
    }

    fn op(op_type: &str, name: &str, out: &str) -> NodeProto {
        NodeProto {
            op_type: op_type.into(),
            name: name.into(),
            output: vec![out.into()],
            ..NodeProto::default()
        }
    }

    #[test]
    fn ops_are_wired_by_name_and_placed_at_their_anchors() {
        let mut m = tiny();
        let relu = m.graph.op_order[0];
        let mut b = GraphBuilder::new(&mut m.graph);
        let two = b.f32_initializer("two", &[], &[2.0]);
        assert_eq!(
            b.f32_initializer("two", &[], &[3.0]),
            "two",
            "a name is made once"
        );
        // Anchored at the Relu's position (0): placed after it, since the ops that
        // stay come first at one position. It reads the Relu's output.
        let mul = b.op(op("Mul", "m", "z"), &["y".into(), two], 0).unwrap();
        assert_eq!(b.producer("z"), Some((mul, 0)));
        assert!(b.op(op("Neg", "n", "w"), &["nothing".into()], 0).is_err());
        assert_eq!(b.finish(), vec![mul]);
        assert_eq!(m.graph.op_order, vec![relu, mul]);
        assert_eq!(m.graph.op_inputs(mul).len(), 2);
    }

    #[test]
    fn an_op_built_in_a_removed_ops_place_is_ordered_once() {
        // petgraph reuses a removed node's index: the new op must not also
        // keep the removed one's place.
        let mut m = tiny();
        let relu = m.graph.op_order[0];
        let mut b = GraphBuilder::new(&mut m.graph);
        b.remove_op(relu).unwrap();
        let neg = b.op(op("Neg", "n", "y"), &["x".into()], 5).unwrap();
        assert_eq!(neg, relu, "the case this guards: the index was reused");
        assert_eq!(b.finish(), vec![neg]);
        assert_eq!(m.graph.op_order, vec![neg]);
    }

    #[test]
    fn an_op_built_and_removed_again_is_not_placed() {
        let mut m = tiny();
        let relu = m.graph.op_order[0];
        let mut b = GraphBuilder::new(&mut m.graph);
        let neg = b.op(op("Neg", "n", "z"), &["y".into()], 0).unwrap();
        b.remove_op(neg).unwrap();
        assert_eq!(b.created_count(), 0);
        assert!(b.finish().is_empty());
        assert_eq!(m.graph.op_order, vec![relu]);
    }

    #[test]
    fn names_in_use_are_never_given_again() {
        let mut m = tiny();
        let relu = m.graph.op_order[0];
        let mut b = GraphBuilder::new(&mut m.graph);
        assert_eq!(b.node_name("relu"), "relu.fused2");
        assert_eq!(b.new_node_name("fuse", "Add"), "fuse/Add_1");
        assert!(b.is_used("y") && !b.claim("y"));
        assert_eq!(b.free_name("y", 0), "y_0");
        // Removing the Relu frees its names.
        b.remove_op(relu).unwrap();
        assert!(!b.is_used("y"));
        assert_eq!(b.node_name("relu"), "relu");
    }

    #[test]
    fn a_laurel_residual_writes_only_what_differs_from_the_defaults() {
        let plain = laurel_residual("r".into(), "y".into(), vec![1.0, 1.0], 0);
        assert!(plain.attribute.is_empty());
        assert_eq!(plain.domain, laurel_residual::DOMAIN);
        let scaled = laurel_residual("r".into(), "y".into(), vec![1.0, 0.5], 1);
        let names: Vec<&str> = scaled.attribute.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            names,
            [laurel_residual::COEFFICIENTS, laurel_residual::LOW_RANK]
        );
    }
}
