//! Element types and input descriptions: [`DatumKind`], [`DimSpec`], [`InputSpec`].

use std::fmt;

use tract_onnx::prelude::DatumType;

/// Element type of a tensor, restricted to what laurel-runtime can feed, read and
/// write: IEEE floats, fixed-width integers and booleans.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum DatumKind {
    /// IEEE 754 half precision.
    F16,
    /// IEEE 754 single precision.
    F32,
    /// IEEE 754 double precision.
    F64,
    /// Signed 8-bit integer.
    I8,
    /// Signed 16-bit integer.
    I16,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 8-bit integer.
    U8,
    /// Unsigned 16-bit integer.
    U16,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 64-bit integer.
    U64,
    /// Boolean.
    Bool,
}

impl DatumKind {
    /// Every kind, in declaration order.
    pub const ALL: [DatumKind; 12] = [
        DatumKind::F16,
        DatumKind::F32,
        DatumKind::F64,
        DatumKind::I8,
        DatumKind::I16,
        DatumKind::I32,
        DatumKind::I64,
        DatumKind::U8,
        DatumKind::U16,
        DatumKind::U32,
        DatumKind::U64,
        DatumKind::Bool,
    ];

    /// Short lowercase name: `f32`, `i64`, `bool`, ...
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            DatumKind::F16 => "f16",
            DatumKind::F32 => "f32",
            DatumKind::F64 => "f64",
            DatumKind::I8 => "i8",
            DatumKind::I16 => "i16",
            DatumKind::I32 => "i32",
            DatumKind::I64 => "i64",
            DatumKind::U8 => "u8",
            DatumKind::U16 => "u16",
            DatumKind::U32 => "u32",
            DatumKind::U64 => "u64",
            DatumKind::Bool => "bool",
        }
    }

    /// The corresponding tract element type.
    #[must_use]
    pub fn datum_type(self) -> DatumType {
        match self {
            DatumKind::F16 => DatumType::F16,
            DatumKind::F32 => DatumType::F32,
            DatumKind::F64 => DatumType::F64,
            DatumKind::I8 => DatumType::I8,
            DatumKind::I16 => DatumType::I16,
            DatumKind::I32 => DatumType::I32,
            DatumKind::I64 => DatumType::I64,
            DatumKind::U8 => DatumType::U8,
            DatumKind::U16 => DatumType::U16,
            DatumKind::U32 => DatumType::U32,
            DatumKind::U64 => DatumType::U64,
            DatumKind::Bool => DatumType::Bool,
        }
    }

    /// The kind of a tract element type, if it is one laurel-runtime supports.
    #[must_use]
    pub fn from_datum_type(dt: DatumType) -> Option<DatumKind> {
        DatumKind::ALL.into_iter().find(|k| k.datum_type() == dt)
    }

    /// True for `F16`, `F32`, `F64`.
    #[must_use]
    pub fn is_float(self) -> bool {
        matches!(self, DatumKind::F16 | DatumKind::F32 | DatumKind::F64)
    }

    /// True for the signed and unsigned integer kinds.
    #[must_use]
    pub fn is_integer(self) -> bool {
        !self.is_float() && self != DatumKind::Bool
    }

    /// The ONNX `TensorProto.DataType` code of this kind.
    #[must_use]
    pub fn onnx_code(self) -> i32 {
        use tract_onnx::pb::tensor_proto::DataType;
        let code = match self {
            DatumKind::F16 => DataType::Float16,
            DatumKind::F32 => DataType::Float,
            DatumKind::F64 => DataType::Double,
            DatumKind::I8 => DataType::Int8,
            DatumKind::I16 => DataType::Int16,
            DatumKind::I32 => DataType::Int32,
            DatumKind::I64 => DataType::Int64,
            DatumKind::U8 => DataType::Uint8,
            DatumKind::U16 => DataType::Uint16,
            DatumKind::U32 => DataType::Uint32,
            DatumKind::U64 => DataType::Uint64,
            DatumKind::Bool => DataType::Bool,
        };
        code as i32
    }

    /// The kind of an ONNX `TensorProto.DataType` code, if supported.
    #[must_use]
    pub fn from_onnx_code(code: i32) -> Option<DatumKind> {
        DatumKind::ALL.into_iter().find(|k| k.onnx_code() == code)
    }
}

impl fmt::Display for DatumKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Name of a tract element type: the [`DatumKind`] name when supported, else tract's own.
pub(crate) fn datum_name(dt: DatumType) -> String {
    DatumKind::from_datum_type(dt).map_or_else(|| format!("{dt:?}"), |k| k.as_str().to_owned())
}

/// One dimension of an input shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum DimSpec {
    /// A known size.
    Fixed(usize),
    /// A symbolic size: the ONNX `dim_param` (e.g. `"batch"`) or, for shapes inferred
    /// by tract, tract's rendering of the expression (e.g. `"2*N"`).
    Symbol(String),
}

impl DimSpec {
    /// The size, if fixed.
    #[must_use]
    pub fn fixed(&self) -> Option<usize> {
        match self {
            DimSpec::Fixed(n) => Some(*n),
            DimSpec::Symbol(_) => None,
        }
    }
}

impl fmt::Display for DimSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DimSpec::Fixed(n) => write!(f, "{n}"),
            DimSpec::Symbol(s) => f.write_str(s),
        }
    }
}

/// A graph input (not an initializer) of a model.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InputSpec {
    /// The ONNX value name.
    pub name: String,
    /// Its element type.
    pub datum: DatumKind,
    /// Its shape. In [`crate::Runnable::inputs`] every dimension is
    /// [`DimSpec::Fixed`]; [`crate::declared_inputs`] keeps the declared symbols.
    pub shape: Vec<DimSpec>,
    /// For an integer input that reaches a `Gather`'s indices (directly or
    /// through `Cast`, `Identity`, `Reshape`, `Squeeze`, `Unsqueeze`,
    /// `Flatten`) over an initializer table: the rows of the smallest such
    /// table along the gathered axis. Random ids stay below it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_rows: Option<u64>,
}

impl InputSpec {
    /// The shape as sizes, or `None` if a dimension is symbolic.
    #[must_use]
    pub fn concrete_shape(&self) -> Option<Vec<usize>> {
        self.shape.iter().map(DimSpec::fixed).collect()
    }
}
