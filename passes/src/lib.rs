//! # laurel-passes
//!
//! The e-graph machinery of laurelc, built on [`egg`]: the tensor language
//! and its analyses, rule tables grouped by topic, the cost model and
//! DAG-aware extraction. This crate knows nothing of protobuf or of the
//! compiler's IR: the compiler lowers its IR into this crate's terms and
//! lifts the result back.
//!
//! Today it holds what every later pass shares: [`Limits`], the iteration,
//! node and time limits every runner is given, and [`StopReport`], the stop
//! reason every runner reports. The tensor language, the augmentation rules
//! and the fusion rules build on them in the next milestones.

pub mod limits;

pub use limits::{Limits, StopReport};
