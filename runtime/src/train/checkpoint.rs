//! A run's state: the trainable tensors, the optimizer's buffers and the
//! position in the run, saved as one `.npz` and resumed from it.
//!
//! ```text
//! meta.npy         uint8: JSON {"format", "epoch", "updates", "optimizer", "params", "run"}
//! param.<i>.npy    float32: trainable tensor i (names in meta, in step order)
//! state.<k>.<i>.npy float32: optimizer buffer k of tensor i
//! ```
//!
//! Checkpoints are taken at epoch ends, so a resumed run starts the next
//! epoch with the same shuffle, rates and buffers as the uninterrupted run
//! and ends in the same tensors, bit for bit. That holds only for the same
//! run: `run` records what the batches and rates depend on (a digest of the
//! data the step reads, the batch size, the seed, the rate, its schedule and
//! the epochs it spans), and a resumed run that differs in any of them is an
//! error naming it. Written atomically; the same state gives the same bytes.
//! O(parameters).

use std::path::Path;

use serde::{Deserialize, Serialize};
use tract_onnx::prelude::Tensor;

use super::optim::Optimizer;
use super::schedule::Schedule;
use super::{Param, StepInterface};
use crate::error::RuntimeError;

/// The format tag in `meta`.
const FORMAT: &str = "laurelc-checkpoint-1";

/// A run's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Epochs done.
    pub epoch: u64,
    /// Updates done.
    pub updates: u64,
    /// The optimizer the buffers belong to.
    pub optimizer: Optimizer,
    /// The trainable tensors, in the step's order.
    pub params: Vec<Param>,
    /// For each tensor, the optimizer's buffers.
    pub moments: Vec<Vec<Vec<f32>>>,
    /// The run this state belongs to (`None` before the first epoch, and in
    /// checkpoints written before runs were recorded).
    pub run: Option<RunKey>,
}

/// What a run's batches and learning rates depend on. A checkpoint records
/// its run's key; resuming it under another key would not continue that
/// run, so [`Checkpoint::check_run`] refuses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunKey {
    /// SHA-256 of the data the step reads: each fed column's name, element
    /// type, shape and bytes, in the step's order (hex).
    pub data: String,
    /// The examples in the data set.
    pub examples: usize,
    /// The batch size.
    pub batch: usize,
    /// The shuffle's seed.
    pub seed: u64,
    /// The peak learning rate.
    pub lr: f32,
    /// The learning-rate schedule.
    pub schedule: Schedule,
    /// The epochs the run spans. A constant rate does not depend on it, so
    /// a run with a constant rate may be resumed to go on for longer.
    pub epochs: u64,
    /// The gradient clipping norm.
    pub clip_norm: Option<f32>,
    /// What the step computes ([`super::TrainOptions::step`]; empty in
    /// checkpoints from before it was recorded, which then fit any step).
    #[serde(default)]
    pub step: String,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    format: String,
    epoch: u64,
    updates: u64,
    optimizer: Optimizer,
    params: Vec<(String, Vec<usize>)>,
    #[serde(default)]
    run: Option<RunKey>,
}

impl Checkpoint {
    /// The state before the first update: `params` and zeroed buffers.
    #[must_use]
    pub fn new(params: Vec<Param>, optimizer: Optimizer) -> Self {
        let moments = params
            .iter()
            .map(|p| vec![vec![0.0; p.values.len()]; optimizer.buffers()])
            .collect();
        Self {
            epoch: 0,
            updates: 0,
            optimizer,
            params,
            moments,
            run: None,
        }
    }

