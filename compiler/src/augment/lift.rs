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
use laurel_passes::block::Layout;
use onnx_protobuf::{NodeProto, TensorProto};
use petgraph::Direction;
use petgraph::stable_graph::NodeIndex;
use petgraph::visit::EdgeRef;

use super::init;
use super::{AugmentOptions, BlockReport, RwParam, VariantName};
use crate::analysis::Residual;
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
        self.producers.insert(out.clone(), (n, 0));
        Ok((n, out))
    }
}

/// What one block needs for its parameters.
struct BlockCtx<'r> {
    k: usize,
    residual: &'r Residual,
    channels: usize,
    layout: Option<Layout>,
}

#[allow(clippy::many_single_char_names)] // the paper's names: k, c, r, a, b
fn param(
    b: &mut Builder<'_>,
    ctx: &BlockCtx<'_>,
    name: &str,
    opts: &AugmentOptions,
) -> Result<String> {
    let k = ctx.k;
    let block = u32::try_from(k).map_err(|_| err("too many blocks"))?;
    let full = format!("laurel.{k}.{name}");
    if b.producers.contains_key(&full) {
        return Ok(full);
    }
    let two = || -> [f32; 1] { [2.0] };
    let v = opts.variant;
    if let Some(j) = name
        .strip_prefix("gamma")
        .and_then(|j| j.parse::<u64>().ok())
    {
        if !v.has_pa() {
            return Err(err(format!("unexpected parameter `{full}`")));
        }
        let g = init::pa_gamma(opts.init, &mut init::rng(opts.seed, block, 100 + j));
        return Ok(b.initializer(&full, &[], &[g]));
    }
    // Low-rank factors: (down?, rank, up factor zero at identity?, salt).
    let pa_h = |down: bool| (down, opts.pa_rank, false, if down { 40 } else { 41 });
    let factor = match (name, v) {
        ("A" | "B", VariantName::Lr | VariantName::RwLr | VariantName::LrPa) => Some((
            name == "A",
            opts.rank,
            true,
            if name == "A" { 30 } else { 31 },
        )),
        ("A" | "B", VariantName::Pa | VariantName::RwPa) => Some(pa_h(name == "A")),
        ("hA" | "hB", VariantName::LrPa) => Some(pa_h(name == "hA")),
        (_, VariantName::RwLrPa) if name != "alpha" && name != "beta" => {
            let (down, j) = match name.split_at(1) {
                ("A", j) => (true, j.parse::<u64>().ok()),
                ("B", j) => (false, j.parse::<u64>().ok()),
                _ => (false, None),
            };
            let j = j.ok_or_else(|| err(format!("unexpected parameter `{full}`")))?;
            Some((down, opts.rank, false, 200 + 2 * j + u64::from(!down)))
        }
        _ => None,
    };
    if let Some((down, rank, lora_zero, salt)) = factor {
        return low_rank_factor(
            b,
            ctx,
            &full,
            down,
            rank,
            lora_zero,
            &mut init::rng(opts.seed, block, salt),
            opts,
        );
    }
    match name {
        "alpha" | "beta" if v.has_rw() => match opts.rw_param {
            RwParam::Raw => {
                let v = init::rw_raw(
                    opts.init,
                    &mut init::rng(opts.seed, block, u64::from(name == "beta")),
                );
                Ok(b.initializer(&full, &[], &[v]))
            }
            RwParam::Softmax => {
                // (α, β) = 2·softmax(a, b): α = 2σ(a − b), β = 2σ(b − a).
                let a = init::rw_logit(opts.init, &mut init::rng(opts.seed, block, 10));
                let bb = init::rw_logit(opts.init, &mut init::rng(opts.seed, block, 11));
                let a = b.initializer(&format!("laurel.{k}.a"), &[], &[a]);
                let bv = b.initializer(&format!("laurel.{k}.b"), &[], &[bb]);
                let two = b.initializer("laurel.two", &[], &two());
                let (x, y) = if name == "alpha" { (a, bv) } else { (bv, a) };
                let (_, d) = b.op(k, "Sub", &[&x, &y], None)?;
                let (_, s) = b.op(k, "Sigmoid", &[&d], None)?;
                Ok(b.op(k, "Mul", &[&s, &two], Some(&full))?.1)
            }
            RwParam::Sigmoid => {
                // α = 2σ(p), β = 2(1 − σ(p)) = 2σ(−p).
                let p = init::rw_logit(opts.init, &mut init::rng(opts.seed, block, 20));
                let p = b.initializer(&format!("laurel.{k}.p"), &[], &[p]);
                let two = b.initializer("laurel.two", &[], &two());
                let arg = if name == "alpha" {
                    p
                } else {
                    b.op(k, "Neg", &[&p], None)?.1
                };
                let (_, s) = b.op(k, "Sigmoid", &[&arg], None)?;
                Ok(b.op(k, "Mul", &[&s, &two], Some(&full))?.1)
            }
        },
        _ => Err(err(format!("unexpected parameter `{full}`"))),
    }
}

