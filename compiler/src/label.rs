//! `laurelc label`: a teacher's soft labels for a pool of unlabeled
//! examples, written beside the examples, ready for `laurelc train --loss kd`
//! (or `slam`).
//!
//! ```text
//! U.npz ─ check against the teacher's inputs ─ teacher on tract, in batches ─ soft labels
//!       └────────────────────── copied ───────────────────────────────────┴─ LABELLED.npz
//! ```
//!
//! The labels are cached by content ([`laurel_runtime::distill::teacher`]): a
//! second run over the same teacher, examples and softening queries
//! nothing, and the report's `queries` says how many examples the teacher
//! labelled in this run.
//!
//! Cost: one teacher run per batch; O(data) to check, hash and copy.

use std::path::{Path, PathBuf};

use laurel_runtime::distill::teacher::{self, LabelOptions, Soft};
use laurel_runtime::train::Dataset;
use laurel_runtime::{DatumKind, DimSpec, LoadOptions, ModelSource, Progress, Tensor};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::onnx;

/// What to label, and how.
#[derive(Debug, Clone)]
pub struct LabelFileOptions {
    /// Allow the output to be the teacher's file.
    pub force: bool,
    /// The unlabeled examples (`.npz`).
    pub data: PathBuf,
    /// For each teacher input, its data key (an input without a pair reads
    /// the key of its own name).
    pub inputs: Vec<(String, String)>,
    /// The teacher output to read (default: its first).
    pub output: Option<String>,
    /// How the output becomes labels.
    pub soft: Soft,
    /// Examples per teacher run (default: the teacher's fixed batch axis,
    /// else 64 or the whole pool if smaller).
    pub batch: Option<usize>,
    /// The cache directory, if any.
    pub cache: Option<PathBuf>,
    /// The key the labels are written under.
    pub key: String,
}

/// The batch size of a teacher whose batch axis is symbolic, when none is given.
pub const DEFAULT_BATCH: usize = 64;

/// What [`label_file`] did.
#[derive(Debug, Clone, Serialize)]
pub struct LabelReport {
    /// The examples labelled.
    pub examples: usize,
    /// The classes of each label.
    pub classes: usize,
    /// The examples the teacher labelled in this run (0 when the cache had them).
    pub queries: usize,
    /// The batch size the teacher ran at.
    pub batch: usize,
    /// The cache file read or written.
    pub cache_file: Option<PathBuf>,
    /// The file written.
    pub output: PathBuf,
}

/// Labels every example of `opts.data` with `teacher` and writes the data's
/// columns plus the labels (under `opts.key`, `[n, classes]` float32) to
/// `output`, atomically.
///
/// # Errors
/// [`Error::Data`]: a missing key, a column whose type or example shape the
/// teacher's input does not take, a label key that is already a column, an
/// output over the data (or over the teacher without `force`); the errors
/// of import, tract and the cache.
pub fn label_file(
    teacher_path: &Path,
    output: &Path,
    opts: &LabelFileOptions,
    progress: &mut dyn Progress,
) -> Result<LabelReport> {
    crate::pipeline::guard_output(teacher_path, output, opts.force)?;
    let bad = |reason: String| Error::Data {
        path: opts.data.clone(),
        reason,
    };
    if crate::pipeline::same_file(&opts.data, output) {
        return Err(Error::Data {
            path: output.to_path_buf(),
            reason: "the labelled data would be written over the unlabeled data".into(),
        });
    }
    let model = onnx::import_path(teacher_path)?;
    let bytes = onnx::to_bytes(&model)?;
    let declared = laurel_runtime::declared_inputs(ModelSource::Bytes(&bytes))?;
    if let Some((name, _)) = opts
        .inputs
        .iter()
        .find(|(n, _)| !declared.iter().any(|d| &d.name == n))
    {
        return Err(Error::Data {
            path: teacher_path.to_path_buf(),
            reason: format!("--input {name}=…: the teacher has no input `{name}`"),
        });
    }
    let columns = laurel_runtime::read_npz(&opts.data)?;
    let pool = Dataset::new(columns).map_err(|e| bad(e.to_string()))?;
    if pool.column(&opts.key).is_some() {
        return Err(bad(format!(
            "the data already hold a column `{}` (choose another with --key)",
            opts.key
        )));
    }
    let batch =
        opts.batch
            .unwrap_or_else(|| match declared.first().and_then(|i| i.shape.first()) {
                Some(DimSpec::Fixed(b)) => *b,
                _ => DEFAULT_BATCH.min(pool.len()),
            });
    if batch == 0 {
        return Err(bad("a batch of 0 examples".into()));
    }
    let load = load_shapes(&declared, &pool, &opts.inputs, &opts.data, batch)?;
    let runnable = laurel_runtime::load(ModelSource::Bytes(&bytes), &load)?;
    let rows: Vec<usize> = (0..pool.len()).collect();
    let labelled = teacher::label(
        &bytes,
        &runnable,
        &pool,
        &rows,
        &LabelOptions {
            columns: declared
                .iter()
                .map(|i| {
                    let key = crate::train::input_key(&opts.inputs, &i.name);
                    (i.name.clone(), key.to_owned())
                })
                .collect(),
            output: opts.output.clone(),
            soft: opts.soft,
            cache: opts.cache.clone(),
        },
        progress,
    )?;
    let labels = Tensor::from_shape(&[pool.len(), labelled.classes], &labelled.labels)
        .map_err(|e| bad(e.to_string()))?;
    let mut out: Vec<(String, Tensor)> = pool.columns().to_vec();
    out.push((opts.key.clone(), labels));
    laurel_runtime::write_npz(output, &out)?;
    Ok(LabelReport {
        examples: pool.len(),
        classes: labelled.classes,
        queries: labelled.queries,
        batch,
        cache_file: labelled.cache_file,
        output: output.to_path_buf(),
    })
}

/// Checks the pool (read from `path`) against a model's inputs, each
/// reading the key `inputs` gives it; the shapes to load the model at
/// (`[batch]` then each column's example shape).
pub(crate) fn load_shapes(
    declared: &[laurel_runtime::InputSpec],
    pool: &Dataset,
    inputs: &[(String, String)],
    path: &Path,
    batch: usize,
) -> Result<LoadOptions> {
    let bad = |reason: String| Error::Data {
        path: path.to_path_buf(),
        reason,
    };
    let mut load = LoadOptions::default();
    for input in declared {
        let key = crate::train::input_key(inputs, &input.name);
        let column = pool
            .column(key)
            .ok_or_else(|| bad(format!("no key `{key}` for model input `{}`", input.name)))?;
        if DatumKind::from_datum_type(column.datum_type()) != Some(input.datum) {
            return Err(bad(format!(
                "`{key}` holds {:?}, model input `{}` takes {}",
                column.datum_type(),
                input.name,
                input.datum
            )));
        }
        let example = &column.shape()[1..];
        let fits = crate::train::example_fits(input, example)
            && !matches!(input.shape.first(), Some(DimSpec::Fixed(b)) if *b != batch);
        if !fits {
            return Err(bad(format!(
                "`{key}` holds examples of shape {example:?} in batches of {batch}, which model input `{}` does not take",
                input.name
            )));
        }
        let mut shape = vec![batch];
        shape.extend_from_slice(example);
        load.shapes.insert(input.name.clone(), shape);
    }
    Ok(load)
}
