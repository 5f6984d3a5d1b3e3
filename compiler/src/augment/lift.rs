//! Lifting: extracted terms → standard ONNX ops in the IR.
//!
//! For each augmented residual, its `Add` node is removed and the term that
//! replaces it is built from standard ONNX ops (`Add`, `Mul`, `Sub`,
//! `Sigmoid`, `Neg`, `MatMul`, `Conv`), named `laurel.<block>/<Op>_<i>`; the
//! term's root takes over the add's output name and its consumers, so the
//! rest of the graph (and every graph output) is untouched. Parameters are
//! materialised as float32 initializers `laurel.<block>.<name>` with the
//! values of [`super::init`]. New ops take the removed add's place in the
//! preferred node order. O(size of the terms).

use std::collections::HashMap;

use egg::Language as _;
use laurel_passes::TensorLang;
use laurel_passes::block::{BlockId, Layout};
use laurel_passes::lang::ParamRef;
use laurel_passes::params::{Coefficient, Derivation, Init, ParamSpec, Role};
use laurel_passes::shape::{DType, Dim, TensorType};
use onnx_protobuf::{NodeProto, TensorProto};
use petgraph::Direction;
use petgraph::stable_graph::NodeIndex;
use petgraph::visit::EdgeRef;

use super::init;
use super::{AugmentOptions, BlockReport, ParamReport};
use crate::analysis::Residual;
use crate::analysis::flops::op_flops_with_elementwise;
use crate::error::{Error, Result};
use crate::ir::{Edge, Graph, Initializer, Model, Node, OpNode};

fn err(message: impl Into<String>) -> Error {
    Error::Augment {
        message: message.into(),
    }
}

/// Builds new nodes into a graph, tracking value producers.
struct Builder<'g> {
    g: &'g mut Graph,
    producers: HashMap<String, (NodeIndex, usize)>,
    /// Where new ops go in `op_order`.
    insert_at: usize,
    counter: usize,
    /// The op nodes built, in order.
    created: Vec<NodeIndex>,
}

impl Builder<'_> {
    fn initializer(&mut self, name: &str, dims: &[i64], values: &[f32]) -> String {
        if !self.producers.contains_key(name) {
            let proto = TensorProto {
                name: name.into(),
                dims: dims.to_vec(),
                data_type: 1,
                raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ..TensorProto::default()
            };
            let n = self.g.add_initializer(Initializer {
                proto,
                external: None,
            });
            self.producers.insert(name.into(), (n, 0));
        }
        name.into()
    }

    fn op(
        &mut self,
        block: usize,
        op_type: &str,
        inputs: &[&str],
        output: Option<&str>,
    ) -> Result<(NodeIndex, String)> {
        self.counter += 1;
        let out = output.map_or_else(
            || format!("laurel.{block}/{op_type}_{}", self.counter),
            ToString::to_string,
        );
        let proto = NodeProto {
            op_type: op_type.into(),
            name: format!("laurel.{block}/{op_type}_{}", self.counter),
            output: vec![out.clone()],
            ..NodeProto::default()
        };
        let n = self.g.dag.add_node(Node::Op(OpNode {
            proto,
            num_inputs: inputs.len(),
        }));
        for (slot, name) in inputs.iter().enumerate() {
            let &(src, src_slot) = self
                .producers
                .get(*name)
                .ok_or_else(|| err(format!("no producer for `{name}` while lifting")))?;
            self.g.dag.add_edge(
                src,
                n,
                Edge {
                    name: (*name).to_string(),
                    src_slot,
                    dst_slot: Some(slot),
                },
            );
        }
        self.g.op_order.insert(self.insert_at, n);
        self.insert_at += 1;
        self.created.push(n);
        self.producers.insert(out.clone(), (n, 0));
        Ok((n, out))
    }
}

/// The specs of the parameters, by leaf and by (block, role).
struct Specs<'r> {
    by_param: HashMap<ParamRef, &'r ParamSpec>,
    by_role: HashMap<(BlockId, Role), &'r ParamSpec>,
}

