//! Augmentation: each residual add becomes a `LAuReL` term.
//!
//! The rules, one per variant, are [`TOPIC`]'s entries (for the seven named
//! variants; [`augment_rule`] builds the rule of any variant).
//!
//! `LR(v, A, B)` is `(matmul (matmul v A) B)` channel-last and
//! `(conv1x1 (conv1x1 v A) B)` channel-first. `s_0 = x` and `s_1, s_2, …`
//! are the earlier states of the block's residual stream, the e-classes the
//! lowering recorded with [`crate::graph::TensorGraph::record_states`]
//! (their number, at most `k − 1`, is the lowering's choice); `h` is the
//! identity, or `h(v) = LR(v, A, B)` shared across `j` (`hA`, `hB` in
//! LR+PA, where `A`, `B` are LR's).
//!
//! These rules are one-directional and change the model: they merge the
//! residual add with a term that equals it only at the parameters' initial
//! values (the paper's: B is zero-initialised, "similar to `LoRA`"; RW states
//! no initialisation, α = β = 1 keeps the function; PA's γ are zero).
//! Augmentation therefore extracts with `resadd` forbidden
//! ([`crate::cost::AugmentCost`]).
//!
//! The parameters are per block: the applier reads the block `k` from the
//! matched class's tag ([`crate::graph::TensorGraph::tag_block`], which the
//! lowering sets from its residual analysis), names them `laurel.k.<name>`
//! from their roles (`param_name`), declares their types in the leaf
//! table before the checked instantiation, and records a
//! [`ParamSpec`] for each on success (RW's softmax and sigmoid logits too,
//! which are no leaves of the term: α and β are computed from them). RW's α
//! and β are scalars, or vectors over the channels (`[C]` channel-last,
//! `[C, 1, …, 1]` channel-first) with [`RwParam::Vector`]; PA's `γ_j` are
//! scalars; low-rank factors have rank `r` and act on the channel axis:
//! `A: [C, r]`, `B: [r, C]` channel-last, `A: [r, C]`, `B: [C, r]`
//! channel-first (the `[out, in]` weights of `conv1x1`). A match is refused
//! (and recorded) when the class has no block, a low-rank factor or vector
//! coefficient is needed and the axis fits no [`Layout`] or `C` is not a
//! known number, or the result would be ill-shaped (an earlier state of
//! another shape, say).
//!
//! Complexity: O(k) per match plus the checked instantiation.

use egg::{Applier, ENodeOrVar, Id, Pattern, PatternAst, Rewrite, Subst, Symbol, Var};

use super::entry::{Kind, Pass, Rule, Topic};
use super::{RuleError, TensorRewrite};
use crate::analysis::{Leaf, Refusal, TensorAnalysis, TensorEGraph};
use crate::block::{Block, Layout};
use crate::checked::apply_checked;
use crate::lang::{PaChildren, ParamRef, TensorLang};
use crate::params::{Coefficient, InitMode, Map, ParamSpec, Role};
use crate::shape::{DType, Dim, TensorType, fixed};
use crate::variant::{Rank, RwParam, Variant};

/// The most elements one low-rank factor may hold (`r·C`): 2^28, a gigabyte
/// of float32, the bound of a random input too.
pub const MAX_FACTOR_ELEMENTS: u64 = 1 << 28;

/// A built right-hand side: its pattern, the parameters it declares (its
/// leaves), the parameters it adds outside the term (RW's logits) and the
/// substitution that binds its variables.
type Built = (
    PatternAst<TensorLang>,
    Vec<ParamSpec>,
    Vec<ParamSpec>,
    Subst,
);

/// The right-hand side of an augmentation rule, built per match.
#[derive(Debug, Clone)]
struct Augment {
    variant: Variant,
    init: InitMode,
    f: Var,
    x: Var,
}

/// A right-hand side under construction: its pattern, the parameters it
/// uses with their specs, and the earlier states bound to fresh variables.
struct Rhs<'g> {
    egraph: &'g TensorEGraph,
    variant: Variant,
    init: InitMode,
    block: Block,
    dtype: Option<DType>,
    x_shape: Option<Vec<Dim>>,
    ast: PatternAst<TensorLang>,
    params: Vec<ParamSpec>,
    logits: Vec<ParamSpec>,
    subst: Subst,
}

/// The name of a parameter of `role` in `variant`, within its block: the one
/// place names are made (`laurel.<block>.<name>`; nothing parses them back).
fn param_name(role: Role, variant: Variant) -> String {
    let ab = |m: Map, a: &str, b: &str, down: bool| -> String {
        match m {
            Map::State(j) => format!("{}{j}", if down { a } else { b }),
            // PA's shared h is `hA`, `hB` beside LR's `A`, `B`.
            Map::SharedH if variant.lr.is_some() => (if down { "hA" } else { "hB" }).to_owned(),
            Map::Lr | Map::SharedH => (if down { a } else { b }).to_owned(),
        }
    };
    match role {
        Role::Coefficient(Coefficient::Alpha) => "alpha".into(),
        Role::Coefficient(Coefficient::Beta) => "beta".into(),
        Role::SoftmaxLogit(Coefficient::Alpha) => "a".into(),
        Role::SoftmaxLogit(Coefficient::Beta) => "b".into(),
        Role::SigmoidLogit => "p".into(),
        Role::Gamma(j) => format!("gamma{j}"),
        Role::Down(m) => ab(m, "A", "B", true),
        Role::Up(m) => ab(m, "A", "B", false),
    }
}

