//! `laurelc label TEACHER --data U.npz -o LABELLED.npz`: a teacher's soft
//! labels beside the examples ([`laurelc::label::label_file`]).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use laurel_runtime::distill::teacher::Soft;

use crate::args::emit_line;

/// `laurelc label TEACHER --data U.npz -o LABELLED.npz`.
#[derive(Debug, Args)]
#[allow(clippy::struct_excessive_bools)] // command-line switches
pub struct LabelArgs {
    /// The teacher model.
    pub teacher: PathBuf,
    /// The unlabeled examples: an `.npz` whose arrays hold one example per row.
    #[arg(long, value_name = "U.npz")]
    pub data: PathBuf,
    /// Where to write the examples with their labels (`.npz`).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Allow OUT to be the teacher's file.
    #[arg(long)]
    pub force: bool,
    /// The data key of a teacher input, as NAME=KEY (default: the input's own name).
    #[arg(long = "input", value_name = "NAME=KEY")]
    pub inputs: Vec<String>,
    /// The teacher output to read (default: its first).
    #[arg(long, value_name = "OUTPUT")]
    pub prediction: Option<String>,
    /// The softmax temperature of the labels.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Take the teacher's output as it is (it already ends in a softmax).
    #[arg(long, conflicts_with = "temperature")]
    pub as_is: bool,
    /// The key the labels are written under.
    #[arg(long, default_value = "target")]
    pub key: String,
    /// Examples per teacher run (default: its fixed batch axis, else 64).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Where to cache labels (default: the labels folder of the `LAURELC_CACHE`
    /// directory, else of ~/.cache/laurelc).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Neither read nor write the cache.
    #[arg(long, conflicts_with = "cache")]
    pub no_cache: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The default teacher-label cache directory.
pub fn default_cache() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("LAURELC_CACHE") {
        return Some(PathBuf::from(dir).join("labels"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/laurelc/labels"))
}

/// Labels the data and writes them.
pub fn run(a: &LabelArgs, quiet: bool) -> Result<()> {
    if !(a.temperature.is_finite() && a.temperature > 0.0) {
        bail!(
            "--temperature {}: expected a positive number",
            a.temperature
        );
    }
    let inputs = crate::args::parse_input_keys(&a.inputs)?;
    let opts = laurelc::label::LabelFileOptions {
        force: a.force,
        data: a.data.clone(),
        inputs,
        output: a.prediction.clone(),
        soft: if a.as_is {
            Soft::AsIs
        } else {
            Soft::Softmax {
                temperature: a.temperature,
            }
        },
        batch: a.batch_size,
        cache: if a.no_cache {
            None
        } else {
            a.cache.clone().or_else(default_cache)
        },
        key: a.key.clone(),
    };
    let mut bar = crate::progress::Bar::new(quiet);
    let report = laurelc::label::label_file(&a.teacher, &a.output, &opts, &mut bar)?;
    drop(bar);
    if a.json {
        emit_line(&serde_json::to_string_pretty(&report)?)?;
    } else {
        emit_line(&format!(
            "labelled {} examples ({} classes) under `{}`: {} teacher queries{}; wrote {}",
            report.examples,
            report.classes,
            a.key,
            report.queries,
            if report.queries == 0 { " (cached)" } else { "" },
            a.output.display()
        ))?;
    }
    Ok(())
}
