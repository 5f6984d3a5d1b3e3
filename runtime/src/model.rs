//! Model sources, load options, protobuf decoding and declared graph inputs.
//!
//! A model is read once into a [`tract_onnx::pb::ModelProto`]; the loader strategies
//! (see [`crate::load`](mod@crate::load)) then parse that proto with different tract settings.
//!
//! ## Resolving symbolic input dimensions
//!
//! Every graph input dimension becomes a concrete size as follows:
//! * `dim_value: n` (n ≥ 0) stays `n`;
//! * `dim_param: "name"` takes `opts.dims["name"]` when present;
//! * otherwise a `dim_param` is read as an ONNX dimension expression (e.g. `"2*N"`),
//!   each symbol in it takes `opts.dims[symbol]` or the default, and the expression is
//!   evaluated;
//! * a dimension with neither value nor parameter (or `"?"`, or an expression tract
//!   cannot read) takes the default.
//!
//! The default is [`LoadOptions::default_dim`], or [`LoadOptions::DEFAULT_DIM`] (1) when
//! that is `None`.
//!
//! An input named in [`LoadOptions::shapes`] takes that shape outright (its rank and
//! fixed dimensions must agree with the declaration), and each of its declared
//! dimensions that is a plain symbol binds that symbol for every other input and for
//! the whole graph, unless [`LoadOptions::dims`] sets the symbol explicitly. This is
//! how `laurelc run` sizes a model from the input files it is given.

use std::collections::BTreeMap;
use std::path::Path;

use prost::Message;
use tract_onnx::pb;
use tract_onnx::pb::tensor_shape_proto::dimension::Value as DimValue;
use tract_onnx::prelude::{SymbolScope, SymbolValues, TDim};

use crate::datum::{DatumKind, DimSpec, InputSpec};
use crate::error::RuntimeError;

/// Where a model comes from.
#[derive(Clone, Copy, Debug)]
pub enum ModelSource<'a> {
    /// An `.onnx` file. External data is resolved relative to its directory.
    Path(&'a Path),
    /// The bytes of an `.onnx` file (a serialized `ModelProto`). External data is not
    /// supported for this source.
    Bytes(&'a [u8]),
}

impl ModelSource<'_> {
    /// A human-readable name for error messages: the path, or `<bytes>`.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            ModelSource::Path(p) => p.display().to_string(),
            ModelSource::Bytes(b) => format!("<{} bytes>", b.len()),
        }
    }
}

/// Options for [`crate::load()`] and [`crate::infer_shapes`].
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// Values for symbolic dimensions, by symbol name (e.g. `"batch"` -> 1).
    pub dims: BTreeMap<String, i64>,
    /// Default for symbolic (or unknown) input dimensions not in `dims`;
    /// `None` means [`LoadOptions::DEFAULT_DIM`], i.e. 1.
    pub default_dim: Option<i64>,
    /// Concrete shapes for some inputs, by input name (see the module doc).
    pub shapes: BTreeMap<String, Vec<usize>>,
    /// Values of some integer or boolean inputs, fixed for every run of the
    /// loaded model: the `If`s whose conditions they determine are decided
    /// at load ([`crate::decide`]).
    pub values: BTreeMap<String, crate::decide::GivenValue>,
}

impl LoadOptions {
    /// The default used for a symbolic dimension when neither `dims` nor
    /// `default_dim` gives a value.
    pub const DEFAULT_DIM: i64 = 1;

    /// Options fixing the given symbols; other symbols default to 1.
    #[must_use]
    pub fn with_dims<I, S>(dims: I) -> Self
    where
        I: IntoIterator<Item = (S, i64)>,
        S: Into<String>,
    {
        LoadOptions {
            dims: dims.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            ..LoadOptions::default()
        }
    }

    /// The value of the symbol `name`: `dims[name]`, else the default.
    #[must_use]
    pub fn dim_value(&self, name: &str) -> i64 {
        self.dims
            .get(name)
            .copied()
            .unwrap_or_else(|| self.default_value())
    }

    /// The default for symbols not in `dims`.
    #[must_use]
    pub fn default_value(&self) -> i64 {
        self.default_dim.unwrap_or(Self::DEFAULT_DIM)
    }
}

