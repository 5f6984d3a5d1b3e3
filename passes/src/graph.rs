//! The checked builder: the only way terms enter the e-graph.
//!
//! [`TensorGraph`] wraps the e-graph and computes the type of every term
//! before adding it ([`crate::analysis::infer`]); a term whose operands do
//! not fit is refused with a [`ShapeError`] and nothing is added, so no
//! ill-shaped e-node enters the e-graph. Rule right-hand sides go through the
//! same check ([`crate::checked`]).
//!
//! Complexity: adding a term of `n` nodes costs `O(n)` hash lookups plus the
//! shape rules, linear in the ranks. Errors: [`ShapeError`] for an ill-shaped
//! term, [`GraphError`] for declarations and block tags.

use std::collections::HashSet;

use egg::{ENodeOrVar, Id, Language, PatternAst, RecExpr, Subst};

use crate::analysis::{Leaf, TensorAnalysis, TensorData, TensorEGraph, infer};
use crate::block::{Block, BlockId};
use crate::lang::{OpRef, TensorLang, ValueRef};
use crate::semantics::{ChannelMap, OpSemantics};
use crate::shape::{Mismatch, ShapeError, TensorType};

/// Why a declaration or a block tag was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// A leaf declared twice with different types.
    #[error("{leaf} is declared as {old}, not {new}")]
    Redeclared {
        /// The leaf.
        leaf: Leaf,
        /// Its type.
        old: TensorType,
        /// The refused type.
        new: TensorType,
    },
    /// A leaf declared after it entered the e-graph (its class already has
    /// the unknown type).
    #[error("{0} is declared after it was added")]
    DeclaredAfterUse(Leaf),
    /// A block tag on a class holding no `resadd` or `LAuReL` term.
    #[error("e-class {0} holds no resadd or laurel term to tag")]
    NotResidual(Id),
    /// A block tag on a class already tagged with another block.
    #[error("e-class {id} is block {old}, not block {new}")]
    Retagged {
        /// The class.
        id: Id,
        /// Its block.
        old: crate::block::BlockId,
        /// The refused block.
        new: crate::block::BlockId,
    },
    /// An id that is not an e-class of this e-graph.
    #[error("{0} is not an e-class of this e-graph")]
    UnknownId(Id),
}

/// An entry of a term under construction: an existing class, or a node
/// whose children index earlier entries.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Entry<'a> {
    /// An existing e-class (a pattern variable's binding).
    Class(Id),
    /// A node; its children are indices of earlier entries.
    Node(&'a TensorLang),
}

/// What is known of one entry while checking.
enum Staged {
    Existing(Id),
    New(TensorData),
}

/// Whether `id` is an e-class id of `egraph`.
pub(crate) fn is_id(egraph: &TensorEGraph, id: Id) -> bool {
    usize::from(id) < egraph.nodes().len()
}

/// Checks a term given as entries whose children index earlier entries, and
/// returns the data of its root (the last entry). Nothing is added. A node
/// already in the e-graph keeps its class's data; a new node gets what
/// [`infer`] computes, exactly what the analysis will compute on adding it.
///
/// # Errors
/// [`ShapeError`] for the first node whose operands do not fit.
pub(crate) fn check_term(
    egraph: &TensorEGraph,
    entries: &[Entry<'_>],
) -> Result<TensorData, ShapeError> {
    let mut staged: Vec<Staged> = Vec::with_capacity(entries.len());
    let bad_operand = |node: &TensorLang, operand: usize| ShapeError {
        term: node.to_string(),
        operands: Vec::new(),
        mismatch: Mismatch::UnknownOperand { operand },
    };
    for (position, entry) in entries.iter().enumerate() {
        let next = match *entry {
            Entry::Class(id) => {
                if !is_id(egraph, id) {
                    return Err(ShapeError {
                        term: format!("e-class {id}"),
                        operands: Vec::new(),
                        mismatch: Mismatch::UnknownOperand { operand: position },
                    });
                }
                Staged::Existing(egraph.find(id))
            }
            Entry::Node(node) => {
                let mut existing = Vec::with_capacity(node.len());
                let mut operands = Vec::with_capacity(node.len());
                for (operand, &child) in node.children().iter().enumerate() {
                    match staged.get(usize::from(child)) {
                        Some(Staged::Existing(id)) => {
                            existing.push(*id);
                            operands.push(&egraph[*id].data);
                        }
                        Some(Staged::New(d)) => operands.push(d),
                        None => return Err(bad_operand(node, operand)),
                    }
                }
                let found = if existing.len() == node.len() {
                    let mut ids = existing.into_iter();
                    let mapped = node
                        .clone()
                        .map_children(|_| ids.next().unwrap_or(Id::from(0)));
                    egraph.lookup(mapped)
                } else {
                    None
                };
                match found {
                    Some(id) => Staged::Existing(id),
                    None => Staged::New(infer(node, &operands, &egraph.analysis.leaves)?),
                }
            }
        };
        staged.push(next);
    }
    match staged.pop() {
        Some(Staged::Existing(id)) => Ok(egraph[id].data.clone()),
        Some(Staged::New(d)) => Ok(d),
        None => Err(ShapeError {
            term: "()".into(),
            operands: Vec::new(),
            mismatch: Mismatch::UnknownOperand { operand: 0 },
        }),
    }
}

/// The entries of a pattern instantiated with `subst`.
///
/// # Errors
/// [`ShapeError`] with [`Mismatch::UnknownOperand`] for an unbound variable.
pub(crate) fn pattern_entries<'a>(
    ast: &'a PatternAst<TensorLang>,
    subst: &Subst,
) -> Result<Vec<Entry<'a>>, ShapeError> {
    ast.iter()
        .enumerate()
        .map(|(i, n)| match n {
            ENodeOrVar::ENode(node) => Ok(Entry::Node(node)),
            ENodeOrVar::Var(v) => subst.get(*v).map(|&id| Entry::Class(id)).ok_or(ShapeError {
                term: v.to_string(),
                operands: Vec::new(),
                mismatch: Mismatch::UnknownOperand { operand: i },
            }),
        })
        .collect()
}

