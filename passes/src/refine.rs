//! Local search over extraction choices: the DAG cost, counted exactly.
//!
//! The greedy DAG extractor ([`crate::extract`]) chooses per class, so it
//! cannot see that a value other roots need anyway is free for one more
//! consumer: with `f` a graph output, `α·f` as `Mul(α, f)` costs one
//! elementwise op, while the greedy choice, a second convolution with `α·W`,
//! looks cheaper in isolation. [`Choices::refine`] fixes such choices: it
//! tries every alternative e-node of every class in the extracted DAG and
//! keeps a switch when the whole DAG's cost (each class counted once)
//! strictly drops and no cycle appears, until no switch helps or the pass
//! budget is spent. Where an alternative is a `slice` of a value the DAG
//! does not compute yet, it also tries the group move that switches every
//! class of the DAG able to read that value (two maps merged into one: each
//! slice alone costs more, together less). Once single and group switches
//! stop helping, one sweep tries *completed* moves: the switch with the
//! classes it newly needs re-chosen for what they add to the current DAG
//! ([`COMPLETION_DEPTH`] classes down), since their greedy choices, made in
//! isolation, may compute again in another form a value the DAG already
//! has; at most [`MAX_COMPLETED_MOVES`] per sweep. Starting it from both the
//! greedy choice and the input's own e-nodes, and keeping the cheaper,
//! makes fusion never worse than its input under the cost model.
//!
//! Complexity: per pass, O(R · A · R) for R classes in the DAG and A
//! alternatives per class; a completing sweep adds O(E) for the E e-nodes
//! it looks at, and O(R) per evaluated move. Errors: [`ExtractError`].

use std::collections::{HashMap, HashSet};

use egg::{Id, Language, RecExpr};

use crate::analysis::TensorEGraph;
use crate::cost::CostModel;
use crate::extract::ExtractError;
use crate::lang::TensorLang;

/// The most completed moves one sweep of [`Choices::refine`] evaluates
/// (each costs a walk over the whole DAG).
pub const MAX_COMPLETED_MOVES: usize = 8;

/// How many classes down [`Choices::refine`]'s completed moves look.
pub const COMPLETION_DEPTH: usize = 6;

/// [`marginal`]'s results for one sweep: per class, its least added cost
/// and e-node.
type Memo = HashMap<Id, Option<(f64, usize)>>;

/// The least cost `class` adds to a DAG holding `in_dag`, with the e-node
/// that gives it: the e-node's own cost plus, for each child class outside
/// the DAG, its own least added cost (a tree estimate: a class needed twice
/// is counted twice). `None` beyond `depth` or on a cycle (`path`).
/// Memoised per class for a sweep, whatever the depth and path it was
/// first computed at: a class first reached near the depth limit (or on a
/// cycle) keeps that shorter look-ahead for the sweep. A heuristic, chosen
/// for speed (keyed by depth too, the 200-block chain took 0.6 s more and
/// found no better moves): it may miss a move, never makes a wrong one,
/// since every move is costed exactly before it is kept.
fn marginal(
    egraph: &TensorEGraph,
    cost: &impl CostModel,
    in_dag: &HashSet<Id>,
    class: Id,
    depth: usize,
    memo: &mut Memo,
    path: &mut Vec<Id>,
) -> Option<(f64, usize)> {
    if let Some(m) = memo.get(&class) {
        return *m;
    }
    if depth == 0 || path.contains(&class) {
        return None;
    }
    path.push(class);
    let mut best: Option<(f64, usize)> = None;
    for (i, node) in egraph[class].nodes.iter().enumerate() {
        let mut total = cost.node_cost(node, egraph);
        for &ch in node.children() {
            let ch = egraph.find(ch);
            if !total.is_finite() {
                break;
            }
            if in_dag.contains(&ch) {
                continue;
            }
            total += marginal(egraph, cost, in_dag, ch, depth - 1, memo, path)
                .map_or(f64::INFINITY, |(c, _)| c);
        }
        if total.is_finite() && best.is_none_or(|(b, _)| total < b) {
            best = Some((total, i));
        }
    }
    path.pop();
    memo.insert(class, best);
    best
}

