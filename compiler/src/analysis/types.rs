//! The element type and shape of every value, as tract infers them
//! ([`super::infer_values`]), in the e-graph's types
//! ([`laurel_passes::shape::TensorType`]); and an initializer's, read from the
//! tensor itself. O(V) after inference.

use std::collections::HashMap;

use laurel_passes::shape::{DType, Dim, Shape, TensorType};
use laurel_runtime::{DatumKind, DimSpec, InferredValue};
use onnx_protobuf::TensorProto;

use crate::error::Result;
use crate::ir::Model;

/// The element type of an ONNX `TensorProto.DataType`, by the runtime's
/// table (plus `bfloat16`, which the runtime does not run), so an
/// initializer's type reads like the inferred type of the same value.
#[must_use]
pub fn dtype_of_onnx(t: i32) -> Option<DType> {
    const BFLOAT16: i32 = 16;
    if t == BFLOAT16 {
        return Some(DType::BF16);
    }
    DatumKind::from_onnx_code(t).map(dtype_of_kind)
}

/// The element type of a runtime datum kind.
#[must_use]
pub fn dtype_of_kind(k: DatumKind) -> DType {
    match k {
        DatumKind::F16 => DType::F16,
        DatumKind::F32 => DType::F32,
        DatumKind::F64 => DType::F64,
        DatumKind::I32 => DType::I32,
        DatumKind::I64 => DType::I64,
        DatumKind::Bool => DType::Bool,
        other => DType::Other(other.as_str().to_owned()),
    }
}

/// Whether an element type is a floating-point one.
#[must_use]
pub fn is_float(d: Option<&DType>) -> bool {
    matches!(d, Some(DType::F16 | DType::F32 | DType::F64 | DType::BF16))
}

/// A shape as tract inferred it, in the e-graph's dims.
#[must_use]
pub fn shape_of(dims: &[DimSpec]) -> Shape {
    dims.iter()
        .map(|d| match d {
            DimSpec::Fixed(n) => Dim::Fixed(*n as u64),
            DimSpec::Symbol(s) => Dim::Sym(s.clone()),
        })
        .collect()
}

/// The type tract inferred for a value.
#[must_use]
pub fn type_of(v: &InferredValue) -> TensorType {
    TensorType {
        shape: v.shape.as_deref().map(shape_of),
        dtype: v.datum.map(dtype_of_kind),
    }
}

/// An initializer's type, from its dims and data type.
#[must_use]
pub fn initializer_type(t: &TensorProto) -> TensorType {
    TensorType {
        shape: Some(
            t.dims
                .iter()
                .map(|&d| Dim::Fixed(u64::try_from(d).unwrap_or(0)))
                .collect(),
        ),
        dtype: dtype_of_onnx(t.data_type),
    }
}

/// The type of every value, by name, as far as known.
pub type ValueTypes = HashMap<String, TensorType>;

/// The types of the model's values from tract's inference.
///
/// # Errors
/// As [`super::infer_values`].
pub fn value_types(model: &Model) -> Result<ValueTypes> {
    let (values, _) = super::infer_values(model)?;
    Ok(values
        .iter()
        .map(|(k, v)| (k.clone(), type_of(v)))
        .collect())
}
