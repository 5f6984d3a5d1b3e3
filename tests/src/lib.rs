//! Shared helpers of the cross-crate integration tests: where the fetched
//! third-party data lives, which models to augment, how to check them.
#![allow(clippy::missing_panics_doc, clippy::unwrap_used)]

pub mod golden;

use std::path::PathBuf;

/// The cache that `fixtures/fetch.py` fills: `$LAURELC_CACHE`, else `~/.cache/laurelc`.
#[must_use]
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("LAURELC_CACHE") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("laurelc")
}

/// A directory of the cache that must exist; panics with the command that fills it.
#[must_use]
pub fn require(rel: &str) -> PathBuf {
    let p = cache_dir().join(rel);
    assert!(
        p.exists(),
        "{} is missing: run `python3 fixtures/fetch.py` (the README's test command does) or set LAURELC_CACHE",
        p.display()
    );
    p
}

/// The committed fixtures directory.
#[must_use]
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fixtures")
}

/// The models with residuals to augment, with their manifest `run` entry
/// (`Null` for the fixtures): the four residual fixtures, then every
/// manifest model but `silero_vad` and `magika`, which have no residuals.
#[must_use]
pub fn augmentable_models() -> Vec<(String, PathBuf, serde_json::Value)> {
    let fixtures = fixtures_dir();
    let mut out: Vec<(String, PathBuf, serde_json::Value)> = [
        "tiny_resnet",
        "tiny_preln_transformer",
        "tiny_postln_bert",
        "mobilenetv2_block",
    ]
    .iter()
    .map(|n| {
        (
            (*n).to_string(),
            fixtures.join(format!("{n}.onnx")),
            serde_json::Value::Null,
        )
    })
    .collect();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("models.json")).unwrap())
            .unwrap();
    let cache = require("models");
    for m in manifest["models"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap().to_string();
        if name == "silero_vad" || name == "magika" {
            continue;
        }
        out.push((
            name.clone(),
            cache.join(format!("{name}.onnx")),
            m["run"].clone(),
        ));
    }
    out
}

/// `check` options for a manifest `run` entry (its `dims` and `shapes`):
/// rtol 1e-4, atol 1e-5, two runs.
#[must_use]
pub fn check_options(run: &serde_json::Value) -> laurel_runtime::check::CheckOptions {
    let map = |v: &serde_json::Value| -> std::collections::BTreeMap<String, serde_json::Value> {
        v.as_object()
            .map(|o| o.clone().into_iter().collect())
            .unwrap_or_default()
    };
    laurel_runtime::check::CheckOptions {
        rtol: 1e-4,
        atol: 1e-5,
        runs: 2,
        dims: map(&run["dims"])
            .into_iter()
            .map(|(k, v)| (k, v.as_i64().unwrap()))
            .collect(),
        shapes: map(&run["shapes"])
            .into_iter()
            .map(|(k, v)| {
                let dims = v.as_array().unwrap().iter();
                (
                    k,
                    dims.map(|d| usize::try_from(d.as_u64().unwrap()).unwrap())
                        .collect(),
                )
            })
            .collect(),
        ..laurel_runtime::check::CheckOptions::default()
    }
}