impl<'r> Specs<'r> {
    fn new(specs: &'r [ParamSpec]) -> Self {
        Self {
            by_param: specs.iter().map(|s| (s.param, s)).collect(),
            by_role: specs.iter().map(|s| ((s.block(), s.role), s)).collect(),
        }
    }
}

/// The ONNX element type of a parameter (float32 only: the compiler
/// augments float32 residuals).
fn data_type(spec: &ParamSpec) -> Result<i32> {
    match spec.ty.dtype {
        Some(DType::F32) => Ok(1),
        ref other => Err(err(format!(
            "{}: cannot materialise a parameter of element type {other:?}",
            spec.param
        ))),
    }
}

/// The initializer of a tensor parameter, with its values; a factor of a
/// channel-first block gets the trailing 1s of a 1×1 convolution's weight.
fn tensor_param(b: &mut Builder<'_>, spec: &ParamSpec, rank: usize, seed: u64) -> Result<String> {
    let name = spec.param.to_string();
    if b.producers.contains_key(&name) {
        return Ok(name);
    }
    data_type(spec)?;
    let values = init::values(spec, seed).map_err(|e| err(e.to_string()))?;
    let mut dims: Vec<i64> = spec
        .ty
        .shape
        .iter()
        .flatten()
        .map(|d| match d {
            Dim::Fixed(n) => i64::try_from(*n).map_err(|_| err("a dimension too large")),
            Dim::Sym(s) => Err(err(format!("{name}: symbolic dimension {s}"))),
        })
        .collect::<Result<_>>()?;
    if matches!(spec.role, Role::Down(_) | Role::Up(_)) && spec.layout == Some(Layout::ChannelFirst)
    {
        dims.extend(std::iter::repeat_n(1, rank.saturating_sub(2)));
    }
    Ok(b.initializer(&name, &dims, &values))
}

/// The value of the parameter leaf `p`: its initializer, or for a
/// coefficient derived from logits, the ops computing it (`2σ(a − b)`,
/// `2σ(b − a)`; `2σ(p)`, `2σ(−p)`), named `laurel.<block>.alpha`/`beta`.
fn param(
    b: &mut Builder<'_>,
    specs: &Specs<'_>,
    p: ParamRef,
    rank: usize,
    seed: u64,
) -> Result<String> {
    let spec = specs
        .by_param
        .get(&p)
        .ok_or_else(|| err(format!("no spec for parameter `{p}`")))?;
    let Init::Derived(how) = spec.init else {
        return tensor_param(b, spec, rank, seed);
    };
    let full = p.to_string();
    if b.producers.contains_key(&full) {
        return Ok(full);
    }
    let Role::Coefficient(which) = spec.role else {
        return Err(err(format!("{p}: only α and β are derived")));
    };
    let block = usize::try_from(p.block().0).map_err(|_| err("too many blocks"))?;
    let logit = |b: &mut Builder<'_>, role: Role| -> Result<String> {
        let spec = specs
            .by_role
            .get(&(p.block(), role))
            .ok_or_else(|| err(format!("{p}: no {role} to derive it from")))?;
        tensor_param(b, spec, rank, seed)
    };
    // The logits first, then the constant 2, then the ops.
    let logits = match how {
        Derivation::Softmax => vec![
            logit(b, Role::SoftmaxLogit(Coefficient::Alpha))?,
            logit(b, Role::SoftmaxLogit(Coefficient::Beta))?,
        ],
        Derivation::Sigmoid => vec![logit(b, Role::SigmoidLogit)?],
    };
    let two = b.initializer("laurel.two", &[], &[2.0]);
    let arg = match (how, which, logits.as_slice()) {
        // (α, β) = 2·softmax(a, b): α = 2σ(a − b), β = 2σ(b − a).
        (Derivation::Softmax, Coefficient::Alpha, [a, bb]) => b.op(block, "Sub", &[a, bb], None)?.1,
        (Derivation::Softmax, Coefficient::Beta, [a, bb]) => b.op(block, "Sub", &[bb, a], None)?.1,
        // α = 2σ(p), β = 2(1 − σ(p)) = 2σ(−p).
        (Derivation::Sigmoid, Coefficient::Alpha, [p]) => p.clone(),
        (Derivation::Sigmoid, Coefficient::Beta, [p]) => b.op(block, "Neg", &[p], None)?.1,
        _ => return Err(err(format!("{p}: its logits are missing"))),
    };
    let (_, s) = b.op(block, "Sigmoid", &[&arg], None)?;
    Ok(b.op(block, "Mul", &[&s, &two], Some(&full))?.1)
}

