//! Model summaries for `laurelc inspect`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use onnx_protobuf::tensor_shape_proto::dimension;
use onnx_protobuf::type_proto;
use onnx_protobuf::{TypeProto, ValueInfoProto};
use serde::Serialize;

use crate::analysis::flops::{ModelFlops, estimate_model_flops};
use crate::ir::{Model, Node};
use crate::onnx::external::data_bytes;
use crate::onnx::subgraph::has_subgraphs;

/// A graph input or output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValueSummary {
    /// The value name.
    pub name: String,
    /// Element type (`float32`, `int64`, …), or the kind of a non-tensor type.
    pub dtype: String,
    /// Dimensions: numbers, symbol names, or `?` when unknown. `None` for an unknown rank.
    pub shape: Option<Vec<String>>,
}

/// A summary of a model, as `laurelc inspect` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    /// The `ir_version` field.
    pub ir_version: i64,
    /// Opset imports: domain (`""` is the default ONNX domain) → version.
    pub opsets: BTreeMap<String, i64>,
    /// `producer_name` and `producer_version`.
    pub producer: String,
    /// Graph inputs that are not initializers.
    pub inputs: Vec<ValueSummary>,
    /// Graph outputs.
    pub outputs: Vec<ValueSummary>,
    /// Op nodes of the main graph.
    pub node_count: usize,
    /// Op counts by type, `domain:Op` outside the default domain.
    pub op_counts: BTreeMap<String, usize>,
    /// Ops holding subgraphs (`If`, `Loop`, `Scan`): their insides are not counted above.
    pub ops_with_subgraphs: usize,
    /// Elements in all initializers (dense and sparse) and `Constant` node tensors.
    pub parameter_count: u64,
    /// Bytes of initializer data.
    pub parameter_bytes: u64,
    /// Whether any initializer was read from external data.
    pub external_data: bool,
    /// Model-local functions.
    pub functions: usize,
    /// `LAuReL` parameters (initializers named `laurel.<block>.<name>`), elements per block.
    pub laurel_parameters: BTreeMap<u32, u64>,
    /// Estimated FLOPs of the matrix products and convolutions, symbolic
    /// dimensions counted as 1 (see [`crate::analysis::flops`]); `None` when
    /// tract's shape inference fails, or from [`summarize_without_flops`].
    pub flops: Option<ModelFlops>,
}

/// The line `laurelc inspect` prints for the FLOPs estimate:
/// `FLOPs (matmul/conv, symbolic dims = 1): 1.75 M`, or `unavailable` when
/// shape inference failed. O(1).
#[must_use]
pub fn flops_line(s: &ModelSummary) -> String {
    let value = s.flops.as_ref().map_or_else(
        || "unavailable (shape inference failed)".to_string(),
        ToString::to_string,
    );
    format!("FLOPs (matmul/conv, symbolic dims = 1): {value}")
}

/// Summarises a model, with the FLOPs estimate
/// ([`crate::analysis::flops::estimate_model_flops`]; `None` when shape
/// inference fails, which never fails the summary). O(V + E) plus tract's
/// shape inference on a probe of the model without its large weights.
#[must_use]
pub fn summarize(model: &Model) -> ModelSummary {
    let mut s = summarize_without_flops(model);
    s.flops = estimate_model_flops(model).ok();
    s
}

/// Summarises a model without the FLOPs estimate (`flops` is `None`), so
/// without running shape inference. O(V + E).
#[must_use]
pub fn summarize_without_flops(model: &Model) -> ModelSummary {
    let g = &model.graph;
    let h = &model.header;
    let opsets = h
        .opset_import
        .iter()
        .map(|o| (o.domain.clone(), o.version))
        .collect();
    let producer = format!("{} {}", h.producer_name, h.producer_version)
        .trim()
        .to_string();
    let init_names: std::collections::HashSet<&str> = g
        .initializers
        .iter()
        .chain(&g.sparse_initializers)
        .flat_map(|&n| g.dag[n].outputs())
        .collect();
    let inputs = g
        .inputs
        .iter()
        .filter_map(|&n| match &g.dag[n] {
            Node::Input(v) if !init_names.contains(v.name.as_str()) => Some(value_summary(v)),
            _ => None,
        })
        .collect();
    let outputs = g.header.output.iter().map(value_summary).collect();
    let op_counts = g.op_counts();
    let ops_with_subgraphs = g
        .op_order
        .iter()
        .filter(|&&n| matches!(&g.dag[n], Node::Op(op) if has_subgraphs(&op.proto)))
        .count();
    let (parameter_count, parameter_bytes, external_data) = parameters(g);
    let laurel_parameters = laurel_parameters(g);
    ModelSummary {
        laurel_parameters,
        ir_version: h.ir_version,
        opsets,
        producer,
        inputs,
        outputs,
        node_count: g.op_count(),
        op_counts,
        ops_with_subgraphs,
        parameter_count,
        parameter_bytes,
        external_data,
        functions: h.functions.len(),
        flops: None,
    }
}

