//! Custom ONNX operators: the one place where laurelc registers ops with tract-onnx.
//!
//! [`register`] is called by every loader strategy of [`crate::load`](mod@crate::load) (and by
//! [`crate::infer_shapes`]) on a fresh `tract_onnx::onnx()` framework, so whatever it
//! registers is available to every model laurel-runtime loads.
//!
//! It registers nothing yet. Later work registers the `LaurelResidual` op of domain
//! `ai.laurel` here, with
//! `onnx.op_register.insert("LaurelResidual", builder)` where `builder` has type
//! `fn(&tract_onnx::model::ParsingContext, &tract_onnx::pb::NodeProto)
//!     -> TractResult<(Box<dyn InferenceOp>, Vec<String>)>`.
//!
//! Note that tract-onnx 0.23 looks ops up by `op_type` only: the node's `domain` is
//! not consulted, so a custom op's `op_type` must not collide with a standard one (a
//! builder may still check `node.domain` itself and `bail!` on a foreign domain).

/// Registers laurelc's custom operators with a tract-onnx framework. Currently none.
pub fn register(onnx: &mut tract_onnx::Onnx) {
    // Nothing registered yet; see the module documentation.
    let _ = onnx;
}
