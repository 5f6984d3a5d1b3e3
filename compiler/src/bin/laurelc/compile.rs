//! `laurelc MODEL -o OUT`: the pipeline (residual analysis, augmentation,
//! export), [`laurelc::pipeline::compile_file`].

use std::num::{NonZeroU64, NonZeroUsize};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use laurelc::onnx::ExportOptions;
use laurelc::pipeline::{PipelineOptions, compile_file};

use crate::args::{InitArg, NamedValues, RwParamArg, VariantArg, emit};

/// `laurelc MODEL -o OUT`: run the pipeline.
#[derive(Debug, Args)]
#[allow(clippy::struct_excessive_bools)] // independent command-line flags
pub struct CompileArgs {
    /// The input model.
    #[arg(required = true)]
    pub model: Option<PathBuf>,
    /// Where to write the result.
    #[arg(short, long, required = true)]
    pub output: Option<PathBuf>,
    /// Run no pass: a pure import → export round trip.
    #[arg(long)]
    pub no_passes: bool,
    /// Allow OUT to be the input file.
    #[arg(long)]
    pub force: bool,
    /// Write initializers of at least 1 KiB to `OUT.data` (automatic above 2 GiB).
    #[arg(long)]
    pub external_data: bool,
    /// The `LAuReL` variant.
    #[arg(long, default_value = "rw", value_parser = NamedValues::<VariantArg>::new())]
    pub variant: VariantArg,
    /// The rank r of LR (and of rw+lr+pa's per-state maps).
    #[arg(long, default_value_t = 4)]
    pub rank: u64,
    /// PA's window k: the block's own input and up to k − 1 earlier states of its stream.
    #[arg(long, default_value_t = 3)]
    pub pa_window: usize,
    /// The rank of PA's shared map h; 0 makes h the identity.
    #[arg(long, default_value_t = 0)]
    pub pa_rank: u64,
    /// How RW's α and β are parametrised.
    #[arg(long, default_value = "softmax", value_parser = NamedValues::<RwParamArg>::new())]
    pub rw_param: RwParamArg,
    /// Initial values.
    #[arg(long, default_value = "identity", value_parser = NamedValues::<InitArg>::new())]
    pub init: InitArg,
    /// Seed of random initial values.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Augment projection shortcuts too.
    #[arg(long)]
    pub include_projection: bool,
    /// Augment only these blocks: STREAM, STREAM:INDEX, STREAM:FROM..TO or a node-name glob, comma-separated.
    #[arg(long, value_name = "SELECT")]
    pub blocks: Option<String>,
    /// Write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub report_json: Option<PathBuf>,
}

/// The variant `--variant` names, with the parameters of `--rank`,
/// `--pa-window`, `--pa-rank` and `--rw-param` (each checked only where the
/// variant uses it).
fn variant_of(a: &CompileArgs) -> Result<laurel_passes::Variant> {
    let mut v = a.variant.0.with_rw_param(a.rw_param.0);
    if v.lr.is_some() {
        v = v.with_rank(NonZeroU64::new(a.rank).context("--rank must be at least 1")?);
    }
    if v.pa.is_some() {
        v = v.with_pa(laurel_passes::variant::Pa {
            window: NonZeroUsize::new(a.pa_window).context("--pa-window must be at least 1")?,
            h: NonZeroU64::new(a.pa_rank),
        });
    }
    Ok(v)
}

/// Runs the pipeline and prints its report.
pub fn run(a: &CompileArgs) -> Result<()> {
    let (Some(model), Some(output)) = (&a.model, &a.output) else {
        bail!("usage: laurelc MODEL -o OUT (see --help)");
    };
    // The variant's flags are checked only when the passes run.
    let variant = if a.no_passes {
        laurelc::augment::AugmentOptions::default().variant
    } else {
        variant_of(a)?
    };
    let augment = laurelc::augment::AugmentOptions {
        variant,
        init: a.init.0,
        seed: a.seed,
        include_projection: a.include_projection,
        blocks: a
            .blocks
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(anyhow::Error::msg)?,
        ..laurelc::augment::AugmentOptions::default()
    };
    let opts = PipelineOptions {
        no_passes: a.no_passes,
        force: a.force,
        export: ExportOptions {
            external_data: a.external_data,
            ..ExportOptions::default()
        },
        augment,
    };
    // Fail before writing the model, not after.
    crate::args::check_report_dir(a.report_json.as_deref())?;
    let report = compile_file(model, output, &opts)?;
    emit(&report.to_text(model, output))?;
    if !report.undecided.is_empty() {
        eprintln!(
            "warning: {} add(s) could not be decided: tract inferred no shape for an operand, so they were not augmented (listed above as `undecided`)",
            report.undecided.len()
        );
    }
    if let (Some(aug), Some(path)) = (&report.augment, &a.report_json) {
        let mut value = serde_json::to_value(aug)?;
        value["undecided"] = serde_json::to_value(&report.undecided)?;
        let json = serde_json::to_string_pretty(&value)?;
        laurelc::fsutil::write_atomically(path, |w| w.write_all(json.as_bytes()))?;
    }
    Ok(())
}
