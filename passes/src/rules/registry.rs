//! The rule registry: every rule is one [`Rule`] entry in its topic's table
//! ([`Topic`]), and [`TOPICS`] lists the tables.
//!
//! An entry carries the rule's name, its equation, its kind (an egg pattern
//! pair, a class rule, or a rewrite with its own searcher), its guard, what
//! the runtime must allow for it ([`Requires`]), and its examples and
//! non-examples in the [`crate::text`] form over the topic's declarations.
//! Everything else is derived from the entries:
//! - the rule sets the passes run ([`rules_of`], [`crate::rules::fusion_rules`]);
//! - the rule tables of `docs/egraph.md` ([`markdown`], checked by a test);
//! - one generic test of every example (the rule fires and its result
//!   joins the class, is well-shaped, and computes the same numbers on random
//!   tensors; an augmentation rule, which is not an equality, the same
//!   numbers at its parameters' initial values) and of every non-example
//!   (nothing changes).
//!
//! `passes/src/rules/README.md` says how to add a rule. O(entries)
//! everywhere.

use std::fmt::Write as _;

pub use super::entry::{Kind, Pass, Requires, Rule, Topic};
use super::{RuleError, TensorRewrite};
use crate::target::Capabilities;

/// Every table, in the order the passes run them.
pub const TOPICS: &[&Topic] = &[
    &super::augment::TOPIC,
    &super::expand::TOPIC,
    &super::scale::TOPIC,
    &super::homogeneous::TOPIC,
    &super::weights::TOPIC,
    &super::norm::TOPIC,
    &super::low_rank::TOPIC,
    &super::laurel_residual::TOPIC,
];

/// Every rule, with its topic.
pub fn all() -> impl Iterator<Item = (&'static Topic, &'static Rule)> {
    TOPICS
        .iter()
        .flat_map(|t| t.rules.iter().map(move |r| (*t, r)))
}

/// The rule named `name`.
#[must_use]
pub fn find(name: &str) -> Option<(&'static Topic, &'static Rule)> {
    all().find(|(_, r)| r.name == name)
}

/// The rewrites of `pass` that `capabilities` allow, in table order.
///
/// # Errors
/// [`RuleError`] if a rule does not build (a bug).
pub fn rules_of(pass: Pass, capabilities: Capabilities) -> Result<Vec<TensorRewrite>, RuleError> {
    all()
        .filter(|(t, r)| t.pass == pass && r.requires.met_by(capabilities))
        .map(|(_, r)| r.rewrite())
        .collect()
}

