//! Seeded random model inputs.
//!
//! [`random_inputs`] makes one tensor per [`InputSpec`], deterministically for a given
//! seed, with these rules:
//!
//! * **float** inputs (`f16`, `f32`, `f64`): independent standard normal samples
//!   (Box-Muller over `rand`'s `StdRng`);
//! * **integer** inputs whose name contains `mask` (case-insensitive), e.g.
//!   `attention_mask`: all ones;
//! * **integer** inputs whose name contains `token_type` or `segment`
//!   (case-insensitive), e.g. BERT's `token_type_ids`, whose vocabulary is often just
//!   2: all zeros;
//! * other **integer** inputs (token ids, indices, positions, lengths): uniform in
//!   `[0, 10)`, or in `[0, rows)` when the input indexes a `Gather` table of fewer
//!   rows ([`InputSpec::index_rows`]: a 4-row position table gets ids 0..3);
//! * **bool** inputs: all `true`.
//!
//! Each input draws from its own `StdRng`, seeded from the seed and the input's name
//! (FNV-1a), so an input's values do not depend on the order or presence of the
//! other inputs. Every dimension must be [`DimSpec::Fixed`](crate::DimSpec::Fixed).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tract_onnx::prelude::{Tensor, TractResult, f16};

use crate::datum::{DatumKind, InputSpec};
use crate::error::RuntimeError;

/// Exclusive upper bound of random integer inputs.
pub const INT_HIGH: i64 = 10;

/// How the values of an integer input are chosen (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IntRule {
    Ones,
    Zeros,
    Uniform,
}

fn int_rule(name: &str) -> IntRule {
    let lower = name.to_lowercase();
    if lower.contains("mask") {
        IntRule::Ones
    } else if lower.contains("token_type") || lower.contains("segment") {
        IntRule::Zeros
    } else {
        IntRule::Uniform
    }
}

/// FNV-1a over the name, mixed with the seed.
fn input_seed(seed: u64, name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    seed ^ h
}

/// One standard normal sample (Box-Muller).
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// The most elements one random input may have (2^28: 1 GiB of f32). A
/// model can declare any size; generating it must not abort the process.
pub const MAX_RANDOM_ELEMENTS: usize = 1 << 28;

fn make(spec: &InputSpec, shape: &[usize], rng: &mut StdRng) -> TractResult<Tensor> {
    let n = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_RANDOM_ELEMENTS);
    let Some(n) = n else {
        tract_onnx::tract_hir::internal::bail!(
            "input `{}` of shape {shape:?} is larger than the {MAX_RANDOM_ELEMENTS} elements random inputs may have; give it a smaller shape (--shape, --dim) or a file",
            spec.name
        );
    };
    let ints = |rng: &mut StdRng| -> Vec<i64> {
        match int_rule(&spec.name) {
            IntRule::Ones => vec![1; n],
            IntRule::Zeros => vec![0; n],
            IntRule::Uniform => {
                let high = spec
                    .index_rows
                    .and_then(|r| i64::try_from(r).ok())
                    .map_or(INT_HIGH, |r| r.clamp(1, INT_HIGH));
                (0..n).map(|_| rng.random_range(0..high)).collect()
            }
        }
    };
    macro_rules! int_tensor {
        ($t:ty) => {{
            let v: Vec<$t> = ints(rng)
                .into_iter()
                .map(|x| <$t>::try_from(x).unwrap_or_default())
                .collect();
            Tensor::from_shape(shape, &v)
        }};
    }
    match spec.datum {
        DatumKind::F16 => {
            let v: Vec<f16> = (0..n).map(|_| f16::from_f64(normal(rng))).collect();
            Tensor::from_shape(shape, &v)
        }
        #[allow(clippy::cast_possible_truncation)]
        DatumKind::F32 => {
            let v: Vec<f32> = (0..n).map(|_| normal(rng) as f32).collect();
            Tensor::from_shape(shape, &v)
        }
        DatumKind::F64 => {
            let v: Vec<f64> = (0..n).map(|_| normal(rng)).collect();
            Tensor::from_shape(shape, &v)
        }
        DatumKind::I8 => int_tensor!(i8),
        DatumKind::I16 => int_tensor!(i16),
        DatumKind::I32 => int_tensor!(i32),
        DatumKind::I64 => int_tensor!(i64),
        DatumKind::U8 => int_tensor!(u8),
        DatumKind::U16 => int_tensor!(u16),
        DatumKind::U32 => int_tensor!(u32),
        DatumKind::U64 => int_tensor!(u64),
        DatumKind::Bool => Tensor::from_shape(shape, &vec![true; n]),
    }
}

/// Random values for the given inputs, in the same order (rules in the module doc).
pub fn random_inputs(
    specs: &[InputSpec],
    seed: u64,
) -> Result<Vec<(String, Tensor)>, RuntimeError> {
    specs
        .iter()
        .map(|spec| {
            let shape: Vec<usize> =
                spec.concrete_shape()
                    .ok_or_else(|| RuntimeError::UnresolvedDim {
                        input: spec.name.clone(),
                        dim: spec
                            .shape
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("x"),
                    })?;
            let mut rng = StdRng::seed_from_u64(input_seed(seed, &spec.name));
            let t = make(spec, &shape, &mut rng).map_err(|e| RuntimeError::Tract {
                context: format!("making random input `{}`", spec.name),
                message: format!("{e:#}"),
            })?;
            Ok((spec.name.clone(), t))
        })
        .collect()
}
