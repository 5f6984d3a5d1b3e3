//! [`Implementation::Kernel`](super::Implementation::Kernel): `LaurelResidual` as one
//! typed op with its own kernel.
//!
//! When every kept term has the output's shape (no broadcasting), the kernel makes a
//! single pass over memory, [`CHUNK`] elements at a time: the first kept term (scaled),
//! then `acc + cᵢ·tᵢ` for each other kept term, so that the chunk of the output stays
//! in cache while the terms stream through it. The output is the buffer of a kept input
//! nothing else holds (the residual branch `f` just produced, typically), else a new
//! one; when that input is not the first kept term, each chunk is summed in a scratch
//! chunk first, so that the input's values are read before they are overwritten. With
//! broadcasting, it makes one pass per term over the output. Either way each element
//! sees the operations of the definition in its order, in the element type, so results
//! are bit-identical to it.

use tract_onnx::tract_hir::internal::{
    AxesMapping, AxisChangeConsequence, AxisOp, Cost, DatumType, DatumTypeExt, EvalContext, EvalOp,
    InOut, IntoTValue, IntoTensor, Op, StaticName, TDim, TValue, TVec, Tensor, TractErrorContext,
    TractResult, TypedFact, TypedModel, TypedNode, TypedOp, Validation, as_op, bail, ensure, f16,
    op_as_typed_op, op_out_of_plan, tvec,
};

use super::{Element, MIN_INPUTS, OP_TYPE, Term, element_type, output_shape, same_bits, term};

/// Elements per chunk of the single-pass kernel: 16 KiB of f32, so that the chunk
/// of the output stays in L1 while every term streams through it.
const CHUNK: usize = 4096;

/// `LaurelResidual` as a typed op: `y = Σᵢ cᵢ·tᵢ` over inputs of equal rank (the
/// expansion that wires it broadcasts ranks first), evaluated by its own kernel.
#[derive(Clone, Debug)]
pub struct LaurelResidualKernel {
    coefficients: Vec<f32>,
}

impl LaurelResidualKernel {
    /// The op with one coefficient per input. Fails with fewer than
    /// [`MIN_INPUTS`](super::MIN_INPUTS).
    pub fn new(coefficients: Vec<f32>) -> TractResult<Self> {
        ensure!(
            coefficients.len() >= MIN_INPUTS,
            "{OP_TYPE} takes at least {MIN_INPUTS} inputs, got {}",
            coefficients.len()
        );
        Ok(LaurelResidualKernel { coefficients })
    }

    /// One coefficient per input.
    #[must_use]
    pub fn coefficients(&self) -> &[f32] {
        &self.coefficients
    }

    fn kept_terms(&self, dt: DatumType) -> TractResult<usize> {
        let mut kept = 0;
        for &c in &self.coefficients {
            if !matches!(super::term_tensor(c, dt)?, Term::Dropped) {
                kept += 1;
            }
        }
        Ok(kept)
    }
}

// Coefficients compare by bits: the op is the same op exactly when they are the same
// floats, NaNs included.
impl PartialEq for LaurelResidualKernel {
    fn eq(&self, other: &Self) -> bool {
        same_bits(&self.coefficients, &other.coefficients)
    }
}

impl Eq for LaurelResidualKernel {}

impl Op for LaurelResidualKernel {
    fn name(&self) -> StaticName {
        OP_TYPE.into()
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("coefficients: {:?}", self.coefficients)])
    }

    op_as_typed_op!();
}