/// Parameter elements, bytes, and whether external data is used.
fn parameters(g: &crate::ir::Graph) -> (u64, u64, bool) {
    // Counts saturate: a model may declare absurd dims; a summary must not overflow on them.
    let mut parameter_count = 0u64;
    let mut parameter_bytes = 0u64;
    let mut external_data = false;
    let tensors = g
        .initializers
        .iter()
        .chain(&g.sparse_initializers)
        .filter_map(|&n| match &g.dag[n] {
            Node::Initializer(init) => {
                external_data |= init.external.is_some();
                Some(&init.proto)
            }
            Node::SparseInitializer(s) => s.values.as_ref(),
            _ => None,
        });
    // Exporters from some frameworks keep weights in `Constant` nodes rather than initializers.
    let constants: Vec<&onnx_protobuf::TensorProto> = g
        .op_order
        .iter()
        .filter_map(|&n| g.dag[n].as_op())
        .filter(|op| op.proto.op_type == "Constant" && crate::ir::is_onnx_domain(&op.proto.domain))
        .flat_map(|op| {
            op.proto
                .attribute
                .iter()
                .filter(|a| a.name == "value")
                .filter_map(|a| a.t.as_ref())
        })
        .collect();
    for t in tensors.chain(constants) {
        let elems = t.dims.iter().fold(1u64, |acc, &d| {
            acc.saturating_mul(u64::try_from(d).unwrap_or(0))
        });
        parameter_count = parameter_count.saturating_add(elems);
        let bytes = usize::try_from(elems)
            .ok()
            .and_then(|n| data_bytes(t.data_type, n))
            .map_or(t.raw_data.len() as u64, |b| b as u64);
        parameter_bytes = parameter_bytes.saturating_add(bytes);
    }
    (parameter_count, parameter_bytes, external_data)
}

/// Elements of the `laurel.<block>.*` initializers, per block.
fn laurel_parameters(g: &crate::ir::Graph) -> BTreeMap<u32, u64> {
    let mut laurel_parameters = BTreeMap::new();
    for &n in &g.initializers {
        let Node::Initializer(init) = &g.dag[n] else {
            continue;
        };
        let block = init
            .proto
            .name
            .strip_prefix("laurel.")
            .and_then(|rest| rest.split_once('.'))
            .and_then(|(k, _)| k.parse::<u32>().ok());
        if let Some(k) = block {
            let elems = init.proto.dims.iter().fold(1u64, |acc, &d| {
                acc.saturating_mul(u64::try_from(d).unwrap_or(0))
            });
            *laurel_parameters.entry(k).or_insert(0) += elems;
        }
    }
    laurel_parameters
}

/// The summary of a value's declared type.
#[must_use]
pub fn value_summary(v: &ValueInfoProto) -> ValueSummary {
    let (dtype, shape) = v
        .type_
        .as_ref()
        .map_or(("unknown".into(), None), type_summary);
    ValueSummary {
        name: v.name.clone(),
        dtype,
        shape,
    }
}

fn type_summary(t: &TypeProto) -> (String, Option<Vec<String>>) {
    match &t.value {
        Some(type_proto::Value::TensorType(tt)) => {
            let shape = tt.shape.as_ref().map(|s| {
                s.dim
                    .iter()
                    .map(|d| match &d.value {
                        Some(dimension::Value::DimValue(v)) => v.to_string(),
                        Some(dimension::Value::DimParam(p)) => p.clone(),
                        _ => "?".into(),
                    })
                    .collect()
            });
            (dtype_name(tt.elem_type).into(), shape)
        }
        Some(type_proto::Value::SequenceType(_)) => ("sequence".into(), None),
        Some(type_proto::Value::MapType(_)) => ("map".into(), None),
        Some(type_proto::Value::OptionalType(_)) => ("optional".into(), None),
        Some(type_proto::Value::SparseTensorType(_)) => ("sparse_tensor".into(), None),
        _ => ("unknown".into(), None),
    }
}

