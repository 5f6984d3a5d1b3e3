//! Augmenting the residuals inside subgraphs (`If` branches, `Loop` and
//! `Scan` bodies).
//!
//! Each subgraph the analysis found residuals in is augmented as its
//! standalone model ([`crate::analysis::scopes`]), with the block numbers the
//! analysis gave it, then put back into its holder
//! ([`crate::onnx::subgraph::put_back`]): its new parameters become
//! initializers of the enclosing graph, read through outer scope, so that
//! they are the model's parameters like any other (in the main graph at the
//! end, however deep the subgraph). Nested subgraphs are augmented inside
//! their parent's standalone model before it is put back.
//!
//! ```text
//! before:                               after (RW):
//! main:  If(c) then_branch = {          main:  laurel.0.alpha, laurel.0.beta (initializers)
//!          y = x + conv(x) }                   If(c) then_branch = {
//!                                                y = laurel.0.alpha·conv(x) + laurel.0.beta·x }
//! ```
//!
//! Cost: one augmentation per subgraph with residuals, and one encoding of
//! its standalone model.

use crate::analysis::SubgraphAnalysis;
use crate::error::{Error, Result};
use crate::ir::Model;
use crate::onnx::subgraph::put_back;

use super::{AugmentOptions, AugmentReport};

/// Augments the residuals of `subgraphs` (held by `parent`'s nodes) and of
/// the subgraphs nested in them, puts each back into its holder, and adds
/// what each did to `report`.
///
/// # Errors
/// [`Error::Augment`] when an augmentation fails or a subgraph cannot be
/// put back.
pub(super) fn augment_subgraphs(
    parent: &mut Model,
    subgraphs: &[SubgraphAnalysis],
    opts: &AugmentOptions,
    report: &mut AugmentReport,
) -> Result<()> {
    for s in subgraphs {
        if s.analysis.block_count() == 0 {
            continue;
        }
        let mut m = s.model.clone();
        let got = super::augment_graph(&mut m, &s.analysis.residuals, opts, s.first_block)
            .map_err(|e| in_subgraph(s, &e))?;
        merge(report, got, &s.path);
        augment_subgraphs(&mut m, &s.analysis.subgraphs, opts, report)?;
        put_back(parent, s.holder, s.slot, &m, &s.captured_initializers)
            .map_err(|message| in_subgraph(s, &message))?;
    }
    Ok(())
}

fn in_subgraph(s: &SubgraphAnalysis, e: &dyn std::fmt::Display) -> Error {
    Error::Augment {
        message: format!("in {}: {e}", s.path),
    }
}

/// Adds a subgraph's augmentation to the model's.
fn merge(report: &mut AugmentReport, got: AugmentReport, path: &str) {
    report.blocks.extend(got.blocks);
    report.skipped.extend(
        got.skipped
            .into_iter()
            .map(|(name, why)| (format!("{path} > {name}"), why)),
    );
    report.parameters_added += got.parameters_added;
    report.flops_added += got.flops_added;
    for (rule, n) in got.rules_fired {
        *report.rules_fired.entry(rule).or_default() += n;
    }
    report.egraph.0 += got.egraph.0;
    report.egraph.1 += got.egraph.1;
    let not_run = laurel_passes::StopReport::NotRun.to_string();
    if got.stop != not_run && got.stop != report.stop {
        report.stop = if report.stop == not_run {
            got.stop
        } else {
            format!("{}; in {path}: {}", report.stop, got.stop)
        };
    }
    report.specs.extend(got.specs);
}
