//! IR → ONNX.
//!
//! Export streams the `ModelProto` straight to its destination without first
//! building a second copy of the model in memory: headers are encoded from
//! the IR's verbatim copies, nodes get their input names back from the
//! edges, and tensor bytes are written from where they already live (their
//! `raw_data`, or the memory map of an external data file). Ops are written
//! in [`Graph::topo_ops`] order, which is the original order for a graph no
//! pass has reordered, so an untouched model comes back as it was read.
//!
//! External data: with [`ExportOptions::external_data`], or automatically
//! when the protobuf would pass the 2 GiB protobuf limit, every dense
//! initializer of at least [`ExportOptions::external_threshold`] bytes held in
//! `raw_data` (or in external data already) is written to one side file,
//! `<output file name>.data`, next to the model, with 16-byte-aligned offsets.
//!
//! Files are written atomically: to a temporary file in the destination's
//! directory, synced, then renamed over the destination. A failure leaves no
//! partial output.

use std::io::Write;
use std::path::{Path, PathBuf};

use onnx_protobuf::tensor_proto::DataLocation;
use onnx_protobuf::{Message, ModelProto, NodeProto, StringStringEntryProto, TensorProto};
use protobuf::CodedOutputStream;
use protobuf::rt::WireType;
use protobuf::rt::{compute_raw_varint64_size, tag_size};

use super::external::is_external;
use crate::error::{Error, Result};
use crate::fsutil::stage;
use crate::ir::tensor_input;
use crate::ir::{Graph, Initializer, Model, Node};

/// The protobuf format's hard limit on a message's size.
pub const PROTOBUF_LIMIT: u64 = (1 << 31) - 1;

/// How to write a model.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Write large initializers to an external data file even when the model
    /// would fit in one protobuf.
    pub external_data: bool,
    /// The smallest initializer (in bytes) moved to the external data file.
    pub external_threshold: usize,
    /// The largest protobuf to write before moving tensors out automatically:
    /// [`PROTOBUF_LIMIT`]; smaller values exist for tests.
    pub protobuf_limit: u64,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            external_data: false,
            external_threshold: 1024,
            protobuf_limit: PROTOBUF_LIMIT,
        }
    }
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    /// Bytes in the model file.
    pub model_bytes: u64,
    /// The external data file, when one was written.
    pub external_file: Option<PathBuf>,
    /// How many tensors went to the external data file.
    pub external_tensors: usize,
    /// Bytes in the external data file.
    pub external_bytes: u64,
}

/// Where each dense initializer's bytes go.
enum Placement {
    /// Written as the proto says (`raw_data` or typed fields).
    AsIs,
    /// External on input, written inline from the mapping.
    InlineFromMap,
    /// To the side file at this offset.
    External { offset: u64 },
    /// Not written: declared as a graph input instead (shape probes).
    AsInput,
}

struct Plan {
    placements: Vec<Placement>,
    side_file_name: String,
    side_bytes: u64,
    /// Graph inputs standing in for initializers placed [`Placement::AsInput`].
    extra_inputs: Vec<onnx_protobuf::ValueInfoProto>,
}

/// Encodes the model with all tensor data inline.
///
/// # Errors
/// [`Error::Encode`] when the model passes the protobuf size limit or a node cannot be ordered.
pub fn to_bytes(model: &Model) -> Result<Vec<u8>> {
    let plan = inline_plan(&model.graph);
    let mut buf = Vec::new();
    {
        let mut os = CodedOutputStream::vec(&mut buf);
        write_model(model, &plan, &mut os).map_err(|e| encode_err(Path::new("<memory>"), &e))?;
        os.flush()
            .map_err(|e| encode_err(Path::new("<memory>"), &e))?;
    }
    Ok(buf)
}

/// The external data file that [`write_path`] writes beside `path`: `<file name>.data`.
#[must_use]
pub fn side_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
    path.with_file_name(format!("{name}.data"))
}

