//! `laurelc train MODEL --data TRAIN.npz -o TRAINED.onnx`: the model trained
//! on tract ([`laurelc::train::train_file`]); exit 1 when a non-finite loss
//! stops the run.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use laurel_runtime::train::{Optimizer, OptimizerKind, Schedule, ScheduleKind, Stop, TrainOptions};

use crate::args::{NamedValues, OptimizerArg, ScheduleArg, StepArgs, emit_line};

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
    /// The optimizer.
    #[arg(long, default_value = "adamw", value_parser = NamedValues::<OptimizerArg>::new())]
    pub optimizer: OptimizerArg,
    /// The (peak) learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f32,
    /// Decoupled weight decay.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    /// SGD's momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    /// The learning-rate schedule.
    #[arg(long, default_value = "constant", value_parser = NamedValues::<ScheduleArg>::new())]
    pub schedule: ScheduleArg,
    /// Warm-up updates of the cosine schedule.
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// Clip the gradients' global L2 norm to this.
    #[arg(long, value_name = "NORM")]
    pub clip_norm: Option<f32>,
    /// Epochs.
    #[arg(long, default_value_t = 10)]
    pub epochs: u64,
    /// Examples per update (default: the model's fixed batch axis, else 32).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// The seed of the shuffle.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
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

fn positive(name: &str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        bail!("{name} {v}: expected a positive number")
    }
}

/// The library's options from the flags, with the checkpoint's path.
fn options(a: &TrainArgs) -> Result<(laurelc::train::TrainFileOptions, PathBuf)> {
    positive("--lr", f64::from(a.lr))?;
    positive("--temperature", a.step.temperature)?;
    if let Some(c) = a.clip_norm {
        positive("--clip-norm", f64::from(c))?;
    }
    if !(a.weight_decay >= 0.0 && a.weight_decay.is_finite()) {
        bail!(
            "--weight-decay {}: expected a non-negative number",
            a.weight_decay
        );
    }
    if !(0.0..1.0).contains(&a.momentum) {
        bail!("--momentum {}: expected a number in [0, 1)", a.momentum);
    }
    if a.epochs == 0 {
        bail!("--epochs 0: expected at least one epoch");
    }
    let train = laurelc::autodiff::TrainSpec::parse(&a.step.train).map_err(anyhow::Error::msg)?;
    let inputs = crate::args::parse_input_keys(&a.inputs)?;
    if let Some(path) = &a.report_json {
        // Fail before training, not after.
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        if !dir.is_dir() {
            bail!("{}: the report's directory does not exist", path.display());
        }
    }
    let optimizer = match a.optimizer.0 {
        OptimizerKind::AdamW => Optimizer::adamw(a.weight_decay),
        OptimizerKind::Sgd => Optimizer::Sgd {
            momentum: a.momentum,
            weight_decay: a.weight_decay,
        },
    };
    let schedule = match a.schedule.0 {
        ScheduleKind::Constant => Schedule::Constant,
        ScheduleKind::Cosine => Schedule::Cosine { warmup: a.warmup },
    };
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
        batch: a.batch_size,
        grad: laurelc::autodiff::GradOptions {
            loss: a.step.loss.0,
            temperature: a.step.temperature,
            train,
            prediction: a.step.prediction.clone(),
            ..laurelc::autodiff::GradOptions::default()
        },
        run: TrainOptions {
            epochs: a.epochs,
            seed: a.seed,
            optimizer,
            lr: a.lr,
            schedule,
            clip_norm: a.clip_norm,
            columns: Vec::new(),
            prediction: None,
            float_loss: laurel_runtime::train::metrics::FloatLoss::default(),
            step: String::new(),
        },
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
            printing = emit_line(&laurelc::train::epoch_line(e, a.epochs)).err();
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