#[allow(clippy::many_single_char_names)] // the paper's names: f, x, g(γ), h, a, b
impl Rhs<'_> {
    fn var(&mut self, v: Var) -> Id {
        self.ast.add(ENodeOrVar::Var(v))
    }

    fn node(&mut self, n: TensorLang) -> Id {
        self.ast.add(ENodeOrVar::ENode(n))
    }

    /// The spec of a parameter of `role` and `shape`.
    fn spec(&self, role: Role, shape: Vec<Dim>, layout: Option<Layout>) -> ParamSpec {
        ParamSpec {
            param: ParamRef::named(self.block.id, &param_name(role, self.variant)),
            role,
            ty: TensorType {
                shape: Some(shape),
                dtype: self.dtype.clone(),
            },
            layout,
            init: role.init(self.init, layout, self.variant.rw),
        }
    }

    /// A parameter leaf of `role` and `shape`, recorded with its spec.
    fn param(&mut self, role: Role, shape: Vec<Dim>, layout: Option<Layout>) -> Id {
        let spec = self.spec(role, shape, layout);
        let leaf = TensorLang::Param(spec.param);
        self.params.push(spec);
        self.node(leaf)
    }

    /// The block's layout and channel count, for low-rank factors and
    /// vector coefficients.
    fn layout(&self) -> Result<(Layout, u64), Refusal> {
        let shape = self.x_shape.as_ref();
        let axis = self.block.channel_axis;
        let Some(layout) = shape.and_then(|s| Layout::of(axis, s.len())) else {
            return Err(Refusal::Layout {
                axis,
                rank: shape.map(Vec::len),
            });
        };
        let Some(&Dim::Fixed(c)) = shape.and_then(|s| s.get(axis)) else {
            return Err(Refusal::Channels);
        };
        Ok((layout, c))
    }

    /// The factors `A`, `B` of `map`, of rank `r`; refused when one would
    /// hold more than [`MAX_FACTOR_ELEMENTS`] elements.
    fn factors(&mut self, map: Map, r: Rank) -> Result<(Id, Id, Layout), Refusal> {
        let (layout, c) = self.layout()?;
        let r = r.get();
        match c.checked_mul(r) {
            Some(n) if n <= MAX_FACTOR_ELEMENTS => {}
            _ => {
                return Err(Refusal::TooLarge {
                    rank: r,
                    channels: c,
                });
            }
        }
        let (sa, sb) = match layout {
            Layout::ChannelLast => (fixed(&[c, r]), fixed(&[r, c])),
            Layout::ChannelFirst => (fixed(&[r, c]), fixed(&[c, r])),
        };
        let a = self.param(Role::Down(map), sa, Some(layout));
        let b = self.param(Role::Up(map), sb, Some(layout));
        Ok((a, b, layout))
    }

    /// `LR(v, a, b)`: `(v·a)·b` on the channel axis.
    fn low_rank(&mut self, v: Id, a: Id, b: Id, layout: Layout) -> Id {
        match layout {
            Layout::ChannelLast => {
                let d = self.node(TensorLang::MatMul([v, a]));
                self.node(TensorLang::MatMul([d, b]))
            }
            Layout::ChannelFirst => {
                let d = self.node(TensorLang::Conv1x1([v, a]));
                self.node(TensorLang::Conv1x1([d, b]))
            }
        }
    }

    /// `s_0 = x, s_1, …`: the block's own skip and its recorded earlier states.
    fn states(&mut self, x: Id) -> Vec<Id> {
        let earlier: Vec<Id> = self
            .egraph
            .analysis
            .states(self.block.id)
            .iter()
            .map(|&s| self.egraph.find(s))
            .collect();
        let mut out = vec![x];
        for (j, s) in earlier.into_iter().enumerate() {
            // Numbered variables cannot clash with the pattern's `?f`, `?x`.
            let v = Var::from(u32::try_from(j + 1).unwrap_or(u32::MAX));
            self.subst.insert(v, s);
            out.push(self.var(v));
        }
        out
    }

    /// The pairs `(γ_j, h(s_j))` with `h` the identity or PA's shared
    /// low-rank map of rank `h_rank`.
    fn pa_pairs(&mut self, x: Id, h_rank: Option<Rank>) -> Result<Vec<(Id, Id)>, Refusal> {
        let h = match h_rank {
            Some(r) => Some(self.factors(Map::SharedH, r)?),
            None => None,
        };
        let states = self.states(x);
        let mut pairs = Vec::with_capacity(states.len());
        for (j, s) in (0u32..).zip(states) {
            let g = self.param(Role::Gamma(j), Vec::new(), None);
            let hs = match h {
                Some((a, b, layout)) => self.low_rank(s, a, b, layout),
                None => s,
            };
            pairs.push((g, hs));
        }
        Ok(pairs)
    }

    /// The pairs `(γ_j, (s_j·A_j)·B_j)` of RW+LR+PA, a map of rank `r` per state.
    fn pa_pairs_per_state(&mut self, x: Id, r: Rank) -> Result<Vec<(Id, Id)>, Refusal> {
        let states = self.states(x);
        let mut pairs = Vec::with_capacity(states.len());
        for (j, s) in (0u32..).zip(states) {
            let g = self.param(Role::Gamma(j), Vec::new(), None);
            let (a, b, layout) = self.factors(Map::State(j), r)?;
            pairs.push((g, self.low_rank(s, a, b, layout)));
        }
        Ok(pairs)
    }

    /// `(+ x Σ_j (* γ_j h_j))`, the sum folded from the left; `x` when
    /// there are no pairs.
    fn plus_sum(&mut self, x: Id, pairs: &[(Id, Id)]) -> Id {
        let mut acc: Option<Id> = None;
        for &(g, h) in pairs {
            let t = self.node(TensorLang::Mul([g, h]));
            acc = Some(match acc {
                Some(a) => self.node(TensorLang::Add([a, t])),
                None => t,
            });
        }
        match acc {
            Some(sum) => self.node(TensorLang::Add([x, sum])),
            None => x,
        }
    }

    /// `(laurel-rw f g α β)`, α and β parametrised by `param`: scalars, or
    /// vectors over the channels shaped to broadcast along the channel axis;
    /// under softmax and sigmoid they are computed from logits, whose specs
    /// are recorded too.
    fn rw(&mut self, f: Id, g: Id, param: RwParam) -> Result<Id, Refusal> {
        let (shape, layout) = match param {
            RwParam::Vector => {
                let (layout, c) = self.layout()?;
                let rank = self.x_shape.as_ref().map_or(0, Vec::len);
                let mut shape = vec![Dim::Fixed(c)];
                if layout == Layout::ChannelFirst {
                    shape.extend(std::iter::repeat_n(Dim::Fixed(1), rank.saturating_sub(2)));
                }
                (shape, Some(layout))
            }
            RwParam::Raw | RwParam::Softmax | RwParam::Sigmoid => (Vec::new(), None),
        };
        let a = self.param(Role::Coefficient(Coefficient::Alpha), shape.clone(), layout);
        let b = self.param(Role::Coefficient(Coefficient::Beta), shape, layout);
        let logits: &[Role] = match param {
            RwParam::Softmax => &[
                Role::SoftmaxLogit(Coefficient::Alpha),
                Role::SoftmaxLogit(Coefficient::Beta),
            ],
            RwParam::Sigmoid => &[Role::SigmoidLogit],
            RwParam::Raw | RwParam::Vector => &[],
        };
        for &role in logits {
            let spec = self.spec(role, Vec::new(), None);
            self.logits.push(spec);
        }
        Ok(self.node(TensorLang::LaurelRw([f, g, a, b])))
    }
}

