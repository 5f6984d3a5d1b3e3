//! Real third-party models (fixtures/models.json, fetched into the cache):
//! each one round-trips to the same messages, and tract gives bit-identical
//! outputs on the original and the export.

use std::collections::BTreeMap;
use std::path::PathBuf;

use laurelc::check::{CheckOptions, check_models};
use laurelc::onnx::{ExportOptions, import_path, write_path};
use onnx_protobuf::{Message, ModelProto};

struct Entry {
    name: String,
    path: PathBuf,
    dims: BTreeMap<String, i64>,
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
            let dims = m
                .get("dims")
                .and_then(|d| d.as_object())
                .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_i64().unwrap())).collect())
                .unwrap_or_default();
            let path = models.join(format!("{name}.onnx"));
            assert!(path.exists(), "{} missing: run fixtures/fetch.py", path.display());
            Entry { name, path, dims }
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
            ModelProto::parse_from_bytes(&std::fs::read(p).unwrap()).unwrap().write_to_bytes().unwrap()
        };
        assert!(canonical(&e.path) == canonical(&out), "{}: the round trip changed the model", e.name);

        let opts = CheckOptions { rtol: 0.0, atol: 0.0, runs: 2, dims: e.dims.clone(), ..CheckOptions::default() };
        let report = check_models(&e.path, &out, &opts).unwrap_or_else(|err| panic!("{}: {err}", e.name));
        println!("{}: tract strategy {}, outputs {}", e.name, report.strategies[0], report.outputs.len());
        assert!(report.passed, "{}: outputs differ: {:?}", e.name, report.outputs);
        for o in &report.outputs {
            assert!(o.max_abs == 0.0, "{}: {} max_abs {}", e.name, o.name, o.max_abs);
        }
    }
}
