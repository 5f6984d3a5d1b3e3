//! Reverse-mode automatic differentiation on the IR: a model becomes its
//! *training step*, a standard ONNX model any runtime can run.
//!
//! ```text
//! inputs:  the model's inputs…, target, the loss's own inputs…, every trainable tensor (under its initializer name)…
//! outputs: loss, <name>.grad for every trainable tensor…, the model's outputs…
//! ```
//!
//! - `loss` is a float scalar, the mean over every position of the batch
//!   ([`loss`]); `target` is int64 class ids shaped like the prediction
//!   without its last (class) axis for `ce`, and a float tensor shaped like
//!   the prediction for `mse`, `kd` and `slam`; `slam` also reads `slam_a`
//!   and `slam_topk` (SLaM's a(x) and top-k mask, [`loss`]).
//! - The trainable tensors ([`train_set`]), initializers or float `Constant`
//!   nodes, leave the graph's constants and become inputs; frozen weights
//!   stay constants, so a runtime still packs them.
//! - The backward graph is built by one vector-Jacobian product per op
//!   ([`rules`]), in reverse topological order, over the ops that lie both
//!   below a trainable tensor and above the prediction: nothing is computed
//!   for frozen weights or below the earliest trainable tensor. Gradients of
//!   a value read by several ops are summed.
//! - Every shape is static: the model is specialised to the input sizes of
//!   the [`GradOptions::load`] options (tract needs reduction axes and pad
//!   amounts as constants, so unbroadcasting must know them).
//! - Two forward rewrites make the model differentiable on tract: a
//!   `BatchNormalization` with a trainable parameter is lowered to
//!   elementwise ops ([`lower`]), and a `MaxPool` on the path gets its
//!   `Indices` output from opset 16 on (before, its rule works by masks).
//!
//! Complexity: two shape inferences (one when nothing is lowered), then
//! O(V + E) plus the emitted ops, linear in the forward graph.
//!
//! # Errors
//! [`AutodiffError`]: an op without a rule on the path (naming op and node),
//! an unsupported attribute combination, a value without a static shape, a
//! `--train` selection that selects nothing.

// Gradient code follows its equations: x, y, g, e (the emitter), v (the node).
#![allow(clippy::many_single_char_names)]

pub mod emit;
pub mod inline_if;
pub mod loss;
pub mod lower;
pub mod rules;
pub mod train_set;

use std::collections::{BTreeMap, HashMap, HashSet};

use laurel_runtime::{LoadOptions, ModelSource};
use onnx_protobuf::{NodeProto, TensorProto};
use petgraph::Direction;
use petgraph::stable_graph::NodeIndex;
use petgraph::visit::EdgeRef;
use serde::Serialize;

use crate::build::GraphBuilder;
pub use crate::error::AutodiffError;
use crate::ir::{Edge, Graph, Model, Node};
use emit::{Emitter, Ty, elem};
pub use loss::Loss;
pub use train_set::TrainSpec;

/// What to differentiate, with respect to what.
#[derive(Debug, Clone)]
pub struct GradOptions {
    /// The loss.
    pub loss: Loss,
    /// The temperature of the `kd` loss.
    pub temperature: f64,
    /// Which tensors train.
    pub train: TrainSpec,
    /// The input sizes the step is specialised to.
    pub load: LoadOptions,
    /// The model output the loss reads (default: the first).
    pub prediction: Option<String>,
}

impl Default for GradOptions {
    fn default() -> Self {
        Self {
            loss: Loss::Ce,
            temperature: 1.0,
            train: TrainSpec::Laurel,
            load: LoadOptions::default(),
            prediction: None,
        }
    }
}

/// A tensor of the step's interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorSpec {
    /// Its name.
    pub name: String,
    /// Its ONNX element type.
    pub elem: i32,
    /// Its dims.
    pub dims: Vec<i64>,
}

