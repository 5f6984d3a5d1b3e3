//! Rules that read a class's e-nodes themselves.
//!
//! A rule over generic ONNX ops cannot be an egg pattern: it matches any
//! `Onnx` e-node whose declared [`OpSemantics`] allows the rewrite, and
//! builds a right-hand side with that node's `OpRef` and children. A
//! [`ClassRule`] is a named function from an e-class to the right-hand sides
//! ([`Rhs`]) it equals; it is its own searcher (a class matches when the
//! function finds something) and applier (each right-hand side goes through
//! the shape check, a refusal is recorded).
//!
//! Helpers shared by the fusion rules: [`scalar`] (the constant of a class),
//! [`scaled_forms`] (the `c·x` e-nodes of a class), [`sum_terms_of`] (a
//! sum's terms, flattened).
//!
//! Complexity: a search is linear in the class's e-nodes and their
//! children's e-nodes; an application recomputes the same.

use std::borrow::Cow;

use egg::{Applier, Id, PatternAst, Rewrite, SearchMatches, Searcher, Subst, Symbol, Var};

use super::{RuleError, TensorRewrite};
use crate::analysis::{TensorAnalysis, TensorEGraph};
use crate::checked::Rhs;
use crate::lang::{OpRef, Scalar, TensorLang};
use crate::semantics::OpSemantics;

/// The function of a [`ClassRule`]: the right-hand sides the class equals.
pub type FindFn = fn(&TensorEGraph, Id) -> Vec<Rhs>;

/// A rule computing its right-hand sides from a class's e-nodes.
#[derive(Clone, Copy)]
pub struct ClassRule {
    /// The rule's name.
    pub name: &'static str,
    /// What the class equals.
    pub find: FindFn,
}

impl std::fmt::Debug for ClassRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClassRule({})", self.name)
    }
}

impl ClassRule {
    /// The rule as an egg rewrite.
    ///
    /// # Errors
    /// [`RuleError`] if egg refuses it (a bug).
    pub fn rewrite(self) -> Result<TensorRewrite, RuleError> {
        Rewrite::new(self.name, self, self).map_err(|e| RuleError::new(self.name, &e))
    }
}

impl Searcher<TensorLang, TensorAnalysis> for ClassRule {
    fn search_eclass_with_limit(
        &self,
        egraph: &TensorEGraph,
        eclass: Id,
        limit: usize,
    ) -> Option<SearchMatches<'_, TensorLang>> {
        (limit > 0 && !(self.find)(egraph, eclass).is_empty()).then(|| SearchMatches {
            eclass,
            substs: vec![Subst::default()],
            ast: None::<Cow<'_, PatternAst<TensorLang>>>,
        })
    }

    fn vars(&self) -> Vec<Var> {
        Vec::new()
    }
}

impl Applier<TensorLang, TensorAnalysis> for ClassRule {
    fn apply_one(
        &self,
        egraph: &mut TensorEGraph,
        eclass: Id,
        _subst: &Subst,
        _searcher_ast: Option<&PatternAst<TensorLang>>,
        rule_name: Symbol,
    ) -> Vec<Id> {
        let eclass = egraph.find(eclass);
        let mut changed = false;
        for rhs in (self.find)(egraph, eclass) {
            changed |= rhs.apply(egraph, eclass, rule_name.as_str());
        }
        if changed { vec![eclass] } else { vec![] }
    }
}

/// The constant of `id`'s class, when it is a known scalar.
#[must_use]
pub fn scalar(egraph: &TensorEGraph, id: Id) -> Option<&Scalar> {
    egraph[id].data.constant.as_ref()
}

/// The `c·x` forms of `id`'s class: each `(* c x)` e-node with `c` a known
/// scalar other than 1 and `x` not a scalar, deduplicated.
#[must_use]
pub fn scaled_forms(egraph: &TensorEGraph, id: Id) -> Vec<(Scalar, Id)> {
    let mut forms: Vec<(Scalar, Id)> = Vec::new();
    for node in &egraph[id].nodes {
        if let TensorLang::Mul([c, x]) = node
            && let Some(c) = scalar(egraph, *c)
            && scalar(egraph, *x).is_none()
            && !c.is_one()
        {
            let x = egraph.find(*x);
            if !forms.iter().any(|(d, y)| d == c && *y == x) {
                forms.push((c.clone(), x));
            }
        }
    }
    forms
}

/// Whether `c` may move through an op that is homogeneous for positive
/// factors only (`positive_only`) or for all non-zero ones.
#[must_use]
pub fn allowed(c: &Scalar, positive_only: bool) -> bool {
    if positive_only {
        c.is_positive()
    } else {
        !c.is_zero()
    }
}

/// The generic op e-nodes of `id`'s class with their declared semantics.
#[must_use]
pub fn onnx_nodes(egraph: &TensorEGraph, id: Id) -> Vec<(OpRef, Vec<Id>, &OpSemantics)> {
    egraph[id]
        .nodes
        .iter()
        .filter_map(|n| match n {
            TensorLang::Onnx(op, children) => egraph
                .analysis
                .semantics(op)
                .map(|s| (*op, children.clone(), s)),
            _ => None,
        })
        .collect()
}

