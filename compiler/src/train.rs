//! `laurelc train`: a model trained on its own stack. The model's training
//! step is built by [`crate::autodiff`] for the batch size and the data's
//! example shapes, run in a loop by [`laurel_runtime::train`], and the learned
//! tensors are written back into the original model, which is exported
//! atomically: a normal ONNX model that `fuse` and every runtime take.
//!
//! ```text
//! data.npz ─ check against the model's inputs ─┐
//! model ── training step (batch B, shapes from the data) ── train loop ── learned θ ── model with θ
//! ```
//!
//! The data are checked before anything runs, each failure an error naming
//! the column (exit 2): a missing key; a column whose element type is not
//! the input's; examples whose shape does not fit the input's fixed
//! dimensions; NaN or infinite inputs; class ids outside `[0, classes)`;
//! token ids with no row in the embedding table they index; `kd` targets
//! that are not probability distributions; an empty data set or a batch
//! larger than it. An `--input` naming no model input is an error, and the
//! trained model is never written over the data.
//!
//! Cost: the step's construction (two shape inferences), then per update one
//! run of the step plus O(parameters); per evaluation one run per batch.

use std::path::{Path, PathBuf};

use laurel_runtime::train::{
    Checkpoint, Dataset, EpochReport, Hooks, Metrics, Param, TrainOptions, TrainReport,
};
use laurel_runtime::{DatumKind, DimSpec, LoadOptions, ModelSource, Progress, Tensor};
use onnx_protobuf::TensorProto;
use serde::Serialize;

use crate::autodiff::{GradOptions, StepReport, TARGET};
use crate::error::{Error, Result};
use crate::ir::{Model, Node};
use crate::onnx::{self, ExportOptions, ExportReport};

/// What to train, on what, and how.
#[derive(Debug, Clone)]
pub struct TrainFileOptions {
    /// Allow the output to be the input file.
    pub force: bool,
    /// The training data (`.npz`).
    pub data: PathBuf,
    /// Data evaluated at every epoch's end (`.npz`), if any.
    pub eval: Option<PathBuf>,
    /// For each model input, its data key (pairs of input, key); an input
    /// without a pair reads the key of its own name.
    pub inputs: Vec<(String, String)>,
    /// The data key of the targets.
    pub target: String,
    /// The batch size (default: the model's fixed batch axis, else
    /// [`DEFAULT_BATCH`] or the whole data set if smaller).
    pub batch: Option<usize>,
    /// The loss, the trainable tensors, the prediction (`load` is set here
    /// from the data).
    pub grad: GradOptions,
    /// The loop's options (`columns`, `prediction` and `float_loss` are set here).
    pub run: TrainOptions,
    /// Where to keep the run's state, and how often (epochs; 0: never).
    pub checkpoint: Option<(PathBuf, u64)>,
    /// A checkpoint to continue from.
    pub resume: Option<PathBuf>,
    /// How to write the trained model.
    pub export: ExportOptions,
}

/// The batch size of a model whose batch axis is symbolic, when none is given.
pub const DEFAULT_BATCH: usize = 32;

/// What [`train_file`] did.
#[derive(Debug, Clone, Serialize)]
pub struct TrainFileReport {
    /// The training step built.
    pub step: StepReport,
    /// The examples trained on and evaluated.
    pub examples: usize,
    /// The evaluation examples.
    pub eval_examples: Option<usize>,
    /// The run.
    pub run: TrainReport,
    /// The epoch after which this run last saved its checkpoint.
    pub checkpoint_epoch: Option<u64>,
    /// The trained model's file, when the run completed and it was written.
    #[serde(skip)]
    pub export: Option<ExportReport>,
}

/// Reports each epoch as it ends.
pub trait EpochSink {
    /// An epoch ended.
    fn epoch(&mut self, report: &EpochReport);
}

impl<F: FnMut(&EpochReport)> EpochSink for F {
    fn epoch(&mut self, report: &EpochReport) {
        self(report);
    }
}

