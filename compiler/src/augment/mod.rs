//! `LAuReL` augmentation: the residual adds found by [`crate::analysis`]
//! become `LAuReL` residuals.
//!
//! The pass has three steps, one file each:
//! - [`lower`]: every selected residual add becomes a `(resadd $skip $branch)`
//!   term in a [`laurel_passes::TensorGraph`], its operands opaque values typed
//!   by tract's inference, its e-class tagged with the block number and
//!   channel axis;
//! - [`laurel_passes::augment::augment`] runs the variant's rule table and the
//!   expansion rules in the e-graph and extracts terms without `resadd`;
//! - [`lift`]: each extracted term replaces its `Add` in the IR with standard
//!   ONNX ops, the parameters become initializers `laurel.<block>.<param>`
//!   ([`init`] gives their values), and the add's output name is kept, so
//!   every consumer and graph output reads the augmented value.
//!
//! The variants, their parameters and initial values are
//! [`laurel_passes::variant`]'s and [`laurel_passes::params`]'s: the e-graph
//! pass reports a typed [`laurel_passes::ParamSpec`] for every parameter, and
//! lifting materialises each by its role. At `--init identity` the result
//! computes exactly what the original did (α = β = 1, or their logits 0;
//! LR's `B` zero; PA's γ zero).
//!
//! PA reads earlier states of the block's residual stream: the skip inputs
//! of the earlier residuals of the same stream (by the analysis's `stream`
//! and `index`, selected or not) with the same shape and element type,
//! nearest first, at most `window − 1` of them ([`lower`]).
//!
//! The report's parameters are counted from the specs, and its FLOPs from
//! the ops lifting built ([`crate::analysis::flops::op_flops_with_elementwise`]:
//! matrix products and convolutions by their formulas, elementwise ops at
//! one FLOP per result element), less the `Add` each block replaces.

pub mod init;
pub mod lift;
pub mod lower;
pub mod select;
pub mod subgraphs;

use laurel_passes::shape::DType;
use laurel_passes::{Limits, StopReport};

pub use laurel_passes::variant::Pa;
pub use laurel_passes::{InitMode, ParamSpec, RwParam, Variant};
use serde::Serialize;

use crate::analysis::{Residual, ResidualKind};
use crate::error::{Error, Result};
use crate::ir::Model;

/// Options of [`augment_model`].
#[derive(Debug, Clone)]
pub struct AugmentOptions {
    /// The variant, with its parameters (rank, window, RW parametrisation).
    pub variant: Variant,
    /// Initial values.
    pub init: InitMode,
    /// Seed of random values (A's Xavier values, and everything with `--init random`).
    pub seed: u64,
    /// Augment projection shortcuts too.
    pub include_projection: bool,
    /// Augment only these blocks (`--blocks`); all when `None`.
    pub blocks: Option<select::Selection>,
    /// E-graph runner limits.
    pub limits: Limits,
}

impl Default for AugmentOptions {
    fn default() -> Self {
        Self {
            variant: Variant::of(true, false, false),
            init: InitMode::default(),
            seed: 0,
            include_projection: false,
            blocks: None,
            limits: Limits::default(),
        }
    }
}

/// One parameter a block got, as the report writes it.
#[derive(Debug, Clone, Serialize)]
pub struct ParamReport {
    /// The initializer (`laurel.<block>.<name>`).
    pub name: String,
    /// What it is (`α`, `γ1`, `down-projection of LR`, …).
    pub role: String,
    /// Its dims as written.
    pub dims: Vec<i64>,
}

/// One augmented block.
#[derive(Debug, Clone, Serialize)]
pub struct BlockReport {
    /// The block number (`laurel.<block>.*`).
    pub block: u32,
    /// The residual add it replaced.
    pub node: String,
    /// Parameters added.
    pub parameters: u64,
    /// Estimated FLOPs added per inference (symbolic dims counted as 1).
    pub flops: u64,
    /// The trainable tensors it got.
    pub params: Vec<ParamReport>,
}

/// What [`augment_model`] did.
#[derive(Debug, Clone, Serialize)]
pub struct AugmentReport {
    /// The variant (its name in JSON: `rw+lr`; with every parameter in
    /// `variant_parameters`: `rw(softmax)+lr(r=4)`).
    #[serde(serialize_with = "serialize_display")]
    pub variant: Variant,
    /// The variant with its parameters, as `{:#}` writes it (JSON only).
    #[serde(serialize_with = "serialize_alternate")]
    pub variant_parameters: Variant,
    /// Blocks augmented.
    pub blocks: Vec<BlockReport>,
    /// Residuals not augmented, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Parameters added in all.
    pub parameters_added: u64,
    /// Estimated FLOPs added in all.
    pub flops_added: u64,
    /// Rules that fired, with counts.
    pub rules_fired: std::collections::BTreeMap<String, usize>,
    /// E-graph size: classes and nodes.
    pub egraph: (usize, usize),
    /// Why the e-graph runner stopped.
    pub stop: String,
    /// Every parameter added, typed (not in JSON: see each block's `params`).
    #[serde(skip)]
    pub specs: Vec<ParamSpec>,
}

