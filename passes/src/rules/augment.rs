//! Augmentation: each residual add becomes a `LAuReL` term.
//!
//! ```text
//! resadd-to-rw       (resadd ?x ?f)  =>  (laurel-rw ?f ?x laurel.k.alpha laurel.k.beta)
//!                    x + f  ↦  α·f + β·x                              the identity at α = β = 1
//! resadd-to-lr       (resadd ?x ?f)  =>  (laurel-lr ?f ?x laurel.k.A laurel.k.B)
//!                    x + f  ↦  f + x + (x·A)·B                        the identity at B = 0
//! resadd-to-pa       (resadd ?x ?f)  =>  (laurel-pa ?f ?x γ0 h(x) γ1 h(s1) … )
//!                    x + f  ↦  f + x + Σ_j γ_j·h(x_{i−j})             the identity at γ = 0
//! resadd-to-rw-lr    (resadd ?x ?f)  =>  (laurel-rw ?f (+ ?x LR(?x, A, B)) α β)
//!                    x + f  ↦  α·f + β·(x + (x·A)·B)                  α = β = 1, B = 0
//! resadd-to-rw-pa    (resadd ?x ?f)  =>  (laurel-rw ?f (+ ?x Σ_j (* γ_j h(s_j))) α β)
//!                    x + f  ↦  α·f + β·(x + Σ_j γ_j·h(x_{i−j}))       α = β = 1, γ = 0
//! resadd-to-lr-pa    (resadd ?x ?f)  =>  (laurel-pa (+ ?f LR(?x, A, B)) ?x γ0 h(x) …)
//!                    x + f  ↦  f + x + (x·A)·B + Σ_j γ_j·h(x_{i−j})   B = 0, γ = 0
//! resadd-to-rw-lr-pa (resadd ?x ?f)  =>  (laurel-rw ?f (+ ?x Σ_j (* γ_j LR(s_j, A_j, B_j))) α β)
//!                    x + f  ↦  α·f + β·(x + Σ_j γ_j·(x_{i−j}·A_j)·B_j) (paper Eq. 6) α = β = 1, γ = 0
//! ```
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
//! and declares their types in the leaf table before the checked
//! instantiation. RW's α and β and PA's `γ_j` are scalars; low-rank factors
//! have rank `r` and act on the channel axis: `A: [C, r]`, `B: [r, C]`
//! channel-last, `A: [r, C]`, `B: [C, r]` channel-first (the `[out, in]`
//! weights of `conv1x1`). A match is refused (and recorded) when the class
//! has no block, a low-rank factor is needed and the axis fits no
//! [`Layout`] or `C` is not a known number, or the result would be
//! ill-shaped (an earlier state of another shape, say).
//!
//! Complexity: O(k) per match plus the checked instantiation.

use std::fmt;
use std::num::NonZeroU64;

use egg::{Applier, ENodeOrVar, Id, Pattern, PatternAst, Rewrite, Subst, Symbol, Var};

use super::{RuleError, TensorRewrite};
use crate::analysis::{Leaf, Refusal, TensorAnalysis, TensorEGraph};
use crate::block::{Block, Layout};
use crate::checked::apply_checked;
use crate::lang::{PaChildren, ParamRef, TensorLang};
use crate::shape::{DType, Dim, TensorType, fixed};

/// Which `LAuReL` variant the augmentation applies to every residual add.
///
/// `h_rank` is PA's `h`: `None` for the identity, `Some(r)` for the low-rank
/// map shared across `j`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// Learned weights: `α·f + β·x`, two scalars per block.
    Rw,
    /// Low rank: `f + x + (x·A)·B` along the channel axis, `2·r·C`
    /// parameters per block.
    Lr {
        /// The rank `r`.
        rank: NonZeroU64,
    },
    /// Previous activations: `f + x + Σ_j γ_j·h(x_{i−j})`; `k` or
    /// `k + 2·r'·C` parameters.
    Pa {
        /// `h`'s rank, or `None` for the identity.
        h_rank: Option<NonZeroU64>,
    },
    /// `α·f + β·(x + (x·A)·B)`: 2 + 2rC.
    RwLr {
        /// The rank `r`.
        rank: NonZeroU64,
    },
    /// `α·f + β·(x + Σ_j γ_j·h(x_{i−j}))`: 2 + k (+ 2r'C).
    RwPa {
        /// `h`'s rank, or `None` for the identity.
        h_rank: Option<NonZeroU64>,
    },
    /// `f + x + (x·A)·B + Σ_j γ_j·h(x_{i−j})`: 2rC + k (+ 2r'C).
    LrPa {
        /// LR's rank `r`.
        rank: NonZeroU64,
        /// `h`'s rank, or `None` for the identity.
        h_rank: Option<NonZeroU64>,
    },
    /// `α·f + β·(x + Σ_j γ_j·(x_{i−j}·A_j)·B_j)` (Eq. 6): 2 + k + 2rkC.
    RwLrPa {
        /// The rank `r` of every `A_j`, `B_j`.
        rank: NonZeroU64,
    },
}

