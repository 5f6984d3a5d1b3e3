//! Residuals inside subgraphs: the bodies of `If`, `Loop` and `Scan`.
//!
//! Each subgraph is analysed as a model of its own, its *standalone* model
//! ([`crate::onnx::subgraph::standalone`]), and the same residual analysis
//! runs on it. What the subgraph reads from the enclosing scope becomes part
//! of that model:
//! - an outer initializer is copied in as an initializer (so a `Reshape`'s
//!   shape or a captured weight is a constant there as it is outside);
//! - any other outer value is a graph input of the type the enclosing
//!   graph's inference gave it (symbolic dimensions kept; an expression of
//!   symbols such as `(N-8)/4+1` becomes one symbol per distinct expression,
//!   so that equal dimensions stay equal).
//!
//! A `Loop` body input that declares no shape takes the type of the value
//! that starts the loop (`v_initial`), the only type the enclosing graph
//! knows for it. Nested subgraphs are analysed the same way inside their
//! parent's standalone model, to any depth.
//!
//! Blocks and residual streams are numbered once over the whole model,
//! depth first: the main graph's residuals, then each subgraph's (in node
//! order, its attributes in order), each followed by those of the subgraphs
//! it holds. The `laurel.<block>.*` names of [`crate::augment`] are
//! therefore unique in the model, wherever the block is, and `--blocks S`
//! names one stream of one graph.
//!
//! Cost: one residual analysis per subgraph, plus a copy of the outer
//! initializers each subgraph reads.
//!
//! ```text
//! If `/If` (cond)                     subgraphs:
//!   then_branch: x1 = relu(conv(x)),    If `/If` then_branch: 2 residuals (blocks 0, 1)
//!                y = x1 + conv(x1)      If `/If` else_branch: 2 residuals (blocks 2, 3)
//!   else_branch: …
//! ```

use std::collections::{BTreeMap, BTreeSet};

use laurel_runtime::{DimSpec, InferredValue};
use onnx_protobuf::ValueInfoProto;
use petgraph::stable_graph::NodeIndex;
use serde::Serialize;

use super::ResidualAnalysis;
use crate::error::Result;
use crate::ir::{Model, Node};
use crate::onnx::subgraph::{Captured, Slot, any_node, slot_label, standalone, subgraph_slots};

/// Where numbering goes on: the next block number and the next stream
/// number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Numbering {
    /// The next block number.
    pub block: usize,
    /// The next stream number.
    pub stream: usize,
}

/// One subgraph's analysis.
#[derive(Debug, Clone, Serialize)]
pub struct SubgraphAnalysis {
    /// Where it is, from the main graph: for each enclosing holder, its op
    /// type, its name in backticks and the attribute (with `[i]` for a
    /// `graphs` attribute), the steps joined by `>`.
    pub path: String,
    /// Its holder node in the enclosing graph (the main graph's, or the
    /// enclosing subgraph's standalone model's).
    #[serde(skip)]
    pub holder: NodeIndex,
    /// Where the holder keeps it.
    #[serde(skip)]
    pub slot: Slot,
    /// The block number of its first residual.
    pub first_block: usize,
    /// The subgraph as a model of its own, as analysed.
    #[serde(skip)]
    pub model: Model,
    /// The outer initializers copied into [`SubgraphAnalysis::model`].
    #[serde(skip)]
    pub captured_initializers: BTreeSet<String>,
    /// Its residuals (block numbers from `first_block`), undecided adds,
    /// and nested subgraphs.
    #[serde(flatten)]
    pub analysis: ResidualAnalysis,
}