/// `(Onnx op children)` with each child a class or a node already in `rhs`.
pub fn onnx_node(rhs: &mut Rhs, op: OpRef, children: &[Child]) -> Id {
    let ids: Vec<Id> = children
        .iter()
        .map(|c| match *c {
            Child::Class(id) => rhs.class(id),
            Child::Built(id) => id,
        })
        .collect();
    rhs.node(TensorLang::Onnx(op, ids))
}

/// `children` as right-hand side children, each `(j, child)` of `replaced`
/// in place of child `j`. O(children · replaced).
#[must_use]
pub fn children_with(children: &[Id], replaced: &[(usize, Child)]) -> Vec<Child> {
    children
        .iter()
        .enumerate()
        .map(|(j, &k)| {
            replaced
                .iter()
                .find(|(i, _)| *i == j)
                .map_or(Child::Class(k), |&(_, c)| c)
        })
        .collect()
}

/// A child of a right-hand side node: an existing class or a built node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Child {
    /// An existing e-class.
    Class(Id),
    /// A node already added to the right-hand side.
    Built(Id),
}

/// `(* c x)` in `rhs`, with `x` built.
pub fn times(rhs: &mut Rhs, c: &Scalar, x: Id) -> Id {
    let c = rhs.node(TensorLang::Num(c.clone()));
    rhs.node(TensorLang::Mul([c, x]))
}

/// `(* c class)` in `rhs`.
pub fn times_class(rhs: &mut Rhs, c: &Scalar, class: Id) -> Id {
    let x = rhs.class(class);
    times(rhs, c, x)
}

/// The first `+` e-node of a class whose operands are not both constants.
#[must_use]
pub fn sum_node(egraph: &TensorEGraph, id: Id) -> Option<[Id; 2]> {
    egraph[id].nodes.iter().find_map(|n| match n {
        TensorLang::Add([a, b]) if scalar(egraph, *a).is_none() || scalar(egraph, *b).is_none() => {
            Some([*a, *b])
        }
        _ => None,
    })
}

/// `(c, t)` when every e-node of the class is `c·t` for one known scalar
/// `c` and one non-constant `t`.
fn scaled_only(egraph: &TensorEGraph, id: Id) -> Option<(Scalar, Id)> {
    let mut found: Option<(Scalar, Id)> = None;
    for n in &egraph[id].nodes {
        let TensorLang::Mul([p, q]) = n else {
            return None;
        };
        let (c, t) = match (scalar(egraph, *p), scalar(egraph, *q)) {
            (Some(c), None) => (c.clone(), egraph.find(*q)),
            (None, Some(c)) => (c.clone(), egraph.find(*p)),
            _ => return None,
        };
        if found.as_ref().is_none_or(|f| f.0 == c && f.1 == t) {
            found = Some((c, t));
        } else {
            return None;
        }
    }
    found
}

/// The terms of the sum rooted at `id`, coefficients multiplied by `scale`;
/// `false` when there are more than `max` or the tree is deeper than `max`
/// levels.
fn collect(
    egraph: &TensorEGraph,
    id: Id,
    scale: &Scalar,
    (depth, max): (usize, usize),
    out: &mut Vec<(Scalar, Id)>,
) -> bool {
    if out.len() > max || depth > max {
        return false;
    }
    let id = egraph.find(id);
    // Along the recorded extraction where there is one, else by the class's
    // own forms.
    let (sum, scaled) = match egraph.analysis.chosen(id) {
        Some(TensorLang::Add([a, b]))
            if scalar(egraph, *a).is_none() || scalar(egraph, *b).is_none() =>
        {
            (Some([*a, *b]), None)
        }
        Some(TensorLang::Mul([p, q])) => match (scalar(egraph, *p), scalar(egraph, *q)) {
            (Some(c), None) => (None, Some((c.clone(), *q))),
            (None, Some(c)) => (None, Some((c.clone(), *p))),
            _ => (None, None),
        },
        Some(_) => (None, None),
        None => match sum_node(egraph, id) {
            Some(pair) => (Some(pair), None),
            None => (None, scaled_only(egraph, id)),
        },
    };
    if let Some([a, b]) = sum {
        return collect(egraph, a, scale, (depth + 1, max), out)
            && collect(egraph, b, scale, (depth + 1, max), out);
    }
    if let Some((c, t)) = scaled {
        return collect(egraph, t, &(&c * scale), (depth + 1, max), out);
    }
    if let Some(term) = out.iter_mut().find(|(_, u)| *u == id) {
        term.0 = &term.0 + scale;
    } else {
        out.push((scale.clone(), id));
    }
    true
}