impl Augment {
    /// The right-hand side for `eclass`, its parameters and its substitution.
    #[allow(clippy::many_single_char_names)] // the paper's names
    fn build(&self, egraph: &TensorEGraph, eclass: Id, subst: &Subst) -> Result<Built, Refusal> {
        let block = egraph[eclass].data.block.ok_or(Refusal::NoBlock)?;
        let x_data = subst.get(self.x).map(|&id| &egraph[id].data);
        let mut rhs = Rhs {
            egraph,
            variant: self.variant,
            init: self.init,
            block,
            dtype: x_data.and_then(|d| d.dtype.clone()),
            x_shape: x_data.and_then(|d| d.shape.clone()),
            ast: PatternAst::default(),
            params: Vec::new(),
            logits: Vec::new(),
            subst: subst.clone(),
        };
        let f = rhs.var(self.f);
        let x = rhs.var(self.x);
        let v = self.variant;
        match (v.rw, v.lr, v.pa) {
            // α·f + β·x
            (Some(p), None, None) => {
                rhs.rw(f, x, p)?;
            }
            // f + x + (x·A)·B
            (None, Some(r), None) => {
                let (a, b, _) = rhs.factors(Map::Lr, r)?;
                rhs.node(TensorLang::LaurelLr([f, x, a, b]));
            }
            // f + x + Σ_j γ_j·h(s_j)
            (None, None, Some(pa)) => {
                let pairs = rhs.pa_pairs(x, pa.h)?;
                rhs.node(TensorLang::LaurelPa(PaChildren::new(f, x, &pairs)));
            }
            // α·f + β·(x + (x·A)·B)
            (Some(p), Some(r), None) => {
                let (a, b, layout) = rhs.factors(Map::Lr, r)?;
                let lr = rhs.low_rank(x, a, b, layout);
                let g = rhs.node(TensorLang::Add([x, lr]));
                rhs.rw(f, g, p)?;
            }
            // α·f + β·(x + Σ_j γ_j·h(s_j))
            (Some(p), None, Some(pa)) => {
                let pairs = rhs.pa_pairs(x, pa.h)?;
                let g = rhs.plus_sum(x, &pairs);
                rhs.rw(f, g, p)?;
            }
            // f + x + (x·A)·B + Σ_j γ_j·h(s_j)
            (None, Some(r), Some(pa)) => {
                let (a, b, layout) = rhs.factors(Map::Lr, r)?;
                let lr = rhs.low_rank(x, a, b, layout);
                let f_lr = rhs.node(TensorLang::Add([f, lr]));
                let pairs = rhs.pa_pairs(x, pa.h)?;
                rhs.node(TensorLang::LaurelPa(PaChildren::new(f_lr, x, &pairs)));
            }
            // α·f + β·(x + Σ_j γ_j·(s_j·A_j)·B_j), the paper's Eq. 6
            (Some(p), Some(r), Some(_)) => {
                let pairs = rhs.pa_pairs_per_state(x, r)?;
                let g = rhs.plus_sum(x, &pairs);
                rhs.rw(f, g, p)?;
            }
            (None, None, None) => return Err(Refusal::NoPart),
        }
        Ok((rhs.ast, rhs.params, rhs.logits, rhs.subst))
    }

    /// Declares the parameters, instantiates the checked right-hand side and
    /// unions it with `eclass`; records the specs on success and undoes the
    /// declarations it made on refusal.
    fn apply(&self, egraph: &mut TensorEGraph, eclass: Id, subst: &Subst) -> Result<bool, Refusal> {
        let (ast, params, logits, subst) = self.build(egraph, eclass, subst)?;
        let mut declared = Vec::new();
        for spec in &params {
            let leaf = Leaf::Param(spec.param);
            match egraph.analysis.leaves.get(&leaf) {
                Some(old) if *old == spec.ty => {}
                Some(_) => {
                    undeclare(&mut egraph.analysis, declared);
                    return Err(Refusal::ParamType(spec.param));
                }
                None => {
                    egraph.analysis.leaves.insert(leaf.clone(), spec.ty.clone());
                    declared.push(leaf);
                }
            }
        }
        let changed = apply_checked(egraph, eclass, &ast, &subst).map_err(|e| {
            undeclare(&mut egraph.analysis, declared);
            Refusal::IllShaped(e)
        })?;
        for spec in params.into_iter().chain(logits) {
            egraph.analysis.params.insert(spec.param, spec);
        }
        Ok(changed)
    }
}

fn undeclare(analysis: &mut TensorAnalysis, leaves: Vec<Leaf>) {
    for leaf in leaves {
        analysis.leaves.remove(&leaf);
    }
}

impl Applier<TensorLang, TensorAnalysis> for Augment {
    fn apply_one(
        &self,
        egraph: &mut TensorEGraph,
        eclass: Id,
        subst: &Subst,
        _searcher_ast: Option<&PatternAst<TensorLang>>,
        rule_name: Symbol,
    ) -> Vec<Id> {
        match self.apply(egraph, eclass, subst) {
            Ok(true) => vec![eclass],
            Ok(false) => vec![],
            Err(why) => {
                egraph.analysis.refuse(rule_name.as_str(), eclass, why);
                vec![]
            }
        }
    }

