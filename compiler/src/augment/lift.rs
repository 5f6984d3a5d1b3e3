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
use onnx_protobuf::NodeProto;
use petgraph::Direction;
use petgraph::stable_graph::NodeIndex;
use petgraph::visit::EdgeRef;

use super::init;
use super::{AugmentOptions, BlockReport, ParamReport};
use crate::analysis::Residual;
use crate::analysis::flops::op_flops_with_elementwise;
use crate::build::GraphBuilder;
use crate::error::{Error, Result};
use crate::ir::{Edge, Model, Node};

fn err(message: impl Into<String>) -> Error {
    Error::Augment {
        message: message.into(),
    }
}

/// The augmentation's use of the builder: new ops at the removed add's place,
/// named `laurel.<block>/<Op>_<i>` (their outputs too, unless named).
struct Builder<'g> {
    b: GraphBuilder<'g>,
    /// The anchor of the ops built now: the position of the add they replace.
    anchor: usize,
}

impl Builder<'_> {
    fn initializer(&mut self, name: &str, dims: &[i64], values: &[f32]) -> String {
        self.b.f32_initializer(name, dims, values)
    }

    fn has(&self, name: &str) -> bool {
        self.b.producer(name).is_some()
    }

    fn op(
        &mut self,
        block: usize,
        op_type: &str,
        inputs: &[&str],
        output: Option<&str>,
    ) -> Result<(NodeIndex, String)> {
        let name = self.b.new_node_name(&format!("laurel.{block}"), op_type);
        let out = output.map_or_else(|| name.clone(), ToString::to_string);
        let proto = NodeProto {
            op_type: op_type.into(),
            name,
            output: vec![out.clone()],
            ..NodeProto::default()
        };
        let inputs: Vec<String> = inputs.iter().map(|s| (*s).to_owned()).collect();
        let n = self
            .b
            .op(proto, &inputs, self.anchor)
            .map_err(|e| err(format!("{e} while lifting")))?;
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
    if b.has(&name) {
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
/// The factor 2 is `σ + σ`, so no constant joins the initializers: every
/// `laurel.*` initializer is a block's trainable parameter.
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
    if b.has(&full) {
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
    // The logits first, then the ops.
    let logits = match how {
        Derivation::Softmax => vec![
            logit(b, Role::SoftmaxLogit(Coefficient::Alpha))?,
            logit(b, Role::SoftmaxLogit(Coefficient::Beta))?,
        ],
        Derivation::Sigmoid => vec![logit(b, Role::SigmoidLogit)?],
    };
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
    Ok(b.op(block, "Add", &[&s, &s], Some(&full))?.1)
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
    let mut b = Builder {
        b: GraphBuilder::new(&mut model.graph),
        anchor: 0,
    };
    let specs = Specs::new(&report.params);
    let expr = &report.expr;
    let mut lifted: HashMap<usize, String> = HashMap::new();
    // The type of every value the blocks read or compute, for their FLOPs.
    let mut types: HashMap<String, TensorType> = HashMap::new();
    let mut blocks = Vec::new();
    for (&(k, r), &root) in residuals.iter().zip(&report.roots) {
        // Take the add out, remembering its consumers and its place.
        let g = b.b.graph();
        let out_name = g.dag[r.node]
            .outputs()
            .first()
            .map(ToString::to_string)
            .unwrap_or_default();
        let consumers: Vec<(NodeIndex, Edge)> = g
            .dag
            .edges_directed(r.node, Direction::Outgoing)
            .map(|e| (e.target(), e.weight().clone()))
            .collect();
        b.anchor = b.b.position(r.node).unwrap_or(usize::MAX);
        b.b.remove_op(r.node);
        let first_op = b.b.created_count();
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
            // A child of the term is lifted before it (children come first).
            let arg = |j: usize| -> Result<String> {
                node.children()
                    .get(j)
                    .and_then(|c| lifted.get(&usize::from(*c)))
                    .cloned()
                    .ok_or_else(|| {
                        err(format!("block {k}: operand {j} of `{node}` was not lifted"))
                    })
            };
            let name = if i == usize::from(root) {
                Some(out_name.as_str())
            } else {
                None
            };
            let value = match node {
                TensorLang::Value(v) => v.name().to_string(),
                TensorLang::Param(p) => param(&mut b, &specs, *p, rank, opts.seed)?,
                TensorLang::Add(_) => b.op(k, "Add", &[&arg(0)?, &arg(1)?], name)?.1,
                TensorLang::Sub(_) => b.op(k, "Sub", &[&arg(0)?, &arg(1)?], name)?.1,
                TensorLang::Mul(_) => b.op(k, "Mul", &[&arg(0)?, &arg(1)?], name)?.1,
                TensorLang::Div(_) => b.op(k, "Div", &[&arg(0)?, &arg(1)?], name)?.1,
                TensorLang::Sigmoid(_) => b.op(k, "Sigmoid", &[&arg(0)?], name)?.1,
                TensorLang::MatMul(_) => b.op(k, "MatMul", &[&arg(0)?, &arg(1)?], name)?.1,
                TensorLang::Conv1x1(_) => b.op(k, "Conv", &[&arg(0)?, &arg(1)?], name)?.1,
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
        if b.b.producer(&out_name).is_none() {
            return Err(err("lost the root"));
        }
        for (target, edge) in consumers {
            b.b.connect(target, edge)
                .map_err(|e| err(format!("{e} while lifting")))?;
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
                let dims = match b.b.producer(&name).map(|(n, _)| &b.b.graph().dag[n]) {
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
        let created: Vec<NodeIndex> = b.b.created().skip(first_op).collect();
        let flops = block_flops(&b.b, &created, &types, r);
        blocks.push(BlockReport {
            block,
            node: r.name.clone(),
            parameters,
            flops,
            params,
        });
    }
    // The ops are placed; which they are, the block reports say.
    let _ = b.b.finish();
    Ok(blocks)
}

/// The FLOPs of the ops `created` for a block, less those of the `Add` the
/// block replaced (one per element of `r`); a value of unknown type (the
/// derived coefficients' intermediates, initializers) is typed from the
/// graph: initializers by their dims, anything else as a scalar.
fn block_flops(
    b: &GraphBuilder<'_>,
    created: &[NodeIndex],
    types: &HashMap<String, TensorType>,
    r: &Residual,
) -> u64 {
    let g = b.graph();
    let type_of = |name: &str| -> TensorType {
        if let Some(t) = types.get(name) {
            return t.clone();
        }
        match b.producer(name).map(|(n, _)| &g.dag[n]) {
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
