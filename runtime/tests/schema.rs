//! Attribute checks before tract (`laurel_runtime::schema`): each refusal
//! names the node and the attribute, and a model tract would hang or panic
//! on is refused at once. The first two cases are the hangs a mutation
//! campaign found (issue 15): tract turned the axis into a `usize` near 2⁶⁴
//! and looped over that many axes.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use laurel_runtime::tract_onnx::pb;
use laurel_runtime::{LoadOptions, ModelSource, RuntimeError, load};

fn ints(name: &str, v: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        ints: v.to_vec(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ..Default::default()
    }
}

fn int(name: &str, v: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        i: v,
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        ..Default::default()
    }
}

/// `op(x[, w]) -> y` with `x` of `shape` and the given attributes.
fn one_op(
    op: &str,
    shape: &[i64],
    attrs: Vec<pb::AttributeProto>,
    weight: Option<&[i64]>,
) -> Vec<u8> {
    let mut n = node(op, &["x"], &["y"]);
    n.attribute = attrs;
    let mut inits = Vec::new();
    if let Some(dims) = weight {
        n.input.push("w".into());
        let count = usize::try_from(dims.iter().product::<i64>()).unwrap();
        inits.push(f32_tensor("w", dims, &vec![0.5; count]));
    }
    let dims: Vec<D> = shape.iter().map(|&d| D::V(d)).collect();
    Graph::new(vec![n], vec![vi("x", F32, &dims)], vec![vi("y", F32, &[])])
        .with_initializers(inits)
        .encode()
}

fn refusal(bytes: &[u8]) -> String {
    match load(ModelSource::Bytes(bytes), &LoadOptions::default()) {
        Err(RuntimeError::InvalidModel { message, .. }) => message,
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("loaded"),
    }
}

fn loads(bytes: &[u8]) {
    load(ModelSource::Bytes(bytes), &LoadOptions::default()).unwrap();
}

#[test]
fn layer_norm_axis_minus_115_for_rank_3_hung_tract() {
    let m = one_op(
        "LayerNormalization",
        &[2, 3, 4],
        vec![int("axis", -115)],
        Some(&[4]),
    );
    assert_eq!(
        refusal(&m),
        "node `LayerNormalization_y` (LayerNormalization): axis = -115 is out of range for its rank-3 input: expected -3 ≤ axis ≤ 2"
    );
}

#[test]
fn layer_norm_axis_minus_2_pow_42_hung_tract() {
    let m = one_op(
        "LayerNormalization",
        &[2, 3, 4],
        vec![int("axis", -4_294_967_296_001)],
        Some(&[4]),
    );
    assert!(refusal(&m).contains("axis = -4294967296001 is out of range"));
}

#[test]
fn an_axis_past_the_rank_ran_to_zeros_and_is_refused() {
    let m = one_op(
        "LayerNormalization",
        &[2, 3, 4],
        vec![int("axis", 3)],
        Some(&[4]),
    );
    assert!(refusal(&m).contains("axis = 3 is out of range"));
    loads(&one_op(
        "LayerNormalization",
        &[2, 3, 4],
        vec![int("axis", -1)],
        Some(&[4]),
    ));
    loads(&one_op(
        "LayerNormalization",
        &[2, 3, 4],
        vec![int("axis", -2)],
        Some(&[3, 4]),
    ));
}

#[test]
fn flatten_takes_the_rank_itself_and_softmax_does_not() {
    loads(&one_op("Flatten", &[2, 3, 4], vec![int("axis", 3)], None));
    assert!(
        refusal(&one_op("Flatten", &[2, 3, 4], vec![int("axis", 4)], None))
            .contains("-3 ≤ axis ≤ 3")
    );
    assert!(refusal(&one_op("Softmax", &[2, 3], vec![int("axis", 2)], None)).contains("axis = 2"));
}

#[test]
fn ranks_are_carried_through_ops_to_the_attribute_that_needs_them() {
    // x [2, 3, 4] → Relu → Softmax(axis = 3): the Relu keeps the rank.
    let mut relu = node("Relu", &["x"], &["r"]);
    relu.name = "relu".into();
    let mut soft = node("Softmax", &["r"], &["y"]);
    soft.attribute = vec![int("axis", 3)];
    let m = Graph::new(
        vec![relu, soft],
        vec![vi("x", F32, &[D::V(2), D::V(3), D::V(4)])],
        vec![vi("y", F32, &[])],
    )
    .encode();
    assert!(refusal(&m).contains("rank-3 input"));
}

