//! Which unlabeled examples to buy teacher labels for, under a budget `b`.
//!
//! Scores come from the student's class probabilities on the pool:
//! ```text
//! margin(x)  = p₍₁₎(x) − p₍₂₎(x)          (top-1 minus top-2 probability)
//! gain(x)    = 1 − margin(x)               (RAD's informativeness)
//! entropy(x) = −Σ_c p_c(x)·ln p_c(x)
//! ```
//! - `uniform`: `b` points uniformly at random, without replacement.
//! - `margin`: the `b` points of largest gain; `entropy`: of largest entropy.
//! - `rad`: the allocation `p*` of RAD's game ([`rad_allocation`]), rounded by
//!   DEPROUND ([`depround`]) to exactly `b` points, each chosen with
//!   probability `p*_i`.
//!
//! RAD's game (`../shared/reference/distillation.md`): the learner picks
//! `p ∈ [0, 1]ⁿ` with `Σp = b`; an adversary, the teacher's `m` wrong labels,
//! removes the `m` largest of the `pᵢ·gᵢ`:
//! ```text
//! value(p) = Σᵢ pᵢ·gᵢ − (sum of the m largest pᵢ·gᵢ)
//! ```
//! Ties between equal scores go to the lower index, so every selection is
//! deterministic for a seed.

use rand::Rng;
use rand::seq::index;

/// The top-1 minus top-2 probability of each row of `probs` (`n × classes`,
/// row-major). One class: a margin of 1. O(n·classes).
#[must_use]
pub fn margins(probs: &[f32], classes: usize) -> Vec<f64> {
    probs
        .chunks_exact(classes.max(1))
        .map(|row| {
            // The two largest, without branches (min/max instructions):
            // scores of an uncertain student defeat branch prediction.
            let (mut a, mut b) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
            for &p in row {
                // A NaN entry counts as no probability at all.
                let p = if p.is_nan() { f32::NEG_INFINITY } else { p };
                b = b.max(a.min(p));
                a = a.max(p);
            }
            if b.is_finite() {
                f64::from(a) - f64::from(b)
            } else {
                1.0
            }
        })
        .collect()
}

/// RAD's gain `1 − margin` of each row. O(n·classes).
#[must_use]
pub fn gains(probs: &[f32], classes: usize) -> Vec<f64> {
    margins(probs, classes)
        .into_iter()
        .map(|m| 1.0 - m)
        .collect()
}

/// The entropy (nats) of each row; `0·ln 0 = 0`. O(n·classes).
#[must_use]
pub fn entropies(probs: &[f32], classes: usize) -> Vec<f64> {
    probs
        .chunks_exact(classes.max(1))
        .map(|row| {
            -row.iter()
                .map(|&p| f64::from(p))
                .filter(|&p| p > 0.0)
                .map(|p| p * p.ln())
                .sum::<f64>()
        })
        .collect()
}

/// The indices of the `b` largest scores, largest first (ties: lower index
/// first), in [`f64::total_cmp`]'s order. O(n + b log b): a selection, then
/// a sort of the `b` chosen.
#[must_use]
pub fn top(scores: &[f64], b: usize) -> Vec<usize> {
    // One integer key per score, (score descending, index ascending): a
    // total order of primitive comparisons, so unstable algorithms are exact
    // and fast.
    let mut keys: Vec<u128> = scores
        .iter()
        .zip(0u128..)
        .map(|(&s, i)| (u128::from(!total_order_bits(s)) << 64) | i)
        .collect();
    if b < keys.len() {
        keys.select_nth_unstable(b);
        keys.truncate(b);
    }
    keys.sort_unstable();
    #[allow(clippy::cast_possible_truncation)] // the low 64 bits: an index
    keys.into_iter().map(|k| k as u64 as usize).collect()
}

