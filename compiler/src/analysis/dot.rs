//! A Graphviz picture of the residual streams, blocks collapsed.
//!
//! One cluster per stream; one box per residual block, labelled with its
//! add's name, kind, `D` and branch size; an edge from each block to the
//! next in its stream. Deterministic output.

use std::fmt::Write;

use super::residual::{Residual, ResidualKind};

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The DOT text for `residuals` (with streams assigned).
#[must_use]
pub fn streams_dot(model_name: &str, residuals: &[Residual]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", escape(model_name));
    let _ = writeln!(
        out,
        "  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];"
    );
    let streams = residuals.iter().map(|r| r.stream + 1).max().unwrap_or(0);
    for s in 0..streams {
        let blocks: Vec<(usize, &Residual)> = residuals
            .iter()
            .enumerate()
            .filter(|(_, r)| r.stream == s)
            .collect();
        let _ = writeln!(
            out,
            "  subgraph cluster_{s} {{\n    label=\"stream {s} ({} blocks)\";",
            blocks.len()
        );
        for (i, r) in &blocks {
            let d = r
                .channels
                .map_or_else(|| "?".to_string(), |d| d.to_string());
            let style = if r.kind == ResidualKind::Projection {
                ", style=dashed"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "    b{i} [label=\"{}: {}\\n{:?}, D={d}, axis={}, {} branch ops\"{style}];",
                r.index,
                escape(&r.name),
                r.kind,
                r.axis,
                r.branch_ops
            );
        }
        for pair in blocks.windows(2) {
            let _ = writeln!(out, "    b{} -> b{};", pair[0].0, pair[1].0);
        }
        let _ = writeln!(out, "  }}");
    }
    let _ = writeln!(out, "}}");
    out
}
