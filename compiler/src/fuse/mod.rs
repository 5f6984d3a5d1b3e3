//! Fusion for inference (`laurelc fuse`).
//!
//! This milestone has one pass, [`fold`]: constant folding of
//! parameter-only subgraphs, such as the `Sub`/`Sigmoid`/`Mul` that compute
//! RW's α and β from their softmax or sigmoid parametrisation. The e-graph
//! fusion rules (scales folded into weights, norm scale invariance, merged
//! low-rank products) build on it in the next increments.

pub mod fold;

pub use fold::{FoldReport, fold_constants};
