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
//! slam  mix  = a·f + b·(1 − f)⊙K,   f = softmax(p), b = (1 − a) (or (1 − a)/(k − 1), normalised)
//!       loss = −Σ q·log mix / P                         ∂f = −(q/mix)⊙(a − b·K) / P,  ∂p = f⊙(∂f − Σ_c ∂f·f)
//! ```
//! SLaM (student-label mixing, `../shared/reference/distillation.md`): the
//! teacher's probabilities `q` are fitted by the student's prediction mixed
//! with the teacher's likely errors. Per position, `a` ([`SLAM_A`], `[P…, 1]`)
//! is the probability that the teacher's top-1 is right and `K`
//! ([`SLAM_TOPK`], `[P…, C]`, 0/1) marks the teacher's top `k` classes, both
//! step inputs after `target`, computed by the caller on a validation set;
//! `k = Σ K`. `mix` is kept at least 1e-12 (float16: 6.2e-5) before its
//! logarithm, and where that floor holds the gradient is 0, as the loss's.
//!
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
    /// SLaM: cross-entropy of the teacher's probabilities with the student's
    /// prediction mixed with the teacher's likely errors.
    Slam,
    /// SLaM with its error term divided by `k − 1`.
    SlamNormalised,
}

/// The step input of SLaM's `a(x)`.
pub const SLAM_A: &str = "slam_a";
/// The step input of SLaM's top-k mask.
pub const SLAM_TOPK: &str = "slam_topk";

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
            "slam" => Ok(Self::Slam),
            "slam-normalised" => Ok(Self::SlamNormalised),
            _ => Err(format!(
                "unknown loss `{s}` (expected ce, mse, kd, slam or slam-normalised)"
            )),
        }
    }
}

impl Loss {
    /// Every loss.
    pub const ALL: [Self; 5] = [
        Self::Ce,
        Self::Mse,
        Self::Kd,
        Self::Slam,
        Self::SlamNormalised,
    ];

    /// The loss's name on the command line.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Ce => "ce",
            Self::Mse => "mse",
            Self::Kd => "kd",
            Self::Slam => "slam",
            Self::SlamNormalised => "slam-normalised",
        }
    }

    /// What the loss is, and what its target holds.
    #[must_use]
    pub fn help(self) -> &'static str {
        match self {
            Self::Ce => "cross-entropy; target: int64 class ids",
            Self::Mse => "mean squared error; target: floats shaped like the output",
            Self::Kd => "distillation at --temperature; target: the teacher's probabilities",
            Self::Slam => {
                "SLaM distillation; target: the teacher's probabilities, with inputs slam_a and slam_topk"
            }
            Self::SlamNormalised => "SLaM with its error term divided by k − 1",
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
            Self::Mse => Ok(p.clone()),
            _ if p.rank() == 0 => Err("the prediction has no class axis".into()),
            Self::Ce => Ok(Ty::new(elem::I64, &p.dims[..p.rank() - 1])),
            Self::Kd | Self::Slam | Self::SlamNormalised => Ok(p.clone()),
        }
    }

    /// The step inputs the loss reads besides `target`, with their types,
    /// for a prediction of type `p` (of a class axis: see
    /// [`Loss::target_type`]).
    #[must_use]
    pub fn extra_inputs(self, p: &Ty) -> Vec<(&'static str, Ty)> {
        match self {
            Self::Slam | Self::SlamNormalised if p.rank() > 0 => {
                let mut a = p.dims.clone();
                if let Some(last) = a.last_mut() {
                    *last = 1;
                }
                vec![(SLAM_A, p.with_dims(&a)), (SLAM_TOPK, p.clone())]
            }
            _ => Vec::new(),
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
        Loss::Slam | Loss::SlamNormalised => {
            let last = p.rank() - 1;
            let ls = log_softmax(e, prediction)?;
            let f = e.unary("Exp", &ls)?;
            let one = e.scalar(p.elem, 1.0);
            let a = SLAM_A;
            // b = 1 − a, or (1 − a)/max(k − 1, 1) normalised.
            let not_a = e.sub(&one, a)?;
            let b = if loss == Loss::SlamNormalised {
                let k = e.reduce_sum(SLAM_TOPK, &[last], true)?;
                let km1 = e.sub(&k, &one)?;
                let den = e.binary("Max", &km1, &one)?;
                e.div(&not_a, &den)?
            } else {
                not_a
            };
            let not_f = e.sub(&one, &f)?;
            let wrong = e.mul(&not_f, SLAM_TOPK)?;
            let bw = e.mul(&b, &wrong)?;
            let af = e.mul(a, &f)?;
            let raw = e.add(&af, &bw)?;
            // The smallest mix kept: 1e-12, or float16's smallest normal.
            let floor = if p.elem == elem::F16 { 6.2e-5 } else { 1e-12 };
            let eps = e.scalar(p.elem, floor);
            let mix = e.binary("Max", &raw, &eps)?;
            // Where the floor holds, the loss does not move with f.
            let live = e.binary("Greater", &raw, &eps)?;
            let zero = e.scalar(p.elem, 0.0);
            let lm = e.unary("Log", &mix)?;
            let picked = e.mul(&lm, target)?;
            let s = e.reduce_sum(&picked, &all, false)?;
            let c = e.scalar(p.elem, -1.0 / positions);
            e.op_into("Mul", &[&s, &c], Vec::new(), out, scalar);
            // ∂f = −(q/mix)⊙(a − b·K)/P; ∂p = f⊙(∂f − Σ_c ∂f·f).
            let q_over = e.div(target, &mix)?;
            let bk = e.mul(&b, SLAM_TOPK)?;
            let slope = e.sub(a, &bk)?;
            let u0 = e.mul(&q_over, &slope)?;
            let u0 = e.op(
                "Where",
                &[&live, &u0, &zero],
                Vec::new(),
                e.ty(&u0)?.clone(),
            );
            let u = e.scale(&u0, -1.0 / positions)?;
            let uf = e.mul(&u, &f)?;
            let suf = e.reduce_sum(&uf, &[last], true)?;
            let centred = e.sub(&u, &suf)?;
            e.mul(&f, &centred)
        }
    }
}