/// An e-graph of tensor terms that only accepts well-shaped terms.
///
/// Adding never merges two classes except a constant-folded class with its
/// `Num` (same type), whose data merges at once; the e-graph is rebuilt
/// (egg's O(classes) clean-up) once, by [`TensorGraph::into_egraph`], not
/// per term.
#[derive(Debug, Clone)]
pub struct TensorGraph {
    egraph: TensorEGraph,
    /// The generic ops added so far (a declaration must precede them).
    ops: HashSet<OpRef>,
}

impl Default for TensorGraph {
    fn default() -> Self {
        Self::new()
    }
}

impl TensorGraph {
    /// An empty graph with an empty leaf table.
    #[must_use]
    pub fn new() -> Self {
        Self {
            egraph: TensorEGraph::default(),
            ops: HashSet::new(),
        }
    }

    /// Declares the type of a leaf (a value, a parameter or a generic op's
    /// output). Declare a leaf before adding it; an undeclared leaf has the
    /// unknown type. Declaring the same type again is allowed.
    ///
    /// # Errors
    /// [`GraphError::Redeclared`] for a different type,
    /// [`GraphError::DeclaredAfterUse`] when the leaf is already in the e-graph
    /// without a declaration.
    pub fn declare(&mut self, leaf: Leaf, ty: TensorType) -> Result<(), GraphError> {
        if let Some(old) = self.egraph.analysis.leaves.get(&leaf) {
            if *old == ty {
                return Ok(());
            }
            return Err(GraphError::Redeclared {
                leaf,
                old: old.clone(),
                new: ty,
            });
        }
        if self.in_egraph(&leaf) {
            return Err(GraphError::DeclaredAfterUse(leaf));
        }
        self.egraph.analysis.leaves.insert(leaf, ty);
        Ok(())
    }

    /// Declares `value` a weight: a constant (an initializer) that fusion
    /// may scale, to be materialised by the compiler. Declare it before
    /// adding it.
    ///
    /// # Errors
    /// [`GraphError::DeclaredAfterUse`] when the value is already in the e-graph.
    pub fn declare_weight(&mut self, value: ValueRef) -> Result<(), GraphError> {
        if self.egraph.analysis.leaves.is_weight(&value) {
            return Ok(());
        }
        if self.egraph.lookup(TensorLang::Value(value)).is_some() {
            return Err(GraphError::DeclaredAfterUse(Leaf::Value(value)));
        }
        self.egraph.analysis.leaves.insert_weight(value);
        Ok(())
    }

    /// Declares what fusion may assume of a generic op output (see
    /// [`OpSemantics`]); an op without a declaration is opaque to the rules.
    pub fn declare_semantics(&mut self, op: OpRef, semantics: OpSemantics) {
        self.egraph.analysis.semantics.insert(op, semantics);
    }

    /// Declares how many floating-point operations a generic op output
    /// costs (multiply-adds count two), for the cost model.
    pub fn declare_flops(&mut self, op: OpRef, flops: f64) {
        self.egraph.analysis.flops.insert(op, flops);
    }

    /// Declares a generic op output to be a channel map (see [`ChannelMap`]):
    /// the low-rank rules may give it other children of the same layout.
    pub fn declare_channel_map(&mut self, op: OpRef, map: ChannelMap) {
        self.egraph.analysis.channel_maps.insert(op, map);
    }