/// `x`'s bits as an unsigned integer ordered like [`f64::total_cmp`].
fn total_order_bits(x: f64) -> u64 {
    let bits = x.to_bits();
    // Negative numbers: all bits flipped; others: the sign bit set.
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// `b` distinct indices of `0..n`, uniformly at random, in increasing order.
/// O(b log b).
pub fn uniform(n: usize, b: usize, rng: &mut impl Rng) -> Vec<usize> {
    let mut picked = index::sample(rng, n, b.min(n)).into_vec();
    picked.sort_unstable();
    picked
}

/// The value of allocation `p` in RAD's game against `m` wrong labels.
/// O(n log n).
#[must_use]
pub fn game_value(p: &[f64], gains: &[f64], m: usize) -> f64 {
    let mut products: Vec<f64> = p.iter().zip(gains).map(|(p, g)| p * g).collect();
    products.sort_by(|a, b| b.total_cmp(a));
    products.iter().skip(m).sum()
}

/// The allocation that maximises [`game_value`]: `p ∈ [0, 1]ⁿ`, `Σp = b`.
///
/// The value is `max_t [Σᵢ min(pᵢ·gᵢ, t) − m·t]` (the adversary's `m` largest
/// products are cut at the level `t`), jointly concave in `(p, t)`. For a
/// fixed `t` the best `p` is a fractional knapsack: along the gains in
/// decreasing order, each point takes budget up to `min(1, t/gᵢ)` (beyond
/// that its product is cut), the last one what is left. So
/// `F(t) = greedy(t) − m·t` is concave and piecewise linear; its maximum is
/// found by a ternary search on `[0, max g]`, then the gains `gᵢ` beside
/// it are tried too (where `F` has a flat top ending at one of them),
/// keeping the best (the larger `t` among equals, so that `m = 0`
/// gives exactly the top `b` by gain). Budget the caps leave unspent goes to
/// the points of largest gain (products beyond `t` are cut, so the value
/// stays); points of zero gain take budget only when no other can.
///
/// Cost: O(n log n) to sort and take prefix sums; each evaluation of `F`
/// is then two binary searches, O(log n), 200 of them; one O(n) pass
/// writes `p`.
#[must_use]
#[allow(clippy::many_single_char_names)] // the paper's b, m, p, g, t
pub fn rad_allocation(gains: &[f64], b: usize, m: usize) -> Vec<f64> {
    let n = gains.len();
    if b >= n {
        return vec![1.0; n];
    }
    // A NaN or infinite gain (a row of the student's that is not a
    // distribution) is worth nothing, like a gain of 0, and sorts last.
    let clean: Vec<f64> = gains
        .iter()
        .map(|&v| if v.is_finite() { v.max(0.0) } else { 0.0 })
        .collect();
    let order = top(&clean, n);
    let g: Vec<f64> = order.iter().map(|&i| clean[i]).collect();
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let (budget, m) = (b as f64, m as f64);
    let knapsack = Knapsack::new(&g, budget);
    let value = |t: f64| knapsack.value(t) - m * t;
    let top_gain = g.first().copied().unwrap_or(0.0);
    let (mut lo, mut hi) = (0.0f64, top_gain);
    for _ in 0..200 {
        let (a, c) = (lo + (hi - lo) / 3.0, hi - (hi - lo) / 3.0);
        if value(a) < value(c) {
            lo = a;
        } else {
            hi = c;
        }
    }
    let found = 0.5 * (lo + hi);
    // The breakpoints beside it.
    let above = g.iter().rev().copied().find(|&v| v >= found);
    let below = g.iter().copied().find(|&v| v < found);
    let mut best = (value(found), found);
    for t in [above, below].into_iter().flatten() {
        let v = value(t);
        if v > best.0 - 1e-12 * best.0.abs().max(1.0) && (v > best.0 || t > best.1) {
            best = (v.max(best.0), t);
        }
    }
    let mut sorted = knapsack.allocation(best.1);
    // Below the largest gain every cap may be under 1 and leave budget
    // unspent; what is left goes to the points of largest gain. It cannot
    // lower the value: products beyond the level are cut anyway.
    let mut left = budget - sorted.iter().sum::<f64>();
    for v in &mut sorted {
        if left <= 0.0 {
            break;
        }
        let take = (1.0 - *v).min(left);
        *v += take;
        left -= take;
    }
    let mut p = vec![0.0; n];
    for (k, &i) in order.iter().enumerate() {
        p[i] = sorted[k];
    }
    p
}

/// RAD's inner fractional knapsack at a level `t`, over gains sorted in
/// decreasing order: along them each point takes budget up to
/// `min(1, t/gₖ)`, the last one what is left. Points with `gₖ > t` (a
/// prefix) take `t/gₖ` for a product of `t`; the others take 1 for a
/// product of `gₖ`. With the prefix sums of `1/gₖ` and of `gₖ`, the value
/// at any `t` is two binary searches.
struct Knapsack<'a> {
    /// The gains, in decreasing order.
    g: &'a [f64],
    /// `inv[k] = Σ_{i<k} 1/gᵢ` over the positive gains (`n + 1` entries;
    /// only read below the first gain ≤ t, which is positive there).
    inv: Vec<f64>,
    /// `sum[k] = Σ_{i<k} gᵢ` (`n + 1` entries).
    sum: Vec<f64>,
    budget: f64,
}

