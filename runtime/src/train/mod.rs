//! Training: a training step model (the interface `laurelc grad` writes) run
//! again and again on tract, with the optimizer on the host.
//!
//! ```text
//! for epoch in start..epochs:
//!     for batch in data.epoch(batch_size, seed, epoch):      seeded permutation, whole batches
//!         loss, grads, prediction = step(batch, target, θ)   one tract run, the plan built once
//!         stop if loss is NaN or infinite                    θ stays the last good one
//!         clip grads to max_norm                             optional, global L2 norm
//!         θ ← optimizer(θ, grads, rate(t))                   SGD with momentum or AdamW
//!     evaluate, checkpoint                                   optional, at epoch ends
//! ```
//!
//! The step's interface ([`StepInterface`]): its inputs are the data columns,
//! `target` and the trainable tensors (float32); its outputs `loss`,
//! `<tensor>.grad` for every trainable tensor, and the model's outputs. A run
//! is deterministic: the same step, data, options and seed give the same
//! tensors bit for bit (tract's kernels are deterministic on one machine,
//! the shuffle is seeded, the host updates run in order).
//!
//! Cost: per update one run of the step plus O(parameters) on the host
//! (copying θ into the run, the update, the clip).
//!
//! Modules: [`data`] (data sets and batches), [`optim`] (optimizers and
//! clipping), [`schedule`] (learning rates), [`checkpoint`] (saving and
//! resuming a run), [`metrics`] (evaluation).

pub mod checkpoint;
pub mod data;
pub mod metrics;
pub mod optim;
pub mod schedule;

use serde::Serialize;
use tract_onnx::prelude::{DatumType, Tensor};

use crate::datum::DatumKind;
use crate::error::RuntimeError;
use crate::progress::Progress;
use crate::runnable::Runnable;
pub use checkpoint::{Checkpoint, RunKey};
pub use data::Dataset;
pub use metrics::Metrics;
pub use optim::{Optimizer, OptimizerKind};
pub use schedule::{Schedule, ScheduleKind};

/// The name of the step's loss output.
pub const LOSS: &str = "loss";
/// The name of the step's target input.
pub const TARGET: &str = "target";
/// The suffix of a gradient output.
pub const GRAD_SUFFIX: &str = ".grad";

/// A trainable tensor: its name, shape and float32 values.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// The name (an input of the step).
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its values, row-major.
    pub values: Vec<f32>,
}

impl Param {
    /// The tensor.
    ///
    /// # Errors
    /// [`RuntimeError::Tract`] if the shape does not hold the values.
    pub fn tensor(&self) -> Result<Tensor, RuntimeError> {
        Tensor::from_shape(&self.shape, &self.values).map_err(|e| RuntimeError::Tract {
            context: format!("building tensor `{}`", self.name),
            message: e.to_string(),
        })
    }

    /// A parameter from a float32 tensor.
    ///
    /// # Errors
    /// [`RuntimeError::StepInterface`] for another element type.
    pub fn from_tensor(name: &str, t: &Tensor) -> Result<Self, RuntimeError> {
        let values = elements::<f32>(t)
            .ok_or_else(|| RuntimeError::StepInterface {
                reason: format!(
                    "trainable tensor `{name}` is {:?}; training runs on float32 tensors",
                    t.datum_type()
                ),
            })?
            .to_vec();
        Ok(Self {
            name: name.to_owned(),
            shape: t.shape().to_vec(),
            values,
        })
    }
}

/// What a step model takes and gives, read from its inputs and outputs.
#[derive(Debug, Clone)]
pub struct StepInterface {
    /// The data inputs (every input but `target` and the trainable tensors).
    pub data: Vec<String>,
    /// The trainable tensors, in input order.
    pub params: Vec<String>,
    /// Whether the target holds class ids (int64), as for the `ce` loss.
    pub class_ids: bool,
    /// The batch size the step is specialised to (the target's first axis).
    pub batch: usize,
    /// The model's own outputs (every output but the loss and the gradients).
    pub outputs: Vec<String>,
}

