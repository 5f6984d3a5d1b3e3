//! Golden filetests of the e-graph passes (crate `laurel-passes`), in the
//! style of cranelift's `filetests/egraph/*.clif` with `precise-output`.
//!
//! Each file `passes/tests/filetests/<topic>/*.sexp` is a header, the input in
//! `laurel_passes::text`'s form (declarations, then the root terms), and, after
//! a `; precise-output` line, what the pass produced, every line behind `; `:
//!
//! ```text
//! ; what the file is about
//! test fuse                  ; the whole fusion pass (`target tract` for its runtime)
//! test rules NAME,NAME       ; or only these registry rules, then extraction
//! test augment rw+lr         ; or the augmentation pass with a variant (`{:#}` form too)
//! size N=8                   ; sizes of symbolic dimensions, for the cost model
//! $x: f32[2, 8]
//! (+ (* 2 $x) (* 3 $x))
//!
//! ; precise-output
//! ; extracted: (* 5 $x)
//! ; fired: combine-like-terms 1
//! ; cost: 0.904 -> 0.503
//! ```
//!
//! The output is the extracted term (all roots), the rules that fired with
//! their counts, the cost before and after (fusion's cost model, or
//! augmentation's), the stop reason, and for augmentation the parameters
//! with their roles, types and initialisers. `LAURELC_BLESS=1` rewrites the
//! expectation blocks; without it a difference fails with a line diff
//! (`laurel_tests::golden`). Golden files say what is produced; the rule
//! registry's numeric tests say it is right.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use laurel_passes::cost::{AugmentCost, CostParams, FuseCost};
use laurel_passes::extract::DagExtractor;
use laurel_passes::rules::registry;
use laurel_passes::text::Declarations;
use laurel_passes::{Capabilities, FuseSettings, InitMode, Limits, StopReport, Variant};
use laurel_tests::golden::Golden;

/// The line after which a file holds its expectations.
const MARKER: &str = "; precise-output";

