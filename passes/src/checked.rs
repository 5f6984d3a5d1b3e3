//! Checked right-hand sides: rules go through the builder's shape check.
//!
//! [`CheckedPattern`] is an egg [`Applier`] that instantiates its pattern
//! only when every new node is well-shaped and the result has the type of
//! the class it joins; otherwise the rule does not fire for that match, and
//! the refusal is recorded in the analysis
//! ([`crate::analysis::TensorAnalysis::refusals`]). [`apply_checked`] is the
//! same step for appliers that build their right-hand side at match time
//! (the augmentation rules).
//!
//! Complexity: per match, linear in the pattern size (hash lookups plus the
//! shape rules). Errors never escape an applier: they become refusals.

use std::fmt;
use std::str::FromStr;

use egg::{Applier, ENodeOrVar, Id, Pattern, PatternAst, SearchMatches, Subst, Symbol, Var};

use crate::analysis::{Refusal, TensorAnalysis, TensorData, TensorEGraph};
use crate::graph::{check_term, pattern_entries};
use crate::lang::TensorLang;
use crate::shape::{Mismatch, ShapeError};

/// Why a right-hand side with data `term` may not join a class with data
/// `class` (types or constants that are known on both sides and differ).
fn mismatch(class: &TensorData, term: &TensorData) -> Option<Mismatch> {
    fn differ<T: PartialEq>(a: Option<&T>, b: Option<&T>) -> bool {
        matches!((a, b), (Some(a), Some(b)) if a != b)
    }
    if differ(class.shape.as_ref(), term.shape.as_ref())
        || differ(class.dtype.as_ref(), term.dtype.as_ref())
    {
        return Some(Mismatch::NotTheClassType {
            class: Box::new(class.ty()),
            term: Box::new(term.ty()),
        });
    }
    match (&class.constant, &term.constant) {
        (Some(a), Some(b)) if a != b => Some(Mismatch::NotTheClassConstant(Box::new((
            a.clone(),
            b.clone(),
        )))),
        _ => None,
    }
}

/// Checks `ast` instantiated with `subst` and, when well-shaped and of the
/// type of `eclass`, adds it and unions it with `eclass`.
///
/// Returns whether the union changed the e-graph.
///
/// # Errors
/// [`ShapeError`] when a node is ill-shaped or the result's type or value
/// differs from the class's ([`Mismatch::NotTheClassType`],
/// [`Mismatch::NotTheClassConstant`]); nothing is added.
pub fn apply_checked(
    egraph: &mut TensorEGraph,
    eclass: Id,
    ast: &PatternAst<TensorLang>,
    subst: &Subst,
) -> Result<bool, ShapeError> {
    let entries = pattern_entries(ast, subst)?;
    let term = check_term(egraph, &entries)?;
    if let Some(mismatch) = mismatch(&egraph[eclass].data, &term) {
        return Err(ShapeError {
            term: ast.last().map(ToString::to_string).unwrap_or_default(),
            operands: Vec::new(),
            mismatch,
        });
    }
    let id = egraph.add_instantiation(ast, subst);
    Ok(egraph.union(eclass, id))
}

/// Runs [`apply_checked`] for one match of rule `rule`, recording a refusal.
/// Returns the ids egg expects from [`Applier::apply_one`].
pub(crate) fn apply_or_refuse(
    egraph: &mut TensorEGraph,
    eclass: Id,
    ast: &PatternAst<TensorLang>,
    subst: &Subst,
    rule: Symbol,
) -> Vec<Id> {
    match apply_checked(egraph, eclass, ast, subst) {
        Ok(true) => vec![eclass],
        Ok(false) => vec![],
        Err(e) => {
            egraph
                .analysis
                .refuse(rule.as_str(), eclass, Refusal::IllShaped(e));
            vec![]
        }
    }
}

/// A right-hand side built at match time: new e-nodes over existing
/// classes, each existing class bound to a fresh variable. Appliers that
/// compute their result from the matched e-nodes (the fusion rules over
/// generic ONNX ops) build one and apply it with [`Rhs::apply`], through the
/// same check as [`CheckedPattern`].
#[derive(Debug, Clone, Default)]
pub struct Rhs {
    ast: PatternAst<TensorLang>,
    subst: Subst,
    vars: u32,
}

impl Rhs {
    /// An empty right-hand side.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The existing class `id`, as a node of the right-hand side.
    pub fn class(&mut self, id: Id) -> Id {
        let v = Var::from(self.vars);
        self.vars += 1;
        self.subst.insert(v, id);
        self.ast.add(ENodeOrVar::Var(v))
    }

    /// A new e-node whose children are nodes of this right-hand side.
    pub fn node(&mut self, node: TensorLang) -> Id {
        self.ast.add(ENodeOrVar::ENode(node))
    }

    /// The right-hand side as text (for tests and reports).
    #[must_use]
    pub fn text(&self) -> String {
        self.ast.to_string()
    }

    /// Checks the right-hand side (its last node is the root) and, when
    /// well-shaped and of the class's type, adds it to `eclass`; otherwise
    /// records a refusal for `rule`. Returns whether the e-graph changed.
    pub fn apply(&self, egraph: &mut TensorEGraph, eclass: Id, rule: &str) -> bool {
        match apply_checked(egraph, eclass, &self.ast, &self.subst) {
            Ok(changed) => changed,
            Err(e) => {
                egraph.analysis.refuse(rule, eclass, Refusal::IllShaped(e));
                false
            }
        }
    }
}

/// A rule right-hand side that only fires when well-shaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedPattern {
    ast: PatternAst<TensorLang>,
    vars: Vec<Var>,
}

impl CheckedPattern {
    /// Wraps a pattern.
    #[must_use]
    pub fn new(pattern: Pattern<TensorLang>) -> Self {
        let vars = pattern.vars();
        Self {
            ast: pattern.ast,
            vars,
        }
    }

