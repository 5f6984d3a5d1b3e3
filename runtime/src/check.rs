//! Comparing two models on tract: `laurelc check A B`.
//!
//! Both models get the same inputs: the given tensors, and seeded random
//! tensors for the rest, one fresh set per run ([`crate::inputs::complete`]). Outputs are matched by name, or by position when the
//! two models name their outputs differently. An output passes when every
//! element satisfies numpy's `allclose` rule `|b − a| ≤ atol + rtol·|a|`,
//! taking A as the reference.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use tract_onnx::prelude::Tensor;

use crate::error::RuntimeError;
use crate::inputs::{complete, load_sized};
use crate::model::LoadOptions;

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
    /// Given input tensors, by input name (see [`crate::inputs::read_given`]).
    pub given: Vec<(String, Tensor)>,
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
            given: Vec::new(),
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
    /// Largest finite |a| over the runs: the output's scale.
    pub scale: f64,
    /// `max_abs / scale`: the largest error relative to the output's largest
    /// magnitude (0 when the scale is 0), which reassociation rounding is
    /// proportional to, unlike the elementwise `max_rel`.
    pub max_abs_over_scale: f64,
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
    /// The relative tolerance checked.
    pub rtol: f64,
    /// The absolute tolerance checked.
    pub atol: f64,
}

/// Runs A and B on the same inputs and compares their outputs.
///
/// # Errors
/// A model fails to load or run, or random inputs cannot be made.
pub fn check_models(a: &Path, b: &Path, opts: &CheckOptions) -> Result<CheckReport, RuntimeError> {
    check_models_with_progress(a, b, opts, &mut crate::progress::Silent)
}

/// [`check_models`], reporting each run to `progress`.
///
/// # Errors
/// As [`check_models`].
pub fn check_models_with_progress(
    a: &Path,
    b: &Path,
    opts: &CheckOptions,
    progress: &mut dyn crate::progress::Progress,
) -> Result<CheckReport, RuntimeError> {
    let given = &opts.given;
    let load = LoadOptions {
        dims: opts.dims.clone(),
        shapes: opts.shapes.clone(),
        ..LoadOptions::default()
    };
    let ma = load_sized(a, &load, given)?;
    // When load chose sizes for A, B takes A's input shapes, so that both run
    // on the same inputs.
    let mut load_b = load.clone();
    if !ma.chosen_sizes().is_empty() {
        for spec in ma.inputs() {
            if let Some(shape) = spec.concrete_shape() {
                load_b.shapes.entry(spec.name.clone()).or_insert(shape);
            }
        }
    }
    let mb = load_sized(b, &load_b, given)?;
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
            scale: 0.0,
            max_abs_over_scale: 0.0,
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
    progress.start("check runs", runs as u64);
    for k in 0..runs {
        let inputs = complete(&ma, given, opts.seed.wrapping_add(k as u64))?;
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
            let c = crate::compare::compare(tb, ta, opts.rtol, opts.atol);
            o.max_abs = o.max_abs.max(c.max_abs);
            o.max_rel = o.max_rel.max(c.max_rel);
            o.scale = o.scale.max(c.scale);
            o.max_abs_over_scale = if o.scale > 0.0 {
                o.max_abs / o.scale
            } else {
                0.0
            };
            o.mismatches += c.mismatches;
            o.incompatible |= c.shape_mismatch || c.dtype_mismatch;
            o.ok &= !(c.shape_mismatch || c.dtype_mismatch) && c.mismatches == 0;
        }
        progress.set(k as u64 + 1);
    }
    progress.finish();
    let passed = outputs.iter().all(|o| o.ok);
    Ok(CheckReport {
        outputs,
        runs,
        strategies: [
            ma.load_strategy().to_string(),
            mb.load_strategy().to_string(),
        ],
        passed,
        rtol: opts.rtol,
        atol: opts.atol,
    })
}

impl CheckReport {
    /// The report as `laurelc check` prints it: one line per output (its
    /// largest absolute and elementwise relative errors, the absolute error
    /// over the output's largest magnitude, mismatches, status), then the
    /// verdict with the tolerances.
    #[must_use]
    pub fn to_table(&self) -> String {
        let (rtol, atol) = (self.rtol, self.atol);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<40} {:>12} {:>12} {:>12} {:>10}  status",
            "output", "max_abs", "max_rel", "abs/scale", "mismatches"
        );
        for o in &self.outputs {
            let status = if o.ok {
                "ok"
            } else if o.incompatible {
                "INCOMPATIBLE"
            } else {
                "DIFFERS"
            };
            let _ = writeln!(
                out,
                "{:<40} {:>12.3e} {:>12.3e} {:>12.3e} {:>10}  {status}",
                o.name, o.max_abs, o.max_rel, o.max_abs_over_scale, o.mismatches
            );
        }
        let _ = writeln!(
            out,
            "{} runs, rtol={rtol}, atol={atol}: {}",
            self.runs,
            if self.passed { "PASS" } else { "FAIL" }
        );
        out
    }
}
