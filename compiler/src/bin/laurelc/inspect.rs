//! `laurelc inspect MODEL`: a summary of the model and its residuals.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::args::{emit, emit_line};

/// `laurelc inspect MODEL`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The model.
    pub model: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Write a Graphviz picture of the residual streams to FILE.
    #[arg(long, value_name = "FILE")]
    pub dot: Option<PathBuf>,
}

/// Prints the summary (and writes the picture).
pub fn run(a: &InspectArgs) -> Result<()> {
    let model = laurelc::onnx::import_path(&a.model)?;
    let s = laurelc::inspect::summarize(&model);
    // The residual analysis needs tract's shape inference; a model tract cannot
    // analyse still gets its summary, with the reason in place of residuals.
    // An invalid model (an attribute out of its op's range) is refused.
    let analysis = match laurelc::analysis::analyse_residuals(&model) {
        Ok(a) => a,
        Err(e @ laurelc::Error::InvalidModel { .. }) => {
            return Err(anyhow::Error::new(e).context(a.model.display().to_string()));
        }
        Err(e) => laurelc::analysis::ResidualAnalysis {
            residuals: Vec::new(),
            shape_strategy: format!("unavailable: {e}"),
            undecided: Vec::new(),
            subgraphs: Vec::new(),
        },
    };
    if let Some(dot) = &a.dot {
        laurelc::pipeline::guard_output(&a.model, dot, false)?;
        let name = a
            .model
            .file_stem()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let text = laurelc::analysis::dot::streams_dot(&name, &analysis.residuals);
        laurelc::fsutil::write_atomically(dot, |w| w.write_all(text.as_bytes()))?;
    }
    if a.json {
        let j = laurelc::inspect::to_json(&s, &analysis)?;
        emit_line(&serde_json::to_string_pretty(&j)?)?;
    } else {
        emit(&laurelc::inspect::to_text(&a.model, &s, &analysis))?;
    }
    Ok(())
}