impl StepInterface {
    /// Reads the interface of a loaded step model.
    ///
    /// # Errors
    /// [`RuntimeError::StepInterface`]: no `loss` output or `target` input, a
    /// gradient output whose tensor is not an input, a non-float32 trainable
    /// tensor, a scalar target.
    pub fn of(step: &Runnable) -> Result<Self, RuntimeError> {
        let bad = |reason: String| RuntimeError::StepInterface { reason };
        let outputs = step.output_names();
        if !outputs.iter().any(|o| o == LOSS) {
            return Err(bad(format!("no `{LOSS}` output")));
        }
        let target = step
            .inputs()
            .iter()
            .find(|i| i.name == TARGET)
            .ok_or_else(|| bad(format!("no `{TARGET}` input")))?;
        let batch = target
            .concrete_shape()
            .and_then(|s| s.first().copied())
            .ok_or_else(|| bad(format!("`{TARGET}` has no static batch axis")))?;
        let mut params = Vec::new();
        for o in outputs {
            if let Some(p) = o.strip_suffix(GRAD_SUFFIX) {
                let input = step.inputs().iter().find(|i| i.name == p).ok_or_else(|| {
                    bad(format!("gradient `{o}` of `{p}`, which is not an input"))
                })?;
                if input.datum != DatumKind::F32 {
                    return Err(bad(format!(
                        "trainable tensor `{p}` is {}; training runs on float32 tensors",
                        input.datum
                    )));
                }
                params.push(p.to_owned());
            }
        }
        let data = step
            .inputs()
            .iter()
            .filter(|i| i.name != TARGET && !params.contains(&i.name))
            .map(|i| i.name.clone())
            .collect();
        let own = outputs
            .iter()
            .filter(|o| *o != LOSS && !o.ends_with(GRAD_SUFFIX))
            .cloned()
            .collect();
        Ok(Self {
            data,
            params,
            class_ids: target.datum == DatumKind::I64,
            batch,
            outputs: own,
        })
    }
}

/// How to train.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Epochs to run (in all, counting those a resumed checkpoint has done).
    pub epochs: u64,
    /// The seed of the shuffle.
    pub seed: u64,
    /// The optimizer.
    pub optimizer: Optimizer,
    /// The peak learning rate.
    pub lr: f32,
    /// The learning-rate schedule.
    pub schedule: Schedule,
    /// Clip the gradients' global L2 norm to this, if set.
    pub clip_norm: Option<f32>,
    /// The data column for each data input of the step, and for `target`
    /// (pairs of step input, column; an input without a pair reads the column
    /// of its own name).
    pub columns: Vec<(String, String)>,
    /// The model output whose argmax is the predicted class (for accuracy;
    /// default: the first of the model's outputs).
    pub prediction: Option<String>,
    /// The loss evaluations report for float targets (the step's own loss).
    pub float_loss: metrics::FloatLoss,
    /// What the step computes, in words the caller chooses (laurelc: its
    /// loss and temperature); recorded in checkpoints, so that a resumed run
    /// of another step is refused.
    pub step: String,
}

/// One epoch's numbers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EpochReport {
    /// The epoch (from 1).
    pub epoch: u64,
    /// The mean training loss over its updates.
    pub loss: f64,
    /// The training accuracy over its batches (class-id targets only).
    pub accuracy: Option<f64>,
    /// The learning rate of its last update.
    pub lr: f32,
    /// The mean global gradient norm (before clipping).
    pub grad_norm: f64,
    /// The evaluation, if a data set was given.
    pub eval: Option<Metrics>,
}

/// Why a run stopped.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Stop {
    /// Every epoch ran.
    Completed,
    /// The loss, or the gradients' norm, became NaN or infinite; the parameters are
    /// those before the update that would have used it.
    NonFinite {
        /// The epoch (from 1).
        epoch: u64,
        /// The update (from 1, counted over the whole run).
        update: u64,
        /// What became non-finite: "the loss became NaN", "the gradients'
        /// norm became inf (the loss was 0.25)".
        loss: String,
    },
}

/// A run's result.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// Each epoch's numbers (a resumed run: the epochs it ran; a stopped run
    /// ends with the partial epoch).
    pub epochs: Vec<EpochReport>,
    /// Updates done in all (counting a resumed checkpoint's).
    pub updates: u64,
    /// Why it stopped.
    pub stop: Stop,
}

/// Hooks a caller gives the loop: progress, evaluation and checkpoints.
pub trait Hooks {
    /// Evaluates the parameters at the end of an epoch (default: none).
    ///
    /// # Errors
    /// As the evaluation fails.
    fn evaluate(&mut self, params: &[Param]) -> Result<Option<Metrics>, RuntimeError> {
        let _ = params;
        Ok(None)
    }

    /// Called with the run's state at the end of every completed epoch
    /// (default: nothing); not when a non-finite loss stops the run, so that
    /// the last checkpoint saved here stays the last good one.
    ///
    /// # Errors
    /// As saving fails.
    fn epoch_end(&mut self, state: &Checkpoint, report: &EpochReport) -> Result<(), RuntimeError> {
        let _ = (state, report);
        Ok(())
    }
}

