//! Fusion for inference (`laurelc fuse`).
//!
//! [`fuse_model`] runs, in order:
//! 1. [`fold`]: constant folding of parameter-only subgraphs (the Softmax or
//!    Sigmoid of an RW parametrisation becomes the scalars α and β);
//! 2. [`lower`]: the graph, window by window, into the e-graph's terms, with what
//!    each op allows ([`semantics`]); the ops of an exact GELU ([`gelu`]) join no
//!    window;
//! 3. equality saturation with the fusion rules and DAG-aware extraction
//!    ([`laurel_passes::fuse()`]);
//! 4. [`lift`]: the extracted term back into ONNX ops;
//! 5. constant folding again, which computes the scaled weights (`c·W`) into
//!    initializers;
//! 6. for [`Target::Tract`], [`low_rank`]: sums with thin low-rank products become
//!    `LaurelResidual`s that compute them; then removal of what nothing reads any
//!    more.
//!
//! Every rule is an equality, so the fused model computes the input's
//! function, whatever the limits cut short.

pub mod blocks;
pub mod dequant;
pub mod fold;
pub mod gelu;
pub mod lift;
pub mod low_rank;
pub mod lower;
pub mod semantics;
pub mod subgraphs;

pub use fold::{FoldReport, fold_constants};

use std::collections::{BTreeMap, HashSet};

use petgraph::stable_graph::NodeIndex;
use std::time::Duration;

use laurel_passes::{FuseReport, Limits};
use laurel_runtime::ops::laurel_residual;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::ir::Model;

/// The runtime a fused model is for, as `laurelc fuse --target` names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Standard ONNX ops only, for any runtime (onnxruntime).
    #[default]
    Onnx,
    /// Standard ONNX ops and laurel-runtime's `ai.laurel` ops
    /// (`LaurelResidual`), for tract through laurel-runtime.
    Tract,
}

impl Target {
    /// Both targets, in the order the CLI lists them.
    pub const ALL: [Self; 2] = [Self::Onnx, Self::Tract];

    /// The CLI's name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Target::Onnx => "onnx",
            Target::Tract => "tract",
        }
    }

    /// One line on what the result may contain.
    #[must_use]
    pub fn help(self) -> &'static str {
        match self {
            Target::Onnx => "standard ONNX ops (onnxruntime runs the result)",
            Target::Tract => {
                "standard ops and ai.laurel::LaurelResidual (tract through laurel-runtime)"
            }
        }
    }

    /// What the target's runtime can do, for the e-graph pass: tract runs
    /// `LaurelResidual` and undoes merged channel maps (see
    /// [`laurel_passes::Capabilities`]).
    #[must_use]
    pub fn capabilities(self) -> laurel_passes::Capabilities {
        match self {
            Target::Onnx => laurel_passes::Capabilities::STANDARD,
            Target::Tract => laurel_passes::Capabilities {
                fused_residual: true,
                channel_map_merges: false,
            },
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown target `{s}` (expected onnx or tract)"))
    }
}

/// The default window: enough for several transformer or `ResNet` blocks, small
/// enough that the scaled forms of a stream do not pile up.
pub const DEFAULT_WINDOW_OPS: usize = 64;

/// How many levels of producers before a window join it.
pub const REACH_BACK: usize = 2;

/// A window ends within its first `window_ops × CUT_SPAN` ops, where the
/// fewest tensors cross (see [`narrowest_cut`]).
pub const CUT_SPAN: usize = 2;

/// Options of [`fuse_model`].
#[derive(Debug, Clone)]
pub struct FuseOptions {
    /// The e-graph runner's limits, per window.
    pub limits: Limits,
    /// Ops per saturation window, in topological order (0: the whole graph
    /// at once). A scale left on a window's outputs is carried into the
    /// next window as the `Mul` it was extracted as.
    pub window_ops: usize,
    /// What the fused model may contain: standard ONNX ops only, or also
    /// laurel-runtime's `LaurelResidual` (see [`Target`]).
    pub target: Target,
    /// The sizes of symbolic dimensions (batch, sequence) the model will
    /// run at, for the cost model only: the fused model stays symbolic and
    /// runs at every size. Unknown symbols count 1.
    pub sizes: laurel_passes::shape::Sizes,
    /// The cost model's constants (the calibrated ones by default).
    pub costs: laurel_passes::cost::CostParams,
}

