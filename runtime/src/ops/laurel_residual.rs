//! `ai.laurel::LaurelResidual`, the fused `LAuReL` residual:
//! `y = Σᵢ cᵢ·tᵢ + Σⱼ cⱼ·(pⱼ·Bⱼ)`.
//!
//! `docs/laurel-op.md` is the normative definition; in short:
//!
//! - domain [`DOMAIN`], op type [`OP_TYPE`], since version [`SINCE_VERSION`]; the model
//!   must import the domain at that version;
//! - the terms `t₀ = f` (the residual branch), `t₁ = x` (the skip), `t₂…` (further
//!   terms), then, with attribute [`LOW_RANK`] = k, k pairs `(pⱼ, Bⱼ)` of low-rank
//!   products; at least [`MIN_INPUTS`] summands and one term, all of one element type
//!   among f16, f32 and f64; the terms and the products broadcast together as numpy
//!   (and ONNX `Sum`) broadcast;
//! - optional attribute [`COEFFICIENTS`] (floats), one per summand (terms, then
//!   products), all 1 when absent;
//! - one output of the inputs' element type and broadcast shape: the terms
//!   accumulated left to right in the element type, each `cᵢ` first converted to it; a
//!   converted coefficient equal to 1 multiplies nothing, one equal to 0 drops its
//!   summand, and if every term is dropped the sum is +0 everywhere; then each kept
//!   product added, computed to rounding (as a `MatMul`).
//!
//! Three implementations, chosen by [`Implementation`] when the op is registered
//! ([`register`]):
//!
//! - [`Implementation::Expansion`] wires tract core ops (`Mul` by a scalar constant,
//!   `Add`, and a `MatMul` per product), which tract's optimiser then fuses like any
//!   other elementwise chain, into a matrix product's epilogue included.
//! - [`Implementation::Kernel`] wires one [`LaurelResidualKernel`] node, a single pass
//!   over memory, and, for f32 products that fit it, one [`LowRankAccumulate`] node
//!   that adds them into that sum ([`low_rank`]).
//! - [`Implementation::Auto`] picks one of the two per node, by element type and
//!   coefficients, after the measurements of `docs/laurel-op.md`, and takes the
//!   low-rank kernel for f32 products that fit it.
//!
//! On the terms they agree bit for bit, with one exception that is tract's: after an
//! f16 `MatMul`, tract fuses the expansion's ops into the product's epilogue, which
//! does not round to f16 between them (standard-ONNX `Mul` and `Add` there are fused
//! the same way). The kernel, and so `Auto`, which uses it for f16, follow the
//! definition. Products are computed to rounding: the low-rank kernel (fused
//! multiply-adds, the coefficient applied to `p` first) and a `MatMul` differ in the
//! last bits.
//!
//! [`crate::ops::register`] registers [`Implementation::REGISTERED`].

use std::ops::{Add, Mul};

use tract_onnx::model::ParsingContext;
use tract_onnx::pb;
use tract_onnx::tract_core::broadcast::multi_broadcast;
use tract_onnx::tract_core::ops::change_axes::wire_rank_broadcast;
use tract_onnx::tract_hir::internal::{
    Datum, DatumType, DatumTypeExt, DimLike, Expansion, InferenceOp, InferenceResult, OutletId,
    ShapeFactoid, Solver, SpecialOps, StaticName, TDim, TVec, Tensor, TensorProxy,
    TractErrorContext, TractResult, TypedFact, TypedModel, Validation, bail, check_input_arity,
    check_output_arity, ensure, expand, f16, tensor0, tensor1, tvec,
};

mod expansion;
mod kernel;
pub mod low_rank;

pub use kernel::LaurelResidualKernel;
pub use low_rank::LowRankAccumulate;
use tract_onnx::tract_hir::ops::matmul::MatMulInference;