impl<'a> Knapsack<'a> {
    fn new(g: &'a [f64], budget: f64) -> Self {
        let mut inv = Vec::with_capacity(g.len() + 1);
        let mut sum = Vec::with_capacity(g.len() + 1);
        let (mut i, mut s) = (0.0, 0.0);
        inv.push(0.0);
        sum.push(0.0);
        for &v in g {
            i += if v > 0.0 { 1.0 / v } else { 0.0 };
            s += v;
            inv.push(i);
            sum.push(s);
        }
        Self {
            g,
            inv,
            sum,
            budget,
        }
    }

    /// `Σ take·g` of the knapsack at level `t ≥ 0`. O(log n).
    fn value(&self, t: f64) -> f64 {
        let n = self.g.len();
        // The points whose product is cut at t: gains above it.
        let q = self.g.partition_point(|&v| v > t);
        if t * self.inv[q] >= self.budget {
            // The budget runs out among them: `full` take t/g whole, the
            // next what is left.
            let full = self.inv[..=q].partition_point(|&h| t * h <= self.budget) - 1;
            let left = self.budget - t * self.inv[full];
            #[allow(clippy::cast_precision_loss)]
            let whole = t * full as f64;
            return whole + if full < n { left * self.g[full] } else { 0.0 };
        }
        let rest = self.budget - t * self.inv[q];
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // rest < n
        let ones = (rest.floor() as usize).min(n - q);
        let left = rest - rest.floor();
        #[allow(clippy::cast_precision_loss)]
        let cut = t * q as f64;
        let partial = if q + ones < n {
            left * self.g[q + ones]
        } else {
            0.0
        };
        cut + (self.sum[q + ones] - self.sum[q]) + partial
    }

    /// What each point of positive gain takes at level `t`, in the gains'
    /// order; points of zero gain take nothing here (the caller gives them
    /// what no other point can take). O(n).
    fn allocation(&self, t: f64) -> Vec<f64> {
        let mut left = self.budget;
        self.g
            .iter()
            .map(|&gk| {
                let cap = if gk > 0.0 { (t / gk).min(1.0) } else { 0.0 };
                let take = cap.min(left).max(0.0);
                left -= take;
                take
            })
            .collect()
    }
}