/// Writes the model to `path` atomically. With external data, both files
/// are written to temporaries first and renamed into place last, side file
/// first; nothing is left behind when writing fails.
///
/// # Errors
/// [`Error::MissingOutputDir`], [`Error::Io`], [`Error::Encode`].
pub fn write_path(model: &Model, path: &Path, opts: &ExportOptions) -> Result<ExportReport> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() || path.file_name().is_none() {
        return Err(Error::MissingOutputDir {
            path: path.to_path_buf(),
        });
    }
    let side = side_path(path);
    let side_name = side
        .file_name()
        .map_or_else(String::new, |f| f.to_string_lossy().into_owned());

    let mut plan = inline_plan(&model.graph);
    let mut report = ExportReport {
        model_bytes: 0,
        external_file: None,
        external_tensors: 0,
        external_bytes: 0,
    };
    let too_big = model_size(model, &plan) > opts.protobuf_limit;
    let mut staged_side = None;
    if opts.external_data || too_big {
        plan = external_plan(&model.graph, opts.external_threshold, side_name);
        report.external_tensors = plan
            .placements
            .iter()
            .filter(|p| matches!(p, Placement::External { .. }))
            .count();
        report.external_bytes = plan.side_bytes;
        let remaining = model_size(model, &plan);
        if remaining > opts.protobuf_limit {
            return Err(Error::Encode {
                path: path.to_path_buf(),
                message: format!(
                    "{remaining} bytes remain after moving tensors to external data, above the protobuf limit of {} bytes",
                    opts.protobuf_limit
                ),
            });
        }
        if report.external_tensors > 0 {
            staged_side = Some(stage(&side, |w| write_side_file(&model.graph, &plan, w))?);
            report.external_file = Some(side);
        }
    }
    let staged_model = stage(path, |w| {
        let mut os = CodedOutputStream::new(w);
        write_model(model, &plan, &mut os).map_err(std::io::Error::other)?;
        os.flush().map_err(std::io::Error::other)?;
        Ok(())
    })?;
    if let Some(s) = staged_side {
        s.commit()?;
    }
    report.model_bytes = staged_model.commit()?;
    Ok(report)
}

