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
/// (a detector whose feature maps at several strides must agree in `Concat`
/// needs a height and width divisible by its total stride) is tried again
/// with the unset symbols not on an input's axis 0 (the batch, which stays 1)
/// at each of [`SIZE_FALLBACKS`] in turn; the first that loads is kept and
/// reported by [`Runnable::chosen_sizes`]. When none does, the error says in
/// its first line which symbols to set with `--dim`.
pub fn load(src: ModelSource<'_>, opts: &LoadOptions) -> Result<Runnable, RuntimeError> {
    let first = load_with(src, opts, &LADDER, true);
    let Err(RuntimeError::Load { model, message }) = first else {
        return first;
    };
    let free = free_symbols(src, opts).unwrap_or_default();
    let varied: Vec<&str> = free
        .iter()
        .filter(|(_, batch)| !batch)
        .map(|(s, _)| s.as_str())
        .collect();
    if opts.default_dim.is_none() && !varied.is_empty() {
        for &size in SIZE_FALLBACKS {
            let mut o = opts.clone();
            for &sym in &varied {
                if sym == "?" {
                    o.default_dim = Some(size);
                } else {
                    o.dims.insert(sym.to_owned(), size);
                }
            }
            if let Ok(r) = load_with(src, &o, &LADDER, true) {
                let sizes = varied.iter().map(|&s| (s.to_owned(), size)).collect();
                return Ok(r.with_chosen_sizes(sizes));
            }
        }
    }
    if varied.is_empty() || opts.default_dim.is_some() {
        return Err(RuntimeError::Load { model, message });
    }
    Err(RuntimeError::Load {
        model,
        message: format!(
            "it loads with its symbolic sizes {} neither at 1 nor at any of {SIZE_FALLBACKS:?}: set them with --dim NAME=SIZE\n  at 1: {message}",
            varied.join(", ")
        ),
    })
}

/// The sizes [`load`] tries, in order, for unset symbols off the batch axis
/// when a model does not load with them at 1.
pub const SIZE_FALLBACKS: &[i64] = &[8, 32, 64, 224, 640];

/// The symbols of the declared inputs that `opts` leaves to the default, each
/// with whether it only ever sizes an input's axis 0 (a batch). Unnamed
/// dimensions are `?`. Sorted by name.
fn free_symbols(
    src: ModelSource<'_>,
    opts: &LoadOptions,
) -> Result<Vec<(String, bool)>, RuntimeError> {
    let decoded = crate::model::decode(src)?;
    let declared = crate::model::declared_inputs_of(&decoded)?;
    let mut free: std::collections::BTreeMap<String, bool> = std::collections::BTreeMap::new();
    for d in &declared {
        if opts.shapes.contains_key(&d.name) {
            continue;
        }
        for (axis, dim) in d.dims.iter().enumerate() {
            let name = match dim {
                DeclaredDim::Param(p) if !opts.dims.contains_key(p) => p.clone(),
                DeclaredDim::Unknown => "?".to_owned(),
                _ => continue,
            };
            let batch = free.entry(name).or_insert(true);
            *batch &= axis == 0;
        }
    }
    Ok(free.into_iter().collect())
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
        decoded,
        declared,
        opts,
        concrete,
    } = prepare(src, opts)?;
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
                return Ok(Runnable::new(plan, specs, output_names, strategy.name));
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
