//! The data of a term from its operands' (see the module docs of
//! [`super`] for the rules): shape, element type, exact constant and whether
//! it is a weight. Linear in the operands' ranks.

use egg::Language;

use super::data::{Leaf, LeafTable, TensorData};
use crate::lang::{Scalar, TensorLang};
use crate::shape::{DType, Dim, Mismatch, Shape, ShapeError, broadcast};

/// Whether two possibly unknown shapes may be equal (unknown fits anything).
fn same(a: Option<&Shape>, b: Option<&Shape>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// Whether a coefficient broadcasts to `target` without changing it.
fn scales(coefficient: Option<&Shape>, target: Option<&Shape>) -> bool {
    match (coefficient, target) {
        (Some(c), Some(t)) => broadcast(c, t).is_ok_and(|s| s == *t),
        _ => true,
    }
}

/// The common element type of `operands`, ignoring unknown ones.
fn agree(operands: &[&TensorData]) -> Result<Option<DType>, Mismatch> {
    let mut known = operands.iter().filter_map(|d| d.dtype.as_ref());
    let Some(first) = known.next() else {
        return Ok(None);
    };
    match known.find(|d| *d != first) {
        Some(other) => Err(Mismatch::DType {
            left: first.clone(),
            right: other.clone(),
        }),
        None => Ok(Some(first.clone())),
    }
}

/// The operands' shapes, by position (`None`: unknown or absent).
struct Shapes<'a>(Vec<Option<&'a Shape>>);

impl<'a> Shapes<'a> {
    fn get(&self, i: usize) -> Option<&'a Shape> {
        self.0.get(i).copied().flatten()
    }

    /// Fails unless operand `i`, when known, has a rank `ok` accepts.
    fn rank(
        &self,
        i: usize,
        expected: &'static str,
        ok: fn(usize) -> bool,
    ) -> Result<(), Mismatch> {
        match self.get(i) {
            Some(s) if !ok(s.len()) => Err(Mismatch::Rank {
                operand: i,
                expected,
                got: s.len(),
            }),
            _ => Ok(()),
        }
    }

    /// Fails unless operand `i` may have operand 0's shape.
    fn equal_to_f(&self, i: usize) -> Result<(), Mismatch> {
        if same(self.get(0), self.get(i)) {
            Ok(())
        } else {
            Err(Mismatch::NotSameShape { operand: i })
        }
    }

    /// Fails unless coefficient `c` may scale operand `target` in place.
    fn coefficient(&self, c: usize, target: usize) -> Result<(), Mismatch> {
        if scales(self.get(c), self.get(target)) {
            Ok(())
        } else {
            Err(Mismatch::Coefficient { operand: c })
        }
    }

    /// The shape of `f`, or of `x` when `f`'s is unknown.
    fn of_f(&self) -> Option<Shape> {
        self.get(0).or(self.get(1)).cloned()
    }
}

/// `+ - * /`: numpy broadcasting.
fn elementwise(s: &Shapes<'_>) -> Result<Option<Shape>, Mismatch> {
    match (s.get(0), s.get(1)) {
        (Some(a), Some(b)) => broadcast(a, b).map(Some),
        _ => Ok(None),
    }
}

/// `matmul [x w]`: `[.., K] · [K, N] → [.., N]`.
fn matmul(s: &Shapes<'_>) -> Result<Option<Shape>, Mismatch> {
    s.rank(0, "≥ 1", |r| r >= 1)?;
    s.rank(1, "2", |r| r == 2)?;
    let (Some(x), Some(w)) = (s.get(0), s.get(1)) else {
        return Ok(None);
    };
    let (Some((k, batch)), [w_in, w_out]) = (x.split_last(), w.as_slice()) else {
        return Ok(None);
    };
    if k != w_in {
        return Err(Mismatch::Contraction {
            input: k.clone(),
            weight: w_in.clone(),
        });
    }
    let mut out = batch.to_vec();
    out.push(w_out.clone());
    Ok(Some(out))
}