/// The terms `(cᵢ, tᵢ)` of the sum `a + b` (one `+` e-node of a class:
/// `Σ cᵢ·tᵢ`), flattened through
/// classes that are sums and classes that are scaled terms: by the recorded
/// extraction choice of each class ([`TensorAnalysis::record_choices`])
/// where there is one, else by the class's first `+` e-node, or its only
/// form `c·t`; equal terms combine, zero terms drop. `None` when there
/// are more than `max` terms.
#[must_use]
pub fn sum_terms_of(
    egraph: &TensorEGraph,
    [a, b]: [Id; 2],
    max: usize,
) -> Option<Vec<(Scalar, Id)>> {
    let one = Scalar::from_integer(1);
    let mut terms = Vec::new();
    let complete = collect(egraph, a, &one, (1, max), &mut terms)
        && collect(egraph, b, &one, (1, max), &mut terms);
    if !complete || terms.len() > max {
        return None;
    }
    terms.retain(|(c, _)| !c.is_zero());
    Some(terms)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;

    use egg::{Id, RecExpr, Runner};

    use super::ClassRule;
    use crate::analysis::TensorEGraph;
    use crate::graph::TensorGraph;
    use crate::lang::{OpRef, TensorLang, ValueRef};
    use crate::semantics::ChannelMap;
    use crate::shape::Shape;
    use crate::testing::eval::{Rng, eval};
    use crate::testing::{add, expr, f32, graph, op};

    /// Runs `rule` once on `lhs` over `values` (weights: names starting with
    /// `w`), with `ops` declared channel maps.
    pub fn run_class_rule_with(
        rule: ClassRule,
        values: &[(&str, Shape)],
        ops: &[(&str, ChannelMap, Shape)],
        lhs: &str,
    ) -> (TensorEGraph, Id) {
        let (egraph, roots) = run_class_rule_on(rule, values, ops, &[lhs]);
        (egraph, roots[0])
    }

    /// [`run_class_rule_with`] on several terms at once (rules that read
    /// more than one class, such as maps of one input).
    pub fn run_class_rule_on(
        rule: ClassRule,
        values: &[(&str, Shape)],
        ops: &[(&str, ChannelMap, Shape)],
        terms: &[&str],
    ) -> (TensorEGraph, Vec<Id>) {
        run_declared(rule, values, terms, |g| {
            for (text, map, shape) in ops {
                g.declare(op(text), f32(shape.clone())).unwrap();
                g.declare_channel_map(text.parse::<OpRef>().unwrap(), *map);
            }
        })
    }

    /// Runs `rule` once on `terms` over `values` (weights: names starting
    /// with `w`), after `declare` declared the generic ops.
    fn run_declared(
        rule: ClassRule,
        values: &[(&str, Shape)],
        terms: &[&str],
        declare: impl FnOnce(&mut TensorGraph),
    ) -> (TensorEGraph, Vec<Id>) {
        let mut g = graph(values);
        for (name, _) in values {
            if name.starts_with('w') {
                g.declare_weight(ValueRef::new(name).unwrap()).unwrap();
            }
        }
        declare(&mut g);
        let roots = terms.iter().map(|t| add(&mut g, t)).collect();
        let runner = Runner::default()
            .with_egraph(g.into_egraph())
            .with_iter_limit(1)
            .run(&[rule.rewrite().unwrap()]);
        assert!(runner.egraph.analysis.refusals().is_empty());
        (runner.egraph, roots)
    }

    /// Whether `rhs` joined the root's class.
    pub fn holds(egraph: &TensorEGraph, root: Id, rhs: &str) -> bool {
        egraph.lookup_expr(&expr(rhs)) == Some(egraph.find(root))
    }

    /// `lhs` and `rhs` agree on random tensors (values by their names and shapes).
    pub fn numerically_equal(values: &[(&str, Shape)], lhs: &str, rhs: &str) {
        for seed in 0..3 {
            let mut rng = Rng(seed + 5);
            let env: HashMap<String, _> = values
                .iter()
                .map(|(n, s)| {
                    let dims: Vec<usize> = s
                        .iter()
                        .map(|d| match d {
                            crate::shape::Dim::Fixed(n) => usize::try_from(*n).unwrap(),
                            crate::shape::Dim::Sym(_) => 1,
                        })
                        .collect();
                    let mut t = rng.tensor(&dims);
                    // Positive values where a square root or reciprocal reads them.
                    if n.starts_with('p') {
                        t.data.iter_mut().for_each(|x| *x = x.abs() + 0.5);
                    }
                    (format!("${n}"), t)
                })
                .collect();
            let (l, r): (RecExpr<TensorLang>, RecExpr<TensorLang>) = (expr(lhs), expr(rhs));
            let (l, r) = (eval(&l, &env, 1), eval(&r, &env, 1));
            assert_eq!(l.shape, r.shape);
            for (p, q) in l.data.iter().zip(&r.data) {
                assert!(
                    (p - q).abs() <= 1e-9 * p.abs().max(1.0),
                    "{lhs}: {p} vs {q}"
                );
            }
        }
    }
}
