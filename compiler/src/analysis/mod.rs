//! Analyses of the IR.
//!
//! - [`constants`]: which values are constant (computable from initializers alone).
//! - [`reach`]: data-ancestor and data-descendant sets, where paths through
//!   `Shape`/`Size` do not count.
//! - [`residual`]: canonical (identity) residual adds and projection shortcuts.
//! - [`stream`]: residual streams, the chains of blocks PA needs.
//! - [`dot`]: a Graphviz picture of the streams.
//! - [`flops`]: FLOPs estimates of matrix products and convolutions.
//! - [`types`]: every value's element type and shape, from tract's inference.

pub mod constants;
pub mod dot;
pub mod flops;
pub mod reach;
pub mod residual;
pub mod scopes;
pub mod stream;
pub mod types;

pub use residual::{Residual, ResidualKind, Undecided, find_residuals};
pub use scopes::SubgraphAnalysis;
pub use stream::assign_streams;

use laurel_runtime::{DimSpec, InferredValue, LoadOptions, ModelSource};

use crate::error::Result;
use crate::ir::Model;

/// The residual analysis of a model: its residuals with streams assigned,
/// and the tract strategy that inferred the shapes; the same for each
/// subgraph it holds ([`scopes`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ResidualAnalysis {
    /// Residuals in topological order.
    pub residuals: Vec<Residual>,
    /// How tract inferred the shapes (see [`laurel_runtime::infer_symbolic_shapes`]).
    pub shape_strategy: String,
    /// The adds that could be residuals but could not be decided: an
    /// operand's shape is unknown even after the fallbacks of
    /// [`infer_values`]; and the subgraphs that could not be analysed.
    pub undecided: Vec<Undecided>,
    /// The subgraphs of `If`/`Loop`/`Scan` nodes, each with its own
    /// analysis (nested ones inside their parent's).
    pub subgraphs: Vec<SubgraphAnalysis>,
}

impl ResidualAnalysis {
    /// Residuals found in the graph and in all its subgraphs: the number of
    /// block numbers the analysis takes. O(subgraphs).
    #[must_use]
    pub fn block_count(&self) -> usize {
        self.residuals.len()
            + self
                .subgraphs
                .iter()
                .map(|s| s.analysis.block_count())
                .sum::<usize>()
    }

    /// One more than the largest stream number of the graph and its
    /// subgraphs, or `at_least` when that is larger (no residuals).
    #[must_use]
    pub fn stream_end(&self, at_least: usize) -> usize {
        self.residuals
            .iter()
            .map(|r| r.stream + 1)
            .chain(self.subgraphs.iter().map(|s| s.analysis.stream_end(0)))
            .fold(at_least, usize::max)
    }

    /// Every subgraph analysis, nested ones after their parent, depth first.
    #[must_use]
    pub fn all_subgraphs(&self) -> Vec<&SubgraphAnalysis> {
        let mut out = Vec::new();
        for s in &self.subgraphs {
            out.push(s);
            out.extend(s.analysis.all_subgraphs());
        }
        out
    }

    /// Undecided adds of the graph and of all its subgraphs (the latter
    /// named with their subgraph's path).
    #[must_use]
    pub fn all_undecided(&self) -> Vec<Undecided> {
        let mut out = self.undecided.clone();
        for s in self.all_subgraphs() {
            out.extend(s.analysis.undecided.iter().map(|u| Undecided {
                node: format!("{} > {}", s.path, u.node),
                reason: u.reason.clone(),
            }));
        }
        out
    }
}

/// Float initializers of at least this many elements are left out of the
/// model tract analyses (see [`crate::onnx::to_shape_probe_bytes`]): shapes
/// never depend on weights that large, and decoding them would cost a copy of
/// the model.
pub const PROBE_MIN_ELEMENTS: u64 = 1024;

/// Finds a model's residuals. Shapes come from tract's inference (symbolic,
/// so that equal shapes are equal for every input size) on a shape probe of
/// the model, without its large weights. O(A · (V + E)) after inference.
///
/// # Errors
/// The probe cannot be encoded, or shape inference fails outright.
pub fn analyse_residuals(model: &Model) -> Result<ResidualAnalysis> {
    analyse_scope(model, "", scopes::Numbering::default())
}

