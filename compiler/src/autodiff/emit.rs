//! The backward graph under construction: the ops and constants the gradient
//! rules emit, by value name, with the static type of every value.
//!
//! Every helper emits standard ONNX ops in the model's opset (for example
//! `ReduceSum` takes its axes as an attribute before opset 13 and as an input
//! from 13 on), and every constant it makes has the element type of the value
//! it combines with, so a float64 model's backward graph is float64 too.
//! Constants are shared: the same scalar or axes list is one initializer.
//!
//! Complexity: O(1) per emitted op (plus its attribute and shape sizes).

use std::collections::{HashMap, HashSet};

use onnx_protobuf::{AttributeProto, NodeProto, TensorProto};

use super::AutodiffError;
use crate::ir::attr;

/// ONNX element types the backward graph computes in.
pub mod elem {
    /// `float32`.
    pub const F32: i32 = 1;
    /// `float16`.
    pub const F16: i32 = 10;
    /// `float64`.
    pub const F64: i32 = 11;
    /// `int64`.
    pub const I64: i32 = 7;
    /// `bool`.
    pub const BOOL: i32 = 9;

    /// Whether gradients flow through values of this element type.
    #[must_use]
    pub fn is_float(t: i32) -> bool {
        matches!(t, F32 | F64 | F16)
    }
}

/// A value's static type: ONNX element type and concrete dims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ty {
    /// The ONNX element type (`TensorProto.DataType`).
    pub elem: i32,
    /// The dims, all known.
    pub dims: Vec<i64>,
}

impl Ty {
    /// A type of `elem` and `dims`.
    #[must_use]
    pub fn new(elem: i32, dims: &[i64]) -> Self {
        Self {
            elem,
            dims: dims.to_vec(),
        }
    }

    /// The rank.
    #[must_use]
    pub fn rank(&self) -> usize {
        self.dims.len()
    }

    /// The number of elements.
    #[must_use]
    pub fn numel(&self) -> i64 {
        self.dims.iter().product()
    }

    /// The same dims in another element type.
    #[must_use]
    pub fn with_elem(&self, elem: i32) -> Self {
        Self {
            elem,
            dims: self.dims.clone(),
        }
    }

    /// The same element type with other dims.
    #[must_use]
    pub fn with_dims(&self, dims: &[i64]) -> Self {
        Self::new(self.elem, dims)
    }
}

/// An op emitted into the backward graph: the node (inputs filled) and the
/// forward op it belongs to, for messages and ordering.
#[derive(Debug, Clone)]
pub struct Emitted {
    /// The node, with its inputs and outputs named.
    pub node: NodeProto,
}

/// `n` as an ONNX dim or axis (tensor sizes fit in `i64`).
#[must_use]
pub fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A non-negative ONNX dim or axis as a `usize` (0 for a negative one).
#[must_use]
pub fn to_usize(n: i64) -> usize {
    usize::try_from(n).unwrap_or(0)
}

/// `n` as a float, for a mean's divisor (exact below 2⁵³).
#[must_use]
#[allow(clippy::cast_precision_loss)]
pub fn to_f64(n: i64) -> f64 {
    n as f64
}

/// The backward graph under construction; see the [module docs](self).
pub struct Emitter {
    opset: i64,
    types: HashMap<String, Ty>,
    used: HashSet<String>,
    /// Constant values already made, by content.
    constants: HashMap<(i32, Vec<i64>, Vec<u8>), String>,
    /// The ops emitted, in order (a topological order).
    pub ops: Vec<Emitted>,
    /// The constants made, in order.
    pub initializers: Vec<TensorProto>,
    /// The prefix of every name made.
    prefix: String,
    counter: usize,
    /// The forward node whose rule is running, for node names.
    pub current: String,
}

impl Emitter {
    /// An emitter for a model of default-domain `opset` whose values have
    /// `types`; `used` are the value names taken already.
    #[must_use]
    pub fn new(opset: i64, types: HashMap<String, Ty>, used: HashSet<String>) -> Self {
        Self {
            opset,
            types,
            used,
            constants: HashMap::new(),
            ops: Vec::new(),
            initializers: Vec::new(),
            prefix: "grad".into(),
            counter: 0,
            current: String::new(),
        }
    }

    /// The model's default-domain opset.
    #[must_use]
    pub fn opset(&self) -> i64 {
        self.opset
    }

