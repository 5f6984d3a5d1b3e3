//! DAG-aware greedy extraction.
//!
//! Residual streams are DAGs: `x` feeds both the branch and the skip. A
//! tree-cost extractor (egg's `Extractor`) counts a shared sub-term once per
//! use and so prefers terms that duplicate work. [`DagExtractor`] chooses,
//! per e-class, the e-node minimising the cost of the *set* of e-nodes
//! reachable through its chosen children, so a shared sub-DAG is counted
//! once (the greedy DAG extractor of extraction-gym).
//!
//! The fixed point is a worklist: every e-node is evaluated once its
//! children have a choice; when a class's best cost strictly drops, its
//! parents are evaluated again. An e-node whose children's sets already
//! contain its own class would close a cycle and is skipped. Costs are
//! fixed per e-node and non-negative, so a class's cost is at least each
//! chosen child's, and strict improvement then never lets the choices form
//! a cycle. The number of evaluations is bounded (`max_passes` times the
//! number of e-nodes); a run that hits the bound still has valid, acyclic
//! choices and says so ([`DagExtractor::converged`]). Greedy choices are
//! not always optimal: a child's set is the one it had when chosen.
//!
//! Complexity: with `C` classes and `N` e-nodes, each evaluation is
//! O(k·N/64) for `k` children (sets are bit sets over e-nodes) and memory
//! is O(C·N/8) bytes, refused beyond [`SET_BUDGET_BYTES`]. Extraction from
//! the roots is linear in the result and iterative (no recursion).
//!
//! Errors: [`ExtractError`]: a root with no finite-cost term, an invalid
//! cost, an e-graph not rebuilt, or one too large for the budget.

use std::collections::{HashMap, VecDeque};

use egg::{Id, Language, RecExpr};

use crate::analysis::TensorEGraph;
use crate::cost::CostModel;
use crate::graph::is_id;
use crate::lang::TensorLang;

/// The most bytes of cost sets an extraction may hold (1 GiB).
pub const SET_BUDGET_BYTES: u128 = 1 << 30;

/// The default bound on evaluations, in evaluations per e-node.
pub const DEFAULT_MAX_PASSES: usize = 64;

/// Why extraction failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExtractError {
    /// Every term of the class uses a forbidden (infinite-cost) e-node.
    #[error("e-class {0} has no term of finite cost (every term uses a forbidden e-node)")]
    NoFiniteTerm(Id),
    /// An id that is not an e-class of the e-graph.
    #[error("{0} is not an e-class of this e-graph")]
    UnknownId(Id),
    /// The cost model gave a negative or NaN cost.
    #[error("the cost model gave {cost} for `{node}` (costs are ≥ 0, or +∞ to forbid)")]
    BadCost {
        /// The e-node's operator.
        node: String,
        /// The cost.
        cost: f64,
    },
    /// The e-graph has pending unions: rebuild it first.
    #[error("the e-graph is not rebuilt")]
    NotRebuilt,
    /// The cost sets would exceed [`SET_BUDGET_BYTES`].
    #[error("extraction needs {bytes} bytes of cost sets, over the {SET_BUDGET_BYTES}-byte budget")]
    TooLarge {
        /// The bytes needed.
        bytes: u128,
    },
    /// The choices form a cycle (a bug in the extractor).
    #[error("the choices form a cycle through e-class {0}")]
    Cycle(Id),
}

/// A class's current choice.
#[derive(Debug, Clone)]
struct Best {
    /// The chosen e-node's index within its class.
    node: usize,
    /// The cost of `set`.
    cost: f64,
    /// The e-nodes (global indices) of the chosen DAG, as of this choice.
    set: Vec<u64>,
}

/// An extracted term, the roots' positions in it, and each position's e-class.
pub type Extracted = (RecExpr<TensorLang>, Vec<Id>, Vec<Id>);

/// Per-class choices minimising DAG cost, computed once, extracted per root.
#[derive(Debug)]
pub struct DagExtractor<'a> {
    egraph: &'a TensorEGraph,
    /// Canonical class ids, sorted; a class's position is its index.
    classes: Vec<Id>,
    index: HashMap<Id, usize>,
    /// The global index of class `i`'s first e-node.
    offsets: Vec<usize>,
    /// The cost of each e-node, by global index.
    weights: Vec<f64>,
    best: Vec<Option<Best>>,
    converged: bool,
}