/// `conv1x1 [x w]`: `[N, C, ...]` with `w: [O, C]` (or an ONNX kernel
/// `[O, C, 1, 1]`) → `[N, O, ...]`.
fn conv1x1(s: &Shapes<'_>) -> Result<Option<Shape>, Mismatch> {
    s.rank(0, "≥ 3", |r| r >= 3)?;
    s.rank(1, "2 or 4", |r| r == 2 || r == 4)?;
    let (Some(x), Some(w)) = (s.get(0), s.get(1)) else {
        return Ok(None);
    };
    let one = Dim::Fixed(1);
    let (Some(c), [w_out, w_in] | [w_out, w_in, _, _]) = (x.get(1), w.as_slice()) else {
        return Ok(None);
    };
    if w.len() == 4 && (w[2] != one || w[3] != one) {
        return Err(Mismatch::Rank {
            operand: 1,
            expected: "a [out, in, 1, 1] kernel",
            got: 4,
        });
    }
    if c != w_in {
        return Err(Mismatch::Contraction {
            input: c.clone(),
            weight: w_in.clone(),
        });
    }
    let mut out = x.clone();
    out[1] = w_out.clone();
    Ok(Some(out))
}

/// A channel-map weight: `[in, out]` (rank 2) or `[out, in, 1, 1]` (rank 4);
/// its (in, out) dims.
pub(crate) fn map_dims(w: &Shape) -> Option<(&Dim, &Dim)> {
    match w.as_slice() {
        [i, o] | [o, i, Dim::Fixed(1), Dim::Fixed(1)] => Some((i, o)),
        _ => None,
    }
}

/// `compose [w1 w2]`: `w1` then `w2`, both `[in, out]` or both
/// `[out, in, 1, 1]`.
fn compose(s: &Shapes<'_>) -> Result<Option<Shape>, Mismatch> {
    s.rank(0, "2 or 4", |r| r == 2 || r == 4)?;
    s.rank(1, "2 or 4", |r| r == 2 || r == 4)?;
    let (Some(w1), Some(w2)) = (s.get(0), s.get(1)) else {
        return Ok(None);
    };
    if w1.len() != w2.len() {
        return Err(Mismatch::Rank {
            operand: 1,
            expected: "the rank of operand 0",
            got: w2.len(),
        });
    }
    let bad = |operand| Mismatch::Rank {
        operand,
        expected: "a channel-map weight ([in, out] or [out, in, 1, 1])",
        got: 4,
    };
    let (i1, o1) = map_dims(w1).ok_or(bad(0))?;
    let (i2, o2) = map_dims(w2).ok_or(bad(1))?;
    if o1 != i2 {
        return Err(Mismatch::Contraction {
            input: o1.clone(),
            weight: i2.clone(),
        });
    }
    Ok(Some(if w1.len() == 2 {
        vec![i1.clone(), o2.clone()]
    } else {
        vec![o2.clone(), i1.clone(), Dim::Fixed(1), Dim::Fixed(1)]
    }))
}

/// `add-eye w`: a square channel-map weight.
fn add_eye(s: &Shapes<'_>) -> Result<Option<Shape>, Mismatch> {
    s.rank(0, "2 or 4", |r| r == 2 || r == 4)?;
    let Some(w) = s.get(0) else {
        return Ok(None);
    };
    match map_dims(w) {
        Some((i, o)) if i == o && matches!(i, Dim::Fixed(_)) => Ok(Some(w.clone())),
        _ => Err(Mismatch::Rank {
            operand: 0,
            expected: "a square channel-map weight of fixed size",
            got: w.len(),
        }),
    }
}

/// `laurel-residual [c₀ t₀ c₁ t₁ …]`: scalar coefficients, terms that
/// broadcast together (at least two of them).
fn laurel_residual(s: &Shapes<'_>) -> Result<Option<Shape>, Mismatch> {
    let n = s.0.len();
    if n < 4 || !n.is_multiple_of(2) {
        return Err(Mismatch::Arity {
            expected: "an even number, at least 4",
            got: n,
        });
    }
    let mut out: Option<Shape> = Some(Vec::new());
    for i in (0..n).step_by(2) {
        if s.get(i).is_some_and(|c| !c.is_empty()) {
            return Err(Mismatch::Coefficient { operand: i });
        }
        out = match (out, s.get(i + 1)) {
            (Some(a), Some(b)) => Some(broadcast(&a, b)?),
            _ => None,
        };
    }
    Ok(out)
}

