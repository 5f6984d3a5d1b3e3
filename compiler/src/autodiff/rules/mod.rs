//! The vector-Jacobian product of every op type laurelc differentiates: one
//! rule per op type, one file per op family, each emitting standard ONNX ops
//! only (see `../shared/reference/autodiff.md` for the formulas).
//!
//! A rule gets the forward node ([`Vjp`]: its attributes, input and output
//! names, which inputs need a gradient, the constant values of the graph)
//! and the gradients of its outputs (`None` for an output nothing
//! differentiates), and returns one gradient per input: `None` where the
//! input needs none or has none (an index, a shape). Gradients have exactly
//! the static type of their value; broadcasting operands are unbroadcast
//! ([`Emitter::unbroadcast`]).
//!
//! | family | file | op types |
//! |---|---|---|
//! | arithmetic | [`arithmetic`] | `Add`, `Sub`, `Mul`, `Div`, `Neg`, `Sqrt`, `Reciprocal`, `Exp`, `Log`, `Pow`, `Identity`, `Cast`, `Sum`, `Max`, `Min` |
//! | activations | [`activation`] | `Relu`, `LeakyRelu`, `Sigmoid`, `Tanh`, `Erf`, `Gelu`, `Clip`, `HardSigmoid`, `HardSwish` |
//! | products | [`matmul`] | `MatMul`, `Gemm` |
//! | convolution | [`conv`] | `Conv`, `ConvTranspose` |
//! | normalisation | [`norm`] | `BatchNormalization` (inference), `LayerNormalization` |
//! | reductions | [`reduce`] | `ReduceMean`, `ReduceSum`, `ReduceMax`, `ReduceMin`, `GlobalAveragePool`, `GlobalMaxPool` |
//! | softmax | [`softmax`] | `Softmax`, `LogSoftmax` |
//! | layout | [`layout`] | `Reshape`, `Flatten`, `Squeeze`, `Unsqueeze`, `Transpose`, `Expand`, `Concat`, `Slice` |
//! | selection | [`select`] | `Where`, `Gather` |
//! | pooling | [`pool`] | `MaxPool`, `AveragePool` |
//! | resampling | [`resize`] | `Resize` (`nearest`, `linear`) |
//!
//! Ops whose derivative is zero wherever it exists ([`ZERO_DERIVATIVE`]) pass
//! no gradient. An op of any other type on the path from a trainable tensor
//! to the loss is an error naming the op and the node, never a wrong gradient.

pub mod activation;
pub mod arithmetic;
pub mod conv;
pub mod layout;
pub mod matmul;
pub mod norm;
pub mod pool;
pub mod reduce;
pub mod resize;
pub mod select;
pub mod softmax;

use std::collections::HashMap;

use onnx_protobuf::NodeProto;

use super::AutodiffError;
use super::emit::Emitter;

/// The forward node a rule differentiates.
pub struct Vjp<'a> {
    /// The node (attributes, type; its `input` list is not used).
    pub node: &'a NodeProto,
    /// The node's name for messages.
    pub display: &'a str,
    /// Input value names by slot (`""` for an absent optional input).
    pub inputs: &'a [String],
    /// Output value names by slot.
    pub outputs: &'a [String],
    /// Whether input `i` needs a gradient.
    pub needs: &'a [bool],
    /// The integer values of the graph's constants (initializers and
    /// `Constant` nodes), by value name.
    pub constants: &'a HashMap<String, Vec<i64>>,
    /// The values of the graph's small float constants (scales, bounds),
    /// by value name.
    pub floats: &'a HashMap<String, Vec<f64>>,
}

