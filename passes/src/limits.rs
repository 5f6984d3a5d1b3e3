//! Runner limits and stop reasons.
//!
//! Equality saturation can grow without bound, so no runner in laurelc runs
//! without an iteration limit, a node limit and a time limit, and each one
//! reports why it stopped. A runner stopped by a limit still holds a correct
//! (if less optimised) e-graph; callers say so in their reports.

use std::time::Duration;

use egg::{Analysis, Language, Runner, StopReason};

/// Iteration, node and time limits for one egg runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most rewrite iterations.
    pub iterations: usize,
    /// The most e-nodes.
    pub nodes: usize,
    /// The longest wall time.
    pub time: Duration,
}

impl Default for Limits {
    /// 64 iterations, 100 000 e-nodes, 5 seconds.
    fn default() -> Self {
        Self {
            iterations: 64,
            nodes: 100_000,
            time: Duration::from_secs(5),
        }
    }
}

impl Limits {
    /// Applies the limits to a runner.
    #[must_use]
    pub fn apply<L: Language, N: Analysis<L> + Default>(
        &self,
        runner: Runner<L, N>,
    ) -> Runner<L, N> {
        runner
            .with_iter_limit(self.iterations)
            .with_node_limit(self.nodes)
            .with_time_limit(self.time)
    }
}

/// How many times each rule changed the e-graph over a runner's
/// iterations, by name (rules that never did are left out).
#[must_use]
pub fn fired<L: Language, N: Analysis<L>>(
    runner: &Runner<L, N>,
) -> std::collections::BTreeMap<String, usize> {
    let mut fired = std::collections::BTreeMap::new();
    for iteration in &runner.iterations {
        for (rule, &n) in &iteration.applied {
            if n > 0 {
                *fired.entry(rule.to_string()).or_insert(0) += n;
            }
        }
    }
    fired
}

/// Why a runner stopped, in a form reports can print and serialise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReport {
    /// No rule changed the e-graph: the result is the best the rules can find.
    Saturated,
    /// The iteration limit was reached.
    IterationLimit(usize),
    /// The node limit was reached.
    NodeLimit(usize),
    /// The time limit was reached.
    TimeLimit(Duration),
    /// Some other reason, as egg words it.
    Other(String),
    /// The runner has not run.
    NotRun,
    /// The e-graph grew too large to extract within the cost-set budget
    /// ([`crate::extract::SET_BUDGET_BYTES`]) in one iteration, past the node
    /// limit: saturation was run again, cut to this many iterations.
    ExtractionBudget(usize),
}

impl StopReport {
    /// The report of a finished runner.
    #[must_use]
    pub fn of<L: Language, N: Analysis<L>>(runner: &Runner<L, N>) -> Self {
        match &runner.stop_reason {
            Some(StopReason::Saturated) => Self::Saturated,
            Some(StopReason::IterationLimit(n)) => Self::IterationLimit(*n),
            Some(StopReason::NodeLimit(n)) => Self::NodeLimit(*n),
            Some(StopReason::TimeLimit(t)) => Self::TimeLimit(Duration::from_secs_f64(*t)),
            Some(StopReason::Other(s)) => Self::Other(s.clone()),
            None => Self::NotRun,
        }
    }

    /// Whether a limit cut the run short (the result is correct but may not be optimal).
    #[must_use]
    pub fn hit_limit(&self) -> bool {
        matches!(
            self,
            Self::IterationLimit(_)
                | Self::NodeLimit(_)
                | Self::TimeLimit(_)
                | Self::ExtractionBudget(_)
        )
    }
}

impl std::fmt::Display for StopReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Saturated => write!(f, "saturated"),
            Self::IterationLimit(n) => write!(f, "iteration limit ({n})"),
            Self::NodeLimit(n) => write!(f, "node limit ({n})"),
            Self::TimeLimit(t) => write!(f, "time limit ({:.3} s)", t.as_secs_f64()),
            Self::Other(s) => write!(f, "stopped: {s}"),
            Self::NotRun => write!(f, "not run"),
            Self::ExtractionBudget(n) => write!(
                f,
                "extraction budget (the e-graph outgrew it; saturation cut to {n} iterations)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use egg::{RecExpr, Rewrite, SymbolLang, rewrite as rw};

    fn rules() -> Vec<Rewrite<SymbolLang, ()>> {
        // (f x) → (f (g x)) adds a new e-class (g … (g x)) every iteration: it never saturates.
        vec![rw!("grow"; "(f ?x)" => "(f (g ?x))")]
    }

    fn run(limits: Limits) -> StopReport {
        let expr: RecExpr<SymbolLang> = "(f a)".parse().unwrap();
        let runner = limits
            .apply(Runner::default().with_expr(&expr))
            .run(&rules());
        StopReport::of(&runner)
    }

    #[test]
    fn iteration_limit_is_reported() {
        let r = run(Limits {
            iterations: 3,
            nodes: 1_000_000,
            time: Duration::from_mins(1),
        });
        assert_eq!(r, StopReport::IterationLimit(3));
        assert!(r.hit_limit());
    }

    #[test]
    fn node_limit_is_reported() {
        let r = run(Limits {
            iterations: 1_000,
            nodes: 50,
            time: Duration::from_mins(1),
        });
        assert!(matches!(r, StopReport::NodeLimit(_)), "{r}");
    }

    #[test]
    fn saturation_is_reported() {
        let expr: RecExpr<SymbolLang> = "(* a b)".parse().unwrap();
        let commute: Vec<Rewrite<SymbolLang, ()>> =
            vec![rw!("commute-mul"; "(* ?x ?y)" => "(* ?y ?x)")];
        let runner = Limits::default()
            .apply(Runner::default().with_expr(&expr))
            .run(&commute);
        let r = StopReport::of(&runner);
        assert_eq!(r, StopReport::Saturated);
        assert!(!r.hit_limit());
        assert_eq!(r.to_string(), "saturated");
    }
}