impl EvalOp for LaurelResidualKernel {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(
            inputs.len() == self.coefficients.len(),
            "{OP_TYPE} with {} coefficients evaluated on {} inputs",
            self.coefficients.len(),
            inputs.len()
        );
        let types: Vec<_> = inputs.iter().map(|t| t.datum_type()).collect();
        let out = match element_type(&types)? {
            DatumType::F16 => eval_t::<f16>(&self.coefficients, inputs)?,
            DatumType::F32 => eval_t::<f32>(&self.coefficients, inputs)?,
            DatumType::F64 => eval_t::<f64>(&self.coefficients, inputs)?,
            dt => bail!("{OP_TYPE} inputs must be f16, f32 or f64 tensors, got {dt:?}"),
        };
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for LaurelResidualKernel {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs.len() == self.coefficients.len(),
            "{OP_TYPE} with {} coefficients wired to {} inputs",
            self.coefficients.len(),
            inputs.len()
        );
        let rank = inputs[0].rank();
        ensure!(
            inputs.iter().all(|f| f.rank() == rank),
            "{OP_TYPE} kernel inputs must have the same rank: {inputs:?}"
        );
        let types: Vec<_> = inputs.iter().map(|f| f.datum_type).collect();
        let dt = element_type(&types)?;
        let shapes: Vec<TVec<TDim>> = inputs.iter().map(|f| f.shape.to_tvec()).collect();
        Ok(tvec!(dt.fact(&*output_shape(&shapes)?)))
    }

    fn axes_mapping(
        &self,
        inputs: &[&TypedFact],
        outputs: &[&TypedFact],
    ) -> TractResult<AxesMapping> {
        AxesMapping::natural(inputs, outputs)
    }

    fn change_axes(
        &self,
        model: &TypedModel,
        node: &TypedNode,
        _io: InOut,
        change: &AxisOp,
    ) -> TractResult<Option<AxisChangeConsequence>> {
        let (inputs, outputs) = model.node_facts(node.id)?;
        let ok = match change {
            AxisOp::Add(_) | AxisOp::Move(..) => true,
            // The axis must go from every input and from the output.
            AxisOp::Rm(axis) => inputs
                .iter()
                .chain(outputs.iter())
                .all(|f| f.rank() > *axis && f.shape[*axis].is_one()),
            // A reshape applies to broadcast inputs only if they are not broadcast.
            AxisOp::Reshape(..) => inputs.iter().all(|f| f.shape == outputs[0].shape),
        };
        Ok(ok.then(|| AxisChangeConsequence::new(model, node, None, change)))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let out = self.output_facts(inputs)?;
        let count: TDim = out[0].shape.iter().product();
        let kept = self.kept_terms(out[0].datum_type)?;
        Ok(tvec!((Cost::FMA(out[0].datum_type), count * kept)))
    }

    as_op!();
}

/// Evaluates the op on inputs of element type `T`.
fn eval_t<T: Element>(coefficients: &[f32], inputs: TVec<TValue>) -> TractResult<Tensor> {
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
    let shape = output_shape(&shapes)?;
    let terms: Vec<(usize, Term<T>)> = coefficients
        .iter()
        .map(|&c| term::<T>(c))
        .enumerate()
        .filter(|(_, t)| *t != Term::Dropped)
        .collect();
    if terms.is_empty() {
        return Tensor::zero_dt(T::datum_type(), &shape);
    }
    let contiguous = |t: &TValue| -> TractResult<bool> {
        Ok(*t.shape() == *shape && t.to_plain_array_view::<T>()?.as_slice().is_some())
    };
    let mut fused = true;
    for &(ix, _) in &terms {
        fused &= contiguous(&inputs[ix])?;
    }
    if fused {
        single_pass(inputs, &terms, &shape)
    } else {
        per_term(&inputs, &terms, &shape)
    }
}

/// The single-pass kernel: every term of `terms` is a contiguous tensor of shape
/// `shape`.
fn single_pass<T: Element>(
    inputs: TVec<TValue>,
    terms: &[(usize, Term<T>)],
    shape: &[usize],
) -> TractResult<Tensor> {
    // The output goes into the buffer of a kept input nothing else holds, if any.
    let reuse = terms.iter().position(|&(ix, _)| inputs[ix].is_exclusive());
    let mut inputs: Vec<Option<TValue>> = inputs.into_iter().map(Some).collect();
    let mut output = match reuse {
        Some(pos) => match inputs[terms[pos].0].take() {
            Some(t) => t.into_tensor(),
            None => bail!("{OP_TYPE}: input {} taken twice", terms[pos].0),
        },
        None => Tensor::zero_dt(T::datum_type(), shape)?,
    };
    let views = inputs
        .iter()
        .map(|t| t.as_ref().map(|t| t.to_plain_array_view::<T>()).transpose())
        .collect::<TractResult<Vec<_>>>()?;
    // The sources of the terms, in order; `None` is the output buffer itself.
    let mut sources: Vec<(Option<&[T]>, Term<T>)> = Vec::with_capacity(terms.len());
    for &(ix, t) in terms {
        let source = match &views[ix] {
            Some(v) => Some(
                v.as_slice()
                    .context("non-contiguous LaurelResidual input")?,
            ),
            None => None,
        };
        sources.push((source, t));
    }
    {
        let mut out_view = output.to_plain_array_view_mut::<T>()?;
        let out = out_view
            .as_slice_mut()
            .context("non-contiguous LaurelResidual output")?;
        match reuse {
            // The output buffer is the first term's, or a new one: sum in place.
            None | Some(0) => in_place(out, &sources),
            // It is a later term's, read before it is overwritten: sum in a scratch chunk.
            Some(_) => with_scratch(out, &sources),
        }
    }
    Ok(output)
}

