//! # laurel-passes
//!
//! The e-graph machinery of laurelc, built on [`egg`]: the tensor language
//! and its analyses, rule tables grouped by topic, the cost model and
//! DAG-aware extraction. This crate knows nothing of protobuf or of the
//! compiler's IR: the compiler lowers its IR into this crate's terms and
//! lifts the result back. The design is `docs/egraph.md`.
//!
//! Modules:
//! - [`lang`]: [`TensorLang`], the terms, and the textual forms of their
//!   references ([`lang::ValueRef`], [`lang::ParamRef`], [`lang::OpRef`]);
//! - [`scalar`]: [`scalar::Scalar`], exact rational constants;
//! - [`shape`]: dims, shapes, element types, broadcasting, [`ShapeError`];
//! - [`block`]: residual blocks and their channel layout;
//! - [`variant`]: [`Variant`], which `LAuReL` forms a residual gets;
//! - [`params`]: [`ParamSpec`], the parameters augmentation adds, by role;
//! - [`semantics`]: [`semantics::OpSemantics`], what fusion may assume of a
//!   generic ONNX op;
//! - [`analysis`]: [`analysis::TensorData`] per e-class (shape, type,
//!   constant, block), the leaf table, merge-conflict records;
//! - [`graph`]: [`TensorGraph`], the checked builder;
//! - [`checked`]: [`checked::CheckedPattern`], rule right-hand sides that
//!   only fire when well-shaped;
//! - [`rules`]: the rule tables, one topic per file, listed by
//!   [`rules::registry::TOPICS`] (`augment`, `expand`, `scale`,
//!   `homogeneous`, `weights`, `norm`, `low_rank`, `laurel_residual`);
//! - [`cost`]: [`cost::CostModel`] and [`cost::AugmentCost`];
//! - [`extract`]: [`extract::DagExtractor`], DAG-aware greedy extraction;
//! - [`refine`]: [`refine::Choices`], local search on the exact DAG cost;
//! - [`mod@augment`]: [`augment()`], the augmentation pass end to end;
//! - [`mod@fuse`]: [`fuse()`], the fusion pass end to end;
//! - [`limits`]: [`Limits`] every runner is given and the [`StopReport`] it
//!   gives back;
//! - [`target`]: [`Capabilities`], what the runtime of a fused graph can do;
//! - [`text`]: a textual form of a lowered graph (declarations and terms),
//!   for the rule examples and the golden filetests.

pub mod analysis;
pub mod augment;
pub mod block;
pub mod checked;
pub mod cost;
pub mod extract;
pub mod fuse;
pub mod graph;
pub mod lang;
pub mod limits;
pub mod params;
pub mod refine;
pub mod rules;
pub mod scalar;
pub mod semantics;
pub mod shape;
pub mod target;
pub mod text;
pub mod variant;

pub use augment::{AugmentError, AugmentReport, augment};
pub use fuse::{FuseError, FuseReport, FuseSettings, fuse};
pub use graph::TensorGraph;
pub use lang::TensorLang;
pub use limits::{Limits, StopReport};
pub use params::{InitMode, ParamSpec, Role};
pub use shape::ShapeError;
pub use target::Capabilities;
pub use variant::{RwParam, Variant};

#[cfg(test)]
mod testing;
