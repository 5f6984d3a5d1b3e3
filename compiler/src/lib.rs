//! # laurelc
//!
//! A graph-rewriting compiler for ONNX models built around `LAuReL`, the
//! Learned Augmented Residual Layer (Menghani, Kumar & Kumar, ICML 2025).
//!
//! The library holds the IR ([`ir`]) and the builder that adds to it
//! ([`build`]), lossless ONNX import and export ([`onnx`]), the analyses of a
//! model ([`analysis`]: residuals, streams, shapes, FLOPs), the graph
//! transforms (augmentation, [`augment`]; fusion, [`fuse`]), model summaries
//! ([`inspect`]) and the pipelines file to file ([`pipeline`]). Running models
//! on tract (run, check, bench, profile) is `laurel-runtime`'s. The `laurelc`
//! binary is a thin shell around both: one file per command.

pub mod analysis;
pub mod augment;
pub mod autodiff;
pub mod build;
pub mod distill;
pub mod error;
pub mod fsutil;
pub mod fuse;
pub mod inspect;
pub mod ir;
pub mod label;
pub mod onnx;
pub mod pipeline;
pub mod train;

pub use error::{Error, Result};
pub use ir::{Graph, Model};