    /// The static type of the value `name`.
    ///
    /// # Errors
    /// [`AutodiffError::UnknownShape`] when it has none.
    pub fn ty(&self, name: &str) -> Result<&Ty, AutodiffError> {
        self.types
            .get(name)
            .ok_or_else(|| AutodiffError::UnknownShape {
                value: name.to_owned(),
            })
    }

    /// Records the type of a value made outside the emitter.
    pub fn set_ty(&mut self, name: &str, ty: Ty) {
        self.used.insert(name.to_owned());
        self.types.insert(name.to_owned(), ty);
    }

    /// Claims `name` exactly; `false` if it is in use.
    pub fn claim(&mut self, name: &str) -> bool {
        self.used.insert(name.to_owned())
    }

    /// A new value name `grad/<hint>_<k>`.
    pub fn fresh(&mut self, hint: &str) -> String {
        loop {
            self.counter += 1;
            let name = format!("{}/{hint}_{}", self.prefix, self.counter);
            if self.used.insert(name.clone()) {
                return name;
            }
        }
    }

    /// Emits `op_type` reading `inputs` with `attrs`; its one output has
    /// type `out`. Returns the output's name.
    pub fn op(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
        out: Ty,
    ) -> String {
        let name = self.fresh(op_type);
        self.op_into(op_type, inputs, attrs, &name, out);
        name
    }

    /// Emits `op_type` writing the value `output` (a name the caller
    /// claimed) of type `out`.
    pub fn op_into(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
        output: &str,
        out: Ty,
    ) {
        self.types.insert(output.to_owned(), out);
        self.counter += 1;
        let node_name = if self.current.is_empty() {
            format!("{}/{op_type}_{}", self.prefix, self.counter)
        } else {
            format!(
                "{}/{}/{op_type}_{}",
                self.prefix, self.current, self.counter
            )
        };
        self.ops.push(Emitted {
            node: NodeProto {
                op_type: op_type.into(),
                name: node_name,
                input: inputs.iter().map(|s| (*s).to_owned()).collect(),
                output: vec![output.to_owned()],
                attribute: attrs,
                ..NodeProto::default()
            },
        });
    }