/// Replaces each residual's add by its extracted term; returns per-block
/// reports, with the parameters each block got (from the specs) and the
/// FLOPs of the ops built for it, less the `Add` it replaced.
///
/// # Errors
/// [`Error::Augment`] on a term the lifting does not know, or a parameter
/// without a spec (a bug).
#[allow(clippy::too_many_lines)] // one pass over the blocks; each step is commented
pub fn lift(
    model: &mut Model,
    residuals: &[(usize, &Residual)],
    report: &laurel_passes::AugmentReport,
    opts: &AugmentOptions,
) -> Result<Vec<BlockReport>> {
    let g = &mut model.graph;
    let producers: HashMap<String, (NodeIndex, usize)> = g
        .producers()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let mut b = Builder {
        g,
        producers,
        insert_at: 0,
        counter: 0,
        created: Vec::new(),
    };
    let specs = Specs::new(&report.params);
    let expr = &report.expr;
    let mut lifted: HashMap<usize, String> = HashMap::new();
    // The type of every value the blocks read or compute, for their FLOPs.
    let mut types: HashMap<String, TensorType> = HashMap::new();
    let mut blocks = Vec::new();
    for (&(k, r), &root) in residuals.iter().zip(&report.roots) {
        // Take the add out, remembering its consumers and its place.
        let out_name = b.g.dag[r.node]
            .outputs()
            .first()
            .map(ToString::to_string)
            .unwrap_or_default();
        let consumers: Vec<(NodeIndex, Edge)> =
            b.g.dag
                .edges_directed(r.node, Direction::Outgoing)
                .map(|e| (e.target(), e.weight().clone()))
                .collect();
        b.insert_at =
            b.g.op_order
                .iter()
                .position(|&n| n == r.node)
                .unwrap_or(b.g.op_order.len());
        b.g.op_order.retain(|&n| n != r.node);
        b.g.dag.remove_node(r.node);
        b.producers.remove(&out_name);
        let first_op = b.created.len();
        let rank = r.shape.len();
        // Post-order over the term under `root` (children come first in a RecExpr).
        let mut order = Vec::new();
        let mut stack = vec![usize::from(root)];
        let mut seen = std::collections::HashSet::new();
        while let Some(i) = stack.pop() {
            if lifted.contains_key(&i) || !seen.insert(i) {
                continue;
            }
            order.push(i);
            stack.extend(
                expr[egg::Id::from(i)]
                    .children()
                    .iter()
                    .map(|&c| usize::from(c)),
            );
        }
        order.sort_unstable();
        for i in order {
            let node = &expr[egg::Id::from(i)];
            let arg = |j: usize| {
                lifted
                    .get(&usize::from(node.children()[j]))
                    .cloned()
                    .unwrap_or_default()
            };
            let name = if i == usize::from(root) {
                Some(out_name.as_str())
            } else {
                None
            };
            let value = match node {
                TensorLang::Value(v) => v.name().to_string(),
                TensorLang::Param(p) => param(&mut b, &specs, *p, rank, opts.seed)?,
                TensorLang::Add(_) => b.op(k, "Add", &[&arg(0), &arg(1)], name)?.1,
                TensorLang::Sub(_) => b.op(k, "Sub", &[&arg(0), &arg(1)], name)?.1,
                TensorLang::Mul(_) => b.op(k, "Mul", &[&arg(0), &arg(1)], name)?.1,
                TensorLang::Div(_) => b.op(k, "Div", &[&arg(0), &arg(1)], name)?.1,
                TensorLang::Sigmoid(_) => b.op(k, "Sigmoid", &[&arg(0)], name)?.1,
                TensorLang::MatMul(_) => b.op(k, "MatMul", &[&arg(0), &arg(1)], name)?.1,
                TensorLang::Conv1x1(_) => b.op(k, "Conv", &[&arg(0), &arg(1)], name)?.1,
                TensorLang::Num(s) => {
                    #[allow(clippy::cast_possible_truncation)]
                    let v = s.to_f64() as f32;
                    b.initializer(&format!("laurel.const.{s}").replace('/', "_"), &[], &[v])
                }
                other => return Err(err(format!("cannot lift `{other}` into ONNX"))),
            };
            if let Some(d) = report.data.get(i) {
                types.entry(value.clone()).or_insert_with(|| d.ty());
            }
            lifted.insert(i, value);
        }
        let root_value = lifted.get(&usize::from(root)).cloned().unwrap_or_default();
        if root_value != out_name {
            return Err(err(format!(
                "block {k}: the term's root is a leaf, not an op"
            )));
        }
        let &(root_node, _) = b
            .producers
            .get(&out_name)
            .ok_or_else(|| err("lost the root"))?;
        for (target, edge) in consumers {
            b.g.dag.add_edge(root_node, target, edge);
        }
        let block = u32::try_from(k).unwrap_or(u32::MAX);
        let mine: Vec<&ParamSpec> = report
            .params
            .iter()
            .filter(|s| s.block().0 == block && s.is_tensor())
            .collect();
        let parameters: u64 = mine.iter().map(|s| s.elements().unwrap_or(0)).sum();
        let params = mine
            .iter()
            .map(|s| {
                let name = s.param.to_string();
                let dims = match b.producers.get(&name).map(|&(n, _)| &b.g.dag[n]) {
                    Some(Node::Initializer(i)) => i.proto.dims.clone(),
                    _ => Vec::new(),
                };
                ParamReport {
                    name,
                    role: s.role.to_string(),
                    dims,
                }
            })
            .collect();
        let flops = block_flops(&b, &b.created[first_op..], &types, r);
        blocks.push(BlockReport {
            block,
            node: r.name.clone(),
            parameters,
            flops,
            params,
        });
    }
    Ok(blocks)
}