    /// The pattern.
    #[must_use]
    pub fn ast(&self) -> &PatternAst<TensorLang> {
        &self.ast
    }
}

impl FromStr for CheckedPattern {
    type Err = <Pattern<TensorLang> as FromStr>::Err;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self::new)
    }
}

impl fmt::Display for CheckedPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.ast)
    }
}

impl Applier<TensorLang, TensorAnalysis> for CheckedPattern {
    fn apply_matches(
        &self,
        egraph: &mut TensorEGraph,
        matches: &[SearchMatches<TensorLang>],
        rule_name: Symbol,
    ) -> Vec<Id> {
        let mut changed = Vec::new();
        for m in matches {
            for subst in &m.substs {
                changed.extend(apply_or_refuse(
                    egraph, m.eclass, &self.ast, subst, rule_name,
                ));
            }
        }
        changed
    }

    fn apply_one(
        &self,
        egraph: &mut TensorEGraph,
        eclass: Id,
        subst: &Subst,
        _searcher_ast: Option<&PatternAst<TensorLang>>,
        rule_name: Symbol,
    ) -> Vec<Id> {
        apply_or_refuse(egraph, eclass, &self.ast, subst, rule_name)
    }

    fn vars(&self) -> Vec<Var> {
        self.vars.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::Leaf;
    use crate::graph::TensorGraph;
    use crate::lang::ValueRef;
    use crate::shape::{DType, TensorType, fixed};
    use egg::{Rewrite, Runner};

    fn graph(leaves: &[(&str, &[u64])]) -> TensorGraph {
        let mut g = TensorGraph::new();
        for (name, shape) in leaves {
            let v = Leaf::Value(ValueRef::new(name).unwrap());
            g.declare(v, TensorType::new(fixed(shape), DType::F32))
                .unwrap();
        }
        g
    }

    fn checked(name: &str, lhs: &str, rhs: &str) -> Rewrite<TensorLang, TensorAnalysis> {
        let lhs: Pattern<TensorLang> = lhs.parse().unwrap();
        let rhs: CheckedPattern = rhs.parse().unwrap();
        Rewrite::new(name, lhs, rhs).unwrap()
    }

    fn run(g: TensorGraph, rules: &[Rewrite<TensorLang, TensorAnalysis>]) -> TensorEGraph {
        Runner::default()
            .with_egraph(g.into_egraph())
            .with_iter_limit(4)
            .run(rules)
            .egraph
    }

    #[test]
    fn a_rule_with_an_ill_shaped_rhs_does_not_fire() {
        // x·w → w·x is ill-shaped unless the shapes happen to fit.
        let mut g = graph(&[("x", &[2, 3]), ("w", &[3, 4])]);
        let root = g
            .add_expr_checked(&"(matmul $x $w)".parse().unwrap())
            .unwrap();
        let before = g.egraph().total_size();
        let egraph = run(
            g,
            &[checked("swap-matmul", "(matmul ?a ?b)", "(matmul ?b ?a)")],
        );
        assert_eq!(egraph.total_size(), before, "nothing was added");
        assert_eq!(egraph[root].nodes.len(), 1);
        assert_eq!(
            egraph.analysis.refusal_counts()["swap-matmul"],
            1,
            "counted once"
        );
        let refusal = egraph.analysis.refusals().values().next().unwrap();
        assert!(
            matches!(refusal, Refusal::IllShaped(e) if e.term == "matmul"),
            "{refusal}"
        );
        assert!(egraph.analysis.conflicts().is_empty());
    }

    #[test]
    fn the_same_rule_fires_where_well_shaped() {
        let mut g = graph(&[("x", &[3, 3]), ("w", &[3, 3])]);
        let root = g
            .add_expr_checked(&"(matmul $x $w)".parse().unwrap())
            .unwrap();
        let egraph = run(
            g,
            &[checked("swap-matmul", "(matmul ?a ?b)", "(matmul ?b ?a)")],
        );
        assert_eq!(egraph[root].nodes.len(), 2);
        assert!(egraph.analysis.refusals().is_empty());
    }

    #[test]
    fn a_rhs_of_another_value_than_its_class_does_not_fire() {
        // 2 + 3 is 5, not 2 (the class of a known scalar keeps only its
        // leaves, so the rule matches the `Num`).
        let mut g = TensorGraph::new();
        let root = g.add_expr_checked(&"(+ 2 3)".parse().unwrap()).unwrap();
        let egraph = run(g, &[checked("five-is-two", "5", "2")]);
        let refusal = egraph.analysis.refusals().values().next().unwrap();
        assert_eq!(
            refusal.to_string(),
            "ill-shaped `2` on (): the term's value 2 differs from its class's 5"
        );
        assert_eq!(egraph[root].data.constant, Some("5".parse().unwrap()));
        assert!(egraph.analysis.conflicts().is_empty());
    }

    #[test]
    fn a_rhs_of_another_shape_than_its_class_does_not_fire() {
        // x·1 → x is wrong when the 1 broadcasts x to a larger shape.
        let mut g = graph(&[("x", &[3]), ("ones", &[2, 3])]);
        g.add_expr_checked(&"(* $x $ones)".parse().unwrap())
            .unwrap();
        let egraph = run(g, &[checked("drop-mul", "(* ?x ?y)", "?x")]);
        let refusal = egraph.analysis.refusals().values().next().unwrap();
        assert!(
            matches!(
                refusal,
                Refusal::IllShaped(ShapeError {
                    mismatch: Mismatch::NotTheClassType { .. },
                    ..
                })
            ),
            "{refusal}"
        );
        assert!(egraph.analysis.conflicts().is_empty());
    }
}
