//! Builders for tiny ONNX models, encoded with prost.
#![allow(dead_code)]

use prost::Message;
use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::dimension::Value as DimValue;

/// A declared dimension.
#[derive(Clone, Copy)]
pub enum D {
    /// `dim_value`.
    V(i64),
    /// `dim_param`.
    P(&'static str),
    /// Neither.
    Unknown,
}

pub const F32: i32 = DataType::Float as i32;
pub const I64: i32 = DataType::Int64 as i32;

pub fn vi(name: &str, elem: i32, dims: &[D]) -> pb::ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| pb::tensor_shape_proto::Dimension {
            value: match d {
                D::V(v) => Some(DimValue::DimValue(*v)),
                D::P(p) => Some(DimValue::DimParam((*p).to_owned())),
                D::Unknown => None,
            },
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: name.to_owned(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> pb::NodeProto {
    pb::NodeProto {
        input: inputs.iter().map(|s| (*s).to_owned()).collect(),
        output: outputs.iter().map(|s| (*s).to_owned()).collect(),
        name: format!("{op}_{}", outputs.first().copied().unwrap_or("")),
        op_type: op.to_owned(),
        ..Default::default()
    }
}

pub fn f32_tensor(name: &str, dims: &[i64], data: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.to_owned(),
        dims: dims.to_vec(),
        data_type: F32,
        float_data: data.to_vec(),
        ..Default::default()
    }
}

pub struct Graph {
    pub nodes: Vec<pb::NodeProto>,
    pub inputs: Vec<pb::ValueInfoProto>,
    pub outputs: Vec<pb::ValueInfoProto>,
    pub initializers: Vec<pb::TensorProto>,
    pub value_info: Vec<pb::ValueInfoProto>,
}

impl Graph {
    pub fn new(
        nodes: Vec<pb::NodeProto>,
        inputs: Vec<pb::ValueInfoProto>,
        outputs: Vec<pb::ValueInfoProto>,
    ) -> Self {
        Graph {
            nodes,
            inputs,
            outputs,
            initializers: vec![],
            value_info: vec![],
        }
    }

    pub fn with_initializers(mut self, inits: Vec<pb::TensorProto>) -> Self {
        self.initializers = inits;
        self
    }

    pub fn with_value_info(mut self, vis: Vec<pb::ValueInfoProto>) -> Self {
        self.value_info = vis;
        self
    }

    pub fn encode(self) -> Vec<u8> {
        let model = pb::ModelProto {
            ir_version: 8,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: 13,
            }],
            producer_name: "laurel-runtime-tests".into(),
            graph: Some(pb::GraphProto {
                node: self.nodes,
                name: "test".into(),
                initializer: self.initializers,
                input: self.inputs,
                output: self.outputs,
                value_info: self.value_info,
                ..Default::default()
            }),
            ..Default::default()
        };
        model.encode_to_vec()
    }
}

/// c = a + b, all f32 [2, 3].
pub fn add_model() -> Vec<u8> {
    Graph::new(
        vec![node("Add", &["a", "b"], &["c"])],
        vec![
            vi("a", F32, &[D::V(2), D::V(3)]),
            vi("b", F32, &[D::V(2), D::V(3)]),
        ],
        vec![vi("c", F32, &[D::V(2), D::V(3)])],
    )
    .encode()
}

/// The weights of [`matmul_model`]: W = [[1, 2], [3, 4], [5, 6]] (3x2).
pub const W: [f32; 6] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];

/// y = x @ W, x f32 [2, 3], W an initializer [3, 2].
pub fn matmul_model() -> Vec<u8> {
    Graph::new(
        vec![node("MatMul", &["x", "W"], &["y"])],
        vec![vi("x", F32, &[D::V(2), D::V(3)])],
        vec![vi("y", F32, &[D::V(2), D::V(2)])],
    )
    .with_initializers(vec![f32_tensor("W", &[3, 2], &W)])
    .encode()
}

/// r = relu(x); y = r @ W; x f32 ["N", 3], y ["N", 2]. `value_info` annotates r as ["N", 3].
pub fn symbolic_model() -> Vec<u8> {
    symbolic_model_with(vec![vi("r", F32, &[D::P("N"), D::V(3)])], F32)
}

/// [`symbolic_model`] with given `value_info` and declared output element type.
pub fn symbolic_model_with(value_info: Vec<pb::ValueInfoProto>, out_elem: i32) -> Vec<u8> {
    Graph::new(
        vec![
            node("Relu", &["x"], &["r"]),
            node("MatMul", &["r", "W"], &["y"]),
        ],
        vec![vi("x", F32, &[D::P("N"), D::V(3)])],
        vec![vi("y", out_elem, &[D::P("N"), D::V(2)])],
    )
    .with_initializers(vec![f32_tensor("W", &[3, 2], &W)])
    .with_value_info(value_info)
    .encode()
}

/// relu(x) @ W computed by hand, x row-major [n, 3].
pub fn expected_relu_matmul(x: &[f32]) -> Vec<f32> {
    x.chunks(3)
        .flat_map(|row| {
            let r: Vec<f32> = row.iter().map(|v| v.max(0.0)).collect();
            (0..2).map(move |j| (0..3).map(|k| r[k] * W[k * 2 + j]).sum::<f32>())
        })
        .collect()
}