    /// A constant of `elem` and `dims` holding `raw` little-endian bytes,
    /// shared with every equal constant.
    fn constant(&mut self, elem: i32, dims: &[i64], raw: Vec<u8>, hint: &str) -> String {
        let key = (elem, dims.to_vec(), raw);
        if let Some(n) = self.constants.get(&key) {
            return n.clone();
        }
        let name = self.fresh(hint);
        self.types.insert(name.clone(), Ty::new(elem, dims));
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: dims.to_vec(),
            data_type: elem,
            raw_data: key.2.clone(),
            ..TensorProto::default()
        });
        self.constants.insert(key, name.clone());
        name
    }

    /// A float constant of `elem` (f16, f32 or f64) and `dims` holding `values`,
    /// rounded to the element type.
    #[allow(clippy::cast_possible_truncation)] // rounding to the model's precision
    pub fn float_const(&mut self, elem: i32, dims: &[i64], values: &[f64]) -> String {
        let raw: Vec<u8> = match elem {
            elem::F64 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            elem::F16 => values
                .iter()
                .flat_map(|&v| f32_to_f16_bits(v as f32).to_le_bytes())
                .collect(),
            _ => values
                .iter()
                .flat_map(|&v| (v as f32).to_le_bytes())
                .collect(),
        };
        self.constant(elem, dims, raw, "const")
    }

    /// The scalar `v` in element type `elem`.
    pub fn scalar(&mut self, elem: i32, v: f64) -> String {
        self.float_const(elem, &[], &[v])
    }

    /// A 1-D int64 constant.
    pub fn ints(&mut self, values: &[i64]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.constant(elem::I64, &[to_i64(values.len())], raw, "ints")
    }

    /// An int64 constant of any shape.
    pub fn ints_shaped(&mut self, dims: &[i64], values: &[i64]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.constant(elem::I64, dims, raw, "ints")
    }

    // ---- arithmetic -------------------------------------------------------

    /// `a ⊙ b` for a broadcasting binary op; the output type is the
    /// broadcast of both.
    ///
    /// # Errors
    /// An operand without a type, or shapes that do not broadcast.
    pub fn binary(&mut self, op_type: &str, a: &str, b: &str) -> Result<String, AutodiffError> {
        let (ta, tb) = (self.ty(a)?.clone(), self.ty(b)?.clone());
        let dims = broadcast(&ta.dims, &tb.dims).ok_or_else(|| AutodiffError::Internal {
            message: format!(
                "{op_type} of {a} {:?} and {b} {:?} does not broadcast",
                ta.dims, tb.dims
            ),
        })?;
        let elem = if matches!(op_type, "Equal" | "Greater" | "Less" | "GreaterOrEqual") {
            elem::BOOL
        } else {
            ta.elem
        };
        Ok(self.op(op_type, &[a, b], Vec::new(), Ty::new(elem, &dims)))
    }

    /// `a = b`, elementwise. Before opset 11, `Equal` takes no floats: two
    /// floats are equal when neither is less nor greater.
    ///
    /// # Errors
    /// As [`Emitter::binary`].
    pub fn equal(&mut self, a: &str, b: &str) -> Result<String, AutodiffError> {
        if self.opset >= 11 || !elem::is_float(self.ty(a)?.elem) {
            return self.binary("Equal", a, b);
        }
        let lt = self.binary("Less", a, b)?;
        let gt = self.binary("Greater", a, b)?;
        let ty = self.ty(&lt)?.clone();
        let ne = self.op("Or", &[&lt, &gt], Vec::new(), ty.clone());
        Ok(self.op("Not", &[&ne], Vec::new(), ty))
    }

    /// `a + b`.
    ///
    /// # Errors
    /// As [`Emitter::binary`].
    pub fn add(&mut self, a: &str, b: &str) -> Result<String, AutodiffError> {
        self.binary("Add", a, b)
    }

    /// `a − b`.
    ///
    /// # Errors
    /// As [`Emitter::binary`].
    pub fn sub(&mut self, a: &str, b: &str) -> Result<String, AutodiffError> {
        self.binary("Sub", a, b)
    }

    /// `a · b`.
    ///
    /// # Errors
    /// As [`Emitter::binary`].
    pub fn mul(&mut self, a: &str, b: &str) -> Result<String, AutodiffError> {
        self.binary("Mul", a, b)
    }

    /// `a / b`.
    ///
    /// # Errors
    /// As [`Emitter::binary`].
    pub fn div(&mut self, a: &str, b: &str) -> Result<String, AutodiffError> {
        self.binary("Div", a, b)
    }

    /// `x · c` for a float scalar `c` (nothing when `c` is 1).
    ///
    /// # Errors
    /// `x` has no type.
    pub fn scale(&mut self, x: &str, c: f64) -> Result<String, AutodiffError> {
        if (c - 1.0).abs() < f64::EPSILON {
            return Ok(x.to_owned());
        }
        let elem = self.ty(x)?.elem;
        let c = self.scalar(elem, c);
        self.mul(x, &c)
    }

    /// A unary op of the same type as its input.
    ///
    /// # Errors
    /// `x` has no type.
    pub fn unary(&mut self, op_type: &str, x: &str) -> Result<String, AutodiffError> {
        let t = self.ty(x)?.clone();
        Ok(self.op(op_type, &[x], Vec::new(), t))
    }

    /// `Σ terms` (the one term itself when there is one).
    ///
    /// # Errors
    /// A term without a type.
    pub fn sum(&mut self, terms: &[String]) -> Result<String, AutodiffError> {
        match terms {
            [] => Err(AutodiffError::Internal {
                message: "a sum of no terms".into(),
            }),
            [one] => Ok(one.clone()),
            [first, rest @ ..] => {
                let mut acc = first.clone();
                for t in rest {
                    acc = self.add(&acc, t)?;
                }
                Ok(acc)
            }
        }
    }

    // ---- shapes -----------------------------------------------------------

    /// `x` reshaped to `dims` (nothing when it has them already).
    ///
    /// # Errors
    /// `x` has no type.
    pub fn reshape(&mut self, x: &str, dims: &[i64]) -> Result<String, AutodiffError> {
        let t = self.ty(x)?.clone();
        if t.dims == dims {
            return Ok(x.to_owned());
        }
        let shape = self.ints(dims);
        Ok(self.op("Reshape", &[x, &shape], Vec::new(), t.with_dims(dims)))
    }

    /// `x` transposed by `perm` (nothing for the identity).
    ///
    /// # Errors
    /// `x` has no type.
    pub fn transpose(&mut self, x: &str, perm: &[usize]) -> Result<String, AutodiffError> {
        let t = self.ty(x)?.clone();
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return Ok(x.to_owned());
        }
        let dims: Vec<i64> = perm.iter().map(|&p| t.dims[p]).collect();
        let perm: Vec<i64> = perm.iter().map(|&p| to_i64(p)).collect();
        Ok(self.op(
            "Transpose",
            &[x],
            vec![attr::make_ints("perm", &perm)],
            t.with_dims(&dims),
        ))
    }

    /// `ReduceSum` of `x` over `axes` (non-negative), keeping the reduced
    /// axes as 1 when `keepdims`; nothing when `axes` is empty.
    ///
    /// # Errors
    /// `x` has no type.
    pub fn reduce_sum(
        &mut self,
        x: &str,
        axes: &[usize],
        keepdims: bool,
    ) -> Result<String, AutodiffError> {
        self.reduce("ReduceSum", 13, x, axes, keepdims)
    }

    /// `ReduceMean` of `x` over `axes`, as [`Emitter::reduce_sum`].
    ///
    /// # Errors
    /// `x` has no type.
    pub fn reduce_mean(
        &mut self,
        x: &str,
        axes: &[usize],
        keepdims: bool,
    ) -> Result<String, AutodiffError> {
        self.reduce("ReduceMean", 18, x, axes, keepdims)
    }

    /// `ReduceMax` of `x` over `axes`, as [`Emitter::reduce_sum`].
    ///
    /// # Errors
    /// `x` has no type.
    pub fn reduce_max(
        &mut self,
        x: &str,
        axes: &[usize],
        keepdims: bool,
    ) -> Result<String, AutodiffError> {
        self.reduce("ReduceMax", 18, x, axes, keepdims)
    }

    fn reduce(
        &mut self,
        op_type: &str,
        axes_input_since: i64,
        x: &str,
        axes: &[usize],
        keepdims: bool,
    ) -> Result<String, AutodiffError> {
        let t = self.ty(x)?.clone();
        if axes.is_empty() {
            return Ok(x.to_owned());
        }
        let dims: Vec<i64> = t
            .dims
            .iter()
            .enumerate()
            .filter_map(|(i, &d)| {
                if axes.contains(&i) {
                    keepdims.then_some(1)
                } else {
                    Some(d)
                }
            })
            .collect();
        let axes_i: Vec<i64> = axes.iter().map(|&a| to_i64(a)).collect();
        let keep = attr::make_int("keepdims", i64::from(keepdims));
        let out = t.with_dims(&dims);
        if self.opset >= axes_input_since {
            let a = self.ints(&axes_i);
            Ok(self.op(op_type, &[x, &a], vec![keep], out))
        } else {
            Ok(self.op(
                op_type,
                &[x],
                vec![attr::make_ints("axes", &axes_i), keep],
                out,
            ))
        }
    }

    /// `g` summed over the axes along which a value of type `to` was
    /// broadcast to `g`'s shape, then reshaped to `to`'s dims: the gradient
    /// of a broadcasting operand.
    ///
    /// # Errors
    /// `g` has no type, or `to` does not broadcast to it.
    pub fn unbroadcast(&mut self, g: &str, to: &Ty) -> Result<String, AutodiffError> {
        let gt = self.ty(g)?.clone();
        if gt.dims == to.dims {
            return Ok(g.to_owned());
        }
        let (r, k) = (gt.rank(), to.rank());
        if k > r {
            return Err(AutodiffError::Internal {
                message: format!("cannot unbroadcast {:?} to {:?}", gt.dims, to.dims),
            });
        }
        let axes: Vec<usize> = (0..r)
            .filter(|&i| {
                if i < r - k {
                    true
                } else {
                    let d = to.dims[i - (r - k)];
                    d == 1 && gt.dims[i] != 1
                }
            })
            .collect();
        let s = self.reduce_sum(g, &axes, true)?;
        self.reshape(&s, &to.dims)
    }

    /// `Cast` of `x` to `elem` (nothing when it has it).
    ///
    /// # Errors
    /// `x` has no type.
    pub fn cast(&mut self, x: &str, elem: i32) -> Result<String, AutodiffError> {
        let t = self.ty(x)?.clone();
        if t.elem == elem {
            return Ok(x.to_owned());
        }
        Ok(self.op(
            "Cast",
            &[x],
            vec![attr::make_int("to", i64::from(elem))],
            t.with_elem(elem),
        ))
    }

    /// `Unsqueeze` of `x` at the (output) axes `axes`, in the opset's form.
    ///
    /// # Errors
    /// `x` has no type.
    pub fn unsqueeze(&mut self, x: &str, axes: &[usize]) -> Result<String, AutodiffError> {
        let t = self.ty(x)?.clone();
        let mut dims = t.dims.clone();
        let mut sorted = axes.to_vec();
        sorted.sort_unstable();
        for &a in &sorted {
            dims.insert(a.min(dims.len()), 1);
        }
        self.reshape(x, &dims)
    }

    /// A tensor of `ty` filled with `v` (a `ConstantOfShape`-free constant:
    /// `Expand` of a scalar).
    ///
    /// # Errors
    /// Never in practice (the scalar has a type).
    pub fn filled(&mut self, ty: &Ty, v: f64) -> Result<String, AutodiffError> {
        let s = self.scalar(ty.elem, v);
        let shape = self.ints(&ty.dims);
        if ty.dims.is_empty() {
            return Ok(s);
        }
        Ok(self.op("Expand", &[&s, &shape], Vec::new(), ty.clone()))
    }
}

