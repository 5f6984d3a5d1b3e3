//! Interleaved benchmarks: how long models take on tract, relative to a baseline
//! measured in the same run.
//!
//! [`bench_files`] loads N models with the same [`LoadOptions`]; [`bench()`] takes them
//! loaded. The first model is the **baseline**. One set of inputs is made for all of
//! them: the tensors the caller gives, and seeded random values
//! ([`random_inputs`]) for the other inputs *declared by the baseline*. Every other
//! model must declare exactly the same inputs (names, element types and concrete
//! shapes, in any order), or the benchmark fails before running anything.
//!
//! Then:
//!
//! 1. one untimed **check run** of each model, so that a model which loads but cannot
//!    run on these inputs fails with its label before any timing;
//! 2. `warmup` untimed rounds;
//! 3. `runs` timed rounds. A **round** runs every model once, in order: A B C, A B C, …
//!    With [`BenchOptions::rotate`], round `r` starts at model `r mod N` instead
//!    (A B C, B C A, C A B, …), so that no model always runs right after the same
//!    other one; see [`round_order`].
//!
//! Each run is timed alone with [`std::time::Instant`]: copying the inputs happens
//! before the clock starts and dropping the outputs after it stops. The result
//! ([`BenchReport`]) holds each model's samples, order statistics ([`SampleStats`]),
//! the ratio of its median to the baseline's median, and the median of its
//! per-round ratios (sample `r` over the baseline's sample `r`, same round), which is
//! more robust to slow drift of the machine's speed than the ratio of medians.
//!
//! Interleaving and medians are what make the ratios usable on a shared, noisy
//! machine; absolute times are not comparable between runs.
//!
//! ```no_run
//! use laurel_runtime::bench::{BenchOptions, bench_files};
//! use laurel_runtime::LoadOptions;
//! # fn main() -> Result<(), laurel_runtime::RuntimeError> {
//! let report = bench_files(
//!     &["base.onnx", "augmented.onnx", "fused.onnx"],
//!     &LoadOptions::with_dims([("batch", 8)]),
//!     &[],
//!     &BenchOptions::default(),
//! )?;
//! print!("{}", report.to_table());
//! # Ok(()) }
//! ```

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use tract_onnx::prelude::Tensor;

use crate::datum::{DimSpec, InputSpec};
use crate::error::RuntimeError;
use crate::model::{LoadOptions, ModelSource};
use crate::random::random_inputs;
use crate::runnable::Runnable;

/// Options of [`bench()`] and [`bench_files`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BenchOptions {
    /// Timed rounds (samples per model). 0 counts as 1.
    pub runs: usize,
    /// Untimed rounds before the timed ones (after one check run of each model).
    pub warmup: usize,
    /// Seed of the random inputs.
    pub seed: u64,
    /// Rotate the start of each round (see [`round_order`]).
    pub rotate: bool,
    /// Loads of each model file ([`bench_files`]; 0 counts as 1). A model's time can
    /// move by several percent from one load to the next (where its buffers land in
    /// memory), more than between the rounds of one load; with several loads, each
    /// model's runs cycle through its loads, so its samples span as many layouts.
    pub loads: usize,
    /// Give each model its own inputs (the given tensors it declares, seeded
    /// random values for the rest) instead of requiring every model to declare
    /// the baseline's: for models with different inputs, such as a model and
    /// its training step.
    pub own_inputs: bool,
}

impl Default for BenchOptions {
    /// 20 runs, 3 warm-up rounds, seed 0, fixed order, one load, the
    /// baseline's inputs for every model.
    fn default() -> Self {
        BenchOptions {
            runs: 20,
            warmup: 3,
            seed: 0,
            rotate: false,
            loads: 1,
            own_inputs: false,
        }
    }
}

/// Order statistics of a set of samples, in milliseconds. Percentiles interpolate
/// linearly between the closest ranks (numpy's default `linear` method), so the
/// median of an even number of samples is the mean of the two middle ones.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SampleStats {
    /// Number of samples.
    pub n: usize,
    /// The median (50th percentile).
    pub median_ms: f64,
    /// The smallest sample.
    pub min_ms: f64,
    /// The largest sample.
    pub max_ms: f64,
    /// The arithmetic mean.
    pub mean_ms: f64,
    /// The 10th percentile.
    pub p10_ms: f64,
    /// The 90th percentile.
    pub p90_ms: f64,
    /// The first quartile (25th percentile).
    pub q1_ms: f64,
    /// The third quartile (75th percentile).
    pub q3_ms: f64,
    /// The interquartile range, `q3 − q1`.
    pub iqr_ms: f64,
}

