//! Lowering: residual adds → `resadd` terms.
//!
//! Each selected residual becomes `(resadd $skip $branch)` with its two
//! operands as opaque value leaves, typed by tract's inferred shape and
//! element type, and its e-class tagged as block `k` (its position in the
//! residual analysis, whatever `--blocks` selects) with the residual's
//! channel axis. Nothing else of the graph is
//! lowered: augmentation rewrites the adds only.
//!
//! For a variant with PA, each block's earlier stream states are lowered
//! too, as value leaves recorded for its block
//! ([`TensorGraph::record_states`]): the skip inputs of the earlier
//! residuals of the same stream (all of the analysis's, selected or not),
//! with the same shape and element type as this block's skip, nearest
//! first, at most `window − 1` of them. They are values the model
//! already computes before this block, so lifting reads them by name.
//! O(R²) at worst (R residuals), O(R·k) leaves.

use laurel_passes::analysis::Leaf;
use laurel_passes::block::{Block, BlockId};
use laurel_passes::lang::ValueRef;
use laurel_passes::shape::{DType, TensorType};
use laurel_passes::{TensorGraph, TensorLang};

use super::AugmentOptions;
use crate::analysis::Residual;

/// The lowered residuals: the e-graph and one root per residual, in order.
pub struct Lowered {
    /// The e-graph holding the `resadd` terms.
    pub graph: TensorGraph,
    /// Each residual's e-class.
    pub roots: Vec<egg::Id>,
}

/// The earlier states PA reads for `r`: skip inputs of the residuals of
/// `all` in `r`'s stream before it, of its shape and type, nearest first,
/// at most `window − 1`.
#[must_use]
pub fn earlier_states<'a>(r: &Residual, all: &'a [Residual], window: usize) -> Vec<&'a str> {
    let mut earlier: Vec<&Residual> = all
        .iter()
        .filter(|q| {
            q.stream == r.stream
                && q.index < r.index
                && q.shape == r.shape
                && q.dtype == r.dtype
                && q.skip != r.skip
        })
        .collect();
    earlier.sort_by_key(|q| std::cmp::Reverse(q.index));
    let mut names: Vec<&str> = Vec::new();
    for q in earlier {
        if names.len() + 1 >= window {
            break;
        }
        if !names.contains(&q.skip.as_str()) {
            names.push(&q.skip);
        }
    }
    names
}

/// Lowers `residuals`, each with its block number; `all` is the whole
/// analysis, where PA's earlier states come from.
///
/// # Errors
/// A message when a term is refused (a bug in the analysis: operands of a
/// residual always have equal shapes).
pub fn lower(
    residuals: &[(usize, &Residual)],
    all: &[Residual],
    opts: &AugmentOptions,
) -> Result<Lowered, String> {
    let mut graph = TensorGraph::new();
    let mut roots = Vec::with_capacity(residuals.len());
    for &(k, r) in residuals {
        let ty = TensorType::new(r.shape.clone(), DType::F32);
        let mut leaf = |name: &str| -> Result<egg::Id, String> {
            let v = ValueRef::new(name).map_err(|e| e.to_string())?;
            // A value may be an operand of two residuals; declaring it twice with one type is fine.
            let _ = graph.declare(Leaf::Value(v), ty.clone());
            graph
                .add_checked(TensorLang::Value(v))
                .map_err(|e| e.to_string())
        };
        let skip = leaf(&r.skip)?;
        let branch = leaf(&r.branch)?;
        let states = if let Some(pa) = opts.variant.pa {
            earlier_states(r, all, pa.window.get())
                .into_iter()
                .map(&mut leaf)
                .collect::<Result<Vec<_>, _>>()?
        } else {
            Vec::new()
        };
        let root = graph
            .add_checked(TensorLang::ResAdd([skip, branch]))
            .map_err(|e| e.to_string())?;
        let id = BlockId(u32::try_from(k).map_err(|_| "too many residuals".to_string())?);
        graph
            .tag_block(
                root,
                Block {
                    id,
                    channel_axis: r.axis,
                },
            )
            .map_err(|e| e.to_string())?;
        if !states.is_empty() {
            graph.record_states(id, states).map_err(|e| e.to_string())?;
        }
        roots.push(root);
    }
    Ok(Lowered { graph, roots })
}
