//! Real third-party models (fixtures/models.json, fetched into the cache):
//! each one round-trips to the same messages, and tract gives bit-identical
//! outputs on the original and the export.

#![allow(clippy::unwrap_used, clippy::type_complexity)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use laurel_runtime::check::{CheckOptions, check_models};
use laurelc::onnx::{ExportOptions, import_path, write_path};
use onnx_protobuf::{Message, ModelProto};

struct Entry {
    name: String,
    path: PathBuf,
    /// The manifest's `run` entry: how to size and fill this model's inputs.
    dims: BTreeMap<String, i64>,
    shapes: BTreeMap<String, Vec<usize>>,
    values: BTreeMap<String, i64>,
}

fn map<T>(v: &serde_json::Value, f: impl Fn(&serde_json::Value) -> T) -> BTreeMap<String, T> {
    v.as_object()
        .map(|o| o.iter().map(|(k, x)| (k.clone(), f(x))).collect())
        .unwrap_or_default()
}

fn manifest() -> Vec<Entry> {
    let text = std::fs::read_to_string(laurel_tests::fixtures_dir().join("models.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let models = laurel_tests::require("models");
    json["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let name = m["name"].as_str().unwrap().to_string();
            let run = &m["run"];
            let dims = map(&run["dims"], |v| v.as_i64().unwrap());
            let values = map(&run["values"], |v| v.as_i64().unwrap());
            let shapes = map(&run["shapes"], |v| {
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|d| usize::try_from(d.as_u64().unwrap()).unwrap())
                    .collect()
            });
            let path = models.join(format!("{name}.onnx"));
            assert!(
                path.exists(),
                "{} missing: run fixtures/fetch.py",
                path.display()
            );
            Entry {
                name,
                path,
                dims,
                shapes,
                values,
            }
        })
        .collect()
}

#[test]
fn real_models_round_trip_and_run_identically_on_tract() {
    let entries = manifest();
    assert_eq!(entries.len(), 6);
    let dir = tempfile::tempdir().unwrap();
    for e in &entries {
        let model = import_path(&e.path).unwrap_or_else(|err| panic!("{}: {err}", e.name));
        let out = dir.path().join(format!("{}.onnx", e.name));
        write_path(&model, &out, &ExportOptions::default()).unwrap();
        drop(model);
        // Decoded and re-encoded canonically (see node_suite.rs): bitwise, NaN-safe.
        let canonical = |p: &std::path::Path| {
            ModelProto::parse_from_bytes(&std::fs::read(p).unwrap())
                .unwrap()
                .write_to_bytes()
                .unwrap()
        };
        assert!(
            canonical(&e.path) == canonical(&out),
            "{}: the round trip changed the model",
            e.name
        );

        // The given values go through .npy files, as `laurelc check --input` reads them.
        let mut sources = Vec::new();
        for (input, v) in &e.values {
            let file = dir.path().join(format!("{}.{input}.npy", e.name));
            laurel_runtime::write_npy(&file, &laurel_runtime::Tensor::from(*v)).unwrap();
            sources.push(laurel_runtime::InputSource::Named(input.clone(), file));
        }
        let given = laurel_runtime::inputs::read_given(&sources).unwrap();
        let opts = CheckOptions {
            rtol: 0.0,
            atol: 0.0,
            runs: 2,
            dims: e.dims.clone(),
            shapes: e.shapes.clone(),
            given,
            ..CheckOptions::default()
        };
        let report =
            check_models(&e.path, &out, &opts).unwrap_or_else(|err| panic!("{}: {err}", e.name));
        println!(
            "{}: tract strategy {}, outputs {}",
            e.name,
            report.strategies[0],
            report.outputs.len()
        );
        assert!(
            report.passed,
            "{}: outputs differ: {:?}",
            e.name, report.outputs
        );
        for o in &report.outputs {
            assert!(
                o.max_abs == 0.0,
                "{}: {} max_abs {}",
                e.name,
                o.name,
                o.max_abs
            );
        }
    }
}

/// The residual analysis on the public real models: (identity, projection) counts.
#[test]
fn residual_counts_on_real_models() {
    // (model, identity, projection, channel axis of every residual, D of the first one)
    let expected = [
        ("ppocr_mobile_v2_cls", 7, 0, 1, Some(8)),
        ("ppocrv4_det", 8, 0, 1, Some(96)),
        ("paraphrase_minilm_l3", 6, 0, 2, Some(384)),
        ("magika", 0, 0, 0, None),
        ("silero_vad", 0, 0, 0, None),
        ("light_resnet50", 12, 4, 1, Some(256)),
    ];
    let entries = manifest();
    for (name, identity, projection, axis, first_d) in expected {
        let e = entries.iter().find(|e| e.name == name).unwrap();
        let model = import_path(&e.path).unwrap();
        let a = laurelc::analysis::analyse_residuals(&model).unwrap();
        let count = |k| a.residuals.iter().filter(|r| r.kind == k).count();
        let got = (
            count(laurelc::analysis::ResidualKind::Identity),
            count(laurelc::analysis::ResidualKind::Projection),
        );
        assert_eq!(
            got,
            (identity, projection),
            "{name} (shapes: {})",
            a.shape_strategy
        );
        assert!(
            a.residuals.iter().all(|r| r.axis == axis),
            "{name}: {:?}",
            a.residuals
        );
        assert_eq!(
            a.residuals.first().and_then(|r| r.channels),
            first_d,
            "{name}"
        );
    }
    // Silero VAD's If branches (16 kHz, 8 kHz) hold three adds each: the
    // STFT's re² + im², an LSTM cell's Gemm(x) + Gemm(h) and its
    // f·c + i·g. None is a residual; both branches are analysed.
    let e = entries.iter().find(|e| e.name == "silero_vad").unwrap();
    let a = laurelc::analysis::analyse_residuals(&import_path(&e.path).unwrap()).unwrap();
    let paths: Vec<&str> = a.all_subgraphs().iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "If `node_cond__1` then_branch",
            "If `node_cond__1` else_branch"
        ]
    );
    assert_eq!(a.block_count(), 0);
    assert!(a.all_undecided().is_empty(), "{:?}", a.all_undecided());
    // All 16 of ResNet-50's blocks form one stream, numbered 0..16.
    let e = entries.iter().find(|e| e.name == "light_resnet50").unwrap();
    let model = import_path(&e.path).unwrap();
    let a = laurelc::analysis::analyse_residuals(&model).unwrap();
    let indices: Vec<(usize, usize)> = a.residuals.iter().map(|r| (r.stream, r.index)).collect();
    assert_eq!(indices, (0..16).map(|i| (0, i)).collect::<Vec<_>>());
}
