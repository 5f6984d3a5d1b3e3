//! `laurelc distill`: a student trained from a teacher's labels on unlabeled
//! data, with SLaM's loss and RAD's choice of what to label under a budget
//! (`../shared/reference/distillation.md`).
//!
//! ```text
//! V ── teacher ── accuracy, a(confidence) by isotonic regression, k from top-k accuracy, m
//! for each round r = 1..R (budget b split evenly):
//!   score the pool's unqueried examples with the current student (gain = 1 − margin)
//!   choose b_r of them (uniform | margin | entropy | rad: p* of the game, DEPROUND)
//!   query the teacher for them (cached by content; queries counted)
//!   train the student, from its initial weights, on L (true labels) ∪ everything queried
//!   score it on V
//! ```
//! - `hard`: cross-entropy on the labeled set L alone (the baseline; it
//!   queries nothing).
//! - `kd`: the teacher's probabilities at `--temperature`, the kd loss;
//!   the labeled examples take one-hot targets.
//! - `slam`, `slam-normalised`: SLaM's mixing, with `a(x)` the isotonic fit
//!   of the teacher's top-1 correctness on V against its confidence (held in
//!   [0.001, 0.999], so that no class is impossible), and `K` the teacher's
//!   top `k` classes, `k` the smallest whose top-k accuracy on V reaches
//!   `--slam-level` (at least 2). Labeled examples take `a = 1` and their
//!   true class as `K`, which makes the mix the student's own prediction:
//!   plain cross-entropy. The unnormalised mix's derivative in a top-k
//!   class's probability is `2a − 1`: where `a(x) < ½` it pushes the
//!   student away from all of the teacher's top k (the normalised form only
//!   below `a = 1/k`); `docs/benchmarks.md` measures what that costs.
//! - `m`, the teacher's wrong labels RAD's adversary removes, is its top-1
//!   error on V times the examples left in the pool.
//!
//! The same seed gives the same choices and the same student. Cost per
//! round: one student run over the remaining pool (unless uniform), one
//! teacher run over the chosen examples, one training run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use laurel_runtime::distill::calibrate::{self, Bin, Isotonic};
use laurel_runtime::distill::select;
use laurel_runtime::distill::teacher::{self, LabelOptions, Soft};
use laurel_runtime::train::Dataset;
use laurel_runtime::{DimSpec, ModelSource, Progress, Runnable, Silent, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;

use crate::autodiff::Loss;
use crate::autodiff::loss::{SLAM_A, SLAM_TOPK};
use crate::error::{Error, Result};
use crate::ir::Model;
use crate::onnx;
use crate::train::{EpochSink, TrainFileOptions, TrainFileReport};

/// What the student learns from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DistillLoss {
    /// The labeled set's true labels alone.
    Hard,
    /// The teacher's probabilities at a temperature.
    Kd,
    /// SLaM's student-label mixing.
    Slam,
    /// SLaM with its error term divided by `k − 1`.
    SlamNormalised,
}

/// Which unlabeled examples to buy teacher labels for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    /// Uniformly at random.
    Uniform,
    /// The smallest student margins.
    Margin,
    /// The largest student entropies.
    Entropy,
    /// RAD: the game's allocation, rounded by DEPROUND.
    Rad,
}

/// What to distill, and how.
#[derive(Debug, Clone)]
pub struct DistillOptions {
    /// Allow the output to be the student's file.
    pub force: bool,
    /// The teacher model.
    pub teacher: PathBuf,
    /// The unlabeled pool (`.npz`).
    pub unlabeled: PathBuf,
    /// Labeled examples (`.npz`, with class ids under `label_key`).
    pub labeled: Option<PathBuf>,
    /// The validation set (`.npz`, with class ids under `label_key`).
    pub validation: PathBuf,
    /// The key of the class ids in the labeled and validation sets.
    pub label_key: String,
    /// The loss.
    pub loss: DistillLoss,
    /// The temperature of `kd`.
    pub temperature: f32,
    /// The selection; `None` labels the whole pool in one round.
    pub select: Option<Selection>,
    /// The number of examples to label in all (default: the pool).
    pub budget: Option<usize>,
    /// Rounds of selection.
    pub rounds: usize,
    /// The top-k accuracy on the validation set that fixes SLaM's `k`.
    pub slam_level: f64,
    /// The teacher-label cache.
    pub cache: Option<PathBuf>,
    /// How to train the student each round (`data` and `eval` are not
    /// read; `inputs` maps the student's and the teacher's inputs to keys;
    /// `grad.loss`, `target`, `checkpoint` and `resume` are set here).
    pub train: TrainFileOptions,
}

