//! `laurelc check A B`: both models on the same inputs, their outputs
//! compared ([`laurel_runtime::check`]); exit 1 when they differ.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use laurel_runtime::CheckOptions;

use crate::args::{InputArgs, emit, emit_line};

/// `laurelc check A B`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The reference model.
    pub a: PathBuf,
    /// The model to compare with it.
    pub b: PathBuf,
    /// Relative tolerance.
    #[arg(long, default_value_t = 1e-4)]
    pub rtol: f64,
    /// Absolute tolerance.
    #[arg(long, default_value_t = 1e-5)]
    pub atol: f64,
    /// Number of random input sets (run k uses seed + k).
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    #[command(flatten)]
    pub given: InputArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// An error that means "a check failed" (exit 1) rather than bad input (exit 2).
#[derive(Debug)]
pub struct CheckFailed;

impl std::fmt::Display for CheckFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("outputs differ beyond tolerance")
    }
}

impl std::error::Error for CheckFailed {}

/// Compares the models and prints the report.
pub fn run(a: &CheckArgs, quiet: bool) -> Result<()> {
    if !(a.rtol >= 0.0 && a.atol >= 0.0) {
        bail!("--rtol and --atol must be non-negative numbers");
    }
    let (given, load) = a.given.parse()?;
    let opts = CheckOptions {
        rtol: a.rtol,
        atol: a.atol,
        seed: a.given.seed,
        runs: a.runs,
        dims: load.dims,
        shapes: load.shapes,
        given,
    };
    let mut bar = crate::progress::Bar::new(quiet || a.json);
    let report = laurel_runtime::check::check_models_with_progress(&a.a, &a.b, &opts, &mut bar)?;
    if a.json {
        emit_line(&serde_json::to_string_pretty(&report)?)?;
    } else {
        emit(&report.to_table())?;
    }
    if report.passed {
        Ok(())
    } else {
        Err(CheckFailed.into())
    }
}
