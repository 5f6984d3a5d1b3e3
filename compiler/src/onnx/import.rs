//! ONNX → IR.
//!
//! Import decodes a `ModelProto`, moves the main graph's nodes, inputs and
//! initializers into IR nodes, connects every node input to its producer,
//! and checks the graph: every read value has a producer, no value is
//! produced twice, graph outputs are unique and produced, and there is no
//! cycle. Everything else stays verbatim in the headers.
//!
//! Files are decoded from a buffered reader rather than a memory map of the
//! whole model, so tensor bytes land exactly once in memory (in their
//! `raw_data` vectors) and peak memory stays close to the file size.
//! External data files are memory-mapped.
//!
//! Complexity: O(V + E) for the graph, plus the size of subgraphs for
//! capture analysis.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use onnx_protobuf::{GraphProto, Message, ModelProto, NodeProto, TensorProto};
use petgraph::stable_graph::NodeIndex;

use super::external::{ExternalLoader, is_external};
use super::subgraph::captures;
use crate::error::{Error, Result};
use crate::ir::{Edge, Graph, Initializer, Model, Node, OpNode};

/// Reads and imports the model at `path`. External data is resolved against
/// the model's directory.
///
/// # Errors
/// [`Error::Io`], [`Error::Empty`], [`Error::Decode`] and the graph checks of [`import_proto`].
pub fn import_path(path: &Path) -> Result<Model> {
    let io = |action, source| Error::Io {
        path: path.to_path_buf(),
        action,
        source,
    };
    let file = File::open(path).map_err(|e| io("cannot open", e))?;
    let meta = file.metadata().map_err(|e| io("cannot stat", e))?;
    if meta.is_dir() {
        return Err(io("cannot read", std::io::Error::other("is a directory")));
    }
    let label = path.display().to_string();
    if meta.len() == 0 {
        return Err(Error::Empty { model: label });
    }
    let mut reader = BufReader::with_capacity(1 << 18, file);
    let proto = ModelProto::parse_from_reader(&mut reader).map_err(|e| Error::Decode {
        model: label.clone(),
        message: e.to_string(),
    })?;
    let dir = path
        .parent()
        .map_or_else(|| Path::new(".").to_path_buf(), Path::to_path_buf);
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".").to_path_buf()
    } else {
        dir
    };
    import_proto(proto, &label, Some(ExternalLoader::new(dir)))
}

/// Imports a model from bytes. External data is refused, since there is no
/// directory to resolve it against.
///
/// # Errors
/// As [`import_path`].
pub fn import_bytes(bytes: &[u8], label: &str) -> Result<Model> {
    if bytes.is_empty() {
        return Err(Error::Empty {
            model: label.into(),
        });
    }
    let proto = ModelProto::parse_from_bytes(bytes).map_err(|e| Error::Decode {
        model: label.into(),
        message: e.to_string(),
    })?;
    import_proto(proto, label, None)
}

/// Imports a decoded model. `external` resolves external tensor data.
///
/// # Errors
/// [`Error::NoGraph`], [`Error::DuplicateValue`], [`Error::DanglingInput`],
/// [`Error::DuplicateOutput`], [`Error::MissingOutput`], [`Error::Cycle`],
/// [`Error::ExternalData`].
pub fn import_proto(
    mut proto: ModelProto,
    label: &str,
    external: Option<ExternalLoader>,
) -> Result<Model> {
    let Some(gp) = proto.graph.take() else {
        return Err(Error::NoGraph {
            model: label.into(),
        });
    };
    reject_nested_external(&proto, &gp, label)?;
    // Before IR version 4 every initializer had to be declared as a graph
    // input too, and could not be overridden (onnxruntime's
    // `Graph::CanOverrideInitializer` is `ir_version >= 4`): such a value is a
    // constant. From IR 4 on, an initializer shadowed by an input is only
    // the input's default.
    // (An unset `ir_version`, 0, is not taken for an old one.)
    let initializers_are_constant = (1..4).contains(&proto.ir_version);
    let graph = import_graph(gp, label, external, initializers_are_constant)?;
    Ok(Model {
        header: proto,
        graph,
    })
}