    fn vars(&self) -> Vec<Var> {
        vec![self.f, self.x]
    }
}

/// The augmentation rule of `variant`: `(resadd ?x ?f)` and the per-block
/// right-hand side, whose parameters start as `init` says.
///
/// # Errors
/// [`RuleError`] if the rule does not build (a bug), or `variant` has no part.
pub fn augment_rule(variant: Variant, init: InitMode) -> Result<TensorRewrite, RuleError> {
    let name = variant.rule_name();
    if variant.rw.is_none() && variant.lr.is_none() && variant.pa.is_none() {
        return Err(RuleError::new(name, &"a variant needs RW, LR or PA"));
    }
    let lhs: Pattern<TensorLang> = "(resadd ?x ?f)"
        .parse()
        .map_err(|e| RuleError::new(name, &e))?;
    let var = |v: &str| v.parse::<Var>().map_err(|e| RuleError::new(name, &e));
    let applier = Augment {
        variant,
        init,
        f: var("?f")?,
        x: var("?x")?,
    };
    Rewrite::new(name, lhs, applier).map_err(|e| RuleError::new(name, &e))
}

/// The augmentation rules of `variant` (one rule per variant).
///
/// # Errors
/// [`RuleError`] if a rule does not build (a bug), or `variant` has no part.
pub fn augment_rules(variant: Variant, init: InitMode) -> Result<Vec<TensorRewrite>, RuleError> {
    Ok(vec![augment_rule(variant, init)?])
}

