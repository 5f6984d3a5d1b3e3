//! Loading a model into tract, with a fallback ladder of loader strategies.
//!
//! [`load`] decodes the model once, computes the concrete input shapes (see
//! [`crate::model`] for how symbolic dimensions are resolved), then tries the strategies
//! of [`STRATEGIES`] in order until one yields a runnable plan. Each step relaxes what
//! tract is asked to trust or do, so a model that loads with an earlier strategy gets the
//! most checked, most optimised plan:
//!
//! 1. `default` — tract-onnx's defaults: intermediate `value_info` annotations are
//!    used. Input facts get the concrete shapes, every symbol the inputs mention (and
//!    every symbol named in [`LoadOptions::dims`]) is substituted graph-wide before
//!    analysis (so `value_info` written in terms of the input symbols stays
//!    consistent), then the model is typed, decluttered and optimised.
//! 2. `ignore-value-info` — as 1, but `value_info` is ignored. Exporters often annotate
//!    intermediates with free symbols (`DynamicDimension.3`) or stale fixed shapes
//!    that conflict with the concrete input sizes at analysis ("Impossible to unify"),
//!    e.g. PP-OCR detection models exported with dynamic H/W then loaded with a fixed
//!    size.
//! 3. `symbolic-then-concretize` — `value_info` ignored; the inputs keep their
//!    declared symbolic dimensions during analysis and typing; the symbols are then
//!    bound to their concrete values on the typed model (`TypedModel::set_symbols`),
//!    which is then decluttered and optimised. This covers models that only type-check
//!    in their symbolic form (a symbolic batch dimension that shape arithmetic in the
//!    graph relies on).
//! 4. `symbolic-at-runtime` — `value_info` ignored; the model is typed and optimised
//!    with its symbols left free, and tract resolves them from the input shapes at
//!    each run.
//! 5. `unoptimized` — `value_info` ignored, concrete inputs, typed but neither
//!    decluttered nor optimised: a last resort against optimiser failures.
//!
//! Declared graph-*output* types and shapes are ignored by every strategy: tract-onnx
//! 0.23 only reads them when `use_output_shapes` is set, which is off by default (and
//! `ignore_output_types` only strips a type read that way), so an "ignore outputs"
//! step would repeat step 2. Wrong output declarations therefore never stop a load.
//!
//! Strategies 3 and 4 are skipped when no input dimension is a `dim_param`.
//!
//! Whatever the strategy, [`Runnable::run`](crate::Runnable::run) checks inputs against
//! the concrete shapes of [`Runnable::inputs`](crate::Runnable::inputs).
//!
//! If every strategy fails, the error is [`RuntimeError::Load`] whose message starts
//! with the *first* strategy's error (the most informative one: later strategies hide
//! information) followed by each later strategy's error.

use std::collections::HashMap;
use std::sync::Arc;

use tract_onnx::tract_hir::internal::{
    InferenceFact, InferenceModel, InferenceModelExt, IntoRunnable, OutletId, Symbol, TDim, TVec,
    ToDim, TractErrorContext, TractResult, TypedSimplePlan, bail, ensure,
};

use crate::datum::InputSpec;
use crate::error::{RuntimeError, chain, panic_message};
use crate::model::{
    DeclaredDim, DeclaredInput, DecodedModel, LoadOptions, ModelSource, Prepared, prepare,
};
use crate::runnable::Runnable;

/// How input dimensions are handled by a strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DimMode {
    /// Concrete input facts, symbols substituted before analysis.
    Concrete,
    /// Symbolic analysis and typing, symbols bound on the typed model.
    TypedThenConcretize,
    /// Symbols left free; resolved by tract at run time.
    Symbolic,
}

/// One loader strategy.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Strategy {
    /// The name reported by `Runnable::load_strategy`.
    pub name: &'static str,
    /// `Onnx::with_ignore_value_info`.
    pub ignore_value_info: bool,
    /// Input dimension handling.
    pub dims: DimMode,
    /// Declutter and optimise the typed model.
    pub optimize: bool,
}

