//! A rule table's entries: [`Rule`], its [`Kind`], what it [`Requires`], the
//! [`Pass`] that runs it and the [`Topic`] table it is in. The tables
//! themselves are the topic files' `TOPIC`s; [`super::registry`] lists them.
//! O(1) everywhere.

use super::class::ClassRule;
use super::{Guard, RuleError, TensorRewrite, checked_rule};
use crate::target::Capabilities;

/// How a rule is built.
#[derive(Clone, Copy)]
pub enum Kind {
    /// An egg pattern and a checked right-hand side (guarded by
    /// [`Rule::guard`]).
    Pattern {
        /// The left-hand side.
        lhs: &'static str,
        /// The right-hand side.
        rhs: &'static str,
    },
    /// A rule that reads a class's e-nodes ([`ClassRule`]).
    Class(ClassRule),
    /// A rewrite with a searcher or applier of its own (variadic terms,
    /// per-match right-hand sides).
    Custom(fn() -> Result<TensorRewrite, RuleError>),
}

impl Kind {
    /// `pattern`, `class` or `custom`.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Pattern { .. } => "pattern",
            Kind::Class(_) => "class",
            Kind::Custom(_) => "custom",
        }
    }
}

/// What the runtime of the result must allow for a fusion rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requires {
    /// Nothing: standard ops in, standard ops out.
    Nothing,
    /// Merged channel maps pay off ([`Capabilities::channel_map_merges`]).
    ChannelMapMerges,
    /// The fused residual op ([`Capabilities::fused_residual`]).
    FusedResidual,
}

impl Requires {
    /// Whether `capabilities` allow the rule.
    #[must_use]
    pub fn met_by(self, capabilities: Capabilities) -> bool {
        match self {
            Requires::Nothing => true,
            Requires::ChannelMapMerges => capabilities.channel_map_merges,
            Requires::FusedResidual => capabilities.fused_residual,
        }
    }
}

/// One rule.
#[derive(Clone, Copy)]
pub struct Rule {
    /// Its kebab-case name, as egg and the reports know it.
    pub name: &'static str,
    /// What it states, as an equation (`c·(d·x) = (cd)·x`).
    pub equation: &'static str,
    /// How it is built.
    pub kind: Kind,
    /// A pattern rule's guard, a named function of the match.
    pub guard: Option<Guard>,
    /// When it applies, in words (the guard, or a class rule's conditions);
    /// empty when always.
    pub when: &'static str,
    /// Whether it is an equality (every rule but augmentation's, which
    /// changes the model and is the identity only at initial values).
    pub equality: bool,
    /// What the runtime must allow.
    pub requires: Requires,
    /// Declarations added to the topic's for this rule's examples.
    pub context: &'static str,
    /// Terms it rewrites, each with a term it must add to the class.
    pub examples: &'static [(&'static str, &'static str)],
    /// Terms it must leave alone (the guards' cases); `untagged ` before a
    /// term leaves out the context's block tags.
    pub non_examples: &'static [&'static str],
}

impl Rule {
    /// An equality of `kind`, standard ops only, without guard, examples or
    /// context: the base the tables fill in with struct update syntax.
    #[must_use]
    pub const fn new(name: &'static str, equation: &'static str, kind: Kind) -> Self {
        Self {
            name,
            equation,
            kind,
            guard: None,
            when: "",
            equality: true,
            requires: Requires::Nothing,
            context: "",
            examples: &[],
            non_examples: &[],
        }
    }

    /// The egg rewrite.
    ///
    /// # Errors
    /// [`RuleError`] when a pattern does not parse or egg refuses the rule
    /// (a bug, caught by the tests).
    pub fn rewrite(&self) -> Result<TensorRewrite, RuleError> {
        match self.kind {
            Kind::Pattern { lhs, rhs } => checked_rule(self.name, lhs, rhs, self.guard),
            Kind::Class(c) => c.rewrite(),
            Kind::Custom(build) => build(),
        }
    }
}

/// Which pass runs a topic's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Augmentation: `resadd` into `LAuReL` terms (one rule, the variant's).
    Augment,
    /// Augmentation too: the `LAuReL` terms expanded.
    Expand,
    /// Fusion's saturation.
    Fuse,
    /// Fusion, one pass after saturation.
    AfterFuse,
}

/// A table of rules on one topic, one file.
pub struct Topic {
    /// The topic's name (its file under `passes/src/rules/`).
    pub name: &'static str,
    /// What the rules do, in one sentence.
    pub summary: &'static str,
    /// The pass that runs them.
    pub pass: Pass,
    /// Declarations every example of the topic reads.
    pub context: &'static str,
    /// The rules, in the order they run.
    pub rules: &'static [Rule],
}