/// A low-rank factor of rank `r`: the down-projection `A` (`down`) or the
/// up-projection `B`, zero at identity init when `lora_zero` (LR's `B`),
/// else small seeded values (PA's factors, whose γ are zero).
#[allow(clippy::too_many_arguments, clippy::fn_params_excessive_bools)]
fn low_rank_factor(
    b: &mut Builder<'_>,
    ctx: &BlockCtx<'_>,
    full: &str,
    down: bool,
    rank: u64,
    lora_zero: bool,
    rng: &mut rand::rngs::StdRng,
    opts: &AugmentOptions,
) -> Result<String> {
    let (c, r) = (
        ctx.channels,
        usize::try_from(rank).map_err(|_| err("rank too large"))?,
    );
    if r == 0 {
        return Err(err(format!("{full}: rank 0")));
    }
    let (ci, ri) = (
        i64::try_from(c).map_err(|_| err("D too large"))?,
        i64::try_from(r).map_err(|_| err("rank too large"))?,
    );
    let up_mode = if lora_zero {
        opts.init
    } else {
        super::InitMode::Random
    };
    match ctx.layout {
        Some(Layout::ChannelLast) => {
            // x·A: A is [D, r]; (x·A)·B: B is [r, D].
            if down {
                Ok(b.initializer(full, &[ci, ri], &init::lr_down(c, r, true, rng)))
            } else {
                Ok(b.initializer(full, &[ri, ci], &init::lr_up(c, r, up_mode, rng)))
            }
        }
        Some(Layout::ChannelFirst) => {
            // 1×1 convolutions: weights [out, in, 1, …, 1].
            let spatial = ctx.residual.shape.len().saturating_sub(2);
            let (out, inp, values) = if down {
                (ri, ci, transpose(&init::lr_down(c, r, false, rng), c, r))
            } else {
                (ci, ri, transpose(&init::lr_up(c, r, up_mode, rng), r, c))
            };
            let mut dims = vec![out, inp];
            dims.extend(std::iter::repeat_n(1, spatial));
            Ok(b.initializer(full, &dims, &values))
        }
        None => Err(err(format!(
            "block {}: no low-rank layout for axis {}",
            ctx.k, ctx.residual.axis
        ))),
    }
}

/// `m` is `[rows, cols]` row-major; returns `[cols, rows]`.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols * rows)
        .map(|k| m[(k % rows) * cols + k / rows])
        .collect()
}

/// Estimated FLOPs a block adds: `e` elements, `k` PA terms; a low-rank
/// map of rank `r` costs `4·e·r` (two products), an elementwise op `e`.
fn flops(opts: &AugmentOptions, e: u64, k: u64) -> u64 {
    let lr = |r: u64| 4 * e * r;
    let h = if opts.pa_rank > 0 {
        lr(opts.pa_rank)
    } else {
        0
    };
    let pa = k * (2 * e + h);
    match opts.variant {
        VariantName::Rw => 2 * e,
        VariantName::Lr => lr(opts.rank) + e,
        VariantName::Pa => pa,
        VariantName::RwLr => 2 * e + lr(opts.rank) + e,
        VariantName::RwPa => 2 * e + e + pa,
        VariantName::LrPa => lr(opts.rank) + e + pa,
        VariantName::RwLrPa => 2 * e + e + k * (2 * e + lr(opts.rank)),
    }
}

/// Replaces each residual's add by its extracted term; returns per-block reports.
///
/// # Errors
/// [`Error::Augment`] on a term the lifting does not know (a bug).
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
    };
    let expr = &report.expr;
    let mut lifted: HashMap<usize, String> = HashMap::new();
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

        let ctx = BlockCtx {
            k,
            residual: r,
            channels: r.channels.unwrap_or(0),
            layout: Layout::of(r.axis, r.shape.len()),
        };
        let before = b.g.initializers.len();
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
                TensorLang::Param(p) => param(&mut b, &ctx, p.name(), opts)?,
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
        let parameters: u64 = b.g.initializers[before..]
            .iter()
            .filter_map(|&n| match &b.g.dag[n] {
                Node::Initializer(i) if i.proto.name.starts_with(&format!("laurel.{k}.")) => Some(
                    i.proto
                        .dims
                        .iter()
                        .map(|&d| u64::try_from(d).unwrap_or(0))
                        .product::<u64>(),
                ),
                _ => None,
            })
            .sum();
        let elems: u64 = r
            .shape
            .iter()
            .map(|d| d.parse::<u64>().unwrap_or(1))
            .product();
        let pa_terms = b.g.initializers[before..]
            .iter()
            .filter(|&&n| {
                matches!(&b.g.dag[n], Node::Initializer(i)
                    if i.proto.name.starts_with(&format!("laurel.{k}.gamma")))
            })
            .count() as u64;
        let flops = flops(opts, elems, pa_terms);
        blocks.push(BlockReport {
            block: u32::try_from(k).unwrap_or(u32::MAX),
            node: r.name.clone(),
            parameters,
            flops,
        });
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::transpose;

    #[test]
    fn transpose_swaps_rows_and_columns() {
        // [[1, 2, 3], [4, 5, 6]] → [[1, 4], [2, 5], [3, 6]]
        assert_eq!(
            transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3),
            [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }
}