/// The subgraphs of `model`, each analysed by `analyse` (called with the
/// standalone model, the path prefix and the numbering it starts from), in
/// node order. `values` are the enclosing graph's inferred types (`filled` the
/// concrete fallback's, for values `values` has no shape for). A subgraph
/// that cannot be made a model of its own (an outer value without a known
/// element type) or analysed is reported in `undecided`, never an error.
pub(super) fn analyse_subgraphs(
    model: &Model,
    values: &BTreeMap<String, InferredValue>,
    filled: Option<&BTreeMap<String, InferredValue>>,
    prefix: &str,
    mut next: Numbering,
    analyse: &dyn Fn(&Model, &str, Numbering) -> Result<ResidualAnalysis>,
    undecided: &mut Vec<super::Undecided>,
) -> Vec<SubgraphAnalysis> {
    let g = &model.graph;
    let order = g.topo_ops().unwrap_or_default();
    let mut out = Vec::new();
    for holder in order {
        let Node::Op(op) = &g.dag[holder] else {
            continue;
        };
        for (slot, attr, sub) in subgraph_slots(&op.proto) {
            if !holds_sums(sub) {
                continue;
            }
            let local = slot_label(&op.proto, &holder_name(model, holder), attr, slot);
            let path = format!("{prefix}{local}");
            let built = standalone_model(model, holder, sub, values, filled, &path);
            let analysed = built.and_then(|(m, inits)| {
                let a = analyse(&m, &format!("{path} > "), next).map_err(|e| e.to_string())?;
                Ok((m, inits, a))
            });
            match analysed {
                Ok((m, captured_initializers, analysis)) => {
                    let first_block = next.block;
                    next = Numbering {
                        block: next.block + analysis.block_count(),
                        stream: analysis.stream_end(next.stream),
                    };
                    out.push(SubgraphAnalysis {
                        path,
                        holder,
                        slot,
                        first_block,
                        model: m,
                        captured_initializers,
                        analysis,
                    });
                }
                Err(reason) => undecided.push(super::Undecided {
                    node: local,
                    reason: format!("subgraph not analysed: {reason}"),
                }),
            }
        }
    }
    out
}

/// The subgraph `sub` of `holder` (a node of `model`) as a model of its
/// own, labelled `path`, and the outer initializers copied into it.
/// `values` and `filled` type the captured values as in
/// [`analyse_subgraphs`].
///
/// # Errors
/// A captured value without a producer or an element type, or a standalone
/// model that does not import, as a message.
pub fn standalone_model(
    model: &Model,
    holder: NodeIndex,
    sub: &onnx_protobuf::GraphProto,
    values: &BTreeMap<String, InferredValue>,
    filled: Option<&BTreeMap<String, InferredValue>>,
    path: &str,
) -> std::result::Result<(Model, BTreeSet<String>), String> {
    let mut symbols = Symbols::default();
    let (caps, inits) = captured(model, holder, values, filled, &mut symbols)?;
    let mut proto = standalone(&model.header, sub, caps);
    if model.graph.dag[holder]
        .as_op()
        .is_some_and(|op| op.proto.op_type == "Loop")
    {
        type_loop_inputs(model, holder, values, filled, &mut symbols, &mut proto);
    }
    let m = crate::onnx::import_proto(proto, path, None).map_err(|e| e.to_string())?;
    Ok((m, inits))
}

/// The name of a subgraph holder in a subgraph's path: its ONNX name in
/// backticks, or `#i (Op)` when unnamed.
pub fn holder_name(model: &Model, holder: NodeIndex) -> String {
    match model.graph.dag[holder].as_op() {
        Some(op) if !op.proto.name.is_empty() => format!("`{}`", op.proto.name),
        _ => model.graph.display_name(holder),
    }
}

/// Whether a subgraph holds an `Add` or `Sum`, in itself or in a subgraph
/// of its own: one that holds none has no residual to find.
fn holds_sums(g: &onnx_protobuf::GraphProto) -> bool {
    any_node(g, &|n| {
        crate::ir::is_onnx_domain(&n.domain) && (n.op_type == "Add" || n.op_type == "Sum")
    })
}

/// The outer values `holder`'s subgraphs read, as their standalone models
/// declare them, and the names of the initializers among them.
fn captured(
    model: &Model,
    holder: NodeIndex,
    values: &BTreeMap<String, InferredValue>,
    filled: Option<&BTreeMap<String, InferredValue>>,
    symbols: &mut Symbols,
) -> std::result::Result<(Vec<Captured>, BTreeSet<String>), String> {
    let g = &model.graph;
    let producers = g.producers();
    let Some(op) = g.dag[holder].as_op() else {
        return Ok((Vec::new(), BTreeSet::new()));
    };
    let mut caps = Vec::new();
    let mut inits = BTreeSet::new();
    for name in crate::onnx::subgraph::captures(&op.proto) {
        let Some(&(src, _)) = producers.get(name.as_str()) else {
            return Err(format!("nothing produces `{name}`"));
        };
        if let Node::Initializer(i) = &g.dag[src] {
            inits.insert(name.clone());
            caps.push(Captured::Initializer(Box::new(i.inline_proto())));
        } else {
            let v = value_type(&name, values, filled)
                .ok_or_else(|| format!("the type of `{name}` is not known"))?;
            caps.push(Captured::Value(symbols.declare(&name, &v)));
        }
    }
    Ok((caps, inits))
}

