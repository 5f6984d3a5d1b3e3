//! Custom ONNX operators: the one place where laurelc registers ops with tract-onnx.
//!
//! [`register`] is called by every loader strategy of [`crate::load`](mod@crate::load) (and by
//! [`crate::infer_shapes`]) on a fresh `tract_onnx::onnx()` framework, so whatever it
//! registers is available to every model laurel-runtime loads.
//!
//! Registered ops, one module each:
//!
//! - [`laurel_residual`]: `ai.laurel::LaurelResidual` (since version 1), the fused
//!   `LAuReL` residual `y = Σᵢ cᵢ·tᵢ`, normatively defined in `docs/laurel-op.md`.
//!
//! Note that tract-onnx 0.23 looks ops up by `op_type` only: the node's `domain` is
//! not consulted, so a custom op's `op_type` must not collide with a standard one, and
//! each builder here checks `node.domain` itself and refuses a foreign domain.

pub mod laurel_residual;

/// Registers laurelc's custom operators with a tract-onnx framework:
/// `LaurelResidual` with its [`laurel_residual::Implementation::REGISTERED`]
/// implementation.
pub fn register(onnx: &mut tract_onnx::Onnx) {
    laurel_residual::register(onnx, laurel_residual::Implementation::REGISTERED);
}
