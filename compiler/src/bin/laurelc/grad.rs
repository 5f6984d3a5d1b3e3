//! `laurelc grad MODEL -o STEP.onnx`: the model's training step alone, for
//! any runtime ([`laurelc::pipeline::grad_file`]).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use laurel_runtime::LoadOptions;

use crate::args::{StepArgs, emit, emit_line, parse_dims, parse_shapes};

/// `laurelc grad MODEL -o STEP.onnx`.
#[derive(Debug, Args)]
pub struct GradArgs {
    /// The model.
    pub model: PathBuf,
    /// Where to write the training step.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Allow OUT to be the input file.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub step: StepArgs,
    /// The value of a symbolic dimension, as NAME=VALUE (default 1): the step is
    /// specialised to these sizes.
    #[arg(long = "dim", value_name = "NAME=VALUE")]
    pub dims: Vec<String>,
    /// The shape of an input, as NAME=1x3x224x224.
    #[arg(long = "shape", value_name = "NAME=SHAPE")]
    pub shapes: Vec<String>,
    /// Print the step's interface as JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// Builds the step, writes it, and prints its interface.
pub fn run(a: &GradArgs) -> Result<()> {
    if !(a.step.temperature.is_finite() && a.step.temperature > 0.0) {
        bail!(
            "--temperature {}: expected a positive number",
            a.step.temperature
        );
    }
    let train = laurelc::autodiff::TrainSpec::parse(&a.step.train).map_err(anyhow::Error::msg)?;
    let opts = laurelc::pipeline::GradFileOptions {
        force: a.force,
        grad: laurelc::autodiff::GradOptions {
            loss: a.step.loss.0,
            temperature: a.step.temperature,
            train,
            load: LoadOptions {
                dims: parse_dims(&a.dims)?,
                shapes: parse_shapes(&a.shapes)?,
                ..LoadOptions::default()
            },
            prediction: a.step.prediction.clone(),
        },
        ..laurelc::pipeline::GradFileOptions::default()
    };
    let report = laurelc::pipeline::grad_file(&a.model, &a.output, &opts)?;
    if a.json {
        emit(&format!(
            "{}\n",
            serde_json::to_string_pretty(&report.step)?
        ))?;
    } else {
        emit_line(&report.to_text(&a.model, &a.output))?;
    }
    Ok(())
}
