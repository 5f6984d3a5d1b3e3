//! The compiler library's error type.
//!
//! Every error names the model it concerns (a file path, or a label for models
//! read from memory) and, where one applies, the node. The CLI maps every
//! variant to exit code 2 ("bad input or usage").

use std::path::PathBuf;

/// Errors from importing, validating, transforming and exporting models.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be opened, read, mapped or written. The operating
    /// system's message is the error's `source`, not part of its text.
    #[error("{path}: {action}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What was being done, for example "cannot read".
        action: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file has zero bytes.
    #[error("{model}: the file is empty")]
    Empty {
        /// The model concerned.
        model: String,
    },
    /// The bytes are not a valid ONNX `ModelProto` (not protobuf, or truncated).
    #[error("{model}: not a valid ONNX model (protobuf decoding failed: {message})")]
    Decode {
        /// The model concerned.
        model: String,
        /// The protobuf decoder's message.
        message: String,
    },
    /// The model has no graph.
    #[error("{model}: the model has no graph")]
    NoGraph {
        /// The model concerned.
        model: String,
    },
    /// The graph's nodes form a cycle.
    #[error("{model}: the graph has a cycle through node {node}")]
    Cycle {
        /// The model concerned.
        model: String,
        /// A node on the cycle.
        node: String,
    },
    /// A node reads a value that nothing produces.
    #[error(
        "{model}: node {node} reads `{value}`, which no node, graph input or initializer produces"
    )]
    DanglingInput {
        /// The model concerned.
        model: String,
        /// The reading node.
        node: String,
        /// The value name.
        value: String,
    },
    /// A value name is produced twice.
    #[error("{model}: value `{value}` is produced twice (by {first} and by {second})")]
    DuplicateValue {
        /// The model concerned.
        model: String,
        /// The value name.
        value: String,
        /// The first producer.
        first: String,
        /// The second producer.
        second: String,
    },
    /// A graph output name is listed twice.
    #[error("{model}: graph output `{value}` is listed more than once")]
    DuplicateOutput {
        /// The model concerned.
        model: String,
        /// The output name.
        value: String,
    },
    /// A graph output that nothing produces.
    #[error("{model}: graph output `{value}` is not produced by any node, input or initializer")]
    MissingOutput {
        /// The model concerned.
        model: String,
        /// The output name.
        value: String,
    },
    /// External tensor data that is missing, malformed or outside the model directory.
    #[error("{model}: tensor `{tensor}`: external data: {reason}")]
    ExternalData {
        /// The model concerned.
        model: String,
        /// The tensor name.
        tensor: String,
        /// What is wrong.
        reason: String,
    },
    /// The output path is the input path and `--force` was not given.
    #[error(
        "{path}: refusing to overwrite the input model or its external data (pass --force to allow it)"
    )]
    WouldOverwriteInput {
        /// The path concerned.
        path: PathBuf,
    },
    /// The output's directory does not exist.
    #[error("{path}: the output directory does not exist")]
    MissingOutputDir {
        /// The output path.
        path: PathBuf,
    },
    /// Protobuf encoding failed while writing.
    #[error("{path}: cannot encode the model: {message}")]
    Encode {
        /// The output path.
        path: PathBuf,
        /// The encoder's message.
        message: String,
    },
    /// The augmentation pass failed.
    #[error("augmentation failed: {message}")]
    Augment {
        /// What went wrong.
        message: String,
    },
    /// A fusion pass failed.
    #[error("fusion failed: {message}")]
    Fuse {
        /// What went wrong.
        message: String,
    },
    /// Training data that do not fit the model (a missing key, a shape or
    /// element type the input does not take, NaN inputs, class ids out of
    /// range, too few examples for a batch).
    #[error("{}: {reason}", path.display())]
    Data {
        /// The data file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A node's attributes break its op's schema (found before tract sees
    /// the model: `laurel_runtime::schema`); the model is refused, whatever
    /// the command.
    #[error("invalid model: {message}")]
    InvalidModel {
        /// The node, the attribute and what is wrong.
        message: String,
    },
    /// A runtime (tract) error, passed through with its context.
    #[error(transparent)]
    Runtime(laurel_runtime::RuntimeError),
    /// The training step cannot be built.
    #[error(transparent)]
    Autodiff(#[from] AutodiffError),
}

/// Why a training step cannot be built (see `crate::autodiff`). It lives here,
/// beside [`Error`], so that the error module depends on no module above it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AutodiffError {
    /// An op on the path from a trainable tensor to the loss has no rule.
    #[error(
        "node {node}: laurelc has no gradient rule for {op_type} (the op lies between a trainable tensor and the loss)"
    )]
    NoRule {
        /// The node.
        node: String,
        /// Its op type (with its domain outside the default one).
        op_type: String,
    },
    /// A rule does not handle this node's attributes or inputs.
    #[error("node {node}: cannot differentiate {reason}")]
    Unsupported {
        /// The node.
        node: String,
        /// Its op type.
        op_type: String,
        /// What is not handled.
        reason: String,
    },
    /// A value the backward graph needs has no static type.
    #[error(
        "value `{value}` has no static shape at these input sizes (fix them with --dim or --shape)"
    )]
    UnknownShape {
        /// The value.
        value: String,
    },
    /// The `--train` selection.
    #[error("--train {spec}: {reason}")]
    Train {
        /// The selection as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The loss cannot be built on the prediction.
    #[error("the {loss} loss on output `{output}`: {reason}")]
    Loss {
        /// The loss.
        loss: String,
        /// The prediction.
        output: String,
        /// What is wrong.
        reason: String,
    },
    /// A name the training step's interface needs is taken in the model.
    #[error("the model has a value named `{name}`, a name the training step needs for itself")]
    NameTaken {
        /// The name.
        name: String,
    },
    /// A node's attributes break its op's schema (`laurel_runtime::schema`).
    #[error("invalid model: {message}")]
    InvalidModel {
        /// The node, the attribute and what is wrong.
        message: String,
    },
    /// Shape inference failed.
    #[error("shape inference failed: {0}")]
    Infer(laurel_runtime::RuntimeError),
    /// Encoding the model for shape inference failed.
    #[error("{0}")]
    Encode(String),
    /// A bug in laurelc's autodiff.
    #[error("internal autodiff error: {message}")]
    Internal {
        /// What went wrong.
        message: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<laurel_runtime::RuntimeError> for Error {
    /// An invalid model is the model's fault, not the runtime's: it keeps no
    /// `<bytes>` description of the shape probe it was found in.
    fn from(e: laurel_runtime::RuntimeError) -> Self {
        match e {
            laurel_runtime::RuntimeError::InvalidModel { message, .. } => {
                Error::InvalidModel { message }
            }
            other => Error::Runtime(other),
        }
    }
}

impl From<laurel_runtime::RuntimeError> for AutodiffError {
    /// As for [`Error`]: an invalid model is named as such, once.
    fn from(e: laurel_runtime::RuntimeError) -> Self {
        match e {
            laurel_runtime::RuntimeError::InvalidModel { message, .. } => {
                AutodiffError::InvalidModel { message }
            }
            other => AutodiffError::Infer(other),
        }
    }
}