/// `concat [k a b]`: equal ranks, equal dims but on axis `k`, which adds up.
fn concat(operands: &[&TensorData]) -> Result<Option<Shape>, Mismatch> {
    let shapes = Shapes(operands.iter().map(|d| d.shape.as_ref()).collect());
    shapes.rank(0, "0 (the axis)", |r| r == 0)?;
    let axis = operands.first().and_then(|d| d.constant.as_ref());
    let (Some(axis), Some(a), Some(b)) = (axis, shapes.get(1), shapes.get(2)) else {
        return Ok(None);
    };
    let k = axis
        .to_usize()
        .filter(|&k| k < a.len())
        .ok_or(Mismatch::Coefficient { operand: 0 })?;
    if a.len() != b.len() {
        return Err(Mismatch::NotSameShape { operand: 2 });
    }
    let mut out = a.clone();
    for (i, (p, q)) in a.iter().zip(b).enumerate() {
        if i == k {
            out[i] = match (p, q) {
                (Dim::Fixed(left), Dim::Fixed(right)) => Dim::Fixed(left + right),
                _ => return Err(Mismatch::NotSameShape { operand: 2 }),
            };
        } else if p != q {
            return Err(Mismatch::NotSameShape { operand: 2 });
        }
    }
    Ok(Some(out))
}

/// `slice [k start end x]`: `x` with axis `k` cut to `start..end`.
fn slice(operands: &[&TensorData]) -> Result<Option<Shape>, Mismatch> {
    let index = |i: usize| {
        operands
            .get(i)
            .and_then(|d| d.constant.as_ref())
            .and_then(Scalar::to_usize)
    };
    let Some(x) = operands.get(3).and_then(|d| d.shape.as_ref()) else {
        return Ok(None);
    };
    let (Some(k), Some(start), Some(end)) = (index(0), index(1), index(2)) else {
        return Err(Mismatch::Coefficient { operand: 0 });
    };
    match x.get(k) {
        Some(Dim::Fixed(n)) if start < end && u64::try_from(end).is_ok_and(|e| e <= *n) => {
            let mut out = x.clone();
            out[k] = Dim::Fixed(u64::try_from(end - start).unwrap_or(u64::MAX));
            Ok(Some(out))
        }
        _ => Err(Mismatch::NotSameShape { operand: 3 }),
    }
}

/// `laurel-lr [f x a b]`: `a`, `b` are `[p, q]`, `[q, p]` acting on `x`'s
/// last axis (`p = C`) or axis 1 (`q = C`).
fn laurel_lr(s: &Shapes<'_>) -> Result<Option<Shape>, Mismatch> {
    s.equal_to_f(1)?;
    s.rank(2, "2", |r| r == 2)?;
    s.rank(3, "2", |r| r == 2)?;
    if let (Some(a), Some(b)) = (s.get(2), s.get(3)) {
        let transposed = a[0] == b[1] && a[1] == b[0];
        let acts_on_x = s
            .of_f()
            .is_none_or(|x| x.last() == Some(&a[0]) || (x.len() >= 3 && x[1] == a[1]));
        if !transposed || !acts_on_x {
            return Err(Mismatch::LowRankFactors);
        }
    }
    Ok(s.of_f())
}