/// The op's domain.
pub const DOMAIN: &str = "ai.laurel";
/// The op's type.
pub const OP_TYPE: &str = "LaurelResidual";
/// The version of [`DOMAIN`] that defines the op, and the only one that exists.
pub const SINCE_VERSION: i64 = 1;
/// The name of the optional coefficient attribute (type FLOATS).
pub const COEFFICIENTS: &str = "coefficients";
/// The name of the optional low-rank attribute (type INT): how many `(p, B)` pairs
/// end the inputs.
pub const LOW_RANK: &str = "low_rank";
/// The least number of summands (terms and low-rank products).
pub const MIN_INPUTS: usize = 2;

/// How the op is computed once the model is typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Implementation {
    /// tract core `Mul` (by a scalar constant) and `Add` ops, left to right.
    Expansion,
    /// One [`LaurelResidualKernel`] node.
    Kernel,
    /// Per node, the better of the two on the measurements of `docs/laurel-op.md`:
    /// for f32, the kernel when a kept term other than the first is scaled, the
    /// expansion otherwise (tract turns it into one in-place pass, or a matrix
    /// product's epilogue); for f64 and f16, always the kernel (tract's f64
    /// elementwise ops are slow, and its f16 matrix-product epilogue does not round
    /// to f16 between operations as the definition does).
    Auto,
}

impl Implementation {
    /// The implementation [`crate::ops::register`] registers.
    pub const REGISTERED: Implementation = Implementation::Auto;

    /// Every implementation.
    pub const ALL: [Implementation; 3] = [
        Implementation::Expansion,
        Implementation::Kernel,
        Implementation::Auto,
    ];

    /// A short lower-case name: `expansion`, `kernel` or `auto`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Implementation::Expansion => "expansion",
            Implementation::Kernel => "kernel",
            Implementation::Auto => "auto",
        }
    }
}