/// A choice of one e-node per class (by position in the class), for the
/// classes an extraction needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choices {
    chosen: HashMap<Id, usize>,
}

impl Choices {
    /// Choices from chosen e-nodes (each looked up in its class).
    #[must_use]
    pub fn from_nodes(
        egraph: &TensorEGraph,
        nodes: impl IntoIterator<Item = (Id, TensorLang)>,
    ) -> Self {
        let mut chosen = HashMap::new();
        for (class, node) in nodes {
            let class = egraph.find(class);
            let node = node.map_children(|c| egraph.find(c));
            if let Some(i) = egraph[class].nodes.iter().position(|n| *n == node) {
                chosen.insert(class, i);
            }
        }
        Self { chosen }
    }

    /// The chosen e-node of `class`.
    fn node<'e>(&self, egraph: &'e TensorEGraph, class: Id) -> Option<&'e TensorLang> {
        let c = egraph.find(class);
        egraph[c].nodes.get(*self.chosen.get(&c)?)
    }

    /// The classes reachable from `roots`, children first; `None` on a
    /// cycle or a class without a choice.
    fn reachable(&self, egraph: &TensorEGraph, roots: &[Id]) -> Option<Vec<Id>> {
        let mut order = Vec::new();
        let mut done: HashSet<Id> = HashSet::new();
        let mut on_path: HashSet<Id> = HashSet::new();
        let mut stack: Vec<(Id, bool)> = roots.iter().map(|&r| (egraph.find(r), false)).collect();
        while let Some((c, expanded)) = stack.pop() {
            if expanded {
                on_path.remove(&c);
                if done.insert(c) {
                    order.push(c);
                }
                continue;
            }
            if done.contains(&c) {
                continue;
            }
            if !on_path.insert(c) {
                return None;
            }
            stack.push((c, true));
            for &ch in self.node(egraph, c)?.children() {
                let ch = egraph.find(ch);
                if on_path.contains(&ch) {
                    return None;
                }
                if !done.contains(&ch) {
                    stack.push((ch, false));
                }
            }
        }
        Some(order)
    }

    /// The DAG cost of the choices for `roots` (`None`: a cycle, a missing
    /// choice or a forbidden node).
    pub fn cost(&self, egraph: &TensorEGraph, cost: &impl CostModel, roots: &[Id]) -> Option<f64> {
        let mut total = 0.0;
        for c in self.reachable(egraph, roots)? {
            let w = cost.node_cost(self.node(egraph, c)?, egraph);
            if !w.is_finite() {
                return None;
            }
            total += w;
        }
        Some(total)
    }

    /// Switches choices while the DAG cost strictly drops, at most
    /// `2 · passes` times over the DAG (sweeps of single and shared switches,
    /// and, once those stop helping, a sweep that also tries completed
    /// moves). Returns the final cost.
    pub fn refine(
        &mut self,
        egraph: &TensorEGraph,
        cost: &impl CostModel,
        roots: &[Id],
        passes: usize,
    ) -> Option<f64> {
        let mut best = self.cost(egraph, cost, roots)?;
        // Completed moves cost a search each: they are tried in a sweep of
        // their own once single switches stop helping (a sweep that finds
        // one goes back to single switches).
        let mut completing = false;
        for _ in 0..passes.saturating_mul(2) {
            let mut improved = false;
            let classes = self.reachable(egraph, roots)?;
            let in_dag: HashSet<Id> = classes.iter().copied().collect();
            // What a class would add to this pass's DAG (see `marginal`).
            let mut memo = Memo::new();
            let mut completed = 0;
            for c in classes.into_iter().rev() {
                let Some(&current) = self.chosen.get(&c) else {
                    continue;
                };
                for alt in 0..egraph[c].nodes.len() {
                    if alt == current {
                        continue;
                    }
                    // Every child needs a choice; give unchosen ones their cheapest leaf-free node lazily.
                    let node = &egraph[c].nodes[alt];
                    if node
                        .children()
                        .iter()
                        .any(|ch| !self.chosen.contains_key(&egraph.find(*ch)))
                    {
                        continue;
                    }
                    // The switch alone, then with the other classes of the
                    // DAG that can read the same new value. A completing
                    // sweep follows a sweep that changed nothing, where
                    // those would fail again: it tries completed moves, at
                    // most `MAX_COMPLETED_MOVES` of them.
                    let mut moves = Vec::new();
                    if !completing {
                        moves.push(vec![(c, alt)]);
                        moves.extend(Self::shared_moves(egraph, &in_dag, c, node));
                    } else if completed < MAX_COMPLETED_MOVES
                        && let Some(group) =
                            self.completed_move(egraph, cost, &in_dag, c, alt, &mut memo)
                    {
                        completed += 1;
                        moves.push(group);
                    }
                    if let Some(t) = self.try_moves(egraph, cost, roots, best, &moves) {
                        best = t;
                        improved = true;
                        break;
                    }
                }
                // The DAG changed: the sweep's view of it (and `memo`) is stale.
                if improved && completing {
                    break;
                }
            }
            if improved {
                completing = false;
            } else if completing {
                break;
            } else {
                completing = true;
            }
        }
        Some(best)
    }

    /// Group moves for `node` (an alternative of `class`, a `slice`): for
    /// each child of `node` not in the DAG yet, `node` together with, in
    /// every other class of the DAG, an alternative that reads that child
    /// too. Two values computed by one new op (a merged map and its slices)
    /// are cheaper only together, which single switches cannot find.
    fn shared_moves(
        egraph: &TensorEGraph,
        in_dag: &HashSet<Id>,
        class: Id,
        node: &TensorLang,
    ) -> Vec<Vec<(Id, usize)>> {
        let mut out = Vec::new();
        // Only the slices of a merged map need it; trying every alternative
        // with a new child doubled the extraction time of deep chains.
        if !matches!(node, TensorLang::Slice(_)) {
            return out;
        }
        let alt = egraph[class].nodes.iter().position(|n| n == node);
        let Some(alt) = alt else {
            return out;
        };
        for &child in node.children() {
            let d = egraph.find(child);
            if in_dag.contains(&d) {
                continue;
            }
            let mut group = vec![(class, alt)];
            for p in egraph[d].parents() {
                let other = egraph.find(p);
                if other == class
                    || !in_dag.contains(&other)
                    || group.iter().any(|(g, _)| *g == other)
                {
                    continue;
                }
                let reads = |n: &TensorLang| n.children().iter().any(|&x| egraph.find(x) == d);
                if let Some(i) = egraph[other].nodes.iter().position(reads) {
                    group.push((other, i));
                }
            }
            if group.len() > 1 {
                out.push(group);
            }
        }
        out
    }

    /// The switch of `class` to its e-node `alt` with the classes it newly
    /// needs re-chosen for what they add to the DAG: each takes the e-node
    /// whose own cost plus that of the classes it needs outside the DAG is
    /// least (looking at most [`COMPLETION_DEPTH`] classes down). The
    /// greedy choice of such a class may compute again, in another form,
    /// what the DAG already has (`(1+c)·r` as `k·(f + c'·x)` when `r = f + x`
    /// is in the DAG). `None` when `alt` needs nothing new, or nothing
    /// re-chosen.
    fn completed_move(
        &self,
        egraph: &TensorEGraph,
        cost: &impl CostModel,
        in_dag: &HashSet<Id>,
        class: Id,
        alt: usize,
        memo: &mut Memo,
    ) -> Option<Vec<(Id, usize)>> {
        let node = egraph[class].nodes.get(alt)?;
        let new: Vec<Id> = node
            .children()
            .iter()
            .map(|&ch| egraph.find(ch))
            .filter(|ch| !in_dag.contains(ch))
            .collect();
        if new.is_empty() {
            return None;
        }
        let mut group = vec![(class, alt)];
        let mut stack = new;
        let mut seen: HashSet<Id> = HashSet::from([class]);
        let mut changed = false;
        while let Some(c) = stack.pop() {
            if in_dag.contains(&c) || !seen.insert(c) {
                continue;
            }
            let (_, best) = marginal(
                egraph,
                cost,
                in_dag,
                c,
                COMPLETION_DEPTH,
                memo,
                &mut Vec::new(),
            )?;
            changed |= self.chosen.get(&c) != Some(&best);
            group.push((c, best));
            stack.extend(
                egraph[c].nodes[best]
                    .children()
                    .iter()
                    .map(|&ch| egraph.find(ch)),
            );
        }
        // Unchanged choices make it the single switch, tried already; and
        // the single switch failed, so the completion must add less than
        // the current choices of the same classes would.
        let added: f64 = group[1..]
            .iter()
            .map(|&(c, i)| cost.node_cost(&egraph[c].nodes[i], egraph))
            .sum();
        let now = self.added_cost(egraph, cost, in_dag, class, node);
        (changed && added < now - 1e-9 * now.abs().max(1.0)).then_some(group)
    }

    /// What `node` (an alternative of `class`) adds to the DAG with the
    /// current choices: the cost of the classes it reaches that the DAG does
    /// not hold, each once (infinite when one has no choice).
    fn added_cost(
        &self,
        egraph: &TensorEGraph,
        cost: &impl CostModel,
        in_dag: &HashSet<Id>,
        class: Id,
        node: &TensorLang,
    ) -> f64 {
        let mut seen: HashSet<Id> = HashSet::from([class]);
        let mut stack: Vec<Id> = node.children().iter().map(|&ch| egraph.find(ch)).collect();
        let mut total = 0.0;
        while let Some(c) = stack.pop() {
            if in_dag.contains(&c) || !seen.insert(c) {
                continue;
            }
            let Some(n) = self.node(egraph, c) else {
                return f64::INFINITY;
            };
            total += cost.node_cost(n, egraph);
            stack.extend(n.children().iter().map(|&ch| egraph.find(ch)));
        }
        total
    }

    /// Applies the first of `moves` (each a set of switches) that makes the
    /// DAG strictly cheaper than `best`; returns its cost, or restores the
    /// choices and returns `None`.
    fn try_moves(
        &mut self,
        egraph: &TensorEGraph,
        cost: &impl CostModel,
        roots: &[Id],
        best: f64,
        moves: &[Vec<(Id, usize)>],
    ) -> Option<f64> {
        for group in moves {
            let old: Vec<(Id, Option<usize>)> = group
                .iter()
                .map(|&(c, alt)| (c, self.chosen.insert(c, alt)))
                .collect();
            match self.cost(egraph, cost, roots) {
                Some(t) if best - t > 1e-9 * best.abs().max(1.0) => return Some(t),
                _ => {
                    for (c, o) in old.into_iter().rev() {
                        match o {
                            Some(o) => self.chosen.insert(c, o),
                            None => self.chosen.remove(&c),
                        };
                    }
                }
            }
        }
        None
    }

    /// The term of the choices holding every root, with each node's class;
    /// returns (term, root positions, classes by position).
    ///
    /// # Errors
    /// [`ExtractError::NoFiniteTerm`] for a class without a choice,
    /// [`ExtractError::Cycle`] for a cycle.
    pub fn build(
        &self,
        egraph: &TensorEGraph,
        roots: &[Id],
    ) -> Result<crate::extract::Extracted, ExtractError> {
        let order = self.reachable(egraph, roots).ok_or_else(|| {
            roots
                .iter()
                .find(|&&r| self.node(egraph, r).is_none())
                .map_or(
                    ExtractError::Cycle(roots.first().copied().unwrap_or(Id::from(0))),
                    |&r| ExtractError::NoFiniteTerm(r),
                )
        })?;
        let mut expr = RecExpr::default();
        let mut at: HashMap<Id, Id> = HashMap::new();
        let mut classes = Vec::with_capacity(order.len());
        for c in order {
            let node = self.node(egraph, c).ok_or(ExtractError::NoFiniteTerm(c))?;
            let mut missing = None;
            let built = node.clone().map_children(|ch| {
                at.get(&egraph.find(ch)).copied().unwrap_or_else(|| {
                    missing = Some(ch);
                    Id::from(0)
                })
            });
            if let Some(ch) = missing {
                return Err(ExtractError::NoFiniteTerm(ch));
            }
            at.insert(c, expr.add(built));
            classes.push(c);
        }
        let positions = roots
            .iter()
            .map(|r| {
                at.get(&egraph.find(*r))
                    .copied()
                    .ok_or(ExtractError::NoFiniteTerm(*r))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((expr, positions, classes))
    }
}
