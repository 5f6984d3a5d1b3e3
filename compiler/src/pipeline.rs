//! The pipelines, file to file: [`compile_file`] (import, residual analysis,
//! `LAuReL` augmentation, export; `--no-passes` is the lossless round trip of
//! [`crate::onnx`]) and [`fuse_file`] (import, fusion, export). Both refuse an
//! output that would replace the input or one of its external data files
//! ([`guard_output`], [`guard_external`]), and write atomically.

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
    /// Op nodes before the passes, those of subgraphs included.
    pub ops_before: usize,
    /// Op nodes after the passes, those of subgraphs included.
    pub ops_after: usize,
    /// What the export wrote.
    pub export: ExportReport,
    /// What the augmentation did (`None` with `no_passes`).
    pub augment: Option<crate::augment::AugmentReport>,
    /// Parameter elements of the input model.
    pub parameters_before: u64,
    /// The adds residual analysis could not decide (no shape for an operand):
    /// none of them is augmented.
    pub undecided: Vec<crate::analysis::Undecided>,
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

pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
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

/// Refuses an output (or its `.data` side file) that is one of `model`'s own
/// external data files, unless `force`.
///
/// # Errors
/// [`Error::WouldOverwriteInput`].
pub fn guard_external(model: &crate::ir::Model, output: &Path, force: bool) -> Result<()> {
    if force {
        return Ok(());
    }
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
    Ok(())
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
    guard_external(&model, output, opts.force)?;
    let ops_before = onnx::subgraph::op_count_with_subgraphs(&model.graph);
    let parameters_before = crate::inspect::summarize_without_flops(&model).parameter_count;
    let mut passes = Vec::new();
    let mut augment = None;
    let mut undecided = Vec::new();
    if !opts.no_passes {
        let analysis = crate::analysis::analyse_residuals(&model)?;
        passes.push("residual-analysis".to_string());
        undecided = analysis.all_undecided();
        augment = Some(crate::augment::augment_all(
            &mut model,
            &analysis,
            &opts.augment,
        )?);
        passes.push("augment".to_string());
    }
    let ops_after = onnx::subgraph::op_count_with_subgraphs(&model.graph);
    let export = onnx::write_path(&model, output, &opts.export)?;
    Ok(PipelineReport {
        passes,
        ops_before,
        ops_after,
        export,
        augment,
        parameters_before,
        undecided,
    })
}

impl PipelineReport {
    /// What `laurelc MODEL -o OUT` prints: the ops in and out and the bytes
    /// written; the augmentation's blocks, parameters (and their share of
    /// the model's) and FLOPs; every residual skipped, with why; the
    /// external data written.
    #[must_use]
    pub fn to_text(&self, input: &Path, output: &Path) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let passes = if self.passes.is_empty() {
            "none".to_string()
        } else {
            self.passes.join(", ")
        };
        let _ = writeln!(
            out,
            "{} -> {}: {} ops in, {} ops out, passes: {passes}, {} bytes written",
            input.display(),
            output.display(),
            self.ops_before,
            self.ops_after,
            self.export.model_bytes
        );
        if let Some(aug) = &self.augment {
            #[allow(clippy::cast_precision_loss)]
            let pct = if self.parameters_before == 0 {
                0.0
            } else {
                100.0 * aug.parameters_added as f64 / self.parameters_before as f64
            };
            let _ = writeln!(
                out,
                "augmented {} blocks ({}): +{} parameters ({pct:.4}% of {}), +{} FLOPs (estimated, symbolic dims counted as 1); e-graph {} classes / {} nodes, {}",
                aug.blocks.len(),
                aug.variant,
                aug.parameters_added,
                self.parameters_before,
                aug.flops_added,
                aug.egraph.0,
                aug.egraph.1,
                aug.stop
            );
            for (node, why) in &aug.skipped {
                let _ = writeln!(out, "  skipped {node}: {why}");
            }
        }
        for u in &self.undecided {
            let _ = writeln!(out, "  undecided {}: {}", u.node, u.reason);
        }
        if let Some(side) = &self.export.external_file {
            let _ = writeln!(
                out,
                "external data: {} tensors, {} bytes in {}",
                self.export.external_tensors,
                self.export.external_bytes,
                side.display()
            );
        }
        out
    }
}

