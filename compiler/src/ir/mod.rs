//! The intermediate representation: an ONNX model as a petgraph [`StableDiGraph`].
//!
//! - **Nodes** are graph inputs, initializers (dense and sparse) and ops.
//! - **Edges** are tensors: each carries the value name, the producer's output
//!   slot and the consumer's input slot. An edge with no input slot is an
//!   implicit *capture*: a subgraph of an `If`/`Loop`/`Scan` op reads an
//!   outer-scope value by name. Captures keep producers alive and ordered.
//! - Everything else the ONNX file held is kept verbatim in [`Model::header`]
//!   and [`Graph::header`] (opset imports, IR version, producer, doc strings,
//!   metadata, `value_info`, quantization annotations, model-local functions,
//!   training info, and protobuf fields unknown to our schema), so that an
//!   import followed by an export writes back what was read.
//!
//! Op nodes keep their `NodeProto` (attributes, subgraphs, domain, doc string,
//! metadata, unknown fields) with the `input` list cleared: inputs live on the
//! edges, so a pass that rewires an edge cannot leave a stale name behind.

pub mod attr;
mod topo;

use std::collections::HashMap;
use std::sync::Arc;

use onnx_protobuf::{
    GraphProto, ModelProto, NodeProto, SparseTensorProto, TensorProto, ValueInfoProto,
};
use petgraph::Direction;
use petgraph::stable_graph::{EdgeIndex, NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;

pub use topo::CycleError;

/// Whether an op belongs to the default ONNX domain.
#[must_use]
pub fn is_onnx_domain(domain: &str) -> bool {
    domain.is_empty() || domain == "ai.onnx"
}

/// A graph input declaring a tensor's type and shape.
#[must_use]
pub fn tensor_input(t: &TensorProto) -> onnx_protobuf::ValueInfoProto {
    use onnx_protobuf::tensor_shape_proto::{Dimension, dimension};
    use onnx_protobuf::type_proto::{Tensor as TensorType, Value as TypeValue};
    let shape = onnx_protobuf::TensorShapeProto {
        dim: t
            .dims
            .iter()
            .map(|&d| Dimension {
                value: Some(dimension::Value::DimValue(d)),
                ..Dimension::default()
            })
            .collect(),
        ..onnx_protobuf::TensorShapeProto::default()
    };
    onnx_protobuf::ValueInfoProto {
        name: t.name.clone(),
        type_: Some(onnx_protobuf::TypeProto {
            value: Some(TypeValue::TensorType(TensorType {
                elem_type: t.data_type,
                shape: Some(shape).into(),
                ..TensorType::default()
            })),
            ..onnx_protobuf::TypeProto::default()
        })
        .into(),
        ..onnx_protobuf::ValueInfoProto::default()
    }
}

/// A whole model: its header and its main graph.
#[derive(Debug, Clone)]
pub struct Model {
    /// The `ModelProto` without its `graph` field, kept verbatim.
    pub header: ModelProto,
    /// The main graph.
    pub graph: Graph,
}

impl Model {
    /// The version of the default ONNX domain's opset the model imports,
    /// if it declares one. O(opset imports).
    #[must_use]
    pub fn onnx_opset(&self) -> Option<i64> {
        self.header
            .opset_import
            .iter()
            .find(|o| is_onnx_domain(&o.domain))
            .map(|o| o.version)
    }
}

/// A tensor slice held in a memory-mapped external data file.
#[derive(Debug, Clone)]
pub struct ExternalBytes {
    /// The mapped file's canonical path.
    pub file: Arc<std::path::Path>,
    /// The mapped file.
    pub map: Arc<memmap2::Mmap>,
    /// Byte offset of the tensor's data in the file.
    pub offset: usize,
    /// Byte length of the tensor's data.
    pub len: usize,
}

impl ExternalBytes {
    /// The tensor's bytes, borrowed from the mapping (no copy).
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        // Bounds were checked when the slice was created.
        self.map
            .get(self.offset..self.offset + self.len)
            .unwrap_or(&[])
    }
}

/// A dense initializer.
#[derive(Debug, Clone)]
pub struct Initializer {
    /// The tensor as read. For external data, `raw_data` is empty and
    /// `external` holds the bytes; `external_data`/`data_location` are kept as read.
    pub proto: TensorProto,
    /// The tensor's bytes when they live in an external data file.
    pub external: Option<ExternalBytes>,
}

impl Initializer {
    /// The tensor with its data inline: a copy of the mapped bytes for
    /// external data (`external_data` and `data_location` cleared), else a
    /// clone. O(size).
    #[must_use]
    pub fn inline_proto(&self) -> TensorProto {
        let mut t = self.proto.clone();
        if let Some(e) = &self.external {
            t.raw_data = e.bytes().to_vec();
            t.external_data.clear();
            t.data_location = onnx_protobuf::tensor_proto::DataLocation::DEFAULT.into();
        }
        t
    }
}

