//! `random_inputs`, `compare` and `summarize`.
// Test code: panicking helpers and exact float comparisons are intended.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::float_cmp,
    clippy::cast_precision_loss,
    clippy::unnecessary_wraps
)]

use laurel_runtime::random::INT_HIGH;
use laurel_runtime::{
    DatumKind, DimSpec, InputSpec, RuntimeError, Tensor, compare, random_inputs, summarize,
};

fn spec(name: &str, datum: DatumKind, shape: &[usize]) -> InputSpec {
    InputSpec {
        name: name.into(),
        datum,
        shape: shape.iter().copied().map(DimSpec::Fixed).collect(),
        index_rows: None,
    }
}

fn specs() -> Vec<InputSpec> {
    vec![
        spec("pixel_values", DatumKind::F32, &[2, 3, 8, 8]),
        spec("input_ids", DatumKind::I64, &[4, 16]),
        spec("attention_mask", DatumKind::I64, &[4, 16]),
        spec("Token_Type_Ids", DatumKind::I32, &[4, 16]),
        spec("flags", DatumKind::Bool, &[3]),
        spec("half", DatumKind::F16, &[5]),
    ]
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

#[test]
fn random_inputs_are_deterministic_per_seed() {
    let a = random_inputs(&specs(), 7).unwrap();
    let b = random_inputs(&specs(), 7).unwrap();
    let c = random_inputs(&specs(), 8).unwrap();
    assert_eq!(a, b);
    assert_ne!(a[0].1, c[0].1);
    assert_ne!(a[1].1, c[1].1);
    // Independent of the other inputs.
    let alone = random_inputs(&specs()[1..2], 7).unwrap();
    assert_eq!(alone[0], a[1]);
}

#[test]
fn random_inputs_follow_the_rules() {
    let got = random_inputs(&specs(), 1).unwrap();
    let names: Vec<_> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "pixel_values",
            "input_ids",
            "attention_mask",
            "Token_Type_Ids",
            "flags",
            "half"
        ]
    );
    for ((_, t), s) in got.iter().zip(specs()) {
        assert_eq!(t.shape(), s.concrete_shape().unwrap().as_slice());
        assert_eq!(DatumKind::from_datum_type(t.datum_type()), Some(s.datum));
    }
    // floats: roughly standard normal
    let x = f32s(&got[0].1);
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = x
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    assert!(mean.abs() < 0.2, "mean {mean}");
    assert!((var - 1.0).abs() < 0.25, "var {var}");
    // ids: in [0, 10), and not constant
    let ids: Vec<i64> = got[1]
        .1
        .to_plain_array_view::<i64>()
        .unwrap()
        .iter()
        .copied()
        .collect();
    assert!(ids.iter().all(|&v| (0..INT_HIGH).contains(&v)));
    assert!(ids.iter().any(|&v| v != ids[0]));
    // mask: ones
    assert!(
        got[2]
            .1
            .to_plain_array_view::<i64>()
            .unwrap()
            .iter()
            .all(|&v| v == 1)
    );
    // token type: zeros
    assert!(
        got[3]
            .1
            .to_plain_array_view::<i32>()
            .unwrap()
            .iter()
            .all(|&v| v == 0)
    );
    // bool: true
    assert!(
        got[4]
            .1
            .to_plain_array_view::<bool>()
            .unwrap()
            .iter()
            .all(|&v| v)
    );
}

#[test]
fn random_inputs_reject_symbolic_dims() {
    let s = InputSpec {
        name: "x".into(),
        datum: DatumKind::F32,
        shape: vec![DimSpec::Symbol("N".into())],
        index_rows: None,
    };
    let err = random_inputs(&[s], 0).unwrap_err();
    assert!(
        matches!(&err, RuntimeError::UnresolvedDim { input, .. } if input == "x"),
        "{err}"
    );
}

fn tf(shape: &[usize], data: &[f32]) -> Tensor {
    Tensor::from_shape(shape, data).unwrap()
}

#[test]
fn compare_exact_values() {
    let expected = tf(&[4], &[1.0, -2.0, 0.0, 4.0]);
    let actual = tf(&[4], &[1.5, -2.0, 0.25, 3.0]);
    let c = compare(&actual, &expected, 0.0, 0.0);
    assert_eq!(c.max_abs, 1.0);
    assert_eq!(c.max_rel, 0.5); // |1.5-1|/1 = 0.5, |3-4|/4 = 0.25; b = 0 excluded
    assert_eq!(c.mismatches, 3);
    assert!(!c.shape_mismatch && !c.dtype_mismatch);
    assert!(!c.is_close());
    // (1.5 vs 1): 0.5 > 0.3 + 0.1; (0.25 vs 0): 0.25 <= 0.3; (3 vs 4): 1 > 0.3 + 0.4
    assert_eq!(compare(&actual, &expected, 0.1, 0.3).mismatches, 2);
    // rtol 0.5 alone: 0.5 <= 0.5 and 1 <= 2, but 0.25 > 0
    assert_eq!(compare(&actual, &expected, 0.5, 0.0).mismatches, 1);
    let c = compare(&actual, &expected, 0.25, 0.25);
    assert_eq!(c.mismatches, 0);
    assert!(c.is_close());
}

