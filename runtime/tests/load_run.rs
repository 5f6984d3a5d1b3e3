//! Loading and running tiny ONNX models.
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
use laurel_runtime::tract_onnx::prelude::tract_ndarray::{ArrayD, IxDyn};
use laurel_runtime::{DatumKind, DimSpec, LoadOptions, ModelSource, RuntimeError, Tensor, load};

fn f32_tensor_of(shape: &[usize], data: &[f32]) -> Tensor {
    Tensor::from_shape(shape, data).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

#[test]
fn add_runs_and_adds() {
    let bytes = add_model();
    let r = load(ModelSource::Bytes(&bytes), &LoadOptions::default()).unwrap();
    assert_eq!(r.load_strategy(), "default");
    assert_eq!(r.output_names(), ["c".to_owned()]);
    let names: Vec<_> = r.inputs().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(r.inputs()[0].datum, DatumKind::F32);
    assert_eq!(
        r.inputs()[0].shape,
        vec![DimSpec::Fixed(2), DimSpec::Fixed(3)]
    );
    let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let b = [0.5, -2.0, 10.0, 0.0, -5.0, 1.25];
    // Inputs in reverse order: they are matched by name.
    let out = r
        .run(vec![
            ("b".into(), f32_tensor_of(&[2, 3], &b)),
            ("a".into(), f32_tensor_of(&[2, 3], &a)),
        ])
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, "c");
    assert_eq!(out[0].1.shape(), &[2, 3]);
    assert_eq!(values(&out[0].1), vec![1.5, 0.0, 13.0, 4.0, 0.0, 7.25]);
}

#[test]
fn matmul_with_initializer() {
    let bytes = matmul_model();
    let r = load(ModelSource::Bytes(&bytes), &LoadOptions::default()).unwrap();
    // The initializer W is not an input.
    assert_eq!(r.inputs().len(), 1);
    assert_eq!(r.inputs()[0].name, "x");
    let x = [1.0, 0.0, -1.0, 2.0, 1.0, 0.5];
    let out = r
        .run(vec![("x".into(), f32_tensor_of(&[2, 3], &x))])
        .unwrap();
    // [1,0,-1] @ W = [1-5, 2-6] = [-4, -4]; [2,1,0.5] @ W = [2+3+2.5, 4+4+3] = [7.5, 11]
    assert_eq!(out[0].1.shape(), &[2, 2]);
    assert_eq!(values(&out[0].1), vec![-4.0, -4.0, 7.5, 11.0]);
}

#[test]
fn load_from_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mm.onnx");
    std::fs::write(&path, matmul_model()).unwrap();
    let r = load(ModelSource::Path(&path), &LoadOptions::default()).unwrap();
    let out = r
        .run(vec![("x".into(), f32_tensor_of(&[2, 3], &[0.0; 6]))])
        .unwrap();
    assert_eq!(values(&out[0].1), vec![0.0; 4]);
}

