//! The compilation pipeline: import, passes, export.
//!
//! Today the pipeline has no passes: the residual analysis and `LAuReL`
//! augmentation land with the next milestone, and `--no-passes` already
//! names the pure import → export round trip that this stage guarantees
//! lossless (see [`crate::onnx`]).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::onnx::{self, ExportOptions, ExportReport};

/// Options of [`compile_file`].
#[derive(Debug, Clone, Default)]
pub struct PipelineOptions {
    /// Skip every pass: a pure import → export round trip.
    pub no_passes: bool,
    /// Allow the output to replace the input file.
    pub force: bool,
    /// How to write the output.
    pub export: ExportOptions,
    /// What augmentation to apply.
    pub augment: crate::augment::AugmentOptions,
}

/// What [`compile_file`] did.
#[derive(Debug, Clone)]
pub struct PipelineReport {
    /// The passes that ran, in order.
    pub passes: Vec<String>,
    /// Op nodes before the passes.
    pub ops_before: usize,
    /// Op nodes after the passes.
    pub ops_after: usize,
    /// What the export wrote.
    pub export: ExportReport,
    /// What the augmentation did (`None` with `no_passes`).
    pub augment: Option<crate::augment::AugmentReport>,
    /// Parameter elements of the input model.
    pub parameters_before: u64,
}

/// Refuses an output that is the input file itself (same path, or another
/// name for the same file), unless `force`.
///
/// # Errors
/// [`Error::WouldOverwriteInput`].
pub fn guard_output(input: &Path, output: &Path, force: bool) -> Result<()> {
    if force {
        return Ok(());
    }
    if same_file(input, output) {
        return Err(Error::WouldOverwriteInput {
            path: output.to_path_buf(),
        });
    }
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return ma.dev() == mb.dev() && ma.ino() == mb.ino();
        }
    }
    let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| PathBuf::from(p));
    canon(a) == canon(b)
}

/// Reads `input`, runs the pipeline and writes `output` atomically.
/// The input file is never modified; with `force` it may be replaced by the
/// new file through an atomic rename.
///
/// # Errors
/// Any import, validation or export error; [`Error::WouldOverwriteInput`].
pub fn compile_file(input: &Path, output: &Path, opts: &PipelineOptions) -> Result<PipelineReport> {
    guard_output(input, output, opts.force)?;
    let mut model = onnx::import_path(input)?;
    if !opts.force {
        // The input's external data files are part of the input, too.
        let side = onnx::export::side_path(output);
        for file in model.graph.external_files() {
            for candidate in [output, side.as_path()] {
                if same_file(&file, candidate) {
                    return Err(Error::WouldOverwriteInput {
                        path: candidate.to_path_buf(),
                    });
                }
            }
        }
    }
    let ops_before = model.graph.op_count();
    let parameters_before = crate::inspect::summarize_without_flops(&model).parameter_count;
    let mut passes = Vec::new();
    let mut augment = None;
    if !opts.no_passes {
        let analysis = crate::analysis::analyse_residuals(&model)?;
        passes.push("residual-analysis".to_string());
        augment = Some(crate::augment::augment_model(
            &mut model,
            &analysis.residuals,
            &opts.augment,
        )?);
        passes.push("augment".to_string());
    }
    let ops_after = model.graph.op_count();
    let export = onnx::write_path(&model, output, &opts.export)?;
    Ok(PipelineReport {
        passes,
        ops_before,
        ops_after,
        export,
        augment,
        parameters_before,
    })
}