/// Trains `input` as `opts` asks and writes the trained model to `output`
/// when the run completes (not when a non-finite loss stops it: then the
/// report's `run.stop` says where, and the last checkpoint is the last good
/// state).
///
/// # Errors
/// [`Error::Data`] for data that do not fit the model (see the module
/// docs); the errors of import, [`crate::autodiff::training_step`], tract
/// and export.
pub fn train_file(
    input: &Path,
    output: &Path,
    opts: &TrainFileOptions,
    sink: &mut dyn EpochSink,
    progress: &mut dyn Progress,
) -> Result<TrainFileReport> {
    guard_paths(input, output, opts)?;
    let model = onnx::import_path(input)?;
    crate::pipeline::guard_external(&model, output, opts.force)?;
    let train = read_data(&opts.data)?;
    let eval = opts.eval.as_deref().map(read_data).transpose()?;
    let (mut report, trained) =
        train_model(&model, input, &train, eval.as_ref(), opts, sink, progress)?;
    if let Some(model) = trained {
        report.export = Some(onnx::write_path(&model, output, &opts.export)?);
    }
    Ok(report)
}

/// [`train_file`] on a model and data sets in memory: the report, and the
/// trained model when the run completed (`report.export` is `None`; the
/// caller writes the model). `input` names the model in messages, and
/// `opts.data` and `opts.eval` the data sets.
///
/// # Errors
/// As [`train_file`].
pub fn train_model(
    model: &Model,
    input: &Path,
    train: &Dataset,
    eval: Option<&Dataset>,
    opts: &TrainFileOptions,
    sink: &mut dyn EpochSink,
    progress: &mut dyn Progress,
) -> Result<(TrainFileReport, Option<Model>)> {
    let mut model = model.clone();
    let bytes = onnx::to_bytes(&model)?;
    let declared = laurel_runtime::declared_inputs(ModelSource::Bytes(&bytes))?;
    check_input_names(&declared, input, opts)?;
    let batch =
        opts.batch
            .unwrap_or_else(|| match declared.first().and_then(|i| i.shape.first()) {
                Some(DimSpec::Fixed(b)) => *b,
                _ => DEFAULT_BATCH.min(train.len()),
            });
    let load = shapes_for(&declared, train, opts, batch)?;
    let grad = GradOptions {
        load,
        ..opts.grad.clone()
    };
    let bounds = gather_bounds(&declared);
    check_inputs(&declared, train, &opts.data, opts, Some(batch), &bounds)?;
    let eval_path = opts.eval.clone().unwrap_or_else(|| opts.data.clone());
    if let (Some(e), path) = (&eval, &eval_path) {
        // Evaluation pads its last batch: any number of examples will do, but
        // of the shapes the step is built for.
        check_inputs(&declared, e, path, opts, None, &bounds)?;
        check_like_training(&declared, train, e, path, opts)?;
    }
    let (step, report) = crate::autodiff::training_step(&model, &grad)?;
    check_target(train, &opts.data, opts, &report)?;
    check_loss_inputs(train, &opts.data, opts, &report)?;
    if let Some(e) = &eval {
        check_target(e, &eval_path, opts, &report)?;
    }
    // Evaluation runs the step, which reads the loss's own inputs; its loss
    // does not use them (see `float_loss` below), so data without them get
    // neutral ones.
    let eval_filled = eval
        .map(|e| with_loss_inputs(e, opts, &report))
        .transpose()?;
    let eval = eval_filled.as_ref();
    let step_bytes = onnx::to_bytes(&step)?;
    let runnable = laurel_runtime::load(ModelSource::Bytes(&step_bytes), &LoadOptions::default())?;

    let names: Vec<String> = report.trainable.iter().map(|t| t.name.clone()).collect();
    let start = match &opts.resume {
        Some(path) => Checkpoint::load(path)?,
        None => Checkpoint::new(
            laurel_runtime::train::initial_params(&bytes, &names)?,
            opts.run.optimizer,
        ),
    };
    let mut run = opts.run.clone();
    run.columns = opts
        .inputs
        .iter()
        .cloned()
        .chain(std::iter::once((TARGET.to_owned(), opts.target.clone())))
        .collect();
    run.prediction = Some(report.prediction.clone());
    run.step = match opts.grad.loss {
        crate::autodiff::Loss::Kd => format!("kd loss at T = {}", opts.grad.temperature),
        loss => format!("{loss} loss"),
    };
    run.float_loss = match opts.grad.loss {
        crate::autodiff::Loss::Kd => laurel_runtime::train::metrics::FloatLoss::Distillation {
            temperature: opts.grad.temperature,
        },
        // Evaluation reports SLaM runs by the plain cross-entropy with the
        // teacher's probabilities (the mixing needs a(x) and k(x) per example).
        crate::autodiff::Loss::Slam | crate::autodiff::Loss::SlamNormalised => {
            laurel_runtime::train::metrics::FloatLoss::Distillation { temperature: 1.0 }
        }
        _ => laurel_runtime::train::metrics::FloatLoss::SquaredError,
    };
    let mut hooks = RunHooks {
        step: &runnable,
        eval,
        options: &run,
        checkpoint: opts.checkpoint.as_ref(),
        saved: None,
        sink,
    };
    let (state, run_report) =
        laurel_runtime::train::train(&runnable, train, &run, start, &mut hooks, progress)?;
    let checkpoint_epoch = hooks.saved;
    let trained = if run_report.stop == laurel_runtime::train::Stop::Completed {
        write_back(&mut model, &state.params)?;
        Some(model)
    } else {
        None
    };
    Ok((
        TrainFileReport {
            step: report,
            examples: train.len(),
            eval_examples: eval.map(Dataset::len),
            run: run_report,
            checkpoint_epoch,
            export: None,
        },
        trained,
    ))
}