/// The augmentation rules of the seven named variants (default parameters:
/// RW softmax, rank 4, h the identity; the variant's parameters shape the
/// same rule). Examples: `$x`, `$f`, `$s1` `[2, 8]`, block 0 on the last
/// axis with the earlier state `$s1`; `$xs`, `$fs` of a symbolic channel
/// count. Their numbers agree with `x + f` at the parameters' initial values.
#[rustfmt::skip]
pub const TOPIC: Topic = Topic {
    name: "augment",
    summary: "Each residual add becomes a `LAuReL` term: one-directional, a change of the model that is the identity at the parameters' initial values (α = β = 1, B = 0, γ = 0).",
    pass: Pass::Augment,
    context: "$x: f32[2, 8]\n$f: f32[2, 8]\n$s1: f32[2, 8]\n$xs: f32[2, D]\n$fs: f32[2, D]\n\
              block 0 axis 1\nstates 0: $s1",
    rules: &[
        Rule { when: "a block tag", equality: false,
               examples: &[("(resadd $x $f)", "(laurel-rw $f $x laurel.0.alpha laurel.0.beta)")],
               non_examples: &["untagged (resadd $x $f)"],
               ..Rule::new("resadd-to-rw", "x + f ↦ α·f + β·x", Kind::Custom(|| augment_rule(Variant::NAMED[0], InitMode::Identity))) },
        Rule { when: "a block tag; the channel count known and a layout the rules know (low-rank factors)", equality: false,
               examples: &[("(resadd $x $f)", "(laurel-lr $f $x laurel.0.A laurel.0.B)")],
               non_examples: &["untagged (resadd $x $f)", "(resadd $xs $fs)"],
               ..Rule::new("resadd-to-lr", "x + f ↦ f + x + (x·A)·B", Kind::Custom(|| augment_rule(Variant::NAMED[1], InitMode::Identity))) },
        Rule { when: "a block tag", equality: false,
               examples: &[("(resadd $x $f)", "(laurel-pa $f $x laurel.0.gamma0 $x laurel.0.gamma1 $s1)")],
               non_examples: &["untagged (resadd $x $f)"],
               ..Rule::new("resadd-to-pa", "x + f ↦ f + x + Σ_j γ_j·h(x_{i−j})", Kind::Custom(|| augment_rule(Variant::NAMED[2], InitMode::Identity))) },
        Rule { when: "a block tag; the channel count known and a layout the rules know (low-rank factors)", equality: false,
               examples: &[("(resadd $x $f)", "(laurel-rw $f (+ $x (matmul (matmul $x laurel.0.A) laurel.0.B)) laurel.0.alpha laurel.0.beta)")],
               non_examples: &["untagged (resadd $x $f)", "(resadd $xs $fs)"],
               ..Rule::new("resadd-to-rw-lr", "x + f ↦ α·f + β·(x + (x·A)·B)", Kind::Custom(|| augment_rule(Variant::NAMED[3], InitMode::Identity))) },
        Rule { when: "a block tag", equality: false,
               examples: &[("(resadd $x $f)", "(laurel-rw $f (+ $x (+ (* laurel.0.gamma0 $x) (* laurel.0.gamma1 $s1))) laurel.0.alpha laurel.0.beta)")],
               non_examples: &["untagged (resadd $x $f)"],
               ..Rule::new("resadd-to-rw-pa", "x + f ↦ α·f + β·(x + Σ_j γ_j·h(x_{i−j}))", Kind::Custom(|| augment_rule(Variant::NAMED[4], InitMode::Identity))) },
        Rule { when: "a block tag; the channel count known and a layout the rules know (low-rank factors)", equality: false,
               examples: &[("(resadd $x $f)", "(laurel-pa (+ $f (matmul (matmul $x laurel.0.A) laurel.0.B)) $x laurel.0.gamma0 $x laurel.0.gamma1 $s1)")],
               non_examples: &["untagged (resadd $x $f)", "(resadd $xs $fs)"],
               ..Rule::new("resadd-to-lr-pa", "x + f ↦ f + x + (x·A)·B + Σ_j γ_j·h(x_{i−j})", Kind::Custom(|| augment_rule(Variant::NAMED[5], InitMode::Identity))) },
        Rule { when: "a block tag; the channel count known and a layout the rules know (low-rank factors)", equality: false,
               examples: &[("(resadd $x $f)", "(laurel-rw $f (+ $x (+ (* laurel.0.gamma0 (matmul (matmul $x laurel.0.A0) laurel.0.B0)) (* laurel.0.gamma1 (matmul (matmul $s1 laurel.0.A1) laurel.0.B1)))) laurel.0.alpha laurel.0.beta)")],
               non_examples: &["untagged (resadd $x $f)", "(resadd $xs $fs)"],
               ..Rule::new("resadd-to-rw-lr-pa", "x + f ↦ α·f + β·(x + Σ_j γ_j·(x_{i−j}·A_j)·B_j) (the paper's Eq. 6)", Kind::Custom(|| augment_rule(Variant::NAMED[6], InitMode::Identity))) },
    ],
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::TensorGraph;
    use crate::params::Init;
    use crate::shape::Shape;
    use crate::testing::{add, block, expr, graph};
    use egg::Runner;

    fn rank(r: u64) -> Rank {
        Rank::new(r).unwrap()
    }

    fn resadd_to_rw() -> Result<TensorRewrite, RuleError> {
        augment_rule(Variant::rw(RwParam::Raw), InitMode::Identity)
    }

    fn resadd_to_lr(r: Rank) -> Result<TensorRewrite, RuleError> {
        augment_rule(Variant::lr(r), InitMode::Identity)
    }

    /// The parts given (RW raw), LR of rank `lr`, PA's h of rank `h` (the
    /// outer `None`: no PA; `Some(None)`: PA with h the identity).
    #[allow(clippy::option_option)] // the three cases are the test's point
    fn variant(rw: bool, lr: Option<Rank>, pa: Option<Option<Rank>>) -> Variant {
        Variant {
            rw: rw.then_some(RwParam::Raw),
            lr,
            pa: pa.map(|h| crate::variant::Pa {
                window: crate::variant::DEFAULT_WINDOW,
                h,
            }),
        }
    }

    /// Runs `rules` to saturation and returns the e-graph.
    fn run(g: TensorGraph, rules: &[TensorRewrite]) -> TensorEGraph {
        let runner = Runner::default()
            .with_egraph(g.into_egraph())
            .with_iter_limit(8)
            .run(rules);
        assert!(runner.egraph.analysis.conflicts().is_empty());
        runner.egraph
    }

    /// Whether `term` is in the class of `root`.
    fn holds(egraph: &TensorEGraph, root: Id, term: &str) -> bool {
        egraph.lookup_expr(&expr(term)) == Some(egraph.find(root))
    }

    fn param_type(egraph: &TensorEGraph, name: &str) -> Option<Shape> {
        let p: ParamRef = name.parse().unwrap();
        egraph.analysis.leaves().get(&Leaf::Param(p))?.shape.clone()
    }

    /// `(resadd $x $f)` with both of `shape`, tagged as block `k` with `axis`.
    fn residual(shape: Shape, tag: Option<(u32, usize)>) -> (TensorGraph, Id) {
        let mut g = graph(&[("x", shape.clone()), ("f", shape)]);
        let root = add(&mut g, "(resadd $x $f)");
        if let Some((k, axis)) = tag {
            g.tag_block(root, block(k, axis)).unwrap();
        }
        (g, root)
    }

    #[test]
    fn resadd_to_rw_names_scalars_after_the_block() {
        let (g, root) = residual(fixed(&[2, 3, 8]), Some((7, 2)));
        let egraph = run(g, &[resadd_to_rw().unwrap()]);
        assert!(holds(
            &egraph,
            root,
            "(laurel-rw $f $x laurel.7.alpha laurel.7.beta)"
        ));
        assert_eq!(param_type(&egraph, "laurel.7.alpha"), Some(vec![]));
        assert_eq!(param_type(&egraph, "laurel.7.beta"), Some(vec![]));
    }

    #[test]
    fn resadd_to_rw_does_not_fire_without_a_block() {
        let (g, root) = residual(fixed(&[2, 8]), None);
        let egraph = run(g, &[resadd_to_rw().unwrap()]);
        assert_eq!(egraph[root].nodes.len(), 1);
        let refusals: Vec<_> = egraph.analysis.refusals().values().collect();
        assert_eq!(refusals, vec![&Refusal::NoBlock]);
        assert!(
            egraph
                .analysis
                .leaves()
                .get(&Leaf::Param("laurel.0.alpha".parse().unwrap()))
                .is_none()
        );
    }

    #[test]
    fn each_block_gets_its_own_parameters() {
        let mut g = graph(&[("x", fixed(&[4, 8])), ("w", fixed(&[8, 8]))]);
        let r0 = add(&mut g, "(resadd $x (matmul $x $w))");
        let r1 = add(
            &mut g,
            "(resadd (resadd $x (matmul $x $w)) (matmul (resadd $x (matmul $x $w)) $w))",
        );
        g.tag_block(r0, block(0, 1)).unwrap();
        g.tag_block(r1, block(1, 1)).unwrap();
        let egraph = run(g, &[resadd_to_rw().unwrap()]);
        assert!(holds(
            &egraph,
            r0,
            "(laurel-rw (matmul $x $w) $x laurel.0.alpha laurel.0.beta)"
        ));
        assert!(holds(
            &egraph,
            r1,
            "(laurel-rw (matmul (resadd $x (matmul $x $w)) $w) (resadd $x (matmul $x $w)) laurel.1.alpha laurel.1.beta)"
        ));
    }

    #[test]
    fn resadd_to_lr_shapes_factors_channel_last() {
        let (g, root) = residual(fixed(&[2, 5, 8]), Some((0, 2)));
        let egraph = run(g, &[resadd_to_lr(rank(3)).unwrap()]);
        assert!(holds(
            &egraph,
            root,
            "(laurel-lr $f $x laurel.0.A laurel.0.B)"
        ));
        assert_eq!(param_type(&egraph, "laurel.0.A"), Some(fixed(&[8, 3])));
        assert_eq!(param_type(&egraph, "laurel.0.B"), Some(fixed(&[3, 8])));
    }

    #[test]
    fn resadd_to_lr_shapes_factors_channel_first() {
        let (g, root) = residual(fixed(&[1, 8, 4, 4]), Some((0, 1)));
        let egraph = run(g, &[resadd_to_lr(rank(2)).unwrap()]);
        assert!(holds(
            &egraph,
            root,
            "(laurel-lr $f $x laurel.0.A laurel.0.B)"
        ));
        assert_eq!(param_type(&egraph, "laurel.0.A"), Some(fixed(&[2, 8])));
        assert_eq!(param_type(&egraph, "laurel.0.B"), Some(fixed(&[8, 2])));
    }

    #[test]
    fn resadd_to_lr_needs_a_known_channel_count_and_layout() {
        let symbolic = vec![Dim::Fixed(2), Dim::Fixed(5), Dim::Sym("D".into())];
        let (g, root) = residual(symbolic, Some((0, 2)));
        let egraph = run(g, &[resadd_to_lr(rank(2)).unwrap()]);
        assert_eq!(egraph[root].nodes.len(), 1);
        assert_eq!(
            egraph.analysis.refusals().values().next(),
            Some(&Refusal::Channels)
        );

        let (g, root) = residual(fixed(&[1, 8, 4, 4]), Some((0, 2)));
        let egraph = run(g, &[resadd_to_lr(rank(2)).unwrap()]);
        assert_eq!(egraph[root].nodes.len(), 1);
        assert_eq!(
            egraph.analysis.refusals().values().next(),
            Some(&Refusal::Layout {
                axis: 2,
                rank: Some(4)
            })
        );
        assert!(
            egraph
                .analysis
                .leaves()
                .get(&Leaf::Param("laurel.0.A".parse().unwrap()))
                .is_none()
        );
    }

    #[test]
    fn a_parameter_declared_otherwise_refuses_the_rule() {
        let (mut g, root) = residual(fixed(&[2, 8]), Some((0, 1)));
        let alpha = Leaf::Param("laurel.0.alpha".parse().unwrap());
        g.declare(
            alpha,
            TensorType::new(fixed(&[8]), crate::shape::DType::F32),
        )
        .unwrap();
        let egraph = run(g, &[resadd_to_rw().unwrap()]);
        assert_eq!(egraph[root].nodes.len(), 1);
        assert!(matches!(
            egraph.analysis.refusals().values().next(),
            Some(Refusal::ParamType(_))
        ));
    }

    #[test]
    fn the_variant_picks_the_rule() {
        let names = |v| -> Vec<String> {
            augment_rules(v, InitMode::Identity)
                .unwrap()
                .iter()
                .map(|r| r.name.to_string())
                .collect()
        };
        assert_eq!(names(variant(true, None, None)), ["resadd-to-rw"]);
        assert_eq!(names(variant(false, Some(rank(4)), None)), ["resadd-to-lr"]);
        assert_eq!(names(variant(false, None, Some(None))), ["resadd-to-pa"]);
        assert_eq!(
            names(variant(true, Some(rank(4)), None)),
            ["resadd-to-rw-lr"]
        );
        assert_eq!(names(variant(true, None, Some(None))), ["resadd-to-rw-pa"]);
        assert_eq!(
            names(variant(false, Some(rank(4)), Some(None))),
            ["resadd-to-lr-pa"]
        );
        assert_eq!(
            names(variant(true, Some(rank(4)), Some(None))),
            ["resadd-to-rw-lr-pa"]
        );
        // The variant describes itself with every parameter (PA's window too).
        assert_eq!(
            format!("{:#}", variant(false, Some(rank(4)), None)),
            "lr(r=4)"
        );
        assert_eq!(
            format!("{:#}", variant(false, None, Some(None))),
            "pa(k=3, h=id)"
        );
        assert_eq!(
            format!("{:#}", variant(false, Some(rank(4)), Some(Some(rank(2))))),
            "lr(r=4)+pa(k=3, h=r2)"
        );
    }

    /// `(resadd $x $f)` of `shape`, block `k` with `axis`, and earlier states
    /// `$s1, $s2, …` of `states`' shapes recorded for it.
    fn residual_with_states(
        shape: &Shape,
        k: u32,
        axis: usize,
        states: &[Shape],
    ) -> (TensorGraph, Id) {
        let names: Vec<String> = (1..=states.len()).map(|j| format!("s{j}")).collect();
        let mut values = vec![("x", shape.clone()), ("f", shape.clone())];
        for (n, s) in names.iter().zip(states) {
            values.push((n.as_str(), s.clone()));
        }
        let mut g = graph(&values);
        let root = add(&mut g, "(resadd $x $f)");
        g.tag_block(root, block(k, axis)).unwrap();
        let ids = names
            .iter()
            .map(|n| add(&mut g, &format!("${n}")))
            .collect();
        g.record_states(crate::block::BlockId(k), ids).unwrap();
        (g, root)
    }

    fn run_variant(g: TensorGraph, v: Variant) -> TensorEGraph {
        run(g, &augment_rules(v, InitMode::Identity).unwrap())
    }

    #[test]
    fn resadd_to_pa_weighs_the_block_and_its_earlier_states() {
        let s = fixed(&[2, 3, 8]);
        let (g, root) = residual_with_states(&s, 2, 2, &[s.clone(), s.clone()]);
        let egraph = run_variant(g, variant(false, None, Some(None)));
        assert!(holds(
            &egraph,
            root,
            "(laurel-pa $f $x laurel.2.gamma0 $x laurel.2.gamma1 $s1 laurel.2.gamma2 $s2)"
        ));
        for j in 0..3 {
            assert_eq!(
                param_type(&egraph, &format!("laurel.2.gamma{j}")),
                Some(vec![])
            );
        }
    }

    #[test]
    fn resadd_to_pa_at_the_start_of_a_stream_has_one_term() {
        // No states recorded; a symbolic channel count is fine with h = id.
        let s = vec![Dim::Fixed(2), Dim::Sym("D".into())];
        let (g, root) = residual(s, Some((0, 1)));
        let egraph = run_variant(g, variant(false, None, Some(None)));
        assert!(holds(&egraph, root, "(laurel-pa $f $x laurel.0.gamma0 $x)"));
    }

    #[test]
    fn resadd_to_pa_with_low_rank_h_shares_the_factors() {
        let s = fixed(&[2, 3, 8]);
        let (g, root) = residual_with_states(&s, 0, 2, std::slice::from_ref(&s));
        let egraph = run_variant(g, variant(false, None, Some(Some(rank(2)))));
        assert!(holds(
            &egraph,
            root,
            "(laurel-pa $f $x laurel.0.gamma0 (matmul (matmul $x laurel.0.A) laurel.0.B) \
             laurel.0.gamma1 (matmul (matmul $s1 laurel.0.A) laurel.0.B))"
        ));
        assert_eq!(param_type(&egraph, "laurel.0.A"), Some(fixed(&[8, 2])));
        assert_eq!(param_type(&egraph, "laurel.0.B"), Some(fixed(&[2, 8])));
    }

    #[test]
    fn resadd_to_pa_refuses_an_earlier_state_of_another_shape() {
        let s = fixed(&[2, 3, 8]);
        let (g, root) = residual_with_states(&s, 0, 2, &[fixed(&[2, 3, 4])]);
        let egraph = run_variant(g, variant(false, None, Some(None)));
        assert_eq!(egraph[root].nodes.len(), 1);
        assert!(matches!(
            egraph.analysis.refusals().values().next(),
            Some(Refusal::IllShaped(_))
        ));
        assert!(
            param_type(&egraph, "laurel.0.gamma0").is_none(),
            "declarations undone"
        );
    }

    #[test]
    fn resadd_to_rw_lr_weighs_the_low_rank_skip_channel_first() {
        let (g, root) = residual(fixed(&[1, 8, 4, 4]), Some((3, 1)));
        let egraph = run_variant(g, variant(true, Some(rank(2)), None));
        assert!(holds(
            &egraph,
            root,
            "(laurel-rw $f (+ $x (conv1x1 (conv1x1 $x laurel.3.A) laurel.3.B)) laurel.3.alpha laurel.3.beta)"
        ));
        assert_eq!(param_type(&egraph, "laurel.3.A"), Some(fixed(&[2, 8])));
        assert_eq!(param_type(&egraph, "laurel.3.B"), Some(fixed(&[8, 2])));
    }

    #[test]
    fn resadd_to_rw_pa_weighs_the_augmented_skip() {
        let s = fixed(&[4, 8]);
        let (g, root) = residual_with_states(&s, 1, 1, std::slice::from_ref(&s));
        let egraph = run_variant(g, variant(true, None, Some(None)));
        assert!(holds(
            &egraph,
            root,
            "(laurel-rw $f (+ $x (+ (* laurel.1.gamma0 $x) (* laurel.1.gamma1 $s1))) laurel.1.alpha laurel.1.beta)"
        ));
    }

    #[test]
    fn resadd_to_lr_pa_names_h_factors_apart_from_lr() {
        let s = fixed(&[4, 8]);
        let (g, root) = residual_with_states(&s, 0, 1, std::slice::from_ref(&s));
        let v = variant(false, Some(rank(3)), Some(Some(rank(2))));
        let egraph = run_variant(g, v);
        assert!(holds(
            &egraph,
            root,
            "(laurel-pa (+ $f (matmul (matmul $x laurel.0.A) laurel.0.B)) $x \
             laurel.0.gamma0 (matmul (matmul $x laurel.0.hA) laurel.0.hB) \
             laurel.0.gamma1 (matmul (matmul $s1 laurel.0.hA) laurel.0.hB))"
        ));
        assert_eq!(param_type(&egraph, "laurel.0.A"), Some(fixed(&[8, 3])));
        assert_eq!(param_type(&egraph, "laurel.0.hA"), Some(fixed(&[8, 2])));

        let (g, root) = residual(fixed(&[4, 8]), Some((0, 1)));
        let v = variant(false, Some(rank(3)), Some(None));
        let egraph = run_variant(g, v);
        assert!(holds(
            &egraph,
            root,
            "(laurel-pa (+ $f (matmul (matmul $x laurel.0.A) laurel.0.B)) $x laurel.0.gamma0 $x)"
        ));
    }

    #[test]
    fn resadd_to_rw_lr_pa_has_factors_per_state() {
        let s = fixed(&[4, 8]);
        let (g, root) = residual_with_states(&s, 0, 1, std::slice::from_ref(&s));
        let egraph = run_variant(g, variant(true, Some(rank(4)), Some(None)));
        assert!(holds(
            &egraph,
            root,
            "(laurel-rw $f (+ $x (+ (* laurel.0.gamma0 (matmul (matmul $x laurel.0.A0) laurel.0.B0)) \
             (* laurel.0.gamma1 (matmul (matmul $s1 laurel.0.A1) laurel.0.B1)))) laurel.0.alpha laurel.0.beta)"
        ));
        assert_eq!(param_type(&egraph, "laurel.0.A1"), Some(fixed(&[8, 4])));
        assert_eq!(param_type(&egraph, "laurel.0.B1"), Some(fixed(&[4, 8])));
    }

    #[test]
    fn combined_low_rank_rules_need_a_known_channel_count() {
        let symbolic = vec![Dim::Fixed(2), Dim::Sym("D".into())];
        for v in [
            variant(true, Some(rank(2)), None),
            variant(true, Some(rank(2)), Some(None)),
            variant(false, None, Some(Some(rank(2)))),
        ] {
            let (g, root) = residual(symbolic.clone(), Some((0, 1)));
            let egraph = run_variant(g, v);
            assert_eq!(egraph[root].nodes.len(), 1, "{v}");
            assert_eq!(
                egraph.analysis.refusals().values().next(),
                Some(&Refusal::Channels)
            );
        }
    }

    fn specs(egraph: &TensorEGraph) -> Vec<(String, Role, Option<Shape>, Init)> {
        egraph
            .analysis
            .params()
            .into_iter()
            .map(|p| (p.param.to_string(), p.role, p.ty.shape, p.init))
            .collect()
    }

    #[test]
    fn vector_rw_has_a_coefficient_per_channel_along_the_channel_axis() {
        // Channel-last: α, β are [D]; channel-first: [D, 1, 1], broadcasting over H, W.
        for (shape, axis, coefficient) in [
            (fixed(&[2, 5, 8]), 2, fixed(&[8])),
            (fixed(&[1, 8, 4, 4]), 1, fixed(&[8, 1, 1])),
        ] {
            let (g, root) = residual(shape, Some((0, axis)));
            let v = Variant::rw(RwParam::Vector);
            let egraph = run(g, &augment_rules(v, InitMode::Identity).unwrap());
            assert!(holds(
                &egraph,
                root,
                "(laurel-rw $f $x laurel.0.alpha laurel.0.beta)"
            ));
            assert_eq!(
                param_type(&egraph, "laurel.0.alpha"),
                Some(coefficient.clone())
            );
            assert_eq!(
                specs(&egraph),
                [
                    (
                        "laurel.0.alpha".to_owned(),
                        Role::Coefficient(Coefficient::Alpha),
                        Some(coefficient.clone()),
                        Init::Constant(1.0)
                    ),
                    (
                        "laurel.0.beta".to_owned(),
                        Role::Coefficient(Coefficient::Beta),
                        Some(coefficient),
                        Init::Constant(1.0)
                    ),
                ]
            );
        }
        // D must be a known number.
        let (g, root) = residual(vec![Dim::Fixed(2), Dim::Sym("D".into())], Some((0, 1)));
        let egraph = run(
            g,
            &augment_rules(Variant::rw(RwParam::Vector), InitMode::Identity).unwrap(),
        );
        assert_eq!(egraph[root].nodes.len(), 1);
        assert_eq!(
            egraph.analysis.refusals().values().next(),
            Some(&Refusal::Channels)
        );
        assert!(
            specs(&egraph).is_empty(),
            "a refused match records no parameter"
        );
    }

    #[test]
    fn softmax_and_sigmoid_rw_report_their_logits_and_derive_the_coefficients() {
        use crate::params::Derivation;
        let (g, root) = residual(fixed(&[2, 8]), Some((4, 1)));
        let egraph = run(
            g,
            &augment_rules(Variant::rw(RwParam::Softmax), InitMode::Random).unwrap(),
        );
        assert!(holds(
            &egraph,
            root,
            "(laurel-rw $f $x laurel.4.alpha laurel.4.beta)"
        ));
        let derived = Init::Derived(Derivation::Softmax);
        let normal = Init::Normal { std: 0.5 };
        assert_eq!(
            specs(&egraph),
            [
                (
                    "laurel.4.alpha".to_owned(),
                    Role::Coefficient(Coefficient::Alpha),
                    Some(vec![]),
                    derived
                ),
                (
                    "laurel.4.beta".to_owned(),
                    Role::Coefficient(Coefficient::Beta),
                    Some(vec![]),
                    derived
                ),
                (
                    "laurel.4.a".to_owned(),
                    Role::SoftmaxLogit(Coefficient::Alpha),
                    Some(vec![]),
                    normal
                ),
                (
                    "laurel.4.b".to_owned(),
                    Role::SoftmaxLogit(Coefficient::Beta),
                    Some(vec![]),
                    normal
                ),
            ]
        );
        // The logits are no leaves of the term.
        assert!(param_type(&egraph, "laurel.4.a").is_none());
        let (g, _) = residual(fixed(&[2, 8]), Some((0, 1)));
        let egraph = run(
            g,
            &augment_rules(Variant::rw(RwParam::Sigmoid), InitMode::Identity).unwrap(),
        );
        let roles: Vec<(String, Init)> = specs(&egraph).into_iter().map(|s| (s.0, s.3)).collect();
        assert_eq!(
            roles,
            [
                (
                    "laurel.0.alpha".to_owned(),
                    Init::Derived(Derivation::Sigmoid)
                ),
                (
                    "laurel.0.beta".to_owned(),
                    Init::Derived(Derivation::Sigmoid)
                ),
                ("laurel.0.p".to_owned(), Init::Constant(0.0)),
            ]
        );
    }

    #[test]
    fn every_parameter_of_rw_lr_pa_has_its_role() {
        let s = fixed(&[4, 8]);
        let (g, _) = residual_with_states(&s, 0, 1, std::slice::from_ref(&s));
        let egraph = run_variant(g, variant(true, Some(rank(2)), Some(None)));
        let got: Vec<(String, Role, Option<Shape>)> = specs(&egraph)
            .into_iter()
            .map(|s| (s.0, s.1, s.2))
            .collect();
        let want = [
            ("alpha", Role::Coefficient(Coefficient::Alpha), vec![]),
            ("beta", Role::Coefficient(Coefficient::Beta), vec![]),
            ("gamma0", Role::Gamma(0), vec![]),
            ("gamma1", Role::Gamma(1), vec![]),
            ("A0", Role::Down(Map::State(0)), fixed(&[8, 2])),
            ("A1", Role::Down(Map::State(1)), fixed(&[8, 2])),
            ("B0", Role::Up(Map::State(0)), fixed(&[2, 8])),
            ("B1", Role::Up(Map::State(1)), fixed(&[2, 8])),
        ];
        let want: Vec<(String, Role, Option<Shape>)> = want
            .into_iter()
            .map(|(n, r, s)| (format!("laurel.0.{n}"), r, Some(s)))
            .collect();
        assert_eq!(got, want);
        // LR+PA with a low-rank h: LR's A, B and PA's hA, hB are apart.
        let (g, _) = residual_with_states(&s, 0, 1, std::slice::from_ref(&s));
        let egraph = run_variant(g, variant(false, Some(rank(3)), Some(Some(rank(2)))));
        let roles: Vec<(String, Role)> = specs(&egraph).into_iter().map(|s| (s.0, s.1)).collect();
        assert!(
            roles.contains(&("laurel.0.hA".to_owned(), Role::Down(Map::SharedH))),
            "{roles:?}"
        );
        assert!(
            roles.contains(&("laurel.0.B".to_owned(), Role::Up(Map::Lr))),
            "{roles:?}"
        );
    }

    #[test]
    fn an_empty_variant_is_refused_when_the_rule_is_built() {
        let empty = Variant {
            rw: None,
            lr: None,
            pa: None,
        };
        assert!(augment_rule(empty, InitMode::Identity).is_err());
    }
}
