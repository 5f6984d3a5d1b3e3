//! Initial values of `LAuReL` parameters, drawn for a
//! [`laurel_passes::ParamSpec`] by its [`Init`] (the table of which role
//! starts how is [`laurel_passes::params`]'s).
//!
//! A low-rank factor is drawn as the matrix of `x·A` (`A: [D, r]`,
//! `B: [r, D]`, row-major) and stored transposed, as `[out, in, 1, …]`
//! convolution weights, channel-first.
//!
//! Every parameter draws from its own generator, seeded from the seed, the
//! block number and its role's stream ([`stream`]), so values do not depend
//! on which other blocks or parameters exist. O(elements) per parameter.

use laurel_passes::block::Layout;
use laurel_passes::params::{Coefficient, Init, Map, ParamSpec, Role};
use laurel_passes::shape::Dim;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A generator for block `block` under `seed`, on stream `stream`.
#[must_use]
pub fn rng(seed: u64, block: u32, stream: u64) -> StdRng {
    StdRng::seed_from_u64(
        seed ^ (u64::from(block).wrapping_mul(0x9E37_79B9_7F4A_7C15)) ^ stream.rotate_left(17),
    )
}

/// The generator stream of each role. The numbers are fixed so that a seed
/// gives the same values from one version to the next (and the same as
/// before roles were typed).
#[must_use]
pub fn stream(role: Role) -> u64 {
    let map = |m: Map, down: bool| match m {
        Map::Lr => 30 + u64::from(!down),
        Map::SharedH => 40 + u64::from(!down),
        Map::State(j) => 200 + 2 * u64::from(j) + u64::from(!down),
    };
    match role {
        Role::Coefficient(Coefficient::Alpha) => 0,
        Role::Coefficient(Coefficient::Beta) => 1,
        Role::SoftmaxLogit(Coefficient::Alpha) => 10,
        Role::SoftmaxLogit(Coefficient::Beta) => 11,
        Role::SigmoidLogit => 20,
        // 100 + j below 100 (the numbers of old), beyond the 32-bit range after.
        Role::Gamma(j) if j < 100 => 100 + u64::from(j),
        Role::Gamma(j) => (1 << 32) + u64::from(j),
        Role::Down(m) => map(m, true),
        Role::Up(m) => map(m, false),
    }
}

fn normal(rng: &mut StdRng, sigma: f32) -> f32 {
    let u1: f32 = 1.0 - rng.random::<f32>();
    let u2: f32 = rng.random::<f32>();
    sigma * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// LR's down-projection as a `[d, r]` row-major matrix (`x·A` maps `d`
/// channels to `r`): column-orthogonal when `channel_last`, Xavier-uniform otherwise.
#[must_use]
pub fn lr_down(d: usize, r: usize, channel_last: bool, rng: &mut StdRng) -> Vec<f32> {
    if channel_last {
        #[allow(clippy::cast_precision_loss)]
        let v = 1.0 / ((r * d) as f32).sqrt();
        (0..d * r)
            .map(|k| if (k / r) % r == k % r { v } else { 0.0 })
            .collect()
    } else {
        #[allow(clippy::cast_precision_loss)]
        let limit = (6.0 / (d + r) as f32).sqrt();
        (0..d * r)
            .map(|_| rng.random_range(-limit..limit))
            .collect()
    }
}

/// A random `[d, r]` row-major matrix whose columns are orthogonal, each of
/// norm `1/r` (those of the paper's pattern, [`lr_down`], when `r` divides
/// `d`): Gaussian draws, orthogonalised by modified Gram–Schmidt in f64.
/// Columns beyond the `d`th cannot be orthogonal to the others; they are the
/// draws scaled to that norm (the paper's pattern repeats its columns
/// there). O(d·r²).
#[must_use]
pub fn random_column_orthogonal(d: usize, r: usize, rng: &mut StdRng) -> Vec<f32> {
    let mut cols: Vec<Vec<f64>> = (0..r)
        .map(|_| (0..d).map(|_| f64::from(normal(rng, 1.0))).collect())
        .collect();
    #[allow(clippy::cast_precision_loss)]
    let norm = 1.0 / r as f64;
    for j in 0..r {
        if j < d {
            for k in 0..j {
                let (done, rest) = cols.split_at_mut(j);
                let q = &done[k];
                let dot: f64 = q.iter().zip(&rest[0]).map(|(a, b)| a * b).sum();
                for (v, u) in rest[0].iter_mut().zip(q) {
                    *v -= dot * u;
                }
            }
        }
        let len = cols[j].iter().map(|v| v * v).sum::<f64>().sqrt();
        if len > 0.0 {
            // Unit length while orthogonalising; the norm is applied below.
            for v in &mut cols[j] {
                *v /= len;
            }
        }
    }
    #[allow(clippy::cast_possible_truncation)]
    (0..d * r)
        .map(|k| (cols[k % r][k / r] * norm) as f32)
        .collect()
}

/// `m` is `[rows, cols]` row-major; returns `[cols, rows]`.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols * rows)
        .map(|k| m[(k % rows) * cols + k / rows])
        .collect()
}