/// Sums `sources` chunk by chunk into `out`, where a `None` source can only be the
/// first one and stands for `out` itself.
fn in_place<T: Element>(out: &mut [T], sources: &[(Option<&[T]>, Term<T>)]) {
    let len = out.len();
    let mut start = 0;
    while start < len {
        let end = (start + CHUNK).min(len);
        let acc = &mut out[start..end];
        for (pos, &(source, t)) in sources.iter().enumerate() {
            match (pos, source) {
                (0, None) => scale(acc, t),
                (0, Some(s)) => assign(acc, &s[start..end], t),
                (_, Some(s)) => accumulate(acc, &s[start..end], t),
                // Not built by `single_pass`.
                (_, None) => {}
            }
        }
        start = end;
    }
}

/// Sums `sources` chunk by chunk into a scratch chunk, then copies it into `out`; a
/// `None` source stands for `out` itself.
fn with_scratch<T: Element>(out: &mut [T], sources: &[(Option<&[T]>, Term<T>)]) {
    let len = out.len();
    let mut scratch = vec![T::ZERO; CHUNK.min(len)];
    let mut start = 0;
    while start < len {
        let end = (start + CHUNK).min(len);
        let acc = &mut scratch[..end - start];
        for (pos, &(source, t)) in sources.iter().enumerate() {
            let src = match source {
                Some(s) => &s[start..end],
                None => &out[start..end],
            };
            if pos == 0 {
                assign(acc, src, t);
            } else {
                accumulate(acc, src, t);
            }
        }
        out[start..end].copy_from_slice(acc);
        start = end;
    }
}

/// The broadcasting kernel: one pass per term over the output.
fn per_term<T: Element>(
    inputs: &[TValue],
    terms: &[(usize, Term<T>)],
    shape: &[usize],
) -> TractResult<Tensor> {
    let mut output = Tensor::zero_dt(T::datum_type(), shape)?;
    {
        let mut out = output.to_plain_array_view_mut::<T>()?;
        for (pos, &(ix, t)) in terms.iter().enumerate() {
            let view = inputs[ix].to_plain_array_view::<T>()?;
            let src = view.broadcast(out.raw_dim()).with_context(|| {
                format!("{OP_TYPE}: input {ix} does not broadcast to {shape:?}")
            })?;
            match (pos, t) {
                (0, Term::Scaled(c)) => out.zip_mut_with(&src, |d, &s| *d = c * s),
                (0, _) => out.assign(&src),
                (_, Term::Scaled(c)) => out.zip_mut_with(&src, |d, &s| *d = *d + c * s),
                (_, _) => out.zip_mut_with(&src, |d, &s| *d = *d + s),
            }
        }
    }
    Ok(output)
}

/// `dst = c·dst` (or nothing).
fn scale<T: Element>(dst: &mut [T], t: Term<T>) {
    if let Term::Scaled(c) = t {
        for d in dst.iter_mut() {
            *d = c * *d;
        }
    }
}

/// `dst = c·src` (or `src`).
fn assign<T: Element>(dst: &mut [T], src: &[T], t: Term<T>) {
    match t {
        Term::Scaled(c) => dst.iter_mut().zip(src).for_each(|(d, &s)| *d = c * s),
        Term::Unscaled | Term::Dropped => dst.copy_from_slice(src),
    }
}

/// `dst = dst + c·src` (or `dst + src`).
fn accumulate<T: Element>(dst: &mut [T], src: &[T], t: Term<T>) {
    match t {
        Term::Scaled(c) => dst.iter_mut().zip(src).for_each(|(d, &s)| *d = *d + c * s),
        Term::Unscaled | Term::Dropped => dst.iter_mut().zip(src).for_each(|(d, &s)| *d = *d + s),
    }
}
