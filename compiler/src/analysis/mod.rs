//! Analyses of the IR.
//!
//! - [`constants`]: which values are constant (computable from initializers alone).
//! - [`reach`]: data-ancestor and data-descendant sets, where paths through
//!   `Shape`/`Size` do not count.
//! - [`residual`]: canonical (identity) residual adds and projection shortcuts.
//! - [`stream`]: residual streams, the chains of blocks PA needs.
//! - [`dot`]: a Graphviz picture of the streams.
//! - [`flops`]: FLOPs estimates of matrix products and convolutions.
//! - [`types`]: every value's element type and shape, from tract's inference.

pub mod constants;
pub mod dot;
pub mod flops;
pub mod reach;
pub mod residual;
pub mod stream;
pub mod types;

pub use residual::{Residual, ResidualKind, find_residuals};
pub use stream::assign_streams;

use laurel_runtime::{DimSpec, InferredValue, LoadOptions, ModelSource};

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

/// Float initializers of at least this many elements are left out of the
/// model tract analyses (see [`crate::onnx::to_shape_probe_bytes`]): shapes
/// never depend on weights that large, and decoding them would cost a copy of
/// the model.
pub const PROBE_MIN_ELEMENTS: u64 = 1024;

/// Finds a model's residuals. Shapes come from tract's inference (symbolic,
/// so that equal shapes are equal for every input size) on a shape probe of
/// the model, without its large weights. O(A · (V + E)) after inference.
///
/// # Errors
/// The probe cannot be encoded, or shape inference fails outright.
pub fn analyse_residuals(model: &Model) -> Result<ResidualAnalysis> {
    let (values, shape_strategy) = infer_values(model)?;
    let mut residuals = find_residuals(&model.graph, &values);
    assign_streams(&model.graph, &mut residuals);
    Ok(ResidualAnalysis {
        residuals,
        shape_strategy,
    })
}

/// The inferred element type and shape of every value, and how they were
/// inferred: tract's symbolic inference on a shape probe of the model
/// (without its large weights), or, when that fails, concrete inference at
/// two sizes keeping only the dimensions both agree on.
///
/// # Errors
/// The probe cannot be encoded, or shape inference fails outright.
pub fn infer_values(
    model: &Model,
) -> Result<(std::collections::BTreeMap<String, InferredValue>, String)> {
    let probe = crate::onnx::to_shape_probe_bytes(model, PROBE_MIN_ELEMENTS)?;
    let source = ModelSource::Bytes(&probe);
    let symbolic = laurel_runtime::infer_symbolic_shapes(source, &LoadOptions::default())?;
    let (values, shape_strategy) = if symbolic.strategy.starts_with("symbolic") {
        (symbolic.values, symbolic.strategy)
    } else {
        // The concrete fallback gave every symbol one size, where [N,C,H,W] and
        // [N,C,1,1] can look equal. Infer at two other sizes and keep a
        // dimension only where both agree, so a broadcast is never mistaken for
        // equal shapes.
        let at = |d| {
            laurel_runtime::infer_shapes(
                source,
                &LoadOptions {
                    default_dim: Some(d),
                    ..LoadOptions::default()
                },
            )
        };
        let (a, b) = (at(64)?, at(96)?);
        let strategy = format!(
            "concrete at sizes 64 and 96 ({}, {})",
            a.strategy, b.strategy
        );
        (agreeing_shapes(a.values, &b.values), strategy)
    };
    Ok((values, shape_strategy))
}

/// Shapes from two inferences at different sizes: a dimension that differs
/// becomes a symbol naming both sizes; a value whose rank differs, or that
/// one side lacks, has no shape.
fn agreeing_shapes(
    a: std::collections::BTreeMap<String, InferredValue>,
    b: &std::collections::BTreeMap<String, InferredValue>,
) -> std::collections::BTreeMap<String, InferredValue> {
    a.into_iter()
        .map(|(name, mut va)| {
            let sb = b.get(&name).and_then(|v| v.shape.as_ref());
            va.shape = match (va.shape.take(), sb) {
                (Some(sa), Some(sb)) if sa.len() == sb.len() => Some(
                    sa.into_iter()
                        .zip(sb)
                        .map(|(x, y)| {
                            if x == *y {
                                x
                            } else {
                                DimSpec::Symbol(format!("{x:?}|{y:?}"))
                            }
                        })
                        .collect(),
                ),
                _ => None,
            };
            (name, va)
        })
        .collect()
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
