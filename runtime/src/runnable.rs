//! [`Runnable`]: a loaded, typed and (normally) optimised model, and running it.

use std::sync::Arc;

use tract_onnx::prelude::*;

use crate::datum::{DatumKind, InputSpec, datum_name};
use crate::error::{RuntimeError, chain};

/// A model loaded by [`crate::load()`], ready to run. Cheap to share between threads
/// (`Send + Sync`); every [`Runnable::run`] uses its own execution state.
#[derive(Clone, Debug)]
pub struct Runnable {
    plan: Arc<TypedSimplePlan>,
    inputs: Vec<InputSpec>,
    output_names: Vec<String>,
    strategy: &'static str,
    chosen_sizes: Vec<(String, i64)>,
    decided: crate::decide::Decided,
}

impl Runnable {
    pub(crate) fn new(
        plan: Arc<TypedSimplePlan>,
        inputs: Vec<InputSpec>,
        output_names: Vec<String>,
        strategy: &'static str,
    ) -> Self {
        Runnable {
            plan,
            inputs,
            output_names,
            strategy,
            chosen_sizes: Vec::new(),
            decided: crate::decide::Decided::default(),
        }
    }

    /// The same model, recording the `If`s the loader decided by given inputs.
    pub(crate) fn with_decided(mut self, decided: crate::decide::Decided) -> Self {
        self.decided = decided;
        self
    }

    /// The `If`s the loader decided by the inputs given at load, and those
    /// inputs' values: [`Runnable::run`] refuses other values for them.
    #[must_use]
    pub fn decided(&self) -> &crate::decide::Decided {
        &self.decided
    }

    /// The same model, recording the sizes [`crate::load()`] chose for symbols the
    /// caller left unset because the model does not load at 1, or loads with
    /// empty outputs.
    pub(crate) fn with_chosen_sizes(mut self, sizes: Vec<(String, i64)>) -> Self {
        self.chosen_sizes = sizes;
        self
    }

    /// The sizes [`crate::load()`] chose for symbolic dimensions the caller left
    /// unset, when the model does not load with them at 1 or its outputs are
    /// empty there (see [`crate::load()`]);
    /// empty otherwise. `?` stands for the unnamed dimensions.
    #[must_use]
    pub fn chosen_sizes(&self) -> &[(String, i64)] {
        &self.chosen_sizes
    }

    /// The graph inputs (not initializers), in graph order, with the concrete shapes
    /// obtained by applying the load options' dimensions.
    #[must_use]
    pub fn inputs(&self) -> &[InputSpec] {
        &self.inputs
    }

    /// The graph output names, in graph order (the order of [`Runnable::run`]'s result).
    #[must_use]
    pub fn output_names(&self) -> &[String] {
        &self.output_names
    }

    /// The name of the loader strategy that succeeded (one of [`crate::STRATEGIES`]).
    #[must_use]
    pub fn load_strategy(&self) -> &str {
        self.strategy
    }

    /// The plan tract runs.
    #[must_use]
    pub fn plan(&self) -> &Arc<TypedSimplePlan> {
        &self.plan
    }

    /// The tract model behind the plan (typed, and optimised unless the strategy was
    /// `unoptimized`).
    #[must_use]
    pub fn tract_model(&self) -> &TypedModel {
        self.plan.model()
    }

    /// Runs the model. Inputs are given by name, in any order; every graph input must
    /// be given exactly once, with the element type and shape of [`Runnable::inputs`].
    /// Returns the outputs by name, in graph output order. Outputs tract computes as
    /// symbolic dimensions (`TDim`) are returned as `i64`.
    pub fn run(
        &self,
        inputs: Vec<(String, Tensor)>,
    ) -> Result<Vec<(String, Tensor)>, RuntimeError> {
        let mut slots: Vec<Option<Tensor>> = self.inputs.iter().map(|_| None).collect();
        for (name, tensor) in inputs {
            let Some(ix) = self.inputs.iter().position(|s| s.name == name) else {
                let known = self
                    .inputs
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(RuntimeError::UnknownInput { name, known });
            };
            let spec = &self.inputs[ix];
            if slots[ix].is_some() {
                return Err(RuntimeError::DuplicateInput { name });
            }
            if DatumKind::from_datum_type(tensor.datum_type()) != Some(spec.datum) {
                return Err(RuntimeError::InputDatumMismatch {
                    name,
                    expected: spec.datum.to_string(),
                    actual: datum_name(tensor.datum_type()),
                });
            }
            let expected = spec
                .concrete_shape()
                .ok_or_else(|| RuntimeError::UnresolvedDim {
                    input: name.clone(),
                    dim: format!("{:?}", spec.shape),
                })?;
            if tensor.shape() != expected.as_slice() {
                return Err(RuntimeError::InputShapeMismatch {
                    name,
                    expected,
                    actual: tensor.shape().to_vec(),
                });
            }
            if let Some((_, fixed)) = self.decided.by.get(&name)
                && crate::decide::deciding_values(&tensor).as_ref() != Some(fixed)
            {
                return Err(RuntimeError::DecidedInput {
                    name,
                    fixed: format!("{fixed:?}"),
                    ifs: self.decided.ifs.join(", "),
                });
            }
            slots[ix] = Some(tensor);
        }
        let mut values: TVec<TValue> = TVec::with_capacity(slots.len());
        for (slot, spec) in slots.into_iter().zip(&self.inputs) {
            let tensor = slot.ok_or_else(|| RuntimeError::MissingInput {
                name: spec.name.clone(),
            })?;
            values.push(tensor.into_tvalue());
        }
        let outputs =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.plan.run(values)))
                .map_err(|payload| RuntimeError::Run {
                    message: format!("tract panicked: {}", crate::error::panic_message(&*payload)),
                })?
                .map_err(|e| RuntimeError::Run { message: chain(&e) })?;
        self.output_names
            .iter()
            .zip(outputs)
            .map(|(name, value)| {
                let mut t = value.into_tensor();
                if t.datum_type() == DatumType::TDim {
                    t = t
                        .cast_to::<i64>()
                        .map_err(|e| RuntimeError::Run { message: chain(&e) })?
                        .into_owned();
                }
                Ok((name.clone(), t))
            })
            .collect()
    }
}