impl Default for FuseOptions {
    fn default() -> Self {
        Self {
            // The iteration and node limits are what stop a run: they do not
            // depend on the machine, so the output does not either. The time
            // limit is a safety net well above any window measured (the
            // slowest fixture window saturates in 1.3 s, and took 5 s on a
            // loaded machine, where a 5 s limit changed the output).
            limits: Limits {
                iterations: 60,
                nodes: 40_000,
                time: Duration::from_secs(30),
            },
            window_ops: DEFAULT_WINDOW_OPS,
            target: Target::Onnx,
            sizes: laurel_passes::shape::Sizes::new(),
            costs: laurel_passes::cost::CostParams::default(),
        }
    }
}

/// What [`fuse_model`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FuseSummary {
    /// Ops before, those of subgraphs included.
    pub ops_before: usize,
    /// Ops after, those of subgraphs included.
    pub ops_after: usize,
    /// Op counts by type ([`crate::ir::Graph::op_counts`]), before.
    pub histogram_before: BTreeMap<String, usize>,
    /// Op counts by type, after.
    pub histogram_after: BTreeMap<String, usize>,
    /// The first constant folding.
    pub fold: FoldReport,
    /// The materialisation of scaled weights (the second folding).
    pub materialised: FoldReport,
    /// Initializers removed because nothing reads them any more.
    pub removed_initializers: usize,
    /// Scales of dequantized weights moved into their dequantization
    /// scale ([`dequant`]).
    pub dequantization_scales: usize,
    /// Windows saturated (one for a small graph).
    pub windows: usize,
    /// Rules that fired, with counts.
    pub fired: BTreeMap<String, usize>,
    /// Rules refused (ill-shaped right-hand sides), with counts.
    pub refused: BTreeMap<String, usize>,
    /// E-classes at the end of saturation (the largest window's).
    pub classes: usize,
    /// E-nodes at the end of saturation (the largest window's).
    pub nodes: usize,
    /// Rewrite iterations (over all windows).
    pub iterations: usize,
    /// Why saturation stopped (the first window a limit stopped, if any).
    pub stop: String,
    /// Whether a limit cut saturation short (the result is correct, maybe not optimal).
    pub hit_limit: bool,
    /// The cost model's estimate of the lowered ops before, summed over
    /// windows (microseconds on tract; a scale carried between windows is
    /// counted in both).
    pub cost_before: f64,
    /// The estimate after, summed likewise.
    pub cost_after: f64,
    /// Seconds spent saturating.
    pub saturation_seconds: f64,
    /// Seconds spent extracting.
    pub extraction_seconds: f64,
    /// What became of each `LAuReL` block (see [`blocks`]).
    pub blocks: Vec<blocks::BlockOutcome>,
    /// Low-rank products given to `LaurelResidual`'s kernel (`--target tract`,
    /// see [`low_rank`]).
    pub low_rank_products: usize,
}

impl FuseSummary {
    /// Adds one window's report: counts summed, sizes the largest, the stop
    /// reason of the first window a limit stopped (else the last window's).
    fn add(&mut self, r: &FuseReport) {
        self.windows += 1;
        for (k, v) in &r.fired {
            *self.fired.entry(k.clone()).or_insert(0) += v;
        }
        for (k, v) in &r.refused {
            *self.refused.entry(k.clone()).or_insert(0) += v;
        }
        self.classes = self.classes.max(r.classes);
        self.nodes = self.nodes.max(r.nodes);
        self.iterations += r.iterations;
        if r.stop.hit_limit() && !self.hit_limit {
            self.hit_limit = true;
            self.stop = format!("window {}: {}", self.windows, r.stop);
        } else if !self.hit_limit {
            self.stop = r.stop.to_string();
        }
        self.cost_before += r.cost_before;
        self.cost_after += r.cost_after;
        self.saturation_seconds += r.saturation_time.as_secs_f64();
        self.extraction_seconds += r.extraction_time.as_secs_f64();
    }
}

/// Fuses `model` in place.
///
/// # Errors
/// [`Error::Fuse`] when a step fails (tract cannot fold, a term cannot be
/// lowered or lifted, or the e-graph reports a bug).
pub fn fuse_model(model: &mut Model, opts: &FuseOptions) -> Result<FuseSummary> {
    fuse_model_with_progress(model, opts, &mut laurel_runtime::Silent)
}

