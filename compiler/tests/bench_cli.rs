//! `laurelc bench BASELINE OTHER...` on committed fixtures: the JSON report's shape,
//! the table, inputs from files and dimensions, and exit code 2 on bad input. These
//! check what the command reports, never how fast anything is.

#![allow(clippy::unwrap_used, clippy::float_cmp)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use onnx_protobuf::ValueInfoProto;
use onnx_protobuf::tensor_shape_proto::dimension;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn assert_usage_error(o: &Output, must_mention: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for m in must_mention {
        assert!(err.contains(m), "expected `{m}` in: {err}");
    }
}

#[test]
fn json_report_of_baseline_augmented_and_again() {
    let dir = tempfile::tempdir().unwrap();
    let base = fixture("tiny_resnet.onnx");
    let aug = dir.path().join("aug.onnx");
    let o = laurelc(&[
        s(&base),
        "-o",
        s(&aug),
        "--variant",
        "rw+lr",
        "--init",
        "random",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j = json(&laurelc(&[
        "bench",
        s(&base),
        s(&aug),
        s(&base),
        "--runs",
        "4",
        "--warmup",
        "1",
        "--seed",
        "5",
        "--json",
    ]));
    assert_eq!(j["runs"], 4);
    assert_eq!(j["warmup"], 1);
    assert_eq!(j["seed"], 5);
    assert_eq!(j["rotate"], false);
    assert_eq!(
        j["inputs"],
        serde_json::json!([{"name": "input", "datum": "f32", "shape": [1, 3, 16, 16], "random": true}])
    );
    let models = j["models"].as_array().unwrap();
    let labels: Vec<&str> = models
        .iter()
        .map(|m| m["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, [s(&base), s(&aug), s(&base)]);
    for m in models {
        let samples = m["samples_ms"].as_array().unwrap();
        assert_eq!(samples.len(), 4, "{m}");
        assert!(samples.iter().all(|x| x.as_f64().unwrap() > 0.0), "{m}");
        assert_eq!(m["n"], 4);
        for key in [
            "median_ms",
            "min_ms",
            "max_ms",
            "mean_ms",
            "p10_ms",
            "p90_ms",
            "q1_ms",
            "q3_ms",
            "iqr_ms",
            "ratio",
            "round_ratio",
        ] {
            assert!(m[key].as_f64().unwrap().is_finite(), "{key} in {m}");
        }
        let (min, p10, med, p90, max) = (
            m["min_ms"].as_f64().unwrap(),
            m["p10_ms"].as_f64().unwrap(),
            m["median_ms"].as_f64().unwrap(),
            m["p90_ms"].as_f64().unwrap(),
            m["max_ms"].as_f64().unwrap(),
        );
        assert!(min <= p10 && p10 <= med && med <= p90 && p90 <= max, "{m}");
        assert!(m["load_strategy"].is_string(), "{m}");
    }
    // The baseline's ratios are exactly 1, and the others' are their medians over it.
    assert_eq!(models[0]["ratio"].as_f64(), Some(1.0));
    assert_eq!(models[0]["round_ratio"].as_f64(), Some(1.0));
    let base_median = models[0]["median_ms"].as_f64().unwrap();
    for m in &models[1..] {
        let want = m["median_ms"].as_f64().unwrap() / base_median;
        assert!(
            (m["ratio"].as_f64().unwrap() - want).abs() <= 1e-9 * want,
            "{m}"
        );
    }
}

#[test]
fn table_has_a_line_per_model() {
    let base = fixture("tiny_resnet.onnx");
    let o = laurelc(&[
        "bench",
        s(&base),
        s(&base),
        "--runs",
        "2",
        "--warmup",
        "0",
        "--rotate",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[0].starts_with("2 runs after 0 warm-up rounds"),
        "{out}"
    );
    assert!(lines[0].contains("rotated order"), "{out}");
    assert!(
        lines[1].contains("median ms") && lines[1].contains("ratio"),
        "{out}"
    );
    assert!(lines[2].starts_with(s(&base)), "{out}");
    // The baseline's ratio and round ratio columns.
    assert!(lines[2].ends_with("1.000       1.000"), "{out}");
}

#[test]
fn loads_are_reported() {
    let base = fixture("tiny_resnet.onnx");
    let j = json(&laurelc(&[
        "bench",
        s(&base),
        s(&base),
        "--runs",
        "2",
        "--warmup",
        "0",
        "--loads",
        "3",
        "--json",
    ]));
    assert_eq!(j["loads"], 3);
    assert_eq!(j["models"][1]["samples_ms"].as_array().unwrap().len(), 2);
}

#[test]
fn profile_times_every_node() {
    let base = fixture("tiny_resnet.onnx");
    let j = json(&laurelc(&["profile", s(&base), "--runs", "3", "--json"]));
    assert_eq!(j["runs"], 3);
    let nodes = j["nodes"].as_array().unwrap();
    assert!(!nodes.is_empty());
    assert!(
        nodes
            .iter()
            .all(|n| n["median_us"].as_f64().unwrap() >= 0.0)
    );
    assert!(j["total_median_us"].as_f64().unwrap() > 0.0);
    let o = laurelc(&["profile", s(&base), "--runs", "2", "--top", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(out.starts_with("2 runs: median"), "{out}");
    assert!(out.contains("slowest nodes:"), "{out}");
    let o = laurelc(&["profile", s(&base), "--runs", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// Makes the first dimension of a value's declared shape the symbol `N`.
fn symbolic_first_dim(v: &mut ValueInfoProto) {
    let shape = v
        .type_
        .as_mut()
        .unwrap()
        .mut_tensor_type()
        .shape
        .as_mut()
        .unwrap();
    shape.dim[0].value = Some(dimension::Value::DimParam("N".into()));
}

#[test]
fn inputs_from_files_and_dims_size_the_models() {
    let dir = tempfile::tempdir().unwrap();
    let base = fixture("tiny_resnet.onnx");
    let x = laurel_runtime::Tensor::from_shape(&[1, 3, 16, 16], &vec![0.25f32; 768]).unwrap();
    let npy = dir.path().join("x.npy");
    laurel_runtime::write_npy(&npy, &x).unwrap();
    let arg = format!("input={}", s(&npy));
    let j = json(&laurelc(&[
        "bench",
        s(&base),
        s(&base),
        "--runs",
        "1",
        "--input",
        &arg,
        "--json",
    ]));
    assert_eq!(j["inputs"][0]["random"], false);
    let npz = dir.path().join("x.npz");
    laurel_runtime::write_npz(&npz, &[("input".to_string(), x)]).unwrap();
    let j = json(&laurelc(&[
        "bench",
        s(&base),
        s(&base),
        "--runs",
        "1",
        "--input",
        s(&npz),
        "--json",
    ]));
    assert_eq!(j["inputs"][0]["random"], false);

    // A model with a symbolic batch: --dim and --shape reach every model.
    let mut m = tiny();
    let graph = m.graph.as_mut().unwrap();
    symbolic_first_dim(&mut graph.input[0]);
    symbolic_first_dim(&mut graph.output[0]);
    let sym = dir.path().join("sym.onnx");
    std::fs::write(&sym, bytes(&m)).unwrap();
    let j = json(&laurelc(&[
        "bench",
        s(&sym),
        s(&sym),
        "--runs",
        "1",
        "--dim",
        "N=5",
        "--json",
    ]));
    assert_eq!(j["inputs"][0]["shape"], serde_json::json!([5, 3]));
    let j = json(&laurelc(&[
        "bench",
        s(&sym),
        s(&sym),
        "--runs",
        "1",
        "--shape",
        "x=7x3",
        "--json",
    ]));
    assert_eq!(j["inputs"][0]["shape"], serde_json::json!([7, 3]));
}

#[test]
fn bad_input_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let base = fixture("tiny_resnet.onnx");
    let missing = dir.path().join("missing.onnx");
    assert_usage_error(
        &laurelc(&["bench", s(&base), s(&missing), "--runs", "1"]),
        &["missing.onnx"],
    );
    assert_usage_error(
        &laurelc(&["bench", s(&missing), s(&base), "--runs", "1"]),
        &["missing.onnx"],
    );
    // Different inputs: the error names the model and the baseline.
    let other = fixture("tiny_preln_transformer.onnx");
    assert_usage_error(
        &laurelc(&["bench", s(&base), s(&other), "--runs", "1"]),
        &["tiny_preln_transformer.onnx", "differ", "tiny_resnet.onnx"],
    );
    // Only a baseline, no runs, a bad --dim, --shape or --input.
    assert_usage_error(&laurelc(&["bench", s(&base)]), &[]);
    assert_usage_error(
        &laurelc(&["bench", s(&base), s(&base), "--runs", "0"]),
        &["--runs"],
    );
    assert_usage_error(
        &laurelc(&["bench", s(&base), s(&base), "--dim", "N"]),
        &["--dim"],
    );
    assert_usage_error(
        &laurelc(&["bench", s(&base), s(&base), "--shape", "input=1x3x8x8"]),
        &["input"],
    );
    assert_usage_error(
        &laurelc(&["bench", s(&base), s(&base), "--input", "nope=x.npy"]),
        &["x.npy"],
    );
    // Nothing was written beside the models.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
