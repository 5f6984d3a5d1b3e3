//! Lifting for fusion: the extracted term → ONNX ops in the IR.
//!
//! The lowered ops are removed and the extracted term is built in their
//! place:
//! - an `Onnx(OpRef, children)` node is a copy of the IR node `OpRef` names
//!   (type, domain, attributes, name) reading the children's values at its
//!   present input positions; a norm's last child is written back as its
//!   `epsilon` attribute. Two e-nodes of one IR node with the same children
//!   are one node with several outputs;
//! - `+ - * /` are `Add`, `Sub`, `Mul`, `Div`, named `fuse/<Op>_<k>`;
//! - a `Num` operand is a 0-d initializer of its consumer's element type,
//!   `fuse.const_<k>`, shared by equal values;
//! - a value keeps the name of an original value of its e-class when one is
//!   free (every graph output keeps its name, by an `Identity` if two outputs
//!   share a class); a new value is named after its op's original output or
//!   its first operand, plus `.fused`.
//!
//! Weight terms (`c·W`) are lifted as ops too; constant folding
//! ([`super::fold_constants`]) then computes them into initializers named
//! `<W>.fused`. New ops take the place of the op they come from in the
//! preferred node order. O(size of the term).

use std::collections::{HashMap, HashSet};

use egg::{Id, Language as _};
use laurel_passes::lang::Scalar;
use laurel_passes::semantics::OpSemantics;
use laurel_passes::shape::DType;
use laurel_passes::{FuseReport, TensorLang};
use onnx_protobuf::{AttributeProto, NodeProto, TensorProto};
use petgraph::stable_graph::NodeIndex;

use super::lower::Lowered;
use crate::build::GraphBuilder;
use crate::error::{Error, Result};
use crate::ir::{Edge, Graph, Model, Node};

fn err(message: impl Into<String>) -> Error {
    Error::Fuse {
        message: format!("lifting: {}", message.into()),
    }
}

/// The ONNX `TensorProto.DataType` of an element type, and the bytes of a
/// scalar of that type.
fn scalar_bytes(dtype: Option<&DType>, value: &Scalar) -> Result<(i32, Vec<u8>)> {
    let v = value.to_f64();
    #[allow(clippy::cast_possible_truncation)] // rounding to the model's precision
    match dtype {
        Some(DType::F32) | None => Ok((1, (v as f32).to_le_bytes().to_vec())),
        Some(DType::F64) => Ok((11, v.to_le_bytes().to_vec())),
        Some(other) => Err(err(format!(
            "a scalar of element type {other} cannot be materialised"
        ))),
    }
}

/// Fusion's use of the builder: shared constants and identities, and the
/// names of fused values.
struct Lifter<'a> {
    b: GraphBuilder<'a>,
    consts: HashMap<(Scalar, i32), String>,
    eyes: HashMap<(Vec<i64>, i32), String>,
    int64s: HashMap<Vec<i64>, String>,
    /// The model's default-domain opset (`Slice` takes its indices as
    /// inputs from opset 10, as attributes before).
    opset: i64,
}