impl Variant {
    /// The augmentation rule's name.
    #[must_use]
    pub fn rule_name(&self) -> &'static str {
        match self {
            Variant::Rw => "resadd-to-rw",
            Variant::Lr { .. } => "resadd-to-lr",
            Variant::Pa { .. } => "resadd-to-pa",
            Variant::RwLr { .. } => "resadd-to-rw-lr",
            Variant::RwPa { .. } => "resadd-to-rw-pa",
            Variant::LrPa { .. } => "resadd-to-lr-pa",
            Variant::RwLrPa { .. } => "resadd-to-rw-lr-pa",
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h =
            |h: &Option<NonZeroU64>| h.map_or_else(|| "h=id".to_owned(), |r| format!("h-rank={r}"));
        match self {
            Variant::Rw => write!(f, "rw"),
            Variant::Lr { rank } => write!(f, "lr(r={rank})"),
            Variant::Pa { h_rank } => write!(f, "pa({})", h(h_rank)),
            Variant::RwLr { rank } => write!(f, "rw+lr(r={rank})"),
            Variant::RwPa { h_rank } => write!(f, "rw+pa({})", h(h_rank)),
            Variant::LrPa { rank, h_rank } => write!(f, "lr+pa(r={rank}, {})", h(h_rank)),
            Variant::RwLrPa { rank } => write!(f, "rw+lr+pa(r={rank})"),
        }
    }
}

/// A built right-hand side: its pattern, the parameters it declares and the
/// substitution that binds its variables.
type Built = (PatternAst<TensorLang>, Vec<(ParamRef, TensorType)>, Subst);

/// The right-hand side of an augmentation rule, built per match.
#[derive(Debug, Clone)]
struct Augment {
    variant: Variant,
    f: Var,
    x: Var,
}

/// A right-hand side under construction: its pattern, the parameters it
/// uses with their types, and the earlier states bound to fresh variables.
struct Rhs<'g> {
    egraph: &'g TensorEGraph,
    block: Block,
    dtype: Option<DType>,
    x_shape: Option<Vec<Dim>>,
    ast: PatternAst<TensorLang>,
    params: Vec<(ParamRef, TensorType)>,
    subst: Subst,
}