fn import_graph(
    mut gp: GraphProto,
    label: &str,
    external: Option<ExternalLoader>,
    initializers_are_constant: bool,
) -> Result<Graph> {
    let mut g = Graph {
        initializers_are_constant,
        ..Graph::default()
    };
    let op_inputs = add_nodes(&mut g, &mut gp, label, external)?;
    let producer = producers(&g, label, initializers_are_constant)?;
    connect(&mut g, op_inputs, &producer, label)?;
    check_outputs(&gp, &producer, label)?;
    g.header = gp;
    g.topo_ops().map_err(|e| Error::Cycle {
        model: label.into(),
        node: g.display_name(e.node),
    })?;
    Ok(g)
}

/// Moves initializers, inputs and nodes out of `gp` into IR nodes. Returns
/// each op's input names, in `g.op_order` order (the ops' protos lose them).
fn add_nodes(
    g: &mut Graph,
    gp: &mut GraphProto,
    label: &str,
    mut external: Option<ExternalLoader>,
) -> Result<Vec<Vec<String>>> {
    for t in std::mem::take(&mut gp.initializer) {
        let ext = if is_external(&t) {
            let err = |reason| Error::ExternalData {
                model: label.into(),
                tensor: t.name.clone(),
                reason,
            };
            let loader = external
                .as_mut()
                .ok_or_else(|| err("a model read from memory cannot use external data".into()))?;
            Some(loader.load(&t).map_err(err)?)
        } else {
            check_inline_size(&t).map_err(|message| Error::InvalidModel {
                message: format!("{label}: initializer `{}`: {message}", t.name),
            })?;
            None
        };
        let n = g.dag.add_node(Node::Initializer(Initializer {
            proto: t,
            external: ext,
        }));
        g.initializers.push(n);
    }
    for s in std::mem::take(&mut gp.sparse_initializer) {
        let n = g.dag.add_node(Node::SparseInitializer(s));
        g.sparse_initializers.push(n);
    }
    for v in std::mem::take(&mut gp.input) {
        let n = g.dag.add_node(Node::Input(v));
        g.inputs.push(n);
    }
    let nodes = std::mem::take(&mut gp.node);
    let mut op_inputs = Vec::with_capacity(nodes.len());
    for mut np in nodes {
        let ins = std::mem::take(&mut np.input);
        let n = g.dag.add_node(Node::Op(OpNode {
            proto: np,
            num_inputs: ins.len(),
        }));
        g.op_order.push(n);
        op_inputs.push(ins);
    }
    Ok(op_inputs)
}

/// Every value name's producer and output slot. A graph input may share its
/// name with an initializer; any other repeat is an error. The input produces
/// the value (the initializer is its default) unless
/// `initializers_are_constant` (IR < 4), when the initializer does and the
/// input is a declaration nothing reads.
fn producers(
    g: &Graph,
    label: &str,
    initializers_are_constant: bool,
) -> Result<HashMap<String, (NodeIndex, usize)>> {
    let mut producer: HashMap<String, (NodeIndex, usize)> = HashMap::new();
    let sources = g
        .initializers
        .iter()
        .chain(&g.sparse_initializers)
        .chain(&g.inputs)
        .chain(&g.op_order);
    for &n in sources {
        for (slot, name) in g.dag[n].outputs().into_iter().enumerate() {
            if name.is_empty() {
                continue;
            }
            if let Some(&(first, _)) = producer.get(name) {
                let default_of_input = matches!(
                    g.dag[first],
                    Node::Initializer(_) | Node::SparseInitializer(_)
                ) && matches!(g.dag[n], Node::Input(_));
                if !default_of_input {
                    return Err(Error::DuplicateValue {
                        model: label.into(),
                        value: name.into(),
                        first: g.display_name(first),
                        second: g.display_name(n),
                    });
                }
                if initializers_are_constant {
                    continue;
                }
            }
            producer.insert(name.to_string(), (n, slot));
        }
    }
    Ok(producer)
}

/// Adds a data edge per op input and a capture edge per outer value its subgraphs read.
fn connect(
    g: &mut Graph,
    op_inputs: Vec<Vec<String>>,
    producer: &HashMap<String, (NodeIndex, usize)>,
    label: &str,
) -> Result<()> {
    let order = g.op_order.clone();
    for (&n, ins) in order.iter().zip(op_inputs) {
        let caps = match &g.dag[n] {
            Node::Op(op) => captures(&op.proto),
            _ => continue,
        };
        let slots = ins
            .into_iter()
            .enumerate()
            .map(|(slot, name)| (name, Some(slot)));
        for (name, dst_slot) in slots.chain(caps.into_iter().map(|name| (name, None))) {
            if name.is_empty() {
                continue;
            }
            let &(src, src_slot) = producer.get(&name).ok_or_else(|| Error::DanglingInput {
                model: label.into(),
                node: g.display_name(n),
                value: name.clone(),
            })?;
            g.dag.add_edge(
                src,
                n,
                Edge {
                    name,
                    src_slot,
                    dst_slot,
                },
            );
        }
    }
    Ok(())
}