impl Lifter<'_> {
    /// `fuse/<op>_<k>` for the first free `k`.
    fn new_node_name(&mut self, op_type: &str) -> String {
        self.b.new_node_name("fuse", op_type)
    }

    fn fresh(&mut self, base: &str) -> String {
        // A value computed from a fused one is fused too: `w.fused`, not `w.fused.fused`.
        let base = match base.rsplit_once(".fused") {
            Some((stem, rest))
                if rest.is_empty()
                    || rest
                        .trim_start_matches('.')
                        .bytes()
                        .all(|b| b.is_ascii_digit()) =>
            {
                stem
            }
            _ => base,
        };
        let mut name = format!("{base}.fused");
        let mut k = 2;
        while !self.b.claim(&name) {
            name = format!("{base}.fused.{k}");
            k += 1;
        }
        name
    }

    fn constant(&mut self, value: &Scalar, dtype: Option<&DType>) -> Result<String> {
        let (data_type, raw) = scalar_bytes(dtype, value)?;
        if let Some(name) = self.consts.get(&(value.clone(), data_type)) {
            return Ok(name.clone());
        }
        let name = self.b.free_name("fuse.const", self.consts.len());
        self.b.initializer(TensorProto {
            name: name.clone(),
            data_type,
            raw_data: raw,
            ..TensorProto::default()
        });
        self.consts.insert((value.clone(), data_type), name.clone());
        Ok(name)
    }

    /// The identity channel-map weight of shape `dims` (`[d, d]` or
    /// `[d, d, 1, 1]`), an initializer shared by equal requests.
    fn eye(&mut self, dims: &[i64], dtype: Option<&DType>) -> Result<String> {
        let (data_type, one) = scalar_bytes(dtype, &Scalar::from_integer(1))?;
        let (_, zero) = scalar_bytes(dtype, &Scalar::zero())?;
        let key = (dims.to_vec(), data_type);
        if let Some(name) = self.eyes.get(&key) {
            return Ok(name.clone());
        }
        let d = dims
            .first()
            .and_then(|&d| usize::try_from(d).ok())
            .ok_or_else(|| err("an identity weight of unknown size"))?;
        let mut raw = Vec::with_capacity(d * d * one.len());
        for i in 0..d {
            for j in 0..d {
                raw.extend_from_slice(if i == j { &one } else { &zero });
            }
        }
        let name = self.b.free_name(&format!("fuse.eye{d}"), 0);
        self.b.initializer(TensorProto {
            name: name.clone(),
            data_type,
            dims: dims.to_vec(),
            raw_data: raw,
            ..TensorProto::default()
        });
        self.eyes.insert(key, name.clone());
        Ok(name)
    }

    /// A 1-D int64 initializer holding `values`, shared by equal requests.
    fn int64s(&mut self, values: &[i64]) -> String {
        if let Some(name) = self.int64s.get(values) {
            return name.clone();
        }
        let name = self.b.free_name("fuse.ints", self.int64s.len());
        self.b.initializer(TensorProto {
            name: name.clone(),
            data_type: 7, // INT64
            dims: vec![i64::try_from(values.len()).unwrap_or(i64::MAX)],
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..TensorProto::default()
        });
        self.int64s.insert(values.to_vec(), name.clone());
        name
    }

    fn add_op(&mut self, proto: NodeProto, inputs: &[String], anchor: usize) -> Result<NodeIndex> {
        self.b
            .op(proto, inputs, anchor)
            .map_err(|e| err(e.to_string()))
    }
}

/// What [`lift`] built.
#[derive(Debug, Clone, Default)]
pub struct Lifted {
    /// The new op nodes.
    pub created: Vec<NodeIndex>,
    /// Among them, the scalar products (`c·x`) whose values leave the
    /// lowered ops: a scale the next window may still move or absorb.
    pub carried: Vec<NodeIndex>,
    /// The type of every value the new ops produce.
    pub types: Vec<(String, laurel_passes::shape::TensorType)>,
}

/// The non-negative integer `Num` at `id` of `expr` (an axis or an index).
fn index(expr: &[TensorLang], id: Id) -> Result<i64> {
    let TensorLang::Num(q) = &expr[usize::from(id)] else {
        return Err(err("an axis or index is not a number"));
    };
    q.to_usize()
        .and_then(|k| i64::try_from(k).ok())
        .ok_or_else(|| err("an axis or index is not a non-negative integer"))
}

/// An attribute of `kind` named `name`, filled by `fill`.
fn attribute(
    name: &str,
    kind: onnx_protobuf::attribute_proto::AttributeType,
    fill: impl FnOnce(&mut AttributeProto),
) -> AttributeProto {
    let mut a = AttributeProto {
        name: name.into(),
        type_: kind.into(),
        ..AttributeProto::default()
    };
    fill(&mut a);
    a
}