/// Why a spec's values cannot be drawn (a bug in the spec).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {reason}")]
pub struct InitError {
    /// The parameter.
    pub param: String,
    /// What is wrong.
    pub reason: String,
}

/// The values of `spec` under `seed`, row-major in its [`ParamSpec::ty`]'s
/// shape (a channel-first factor's `[out, in]`).
///
/// # Errors
/// [`InitError`] for a derived coefficient (it has no values of its own), a
/// shape that is not fixed, or a factor that is not a matrix.
#[allow(clippy::cast_possible_truncation)] // the bounds are f32 values
pub fn values(spec: &ParamSpec, seed: u64) -> Result<Vec<f32>, InitError> {
    let err = |reason: &str| InitError {
        param: spec.param.to_string(),
        reason: reason.to_owned(),
    };
    let dims: Vec<usize> = spec
        .ty
        .shape
        .as_deref()
        .ok_or_else(|| err("unknown shape"))?
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => usize::try_from(*n).ok(),
            Dim::Sym(_) => None,
        })
        .collect::<Option<_>>()
        .ok_or_else(|| err("a symbolic dimension"))?;
    let n: usize = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| err("too many elements"))?;
    let mut rng = rng(seed, spec.block().0, stream(spec.role));
    let factor = matches!(spec.role, Role::Down(_) | Role::Up(_));
    let channel_first = factor && spec.layout == Some(Layout::ChannelFirst);
    // The matrix of `x·M`: as stored channel-last, transposed channel-first.
    let (rows, cols) = match (factor, dims.as_slice()) {
        (true, &[a, b]) if channel_first => (b, a),
        (true, &[a, b]) => (a, b),
        (true, _) => return Err(err("a factor that is not a matrix")),
        (false, _) => (n, 1),
    };
    let drawn: Vec<f32> = match spec.init {
        Init::Constant(c) => vec![c as f32; n],
        Init::Uniform { low, high } => (0..n)
            .map(|_| rng.random_range(low as f32..high as f32))
            .collect(),
        Init::Normal { std } => (0..n).map(|_| normal(&mut rng, std as f32)).collect(),
        Init::ColumnOrthogonal => lr_down(rows, cols, true, &mut rng),
        Init::RandomColumnOrthogonal => random_column_orthogonal(rows, cols, &mut rng),
        Init::XavierUniform => lr_down(rows, cols, false, &mut rng),
        Init::Derived(_) => return Err(err("computed from logits, no values of its own")),
    };
    Ok(if channel_first {
        transpose(&drawn, rows, cols)
    } else {
        drawn
    })
}

#[cfg(test)]
#[allow(clippy::float_cmp)]
mod tests {
    use super::*;
    use laurel_passes::block::BlockId;
    use laurel_passes::lang::ParamRef;
    use laurel_passes::params::Derivation;
    use laurel_passes::shape::{DType, TensorType, fixed};

    fn spec(role: Role, dims: &[u64], layout: Option<Layout>, init: Init) -> ParamSpec {
        ParamSpec {
            param: ParamRef::new(BlockId(3), "A").unwrap(),
            role,
            ty: TensorType::new(fixed(dims), DType::F32),
            layout,
            init,
        }
    }

    #[test]
    fn column_orthogonal_a_follows_the_paper() {
        // D = 4, r = 2: A[i][j] = 1/sqrt(8) where i mod 2 = j.
        let a = lr_down(4, 2, true, &mut rng(0, 0, 0));
        let v = 1.0 / 8f32.sqrt();
        assert_eq!(a, [v, 0.0, 0.0, v, v, 0.0, 0.0, v]);
    }

    /// `AᵀA` of a `[d, r]` row-major matrix.
    fn gram(a: &[f32], d: usize, r: usize) -> Vec<f64> {
        (0..r * r)
            .map(|k| {
                (0..d)
                    .map(|i| f64::from(a[i * r + k / r]) * f64::from(a[i * r + k % r]))
                    .sum()
            })
            .collect()
    }