    /// Checks that this state continues the run of `key` (a state without a
    /// key fits any run).
    ///
    /// # Errors
    /// [`RuntimeError::StepInterface`] naming the first thing that differs.
    pub fn check_run(&self, key: &RunKey) -> Result<(), RuntimeError> {
        let Some(was) = &self.run else {
            return Ok(());
        };
        let differs = |what: &str, then: String, now: String| {
            Err(RuntimeError::StepInterface {
                reason: format!(
                    "the checkpoint's run had {what} {then}, this run {now}: resuming would not continue it"
                ),
            })
        };
        if was.data != key.data || was.examples != key.examples {
            return differs(
                "other data:",
                format!("{} examples (sha256 {})", was.examples, short(&was.data)),
                format!("{} (sha256 {})", key.examples, short(&key.data)),
            );
        }
        if !was.step.is_empty() && was.step != key.step {
            return differs("another step:", was.step.clone(), key.step.clone());
        }
        if was.batch != key.batch {
            return differs("batch size", was.batch.to_string(), key.batch.to_string());
        }
        if was.seed != key.seed {
            return differs("seed", was.seed.to_string(), key.seed.to_string());
        }
        if was.lr.to_bits() != key.lr.to_bits() {
            return differs("learning rate", was.lr.to_string(), key.lr.to_string());
        }
        if was.schedule != key.schedule {
            return differs(
                "schedule",
                format!("{:?}", was.schedule),
                format!("{:?}", key.schedule),
            );
        }
        if was.clip_norm.map(f32::to_bits) != key.clip_norm.map(f32::to_bits) {
            return differs(
                "gradient clipping",
                format!("{:?}", was.clip_norm),
                format!("{:?}", key.clip_norm),
            );
        }
        if was.epochs != key.epochs && was.schedule != Schedule::Constant {
            return differs(
                "epochs (its learning rate decays over them)",
                was.epochs.to_string(),
                key.epochs.to_string(),
            );
        }
        Ok(())
    }

    /// Checks that this state fits the step and the optimizer.
    ///
    /// # Errors
    /// [`RuntimeError::StepInterface`]: other tensors than the step trains,
    /// another optimizer (or other hyper-parameters) than the checkpoint's.
    pub fn check_against(
        &self,
        iface: &StepInterface,
        optimizer: &Optimizer,
    ) -> Result<(), RuntimeError> {
        let names: Vec<&str> = self.params.iter().map(|p| p.name.as_str()).collect();
        let want: Vec<&str> = iface.params.iter().map(String::as_str).collect();
        if names != want {
            return Err(RuntimeError::StepInterface {
                reason: format!(
                    "the step trains [{}], the state holds [{}]",
                    want.join(", "),
                    names.join(", ")
                ),
            });
        }
        if self.optimizer != *optimizer
            || self.moments.iter().any(|m| m.len() != optimizer.buffers())
        {
            return Err(RuntimeError::StepInterface {
                reason: format!(
                    "the state was made with {:?}, the run asks for {optimizer:?}",
                    self.optimizer
                ),
            });
        }
        Ok(())
    }