/// The names of the loader strategies, in the order [`load`] tries them.
pub const STRATEGIES: [&str; 5] = [
    "default",
    "ignore-value-info",
    "symbolic-then-concretize",
    "symbolic-at-runtime",
    "unoptimized",
];

pub(crate) const LADDER: [Strategy; 5] = [
    Strategy {
        name: STRATEGIES[0],
        ignore_value_info: false,
        dims: DimMode::Concrete,
        optimize: true,
    },
    Strategy {
        name: STRATEGIES[1],
        ignore_value_info: true,
        dims: DimMode::Concrete,
        optimize: true,
    },
    Strategy {
        name: STRATEGIES[2],
        ignore_value_info: true,
        dims: DimMode::TypedThenConcretize,
        optimize: true,
    },
    Strategy {
        name: STRATEGIES[3],
        ignore_value_info: true,
        dims: DimMode::Symbolic,
        optimize: true,
    },
    Strategy {
        name: STRATEGIES[4],
        ignore_value_info: true,
        dims: DimMode::Concrete,
        optimize: false,
    },
];

/// The tract-onnx framework for a strategy, with laurelc's custom ops registered.
pub(crate) fn framework(strategy: &Strategy) -> tract_onnx::Onnx {
    let mut onnx = tract_onnx::onnx()
        .with_ignore_value_info(strategy.ignore_value_info)
        // tract-onnx's default, made explicit: graph-output facts are not read.
        .with_ignore_output_shapes(true);
    crate::ops::register(&mut onnx);
    onnx
}

/// The parsed tract model, with the ONNX-name-to-outlet map.
pub(crate) struct Parsed {
    pub model: InferenceModel,
    pub outlets_by_name: HashMap<String, OutletId>,
}

/// Parses the proto with a strategy's flags and sets the input facts per `strategy.dims`.
/// Returns the model and the symbol bindings for the concretising step.
pub(crate) fn parse_with_inputs(
    decoded: &DecodedModel,
    declared: &[DeclaredInput],
    concrete: &[Vec<usize>],
    opts: &LoadOptions,
    strategy: &Strategy,
) -> TractResult<(Parsed, HashMap<Symbol, TDim>)> {
    let onnx = framework(strategy);
    let parsed = onnx.parse(&decoded.proto, decoded.model_dir.as_deref())?;
    if !parsed.unresolved_inputs.is_empty() {
        bail!(
            "could not resolve inputs at top level: {:?}",
            parsed.unresolved_inputs
        );
    }
    let mut model = parsed.model;
    let inputs = model.input_outlets()?.len();
    ensure!(
        inputs == declared.len(),
        "tract sees {inputs} model inputs, the graph declares {} (non-initializer) inputs",
        declared.len()
    );

    // Symbolic input shapes, in the model's symbol scope.
    let mut symbolic: Vec<TVec<TDim>> = Vec::with_capacity(declared.len());
    for (input, shape) in declared.iter().zip(concrete) {
        let dims = input
            .dims
            .iter()
            .zip(shape)
            .map(|(d, &n)| match d {
                // A dimension whose symbols the caller all fixed (through `dims` or an
                // input shape) is that number; any other keeps its symbolic form.
                DeclaredDim::Param(p) => tract_onnx::dim_expr::parse_onnx_dim(&model.symbols, p)
                    .ok()
                    .filter(|e| {
                        e.symbols()
                            .iter()
                            .any(|s| !opts.dims.contains_key(&s.to_string()))
                    })
                    .unwrap_or_else(|| n.to_dim()),
                DeclaredDim::Fixed(_) | DeclaredDim::Unknown => n.to_dim(),
            })
            .collect();
        symbolic.push(dims);
    }

    // Bindings: every symbol of the inputs, plus every model symbol named in opts.dims.
    let mut subs: HashMap<Symbol, TDim> = HashMap::new();
    for dim in symbolic.iter().flatten() {
        for sym in dim.symbols() {
            let v = opts.dim_value(&sym.to_string());
            subs.insert(sym, v.to_dim());
        }
    }
    for (name, v) in &opts.dims {
        if let Some(sym) = model.symbols.get(name) {
            subs.insert(sym, v.to_dim());
        }
    }

    for (ix, (input, (conc, symb))) in declared
        .iter()
        .zip(concrete.iter().zip(&symbolic))
        .enumerate()
    {
        let dt = input.datum.datum_type();
        let fact = match strategy.dims {
            DimMode::Concrete => {
                InferenceFact::dt_shape(dt, conc.iter().copied().collect::<TVec<usize>>())
            }
            DimMode::TypedThenConcretize | DimMode::Symbolic => {
                InferenceFact::dt_shape(dt, symb.clone())
            }
        };
        model.set_input_fact(ix, fact)?;
    }
    if strategy.dims == DimMode::Concrete && !subs.is_empty() {
        InferenceModelExt::set_symbols(&mut model, &subs)?;
    }
    Ok((
        Parsed {
            model,
            outlets_by_name: parsed.outlets_by_name,
        },
        subs,
    ))
}