/// A decoded model and what is needed to parse it again.
pub(crate) struct DecodedModel {
    pub proto: pb::ModelProto,
    /// Directory for external data (only for path sources).
    pub model_dir: Option<String>,
    /// `ModelSource::describe`.
    pub desc: String,
}

impl DecodedModel {
    pub fn graph(&self) -> Result<&pb::GraphProto, RuntimeError> {
        self.proto
            .graph
            .as_ref()
            .ok_or_else(|| RuntimeError::ModelDecode {
                model: self.desc.clone(),
                message: "the ModelProto has no graph".into(),
            })
    }

    /// Names of the graph outputs, in order.
    pub fn output_names(&self) -> Result<Vec<String>, RuntimeError> {
        Ok(self
            .graph()?
            .output
            .iter()
            .map(|o| o.name.clone())
            .collect())
    }
}

/// Reads and decodes a model.
pub(crate) fn decode(src: ModelSource<'_>) -> Result<DecodedModel, RuntimeError> {
    let desc = src.describe();
    let (proto, model_dir) = match src {
        ModelSource::Path(p) => {
            let bytes = std::fs::read(p).map_err(|source| RuntimeError::Io {
                path: p.to_path_buf(),
                source,
            })?;
            let proto = pb::ModelProto::decode(bytes.as_slice()).map_err(|e| {
                RuntimeError::ModelDecode {
                    model: desc.clone(),
                    message: e.to_string(),
                }
            })?;
            let dir = p.parent().and_then(Path::to_str).map(str::to_owned);
            (proto, dir)
        }
        ModelSource::Bytes(b) => {
            let proto = pb::ModelProto::decode(b).map_err(|e| RuntimeError::ModelDecode {
                model: desc.clone(),
                message: e.to_string(),
            })?;
            (proto, None)
        }
    };
    let decoded = DecodedModel {
        proto,
        model_dir,
        desc,
    };
    decoded.graph()?;
    Ok(decoded)
}

/// One declared input dimension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DeclaredDim {
    Fixed(usize),
    Param(String),
    Unknown,
}

/// A declared graph input.
#[derive(Clone, Debug)]
pub(crate) struct DeclaredInput {
    pub name: String,
    pub datum: DatumKind,
    pub dims: Vec<DeclaredDim>,
    /// See [`InputSpec::index_rows`].
    pub index_rows: Option<u64>,
}

impl DeclaredInput {
    /// The declared spec: parameters as [`DimSpec::Symbol`], unknown dims as `"?"`.
    pub fn spec(&self) -> InputSpec {
        InputSpec {
            name: self.name.clone(),
            datum: self.datum,
            shape: self
                .dims
                .iter()
                .map(|d| match d {
                    DeclaredDim::Fixed(n) => DimSpec::Fixed(*n),
                    DeclaredDim::Param(p) => DimSpec::Symbol(p.clone()),
                    DeclaredDim::Unknown => DimSpec::Symbol("?".into()),
                })
                .collect(),
            index_rows: self.index_rows,
        }
    }

    /// The concrete shape under `opts` (see the module doc).
    pub fn resolve(&self, opts: &LoadOptions, model: &str) -> Result<Vec<usize>, RuntimeError> {
        if let Some(shape) = opts.shapes.get(&self.name) {
            self.check_shape(shape, model)?;
            return Ok(shape.clone());
        }
        self.dims
            .iter()
            .map(|d| {
                let (v, what) = match d {
                    DeclaredDim::Fixed(n) => return Ok(*n),
                    DeclaredDim::Param(p) => (resolve_param(p, opts), p.as_str()),
                    DeclaredDim::Unknown => (opts.default_value(), "?"),
                };
                usize::try_from(v).map_err(|_| RuntimeError::UnsupportedModel {
                    model: model.to_owned(),
                    message: format!(
                        "dimension `{what}` of input `{}` resolves to {v}, which is not a valid size",
                        self.name
                    ),
                })
            })
            .collect()
    }

    /// Checks a caller's shape against the declaration: same rank, same fixed sizes.
    fn check_shape(&self, shape: &[usize], model: &str) -> Result<(), RuntimeError> {
        let mismatch = shape.len() != self.dims.len()
            || self
                .dims
                .iter()
                .zip(shape)
                .any(|(d, &s)| matches!(d, DeclaredDim::Fixed(n) if *n != s));
        if mismatch {
            return Err(RuntimeError::UnsupportedModel {
                model: model.to_owned(),
                message: format!(
                    "input `{}` is declared {:?}, which a shape of {shape:?} does not fit",
                    self.name,
                    self.spec().shape
                ),
            });
        }
        Ok(())
    }

