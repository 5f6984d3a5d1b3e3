//! [`infer_shapes`]: the element types and shapes tract's type inference gives every
//! value of a model.
//!
//! The model is parsed as by the concrete loader strategies of [`crate::load`](mod@crate::load)
//! (`default`, then `ignore-value-info`), the
//! inputs get the concrete shapes from the [`LoadOptions`], and tract-hir's analyser is
//! run on the inference model. Values are keyed by ONNX name: graph inputs,
//! initializers and every node output. The analysis is done *before* tract's
//! translation to a typed model, so every ONNX value is still there (decluttering and
//! optimisation fuse and rename nodes).
//!
//! If both strategies fail, the analysis is rerun "obstinately" (continuing past
//! failing nodes) with the last strategy's settings, and whatever was inferred is
//! returned, with [`InferredShapes::error`] holding the first strategy's error.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tract_onnx::tract_hir::internal::{
    DatumType, Factoid, InferenceFact, InferenceModel, InferenceModelExt, OutletId,
};

use crate::datum::{DatumKind, DimSpec};
use crate::error::{RuntimeError, chain};
use crate::load::{DimMode, LADDER, Strategy, contain, parse_with_inputs};
use crate::model::{LoadOptions, ModelSource, Prepared, prepare};

/// What tract inferred about one value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InferredValue {
    /// The element type, if inferred and supported. Shape-like values that tract
    /// computes as symbolic dimensions (`TDim`) are reported as `I64`, as in ONNX.
    pub datum: Option<DatumKind>,
    /// The shape, if its rank and every dimension are known. A dimension tract only
    /// knows as an expression of symbols (e.g. a data-dependent size) is a
    /// [`DimSpec::Symbol`] holding the expression.
    pub shape: Option<Vec<DimSpec>>,
    /// The value, when tract knows it and it is a small integer tensor (at
    /// most [`SMALL_INTS`] elements, row-major): a shape, an index or a size
    /// computed from shapes (`Shape` → `Gather` → `Mul` …), fixed once the
    /// input sizes are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Vec<i64>>,
}

/// The most elements of an integer value [`InferredValue::value`] keeps.
pub const SMALL_INTS: usize = 64;

/// Result of [`infer_shapes`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InferredShapes {
    /// What was inferred, by ONNX value name.
    pub values: BTreeMap<String, InferredValue>,
    /// The strategy whose analysis succeeded, or `"partial"` if none did.
    pub strategy: String,
    /// When no strategy succeeded: the errors (first strategy's first); the values are
    /// then what the obstinate analysis inferred.
    pub error: Option<String>,
}

fn inferred(fact: &InferenceFact) -> InferredValue {
    let datum = fact.datum_type.concretize().and_then(|dt| {
        if dt == DatumType::TDim {
            Some(DatumKind::I64)
        } else {
            DatumKind::from_datum_type(dt)
        }
    });
    let shape = fact.shape.concretize().map(|dims| {
        dims.iter()
            .map(
                |d| match d.to_i64().ok().and_then(|v| usize::try_from(v).ok()) {
                    Some(n) => DimSpec::Fixed(n),
                    None => DimSpec::Symbol(d.to_string()),
                },
            )
            .collect()
    });
    let value = fact.value.concretize().and_then(|t| small_ints(&t));
    InferredValue {
        datum,
        shape,
        value,
    }
}

/// A small integer tensor's values (`TDim` ones only when they are numbers).
fn small_ints(t: &tract_onnx::prelude::Tensor) -> Option<Vec<i64>> {
    if t.len() > SMALL_INTS {
        return None;
    }
    let plain = t.try_as_plain_ram().ok()?;
    match t.datum_type() {
        DatumType::TDim => plain
            .as_slice::<tract_onnx::prelude::TDim>()
            .ok()?
            .iter()
            .map(|d| d.to_i64().ok())
            .collect(),
        DatumType::I64 => plain.as_slice::<i64>().ok().map(<[i64]>::to_vec),
        DatumType::I32 => plain
            .as_slice::<i32>()
            .ok()
            .map(|v| v.iter().map(|&x| i64::from(x)).collect()),
        _ => None,
    }
}

