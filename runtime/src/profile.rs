//! Per-node profiles: where a model's time goes in tract's optimised plan.
//!
//! [`profile`] runs a loaded model `runs` times (after `warmup` untimed runs) and
//! times every node of its plan on each run; [`Profile`] holds each node's median
//! and the sums of medians by tract op. Whole-model times move by several percent
//! from run to run and load to load on a shared machine; the time of one node within
//! a run moves much less, which is what makes the comparison of two plans (a
//! `LAuReL` model, fused or not, against its baseline) node by node readable.
//!
//! Timing each node adds two clock reads per node and run; the total is also timed
//! as a whole.
//!
//! ```no_run
//! use laurel_runtime::{LoadOptions, ModelSource, load, random_inputs};
//! # fn main() -> Result<(), laurel_runtime::RuntimeError> {
//! let model = load(ModelSource::Path("model.onnx".as_ref()), &LoadOptions::default())?;
//! let inputs = random_inputs(model.inputs(), 0)?;
//! let p = laurel_runtime::profile::profile(&model, &inputs, 100, 3)?;
//! for (op, t) in p.by_op().iter().take(5) {
//!     println!("{op}: {:.1} µs over {} nodes", t.micros, t.nodes);
//! }
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;
use tract_onnx::prelude::{IntoTValue, TValue, TVec, Tensor};
use tract_onnx::tract_core::plan::{SimpleState, eval};

use crate::error::{RuntimeError, chain};
use crate::runnable::Runnable;

/// One node of the plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeTime {
    /// The node's name in tract's plan (derived from the ONNX node's).
    pub name: String,
    /// tract's op (`OptMatMul`, `Softmax`, …).
    pub op: String,
    /// The shape of its first output, as tract shows it.
    pub shape: String,
    /// The median of its times, in microseconds.
    pub median_us: f64,
}

/// The nodes of one tract op, together.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct OpTime {
    /// The sum of the nodes' medians, in microseconds.
    pub micros: f64,
    /// How many nodes.
    pub nodes: usize,
}

/// The result of [`profile`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Profile {
    /// Timed runs.
    pub runs: usize,
    /// The median time of a whole run, in microseconds.
    pub total_median_us: f64,
    /// The sum of the nodes' medians, in microseconds.
    pub nodes_median_sum_us: f64,
    /// Every node, in plan order.
    pub nodes: Vec<NodeTime>,
}

impl Profile {
    /// The nodes by tract op, the most time first (ties by name).
    #[must_use]
    pub fn by_op(&self) -> Vec<(String, OpTime)> {
        let mut map: BTreeMap<&str, OpTime> = BTreeMap::new();
        for n in &self.nodes {
            let e = map.entry(n.op.as_str()).or_insert(OpTime {
                micros: 0.0,
                nodes: 0,
            });
            e.micros += n.median_us;
            e.nodes += 1;
        }
        let mut v: Vec<(String, OpTime)> =
            map.into_iter().map(|(k, t)| (k.to_owned(), t)).collect();
        v.sort_by(|a, b| b.1.micros.total_cmp(&a.1.micros).then(a.0.cmp(&b.0)));
        v
    }

    /// A plain-text report: the totals, the ops by time, then the `top` slowest nodes.
    #[must_use]
    pub fn to_table(&self, top: usize) -> String {
        use std::fmt::Write as _;
        let mut s = format!(
            "{} runs: median {:.1} µs a run; node medians sum to {:.1} µs over {} nodes\n",
            self.runs,
            self.total_median_us,
            self.nodes_median_sum_us,
            self.nodes.len()
        );
        let _ = writeln!(s, "{:>10} {:>6}  op", "µs", "nodes");
        for (op, t) in self.by_op() {
            let _ = writeln!(s, "{:>10.1} {:>6}  {op}", t.micros, t.nodes);
        }
        if top > 0 {
            let mut nodes: Vec<&NodeTime> = self.nodes.iter().collect();
            nodes.sort_by(|a, b| b.median_us.total_cmp(&a.median_us));
            let _ = writeln!(s, "slowest nodes:");
            for n in nodes.into_iter().take(top) {
                let _ = writeln!(
                    s,
                    "{:>10.1}  {} {} [{}]",
                    n.median_us, n.op, n.name, n.shape
                );
            }
        }
        s
    }
}

/// The median of `v` ([`crate::bench::median`]); 0 for a node tract never
/// evaluated (no samples).
fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        crate::bench::median(v)
    }
}