#[allow(clippy::many_single_char_names)] // the paper's names: f, x, g(γ), h, a, b
impl Rhs<'_> {
    fn var(&mut self, v: Var) -> Id {
        self.ast.add(ENodeOrVar::Var(v))
    }

    fn node(&mut self, n: TensorLang) -> Id {
        self.ast.add(ENodeOrVar::ENode(n))
    }

    /// A parameter leaf `laurel.k.<name>` of `shape`.
    fn param(&mut self, name: &str, shape: Vec<Dim>) -> Id {
        let p = ParamRef::named(self.block.id, name);
        self.params.push((
            p,
            TensorType {
                shape: Some(shape),
                dtype: self.dtype.clone(),
            },
        ));
        self.node(TensorLang::Param(p))
    }

    /// The block's layout and channel count, for low-rank factors.
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

    /// The factors `a`, `b` of rank `r`.
    fn factors(&mut self, a: &str, b: &str, r: NonZeroU64) -> Result<(Id, Id, Layout), Refusal> {
        let (layout, c) = self.layout()?;
        let r = r.get();
        let (sa, sb) = match layout {
            Layout::ChannelLast => (fixed(&[c, r]), fixed(&[r, c])),
            Layout::ChannelFirst => (fixed(&[r, c]), fixed(&[c, r])),
        };
        Ok((self.param(a, sa), self.param(b, sb), layout))
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

    /// The pairs `(γ_j, h(s_j))` with `h` the identity or `LR(·, a, b)`
    /// shared across `j` (`a`, `b` named by `names`).
    fn pa_pairs(
        &mut self,
        x: Id,
        h_rank: Option<NonZeroU64>,
        names: (&str, &str),
    ) -> Result<Vec<(Id, Id)>, Refusal> {
        let h = match h_rank {
            Some(r) => Some(self.factors(names.0, names.1, r)?),
            None => None,
        };
        let states = self.states(x);
        let mut pairs = Vec::with_capacity(states.len());
        for (j, s) in states.into_iter().enumerate() {
            let g = self.param(&format!("gamma{j}"), Vec::new());
            let hs = match h {
                Some((a, b, layout)) => self.low_rank(s, a, b, layout),
                None => s,
            };
            pairs.push((g, hs));
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

    /// `(laurel-rw f g α β)`.
    fn rw(&mut self, f: Id, g: Id) -> Id {
        let a = self.param("alpha", Vec::new());
        let b = self.param("beta", Vec::new());
        self.node(TensorLang::LaurelRw([f, g, a, b]))
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
            block,
            dtype: x_data.and_then(|d| d.dtype.clone()),
            x_shape: x_data.and_then(|d| d.shape.clone()),
            ast: PatternAst::default(),
            params: Vec::new(),
            subst: subst.clone(),
        };
        let f = rhs.var(self.f);
        let x = rhs.var(self.x);
        match self.variant {
            Variant::Rw => {
                rhs.rw(f, x);
            }
            Variant::Lr { rank } => {
                let (a, b, _) = rhs.factors("A", "B", rank)?;
                rhs.node(TensorLang::LaurelLr([f, x, a, b]));
            }
            Variant::Pa { h_rank } => {
                let pairs = rhs.pa_pairs(x, h_rank, ("A", "B"))?;
                rhs.node(TensorLang::LaurelPa(PaChildren::new(f, x, &pairs)));
            }
            Variant::RwLr { rank } => {
                let (a, b, layout) = rhs.factors("A", "B", rank)?;
                let lr = rhs.low_rank(x, a, b, layout);
                let g = rhs.node(TensorLang::Add([x, lr]));
                rhs.rw(f, g);
            }
            Variant::RwPa { h_rank } => {
                let pairs = rhs.pa_pairs(x, h_rank, ("A", "B"))?;
                let g = rhs.plus_sum(x, &pairs);
                rhs.rw(f, g);
            }
            Variant::LrPa { rank, h_rank } => {
                let (a, b, layout) = rhs.factors("A", "B", rank)?;
                let lr = rhs.low_rank(x, a, b, layout);
                let f_lr = rhs.node(TensorLang::Add([f, lr]));
                let pairs = rhs.pa_pairs(x, h_rank, ("hA", "hB"))?;
                rhs.node(TensorLang::LaurelPa(PaChildren::new(f_lr, x, &pairs)));
            }
            Variant::RwLrPa { rank } => {
                let states = rhs.states(x);
                let mut pairs = Vec::with_capacity(states.len());
                for (j, s) in states.into_iter().enumerate() {
                    let g = rhs.param(&format!("gamma{j}"), Vec::new());
                    let (a, b, layout) = rhs.factors(&format!("A{j}"), &format!("B{j}"), rank)?;
                    pairs.push((g, rhs.low_rank(s, a, b, layout)));
                }
                let g = rhs.plus_sum(x, &pairs);
                rhs.rw(f, g);
            }
        }
        Ok((rhs.ast, rhs.params, rhs.subst))
    }

    /// Declares the parameters, instantiates the checked right-hand side and
    /// unions it with `eclass`; undoes the declarations it made on refusal.
    fn apply(&self, egraph: &mut TensorEGraph, eclass: Id, subst: &Subst) -> Result<bool, Refusal> {
        let (ast, params, subst) = self.build(egraph, eclass, subst)?;
        let mut declared = Vec::new();
        for (param, ty) in params {
            let leaf = Leaf::Param(param);
            match egraph.analysis.leaves.get(&leaf) {
                Some(old) if *old == ty => {}
                Some(_) => {
                    undeclare(&mut egraph.analysis, declared);
                    return Err(Refusal::ParamType(param));
                }
                None => {
                    egraph.analysis.leaves.insert(leaf.clone(), ty);
                    declared.push(leaf);
                }
            }
        }
        apply_checked(egraph, eclass, &ast, &subst).map_err(|e| {
            undeclare(&mut egraph.analysis, declared);
            Refusal::IllShaped(e)
        })
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
/// right-hand side.
///
/// # Errors
/// [`RuleError`] if the rule does not build (a bug).
pub fn augment_rule(variant: Variant) -> Result<TensorRewrite, RuleError> {
    let name = variant.rule_name();
    let lhs: Pattern<TensorLang> = "(resadd ?x ?f)"
        .parse()
        .map_err(|e| RuleError::new(name, &e))?;
    let var = |v: &str| v.parse::<Var>().map_err(|e| RuleError::new(name, &e));
    let applier = Augment {
        variant,
        f: var("?f")?,
        x: var("?x")?,
    };
    Rewrite::new(name, lhs, applier).map_err(|e| RuleError::new(name, &e))
}

/// `resadd-to-rw`: `x + f ↦ α·f + β·x`.
///
/// # Errors
/// [`RuleError`] if the rule does not build (a bug).
pub fn resadd_to_rw() -> Result<TensorRewrite, RuleError> {
    augment_rule(Variant::Rw)
}

/// `resadd-to-lr`: `x + f ↦ f + x + (x·A)·B` with rank `rank`.
///
/// # Errors
/// [`RuleError`] if the rule does not build (a bug).
pub fn resadd_to_lr(rank: NonZeroU64) -> Result<TensorRewrite, RuleError> {
    augment_rule(Variant::Lr { rank })
}

/// The augmentation rules of `variant` (one rule per variant).
///
/// # Errors
/// [`RuleError`] if a rule does not build (a bug).
pub fn augment_rules(variant: Variant) -> Result<Vec<TensorRewrite>, RuleError> {
    Ok(vec![augment_rule(variant)?])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::TensorGraph;
    use crate::shape::Shape;
    use crate::testing::{add, block, expr, graph};
    use egg::Runner;

    fn rank(r: u64) -> NonZeroU64 {
        NonZeroU64::new(r).unwrap()
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
            augment_rules(v)
                .unwrap()
                .iter()
                .map(|r| r.name.to_string())
                .collect()
        };
        assert_eq!(names(Variant::Rw), ["resadd-to-rw"]);
        assert_eq!(names(Variant::Lr { rank: rank(4) }), ["resadd-to-lr"]);
        assert_eq!(names(Variant::Pa { h_rank: None }), ["resadd-to-pa"]);
        assert_eq!(names(Variant::RwLr { rank: rank(4) }), ["resadd-to-rw-lr"]);
        assert_eq!(names(Variant::RwPa { h_rank: None }), ["resadd-to-rw-pa"]);
        assert_eq!(
            names(Variant::LrPa {
                rank: rank(4),
                h_rank: None
            }),
            ["resadd-to-lr-pa"]
        );
        assert_eq!(
            names(Variant::RwLrPa { rank: rank(4) }),
            ["resadd-to-rw-lr-pa"]
        );
        assert_eq!(Variant::Lr { rank: rank(4) }.to_string(), "lr(r=4)");
        assert_eq!(Variant::Pa { h_rank: None }.to_string(), "pa(h=id)");
        assert_eq!(
            Variant::LrPa {
                rank: rank(4),
                h_rank: Some(rank(2))
            }
            .to_string(),
            "lr+pa(r=4, h-rank=2)"
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
        run(g, &augment_rules(v).unwrap())
    }

    #[test]
    fn resadd_to_pa_weighs_the_block_and_its_earlier_states() {
        let s = fixed(&[2, 3, 8]);
        let (g, root) = residual_with_states(&s, 2, 2, &[s.clone(), s.clone()]);
        let egraph = run_variant(g, Variant::Pa { h_rank: None });
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
        let egraph = run_variant(g, Variant::Pa { h_rank: None });
        assert!(holds(&egraph, root, "(laurel-pa $f $x laurel.0.gamma0 $x)"));
    }

    #[test]
    fn resadd_to_pa_with_low_rank_h_shares_the_factors() {
        let s = fixed(&[2, 3, 8]);
        let (g, root) = residual_with_states(&s, 0, 2, std::slice::from_ref(&s));
        let egraph = run_variant(
            g,
            Variant::Pa {
                h_rank: Some(rank(2)),
            },
        );
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
        let egraph = run_variant(g, Variant::Pa { h_rank: None });
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
        let egraph = run_variant(g, Variant::RwLr { rank: rank(2) });
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
        let egraph = run_variant(g, Variant::RwPa { h_rank: None });
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
        let v = Variant::LrPa {
            rank: rank(3),
            h_rank: Some(rank(2)),
        };
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
        let v = Variant::LrPa {
            rank: rank(3),
            h_rank: None,
        };
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
        let egraph = run_variant(g, Variant::RwLrPa { rank: rank(4) });
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
            Variant::RwLr { rank: rank(2) },
            Variant::RwLrPa { rank: rank(2) },
            Variant::Pa {
                h_rank: Some(rank(2)),
            },
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
}