/// The teacher on the validation set.
#[derive(Debug, Clone, Serialize)]
pub struct TeacherReport {
    /// Its top-1 accuracy.
    pub validation_accuracy: f64,
    /// Its top-k accuracy for k = 1..=classes.
    pub top_k_accuracy: Vec<f64>,
    /// SLaM's `k`.
    pub k: usize,
    /// `a(confidence)`: the isotonic fit's knots.
    pub a: Isotonic,
    /// Confidence against accuracy in ten bins.
    pub reliability: Vec<Bin>,
}

/// One round.
#[derive(Debug, Clone, Serialize)]
pub struct RoundReport {
    /// The round (from 1).
    pub round: usize,
    /// Pool rows chosen in this round, in increasing order.
    pub chosen: Vec<usize>,
    /// Examples the teacher labelled in this round (cache hits excluded).
    pub teacher_queries: usize,
    /// Examples trained on (labeled plus queried so far).
    pub examples: usize,
    /// The student's top-1 accuracy on the validation set after the round.
    pub validation_accuracy: f64,
    /// The last epoch's training loss.
    pub train_loss: f64,
    /// Where the round's wall-clock time went.
    pub seconds: RoundSeconds,
}

/// Where a round's wall-clock time went, in seconds. Times, so they differ
/// from run to run; everything else in the report does not.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RoundSeconds {
    /// The whole round.
    pub total: f64,
    /// Teacher runs: labelling the chosen examples (with the cache's hashing).
    pub teacher: f64,
    /// Student runs: scoring the pool, training (the step built and run),
    /// loading the trained student and scoring it on the validation set.
    pub student: f64,
    /// Choosing from the scores: gains, the allocation, DEPROUND, sorting.
    pub selection: f64,
    /// The rest: the remaining pool, the queried records, the training set.
    pub bookkeeping: f64,
}

impl RoundSeconds {
    /// The share of the round outside teacher and student runs (selection
    /// and bookkeeping), 0 for an empty round.
    #[must_use]
    pub fn outside_share(&self) -> f64 {
        if self.total > 0.0 {
            (self.selection + self.bookkeeping) / self.total
        } else {
            0.0
        }
    }
}

/// What [`distill_file`] did.
#[derive(Debug, Clone, Serialize)]
pub struct DistillReport {
    /// The loss.
    pub loss: DistillLoss,
    /// The selection.
    pub select: Option<Selection>,
    /// The examples in the pool, labeled and validation sets.
    pub pool: usize,
    /// The labeled examples.
    pub labeled: usize,
    /// The validation examples.
    pub validation: usize,
    /// The classes.
    pub classes: usize,
    /// The teacher on the validation set.
    pub teacher: TeacherReport,
    /// RAD's `m` in the first round (0 for the other selections).
    pub adversary: usize,
    /// The student's validation accuracy before training.
    pub initial_validation_accuracy: f64,
    /// Each round.
    pub rounds: Vec<RoundReport>,
    /// The examples the teacher labelled in this run, cache hits excluded.
    pub teacher_queries: usize,
    /// The student's validation accuracy at the end.
    pub validation_accuracy: f64,
    /// Where a training run's loss became NaN or infinite, if one did: the
    /// run stopped there and wrote no student.
    pub diverged: Option<String>,
    /// The last round's training.
    pub train: Option<TrainFileReport>,
}

/// A model with the bytes it was loaded from, ready to label a data set.
struct Loaded {
    bytes: Vec<u8>,
    run: Runnable,
}