impl SampleStats {
    /// The statistics of `samples` (any order). Every field but `n` is NaN when
    /// `samples` is empty. NaN samples sort after every number (IEEE total order).
    ///
    /// O(n log n) time (one sort of a copy), O(n) memory.
    #[must_use]
    pub fn of(samples: &[f64]) -> SampleStats {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let q1 = percentile_sorted(&sorted, 25.0);
        let q3 = percentile_sorted(&sorted, 75.0);
        #[allow(clippy::cast_precision_loss)] // sample counts are far below 2^52
        let mean = if sorted.is_empty() {
            f64::NAN
        } else {
            sorted.iter().sum::<f64>() / sorted.len() as f64
        };
        SampleStats {
            n: sorted.len(),
            median_ms: percentile_sorted(&sorted, 50.0),
            min_ms: sorted.first().copied().unwrap_or(f64::NAN),
            max_ms: sorted.last().copied().unwrap_or(f64::NAN),
            mean_ms: mean,
            p10_ms: percentile_sorted(&sorted, 10.0),
            p90_ms: percentile_sorted(&sorted, 90.0),
            q1_ms: q1,
            q3_ms: q3,
            iqr_ms: q3 - q1,
        }
    }
}

/// The `p`-th percentile (`0 ≤ p ≤ 100`, clamped) of samples already sorted in
/// ascending order, interpolating linearly between closest ranks: rank
/// `p/100·(n − 1)`. NaN for an empty slice. O(1).
#[must_use]
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return f64::NAN;
    };
    #[allow(clippy::cast_precision_loss)]
    let rank = p.clamp(0.0, 100.0) / 100.0 * last as f64;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // 0 ≤ rank ≤ last
    let lo = (rank.floor() as usize).min(last);
    let hi = (lo + 1).min(last);
    #[allow(clippy::cast_precision_loss)]
    let frac = rank - lo as f64;
    if frac == 0.0 {
        sorted[lo]
    } else {
        sorted[lo] + (sorted[hi] - sorted[lo]) * frac
    }
}

/// The median of `samples` (any order): the mean of the two middle values for an
/// even count, NaN when empty. O(n log n).
#[must_use]
pub fn median(samples: &[f64]) -> f64 {
    SampleStats::of(samples).median_ms
}

/// One model's timings relative to the baseline, from [`analyse`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Timing {
    /// Statistics of the samples.
    #[serde(flatten)]
    pub stats: SampleStats,
    /// This model's median over the baseline's median; exactly 1 for the baseline.
    pub ratio: f64,
    /// The median over rounds of this model's sample divided by the baseline's
    /// sample of the same round; exactly 1 for the baseline.
    pub round_ratio: f64,
    /// The samples in milliseconds, in round order.
    pub samples_ms: Vec<f64>,
}

/// Statistics and ratios of per-model samples (`samples[model][round]`, in ms);
/// model 0 is the baseline. Per-round ratios pair rounds by index and stop at the
/// shorter of the two rows. A baseline median or sample of 0 gives infinite or NaN
/// ratios (a real clock never measures 0 for a model run).
///
/// O(N·R log R) time for N models of R samples, O(N·R) memory.
#[must_use]
pub fn analyse(samples: &[Vec<f64>]) -> Vec<Timing> {
    let Some(base) = samples.first() else {
        return Vec::new();
    };
    let base_median = median(base);
    samples
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let stats = SampleStats::of(row);
            let (ratio, round_ratio) = if i == 0 {
                (1.0, 1.0)
            } else {
                let per_round: Vec<f64> = row.iter().zip(base).map(|(x, b)| x / b).collect();
                (stats.median_ms / base_median, median(&per_round))
            };
            Timing {
                stats,
                ratio,
                round_ratio,
                samples_ms: row.clone(),
            }
        })
        .collect()
}

/// The order in which round `round` runs `models` models: `0, 1, …, N − 1`, or with
/// `rotate`, the same sequence starting at `round mod N`. O(N) to iterate.
pub fn round_order(round: usize, models: usize, rotate: bool) -> impl Iterator<Item = usize> {
    let start = if rotate && models > 0 {
        round % models
    } else {
        0
    };
    (0..models).map(move |k| (start + k) % models)
}