/// What [`training_step`] built.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// The loss.
    pub loss: String,
    /// The model output the loss reads.
    pub prediction: String,
    /// The target input.
    pub target: TensorSpec,
    /// The loss's other inputs, after the target (SLaM's `slam_a` and
    /// `slam_topk`; none for the other losses).
    pub loss_inputs: Vec<TensorSpec>,
    /// The prediction's dims (the class axis last, for `ce` and `kd`).
    pub prediction_dims: Vec<i64>,
    /// The trainable tensors, in input order; each has a `<name>.grad` output.
    pub trainable: Vec<TensorSpec>,
    /// Trainable tensors the loss does not depend on (their gradient is 0).
    pub unused: Vec<String>,
    /// Ops of the forward graph (after lowering).
    pub forward_ops: usize,
    /// Ops of the loss and the backward graph.
    pub backward_ops: usize,
    /// Batch norms lowered to elementwise ops because a parameter trains.
    pub lowered_batch_norms: usize,
    /// Sizes chosen for symbolic dimensions the options left unset, because
    /// the model does not infer, or computes empty outputs, with them at 1
    /// (the sizes [`laurel_runtime::load()`] would run it at); empty otherwise.
    pub chosen_sizes: Vec<(String, i64)>,
}

/// The name of the loss output.
pub const LOSS: &str = "loss";
/// The name of the target input.
pub const TARGET: &str = "target";

/// The name of the gradient output of the trainable tensor `name`.
#[must_use]
pub fn grad_name(name: &str) -> String {
    format!("{name}.grad")
}

/// Builds the training step of `model`; see the [module docs](self).
///
/// Symbolic dimensions the options leave unset are 1. When shape inference
/// fails there (tract's analysis of a stride-2 convolution over a length of
/// 1), the step is built again at the sizes [`laurel_runtime::load()`] would
/// run the model at, recorded in [`StepReport::chosen_sizes`].
///
/// # Errors
/// See the [module docs](self).
pub fn training_step(
    model: &Model,
    opts: &GradOptions,
) -> Result<(Model, StepReport), AutodiffError> {
    let first = step_at_sizes(model, opts);
    let (Err(AutodiffError::Infer(_) | AutodiffError::UnknownShape { .. }), None) =
        (&first, opts.load.default_dim)
    else {
        return first;
    };
    let Some(sizes) = sizes_that_load(model, &opts.load) else {
        return first;
    };
    let mut at_sizes = opts.clone();
    at_sizes.load.dims.extend(sizes.iter().cloned());
    let (step, mut report) = step_at_sizes(model, &at_sizes)?;
    report.chosen_sizes = sizes;
    Ok((step, report))
}

/// The sizes [`laurel_runtime::load()`] chooses for `model`'s unset symbolic
/// dimensions (loading its shape probe), when it chooses any.
fn sizes_that_load(model: &Model, load: &LoadOptions) -> Option<Vec<(String, i64)>> {
    let probe =
        crate::onnx::to_shape_probe_bytes(model, crate::analysis::PROBE_MIN_ELEMENTS).ok()?;
    let r = laurel_runtime::load(ModelSource::Bytes(&probe), load).ok()?;
    let sizes = r.chosen_sizes();
    (!sizes.is_empty()).then(|| sizes.to_vec())
}

