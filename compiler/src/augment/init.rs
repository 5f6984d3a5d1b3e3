//! Initial values of `LAuReL` parameters.
//!
//! | parameter | `--init identity` | `--init random --seed N` |
//! |---|---|---|
//! | RW raw α, β | 1 | U(0.5, 1.5) |
//! | RW softmax a, b | 0 | N(0, 0.5²) |
//! | RW sigmoid p | 0 | N(0, 0.5²) |
//! | LR `A` (down-projection) | Xavier-uniform for conv nets (channel-first), column-orthogonal for channel-last (transformers): `A[i][j] = 1/√(rD)` when `i mod r = j`, else 0 | the same |
//! | LR `B` (up-projection) | 0, as in `LoRA` | U(−0.1, 0.1) |
//! | PA `γ_j` | 0 | U(−0.5, 0.5) |
//! | PA's low-rank `h` (`A`/`B`, or `hA`/`hB` in LR+PA) and RW+LR+PA's `A_j`, `B_j` | `A` as LR's; `B` U(−0.1, 0.1) (γ = 0 keeps the function; a zero `B` too would leave γ no gradient) | the same |
//!
//! Every block draws from its own generator, seeded from the seed and the
//! block number, so values do not depend on which other blocks exist.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::InitMode;

/// A generator for block `block` under `seed`.
#[must_use]
pub fn rng(seed: u64, block: u32, salt: u64) -> StdRng {
    StdRng::seed_from_u64(
        seed ^ (u64::from(block).wrapping_mul(0x9E37_79B9_7F4A_7C15)) ^ salt.rotate_left(17),
    )
}

fn normal(rng: &mut StdRng, sigma: f32) -> f32 {
    let u1: f32 = 1.0 - rng.random::<f32>();
    let u2: f32 = rng.random::<f32>();
    sigma * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// RW raw α or β.
#[must_use]
pub fn rw_raw(mode: InitMode, rng: &mut StdRng) -> f32 {
    match mode {
        InitMode::Identity => 1.0,
        InitMode::Random => rng.random_range(0.5..1.5),
    }
}

/// RW softmax logits a, b or sigmoid logit p.
#[must_use]
pub fn rw_logit(mode: InitMode, rng: &mut StdRng) -> f32 {
    match mode {
        InitMode::Identity => 0.0,
        InitMode::Random => normal(rng, 0.5),
    }
}

/// PA's `γ_j`.
#[must_use]
pub fn pa_gamma(mode: InitMode, rng: &mut StdRng) -> f32 {
    match mode {
        InitMode::Identity => 0.0,
        InitMode::Random => rng.random_range(-0.5..0.5),
    }
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

/// LR's up-projection as an `[r, d]` row-major matrix.
#[must_use]
pub fn lr_up(d: usize, r: usize, mode: InitMode, rng: &mut StdRng) -> Vec<f32> {
    match mode {
        InitMode::Identity => vec![0.0; r * d],
        InitMode::Random => (0..r * d).map(|_| rng.random_range(-0.1..0.1)).collect(),
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)]
mod tests {
    use super::*;

    #[test]
    fn column_orthogonal_a_follows_the_paper() {
        // D = 4, r = 2: A[i][j] = 1/sqrt(8) where i mod 2 = j.
        let a = lr_down(4, 2, true, &mut rng(0, 0, 0));
        let v = 1.0 / 8f32.sqrt();
        assert_eq!(a, [v, 0.0, 0.0, v, v, 0.0, 0.0, v]);
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
    fn identity_values_are_function_preserving() {
        let mut g = rng(0, 0, 0);
        assert_eq!(rw_raw(InitMode::Identity, &mut g), 1.0);
        assert_eq!(rw_logit(InitMode::Identity, &mut g), 0.0);
        assert_eq!(pa_gamma(InitMode::Identity, &mut g), 0.0);
        assert_ne!(pa_gamma(InitMode::Random, &mut g), 0.0);
        assert!(
            lr_up(3, 2, InitMode::Identity, &mut g)
                .iter()
                .all(|v| *v == 0.0)
        );
        assert!(
            lr_up(3, 2, InitMode::Random, &mut g)
                .iter()
                .any(|v| *v != 0.0)
        );
    }
}
