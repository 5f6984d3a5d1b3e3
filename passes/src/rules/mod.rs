//! Rule tables, one file per topic, each a `TOPIC` of the [`registry`].
//!
//! Each table is an aligned list of entries, each rule one entry with a
//! kebab-case name, an equation, its guard (a named function of the matched
//! class, see [`Guard`]) and its examples and non-examples. Right-hand sides
//! are [`CheckedPattern`]s, so a rule whose result would be ill-shaped does
//! not fire. `README.md` beside this file gives the policy (cranelift's:
//! never worse, no blanket commutativity or associativity) and how to add a
//! rule.
//!
//! - [`mod@augment`]: `resadd` → a `LAuReL` term (one-directional; a model change,
//!   the identity at the parameters' initial values).
//! - [`expand`]: a `LAuReL` term → elementwise and low-rank terms (equalities).
//! - [`scale`]: scalar algebra on elementwise terms (fusion).
//! - [`homogeneous`]: scale through positively homogeneous and linear ONNX ops.
//! - [`weights`]: scalars into the weights of linear ONNX ops.
//! - [`norm`]: norm scale invariance, whole and decomposed.
//! - [`low_rank`]: products of channel maps and skips folded into them.
//! - [`laurel_residual`]: weighted sums into the fused `LaurelResidual` op
//!   (run once after saturation, for tract only).
//!
//! [`fusion_rules`] is every fusion table together, for a runtime's
//! capabilities; [`registry::TOPICS`] lists the tables.
//!
//! Complexity: building a table parses a handful of patterns. Errors:
//! [`RuleError`] when a table entry does not parse (a bug, caught by tests).

pub mod augment;
pub mod class;
pub mod entry;
pub mod expand;
pub mod homogeneous;
pub mod laurel_residual;
pub mod low_rank;
pub mod norm;
pub mod registry;
pub mod scale;
pub mod weights;

use egg::{Condition, ConditionalApplier, Id, Pattern, Rewrite, Subst};

use crate::analysis::{TensorAnalysis, TensorEGraph};
use crate::checked::CheckedPattern;
use crate::lang::TensorLang;
use crate::target::Capabilities;

pub use augment::augment_rules;
pub use expand::expand_rules;

/// The fusion rules for a runtime that can do `capabilities`: the
/// registry's [`registry::Pass::Fuse`] tables ([`scale`], [`homogeneous`],
/// [`weights`], [`norm`], [`low_rank`]), the two merges of channel maps only
/// with [`Capabilities::channel_map_merges`]. tract's optimiser splits a
/// product over a concatenated contraction axis back into one product per
/// part and an `Add` (tract-core `optim/concat_then_einsum.rs`; 1×1
/// convolutions become such products first), and pushes a `Slice` of a
/// product's output up into a narrower product (`optim/slice.rs`): a merge
/// there only adds its copy. There a low-rank `B` goes to `LaurelResidual`'s
/// low-rank kernel instead (the compiler's `fuse::low_rank`).
///
/// # Errors
/// [`RuleError`] if a rule does not build (a bug, caught by the tests).
pub fn fusion_rules(capabilities: Capabilities) -> Result<Vec<TensorRewrite>, RuleError> {
    registry::rules_of(registry::Pass::Fuse, capabilities)
}

/// A rewrite rule of this crate.
pub type TensorRewrite = Rewrite<TensorLang, TensorAnalysis>;

/// A rule table entry that does not build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule `{name}`: {message}")]
pub struct RuleError {
    /// The rule.
    pub name: String,
    /// What is wrong with it.
    pub message: String,
}

impl RuleError {
    pub(crate) fn new(name: &str, message: &impl ToString) -> Self {
        Self {
            name: name.to_owned(),
            message: message.to_string(),
        }
    }
}

/// A guard: a named predicate on the matched e-class and substitution.
#[derive(Debug, Clone, Copy)]
pub struct Guard {
    /// The function's name, as the table writes it.
    pub name: &'static str,
    /// The predicate.
    pub check: fn(&TensorEGraph, Id, &Subst) -> bool,
}

impl Condition<TensorLang, TensorAnalysis> for Guard {
    fn check(&self, egraph: &mut TensorEGraph, eclass: Id, subst: &Subst) -> bool {
        (self.check)(egraph, eclass, subst)
    }
}

/// Builds a rule whose right-hand side is checked, optionally guarded.
///
/// # Errors
/// [`RuleError`] when a pattern does not parse or the right-hand side uses a
/// variable the left-hand side does not bind.
pub fn checked_rule(
    name: &str,
    lhs: &str,
    rhs: &str,
    guard: Option<Guard>,
) -> Result<TensorRewrite, RuleError> {
    let searcher: Pattern<TensorLang> = lhs.parse().map_err(|e| RuleError::new(name, &e))?;
    let applier: CheckedPattern = rhs.parse().map_err(|e| RuleError::new(name, &e))?;
    match guard {
        None => Rewrite::new(name, searcher, applier),
        Some(condition) => Rewrite::new(name, searcher, ConditionalApplier { condition, applier }),
    }
    .map_err(|e| RuleError::new(name, &e))
}

/// `Some(Guard)` of a guard function, named after it: `guard!(c_one)`.
macro_rules! guard {
    ($f:ident) => {
        Some($crate::rules::Guard {
            name: stringify!($f),
            check: $f,
        })
    };
}
pub(crate) use guard;

/// A pattern rule's kind: `lhs => rhs`.
#[must_use]
pub const fn pattern(lhs: &'static str, rhs: &'static str) -> entry::Kind {
    entry::Kind::Pattern { lhs, rhs }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(channel_map_merges: bool) -> Vec<String> {
        fusion_rules(Capabilities {
            fused_residual: !channel_map_merges,
            channel_map_merges,
        })
        .unwrap_or_default()
        .iter()
        .map(|r| r.name.to_string())
        .collect()
    }

    #[test]
    fn tract_has_every_rule_but_the_two_merges_it_undoes() {
        let onnx = names(true);
        let tract = names(false);
        let merges = ["merge-channel-maps", "merge-shared-input"];
        for m in merges {
            assert!(onnx.iter().any(|n| n == m), "{m} missing for onnx");
            assert!(!tract.iter().any(|n| n == m), "{m} offered for tract");
        }
        let rest: Vec<&String> = onnx
            .iter()
            .filter(|n| !merges.contains(&n.as_str()))
            .collect();
        assert_eq!(rest, tract.iter().collect::<Vec<_>>());
    }
}
