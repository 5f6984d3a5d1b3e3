//! Distillation from a teacher model on unlabeled data: SLaM and RAD
//! (`../shared/reference/distillation.md`).
//!
//! - [`calibrate`]: how far to trust the teacher: SLaM's `a(x)` by isotonic
//!   regression on its confidence, `k(x)` from its top-k accuracy, and a
//!   reliability table, on a labeled validation set.
//! - [`select`]: which unlabeled examples to buy teacher labels for under a
//!   budget: uniform, margin, entropy, and RAD's game allocation rounded by
//!   DEPROUND.
//!
//! - [`teacher`]: soft labels from a teacher on tract, in batches, cached by
//!   content, with the number of examples queried.
//!
//! Like the rest of this crate it runs ONNX bytes and knows nothing of
//! laurelc's IR.

pub mod calibrate;
pub mod select;
pub mod teacher;
