//! `infer_shapes`.
// Test code: panicking helpers and exact float comparisons are intended.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::float_cmp,
    clippy::cast_precision_loss,
    clippy::unnecessary_wraps
)]

mod common;

use common::*;
use laurel_runtime::{DatumKind, DimSpec, LoadOptions, ModelSource, infer_shapes};

fn fixed(dims: &[usize]) -> Option<Vec<DimSpec>> {
    Some(dims.iter().copied().map(DimSpec::Fixed).collect())
}

#[test]
fn shapes_of_every_value() {
    let bytes = symbolic_model();
    let got = infer_shapes(
        ModelSource::Bytes(&bytes),
        &LoadOptions::with_dims([("N", 2)]),
    )
    .unwrap();
    assert_eq!(got.strategy, "default");
    assert!(got.error.is_none());
    for (name, shape) in [("x", [2, 3]), ("r", [2, 3]), ("W", [3, 2]), ("y", [2, 2])] {
        let v = &got.values[name];
        assert_eq!(v.datum, Some(DatumKind::F32), "{name}");
        assert_eq!(v.shape, fixed(&shape), "{name}");
    }
}

#[test]
fn shapes_with_conflicting_value_info() {
    let bytes = symbolic_model_with(vec![vi("r", F32, &[D::V(7), D::V(3)])], F32);
    let got = infer_shapes(
        ModelSource::Bytes(&bytes),
        &LoadOptions::with_dims([("N", 5)]),
    )
    .unwrap();
    assert_eq!(got.strategy, "ignore-value-info");
    assert_eq!(got.values["r"].shape, fixed(&[5, 3]));
    assert_eq!(got.values["y"].shape, fixed(&[5, 2]));
}

#[test]
fn unknown_op_leaves_its_output_unknown() {
    let bytes = Graph::new(
        vec![
            node("Relu", &["x"], &["r"]),
            node("NoSuchOpAnywhere", &["r"], &["y"]),
        ],
        vec![vi("x", F32, &[D::V(2), D::V(3)])],
        vec![vi("y", F32, &[D::V(2), D::V(3)])],
    )
    .encode();
    let got = infer_shapes(ModelSource::Bytes(&bytes), &LoadOptions::default()).unwrap();
    assert_eq!(got.values["r"].shape, fixed(&[2, 3]));
    assert_eq!(got.values["y"].shape, None);
}

#[test]
fn partial_shapes_when_analysis_fails() {
    // Reshaping 2x3 to [5] fails tract's analysis.
    let target = laurel_runtime::tract_onnx::pb::TensorProto {
        name: "s".into(),
        dims: vec![1],
        data_type: I64,
        int64_data: vec![5],
        ..Default::default()
    };
    let bytes = Graph::new(
        vec![
            node("Relu", &["x"], &["r"]),
            node("Reshape", &["r", "s"], &["y"]),
        ],
        vec![vi("x", F32, &[D::V(2), D::V(3)])],
        vec![vi("y", F32, &[D::V(5)])],
    )
    .with_initializers(vec![target])
    .encode();
    let got = infer_shapes(ModelSource::Bytes(&bytes), &LoadOptions::default()).unwrap();
    assert_eq!(got.strategy, "partial");
    let error = got.error.unwrap();
    assert!(error.starts_with("[default]"), "{error}");
    assert!(error.contains("Reshape"), "{error}");
    assert_eq!(got.values["r"].shape, fixed(&[2, 3]));
    assert_eq!(got.values["s"].shape, fixed(&[1]));
    assert_eq!(got.values["s"].datum, Some(DatumKind::I64));
    assert_eq!(got.values["y"].shape, None);
}

#[test]
fn impossible_broadcast_is_a_symbolic_expression() {
    // tract does not reject [2, 3] + [4, 5] at analysis: the dims become
    // `broadcast(..)` expressions. Callers comparing shapes must not treat them as known.
    let bytes = Graph::new(
        vec![node("Add", &["x", "z"], &["y"])],
        vec![
            vi("x", F32, &[D::V(2), D::V(3)]),
            vi("z", F32, &[D::V(4), D::V(5)]),
        ],
        vec![vi("y", F32, &[D::V(2), D::V(3)])],
    )
    .encode();
    let got = infer_shapes(ModelSource::Bytes(&bytes), &LoadOptions::default()).unwrap();
    let shape = got.values["y"].shape.clone().unwrap();
    assert!(
        shape.iter().all(|d| matches!(d, DimSpec::Symbol(_))),
        "{shape:?}"
    );
}

#[test]
fn symbolic_shapes_keep_input_symbols() {
    let bytes = symbolic_model();
    let got =
        laurel_runtime::infer_symbolic_shapes(ModelSource::Bytes(&bytes), &LoadOptions::default())
            .unwrap();
    assert_eq!(got.strategy, "symbolic");
    let sym = |n: &str| {
        Some(vec![
            DimSpec::Symbol("N".into()),
            DimSpec::Fixed(n.parse().unwrap()),
        ])
    };
    assert_eq!(got.values["r"].shape, sym("3"));
    assert_eq!(got.values["y"].shape, sym("2"));
    // Fixing the symbol through the options makes it a number again.
    let fixed_n = laurel_runtime::infer_symbolic_shapes(
        ModelSource::Bytes(&bytes),
        &LoadOptions::with_dims([("N", 4)]),
    )
    .unwrap();
    assert_eq!(fixed_n.values["y"].shape, fixed(&[4, 2]));
}