impl std::fmt::Display for Implementation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A tract-onnx op builder.
type Builder =
    fn(&ParsingContext, &pb::NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// Registers `LaurelResidual` with a tract-onnx framework, computed by
/// `implementation`. [`crate::ops::register`] calls this with
/// [`Implementation::REGISTERED`]; call it directly to pick another one (to compare
/// or benchmark them). A later registration replaces an earlier one.
pub fn register(onnx: &mut tract_onnx::Onnx, implementation: Implementation) {
    let builder: Builder = match implementation {
        Implementation::Expansion => build_expansion,
        Implementation::Kernel => build_kernel,
        Implementation::Auto => build_auto,
    };
    onnx.op_register.insert(OP_TYPE, builder);
}

fn build(
    ctx: &ParsingContext,
    node: &pb::NodeProto,
    implementation: Implementation,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let op = LaurelResidual::from_node(ctx.model, node, implementation)?;
    Ok((expand(op), vec![]))
}

fn build_expansion(
    ctx: &ParsingContext,
    node: &pb::NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    build(ctx, node, Implementation::Expansion)
}

fn build_kernel(
    ctx: &ParsingContext,
    node: &pb::NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    build(ctx, node, Implementation::Kernel)
}

fn build_auto(
    ctx: &ParsingContext,
    node: &pb::NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    build(ctx, node, Implementation::Auto)
}

/// A parsed `LaurelResidual` node, as tract sees it before typing: the inference rules
/// of the op and its translation into a typed model by its [`Implementation`].
#[derive(Clone, Debug, PartialEq)]
pub struct LaurelResidual {
    coefficients: Vec<f32>,
    low_rank: usize,
    implementation: Implementation,
}

impl LaurelResidual {
    /// The op with one coefficient per input and no low-rank products (so one input
    /// per summand). Fails with fewer than [`MIN_INPUTS`].
    pub fn new(coefficients: Vec<f32>, implementation: Implementation) -> TractResult<Self> {
        Self::with_low_rank(coefficients, 0, implementation)
    }

    /// The op whose last `low_rank` summands are products `p·B` (inputs `p, B`), with
    /// one coefficient per summand: `coefficients.len() - low_rank` terms first. Fails
    /// with fewer than [`MIN_INPUTS`] summands or without a term.
    pub fn with_low_rank(
        coefficients: Vec<f32>,
        low_rank: usize,
        implementation: Implementation,
    ) -> TractResult<Self> {
        ensure!(
            coefficients.len() >= MIN_INPUTS,
            "{OP_TYPE} takes at least {MIN_INPUTS} summands, got {}",
            coefficients.len()
        );
        ensure!(
            low_rank < coefficients.len(),
            "{OP_TYPE} needs a term besides its {low_rank} low-rank products"
        );
        Ok(LaurelResidual {
            coefficients,
            low_rank,
            implementation,
        })
    }

    /// How many inputs the op takes: a term per coefficient, two per product.
    #[must_use]
    pub fn arity(&self) -> usize {
        self.coefficients.len() + self.low_rank
    }

    /// How many summands are low-rank products (the `low_rank` attribute).
    #[must_use]
    pub fn low_rank(&self) -> usize {
        self.low_rank
    }

    /// Parses and validates a node of `model` (whose opset imports are checked):
    /// everything the op's definition says about a node short of the input types and
    /// shapes, which are checked when the model is analysed and typed.
    pub fn from_node(
        model: &pb::ModelProto,
        node: &pb::NodeProto,
        implementation: Implementation,
    ) -> TractResult<Self> {
        ensure!(
            node.op_type == OP_TYPE,
            "a {OP_TYPE} builder was given a {} node",
            node.op_type
        );
        if node.domain != DOMAIN {
            let domain = if node.domain.is_empty() {
                "the default ONNX domain".to_owned()
            } else {
                format!("domain `{}`", node.domain)
            };
            bail!("{OP_TYPE} is an op of domain `{DOMAIN}`, this node is in {domain}");
        }
        match model.opset_import.iter().find(|o| o.domain == DOMAIN) {
            None => bail!(
                "the model does not import the `{DOMAIN}` opset \
                 (opset_import {{ domain: \"{DOMAIN}\", version: {SINCE_VERSION} }})"
            ),
            Some(o) if o.version != SINCE_VERSION => bail!(
                "the model imports `{DOMAIN}` version {}; only version {SINCE_VERSION} is defined",
                o.version
            ),
            Some(_) => {}
        }
        let arity = node.input.len();
        if let Some(ix) = node.input.iter().position(String::is_empty) {
            bail!("input {ix} is empty: {OP_TYPE} has no optional inputs");
        }
        ensure!(
            node.output.len() == 1 && !node.output[0].is_empty(),
            "{OP_TYPE} has exactly one output, this node has {:?}",
            node.output
        );
        if let Some(a) = node
            .attribute
            .iter()
            .find(|a| a.name != COEFFICIENTS && a.name != LOW_RANK)
        {
            bail!(
                "unknown attribute `{}` ({OP_TYPE} has two attributes, `{COEFFICIENTS}` and \
                 `{LOW_RANK}`)",
                a.name
            );
        }
        for name in [COEFFICIENTS, LOW_RANK] {
            ensure!(
                node.attribute.iter().filter(|a| a.name == name).count() <= 1,
                "attribute `{name}` is given more than once"
            );
        }
        let low_rank = match node.get_attr_opt::<i64>(LOW_RANK)? {
            Some(k) => usize::try_from(k)
                .ok()
                .filter(|&k| 2 * k < arity)
                .with_context(|| {
                    format!(
                        "attribute `{LOW_RANK}` = {k}: it must be ≥ 0, and leave a term \
                         before its {k} (p, B) pairs among the {arity} inputs"
                    )
                })?,
            None => 0,
        };
        let summands = arity - low_rank;
        // Without products, summands are inputs.
        let what = if low_rank == 0 { "inputs" } else { "summands" };
        ensure!(
            summands >= MIN_INPUTS,
            "{OP_TYPE} takes at least {MIN_INPUTS} {what}, this node has {summands}"
        );
        let coefficients = match node.get_attr_opt_vec::<f32>(COEFFICIENTS)? {
            Some(c) => {
                ensure!(
                    c.len() == summands,
                    "attribute `{COEFFICIENTS}` has {} values for {summands} {what}",
                    c.len()
                );
                c
            }
            None => vec![1.0; summands],
        };
        Self::with_low_rank(coefficients, low_rank, implementation)
    }

    /// One coefficient per summand, terms then products (all 1 when the node has no
    /// `coefficients`).
    #[must_use]
    pub fn coefficients(&self) -> &[f32] {
        &self.coefficients
    }

    /// The implementation the op translates into when the model is typed.
    #[must_use]
    pub fn implementation(&self) -> Implementation {
        self.implementation
    }
}

impl Expansion for LaurelResidual {
    fn name(&self) -> StaticName {
        OP_TYPE.into()
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![
            format!("coefficients: {:?}", self.coefficients),
            format!("low-rank products: {}", self.low_rank),
            format!("implementation: {}", self.implementation),
        ])
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, self.arity())?;
        check_output_arity(outputs, 1)?;
        s.given_all(
            inputs.iter().map(|i| &i.datum_type),
            move |s, types: Vec<DatumType>| s.equals(&outputs[0].datum_type, element_type(&types)?),
        )?;
        let low_rank = self.low_rank;
        s.given_all(
            inputs.iter().map(|i| &i.shape),
            move |s, shapes: Vec<TVec<TDim>>| {
                s.equals(
                    &outputs[0].shape,
                    ShapeFactoid::from(output_shape(&summand_shapes(&shapes, low_rank)?)?),
                )
            },
        )
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        ensure!(
            inputs.len() == self.arity(),
            "{OP_TYPE} with {} coefficients and {} low-rank products wired to {} inputs",
            self.coefficients.len(),
            self.low_rank,
            inputs.len()
        );
        let facts = inputs
            .iter()
            .map(|o| model.outlet_fact(*o).cloned())
            .collect::<TractResult<Vec<TypedFact>>>()?;
        let types: Vec<DatumType> = facts.iter().map(|f| f.datum_type).collect();
        let dt = element_type(&types)?;
        let shapes: Vec<TVec<TDim>> = facts.iter().map(|f| f.shape.to_tvec()).collect();
        let shape = output_shape(&summand_shapes(&shapes, self.low_rank)?)?;
        let n = self.coefficients.len() - self.low_rank;
        let (terms, pairs) = inputs.split_at(n);
        let (term_coefficients, product_coefficients) = self.coefficients.split_at(n);
        if self.low_rank > 0 && self.implementation != Implementation::Expansion {
            // The products into the terms' sum, by the low-rank kernel, when they fit it.
            let term_shape = output_shape(&shapes[..n])?;
            let mut kept_pairs = Vec::new();
            let mut kept_coefficients = Vec::new();
            for (pair, &c) in pairs.chunks_exact(2).zip(product_coefficients) {
                if !matches!(term_tensor(c, dt)?, Term::Dropped) {
                    kept_pairs.extend_from_slice(pair);
                    kept_coefficients.push(c);
                }
            }
            let acc_fact = dt.fact(&*term_shape);
            let pair_facts: Vec<(&TypedFact, &TypedFact)> = facts[n..]
                .chunks_exact(2)
                .map(|pair| (&pair[0], &pair[1]))
                .collect();
            if term_shape == shape && LowRankAccumulate::fits(&acc_fact, &pair_facts) {
                let acc = self.wire_terms(
                    &format!("{prefix}.terms"),
                    model,
                    terms,
                    term_coefficients,
                    dt,
                    &shape,
                )?[0];
                if kept_coefficients.is_empty() {
                    return Ok(tvec!(acc));
                }
                // A constant `B` goes to the kernel packed, once.
                let cols = shape.last().and_then(|d| d.to_usize().ok());
                let mut wires = vec![acc];
                let mut packed = Vec::with_capacity(kept_coefficients.len());
                for (j, pair) in kept_pairs.chunks_exact(2).enumerate() {
                    let konst = model.outlet_fact(pair[1])?.konst.clone();
                    let rank = konst.as_ref().and_then(|b| b.shape().first().copied());
                    wires.push(pair[0]);
                    if let (Some(b), Some(cols), Some(rank)) = (konst, cols, rank) {
                        let values = b.to_plain_array_view::<f32>()?;
                        let values = values.as_slice().context("non-contiguous B")?;
                        let name = model.unique_name(format!("{prefix}.packed.{j}"));
                        let tensor = tensor1(&low_rank::pack(values, rank, cols));
                        wires.push(model.add_const(name, tensor)?);
                        packed.push(true);
                    } else {
                        wires.push(pair[1]);
                        packed.push(false);
                    }
                }
                let op = LowRankAccumulate::with_packed(kept_coefficients, packed)?;
                return model.wire_node(prefix, op, &wires);
            }
        }
        // Otherwise each product is a `MatMul`, then a term like the others.
        let mut all = terms.to_vec();
        for (j, pair) in pairs.chunks_exact(2).enumerate() {
            let name = model.unique_name(format!("{prefix}.product.{j}"));
            all.push(MatMulInference::default().wire(&name, model, pair)?[0]);
        }
        self.wire_terms(prefix, model, &all, &self.coefficients, dt, &shape)
    }
}