/// Whether bit `g` is set.
fn has(set: &[u64], g: usize) -> bool {
    set.get(g / 64).is_some_and(|w| w >> (g % 64) & 1 == 1)
}

/// The sum of `weights` over the set bits.
fn set_cost(set: &[u64], weights: &[f64]) -> f64 {
    let mut total = 0.0;
    for (i, &word) in set.iter().enumerate() {
        let mut w = word;
        while w != 0 {
            let bit = w.trailing_zeros() as usize;
            total += weights.get(i * 64 + bit).copied().unwrap_or(0.0);
            w &= w - 1;
        }
    }
    total
}

/// The bytes of cost sets an extraction of `egraph` holds: one bit set over
/// its e-nodes per class (refused beyond [`SET_BUDGET_BYTES`]). O(C).
#[must_use]
pub fn set_bytes(egraph: &TensorEGraph) -> u128 {
    let words = egraph.total_number_of_nodes().div_ceil(64);
    egraph.number_of_classes() as u128 * words as u128 * 8
}

impl<'a> DagExtractor<'a> {
    /// Computes the choices with the default bound on evaluations.
    ///
    /// # Errors
    /// [`ExtractError::NotRebuilt`], [`ExtractError::BadCost`],
    /// [`ExtractError::TooLarge`].
    pub fn new(egraph: &'a TensorEGraph, cost: &impl CostModel) -> Result<Self, ExtractError> {
        Self::with_max_passes(egraph, cost, DEFAULT_MAX_PASSES)
    }

    /// Computes the choices, evaluating at most `max_passes` times the
    /// number of e-nodes.
    ///
    /// # Errors
    /// As [`DagExtractor::new`].
    pub fn with_max_passes(
        egraph: &'a TensorEGraph,
        cost: &impl CostModel,
        max_passes: usize,
    ) -> Result<Self, ExtractError> {
        if !egraph.clean {
            return Err(ExtractError::NotRebuilt);
        }
        let mut classes: Vec<Id> = egraph.classes().map(|c| c.id).collect();
        classes.sort_unstable();
        let index: HashMap<Id, usize> = classes.iter().enumerate().map(|(i, &c)| (c, i)).collect();
        let mut offsets = Vec::with_capacity(classes.len());
        let mut weights = Vec::new();
        for &c in &classes {
            offsets.push(weights.len());
            for node in &egraph[c].nodes {
                let w = cost.node_cost(node, egraph);
                if w.is_nan() || w < 0.0 {
                    return Err(ExtractError::BadCost {
                        node: node.to_string(),
                        cost: w,
                    });
                }
                weights.push(w);
            }
        }
        let words = weights.len().div_ceil(64);
        let bytes = classes.len() as u128 * words as u128 * 8;
        if bytes > SET_BUDGET_BYTES {
            return Err(ExtractError::TooLarge { bytes });
        }
        let mut extractor = Self {
            egraph,
            classes,
            index,
            offsets,
            weights,
            best: Vec::new(),
            converged: false,
        };
        extractor.fixed_point(max_passes);
        Ok(extractor)
    }

    /// The index of the class of `id`.
    fn class_of(&self, id: Id) -> Option<usize> {
        self.index.get(&self.egraph.find(id)).copied()
    }