/// No evaluation, no checkpoints.
#[derive(Debug, Default)]
pub struct NoHooks;

impl Hooks for NoHooks {}

/// Trains from `start` (a fresh [`Checkpoint::new`] or a resumed one) for
/// the epochs `options` asks, and returns the final state with the report.
///
/// # Errors
/// The step's interface does not match the parameters or the data (missing
/// columns, shapes that do not fit, class ids out of range are the
/// caller's to check first: see `laurelc train`); tract fails; a hook fails.
pub fn train(
    step: &Runnable,
    data: &Dataset,
    options: &TrainOptions,
    mut state: Checkpoint,
    hooks: &mut dyn Hooks,
    progress: &mut dyn Progress,
) -> Result<(Checkpoint, TrainReport), RuntimeError> {
    let iface = StepInterface::of(step)?;
    state.check_against(&iface, &options.optimizer)?;
    for p in &state.params {
        let input = step.inputs().iter().find(|i| i.name == p.name);
        if input.and_then(crate::datum::InputSpec::concrete_shape) != Some(p.shape.clone()) {
            return Err(RuntimeError::StepInterface {
                reason: format!(
                    "`{}` is {:?} in the state, not the shape the step takes",
                    p.name, p.shape
                ),
            });
        }
    }
    if state.epoch > options.epochs {
        return Err(RuntimeError::StepInterface {
            reason: format!(
                "the state has done {} epochs, more than the {} asked",
                state.epoch, options.epochs
            ),
        });
    }
    let feeds = column_feeds(&iface, options, data)?;
    let columns: Vec<&str> = feeds.iter().map(|(_, c)| c.as_str()).collect();
    let key = RunKey {
        data: data.digest(&columns)?,
        examples: data.len(),
        batch: iface.batch,
        seed: options.seed,
        lr: options.lr,
        schedule: options.schedule,
        epochs: options.epochs,
        clip_norm: options.clip_norm,
        step: options.step.clone(),
    };
    state.check_run(&key)?;
    state.run = Some(key);
    let per_epoch = data.len() / iface.batch;
    if per_epoch == 0 {
        return Err(RuntimeError::Data {
            reason: format!(
                "the step is built for batches of {}, the data set has {} examples",
                iface.batch,
                data.len()
            ),
        });
    }
    let total = options.epochs.saturating_mul(per_epoch as u64);
    let prediction = prediction_of(options, &iface);
    let mut report = TrainReport {
        epochs: Vec::new(),
        updates: state.updates,
        stop: Stop::Completed,
    };
    progress.start("training", total.saturating_sub(state.updates));
    let start_updates = state.updates;
    while state.epoch < options.epochs {
        let epoch = state.epoch + 1;
        let mut acc = Running {
            lr: options.lr,
            ..Running::default()
        };
        let batches = data.epoch(iface.batch, options.seed, state.epoch)?;
        for rows in &batches {
            let t = state.updates + 1;
            if let Err(loss) = update(
                step,
                &iface,
                data,
                &feeds,
                options,
                &mut state,
                prediction.as_deref(),
                rows,
                total,
                &mut acc,
            )? {
                report.stop = Stop::NonFinite {
                    epoch,
                    update: t,
                    loss,
                };
                report.updates = state.updates;
                report.epochs.push(acc.report(epoch));
                progress.finish();
                return Ok((state, report));
            }
            progress.set(state.updates - start_updates);
        }
        state.epoch = epoch;
        let mut er = acc.report(epoch);
        er.eval = hooks.evaluate(&state.params)?;
        hooks.epoch_end(&state, &er)?;
        report.epochs.push(er);
    }
    report.updates = state.updates;
    progress.finish();
    Ok((state, report))
}

/// An epoch's running sums.
#[derive(Debug, Default)]
struct Running {
    loss: f64,
    norm: f64,
    correct: u64,
    seen: u64,
    updates: u64,
    lr: f32,
}

impl Running {
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    fn report(&self, epoch: u64) -> EpochReport {
        let n = self.updates as f64;
        EpochReport {
            epoch,
            // NaN (null in JSON) for an epoch stopped before its first update.
            loss: self.loss / n,
            accuracy: (self.seen > 0).then(|| self.correct as f64 / self.seen as f64),
            lr: self.lr,
            grad_norm: self.norm / n,
            eval: None,
        }
    }
}

