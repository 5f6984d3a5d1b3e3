//! `If`s decided at load time by the inputs the caller gives.
//!
//! tract types an `If` only when both branches give outputs of one shape,
//! and it does not pick the branch of a condition computed from an input,
//! even a fixed one. A speech model whose sample-rate input `sr` selects a
//! 16 kHz or an 8 kHz encoder (different frame counts) therefore did not load,
//! although `--input sr=…` says which branch runs. Given such inputs
//! ([`crate::LoadOptions::values`]), the loader decides each `If` of the main
//! graph whose condition they determine:
//!
//! ```text
//! before:  c = Equal(sr, 16000); y = If(c) then_branch = {…16 kHz…} else_branch = {…8 kHz…}
//! after:   (sr = 16000 given)    the 16 kHz branch's nodes; y = Identity(its output)
//! ```
//!
//! The condition is computed by tract on the sub-model of its ancestors
//! (which must read no other input, and hold no control flow), and the taken
//! branch's nodes and initializers replace the `If` (value names are unique
//! across a model and its subgraphs, so none clashes). Nested `If`s surface
//! and are decided in turn. The input stays declared: the model runs with the
//! given value, and [`crate::Runnable::run`] refuses another one.
//!
//! Complexity: per round, O(nodes) plus one small tract run per decided
//! `If`; at most one round per nesting level.

use std::collections::{BTreeMap, HashMap, HashSet};

use tract_onnx::pb;

use crate::error::RuntimeError;

/// Given inputs of at most this many elements may decide an `If` (a
/// sample rate, a flag, a mode).
pub const MAX_DECIDING_ELEMENTS: usize = 16;

/// A given input's value: its shape and its elements as integers.
pub type GivenValue = (Vec<usize>, Vec<i64>);

/// What [`decide_ifs`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decided {
    /// Each decided `If` with the branch taken (`` `name`: then_branch ``), in order.
    pub ifs: Vec<String>,
    /// The given inputs the decisions read, with their values.
    pub by: BTreeMap<String, GivenValue>,
}

/// Computes a condition: its sub-model, the condition's name, the given
/// values; `true` when the condition's first element is non-zero.
pub(crate) type Evaluate<'a> =
    &'a dyn Fn(&pb::ModelProto, &str, &BTreeMap<String, GivenValue>) -> Result<bool, RuntimeError>;

/// Decides the `If`s of `proto`'s main graph whose conditions `values`
/// determine, inlining the taken branches; `evaluate` computes each
/// condition (on tract: [`crate::load`]).
///
/// # Errors
/// The condition's sub-model does not load or run on tract.
pub(crate) fn decide_ifs(
    proto: &mut pb::ModelProto,
    values: &BTreeMap<String, GivenValue>,
    evaluate: Evaluate<'_>,
) -> Result<Decided, RuntimeError> {
    let mut decided = Decided::default();
    if values.is_empty() {
        return Ok(decided);
    }
    loop {
        let Some(g) = proto.graph.as_ref() else {
            return Ok(decided);
        };
        let mut change = None;
        for (i, n) in g.node.iter().enumerate() {
            if !is_if(n) {
                continue;
            }
            let Some(cond) = n.input.first() else {
                continue;
            };
            let Some(sub) = condition_model(proto, g, cond, &|v| values.contains_key(v)) else {
                continue;
            };
            let taken = evaluate(&sub, cond, values)?;
            for i in sub.graph.iter().flat_map(|g| &g.input) {
                if let Some(v) = values.get(&i.name) {
                    decided.by.insert(i.name.clone(), v.clone());
                }
            }
            change = Some((i, taken));
            break;
        }
        let Some((i, taken)) = change else {
            return Ok(decided);
        };
        let g = proto.graph.as_mut().ok_or_else(|| internal("no graph"))?;
        let node = g.node.remove(i);
        let branch_name = if taken { "then_branch" } else { "else_branch" };
        let Some(branch) = node
            .attribute
            .iter()
            .find(|a| a.name == branch_name)
            .and_then(|a| a.g.clone())
        else {
            return Err(internal(&format!("`{}` has no {branch_name}", node.name)));
        };
        let mut nodes = branch.node;
        for (k, out) in node.output.iter().enumerate() {
            let Some(from) = branch.output.get(k) else {
                continue;
            };
            if !out.is_empty() && from.name != *out {
                nodes.push(pb::NodeProto {
                    op_type: "Identity".into(),
                    name: format!("{}/decided_{k}", node.name),
                    input: vec![from.name.clone()],
                    output: vec![out.clone()],
                    ..pb::NodeProto::default()
                });
            }
        }
        g.initializer.extend(branch.initializer);
        g.node.splice(i..i, nodes);
        decided.ifs.push(format!("`{}`: {branch_name}", node.name));
    }
}

