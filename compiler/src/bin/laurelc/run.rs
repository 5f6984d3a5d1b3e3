//! `laurelc run MODEL`: the model on tract, a summary of each output.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::args::{InputArgs, emit_line};

/// `laurelc run MODEL`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The model.
    pub model: PathBuf,
    /// Write each output to DIR/<output name>.npy.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    #[command(flatten)]
    pub given: InputArgs,
}

/// Output names made safe as file names: anything outside `[A-Za-z0-9_.-]` becomes `_`.
fn file_stem(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("_{s}")
    } else {
        s
    }
}

/// Runs the model once and prints (and writes) its outputs.
pub fn run(a: &RunArgs) -> Result<()> {
    let (model, inputs) = a.given.load(&a.model)?;
    let outputs = model.run(inputs)?;
    if let Some(dir) = &a.out_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the output directory", dir.display()))?;
        let mut stems = std::collections::HashMap::new();
        for (name, _) in &outputs {
            if let Some(other) = stems.insert(file_stem(name), name) {
                bail!(
                    "outputs `{other}` and `{name}` would both be written to {}.npy",
                    file_stem(name)
                );
            }
        }
    }
    for (name, t) in &outputs {
        emit_line(&format!("{name}\t{}", laurel_runtime::summarize(t)))?;
        if let Some(dir) = &a.out_dir {
            let path = dir.join(format!("{}.npy", file_stem(name)));
            laurel_runtime::write_npy(&path, t)?;
        }
    }
    Ok(())
}
