//! The losses a training step ends in, and their gradients with respect to
//! the prediction, emitted directly (the fused softmax form, not a chain of
//! rules).
//!
//! With the prediction `p: [P…, C]`, `P` the number of positions (every
//! element but the class axis) and `n` its element count:
//! ```text
//! ce    loss = −Σ onehot(t)·log_softmax(p) / P         ∂p = (softmax(p) − onehot(t)) / P
//! mse   loss = Σ (p − t)² / n                           ∂p = 2·(p − t) / n
//! kd    loss = −T²·Σ q·log_softmax(p/T) / P             ∂p = T·(softmax(p/T)·Σ_c q − q) / P
//! ```
//! `ce` takes int64 class ids `t: [P…]` (an id outside `[0, C)` adds nothing
//! to the loss but still `softmax(p)/P` to the gradient, so the loop that
//! feeds the step must check its labels first, as `laurelc train` does);
//! `mse` a float `t` shaped like `p`; `kd` the teacher's probabilities `q`
//! shaped like `p` (softened at `T` by the caller), and is the cross-entropy
//! form of the distillation loss (it differs from the KL divergence by the
//! teacher's entropy, a constant), scaled by `T²` as Hinton et al.

use super::AutodiffError;
use super::emit::{self, Emitter, Ty, elem};

/// A loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Cross-entropy with class ids.
    Ce,
    /// Mean squared error.
    Mse,
    /// Distillation: cross-entropy with soft labels at a temperature.
    Kd,
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Loss {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ce" => Ok(Self::Ce),
            "mse" => Ok(Self::Mse),
            "kd" => Ok(Self::Kd),
            _ => Err(format!("unknown loss `{s}` (expected ce, mse or kd)")),
        }
    }
}

impl Loss {
    /// Every loss.
    pub const ALL: [Self; 3] = [Self::Ce, Self::Mse, Self::Kd];

    /// The loss's name on the command line.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Ce => "ce",
            Self::Mse => "mse",
            Self::Kd => "kd",
        }
    }

    /// What the loss is, and what its target holds.
    #[must_use]
    pub fn help(self) -> &'static str {
        match self {
            Self::Ce => "cross-entropy; target: int64 class ids",
            Self::Mse => "mean squared error; target: floats shaped like the output",
            Self::Kd => "distillation at --temperature; target: the teacher's probabilities",
        }
    }

    /// The type of the target for a prediction of type `p`.
    ///
    /// # Errors
    /// A prediction that is not float, or of rank 0 for `ce`/`kd`.
    pub fn target_type(self, p: &Ty) -> Result<Ty, String> {
        if !elem::is_float(p.elem) {
            return Err("the prediction is not a float tensor".into());
        }
        match self {
            Self::Ce | Self::Kd if p.rank() == 0 => Err("the prediction has no class axis".into()),
            Self::Ce => Ok(Ty::new(elem::I64, &p.dims[..p.rank() - 1])),
            Self::Mse | Self::Kd => Ok(p.clone()),
        }
    }
}

/// The log-softmax over the last axis, written out so that it is finite
/// whatever the logits: `z − m − log Σ exp(z − m)` with `m` the row's
/// maximum (every exponent ≤ 0, the sum ≥ 1). tract 0.23's `LogSoftmax`
/// gives −∞ once a probability underflows in float32 ((0, −200, 300) →
/// (−∞, −∞, 0) where the value is (−300, −500, 0)).
fn log_softmax(e: &mut Emitter, x: &str) -> Result<String, AutodiffError> {
    let last = e.ty(x)?.rank() - 1;
    let m = e.reduce_max(x, &[last], true)?;
    let z = e.sub(x, &m)?;
    let ez = e.unary("Exp", &z)?;
    let s = e.reduce_sum(&ez, &[last], true)?;
    let l = e.unary("Log", &s)?;
    e.sub(&z, &l)
}

/// Emits `loss` (the value named `out`) of `prediction` against `target`;
/// returns the gradient of the loss with respect to the prediction.
///
/// # Errors
/// Values without a static type.
pub fn emit(
    e: &mut Emitter,
    loss: Loss,
    temperature: f64,
    prediction: &str,
    target: &str,
    out: &str,
) -> Result<String, AutodiffError> {
    let p = e.ty(prediction)?.clone();
    let all: Vec<usize> = (0..p.rank()).collect();
    let scalar = Ty::new(p.elem, &[]);
    let classes = p.dims.last().copied().unwrap_or(1);
    let positions = emit::to_f64((p.numel() / classes.max(1)).max(1));
    match loss {
        Loss::Ce => {
            let ls = log_softmax(e, prediction)?;
            let r = p.rank();
            let t = e.unsqueeze(target, &[r - 1])?;
            let range: Vec<i64> = (0..classes).collect();
            let range = e.ints(&range);
            let hit = e.binary("Equal", &t, &range)?;
            let onehot = e.cast(&hit, p.elem)?;
            // The class's log-probability, picked by Where: a product with the
            // one-hot would be NaN at a log-probability of −∞.
            let zero = e.scalar(p.elem, 0.0);
            let picked = e.op("Where", &[&hit, &ls, &zero], Vec::new(), e.ty(&ls)?.clone());
            let s = e.reduce_sum(&picked, &all, false)?;
            let c = e.scalar(p.elem, -1.0 / positions);
            e.op_into("Mul", &[&s, &c], Vec::new(), out, scalar);
            let sm = e.unary("Exp", &ls)?;
            let d = e.sub(&sm, &onehot)?;
            e.scale(&d, 1.0 / positions)
        }
        Loss::Mse => {
            let n = emit::to_f64(p.numel().max(1));
            let d = e.sub(prediction, target)?;
            let d2 = e.mul(&d, &d)?;
            let s = e.reduce_sum(&d2, &all, false)?;
            let c = e.scalar(p.elem, 1.0 / n);
            e.op_into("Mul", &[&s, &c], Vec::new(), out, scalar);
            e.scale(&d, 2.0 / n)
        }
        Loss::Kd => {
            let z = e.scale(prediction, 1.0 / temperature)?;
            let ls = log_softmax(e, &z)?;
            let picked = e.mul(&ls, target)?;
            let s = e.reduce_sum(&picked, &all, false)?;
            let c = e.scalar(p.elem, -temperature * temperature / positions);
            e.op_into("Mul", &[&s, &c], Vec::new(), out, scalar);
            let sm = e.unary("Exp", &ls)?;
            let mass = e.reduce_sum(target, &[p.rank() - 1], true)?;
            let smq = e.mul(&sm, &mass)?;
            let d = e.sub(&smq, target)?;
            e.scale(&d, temperature / positions)
        }
    }
}