/// Options of [`fuse_file`].
#[derive(Debug, Clone, Default)]
pub struct FuseFileOptions {
    /// Allow the output to replace the input file.
    pub force: bool,
    /// How to write the output.
    pub export: ExportOptions,
    /// The fusion's options.
    pub fuse: crate::fuse::FuseOptions,
}

/// What [`fuse_file`] did.
#[derive(Debug, Clone)]
pub struct FuseFileReport {
    /// What fusion did.
    pub summary: crate::fuse::FuseSummary,
    /// What the export wrote.
    pub export: ExportReport,
}

/// Reads `input`, fuses it ([`crate::fuse::fuse_model_with_progress`], each
/// window reported to `progress`) and writes `output` atomically, with the
/// guards of [`compile_file`].
///
/// # Errors
/// Any import, fusion or export error; [`Error::WouldOverwriteInput`].
pub fn fuse_file(
    input: &Path,
    output: &Path,
    opts: &FuseFileOptions,
    progress: &mut dyn laurel_runtime::Progress,
) -> Result<FuseFileReport> {
    guard_output(input, output, opts.force)?;
    let mut model = onnx::import_path(input)?;
    guard_external(&model, output, opts.force)?;
    let summary = crate::fuse::fuse_model_with_progress(&mut model, &opts.fuse, progress)?;
    let export = onnx::write_path(&model, output, &opts.export)?;
    Ok(FuseFileReport { summary, export })
}

/// Options of [`grad_file`].
#[derive(Debug, Clone, Default)]
pub struct GradFileOptions {
    /// Allow the output to be the input file.
    pub force: bool,
    /// What to differentiate.
    pub grad: crate::autodiff::GradOptions,
    /// How to write the step.
    pub export: ExportOptions,
}

/// What [`grad_file`] did.
#[derive(Debug, Clone)]
pub struct GradFileReport {
    /// The training step built.
    pub step: crate::autodiff::StepReport,
    /// What the export wrote.
    pub export: ExportReport,
}

/// Reads `input`, builds its training step ([`crate::autodiff::training_step`])
/// and writes it to `output` atomically, with the guards of [`compile_file`].
///
/// # Errors
/// Any import, autodiff or export error; [`Error::WouldOverwriteInput`].
pub fn grad_file(input: &Path, output: &Path, opts: &GradFileOptions) -> Result<GradFileReport> {
    guard_output(input, output, opts.force)?;
    let model = onnx::import_path(input)?;
    guard_external(&model, output, opts.force)?;
    let (step, report) = crate::autodiff::training_step(&model, &opts.grad)?;
    let export = onnx::write_path(&step, output, &opts.export)?;
    Ok(GradFileReport {
        step: report,
        export,
    })
}

impl GradFileReport {
    /// What `laurelc grad` prints.
    #[must_use]
    pub fn to_text(&self, input: &Path, output: &Path) -> String {
        use std::fmt::Write as _;
        let s = &self.step;
        let parameters: i64 = s
            .trainable
            .iter()
            .map(|t| t.dims.iter().product::<i64>())
            .sum();
        let mut text = format!(
            "{} -> {}: training step, {} loss on `{}`: {} trainable tensors ({parameters} parameters), {} forward + {} backward ops, {} bytes written",
            input.display(),
            output.display(),
            s.loss,
            s.prediction,
            s.trainable.len(),
            s.forward_ops,
            s.backward_ops,
            self.export.model_bytes,
        );
        if !s.chosen_sizes.is_empty() {
            let _ = write!(
                text,
                "\n  built at {}: the model does not infer, or computes empty outputs, with its symbolic sizes at 1 (set them with --dim NAME=SIZE)",
                laurel_runtime::sizes_text(&s.chosen_sizes)
            );
        }
        if s.lowered_batch_norms > 0 {
            let _ = write!(
                text,
                "\n  {} batch norms lowered to elementwise ops (a parameter trains)",
                s.lowered_batch_norms
            );
        }
        for u in &s.unused {
            let _ = write!(
                text,
                "\n  warning: the loss does not depend on `{u}` (its gradient is 0)"
            );
        }
        text
    }
}