/// The ONNX op (type, domain, attributes; no name or output yet) and input
/// names of a fusion term: `compose` (a `MatMul`, or an `Einsum` of
/// `[out, in, 1, 1]` kernels), `add-eye` (an `Add` of an identity
/// initializer), `concat`, `slice`, `matmul`, `conv1x1` (a `Conv` of an ONNX
/// kernel), `laurel-residual`. Weight terms among them are
/// computed by the constant folding that follows.
fn fusion_op(
    l: &mut Lifter<'_>,
    node: &TensorLang,
    data: &laurel_passes::analysis::TensorData,
    expr: &[TensorLang],
    operand: impl Fn(Id) -> Result<String>,
) -> Result<(NodeProto, Vec<String>)> {
    use onnx_protobuf::attribute_proto::AttributeType;
    let op = |op_type: &str, attribute: Vec<AttributeProto>| NodeProto {
        op_type: op_type.into(),
        attribute,
        ..NodeProto::default()
    };
    match node {
        TensorLang::Compose([first, then]) => {
            if data.shape.as_ref().is_some_and(|s| s.len() == 4) {
                // [o, i, 1, 1] = Σ_m then[o, m] · first[m, i]
                let equation = attribute("equation", AttributeType::STRING, |a| {
                    a.s = b"omab,micd->oiab".to_vec();
                });
                Ok((
                    op("Einsum", vec![equation]),
                    vec![operand(*then)?, operand(*first)?],
                ))
            } else {
                Ok((
                    op("MatMul", Vec::new()),
                    vec![operand(*first)?, operand(*then)?],
                ))
            }
        }
        TensorLang::AddEye(w) => {
            let dims: Vec<i64> = data
                .shape
                .iter()
                .flatten()
                .map(|d| match d {
                    laurel_passes::shape::Dim::Fixed(n) => {
                        i64::try_from(*n).map_err(|_| err("a huge identity"))
                    }
                    laurel_passes::shape::Dim::Sym(_) => {
                        Err(err("an identity weight of symbolic size"))
                    }
                })
                .collect::<Result<_>>()?;
            let eye = l.eye(&dims, data.dtype.as_ref())?;
            Ok((op("Add", Vec::new()), vec![operand(*w)?, eye]))
        }
        TensorLang::MatMul([x, w]) => {
            Ok((op("MatMul", Vec::new()), vec![operand(*x)?, operand(*w)?]))
        }
        TensorLang::Conv1x1([x, w]) => {
            // Fusion builds it from ONNX kernels: [out, in, 1, 1].
            if data.shape.as_ref().is_none_or(|s| s.len() < 3) {
                return Err(err("a conv1x1 term of unknown rank"));
            }
            Ok((op("Conv", Vec::new()), vec![operand(*x)?, operand(*w)?]))
        }
        TensorLang::Slice([k, start, end, x]) => {
            let (k, start, end) = (index(expr, *k)?, index(expr, *start)?, index(expr, *end)?);
            if l.opset >= 10 {
                let inputs = vec![
                    operand(*x)?,
                    l.int64s(&[start]),
                    l.int64s(&[end]),
                    l.int64s(&[k]),
                ];
                Ok((op("Slice", Vec::new()), inputs))
            } else {
                let ints =
                    |name: &str, v: i64| attribute(name, AttributeType::INTS, |a| a.ints = vec![v]);
                let attributes = vec![ints("axes", k), ints("ends", end), ints("starts", start)];
                Ok((op("Slice", attributes), vec![operand(*x)?]))
            }
        }
        TensorLang::Concat([k, first, second]) => {
            let axis = index(expr, *k)?;
            let axis = attribute("axis", AttributeType::INT, |a| a.i = axis);
            Ok((
                op("Concat", vec![axis]),
                vec![operand(*first)?, operand(*second)?],
            ))
        }
        TensorLang::LaurelResidual(ch) => {
            let mut inputs = Vec::with_capacity(ch.len() / 2);
            let mut coefficients = Vec::with_capacity(ch.len() / 2);
            for pair in ch.chunks(2) {
                let TensorLang::Num(q) = &expr[usize::from(pair[0])] else {
                    return Err(err("a LaurelResidual coefficient is not a number"));
                };
                #[allow(clippy::cast_possible_truncation)] // the attribute is a float
                coefficients.push(q.to_f64() as f32);
                inputs.push(match &expr[usize::from(pair[1])] {
                    TensorLang::Num(q) => l.constant(q, data.dtype.as_ref())?,
                    _ => operand(pair[1])?,
                });
            }
            Ok((
                crate::build::laurel_residual(String::new(), String::new(), coefficients, 0),
                inputs,
            ))
        }
        other => Err(err(format!("`{other}` is not a fusion term"))),
    }
}