fn encode_err(path: &Path, e: &dyn std::fmt::Display) -> Error {
    Error::Encode {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn inline_plan(g: &Graph) -> Plan {
    let placements = g
        .initializers
        .iter()
        .map(|&n| match &g.dag[n] {
            Node::Initializer(Initializer {
                external: Some(_), ..
            }) => Placement::InlineFromMap,
            _ => Placement::AsIs,
        })
        .collect();
    Plan {
        placements,
        side_file_name: String::new(),
        side_bytes: 0,
        extra_inputs: Vec::new(),
    }
}

fn external_plan(g: &Graph, threshold: usize, side_file_name: String) -> Plan {
    let mut offset = 0u64;
    let placements = g
        .initializers
        .iter()
        .map(|&n| {
            let Node::Initializer(init) = &g.dag[n] else {
                return Placement::AsIs;
            };
            let len = data_len(init);
            let movable = init.external.is_some() || !init.proto.raw_data.is_empty();
            if movable && len >= threshold {
                offset = offset.next_multiple_of(16);
                let p = Placement::External { offset };
                offset += len as u64;
                p
            } else if init.external.is_some() {
                Placement::InlineFromMap
            } else {
                Placement::AsIs
            }
        })
        .collect();
    Plan {
        placements,
        side_file_name,
        side_bytes: offset,
        extra_inputs: Vec::new(),
    }
}

fn data_len(init: &Initializer) -> usize {
    init.external
        .as_ref()
        .map_or(init.proto.raw_data.len(), |e| e.len)
}

fn data_bytes(init: &Initializer) -> &[u8] {
    init.external
        .as_ref()
        .map_or(init.proto.raw_data.as_slice(), |e| e.bytes())
}

fn write_side_file(g: &Graph, plan: &Plan, w: &mut dyn Write) -> std::io::Result<()> {
    let mut pos = 0u64;
    for (&n, p) in g.initializers.iter().zip(&plan.placements) {
        let (Placement::External { offset }, Node::Initializer(init)) = (p, &g.dag[n]) else {
            continue;
        };
        let pad = usize::try_from(offset - pos).unwrap_or(0);
        w.write_all(&vec![0u8; pad])?;
        let bytes = data_bytes(init);
        w.write_all(bytes)?;
        pos = offset + bytes.len() as u64;
    }
    Ok(())
}

/// The tensor message to write, without its bytes, and the bytes to append
/// as `raw_data`, for initializers whose bytes are not in the proto.
fn tensor_shell<'a>(
    init: &'a Initializer,
    p: &Placement,
    side: &str,
) -> Option<(TensorProto, Option<&'a [u8]>)> {
    let t = &init.proto;
    match p {
        // Initializers placed as inputs are never written; callers skip them.
        Placement::AsIs | Placement::AsInput => None,
        Placement::InlineFromMap => {
            let mut s = t.clone(); // raw_data is empty for a mapped tensor: a cheap clone
            s.external_data.clear();
            s.data_location = DataLocation::DEFAULT.into();
            Some((s, Some(data_bytes(init))))
        }
        Placement::External { offset } => {
            let mut s = TensorProto {
                dims: t.dims.clone(),
                data_type: t.data_type,
                segment: t.segment.clone(),
                name: t.name.clone(),
                doc_string: t.doc_string.clone(),
                metadata_props: t.metadata_props.clone(),
                ..TensorProto::default()
            };
            s.special_fields = t.special_fields.clone();
            let entry = |k: &str, v: String| StringStringEntryProto {
                key: k.into(),
                value: v,
                ..Default::default()
            };
            s.external_data = vec![
                entry("location", side.to_string()),
                entry("offset", offset.to_string()),
                entry("length", data_len(init).to_string()),
            ];
            s.data_location = DataLocation::EXTERNAL.into();
            debug_assert!(!is_external(t) || t.raw_data.is_empty());
            Some((s, None))
        }
    }
}

const RAW_DATA: u32 = 9;
const NODE_INPUT: u32 = 1;
const GRAPH_NODE: u32 = 1;
const GRAPH_INITIALIZER: u32 = 5;
const GRAPH_INPUT: u32 = 11;
const GRAPH_SPARSE_INITIALIZER: u32 = 15;
const MODEL_GRAPH: u32 = 7;

fn delimited(field: u32, len: u64) -> u64 {
    tag_size(field) + compute_raw_varint64_size(len) + len
}

fn node_inputs(g: &Graph, n: petgraph::stable_graph::NodeIndex) -> Vec<&str> {
    g.op_inputs(n)
        .into_iter()
        .map(|s| s.map_or("", |(_, e)| e.name.as_str()))
        .collect()
}

fn node_size(proto: &NodeProto, inputs: &[&str]) -> u64 {
    proto.compute_size()
        + inputs
            .iter()
            .map(|s| delimited(NODE_INPUT, s.len() as u64))
            .sum::<u64>()
}

fn tensor_size(init: &Initializer, p: &Placement, side: &str) -> u64 {
    match tensor_shell(init, p, side) {
        None => init.proto.compute_size(),
        Some((shell, raw)) => {
            shell.compute_size() + raw.map_or(0, |b| delimited(RAW_DATA, b.len() as u64))
        }
    }
}

fn graph_size(g: &Graph, plan: &Plan, order: &[petgraph::stable_graph::NodeIndex]) -> u64 {
    let mut size = g.header.compute_size();
    for &n in order {
        if let Node::Op(op) = &g.dag[n] {
            size += delimited(GRAPH_NODE, node_size(&op.proto, &node_inputs(g, n)));
        }
    }
    for (&n, p) in g.initializers.iter().zip(&plan.placements) {
        if matches!(p, Placement::AsInput) {
            continue;
        }
        if let Node::Initializer(init) = &g.dag[n] {
            size += delimited(
                GRAPH_INITIALIZER,
                tensor_size(init, p, &plan.side_file_name),
            );
        }
    }
    for &n in &g.inputs {
        if let Node::Input(v) = &g.dag[n] {
            size += delimited(GRAPH_INPUT, v.compute_size());
        }
    }
    for v in &plan.extra_inputs {
        size += delimited(GRAPH_INPUT, v.compute_size());
    }
    for &n in &g.sparse_initializers {
        if let Node::SparseInitializer(s) = &g.dag[n] {
            size += delimited(GRAPH_SPARSE_INITIALIZER, s.compute_size());
        }
    }
    size
}

fn model_size(model: &Model, plan: &Plan) -> u64 {
    let order = model.graph.topo_ops().unwrap_or_default();
    model.header.compute_size() + delimited(MODEL_GRAPH, graph_size(&model.graph, plan, &order))
}

/// Writes a length-delimited message.
///
/// `CodedOutputStream::write_message_no_tag` is not used: in protobuf 3.4.0
/// its self-check panics on writer-backed streams whenever a bytes field is
/// larger than the stream's buffer (the large write bypasses the buffer and
/// is not counted in `total_bytes_written`). The bytes written are correct;
/// only the check is wrong. Nested messages do not go through that check.
fn write_delimited(os: &mut CodedOutputStream<'_>, msg: &impl Message) -> protobuf::Result<()> {
    os.write_raw_varint64(msg.compute_size())?;
    msg.write_to_with_cached_sizes(os)
}

fn write_model(model: &Model, plan: &Plan, os: &mut CodedOutputStream<'_>) -> protobuf::Result<()> {
    let g = &model.graph;
    let order = g.topo_ops().map_err(|e| {
        protobuf::Error::from(std::io::Error::other(format!("cannot order nodes: {e}")))
    })?;
    model.header.compute_size();
    model.header.write_to_with_cached_sizes(os)?;

    os.write_tag(MODEL_GRAPH, WireType::LengthDelimited)?;
    os.write_raw_varint64(graph_size(g, plan, &order))?;
    g.header.compute_size();
    g.header.write_to_with_cached_sizes(os)?;
    for &n in &order {
        let Node::Op(op) = &g.dag[n] else { continue };
        let inputs = node_inputs(g, n);
        os.write_tag(GRAPH_NODE, WireType::LengthDelimited)?;
        os.write_raw_varint64(node_size(&op.proto, &inputs))?;
        for s in &inputs {
            os.write_string(NODE_INPUT, s)?;
        }
        op.proto.write_to_with_cached_sizes(os)?;
    }
    for (&n, p) in g.initializers.iter().zip(&plan.placements) {
        let Node::Initializer(init) = &g.dag[n] else {
            continue;
        };
        if matches!(p, Placement::AsInput) {
            continue;
        }
        os.write_tag(GRAPH_INITIALIZER, WireType::LengthDelimited)?;
        match tensor_shell(init, p, &plan.side_file_name) {
            None => write_delimited(os, &init.proto)?,
            Some((shell, raw)) => {
                let len =
                    shell.compute_size() + raw.map_or(0, |b| delimited(RAW_DATA, b.len() as u64));
                os.write_raw_varint64(len)?;
                shell.write_to_with_cached_sizes(os)?;
                if let Some(bytes) = raw {
                    os.write_bytes(RAW_DATA, bytes)?;
                }
            }
        }
    }
    for &n in &g.inputs {
        if let Node::Input(v) = &g.dag[n] {
            os.write_tag(GRAPH_INPUT, WireType::LengthDelimited)?;
            write_delimited(os, v)?;
        }
    }
    for v in &plan.extra_inputs {
        os.write_tag(GRAPH_INPUT, WireType::LengthDelimited)?;
        write_delimited(os, v)?;
    }
    for &n in &g.sparse_initializers {
        if let Node::SparseInitializer(s) = &g.dag[n] {
            os.write_tag(GRAPH_SPARSE_INITIALIZER, WireType::LengthDelimited)?;
            write_delimited(os, s)?;
        }
    }
    Ok(())
}

/// Encodes a *shape probe* of the model: the same graph, but every
/// floating-point initializer of at least `min_elements` elements is
/// declared as a graph input of its type and shape instead of carrying its
/// data. Shape inference gives the same shapes on the probe, without a
/// runtime having to decode (and copy) the weights.
///
/// # Errors
/// As [`to_bytes`].
pub fn to_shape_probe_bytes(model: &Model, min_elements: u64) -> Result<Vec<u8>> {
    let g = &model.graph;
    let mut plan = inline_plan(g);
    let inputs: std::collections::HashSet<&str> =
        g.inputs.iter().flat_map(|&n| g.dag[n].outputs()).collect();
    for (&n, p) in g.initializers.iter().zip(plan.placements.iter_mut()) {
        let Node::Initializer(init) = &g.dag[n] else {
            continue;
        };
        let t = &init.proto;
        let elements = t.dims.iter().fold(1u64, |a, &d| {
            a.saturating_mul(u64::try_from(d).unwrap_or(0))
        });
        let float = matches!(t.data_type, 1 | 10 | 11 | 16);
        if float && elements >= min_elements && t.segment.is_none() {
            *p = Placement::AsInput;
            if !inputs.contains(t.name.as_str()) {
                plan.extra_inputs.push(tensor_input(t));
            }
        }
    }
    let mut buf = Vec::new();
    {
        let mut os = CodedOutputStream::vec(&mut buf);
        write_model(model, &plan, &mut os).map_err(|e| encode_err(Path::new("<probe>"), &e))?;
        os.flush()
            .map_err(|e| encode_err(Path::new("<probe>"), &e))?;
    }
    Ok(buf)
}

/// Converts the model to a `ModelProto` with all data inline (by encoding
/// and decoding it: meant for tests and small models).
///
/// # Errors
/// As [`to_bytes`], or [`Error::Decode`] if the encoding does not decode.
pub fn to_proto(model: &Model) -> Result<ModelProto> {
    let bytes = to_bytes(model)?;
    ModelProto::parse_from_bytes(&bytes).map_err(|e| Error::Decode {
        model: "<export>".into(),
        message: e.to_string(),
    })
}
