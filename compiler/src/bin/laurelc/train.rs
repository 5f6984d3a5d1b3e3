//! `laurelc train MODEL --data TRAIN.npz -o TRAINED.onnx`: the model trained
//! on tract ([`laurelc::train::train_file`]); exit 1 when a non-finite loss
//! stops the run.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use laurel_runtime::train::Stop;

use crate::args::{OptimArgs, StepArgs, check_report_dir, emit_line, positive};

/// `laurelc train MODEL --data TRAIN.npz -o TRAINED.onnx`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The model.
    pub model: PathBuf,
    /// Where to write the trained model.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Allow OUT to be the input file.
    #[arg(long)]
    pub force: bool,
    /// The training data: an `.npz` whose arrays hold one example per row (the
    /// first axis is the batch axis of the model's inputs).
    #[arg(long, value_name = "TRAIN.npz")]
    pub data: PathBuf,
    /// Data to evaluate at the end of every epoch (the same keys).
    #[arg(long, value_name = "VAL.npz")]
    pub eval: Option<PathBuf>,
    /// The data key of a model input, as NAME=KEY (default: the input's own name).
    #[arg(long = "input", value_name = "NAME=KEY")]
    pub inputs: Vec<String>,
    /// The data key of the targets.
    #[arg(long, value_name = "KEY", default_value = "target")]
    pub target: String,
    #[command(flatten)]
    pub step: StepArgs,
    #[command(flatten)]
    pub optim: OptimArgs,
    /// Save the run's state every N epochs (0: never) to --checkpoint.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub checkpoint_every: u64,
    /// Where to save the run's state (default: OUT.ckpt.npz).
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Continue the run saved in this checkpoint (with the same flags).
    #[arg(long, value_name = "CHECKPOINT")]
    pub resume: Option<PathBuf>,
    /// Write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub report_json: Option<PathBuf>,
}

/// A run stopped by a non-finite loss (exit 1).
#[derive(Debug)]
pub struct Diverged(pub String);

impl std::fmt::Display for Diverged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Diverged {}

/// The library's options from the flags, with the checkpoint's path.
fn options(a: &TrainArgs) -> Result<(laurelc::train::TrainFileOptions, PathBuf)> {
    let run = a.optim.run_options()?;
    positive("--temperature", a.step.temperature)?;
    let train = laurelc::autodiff::TrainSpec::parse(&a.step.train).map_err(anyhow::Error::msg)?;
    let inputs = crate::args::parse_input_keys(&a.inputs)?;
    // Fail before training, not after.
    check_report_dir(a.report_json.as_deref())?;
    let checkpoint_path = a.checkpoint.clone().unwrap_or_else(|| {
        let mut p = a.output.clone().into_os_string();
        p.push(".ckpt.npz");
        PathBuf::from(p)
    });
    let opts = laurelc::train::TrainFileOptions {
        force: a.force,
        data: a.data.clone(),
        eval: a.eval.clone(),
        inputs,
        target: a.target.clone(),
        batch: a.optim.batch_size,
        grad: laurelc::autodiff::GradOptions {
            loss: a.step.loss.0,
            temperature: a.step.temperature,
            train,
            prediction: a.step.prediction.clone(),
            ..laurelc::autodiff::GradOptions::default()
        },
        run,
        checkpoint: (a.checkpoint_every > 0).then(|| (checkpoint_path.clone(), a.checkpoint_every)),
        resume: a.resume.clone(),
        export: laurelc::onnx::ExportOptions::default(),
    };
    Ok((opts, checkpoint_path))
}

/// Trains, prints each epoch and writes the model.
pub fn run(a: &TrainArgs, quiet: bool) -> Result<()> {
    let (opts, checkpoint_path) = options(a)?;
    let mut bar = crate::progress::Bar::new(quiet);
    let mut printing: Option<anyhow::Error> = None;
    let mut sink = |e: &laurel_runtime::train::EpochReport| {
        if printing.is_none() {
            printing = emit_line(&laurelc::train::epoch_line(e, a.optim.epochs)).err();
        }
    };
    let report = laurelc::train::train_file(&a.model, &a.output, &opts, &mut sink, &mut bar)?;
    drop(bar);
    if let Some(e) = printing {
        return Err(e);
    }
    if let Some(path) = &a.report_json {
        let json = serde_json::to_string_pretty(&report)?;
        laurelc::fsutil::write_atomically(path, |w| w.write_all(json.as_bytes()))?;
    }
    match &report.run.stop {
        Stop::Completed => {
            emit_line(&format!(
                "trained {} tensors ({} parameters) in {} updates; wrote {}",
                report.step.trainable.len(),
                report
                    .step
                    .trainable
                    .iter()
                    .map(|t| t.dims.iter().product::<i64>())
                    .sum::<i64>(),
                report.run.updates,
                a.output.display()
            ))?;
            Ok(())
        }
        Stop::NonFinite {
            epoch,
            update,
            loss,
        } => {
            let kept = match report.checkpoint_epoch {
                Some(saved) => format!(
                    "the state after epoch {saved} is in {}",
                    checkpoint_path.display()
                ),
                None => "this run saved no checkpoint".to_owned(),
            };
            Err(Diverged(format!(
                "{loss} at update {update} (epoch {epoch}); {kept}; {} was not written",
                a.output.display()
            ))
            .into())
        }
    }
}