/// The numpy broadcast of two shapes, if they broadcast.
#[must_use]
pub fn broadcast(a: &[i64], b: &[i64]) -> Option<Vec<i64>> {
    let r = a.len().max(b.len());
    let at = |s: &[i64], i: usize| -> i64 {
        let off = r - s.len();
        if i < off { 1 } else { s[i - off] }
    };
    (0..r)
        .map(|i| {
            let (x, y) = (at(a, i), at(b, i));
            if x == y || y == 1 {
                Some(x)
            } else if x == 1 {
                Some(y)
            } else {
                None
            }
        })
        .collect()
}

/// IEEE half-precision bits of `v` (round to nearest even).
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)] // bit fields of known widths
fn f32_to_f16_bits(v: f32) -> u16 {
    let bits = v.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let mant = bits & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if mant != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = (mant | 0x80_0000) >> (1 - e);
        let round = (m >> 12) & 1;
        return sign | ((m >> 13) + round) as u16;
    }
    let m = mant >> 13;
    let round = (mant >> 12) & 1;
    sign | (((e as u32) << 10 | m) + round) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_broadcast_like_numpy() {
        assert_eq!(broadcast(&[2, 3, 4], &[4]), Some(vec![2, 3, 4]));
        assert_eq!(broadcast(&[2, 1, 4], &[3, 1]), Some(vec![2, 3, 4]));
        assert_eq!(broadcast(&[], &[5]), Some(vec![5]));
        assert_eq!(broadcast(&[2, 3], &[4, 3]), None);
    }

    #[test]
    fn unbroadcast_sums_the_broadcast_axes_and_reshapes() {
        let mut e = Emitter::new(
            17,
            HashMap::from([("g".to_owned(), Ty::new(elem::F32, &[2, 3, 4]))]),
            HashSet::new(),
        );
        let out = e.unbroadcast("g", &Ty::new(elem::F32, &[3, 1])).unwrap();
        assert_eq!(e.ty(&out).unwrap().dims, vec![3, 1]);
        let ops: Vec<&str> = e.ops.iter().map(|o| o.node.op_type.as_str()).collect();
        assert_eq!(ops, ["ReduceSum", "Reshape"]);
        // Axes 0 (missing in the operand) and 2 (1 in the operand).
        let axes = &e.initializers[0];
        let read: Vec<i64> = axes
            .raw_data
            .chunks(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(read, vec![0, 2]);
    }

    #[test]
    fn reduce_takes_attribute_axes_before_opset_13() {
        let types = HashMap::from([("x".to_owned(), Ty::new(elem::F32, &[2, 3]))]);
        let mut old = Emitter::new(11, types.clone(), HashSet::new());
        old.reduce_sum("x", &[1], false).unwrap();
        assert_eq!(old.ops[0].node.input.len(), 1);
        assert_eq!(attr::ints(&old.ops[0].node, "axes"), Some(vec![1]));
        let mut new = Emitter::new(13, types, HashSet::new());
        new.reduce_sum("x", &[1], false).unwrap();
        assert_eq!(new.ops[0].node.input.len(), 2);
    }

    #[test]
    fn half_precision_rounds_like_ieee() {
        assert_eq!(f32_to_f16_bits(1.0), 0x3c00);
        assert_eq!(f32_to_f16_bits(-2.0), 0xc000);
        assert_eq!(f32_to_f16_bits(0.5), 0x3800);
        assert_eq!(f32_to_f16_bits(65504.0), 0x7bff);
        assert_eq!(f32_to_f16_bits(1e6), 0x7c00);
    }
}