#[allow(clippy::too_many_lines)] // the steps of the module docs, in order
fn step_at_sizes(model: &Model, opts: &GradOptions) -> Result<(Model, StepReport), AutodiffError> {
    let mut m = model.clone();
    let opset = m.onnx_opset().unwrap_or(1);
    inline_if::inline_weighted_ifs(&mut m)?;
    let trainable = train_set::select(&m.graph, &opts.train)?;
    let lowered = lower::lower_trainable_batch_norms(&mut m, &trainable, &opts.load)?;
    make_inputs(&mut m.graph, &trainable);
    if opset >= 16 {
        // Scatter-add needs opset 16; before it, the MaxPool rule uses masks.
        add_max_pool_indices(&mut m.graph, &trainable);
    }

    let (types, shape_ints) = infer_types(&m, &opts.load)?;
    let prediction = match &opts.prediction {
        Some(p) => p.clone(),
        None => m
            .graph
            .header
            .output
            .first()
            .map(|o| o.name.clone())
            .ok_or_else(|| AutodiffError::Loss {
                loss: opts.loss.to_string(),
                output: String::new(),
                reason: "the model has no output".into(),
            })?,
    };
    if !m.graph.header.output.iter().any(|o| o.name == prediction) {
        return Err(AutodiffError::Loss {
            loss: opts.loss.to_string(),
            output: prediction,
            reason: "no such model output".into(),
        });
    }

    let used: HashSet<String> = m
        .graph
        .producers()
        .keys()
        .map(|s| (*s).to_owned())
        .collect();
    let pred_ty_early = types.get(&prediction).cloned();
    let extra: Vec<(&'static str, Ty)> = pred_ty_early
        .as_ref()
        .map(|p| opts.loss.extra_inputs(p))
        .unwrap_or_default();
    for name in std::iter::once(LOSS.to_owned())
        .chain(std::iter::once(TARGET.to_owned()))
        .chain(extra.iter().map(|(n, _)| (*n).to_owned()))
        .chain(trainable.iter().map(|t| grad_name(t)))
    {
        if used.contains(&name) {
            return Err(AutodiffError::NameTaken { name });
        }
    }
    let mut e = Emitter::new(opset, types, used);
    for n in [LOSS.to_owned(), TARGET.to_owned()] {
        e.claim(&n);
    }
    let pred_ty = e.ty(&prediction)?.clone();
    let target_ty = opts
        .loss
        .target_type(&pred_ty)
        .map_err(|reason| AutodiffError::Loss {
            loss: opts.loss.to_string(),
            output: prediction.clone(),
            reason,
        })?;
    e.set_ty(TARGET, target_ty.clone());
    for (name, ty) in &extra {
        e.set_ty(name, ty.clone());
    }
    let dpred = loss::emit(
        &mut e,
        opts.loss,
        opts.temperature,
        &prediction,
        TARGET,
        LOSS,
    )?;

    let grads = backward(&m.graph, &mut e, &trainable, &prediction, dpred, shape_ints)?;

    let mut unused = Vec::new();
    let mut trainable_specs = Vec::new();
    for t in &trainable {
        let ty = e.ty(t)?.clone();
        let out = grad_name(t);
        e.claim(&out);
        if let Some(g) = grads.get(t.as_str()) {
            e.op_into("Identity", &[g], Vec::new(), &out, ty.clone());
        } else {
            unused.push(t.clone());
            let z = e.filled(&ty, 0.0)?;
            e.op_into("Identity", &[&z], Vec::new(), &out, ty.clone());
        }
        trainable_specs.push(TensorSpec {
            name: t.clone(),
            elem: ty.elem,
            dims: ty.dims,
        });
    }
    let forward_ops = m.graph.op_count();
    let backward_ops = e.ops.len();
    materialise(&mut m, e, &target_ty, &extra, &trainable)?;
    Ok((
        m,
        StepReport {
            loss: opts.loss.to_string(),
            prediction,
            prediction_dims: pred_ty.dims.clone(),
            target: TensorSpec {
                name: TARGET.into(),
                elem: target_ty.elem,
                dims: target_ty.dims,
            },
            loss_inputs: extra
                .iter()
                .map(|(name, ty)| TensorSpec {
                    name: (*name).to_owned(),
                    elem: ty.elem,
                    dims: ty.dims.clone(),
                })
                .collect(),
            trainable: trainable_specs,
            unused,
            forward_ops,
            backward_ops,
            lowered_batch_norms: lowered,
            chosen_sizes: Vec::new(),
        },
    ))
}

/// Inferred integer values, by value name (see [`infer_types`]).
type ShapeInts = HashMap<String, Vec<i64>>;

/// The static type of every value at the sizes of `load`, and the small
/// integer values tract knows there: sizes, indices and shapes computed from
/// shapes (`PyTorch`'s `chunk` and `view` write their `Slice` bounds and
/// `Reshape` shapes as `Shape` → `Gather` → `Mul` …), which the rules need
/// as constants and which are constants at fixed sizes.
fn infer_types(
    m: &Model,
    load: &LoadOptions,
) -> Result<(HashMap<String, Ty>, ShapeInts), AutodiffError> {
    let probe = crate::onnx::to_shape_probe_bytes(m, crate::analysis::PROBE_MIN_ELEMENTS)
        .map_err(|err| AutodiffError::Encode(err.to_string()))?;
    let inferred = laurel_runtime::infer_shapes(ModelSource::Bytes(&probe), load)?;
    let mut types = HashMap::new();
    let mut ints = HashMap::new();
    for (name, v) in inferred.values {
        if let Some(value) = v.value {
            ints.insert(name.clone(), value);
        }
        let (Some(d), Some(shape)) = (v.datum, v.shape) else {
            continue;
        };
        let dims: Option<Vec<i64>> = shape
            .iter()
            .map(|s| s.fixed().and_then(|n| i64::try_from(n).ok()))
            .collect();
        if let Some(dims) = dims {
            types.insert(name, Ty::new(d.onnx_code(), &dims));
        }
    }
    // Initializers carry their own types (tract may have folded them away).
    for &n in &m.graph.initializers {
        if let Node::Initializer(i) = &m.graph.dag[n] {
            types
                .entry(i.proto.name.clone())
                .or_insert_with(|| Ty::new(i.proto.data_type, &i.proto.dims));
        }
    }
    Ok((types, ints))
}

/// Turns the trainable initializers and `Constant` nodes into graph inputs
/// of the same name and type (IR < 4 models declare initializers as inputs
/// already: the initializer goes).
fn make_inputs(g: &mut Graph, trainable: &[String]) {
    let wanted: HashSet<&str> = trainable.iter().map(String::as_str).collect();
    let constants: Vec<(NodeIndex, TensorProto)> = g
        .op_order
        .iter()
        .filter_map(|&n| match &g.dag[n] {
            Node::Op(op) => train_set::constant_tensor(&op.proto)
                .filter(|t| wanted.contains(t.name.as_str()))
                .map(|t| (n, t)),
            _ => None,
        })
        .collect();
    for (n, t) in constants {
        let decl = crate::ir::tensor_input(&TensorProto {
            name: t.name.clone(),
            dims: t.dims.clone(),
            data_type: t.data_type,
            ..TensorProto::default()
        });
        let input = g.dag.add_node(Node::Input(decl));
        g.inputs.push(input);
        let out: Vec<(NodeIndex, Edge)> = g
            .dag
            .edges_directed(n, Direction::Outgoing)
            .map(|e| (e.target(), e.weight().clone()))
            .collect();
        for (target, w) in out {
            g.dag.add_edge(input, target, Edge { src_slot: 0, ..w });
        }
        g.dag.remove_node(n);
        g.op_order.retain(|&o| o != n);
    }
    let declared: HashSet<String> = g
        .inputs
        .iter()
        .flat_map(|&n| g.dag[n].outputs().into_iter().map(str::to_owned))
        .collect();
    let inits: Vec<NodeIndex> = g
        .initializers
        .iter()
        .copied()
        .filter(|&n| matches!(&g.dag[n], Node::Initializer(i) if wanted.contains(i.proto.name.as_str())))
        .collect();
    for n in inits {
        let Node::Initializer(init) = g.dag[n].clone() else {
            continue;
        };
        let name = init.proto.name.clone();
        let input = if declared.contains(&name) {
            g.inputs
                .iter()
                .copied()
                .find(|&i| g.dag[i].outputs().first() == Some(&name.as_str()))
        } else {
            let decl = crate::ir::tensor_input(&TensorProto {
                name: name.clone(),
                dims: init.proto.dims.clone(),
                data_type: init.proto.data_type,
                ..TensorProto::default()
            });
            let i = g.dag.add_node(Node::Input(decl));
            g.inputs.push(i);
            Some(i)
        };
        let Some(input) = input else { continue };
        let out: Vec<(NodeIndex, Edge)> = g
            .dag
            .edges_directed(n, Direction::Outgoing)
            .map(|e| (e.target(), e.weight().clone()))
            .collect();
        for (t, w) in out {
            g.dag.add_edge(input, t, w);
        }
        g.dag.remove_node(n);
        g.initializers.retain(|&i| i != n);
    }
}

/// Gives every `MaxPool` below a trainable tensor its `Indices` output.
fn add_max_pool_indices(g: &mut Graph, trainable: &[String]) {
    let Ok(order) = g.topo_ops() else { return };
    let mut live: HashSet<String> = trainable.iter().cloned().collect();
    let mut taken: HashSet<String> = g.producers().keys().map(|s| (*s).to_owned()).collect();
    for n in order {
        let ins: Vec<String> = g
            .op_inputs(n)
            .iter()
            .flatten()
            .map(|(_, e)| e.name.clone())
            .collect();
        if !ins.iter().any(|i| live.contains(i)) {
            continue;
        }
        let Node::Op(op) = &mut g.dag[n] else {
            continue;
        };
        if op.proto.op_type == "MaxPool"
            && crate::ir::is_onnx_domain(&op.proto.domain)
            && (op.proto.output.len() < 2 || op.proto.output[1].is_empty())
        {
            {
                let base = format!("{}.indices", op.proto.output[0]);
                let mut name = base.clone();
                let mut k = 2;
                while taken.contains(&name) {
                    name = format!("{base}{k}");
                    k += 1;
                }
                taken.insert(name.clone());
                op.proto.output.resize(1, String::new());
                op.proto.output.push(name);
            }
        }
        live.extend(op.proto.output.iter().cloned());
    }
}

/// The integer values of the graph's constants: int initializers and
/// `Constant` nodes.
fn int_constants(g: &Graph) -> HashMap<String, Vec<i64>> {
    let mut out = HashMap::new();
    for n in g.dag.node_indices() {
        match &g.dag[n] {
            Node::Initializer(i) => {
                if let Some(v) = int_values(&i.proto) {
                    out.insert(i.proto.name.clone(), v);
                }
            }
            Node::Op(op) if op.proto.op_type == "Constant" => {
                let Some(name) = op.proto.output.first() else {
                    continue;
                };
                for a in &op.proto.attribute {
                    let v = match a.name.as_str() {
                        "value" => a.t.as_ref().and_then(int_values),
                        "value_ints" => Some(a.ints.clone()),
                        "value_int" => Some(vec![a.i]),
                        _ => None,
                    };
                    if let Some(v) = v {
                        out.insert(name.clone(), v);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// The most elements a float constant may have to be kept for the rules
/// (scales, bounds: small tensors, not weights).
const SMALL_FLOATS: usize = 64;

/// The values of the graph's small float constants (initializers and
/// `Constant` nodes of at most [`SMALL_FLOATS`] float32 or float64 values).
fn float_constants(g: &Graph) -> HashMap<String, Vec<f64>> {
    let mut out = HashMap::new();
    for n in g.dag.node_indices() {
        let (name, t) = match &g.dag[n] {
            Node::Initializer(i) => (i.proto.name.clone(), Some(&i.proto)),
            Node::Op(op) if op.proto.op_type == "Constant" => {
                let Some(name) = op.proto.output.first() else {
                    continue;
                };
                let t = op
                    .proto
                    .attribute
                    .iter()
                    .find(|a| a.name == "value")
                    .and_then(|a| a.t.as_ref());
                (name.clone(), t)
            }
            _ => continue,
        };
        if let Some(v) = t.and_then(float_values)
            && v.len() <= SMALL_FLOATS
        {
            out.insert(name, v);
        }
    }
    out
}

/// The values of a float32 or float64 tensor held in the proto (`None` for
/// one whose values live elsewhere, as external data, or are incomplete).
fn float_values(t: &TensorProto) -> Option<Vec<f64>> {
    let want = usize::try_from(t.dims.iter().product::<i64>()).ok()?;
    let v = float_values_held(t)?;
    (v.len() == want).then_some(v)
}

fn float_values_held(t: &TensorProto) -> Option<Vec<f64>> {
    match t.data_type {
        elem::F32 if !t.raw_data.is_empty() => Some(
            t.raw_data
                .chunks_exact(4)
                .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap_or([0; 4]))))
                .collect(),
        ),
        elem::F32 => Some(t.float_data.iter().map(|&v| f64::from(v)).collect()),
        elem::F64 if !t.raw_data.is_empty() => Some(
            t.raw_data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
        ),
        elem::F64 => Some(t.double_data.clone()),
        _ => None,
    }
}

/// The values of an int32 or int64 tensor held in the proto.
fn int_values(t: &TensorProto) -> Option<Vec<i64>> {
    const INT32: i32 = 6;
    match t.data_type {
        elem::I64 if !t.raw_data.is_empty() => Some(
            t.raw_data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
        ),
        elem::I64 => Some(t.int64_data.clone()),
        INT32 if !t.raw_data.is_empty() => Some(
            t.raw_data
                .chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes(c.try_into().unwrap_or([0; 4]))))
                .collect(),
        ),
        INT32 => Some(t.int32_data.iter().map(|&v| i64::from(v)).collect()),
        _ => None,
    }
}

/// Emits the backward graph; returns the gradient of every trainable tensor
/// the loss depends on.
#[allow(clippy::too_many_lines)] // activity, relevance, then the reverse sweep
fn backward(
    g: &Graph,
    e: &mut Emitter,
    trainable: &[String],
    prediction: &str,
    dpred: String,
    shape_ints: ShapeInts,
) -> Result<HashMap<String, String>, AutodiffError> {
    let order = g.topo_ops().map_err(|c| AutodiffError::Internal {
        message: format!("the graph has a cycle ({c:?})"),
    })?;
    // The graph's own integer constants first; then what inference computed
    // from shapes at the step's fixed sizes.
    let mut constants = int_constants(g);
    for (name, value) in shape_ints {
        constants.entry(name).or_insert(value);
    }
    let floats = float_constants(g);
    let is_float = |e: &Emitter, v: &str| e.ty(v).is_ok_and(|t| elem::is_float(t.elem));

    // Values that depend on a trainable tensor, through differentiable ops.
    let mut active: HashSet<String> = trainable.iter().cloned().collect();
    let mut info: Vec<(NodeIndex, Vec<String>)> = Vec::new();
    for &n in &order {
        let Node::Op(op) = &g.dag[n] else { continue };
        let ins: Vec<String> = g
            .op_inputs(n)
            .iter()
            .map(|s| s.map(|(_, e)| e.name.clone()).unwrap_or_default())
            .collect();
        let caps_live = g
            .dag
            .edges_directed(n, Direction::Incoming)
            .any(|ed| ed.weight().dst_slot.is_none() && active.contains(&ed.weight().name));
        if !(ins.iter().any(|i| active.contains(i)) || caps_live) {
            continue;
        }
        if crate::ir::is_onnx_domain(&op.proto.domain)
            && rules::has_zero_derivative(&op.proto.op_type)
        {
            continue;
        }
        for o in &op.proto.output {
            if !o.is_empty() && is_float(e, o) {
                active.insert(o.clone());
            }
        }
        info.push((n, ins));
    }
    // Ops above the prediction.
    let producers = g.producers();
    let mut relevant: HashSet<NodeIndex> = HashSet::new();
    if let Some(&(p, _)) = producers.get(prediction) {
        let mut stack = vec![p];
        while let Some(n) = stack.pop() {
            if !relevant.insert(n) {
                continue;
            }
            stack.extend(g.dag.neighbors_directed(n, Direction::Incoming));
        }
    }

    let mut grads: BTreeMap<String, Vec<String>> = BTreeMap::new();
    grads.insert(prediction.to_owned(), vec![dpred]);
    for (n, ins) in info.iter().rev() {
        if !relevant.contains(n) {
            continue;
        }
        let Node::Op(op) = &g.dag[*n] else { continue };
        let mut out_grads = Vec::with_capacity(op.proto.output.len());
        for o in &op.proto.output {
            out_grads.push(match grads.remove(o) {
                Some(terms) => Some(e.sum(&terms)?),
                None => None,
            });
        }
        if out_grads.iter().all(Option::is_none) {
            continue;
        }
        let display = g.display_name(*n);
        let domain_ok = crate::ir::is_onnx_domain(&op.proto.domain);
        let rule = domain_ok.then(|| rules::rule(&op.proto.op_type)).flatten();
        let Some(rule) = rule.filter(|_| !crate::onnx::subgraph::has_subgraphs(&op.proto)) else {
            return Err(AutodiffError::NoRule {
                node: display,
                op_type: if domain_ok {
                    op.proto.op_type.clone()
                } else {
                    format!("{}:{}", op.proto.domain, op.proto.op_type)
                },
            });
        };
        let needs: Vec<bool> = ins.iter().map(|i| active.contains(i)).collect();
        let vjp = rules::Vjp {
            node: &op.proto,
            display: &display,
            inputs: ins,
            outputs: &op.proto.output,
            needs: &needs,
            constants: &constants,
            floats: &floats,
        };
        e.current.clone_from(&op.proto.name);
        let input_grads = rule(e, &vjp, &out_grads)?;
        for (i, gi) in input_grads.into_iter().enumerate() {
            let (Some(gi), Some(true)) = (gi, needs.get(i).copied()) else {
                continue;
            };
            let (want, got) = (e.ty(&ins[i])?, e.ty(&gi)?);
            if want.dims != got.dims || want.elem != got.elem {
                return Err(AutodiffError::Internal {
                    message: format!(
                        "{display}: the gradient of input {i} has type {got:?}, the input {want:?}"
                    ),
                });
            }
            grads.entry(ins[i].clone()).or_default().push(gi);
        }
    }
    e.current.clear();
    let mut out = HashMap::new();
    for t in trainable {
        if let Some(terms) = grads.remove(t) {
            out.insert(t.clone(), e.sum(&terms)?);
        }
    }
    Ok(out)
}

/// Adds the target input, the emitted constants and ops to the graph, and
/// sets the outputs: loss, gradients, the model's own outputs.
fn materialise(
    m: &mut Model,
    e: Emitter,
    target: &Ty,
    extra: &[(&'static str, Ty)],
    trainable: &[String],
) -> Result<(), AutodiffError> {
    for (name, ty) in std::iter::once((TARGET, target)).chain(extra.iter().map(|(n, t)| (*n, t))) {
        let node = m
            .graph
            .dag
            .add_node(Node::Input(crate::ir::tensor_input(&TensorProto {
                name: name.into(),
                dims: ty.dims.clone(),
                data_type: ty.elem,
                ..TensorProto::default()
            })));
        m.graph.inputs.push(node);
    }
    // Trainable inputs after the model's own inputs and the target, in order.
    let pos = |g: &Graph, name: &str| {
        g.inputs
            .iter()
            .position(|&i| g.dag[i].outputs().first() == Some(&name))
    };
    // The model's inputs, declared at the sizes the step is specialised to.
    for &i in &m.graph.inputs {
        if let Node::Input(decl) = &m.graph.dag[i]
            && let Ok(ty) = e.ty(&decl.name)
        {
            let fixed = value_info(&decl.name, &ty.clone());
            m.graph.dag[i] = Node::Input(onnx_protobuf::ValueInfoProto {
                type_: fixed.type_,
                ..decl.clone()
            });
        }
    }
    let mut moved = Vec::new();
    for t in trainable {
        if let Some(p) = pos(&m.graph, t) {
            moved.push(m.graph.inputs.remove(p));
        }
    }
    m.graph.inputs.extend(moved);

    let mut outputs = vec![value_info(LOSS, &e.ty(LOSS)?.clone())];
    for t in trainable {
        let n = grad_name(t);
        outputs.push(value_info(&n, &e.ty(&n)?.clone()));
    }
    // The model's own outputs, typed where the model left them untyped.
    for o in &m.graph.header.output {
        match e.ty(&o.name) {
            Ok(ty) if o.type_.is_none() => outputs.push(value_info(&o.name, &ty.clone())),
            _ => outputs.push(o.clone()),
        }
    }

    let anchor = m.graph.op_order.len();
    let mut b = GraphBuilder::new(&mut m.graph);
    for init in e.initializers {
        b.initializer(init);
    }
    for op in e.ops {
        let mut node: NodeProto = op.node;
        let inputs = std::mem::take(&mut node.input);
        b.op(node, &inputs, anchor)
            .map_err(|err| AutodiffError::Internal {
                message: err.to_string(),
            })?;
    }
    let _placed = b.finish();
    m.graph.header.output = outputs;
    Ok(())
}

/// A graph output of `name` and type `ty`.
fn value_info(name: &str, ty: &Ty) -> onnx_protobuf::ValueInfoProto {
    crate::ir::tensor_input(&TensorProto {
        name: name.into(),
        dims: ty.dims.clone(),
        data_type: ty.elem,
        ..TensorProto::default()
    })
}