impl LaurelResidual {
    /// Wires `y = Σᵢ cᵢ·tᵢ` over `inputs` (of element type `dt`, broadcasting to
    /// `shape`), by the kernel or the expansion as [`Implementation`] says.
    fn wire_terms(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
        coefficients: &[f32],
        dt: DatumType,
        shape: &[TDim],
    ) -> TractResult<TVec<OutletId>> {
        let wires = wire_rank_broadcast(prefix, model, inputs)?;
        let kernel = inputs.len() >= MIN_INPUTS
            && match self.implementation {
                Implementation::Expansion => false,
                Implementation::Kernel => true,
                Implementation::Auto => {
                    if dt == DatumType::F32 {
                        let mut kept = Vec::with_capacity(coefficients.len());
                        for &c in coefficients {
                            match term_tensor(c, dt)? {
                                Term::Dropped => {}
                                t => kept.push(t),
                            }
                        }
                        kept.iter().skip(1).any(|t| matches!(t, Term::Scaled(_)))
                    } else {
                        true
                    }
                }
            };
        if kernel {
            model.wire_node(
                prefix,
                LaurelResidualKernel::new(coefficients.to_vec())?,
                &wires,
            )
        } else {
            expansion::wire(prefix, model, &wires, coefficients, dt, shape)
        }
    }
}