/// Builds the runnable plan with one strategy.
fn build(
    decoded: &DecodedModel,
    declared: &[DeclaredInput],
    concrete: &[Vec<usize>],
    opts: &LoadOptions,
    strategy: &Strategy,
) -> TractResult<Arc<TypedSimplePlan>> {
    let (parsed, subs) = parse_with_inputs(decoded, declared, concrete, opts, strategy)?;
    let mut typed = parsed
        .model
        .into_typed()
        .context("analysing and typing the model")?;
    if strategy.dims == DimMode::TypedThenConcretize && !subs.is_empty() {
        typed = typed
            .set_symbols(&subs)
            .context("binding symbols on the typed model")?;
    }
    if strategy.optimize {
        typed.declutter().context("decluttering")?;
        typed.optimize().context("optimising")?;
    }
    typed.into_runnable().context("making the plan")
}

/// Loads a model into a [`Runnable`], trying the loader strategies in order (see the
/// module documentation).
///
/// Symbolic sizes the caller leaves unset are 1. A model that does not load so
/// (a detector whose feature maps at several strides must agree in a `Concat`
/// needs a height and width divisible by its total stride) is tried again,
/// when its failure is in tract's analysis of shapes, with the unset
/// dimensions off an input's axis 0 at each of [`SIZE_FALLBACKS`] in turn;
/// the batch axis stays 1. So is a model that loads at 1 but whose typed
/// outputs are empty (a dimension of 0: a temporal net with stride-2
/// convolutions over a length of 1); if no other size gives a non-empty
/// output, the load at 1 is kept. The first that loads is kept and reported by
/// [`Runnable::chosen_sizes`]. When none does, the error ends with one line
/// naming the symbols to set with `--dim`.
pub fn load(src: ModelSource<'_>, opts: &LoadOptions) -> Result<Runnable, RuntimeError> {
    crate::watchdog::bounded_on("loading", src, opts, load_here)
}

