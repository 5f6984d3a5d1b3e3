//! What the runtime that will run a fused graph can do: the capabilities
//! fusion's rule tables and passes depend on.
//!
//! This crate knows no runtime by name: the compiler maps its `--target`
//! (onnxruntime, tract through laurel-runtime) to a [`Capabilities`], and the
//! fusion pass offers a rule only where the capabilities allow it
//! ([`crate::rules::fusion_rules`]). O(1) everywhere.

/// What a fused graph may contain, and what the runtime undoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Capabilities {
    /// The runtime runs the fused weighted sum `ai.laurel::LaurelResidual`
    /// (laurel-runtime registers it with tract; onnxruntime does not know
    /// it). Enables [`crate::rules::laurel_residual`].
    pub fused_residual: bool,
    /// Merged channel maps pay off: the runtime keeps `[h d]·[W; B]` and
    /// `split(x·[W₁ W₂])` as one product. tract's optimiser splits both back
    /// (a product over a concatenated contraction axis into one product per
    /// part and an `Add`, a `Slice` of a product's output into a narrower
    /// product), so there a merge only adds its copy. Enables the two merges
    /// of [`crate::rules::low_rank`].
    pub channel_map_merges: bool,
}

impl Capabilities {
    /// Standard ONNX ops only, for any runtime: no fused residual op, and
    /// merged channel maps stay merged.
    pub const STANDARD: Self = Self {
        fused_residual: false,
        channel_map_merges: true,
    };
}

impl Default for Capabilities {
    /// [`Capabilities::STANDARD`].
    fn default() -> Self {
        Self::STANDARD
    }
}