/// The runners' limits: iterations and e-nodes as the passes', and a time
/// limit far above any file's needs, so that no output depends on the
/// machine's speed.
fn limits() -> Limits {
    Limits {
        time: std::time::Duration::from_mins(2),
        ..Limits::default()
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../passes/tests/filetests")
}

/// Every `.sexp` file under `dir`, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "sexp") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The file's `test …` and `target …` lines, and the rest (declarations and
/// terms).
fn header(input: &str) -> (Vec<String>, Option<String>, String) {
    let mut test = None;
    let mut target = None;
    let mut rest = String::new();
    for line in input.lines() {
        let code = line.split(';').next().unwrap_or("").trim();
        if let Some(t) = code.strip_prefix("test ") {
            test = Some(t.split_whitespace().map(str::to_owned).collect());
        } else if let Some(t) = code.strip_prefix("target ") {
            target = Some(t.trim().to_owned());
        } else {
            rest.push_str(line);
            rest.push('\n');
        }
    }
    (test.expect("a `test …` line"), target, rest)
}

/// The term at `id` of `expr`, as an s-expression.
fn term_at(expr: &egg::RecExpr<laurel_passes::TensorLang>, id: egg::Id) -> String {
    use egg::Language as _;
    let node = &expr[id];
    if node.children().is_empty() {
        return node.to_string();
    }
    let kids: Vec<String> = node.children().iter().map(|&c| term_at(expr, c)).collect();
    format!("({node} {})", kids.join(" "))
}

/// `extracted: …`, one line per root.
fn extracted(out: &mut String, expr: &egg::RecExpr<laurel_passes::TensorLang>, roots: &[egg::Id]) {
    for &r in roots {
        let _ = writeln!(out, "extracted: {}", term_at(expr, r));
    }
}

fn fired(map: &std::collections::BTreeMap<String, usize>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the file's pass produces, as the expectation lines (without `; `).
fn produce(path: &Path, input: &str) -> String {
    let (test, target, body) = header(input);
    let d = Declarations::parse(&body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (graph, roots) = d
        .build()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match test.first().map(String::as_str) {
        Some("fuse") => fuse_output(path, target.as_deref(), &d, graph, &roots),
        Some("rules") => rules_output(path, &test[1..], &d, graph, &roots),
        Some("augment") => augment_output(path, &test[1..], graph, &roots),
        other => panic!("{}: unknown test {other:?}", path.display()),
    }
}

fn fuse_output(
    path: &Path,
    target: Option<&str>,
    d: &Declarations,
    graph: laurel_passes::TensorGraph,
    roots: &[egg::Id],
) -> String {
    let mut out = String::new();
    let capabilities = match target {
        None | Some("onnx") => Capabilities::STANDARD,
        Some("tract") => Capabilities {
            fused_residual: true,
            channel_map_merges: false,
        },
        Some(other) => panic!("{}: unknown target {other}", path.display()),
    };
    let settings = FuseSettings {
        capabilities,
        sizes: d.sizes.clone(),
        limits: limits(),
        ..FuseSettings::default()
    };
    let r = laurel_passes::fuse(graph, roots, &[], &[], &settings)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    extracted(&mut out, &r.expr, &r.roots);
    let _ = writeln!(out, "fired: {}", fired(&r.fired));
    if !r.refused.is_empty() {
        let _ = writeln!(out, "refused: {}", fired(&r.refused));
    }
    let _ = writeln!(out, "cost: {:.3} -> {:.3}", r.cost_before, r.cost_after);
    let _ = writeln!(out, "stop: {}", r.stop);
    out
}

fn rules_output(
    path: &Path,
    args: &[String],
    d: &Declarations,
    graph: laurel_passes::TensorGraph,
    roots: &[egg::Id],
) -> String {
    let mut out = String::new();
    let names: Vec<&str> = args.iter().flat_map(|t| t.split(',')).collect();
    let rules: Vec<_> = names
        .iter()
        .map(|n| {
            registry::find(n)
                .unwrap_or_else(|| panic!("{}: no rule {n}", path.display()))
                .1
                .rewrite()
                .unwrap()
        })
        .collect();
    let egraph = graph.into_egraph();
    let originals: Vec<_> = egraph
        .classes()
        .flat_map(|c| c.nodes.iter().cloned())
        .collect();
    // Fusion's cost model, or augmentation's for its own rules (which
    // forbids resadd and the LAuReL terms: a cost of "forbidden").
    let augmenting = names.iter().all(|n| {
        registry::find(n).is_some_and(|(t, _)| {
            matches!(t.pass, registry::Pass::Augment | registry::Pass::Expand)
        })
    });
    let costs = CostParams::default();
    let dag_cost = |egraph: &laurel_passes::analysis::TensorEGraph| -> (String, Option<String>) {
        let fuse = FuseCost::new(&originals, egraph, &costs, &d.sizes);
        let found = if augmenting {
            DagExtractor::new(egraph, &AugmentCost)
                .and_then(|x| Ok((x.extract_many(roots)?, x.dag_cost(roots)?)))
        } else {
            DagExtractor::new(egraph, &fuse)
                .and_then(|x| Ok((x.extract_many(roots)?, x.dag_cost(roots)?)))
        };
        match found {
            Ok(((expr, ids), c)) => {
                let mut lines = String::new();
                extracted(&mut lines, &expr, &ids);
                (format!("{c:.3}"), Some(lines))
            }
            Err(_) => ("forbidden".to_owned(), None),
        }
    };
    let (before, _) = dag_cost(&egraph);
    let runner = limits()
        .apply(egg::Runner::default().with_egraph(egraph))
        .run(&rules);
    let stop = StopReport::of(&runner);
    let fired_rules = laurel_passes::limits::fired(&runner);
    let mut egraph = runner.egraph;
    egraph.rebuild();
    let (after, expr) = dag_cost(&egraph);
    let expr = expr.unwrap_or_else(|| "extracted: (no term of finite cost)\n".to_owned());
    out.push_str(&expr);
    let _ = writeln!(out, "fired: {}", fired(&fired_rules));
    let refused = egraph.analysis.refusal_counts();
    if !refused.is_empty() {
        let _ = writeln!(out, "refused: {}", fired(&refused));
    }
    let _ = writeln!(out, "cost: {before} -> {after}");
    let _ = writeln!(out, "stop: {stop}");
    out
}

fn augment_output(
    path: &Path,
    args: &[String],
    graph: laurel_passes::TensorGraph,
    roots: &[egg::Id],
) -> String {
    let mut out = String::new();
    // `test augment VARIANT [identity|random]`; the variant may hold spaces.
    let mut words = args;
    let init = if words.last().is_some_and(|w| w == "random") {
        InitMode::Random
    } else {
        InitMode::Identity
    };
    if matches!(
        words.last().map(String::as_str),
        Some("random" | "identity")
    ) {
        words = &words[..words.len() - 1];
    }
    let variant: Variant = words
        .join(" ")
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match laurel_passes::augment(graph, roots, variant, init, limits()) {
        Ok(r) => {
            let _ = writeln!(out, "variant: {variant:#}");
            extracted(&mut out, &r.expr, &r.roots);
            let _ = writeln!(out, "fired: {}", fired(&r.fired));
            let _ = writeln!(out, "cost: {:.3}", r.cost);
            let _ = writeln!(out, "stop: {}", r.stop);
            let _ = writeln!(out, "params:");
            for p in &r.params {
                let _ = writeln!(out, "  {} {} {} {:?}", p.param, p.role, p.ty, p.init);
            }
        }
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
        }
    }
    out
}

#[test]
fn golden_pass_outputs() {
    let dir = root();
    let files = files(&dir);
    let topics: std::collections::BTreeSet<String> = files
        .iter()
        .filter_map(|f| {
            f.strip_prefix(&dir)
                .ok()?
                .components()
                .next()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
        })
        .collect();
    // Every rule topic has its golden files.
    for t in registry::TOPICS {
        assert!(
            topics.contains(t.name),
            "passes/tests/filetests/{}/ has no file",
            t.name
        );
    }
    let mut golden = Golden::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let input = match text.find(MARKER) {
            Some(i) => text[..i].trim_end().to_owned(),
            None => text.trim_end().to_owned(),
        };
        let produced = produce(f, &input);
        // Blessing records only what the passes produce every time.
        if golden.blessing() && produce(f, &input) != produced {
            golden.fail(format!(
                "{}: two runs produced different output",
                f.display()
            ));
            continue;
        }
        let mut expected = format!("{input}\n\n{MARKER}\n");
        for line in produced.lines() {
            let _ = writeln!(expected, "; {line}");
        }
        golden.check(f, &expected);
    }
    golden.finish();
}
