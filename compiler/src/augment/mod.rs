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
//! At `--init identity` the result computes exactly what the original did:
//! RW's α = β = 1 (raw), `a = b = 0` (softmax: α = 2σ(a−b), β = 2σ(b−a)) or
//! `p = 0` (sigmoid: α = 2σ(p), β = 2σ(−p)); LR's `B` is zero; PA's γ are
//! zero (so PA's low-rank `B` factors need not be, and are not: a zero γ
//! next to a zero `B` would have no gradient).
//!
//! PA reads earlier states of the block's residual stream: the skip inputs
//! of the earlier residuals of the same stream (by the analysis's `stream`
//! and `index`, selected or not) with the same shape and element type,
//! nearest first, at most `pa_window − 1` of them ([`lower`]).
//!
//! Parameters per block (D channels, r = `rank`, r' = `pa_rank`, k the
//! block's number of PA terms, at most `pa_window`; RW is 2 scalars, 1 with
//! `--rw-param sigmoid`):
//!
//! | variant | parameters |
//! |---|---|
//! | rw | 2 (1) |
//! | lr | 2rD |
//! | pa | k, or k + 2r'D |
//! | rw+lr | 2 + 2rD |
//! | rw+pa | 2 + k, or 2 + k + 2r'D |
//! | lr+pa | 2rD + k, or 2rD + k + 2r'D |
//! | rw+lr+pa | 2 + k + 2rkD |

pub mod init;
pub mod lift;
pub mod lower;
pub mod select;

use std::str::FromStr;

use laurel_passes::{Limits, StopReport};
use serde::Serialize;

use crate::analysis::{Residual, ResidualKind};
use crate::error::{Error, Result};
use crate::ir::Model;

/// The `LAuReL` variant to apply, as the CLI names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum VariantName {
    /// α·f + β·x.
    #[serde(rename = "rw")]
    Rw,
    /// f + x + (x·A)·B.
    #[serde(rename = "lr")]
    Lr,
    /// `f + x + Σ_j γ_j·h(x_{i−j})`.
    #[serde(rename = "pa")]
    Pa,
    /// α·f + β·(x + (x·A)·B).
    #[serde(rename = "rw+lr")]
    RwLr,
    /// `α·f + β·(x + Σ_j γ_j·h(x_{i−j}))`.
    #[serde(rename = "rw+pa")]
    RwPa,
    /// `f + x + (x·A)·B + Σ_j γ_j·h(x_{i−j})`.
    #[serde(rename = "lr+pa")]
    LrPa,
    /// `α·f + β·(x + Σ_j γ_j·(x_{i−j}·A_j)·B_j)` (the paper's Eq. 6).
    #[serde(rename = "rw+lr+pa")]
    RwLrPa,
}

impl std::fmt::Display for VariantName {
    /// The CLI's name of the variant (`rw`, `rw+lr+pa`, …).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Rw => "rw",
            Self::Lr => "lr",
            Self::Pa => "pa",
            Self::RwLr => "rw+lr",
            Self::RwPa => "rw+pa",
            Self::LrPa => "lr+pa",
            Self::RwLrPa => "rw+lr+pa",
        })
    }
}

impl VariantName {
    /// Whether the variant has RW's α and β.
    #[must_use]
    pub fn has_rw(self) -> bool {
        matches!(self, Self::Rw | Self::RwLr | Self::RwPa | Self::RwLrPa)
    }

    /// Whether the variant reads earlier stream states (PA).
    #[must_use]
    pub fn has_pa(self) -> bool {
        matches!(self, Self::Pa | Self::RwPa | Self::LrPa | Self::RwLrPa)
    }

    /// Whether the variant has LR's `A`, `B` on `x` (not RW+LR+PA, whose
    /// factors are per state).
    #[must_use]
    pub fn has_lr(self) -> bool {
        matches!(self, Self::Lr | Self::RwLr | Self::LrPa)
    }

    /// Whether the variant needs low-rank factors with `opts`, hence a
    /// known channel count and a layout.
    #[must_use]
    pub fn needs_channels(self, opts: &AugmentOptions) -> bool {
        self.has_lr() || self == Self::RwLrPa || (self.has_pa() && opts.pa_rank > 0)
    }
}

impl FromStr for VariantName {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "rw" => Ok(Self::Rw),
            "lr" => Ok(Self::Lr),
            "pa" => Ok(Self::Pa),
            "rw+lr" => Ok(Self::RwLr),
            "rw+pa" => Ok(Self::RwPa),
            "lr+pa" => Ok(Self::LrPa),
            "rw+lr+pa" => Ok(Self::RwLrPa),
            _ => Err(format!(
                "unknown variant `{s}` (expected rw, lr, pa, rw+lr, rw+pa, lr+pa or rw+lr+pa)"
            )),
        }
    }
}