    /// Writes the state to `path`, atomically.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), RuntimeError> {
        let meta = Meta {
            format: FORMAT.into(),
            epoch: self.epoch,
            updates: self.updates,
            optimizer: self.optimizer,
            params: self
                .params
                .iter()
                .map(|p| (p.name.clone(), p.shape.clone()))
                .collect(),
            run: self.run.clone(),
        };
        let json = serde_json::to_vec(&meta).map_err(|e| RuntimeError::Checkpoint {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let bad = |e: tract_onnx::prelude::TractError| RuntimeError::Checkpoint {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let mut members = vec![(
            "meta".to_owned(),
            Tensor::from_shape(&[json.len()], &json).map_err(bad)?,
        )];
        for (i, p) in self.params.iter().enumerate() {
            members.push((format!("param.{i}"), p.tensor()?));
            for (k, m) in self.moments[i].iter().enumerate() {
                members.push((
                    format!("state.{k}.{i}"),
                    Tensor::from_shape(&p.shape, m).map_err(bad)?,
                ));
            }
        }
        crate::npy::write_npz(path, &members)
    }

    /// Reads a state written by [`Checkpoint::save`].
    ///
    /// # Errors
    /// [`RuntimeError::Checkpoint`]: not a checkpoint, a missing or misshapen
    /// member; the file cannot be read.
    pub fn load(path: &Path) -> Result<Self, RuntimeError> {
        let shown = path.display().to_string();
        let bad = |reason: String| RuntimeError::Checkpoint {
            path: shown.clone(),
            reason,
        };
        let members = crate::npy::read_npz(path)?;
        let get = |name: &str| {
            members
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t)
                .ok_or_else(|| bad(format!("no member `{name}`")))
        };
        let meta_bytes =
            super::elements::<u8>(get("meta")?).ok_or_else(|| bad("`meta` is not bytes".into()))?;
        let meta: Meta =
            serde_json::from_slice(meta_bytes).map_err(|e| bad(format!("`meta`: {e}")))?;
        if meta.format != FORMAT {
            return Err(bad(format!(
                "format `{}`, expected `{FORMAT}`",
                meta.format
            )));
        }
        let mut params = Vec::with_capacity(meta.params.len());
        let mut moments = Vec::with_capacity(meta.params.len());
        for (i, (name, shape)) in meta.params.iter().enumerate() {
            let read = |member: String| -> Result<Vec<f32>, RuntimeError> {
                let t = get(&member)?;
                if t.shape() != shape.as_slice() {
                    return Err(bad(format!(
                        "`{member}` has shape {:?}, not {shape:?}",
                        t.shape()
                    )));
                }
                Ok(super::elements::<f32>(t)
                    .ok_or_else(|| bad(format!("`{member}` is not float32")))?
                    .to_vec())
            };
            params.push(Param {
                name: name.clone(),
                shape: shape.clone(),
                values: read(format!("param.{i}"))?,
            });
            moments.push(
                (0..meta.optimizer.buffers())
                    .map(|k| read(format!("state.{k}.{i}")))
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        Ok(Self {
            epoch: meta.epoch,
            updates: meta.updates,
            optimizer: meta.optimizer,
            params,
            moments,
            run: meta.run,
        })
    }
}

/// The first 12 hex digits of a digest.
fn short(hex: &str) -> &str {
    hex.get(..12).unwrap_or(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_reads_back_what_was_saved_and_writes_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Checkpoint::new(
            vec![Param {
                name: "laurel.0.a".into(),
                shape: vec![2],
                values: vec![0.5, -1.25],
            }],
            Optimizer::adamw(0.01),
        );
        c.epoch = 3;
        c.updates = 17;
        c.moments[0][1] = vec![1e-3, 2e-3];
        c.run = Some(key());
        let path = dir.path().join("run.npz");
        c.save(&path).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap(), c);
        let again = dir.path().join("again.npz");
        c.save(&again).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(&again).unwrap()
        );
    }

    fn key() -> RunKey {
        RunKey {
            data: "ab".repeat(32),
            examples: 100,
            batch: 10,
            seed: 7,
            lr: 0.01,
            schedule: Schedule::Cosine { warmup: 5 },
            epochs: 4,
            clip_norm: None,
            step: "ce loss".into(),
        }
    }

    fn resumed_under(key: &RunKey) -> Result<(), RuntimeError> {
        let mut c = Checkpoint::new(Vec::new(), Optimizer::adamw(0.0));
        c.run = Some(self::key());
        c.check_run(key)
    }

    #[test]
    fn a_checkpoint_resumes_only_under_its_own_run() {
        assert!(resumed_under(&key()).is_ok());
        let cases: [(RunKey, &str); 8] = [
            (
                RunKey {
                    step: "kd loss at T = 2".into(),
                    ..key()
                },
                "another step: ce loss, this run kd loss at T = 2",
            ),
            (
                RunKey {
                    data: "cd".repeat(32),
                    ..key()
                },
                "other data",
            ),
            (
                RunKey {
                    examples: 99,
                    ..key()
                },
                "other data",
            ),
            (RunKey { batch: 20, ..key() }, "batch size 10, this run 20"),
            (RunKey { seed: 8, ..key() }, "seed 7, this run 8"),
            (RunKey { lr: 0.02, ..key() }, "learning rate"),
            (
                RunKey {
                    clip_norm: Some(1.0),
                    ..key()
                },
                "gradient clipping",
            ),
            (RunKey { epochs: 8, ..key() }, "epochs"),
        ];
        for (k, says) in cases {
            let e = resumed_under(&k).unwrap_err().to_string();
            assert!(e.contains(says), "{e} should say {says}");
        }
    }

    #[test]
    fn a_constant_rate_run_may_go_on_for_more_epochs() {
        let mut c = Checkpoint::new(Vec::new(), Optimizer::adamw(0.0));
        c.run = Some(RunKey {
            schedule: Schedule::Constant,
            ..key()
        });
        assert!(
            c.check_run(&RunKey {
                schedule: Schedule::Constant,
                epochs: 9,
                ..key()
            })
            .is_ok()
        );
        // A state from before run keys fits any run.
        c.run = None;
        assert!(c.check_run(&key()).is_ok());
    }

    #[test]
    fn a_file_that_is_no_checkpoint_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npz");
        crate::npy::write_npz(
            &path,
            &[("x".into(), Tensor::from_shape(&[1], &[1.0f32]).unwrap())],
        )
        .unwrap();
        let e = Checkpoint::load(&path).unwrap_err();
        assert!(e.to_string().contains("no member `meta`"), "{e}");
    }
}