#[test]
fn compare_reports_the_expected_outputs_largest_finite_magnitude() {
    // The scale an error is read against: |−5|, infinities and NaN left out.
    let expected = tf(&[5], &[2.0, -5.0, f32::NAN, f32::INFINITY, 0.5]);
    let actual = tf(&[5], &[2.0, -5.25, f32::NAN, f32::INFINITY, 0.5]);
    let c = compare(&actual, &expected, 0.0, 0.0);
    assert_eq!(c.scale, 5.0);
    assert_eq!(c.max_abs, 0.25);
}

#[test]
fn compare_nan_and_inf() {
    let expected = tf(&[4], &[f32::NAN, f32::INFINITY, 1.0, f32::NAN]);
    let actual = tf(&[4], &[f32::NAN, f32::INFINITY, 1.0, 2.0]);
    let c = compare(&actual, &expected, 1e-5, 1e-8);
    assert_eq!(c.mismatches, 1);
    assert_eq!(c.max_abs, f64::INFINITY);
    let ok = compare(
        &tf(&[2], &[f32::NAN, f32::NEG_INFINITY]),
        &tf(&[2], &[f32::NAN, f32::NEG_INFINITY]),
        0.0,
        0.0,
    );
    assert!(ok.is_close());
    assert_eq!(ok.max_abs, 0.0);
    let inf_vs_finite = compare(&tf(&[1], &[f32::INFINITY]), &tf(&[1], &[1.0]), 1.0, 1.0);
    assert_eq!(inf_vs_finite.mismatches, 1);
}

#[test]
fn compare_shape_and_dtype_mismatch() {
    let c = compare(&tf(&[2, 2], &[0.0; 4]), &tf(&[4], &[0.0; 4]), 1.0, 1.0);
    assert!(c.shape_mismatch);
    assert!(!c.is_close());
    assert_eq!(c.mismatches, 4);
    let ints: Tensor = Tensor::from_shape(&[3], &[1i64, 2, 3]).unwrap();
    let floats = tf(&[3], &[1.0, 2.0, 3.0]);
    let c = compare(&ints, &floats, 0.0, 0.0);
    assert!(c.dtype_mismatch);
    assert_eq!(c.mismatches, 0);
    let other_ints: Tensor = Tensor::from_shape(&[3], &[1i64, 2, 4]).unwrap();
    let c = compare(&other_ints, &ints, 0.0, 0.0);
    assert_eq!(c.mismatches, 1);
    assert_eq!(c.max_abs, 1.0);
    assert!((c.max_rel - 1.0 / 3.0).abs() < 1e-15);
    let bools: Tensor = Tensor::from_shape(&[2], &[true, false]).unwrap();
    let bools2: Tensor = Tensor::from_shape(&[2], &[true, true]).unwrap();
    assert_eq!(compare(&bools, &bools2, 0.0, 0.0).mismatches, 1);
}

#[test]
fn summarize_known_values() {
    let s = summarize(&tf(&[2, 3], &[1.0, 2.0, 3.0, 4.0, f32::NAN, 0.0]));
    assert_eq!(s.shape, vec![2, 3]);
    assert_eq!(s.dtype, "f32");
    assert_eq!(s.nan_count, 1);
    assert_eq!(s.min, 0.0);
    assert_eq!(s.max, 4.0);
    assert_eq!(s.mean, 2.0);
    assert!((s.std - 2f64.sqrt()).abs() < 1e-12);
    let s = summarize(&Tensor::from_shape(&[3], &[2i64, 4, 9]).unwrap());
    assert_eq!(s.dtype, "i64");
    assert_eq!(s.mean, 5.0);
    let empty = summarize(&tf(&[0], &[]));
    assert!(empty.mean.is_nan() && empty.min.is_nan());
    assert_eq!(empty.nan_count, 0);
}

#[test]
fn random_ids_stay_below_the_rows_of_the_table_they_index() {
    let mut small = spec("position_ids", DatumKind::I64, &[64]);
    small.index_rows = Some(4);
    let mut large = spec("input_ids", DatumKind::I64, &[64]);
    large.index_rows = Some(30_000);
    let got = random_inputs(&[small, large], 3).unwrap();
    let ids = |t: &Tensor| -> Vec<i64> {
        t.try_as_plain_ram()
            .unwrap()
            .as_slice::<i64>()
            .unwrap()
            .to_vec()
    };
    let (s, l) = (ids(&got[0].1), ids(&got[1].1));
    assert!(s.iter().all(|&v| (0..4).contains(&v)), "{s:?}");
    assert!(
        (0..4).all(|v| s.contains(&v)),
        "all four rows are drawn: {s:?}"
    );
    assert!(l.iter().all(|&v| (0..INT_HIGH).contains(&v)), "{l:?}");
}
