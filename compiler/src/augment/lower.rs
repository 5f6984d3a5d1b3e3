//! Lowering: residual adds → `resadd` terms.
//!
//! Each selected residual becomes `(resadd $skip $branch)` with its two
//! operands as opaque value leaves, typed by tract's inferred shape and
//! element type, and its e-class tagged as block `k` (its position in the
//! selection) with the residual's channel axis. Nothing else of the graph is
//! lowered: augmentation rewrites the adds only. O(R).

use laurel_passes::analysis::Leaf;
use laurel_passes::block::{Block, BlockId};
use laurel_passes::lang::ValueRef;
use laurel_passes::shape::{DType, Dim, TensorType};
use laurel_passes::{TensorGraph, TensorLang};

use crate::analysis::Residual;

/// The lowered residuals: the e-graph and one root per residual, in order.
pub struct Lowered {
    /// The e-graph holding the `resadd` terms.
    pub graph: TensorGraph,
    /// Each residual's e-class.
    pub roots: Vec<egg::Id>,
}

fn dims(shape: &[String]) -> Vec<Dim> {
    shape
        .iter()
        .map(|d| {
            d.parse::<u64>()
                .map_or_else(|_| Dim::Sym(d.clone()), Dim::Fixed)
        })
        .collect()
}

/// Lowers `residuals`, each with its block number.
///
/// # Errors
/// A message when a term is refused (a bug in the analysis: operands of a
/// residual always have equal shapes).
pub fn lower(residuals: &[(usize, &Residual)]) -> Result<Lowered, String> {
    let mut graph = TensorGraph::new();
    let mut roots = Vec::with_capacity(residuals.len());
    for &(k, r) in residuals {
        let ty = TensorType::new(dims(&r.shape), DType::F32);
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
        roots.push(root);
    }
    Ok(Lowered { graph, roots })
}