/// Refuses an `--input` that names neither a model input nor an input of
/// the loss.
fn check_input_names(
    declared: &[laurel_runtime::InputSpec],
    input: &Path,
    opts: &TrainFileOptions,
) -> Result<()> {
    let loss_inputs = [
        crate::autodiff::loss::SLAM_A,
        crate::autodiff::loss::SLAM_TOPK,
    ];
    let is_slam = matches!(
        opts.grad.loss,
        crate::autodiff::Loss::Slam | crate::autodiff::Loss::SlamNormalised
    );
    if let Some((name, _)) = opts.inputs.iter().find(|(name, _)| {
        !(declared.iter().any(|d| &d.name == name)
            || is_slam && loss_inputs.contains(&name.as_str()))
    }) {
        let have: Vec<String> = declared.iter().map(|d| format!("`{}`", d.name)).collect();
        return Err(Error::Data {
            path: input.to_path_buf(),
            reason: format!(
                "--input {name}=…: the model has no input `{name}` (its inputs are {})",
                have.join(", ")
            ),
        });
    }
    Ok(())
}

/// Refuses an output over the input (without `--force`) or over the data,
/// and a checkpoint over the model, the data or the output.
fn guard_paths(input: &Path, output: &Path, opts: &TrainFileOptions) -> Result<()> {
    crate::pipeline::guard_output(input, output, opts.force)?;
    // The trained model is never written over the data, whatever --force says.
    for (data, what) in std::iter::once((opts.data.as_path(), "training"))
        .chain(opts.eval.as_deref().map(|e| (e, "evaluation")))
    {
        if crate::pipeline::same_file(data, output) {
            return Err(Error::Data {
                path: output.to_path_buf(),
                reason: format!("the trained model would be written over the {what} data"),
            });
        }
    }
    if let Some((checkpoint, _)) = &opts.checkpoint {
        // The checkpoint is written over and over: never onto the model, the
        // data or the trained model, whatever --force says (onto the
        // checkpoint resumed from is fine: it was read first).
        let clash = [
            (input, "the model"),
            (opts.data.as_path(), "the training data"),
        ]
        .into_iter()
        .chain(opts.eval.as_deref().map(|e| (e, "the evaluation data")))
        .find(|(p, _)| crate::pipeline::same_file(p, checkpoint));
        let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        let clash = clash
            .map(|(_, what)| what)
            .or_else(|| (canon(checkpoint) == canon(output)).then_some("the trained model"));
        if let Some(what) = clash {
            return Err(Error::Data {
                path: checkpoint.clone(),
                reason: format!("the checkpoint would be written over {what}"),
            });
        }
    }
    Ok(())
}