/// Distills `opts.teacher` into `student` and writes the trained student to
/// `output`.
///
/// # Errors
/// [`Error::Data`]: teacher and student with different numbers of classes, a
/// budget larger than the pool or 0, rounds more than the budget, a labeled
/// or validation set without int64 class ids (or with ids out of range),
/// `hard` without a labeled set, examples whose keys or shapes a model does
/// not take, an output over one of the inputs; the errors of import,
/// tract, training and export. A training run whose loss becomes NaN or
/// infinite is no error: the report's `diverged` says where, and no student
/// is written.
#[allow(clippy::too_many_lines)] // the stages of the module docs, in order
pub fn distill_file(
    student_path: &Path,
    output: &Path,
    opts: &DistillOptions,
    progress: &mut dyn Progress,
) -> Result<DistillReport> {
    crate::pipeline::guard_output(student_path, output, opts.force)?;
    for (path, what) in [
        (Some(opts.teacher.as_path()), "the teacher"),
        (Some(opts.unlabeled.as_path()), "the unlabeled data"),
        (opts.labeled.as_deref(), "the labeled data"),
        (Some(opts.validation.as_path()), "the validation data"),
    ] {
        if let Some(p) = path
            && crate::pipeline::same_file(p, output)
        {
            return Err(Error::Data {
                path: output.to_path_buf(),
                reason: format!("the student would be written over {what}"),
            });
        }
    }
    let read = |path: &Path| -> Result<Dataset> {
        Dataset::new(laurel_runtime::read_npz(path)?).map_err(|e| Error::Data {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    };
    let pool = read(&opts.unlabeled)?;
    let validation = read(&opts.validation)?;
    let labeled = opts.labeled.as_deref().map(read).transpose()?;
    let v_labels = class_ids(&validation, &opts.label_key, &opts.validation)?;
    let l_labels = match (&labeled, &opts.labeled) {
        (Some(l), Some(path)) => class_ids(l, &opts.label_key, path)?,
        _ => Vec::new(),
    };
    if opts.loss == DistillLoss::Hard && labeled.is_none() {
        return Err(Error::Data {
            path: opts.unlabeled.clone(),
            reason: "the hard loss trains on the labeled set: give --labeled".into(),
        });
    }
    let budget = match (opts.loss, opts.select, opts.budget) {
        (DistillLoss::Hard, _, _) => 0,
        (_, _, Some(b)) => b,
        (_, None, None) => pool.len(),
        (_, Some(_), None) => {
            return Err(Error::Data {
                path: opts.unlabeled.clone(),
                reason: "a selection needs a --budget".into(),
            });
        }
    };
    if opts.loss != DistillLoss::Hard && (budget == 0 || budget > pool.len()) {
        return Err(Error::Data {
            path: opts.unlabeled.clone(),
            reason: format!(
                "a budget of {budget} examples from a pool of {}",
                pool.len()
            ),
        });
    }
    let rounds = if opts.select.is_none() || opts.loss == DistillLoss::Hard {
        1
    } else {
        opts.rounds
    };
    if rounds == 0 || (opts.loss != DistillLoss::Hard && rounds > budget) {
        return Err(Error::Data {
            path: opts.unlabeled.clone(),
            reason: format!("{rounds} rounds for a budget of {budget}"),
        });
    }

    let inputs = &opts.train.inputs;
    let teacher_model = onnx::import_path(&opts.teacher)?;
    let student_model = onnx::import_path(student_path)?;
    let teacher = load_for(&teacher_model, &pool, inputs, &opts.unlabeled)?;
    let student0 = load_for(&student_model, &pool, inputs, &opts.unlabeled)?;
    // The data keys the student reads, which the labeled set must hold too.
    let keys: Vec<String> = laurel_runtime::declared_inputs(ModelSource::Bytes(&student0.bytes))?
        .iter()
        .map(|i| crate::train::input_key(inputs, &i.name).to_owned())
        .collect();
    let no_cache = LabelOptions {
        columns: inputs.clone(),
        output: None,
        soft: Soft::Softmax { temperature: 1.0 },
        cache: None,
    };
    let cached = LabelOptions {
        cache: opts.cache.clone(),
        ..no_cache.clone()
    };
    let v_rows: Vec<usize> = (0..validation.len()).collect();
    let t_val = teacher::label(
        &teacher.bytes,
        &teacher.run,
        &validation,
        &v_rows,
        &cached,
        progress,
    )?;
    let classes = t_val.classes;
    let s_val = teacher::label(
        &student0.bytes,
        &student0.run,
        &validation,
        &v_rows,
        &no_cache,
        &mut Silent,
    )?;
    if s_val.classes != classes {
        return Err(Error::Data {
            path: student_path.to_path_buf(),
            reason: format!(
                "the student predicts {} classes, the teacher {classes}",
                s_val.classes
            ),
        });
    }
    for (labels, path) in [(&v_labels, &opts.validation)]
        .into_iter()
        .chain(opts.labeled.as_ref().map(|p| (&l_labels, p)))
    {
        if let Some((i, id)) = labels
            .iter()
            .enumerate()
            .find(|(_, id)| !(0..i64::try_from(classes).unwrap_or(i64::MAX)).contains(*id))
        {
            return Err(Error::Data {
                path: path.clone(),
                reason: format!(
                    "`{}` has class id {id} at index {i}, outside [0, {classes})",
                    opts.label_key
                ),
            });
        }
    }
    let points = calibrate::confidence_and_correct(&t_val.labels, &v_labels, classes);
    let xs: Vec<f64> = points.iter().map(|p| p.0).collect();
    let ys: Vec<f64> = points.iter().map(|p| f64::from(u8::from(p.1))).collect();
    let a_fit = Isotonic::fit(&xs, &ys, &vec![1.0; xs.len()]);
    let top_k = calibrate::top_k_accuracy(&t_val.labels, &v_labels, classes);
    let slam_k = calibrate::smallest_k(&top_k, opts.slam_level)
        .max(2)
        .min(classes);
    let teacher_accuracy = top_k.first().copied().unwrap_or(0.0);
    let teacher_report = TeacherReport {
        validation_accuracy: teacher_accuracy,
        top_k_accuracy: top_k,
        k: slam_k,
        a: a_fit.clone(),
        reliability: calibrate::reliability(&points, 10),
    };
    let initial_validation_accuracy = accuracy(&s_val.labels, &v_labels, classes);

    let mut rng = StdRng::seed_from_u64(opts.train.run.seed);
    // Everything queried so far, in pool-row order.
    let mut queried: Vec<Queried> = Vec::new();
    let mut scorer: Option<Loaded> = None;
    let mut round_reports = Vec::new();
    let mut last: Option<Model> = None;
    let mut last_report: Option<TrainFileReport> = None;
    let mut diverged: Option<String> = None;
    let mut teacher_queries = 0;
    let mut adversary = 0;
    let soft = match opts.loss {
        DistillLoss::Kd => Soft::Softmax {
            temperature: opts.temperature,
        },
        _ => Soft::Softmax { temperature: 1.0 },
    };
    for round in 1..=rounds {
        let started = Instant::now();
        let mut times = RoundSeconds::default();
        if opts.loss == DistillLoss::Hard {
            round_reports.push(RoundReport {
                round,
                chosen: Vec::new(),
                teacher_queries: 0,
                examples: 0,
                validation_accuracy: 0.0,
                train_loss: 0.0,
                seconds: RoundSeconds::default(),
            });
        } else {
            let share = budget / rounds + usize::from(round <= budget % rounds);
            let remaining: Vec<usize> = (0..pool.len())
                .filter(|&r| queried.binary_search_by_key(&r, |q| q.row).is_err())
                .collect();
            // Selection's time is the choosing, less the student's scoring run.
            let clock = Instant::now();
            let scored_before = times.student;
            let picks: Vec<usize> = match opts.select {
                None => (0..remaining.len()).collect(),
                Some(Selection::Uniform) => select::uniform(remaining.len(), share, &mut rng),
                Some(how) => {
                    // The current student's probabilities on the remaining pool.
                    let s = scorer.as_ref().unwrap_or(&student0);
                    let probs = timed(&mut times.student, || {
                        teacher::label(&s.bytes, &s.run, &pool, &remaining, &no_cache, &mut Silent)
                    })?;
                    match how {
                        Selection::Margin => {
                            select::top(&select::gains(&probs.labels, classes), share)
                        }
                        Selection::Entropy => {
                            select::top(&select::entropies(&probs.labels, classes), share)
                        }
                        // (Uniform never scores: it is chosen above.)
                        Selection::Rad | Selection::Uniform => {
                            #[allow(
                                clippy::cast_precision_loss,
                                clippy::cast_possible_truncation,
                                clippy::cast_sign_loss
                            )]
                            let wrong = ((1.0 - teacher_accuracy) * remaining.len() as f64).round()
                                as usize;
                            if round == 1 {
                                adversary = wrong;
                            }
                            let p = select::rad_allocation(
                                &select::gains(&probs.labels, classes),
                                share,
                                wrong,
                            );
                            select::depround(&p, &mut rng)
                        }
                    }
                }
            };
            let mut chosen: Vec<usize> = picks.iter().map(|&i| remaining[i]).collect();
            chosen.sort_unstable();
            times.selection =
                (clock.elapsed().as_secs_f64() - (times.student - scored_before)).max(0.0);
            let bought = timed(&mut times.teacher, || {
                teacher::label(
                    &teacher.bytes,
                    &teacher.run,
                    &pool,
                    &chosen,
                    &LabelOptions {
                        soft,
                        ..cached.clone()
                    },
                    progress,
                )
            })?;
            teacher_queries += bought.queries;
            // SLaM's inputs from the teacher's own probabilities (T = 1).
            for (&row, label) in chosen.iter().zip(bought.labels.chunks_exact(classes)) {
                let (conf, mask) = confidence_and_mask(label, slam_k);
                #[allow(clippy::cast_possible_truncation)] // a probability
                let a = a_fit.predict(conf).clamp(0.001, 0.999) as f32;
                queried.push(Queried {
                    row,
                    label: label.to_vec(),
                    a,
                    topk: mask,
                });
            }
            queried.sort_by_key(|q| q.row);
            round_reports.push(RoundReport {
                round,
                chosen: chosen.clone(),
                teacher_queries: bought.queries,
                examples: 0,
                validation_accuracy: 0.0,
                train_loss: 0.0,
                seconds: RoundSeconds::default(),
            });
        }
        let data = training_set(
            opts,
            &keys,
            &pool,
            labeled.as_ref(),
            &l_labels,
            &queried,
            classes,
        )?;
        let mut train_opts = opts.train.clone();
        train_opts.grad.loss = match opts.loss {
            DistillLoss::Hard => Loss::Ce,
            DistillLoss::Kd => Loss::Kd,
            DistillLoss::Slam => Loss::Slam,
            DistillLoss::SlamNormalised => Loss::SlamNormalised,
        };
        train_opts.grad.temperature = f64::from(opts.temperature);
        train_opts.target = TARGET_KEY.into();
        train_opts.data.clone_from(&opts.unlabeled);
        train_opts.eval = None;
        train_opts.checkpoint = None;
        train_opts.resume = None;
        train_opts.force = true;
        let mut quiet = |_: &laurel_runtime::train::EpochReport| {};
        let sink: &mut dyn EpochSink = &mut quiet;
        let (report, trained) = timed(&mut times.student, || {
            crate::train::train_model(
                &student_model,
                student_path,
                &data,
                None,
                &train_opts,
                sink,
                progress,
            )
        })?;
        let Some(trained) = trained else {
            // A non-finite loss: the run stops here and writes no student.
            if let laurel_runtime::train::Stop::NonFinite { update, loss, .. } = &report.run.stop {
                diverged = Some(format!("round {round}: {loss} at update {update}"));
            }
            last_report = Some(report);
            break;
        };
        let (loaded, s_val) = timed(&mut times.student, || -> Result<_> {
            let loaded = load_for(&trained, &pool, inputs, &opts.unlabeled)?;
            let s_val = teacher::label(
                &loaded.bytes,
                &loaded.run,
                &validation,
                &v_rows,
                &no_cache,
                &mut Silent,
            )?;
            Ok((loaded, s_val))
        })?;
        times.total = started.elapsed().as_secs_f64();
        times.bookkeeping =
            (times.total - times.teacher - times.student - times.selection).max(0.0);
        if let Some(r) = round_reports.last_mut() {
            r.examples = data.len();
            r.validation_accuracy = accuracy(&s_val.labels, &v_labels, classes);
            r.train_loss = report.run.epochs.last().map_or(f64::NAN, |e| e.loss);
            r.seconds = times;
        }
        scorer = Some(loaded);
        last_report = Some(report);
        last = Some(trained);
    }
    if diverged.is_none()
        && let Some(trained) = &last
    {
        crate::pipeline::guard_external(trained, output, opts.force)?;
        onnx::write_path(trained, output, &opts.train.export)?;
    }
    Ok(DistillReport {
        loss: opts.loss,
        select: opts.select,
        pool: pool.len(),
        labeled: labeled.as_ref().map_or(0, Dataset::len),
        validation: validation.len(),
        classes,
        teacher: teacher_report,
        adversary,
        initial_validation_accuracy,
        validation_accuracy: round_reports.last().map_or(0.0, |r| r.validation_accuracy),
        rounds: round_reports,
        teacher_queries,
        diverged,
        train: last_report,
    })
}