/// The name of an ONNX `TensorProto.DataType` value.
#[must_use]
pub fn dtype_name(t: i32) -> &'static str {
    match t {
        1 => "float32",
        2 => "uint8",
        3 => "int8",
        4 => "uint16",
        5 => "int16",
        6 => "int32",
        7 => "int64",
        8 => "string",
        9 => "bool",
        10 => "float16",
        11 => "float64",
        12 => "uint32",
        13 => "uint64",
        14 => "complex64",
        15 => "complex128",
        16 => "bfloat16",
        17 => "float8e4m3fn",
        18 => "float8e4m3fnuz",
        19 => "float8e5m2",
        20 => "float8e5m2fnuz",
        21 => "uint4",
        22 => "int4",
        23 => "float4e2m1",
        _ => "undefined",
    }
}

/// What `laurelc inspect` prints of `model` (shown as `path`): the summary,
/// then the residual analysis, one line per residual.
#[must_use]
pub fn to_text(
    path: &Path,
    s: &ModelSummary,
    analysis: &crate::analysis::ResidualAnalysis,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "model: {}", path.display());
    let _ = writeln!(out, "ir_version: {}", s.ir_version);
    let opsets: Vec<String> = s
        .opsets
        .iter()
        .map(|(d, v)| format!("{}={v}", if d.is_empty() { "ai.onnx" } else { d }))
        .collect();
    let _ = writeln!(out, "opsets: {}", opsets.join(", "));
    if !s.producer.is_empty() {
        let _ = writeln!(out, "producer: {}", s.producer);
    }
    let fmt_value = |v: &ValueSummary| {
        let shape = v.shape.as_ref().map_or_else(
            || "unknown rank".to_string(),
            |d| format!("[{}]", d.join(", ")),
        );
        format!("  {} {} {shape}", v.name, v.dtype)
    };
    let _ = writeln!(out, "inputs:");
    for v in &s.inputs {
        let _ = writeln!(out, "{}", fmt_value(v));
    }
    let _ = writeln!(out, "outputs:");
    for v in &s.outputs {
        let _ = writeln!(out, "{}", fmt_value(v));
    }
    let _ = writeln!(
        out,
        "nodes: {} ({} with subgraphs)",
        s.node_count, s.ops_with_subgraphs
    );
    for (op, n) in &s.op_counts {
        let _ = writeln!(out, "  {op}: {n}");
    }
    let _ = writeln!(
        out,
        "parameters: {} ({} bytes)",
        s.parameter_count, s.parameter_bytes
    );
    let _ = writeln!(out, "{}", flops_line(s));
    let _ = writeln!(
        out,
        "external data: {}",
        if s.external_data { "yes" } else { "no" }
    );
    if !s.laurel_parameters.is_empty() {
        let total: u64 = s.laurel_parameters.values().sum();
        let per_block: Vec<String> = s
            .laurel_parameters
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        let _ = writeln!(
            out,
            "LAuReL parameters: {total} in {} blocks ({})",
            s.laurel_parameters.len(),
            per_block.join(", ")
        );
    }
    if s.functions > 0 {
        let _ = writeln!(out, "functions: {}", s.functions);
    }
    write_residuals(&mut out, analysis);
    out
}

