//! `laurelc profile MODEL`: the time of every node of tract's plan
//! ([`laurel_runtime::profile`]).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use crate::args::{InputArgs, emit, emit_line};

/// `laurelc profile MODEL`.
#[derive(Debug, Args)]
pub struct ProfileArgs {
    /// The model.
    pub model: PathBuf,
    /// Timed runs; each node's time is its median over them.
    #[arg(long, default_value_t = 100)]
    pub runs: usize,
    /// Untimed runs before the timed ones.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// The slowest nodes to list after the ops (0: none).
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    #[command(flatten)]
    pub given: InputArgs,
    /// Print the profile as JSON (every node).
    #[arg(long)]
    pub json: bool,
}

/// Profiles the model and prints where its time goes.
pub fn run(a: &ProfileArgs, quiet: bool) -> Result<()> {
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let (model, inputs) = a.given.load(&a.model)?;
    let mut bar = crate::progress::Bar::new(quiet || a.json);
    let p = laurel_runtime::profile::profile_with_progress(
        &model, &inputs, a.runs, a.warmup, &mut bar,
    )?;
    if a.json {
        emit_line(&serde_json::to_string_pretty(&p)?)?;
    } else {
        emit(&p.to_table(a.top))?;
    }
    Ok(())
}