/// Runs `f`, adding its wall-clock seconds to `acc`.
fn timed<T>(acc: &mut f64, f: impl FnOnce() -> T) -> T {
    let clock = Instant::now();
    let out = f();
    *acc += clock.elapsed().as_secs_f64();
    out
}

/// A pool example the teacher labelled.
struct Queried {
    /// Its pool row.
    row: usize,
    /// The teacher's probabilities.
    label: Vec<f32>,
    /// SLaM's `a(x)`.
    a: f32,
    /// SLaM's top-k mask.
    topk: Vec<f32>,
}

/// The key the training set's targets are under.
const TARGET_KEY: &str = "target";

/// The int64 class ids of `data` under `key`.
fn class_ids(data: &Dataset, key: &str, path: &Path) -> Result<Vec<i64>> {
    let bad = |reason: String| Error::Data {
        path: path.to_path_buf(),
        reason,
    };
    let t = data.column(key).ok_or_else(|| {
        bad(format!(
            "no class ids under `{key}` (set the key with --label-key)"
        ))
    })?;
    if t.rank() != 1 {
        return Err(bad(format!(
            "`{key}` has shape {:?}: expected [examples]",
            t.shape()
        )));
    }
    t.try_as_plain_ram()
        .ok()
        .and_then(|v| v.as_slice::<i64>().ok())
        .map(<[i64]>::to_vec)
        .ok_or_else(|| {
            bad(format!(
                "`{key}` holds {:?}, not int64 class ids",
                t.datum_type()
            ))
        })
}