/// The residual lines of [`to_text`]: the count, each residual, the
/// residuals of each subgraph under its path, and the undecided adds.
fn write_residuals(out: &mut String, analysis: &crate::analysis::ResidualAnalysis) {
    use std::fmt::Write as _;
    let subgraphs = analysis.all_subgraphs();
    let all: Vec<&crate::analysis::Residual> = analysis
        .residuals
        .iter()
        .chain(subgraphs.iter().flat_map(|s| &s.analysis.residuals))
        .collect();
    let identity = all
        .iter()
        .filter(|r| r.kind == crate::analysis::ResidualKind::Identity)
        .count();
    let inside = all.len() - analysis.residuals.len();
    let _ = writeln!(
        *out,
        "residuals: {} ({identity} identity, {} projection{}; shapes by tract, {})",
        all.len(),
        all.len() - identity,
        if subgraphs.is_empty() {
            String::new()
        } else {
            format!(
                ", {inside} in {} of {} subgraphs",
                subgraphs
                    .iter()
                    .filter(|s| !s.analysis.residuals.is_empty())
                    .count(),
                subgraphs.len()
            )
        },
        analysis.shape_strategy
    );
    let laurel: Vec<String> = all
        .iter()
        .filter_map(|r| Some(r.laurel.as_ref()?.label()))
        .collect();
    if !laurel.is_empty() {
        let mut forms: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
        for l in &laurel {
            *forms.entry(l.as_str()).or_default() += 1;
        }
        let forms: Vec<String> = forms.iter().map(|(f, n)| format!("{f}: {n}")).collect();
        let _ = writeln!(
            *out,
            "LAuReL blocks already in the model: {} ({})",
            laurel.len(),
            forms.join(", ")
        );
    }
    let line = |out: &mut String, indent: &str, r: &crate::analysis::Residual| {
        let _ = write!(
            *out,
            "{indent}stream {} #{}: {} {:?} D={} axis={} skip={} branch={} ({} ops)",
            r.stream,
            r.index,
            r.name,
            r.kind,
            r.channels.map_or_else(|| "?".into(), |d| d.to_string()),
            r.axis,
            r.skip,
            r.branch,
            r.branch_ops
        );
        if let Some(form) = &r.laurel {
            let _ = write!(*out, " LAuReL {}", form.label());
            if let Some(lr) = &form.low_rank {
                let _ = write!(*out, " (low-rank add {})", lr.add);
            }
        }
        let _ = writeln!(*out);
    };
    for r in &analysis.residuals {
        line(out, "  ", r);
    }
    write_subgraphs(out, &subgraphs, &line);
    let undecided = analysis.all_undecided();
    if !undecided.is_empty() {
        let _ = writeln!(
            *out,
            "undecided adds: {} (tract inferred no shape for an operand: not augmented)",
            undecided.len()
        );
        for u in &undecided {
            let _ = writeln!(*out, "  {}: {}", u.node, u.reason);
        }
    }
}

/// The subgraph lines of [`write_residuals`]: per subgraph, its path, its
/// residual count and blocks, then its residuals (`line` writes one).
fn write_subgraphs(
    out: &mut String,
    subgraphs: &[&crate::analysis::SubgraphAnalysis],
    line: &dyn Fn(&mut String, &str, &crate::analysis::Residual),
) {
    use std::fmt::Write as _;
    for s in subgraphs {
        let n = s.analysis.residuals.len();
        let blocks = match n {
            0 => String::new(),
            1 => format!("block {}; ", s.first_block),
            _ => format!("blocks {}–{}; ", s.first_block, s.first_block + n - 1),
        };
        let _ = writeln!(
            *out,
            "  in {}: {n} residual{} ({blocks}shapes by tract, {})",
            s.path,
            if n == 1 { "" } else { "s" },
            s.analysis.shape_strategy
        );
        for r in &s.analysis.residuals {
            line(out, "    ", r);
        }
    }
}

/// `laurelc inspect --json`: the summary with the residuals and how their
/// shapes were inferred.
///
/// # Errors
/// A summary that does not serialise (a bug).
pub fn to_json(
    s: &ModelSummary,
    analysis: &crate::analysis::ResidualAnalysis,
) -> serde_json::Result<serde_json::Value> {
    let mut j = serde_json::to_value(s)?;
    j["residuals"] = serde_json::to_value(&analysis.residuals)?;
    j["shape_inference"] = serde_json::Value::from(analysis.shape_strategy.as_str());
    j["undecided"] = serde_json::to_value(&analysis.undecided)?;
    // Each subgraph with its path, first block, residuals and undecided adds,
    // flat (nested subgraphs after their parent, their `subgraphs` left out).
    j["subgraphs"] = serde_json::Value::Array(
        analysis
            .all_subgraphs()
            .iter()
            .map(|s| {
                serde_json::json!({
                    "path": s.path,
                    "first_block": s.first_block,
                    "residuals": s.analysis.residuals,
                    "shape_inference": s.analysis.shape_strategy,
                    "undecided": s.analysis.undecided,
                })
            })
            .collect(),
    );
    Ok(j)
}