/// DEPROUND (dependent rounding, Gandhi et al. 2006): `round(Σp)` distinct
/// indices, index `i` chosen with probability exactly `pᵢ`, in increasing
/// order. Entries within 1e-9 of 0 or 1 count as decided. Each step settles
/// at least one of two fractional entries, so it takes at most n steps:
/// O(n).
///
/// # Panics
/// Never; entries outside `[0, 1]` are clamped, NaN counts as 0.
#[allow(clippy::many_single_char_names)] // the algorithm's p, i, j, a, c
pub fn depround(p: &[f64], rng: &mut impl Rng) -> Vec<usize> {
    const EPS: f64 = 1e-9;
    // Entries within EPS of 0 or 1 are decided before anything else, so
    // that the count asked for is the sum of what can still be chosen.
    let mut p: Vec<f64> = p
        .iter()
        .map(|&v| {
            let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
            if v <= EPS {
                0.0
            } else if v >= 1.0 - EPS {
                1.0
            } else {
                v
            }
        })
        .collect();
    let fractional = |v: f64| v > EPS && v < 1.0 - EPS;
    let mut i = 0;
    let mut j = 1;
    loop {
        while i < p.len() && !fractional(p[i]) {
            i += 1;
        }
        j = j.max(i + 1);
        while j < p.len() && !fractional(p[j]) {
            j += 1;
        }
        if j >= p.len() {
            break;
        }
        let a = (1.0 - p[i]).min(p[j]);
        let c = p[i].min(1.0 - p[j]);
        if rng.random::<f64>() * (a + c) < c {
            p[i] += a;
            p[j] -= a;
        } else {
            p[i] -= c;
            p[j] += c;
        }
    }
    let total: f64 = p.iter().sum();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // Σp ∈ [0, n]
    let want = total.round() as usize;
    // One fractional entry may remain (the residue of Σp's rounding): it is
    // decided by the count the sum asks for.
    let mut picked: Vec<usize> = (0..p.len()).filter(|&k| p[k] >= 1.0 - EPS).collect();
    if picked.len() < want
        && let Some(k) = (0..p.len()).find(|&k| fractional(p[k]))
    {
        picked.push(k);
        picked.sort_unstable();
    }
    picked
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::many_single_char_names,
    clippy::cast_precision_loss,
    clippy::float_cmp
)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn margin_gain_and_entropy_of_a_row() {
        let probs = [0.7f32, 0.2, 0.1, 0.25, 0.25, 0.5];
        let m = margins(&probs, 3);
        assert!(
            (m[0] - 0.5).abs() < 1e-6 && (m[1] - 0.25).abs() < 1e-6,
            "{m:?}"
        );
        let g = gains(&probs, 3);
        assert!((g[0] - 0.5).abs() < 1e-6 && (g[1] - 0.75).abs() < 1e-6);
        let h = entropies(&[1.0, 0.0, 0.5, 0.5], 2);
        assert!(h[0].abs() < 1e-12 && (h[1] - std::f64::consts::LN_2).abs() < 1e-9);
    }

    #[test]
    fn top_takes_the_largest_and_breaks_ties_by_index() {
        assert_eq!(top(&[0.1, 0.9, 0.5, 0.9], 3), [1, 3, 2]);
    }

    #[test]
    fn uniform_picks_distinct_points() {
        let mut rng = StdRng::seed_from_u64(3);
        let p = uniform(100, 10, &mut rng);
        assert_eq!(p.len(), 10);
        assert!(p.windows(2).all(|w| w[0] < w[1]) && p[9] < 100);
    }

    #[test]
    fn without_an_adversary_rad_is_the_top_b_by_gain() {
        let g = [0.2, 0.9, 0.4, 0.8, 0.1];
        let p = rad_allocation(&g, 2, 0);
        assert_eq!(p, [0.0, 1.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn uncapped_rad_spreads_the_budget_inversely_to_the_gain() {
        // Equal gains: k* = argmax_{k>m} (k − m)/H_k = n, so p = b/n everywhere.
        let g = [0.5; 8];
        let p = rad_allocation(&g, 2, 1);
        assert!(p.iter().all(|&v| (v - 0.25).abs() < 1e-12), "{p:?}");
        // The closed form for distinct gains when no p is capped:
        // pᵢ = b/(gᵢ·H_k) on the top k.
        let g = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5];
        let (b, m) = (2, 2);
        let p = rad_allocation(&g, b, m);
        let k = (m + 1..=g.len())
            .max_by(|&a, &c| {
                let h = |k: usize| g[..k].iter().map(|v| 1.0 / v).sum::<f64>();
                ((a - m) as f64 / h(a)).total_cmp(&((c - m) as f64 / h(c)))
            })
            .unwrap();
        let hk: f64 = g[..k].iter().map(|v| 1.0 / v).sum();
        for i in 0..g.len() {
            let want = if i < k { b as f64 / (g[i] * hk) } else { 0.0 };
            assert!((p[i] - want).abs() < 1e-9, "p = {p:?}, k = {k}");
        }
    }

    #[test]
    fn rad_is_feasible_and_no_worse_than_random_feasible_allocations() {
        let mut rng = StdRng::seed_from_u64(11);
        for case in 0..200 {
            let n = rng.random_range(2..12);
            let b = rng.random_range(1..n);
            let m = rng.random_range(0..n);
            let g: Vec<f64> = (0..n).map(|_| rng.random_range(0.0..1.0)).collect();
            let p = rad_allocation(&g, b, m);
            let total: f64 = p.iter().sum();
            assert!(
                (total - b as f64).abs() < 1e-9,
                "case {case}: Σp = {total}, b = {b}"
            );
            assert!(p.iter().all(|&v| (-1e-12..=1.0 + 1e-12).contains(&v)));
            let best = game_value(&p, &g, m);
            // Random feasible allocations (b points' worth spread by a
            // Dirichlet-like draw, capped at 1 and rescaled), top-b and uniform.
            let mut rivals = vec![vec![b as f64 / n as f64; n]];
            let mut topb = vec![0.0; n];
            for i in top(&g, b) {
                topb[i] = 1.0;
            }
            rivals.push(topb);
            for _ in 0..300 {
                let mut q: Vec<f64> = (0..n).map(|_| rng.random_range(0.0..1.0)).collect();
                for _ in 0..50 {
                    let s: f64 = q.iter().sum();
                    for v in &mut q {
                        *v = (*v * b as f64 / s).min(1.0);
                    }
                }
                rivals.push(q);
            }
            for q in rivals {
                let s: f64 = q.iter().sum();
                if (s - b as f64).abs() > 1e-6 {
                    continue;
                }
                let v = game_value(&q, &g, m);
                assert!(
                    best >= v - 1e-9,
                    "case {case}: RAD {best} < rival {v} (g {g:?}, b {b}, m {m})"
                );
            }
        }
    }

    #[test]
    fn depround_picks_exactly_b_points_with_marginals_p() {
        let p = [0.5, 0.25, 0.75, 1.0, 0.0, 0.5];
        let runs: u32 = 20_000;
        let mut counts = [0usize; 6];
        let mut rng = StdRng::seed_from_u64(5);
        for _ in 0..runs {
            let picked = depround(&p, &mut rng);
            assert_eq!(picked.len(), 3);
            assert!(picked.windows(2).all(|w| w[0] < w[1]));
            for i in picked {
                counts[i] += 1;
            }
        }
        for (i, &c) in counts.iter().enumerate() {
            let f = c as f64 / f64::from(runs);
            // Four binomial standard deviations.
            let sd = (p[i] * (1.0 - p[i]) / f64::from(runs)).sqrt();
            assert!(
                (f - p[i]).abs() <= 4.0 * sd + 1e-12,
                "index {i}: {f} against {}",
                p[i]
            );
        }
    }

    #[test]
    fn a_nan_probability_counts_as_none() {
        // As if the NaN were absent: margin 0.7 − 0.2, wherever it sits.
        for row in [
            [f32::NAN, 0.7, 0.2],
            [0.7, f32::NAN, 0.2],
            [0.7, 0.2, f32::NAN],
        ] {
            let m = margins(&row, 3);
            assert!((m[0] - 0.5).abs() < 1e-6, "{row:?}: {m:?}");
        }
    }

    #[test]
    fn top_orders_like_total_cmp() {
        let mut rng = StdRng::seed_from_u64(3);
        let specials = [
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
            -0.0,
            1.0,
            -1.0,
        ];
        for _ in 0..50 {
            let n = rng.random_range(0..60);
            let scores: Vec<f64> = (0..n)
                .map(|_| match rng.random_range(0..3) {
                    0 => specials[rng.random_range(0..specials.len())],
                    1 => f64::from(rng.random_range(-3..3)), // ties
                    _ => rng.random::<f64>() * 4.0 - 2.0,
                })
                .collect();
            let mut want: Vec<usize> = (0..n).collect();
            want.sort_by(|&i, &j| scores[j].total_cmp(&scores[i]).then(i.cmp(&j)));
            for b in [0, n / 3, n, n + 2] {
                assert_eq!(top(&scores, b), want[..b.min(n)], "{scores:?}, b = {b}");
            }
        }
    }

    /// The knapsack's value, walked point by point: the definition.
    fn knapsack_by_walking(g: &[f64], budget: f64, t: f64) -> f64 {
        let mut left = budget;
        let mut value = 0.0;
        for &gk in g {
            let cap = if gk > 0.0 { (t / gk).min(1.0) } else { 1.0 };
            let take = cap.min(left).max(0.0);
            left -= take;
            value += take * gk;
        }
        value
    }

    #[test]
    fn the_knapsacks_binary_searches_agree_with_walking_it() {
        let mut rng = StdRng::seed_from_u64(17);
        for case in 0..300 {
            let n = rng.random_range(1..40);
            let mut g: Vec<f64> = (0..n)
                .map(|_| match rng.random_range(0..4) {
                    0 => 0.0,
                    1 => 0.5, // ties
                    _ => rng.random::<f64>(),
                })
                .collect();
            g.sort_by(|a, b| b.total_cmp(a));
            let budget = f64::from(rng.random_range(1..=u32::try_from(n).unwrap()));
            let knapsack = Knapsack::new(&g, budget);
            for t in [0.0, 0.5, g[0], rng.random::<f64>(), 2.0] {
                let want = knapsack_by_walking(&g, budget, t);
                let got = knapsack.value(t);
                assert!(
                    (got - want).abs() <= 1e-12 * want.max(1.0),
                    "case {case} t {t}: {got} against {want} for {g:?}, b {budget}"
                );
            }
        }
    }

    #[test]
    fn a_nan_gain_is_worth_nothing() {
        let p = rad_allocation(&[f64::NAN, 0.9, 0.8, 0.7, 0.6], 2, 1);
        assert_eq!(p[0], 0.0, "{p:?}");
        assert!((p.iter().sum::<f64>() - 2.0).abs() < 1e-9);
        let clean = rad_allocation(&[0.0, 0.9, 0.8, 0.7, 0.6], 2, 1);
        assert_eq!(p, clean);
    }

    #[test]
    fn depround_counts_only_what_can_be_chosen() {
        // 2000 entries of 1e-10 sum to 2e-7 and round to nothing; one half
        // and another make one pick.
        let mut p = vec![1e-10; 2000];
        p.extend([0.5, 0.5]);
        let mut rng = StdRng::seed_from_u64(2);
        for _ in 0..50 {
            let picked = depround(&p, &mut rng);
            assert_eq!(picked.len(), 1);
            assert!(picked[0] >= 2000);
        }
        let mut q = vec![4e-10; 3000];
        q.push(0.6);
        assert!(depround(&q, &mut rng).len() <= 1);
    }

    #[test]
    fn depround_of_a_rad_allocation_spends_the_budget() {
        let g: Vec<f64> = (0..50).map(|i| f64::from(i % 7) / 7.0 + 0.05).collect();
        let p = rad_allocation(&g, 9, 4);
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..100 {
            assert_eq!(depround(&p, &mut rng).len(), 9);
        }
    }
}