/// `model` loaded on tract at the pool's example shapes, in batches of its
/// fixed batch axis (else 64, or the pool if smaller).
fn load_for(
    model: &Model,
    pool: &Dataset,
    inputs: &[(String, String)],
    path: &Path,
) -> Result<Loaded> {
    let bytes = onnx::to_bytes(model)?;
    let declared = laurel_runtime::declared_inputs(ModelSource::Bytes(&bytes))?;
    let batch = match declared.first().and_then(|i| i.shape.first()) {
        Some(DimSpec::Fixed(b)) => *b,
        _ => crate::label::DEFAULT_BATCH.min(pool.len()).max(1),
    };
    let load = crate::label::load_shapes(&declared, pool, inputs, path, batch)?;
    let run = laurel_runtime::load(ModelSource::Bytes(&bytes), &load)?;
    Ok(Loaded { bytes, run })
}

/// The share of rows whose argmax (ties: the lower class) is the label.
#[allow(clippy::cast_precision_loss)] // counts far below 2^52
fn accuracy(probs: &[f32], labels: &[i64], classes: usize) -> f64 {
    let points = calibrate::confidence_and_correct(probs, labels, classes);
    if points.is_empty() {
        return 0.0;
    }
    points.iter().filter(|p| p.1).count() as f64 / points.len() as f64
}