/// Replaces the lowered ops of `model` with the extracted term of `report`.
///
/// # Errors
/// [`Error::Fuse`] for a term with no ONNX form (a bug) or a scalar of an
/// element type that cannot be materialised.
#[allow(clippy::too_many_lines)] // one walk over the term, in order
pub fn lift(model: &mut Model, lowered: &Lowered, report: &FuseReport) -> Result<Lifted> {
    let mut lifted = Lifted::default();
    let root_positions: HashSet<usize> = report.roots.iter().map(|&r| usize::from(r)).collect();
    let opset = model.onnx_opset().unwrap_or(1);
    let g = &mut model.graph;
    // Edges from lowered ops to ops that stay: re-attached to the new
    // producers of the same names at the end.
    let removed_set: HashSet<NodeIndex> = lowered.ops.values().map(|o| o.node).collect();
    let mut outgoing: Vec<(NodeIndex, Edge)> = Vec::new();
    for &n in &removed_set {
        for e in g.dag.edges_directed(n, petgraph::Direction::Outgoing) {
            use petgraph::visit::EdgeRef as _;
            if !removed_set.contains(&e.target()) {
                outgoing.push((e.target(), e.weight().clone()));
            }
        }
    }
    let mut l = Lifter {
        b: GraphBuilder::new(g),
        consts: HashMap::new(),
        eyes: HashMap::new(),
        int64s: HashMap::new(),
        opset,
    };
    // Take the lowered ops out, keeping their protos; their names are free again.
    let mut protos: HashMap<u32, (NodeProto, usize, Vec<Option<String>>)> = HashMap::new();
    for (&no, op) in &lowered.ops {
        if let Some(o) = l.b.remove_op(op.node) {
            protos.insert(no, (o.proto, op.position, op.inputs.clone()));
        }
    }

    // Original names by final class, in lowering order.
    let mut names_of: HashMap<Id, Vec<&str>> = HashMap::new();
    for ((name, _), &class) in lowered.named.iter().zip(&report.kept) {
        names_of.entry(class).or_default().push(name);
    }
    // Anchors of original names: the position of the op that produced them.
    let mut origin: HashMap<&str, usize> = HashMap::new();
    for (proto, pos, _) in protos.values() {
        for o in &proto.output {
            origin.insert(o.as_str(), *pos);
        }
    }

    // The original op of each original value, by (value, op type): an
    // elementwise op that computes an original value with the original op
    // type keeps its node's name.
    let mut produced_by: HashMap<(&str, &str), &str> = HashMap::new();
    for (proto, _, _) in protos.values() {
        for o in &proto.output {
            produced_by.insert((o.as_str(), proto.op_type.as_str()), proto.name.as_str());
        }
    }

    let expr = report.expr.as_ref();
    let mut value_names: Vec<Option<String>> = vec![None; expr.len()];
    // Graph outputs and other roots claim their names first.
    let mut identities: Vec<(usize, String)> = Vec::new();
    for (k, &root) in report.roots.iter().enumerate() {
        let i = usize::from(root);
        let want = &lowered.root_names[k];
        match &expr[i] {
            TensorLang::Value(v) if v.name() == want => {}
            TensorLang::Value(_) | TensorLang::Num(_) => identities.push((i, want.clone())),
            _ if value_names[i].is_none() => {
                l.b.claim(want);
                value_names[i] = Some(want.clone());
            }
            _ if value_names[i].as_deref() == Some(want.as_str()) => {}
            _ => identities.push((i, want.clone())),
        }
    }
    let mut anchor_of: Vec<usize> = vec![0; expr.len()];
    // IR nodes built from `Onnx` e-nodes: (node, children) → IR node.
    let mut built: HashMap<(u32, Vec<Id>), NodeIndex> = HashMap::new();

    for (i, node) in expr.iter().enumerate() {
        let child_anchor = node
            .children()
            .iter()
            .map(|&c| anchor_of[usize::from(c)])
            .max()
            .unwrap_or(0);
        // The value's name: a free original name of its class, or a new one.
        let class = report.classes_of[i];
        if value_names[i].is_none() && !matches!(node, TensorLang::Value(_) | TensorLang::Num(_)) {
            let free = names_of
                .get(&class)
                .and_then(|ns| ns.iter().find(|n| !l.b.is_used(n)));
            let name = if let Some(n) = free {
                l.b.claim(n);
                (*n).to_owned()
            } else {
                let base = if let TensorLang::Onnx(op, _) = node {
                    protos
                        .get(&op.node())
                        .and_then(|(p, _, _)| p.output.get(op.slot() as usize))
                        .cloned()
                        .unwrap_or_else(|| op.op_type().to_owned())
                } else {
                    // Named after an operand, a LAuReL one first: a weight
                    // merged from a block's parameters and the model's is
                    // the block's (`laurel.<k>.….fused`, see `blocks`).
                    let names: Vec<&String> = node
                        .children()
                        .iter()
                        .filter_map(|&c| value_names[usize::from(c)].as_ref())
                        .collect();
                    names
                        .iter()
                        .find(|n| n.starts_with("laurel."))
                        .or(names.first())
                        .map_or_else(|| "fuse".to_owned(), |n| (*n).clone())
                };
                l.fresh(&base)
            };
            value_names[i] = Some(name);
        }
        let own_anchor = value_names[i]
            .as_deref()
            .and_then(|n| origin.get(n).copied());
        match node {
            TensorLang::Value(v) => {
                if l.b.producer(v.name()).is_none() {
                    return Err(err(format!("no producer for `{}`", v.name())));
                }
                value_names[i] = Some(v.name().to_owned());
            }
            TensorLang::Num(_) => {}
            TensorLang::Add(ch)
            | TensorLang::Sub(ch)
            | TensorLang::Mul(ch)
            | TensorLang::Div(ch) => {
                let op_type = match node {
                    TensorLang::Add(_) => "Add",
                    TensorLang::Sub(_) => "Sub",
                    TensorLang::Mul(_) => "Mul",
                    _ => "Div",
                };
                let dtype = report.data[i].dtype.clone();
                let mut inputs = Vec::with_capacity(2);
                for &c in ch {
                    let c = usize::from(c);
                    inputs.push(match &expr[c] {
                        TensorLang::Num(q) => l.constant(q, dtype.as_ref())?,
                        _ => value_names[c]
                            .clone()
                            .ok_or_else(|| err("an operand has no name"))?,
                    });
                }
                let out = value_names[i].clone().unwrap_or_default();
                let name = match produced_by.get(&(out.as_str(), op_type)) {
                    Some(original) if !original.is_empty() => l.b.node_name(original),
                    _ => l.new_node_name(op_type),
                };
                let proto = NodeProto {
                    op_type: op_type.into(),
                    name,
                    output: vec![out.clone()],
                    ..NodeProto::default()
                };
                let anchor = own_anchor.unwrap_or(child_anchor);
                let n = l.add_op(proto, &inputs, anchor)?;
                let scale = matches!(node, TensorLang::Mul([c, _]) if matches!(expr[usize::from(*c)], TensorLang::Num(_)));
                if scale && !report.data[i].weight && root_positions.contains(&i) {
                    lifted.carried.push(n);
                }
                lifted.types.push((out, report.data[i].ty()));
                anchor_of[i] = anchor;
            }
            TensorLang::Compose(_)
            | TensorLang::AddEye(_)
            | TensorLang::Concat(_)
            | TensorLang::Slice(_)
            | TensorLang::MatMul(_)
            | TensorLang::Conv1x1(_)
            | TensorLang::LaurelResidual(_) => {
                let operand = |c: Id| {
                    value_names[usize::from(c)]
                        .clone()
                        .ok_or_else(|| err("an operand has no name"))
                };
                let (mut proto, inputs) = fusion_op(&mut l, node, &report.data[i], expr, operand)?;
                let out = value_names[i].clone().unwrap_or_default();
                proto.name = l.new_node_name(&proto.op_type);
                proto.output = vec![out.clone()];
                let anchor = own_anchor.unwrap_or(child_anchor);
                l.add_op(proto, &inputs, anchor)?;
                lifted.types.push((out, report.data[i].ty()));
                anchor_of[i] = anchor;
            }
            TensorLang::Onnx(op, ch) => {
                let (proto, position, orig_inputs) = protos
                    .get(&op.node())
                    .ok_or_else(|| err(format!("{op} is not a lowered op")))?;
                let slot = op.slot() as usize;
                let out = value_names[i].clone().unwrap_or_default();
                let key = (op.node(), ch.clone());
                if let Some(&n) = built.get(&key) {
                    if let Node::Op(o) = &mut l.b.graph_mut().dag[n]
                        && let Some(s) = o.proto.output.get_mut(slot)
                    {
                        s.clone_from(&out);
                    }
                    l.b.set_producer(&out, n, slot);
                    lifted.types.push((out, report.data[i].ty()));
                    anchor_of[i] = *position;
                    continue;
                }
                let mut new = proto.clone();
                let mut children: Vec<Id> = ch.clone();
                if let Some(OpSemantics::Norm { eps, .. }) = lowered.semantics.get(op)
                    && *eps + 1 == children.len()
                {
                    let e = children.pop().map(usize::from);
                    let Some(TensorLang::Num(q)) = e.map(|e| &expr[e]) else {
                        return Err(err(format!("{op}: epsilon is not a number")));
                    };
                    #[allow(clippy::cast_possible_truncation)] // the attribute is a float
                    let value = q.to_f64() as f32;
                    new.attribute.retain(|a| a.name != "epsilon");
                    new.attribute.push(AttributeProto {
                        name: "epsilon".into(),
                        f: value,
                        type_: onnx_protobuf::attribute_proto::AttributeType::FLOAT.into(),
                        ..AttributeProto::default()
                    });
                    new.attribute.sort_by(|a, b| a.name.cmp(&b.name));
                }
                let dtype = report.data[i].dtype.clone();
                let mut kids = children.iter();
                let mut inputs = Vec::with_capacity(orig_inputs.len());
                for orig in orig_inputs {
                    if orig.is_none() {
                        inputs.push(String::new());
                        continue;
                    }
                    let c = usize::from(
                        *kids
                            .next()
                            .ok_or_else(|| err(format!("{op}: too few children")))?,
                    );
                    inputs.push(match &expr[c] {
                        TensorLang::Num(q) => {
                            l.constant(q, report.data[c].dtype.as_ref().or(dtype.as_ref()))?
                        }
                        _ => value_names[c]
                            .clone()
                            .ok_or_else(|| err("an operand has no name"))?,
                    });
                }
                // Every output slot gets a name: the extracted one, or a fresh one.
                let outputs: Vec<String> = proto
                    .output
                    .iter()
                    .enumerate()
                    .map(|(s, o)| {
                        if s == slot {
                            out.clone()
                        } else if o.is_empty() {
                            String::new()
                        } else {
                            l.fresh(o)
                        }
                    })
                    .collect();
                new.output = outputs;
                if !new.name.is_empty() {
                    new.name = l.b.node_name(&proto.name);
                }
                let n = l.add_op(new, &inputs, *position)?;
                lifted.types.push((out, report.data[i].ty()));
                built.insert(key, n);
                anchor_of[i] = *position;
            }
            other => {
                return Err(err(format!("`{other}` has no ONNX form")));
            }
        }
    }
    for (i, want) in identities {
        let input = match &report.expr.as_ref()[i] {
            TensorLang::Num(q) => l.constant(q, report.data[i].dtype.as_ref())?,
            _ => value_names[i]
                .clone()
                .ok_or_else(|| err("a root has no name"))?,
        };
        let proto = NodeProto {
            op_type: "Identity".into(),
            name: l.new_node_name("Identity"),
            output: vec![want.clone()],
            ..NodeProto::default()
        };
        let anchor = anchor_of[i];
        l.add_op(proto, &[input], anchor)?;
        lifted.types.push((want, report.data[i].ty()));
    }
    for (target, edge) in outgoing {
        let name = edge.name.clone();
        l.b.connect(target, edge).map_err(|_| {
            err(format!(
                "`{name}` is read by an op that stays but was not rebuilt"
            ))
        })?;
    }
    // The preferred order: kept ops where they were, new ops at their anchors.
    lifted.created = l.b.finish();
    Ok(lifted)
}

/// Removes initializers nothing reads any more (not graph outputs), and
/// their graph-input declarations. Returns how many were removed.
pub fn remove_unread_initializers(g: &mut Graph) -> usize {
    let outputs: HashSet<String> = g.header.output.iter().map(|o| o.name.clone()).collect();
    // An initializer that is also an overridable graph input (IR >= 4) is
    // the input's default, part of the model's interface: it stays.
    let defaults: HashSet<String> = if g.initializers_are_constant {
        HashSet::new()
    } else {
        g.inputs
            .iter()
            .flat_map(|&n| g.dag[n].outputs().into_iter().map(str::to_owned))
            .collect()
    };
    let dead: HashSet<NodeIndex> = g
        .initializers
        .iter()
        .copied()
        .filter(|&n| {
            g.dag
                .edges_directed(n, petgraph::Direction::Outgoing)
                .next()
                .is_none()
                && g.dag[n]
                    .outputs()
                    .iter()
                    .all(|o| !outputs.contains(*o) && !defaults.contains(*o))
        })
        .collect();
    g.remove_initializers(&dead);
    dead.len()
}
