//! `laurelc distill --teacher T.onnx STUDENT.onnx --unlabeled U.npz
//! --validation V.npz -o OUT.onnx`: a student trained from a teacher's labels
//! ([`laurelc::distill::distill_file`]).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use laurelc::distill::{DistillLoss, Selection};

use crate::args::{OptimArgs, check_report_dir, emit_line, positive};

/// The distillation losses, by their command-line names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LossName {
    /// Cross-entropy on the labeled set alone (the baseline).
    Hard,
    /// The teacher's probabilities at --temperature.
    Kd,
    /// SLaM's student-label mixing.
    Slam,
    /// SLaM with its error term divided by k − 1.
    SlamNormalised,
}

/// The selections, by their command-line names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SelectName {
    /// Uniformly at random.
    Uniform,
    /// The smallest student margins.
    Margin,
    /// The largest student entropies.
    Entropy,
    /// RAD: the game's allocation, rounded by DEPROUND.
    Rad,
}

/// `laurelc distill`.
#[derive(Debug, Args)]
pub struct DistillArgs {
    /// The student model.
    pub student: PathBuf,
    /// The teacher model.
    #[arg(long, value_name = "TEACHER.onnx")]
    pub teacher: PathBuf,
    /// The unlabeled pool: an `.npz` of the models' inputs, one example per row.
    #[arg(long, value_name = "U.npz")]
    pub unlabeled: PathBuf,
    /// Labeled examples: the inputs and int64 class ids under --label-key.
    #[arg(long, value_name = "L.npz")]
    pub labeled: Option<PathBuf>,
    /// The validation set (with class ids): calibrates the teacher, scores the student.
    #[arg(long, value_name = "V.npz")]
    pub validation: PathBuf,
    /// Where to write the trained student.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Allow OUT to be the student's file.
    #[arg(long)]
    pub force: bool,
    /// The key of the class ids in the labeled and validation sets.
    #[arg(long, default_value = "label")]
    pub label_key: String,
    /// The data key of a model input, as NAME=KEY (default: the input's own name).
    #[arg(long = "input", value_name = "NAME=KEY")]
    pub inputs: Vec<String>,
    /// What the student learns from.
    #[arg(long, value_enum, default_value = "kd")]
    pub loss: LossName,
    /// The temperature of the kd loss.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Which unlabeled examples to buy teacher labels for (default: all of them).
    #[arg(long, value_enum)]
    pub select: Option<SelectName>,
    /// The examples to label in all (required with --select).
    #[arg(long)]
    pub budget: Option<usize>,
    /// Rounds of selection, the budget split evenly.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// The teacher's top-k accuracy on the validation set that fixes SLaM's k.
    #[arg(long, default_value_t = 0.95)]
    pub slam_level: f64,
    /// Where to cache teacher labels (default: the labels folder of the
    /// `LAURELC_CACHE` directory, else of ~/.cache/laurelc).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Neither read nor write the cache.
    #[arg(long, conflicts_with = "cache")]
    pub no_cache: bool,
    /// Which student tensors train (as `train --train`).
    #[arg(long = "train", value_name = "laurel|all|GLOB", default_value = "all")]
    pub train: Vec<String>,
    #[command(flatten)]
    pub optim: OptimArgs,
    /// Write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub report_json: Option<PathBuf>,
}

/// The library's options from the flags.
fn options(a: &DistillArgs) -> Result<laurelc::distill::DistillOptions> {
    positive("--temperature", f64::from(a.temperature))?;
    let run = a.optim.run_options()?;
    if !(a.slam_level > 0.0 && a.slam_level <= 1.0) {
        bail!("--slam-level {}: expected a number in (0, 1]", a.slam_level);
    }
    check_report_dir(a.report_json.as_deref())?;
    if a.select.is_some() && a.budget.is_none() {
        bail!("--select needs --budget");
    }
    let inputs = crate::args::parse_input_keys(&a.inputs)?;
    let train = laurelc::autodiff::TrainSpec::parse(&a.train).map_err(anyhow::Error::msg)?;
    Ok(laurelc::distill::DistillOptions {
        force: a.force,
        teacher: a.teacher.clone(),
        unlabeled: a.unlabeled.clone(),
        labeled: a.labeled.clone(),
        validation: a.validation.clone(),
        label_key: a.label_key.clone(),
        loss: match a.loss {
            LossName::Hard => DistillLoss::Hard,
            LossName::Kd => DistillLoss::Kd,
            LossName::Slam => DistillLoss::Slam,
            LossName::SlamNormalised => DistillLoss::SlamNormalised,
        },
        temperature: a.temperature,
        select: a.select.map(|s| match s {
            SelectName::Uniform => Selection::Uniform,
            SelectName::Margin => Selection::Margin,
            SelectName::Entropy => Selection::Entropy,
            SelectName::Rad => Selection::Rad,
        }),
        budget: a.budget,
        rounds: a.rounds,
        slam_level: a.slam_level,
        cache: if a.no_cache {
            None
        } else {
            a.cache.clone().or_else(crate::label::default_cache)
        },
        train: laurelc::train::TrainFileOptions {
            force: true,
            data: a.unlabeled.clone(),
            eval: None,
            inputs,
            target: "target".into(),
            batch: a.optim.batch_size,
            grad: laurelc::autodiff::GradOptions {
                train,
                ..laurelc::autodiff::GradOptions::default()
            },
            run,
            checkpoint: None,
            resume: None,
            export: laurelc::onnx::ExportOptions::default(),
        },
    })
}

/// Distills, writes the student and prints a summary.
pub fn run(a: &DistillArgs, quiet: bool) -> Result<()> {
    let opts = options(a)?;
    let mut bar = crate::progress::Bar::new(quiet);
    let report = laurelc::distill::distill_file(&a.student, &a.output, &opts, &mut bar)?;
    drop(bar);
    if let Some(path) = &a.report_json {
        let json = serde_json::to_string_pretty(&report)?;
        laurelc::fsutil::write_atomically(path, |w| w.write_all(json.as_bytes()))?;
    }
    if let Some(what) = &report.diverged {
        return Err(crate::train::Diverged(format!(
            "{what}; {} was not written",
            a.output.display()
        ))
        .into());
    }
    for r in &report.rounds {
        emit_line(&format!(
            "round {}/{}  chose {}  teacher queries {}  trained on {}  validation accuracy {:.2}%  \
             {:.2} s ({:.1}% outside teacher and student runs)",
            r.round,
            report.rounds.len(),
            r.chosen.len(),
            r.teacher_queries,
            r.examples,
            100.0 * r.validation_accuracy,
            r.seconds.total,
            100.0 * r.seconds.outside_share()
        ))?;
    }
    emit_line(&format!(
        "teacher: validation accuracy {:.2}%, SLaM k = {}; student: {:.2}% -> {:.2}%; {} teacher queries; wrote {}",
        100.0 * report.teacher.validation_accuracy,
        report.teacher.k,
        100.0 * report.initial_validation_accuracy,
        100.0 * report.validation_accuracy,
        report.teacher_queries,
        a.output.display()
    ))?;
    Ok(())
}