/// The timing loop behind [`bench()`], generic so that it can be tested with a fake
/// clock: `opts.warmup` untimed rounds, then `max(opts.runs, 1)` timed rounds, each
/// running models `0..models` in [`round_order`]. For each run it calls
/// `prepare(model)` (untimed; e.g. copying the inputs), reads `now()`, calls
/// `run(model, prepared)`, reads `now()` again, and only then drops what `run`
/// returned. `now` is a monotonic clock (time since any fixed origin).
///
/// Returns `samples[model][round]` in milliseconds (timed rounds only), or the first
/// error of `run`, at which point it stops. `opts.seed` is not used here.
///
/// O((warmup + runs)·models) calls of each closure; O(runs·models) memory.
pub fn time_rounds<I, O, E>(
    models: usize,
    opts: &BenchOptions,
    mut prepare: impl FnMut(usize) -> I,
    mut run: impl FnMut(usize, I) -> Result<O, E>,
    mut now: impl FnMut() -> Duration,
) -> Result<Vec<Vec<f64>>, E> {
    let runs = opts.runs.max(1);
    for round in 0..opts.warmup {
        for m in round_order(round, models, opts.rotate) {
            let input = prepare(m);
            drop(run(m, input)?);
        }
    }
    let mut samples = vec![Vec::with_capacity(runs); models];
    for round in 0..runs {
        for m in round_order(round, models, opts.rotate) {
            let input = prepare(m);
            let start = now();
            let output = run(m, input)?;
            let end = now();
            drop(output);
            samples[m].push(end.saturating_sub(start).as_secs_f64() * 1e3);
        }
    }
    Ok(samples)
}

/// One input of a benchmark, as every model received it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BenchInput {
    /// The input's name.
    pub name: String,
    /// Its element type (`f32`, `i64`, …).
    pub datum: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// True if the values are random (seeded), false if the caller gave them.
    pub random: bool,
}

/// One benchmarked model.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenchModel {
    /// The caller's label (for [`bench_files`], the path).
    pub label: String,
    /// The loader strategy tract needed (see [`crate::STRATEGIES`]).
    pub load_strategy: String,
    /// Its timings.
    #[serde(flatten)]
    pub timing: Timing,
}

/// The result of [`bench()`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenchReport {
    /// Timed rounds (samples per model).
    pub runs: usize,
    /// Untimed warm-up rounds (after one check run of each model).
    pub warmup: usize,
    /// Seed of the random inputs.
    pub seed: u64,
    /// Whether each round's start was rotated.
    pub rotate: bool,
    /// Loads of each model that the runs cycled through.
    pub loads: usize,
    /// The inputs every model received.
    pub inputs: Vec<BenchInput>,
    /// The models, baseline first, in the caller's order.
    pub models: Vec<BenchModel>,
}

impl BenchReport {
    /// A plain-text table: one line per model with its median, 10th and 90th
    /// percentiles and IQR in ms, the ratio of medians and the median per-round
    /// ratio to the baseline; a header line says how it was measured. O(N).
    #[must_use]
    pub fn to_table(&self) -> String {
        let inputs: Vec<String> = self
            .inputs
            .iter()
            .map(|i| {
                let shape: Vec<String> = i.shape.iter().map(ToString::to_string).collect();
                format!(
                    "{} {}[{}]{}",
                    i.name,
                    i.datum,
                    shape.join("x"),
                    if i.random { " random" } else { "" }
                )
            })
            .collect();
        let loads = if self.loads > 1 {
            format!(", over {} loads of each model", self.loads)
        } else {
            String::new()
        };
        let mut s = format!(
            "{} runs after {} warm-up rounds, interleaved ({} order){loads}, seed {}; inputs: {}\n",
            self.runs,
            self.warmup,
            if self.rotate { "rotated" } else { "fixed" },
            self.seed,
            inputs.join(", ")
        );
        let width = self
            .models
            .iter()
            .map(|m| m.label.chars().count())
            .max()
            .unwrap_or(0)
            .max("model".len());
        let _ = writeln!(
            s,
            "{:<width$} {:>10} {:>10} {:>10} {:>10} {:>7} {:>11}",
            "model", "median ms", "p10 ms", "p90 ms", "IQR ms", "ratio", "round ratio"
        );
        for m in &self.models {
            let t = &m.timing;
            let _ = writeln!(
                s,
                "{:<width$} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>7.3} {:>11.3}",
                m.label,
                t.stats.median_ms,
                t.stats.p10_ms,
                t.stats.p90_ms,
                t.stats.iqr_ms,
                t.ratio,
                t.round_ratio
            );
        }
        s
    }
}