/// Runs `model` on `inputs` (by name, as [`Runnable::run`] takes them) `warmup` times
/// untimed, then `runs` times (0 counts as 1) timing every node of its plan.
///
/// # Errors
/// Those of [`Runnable::run`] (the inputs are checked by one plain run first), and
/// [`RuntimeError::Run`] when tract fails within a profiled run.
///
/// Cost: `1 + warmup + runs` runs of the model, O(nodes · runs) memory.
pub fn profile(
    model: &Runnable,
    inputs: &[(String, Tensor)],
    runs: usize,
    warmup: usize,
) -> Result<Profile, RuntimeError> {
    profile_with_progress(model, inputs, runs, warmup, &mut crate::progress::Silent)
}

/// [`profile`], reporting each round (warm-up too) to `progress`.
///
/// # Errors
/// As [`profile`].
pub fn profile_with_progress(
    model: &Runnable,
    inputs: &[(String, Tensor)],
    runs: usize,
    warmup: usize,
    progress: &mut dyn crate::progress::Progress,
) -> Result<Profile, RuntimeError> {
    let runs = runs.max(1);
    progress.start("profile rounds", (warmup + runs) as u64);
    // Checks the inputs (names, types, shapes), and gives them in graph order.
    model.run(inputs.to_vec())?;
    let ordered: Vec<Tensor> = model
        .inputs()
        .iter()
        .filter_map(|spec| {
            inputs
                .iter()
                .find(|(n, _)| *n == spec.name)
                .map(|(_, t)| t.clone())
        })
        .collect();
    let plan = model.plan();
    let mut state = SimpleState::new(plan).map_err(|e| RuntimeError::Run { message: chain(&e) })?;
    let count = plan.model().nodes().len();
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(runs); count];
    let mut totals = Vec::with_capacity(runs);
    for round in 0..warmup + runs {
        progress.set(round as u64);
        let measured = round >= warmup;
        let values: TVec<TValue> = ordered.iter().map(|t| t.clone().into_tvalue()).collect();
        let start = Instant::now();
        // As in `Runnable::run`: a panic in tract is an error, not an abort.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            state.run_plan_with_eval(values, |ctx, st, node, input| {
                let t = Instant::now();
                let out = eval(ctx, st, node, input);
                if measured {
                    times[node.id].push(t.elapsed().as_secs_f64() * 1e6);
                }
                out
            })
        }))
        .map_err(|payload| RuntimeError::Run {
            message: format!("tract panicked: {}", crate::error::panic_message(&*payload)),
        })?
        .map_err(|e| RuntimeError::Run { message: chain(&e) })?;
        if measured {
            totals.push(start.elapsed().as_secs_f64() * 1e6);
        }
    }
    progress.set((warmup + runs) as u64);
    progress.finish();
    let mut nodes = Vec::with_capacity(count);
    for node in plan.model().nodes() {
        nodes.push(NodeTime {
            name: node.name.clone(),
            op: node.op().name().to_string(),
            shape: node
                .outputs
                .first()
                .map(|o| format!("{:?}", o.fact.shape))
                .unwrap_or_default(),
            median_us: median(&times[node.id]),
        });
    }
    Ok(Profile {
        runs,
        total_median_us: median(&totals),
        nodes_median_sum_us: nodes.iter().map(|n| n.median_us).sum(),
        nodes,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::float_cmp)] // medians of small exact values
mod tests {
    use super::*;
    use crate::{LoadOptions, ModelSource, load, random_inputs};

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures")
            .join(name)
    }

    #[test]
    fn every_node_is_timed_and_the_ops_add_up() {
        let m = load(
            ModelSource::Path(&fixture("tiny_resnet.onnx")),
            &LoadOptions::default(),
        )
        .unwrap();
        let inputs = random_inputs(m.inputs(), 0).unwrap();
        let p = profile(&m, &inputs, 5, 1).unwrap();
        assert_eq!(p.runs, 5);
        assert_eq!(p.nodes.len(), m.tract_model().nodes().len());
        assert!(
            p.nodes
                .iter()
                .any(|n| n.op.contains("Conv") || n.op.contains("MatMul"))
        );
        let by_op = p.by_op();
        assert_eq!(
            by_op.iter().map(|(_, t)| t.nodes).sum::<usize>(),
            p.nodes.len()
        );
        let sum: f64 = by_op.iter().map(|(_, t)| t.micros).sum();
        assert!((sum - p.nodes_median_sum_us).abs() < 1e-6 * sum.max(1.0));
        assert!(by_op.windows(2).all(|w| w[0].1.micros >= w[1].1.micros));
        assert!(p.total_median_us > 0.0);
        let table = p.to_table(3);
        assert!(table.contains("slowest nodes:"), "{table}");
    }

    #[test]
    fn wrong_inputs_are_errors() {
        let m = load(
            ModelSource::Path(&fixture("tiny_resnet.onnx")),
            &LoadOptions::default(),
        )
        .unwrap();
        let e = profile(&m, &[], 1, 0).unwrap_err();
        assert!(matches!(e, RuntimeError::MissingInput { .. }), "{e:?}");
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
