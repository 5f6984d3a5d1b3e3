//! What the analysis knows of an e-class ([`TensorData`]) and of the leaves
//! whose types the lowering declares ([`Leaf`], [`LeafTable`]). O(1) per
//! lookup.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::block::Block;
use crate::lang::{OpRef, ParamRef, Scalar, TensorLang, ValueRef};
use crate::shape::{DType, Shape, TensorType};

/// What the analysis knows of an e-class.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TensorData {
    /// The shape, when known.
    pub shape: Option<Shape>,
    /// The element type, when known.
    pub dtype: Option<DType>,
    /// The value, when the class is a known scalar.
    pub constant: Option<Scalar>,
    /// The residual block, for a `resadd` class (and what it is rewritten to).
    pub block: Option<Block>,
    /// Whether the class is computed from constants alone (declared weight
    /// values and `Num`s, through `+ - * /`, `sigmoid`, `matmul`,
    /// `conv1x1`): a weight the compiler can materialise, which costs
    /// nothing at inference.
    pub weight: bool,
}

impl TensorData {
    /// The shape and element type.
    #[must_use]
    pub fn ty(&self) -> TensorType {
        TensorType {
            shape: self.shape.clone(),
            dtype: self.dtype.clone(),
        }
    }

    pub(crate) fn of_type(ty: &TensorType) -> Self {
        Self {
            shape: ty.shape.clone(),
            dtype: ty.dtype.clone(),
            ..Self::default()
        }
    }
}

/// A term whose type comes from the lowering.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Leaf {
    /// An IR value.
    Value(ValueRef),
    /// A `LAuReL` parameter.
    Param(ParamRef),
    /// An output of a generic ONNX op.
    Op(OpRef),
}

impl Leaf {
    /// The leaf a term's type is looked up by, if it is one.
    #[must_use]
    pub fn of(node: &TensorLang) -> Option<Self> {
        match node {
            TensorLang::Value(v) => Some(Self::Value(*v)),
            TensorLang::Param(p) => Some(Self::Param(*p)),
            TensorLang::Onnx(op, _) => Some(Self::Op(*op)),
            _ => None,
        }
    }
}

impl fmt::Display for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Leaf::Value(v) => write!(f, "{v}"),
            Leaf::Param(p) => write!(f, "{p}"),
            Leaf::Op(o) => write!(f, "{o}"),
        }
    }
}

/// The types of leaves and generic ops, as the lowering declares them. A
/// leaf that is not declared has an unknown type.
#[derive(Debug, Clone, Default)]
pub struct LeafTable {
    types: HashMap<Leaf, TensorType>,
    weights: HashSet<ValueRef>,
}

impl LeafTable {
    /// The declared type of `leaf`.
    #[must_use]
    pub fn get(&self, leaf: &Leaf) -> Option<&TensorType> {
        self.types.get(leaf)
    }

    /// Declares `leaf`'s type, returning the previous declaration.
    pub fn insert(&mut self, leaf: Leaf, ty: TensorType) -> Option<TensorType> {
        self.types.insert(leaf, ty)
    }

    /// Removes a declaration (an applier undoing its own).
    pub(crate) fn remove(&mut self, leaf: &Leaf) -> Option<TensorType> {
        self.types.remove(leaf)
    }

    /// Declares `value` a weight: a constant the compiler may compute with.
    pub fn insert_weight(&mut self, value: ValueRef) {
        self.weights.insert(value);
    }

    /// Whether `value` is a declared weight.
    #[must_use]
    pub fn is_weight(&self, value: &ValueRef) -> bool {
        self.weights.contains(value)
    }

    /// How many leaves are declared.
    #[must_use]
    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// Whether no leaf is declared.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }
}