/// Whether two coefficient lists are the same floats, bit for bit (NaNs included).
pub(crate) fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// The shapes of the summands of an op whose inputs have shapes `shapes` and whose last
/// `low_rank` summands are products: the terms' shapes, then for each pair `(p, B)`
/// the shape of `p·B` (`p`'s with its last dimension replaced by `B`'s second). `B`
/// must be a matrix whose first dimension is `p`'s last.
pub(crate) fn summand_shapes<D: DimLike>(
    shapes: &[TVec<D>],
    low_rank: usize,
) -> TractResult<Vec<TVec<D>>> {
    let Some(terms) = shapes.len().checked_sub(2 * low_rank) else {
        bail!(
            "{OP_TYPE}: {} inputs for {low_rank} low-rank products",
            shapes.len()
        );
    };
    let mut out: Vec<TVec<D>> = shapes[..terms].to_vec();
    for pair in shapes[terms..].chunks_exact(2) {
        let (left, right) = (&pair[0], &pair[1]);
        match (left.split_last(), right.as_slice()) {
            (Some((depth, lead)), [rows, cols]) if depth == rows => {
                let mut shape: TVec<D> = lead.iter().cloned().collect();
                shape.push(cols.clone());
                out.push(shape);
            }
            _ => bail!(
                "{OP_TYPE}: a low-rank product of {left:?} by {right:?}: the second must \
                 be a matrix whose first dimension is the last of the first"
            ),
        }
    }
    Ok(out)
}

