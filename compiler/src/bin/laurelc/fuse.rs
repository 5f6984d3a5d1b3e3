//! `laurelc fuse MODEL -o OUT`: a `LAuReL` model prepared for inference
//! ([`laurelc::pipeline::fuse_file`]).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::args::{NamedValues, TargetArg, emit_line, parse_costs, parse_dims};

/// `laurelc fuse MODEL -o OUT`.
#[derive(Debug, Args)]
pub struct FuseArgs {
    /// The model.
    pub model: PathBuf,
    /// Where to write the result.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Allow OUT to be the input file.
    #[arg(long)]
    pub force: bool,
    /// Print what fusion did: rules fired, e-graph size and stop reason, cost before and after.
    #[arg(long)]
    pub explain: bool,
    /// Ops per saturation window (0: the whole graph at once).
    #[arg(long, default_value_t = laurelc::fuse::DEFAULT_WINDOW_OPS)]
    pub window_ops: usize,
    /// What the result may contain.
    #[arg(long, default_value = "onnx", value_parser = NamedValues::<TargetArg>::new())]
    pub target: TargetArg,
    /// The size a symbolic dimension will run at, as NAME=VALUE, for the cost model only
    /// (the result stays symbolic; unknown symbols count 1).
    #[arg(long = "dim", value_name = "NAME=VALUE")]
    pub dims: Vec<String>,
    /// A constant of the cost model, as NAME=VALUE in microseconds, for another machine or
    /// runtime: overhead, per-element, per-flop, flop-overhead, copy-overhead,
    /// laurel-residual-per-term or epilogue-overhead (defaults: calibrated on tract, see
    /// docs/benchmarks.md).
    #[arg(long = "cost", value_name = "NAME=VALUE")]
    pub costs: Vec<String>,
}

/// Fuses the model, writes it, and prints what fusion did.
pub fn run(a: &FuseArgs, quiet: bool) -> Result<()> {
    let opts = laurelc::pipeline::FuseFileOptions {
        force: a.force,
        fuse: laurelc::fuse::FuseOptions {
            window_ops: a.window_ops,
            target: a.target.0,
            sizes: parse_dims(&a.dims)?
                .into_iter()
                .map(|(k, v)| (k, v.unsigned_abs()))
                .collect(),
            costs: parse_costs(&a.costs)?,
            ..laurelc::fuse::FuseOptions::default()
        },
        ..laurelc::pipeline::FuseFileOptions::default()
    };
    let mut bar = crate::progress::Bar::new(quiet);
    let report = laurelc::pipeline::fuse_file(&a.model, &a.output, &opts, &mut bar)?;
    let summary = &report.summary;
    emit_line(&summary.to_line(&a.model, &a.output))?;
    if a.explain {
        emit_line(&laurelc::fuse::explain(summary))?;
    }
    if summary.hit_limit {
        eprintln!(
            "warning: a limit stopped saturation before a fixed point ({}): the result is correct but may not be fully fused",
            summary.stop
        );
    }
    Ok(())
}