/// An op node: a `NodeProto` whose inputs live on the incoming edges.
#[derive(Debug, Clone)]
pub struct OpNode {
    /// The node, with `input` cleared and `output` kept.
    pub proto: NodeProto,
    /// How many input slots the node has (absent optional inputs included).
    pub num_inputs: usize,
}

/// A node of the IR graph.
#[derive(Debug, Clone)]
pub enum Node {
    /// A graph input.
    Input(ValueInfoProto),
    /// A dense initializer.
    Initializer(Initializer),
    /// A sparse initializer.
    SparseInitializer(SparseTensorProto),
    /// An operator.
    Op(OpNode),
}

impl Node {
    /// The value names this node produces, indexed by output slot (`""` for
    /// an absent optional output).
    #[must_use]
    pub fn outputs(&self) -> Vec<&str> {
        match self {
            Node::Input(v) => vec![v.name.as_str()],
            Node::Initializer(t) => vec![t.proto.name.as_str()],
            Node::SparseInitializer(s) => vec![s.values.name.as_str()],
            Node::Op(op) => op.proto.output.iter().map(String::as_str).collect(),
        }
    }

    /// The op node, if this is one.
    #[must_use]
    pub fn as_op(&self) -> Option<&OpNode> {
        match self {
            Node::Op(op) => Some(op),
            _ => None,
        }
    }
}

/// A tensor flowing from a producer's output slot to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// The value name.
    pub name: String,
    /// The producer's output slot.
    pub src_slot: usize,
    /// The consumer's input slot, or `None` for a subgraph capture.
    pub dst_slot: Option<usize>,
}

/// A graph: nodes, edges, the order they were read in, and the verbatim rest.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// The dataflow graph.
    pub dag: StableDiGraph<Node, Edge>,
    /// The `GraphProto` without `node`, `initializer`, `sparse_initializer`
    /// and `input` (those are IR nodes), kept verbatim. Its `output` list
    /// names the graph outputs in order.
    pub header: GraphProto,
    /// Graph inputs in declaration order.
    pub inputs: Vec<NodeIndex>,
    /// Dense initializers in declaration order.
    pub initializers: Vec<NodeIndex>,
    /// Sparse initializers in declaration order.
    pub sparse_initializers: Vec<NodeIndex>,
    /// Op nodes in their preferred order: the file's order after import.
    /// Export writes a topological order that follows this one wherever the
    /// dependencies allow, so an untouched graph keeps its node order.
    pub op_order: Vec<NodeIndex>,
    /// Whether an initializer declared as a graph input too is a constant
    /// (IR version < 4, where every initializer had to be declared so and
    /// none could be overridden) rather than the input's default value.
    pub initializers_are_constant: bool,
}

impl Graph {
    /// Adds a dense initializer, declared as a graph input too where
    /// [`Graph::initializers_are_constant`] (IR < 4 requires it). Returns the
    /// initializer's node. O(1).
    pub fn add_initializer(&mut self, init: Initializer) -> NodeIndex {
        if self.initializers_are_constant {
            let decl = tensor_input(&TensorProto {
                name: init.proto.name.clone(),
                dims: init.proto.dims.clone(),
                data_type: init.proto.data_type,
                ..TensorProto::default()
            });
            let input = self.dag.add_node(Node::Input(decl));
            self.inputs.push(input);
        }
        let n = self.dag.add_node(Node::Initializer(init));
        self.initializers.push(n);
        n
    }

    /// Removes the dense initializers `dead` and, where
    /// [`Graph::initializers_are_constant`] (IR < 4), their graph-input
    /// declarations that nothing reads. O(V log V).
    pub fn remove_initializers(&mut self, dead: &std::collections::HashSet<NodeIndex>) {
        let mut dead: Vec<NodeIndex> = dead.iter().copied().collect();
        dead.sort_unstable();
        let names: std::collections::HashSet<String> = dead
            .iter()
            .flat_map(|&n| self.dag[n].outputs().into_iter().map(str::to_owned))
            .collect();
        for &n in &dead {
            self.dag.remove_node(n);
        }
        self.initializers.retain(|n| dead.binary_search(n).is_err());
        if !self.initializers_are_constant {
            return;
        }
        let decls: Vec<NodeIndex> = self
            .inputs
            .iter()
            .copied()
            .filter(|&n| {
                self.dag[n].outputs().iter().any(|o| names.contains(*o))
                    && self
                        .dag
                        .edges_directed(n, Direction::Outgoing)
                        .next()
                        .is_none()
            })
            .collect();
        for &n in &decls {
            self.dag.remove_node(n);
        }
        self.inputs.retain(|n| !decls.contains(n));
    }