/// [`load`] on the caller's thread.
fn load_here(src: ModelSource<'_>, opts: &LoadOptions) -> Result<Runnable, RuntimeError> {
    let first = load_with(src, opts, &LADDER, true);
    if let Ok(r) = &first
        && opts.default_dim.is_none()
        && has_empty_output(r)
    {
        // Loads, but computes nothing: a stride-2 encoder at length 1.
        let plan = SizePlan::new(src, opts).unwrap_or_default();
        if !plan.is_empty() {
            for &size in SIZE_FALLBACKS {
                if let Ok(sized) = load_with(src, &plan.options(opts, size), &LADDER, true)
                    && !has_empty_output(&sized)
                {
                    return Ok(sized.with_chosen_sizes(plan.chosen(size)));
                }
            }
        }
        return first;
    }
    let Err(RuntimeError::Load { model, message }) = first else {
        return first;
    };
    let message = match crate::model::decode(src)
        .map(|d| crate::decide::deciding_inputs(&d.proto, &opts.values))
        .unwrap_or_default()
        .as_slice()
    {
        [] => message,
        names => format!(
            "{message}\n  an If's condition reads {}: given (--input NAME=FILE.npy), it decides the If at load, which may let the model load",
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let plan = if opts.default_dim.is_none() && about_shapes(&message) {
        SizePlan::new(src, opts).unwrap_or_default()
    } else {
        SizePlan::default()
    };
    if plan.is_empty() {
        return Err(RuntimeError::Load { model, message });
    }
    for &size in SIZE_FALLBACKS {
        if let Ok(r) = load_with(src, &plan.options(opts, size), &LADDER, true) {
            return Ok(r.with_chosen_sizes(plan.chosen(size)));
        }
    }
    Err(RuntimeError::Load {
        model,
        message: format!(
            "{message}\n  it does not load with {} at 1 or at any of {SIZE_FALLBACKS:?}: set them with --dim NAME=SIZE (`?` ones with --shape)",
            plan.names().join(", ")
        ),
    })
}

/// Sizes the loader chose ([`Runnable::chosen_sizes`]) as `a = 8, b = 8`.
#[must_use]
pub fn sizes_text(sizes: &[(String, i64)]) -> String {
    sizes
        .iter()
        .map(|(s, v)| format!("{s} = {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether an output of `r` has a dimension of 0 in its typed shape: the
/// model loads but computes nothing at these sizes (a `Conv` of stride 2
/// over a length of 1 has length 0, and so has everything after it).
fn has_empty_output(r: &Runnable) -> bool {
    let model = r.tract_model();
    model.outputs.iter().any(|o| {
        model
            .outlet_fact(*o)
            .is_ok_and(|f| f.shape.iter().any(|d| d.to_i64().is_ok_and(|n| n == 0)))
    })
}

/// The sizes [`load`] tries, in order, for unset dimensions off the batch
/// axis when a model does not load with them at 1.
pub const SIZE_FALLBACKS: &[i64] = &[8, 32, 64, 224, 640];

/// Whether a load error is tract's analysis failing on shapes (what other
/// sizes may mend), not an op it lacks or a file it cannot read.
fn about_shapes(message: &str) -> bool {
    let m = message.to_lowercase();
    ["failed analyse", "unify", "volume mismatch", "broadcast"]
        .iter()
        .any(|k| m.contains(k))
}

/// What [`load`] varies when a model does not load at 1: the named symbols
/// the caller left unset that size some input off its axis 0, and the
/// inputs with unnamed dimensions off axis 0 (given whole shapes). Symbols
/// set by `opts.dims` or bound by an input shape in `opts.shapes` are not
/// varied, and neither is a symbol that only ever sizes an axis 0.
#[derive(Default)]
struct SizePlan {
    symbols: Vec<String>,
    /// Inputs with unnamed dimensions off axis 0: their declarations.
    unnamed: Vec<crate::model::DeclaredInput>,
}

impl SizePlan {
    fn new(src: ModelSource<'_>, opts: &LoadOptions) -> Result<Self, RuntimeError> {
        let decoded = crate::model::decode(src)?;
        let declared = crate::model::declared_inputs_of(&decoded)?;
        let bound: std::collections::BTreeSet<&str> = declared
            .iter()
            .filter(|d| opts.shapes.contains_key(&d.name))
            .flat_map(|d| d.dims.iter())
            .filter_map(|x| match x {
                DeclaredDim::Param(p) => Some(p.as_str()),
                _ => None,
            })
            .collect();
        let mut off_batch: std::collections::BTreeMap<String, bool> =
            std::collections::BTreeMap::new();
        let mut unnamed = Vec::new();
        for d in declared
            .iter()
            .filter(|d| !opts.shapes.contains_key(&d.name))
        {
            let mut has_unnamed = false;
            for (axis, dim) in d.dims.iter().enumerate() {
                match dim {
                    DeclaredDim::Param(p)
                        if !opts.dims.contains_key(p) && !bound.contains(p.as_str()) =>
                    {
                        *off_batch.entry(p.clone()).or_insert(false) |= axis > 0;
                    }
                    DeclaredDim::Unknown if axis > 0 => has_unnamed = true,
                    _ => {}
                }
            }
            if has_unnamed {
                unnamed.push(d.clone());
            }
        }
        Ok(Self {
            symbols: off_batch
                .into_iter()
                .filter(|(_, off)| *off)
                .map(|(s, _)| s)
                .collect(),
            unnamed,
        })
    }

    fn is_empty(&self) -> bool {
        self.symbols.is_empty() && self.unnamed.is_empty()
    }

    /// `opts` with the varied dimensions at `size` (axis 0 stays as it was).
    fn options(&self, opts: &LoadOptions, size: i64) -> LoadOptions {
        let mut o = opts.clone();
        for s in &self.symbols {
            o.dims.insert(s.clone(), size);
        }
        for d in &self.unnamed {
            let Ok(mut shape) = d.resolve(&o, "") else {
                continue;
            };
            for (axis, dim) in d.dims.iter().enumerate() {
                if axis > 0 && *dim == DeclaredDim::Unknown {
                    shape[axis] = usize::try_from(size).unwrap_or(1);
                }
            }
            o.shapes.insert(d.name.clone(), shape);
        }
        o
    }

    /// What [`Runnable::chosen_sizes`] reports at `size`.
    fn chosen(&self, size: i64) -> Vec<(String, i64)> {
        self.names().into_iter().map(|s| (s, size)).collect()
    }

    /// The varied symbols, `?` for the unnamed dimensions.
    fn names(&self) -> Vec<String> {
        let mut names = self.symbols.clone();
        if !self.unnamed.is_empty() {
            names.push("?".to_owned());
        }
        names
    }
}

/// Loads a model with one named strategy only (one of [`STRATEGIES`]), e.g. to check
/// that a model loads without fallback. Unlike [`load`], the symbolic strategies are
/// tried even when no input dimension is symbolic.
pub fn load_with_strategy(
    src: ModelSource<'_>,
    opts: &LoadOptions,
    strategy: &str,
) -> Result<Runnable, RuntimeError> {
    let Some(s) = LADDER.iter().find(|s| s.name == strategy) else {
        return Err(RuntimeError::Load {
            model: src.describe(),
            message: format!(
                "unknown loader strategy `{strategy}` (known: {})",
                STRATEGIES.join(", ")
            ),
        });
    };
    load_with(src, opts, std::slice::from_ref(s), false)
}

fn load_with(
    src: ModelSource<'_>,
    opts: &LoadOptions,
    ladder: &[Strategy],
    skip_useless: bool,
) -> Result<Runnable, RuntimeError> {
    let Prepared {
        mut decoded,
        declared,
        opts,
        concrete,
    } = prepare(src, opts)?;
    let decided = crate::decide::decide_ifs(&mut decoded.proto, &opts.values, &evaluate)?;
    let registry = framework(&LADDER[0]).op_register;
    if let Some(message) =
        crate::support::unsupported_ops(&decoded.proto, &|op| registry.0.contains_key(op))
    {
        return Err(RuntimeError::UnsupportedModel {
            model: decoded.desc.clone(),
            message,
        });
    }
    let opts = &opts;
    let specs: Vec<InputSpec> = declared
        .iter()
        .map(|d| d.resolved_spec(opts, &decoded.desc))
        .collect::<Result<_, _>>()?;
    let output_names = decoded.output_names()?;

    let has_symbols = declared
        .iter()
        .any(|d| d.dims.iter().any(|x| matches!(x, DeclaredDim::Param(_))));
    let mut errors: Vec<String> = Vec::new();
    for strategy in ladder {
        if skip_useless && strategy.dims != DimMode::Concrete && !has_symbols {
            // Without symbolic input dimensions these are the concrete strategy again.
            continue;
        }
        // tract panics on some malformed or unusual models; a panic is one more failed strategy.
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            build(&decoded, &declared, &concrete, opts, strategy)
        }))
        .unwrap_or_else(|payload| {
            Err(tract_onnx::tract_hir::internal::anyhow!(
                "tract panicked: {}",
                panic_message(&*payload)
            ))
        });
        match attempt {
            Ok(plan) => {
                let outputs = plan.model().output_outlets().map_or(0, <[OutletId]>::len);
                if outputs != output_names.len() {
                    errors.push(format!(
                        "[{}] tract model has {outputs} outputs, the graph declares {}",
                        strategy.name,
                        output_names.len()
                    ));
                    continue;
                }
                return Ok(
                    Runnable::new(plan, specs, output_names, strategy.name).with_decided(decided)
                );
            }
            Err(e) => errors.push(format!("[{}] {}", strategy.name, chain(&e))),
        }
    }
    Err(RuntimeError::Load {
        model: decoded.desc,
        message: errors.join("\n  then "),
    })
}

/// Runs `f`, turning a panic inside tract into a [`RuntimeError::Load`] for `src`.
pub(crate) fn contain<T>(
    src: ModelSource<'_>,
    f: impl FnOnce() -> Result<T, RuntimeError>,
) -> Result<T, RuntimeError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        Err(RuntimeError::Load {
            model: src.describe(),
            message: format!("tract panicked: {}", panic_message(&*payload)),
        })
    })
}