/// `name`'s inferred type: the element type and shape of `values`, the
/// shape from `filled` where `values` has none.
fn value_type(
    name: &str,
    values: &BTreeMap<String, InferredValue>,
    filled: Option<&BTreeMap<String, InferredValue>>,
) -> Option<InferredValue> {
    let mut v = values.get(name)?.clone();
    v.datum?;
    if v.shape.is_none() {
        v.shape = filled
            .and_then(|f| f.get(name))
            .and_then(|f| f.shape.clone());
    }
    Some(v)
}

/// Gives the `Loop` body inputs that declare no shape the type of the
/// values that start the loop: body input `k ≥ 2` is the loop's input `k`.
fn type_loop_inputs(
    model: &Model,
    holder: NodeIndex,
    values: &BTreeMap<String, InferredValue>,
    filled: Option<&BTreeMap<String, InferredValue>>,
    symbols: &mut Symbols,
    proto: &mut onnx_protobuf::ModelProto,
) {
    let g = &model.graph;
    let inputs = g.op_inputs(holder);
    let Some(graph) = proto.graph.as_mut() else {
        return;
    };
    for (k, decl) in graph.input.iter_mut().enumerate().skip(2) {
        let declared = decl
            .type_
            .as_ref()
            .and_then(|t| match &t.value {
                Some(onnx_protobuf::type_proto::Value::TensorType(t)) => Some(t.shape.is_some()),
                _ => None,
            })
            .unwrap_or(false);
        if declared {
            continue;
        }
        let Some(Some((_, edge))) = inputs.get(k) else {
            continue;
        };
        if let Some(v) = value_type(&edge.name, values, filled) {
            let name = decl.name.clone();
            *decl = symbols.declare(&name, &v);
        }
    }
}

/// Symbol names for the dimensions of declared captures: a plain symbol
/// (`batch`) is kept; an expression of symbols gets one fresh symbol per
/// distinct expression; an unnamed dimension (`?`) a fresh one each time.
#[derive(Default)]
struct Symbols {
    expressions: BTreeMap<String, String>,
    unnamed: usize,
}

impl Symbols {
    fn declare(&mut self, name: &str, v: &InferredValue) -> ValueInfoProto {
        use onnx_protobuf::tensor_shape_proto::{Dimension, dimension};
        use onnx_protobuf::type_proto::{Tensor as TensorType, Value as TypeValue};
        let shape = v
            .shape
            .as_ref()
            .map(|dims| onnx_protobuf::TensorShapeProto {
                dim: dims
                    .iter()
                    .map(|d| Dimension {
                        value: Some(match d {
                            #[allow(clippy::cast_possible_wrap)]
                            DimSpec::Fixed(n) => dimension::Value::DimValue(*n as i64),
                            DimSpec::Symbol(s) => dimension::Value::DimParam(self.symbol(s)),
                        }),
                        ..Dimension::default()
                    })
                    .collect(),
                ..onnx_protobuf::TensorShapeProto::default()
            });
        ValueInfoProto {
            name: name.to_string(),
            type_: Some(onnx_protobuf::TypeProto {
                value: Some(TypeValue::TensorType(TensorType {
                    elem_type: v.datum.map_or(0, laurel_runtime::DatumKind::onnx_code),
                    shape: shape.into(),
                    ..TensorType::default()
                })),
                ..onnx_protobuf::TypeProto::default()
            })
            .into(),
            ..ValueInfoProto::default()
        }
    }

    fn symbol(&mut self, s: &str) -> String {
        let plain = !s.is_empty()
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !s.starts_with(|c: char| c.is_ascii_digit());
        if plain {
            return s.to_string();
        }
        let next = self.expressions.len() + self.unnamed;
        if s == "?" {
            self.unnamed += 1;
            return format!("laurelc_dim{next}");
        }
        self.expressions
            .entry(s.to_string())
            .or_insert_with(|| format!("laurelc_dim{next}"))
            .clone()
    }
}