/// [`fuse_model`], reporting to `progress` the ops fused so far, window by
/// window.
///
/// # Errors
/// As [`fuse_model`].
#[allow(clippy::too_many_lines)] // the window loop and the summary
pub fn fuse_model_with_progress(
    model: &mut Model,
    opts: &FuseOptions,
    progress: &mut dyn laurel_runtime::Progress,
) -> Result<FuseSummary> {
    let ops_before = crate::onnx::subgraph::op_count_with_subgraphs(&model.graph);
    let histogram_before = model.graph.op_counts();
    let snapshot = blocks::BlockSnapshot::of(&model.graph);
    let fold = fold_constants(model)?;
    let mut types = crate::analysis::types::value_types(model)?;
    let mut summary = FuseSummary {
        ops_before,
        histogram_before,
        fold,
        ..FuseSummary::default()
    };
    let settings = laurel_passes::FuseSettings {
        limits: opts.limits,
        capabilities: opts.target.capabilities(),
        costs: opts.costs.clone(),
        sizes: opts.sizes.clone(),
    };
    let mut carried: HashSet<NodeIndex> = HashSet::new();
    let mut done: HashSet<NodeIndex> = HashSet::new();
    // Exact-GELU subgraphs stay whole, for the runtime's GELU kernel: they join no
    // window. Never lowered, they keep their nodes from window to window.
    let gelu = gelu::gelu_ops(&model.graph);
    let fusible = |g: &crate::ir::Graph, n: NodeIndex| lower::lowerable(g, n) && !gelu.contains(&n);
    let total = model
        .graph
        .op_order
        .iter()
        .filter(|&&n| fusible(&model.graph, n))
        .count();
    progress.start("fusion windows (ops)", total as u64);
    let mut fused_ops = 0u64;
    loop {
        let order = model.graph.topo_ops().map_err(|e| Error::Fuse {
            message: e.to_string(),
        })?;
        let mut window: HashSet<NodeIndex> = carried.iter().copied().collect();
        let candidates: Vec<NodeIndex> = order
            .iter()
            .copied()
            .filter(|n| !done.contains(n) && !carried.contains(n) && fusible(&model.graph, *n))
            .take(if opts.window_ops > 0 {
                opts.window_ops * CUT_SPAN
            } else {
                usize::MAX
            })
            .collect();
        let fresh = if opts.window_ops > 0 {
            narrowest_cut(&model.graph, &candidates, opts.window_ops, &done, &types)
        } else {
            candidates.len()
        };
        window.extend(candidates.iter().take(fresh).copied());
        if fresh == 0 {
            break;
        }
        fused_ops += fresh as u64;
        // The ops already fused that read a carried scale join again, so the
        // scale can still go into them (a norm's ε, a convolution's weights)
        // rather than stay because they were fused before it arrived.
        let readers: Vec<NodeIndex> = carried
            .iter()
            .flat_map(|&n| {
                model
                    .graph
                    .dag
                    .neighbors_directed(n, petgraph::Direction::Outgoing)
            })
            .filter(|&c| !window.contains(&c) && fusible(&model.graph, c))
            .collect();
        window.extend(readers);
        // Reach back: the producers of the window's inputs, two levels up,
        // join it again, so a scale at the window's start can still be
        // absorbed by the op that produced its operand (`α·(x·W + b)`).
        for _ in 0..REACH_BACK {
            let back: Vec<NodeIndex> = window
                .iter()
                .flat_map(|&n| {
                    model
                        .graph
                        .dag
                        .neighbors_directed(n, petgraph::Direction::Incoming)
                })
                .filter(|&p| !window.contains(&p) && fusible(&model.graph, p))
                .collect();
            window.extend(back);
        }
        let mut lowered = lower::lower(model, &types, Some(&window), &opts.sizes)?;
        let graph = std::mem::take(&mut lowered.graph);
        let keep: Vec<egg::Id> = lowered.named.iter().map(|(_, id)| *id).collect();
        // Roots that ops after this window read: their scale may be carried.
        let pending_readers: HashSet<&str> = order
            .iter()
            .filter(|n| !done.contains(n) && !window.contains(n))
            .flat_map(|&n| {
                model
                    .graph
                    .dag
                    .edges_directed(n, petgraph::Direction::Incoming)
            })
            .map(|e| e.weight().name.as_str())
            .collect();
        let carry: Vec<egg::Id> = lowered
            .root_names
            .iter()
            .zip(&lowered.roots)
            .filter(|(name, _)| pending_readers.contains(name.as_str()))
            .map(|(_, &id)| id)
            .collect();
        let report: FuseReport =
            laurel_passes::fuse(graph, &lowered.roots, &keep, &carry, &settings).map_err(|e| {
                Error::Fuse {
                    message: format!("e-graph: {e}"),
                }
            })?;
        let lifted = lift::lift(model, &lowered, &report)?;
        types.extend(lifted.types);
        done.extend(window.iter().copied());
        carried = lifted.carried.iter().copied().collect();
        done.extend(
            lifted
                .created
                .iter()
                .copied()
                .filter(|n| !carried.contains(n)),
        );
        summary.add(&report);
        progress.set(fused_ops.min(total as u64));
    }
    progress.finish();
    summary.dequantization_scales = dequant::scale_into_dequantization(&mut model.graph)
        .map_err(|message| Error::Fuse { message })?;
    let materialised = fold_constants(model)?;
    if opts.target == Target::Tract {
        summary.low_rank_products = low_rank::low_rank_residuals(&mut model.graph);
    }
    if model.graph.op_order.iter().any(|&n| {
        matches!(&model.graph.dag[n], crate::ir::Node::Op(op) if op.proto.domain == laurel_residual::DOMAIN)
    }) && !model.header.opset_import.iter().any(|o| o.domain == laurel_residual::DOMAIN)
    {
        model.header.opset_import.push(onnx_protobuf::OperatorSetIdProto {
            domain: laurel_residual::DOMAIN.into(),
            version: laurel_residual::SINCE_VERSION,
            ..onnx_protobuf::OperatorSetIdProto::default()
        });
    }
    subgraphs::fuse_subgraphs(model, opts, &mut summary)?;
    let removed_initializers = lift::remove_unread_initializers(&mut model.graph);
    summary.ops_after = crate::onnx::subgraph::op_count_with_subgraphs(&model.graph);
    summary.histogram_after = model.graph.op_counts();
    summary.materialised = materialised;
    summary.removed_initializers = removed_initializers;
    // The subgraphs' blocks are in already; the main graph's join them.
    summary
        .blocks
        .extend(blocks::block_outcomes(&snapshot, &model.graph));
    summary.blocks.sort_by_key(|b| b.block);
    Ok(summary)
}