/// Whether `n` is an ONNX `If`.
fn is_if(n: &pb::NodeProto) -> bool {
    n.op_type == "If" && (n.domain.is_empty() || n.domain == "ai.onnx")
}

/// The elements of a given input that may decide an `If`, as integers: an
/// integer or boolean tensor of at most [`MAX_DECIDING_ELEMENTS`] elements.
#[must_use]
pub fn deciding_values(t: &tract_onnx::prelude::Tensor) -> Option<Vec<i64>> {
    use tract_onnx::prelude::DatumType;
    let kind = t.datum_type();
    if t.len() > MAX_DECIDING_ELEMENTS || !(kind.is_integer() || kind == DatumType::Bool) {
        return None;
    }
    let v = t.cast_to_dt(DatumType::I64).ok()?;
    let plain = v.try_as_plain_ram().ok()?;
    plain.as_slice::<i64>().ok().map(<[i64]>::to_vec)
}

pub(crate) fn internal(message: &str) -> RuntimeError {
    RuntimeError::UnsupportedModel {
        model: "<deciding an If>".into(),
        message: message.to_string(),
    }
}

/// The model computing `cond` from initializers and the inputs `given`
/// accepts, when its ancestors read no other input and hold no subgraph.
pub(crate) fn condition_model(
    proto: &pb::ModelProto,
    g: &pb::GraphProto,
    cond: &str,
    given: &dyn Fn(&str) -> bool,
) -> Option<pb::ModelProto> {
    let producer: HashMap<&str, usize> = g
        .node
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i)))
        .collect();
    let inits: HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut nodes: HashSet<usize> = HashSet::new();
    let mut reads: HashSet<&str> = HashSet::new();
    let mut stack = vec![cond];
    while let Some(v) = stack.pop() {
        if v.is_empty() || !reads.insert(v) {
            continue;
        }
        if let Some(&i) = producer.get(v) {
            let n = &g.node[i];
            if n.attribute
                .iter()
                .any(|a| a.g.is_some() || !a.graphs.is_empty())
            {
                return None;
            }
            if nodes.insert(i) {
                stack.extend(n.input.iter().map(String::as_str));
            }
        } else if !inits.contains(v) && !given(v) {
            return None;
        }
    }
    let mut order: Vec<usize> = nodes.into_iter().collect();
    order.sort_unstable();
    let inputs: Vec<pb::ValueInfoProto> = g
        .input
        .iter()
        .filter(|i| reads.contains(i.name.as_str()) && !inits.contains(i.name.as_str()))
        .cloned()
        .collect();
    let graph = pb::GraphProto {
        name: "condition".into(),
        node: order.iter().map(|&i| g.node[i].clone()).collect(),
        initializer: g
            .initializer
            .iter()
            .filter(|t| reads.contains(t.name.as_str()))
            .cloned()
            .collect(),
        input: inputs,
        output: vec![pb::ValueInfoProto {
            name: cond.to_string(),
            ..pb::ValueInfoProto::default()
        }],
        ..pb::GraphProto::default()
    };
    Some(pb::ModelProto {
        ir_version: proto.ir_version,
        opset_import: proto.opset_import.clone(),
        graph: Some(graph),
        ..pb::ModelProto::default()
    })
}

/// The inputs that, given, would decide an `If` of the main graph (those
/// its condition reads besides initializers and `values`), sorted; empty
/// when there is no such `If`. O(nodes).
pub(crate) fn deciding_inputs(
    proto: &pb::ModelProto,
    values: &BTreeMap<String, GivenValue>,
) -> Vec<String> {
    let Some(g) = proto.graph.as_ref() else {
        return Vec::new();
    };
    let declared: HashSet<&str> = g.input.iter().map(|i| i.name.as_str()).collect();
    let mut out: Vec<String> = Vec::new();
    for n in g.node.iter().filter(|n| is_if(n)) {
        let Some(cond) = n.input.first() else {
            continue;
        };
        if let Some(sub) = condition_model(proto, g, cond, &|v| declared.contains(v)) {
            out.extend(
                sub.graph
                    .iter()
                    .flat_map(|s| &s.input)
                    .map(|i| i.name.clone())
                    .filter(|n| !values.contains_key(n)),
            );
        }
    }
    out.sort();
    out.dedup();
    out
}