/// [`analyse_residuals`] of a graph whose path is `prefix` (empty for the
/// main graph), its blocks and streams numbered from `from`'s.
fn analyse_scope(model: &Model, prefix: &str, from: scopes::Numbering) -> Result<ResidualAnalysis> {
    let (values, filled, shape_strategy) = infer_values_in_two(model)?;
    let (mut residuals, mut undecided) = find_residuals(&model.graph, &values, filled.as_ref());
    assign_streams(&model.graph, &mut residuals);
    for r in &mut residuals {
        r.stream += from.stream;
    }
    let next = scopes::Numbering {
        block: from.block + residuals.len(),
        stream: residuals
            .iter()
            .map(|r| r.stream + 1)
            .max()
            .unwrap_or(from.stream),
    };
    let subgraphs = scopes::analyse_subgraphs(
        model,
        &values,
        filled.as_ref(),
        prefix,
        next,
        &analyse_scope,
        &mut undecided,
    );
    Ok(ResidualAnalysis {
        residuals,
        shape_strategy,
        undecided,
        subgraphs,
    })
}

/// The two sizes the concrete fallback gives the free symbols.
pub const FALLBACK_SIZES: [i64; 2] = [64, 96];

/// The inferred element type and shape of every value, and how they were
/// inferred:
/// 1. tract's symbolic inference on a shape probe of the model (without its
///    large weights);
/// 2. when that fails, concrete inference at two sizes
///    ([`FALLBACK_SIZES`]), keeping only the dimensions both agree on (at
///    one size `[N,C,H,W]` and `[N,C,1,1]` could look equal);
/// 3. when the model does not infer at those sizes either, the symbols it
///    fixes itself are found: a `PyTorch` trace bakes its example's batch of 1
///    into `Reshape` constants and declares `batch = 1` on its outputs while
///    its input says `batch`. Each named input symbol is tried at 1, and the
///    one that lets the most values be inferred is kept at 1, until the
///    model infers (at most once per symbol); the other symbols (and
///    unnamed `?` dimensions) then vary between the two sizes as in 2.
///
/// When symbolic inference succeeds but leaves values without a shape (an op
/// it cannot type symbolically), the fallback of 2–3 is run as well and
/// gives those values, and only those, its shapes: per value, not per
/// model; a varying filled dimension takes the name symbolic inference
/// gives that dimension elsewhere ([`symbol_names`]). Residual analysis
/// compares an add's operands within one source:
/// both symbolic, else both concrete ([`infer_values_in_two`]), since a
/// filled dimension that varies is the symbol `64|96` and a symbolic one is
/// `batch`. Values that stay without a shape are not guessed: their adds are
/// reported as undecided ([`ResidualAnalysis::undecided`]).
/// Cost: at most 3 + s·(s + 1)/2 inferences for s input symbols.
///
/// # Errors
/// The probe cannot be encoded, or shape inference fails outright.
pub fn infer_values(
    model: &Model,
) -> Result<(std::collections::BTreeMap<String, InferredValue>, String)> {
    let (mut values, concrete, strategy) = infer_values_in_two(model)?;
    let Some(concrete) = concrete else {
        return Ok((values, strategy));
    };
    let names = symbol_names(&values, &concrete);
    for (name, v) in concrete {
        if let Some(slot) = values.get_mut(&name)
            && slot.shape.is_none()
        {
            slot.shape = v.shape.map(|shape| {
                shape
                    .into_iter()
                    .enumerate()
                    .map(|(k, d)| names.get(&(k, d.clone())).cloned().flatten().unwrap_or(d))
                    .collect()
            });
        }
    }
    Ok((values, strategy))
}

/// What each varying dimension of the concrete fallback (`64|96`) is called
/// by symbolic inference, per axis: the dimension symbolic inference gives
/// axis `k` of every value both shaped whose axis `k` is that fallback
/// dimension (`None` when two values disagree, and the filled value keeps
/// `64|96`). The fallback gives every symbol the same sizes, so `64|96` alone
/// cannot tell `batch` from `time`; its axis mostly can. Without this a
/// filled value and a symbolic one could never have the same shape (`[b, 8,
/// t]` and `[64|96, 8, 64|96]`), and fusion's shape check refuses every sum
/// of the two: a U-Net skip's `Add` of an encoder output (shaped
/// symbolically) and a `ConvTranspose` output (filled).
///
/// Complexity: O(values · rank).
fn symbol_names(
    symbolic: &std::collections::BTreeMap<String, InferredValue>,
    concrete: &std::collections::BTreeMap<String, InferredValue>,
) -> std::collections::HashMap<(usize, DimSpec), Option<DimSpec>> {
    let mut names: std::collections::HashMap<(usize, DimSpec), Option<DimSpec>> =
        std::collections::HashMap::new();
    for (name, v) in symbolic {
        let (Some(s), Some(c)) = (
            v.shape.as_ref(),
            concrete.get(name).and_then(|c| c.shape.as_ref()),
        ) else {
            continue;
        };
        if s.len() != c.len() {
            continue;
        }
        for (k, (s, c)) in s.iter().zip(c).enumerate() {
            if matches!(c, DimSpec::Symbol(_)) {
                names
                    .entry((k, c.clone()))
                    .and_modify(|n| {
                        if n.as_ref() != Some(s) {
                            *n = None;
                        }
                    })
                    .or_insert_with(|| Some(s.clone()));
            }
        }
    }
    names
}

