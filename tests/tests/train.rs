//! Training end to end: laurelc writes a model's training step, laurel-runtime
//! runs it in a loop on tract. These tests check that the loop learns, that
//! it is deterministic and resumes exactly, and that a diverging run stops
//! with the last good parameters.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use laurel_runtime::train::{
    Checkpoint, Dataset, Hooks, NoHooks, Optimizer, Param, Schedule, Stop, TrainOptions, evaluate,
    initial_params, train,
};
use laurel_runtime::{LoadOptions, ModelSource, Runnable, Silent, Tensor, load};
use laurelc::augment::AugmentOptions;
use laurelc::autodiff::{GradOptions, Loss, TrainSpec, training_step};
use laurelc::ir::Model;
use laurelc::pipeline::{PipelineOptions, compile_file};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
}

/// The training step of `model` and its trainable tensors' initial values.
fn step_of(model: &Model, train: TrainSpec, loss: Loss) -> (Runnable, Vec<Param>) {
    let opts = GradOptions {
        loss,
        train,
        ..GradOptions::default()
    };
    let (step, report) = training_step(model, &opts).expect("training step");
    let bytes = laurelc::onnx::to_bytes(&step).expect("export");
    let step =
        load(ModelSource::Bytes(&bytes), &LoadOptions::default()).expect("tract loads the step");
    let names: Vec<String> = report.trainable.iter().map(|t| t.name.clone()).collect();
    let original = laurelc::onnx::to_bytes(model).expect("export");
    (
        step,
        initial_params(&original, &names).expect("initial values"),
    )
}

/// `n` seeded random 3×16×16 images with labels in [0, 10).
fn images(n: usize, seed: u64) -> Dataset {
    let x = normal(n * 3 * 16 * 16, seed, 0.5);
    let labels: Vec<i64> = (0..n)
        .map(|i| i64::try_from((i * 7 + 3) % 10).unwrap())
        .collect();
    Dataset::new(vec![
        (
            "input".into(),
            Tensor::from_shape(&[n, 3, 16, 16], &x).unwrap(),
        ),
        ("target".into(), Tensor::from_shape(&[n], &labels).unwrap()),
    ])
    .unwrap()
}

/// `n` values of N(0, σ²), from a xorshift generator and Box–Muller: the
/// test's data, independent of the code under test.
fn normal(n: usize, seed: u64, sigma: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        #[allow(clippy::cast_precision_loss)] // 53 bits into a double
        let u = (state >> 11) as f64 / (1u64 << 53) as f64;
        u.max(1e-300)
    };
    (0..n)
        .map(|_| {
            let (a, b) = (uniform(), uniform());
            #[allow(clippy::cast_possible_truncation)]
            let z = ((-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()) as f32;
            sigma * z
        })
        .collect()
}

fn options(epochs: u64, optimizer: Optimizer, lr: f32) -> TrainOptions {
    TrainOptions {
        epochs,
        seed: 5,
        optimizer,
        lr,
        schedule: Schedule::Constant,
        clip_norm: None,
        columns: Vec::new(),
        prediction: None,
        float_loss: laurel_runtime::train::metrics::FloatLoss::default(),
        step: String::new(),
    }
}

fn tiny_resnet() -> Model {
    laurelc::onnx::import_path(&fixture("tiny_resnet.onnx")).unwrap()
}

#[test]
fn a_small_cnn_learns_its_training_set() {
    let (step, params) = step_of(&tiny_resnet(), TrainSpec::All, Loss::Ce);
    let data = images(20, 1);
    let opts = options(30, Optimizer::adamw(0.0), 1e-2);
    let before = evaluate(&step, &data, &opts, &params).unwrap();
    let (state, report) = train(
        &step,
        &data,
        &opts,
        Checkpoint::new(params, opts.optimizer),
        &mut NoHooks,
        &mut Silent,
    )
    .unwrap();
    let after = evaluate(&step, &data, &opts, &state.params).unwrap();
    assert_eq!(report.stop, Stop::Completed);
    assert_eq!(report.updates, 30 * 20);
    let first = report.epochs.first().unwrap().loss;
    let last = report.epochs.last().unwrap().loss;
    assert!(last < 0.5 * first, "training loss {first} → {last}");
    assert!(after.loss < 0.5 * before.loss, "{before:?} → {after:?}");
    assert!(after.accuracy.unwrap() >= 0.9, "{after:?}");
}

#[test]
fn laurel_fine_tuning_moves_only_the_laurel_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rw.onnx");
    let opts = PipelineOptions {
        augment: AugmentOptions {
            variant: "rw+lr".parse().unwrap(),
            ..AugmentOptions::default()
        },
        ..PipelineOptions::default()
    };
    compile_file(&fixture("tiny_resnet.onnx"), &out, &opts).unwrap();
    let model = laurelc::onnx::import_path(&out).unwrap();
    let (step, params) = step_of(&model, TrainSpec::Laurel, Loss::Ce);
    assert!(!params.is_empty());
    assert!(params.iter().all(|p| p.name.starts_with("laurel.")));
    let data = images(16, 2);
    let topts = options(6, Optimizer::adamw(0.0), 1e-2);
    let (state, report) = train(
        &step,
        &data,
        &topts,
        Checkpoint::new(params.clone(), topts.optimizer),
        &mut NoHooks,
        &mut Silent,
    )
    .unwrap();
    let first = report.epochs.first().unwrap().loss;
    let last = report.epochs.last().unwrap().loss;
    assert!(last < first, "loss {first} → {last}");
    for (a, b) in params.iter().zip(&state.params) {
        assert!(a.values != b.values, "{} did not move", a.name);
    }
}