/// One line per epoch: `epoch 3/10  loss 0.4123  accuracy 87.50%  eval loss 0.5012  eval accuracy 85.00%  lr 1.00e-3`.
#[must_use]
pub fn epoch_line(e: &EpochReport, epochs: u64) -> String {
    use std::fmt::Write as _;
    let mut s = format!("epoch {}/{epochs}  loss {:.4}", e.epoch, e.loss);
    if let Some(a) = e.accuracy {
        let _ = write!(s, "  accuracy {:.2}%", 100.0 * a);
    }
    if let Some(m) = &e.eval {
        let _ = write!(s, "  eval loss {:.4}", m.loss);
        if let Some(a) = m.accuracy {
            let _ = write!(s, "  eval accuracy {:.2}%", 100.0 * a);
        }
    }
    let _ = write!(s, "  lr {:.2e}", e.lr);
    s
}

struct RunHooks<'a> {
    step: &'a laurel_runtime::Runnable,
    eval: Option<&'a Dataset>,
    options: &'a TrainOptions,
    checkpoint: Option<&'a (PathBuf, u64)>,
    saved: Option<u64>,
    sink: &'a mut dyn EpochSink,
}

impl Hooks for RunHooks<'_> {
    fn evaluate(
        &mut self,
        params: &[Param],
    ) -> std::result::Result<Option<Metrics>, laurel_runtime::RuntimeError> {
        self.eval
            .map(|d| laurel_runtime::train::evaluate(self.step, d, self.options, params))
            .transpose()
    }

    fn epoch_end(
        &mut self,
        state: &Checkpoint,
        report: &EpochReport,
    ) -> std::result::Result<(), laurel_runtime::RuntimeError> {
        if let Some((path, every)) = self.checkpoint
            && *every > 0
            && (state.epoch.is_multiple_of(*every) || state.epoch == self.options.epochs)
        {
            state.save(path)?;
            self.saved = Some(state.epoch);
        }
        self.sink.epoch(report);
        Ok(())
    }
}

fn read_data(path: &Path) -> Result<Dataset> {
    let columns = laurel_runtime::read_npz(path)?;
    Dataset::new(columns).map_err(|e| Error::Data {
        path: path.to_path_buf(),
        reason: strip_prefix(&e),
    })
}

/// A runtime data error's reason without its "bad data: " prefix.
fn strip_prefix(e: &laurel_runtime::RuntimeError) -> String {
    match e {
        laurel_runtime::RuntimeError::Data { reason } => reason.clone(),
        other => other.to_string(),
    }
}

/// Evaluation examples of the training examples' shapes (the step is built
/// for those).
fn check_like_training(
    declared: &[laurel_runtime::InputSpec],
    train: &Dataset,
    e: &Dataset,
    path: &Path,
    opts: &TrainFileOptions,
) -> Result<()> {
    for input in declared {
        let key = key_of(opts, &input.name);
        let (a, b) = (train.column(key), e.column(key));
        if let (Some(a), Some(b)) = (a, b)
            && a.shape()[1..] != b.shape()[1..]
        {
            return Err(Error::Data {
                path: path.to_path_buf(),
                reason: format!(
                    "`{key}` holds examples of shape {:?}; the training data's are {:?}",
                    &b.shape()[1..],
                    &a.shape()[1..]
                ),
            });
        }
    }
    Ok(())
}

/// The data key of model input `input`.
fn key_of<'a>(opts: &'a TrainFileOptions, input: &'a str) -> &'a str {
    input_key(&opts.inputs, input)
}

/// The data key of model input `input` under `inputs` (pairs of input and
/// key; an input without a pair reads the key of its own name).
pub(crate) fn input_key<'a>(inputs: &'a [(String, String)], input: &'a str) -> &'a str {
    inputs
        .iter()
        .find(|(i, _)| i == input)
        .map_or(input, |(_, k)| k.as_str())
}

/// Whether examples of shape `example` fit `input` after its first (batch)
/// axis: the same rank, and every fixed dimension equal.
pub(crate) fn example_fits(input: &laurel_runtime::InputSpec, example: &[usize]) -> bool {
    input.shape.len() == example.len() + 1
        && input.shape[1..]
            .iter()
            .zip(example)
            .all(|(d, &e)| !matches!(d, DimSpec::Fixed(f) if *f != e))
}