/// The condition's value: `true` when its first element is non-zero.
fn evaluate(
    sub: &tract_onnx::pb::ModelProto,
    cond: &str,
    values: &std::collections::BTreeMap<String, crate::decide::GivenValue>,
) -> Result<bool, RuntimeError> {
    let bytes = prost::Message::encode_to_vec(sub);
    let graph = sub
        .graph
        .as_ref()
        .ok_or_else(|| crate::decide::internal("no graph"))?;
    let mut opts = LoadOptions::default();
    let mut inputs = Vec::new();
    for i in &graph.input {
        let Some((shape, v)) = values.get(&i.name) else {
            continue;
        };
        opts.shapes.insert(i.name.clone(), shape.clone());
        let elem = i
            .r#type
            .as_ref()
            .and_then(|t| match &t.value {
                Some(tract_onnx::pb::type_proto::Value::TensorType(t)) => Some(t.elem_type),
                _ => None,
            })
            .and_then(crate::datum::DatumKind::from_onnx_code)
            .ok_or_else(|| {
                crate::decide::internal(&format!("input `{}` has no element type", i.name))
            })?;
        let t = tract_onnx::prelude::Tensor::from_shape(shape, v)
            .and_then(|t| {
                t.cast_to_dt(elem.datum_type())
                    .map(std::borrow::Cow::into_owned)
            })
            .map_err(|e| crate::decide::internal(&format!("input `{}`: {e}", i.name)))?;
        inputs.push((i.name.clone(), t));
    }
    let runnable = load(ModelSource::Bytes(&bytes), &opts)?;
    let out = runnable.run(inputs)?;
    let (_, t) = out.into_iter().next().ok_or_else(|| {
        crate::decide::internal(&format!("the condition `{cond}` computed nothing"))
    })?;
    let t = t
        .cast_to_dt(tract_onnx::prelude::DatumType::Bool)
        .map_err(|e| crate::decide::internal(&format!("the condition `{cond}`: {e}")))?;
    let first = t
        .try_as_plain_ram()
        .ok()
        .and_then(|p| p.as_slice::<bool>().ok().and_then(|s| s.first().copied()))
        .ok_or_else(|| crate::decide::internal(&format!("the condition `{cond}` is empty")))?;
    Ok(first)
}
