//! Reading any numeric tensor as `f64` values (crate-internal helper).

use tract_onnx::prelude::{Datum, DatumType, Tensor, f16};

fn collect<T: Datum + Copy>(t: &Tensor, f: impl Fn(T) -> f64) -> Option<Vec<f64>> {
    t.to_plain_array_view::<T>()
        .ok()
        .map(|v| v.iter().map(|&x| f(x)).collect())
}

/// The elements of `t` in C order as `f64`, or `None` for non-numeric element types
/// (strings, blobs, quantized or exotic tensors). `TDim` tensors are read when every
/// element is a plain integer. 64-bit integers beyond 2^53 lose precision.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn as_f64(t: &Tensor) -> Option<Vec<f64>> {
    match t.datum_type() {
        DatumType::F16 => collect::<f16>(t, f16::to_f64),
        DatumType::F32 => collect::<f32>(t, f64::from),
        DatumType::F64 => collect::<f64>(t, |x| x),
        DatumType::I8 => collect::<i8>(t, f64::from),
        DatumType::I16 => collect::<i16>(t, f64::from),
        DatumType::I32 => collect::<i32>(t, f64::from),
        DatumType::I64 => collect::<i64>(t, |x| x as f64),
        DatumType::U8 => collect::<u8>(t, f64::from),
        DatumType::U16 => collect::<u16>(t, f64::from),
        DatumType::U32 => collect::<u32>(t, f64::from),
        DatumType::U64 => collect::<u64>(t, |x| x as f64),
        DatumType::Bool => collect::<bool>(t, |b| if b { 1.0 } else { 0.0 }),
        DatumType::TDim => t
            .cast_to::<i64>()
            .ok()
            .and_then(|c| collect::<i64>(&c, |x| x as f64)),
        _ => None,
    }
}
