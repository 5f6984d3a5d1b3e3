//! Fusion inside subgraphs (`If` branches, `Loop` and `Scan` bodies) that
//! hold `LAuReL` blocks.
//!
//! A subgraph that reads a `laurel.*` value or holds a `laurel.*` op (at
//! any depth) is fused as its standalone model
//! ([`crate::analysis::scopes::standalone_model`]): the outer weights it
//! reads are copied in, so that the block's scales fold into them as they
//! would in the main graph, into new initializers of the subgraph
//! (`<W>.fused`). It is then put back ([`crate::onnx::subgraph::put_back`]);
//! a value it defines anew whose name the enclosing graph uses already is
//! renamed; the outer initializers no graph reads any more (the block's
//! parameters, once folded) are removed by the caller. Subgraphs without
//! blocks are left as they are. Nested subgraphs are fused inside their
//! parent's standalone model, by the same [`super::fuse_model_with_progress`].
//!
//! ```text
//! before:                                  after:
//! main: laurel.0.a, laurel.0.b, W          main: If(c) then_branch = {
//!       If(c) then_branch = {                      W.fused = a·W (initializer)
//!         y = a·conv(x, W) + b·x }                 y = conv(x, W.fused) + b·x }
//! ```
//! (or `b` folded further into the next op, as in the main graph).
//!
//! Cost: one fusion per subgraph with blocks, one shape inference of the
//! enclosing graph, and a copy of the outer initializers each reads.

use onnx_protobuf::GraphProto;
use petgraph::stable_graph::NodeIndex;

use crate::error::{Error, Result};
use crate::ir::Model;
use crate::onnx::subgraph::{Slot, any_node, put_back, slot_label, subgraph_slots};

use super::{FuseOptions, FuseSummary};

/// Fuses the subgraphs of `model`'s nodes that hold `LAuReL` blocks, puts
/// them back, and adds what each fusion did to `summary`.
///
/// # Errors
/// [`Error::Fuse`] when a subgraph cannot be made a model, fused, or put
/// back.
pub(super) fn fuse_subgraphs(
    model: &mut Model,
    opts: &FuseOptions,
    summary: &mut FuseSummary,
) -> Result<()> {
    let g = &model.graph;
    let mut todo: Vec<(NodeIndex, Slot, String, GraphProto)> = Vec::new();
    for &n in &g.op_order {
        let Some(op) = g.dag[n].as_op() else { continue };
        for (slot, attr, sub) in subgraph_slots(&op.proto) {
            if holds_blocks(sub) {
                let name = crate::analysis::scopes::holder_name(model, n);
                let path = slot_label(&op.proto, &name, attr, slot);
                todo.push((n, slot, path, sub.clone()));
            }
        }
    }
    if todo.is_empty() {
        return Ok(());
    }
    let err = |path: &str, e: &dyn std::fmt::Display| Error::Fuse {
        message: format!("in {path}: {e}"),
    };
    let (values, filled, _) = crate::analysis::infer_values_in_two(model)?;
    for (holder, slot, path, sub) in todo {
        let (mut m, captured) = crate::analysis::scopes::standalone_model(
            model,
            holder,
            &sub,
            &values,
            filled.as_ref(),
            &path,
        )
        .map_err(|e| err(&path, &e))?;
        let got = super::fuse_model_with_progress(&mut m, opts, &mut laurel_runtime::Silent)
            .map_err(|e| err(&path, &e))?;
        merge(summary, got);
        for o in &m.header.opset_import {
            if !model
                .header
                .opset_import
                .iter()
                .any(|p| p.domain == o.domain)
            {
                model.header.opset_import.push(o.clone());
            }
        }
        put_back(model, holder, slot, &m, &captured).map_err(|e| err(&path, &e))?;
    }
    Ok(())
}

/// Whether a subgraph reads a `laurel.*` value or holds a `laurel.*` op, in
/// itself or in a subgraph of its own.
fn holds_blocks(g: &GraphProto) -> bool {
    any_node(g, &|n| {
        n.name.starts_with("laurel.") || n.input.iter().any(|i| i.starts_with("laurel."))
    })
}

/// Adds a subgraph's fusion to the model's: counts summed, sizes the
/// largest, its blocks' outcomes (in block order).
fn merge(summary: &mut FuseSummary, got: FuseSummary) {
    summary.windows += got.windows;
    for (k, v) in got.fired {
        *summary.fired.entry(k).or_insert(0) += v;
    }
    for (k, v) in got.refused {
        *summary.refused.entry(k).or_insert(0) += v;
    }
    summary.classes = summary.classes.max(got.classes);
    summary.nodes = summary.nodes.max(got.nodes);
    summary.iterations += got.iterations;
    if got.hit_limit && !summary.hit_limit {
        summary.hit_limit = true;
        summary.stop = got.stop;
    }
    summary.cost_before += got.cost_before;
    summary.cost_after += got.cost_after;
    summary.saturation_seconds += got.saturation_seconds;
    summary.extraction_seconds += got.extraction_seconds;
    summary.low_rank_products += got.low_rank_products;
    summary.dequantization_scales += got.dequantization_scales;
    summary.blocks.extend(got.blocks);
    summary.blocks.sort_by_key(|b| b.block);
}
