//! laurel-runtime: runs ONNX models on [tract](https://github.com/sonos/tract) with
//! laurelc's custom operators registered, and provides what testing a compiled model
//! needs: tensor I/O (`.npy`, `.npz`, ONNX `TensorProto` `.pb`), seeded random
//! inputs, summaries and numpy-`allclose` comparison.
//!
//! ```no_run
//! use laurel_runtime::{LoadOptions, ModelSource, compare, load, random_inputs};
//! # fn main() -> Result<(), laurel_runtime::RuntimeError> {
//! let opts = LoadOptions::with_dims([("batch", 1)]);
//! let original = load(ModelSource::Path("model.onnx".as_ref()), &opts)?;
//! let compiled = load(ModelSource::Path("model.laurel.onnx".as_ref()), &opts)?;
//! let inputs = random_inputs(original.inputs(), 42)?;
//! let a = original.run(inputs.clone())?;
//! let b = compiled.run(inputs)?;
//! for ((name, x), (_, y)) in a.iter().zip(&b) {
//!     let c = compare(y, x, 1e-4, 1e-5);
//!     println!("{name}: max_abs {} mismatches {}", c.max_abs, c.mismatches);
//! }
//! # Ok(()) }
//! ```
//!
//! Modules: [`model`] (sources, options, declared inputs), [`load`](mod@load) (the loader
//! strategy ladder), [`runnable`] (running), [`infer`] (shape inference),
//! [`npy`] and [`tensor_pb`] (tensor files), [`random`], [`stats`], [`compare`](mod@compare),
//! [`ops`] (custom op registration), [`inputs`] (a model's inputs: files and
//! random values), [`check`](mod@check) (two models compared), [`bench`](mod@bench) and
//! [`profile`](mod@profile) (timing), [`progress`] (reports of long loops), [`error`].

pub mod bench;
pub mod check;
pub mod compare;
pub mod datum;
pub mod decide;
pub mod distill;
pub mod error;
pub mod infer;
pub mod inputs;
pub mod load;
pub mod model;
pub mod npy;
pub mod ops;
pub mod profile;
pub mod progress;
pub mod random;
pub mod raw;
pub mod runnable;
pub mod schema;
pub mod stats;
pub mod support;
pub mod tensor_pb;
pub mod train;
mod values;
pub mod watchdog;

/// tract-onnx itself, for callers that need more of tract than this crate wraps.
pub use tract_onnx;
pub use tract_onnx::prelude::Tensor;

pub use bench::{BenchOptions, BenchReport, bench, bench_files, bench_loads};
pub use check::{CheckOptions, CheckReport, check_models};
pub use compare::{Comparison, compare};
pub use datum::{DatumKind, DimSpec, InputSpec};
pub use error::RuntimeError;
pub use infer::{InferredShapes, InferredValue, infer_shapes, infer_symbolic_shapes};
pub use inputs::InputSource;
pub use load::{STRATEGIES, load, load_with_strategy, sizes_text};
pub use model::{LoadOptions, ModelSource, declared_inputs};
pub use npy::{read_npy, read_npz, write_npy, write_npz};
pub use progress::{Progress, Silent};
pub use random::random_inputs;
pub use raw::{RawTensor, to_raw};
pub use runnable::Runnable;
pub use stats::{Summary, summarize};
pub use tensor_pb::read_tensor_pb;