/// Saves a checkpoint at every epoch end.
struct Saver(PathBuf);

impl Hooks for Saver {
    fn epoch_end(
        &mut self,
        state: &Checkpoint,
        _: &laurel_runtime::train::EpochReport,
    ) -> Result<(), laurel_runtime::RuntimeError> {
        state.save(&self.0.join(format!("epoch{}.npz", state.epoch)))
    }
}

#[test]
fn the_same_seed_gives_the_same_tensors_and_a_resumed_run_ends_where_the_whole_one_does() {
    let (step, params) = step_of(&tiny_resnet(), TrainSpec::All, Loss::Ce);
    let data = images(6, 3);
    let mut opts = options(4, Optimizer::sgd(1e-4), 1e-2);
    opts.schedule = Schedule::Cosine { warmup: 3 };
    opts.clip_norm = Some(1.0);
    let run = |epochs: u64, start: Checkpoint, hooks: &mut dyn Hooks| {
        let mut o = opts.clone();
        o.epochs = epochs;
        train(&step, &data, &o, start, hooks, &mut Silent)
            .unwrap()
            .0
    };
    let fresh = || Checkpoint::new(params.clone(), opts.optimizer);
    let dir = tempfile::tempdir().unwrap();
    let mut saver = Saver(dir.path().to_path_buf());
    let whole = run(4, fresh(), &mut saver);
    let again = run(4, fresh(), &mut NoHooks);
    assert!(whole == again, "the same seed, the same run");

    // A run killed after epoch 2 resumes from the checkpoint it left.
    let resumed = Checkpoint::load(&dir.path().join("epoch2.npz")).unwrap();
    assert_eq!((resumed.epoch, resumed.updates), (2, 12));
    let resumed = run(4, resumed, &mut NoHooks);
    assert!(
        resumed == whole,
        "resuming at epoch 2 ends in the same tensors"
    );
    assert!(whole.params != params, "the run changed something");

    let mut other = opts.clone();
    other.seed = 6;
    let shuffled = train(&step, &data, &other, fresh(), &mut NoHooks, &mut Silent)
        .unwrap()
        .0;
    assert!(
        shuffled.params != whole.params,
        "another seed, another order"
    );
}

#[test]
fn a_diverging_run_stops_at_its_first_non_finite_loss_with_finite_parameters() {
    let (step, params) = step_of(&tiny_resnet(), TrainSpec::All, Loss::Ce);
    let data = images(4, 4);
    let opts = options(
        3,
        Optimizer::Sgd {
            momentum: 0.0,
            weight_decay: 0.0,
        },
        1e18,
    );
    let dir = tempfile::tempdir().unwrap();
    let mut saver = Saver(dir.path().to_path_buf());
    let (state, report) = train(
        &step,
        &data,
        &opts,
        Checkpoint::new(params, opts.optimizer),
        &mut saver,
        &mut Silent,
    )
    .unwrap();
    let Stop::NonFinite { update, .. } = report.stop else {
        panic!("the run did not stop: {report:?}");
    };
    assert!(update >= 2, "the first loss is finite: {report:?}");
    assert_eq!(state.updates, update - 1, "the state is the last good one");
    assert!(
        state
            .params
            .iter()
            .all(|p| p.values.iter().all(|v| v.is_finite()))
    );
    // Only completed epochs were checkpointed.
    let checkpoints = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(checkpoints, usize::try_from(state.epoch).unwrap());
}

#[test]
fn data_that_does_not_fit_the_step_is_an_error() {
    let (step, params) = step_of(&tiny_resnet(), TrainSpec::All, Loss::Ce);
    let x = Tensor::from_shape(&[2, 3, 16, 16], &vec![0.0f32; 2 * 768]).unwrap();
    let data = Dataset::new(vec![("pixels".into(), x)]).unwrap();
    let opts = options(1, Optimizer::adamw(0.0), 1e-3);
    let e = train(
        &step,
        &data,
        &opts,
        Checkpoint::new(params.clone(), opts.optimizer),
        &mut NoHooks,
        &mut Silent,
    )
    .unwrap_err();
    assert!(e.to_string().contains("no column `input`"), "{e}");
    let e = train(
        &step,
        &images(2, 0),
        &opts,
        Checkpoint::new(params[1..].to_vec(), opts.optimizer),
        &mut NoHooks,
        &mut Silent,
    )
    .unwrap_err();
    assert!(e.to_string().contains("the step trains"), "{e}");
}