impl Vjp<'_> {
    /// Input `i`'s name, if present.
    #[must_use]
    pub fn input(&self, i: usize) -> Option<&str> {
        self.inputs
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// Whether input `i` needs a gradient.
    #[must_use]
    pub fn need(&self, i: usize) -> bool {
        self.needs.get(i).copied().unwrap_or(false)
    }

    /// The integer values of input `i`, which must be a constant.
    ///
    /// # Errors
    /// [`AutodiffError::Unsupported`] when it is not one.
    pub fn const_input(&self, i: usize) -> Result<Option<Vec<i64>>, AutodiffError> {
        let Some(name) = self.input(i) else {
            return Ok(None);
        };
        self.constants
            .get(name)
            .cloned()
            .map(Some)
            .ok_or_else(|| self.unsupported(&format!("input {i} (`{name}`) is not a constant")))
    }

    /// The float values of input `i`, which must be a small constant.
    ///
    /// # Errors
    /// [`AutodiffError::Unsupported`] when it is not one.
    pub fn float_input(&self, i: usize) -> Result<Option<Vec<f64>>, AutodiffError> {
        let Some(name) = self.input(i) else {
            return Ok(None);
        };
        self.floats
            .get(name)
            .cloned()
            .map(Some)
            .ok_or_else(|| self.unsupported(&format!("input {i} (`{name}`) is not a constant")))
    }

    /// An [`AutodiffError::Unsupported`] for this node.
    #[must_use]
    pub fn unsupported(&self, reason: &str) -> AutodiffError {
        AutodiffError::Unsupported {
            node: self.display.to_owned(),
            op_type: self.node.op_type.clone(),
            reason: reason.to_owned(),
        }
    }

    /// An axis attribute or value in `[-rank, rank)`, made non-negative.
    ///
    /// # Errors
    /// [`AutodiffError::Unsupported`] when it is out of range.
    pub fn axis(&self, axis: i64, rank: usize) -> Result<usize, AutodiffError> {
        let r = super::emit::to_i64(rank);
        if axis < -r || axis >= r {
            return Err(self.unsupported(&format!("axis {axis} is out of range for rank {rank}")));
        }
        Ok(usize::try_from(if axis < 0 { axis + r } else { axis }).unwrap_or(0))
    }
}

/// The gradients of a node's inputs.
pub type Grads = Vec<Option<String>>;

