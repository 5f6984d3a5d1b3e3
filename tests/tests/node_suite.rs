//! The ONNX backend node tests (1765 models shipped in the onnx 1.22.0
//! wheel) as a conformance suite for import/export and for tract.
//!
//! For every model:
//! 1. import → export gives the same `ModelProto`: both files decoded by the
//!    same proto3 schema (the normalisation documented in `laurelc::onnx`)
//!    and re-encoded canonically must give identical bytes. Comparing bytes
//!    rather than messages keeps NaN payloads honest (NaN ≠ NaN as a float);
//! 2. where tract runs the original and matches the expected outputs of
//!    `test_data_set_0`, it must do the same on the exported model.

#![allow(clippy::unwrap_used, clippy::type_complexity)]

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use laurel_runtime::{LoadOptions, ModelSource, Tensor};
use onnx_protobuf::{Message, ModelProto};

/// The model decoded and re-encoded by rust-protobuf: one canonical byte form.
fn canonical(bytes: &[u8]) -> protobuf::Result<Vec<u8>> {
    ModelProto::parse_from_bytes(bytes)?.write_to_bytes()
}

fn model_dirs() -> Vec<PathBuf> {
    let root = laurel_tests::require("onnx-node-tests/node");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("model.onnx").exists())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn every_node_test_model_round_trips_exactly() {
    let dirs = model_dirs();
    assert!(
        dirs.len() >= 1700,
        "expected the 1765 node tests, found {}",
        dirs.len()
    );
    let mut failures = Vec::new();
    for d in &dirs {
        let bytes = std::fs::read(d.join("model.onnx")).unwrap();
        let original = canonical(&bytes).unwrap();
        let verdict = laurelc::onnx::import_bytes(&bytes, &d.display().to_string())
            .and_then(|m| laurelc::onnx::to_bytes(&m))
            .map(|out| canonical(&out).map(|back| back == original));
        match verdict {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => failures.push(format!("{}: round trip differs", d.display())),
            Ok(Err(e)) => failures.push(format!("{}: export does not decode: {e}", d.display())),
            Err(e) => failures.push(format!("{}: {e}", d.display())),
        }
    }
    println!(
        "node suite: {} models, {} round-trip failures",
        dirs.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures, first ones:\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
}

/// Loads the test data set's inputs and expected outputs.
fn test_data(dir: &Path) -> Option<(Vec<(String, Tensor)>, Vec<Tensor>)> {
    let set = dir.join("test_data_set_0");
    let read = |prefix: &str| -> Option<Vec<(String, Tensor)>> {
        let mut v = Vec::new();
        for i in 0.. {
            let p = set.join(format!("{prefix}_{i}.pb"));
            if !p.exists() {
                break;
            }
            v.push(laurel_runtime::read_tensor_pb(&std::fs::read(p).ok()?).ok()?);
        }
        Some(v)
    };
    let inputs = read("input")?;
    let outputs = read("output")?.into_iter().map(|(_, t)| t).collect();
    Some((inputs, outputs))
}

/// Runs a model on tract against the expected outputs; `true` when all match.
fn tract_matches(bytes: &[u8], inputs: &[(String, Tensor)], expected: &[Tensor]) -> bool {
    let run = || -> Option<bool> {
        let r = laurel_runtime::load(ModelSource::Bytes(bytes), &LoadOptions::default()).ok()?;
        // Test data names are optional: pair by position with the model's inputs.
        let named: Vec<(String, Tensor)> = r
            .inputs()
            .iter()
            .zip(inputs)
            .map(|(spec, (_, t))| (spec.name.clone(), t.clone()))
            .collect();
        if named.len() != inputs.len() {
            return Some(false);
        }
        let outs = r.run(named).ok()?;
        if outs.len() != expected.len() {
            return Some(false);
        }
        Some(outs.iter().zip(expected).all(|((_, got), want)| {
            let c = laurel_runtime::compare(got, want, 1e-3, 1e-5);
            !c.shape_mismatch && !c.dtype_mismatch && c.mismatches == 0
        }))
    };
    std::panic::catch_unwind(AssertUnwindSafe(run))
        .ok()
        .flatten()
        .unwrap_or(false)
}

#[test]
fn tract_results_survive_the_round_trip() {
    let dirs = model_dirs();
    let results: Vec<(String, bool, Option<bool>)> = std::thread::scope(|s| {
        let chunks: Vec<&[PathBuf]> = dirs.chunks(dirs.len().div_ceil(2)).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|d| {
                            let name = d.file_name().unwrap().to_string_lossy().into_owned();
                            let bytes = std::fs::read(d.join("model.onnx")).unwrap();
                            let Some((inputs, expected)) = test_data(d) else {
                                return (name, false, None);
                            };
                            if !tract_matches(&bytes, &inputs, &expected) {
                                return (name, false, None);
                            }
                            let exported = laurelc::onnx::import_bytes(&bytes, &name)
                                .and_then(|m| laurelc::onnx::to_bytes(&m))
                                .unwrap();
                            (
                                name,
                                true,
                                Some(tract_matches(&exported, &inputs, &expected)),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let before = results.iter().filter(|r| r.1).count();
    let broken: Vec<&str> = results
        .iter()
        .filter(|r| r.2 == Some(false))
        .map(|r| r.0.as_str())
        .collect();
    println!(
        "node suite on tract: {} models, {} correct before the round trip, {} correct after",
        results.len(),
        before,
        before - broken.len()
    );
    assert!(
        before > 1000,
        "tract ran only {before} node tests correctly: is the runtime broken?"
    );
    assert!(
        broken.is_empty(),
        "tract results changed by the round trip: {broken:?}"
    );
}
