//! What fusion may assume of a generic ONNX op: how a scalar factor on its
//! operands or on its result moves through it.
//!
//! The e-graph sees an ONNX op only as `Onnx(OpRef, children)`; its
//! attributes stay in the compiler's IR. The lowering reads them and
//! declares, per op output, one [`OpSemantics`]
//! ([`crate::graph::TensorGraph::declare_semantics`]); the fusion rules
//! ([`crate::rules::homogeneous`], [`crate::rules::weights`],
//! [`crate::rules::norm`]) consult it. An op without a declaration is
//! opaque: no rule looks through it.
//!
//! Children are numbered as in the term: the op's present inputs in order
//! (absent optional inputs are not children), then any attribute operands
//! the declaration names (a norm's ε).
//!
//! Complexity: O(1) lookups.

use crate::block::Layout;

/// How a scalar factor `c` moves through a generic op (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpSemantics {
    /// `f(…, c·x_i, …) = c·f(…, x_i, …)` for each listed input `i` (alone).
    /// `positive_only`: only for `c > 0` (`Relu`, `LeakyRelu`, `MaxPool`);
    /// otherwise for every `c` (linear maps: `Reshape`, `Transpose`,
    /// `AveragePool`, `ReduceMean`, …).
    Homogeneous {
        /// The inputs the op is homogeneous in.
        inputs: Vec<usize>,
        /// Whether `c` must be positive.
        positive_only: bool,
    },
    /// `f(c·x_0, …, c·x_n) = c·f(x_0, …, x_n)` when every input carries the
    /// same factor (`Concat`, `Sum`, `Max`, …); `positive_only` as above.
    Uniform {
        /// Whether `c` must be positive.
        positive_only: bool,
    },
    /// A linear op with constant weights, `f(x, w_1, …)` (`Conv`,
    /// `ConvTranspose`, `Gemm`, `MatMul` with a constant operand,
    /// `BatchNormalization`):
    /// - `c·f(x, w) = f(x, w')` with `w'_j = c^e·w_j` for each `(j, e)` of
    ///   `output_into`;
    /// - `f(c·x, w) = f(x, w')` with `w'_j = c^e·w_j` for each `(j, e)` of
    ///   `input_into`.
    ///
    /// Both hold for every `c ≠ 0`. A listed child the op does not have (an
    /// absent bias) is skipped; the lowering declares this only when every
    /// listed child is a constant.
    Linear {
        /// The data input.
        input: usize,
        /// Where a factor on the result goes.
        output_into: Vec<(usize, i32)>,
        /// Where a factor on the data input goes.
        input_into: Vec<(usize, i32)>,
        /// Which weight axis meets which data axis (input channels), when
        /// the op contracts them one to one: a factor on one channel range
        /// of the data goes into that range of the weight.
        contraction: Option<Contraction>,
    },
    /// A scale-invariant normalisation with an ε inside the square root
    /// (`LayerNormalization`, `RMSNormalization`, `InstanceNormalization`,
    /// `GroupNormalization`): `f(c·x; ε) = f(x; ε/c²)` for `c > 0`. Child
    /// `eps` is the ε attribute as a `Num`; lifting writes it back.
    Norm {
        /// The normalised input.
        input: usize,
        /// The child holding ε.
        eps: usize,
    },
    /// `Pow(c·x, p) = c^p·Pow(x, p)` for a constant integer exponent `p`.
    Power {
        /// The exponent.
        exponent: i32,
    },
    /// `Sqrt(c·x) = √c·Sqrt(x)` for `c > 0` whose square root is rational.
    Sqrt,
    /// `Reciprocal(c·x) = (1/c)·Reciprocal(x)` for `c ≠ 0`.
    Reciprocal,
}

/// How a linear op ([`OpSemantics::Linear`]) pairs its data input's channels
/// with a weight: `f(x, w)` is linear in each channel slice of `x` along
/// `data_axis`, and slice `i` of `x` meets only slice `i` of `w` along
/// `weight_axis` (`Conv` with one group: axes 1 and 1; `ConvTranspose`: 1
/// and 0; `MatMul(x, W)`: the last and the second last; `Gemm`: 1 and 0, or 1 with
/// `transB`). So `f(concat(c₀·x₀, x₁), w) = f(concat(x₀, x₁), w′)` with the
/// first channel range of `w′` scaled by `c₀`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contraction {
    /// The contracted axis of the data input, ONNX-style: negative counts
    /// from the end (`-1` for `MatMul`'s last axis).
    pub data_axis: i64,
    /// The weight's child.
    pub weight: usize,
    /// The weight's axis that meets it, negative from the end.
    pub weight_axis: i64,
}

impl OpSemantics {
    /// The semantics' name, for reports.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            OpSemantics::Homogeneous { .. } => "homogeneous",
            OpSemantics::Uniform { .. } => "uniform",
            OpSemantics::Linear { .. } => "linear",
            OpSemantics::Norm { .. } => "norm",
            OpSemantics::Power { .. } => "power",
            OpSemantics::Sqrt => "sqrt",
            OpSemantics::Reciprocal => "reciprocal",
        }
    }
}

/// A per-position linear map along the channel axis with a constant weight,
/// `y = x ·_C W`: `MatMul(x, W)` with `W: [in, out]` ([`Layout::ChannelLast`])
/// or a 1×1 `Conv(x, W)` with `W: [out, in, 1, 1]`, unit strides, no
/// padding, one group and no bias ([`Layout::ChannelFirst`]). The lowering
/// declares it ([`crate::graph::TensorGraph::declare_channel_map`]) next to
/// the op's [`OpSemantics`]; the low-rank rules ([`crate::rules::low_rank`])
/// compose such maps and fold a skip into them. A reused op's FLOPs follow
/// its children: `2 · elements(y) · in`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelMap {
    /// The data input's child.
    pub input: usize,
    /// The weight's child.
    pub weight: usize,
    /// Where the channel axis is, which fixes the weight's layout.
    pub layout: Layout,
}