/// Shapes as [`infer_values`] finds them, its two sources apart: the first
/// inference that succeeded (symbolic, or the concrete fallback), and, when
/// that was symbolic but left values without a shape, the concrete
/// fallback's shapes of every value; and how they were found.
///
/// # Errors
/// As [`infer_values`].
#[allow(clippy::type_complexity)]
pub fn infer_values_in_two(
    model: &Model,
) -> Result<(
    std::collections::BTreeMap<String, InferredValue>,
    Option<std::collections::BTreeMap<String, InferredValue>>,
    String,
)> {
    let probe = crate::onnx::to_shape_probe_bytes(model, PROBE_MIN_ELEMENTS)?;
    let source = ModelSource::Bytes(&probe);
    let symbolic = laurel_runtime::infer_symbolic_shapes(source, &LoadOptions::default())?;
    if !symbolic.strategy.starts_with("symbolic") {
        let (values, how) = concrete_values(source)?;
        return Ok((values, None, how));
    }
    let gaps: Vec<&String> = symbolic
        .values
        .iter()
        .filter(|(_, v)| v.shape.is_none())
        .map(|(k, _)| k)
        .collect();
    if gaps.is_empty() {
        return Ok((symbolic.values, None, symbolic.strategy));
    }
    let (concrete, how) = concrete_values(source)?;
    let filled = gaps
        .iter()
        .filter(|k| concrete.get(**k).is_some_and(|v| v.shape.is_some()))
        .count();
    let strategy = format!(
        "{}; {filled} of the {} values it left without a shape by {how}",
        symbolic.strategy,
        gaps.len()
    );
    Ok((symbolic.values, Some(concrete), strategy))
}

/// Steps 2–3 of [`infer_values`]: shapes from concrete inference at the
/// two [`FALLBACK_SIZES`], with the symbols the model fixes itself at 1, and
/// how they were found.
fn concrete_values(
    source: ModelSource<'_>,
) -> Result<(std::collections::BTreeMap<String, InferredValue>, String)> {
    let at = |fixed: &std::collections::BTreeMap<String, i64>, d: i64| {
        laurel_runtime::infer_shapes(
            source,
            &LoadOptions {
                dims: fixed.clone(),
                default_dim: Some(d),
                ..LoadOptions::default()
            },
        )
    };
    let complete = |s: &laurel_runtime::InferredShapes| s.error.is_none();
    let known = |s: &laurel_runtime::InferredShapes| {
        s.values.values().filter(|v| v.shape.is_some()).count()
    };
    let mut fixed = std::collections::BTreeMap::new();
    let mut first = at(&fixed, FALLBACK_SIZES[0])?;
    if !complete(&first) {
        let mut symbols: Vec<String> = laurel_runtime::declared_inputs(source)?
            .into_iter()
            .flat_map(|i| i.shape)
            .filter_map(|d| match d {
                DimSpec::Symbol(s) if s != "?" => Some(s),
                DimSpec::Symbol(_) | DimSpec::Fixed(_) => None,
            })
            .collect();
        symbols.sort();
        symbols.dedup();
        while !complete(&first) && !symbols.is_empty() {
            let mut best: Option<(usize, usize, laurel_runtime::InferredShapes)> = None;
            for (k, sym) in symbols.iter().enumerate() {
                let mut trial = fixed.clone();
                trial.insert(sym.clone(), 1);
                let got = at(&trial, FALLBACK_SIZES[0])?;
                let score = known(&got) + usize::from(complete(&got)) * usize::MAX / 2;
                if best.as_ref().is_none_or(|b| score > b.0) {
                    best = Some((score, k, got));
                }
            }
            let Some((score, k, got)) = best else { break };
            if score <= known(&first) {
                break;
            }
            fixed.insert(symbols.remove(k), 1);
            first = got;
        }
    }
    let second = at(&fixed, FALLBACK_SIZES[1])?;
    let pinned = if fixed.is_empty() {
        String::new()
    } else {
        let names: Vec<String> = fixed.keys().map(|k| format!("{k} = 1")).collect();
        if complete(&first) {
            format!(", the model fixes {}", names.join(", "))
        } else {
            format!(", {} held at 1 (more values infer so)", names.join(", "))
        }
    };
    let strategy = format!(
        "concrete at sizes {} and {}{pinned} ({}, {})",
        FALLBACK_SIZES[0], FALLBACK_SIZES[1], first.strategy, second.strategy
    );
    Ok((agreeing_shapes(first.values, &second.values), strategy))
}