fn serialize_alternate<S: serde::Serializer>(
    v: &impl std::fmt::Display,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{v:#}"))
}

fn serialize_display<S: serde::Serializer>(
    v: &impl std::fmt::Display,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// Refuses models the lifted ops would break: value names already in the
/// `laurel.` namespace (laurelc names its parameters and ops there; a clash
/// would silently rewire the model), and default-domain opsets below 7
/// (whose `Add`/`Mul` need an explicit `broadcast` attribute for the scalar
/// parameters).
///
/// # Errors
/// [`Error::Augment`] naming the clash or the opset.
pub fn check_model_can_be_augmented(model: &Model) -> Result<()> {
    let g = &model.graph;
    let mut names: Vec<&str> = g
        .dag
        .node_indices()
        .flat_map(|n| g.dag[n].outputs())
        .filter(|name| name.starts_with("laurel."))
        .collect();
    names.sort_unstable();
    if let Some(first) = names.first() {
        return Err(Error::Augment {
            message: format!(
                "the model already has {} value(s) named `laurel.*` (first: `{first}`); laurelc reserves that prefix for the parameters and ops it adds (is the model already augmented?)",
                names.len()
            ),
        });
    }
    if let Some(v) = model.onnx_opset().filter(|&v| v < 7) {
        return Err(Error::Augment {
            message: format!(
                "default-domain opset {v} is below 7, whose Add/Mul do not broadcast without an attribute; upgrade the model's opset first"
            ),
        });
    }
    Ok(())
}

/// Augments the given residuals of `model`'s main graph in place (blocks
/// numbered from 0).
///
/// # Errors
/// [`Error::Augment`] when the e-graph pass fails.
pub fn augment_model(
    model: &mut Model,
    residuals: &[Residual],
    opts: &AugmentOptions,
) -> Result<AugmentReport> {
    augment_graph(model, residuals, opts, 0)
}

/// Augments every residual `analysis` found in `model`: the main graph's,
/// then each subgraph's ([`subgraphs`]), and reports them as one
/// augmentation (blocks in block order; a subgraph's skipped residuals
/// named with its path; the e-graph sizes summed over the runs).
///
/// # Errors
/// As [`augment_model`]; [`Error::Augment`] when a subgraph cannot be put
/// back.
pub fn augment_all(
    model: &mut Model,
    analysis: &crate::analysis::ResidualAnalysis,
    opts: &AugmentOptions,
) -> Result<AugmentReport> {
    let mut report = augment_graph(model, &analysis.residuals, opts, 0)?;
    subgraphs::augment_subgraphs(model, &analysis.subgraphs, opts, &mut report)?;
    Ok(report)
}

/// [`augment_model`] with blocks numbered from `first_block`.
fn augment_graph(
    model: &mut Model,
    residuals: &[Residual],
    opts: &AugmentOptions,
    first_block: usize,
) -> Result<AugmentReport> {
    check_model_can_be_augmented(model)?;
    let mut skipped = Vec::new();
    // Two adds of the same operands compute one value; the e-graph holds one term for
    // both, so only the first is augmented.
    let mut sums: std::collections::HashMap<(&str, &str), &str> = std::collections::HashMap::new();
    // Blocks are numbered by their position in the analysis, whatever the selection,
    // so `laurel.<block>.*` names are stable across --blocks choices.
    let selected: Vec<(usize, &Residual)> = residuals
        .iter()
        .enumerate()
        .map(|(i, r)| (first_block + i, r))
        .filter(|(_, r)| {
            let duplicate = sums
                .get(&(r.skip.as_str(), r.branch.as_str()))
                .map(|first| format!("computes the same sum as {first}"));
            let why = if opts.blocks.as_ref().is_some_and(|s| !s.selects(r)) {
                Some("not selected by --blocks".to_string())
            } else if let Some(d) = duplicate {
                Some(d)
            } else if r.kind == ResidualKind::Projection && !opts.include_projection {
                Some("projection shortcut (pass --include-projection)".to_string())
            } else if r.dtype != Some(DType::F32) {
                Some("not float32".to_string())
            } else if opts.variant.needs_channels() && r.channels.is_none() {
                Some("symbolic channel count".to_string())
            } else if opts.variant.needs_channels()
                && laurel_passes::block::Layout::of(r.axis, r.shape.len()).is_none()
            {
                Some(format!(
                    "channel axis {} of a rank-{} tensor fits no low-rank layout",
                    r.axis,
                    r.shape.len()
                ))
            } else {
                None
            };
            if let Some(why) = why {
                skipped.push((r.name.clone(), why));
                false
            } else {
                sums.insert((r.skip.as_str(), r.branch.as_str()), r.name.as_str());
                true
            }
        })
        .collect();
    if selected.is_empty() {
        return Ok(AugmentReport {
            variant: opts.variant,
            variant_parameters: opts.variant,
            blocks: Vec::new(),
            skipped,
            parameters_added: 0,
            flops_added: 0,
            rules_fired: std::collections::BTreeMap::new(),
            egraph: (0, 0),
            stop: StopReport::NotRun.to_string(),
            specs: Vec::new(),
        });
    }
    let lowered =
        lower::lower(&selected, residuals, opts).map_err(|e| Error::Augment { message: e })?;
    let report = laurel_passes::augment::augment(
        lowered.graph,
        &lowered.roots,
        opts.variant,
        opts.init,
        opts.limits,
    )
    .map_err(|e| Error::Augment {
        message: e.to_string(),
    })?;
    let blocks = lift::lift(model, &selected, &report, opts)?;
    Ok(AugmentReport {
        variant: opts.variant,
        variant_parameters: opts.variant,
        parameters_added: blocks.iter().map(|b| b.parameters).sum(),
        flops_added: blocks.iter().map(|b| b.flops).sum(),
        blocks,
        skipped,
        rules_fired: report.fired.clone(),
        egraph: (report.classes, report.nodes),
        stop: report.stop.to_string(),
        specs: report.params,
    })
}