/// One update on the batch of `rows`: `Ok(Err(what))` when the loss or the
/// gradients' norm is not finite (`what` says which: "the loss became NaN"),
/// and then `state` is left as it was.
#[allow(clippy::too_many_arguments)] // the loop's context, passed down once
fn update(
    step: &Runnable,
    iface: &StepInterface,
    data: &Dataset,
    feeds: &[(String, String)],
    options: &TrainOptions,
    state: &mut Checkpoint,
    prediction: Option<&str>,
    rows: &[usize],
    total: u64,
    acc: &mut Running,
) -> Result<Result<(), String>, RuntimeError> {
    let t = state.updates + 1;
    let mut inputs = batch_inputs(data, feeds, rows)?;
    for p in &state.params {
        inputs.push((p.name.clone(), p.tensor()?));
    }
    let target = inputs
        .iter()
        .find(|(n, _)| n == TARGET)
        .map(|(_, t)| t.clone());
    let outputs = step.run(inputs)?;
    let loss = scalar(&outputs, LOSS)?;
    if !loss.is_finite() {
        return Ok(Err(format!("the loss became {loss}")));
    }
    if let (Some(pred), Some(target), true) = (prediction, &target, iface.class_ids) {
        let (c, n) = metrics::correct(named(&outputs, pred)?, target)?;
        acc.correct += c;
        acc.seen += n;
    }
    let mut grads = Vec::with_capacity(state.params.len());
    for p in &state.params {
        let g = named(&outputs, &format!("{}{GRAD_SUFFIX}", p.name))?;
        let g = elements::<f32>(g).ok_or_else(|| RuntimeError::StepInterface {
            reason: format!("the gradient of `{}` is not float32", p.name),
        })?;
        if g.len() != p.values.len() {
            return Err(RuntimeError::StepInterface {
                reason: format!(
                    "the gradient of `{}` has {} elements, the tensor {}",
                    p.name,
                    g.len(),
                    p.values.len()
                ),
            });
        }
        grads.push(g.to_vec());
    }
    let norm = optim::clip_global_norm(&mut grads, options.clip_norm.unwrap_or(f32::INFINITY));
    if !norm.is_finite() {
        // A NaN or infinite gradient would poison θ: stop as for the loss.
        return Ok(Err(format!(
            "the gradients' norm became {norm} (the loss was {loss})"
        )));
    }
    acc.lr = options.schedule.rate(options.lr, t - 1, total);
    for ((p, g), s) in state.params.iter_mut().zip(&grads).zip(&mut state.moments) {
        options.optimizer.update(&mut p.values, g, s, acc.lr, t);
    }
    state.updates = t;
    acc.loss += f64::from(loss);
    acc.norm += f64::from(norm);
    acc.updates += 1;
    Ok(Ok(()))
}

/// The step's data inputs and target for the examples at `rows`: each feed
/// gets its column's rows (two feeds may read one column, as an autoencoder's
/// input and target do).
fn batch_inputs(
    data: &Dataset,
    feeds: &[(String, String)],
    rows: &[usize],
) -> Result<Vec<(String, Tensor)>, RuntimeError> {
    feeds
        .iter()
        .map(|(input, column)| Ok((input.clone(), data.column_rows(column, rows)?)))
        .collect()
}

/// The output whose argmax is the predicted class: the option's, else the
/// model's first output.
fn prediction_of(options: &TrainOptions, iface: &StepInterface) -> Option<String> {
    options
        .prediction
        .clone()
        .or_else(|| iface.outputs.first().cloned())
}

/// Which data column feeds each data input and the target.
fn column_feeds(
    iface: &StepInterface,
    options: &TrainOptions,
    data: &Dataset,
) -> Result<Vec<(String, String)>, RuntimeError> {
    let mut feeds = Vec::new();
    for input in iface.data.iter().chain(std::iter::once(&TARGET.to_owned())) {
        let column = options
            .columns
            .iter()
            .find(|(i, _)| i == input)
            .map_or_else(|| input.clone(), |(_, c)| c.clone());
        if data.column(&column).is_none() {
            let have: Vec<&str> = data.columns().iter().map(|(n, _)| n.as_str()).collect();
            return Err(RuntimeError::Data {
                reason: format!(
                    "no column `{column}` for input `{input}` (the data has {})",
                    have.join(", ")
                ),
            });
        }
        feeds.push((input.clone(), column));
    }
    Ok(feeds)
}