/// How many of `candidates` (fusible ops in topological order) a window
/// takes: at least `min` (all, when fewer), then up to the end of
/// `candidates`, the prefix after which the fewest floating-point values
/// produced by the window are still to be read by ops not yet fused (ties:
/// the shortest). A window that ends in the middle of a norm or an attention
/// leaves several scaled values for the next window, which absorbs a scale
/// only where all the ops it must pass through are together: cut where the
/// residual stream alone crosses (a 4-block GPT kept 3 `Mul`s cut every 64
/// ops, none cut at the stream).
///
/// Complexity: O(E) in the edges of `candidates`.
fn narrowest_cut(
    graph: &crate::ir::Graph,
    candidates: &[NodeIndex],
    min: usize,
    done: &HashSet<NodeIndex>,
    types: &crate::analysis::types::ValueTypes,
) -> usize {
    use laurel_passes::shape::DType;
    use petgraph::Direction::Outgoing;
    use petgraph::visit::EdgeRef as _;
    if candidates.len() <= min {
        return candidates.len();
    }
    let position: std::collections::HashMap<NodeIndex, usize> = candidates
        .iter()
        .enumerate()
        .map(|(i, &n)| (n, i))
        .collect();
    let is_float = |name: &str| {
        types
            .get(name)
            .and_then(|t| t.dtype.as_ref())
            .is_some_and(|d| matches!(d, DType::F16 | DType::BF16 | DType::F32 | DType::F64))
    };
    // For each candidate's float output: the position of its last reader
    // among the candidates, or `usize::MAX` when an op after them reads it.
    let mut closes: Vec<usize> = vec![0; candidates.len() + 1];
    let mut opens: Vec<usize> = vec![0; candidates.len() + 1];
    for (i, &n) in candidates.iter().enumerate() {
        let mut last: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
        for e in graph.dag.edges_directed(n, Outgoing) {
            let name = e.weight().name.as_str();
            if !is_float(name) || done.contains(&e.target()) {
                continue;
            }
            let at = position.get(&e.target()).copied().unwrap_or(usize::MAX);
            let slot = last.entry(name).or_insert(0);
            *slot = (*slot).max(at);
        }
        for (_, at) in last {
            opens[i] += 1;
            if at != usize::MAX {
                closes[at] += 1;
            }
        }
    }
    // crossing(p): values opened by ops before p and not closed by them.
    let mut crossing = 0usize;
    let mut best = (usize::MAX, candidates.len());
    for p in 1..=candidates.len() {
        crossing += opens[p - 1];
        crossing -= closes[p - 1];
        if p >= min && crossing < best.0 {
            best = (crossing, p);
        }
    }
    best.1
}