    /// Whether an e-node for `leaf` is in the e-graph (for a generic op: with
    /// any operands).
    fn in_egraph(&self, leaf: &Leaf) -> bool {
        match leaf {
            Leaf::Value(v) => self.egraph.lookup(TensorLang::Value(*v)).is_some(),
            Leaf::Param(p) => self.egraph.lookup(TensorLang::Param(*p)).is_some(),
            Leaf::Op(op) => self.ops.contains(op),
        }
    }

    /// Adds one e-node whose children are classes of this graph, after
    /// checking its shape.
    ///
    /// # Errors
    /// [`ShapeError`] naming the term and its operands' types; nothing is added.
    pub fn add_checked(&mut self, node: TensorLang) -> Result<Id, ShapeError> {
        let mut entries: Vec<Entry<'_>> =
            node.children().iter().map(|&c| Entry::Class(c)).collect();
        let mut i = 0;
        let local = node.clone().map_children(|_| {
            i += 1;
            Id::from(i - 1)
        });
        entries.push(Entry::Node(&local));
        check_term(&self.egraph, &entries)?;
        if let TensorLang::Onnx(op, _) = &node {
            self.ops.insert(*op);
        }
        Ok(self.egraph.add(node))
    }

    /// Adds a whole term after checking every node of it.
    ///
    /// # Errors
    /// [`ShapeError`] for the first ill-shaped node; nothing is added.
    pub fn add_expr_checked(&mut self, expr: &RecExpr<TensorLang>) -> Result<Id, ShapeError> {
        let entries: Vec<Entry<'_>> = expr.iter().map(Entry::Node).collect();
        check_term(&self.egraph, &entries)?;
        for node in expr {
            if let TensorLang::Onnx(op, _) = node {
                self.ops.insert(*op);
            }
        }
        Ok(self.egraph.add_expr(expr))
    }

    /// Tags the class of a `resadd` (or of a `LAuReL` term) with its block.
    ///
    /// # Errors
    /// [`GraphError::UnknownId`], [`GraphError::NotResidual`] for a class
    /// without such a term, [`GraphError::Retagged`] for a class already
    /// tagged with another block.
    pub fn tag_block(&mut self, id: Id, block: Block) -> Result<(), GraphError> {
        if !is_id(&self.egraph, id) {
            return Err(GraphError::UnknownId(id));
        }
        let class = &self.egraph[id];
        let residual = class.nodes.iter().any(|n| {
            matches!(
                n,
                TensorLang::ResAdd(_)
                    | TensorLang::LaurelRw(_)
                    | TensorLang::LaurelLr(_)
                    | TensorLang::LaurelPa(_)
            )
        });
        if !residual {
            return Err(GraphError::NotResidual(id));
        }
        match class.data.block {
            Some(old) if old == block => Ok(()),
            Some(old) => Err(GraphError::Retagged {
                id,
                old: old.id,
                new: block.id,
            }),
            None => {
                let mut data = class.data.clone();
                data.block = Some(block);
                self.egraph.set_analysis_data(id, data);
                Ok(())
            }
        }
    }

    /// Records the earlier states of `block`'s residual stream that PA reads,
    /// `x_{i−1}, x_{i−2}, …` (nearest first; `x_i`, the block's own skip, is
    /// not among them). The rules check their shapes when they use them.
    ///
    /// # Errors
    /// [`GraphError::UnknownId`] for an id that is not a class of this graph.
    pub fn record_states(&mut self, block: BlockId, states: Vec<Id>) -> Result<(), GraphError> {
        if let Some(&bad) = states.iter().find(|&&s| !is_id(&self.egraph, s)) {
            return Err(GraphError::UnknownId(bad));
        }
        self.egraph.analysis.states.insert(block, states);
        Ok(())
    }

    /// What the analysis knows of a class.
    ///
    /// # Errors
    /// [`GraphError::UnknownId`] for an id not of this graph.
    pub fn data(&self, id: Id) -> Result<&TensorData, GraphError> {
        if is_id(&self.egraph, id) {
            Ok(&self.egraph[id].data)
        } else {
            Err(GraphError::UnknownId(id))
        }
    }

    /// The analysis (leaf table and records).
    #[must_use]
    pub fn analysis(&self) -> &TensorAnalysis {
        &self.egraph.analysis
    }

    /// The e-graph, read-only (possibly not rebuilt: see [`TensorGraph::into_egraph`]).
    #[must_use]
    pub fn egraph(&self) -> &TensorEGraph {
        &self.egraph
    }