    /// The concrete [`InputSpec`] under `opts`.
    pub fn resolved_spec(
        &self,
        opts: &LoadOptions,
        model: &str,
    ) -> Result<InputSpec, RuntimeError> {
        Ok(InputSpec {
            name: self.name.clone(),
            datum: self.datum,
            shape: self
                .resolve(opts, model)?
                .into_iter()
                .map(DimSpec::Fixed)
                .collect(),
            index_rows: self.index_rows,
        })
    }
}

/// `opts` with every plain symbol of the inputs named in `opts.shapes` bound to the
/// size it has there (symbols set in `opts.dims` keep their value).
pub(crate) fn bind_shape_symbols(opts: &LoadOptions, declared: &[DeclaredInput]) -> LoadOptions {
    let mut out = opts.clone();
    for d in declared {
        let Some(shape) = opts.shapes.get(&d.name) else {
            continue;
        };
        for (dim, &size) in d.dims.iter().zip(shape) {
            if let (DeclaredDim::Param(p), Ok(v)) = (dim, i64::try_from(size))
                && !opts.dims.contains_key(p)
            {
                out.dims.entry(p.clone()).or_insert(v);
            }
        }
    }
    out
}

/// Value of a `dim_param` under `opts`.
fn resolve_param(p: &str, opts: &LoadOptions) -> i64 {
    if let Some(v) = opts.dims.get(p) {
        return *v;
    }
    if p == "?" {
        return opts.default_value();
    }
    let scope = SymbolScope::default();
    let Ok(dim) = tract_onnx::dim_expr::parse_onnx_dim(&scope, p) else {
        return opts.default_value();
    };
    let values = symbol_values(&dim, opts);
    dim.eval(&values)
        .to_i64()
        .unwrap_or_else(|_| opts.default_value())
}

/// Values, under `opts`, for every symbol of `dim`.
pub(crate) fn symbol_values(dim: &TDim, opts: &LoadOptions) -> SymbolValues {
    let mut values = SymbolValues::default();
    for sym in dim.symbols() {
        let v = opts.dim_value(&sym.to_string());
        values.set(&sym, v);
    }
    values
}

/// The graph inputs that are not initializers, in order.
pub(crate) fn declared_inputs_of(model: &DecodedModel) -> Result<Vec<DeclaredInput>, RuntimeError> {
    let graph = model.graph()?;
    let initializers: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let unsupported = |message: String| RuntimeError::UnsupportedModel {
        model: model.desc.clone(),
        message,
    };
    let mut out = Vec::new();
    for input in &graph.input {
        if initializers.contains(input.name.as_str()) {
            continue;
        }
        let Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(tt)),
            ..
        }) = &input.r#type
        else {
            return Err(unsupported(format!(
                "graph input `{}` has no tensor type",
                input.name
            )));
        };
        let datum = DatumKind::from_onnx_code(tt.elem_type).ok_or_else(|| {
            unsupported(format!(
                "graph input `{}` has element type code {}, which laurel-runtime does not support",
                input.name, tt.elem_type
            ))
        })?;
        let Some(shape) = &tt.shape else {
            return Err(unsupported(format!(
                "graph input `{}` has no declared shape (unknown rank)",
                input.name
            )));
        };
        let dims = shape
            .dim
            .iter()
            .map(|d| match &d.value {
                Some(DimValue::DimValue(v)) if *v >= 0 => {
                    usize::try_from(*v).map_or(DeclaredDim::Unknown, DeclaredDim::Fixed)
                }
                Some(DimValue::DimParam(p)) if !p.is_empty() && p != "?" => {
                    DeclaredDim::Param(p.clone())
                }
                _ => DeclaredDim::Unknown,
            })
            .collect();
        out.push(DeclaredInput {
            name: input.name.clone(),
            datum,
            dims,
            index_rows: None,
        });
    }
    let rows = index_rows(graph);
    for d in &mut out {
        d.index_rows = rows.get(d.name.as_str()).copied();
    }
    Ok(out)
}