/// A vector-Jacobian product: the emitter, the node, its outputs' gradients.
pub type Rule = fn(&mut Emitter, &Vjp<'_>, &[Option<String>]) -> Result<Grads, AutodiffError>;

/// Of a sequence of candidates for one selection (inputs of `Max`, kernel
/// offsets of a `MaxPool` window), the first that attains it: `eq` ∧ ¬`taken`,
/// with `taken` (the candidates before, or-ed) updated. The first `eq` is its
/// own hit. Ties go to the first candidate, as in `PyTorch`.
///
/// # Errors
/// `eq` has no static type.
pub(crate) fn first_hit(
    e: &mut Emitter,
    eq: String,
    taken: &mut Option<String>,
) -> Result<String, AutodiffError> {
    let bool_ty = e.ty(&eq)?.clone();
    let hit = match taken.as_deref() {
        None => eq,
        Some(t) => {
            let not_t = e.op("Not", &[t], Vec::new(), bool_ty.clone());
            e.op("And", &[&eq, &not_t], Vec::new(), bool_ty.clone())
        }
    };
    *taken = Some(match taken.take() {
        None => hit.clone(),
        Some(t) => e.op("Or", &[&t, &hit], Vec::new(), bool_ty),
    });
    Ok(hit)
}

/// Ops with a zero derivative wherever one exists (their outputs are
/// indices, shapes, masks or piecewise-constant values).
pub const ZERO_DERIVATIVE: &[&str] = &[
    "Shape",
    "Size",
    "Constant",
    "ConstantOfShape",
    "Equal",
    "Greater",
    "GreaterOrEqual",
    "Less",
    "LessOrEqual",
    "Not",
    "And",
    "Or",
    "Xor",
    "Range",
    "ArgMax",
    "ArgMin",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "NonZero",
    "IsNaN",
    "IsInf",
    "EyeLike",
];

/// Every rule, by op type (default ONNX domain).
pub const RULES: &[(&str, Rule)] = &[
    ("Add", arithmetic::add),
    ("Sub", arithmetic::sub),
    ("Mul", arithmetic::mul),
    ("Div", arithmetic::div),
    ("Neg", arithmetic::neg),
    ("Sqrt", arithmetic::sqrt),
    ("Reciprocal", arithmetic::reciprocal),
    ("Exp", arithmetic::exp),
    ("Log", arithmetic::log),
    ("Pow", arithmetic::pow),
    ("Identity", arithmetic::identity),
    ("Cast", arithmetic::cast),
    ("Sum", arithmetic::sum),
    ("Relu", activation::relu),
    ("LeakyRelu", activation::leaky_relu),
    ("Sigmoid", activation::sigmoid),
    ("Tanh", activation::tanh),
    ("Erf", activation::erf),
    ("Gelu", activation::gelu),
    ("Clip", activation::clip),
    ("HardSigmoid", activation::hard_sigmoid),
    ("HardSwish", activation::hard_swish),
    ("Max", arithmetic::extremum),
    ("Min", arithmetic::extremum),
    ("ReduceMax", reduce::reduce_max),
    ("ReduceMin", reduce::reduce_max),
    ("GlobalMaxPool", reduce::global_max_pool),
    ("MatMul", matmul::matmul),
    ("Gemm", matmul::gemm),
    ("Conv", conv::conv),
    ("ConvTranspose", conv::conv_transpose),
    ("BatchNormalization", norm::batch_norm),
    ("LayerNormalization", norm::layer_norm),
    ("ReduceMean", reduce::reduce_mean),
    ("ReduceSum", reduce::reduce_sum),
    ("GlobalAveragePool", reduce::global_average_pool),
    ("Softmax", softmax::softmax),
    ("LogSoftmax", softmax::log_softmax),
    ("Reshape", layout::reshape),
    ("Flatten", layout::reshape),
    ("Squeeze", layout::reshape),
    ("Unsqueeze", layout::reshape),
    ("Transpose", layout::transpose),
    ("Expand", layout::expand),
    ("Concat", layout::concat),
    ("Slice", layout::slice),
    ("Split", layout::split),
    ("Where", select::where_),
    ("Gather", select::gather),
    ("MaxPool", pool::max_pool),
    ("AveragePool", pool::average_pool),
    ("Resize", resize::resize),
];

/// The rule for `op_type`, if there is one.
#[must_use]
pub fn rule(op_type: &str) -> Option<Rule> {
    RULES.iter().find(|(t, _)| *t == op_type).map(|(_, r)| *r)
}

/// Whether `op_type` passes no gradient.
#[must_use]
pub fn has_zero_derivative(op_type: &str) -> bool {
    ZERO_DERIVATIVE.contains(&op_type)
}

/// The one output gradient of a single-output op.
///
/// # Errors
/// [`AutodiffError::Internal`] when it is missing (the driver calls a rule
/// only when an output has a gradient).
pub fn single(v: &Vjp<'_>, g: &[Option<String>]) -> Result<String, AutodiffError> {
    g.first()
        .cloned()
        .flatten()
        .ok_or_else(|| AutodiffError::Internal {
            message: format!("{}: no output gradient", v.display),
        })
}

/// Input `i`'s name, which the rule requires.
///
/// # Errors
/// [`AutodiffError::Unsupported`] when it is absent.
pub fn required<'a>(v: &'a Vjp<'_>, i: usize) -> Result<&'a str, AutodiffError> {
    v.input(i)
        .ok_or_else(|| v.unsupported(&format!("input {i} is absent")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_op_type_has_two_rules_or_a_rule_and_a_zero_derivative() {
        let mut seen = std::collections::HashSet::new();
        for (t, _) in RULES {
            assert!(seen.insert(*t), "{t} has two rules");
            assert!(
                !has_zero_derivative(t),
                "{t} has a rule and a zero derivative"
            );
        }
    }
}