/// Graph outputs must be unique and produced.
fn check_outputs(
    gp: &GraphProto,
    producer: &HashMap<String, (NodeIndex, usize)>,
    label: &str,
) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for o in &gp.output {
        if !seen.insert(o.name.as_str()) {
            return Err(Error::DuplicateOutput {
                model: label.into(),
                value: o.name.clone(),
            });
        }
        if !producer.contains_key(&o.name) {
            return Err(Error::MissingOutput {
                model: label.into(),
                value: o.name.clone(),
            });
        }
    }
    Ok(())
}

/// An inline tensor's declared size against the bytes it holds: dims whose
/// product overflows, or `raw_data` of another length than its shape and
/// type need (a 16-byte tensor declared `[2^20, 2^20]`, which a later
/// stage would allocate 4 TiB for), are refused. O(rank).
fn check_inline_size(t: &onnx_protobuf::TensorProto) -> std::result::Result<(), String> {
    if t.dims.iter().any(|&d| d < 0) {
        return Err(format!("negative dimension in {:?}", t.dims));
    }
    let elements = t
        .dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?));
    let Some(elements) = elements else {
        return Err(format!(
            "dims {:?} hold more elements than can be addressed",
            t.dims
        ));
    };
    if !t.raw_data.is_empty()
        && let Some(need) = super::external::data_bytes(t.data_type, elements)
        && need != t.raw_data.len()
    {
        return Err(format!(
            "raw_data holds {} bytes, its dims {:?} and type need {need}",
            t.raw_data.len(),
            t.dims
        ));
    }
    Ok(())
}

/// Refuses external data anywhere but the main graph's dense initializers
/// (subgraphs, attribute tensors, sparse initializers, functions, training
/// info): those are not resolved yet, and writing them back with their old
/// relative locations could silently break the output.
fn reject_nested_external(model: &ModelProto, gp: &GraphProto, label: &str) -> Result<()> {
    fn in_nodes<'a>(nodes: &'a [NodeProto], found: &mut Vec<(&'a str, &'static str)>) {
        for n in nodes {
            for a in &n.attribute {
                for t in a.t.as_ref().into_iter().chain(&a.tensors) {
                    check(t, "a node attribute", found);
                }
                for s in a
                    .sparse_tensor
                    .as_ref()
                    .into_iter()
                    .chain(&a.sparse_tensors)
                {
                    for t in s.values.as_ref().into_iter().chain(s.indices.as_ref()) {
                        check(t, "a node attribute", found);
                    }
                }
                for g in a.g.as_ref().into_iter().chain(&a.graphs) {
                    in_graph(g, true, found);
                }
            }
        }
    }
    fn in_graph<'a>(g: &'a GraphProto, nested: bool, found: &mut Vec<(&'a str, &'static str)>) {
        if nested {
            for t in &g.initializer {
                check(t, "a subgraph", found);
            }
        }
        for s in &g.sparse_initializer {
            for t in s.values.as_ref().into_iter().chain(s.indices.as_ref()) {
                check(t, "a sparse initializer", found);
            }
        }
        in_nodes(&g.node, found);
    }
    fn check<'a>(
        t: &'a TensorProto,
        place: &'static str,
        found: &mut Vec<(&'a str, &'static str)>,
    ) {
        if is_external(t) {
            found.push((t.name.as_str(), place));
        }
    }
    let mut found = Vec::new();
    in_graph(gp, false, &mut found);
    for f in &model.functions {
        in_nodes(&f.node, &mut found);
    }
    for ti in &model.training_info {
        for g in ti
            .initialization
            .as_ref()
            .into_iter()
            .chain(ti.algorithm.as_ref())
        {
            in_graph(g, true, &mut found);
        }
    }
    match found.first() {
        None => Ok(()),
        Some((tensor, place)) => Err(Error::ExternalData {
            model: label.into(),
            tensor: (*tensor).to_string(),
            reason: format!(
                "it is in {place}; external data is supported for the main graph's initializers only"
            ),
        }),
    }
}
