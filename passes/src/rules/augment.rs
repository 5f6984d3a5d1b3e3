//! Augmentation: each residual add becomes a `LAuReL` term.
//!
//! ```text
//! resadd-to-rw   (resadd ?x ?f)  =>  (laurel-rw ?f ?x laurel.k.alpha laurel.k.beta)
//!                x + f  ↦  α·f + β·x          the identity at α = β = 1
//! resadd-to-lr   (resadd ?x ?f)  =>  (laurel-lr ?f ?x laurel.k.A laurel.k.B)
//!                x + f  ↦  f + x + (x·A)·B    the identity at B = 0
//! ```
//!
//! These rules are one-directional and change the model: they merge the
//! residual add with a term that equals it only at the parameters' initial
//! values (the paper's: B is zero-initialised, "similar to `LoRA`"; RW states
//! no initialisation, α = β = 1 keeps the function). Augmentation therefore
//! extracts with `resadd` forbidden ([`crate::cost::AugmentCost`]).
//!
//! The parameters are per block: the applier reads the block `k` from the
//! matched class's tag ([`crate::graph::TensorGraph::tag_block`], which the
//! lowering sets from its residual analysis), names them `laurel.k.<name>`
//! and declares their types in the leaf table before the checked
//! instantiation. RW's α and β are scalars; LR's factors have rank `r` and
//! act on the channel axis: `A: [C, r]`, `B: [r, C]` channel-last,
//! `A: [r, C]`, `B: [C, r]` channel-first (the `[out, in]` weights of
//! `conv1x1`). A match is refused (and recorded) when the class has no
//! block, the axis fits no [`Layout`], `C` is not a known number, or the
//! result would be ill-shaped.
//!
//! PA (`laurel-pa`, which needs the earlier stream states mapped into the
//! e-graph) and the combinations RW+LR, RW+PA, RW+LR+PA are not implemented
//! yet: [`Variant`] has no case for them.
//!
//! Complexity: O(1) per match plus the checked instantiation.

use std::fmt;
use std::num::NonZeroU64;

use egg::{Applier, ENodeOrVar, Id, Pattern, PatternAst, Rewrite, Subst, Symbol, Var};

use super::{RuleError, TensorRewrite};
use crate::analysis::{Leaf, Refusal, TensorAnalysis, TensorEGraph};
use crate::block::Layout;
use crate::checked::apply_checked;
use crate::lang::{ParamRef, TensorLang};
use crate::shape::{Dim, TensorType, fixed};

/// Which `LAuReL` variant the augmentation applies to every residual add.
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
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Variant::Rw => write!(f, "rw"),
            Variant::Lr { rank } => write!(f, "lr(r={rank})"),
        }
    }
}

/// The right-hand side of an augmentation rule, built per match.
#[derive(Debug, Clone)]
struct Augment {
    variant: Variant,
    f: Var,
    x: Var,
}

impl Augment {
    /// The parameters of `variant` for the block of `eclass`, with their types.
    fn params(
        &self,
        egraph: &TensorEGraph,
        eclass: Id,
        subst: &Subst,
    ) -> Result<[(ParamRef, TensorType); 2], Refusal> {
        let block = egraph[eclass].data.block.ok_or(Refusal::NoBlock)?;
        let x_data = subst.get(self.x).map(|&id| &egraph[id].data);
        let dtype = x_data.and_then(|d| d.dtype.clone());
        let param = |name: &'static str, shape: Vec<Dim>| {
            let ty = TensorType {
                shape: Some(shape),
                dtype: dtype.clone(),
            };
            (ParamRef::named(block.id, name), ty)
        };
        match self.variant {
            Variant::Rw => Ok([param("alpha", Vec::new()), param("beta", Vec::new())]),
            Variant::Lr { rank } => {
                let shape = x_data.and_then(|d| d.shape.as_ref());
                let axis = block.channel_axis;
                let layout = shape.and_then(|s| Layout::of(axis, s.len()));
                let Some(layout) = layout else {
                    return Err(Refusal::Layout {
                        axis,
                        rank: shape.map(Vec::len),
                    });
                };
                let Some(&Dim::Fixed(c)) = shape.and_then(|s| s.get(axis)) else {
                    return Err(Refusal::Channels);
                };
                let r = rank.get();
                let (a, b) = match layout {
                    Layout::ChannelLast => (fixed(&[c, r]), fixed(&[r, c])),
                    Layout::ChannelFirst => (fixed(&[r, c]), fixed(&[c, r])),
                };
                Ok([param("A", a), param("B", b)])
            }
        }
    }

    /// `(laurel-* ?f ?x p q)`.
    fn rhs(&self, p: ParamRef, q: ParamRef) -> PatternAst<TensorLang> {
        let mut ast = PatternAst::default();
        let f = ast.add(ENodeOrVar::Var(self.f));
        let x = ast.add(ENodeOrVar::Var(self.x));
        let p = ast.add(ENodeOrVar::ENode(TensorLang::Param(p)));
        let q = ast.add(ENodeOrVar::ENode(TensorLang::Param(q)));
        let node = match self.variant {
            Variant::Rw => TensorLang::LaurelRw([f, x, p, q]),
            Variant::Lr { .. } => TensorLang::LaurelLr([f, x, p, q]),
        };
        ast.add(ENodeOrVar::ENode(node));
        ast
    }

    /// Declares the parameters, instantiates the checked right-hand side and
    /// unions it with `eclass`; undoes the declarations it made on refusal.
    fn apply(&self, egraph: &mut TensorEGraph, eclass: Id, subst: &Subst) -> Result<bool, Refusal> {
        let [(p, p_ty), (q, q_ty)] = self.params(egraph, eclass, subst)?;
        let mut declared = Vec::new();
        for (param, ty) in [(p, p_ty), (q, q_ty)] {
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
        apply_checked(egraph, eclass, &self.rhs(p, q), subst).map_err(|e| {
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

/// An augmentation rule: `(resadd ?x ?f)` and the per-block right-hand side.
fn augment_rule(name: &str, variant: Variant) -> Result<TensorRewrite, RuleError> {
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
    augment_rule("resadd-to-rw", Variant::Rw)
}

/// `resadd-to-lr`: `x + f ↦ f + x + (x·A)·B` with rank `rank`.
///
/// # Errors
/// [`RuleError`] if the rule does not build (a bug).
pub fn resadd_to_lr(rank: NonZeroU64) -> Result<TensorRewrite, RuleError> {
    augment_rule("resadd-to-lr", Variant::Lr { rank })
}

/// The augmentation rules of `variant` (one rule per variant today).
///
/// # Errors
/// [`RuleError`] if a rule does not build (a bug).
pub fn augment_rules(variant: Variant) -> Result<Vec<TensorRewrite>, RuleError> {
    Ok(vec![match variant {
        Variant::Rw => resadd_to_rw()?,
        Variant::Lr { rank } => resadd_to_lr(rank)?,
    }])
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
        assert_eq!(Variant::Lr { rank: rank(4) }.to_string(), "lr(r=4)");
    }
}
