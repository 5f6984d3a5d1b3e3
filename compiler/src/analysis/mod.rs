//! Analyses of the IR.
//!
//! - [`constants`]: which values are constant (computable from initializers alone).
//! - [`reach`]: data-ancestor and data-descendant sets, where paths through
//!   `Shape`/`Size` do not count.
//! - [`residual`]: canonical (identity) residual adds and projection shortcuts.
//! - [`stream`]: residual streams, the chains of blocks PA needs.
//! - [`dot`]: a Graphviz picture of the streams.

pub mod constants;
pub mod dot;
pub mod reach;
pub mod residual;
pub mod stream;

pub use residual::{Residual, ResidualKind, find_residuals};
pub use stream::assign_streams;

use laurel_runtime::{LoadOptions, ModelSource};

use crate::error::Result;
use crate::ir::Model;

/// The residual analysis of a model: its residuals with streams assigned,
/// and the tract strategy that inferred the shapes.
#[derive(Debug, Clone)]
pub struct ResidualAnalysis {
    /// Residuals in topological order.
    pub residuals: Vec<Residual>,
    /// How tract inferred the shapes (see [`laurel_runtime::infer_symbolic_shapes`]).
    pub shape_strategy: String,
}

/// Finds a model's residuals. `source` is the same model as `model`, for
/// tract's shape inference (symbolic, so that equal shapes are equal for
/// every input size). O(A · (V + E)) after inference.
///
/// # Errors
/// Shape inference fails outright.
pub fn analyse_residuals(model: &Model, source: ModelSource<'_>) -> Result<ResidualAnalysis> {
    let shapes = laurel_runtime::infer_symbolic_shapes(source, &LoadOptions::default())?;
    let mut residuals = find_residuals(&model.graph, &shapes.values);
    assign_streams(&model.graph, &mut residuals);
    Ok(ResidualAnalysis {
        residuals,
        shape_strategy: shapes.strategy,
    })
}

/// Op types that carry learned weights: a residual branch must hold one.
pub const PARAMETRIC_OPS: &[&str] = &[
    "Conv",
    "ConvTranspose",
    "ConvInteger",
    "QLinearConv",
    "MatMul",
    "Gemm",
    "MatMulInteger",
    "QLinearMatMul",
    "RNN",
    "LSTM",
    "GRU",
];

/// Whether an op of this type (default ONNX domain) carries learned weights.
#[must_use]
pub fn is_parametric(op_type: &str) -> bool {
    PARAMETRIC_OPS.contains(&op_type)
}

/// Whether an op belongs to the default ONNX domain.
#[must_use]
pub fn is_onnx_domain(domain: &str) -> bool {
    domain.is_empty() || domain == "ai.onnx"
}
