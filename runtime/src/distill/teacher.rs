//! Teacher labels: a teacher model run on tract over a pool of unlabeled
//! examples, in batches, giving soft labels, cached on disk by content.
//!
//! ```text
//! labels(x) = softmax(z(x) / T)      (Soft::Softmax, z the teacher's output)
//! labels(x) = z(x)                   (Soft::AsIs: the output is already probabilities)
//! ```
//! The cache key is SHA-256 of the teacher's bytes, the examples labelled
//! (each fed column's name, type, shape and bytes, and which rows), the
//! output read and how it is softened; the labels live in
//! `<dir>/<key>.npy`, written atomically. A run that finds its key queries
//! nothing: [`Labelled::queries`] counts the examples the teacher labelled
//! in this call, cache hits excluded, which is what a labelling budget
//! counts.
//!
//! Cost: one teacher run per batch (the last one padded), O(n·classes) for
//! the softmax, O(bytes of the fed columns) for the key.

use std::path::PathBuf;

use sha2::{Digest, Sha256};
use tract_onnx::prelude::Tensor;

use crate::error::RuntimeError;
use crate::progress::Progress;
use crate::runnable::Runnable;
use crate::train::Dataset;

/// How the teacher's output becomes soft labels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Soft {
    /// A softmax of the output (logits) divided by the temperature.
    Softmax {
        /// The temperature `T > 0`.
        temperature: f32,
    },
    /// The output as it is (the model ends in a softmax).
    AsIs,
}

/// What to label, and how.
#[derive(Debug, Clone)]
pub struct LabelOptions {
    /// For each teacher input, the data column it reads (pairs of input,
    /// column; an input without a pair reads the column of its own name).
    pub columns: Vec<(String, String)>,
    /// The teacher output to read (default: its first).
    pub output: Option<String>,
    /// How the output becomes labels.
    pub soft: Soft,
    /// Where to cache labels, if anywhere.
    pub cache: Option<PathBuf>,
}

/// Soft labels for some examples of a pool.
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    /// The rows of the pool labelled, in the order given.
    pub rows: Vec<usize>,
    /// The labels, `rows.len() × classes`, row-major.
    pub labels: Vec<f32>,
    /// The number of classes.
    pub classes: usize,
    /// The examples the teacher labelled in this call (0 on a cache hit).
    pub queries: usize,
    /// The cache file read or written, if any.
    pub cache_file: Option<PathBuf>,
}

/// Labels the pool's `rows` with `teacher` (built for batches of its input's
/// first dimension), or reads them from the cache. `teacher_bytes` must be
/// the bytes `teacher` was loaded from: they are the cache key's model.
///
/// # Errors
/// [`RuntimeError::Data`]: a column the teacher reads is missing, the output
/// is not a float tensor with a batch axis, a temperature that is not
/// positive; tract fails; the cache cannot be read or written.
pub fn label(
    teacher_bytes: &[u8],
    teacher: &Runnable,
    pool: &Dataset,
    rows: &[usize],
    opts: &LabelOptions,
    progress: &mut dyn Progress,
) -> Result<Labelled, RuntimeError> {
    let bad = |reason: String| RuntimeError::Data { reason };
    if let Soft::Softmax { temperature } = opts.soft
        && !(temperature > 0.0 && temperature.is_finite())
    {
        return Err(bad(format!(
            "temperature {temperature}: expected a positive number"
        )));
    }
    let (feeds, batch) = feeds_of(teacher, pool, opts)?;
    let cache_file = match &opts.cache {
        Some(dir) => Some(dir.join(format!(
            "{}.npy",
            cache_key(teacher_bytes, pool, &feeds, rows, opts)?
        ))),
        None => None,
    };
    if let Some(path) = &cache_file
        && let Some((labels, classes)) = cached(path, rows.len())
    {
        return Ok(Labelled {
            rows: rows.to_vec(),
            labels,
            classes,
            queries: 0,
            cache_file,
        });
    }
    if let Some(&r) = rows.iter().find(|&&r| r >= pool.len()) {
        return Err(bad(format!("row {r} of a pool of {}", pool.len())));
    }
    let mut labels = Vec::with_capacity(rows.len());
    let mut classes = 0;
    progress.start("teacher labels", rows.len() as u64);
    let mut done = 0u64;
    for part in rows.chunks(batch) {
        // The last batch is padded with its first row; only `real` count.
        let real = part.len();
        let mut chunk = part.to_vec();
        chunk.resize(batch, part[0]);
        let mut inputs = Vec::with_capacity(feeds.len());
        for (input, column) in &feeds {
            inputs.push((input.clone(), pool.column_rows(column, &chunk)?));
        }
        let outputs = teacher.run(inputs)?;
        let out = match &opts.output {
            Some(name) => outputs
                .iter()
                .find(|(n, _)| n == name)
                .ok_or_else(|| bad(format!("the teacher has no output `{name}`")))?,
            None => outputs
                .first()
                .ok_or_else(|| bad("the teacher has no outputs".into()))?,
        };
        let values = crate::train::elements::<f32>(&out.1)
            .ok_or_else(|| bad(format!("teacher output `{}` is not float32", out.0)))?;
        let per = out.1.shape().last().copied().unwrap_or(0);
        if per == 0
            || out.1.shape().first() != Some(&chunk.len())
            || values.len() != chunk.len() * per
        {
            return Err(bad(format!(
                "teacher output `{}` has shape {:?}: expected [batch, classes]",
                out.0,
                out.1.shape()
            )));
        }
        classes = per;
        for row in values.chunks_exact(per).take(real) {
            labels.extend(soften(row, opts.soft));
        }
        done += real as u64;
        progress.set(done);
    }
    progress.finish();
    if let Some(path) = &cache_file {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| RuntimeError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let t =
            Tensor::from_shape(&[rows.len(), classes], &labels).map_err(|e| bad(e.to_string()))?;
        crate::npy::write_npy(path, &t)?;
    }
    Ok(Labelled {
        rows: rows.to_vec(),
        labels,
        classes,
        queries: rows.len(),
        cache_file,
    })
}

