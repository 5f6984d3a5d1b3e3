//! Shapes, element types and the shape rules of the tensor terms.
//!
//! A [`Shape`] is a list of [`Dim`]s, each fixed or symbolic. Two dims are
//! known equal only when both are fixed and equal or both are the same
//! symbol; anything the rules cannot prove is refused, never assumed.
//! Broadcasting is numpy's (align on the right; a dim of 1 stretches), with a
//! symbol broadcasting only against itself or a fixed 1.
//!
//! Complexity: every function here is linear in the ranks involved.
//! Errors: [`ShapeError`], naming the term, its operands' types and the
//! mismatch.

use std::fmt;

/// One dimension: a fixed extent or a named symbol (`N`, `seq`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    /// A known extent.
    Fixed(u64),
    /// A symbolic extent; equal only to the same symbol.
    Sym(String),
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Sym(s) => write!(f, "{s}"),
        }
    }
}

/// A tensor shape, outermost axis first.
pub type Shape = Vec<Dim>;

/// A shape of fixed dims.
#[must_use]
pub fn fixed(dims: &[u64]) -> Shape {
    dims.iter().copied().map(Dim::Fixed).collect()
}

/// Writes `[2, N, 3]`.
struct ShowShape<'a>(&'a [Dim]);

impl fmt::Display for ShowShape<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// An element type, as ONNX names them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// `float16`.
    F16,
    /// `bfloat16`.
    BF16,
    /// `float`.
    F32,
    /// `double`.
    F64,
    /// `int32`.
    I32,
    /// `int64`.
    I64,
    /// `bool`.
    Bool,
    /// Any other ONNX element type, by name.
    Other(String),
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::Bool => "bool",
            DType::Other(s) => s,
        };
        f.write_str(name)
    }
}

/// What is known of a tensor: its shape and element type, each possibly unknown.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct TensorType {
    /// The shape, when known.
    pub shape: Option<Shape>,
    /// The element type, when known.
    pub dtype: Option<DType>,
}

impl TensorType {
    /// A known shape and element type.
    #[must_use]
    pub fn new(shape: Shape, dtype: DType) -> Self {
        Self {
            shape: Some(shape),
            dtype: Some(dtype),
        }
    }

    /// Nothing known.
    #[must_use]
    pub fn unknown() -> Self {
        Self::default()
    }
}

impl fmt::Display for TensorType {
    /// `[2, 3] f32`, with `?` for what is unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.shape {
            Some(s) => write!(f, "{}", ShowShape(s))?,
            None => f.write_str("?")?,
        }
        match &self.dtype {
            Some(d) => write!(f, " {d}"),
            None => f.write_str(" ?"),
        }
    }
}

/// What does not fit in an ill-shaped term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// Two dims that do not broadcast (right-aligned axis `axis` of the result).
    Broadcast {
        /// The result axis.
        axis: usize,
        /// The left operand's dim.
        left: Dim,
        /// The right operand's dim.
        right: Dim,
    },
    /// The contracted dims of `matmul` (`x`'s last, `w`'s first) or
    /// `conv1x1` (`x`'s axis 1, `w`'s axis 1) differ.
    Contraction {
        /// The input's dim.
        input: Dim,
        /// The weight's dim.
        weight: Dim,
    },
    /// An operand of the wrong rank.
    Rank {
        /// The operand's position.
        operand: usize,
        /// The rank the term needs, in words.
        expected: &'static str,
        /// The operand's rank.
        got: usize,
    },
    /// An operand whose shape must equal operand 0's (`f` of a `LAuReL` term,
    /// the skip of a `resadd`) and does not.
    NotSameShape {
        /// The operand's position.
        operand: usize,
    },
    /// A coefficient that does not broadcast to the term it scales without
    /// changing its shape.
    Coefficient {
        /// The coefficient's position.
        operand: usize,
    },
    /// The low-rank factors of `laurel-lr` are not `[p, q]` and `[q, p]`.
    LowRankFactors,
    /// Two operands with different element types.
    DType {
        /// The first element type.
        left: DType,
        /// The other one.
        right: DType,
    },
    /// A rewrite's right-hand side whose type differs from the class it
    /// would join.
    NotTheClassType {
        /// The matched class's type.
        class: Box<TensorType>,
        /// The right-hand side's type.
        term: Box<TensorType>,
    },
    /// A rewrite's right-hand side whose known constant differs from the
    /// class's (`class`, `term`).
    NotTheClassConstant(Box<(crate::scalar::Scalar, crate::scalar::Scalar)>),
    /// An operand id that is not an e-class of this e-graph.
    UnknownOperand {
        /// The operand's position.
        operand: usize,
    },
    /// A variadic term with a number of operands it does not take.
    Arity {
        /// The operand counts the term takes, in words.
        expected: &'static str,
        /// The operands it has.
        got: usize,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Broadcast { axis, left, right } => {
                write!(
                    f,
                    "{left} and {right} do not broadcast (result axis {axis})"
                )
            }
            Mismatch::Contraction { input, weight } => {
                write!(f, "contracted dims differ: input {input}, weight {weight}")
            }
            Mismatch::Rank {
                operand,
                expected,
                got,
            } => write!(f, "operand {operand} has rank {got}, expected {expected}"),
            Mismatch::NotSameShape { operand } => {
                write!(f, "operand {operand} must have operand 0's shape")
            }
            Mismatch::Coefficient { operand } => write!(
                f,
                "coefficient {operand} does not broadcast to the shape it scales"
            ),
            Mismatch::LowRankFactors => {
                write!(f, "the low-rank factors must be [p, q] and [q, p]")
            }
            Mismatch::DType { left, right } => write!(f, "element types {left} and {right} differ"),
            Mismatch::NotTheClassType { class, term } => {
                write!(f, "the term's type {term} differs from its class's {class}")
            }
            Mismatch::NotTheClassConstant(pair) => {
                write!(
                    f,
                    "the term's value {} differs from its class's {}",
                    pair.1, pair.0
                )
            }
            Mismatch::UnknownOperand { operand } => {
                write!(f, "operand {operand} is not an e-class of this e-graph")
            }
            Mismatch::Arity { expected, got } => {
                write!(f, "{got} operands, expected {expected}")
            }
        }
    }
}