    /// The e-graph, rebuilt, to run rules on and extract from.
    #[must_use]
    pub fn into_egraph(mut self) -> TensorEGraph {
        self.egraph.rebuild();
        self.egraph
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::BlockId;
    use crate::lang::ValueRef;
    use crate::shape::{DType, fixed};

    fn value(name: &str) -> Leaf {
        Leaf::Value(ValueRef::new(name).unwrap())
    }

    fn graph(leaves: &[(&str, &[u64])]) -> TensorGraph {
        let mut g = TensorGraph::new();
        for (name, shape) in leaves {
            g.declare(value(name), TensorType::new(fixed(shape), DType::F32))
                .unwrap();
        }
        g
    }

    fn expr(s: &str) -> RecExpr<TensorLang> {
        s.parse().unwrap()
    }

    #[test]
    fn ill_shaped_add_is_refused_and_nothing_is_added() {
        let mut g = graph(&[("a", &[2, 3]), ("b", &[4, 5])]);
        let before = g.egraph().total_size();
        let err = g.add_expr_checked(&expr("(+ $a $b)")).unwrap_err();
        assert_eq!(err.term, "+");
        assert_eq!(
            err.to_string(),
            "ill-shaped `+` on ([2, 3] f32, [4, 5] f32): 2 and 4 do not broadcast (result axis 0)"
        );
        assert_eq!(
            g.egraph().total_size(),
            before,
            "the leaves were not added either"
        );
    }

    #[test]
    fn add_checked_refuses_one_node() {
        let mut g = graph(&[("a", &[2, 3]), ("b", &[4, 5])]);
        let a = g.add_expr_checked(&expr("$a")).unwrap();
        let b = g.add_expr_checked(&expr("$b")).unwrap();
        let err = g.add_checked(TensorLang::MatMul([a, b])).unwrap_err();
        assert!(
            matches!(err.mismatch, Mismatch::Contraction { .. }),
            "{err}"
        );
        let ab = g.add_checked(TensorLang::Add([a, a])).unwrap();
        assert_eq!(g.data(ab).unwrap().shape, Some(fixed(&[2, 3])));
        let bogus = g
            .add_checked(TensorLang::Add([a, Id::from(999)]))
            .unwrap_err();
        assert!(matches!(bogus.mismatch, Mismatch::UnknownOperand { .. }));
    }

    #[test]
    fn well_shaped_terms_get_their_shapes() {
        let mut g = graph(&[("x", &[1, 16, 8]), ("w", &[8, 4]), ("s", &[16, 1])]);
        let id = g.add_expr_checked(&expr("(* $s (matmul $x $w))")).unwrap();
        assert_eq!(g.data(id).unwrap().shape, Some(fixed(&[1, 16, 4])));
        assert!(g.analysis().ill_shaped().is_empty());
        assert!(g.analysis().conflicts().is_empty());
    }

    #[test]
    fn declarations_are_fixed_once_made() {
        let mut g = graph(&[("x", &[2])]);
        let t = TensorType::new(fixed(&[2]), DType::F32);
        g.declare(value("x"), t.clone()).unwrap();
        assert!(matches!(
            g.declare(value("x"), TensorType::new(fixed(&[3]), DType::F32)),
            Err(GraphError::Redeclared { .. })
        ));
        g.add_expr_checked(&expr("$y")).unwrap();
        assert_eq!(
            g.declare(value("y"), t.clone()),
            Err(GraphError::DeclaredAfterUse(value("y")))
        );
        g.add_expr_checked(&expr("(onnx:Relu@n4.0 $x)")).unwrap();
        let relu = Leaf::Op("onnx:Relu@n4.0".parse().unwrap());
        assert_eq!(
            g.declare(relu.clone(), t),
            Err(GraphError::DeclaredAfterUse(relu))
        );
    }

    #[test]
    fn only_residual_classes_take_a_block() {
        let mut g = graph(&[("x", &[2]), ("f", &[2])]);
        let r = g.add_expr_checked(&expr("(resadd $x $f)")).unwrap();
        let x = g.add_expr_checked(&expr("$x")).unwrap();
        let b0 = Block {
            id: BlockId(0),
            channel_axis: 0,
        };
        let b1 = Block {
            id: BlockId(1),
            channel_axis: 0,
        };
        assert_eq!(g.tag_block(x, b0), Err(GraphError::NotResidual(x)));
        g.tag_block(r, b0).unwrap();
        g.tag_block(r, b0).unwrap();
        assert!(matches!(
            g.tag_block(r, b1),
            Err(GraphError::Retagged { .. })
        ));
        assert_eq!(g.data(r).unwrap().block, Some(b0));
    }

    #[test]
    fn resadd_operands_must_have_one_shape() {
        let mut g = graph(&[("x", &[2, 3]), ("f", &[1, 3])]);
        let err = g.add_expr_checked(&expr("(resadd $x $f)")).unwrap_err();
        assert_eq!(err.mismatch, Mismatch::NotSameShape { operand: 1 });
    }
}
