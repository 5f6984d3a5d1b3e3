//! Comparing two models on tract: `laurelc check A B`.
//!
//! Both models get the same inputs: the files the caller names, and seeded
//! random tensors (see [`laurel_runtime::random_inputs`]) for the rest, one
//! fresh set per run. Outputs are matched by name, or by position when the
//! two models name their outputs differently. An output passes when every
//! element satisfies numpy's `allclose` rule `|b − a| ≤ atol + rtol·|a|`,
//! taking A as the reference.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use laurel_runtime::{LoadOptions, ModelSource, Runnable, Tensor};
use serde::Serialize;

use crate::error::Result;

/// Options of [`check_models`].
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Seed of the first run's random inputs; run `k` uses `seed + k`.
    pub seed: u64,
    /// How many input sets to try.
    pub runs: usize,
    /// Values of symbolic dimensions.
    pub dims: BTreeMap<String, i64>,
    /// Shapes of randomly generated inputs, by input name.
    pub shapes: BTreeMap<String, Vec<usize>>,
    /// Inputs read from `.npy` files, by input name.
    pub inputs: Vec<(String, PathBuf)>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            rtol: 1e-4,
            atol: 1e-5,
            seed: 0,
            runs: 1,
            dims: BTreeMap::new(),
            shapes: BTreeMap::new(),
            inputs: Vec::new(),
        }
    }
}

/// The comparison of one output over all runs (worst case).
#[derive(Debug, Clone, Serialize)]
pub struct OutputCheck {
    /// The output's name in A.
    pub name: String,
    /// Largest |b − a|.
    pub max_abs: f64,
    /// Largest |b − a| / |a| over nonzero a.
    pub max_rel: f64,
    /// Elements outside tolerance, summed over runs.
    pub mismatches: usize,
    /// Shapes or types differ.
    pub incompatible: bool,
    /// Within tolerance in every run.
    pub ok: bool,
}

/// The result of [`check_models`].
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// One entry per output of A.
    pub outputs: Vec<OutputCheck>,
    /// Runs performed.
    pub runs: usize,
    /// Tract's load strategy for A and B.
    pub strategies: [String; 2],
    /// Every output of every run within tolerance.
    pub passed: bool,
}

/// Reads `.npy` input files, by input name.
///
/// # Errors
/// A file cannot be read or decoded.
pub fn read_inputs(files: &[(String, PathBuf)]) -> Result<Vec<(String, Tensor)>> {
    files
        .iter()
        .map(|(name, path)| Ok((name.clone(), laurel_runtime::read_npy(path)?)))
        .collect()
}

/// Loads a model for [`check_models`] and `laurelc run`, sized by the given
/// tensors' shapes, then `shapes`, then `dims` (see [`LoadOptions`]).
///
/// # Errors
/// The runtime's load error.
pub fn load(
    path: &Path,
    dims: &BTreeMap<String, i64>,
    shapes: &BTreeMap<String, Vec<usize>>,
    given: &[(String, Tensor)],
) -> Result<Runnable> {
    let mut shapes = shapes.clone();
    shapes.extend(given.iter().map(|(n, t)| (n.clone(), t.shape().to_vec())));
    let opts = LoadOptions {
        dims: dims.clone(),
        shapes,
        ..LoadOptions::default()
    };
    Ok(laurel_runtime::load(ModelSource::Path(path), &opts)?)
}

/// The inputs of one run: the given tensors, then seeded random tensors for the rest.
///
/// # Errors
/// Random generation fails.
pub fn complete_inputs(
    model: &Runnable,
    given: &[(String, Tensor)],
    seed: u64,
) -> Result<Vec<(String, Tensor)>> {
    let mut inputs = given.to_vec();
    let rest: Vec<_> = model
        .inputs()
        .iter()
        .filter(|s| !given.iter().any(|(n, _)| *n == s.name))
        .cloned()
        .collect();
    inputs.extend(laurel_runtime::random_inputs(&rest, seed)?);
    Ok(inputs)
}

/// Runs A and B on the same inputs and compares their outputs.
///
/// # Errors
/// A model fails to load or run, or the models' outputs cannot be paired.
pub fn check_models(a: &Path, b: &Path, opts: &CheckOptions) -> Result<CheckReport> {
    let given = read_inputs(&opts.inputs)?;
    let ma = load(a, &opts.dims, &opts.shapes, &given)?;
    let mb = load(b, &opts.dims, &opts.shapes, &given)?;
    let by_name = ma
        .output_names()
        .iter()
        .all(|n| mb.output_names().contains(n));
    let mut outputs: Vec<OutputCheck> = ma
        .output_names()
        .iter()
        .map(|n| OutputCheck {
            name: n.clone(),
            max_abs: 0.0,
            max_rel: 0.0,
            mismatches: 0,
            incompatible: false,
            ok: true,
        })
        .collect();
    if !by_name && ma.output_names().len() != mb.output_names().len() {
        for o in &mut outputs {
            o.incompatible = true;
            o.ok = false;
        }
    }
    let runs = opts.runs.max(1);
    for k in 0..runs {
        let inputs = complete_inputs(&ma, &given, opts.seed.wrapping_add(k as u64))?;
        let ra = ma.run(inputs.clone())?;
        let rb = mb.run(inputs)?;
        for (i, (name, ta)) in ra.iter().enumerate() {
            let tb = if by_name {
                rb.iter().find(|(n, _)| n == name).map(|(_, t)| t)
            } else {
                rb.get(i).map(|(_, t)| t)
            };
            let Some(o) = outputs.iter_mut().find(|o| o.name == *name) else {
                continue;
            };
            let Some(tb) = tb else {
                o.incompatible = true;
                o.ok = false;
                continue;
            };
            let c = laurel_runtime::compare(tb, ta, opts.rtol, opts.atol);
            o.max_abs = o.max_abs.max(c.max_abs);
            o.max_rel = o.max_rel.max(c.max_rel);
            o.mismatches += c.mismatches;
            o.incompatible |= c.shape_mismatch || c.dtype_mismatch;
            o.ok &= !(c.shape_mismatch || c.dtype_mismatch) && c.mismatches == 0;
        }
    }
    let passed = outputs.iter().all(|o| o.ok);
    Ok(CheckReport {
        outputs,
        runs,
        strategies: [
            ma.load_strategy().to_string(),
            mb.load_strategy().to_string(),
        ],
        passed,
    })
}
