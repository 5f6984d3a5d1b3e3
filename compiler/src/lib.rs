//! # laurelc
//!
//! A graph-rewriting compiler for ONNX models built around `LAuReL`, the
//! Learned Augmented Residual Layer (Menghani, Kumar & Kumar, ICML 2025).
//!
//! The library holds the IR ([`ir`]), lossless ONNX import and export
//! ([`onnx`]), model summaries ([`inspect`]), model comparison on tract
//! ([`check`]) and the pipeline ([`pipeline`]). The `laurelc` binary is a thin
//! shell around it.

pub mod analysis;
pub mod augment;
pub mod build;
pub mod check;
pub mod error;
pub mod fsutil;
pub mod fuse;
pub mod inspect;
pub mod ir;
pub mod onnx;
pub mod pipeline;

pub use error::{Error, Result};
pub use ir::{Graph, Model};