/// How RW's α and β are parametrised; all three are the identity at initialisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RwParam {
    /// α and β themselves, initialised to 1: 2 parameters.
    Raw,
    /// (α, β) = 2·softmax(a, b), a = b = 0: 2 parameters.
    #[default]
    Softmax,
    /// α = 2σ(p), β = 2(1 − σ(p)) = 2σ(−p), p = 0: 1 parameter.
    Sigmoid,
}

impl FromStr for RwParam {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "raw" => Ok(Self::Raw),
            "softmax" => Ok(Self::Softmax),
            "sigmoid" => Ok(Self::Sigmoid),
            _ => Err(format!(
                "unknown --rw-param `{s}` (expected raw, softmax or sigmoid)"
            )),
        }
    }
}

/// Initial parameter values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InitMode {
    /// Function-preserving values (see the module doc).
    #[default]
    Identity,
    /// Seeded random values, for tests that need a non-trivial `LAuReL`.
    Random,
}

impl FromStr for InitMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "identity" => Ok(Self::Identity),
            "random" => Ok(Self::Random),
            _ => Err(format!(
                "unknown --init `{s}` (expected identity or random)"
            )),
        }
    }
}

/// Options of [`augment_model`].
#[derive(Debug, Clone)]
pub struct AugmentOptions {
    /// The variant.
    pub variant: VariantName,
    /// LR's rank `r` (also the rank of RW+LR+PA's per-state `A_j`, `B_j`).
    pub rank: u64,
    /// PA's window `k`: the block's own skip and at most `k − 1` earlier
    /// states of its stream (`--pa-window`, at least 1).
    pub pa_window: usize,
    /// PA's `h`: 0 for the identity, else the rank of the low-rank map
    /// shared across `j` (`--pa-rank`; not used by RW+LR+PA).
    pub pa_rank: u64,
    /// RW's parametrisation.
    pub rw_param: RwParam,
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
            variant: VariantName::Rw,
            rank: 4,
            pa_window: 3,
            pa_rank: 0,
            rw_param: RwParam::default(),
            init: InitMode::default(),
            seed: 0,
            include_projection: false,
            blocks: None,
            limits: Limits::default(),
        }
    }
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
    /// Estimated FLOPs added per inference.
    pub flops: u64,
}

/// What [`augment_model`] did.
#[derive(Debug, Clone, Serialize)]
pub struct AugmentReport {
    /// The variant.
    pub variant: VariantName,
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
}

/// The e-graph pass's variant for `opts`.
fn passes_variant(opts: &AugmentOptions) -> Result<laurel_passes::rules::Variant> {
    use laurel_passes::rules::Variant;
    use std::num::NonZeroU64;
    let rank = || {
        NonZeroU64::new(opts.rank).ok_or_else(|| Error::Augment {
            message: "--rank must be at least 1".into(),
        })
    };
    if opts.variant.has_pa() && opts.pa_window == 0 {
        return Err(Error::Augment {
            message: "--pa-window must be at least 1".into(),
        });
    }
    let h_rank = NonZeroU64::new(opts.pa_rank);
    Ok(match opts.variant {
        VariantName::Rw => Variant::Rw,
        VariantName::Lr => Variant::Lr { rank: rank()? },
        VariantName::Pa => Variant::Pa { h_rank },
        VariantName::RwLr => Variant::RwLr { rank: rank()? },
        VariantName::RwPa => Variant::RwPa { h_rank },
        VariantName::LrPa => Variant::LrPa {
            rank: rank()?,
            h_rank,
        },
        VariantName::RwLrPa => Variant::RwLrPa { rank: rank()? },
    })
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

/// Augments the given residuals of `model` in place.
///
/// # Errors
/// [`Error::Augment`] when the e-graph pass fails.
pub fn augment_model(
    model: &mut Model,
    residuals: &[Residual],
    opts: &AugmentOptions,
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
            } else if r.dtype.as_deref() != Some("f32") {
                Some("not float32".to_string())
            } else if opts.variant.needs_channels(opts) && r.channels.is_none() {
                Some("symbolic channel count".to_string())
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
            blocks: Vec::new(),
            skipped,
            parameters_added: 0,
            flops_added: 0,
            rules_fired: std::collections::BTreeMap::new(),
            egraph: (0, 0),
            stop: StopReport::NotRun.to_string(),
        });
    }
    let lowered =
        lower::lower(&selected, residuals, opts).map_err(|e| Error::Augment { message: e })?;
    let variant = passes_variant(opts)?;
    let report =
        laurel_passes::augment::augment(lowered.graph, &lowered.roots, variant, opts.limits)
            .map_err(|e| Error::Augment {
                message: e.to_string(),
            })?;
    let blocks = lift::lift(model, &selected, &report, opts)?;
    Ok(AugmentReport {
        variant: opts.variant,
        parameters_added: blocks.iter().map(|b| b.parameters).sum(),
        flops_added: blocks.iter().map(|b| b.flops).sum(),
        blocks,
        skipped,
        rules_fired: report.fired.clone(),
        egraph: (report.classes, report.nodes),
        stop: report.stop.to_string(),
    })
}
