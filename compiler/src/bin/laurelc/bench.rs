//! `laurelc bench BASELINE OTHER...`: models timed on tract, interleaved
//! ([`laurel_runtime::bench`]).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;

use crate::args::{InputArgs, emit, emit_line};

/// `laurelc bench BASELINE OTHER...`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The baseline model: ratios are to its median.
    pub baseline: PathBuf,
    /// The models to compare with it; they must have the baseline's inputs.
    #[arg(required = true)]
    pub others: Vec<PathBuf>,
    /// Timed rounds; each round runs every model once.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Untimed rounds before the timed ones.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Start round r at model r mod N (A B C, B C A, …) instead of always at the baseline.
    #[arg(long)]
    pub rotate: bool,
    /// Load each model this many times; its runs cycle through the loads, so that its
    /// samples span several memory layouts (a model's time can move by several percent
    /// from one load to the next).
    #[arg(long, default_value_t = 1)]
    pub loads: usize,
    /// Give each model its own inputs (the given ones it declares, random values for the
    /// rest) instead of the baseline's: for models with different inputs, such as a
    /// model and its training step (`laurelc grad`).
    #[arg(long)]
    pub own_inputs: bool,
    #[command(flatten)]
    pub given: InputArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Times the models and prints the report.
pub fn run(a: &BenchArgs, quiet: bool) -> Result<()> {
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let (given, load) = a.given.parse()?;
    let opts = laurel_runtime::BenchOptions {
        runs: a.runs,
        warmup: a.warmup,
        seed: a.given.seed,
        rotate: a.rotate,
        loads: a.loads,
        own_inputs: a.own_inputs,
    };
    let paths: Vec<&Path> = std::iter::once(a.baseline.as_path())
        .chain(a.others.iter().map(PathBuf::as_path))
        .collect();
    let mut bar = crate::progress::Bar::new(quiet || a.json);
    let report =
        laurel_runtime::bench::bench_files_with_progress(&paths, &load, &given, &opts, &mut bar)?;
    if a.json {
        emit_line(&serde_json::to_string_pretty(&report)?)?;
    } else {
        emit(&report.to_table())?;
    }
    Ok(())
}