    /// The name of a node for messages: its ONNX name, or `#i (OpType)` for an
    /// unnamed op at position `i` of [`Graph::op_order`].
    #[must_use]
    pub fn display_name(&self, n: NodeIndex) -> String {
        match &self.dag[n] {
            Node::Op(op) if !op.proto.name.is_empty() => {
                format!("`{}` ({})", op.proto.name, op.proto.op_type)
            }
            Node::Op(op) => {
                let pos = self
                    .op_order
                    .iter()
                    .position(|&m| m == n)
                    .unwrap_or(usize::MAX);
                format!("#{pos} ({})", op.proto.op_type)
            }
            Node::Input(v) => format!("graph input `{}`", v.name),
            Node::Initializer(t) => format!("initializer `{}`", t.proto.name),
            Node::SparseInitializer(s) => format!("sparse initializer `{}`", s.values.name),
        }
    }

    /// Op nodes in a topological order that follows [`Graph::op_order`]
    /// wherever dependencies allow. O((V + E) log V).
    ///
    /// # Errors
    /// [`CycleError`] naming a node on a cycle.
    pub fn topo_ops(&self) -> Result<Vec<NodeIndex>, CycleError> {
        topo::ordered_toposort(self)
    }

    /// The incoming data edges of `n`, indexed by input slot; `None` where an
    /// optional input is absent. Captures are not included.
    #[must_use]
    pub fn op_inputs(&self, n: NodeIndex) -> Vec<Option<(NodeIndex, &Edge)>> {
        let num = self.dag[n].as_op().map_or(0, |op| op.num_inputs);
        let mut slots = vec![None; num];
        for e in self.dag.edges_directed(n, Direction::Incoming) {
            if let Some(slot) = e.weight().dst_slot
                && let Some(s) = slots.get_mut(slot)
            {
                *s = Some((e.source(), e.weight()));
            }
        }
        slots
    }

    /// The consumers of output slot `slot` of `n`: (consumer, edge index).
    #[must_use]
    pub fn consumers(&self, n: NodeIndex, slot: usize) -> Vec<(NodeIndex, EdgeIndex)> {
        self.dag
            .edges_directed(n, Direction::Outgoing)
            .filter(|e| e.weight().src_slot == slot)
            .map(|e| (e.target(), e.id()))
            .collect()
    }

    /// A map from every value name to its producer and output slot. Graph
    /// inputs take precedence over initializers of the same name (an
    /// initializer is then the input's default value), unless
    /// [`Graph::initializers_are_constant`]. O(V).
    #[must_use]
    pub fn producers(&self) -> HashMap<&str, (NodeIndex, usize)> {
        let mut map = HashMap::new();
        for n in self.dag.node_indices() {
            if matches!(self.dag[n], Node::Input(_)) {
                continue;
            }
            for (slot, name) in self.dag[n].outputs().into_iter().enumerate() {
                if !name.is_empty() {
                    map.insert(name, (n, slot));
                }
            }
        }
        for &n in &self.inputs {
            for name in self.dag[n].outputs() {
                if self.initializers_are_constant && map.contains_key(name) {
                    continue;
                }
                map.insert(name, (n, 0));
            }
        }
        map
    }

    /// The canonical paths of the external data files the initializers were
    /// read from, sorted.
    #[must_use]
    pub fn external_files(&self) -> Vec<std::path::PathBuf> {
        let mut files: Vec<std::path::PathBuf> = self
            .initializers
            .iter()
            .filter_map(|&n| match &self.dag[n] {
                Node::Initializer(Initializer {
                    external: Some(e), ..
                }) => Some(e.file.to_path_buf()),
                _ => None,
            })
            .collect();
        files.sort();
        files.dedup();
        files
    }

    /// Op nodes by type: `OpType` in the default ONNX domain,
    /// `domain:OpType` elsewhere. O(V).
    #[must_use]
    pub fn op_counts(&self) -> std::collections::BTreeMap<String, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for &n in &self.op_order {
            if let Node::Op(op) = &self.dag[n] {
                let key = if op.proto.domain.is_empty() || op.proto.domain == "ai.onnx" {
                    op.proto.op_type.clone()
                } else {
                    format!("{}:{}", op.proto.domain, op.proto.op_type)
                };
                *counts.entry(key).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Number of op nodes.
    #[must_use]
    pub fn op_count(&self) -> usize {
        self.op_order.len()
    }
}