/// For each value that reaches a `Gather`'s indices through ops that keep
/// ids ids (`Cast`, `Identity`, `Reshape`, `Squeeze`, `Unsqueeze`,
/// `Flatten`, first input), over an initializer table: the rows of the
/// smallest such table along the gathered axis ([`InputSpec::index_rows`]).
/// O(nodes + edges) per graph input.
fn index_rows(graph: &pb::GraphProto) -> std::collections::HashMap<&str, u64> {
    use std::collections::HashMap;
    let tables: HashMap<&str, &[i64]> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t.dims.as_slice()))
        .collect();
    let mut readers: HashMap<&str, Vec<(&pb::NodeProto, usize)>> = HashMap::new();
    for n in &graph.node {
        for (slot, i) in n.input.iter().enumerate() {
            readers.entry(i.as_str()).or_default().push((n, slot));
        }
    }
    let mut out = HashMap::new();
    for input in &graph.input {
        let mut todo = vec![input.name.as_str()];
        let mut seen = std::collections::HashSet::new();
        let mut best: Option<u64> = None;
        while let Some(v) = todo.pop() {
            if !seen.insert(v) {
                continue;
            }
            for &(n, slot) in readers.get(v).map_or(&[][..], Vec::as_slice) {
                let default_domain = n.domain.is_empty() || n.domain == "ai.onnx";
                match n.op_type.as_str() {
                    "Cast" | "Identity" | "Reshape" | "Squeeze" | "Unsqueeze" | "Flatten"
                        if default_domain && slot == 0 =>
                    {
                        todo.extend(n.output.first().map(String::as_str));
                    }
                    "Gather" if default_domain && slot == 1 => {
                        let Some(dims) = n.input.first().and_then(|t| tables.get(t.as_str()))
                        else {
                            continue;
                        };
                        let axis = n
                            .attribute
                            .iter()
                            .find(|a| a.name == "axis")
                            .map_or(0, |a| a.i);
                        let rank = i64::try_from(dims.len()).unwrap_or(0);
                        let axis = if axis < 0 { axis + rank } else { axis };
                        let rows = usize::try_from(axis)
                            .ok()
                            .and_then(|a| dims.get(a))
                            .and_then(|&r| u64::try_from(r).ok());
                        if let Some(r) = rows.filter(|&r| r > 0) {
                            best = Some(best.map_or(r, |b| b.min(r)));
                        }
                    }
                    _ => {}
                }
            }
        }
        if let Some(r) = best {
            out.insert(input.name.as_str(), r);
        }
    }
    out
}

/// The graph inputs (not initializers) of a model as declared, without loading it in
/// tract: `dim_param` dimensions are [`DimSpec::Symbol`] with the parameter's text and
/// dimensions with neither value nor parameter are `DimSpec::Symbol("?")`.
pub fn declared_inputs(src: ModelSource<'_>) -> Result<Vec<InputSpec>, RuntimeError> {
    let model = decode(src)?;
    Ok(declared_inputs_of(&model)?
        .iter()
        .map(DeclaredInput::spec)
        .collect())
}

/// A decoded model with its inputs resolved under the caller's options: what
/// both loading and shape inference start from.
pub(crate) struct Prepared {
    pub decoded: DecodedModel,
    pub declared: Vec<DeclaredInput>,
    /// The caller's options with input-shape symbols bound (see [`bind_shape_symbols`]).
    pub opts: LoadOptions,
    /// Each declared input's concrete shape.
    pub concrete: Vec<Vec<usize>>,
}

/// Decodes `src`, checks that `opts.shapes` names only real inputs, binds the
/// symbols those shapes fix, and resolves every input's concrete shape.
pub(crate) fn prepare(src: ModelSource<'_>, opts: &LoadOptions) -> Result<Prepared, RuntimeError> {
    let decoded = decode(src)?;
    crate::schema::check(&decoded.proto).map_err(|message| RuntimeError::InvalidModel {
        model: decoded.desc.clone(),
        message,
    })?;
    let declared = declared_inputs_of(&decoded)?;
    for name in opts.shapes.keys() {
        if !declared.iter().any(|d| d.name == *name) {
            return Err(RuntimeError::UnknownInput {
                name: name.clone(),
                known: declared
                    .iter()
                    .map(|d| d.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    let opts = bind_shape_symbols(opts, &declared);
    let concrete = declared
        .iter()
        .map(|d| d.resolve(&opts, &decoded.desc))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Prepared {
        decoded,
        declared,
        opts,
        concrete,
    })
}
