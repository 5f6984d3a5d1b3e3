//! ONNX import and export.
//!
//! # The round-trip guarantee
//! `export(import(m))` is the same model as `m`: the same messages, field by
//! field, nodes in the same order (when the file lists them in topological
//! order, as ONNX requires; otherwise they come back sorted), unknown fields
//! included. One normalisation
//! applies, inherited from the proto3 schema that `onnx-protobuf` compiles:
//! a proto2 optional field explicitly set to its default value (for example
//! `opset_import { domain: "" }` or `doc_string: ""`) is written back unset.
//! Every ONNX reader treats the two the same. Repeated scalar fields are
//! written packed, which every protobuf parser reads back as the same list.
//! A model whose initializers used external data comes back with them inline
//! (or in a new side file, with `--external-data`).

pub mod export;
pub mod external;
pub mod import;
pub mod subgraph;

pub use export::{
    ExportOptions, ExportReport, to_bytes, to_proto, to_shape_probe_bytes, write_path,
};
pub use import::{import_bytes, import_path, import_proto};