/// The shape of a term other than a leaf or a generic op.
fn shape(node: &TensorLang, s: &Shapes<'_>) -> Result<Option<Shape>, Mismatch> {
    match node {
        TensorLang::Add(_) | TensorLang::Sub(_) | TensorLang::Mul(_) | TensorLang::Div(_) => {
            elementwise(s)
        }
        TensorLang::Sigmoid(_) => Ok(s.get(0).cloned()),
        TensorLang::MatMul(_) => matmul(s),
        TensorLang::Conv1x1(_) => conv1x1(s),
        TensorLang::ResAdd(_) => s.equal_to_f(1).map(|()| s.of_f()),
        TensorLang::LaurelRw(_) => {
            s.equal_to_f(1)?;
            s.coefficient(2, 0)?;
            s.coefficient(3, 1)?;
            Ok(s.of_f())
        }
        TensorLang::LaurelLr(_) => laurel_lr(s),
        TensorLang::Compose(_) => compose(s),
        TensorLang::AddEye(_) => add_eye(s),
        TensorLang::LaurelResidual(_) => laurel_residual(s),
        TensorLang::LaurelPa(_) => {
            s.equal_to_f(1)?;
            for i in (2..s.0.len()).step_by(2) {
                s.equal_to_f(i + 1)?;
                s.coefficient(i, i + 1)?;
            }
            Ok(s.of_f())
        }
        TensorLang::Num(_) => Ok(Some(Vec::new())),
        // A concat's axis is a constant, which shapes do not carry: see `concat`.
        TensorLang::Param(_)
        | TensorLang::Value(_)
        | TensorLang::Onnx(..)
        | TensorLang::Concat(_)
        | TensorLang::Slice(_) => Ok(None),
    }
}

/// The exact value of a term of known constants, when it has one.
fn fold(node: &TensorLang, operands: &[&TensorData]) -> Option<Scalar> {
    let constant = |i: usize| operands.get(i).and_then(|d| d.constant.as_ref());
    match node {
        TensorLang::Num(c) => Some(c.clone()),
        TensorLang::Add(_) => Some(constant(0)? + constant(1)?),
        TensorLang::Sub(_) => Some(constant(0)? - constant(1)?),
        TensorLang::Mul(_) => Some(constant(0)? * constant(1)?),
        TensorLang::Div(_) => constant(0)?.checked_div(constant(1)?),
        // σ(0) = 1/2; σ(q) is irrational for every other rational q.
        TensorLang::Sigmoid(_) if constant(0)?.is_zero() => Scalar::fraction(1, 2),
        _ => None,
    }
}

/// Whether `node` computes a weight from its operands' data.
fn computes_weights(node: &TensorLang, operands: &[&TensorData]) -> bool {
    match node {
        TensorLang::Num(_) => true,
        TensorLang::Add(_)
        | TensorLang::Sub(_)
        | TensorLang::Mul(_)
        | TensorLang::Div(_)
        | TensorLang::Sigmoid(_)
        | TensorLang::MatMul(_)
        | TensorLang::Conv1x1(_)
        | TensorLang::Compose(_)
        | TensorLang::AddEye(_)
        | TensorLang::Concat(_)
        | TensorLang::Slice(_) => operands.iter().all(|d| d.weight),
        _ => false,
    }
}

/// The data of the term `node` whose operands (in `node.children()` order)
/// have the data `operands`; leaves and generic ops read `leaves`. The
/// result carries no block tag.
///
/// # Errors
/// [`ShapeError`] when the operands do not fit the term.
pub fn infer(
    node: &TensorLang,
    operands: &[&TensorData],
    leaves: &LeafTable,
) -> Result<TensorData, ShapeError> {
    let fail = |mismatch: Mismatch| ShapeError {
        term: node.to_string(),
        operands: operands.iter().map(|d| d.ty()).collect(),
        mismatch,
    };
    if operands.len() != node.len() {
        return Err(fail(Mismatch::UnknownOperand {
            operand: operands.len().min(node.len()),
        }));
    }
    if let Some(leaf) = Leaf::of(node) {
        let mut data = leaves
            .get(&leaf)
            .map(TensorData::of_type)
            .unwrap_or_default();
        data.weight = matches!(node, TensorLang::Value(v) if leaves.is_weight(v));
        return Ok(data);
    }
    let dtype = agree(operands).map_err(fail)?;
    let shapes = Shapes(operands.iter().map(|d| d.shape.as_ref()).collect());
    Ok(TensorData {
        shape: match node {
            TensorLang::Concat(_) => concat(operands),
            TensorLang::Slice(_) => slice(operands),
            _ => shape(node, &shapes),
        }
        .map_err(fail)?,
        dtype,
        constant: fold(node, operands),
        block: None,
        weight: computes_weights(node, operands),
    })
}