    fn nodes(&self, class: usize) -> &'a [TensorLang] {
        let egraph: &'a TensorEGraph = self.egraph;
        self.classes
            .get(class)
            .map_or(&[][..], |&c| egraph[c].nodes.as_slice())
    }

    /// The DAG cost set of e-node `local` of `class` from its children's
    /// current choices, or `None` when a child has no choice yet or the
    /// node would close a cycle.
    fn evaluate(&self, class: usize, local: usize) -> Option<(f64, Vec<u64>)> {
        let node = self.nodes(class).get(local)?;
        let g = self.offsets.get(class)? + local;
        let w = *self.weights.get(g)?;
        if w.is_infinite() {
            return None;
        }
        let words = self.weights.len().div_ceil(64);
        let mut set = vec![0u64; words];
        for &child in node.children() {
            let c = self.class_of(child)?;
            let best = self.best.get(c)?.as_ref()?;
            for (s, b) in set.iter_mut().zip(&best.set) {
                *s |= b;
            }
        }
        let start = *self.offsets.get(class)?;
        let own = self.nodes(class).len();
        if (start..start + own).any(|h| has(&set, h)) {
            return None;
        }
        let cost = w + set_cost(&set, &self.weights);
        if let Some(word) = set.get_mut(g / 64) {
            *word |= 1 << (g % 64);
        }
        Some((cost, set))
    }

    fn fixed_point(&mut self, max_passes: usize) {
        self.best = vec![None; self.classes.len()];
        // parents[c]: the e-nodes (class, local) with a child in class c.
        let mut parents: Vec<Vec<(usize, usize)>> = vec![Vec::new(); self.classes.len()];
        let mut queue = VecDeque::new();
        let mut queued = vec![false; self.weights.len()];
        for class in 0..self.classes.len() {
            for (local, node) in self.nodes(class).iter().enumerate() {
                for &child in node.children() {
                    if let Some(c) = self.class_of(child) {
                        parents[c].push((class, local));
                    }
                }
                let g = self.offsets[class] + local;
                if self.weights[g].is_finite() {
                    queue.push_back((class, local));
                    queued[g] = true;
                }
            }
        }
        let budget = max_passes.saturating_mul(self.weights.len().max(1));
        let mut evaluations = 0usize;
        while let Some((class, local)) = queue.pop_front() {
            if evaluations >= budget {
                return;
            }
            evaluations += 1;
            queued[self.offsets[class] + local] = false;
            let Some((cost, set)) = self.evaluate(class, local) else {
                continue;
            };
            let better = match &self.best[class] {
                None => true,
                Some(old) => old.cost - cost > 1e-12 * old.cost.abs().max(1.0),
            };
            if !better {
                continue;
            }
            self.best[class] = Some(Best {
                node: local,
                cost,
                set,
            });
            for &(p, l) in &parents[class] {
                let g = self.offsets[p] + l;
                if !queued[g] && self.weights[g].is_finite() {
                    queued[g] = true;
                    queue.push_back((p, l));
                }
            }
        }
        self.converged = true;
    }

    /// Whether the choices reached a fixed point within the bound.
    #[must_use]
    pub fn converged(&self) -> bool {
        self.converged
    }

    /// The DAG cost of the class's choice, as computed when it was chosen
    /// (`None`: no finite-cost term).
    #[must_use]
    pub fn best_cost(&self, id: Id) -> Option<f64> {
        let c = self.class_of(id)?;
        self.best.get(c)?.as_ref().map(|b| b.cost)
    }

    /// Every class's chosen e-node (classes without a finite term are left out).
    pub fn choices(&self) -> impl Iterator<Item = (Id, TensorLang)> + '_ {
        (0..self.classes.len()).filter_map(|c| Some((self.classes[c], self.choice(c)?.clone())))
    }

    /// The chosen e-node of a class.
    fn choice(&self, class: usize) -> Option<&'a TensorLang> {
        let best = self.best.get(class)?.as_ref()?;
        self.nodes(class).get(best.node)
    }

    /// Extracts one term holding every root, sharing common sub-DAGs; the
    /// returned ids are the roots' positions in it, in order.
    ///
    /// # Errors
    /// [`ExtractError::UnknownId`] for a root not of the e-graph,
    /// [`ExtractError::NoFiniteTerm`] for a root (or, defensively, a class
    /// under it) without a finite-cost term.
    pub fn extract_many(
        &self,
        roots: &[Id],
    ) -> Result<(RecExpr<TensorLang>, Vec<Id>), ExtractError> {
        self.extract_with_classes(roots)
            .map(|(expr, roots, _)| (expr, roots))
    }

    /// Like [`DagExtractor::extract_many`], also giving the (canonical)
    /// e-class of every node of the term, by position.
    ///
    /// # Errors
    /// As [`DagExtractor::extract_many`].
    pub fn extract_with_classes(
        &self,
        roots: &[Id],
    ) -> Result<crate::extract::Extracted, ExtractError> {
        let mut classes_of = Vec::new();
        let mut expr = RecExpr::default();
        let mut memo: Vec<Option<Id>> = vec![None; self.classes.len()];
        let mut on_path = vec![false; self.classes.len()];
        let mut out = Vec::with_capacity(roots.len());
        for &root in roots {
            if !is_id(self.egraph, root) {
                return Err(ExtractError::UnknownId(root));
            }
            let r = self.class_of(root).ok_or(ExtractError::UnknownId(root))?;
            let mut stack = vec![(r, false)];
            while let Some((c, expanded)) = stack.pop() {
                if memo[c].is_some() {
                    continue;
                }
                let id = self.classes[c];
                let node = self.choice(c).ok_or(ExtractError::NoFiniteTerm(id))?;
                if expanded {
                    let mut missing = None;
                    let built = node.clone().map_children(|ch| {
                        let m = self.class_of(ch).and_then(|k| memo[k]);
                        m.unwrap_or_else(|| {
                            missing = Some(ch);
                            Id::from(0)
                        })
                    });
                    if let Some(ch) = missing {
                        return Err(ExtractError::NoFiniteTerm(ch));
                    }
                    memo[c] = Some(expr.add(built));
                    classes_of.push(id);
                    on_path[c] = false;
                    continue;
                }
                on_path[c] = true;
                stack.push((c, true));
                for &ch in node.children() {
                    let k = self.class_of(ch).ok_or(ExtractError::UnknownId(ch))?;
                    if memo[k].is_none() {
                        if on_path[k] {
                            return Err(ExtractError::Cycle(self.classes[k]));
                        }
                        stack.push((k, false));
                    }
                }
            }
            out.push(memo[r].ok_or(ExtractError::NoFiniteTerm(root))?);
        }
        Ok((expr, out, classes_of))
    }

    /// Extracts the term of one root (the last node of the result).
    ///
    /// # Errors
    /// As [`DagExtractor::extract_many`].
    pub fn extract(&self, root: Id) -> Result<RecExpr<TensorLang>, ExtractError> {
        self.extract_many(&[root]).map(|(expr, _)| expr)
    }

    /// The DAG cost of what [`DagExtractor::extract_many`] extracts for
    /// `roots`: each chosen e-node counted once.
    ///
    /// # Errors
    /// As [`DagExtractor::extract_many`].
    pub fn dag_cost(&self, roots: &[Id]) -> Result<f64, ExtractError> {
        let (expr, _) = self.extract_many(roots)?;
        // Each node of the extracted term is a distinct (class, choice).
        let mut seen = vec![false; self.classes.len()];
        let mut total = 0.0;
        let mut stack: Vec<usize> = roots.iter().filter_map(|&r| self.class_of(r)).collect();
        while let Some(c) = stack.pop() {
            if std::mem::replace(&mut seen[c], true) {
                continue;
            }
            let best = self.best[c]
                .as_ref()
                .ok_or(ExtractError::NoFiniteTerm(self.classes[c]))?;
            total += self.weights[self.offsets[c] + best.node];
            if let Some(node) = self.choice(c) {
                stack.extend(node.children().iter().filter_map(|&ch| self.class_of(ch)));
            }
        }
        debug_assert_eq!(seen.iter().filter(|&&s| s).count(), expr.len());
        Ok(total)
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // the costs compared are small integers, exact in f64
mod tests {
    use super::*;
    use crate::cost::AugmentCost;
    use crate::graph::TensorGraph;
    use crate::testing::{add, expr};
    use egg::{AstSize, Extractor};

    /// Every e-node costs 1, like egg's `AstSize`.
    struct Unit;

    impl CostModel for Unit {
        fn node_cost(&self, _: &TensorLang, _: &TensorEGraph) -> f64 {
            1.0
        }
    }

    /// Two terms made equal, the e-graph rebuilt; returns the class.
    fn equal(terms: &[&str]) -> (TensorEGraph, Id) {
        let mut g = TensorGraph::new();
        let ids: Vec<Id> = terms.iter().map(|t| add(&mut g, t)).collect();
        let mut egraph = g.into_egraph();
        for &id in &ids[1..] {
            egraph.union(ids[0], id);
        }
        egraph.rebuild();
        let root = egraph.find(ids[0]);
        (egraph, root)
    }

    #[test]
    fn sharing_is_counted_once_where_tree_cost_counts_it_twice() {
        // s = σσσ(a) is used twice: tree size 9, DAG size 5.
        let shared = "(+ (sigmoid (sigmoid (sigmoid $a))) (sigmoid (sigmoid (sigmoid $a))))";
        // Tree size 8 ($b twice), DAG size 7.
        let unshared = "(* $b (sigmoid (sigmoid (sigmoid (sigmoid (sigmoid $b))))))";
        let (egraph, root) = equal(&[shared, unshared]);

        let (tree_cost, tree_pick) = Extractor::new(&egraph, AstSize).find_best(root);
        assert_eq!(tree_cost, 8);
        assert_eq!(
            tree_pick.to_string(),
            unshared,
            "tree cost duplicates the shared term"
        );

        let dag = DagExtractor::new(&egraph, &Unit).unwrap();
        let pick = dag.extract(root).unwrap();
        assert_eq!(pick.to_string(), shared);
        assert_eq!(pick.len(), 5, "the shared sub-term is extracted once");
        assert_eq!(dag.best_cost(root), Some(5.0));
        assert_eq!(dag.dag_cost(&[root]).unwrap(), 5.0);
        assert!(dag.converged());
    }

    #[test]
    fn a_forbidden_node_is_never_extracted_when_an_alternative_exists() {
        // resadd is the smallest term, but forbidden.
        let (egraph, root) = equal(&["(resadd $x $f)", "(+ (* 1 $x) (* 1 $f))"]);
        let dag = DagExtractor::new(&egraph, &AugmentCost).unwrap();
        assert_eq!(
            dag.extract(root).unwrap().to_string(),
            "(+ (* 1 $x) (* 1 $f))"
        );
    }

    #[test]
    fn a_class_of_only_forbidden_nodes_is_an_error() {
        let mut g = TensorGraph::new();
        let root = add(&mut g, "(sigmoid (resadd $x $f))");
        let resadd = add(&mut g, "(resadd $x $f)");
        let egraph = g.into_egraph();
        let dag = DagExtractor::new(&egraph, &AugmentCost).unwrap();
        assert_eq!(dag.extract(resadd), Err(ExtractError::NoFiniteTerm(resadd)));
        assert_eq!(dag.extract(root), Err(ExtractError::NoFiniteTerm(root)));
        assert_eq!(dag.best_cost(root), None);
        let x = egraph.lookup_expr(&expr("$x")).unwrap();
        assert_eq!(
            dag.extract(x).unwrap().to_string(),
            "$x",
            "other classes still extract"
        );
    }

    #[test]
    fn several_roots_share_their_common_part() {
        let mut g = TensorGraph::new();
        let r1 = add(&mut g, "(+ (matmul $x $w) $b)");
        let r2 = add(&mut g, "(sigmoid (matmul $x $w))");
        let egraph = g.into_egraph();
        let dag = DagExtractor::new(&egraph, &Unit).unwrap();
        let (term, roots) = dag.extract_many(&[r1, r2]).unwrap();
        assert_eq!(term.len(), 6, "$x $w matmul $b + sigmoid");
        assert_eq!(term[roots[0]].to_string(), "+");
        assert_eq!(term[roots[1]].to_string(), "sigmoid");
        assert_eq!(dag.dag_cost(&[r1, r2]).unwrap(), 6.0);
        assert_eq!(
            dag.extract_many(&[Id::from(10_000)]),
            Err(ExtractError::UnknownId(Id::from(10_000)))
        );
    }

    #[test]
    fn a_deep_residual_chain_extracts_without_recursion() {
        // x_{i+1} = σ(x_i) + x_i, 1000 times: a DAG of 3001 nodes whose tree
        // would have 2^1000.
        let mut g = TensorGraph::new();
        let mut x = add(&mut g, "$x0");
        for _ in 0..1000 {
            let s = g.add_checked(TensorLang::Sigmoid(x)).unwrap();
            x = g.add_checked(TensorLang::Add([s, x])).unwrap();
        }
        let egraph = g.into_egraph();
        let dag = DagExtractor::new(&egraph, &Unit).unwrap();
        assert_eq!(dag.extract(x).unwrap().len(), 2001);
        assert_eq!(dag.best_cost(x), Some(2001.0));
    }

    #[test]
    fn invalid_costs_and_unrebuilt_egraphs_are_errors() {
        struct Nan;
        impl CostModel for Nan {
            fn node_cost(&self, _: &TensorLang, _: &TensorEGraph) -> f64 {
                f64::NAN
            }
        }
        let mut egraph = TensorGraph::new().into_egraph();
        let a = egraph.add_expr(&expr("$a"));
        let b = egraph.add_expr(&expr("$b"));
        egraph.union(a, b);
        assert_eq!(
            DagExtractor::new(&egraph, &Unit).err(),
            Some(ExtractError::NotRebuilt)
        );
        egraph.rebuild();
        assert!(matches!(
            DagExtractor::new(&egraph, &Nan),
            Err(ExtractError::BadCost { .. })
        ));
    }
}