/// The FLOPs of the ops `created` for a block, less those of the `Add` the
/// block replaced (one per element of `r`); a value of unknown type (the
/// derived coefficients' intermediates, initializers) is typed from the
/// graph: initializers by their dims, anything else as a scalar.
fn block_flops(
    b: &Builder<'_>,
    created: &[NodeIndex],
    types: &HashMap<String, TensorType>,
    r: &Residual,
) -> u64 {
    let g = &*b.g;
    let type_of = |name: &str| -> TensorType {
        if let Some(t) = types.get(name) {
            return t.clone();
        }
        match b.producers.get(name).map(|&(n, _)| &g.dag[n]) {
            Some(Node::Initializer(i)) => crate::analysis::types::initializer_type(&i.proto),
            _ => TensorType::new(Vec::new(), DType::F32),
        }
    };
    let mut total = 0.0;
    for &n in created {
        let Node::Op(op) = &g.dag[n] else { continue };
        let inputs: Vec<Option<String>> = g
            .op_inputs(n)
            .into_iter()
            .map(|s| s.map(|(_, e)| e.name.clone()))
            .collect();
        let out = op
            .proto
            .output
            .first()
            .map_or_else(TensorType::unknown, |o| type_of(o));
        total += op_flops_with_elementwise(&op.proto, &inputs, &out, &type_of).unwrap_or(0.0);
    }
    let replaced = laurel_passes::shape::estimated_elements(&r.shape);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // an estimate
    let added = (total - replaced).max(0.0).round() as u64;
    added
}