/// The shapes the step is built for: each model input is `[batch]` then its
/// examples' shape.
fn shapes_for(
    declared: &[laurel_runtime::InputSpec],
    data: &Dataset,
    opts: &TrainFileOptions,
    batch: usize,
) -> Result<LoadOptions> {
    let mut load = LoadOptions::default();
    for input in declared {
        let key = key_of(opts, &input.name);
        let Some(column) = data.column(key) else {
            return Err(Error::Data {
                path: opts.data.clone(),
                reason: format!(
                    "no key `{key}` for model input `{}` (the data has {})",
                    input.name,
                    keys(data)
                ),
            });
        };
        let mut shape = vec![batch];
        shape.extend_from_slice(&column.shape()[1..]);
        load.shapes.insert(input.name.clone(), shape);
    }
    Ok(load)
}

fn keys(data: &Dataset) -> String {
    data.columns()
        .iter()
        .map(|(n, _)| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks `data` against the model's declared inputs.
/// `batch` is the training batch, `None` for evaluation data (padded).
fn check_inputs(
    declared: &[laurel_runtime::InputSpec],
    data: &Dataset,
    path: &Path,
    opts: &TrainFileOptions,
    batch: Option<usize>,
    bounds: &[(String, i64)],
) -> Result<()> {
    let bad = |reason: String| Error::Data {
        path: path.to_path_buf(),
        reason,
    };
    if let Some(batch) = batch
        && (batch == 0 || batch > data.len())
    {
        return Err(bad(format!(
            "a batch of {batch} examples from a data set of {}",
            data.len()
        )));
    }
    for input in declared {
        let key = key_of(opts, &input.name);
        let column = data.column(key).ok_or_else(|| {
            bad(format!(
                "no key `{key}` for model input `{}` (the data has {})",
                input.name,
                keys(data)
            ))
        })?;
        let kind = DatumKind::from_datum_type(column.datum_type());
        if kind != Some(input.datum) {
            return Err(bad(format!(
                "`{key}` holds {:?}, model input `{}` takes {}",
                column.datum_type(),
                input.name,
                input.datum
            )));
        }
        let example = &column.shape()[1..];
        let fits = example_fits(input, example);
        let batch_fits = match (batch, input.shape.first()) {
            (Some(batch), Some(DimSpec::Fixed(b))) => *b == batch,
            _ => true,
        };
        if !fits {
            return Err(bad(format!(
                "`{key}` holds examples of shape {example:?}; model input `{}` is {} (the first axis is the batch)",
                input.name,
                dims_text(&input.shape)
            )));
        }
        if !batch_fits {
            return Err(bad(format!(
                "model input `{}` has a fixed batch axis of {}, not --batch-size {}",
                input.name,
                dims_text(&input.shape[..1]),
                batch.unwrap_or_default()
            )));
        }
        if let Some(i) = first_non_finite(column) {
            return Err(bad(format!(
                "`{key}` has a NaN or infinite value at flat index {i}"
            )));
        }
        if let Some(reason) = bounds
            .iter()
            .find(|b| b.0 == input.name)
            .and_then(|b| check_ids(column, key, b))
        {
            return Err(bad(reason));
        }
    }
    Ok(())
}

/// Checks `data`'s targets against the step's target.
fn check_target(
    data: &Dataset,
    path: &Path,
    opts: &TrainFileOptions,
    step: &StepReport,
) -> Result<()> {
    let bad = |reason: String| Error::Data {
        path: path.to_path_buf(),
        reason,
    };
    let target = data.column(&opts.target).ok_or_else(|| {
        bad(format!(
            "no target key `{}` (the data has {}; set it with --target)",
            opts.target,
            keys(data)
        ))
    })?;
    let Some((_, per_example)) = step.target.dims.split_first() else {
        return Err(bad(format!(
            "the {} loss on `{}` has a scalar target: the prediction has no batch axis to train on",
            step.loss, step.prediction
        )));
    };
    let want: Vec<usize> = per_example
        .iter()
        .map(|&d| usize::try_from(d).unwrap_or(0))
        .collect();
    if target.shape()[1..] != want[..] {
        return Err(bad(format!(
            "target `{}` holds examples of shape {:?}; the {} loss on `{}` needs {want:?}",
            opts.target,
            &target.shape()[1..],
            step.loss,
            step.prediction
        )));
    }
    let class_ids = step.target.elem == onnx_protobuf::tensor_proto::DataType::INT64 as i32;
    if class_ids {
        let ids = target
            .try_as_plain_ram()
            .ok()
            .and_then(|v| v.as_slice::<i64>().ok())
            .ok_or_else(|| {
                bad(format!(
                    "target `{}` holds {:?}; the {} loss takes int64 class ids",
                    opts.target,
                    target.datum_type(),
                    step.loss
                ))
            })?;
        let classes = step.prediction_dims.last().copied().unwrap_or(0);
        if let Some((i, id)) = ids
            .iter()
            .enumerate()
            .find(|(_, id)| !(0..classes).contains(*id))
        {
            return Err(bad(format!(
                "target `{}` has class id {id} at flat index {i}, outside [0, {classes}) (the classes of `{}`)",
                opts.target, step.prediction
            )));
        }
    } else {
        if DatumKind::from_datum_type(target.datum_type()) != Some(DatumKind::F32) {
            return Err(bad(format!(
                "target `{}` holds {:?}; the {} loss takes float32 values",
                opts.target,
                target.datum_type(),
                step.loss
            )));
        }
        if let Some(i) = first_non_finite(target) {
            return Err(bad(format!(
                "target `{}` has a NaN or infinite value at flat index {i}",
                opts.target
            )));
        }
        if matches!(
            opts.grad.loss,
            crate::autodiff::Loss::Kd
                | crate::autodiff::Loss::Slam
                | crate::autodiff::Loss::SlamNormalised
        ) && let Some(reason) = check_distributions(target, &opts.target)
        {
            return Err(bad(reason));
        }
    }
    Ok(())
}

/// For each integer model input that indexes a `Gather` table (the
/// runtime's [`laurel_runtime::InputSpec::index_rows`]): the input and the
/// rows of its smallest table. An id outside `[−rows, rows)` has no row:
/// tract would fail mid-run, where the data check can name the example.
fn gather_bounds(declared: &[laurel_runtime::InputSpec]) -> Vec<(String, i64)> {
    declared
        .iter()
        .filter_map(|d| Some((d.name.clone(), i64::try_from(d.index_rows?).ok()?)))
        .collect()
}

/// Ids of `key` with no row in the table of `bound` (see [`gather_bounds`]).
fn check_ids(column: &Tensor, key: &str, bound: &(String, i64)) -> Option<String> {
    let (input, rows) = bound;
    let view = column.try_as_plain_ram().ok()?;
    let bad = |i: usize, id: i64| {
        format!(
            "`{key}` has id {id} at flat index {i}, outside [-{rows}, {rows}): model input `{input}` indexes a `Gather` table of {rows} rows"
        )
    };
    let out = |id: i64| id < -rows || id >= *rows;
    if let Ok(s) = view.as_slice::<i64>() {
        return s.iter().position(|&v| out(v)).map(|i| bad(i, s[i]));
    }
    if let Ok(s) = view.as_slice::<i32>() {
        return s
            .iter()
            .position(|&v| out(i64::from(v)))
            .map(|i| bad(i, i64::from(s[i])));
    }
    None
}

/// For the kd loss: each example's target, along its last axis, is a
/// probability distribution (entries in [0, 1] summing to 1 within 1e-3),
/// the teacher's softmax, not its logits.
fn check_distributions(target: &Tensor, key: &str) -> Option<String> {
    let s = target.try_as_plain_ram().ok()?.as_slice::<f32>().ok()?;
    let k = *target.shape().last()?;
    if k == 0 {
        return None;
    }
    for (r, row) in s.chunks_exact(k).enumerate() {
        let sum: f64 = row.iter().map(|&v| f64::from(v)).sum();
        let outside = row.iter().position(|&v| !(-1e-6..=1.0 + 1e-6).contains(&v));
        if outside.is_some() || (sum - 1.0).abs() > 1e-3 {
            return Some(format!(
                "target `{key}` row {r} is not a probability distribution (sum {sum:.4}{}): the kd loss takes the teacher's probabilities (a softmax), not its logits",
                outside.map_or(String::new(), |i| format!(", entry {i} is {}", row[i]))
            ));
        }
    }
    None
}

/// Checks the columns of the loss's own inputs (SLaM's `slam_a`, in [0, 1],
/// and `slam_topk`, 0 or 1): present, float32, of the step's example shapes.
fn check_loss_inputs(
    data: &Dataset,
    path: &Path,
    opts: &TrainFileOptions,
    step: &StepReport,
) -> Result<()> {
    let bad = |reason: String| Error::Data {
        path: path.to_path_buf(),
        reason,
    };
    for spec in &step.loss_inputs {
        let key = key_of(opts, &spec.name);
        let column = data.column(key).ok_or_else(|| {
            bad(format!(
                "no key `{key}` for the {} loss's input `{}` (the data has {})",
                step.loss,
                spec.name,
                keys(data)
            ))
        })?;
        let want: Vec<usize> = spec.dims[1..]
            .iter()
            .map(|&d| usize::try_from(d).unwrap_or(0))
            .collect();
        let values = column
            .try_as_plain_ram()
            .ok()
            .and_then(|v| v.as_slice::<f32>().ok())
            .ok_or_else(|| {
                bad(format!(
                    "`{key}` holds {:?}, not float32",
                    column.datum_type()
                ))
            })?;
        if column.shape()[1..] != want[..] {
            return Err(bad(format!(
                "`{key}` holds examples of shape {:?}; the {} loss's `{}` needs {want:?}",
                &column.shape()[1..],
                step.loss,
                spec.name
            )));
        }
        let mask = spec.name == crate::autodiff::loss::SLAM_TOPK;
        if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| {
            if mask {
                !(v.abs().to_bits() == 0.0f32.to_bits() || v.to_bits() == 1.0f32.to_bits())
            } else {
                !(0.0..=1.0).contains(*v)
            }
        }) {
            return Err(bad(format!(
                "`{key}` has {v} at flat index {i}; `{}` takes {}",
                spec.name,
                if mask { "0 or 1" } else { "values in [0, 1]" }
            )));
        }
    }
    Ok(())
}

/// `data` with neutral columns (a = 1, no top-k classes) for the loss's own
/// inputs it lacks.
fn with_loss_inputs(data: &Dataset, opts: &TrainFileOptions, step: &StepReport) -> Result<Dataset> {
    let mut columns = data.columns().to_vec();
    for spec in &step.loss_inputs {
        let key = key_of(opts, &spec.name);
        if data.column(key).is_some() {
            continue;
        }
        let mut shape = vec![data.len()];
        shape.extend(
            spec.dims[1..]
                .iter()
                .map(|&d| usize::try_from(d).unwrap_or(0)),
        );
        let fill = if spec.name == crate::autodiff::loss::SLAM_A {
            1.0f32
        } else {
            0.0
        };
        let n: usize = shape.iter().product();
        let t = Tensor::from_shape(&shape, &vec![fill; n]).map_err(|e| Error::Data {
            path: PathBuf::new(),
            reason: e.to_string(),
        })?;
        columns.push((key.to_owned(), t));
    }
    Dataset::new(columns).map_err(|e| Error::Data {
        path: PathBuf::new(),
        reason: strip_prefix(&e),
    })
}

fn dims_text(dims: &[DimSpec]) -> String {
    dims.iter()
        .map(|d| match d {
            DimSpec::Fixed(n) => n.to_string(),
            DimSpec::Symbol(s) => s.clone(),
        })
        .collect::<Vec<_>>()
        .join("×")
}

/// The first NaN or infinite element of a float tensor.
fn first_non_finite(t: &Tensor) -> Option<usize> {
    let view = t.try_as_plain_ram().ok()?;
    if let Ok(s) = view.as_slice::<f32>() {
        return s.iter().position(|v| !v.is_finite());
    }
    if let Ok(s) = view.as_slice::<f64>() {
        return s.iter().position(|v| !v.is_finite());
    }
    if let Ok(s) = view.as_slice::<laurel_runtime::tract_onnx::prelude::f16>() {
        return s.iter().position(|v| !v.is_finite());
    }
    None
}

/// Writes the learned values into the model's initializers and `Constant`
/// nodes of the same names (float32, raw little-endian data; external data
/// references are dropped, the export decides where the bytes go). O(model).
///
/// # Errors
/// [`Error::Data`] naming a tensor the model does not hold.
pub fn write_back(model: &mut Model, params: &[Param]) -> Result<()> {
    for p in params {
        let raw: Vec<u8> = p.values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let fresh = |old: &TensorProto| TensorProto {
            name: old.name.clone(),
            dims: old.dims.clone(),
            data_type: onnx_protobuf::tensor_proto::DataType::FLOAT as i32,
            raw_data: raw.clone(),
            doc_string: old.doc_string.clone(),
            ..TensorProto::default()
        };
        let mut found = false;
        for n in model.graph.dag.node_weights_mut() {
            match n {
                Node::Initializer(init) if init.proto.name == p.name => {
                    init.proto = fresh(&init.proto);
                    init.external = None;
                    found = true;
                }
                Node::Op(op)
                    if op.proto.op_type == "Constant"
                        && op.proto.output.first() == Some(&p.name) =>
                {
                    for a in &mut op.proto.attribute {
                        if a.name == "value"
                            && let Some(t) = a.t.as_mut()
                        {
                            *t = fresh(t);
                            found = true;
                        }
                    }
                }
                _ => {}
            }
        }
        if !found {
            return Err(Error::Data {
                path: PathBuf::new(),
                reason: format!("the model has no tensor `{}` to write back", p.name),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use laurel_runtime::tract_onnx::prelude::f16;

    use super::*;

    #[test]
    fn a_nan_is_found_in_every_float_width() {
        let f32s = Tensor::from_shape(&[3], &[1.0f32, f32::NAN, 0.0]).unwrap();
        let f64s = Tensor::from_shape(&[2], &[1.0f64, f64::INFINITY]).unwrap();
        let f16s = Tensor::from_shape(&[3], &[f16::ONE, f16::ZERO, f16::NAN]).unwrap();
        assert_eq!(first_non_finite(&f32s), Some(1));
        assert_eq!(first_non_finite(&f64s), Some(1));
        assert_eq!(first_non_finite(&f16s), Some(2));
        let fine = Tensor::from_shape(&[2], &[f16::ONE, f16::MAX]).unwrap();
        assert_eq!(first_non_finite(&fine), None);
    }

    #[test]
    fn kd_targets_must_be_distributions_along_the_last_axis() {
        let ok = Tensor::from_shape(&[2, 2], &[0.25f32, 0.75, 1.0, 0.0]).unwrap();
        assert_eq!(check_distributions(&ok, "t"), None);
        let short = Tensor::from_shape(&[2, 2], &[0.25f32, 0.75, 0.5, 0.4]).unwrap();
        let e = check_distributions(&short, "t").unwrap();
        assert!(e.contains("row 1") && e.contains("sum 0.9000"), "{e}");
        // Sums to 1 but is no distribution: logits shifted to sum 1.
        let signed = Tensor::from_shape(&[1, 2], &[2.0f32, -1.0]).unwrap();
        let e = check_distributions(&signed, "t").unwrap();
        assert!(e.contains("entry 0 is 2"), "{e}");
    }

    #[test]
    fn ids_are_checked_against_the_rows_of_their_table() {
        let bound = ("ids".to_owned(), 4);
        let i64s = Tensor::from_shape(&[3], &[0i64, 3, -4]).unwrap();
        assert_eq!(check_ids(&i64s, "ids", &bound), None);
        let over = Tensor::from_shape(&[2], &[1i32, 4]).unwrap();
        let e = check_ids(&over, "ids", &bound).unwrap();
        assert!(e.contains("id 4 at flat index 1, outside [-4, 4)"), "{e}");
        let under = Tensor::from_shape(&[1], &[-5i64]).unwrap();
        assert!(check_ids(&under, "ids", &bound).is_some());
    }
}