impl FuseSummary {
    /// The line `laurelc fuse` prints: ops in and out, the e-graph's size,
    /// iterations and stop reason, the cost before and after.
    #[must_use]
    pub fn to_line(&self, input: &std::path::Path, output: &std::path::Path) -> String {
        format!(
            "{} -> {}: {} ops in, {} ops out; e-graph: {} classes, {} nodes, {} iterations, {}; cost {:.1} -> {:.1}",
            input.display(),
            output.display(),
            self.ops_before,
            self.ops_after,
            self.classes,
            self.nodes,
            self.iterations,
            self.stop,
            self.cost_before,
            self.cost_after,
        )
    }
}

/// The `--explain` text of a summary.
#[must_use]
pub fn explain(s: &FuseSummary) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "constant folding: {} values folded ({} as `ConstantOfShape` fills), {} ops removed, {} large values kept",
        s.fold.folded_values, s.fold.filled_values, s.fold.removed_ops, s.fold.kept_large
    );
    let _ = writeln!(
        out,
        "e-graph: {} window(s), at most {} classes, {} nodes; {} iterations; stopped: {}{}",
        s.windows,
        s.classes,
        s.nodes,
        s.iterations,
        s.stop,
        if s.hit_limit {
            " (a limit: not a fixed point)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "time: saturation {:.3} s, extraction {:.3} s",
        s.saturation_seconds, s.extraction_seconds
    );
    let _ = writeln!(out, "rules fired:");
    for (rule, n) in &s.fired {
        let _ = writeln!(out, "  {rule:<32} {n}");
    }
    if !s.refused.is_empty() {
        let _ = writeln!(out, "rules refused (ill-shaped right-hand side):");
        for (rule, n) in &s.refused {
            let _ = writeln!(out, "  {rule:<32} {n}");
        }
    }
    let _ = writeln!(
        out,
        "cost (estimated µs on tract): {:.1} -> {:.1}",
        s.cost_before, s.cost_after
    );
    let _ = writeln!(
        out,
        "weights materialised: {} ({} as `ConstantOfShape` fills); initializers removed: {}",
        s.materialised.folded_values, s.materialised.filled_values, s.removed_initializers
    );
    if s.dequantization_scales > 0 {
        let _ = writeln!(
            out,
            "scales moved into a dequantization scale (int8 weights): {}",
            s.dequantization_scales
        );
    }
    if s.low_rank_products > 0 {
        let _ = writeln!(
            out,
            "low-rank products computed by `LaurelResidual`: {}",
            s.low_rank_products
        );
    }
    let _ = write!(out, "ops by type (before -> after):");
    let types: std::collections::BTreeSet<&String> = s
        .histogram_before
        .keys()
        .chain(s.histogram_after.keys())
        .collect();
    for t in types {
        let b = s.histogram_before.get(t).copied().unwrap_or(0);
        let a = s.histogram_after.get(t).copied().unwrap_or(0);
        let _ = write!(out, "\n  {t:<24} {b:>5} -> {a}");
    }
    if !s.blocks.is_empty() {
        let mut verdicts: BTreeMap<String, usize> = BTreeMap::new();
        for b in &s.blocks {
            *verdicts.entry(b.verdict()).or_default() += 1;
        }
        let counts: Vec<String> = verdicts.iter().map(|(v, n)| format!("{v}: {n}")).collect();
        let _ = write!(
            out,
            "\nLAuReL blocks: {} ({})",
            s.blocks.len(),
            counts.join("; ")
        );
        for b in s.blocks.iter().take(EXPLAIN_BLOCKS) {
            let _ = write!(out, "\n  laurel.{:<6} {}", b.block, b.verdict());
            if !b.merged_weights.is_empty() {
                let _ = write!(out, " ({})", b.merged_weights.join(", "));
            }
        }
        if s.blocks.len() > EXPLAIN_BLOCKS {
            let _ = write!(out, "\n  … {} more", s.blocks.len() - EXPLAIN_BLOCKS);
        }
    }
    out
}

/// Blocks listed one per line by [`explain`]; the rest are only counted.
pub const EXPLAIN_BLOCKS: usize = 64;