    #[test]
    fn random_column_orthogonal_a_has_the_papers_gram_matrix_and_depends_on_the_seed() {
        for (d, r) in [(16, 4), (8, 8), (384, 16), (5, 1)] {
            let paper = gram(&lr_down(d, r, true, &mut rng(0, 0, 0)), d, r);
            let a = random_column_orthogonal(d, r, &mut rng(1, 3, 30));
            let g = gram(&a, d, r);
            for (k, (got, want)) in g.iter().zip(&paper).enumerate() {
                assert!(
                    (got - want).abs() < 1e-6,
                    "{d}×{r}: AᵀA[{k}] = {got}, the paper's {want}"
                );
            }
            assert_ne!(
                a,
                random_column_orthogonal(d, r, &mut rng(1, 4, 30)),
                "another block"
            );
            assert_ne!(
                a,
                random_column_orthogonal(d, r, &mut rng(2, 3, 30)),
                "another seed"
            );
            assert_eq!(
                a,
                random_column_orthogonal(d, r, &mut rng(1, 3, 30)),
                "seeded"
            );
        }
        // More columns than rows: finite, of the norm.
        let wide = random_column_orthogonal(2, 3, &mut rng(0, 0, 0));
        let g = gram(&wide, 2, 3);
        assert!(g.iter().all(|v| v.is_finite()) && (g[8] - 1.0 / 9.0).abs() < 1e-6);
    }

    #[test]
    fn xavier_values_stay_in_their_bound_and_depend_on_the_seed() {
        let a = lr_down(16, 4, false, &mut rng(1, 3, 0));
        let limit = (6.0f32 / 20.0).sqrt();
        assert!(a.iter().all(|v| v.abs() <= limit) && a.iter().any(|v| *v != 0.0));
        assert_ne!(a, lr_down(16, 4, false, &mut rng(2, 3, 0)));
        assert_eq!(a, lr_down(16, 4, false, &mut rng(1, 3, 0)));
    }

    #[test]
    fn transpose_swaps_rows_and_columns() {
        // [[1, 2, 3], [4, 5, 6]] → [[1, 4], [2, 5], [3, 6]]
        assert_eq!(
            transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3),
            [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }

    #[test]
    fn values_follow_the_spec() {
        let ones = spec(
            Role::Coefficient(Coefficient::Alpha),
            &[5],
            None,
            Init::Constant(1.0),
        );
        assert_eq!(values(&ones, 0).unwrap(), [1.0; 5]);
        let u = spec(
            Role::Gamma(1),
            &[],
            None,
            Init::Uniform {
                low: -0.5,
                high: 0.5,
            },
        );
        let g = values(&u, 7).unwrap();
        assert!(g.len() == 1 && g[0].abs() <= 0.5 && g[0] != 0.0);
        assert_eq!(values(&u, 7), Ok(g.clone()), "seeded");
        assert_ne!(values(&u, 8), Ok(g), "the seed matters");
        let derived = spec(
            Role::Coefficient(Coefficient::Beta),
            &[],
            None,
            Init::Derived(Derivation::Softmax),
        );
        assert!(values(&derived, 0).is_err());
    }

    #[test]
    fn a_channel_first_factor_is_the_channel_last_one_transposed() {
        let last = spec(
            Role::Down(Map::Lr),
            &[6, 2],
            Some(Layout::ChannelLast),
            Init::XavierUniform,
        );
        let first = spec(
            Role::Down(Map::Lr),
            &[2, 6],
            Some(Layout::ChannelFirst),
            Init::XavierUniform,
        );
        let (l, f) = (values(&last, 1).unwrap(), values(&first, 1).unwrap());
        assert_eq!(f, transpose(&l, 6, 2));
        // A = [D, r] column-orthogonal; transposed for channel-first.
        let orth = spec(
            Role::Down(Map::Lr),
            &[2, 4],
            Some(Layout::ChannelFirst),
            Init::ColumnOrthogonal,
        );
        assert_eq!(
            values(&orth, 0).unwrap(),
            transpose(&lr_down(4, 2, true, &mut rng(0, 0, 0)), 4, 2)
        );
    }

    #[test]
    fn every_role_has_its_own_stream() {
        let mut roles = vec![
            Role::Coefficient(Coefficient::Alpha),
            Role::Coefficient(Coefficient::Beta),
            Role::SoftmaxLogit(Coefficient::Alpha),
            Role::SoftmaxLogit(Coefficient::Beta),
            Role::SigmoidLogit,
        ];
        for j in 0..4 {
            roles.extend([
                Role::Gamma(j),
                Role::Down(Map::State(j)),
                Role::Up(Map::State(j)),
            ]);
        }
        for m in [Map::Lr, Map::SharedH] {
            roles.extend([Role::Down(m), Role::Up(m)]);
        }
        let streams: std::collections::HashSet<u64> = roles.iter().map(|&r| stream(r)).collect();
        assert_eq!(streams.len(), roles.len());
    }
}