fn named<'a>(outputs: &'a [(String, Tensor)], name: &str) -> Result<&'a Tensor, RuntimeError> {
    outputs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .ok_or_else(|| RuntimeError::StepInterface {
            reason: format!("no output `{name}`"),
        })
}

fn scalar(outputs: &[(String, Tensor)], name: &str) -> Result<f32, RuntimeError> {
    let t = named(outputs, name)?;
    if t.datum_type() != DatumType::F32 || t.len() != 1 {
        return Err(RuntimeError::StepInterface {
            reason: format!("`{name}` is not a float32 scalar"),
        });
    }
    elements::<f32>(t)
        .map(|s| s[0])
        .ok_or_else(|| RuntimeError::StepInterface {
            reason: format!("`{name}` is not float32"),
        })
}

/// Evaluates `params` on every example of `data`, in order, by running the
/// step (its loss and gradients are computed and dropped): the last batch is
/// padded with row 0 and only its real rows count. The loss is the `ce` loss
/// for class-id targets and [`TrainOptions::float_loss`] for float targets
/// ([`metrics`]).
///
/// # Errors
/// As [`train`].
pub fn evaluate(
    step: &Runnable,
    data: &Dataset,
    options: &TrainOptions,
    params: &[Param],
) -> Result<Metrics, RuntimeError> {
    let iface = StepInterface::of(step)?;
    let feeds = column_feeds(&iface, options, data)?;
    let prediction = prediction_of(options, &iface).ok_or_else(|| RuntimeError::StepInterface {
        reason: "the step has no model output to evaluate".into(),
    })?;
    let feeds = feeds.as_slice();
    let (mut loss, mut correct, mut positions) = (0.0, 0_u64, 0_u64);
    for (rows, real) in data.in_order(iface.batch)? {
        let mut inputs = batch_inputs(data, feeds, &rows)?;
        let target = inputs
            .iter()
            .find(|(n, _)| n == TARGET)
            .map(|(_, t)| t.clone())
            .ok_or_else(|| RuntimeError::StepInterface {
                reason: format!("no `{TARGET}` column"),
            })?;
        for p in params {
            inputs.push((p.name.clone(), p.tensor()?));
        }
        let outputs = step.run(inputs)?;
        let (l, c, n) = metrics::sums(
            named(&outputs, &prediction)?,
            &target,
            real,
            options.float_loss,
        )?;
        loss += l;
        correct += c;
        positions += n;
    }
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let n = positions.max(1) as f64;
    #[allow(clippy::cast_precision_loss)]
    Ok(Metrics {
        loss: loss / n,
        accuracy: iface.class_ids.then(|| correct as f64 / n),
        examples: data.len(),
    })
}

/// The elements of a plain tensor of element type `D`, or `None` for another
/// element type.
pub(crate) fn elements<D: tract_onnx::prelude::Datum>(t: &Tensor) -> Option<&[D]> {
    t.try_as_plain_ram().ok()?.as_slice::<D>().ok()
}

/// The values of the tensors `names` in a serialized ONNX model (the model the
/// step was built from): initializers, or the `value` of `Constant` nodes,
/// in the order of `names`. O(model bytes) to decode.
///
/// # Errors
/// [`RuntimeError::ModelDecode`] for bytes that are no model;
/// [`RuntimeError::StepInterface`] for a name the model has no constant of,
/// or one that is not float32; [`RuntimeError::TensorProto`] for a tensor
/// that does not decode (external data is not read here).
pub fn initial_params(model: &[u8], names: &[String]) -> Result<Vec<Param>, RuntimeError> {
    use prost::Message as _;
    let proto =
        tract_onnx::pb::ModelProto::decode(model).map_err(|e| RuntimeError::ModelDecode {
            model: "the model the step was built from".into(),
            message: e.to_string(),
        })?;
    let graph = proto.graph.unwrap_or_default();
    names
        .iter()
        .map(|name| {
            let tensor = graph
                .initializer
                .iter()
                .find(|t| &t.name == name)
                .or_else(|| {
                    graph
                        .node
                        .iter()
                        .filter(|n| n.op_type == "Constant" && n.output.first() == Some(name))
                        .flat_map(|n| &n.attribute)
                        .find(|a| a.name == "value")
                        .and_then(|a| a.t.as_ref())
                })
                .ok_or_else(|| RuntimeError::StepInterface {
                    reason: format!("the model has no initializer or Constant `{name}`"),
                })?;
            Param::from_tensor(name, &crate::tensor_pb::tensor_from_proto(tensor)?)
        })
        .collect()
}