/// An ill-shaped term: the term's operator, its operands' types and what
/// does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ill-shaped `{term}` on {}: {mismatch}", ShowOperands(.operands))]
pub struct ShapeError {
    /// The operator, as the s-expression writes it (`+`, `matmul`, `onnx:Conv@n3.0`).
    pub term: String,
    /// The operands' types, in order.
    pub operands: Vec<TensorType>,
    /// What does not fit.
    pub mismatch: Mismatch,
}

/// Writes `([2, 3] f32, [4, 5] f32)`.
struct ShowOperands<'a>(&'a [TensorType]);

impl fmt::Display for ShowOperands<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(")?;
        for (i, t) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{t}")?;
        }
        f.write_str(")")
    }
}

/// The number of elements of `dims`, counting a symbolic dimension as 1: an
/// estimate for cost models, exact for fixed shapes.
#[must_use]
#[allow(clippy::cast_precision_loss)] // an estimate
pub fn estimated_elements(dims: &[Dim]) -> f64 {
    dims.iter()
        .map(|d| match d {
            Dim::Fixed(n) => *n as f64,
            Dim::Sym(_) => 1.0,
        })
        .product()
}

/// Sizes of symbolic dimensions, by symbol, for cost estimates only (shapes
/// stay symbolic: the result must run at every size).
pub type Sizes = std::collections::BTreeMap<String, u64>;

/// [`estimated_elements`] with the symbols `sizes` knows at their size.
#[must_use]
#[allow(clippy::cast_precision_loss)] // an estimate
pub fn sized_elements(dims: &[Dim], sizes: &Sizes) -> f64 {
    dims.iter()
        .map(|d| match d {
            Dim::Fixed(n) => *n as f64,
            Dim::Sym(s) => sizes.get(s).map_or(1.0, |&n| n as f64),
        })
        .product()
}

/// numpy broadcasting of two shapes. A symbol broadcasts only with itself or
/// a fixed 1.
///
/// # Errors
/// [`Mismatch::Broadcast`] for the outermost result axis whose dims do not fit.
pub fn broadcast(a: &[Dim], b: &[Dim]) -> Result<Shape, Mismatch> {
    let rank = a.len().max(b.len());
    let one = Dim::Fixed(1);
    // Right-aligned: missing leading dims act as 1.
    let dim = |s: &'_ [Dim], axis: usize| -> Dim {
        (axis + s.len())
            .checked_sub(rank)
            .and_then(|i| s.get(i))
            .cloned()
            .unwrap_or(Dim::Fixed(1))
    };
    (0..rank)
        .map(|axis| {
            let (left, right) = (dim(a, axis), dim(b, axis));
            if left == right || right == one {
                Ok(left)
            } else if left == one {
                Ok(right)
            } else {
                Err(Mismatch::Broadcast { axis, left, right })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str) -> Dim {
        Dim::Sym(s.into())
    }

    #[test]
    fn sizes_price_the_symbols_they_know() {
        let shape = vec![
            Dim::Sym("batch".into()),
            Dim::Sym("seq".into()),
            Dim::Fixed(4),
        ];
        let sizes: Sizes = [("batch".to_owned(), 8)].into_iter().collect();
        assert!((sized_elements(&shape, &sizes) - 32.0).abs() < 1e-12);
        assert!((sized_elements(&shape, &Sizes::new()) - estimated_elements(&shape)).abs() < 1e-12);
    }

    #[test]
    fn broadcasting_is_numpys() {
        assert_eq!(broadcast(&fixed(&[2, 3]), &fixed(&[3])), Ok(fixed(&[2, 3])));
        assert_eq!(
            broadcast(&fixed(&[2, 1]), &fixed(&[1, 5])),
            Ok(fixed(&[2, 5]))
        );
        assert_eq!(broadcast(&fixed(&[]), &fixed(&[4, 5])), Ok(fixed(&[4, 5])));
        assert_eq!(
            broadcast(&fixed(&[2, 3]), &fixed(&[4, 5])),
            Err(Mismatch::Broadcast {
                axis: 0,
                left: Dim::Fixed(2),
                right: Dim::Fixed(4)
            })
        );
    }

    #[test]
    fn symbols_broadcast_only_with_themselves_or_one() {
        let n = vec![sym("N"), Dim::Fixed(8)];
        assert_eq!(broadcast(&n, &n), Ok(n.clone()));
        assert_eq!(broadcast(&n, &fixed(&[1, 8])), Ok(n.clone()));
        assert!(broadcast(&n, &fixed(&[4, 8])).is_err());
        assert!(broadcast(&n, &[sym("M"), Dim::Fixed(8)]).is_err());
    }

    #[test]
    fn errors_name_term_and_operands() {
        let e = ShapeError {
            term: "+".into(),
            operands: vec![
                TensorType::new(fixed(&[2, 3]), DType::F32),
                TensorType::unknown(),
            ],
            mismatch: Mismatch::LowRankFactors,
        };
        assert_eq!(
            e.to_string(),
            "ill-shaped `+` on ([2, 3] f32, ? ?): the low-rank factors must be [p, q] and [q, p]"
        );
    }
}