/// Escapes a table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// The rule tables as markdown, one table per topic: what `docs/egraph.md`
/// holds between its `rules:begin` and `rules:end` markers.
#[must_use]
pub fn markdown() -> String {
    let mut out = String::new();
    for t in TOPICS {
        let pass = match t.pass {
            Pass::Augment => "augmentation",
            Pass::Expand => "augmentation, after the variant's rule",
            Pass::Fuse => "fusion",
            Pass::AfterFuse => "fusion, one pass after saturation",
        };
        let _ = writeln!(
            out,
            "### `{}` (`passes/src/rules/{}.rs`, {pass})\n\n{}\n",
            t.name, t.name, t.summary
        );
        let _ = writeln!(out, "| rule | equation | when | kind | example |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        for r in t.rules {
            let mut when = r.when.to_owned();
            match r.requires {
                Requires::Nothing => {}
                Requires::ChannelMapMerges => when.push_str(" (runtimes that keep merged maps)"),
                Requires::FusedResidual => when.push_str(" (runtimes with `LaurelResidual`)"),
            }
            if !r.equality {
                when.push_str(" (not an equality: the identity at initial values)");
            }
            let example = r
                .examples
                .first()
                .map_or_else(String::new, |(b, a)| format!("`{b}` → `{a}`"));
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} |",
                r.name,
                cell(r.equation),
                cell(when.trim()),
                r.kind.name(),
                cell(&example)
            );
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use egg::{Id, RecExpr, Runner};

    use super::*;
    use crate::analysis::{Leaf, TensorEGraph};
    use crate::lang::TensorLang;
    use crate::params::Init;
    use crate::shape::{Dim, Shape};
    use crate::testing::eval::{Rng, Tensor, eval};
    use crate::text::{Declarations, term};

    fn declarations(t: &Topic, r: &Rule) -> Declarations {
        let text = format!("{}\n{}", t.context, r.context);
        Declarations::parse(&text).unwrap_or_else(|e| panic!("{}: context: {e}", r.name))
    }

    /// The e-graph after running `r` once on `before`, the root, and the
    /// e-graph's size (e-nodes, e-classes) before the run.
    fn run(t: &Topic, r: &Rule, before: &str) -> (TensorEGraph, Id, (usize, usize)) {
        let mut d = declarations(t, r);
        let before = match before.strip_prefix("untagged ") {
            Some(b) => {
                d.blocks.clear();
                b
            }
            None => before,
        };
        let mut g = d.graph().unwrap();
        let roots = d
            .add_terms(&mut g, &[before.to_owned()])
            .unwrap_or_else(|e| panic!("{}: `{before}`: {e}", r.name));
        let size = (
            g.egraph().total_number_of_nodes(),
            g.egraph().number_of_classes(),
        );
        let runner = Runner::default()
            .with_egraph(g.into_egraph())
            .with_iter_limit(1)
            .run(&[r.rewrite().unwrap()]);
        let mut egraph = runner.egraph;
        egraph.rebuild();
        egraph.analysis.check_records().unwrap();
        (egraph, roots[0], size)
    }

    fn dims(s: &Shape) -> Vec<usize> {
        s.iter()
            .map(|d| match d {
                Dim::Fixed(n) => usize::try_from(*n).unwrap(),
                Dim::Sym(_) => 1,
            })
            .collect()
    }

    /// Random values for the declared leaves (positive for names starting
    /// with `p`, read by square roots and reciprocals), and for the
    /// augmentation's parameters their initial values (random where the
    /// initialiser is).
    fn environment(d: &Declarations, egraph: &TensorEGraph, seed: u64) -> HashMap<String, Tensor> {
        let mut rng = Rng(seed);
        let mut env: HashMap<String, Tensor> = HashMap::new();
        for (v, ty, _) in &d.values {
            let mut t = rng.tensor(&dims(ty.shape.as_ref().unwrap()));
            if v.name().starts_with('p') {
                t.data.iter_mut().for_each(|x| *x = x.abs() + 0.5);
            }
            env.insert(v.to_string(), t);
        }
        for p in egraph.analysis.params() {
            let shape = dims(p.ty.shape.as_ref().unwrap());
            let mut t = rng.tensor(&shape);
            match p.init {
                Init::Constant(c) => t.data.iter_mut().for_each(|x| *x = c),
                // α = 2σ(a − b) with a = b = 0, and so on.
                Init::Derived(_) => t.data.iter_mut().for_each(|x| *x = 1.0),
                _ => {}
            }
            env.insert(p.param.to_string(), t);
        }
        env
    }

    fn close(r: &Rule, before: &str, a: &Tensor, b: &Tensor) {
        assert_eq!(a.shape, b.shape, "{}: `{before}`", r.name);
        for (p, q) in a.data.iter().zip(&b.data) {
            assert!(
                (p - q).abs() <= 1e-12 * p.abs().max(1.0),
                "{}: `{before}`: {p} vs {q}",
                r.name
            );
        }
    }

    #[test]
    fn every_example_fires_and_its_result_is_well_shaped_and_equal() {
        let mut count = 0;
        for (t, r) in all() {
            for (before, after) in r.examples {
                count += 1;
                let (egraph, root, _) = run(t, r, before);
                assert!(
                    egraph.analysis.refusals().is_empty(),
                    "{}: `{before}` refused: {:?}",
                    r.name,
                    egraph.analysis.refusals()
                );
                let after_expr: RecExpr<TensorLang> = term(after).unwrap();
                assert_eq!(
                    egraph.lookup_expr(&after_expr),
                    Some(egraph.find(root)),
                    "{}: `{before}` should equal `{after}`",
                    r.name
                );
                // Well-shaped on its own, with the root's type.
                let d = declarations(t, r);
                let mut fresh = d.graph().unwrap();
                for p in egraph.analysis.params() {
                    fresh.declare(Leaf::Param(p.param), p.ty.clone()).unwrap();
                }
                let id = fresh.add_expr_checked(&after_expr).unwrap_or_else(|e| {
                    panic!("{}: `{after}` is ill-shaped: {e}", r.name);
                });
                assert_eq!(
                    fresh.data(id).unwrap().ty(),
                    egraph[root].data.ty(),
                    "{}: `{after}`",
                    r.name
                );
                // The same numbers: on random tensors, or, for an augmentation,
                // at the parameters' initial values.
                let axis = d.blocks.get(&0).map_or(0, |b| b.channel_axis);
                let before_expr = term(before).unwrap();
                for seed in 0..3 {
                    let env = environment(&d, &egraph, seed + 17);
                    let (a, b) = (
                        eval(&before_expr, &env, axis),
                        eval(&after_expr, &env, axis),
                    );
                    close(r, before, &a, &b);
                }
            }
        }
        assert!(count > 40, "{count} examples");
    }

    #[test]
    fn no_non_example_changes_anything() {
        for (t, r) in all() {
            for before in r.non_examples {
                // No e-node added, no classes merged.
                let (egraph, _, size) = run(t, r, before);
                assert_eq!(
                    (egraph.total_number_of_nodes(), egraph.number_of_classes()),
                    size,
                    "{} fired on `{before}`",
                    r.name
                );
            }
        }
    }

    #[test]
    fn every_rule_has_an_example_a_distinct_kebab_case_name_and_an_equation() {
        let mut names = HashSet::new();
        for (t, r) in all() {
            assert!(!r.examples.is_empty(), "{}: no example", r.name);
            assert!(!r.equation.is_empty(), "{}: no equation", r.name);
            assert!(
                r.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{}",
                r.name
            );
            assert!(names.insert(r.name), "{} twice", r.name);
            // The rewrite egg runs bears the entry's name (class and custom
            // rules carry a name of their own).
            assert_eq!(r.rewrite().unwrap().name.as_str(), r.name);
            // A guarded pattern says when in words too.
            if r.guard.is_some() {
                assert!(!r.when.is_empty(), "{}: a guard without words", r.name);
            }
            assert_eq!(r.equality, t.pass != Pass::Augment, "{}", r.name);
        }
    }

    /// Every class rule and pattern written in a rules file is in a table:
    /// a rule that is written but not registered would never run.
    #[test]
    fn every_rule_written_is_registered() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/rules");
        let registered: HashSet<&str> = all().map(|(_, r)| r.name).collect();
        let mut written = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            // `ClassRule { name: "…"` and `Rule::new("…"`, outside tests.
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for marker in [
                "ClassRule {\n    name: \"",
                "Rule::new(\"",
                "Rewrite::new(\"",
            ] {
                for piece in code.split(marker).skip(1) {
                    if let Some(name) = piece.split('"').next() {
                        written.push((name.to_owned(), path.display().to_string()));
                    }
                }
            }
        }
        assert!(written.len() > 30, "{written:?}");
        for (name, file) in written {
            assert!(
                registered.contains(name.as_str()),
                "{name} ({file}) is in no table"
            );
        }
    }

    /// `docs/egraph.md` holds the tables [`markdown`] makes; with
    /// `LAURELC_BLESS=1` this test writes them there.
    #[test]
    fn the_docs_hold_the_generated_tables() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/egraph.md");
        let doc = std::fs::read_to_string(&path).unwrap();
        let (begin, end) = ("<!-- rules:begin", "<!-- rules:end -->");
        let start = doc.find(begin).expect("a rules:begin marker");
        let body = start + doc[start..].find("-->").unwrap() + 3;
        let stop = doc.find(end).expect("a rules:end marker");
        let want = format!("\n\n{}", markdown());
        if std::env::var_os("LAURELC_BLESS").is_some_and(|v| v == "1") {
            let new = format!("{}{want}{}", &doc[..body], &doc[stop..]);
            std::fs::write(&path, new).unwrap();
            return;
        }
        assert!(
            doc[body..stop] == want,
            "docs/egraph.md's rule tables are not the registry's: run with LAURELC_BLESS=1"
        );
    }
}