#[test]
fn an_axis_of_unknown_rank_is_bounded() {
    let mut n = node("Softmax", &["x"], &["y"]);
    n.attribute = vec![int("axis", 1 << 40)];
    let m = Graph::new(
        vec![n],
        vec![pb::ValueInfoProto {
            name: "x".into(),
            ..vi("x", F32, &[])
        }],
        vec![vi("y", F32, &[])],
    );
    // `x` declared without a shape: rank unknown.
    let mut bytes = m.encode();
    let mut proto: pb::ModelProto = prost::Message::decode(bytes.as_slice()).unwrap();
    if let Some(pb::type_proto::Value::TensorType(t)) = proto.graph.as_mut().unwrap().input[0]
        .r#type
        .as_mut()
        .unwrap()
        .value
        .as_mut()
    {
        t.shape = None;
    }
    bytes = prost::Message::encode_to_vec(&proto);
    assert!(
        refusal(&bytes).contains("beyond any rank"),
        "{}",
        refusal(&bytes)
    );
}

#[test]
fn axis_lists_are_in_range_and_distinct() {
    assert!(
        refusal(&one_op(
            "ReduceMean",
            &[2, 3],
            vec![ints("axes", &[2])],
            None
        ))
        .contains("axes[0] = 2")
    );
    assert!(
        refusal(&one_op(
            "ReduceMean",
            &[2, 3],
            vec![ints("axes", &[1, -1])],
            None
        ))
        .contains("names an axis twice")
    );
    loads(&one_op(
        "ReduceMean",
        &[2, 3],
        vec![ints("axes", &[-1])],
        None,
    ));
    // Unsqueeze's axes index its output (opset 13 takes them as an input; this
    // model is opset 13, so the attribute form is checked as written).
}

#[test]
fn transpose_perm_is_a_permutation_of_the_inputs_axes() {
    assert!(
        refusal(&one_op(
            "Transpose",
            &[2, 3, 4],
            vec![ints("perm", &[0, 0, 1])],
            None
        ))
        .contains("not a permutation")
    );
    assert!(
        refusal(&one_op(
            "Transpose",
            &[2, 3, 4],
            vec![ints("perm", &[1, 0])],
            None
        ))
        .contains("2 entries for a rank-3 input")
    );
    loads(&one_op(
        "Transpose",
        &[2, 3, 4],
        vec![ints("perm", &[2, 0, 1])],
        None,
    ));
}

#[test]
fn convolution_lists_have_one_entry_per_spatial_axis_and_sane_signs() {
    let w = Some(&[4_i64, 2, 3, 3][..]);
    let conv = |attrs| one_op("Conv", &[1, 2, 8, 8], attrs, w);
    loads(&conv(vec![
        ints("strides", &[2, 2]),
        ints("pads", &[1, 1, 1, 1]),
    ]));
    assert!(
        refusal(&conv(vec![ints("strides", &[2])]))
            .contains("strides = [2] has 1 entries for 2 spatial axes")
    );
    assert!(refusal(&conv(vec![ints("strides", &[0, 1])])).contains("must be positive"));
    assert!(refusal(&conv(vec![ints("pads", &[1, 1, -1, 1])])).contains("must be non-negative"));
    assert!(refusal(&conv(vec![ints("dilations", &[1, 1, 1])])).contains("dilations"));
    assert!(refusal(&conv(vec![ints("kernel_shape", &[3, 0])])).contains("kernel_shape"));
    assert!(refusal(&conv(vec![int("group", 0)])).contains("group = 0 must be positive"));
    assert!(
        refusal(&conv(vec![int("group", 3)]))
            .contains("group = 3 does not divide the weight's first dimension 4")
    );
    assert!(
        refusal(&one_op(
            "MaxPool",
            &[1, 2, 8, 8],
            vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2, 2])],
            None
        ))
        .contains("strides")
    );
}

#[test]
fn block_sizes_and_split_sizes_are_checked() {
    assert!(
        refusal(&one_op(
            "DepthToSpace",
            &[1, 4, 2, 2],
            vec![int("blocksize", 0)],
            None
        ))
        .contains("blocksize = 0")
    );
    assert!(
        refusal(&one_op(
            "Split",
            &[4, 2],
            vec![int("axis", 0), ints("split", &[-1, 5])],
            None
        ))
        .contains("negative size")
    );
}
