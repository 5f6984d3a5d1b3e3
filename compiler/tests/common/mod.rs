//! Small ONNX model builders for the compiler's tests.
#![allow(dead_code, clippy::pedantic, clippy::unwrap_used)]

use onnx_protobuf::tensor_shape_proto::{Dimension, dimension};
use onnx_protobuf::type_proto::{Tensor as TensorType, Value as TypeValue};
use onnx_protobuf::{
    AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};

pub fn value(name: &str, dims: &[i64]) -> ValueInfoProto {
    let shape = TensorShapeProto {
        dim: dims
            .iter()
            .map(|&d| Dimension {
                value: Some(dimension::Value::DimValue(d)),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.into(),
        type_: Some(TypeProto {
            value: Some(TypeValue::TensorType(TensorType {
                elem_type: 1,
                shape: Some(shape).into(),
                ..Default::default()
            })),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}

pub fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(ToString::to_string).collect(),
        output: outputs.iter().map(ToString::to_string).collect(),
        ..Default::default()
    }
}

pub fn f32_tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: 1,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

pub fn i64_tensor(name: &str, dims: &[i64], values: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: 7,
        int64_data: values.to_vec(),
        ..Default::default()
    }
}

pub fn model(graph: GraphProto) -> ModelProto {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
            ..Default::default()
        }],
        producer_name: "laurelc-tests".into(),
        graph: Some(graph).into(),
        ..Default::default()
    }
}

/// y = Relu(x · W + x): a tiny valid model, inputs x:[2,3].
pub fn tiny() -> ModelProto {
    let w = f32_tensor(
        "W",
        &[3, 3],
        &[0.5, -1.0, 0.25, 1.0, 0.0, -0.5, 0.75, 0.5, 1.5],
    );
    model(GraphProto {
        name: "tiny".into(),
        node: vec![
            node("MatMul", "mm", &["x", "W"], &["h"]),
            node("Add", "add", &["h", "x"], &["s"]),
            node("Relu", "relu", &["s"], &["y"]),
        ],
        initializer: vec![w],
        input: vec![value("x", &[2, 3])],
        output: vec![value("y", &[2, 3])],
        ..Default::default()
    })
}

pub fn bytes(m: &ModelProto) -> Vec<u8> {
    m.write_to_bytes().unwrap()
}

pub fn graph_attr(name: &str, g: GraphProto) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: onnx_protobuf::attribute_proto::AttributeType::GRAPH.into(),
        g: Some(g).into(),
        ..Default::default()
    }
}

/// Runs the `laurelc` binary under test.
pub fn laurelc(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_laurelc"))
        .args(args)
        .output()
        .unwrap()
}
