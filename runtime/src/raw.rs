//! Tensors as ONNX raw data: element type code, shape and little-endian bytes.

use tract_onnx::prelude::Tensor;

use crate::datum::DatumKind;

/// An ONNX `TensorProto` payload: `data_type` code, `dims` and `raw_data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawTensor {
    /// ONNX `TensorProto.DataType` code.
    pub data_type: i32,
    /// Dimensions.
    pub dims: Vec<i64>,
    /// Little-endian element bytes, row-major.
    pub raw_data: Vec<u8>,
}

/// The ONNX raw form of a tensor, for the element types laurel-runtime supports
/// (numbers and booleans); `None` for others (strings, `TDim`, …). Assumes a
/// little-endian host, as ONNX's raw data is little-endian.
#[must_use]
pub fn to_raw(t: &Tensor) -> Option<RawTensor> {
    if cfg!(target_endian = "big") {
        return None;
    }
    let kind = DatumKind::from_datum_type(t.datum_type())?;
    let dims = t
        .shape()
        .iter()
        .map(|&d| i64::try_from(d).ok())
        .collect::<Option<Vec<_>>>()?;
    Some(RawTensor {
        data_type: kind.onnx_code(),
        dims,
        raw_data: t.as_bytes().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_and_ints_become_little_endian_bytes() {
        let t = Tensor::from_shape(&[2], &[1.5f32, -2.0]).unwrap();
        let r = to_raw(&t).unwrap();
        assert_eq!((r.data_type, r.dims.clone()), (1, vec![2]));
        assert_eq!(
            r.raw_data,
            [1.5f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat()
        );
        let i = to_raw(&Tensor::from(7i64)).unwrap();
        assert_eq!(
            (i.data_type, i.dims, i.raw_data),
            (7, vec![], 7i64.to_le_bytes().to_vec())
        );
    }
}
