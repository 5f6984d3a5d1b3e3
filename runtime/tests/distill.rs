//! Teacher labels: batches with a padded tail, the softmax at a temperature,
//! and the cache that makes a second run query nothing.
#![allow(clippy::pedantic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use laurel_runtime::distill::teacher::{LabelOptions, Soft, label};
use laurel_runtime::train::Dataset;
use laurel_runtime::{LoadOptions, ModelSource, Silent, Tensor};

/// Five examples of three features; the teacher `matmul_model` takes batches of 2.
fn pool() -> Dataset {
    let x: Vec<f32> = (0..15).map(|i| (i as f32 - 7.0) / 10.0).collect();
    Dataset::new(vec![("x".into(), Tensor::from_shape(&[5, 3], &x).unwrap())]).unwrap()
}

/// softmax(x·W / T) by hand, in float64.
fn expected(row: usize, t: f64) -> [f64; 2] {
    let x: Vec<f64> = (0..3)
        .map(|j| ((row * 3 + j) as f64 - 7.0) / 10.0)
        .collect();
    let w = common::W.map(f64::from);
    let z = [
        (x[0] * w[0] + x[1] * w[2] + x[2] * w[4]) / t,
        (x[0] * w[1] + x[1] * w[3] + x[2] * w[5]) / t,
    ];
    let m = z[0].max(z[1]);
    let e = [(z[0] - m).exp(), (z[1] - m).exp()];
    [e[0] / (e[0] + e[1]), e[1] / (e[0] + e[1])]
}

fn options(cache: Option<std::path::PathBuf>, temperature: f32) -> LabelOptions {
    LabelOptions {
        columns: Vec::new(),
        output: None,
        soft: Soft::Softmax { temperature },
        cache,
    }
}

#[test]
fn labels_are_the_softmax_at_the_temperature_in_the_order_asked() {
    let bytes = common::matmul_model();
    let teacher =
        laurel_runtime::load(ModelSource::Bytes(&bytes), &LoadOptions::default()).unwrap();
    let rows = [4, 0, 2];
    let got = label(
        &bytes,
        &teacher,
        &pool(),
        &rows,
        &options(None, 2.0),
        &mut Silent,
    )
    .unwrap();
    assert_eq!((got.classes, got.queries, got.labels.len()), (2, 3, 6));
    for (k, &r) in rows.iter().enumerate() {
        let want = expected(r, 2.0);
        for (c, w) in want.iter().enumerate() {
            assert!(
                (f64::from(got.labels[2 * k + c]) - w).abs() < 1e-6,
                "row {r}: {:?}",
                got.labels
            );
        }
    }
}

#[test]
fn a_second_run_reads_the_cache_and_queries_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = common::matmul_model();
    let teacher =
        laurel_runtime::load(ModelSource::Bytes(&bytes), &LoadOptions::default()).unwrap();
    let rows: Vec<usize> = (0..5).collect();
    let opts = options(Some(dir.path().join("labels")), 1.0);
    let first = label(&bytes, &teacher, &pool(), &rows, &opts, &mut Silent).unwrap();
    assert_eq!(first.queries, 5);
    let file = first.cache_file.clone().unwrap();
    assert!(file.is_file());
    let second = label(&bytes, &teacher, &pool(), &rows, &opts, &mut Silent).unwrap();
    assert_eq!(second.queries, 0);
    assert_eq!(second.labels, first.labels);
    // Another temperature, other rows or another teacher is another key.
    let hotter = label(
        &bytes,
        &teacher,
        &pool(),
        &rows,
        &options(opts.cache.clone(), 3.0),
        &mut Silent,
    )
    .unwrap();
    assert_eq!(hotter.queries, 5);
    assert_ne!(hotter.cache_file, first.cache_file);
    let fewer = label(&bytes, &teacher, &pool(), &rows[..4], &opts, &mut Silent).unwrap();
    assert_eq!(fewer.queries, 4);
    // A cache file of the wrong shape is labelled again, not trusted.
    laurel_runtime::write_npy(&file, &Tensor::from_shape(&[1, 2], &[0.5f32, 0.5]).unwrap())
        .unwrap();
    let again = label(&bytes, &teacher, &pool(), &rows, &opts, &mut Silent).unwrap();
    assert_eq!(
        (again.queries, again.labels.clone()),
        (5, first.labels.clone())
    );
}

#[test]
fn bad_requests_are_errors_not_panics() {
    let bytes = common::matmul_model();
    let teacher =
        laurel_runtime::load(ModelSource::Bytes(&bytes), &LoadOptions::default()).unwrap();
    let e = label(
        &bytes,
        &teacher,
        &pool(),
        &[5],
        &options(None, 1.0),
        &mut Silent,
    )
    .unwrap_err();
    assert!(e.to_string().contains("row 5 of a pool of 5"), "{e}");
    let e = label(
        &bytes,
        &teacher,
        &pool(),
        &[0],
        &options(None, 0.0),
        &mut Silent,
    )
    .unwrap_err();
    assert!(e.to_string().contains("temperature 0"), "{e}");
    let other = Dataset::new(vec![(
        "y".into(),
        Tensor::from_shape(&[2, 3], &[0f32; 6]).unwrap(),
    )])
    .unwrap();
    let e = label(
        &bytes,
        &teacher,
        &other,
        &[0],
        &options(None, 1.0),
        &mut Silent,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("no column `x` for teacher input `x`"),
        "{e}"
    );
}