fn describe(spec: &InputSpec) -> String {
    let shape: Vec<String> = spec.shape.iter().map(DimSpec::to_string).collect();
    format!("{}[{}]", spec.datum, shape.join("x"))
}

/// Checks that `other` declares the same inputs as `base` (names, element types and
/// shapes; order does not matter). The error is
/// [`RuntimeError::UnsupportedModel`] naming `other_label`, the first difference and
/// `base_label`. O(n²) in the number of inputs (a handful).
pub fn check_same_inputs(
    base_label: &str,
    base: &[InputSpec],
    other_label: &str,
    other: &[InputSpec],
) -> Result<(), RuntimeError> {
    let differ = |message: String| RuntimeError::UnsupportedModel {
        model: other_label.to_owned(),
        message: format!("its inputs differ from the baseline {base_label}'s: {message}"),
    };
    for b in base {
        match other.iter().find(|o| o.name == b.name) {
            None => {
                return Err(differ(format!(
                    "it has no input `{}` ({} in the baseline)",
                    b.name,
                    describe(b)
                )));
            }
            // The same input: name, type and shape (how random ids are
            // bounded may differ between two files of one model).
            Some(o) if o.datum != b.datum || o.shape != b.shape => {
                return Err(differ(format!(
                    "input `{}` is {} here, {} in the baseline",
                    b.name,
                    describe(o),
                    describe(b)
                )));
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = other
        .iter()
        .find(|o| !base.iter().any(|b| b.name == o.name))
    {
        return Err(differ(format!(
            "it has an input `{}` ({}) that the baseline does not have",
            extra.name,
            describe(extra)
        )));
    }
    Ok(())
}

/// A run error with the model's label in front; other errors as they are.
fn labelled(label: &str, e: RuntimeError) -> RuntimeError {
    match e {
        RuntimeError::Run { message } => RuntimeError::Run {
            message: format!("{label}: {message}"),
        },
        other => other,
    }
}

/// Benchmarks loaded models, the first being the baseline (see the module doc for
/// the procedure). `given` holds input values by name; every other input of the
/// baseline gets seeded random values ([`random_inputs`] with `opts.seed`). With no
/// models the report is empty.
///
/// Errors: a given name that is not an input of the baseline
/// ([`RuntimeError::UnknownInput`]); a model whose inputs differ from the baseline's
/// ([`RuntimeError::UnsupportedModel`], see [`check_same_inputs`]); random inputs
/// that cannot be made; a model failing to run ([`RuntimeError::Run`], the message
/// starting with its label, or the input errors of [`Runnable::run`] for a given
/// tensor of the wrong type or shape).
///
/// Cost: `N·(1 + warmup + runs)` model runs for N models, each preceded by a copy of
/// the inputs; O(N·runs) memory for the samples besides one set of inputs (plus the
/// copy being run) and the models themselves.
pub fn bench(
    models: &[(String, Runnable)],
    given: &[(String, Tensor)],
    opts: &BenchOptions,
) -> Result<BenchReport, RuntimeError> {
    let loaded: Vec<(String, Vec<Runnable>)> = models
        .iter()
        .map(|(label, m)| (label.clone(), vec![m.clone()]))
        .collect();
    bench_loads(&loaded, given, &BenchOptions { loads: 1, ..*opts })
}

/// [`bench()`] for models loaded several times each (`models[i].1`, the loads of model
/// `i`, not empty): the `k`-th run of a model (warm-up and check runs included) uses
/// its load `k mod loads`, so that its samples span every load. The report's `loads`
/// is the most loads of a model.
///
/// Errors: those of [`bench()`]; a model without a load is
/// [`RuntimeError::UnsupportedModel`].
/// Cost: as [`bench()`], plus one check run of every load.
pub fn bench_loads(
    models: &[(String, Vec<Runnable>)],
    given: &[(String, Tensor)],
    opts: &BenchOptions,
) -> Result<BenchReport, RuntimeError> {
    bench_loads_with_progress(models, given, opts, &mut crate::progress::Silent)
}

/// [`bench_loads`], reporting every run (warm-up runs too) to `progress`,
/// outside the timed region.
///
/// Errors and cost: those of [`bench_loads`].
#[allow(clippy::too_many_lines)] // checks, one untimed run of each load, the timed rounds, the report
pub fn bench_loads_with_progress(
    models: &[(String, Vec<Runnable>)],
    given: &[(String, Tensor)],
    opts: &BenchOptions,
    progress: &mut dyn crate::progress::Progress,
) -> Result<BenchReport, RuntimeError> {
    let runs = opts.runs.max(1);
    let loads = models
        .iter()
        .map(|(_, l)| l.len())
        .max()
        .unwrap_or(1)
        .max(1);
    if let Some((label, _)) = models.iter().find(|(_, l)| l.is_empty()) {
        return Err(RuntimeError::UnsupportedModel {
            model: label.clone(),
            message: "benchmarked without a loaded copy".into(),
        });
    }
    let Some((base_label, base)) = models.first().and_then(|(l, m)| Some((l, m.first()?))) else {
        return Ok(BenchReport {
            runs,
            warmup: opts.warmup,
            seed: opts.seed,
            rotate: opts.rotate,
            loads,
            inputs: Vec::new(),
            models: Vec::new(),
        });
    };
    for (name, _) in given {
        let known = if opts.own_inputs {
            models
                .iter()
                .any(|(_, c)| c.iter().any(|m| m.inputs().iter().any(|i| i.name == *name)))
        } else {
            base.inputs().iter().any(|s| s.name == *name)
        };
        if !known {
            return Err(RuntimeError::UnknownInput {
                name: name.clone(),
                known: base
                    .inputs()
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    if !opts.own_inputs {
        for (label, copies) in models {
            for m in copies {
                check_same_inputs(base_label, base.inputs(), label, m.inputs())?;
            }
        }
    }
    // The inputs of each model: the baseline's for all, or each its own.
    let inputs_of = |m: &Runnable| -> Result<Vec<(String, Tensor)>, RuntimeError> {
        let rest: Vec<InputSpec> = m
            .inputs()
            .iter()
            .filter(|s| !given.iter().any(|(n, _)| *n == s.name))
            .cloned()
            .collect();
        let mut inputs: Vec<(String, Tensor)> = given
            .iter()
            .filter(|(n, _)| m.inputs().iter().any(|s| s.name == *n))
            .cloned()
            .collect();
        inputs.extend(random_inputs(&rest, opts.seed)?);
        Ok(inputs)
    };
    let per_model: Vec<Vec<(String, Tensor)>> = models
        .iter()
        .map(|(_, copies)| inputs_of(if opts.own_inputs { &copies[0] } else { base }))
        .collect::<Result<_, _>>()?;
    for ((label, copies), inputs) in models.iter().zip(&per_model) {
        for m in copies {
            m.run(inputs.clone()).map_err(|e| labelled(label, e))?;
        }
    }
    let origin = Instant::now();
    let mut calls = vec![0usize; models.len()];
    let total = (opts.warmup + runs) * models.len();
    progress.start("bench runs", total as u64);
    let mut prepared = 0u64;
    let samples = time_rounds(
        models.len(),
        opts,
        |i| {
            progress.set(prepared);
            prepared += 1;
            per_model[i].clone()
        },
        |i, input| {
            let copies = &models[i].1;
            let m = &copies[calls[i] % copies.len()];
            calls[i] += 1;
            m.run(input).map_err(|e| labelled(&models[i].0, e))
        },
        || origin.elapsed(),
    )?;
    progress.set(prepared);
    progress.finish();
    let report_inputs = base
        .inputs()
        .iter()
        .map(|s| BenchInput {
            name: s.name.clone(),
            datum: s.datum.to_string(),
            shape: s.concrete_shape().unwrap_or_default(),
            random: !given.iter().any(|(n, _)| *n == s.name),
        })
        .collect();
    Ok(BenchReport {
        runs,
        warmup: opts.warmup,
        seed: opts.seed,
        rotate: opts.rotate,
        loads,
        inputs: report_inputs,
        models: models
            .iter()
            .zip(analyse(&samples))
            .map(|((label, copies), timing)| BenchModel {
                label: label.clone(),
                load_strategy: copies
                    .first()
                    .map(|m| m.load_strategy().to_owned())
                    .unwrap_or_default(),
                timing,
            })
            .collect(),
    })
}

/// Loads the model files with the same options, each [`BenchOptions::loads`] times,
/// and benchmarks them with [`bench_loads`], the first being the baseline; each
/// model's label is its path. The shapes of the
/// `given` tensors are added to `load.shapes` (replacing entries of the same name),
/// so that given tensors size the models as in `laurelc run`.
///
/// Errors: those of [`crate::load()`] for any file, then those of [`bench()`].
/// Cost: loading (and optimising) every model, then as [`bench()`].
pub fn bench_files<P: AsRef<Path>>(
    paths: &[P],
    load: &LoadOptions,
    given: &[(String, Tensor)],
    opts: &BenchOptions,
) -> Result<BenchReport, RuntimeError> {
    bench_files_with_progress(paths, load, given, opts, &mut crate::progress::Silent)
}

/// [`bench_files`], reporting the runs to `progress` ([`bench_loads_with_progress`]).
///
/// Errors and cost: those of [`bench_files`].
pub fn bench_files_with_progress<P: AsRef<Path>>(
    paths: &[P],
    load: &LoadOptions,
    given: &[(String, Tensor)],
    opts: &BenchOptions,
    progress: &mut dyn crate::progress::Progress,
) -> Result<BenchReport, RuntimeError> {
    let load = crate::inputs::sized(load, given);
    let models = paths
        .iter()
        .map(|p| {
            let p = p.as_ref();
            let copies = (0..opts.loads.max(1))
                .map(|_| crate::load::load(ModelSource::Path(p), &load))
                .collect::<Result<Vec<_>, RuntimeError>>()?;
            Ok((p.display().to_string(), copies))
        })
        .collect::<Result<Vec<_>, RuntimeError>>()?;
    bench_loads_with_progress(&models, given, opts, progress)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::float_cmp)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::path::PathBuf;

    use super::*;
    use crate::datum::DatumKind;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn percentiles_interpolate_like_numpy() {
        // numpy.percentile([1, 2, 3, 4], [0, 10, 25, 50, 75, 90, 100])
        let s = [1.0, 2.0, 3.0, 4.0];
        let want = [
            (0.0, 1.0),
            (10.0, 1.3),
            (25.0, 1.75),
            (50.0, 2.5),
            (75.0, 3.25),
            (90.0, 3.7),
            (100.0, 4.0),
        ];
        for (p, v) in want {
            assert!(close(percentile_sorted(&s, p), v), "p{p}");
        }
        assert_eq!(percentile_sorted(&s, 150.0), 4.0);
        assert_eq!(percentile_sorted(&s, -5.0), 1.0);
        assert_eq!(percentile_sorted(&[7.0], 90.0), 7.0);
        assert!(percentile_sorted(&[], 50.0).is_nan());
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[5.0, 1.0, 100.0]), 5.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn stats_of_unsorted_samples() {
        let s = SampleStats::of(&[5.0, 1.0, 4.0, 2.0, 3.0]);
        assert_eq!(s.n, 5);
        assert_eq!(s.median_ms, 3.0);
        assert_eq!(s.min_ms, 1.0);
        assert_eq!(s.max_ms, 5.0);
        assert_eq!(s.mean_ms, 3.0);
        assert!(close(s.p10_ms, 1.4));
        assert!(close(s.p90_ms, 4.6));
        assert_eq!(s.q1_ms, 2.0);
        assert_eq!(s.q3_ms, 4.0);
        assert_eq!(s.iqr_ms, 2.0);
        let empty = SampleStats::of(&[]);
        assert_eq!(empty.n, 0);
        assert!(empty.median_ms.is_nan() && empty.min_ms.is_nan() && empty.mean_ms.is_nan());
    }

    #[test]
    fn ratios_of_medians_and_per_round() {
        let t = analyse(&[vec![10.0, 30.0, 20.0], vec![20.0, 60.0, 40.0]]);
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].ratio, t[0].round_ratio), (1.0, 1.0));
        assert_eq!((t[1].ratio, t[1].round_ratio), (2.0, 2.0));
        assert_eq!(t[1].samples_ms, [20.0, 60.0, 40.0]);
        // The machine slows down over the run: the ratio of medians says the other
        // model is faster, the per-round ratios (2, 0.5, 3) say it is slower.
        let drift = analyse(&[vec![1.0, 10.0, 100.0], vec![2.0, 5.0, 300.0]]);
        assert_eq!(drift[1].ratio, 0.5);
        assert_eq!(drift[1].round_ratio, 2.0);
        assert!(analyse(&[]).is_empty());
    }

    #[test]
    fn round_orders() {
        let fixed: Vec<Vec<usize>> = (0..4).map(|r| round_order(r, 3, false).collect()).collect();
        assert_eq!(fixed, [[0, 1, 2], [0, 1, 2], [0, 1, 2], [0, 1, 2]]);
        let rotated: Vec<Vec<usize>> = (0..4).map(|r| round_order(r, 3, true).collect()).collect();
        assert_eq!(rotated, [[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 1, 2]]);
        assert_eq!(round_order(5, 0, true).count(), 0);
    }

    /// A fake clock: model `m` takes `m + 1` ms to run; preparing takes 100 ms,
    /// which must not be counted.
    fn fake_rounds(
        models: usize,
        opts: &BenchOptions,
        fail_at: Option<usize>,
    ) -> (Result<Vec<Vec<f64>>, String>, Vec<usize>) {
        let clock = Cell::new(Duration::ZERO);
        let calls = RefCell::new(Vec::new());
        let result = time_rounds(
            models,
            opts,
            |m| {
                clock.set(clock.get() + Duration::from_millis(100));
                m
            },
            |m, prepared| {
                assert_eq!(m, prepared);
                let mut c = calls.borrow_mut();
                if fail_at == Some(c.len()) {
                    return Err(format!("model {m} failed"));
                }
                c.push(m);
                clock.set(clock.get() + Duration::from_millis(m as u64 + 1));
                Ok(m)
            },
            || clock.get(),
        );
        (result, calls.into_inner())
    }

    #[test]
    fn rounds_interleave_and_time_only_the_run() {
        let opts = BenchOptions {
            runs: 3,
            warmup: 2,
            seed: 0,
            rotate: false,
            loads: 1,
            own_inputs: false,
        };
        let (samples, calls) = fake_rounds(3, &opts, None);
        assert_eq!(calls, [0, 1, 2].repeat(5));
        let samples = samples.unwrap();
        assert_eq!(samples, [vec![1.0; 3], vec![2.0; 3], vec![3.0; 3]]);
        let t = analyse(&samples);
        assert_eq!((t[1].ratio, t[2].ratio), (2.0, 3.0));
        assert_eq!((t[1].round_ratio, t[2].round_ratio), (2.0, 3.0));
    }

    #[test]
    fn rotated_rounds_start_one_later_each_time() {
        let opts = BenchOptions {
            runs: 2,
            warmup: 1,
            seed: 0,
            rotate: true,
            loads: 1,
            own_inputs: false,
        };
        let (samples, calls) = fake_rounds(3, &opts, None);
        // Warm-up round 0, then timed rounds 0 and 1.
        assert_eq!(calls, [0, 1, 2, 0, 1, 2, 1, 2, 0]);
        assert_eq!(samples.unwrap(), [vec![1.0; 2], vec![2.0; 2], vec![3.0; 2]]);
    }

    #[test]
    fn zero_runs_count_as_one_and_errors_stop_the_loop() {
        let opts = BenchOptions {
            runs: 0,
            warmup: 0,
            seed: 0,
            rotate: false,
            loads: 1,
            own_inputs: false,
        };
        let (samples, _) = fake_rounds(2, &opts, None);
        assert_eq!(samples.unwrap(), [vec![1.0], vec![2.0]]);
        let opts = BenchOptions {
            runs: 5,
            warmup: 1,
            ..opts
        };
        let (samples, calls) = fake_rounds(2, &opts, Some(3));
        assert_eq!(samples.unwrap_err(), "model 1 failed");
        assert_eq!(calls, [0, 1, 0]);
    }

    fn spec(name: &str, datum: DatumKind, shape: &[usize]) -> InputSpec {
        InputSpec {
            name: name.into(),
            datum,
            shape: shape.iter().copied().map(DimSpec::Fixed).collect(),
            index_rows: None,
        }
    }

    #[test]
    fn inputs_must_match_the_baseline() {
        let base = [
            spec("ids", DatumKind::I64, &[1, 8]),
            spec("mask", DatumKind::I64, &[1, 8]),
        ];
        let reordered = [base[1].clone(), base[0].clone()];
        check_same_inputs("a", &base, "b", &reordered).unwrap();
        let cases: [(Vec<InputSpec>, &str); 4] = [
            (vec![base[0].clone()], "no input `mask`"),
            (
                vec![base[0].clone(), spec("mask", DatumKind::I64, &[2, 8])],
                "input `mask` is i64[2x8] here, i64[1x8] in the baseline",
            ),
            (
                vec![spec("ids", DatumKind::I32, &[1, 8]), base[1].clone()],
                "input `ids` is i32[1x8] here",
            ),
            (
                vec![
                    base[0].clone(),
                    base[1].clone(),
                    spec("pos", DatumKind::I64, &[1, 8]),
                ],
                "an input `pos` (i64[1x8])",
            ),
        ];
        for (other, want) in cases {
            let e = check_same_inputs("a.onnx", &base, "b.onnx", &other).unwrap_err();
            let RuntimeError::UnsupportedModel { model, message } = &e else {
                panic!("unexpected error {e:?}");
            };
            assert_eq!(model, "b.onnx");
            assert!(message.contains("baseline a.onnx"), "{message}");
            assert!(message.contains(want), "`{want}` not in: {message}");
        }
    }

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures")
            .join(name)
    }

    fn few_runs() -> BenchOptions {
        BenchOptions {
            runs: 3,
            warmup: 1,
            seed: 7,
            rotate: false,
            loads: 1,
            own_inputs: false,
        }
    }

    #[test]
    fn models_with_different_inputs_need_their_own() {
        let a = fixture("tiny_resnet.onnx");
        let b = fixture("tiny_preln_transformer.onnx");
        let paths = [&a, &b];
        let e = bench_files(&paths, &LoadOptions::default(), &[], &few_runs()).unwrap_err();
        assert!(e.to_string().contains("input"), "{e}");
        let own = BenchOptions {
            own_inputs: true,
            ..few_runs()
        };
        let r = bench_files(&paths, &LoadOptions::default(), &[], &own).unwrap();
        assert_eq!(r.models.len(), 2);
        assert!(r.models.iter().all(|m| m.timing.samples_ms.len() == 3));
    }

    #[test]
    fn bench_files_reports_every_model() {
        let a = fixture("tiny_resnet.onnx");
        let r = bench_files(&[&a, &a], &LoadOptions::default(), &[], &few_runs()).unwrap();
        assert_eq!((r.runs, r.warmup, r.seed), (3, 1, 7));
        assert_eq!(
            r.inputs,
            [BenchInput {
                name: "input".into(),
                datum: "f32".into(),
                shape: vec![1, 3, 16, 16],
                random: true,
            }]
        );
        assert_eq!(r.models.len(), 2);
        assert_eq!(r.models[0].label, a.display().to_string());
        assert_eq!(r.models[0].timing.ratio, 1.0);
        for m in &r.models {
            assert_eq!(m.timing.samples_ms.len(), 3);
            assert!(m.timing.samples_ms.iter().all(|&s| s > 0.0));
        }
        let table = r.to_table();
        assert_eq!(table.lines().count(), 4, "{table}");
        assert!(table.contains("input f32[1x3x16x16] random"), "{table}");
    }

    #[test]
    fn several_loads_of_each_model_share_the_rounds() {
        let a = fixture("tiny_resnet.onnx");
        let opts = BenchOptions {
            loads: 2,
            ..few_runs()
        };
        let r = bench_files(&[&a, &a], &LoadOptions::default(), &[], &opts).unwrap();
        assert_eq!((r.runs, r.loads), (3, 2));
        assert!(r.models.iter().all(|m| m.timing.samples_ms.len() == 3));
        assert!(r.to_table().contains("over 2 loads of each model"));
        // A model without a load is an error, not a panic.
        let one = crate::load::load(ModelSource::Path(&a), &LoadOptions::default()).unwrap();
        let e = bench_loads(
            &[("a".into(), vec![one]), ("b".into(), vec![])],
            &[],
            &few_runs(),
        )
        .unwrap_err();
        assert!(
            matches!(&e, RuntimeError::UnsupportedModel { model, .. } if model == "b"),
            "{e:?}"
        );
    }

    #[test]
    fn bench_rejects_models_with_other_inputs() {
        let a = fixture("tiny_resnet.onnx");
        let b = fixture("tiny_preln_transformer.onnx");
        let e = bench_files(&[&a, &b], &LoadOptions::default(), &[], &few_runs()).unwrap_err();
        assert!(
            matches!(&e, RuntimeError::UnsupportedModel { model, .. } if *model == b.display().to_string()),
            "{e:?}"
        );
    }

    #[test]
    fn given_inputs_are_checked_and_used() {
        let a = fixture("tiny_resnet.onnx");
        let x = Tensor::from_shape(&[1, 3, 16, 16], &vec![0.5f32; 768]).unwrap();
        let r = bench_files(
            &[&a],
            &LoadOptions::default(),
            &[("input".into(), x.clone())],
            &few_runs(),
        )
        .unwrap();
        assert!(!r.inputs[0].random);
        let e = bench_files(
            &[&a],
            &LoadOptions::default(),
            &[("nope".into(), x)],
            &few_runs(),
        )
        .unwrap_err();
        assert!(
            matches!(&e, RuntimeError::UnknownInput { name, .. } if name == "nope"),
            "{e:?}"
        );
        let empty: [&Path; 0] = [];
        let r = bench_files(&empty, &LoadOptions::default(), &[], &few_runs()).unwrap();
        assert!(r.models.is_empty() && r.inputs.is_empty());
    }
}