/// The pool column each teacher input reads, and the teacher's batch size.
fn feeds_of(
    teacher: &Runnable,
    pool: &Dataset,
    opts: &LabelOptions,
) -> Result<(Vec<(String, String)>, usize), RuntimeError> {
    let bad = |reason: String| RuntimeError::Data { reason };
    let feeds: Vec<(String, String)> = teacher
        .inputs()
        .iter()
        .map(|i| {
            let column = opts
                .columns
                .iter()
                .find(|(input, _)| *input == i.name)
                .map_or_else(|| i.name.clone(), |(_, c)| c.clone());
            (i.name.clone(), column)
        })
        .collect();
    for (input, column) in &feeds {
        if pool.column(column).is_none() {
            return Err(bad(format!(
                "no column `{column}` for teacher input `{input}`"
            )));
        }
    }
    let batch = teacher
        .inputs()
        .first()
        .and_then(crate::datum::InputSpec::concrete_shape)
        .and_then(|s| s.first().copied())
        .filter(|&b| b > 0)
        .ok_or_else(|| bad("the teacher's first input has no fixed batch size".into()))?;
    Ok((feeds, batch))
}

/// The labels cached in `path` for `n` rows, if the file holds `n` rows of
/// float32 (another shape is not trusted: the caller labels again).
fn cached(path: &std::path::Path, n: usize) -> Option<(Vec<f32>, usize)> {
    if !path.is_file() {
        return None;
    }
    // A file that cannot be read is labelled again, not trusted.
    let Ok(t) = crate::npy::read_npy(path) else {
        return None;
    };
    match *t.shape() {
        [rows, classes] if rows == n => {
            crate::train::elements::<f32>(&t).map(|v| (v.to_vec(), classes))
        }
        _ => None,
    }
}

/// One row of soft labels. O(classes).
#[must_use]
pub fn soften(row: &[f32], soft: Soft) -> Vec<f32> {
    match soft {
        Soft::AsIs => row.to_vec(),
        Soft::Softmax { temperature } => {
            let t = f64::from(temperature);
            let max = row
                .iter()
                .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v) / t));
            let e: Vec<f64> = row
                .iter()
                .map(|&v| (f64::from(v) / t - max).exp())
                .collect();
            let s: f64 = e.iter().sum();
            #[allow(clippy::cast_possible_truncation)] // probabilities, to float32
            e.iter().map(|v| (v / s) as f32).collect()
        }
    }
}

/// The cache key of a labelling (hex SHA-256; see the module docs).
fn cache_key(
    teacher_bytes: &[u8],
    pool: &Dataset,
    feeds: &[(String, String)],
    rows: &[usize],
    opts: &LabelOptions,
) -> Result<String, RuntimeError> {
    let mut h = Sha256::new();
    h.update(b"laurelc-teacher-labels-1");
    h.update((teacher_bytes.len() as u64).to_le_bytes());
    h.update(teacher_bytes);
    let columns: Vec<&str> = feeds.iter().map(|(_, c)| c.as_str()).collect();
    for (input, _) in feeds {
        h.update(input.as_bytes());
        h.update([0]);
    }
    h.update(pool.digest(&columns)?.as_bytes());
    h.update((rows.len() as u64).to_le_bytes());
    for &r in rows {
        h.update((r as u64).to_le_bytes());
    }
    h.update(opts.output.as_deref().unwrap_or("").as_bytes());
    h.update([0]);
    match opts.soft {
        Soft::AsIs => h.update(b"as-is"),
        Soft::Softmax { temperature } => {
            h.update(b"softmax");
            h.update(temperature.to_le_bytes());
        }
    }
    Ok(crate::train::data::hex(&h.finalize()))
}
