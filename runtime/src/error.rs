//! The crate's error type.
//!
//! Every fallible function of `laurel-runtime` returns [`RuntimeError`]. Errors coming
//! from tract are flattened to a `String` with `{:#}` so that tract's whole context
//! chain ("Translating node ...: Impossible to unify ...") is kept, and every variant
//! names what it is about (a path, an input name, a model).

use std::path::PathBuf;

/// Errors of `laurel-runtime`.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum RuntimeError {
    /// A file could not be read or written.
    #[error("I/O error on {path}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The bytes given as a model are not a readable ONNX `ModelProto`.
    #[error("cannot decode ONNX model {model}: {message}")]
    ModelDecode {
        /// The model: its path, or `<bytes>`.
        model: String,
        /// What went wrong.
        message: String,
    },

    /// The model declares something laurel-runtime cannot handle (before tract is even
    /// involved), e.g. a graph input without a declared shape.
    #[error("unsupported model {model}: {message}")]
    UnsupportedModel {
        /// The model: its path, or `<bytes>`.
        model: String,
        /// What is unsupported.
        message: String,
    },

    /// A node's attributes break its op's schema ([`crate::schema::check`]).
    #[error("invalid model {model}: {message}")]
    InvalidModel {
        /// The model: its path, or `<bytes>`.
        model: String,
        /// The node, the attribute and what is wrong.
        message: String,
    },

    /// Every loader strategy failed. `message` holds the error of the first strategy,
    /// followed by the errors of the later strategies.
    #[error("cannot load model {model} with tract: {message}")]
    Load {
        /// The model: its path, or `<bytes>`.
        model: String,
        /// The first strategy's error, then every later strategy's error.
        message: String,
    },

    /// An input that decided `If`s at load got another value.
    #[error(
        "input `{name}` decided {ifs} when the model was loaded, at {fixed}; load the model again to run it with another value"
    )]
    DecidedInput {
        /// The input.
        name: String,
        /// The value it was loaded with.
        fixed: String,
        /// The decided `If`s, with their branches.
        ifs: String,
    },

    /// `run` was not given a value for a graph input.
    #[error("missing value for model input `{name}`")]
    MissingInput {
        /// The input's name.
        name: String,
    },

    /// `run` was given a value for a name that is not a graph input.
    #[error("`{name}` is not an input of the model (inputs: {known})")]
    UnknownInput {
        /// The name given.
        name: String,
        /// The model's input names, comma separated.
        known: String,
    },

    /// `run` was given two values for the same input.
    #[error("model input `{name}` given more than once")]
    DuplicateInput {
        /// The input's name.
        name: String,
    },

    /// A value given for an input has the wrong element type.
    #[error("model input `{name}` expects {expected}, got {actual}")]
    InputDatumMismatch {
        /// The input's name.
        name: String,
        /// The element type the model expects.
        expected: String,
        /// The element type given.
        actual: String,
    },

    /// A value given for an input has the wrong shape.
    #[error("model input `{name}` expects shape {expected:?}, got {actual:?}")]
    InputShapeMismatch {
        /// The input's name.
        name: String,
        /// The shape the model was loaded for.
        expected: Vec<usize>,
        /// The shape given.
        actual: Vec<usize>,
    },

    /// tract failed while running the model.
    #[error("tract failed to run the model: {message}")]
    Run {
        /// tract's error chain.
        message: String,
    },

    /// A call into tract did not return within the time limit
    /// ([`crate::watchdog`]).
    #[error(
        "tract did not finish {what} {model} within {seconds} s (set LAURELC_TRACT_TIMEOUT=SECONDS to allow longer, 0 for no limit)"
    )]
    TimedOut {
        /// The model: its path, or `<bytes>`.
        model: String,
        /// What tract was doing.
        what: &'static str,
        /// The limit.
        seconds: f64,
    },

    /// tract failed in an operation other than loading or running.
    #[error("tract error while {context}: {message}")]
    Tract {
        /// What was being done.
        context: String,
        /// tract's error chain.
        message: String,
    },

    /// A `.npy` or `.npz` file is malformed or holds an unsupported element type.
    #[error("bad npy/npz data in {path}: {message}")]
    Npy {
        /// The file (for an `.npz` member: `archive.npz:member`).
        path: String,
        /// What went wrong.
        message: String,
    },

    /// An ONNX `TensorProto` could not be decoded.
    #[error("cannot decode ONNX TensorProto: {message}")]
    TensorProto {
        /// What went wrong.
        message: String,
    },

    /// An element type that the operation does not support.
    #[error("unsupported element type {datum} for {context}")]
    UnsupportedDatum {
        /// What the element type was met in.
        context: String,
        /// The element type.
        datum: String,
    },

    /// A training or evaluation data set that does not fit (empty, ragged,
    /// non-numeric, a batch larger than the data, …).
    #[error("bad data: {reason}")]
    Data {
        /// What is wrong.
        reason: String,
    },

    /// A training step model that does not have the documented interface.
    #[error("not a training step: {reason}")]
    StepInterface {
        /// What is missing or mistyped.
        reason: String,
    },

    /// A checkpoint that cannot be read back.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },

    /// A dimension that should have been concrete is still symbolic.
    #[error("input `{input}` has unresolved dimension `{dim}`")]
    UnresolvedDim {
        /// The input's name.
        input: String,
        /// The symbolic dimension.
        dim: String,
    },
}

/// Formats a tract (anyhow) error with its whole context chain.
pub(crate) fn chain(e: &tract_onnx::prelude::TractError) -> String {
    format!("{e:#}")
}

/// The text of a panic payload (a panic inside tract, caught).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(ToString::to_string)
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}
