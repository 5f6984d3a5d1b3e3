//! A run's state: the trainable tensors, the optimizer's buffers and the
//! position in the run, saved as one `.npz` and resumed from it.
//!
//! ```text
//! meta.npy         uint8: JSON {"format", "epoch", "updates", "optimizer", "params"}
//! param.<i>.npy    float32: trainable tensor i (names in meta, in step order)
//! state.<k>.<i>.npy float32: optimizer buffer k of tensor i
//! ```
//!
//! Checkpoints are taken at epoch ends, so a resumed run starts the next
//! epoch with the same shuffle, rates and buffers as the uninterrupted run
//! and ends in the same tensors, bit for bit. Written atomically; the same
//! state gives the same bytes. O(parameters).

use std::path::Path;

use serde::{Deserialize, Serialize};
use tract_onnx::prelude::Tensor;

use super::optim::Optimizer;
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
}

#[derive(Serialize, Deserialize)]
struct Meta {
    format: String,
    epoch: u64,
    updates: u64,
    optimizer: Optimizer,
    params: Vec<(String, Vec<usize>)>,
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
        }
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
        })
    }
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