#[test]
fn missing_file_is_io_error() {
    let err = load(
        ModelSource::Path("/nonexistent/model.onnx".as_ref()),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, RuntimeError::Io { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/model.onnx"));
}

#[test]
fn garbage_bytes_are_decode_error() {
    let err = load(
        ModelSource::Bytes(b"\xff\xff\xff not a model"),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, RuntimeError::ModelDecode { .. }), "{err}");
}

#[test]
fn symbolic_dim_from_options() {
    let bytes = symbolic_model();
    let opts = LoadOptions::with_dims([("N", 4)]);
    let r = load(ModelSource::Bytes(&bytes), &opts).unwrap();
    assert_eq!(r.load_strategy(), "default");
    assert_eq!(
        r.inputs()[0].shape,
        vec![DimSpec::Fixed(4), DimSpec::Fixed(3)]
    );
    let x: Vec<f32> = (0..12).map(|i| i as f32 - 5.0).collect();
    let out = r
        .run(vec![("x".into(), f32_tensor_of(&[4, 3], &x))])
        .unwrap();
    assert_eq!(out[0].0, "y");
    assert_eq!(out[0].1.shape(), &[4, 2]);
    assert_eq!(values(&out[0].1), expected_relu_matmul(&x));
}

#[test]
fn symbolic_dim_defaults() {
    let bytes = symbolic_model();
    let r = load(ModelSource::Bytes(&bytes), &LoadOptions::default()).unwrap();
    assert_eq!(
        r.inputs()[0].shape,
        vec![DimSpec::Fixed(1), DimSpec::Fixed(3)]
    );
    let opts = LoadOptions {
        default_dim: Some(5),
        ..LoadOptions::default()
    };
    let r = load(ModelSource::Bytes(&bytes), &opts).unwrap();
    assert_eq!(
        r.inputs()[0].shape,
        vec![DimSpec::Fixed(5), DimSpec::Fixed(3)]
    );
    let x: Vec<f32> = (0..15).map(|i| (i as f32) * 0.5 - 3.0).collect();
    let out = r
        .run(vec![("x".into(), f32_tensor_of(&[5, 3], &x))])
        .unwrap();
    assert_eq!(values(&out[0].1), expected_relu_matmul(&x));
}

#[test]
fn declared_inputs_keep_symbols() {
    let bytes = symbolic_model();
    let specs = laurel_runtime::declared_inputs(ModelSource::Bytes(&bytes)).unwrap();
    assert_eq!(specs.len(), 1);
    assert_eq!(
        specs[0].shape,
        vec![DimSpec::Symbol("N".into()), DimSpec::Fixed(3)]
    );
}

#[test]
fn negative_dim_is_rejected() {
    let bytes = symbolic_model();
    let err = load(
        ModelSource::Bytes(&bytes),
        &LoadOptions::with_dims([("N", -1)]),
    )
    .unwrap_err();
    assert!(
        matches!(err, RuntimeError::UnsupportedModel { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("`N`"), "{err}");
}

#[test]
fn missing_input_is_named() {
    let bytes = add_model();
    let r = load(ModelSource::Bytes(&bytes), &LoadOptions::default()).unwrap();
    let err = r
        .run(vec![("a".into(), f32_tensor_of(&[2, 3], &[0.0; 6]))])
        .unwrap_err();
    match &err {
        RuntimeError::MissingInput { name } => assert_eq!(name, "b"),
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("`b`"));
}

#[test]
fn unknown_and_duplicate_inputs() {
    let bytes = matmul_model();
    let r = load(ModelSource::Bytes(&bytes), &LoadOptions::default()).unwrap();
    let x = || f32_tensor_of(&[2, 3], &[0.0; 6]);
    let err = r
        .run(vec![("x".into(), x()), ("W".into(), x())])
        .unwrap_err();
    assert!(
        matches!(&err, RuntimeError::UnknownInput { name, .. } if name == "W"),
        "{err}"
    );
    let err = r
        .run(vec![("x".into(), x()), ("x".into(), x())])
        .unwrap_err();
    assert!(
        matches!(&err, RuntimeError::DuplicateInput { name } if name == "x"),
        "{err}"
    );
}

#[test]
fn wrong_shape_is_named() {
    let bytes = symbolic_model();
    let r = load(
        ModelSource::Bytes(&bytes),
        &LoadOptions::with_dims([("N", 2)]),
    )
    .unwrap();
    let err = r
        .run(vec![("x".into(), f32_tensor_of(&[3, 3], &[0.0; 9]))])
        .unwrap_err();
    match &err {
        RuntimeError::InputShapeMismatch {
            name,
            expected,
            actual,
        } => {
            assert_eq!(name, "x");
            assert_eq!(expected, &vec![2, 3]);
            assert_eq!(actual, &vec![3, 3]);
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn wrong_dtype_is_named() {
    let bytes = matmul_model();
    let r = load(ModelSource::Bytes(&bytes), &LoadOptions::default()).unwrap();
    let x: Tensor = ArrayD::<i64>::zeros(IxDyn(&[2, 3])).into();
    let err = r.run(vec![("x".into(), x)]).unwrap_err();
    match &err {
        RuntimeError::InputDatumMismatch {
            name,
            expected,
            actual,
        } => {
            assert_eq!(name, "x");
            assert_eq!(expected, "f32");
            assert_eq!(actual, "i64");
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn conflicting_value_info_falls_back() {
    // value_info claims r is [7, 3]; with N = 2 the default strategy cannot unify.
    let bytes = symbolic_model_with(vec![vi("r", F32, &[D::V(7), D::V(3)])], F32);
    let r = load(
        ModelSource::Bytes(&bytes),
        &LoadOptions::with_dims([("N", 2)]),
    )
    .unwrap();
    assert_eq!(r.load_strategy(), "ignore-value-info");
    let x = [1.0, -1.0, 2.0, 0.5, 0.5, -3.0];
    let out = r
        .run(vec![("x".into(), f32_tensor_of(&[2, 3], &x))])
        .unwrap();
    assert_eq!(values(&out[0].1), expected_relu_matmul(&x));
}

#[test]
fn free_symbol_in_value_info_falls_back() {
    // value_info uses a symbol the inputs do not define, as exporters do.
    let bytes = symbolic_model_with(
        vec![vi("r", F32, &[D::P("DynamicDimension.0"), D::V(3)])],
        F32,
    );
    let r = load(
        ModelSource::Bytes(&bytes),
        &LoadOptions::with_dims([("N", 2)]),
    )
    .unwrap();
    // tract cannot unify the free symbol with the concrete 2.
    assert_eq!(r.load_strategy(), "ignore-value-info");
    let x = [1.0, -1.0, 2.0, 0.5, 0.5, -3.0];
    let out = r
        .run(vec![("x".into(), f32_tensor_of(&[2, 3], &x))])
        .unwrap();
    assert_eq!(values(&out[0].1), expected_relu_matmul(&x));
}

#[test]
fn declared_output_facts_are_ignored() {
    // The output is declared int64 ["N", 2] but is f32 [2, 2]; and another model
    // declares a wrong fixed output shape. tract-onnx ignores graph-output facts by
    // default, so the default strategy loads both.
    let bytes = symbolic_model_with(vec![], I64);
    let r = load(
        ModelSource::Bytes(&bytes),
        &LoadOptions::with_dims([("N", 2)]),
    )
    .unwrap();
    assert_eq!(r.load_strategy(), "default");
    let x = [1.0, -1.0, 2.0, 0.5, 0.5, -3.0];
    let out = r
        .run(vec![("x".into(), f32_tensor_of(&[2, 3], &x))])
        .unwrap();
    assert_eq!(values(&out[0].1), expected_relu_matmul(&x));
    let bytes = Graph::new(
        vec![node("Relu", &["x"], &["y"])],
        vec![vi("x", F32, &[D::V(2), D::V(3)])],
        vec![vi("y", F32, &[D::V(7), D::V(7)])],
    )
    .encode();
    let r = load(ModelSource::Bytes(&bytes), &LoadOptions::default()).unwrap();
    assert_eq!(r.load_strategy(), "default");
    let out = r
        .run(vec![("x".into(), f32_tensor_of(&[2, 3], &x))])
        .unwrap();
    assert_eq!(out[0].1.shape(), &[2, 3]);
}

#[test]
fn every_strategy_runs_the_symbolic_model() {
    let bytes = symbolic_model();
    let opts = LoadOptions::with_dims([("N", 3)]);
    let x: Vec<f32> = (0..9).map(|i| 2.0 - i as f32).collect();
    for strategy in laurel_runtime::STRATEGIES {
        let r =
            laurel_runtime::load::load_with_strategy(ModelSource::Bytes(&bytes), &opts, strategy)
                .unwrap();
        assert_eq!(r.load_strategy(), strategy);
        assert_eq!(
            r.inputs()[0].shape,
            vec![DimSpec::Fixed(3), DimSpec::Fixed(3)]
        );
        let out = r
            .run(vec![("x".into(), f32_tensor_of(&[3, 3], &x))])
            .unwrap();
        assert_eq!(out[0].1.shape(), &[3, 2], "{strategy}");
        assert_eq!(values(&out[0].1), expected_relu_matmul(&x), "{strategy}");
    }
    let err = laurel_runtime::load::load_with_strategy(ModelSource::Bytes(&bytes), &opts, "nope")
        .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn all_strategies_failing_reports_first_error_first() {
    // x [N, 3] @ W [4, 2]: no strategy can type it.
    let bytes = Graph::new(
        vec![node("MatMul", &["x", "W"], &["y"])],
        vec![vi("x", F32, &[D::P("N"), D::V(3)])],
        vec![vi("y", F32, &[D::P("N"), D::V(2)])],
    )
    .with_initializers(vec![f32_tensor("W", &[4, 2], &[0.5; 8])])
    .encode();
    let err = load(ModelSource::Bytes(&bytes), &LoadOptions::default()).unwrap_err();
    let RuntimeError::Load { message, .. } = &err else {
        panic!("unexpected {err}")
    };
    assert!(message.starts_with("[default]"), "{message}");
    let later = message
        .find("then [ignore-value-info]")
        .expect("later errors appended");
    assert!(later > 0);
    assert!(message.contains("then [symbolic-at-runtime]"), "{message}");
    assert!(message.contains("then [unoptimized]"), "{message}");
}

#[test]
fn an_op_tract_lacks_is_named_before_any_strategy_runs() {
    let bytes = Graph::new(
        vec![node("NoSuchOpAnywhere", &["x"], &["y"])],
        vec![vi("x", F32, &[D::P("N"), D::V(3)])],
        vec![vi("y", F32, &[D::P("N"), D::V(3)])],
    )
    .encode();
    let err = load(ModelSource::Bytes(&bytes), &LoadOptions::default()).unwrap_err();
    let RuntimeError::UnsupportedModel { message, .. } = &err else {
        panic!("unexpected {err}")
    };
    assert!(
        message.starts_with(
            "node `NoSuchOpAnywhere_y` is NoSuchOpAnywhere, an op tract does not implement"
        ),
        "{message}"
    );
    assert!(!message.contains('\n'), "one line: {message}");
}

#[test]
fn runnable_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<laurel_runtime::Runnable>();
}

#[test]
fn runnable_runs_repeatedly() {
    let bytes = add_model();
    let r = load(ModelSource::Bytes(&bytes), &LoadOptions::default()).unwrap();
    for k in 0..3 {
        let v = k as f32;
        let out = r
            .run(vec![
                ("a".into(), f32_tensor_of(&[2, 3], &[v; 6])),
                ("b".into(), f32_tensor_of(&[2, 3], &[1.0; 6])),
            ])
            .unwrap();
        assert_eq!(values(&out[0].1), vec![v + 1.0; 6]);
    }
}

#[test]
fn dim_expressions_and_unknown_dims() {
    let bytes = Graph::new(
        vec![node("Relu", &["x"], &["y"]), node("Relu", &["u"], &["v"])],
        vec![
            vi("x", F32, &[D::P("2*N"), D::V(3)]),
            vi("u", F32, &[D::Unknown, D::P("?")]),
        ],
        vec![
            vi("y", F32, &[D::P("2*N"), D::V(3)]),
            vi("v", F32, &[D::Unknown, D::Unknown]),
        ],
    )
    .encode();
    let opts = LoadOptions {
        dims: [("N".to_owned(), 3)].into(),
        default_dim: Some(4),
        ..LoadOptions::default()
    };
    let r = load(ModelSource::Bytes(&bytes), &opts).unwrap();
    assert_eq!(
        r.inputs()[0].shape,
        vec![DimSpec::Fixed(6), DimSpec::Fixed(3)]
    );
    assert_eq!(
        r.inputs()[1].shape,
        vec![DimSpec::Fixed(4), DimSpec::Fixed(4)]
    );
    let x: Vec<f32> = (0..18).map(|i| i as f32 - 9.0).collect();
    let u: Vec<f32> = (0..16).map(|i| 8.0 - i as f32).collect();
    let out = r
        .run(vec![
            ("x".into(), f32_tensor_of(&[6, 3], &x)),
            ("u".into(), f32_tensor_of(&[4, 4], &u)),
        ])
        .unwrap();
    assert_eq!(
        values(&out[0].1),
        x.iter().map(|v| v.max(0.0)).collect::<Vec<_>>()
    );
    assert_eq!(out[1].0, "v");
    assert_eq!(
        values(&out[1].1),
        u.iter().map(|v| v.max(0.0)).collect::<Vec<_>>()
    );
    let declared = laurel_runtime::declared_inputs(ModelSource::Bytes(&bytes)).unwrap();
    assert_eq!(declared[0].shape[0], DimSpec::Symbol("2*N".into()));
    assert_eq!(
        declared[1].shape,
        vec![DimSpec::Symbol("?".into()), DimSpec::Symbol("?".into())]
    );
}

#[test]
fn input_shapes_size_the_model_and_bind_its_symbols() {
    // x: [N, 2] and w: [N, 2] share the symbol N; y = x + w.
    let bytes = Graph::new(
        vec![node("Add", &["x", "w"], &["y"])],
        vec![
            vi("x", F32, &[D::P("N"), D::V(2)]),
            vi("w", F32, &[D::P("N"), D::V(2)]),
        ],
        vec![vi("y", F32, &[D::P("N"), D::V(2)])],
    )
    .encode();
    let opts = LoadOptions {
        shapes: [("x".to_owned(), vec![3, 2])].into(),
        ..LoadOptions::default()
    };
    let r = load(ModelSource::Bytes(&bytes), &opts).unwrap();
    // w was not given a shape: it follows N = 3 from x's shape, not the default 1.
    assert_eq!(
        r.inputs()[1].shape,
        vec![DimSpec::Fixed(3), DimSpec::Fixed(2)]
    );
    let out = r
        .run(vec![
            (
                "x".into(),
                f32_tensor_of(&[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
            ),
            (
                "w".into(),
                f32_tensor_of(&[3, 2], &[10.0, 20.0, 30.0, 40.0, 50.0, 60.0]),
            ),
        ])
        .unwrap();
    assert_eq!(values(&out[0].1), [11.0, 22.0, 33.0, 44.0, 55.0, 66.0]);

    // A shape that contradicts a fixed dimension, or an unknown input, is refused.
    let bad = LoadOptions {
        shapes: [("x".to_owned(), vec![3, 5])].into(),
        ..LoadOptions::default()
    };
    assert!(
        load(ModelSource::Bytes(&bytes), &bad)
            .unwrap_err()
            .to_string()
            .contains("does not fit")
    );
    let unknown = LoadOptions {
        shapes: [("z".to_owned(), vec![1])].into(),
        ..LoadOptions::default()
    };
    assert!(
        load(ModelSource::Bytes(&bytes), &unknown)
            .unwrap_err()
            .to_string()
            .contains('z')
    );
}

/// `fixtures/decided/torch_if_two_rates.onnx`: `sr` selects branches whose
/// outputs differ in shape, which tract cannot type.
fn two_rates() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/decided/torch_if_two_rates.onnx")
}

#[test]
fn a_given_input_decides_an_if_at_load_and_no_other_value_runs_then() {
    let path = two_rates();
    let sized = |sr: i64| LoadOptions {
        dims: [("batch".to_string(), 1), ("samples".to_string(), 512)].into(),
        values: [("sr".to_string(), (Vec::new(), vec![sr]))].into(),
        ..LoadOptions::default()
    };
    // Undecided, tract cannot type the If.
    let undecided = LoadOptions {
        values: std::collections::BTreeMap::default(),
        ..sized(0)
    };
    assert!(load(ModelSource::Path(&path), &undecided).is_err());
    let x = f32_tensor_of(&[1, 1, 512], &[0.25; 512]);
    let run = |load_sr: i64, run_sr: i64| {
        let m = load(ModelSource::Path(&path), &sized(load_sr)).unwrap();
        let branch = if load_sr == 16000 {
            "then_branch"
        } else {
            "else_branch"
        };
        assert_eq!(m.decided().ifs, [format!("`/If`: {branch}")]);
        m.run(vec![
            ("input".into(), x.clone()),
            (
                "sr".into(),
                laurel_runtime::tract_onnx::prelude::tensor0(run_sr),
            ),
        ])
    };
    let at16 = values(&run(16000, 16000).unwrap()[0].1);
    let at8 = values(&run(8000, 8000).unwrap()[0].1);
    assert_ne!(at16, at8, "the branches compute different functions");
    match run(16000, 8000) {
        Err(RuntimeError::DecidedInput { name, .. }) => assert_eq!(name, "sr"),
        other => panic!("expected DecidedInput, got {other:?}"),
    }
}

/// `fixtures/torch_tcn_unet.onnx` loads with `time` at 1, but its stride-2
/// convolutions make every output empty there: the loader tries the
/// fallback sizes and keeps the first whose outputs are not empty. Given
/// sizes are kept, even when they make the outputs empty.
#[test]
fn a_model_whose_outputs_are_empty_at_1_runs_at_a_fallback_size() {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/torch_tcn_unet.onnx");
    let m = load(ModelSource::Path(&path), &LoadOptions::default()).unwrap();
    assert_eq!(m.chosen_sizes(), [("time".to_string(), 8)]);
    let shape = m.inputs()[0].concrete_shape().unwrap();
    assert_eq!(shape, [1, 4, 8]);
    let out = m
        .run(vec![("x".into(), f32_tensor_of(&shape, &[0.5; 32]))])
        .unwrap();
    assert_eq!(out[0].1.shape(), [1, 2, 8]);
    let given = LoadOptions {
        dims: [("time".to_string(), 1)].into(),
        ..LoadOptions::default()
    };
    let m = load(ModelSource::Path(&path), &given).unwrap();
    assert!(m.chosen_sizes().is_empty());
}

/// With a time limit set, a load that returns in time is unaffected (on
/// the watchdog's thread), and the limit reads back; `None` removes it.
#[test]
fn a_time_limit_leaves_a_quick_load_alone() {
    laurel_runtime::watchdog::set_time_limit(Some(std::time::Duration::from_mins(1)));
    assert_eq!(
        laurel_runtime::watchdog::time_limit(),
        Some(std::time::Duration::from_mins(1))
    );
    let bytes = add_model();
    let m = load(ModelSource::Bytes(&bytes), &LoadOptions::default()).unwrap();
    let t = f32_tensor_of(&[2, 3], &[1.0; 6]);
    let out = m
        .run(vec![("a".into(), t.clone()), ("b".into(), t)])
        .unwrap();
    assert_eq!(values(&out[0].1), vec![2.0; 6]);
    laurel_runtime::watchdog::set_time_limit(None);
    assert_eq!(laurel_runtime::watchdog::time_limit(), None);
}