/// The element type of inputs of types `types`: their common type, which must be a
/// float type of the op.
pub(crate) fn element_type(types: &[DatumType]) -> TractResult<DatumType> {
    let Some(&first) = types.first() else {
        bail!("{OP_TYPE} has no inputs");
    };
    if let Some((ix, dt)) = types.iter().enumerate().find(|(_, dt)| **dt != first) {
        bail!(
            "{OP_TYPE} inputs must all have the same element type: input 0 is {first:?}, \
             input {ix} is {dt:?}"
        );
    }
    ensure!(
        matches!(first, DatumType::F16 | DatumType::F32 | DatumType::F64),
        "{OP_TYPE} inputs must be f16, f32 or f64 tensors, got {first:?}"
    );
    Ok(first)
}

/// The output shape: the inputs' shapes broadcast together.
///
/// Two known sizes other than 1 on one axis are an error here, before tract's own
/// broadcasting of symbolic dimensions, which lets them through.
pub(crate) fn output_shape<D: DimLike>(shapes: &[impl AsRef<[D]>]) -> TractResult<TVec<D>> {
    let rank = shapes.iter().map(|s| s.as_ref().len()).max().unwrap_or(0);
    for axis in 1..=rank {
        let mut known: Option<i64> = None;
        for shape in shapes {
            let shape = shape.as_ref();
            let Some(d) = shape
                .len()
                .checked_sub(axis)
                .and_then(|k| shape[k].as_i64())
            else {
                continue;
            };
            match known {
                _ if d == 1 => {}
                Some(k) if k != d => {
                    let shapes: Vec<&[D]> = shapes.iter().map(AsRef::as_ref).collect();
                    bail!(
                        "{OP_TYPE} inputs do not broadcast together: shapes {shapes:?} \
                         ({k} against {d} on axis -{axis})"
                    );
                }
                _ => known = Some(d),
            }
        }
    }
    multi_broadcast(shapes).with_context(|| {
        let shapes: Vec<&[D]> = shapes.iter().map(AsRef::as_ref).collect();
        format!("{OP_TYPE} inputs do not broadcast together: shapes {shapes:?}")
    })
}

/// What a coefficient does to its term, once converted to the element type.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Term<T> {
    /// The coefficient is 0 (either sign): the term is left out of the sum.
    Dropped,
    /// The coefficient is 1: the term is summed as it is.
    Unscaled,
    /// The term is multiplied by this coefficient before it is summed.
    Scaled(T),
}

impl<T> Term<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Term<U> {
        match self {
            Term::Dropped => Term::Dropped,
            Term::Unscaled => Term::Unscaled,
            Term::Scaled(c) => Term::Scaled(f(c)),
        }
    }
}

/// An element type of the op.
pub(crate) trait Element:
    Datum + Copy + PartialEq + Add<Output = Self> + Mul<Output = Self>
{
    /// Zero.
    const ZERO: Self;
    /// One.
    const ONE: Self;
    /// A coefficient converted to this type (rounded to nearest, ties to even).
    fn from_coefficient(c: f32) -> Self;
}

impl Element for f16 {
    const ZERO: Self = f16::ZERO;
    const ONE: Self = f16::ONE;
    fn from_coefficient(c: f32) -> Self {
        f16::from_f32(c)
    }
}

impl Element for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn from_coefficient(c: f32) -> Self {
        c
    }
}

impl Element for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn from_coefficient(c: f32) -> Self {
        f64::from(c)
    }
}

/// What coefficient `c` does to its term in element type `T`.
pub(crate) fn term<T: Element>(c: f32) -> Term<T> {
    let v = T::from_coefficient(c);
    if v == T::ZERO {
        Term::Dropped
    } else if v == T::ONE {
        Term::Unscaled
    } else {
        Term::Scaled(v)
    }
}

/// What coefficient `c` does to its term in element type `dt`, a scaling coefficient
/// as a scalar tensor of that type.
pub(crate) fn term_tensor(c: f32, dt: DatumType) -> TractResult<Term<Tensor>> {
    Ok(match dt {
        DatumType::F16 => term::<f16>(c).map(tensor0),
        DatumType::F32 => term::<f32>(c).map(tensor0),
        DatumType::F64 => term::<f64>(c).map(tensor0),
        _ => bail!("{OP_TYPE} inputs must be f16, f32 or f64 tensors, got {dt:?}"),
    })
}