/// Shapes from two inferences at different sizes: a dimension that differs
/// becomes a symbol naming both sizes; a value whose rank differs, or that
/// one side lacks, has no shape.
fn agreeing_shapes(
    a: std::collections::BTreeMap<String, InferredValue>,
    b: &std::collections::BTreeMap<String, InferredValue>,
) -> std::collections::BTreeMap<String, InferredValue> {
    a.into_iter()
        .map(|(name, mut va)| {
            let sb = b.get(&name).and_then(|v| v.shape.as_ref());
            va.shape = match (va.shape.take(), sb) {
                (Some(sa), Some(sb)) if sa.len() == sb.len() => Some(
                    sa.into_iter()
                        .zip(sb)
                        .map(|(x, y)| {
                            if x == *y {
                                x
                            } else {
                                DimSpec::Symbol(format!("{x}|{y}"))
                            }
                        })
                        .collect(),
                ),
                _ => None,
            };
            (name, va)
        })
        .collect()
}

/// Op types that carry learned weights: a residual branch must hold one.
pub const PARAMETRIC_OPS: &[&str] = &[
    "Conv",
    "ConvTranspose",
    "ConvInteger",
    "QLinearConv",
    "MatMul",
    "Gemm",
    "MatMulInteger",
    "QLinearMatMul",
    "RNN",
    "LSTM",
    "GRU",
];

/// Whether an op of this type (default ONNX domain) carries learned weights.
#[must_use]
pub fn is_parametric(op_type: &str) -> bool {
    PARAMETRIC_OPS.contains(&op_type)
}

#[cfg(test)]
mod symbol_name_tests {
    use std::collections::BTreeMap;

    use laurel_runtime::{DimSpec, InferredValue};

    fn value(dims: &[&str]) -> InferredValue {
        InferredValue {
            datum: None,
            shape: Some(
                dims.iter()
                    .map(|d| {
                        d.parse()
                            .map_or_else(|_| DimSpec::Symbol((*d).to_owned()), DimSpec::Fixed)
                    })
                    .collect(),
            ),
            value: None,
        }
    }

    #[test]
    fn a_fallback_dimension_takes_the_symbolic_name_of_its_axis() {
        let symbolic: BTreeMap<String, InferredValue> = [
            ("enc".to_string(), value(&["b", "8", "t"])),
            ("half".to_string(), value(&["b", "16", "t/2"])),
        ]
        .into();
        let concrete: BTreeMap<String, InferredValue> = [
            ("enc".to_string(), value(&["64|96", "8", "64|96"])),
            ("half".to_string(), value(&["64|96", "16", "32|48"])),
        ]
        .into();
        let names = super::symbol_names(&symbolic, &concrete);
        let sym = |s: &str| DimSpec::Symbol(s.to_owned());
        assert_eq!(names[&(0, sym("64|96"))], Some(sym("b")));
        assert_eq!(names[&(2, sym("64|96"))], Some(sym("t")));
        assert_eq!(names[&(2, sym("32|48"))], Some(sym("t/2")));
        // One fallback dimension, two names by axis: `64|96` alone is ambiguous.
        assert!(!names.contains_key(&(1, sym("64|96"))));
        // Two values that disagree leave the dimension unnamed.
        let mut clash = symbolic.clone();
        clash.insert("enc2".into(), value(&["n", "8", "t"]));
        let mut concrete2 = concrete.clone();
        concrete2.insert("enc2".into(), value(&["64|96", "8", "64|96"]));
        assert_eq!(
            super::symbol_names(&clash, &concrete2)[&(0, sym("64|96"))],
            None
        );
    }
}