/// A row's top-1 probability and the 0/1 mask of its `k` largest entries
/// (ties: the lower class).
fn confidence_and_mask(row: &[f32], k: usize) -> (f64, Vec<f32>) {
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    let mut mask = vec![0.0; row.len()];
    for &c in order.iter().take(k) {
        mask[c] = 1.0;
    }
    (order.first().map_or(0.0, |&c| f64::from(row[c])), mask)
}

/// The round's training set: the labeled examples (true labels: class ids
/// for `hard`, else one-hot probabilities with `a = 1` and their class as
/// the top-k mask) then the queried pool rows (the teacher's labels).
#[allow(clippy::too_many_arguments)] // the round's state, passed once
fn training_set(
    opts: &DistillOptions,
    keys: &[String],
    pool: &Dataset,
    labeled: Option<&Dataset>,
    l_labels: &[i64],
    queried: &[Queried],
    classes: usize,
) -> Result<Dataset> {
    let bad = |reason: String| Error::Data {
        path: opts.unlabeled.clone(),
        reason,
    };
    let tensor =
        |shape: &[usize], v: &[f32]| Tensor::from_shape(shape, v).map_err(|e| bad(e.to_string()));
    let mut columns = Vec::new();
    let l_rows: Vec<usize> = (0..l_labels.len()).collect();
    let q_rows: Vec<usize> = queried.iter().map(|q| q.row).collect();
    for key in keys {
        let mut parts = Vec::new();
        if let Some(l) = labeled {
            let t = l
                .column_rows(key, &l_rows)
                .map_err(|e| bad(format!("the labeled set: {e}")))?;
            parts.push(t);
        }
        if !queried.is_empty() {
            parts.push(
                pool.column_rows(key, &q_rows)
                    .map_err(|e| bad(e.to_string()))?,
            );
        }
        if parts.is_empty() {
            continue;
        }
        let joined = Tensor::stack_tensors(0, &parts).map_err(|e| {
            bad(format!(
                "`{key}`: the labeled and unlabeled examples do not stack: {e}"
            ))
        })?;
        columns.push((key.clone(), joined));
    }
    let n = l_labels.len() + queried.len();
    if n == 0 {
        return Err(bad("nothing to train on".into()));
    }
    if opts.loss == DistillLoss::Hard {
        columns.push((
            TARGET_KEY.into(),
            Tensor::from_shape(&[n], l_labels).map_err(|e| bad(e.to_string()))?,
        ));
    } else {
        let mut target = Vec::with_capacity(n * classes);
        let mut a = Vec::with_capacity(n);
        let mut topk = Vec::with_capacity(n * classes);
        for &id in l_labels {
            let mut onehot = vec![0.0f32; classes];
            if let Some(slot) = usize::try_from(id).ok().and_then(|i| onehot.get_mut(i)) {
                *slot = 1.0;
            }
            target.extend(&onehot);
            topk.extend(&onehot);
            a.push(1.0f32);
        }
        for q in queried {
            target.extend(&q.label);
            a.push(q.a);
            topk.extend(&q.topk);
        }
        columns.push((TARGET_KEY.into(), tensor(&[n, classes], &target)?));
        if matches!(opts.loss, DistillLoss::Slam | DistillLoss::SlamNormalised) {
            columns.push((SLAM_A.into(), tensor(&[n, 1], &a)?));
            columns.push((SLAM_TOPK.into(), tensor(&[n, classes], &topk)?));
        }
    }
    Dataset::new(columns).map_err(|e| bad(e.to_string()))
}