fn collect(
    model: &InferenceModel,
    outlets: &std::collections::HashMap<String, OutletId>,
) -> BTreeMap<String, InferredValue> {
    outlets
        .iter()
        .filter_map(|(name, outlet)| {
            model
                .outlet_fact(*outlet)
                .ok()
                .map(|f| (name.clone(), inferred(f)))
        })
        .collect()
}

/// Infers the element type and shape of every value of a model (see the module doc).
pub fn infer_shapes(
    src: ModelSource<'_>,
    opts: &LoadOptions,
) -> Result<InferredShapes, RuntimeError> {
    bounded_infer(src, opts, concrete_strategies())
}

/// [`infer_with`] with panics contained and within the time limit
/// ([`crate::watchdog`]).
fn bounded_infer(
    src: ModelSource<'_>,
    opts: &LoadOptions,
    strategies: Vec<Strategy>,
) -> Result<InferredShapes, RuntimeError> {
    crate::watchdog::bounded_on("analysing the shapes of", src, opts, move |src, opts| {
        contain(src, || infer_with(src, opts, &strategies))
    })
}

fn concrete_strategies() -> Vec<Strategy> {
    LADDER
        .iter()
        .filter(|s| s.dims == DimMode::Concrete && s.optimize)
        .copied()
        .collect()
}

/// Like [`infer_shapes`], but input dimensions declared as symbols stay symbols,
/// so shapes come back as expressions of them (`batch_size`, `sequence_length`,
/// `(H+1)/2`) rather than as the numbers one choice of sizes gives. Two values
/// with equal symbolic shapes have equal shapes for every input size, which is
/// what a broadcast-free check needs. Symbols in `opts.dims` and the inputs in
/// `opts.shapes` are still fixed; unnamed unknown dimensions take the default.
/// Falls back to the concrete analysis of [`infer_shapes`] when the symbolic
/// one fails ([`InferredShapes::strategy`] then says which).
pub fn infer_symbolic_shapes(
    src: ModelSource<'_>,
    opts: &LoadOptions,
) -> Result<InferredShapes, RuntimeError> {
    let symbolic = |name, ignore_value_info| Strategy {
        name,
        ignore_value_info,
        dims: DimMode::Symbolic,
        optimize: true,
    };
    let mut strategies = vec![
        symbolic("symbolic", false),
        symbolic("symbolic-ignore-value-info", true),
    ];
    strategies.extend(concrete_strategies());
    bounded_infer(src, opts, strategies)
}

fn infer_with(
    src: ModelSource<'_>,
    opts: &LoadOptions,
    strategies: &[Strategy],
) -> Result<InferredShapes, RuntimeError> {
    let Prepared {
        decoded,
        declared,
        opts,
        concrete,
    } = prepare(src, opts)?;
    let opts = &opts;
    let mut errors = Vec::new();
    for strategy in strategies {
        let attempt = parse_with_inputs(&decoded, &declared, &concrete, opts, strategy).and_then(
            |(mut parsed, _)| {
                parsed.model.analyse(false)?;
                Ok(parsed)
            },
        );
        match attempt {
            Ok(parsed) => {
                return Ok(InferredShapes {
                    values: collect(&parsed.model, &parsed.outlets_by_name),
                    strategy: strategy.name.to_owned(),
                    error: None,
                });
            }
            Err(e) => errors.push(format!("[{}] {}", strategy.name, chain(&e))),
        }
    }
    let error = errors.join("\n  then ");
    let Some(last) = strategies.last() else {
        return Err(RuntimeError::Load {
            model: decoded.desc,
            message: error,
        });
    };
    let (mut parsed, _) =
        parse_with_inputs(&decoded, &declared, &concrete, opts, last).map_err(|e| {
            RuntimeError::Load {
                model: decoded.desc.clone(),
                message: format!("{error}\n  then {}", chain(&e)),
            }
        })?;
    // The error is already known from the non-obstinate run; keep the partial facts.
    let _ = parsed.model.analyse(true);
    Ok(InferredShapes {
        values: collect(&parsed.model, &parsed.outlets_by_name),
        strategy: "partial".to_owned(),
        error: Some(error),
    })
}
