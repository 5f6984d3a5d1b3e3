//! ONNX `TensorProto` files, as in onnx's backend test data
//! (`test_data_set_0/input_0.pb`, `output_0.pb`).

use prost::Message;
use tract_onnx::pb;
use tract_onnx::prelude::Tensor;

use crate::error::{RuntimeError, chain};

/// Decodes a serialized ONNX `TensorProto` into its name (empty if the proto has none)
/// and its value. Data may be in `raw_data` or in the typed fields (`float_data`,
/// `int64_data`, ...). Tensors with external data are rejected.
pub fn read_tensor_pb(bytes: &[u8]) -> Result<(String, Tensor), RuntimeError> {
    let proto = pb::TensorProto::decode(bytes).map_err(|e| RuntimeError::TensorProto {
        message: e.to_string(),
    })?;
    tensor_from_proto(&proto).map(|t| (proto.name.clone(), t))
}

/// Converts a decoded `TensorProto` into a tensor.
pub fn tensor_from_proto(proto: &pb::TensorProto) -> Result<Tensor, RuntimeError> {
    let err = |message: String| RuntimeError::TensorProto { message };
    let name = if proto.name.is_empty() {
        "<unnamed>"
    } else {
        proto.name.as_str()
    };
    if proto.data_location == Some(pb::tensor_proto::DataLocation::External as i32)
        || !proto.external_data.is_empty()
    {
        return Err(err(format!(
            "tensor {name} stores its data externally, which is not supported here"
        )));
    }
    if proto.data_type == pb::tensor_proto::DataType::String as i32 && !proto.raw_data.is_empty() {
        // tract panics on this combination.
        return Err(err(format!(
            "tensor {name}: string tensors cannot use raw_data"
        )));
    }
    tract_onnx::tensor::load_tensor(&tract_onnx::data_resolver::FopenDataResolver, proto, None)
        .map_err(|e| err(format!("tensor {name}: {}", chain(&e))))
}
