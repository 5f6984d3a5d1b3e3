//! How far to trust the teacher: SLaM's `a(x)` and `k(x)`, and a reliability
//! table, estimated on a small labeled validation set.
//!
//! - `a(x)`, the probability that the teacher's top-1 label is right, as a
//!   non-decreasing function of its confidence (its top-1 probability),
//!   fitted by isotonic regression ([`Isotonic::fit`], pool-adjacent-
//!   violators). Isotonic rather than fixed bins: it needs no bin count,
//!   it is monotone by construction (a more confident teacher is never
//!   trusted less), and with a few hundred validation points it does not
//!   leave empty bins. Each block is constant from its smallest to its
//!   largest `x`; between blocks the fit interpolates linearly (as
//!   scikit-learn's `IsotonicRegression` does), and beyond the first and
//!   last it is constant.
//! - `k(x)`: the smallest `k` whose top-k accuracy on the validation set
//!   reaches a level ([`smallest_k`]), so that the true class is among the
//!   teacher's top `k` that often.
//! - [`reliability`]: confidence against accuracy in equal-width bins.

use serde::Serialize;

/// A non-decreasing piecewise-linear fit of `y` against `x`: its knots.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Isotonic {
    /// The knots' `x`, non-decreasing: each block's smallest and largest
    /// `x` (one knot for a block of one `x`).
    pub x: Vec<f64>,
    /// The knots' fitted values, non-decreasing (a block's two knots share
    /// its value).
    pub y: Vec<f64>,
}

impl Isotonic {
    /// The least-squares non-decreasing fit of `ys` against `xs` with
    /// weights `ws` (pool-adjacent-violators). Points with equal `x` share
    /// one block. Empty input: the constant 0.5. O(n log n).
    #[must_use]
    pub fn fit(xs: &[f64], ys: &[f64], ws: &[f64]) -> Self {
        let mut order: Vec<usize> = (0..xs.len().min(ys.len()).min(ws.len())).collect();
        order.sort_by(|&i, &j| xs[i].total_cmp(&xs[j]).then(i.cmp(&j)));
        // Blocks: (smallest x, largest x, Σw·y, Σw).
        let mut blocks: Vec<(f64, f64, f64, f64)> = Vec::new();
        let mut last_x = f64::NAN;
        for &i in &order {
            let w = ws[i].max(0.0);
            if w == 0.0 {
                continue;
            }
            match blocks.last_mut() {
                // Equal x: one block, whatever the order of their y.
                Some(b) if xs[i].total_cmp(&last_x).is_eq() => {
                    b.2 += w * ys[i];
                    b.3 += w;
                }
                _ => blocks.push((xs[i], xs[i], w * ys[i], w)),
            }
            last_x = xs[i];
            while blocks.len() >= 2 {
                let (a, b) = (blocks[blocks.len() - 2], blocks[blocks.len() - 1]);
                if a.2 / a.3 <= b.2 / b.3 {
                    break;
                }
                blocks.pop();
                if let Some(top) = blocks.last_mut() {
                    *top = (a.0, b.1, a.2 + b.2, a.3 + b.3);
                }
            }
        }
        if blocks.is_empty() {
            return Self {
                x: vec![0.0],
                y: vec![0.5],
            };
        }
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for &(lo, hi, wy, w) in &blocks {
            x.push(lo);
            y.push(wy / w);
            if hi > lo {
                x.push(hi);
                y.push(wy / w);
            }
        }
        Self { x, y }
    }

    /// The fitted value at `x`. O(log blocks).
    #[must_use]
    pub fn predict(&self, x: f64) -> f64 {
        let k = self.x.partition_point(|&v| v <= x);
        match k {
            0 => self.y[0],
            k if k == self.x.len() => self.y[k - 1],
            k => {
                let (x0, x1, y0, y1) = (self.x[k - 1], self.x[k], self.y[k - 1], self.y[k]);
                if x1 > x0 {
                    y0 + (y1 - y0) * (x - x0) / (x1 - x0)
                } else {
                    y1
                }
            }
        }
    }
}

/// For each row of `probs` (`n × classes`), its top-1 probability and
/// whether the top-1 class (ties: the lower class) is `labels[i]`. O(n·classes).
#[must_use]
pub fn confidence_and_correct(probs: &[f32], labels: &[i64], classes: usize) -> Vec<(f64, bool)> {
    probs
        .chunks_exact(classes.max(1))
        .zip(labels)
        .map(|(row, &label)| {
            let (best, p) = row
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |acc, (c, &p)| if p > acc.1 { (c, p) } else { acc },
                );
            (f64::from(p), i64::try_from(best).ok() == Some(label))
        })
        .collect()
}

/// The top-k accuracy for k = 1..=classes: the share of rows whose label
/// is among their k most probable classes (ties: lower class first).
/// O(n·classes log classes).
#[must_use]
#[allow(clippy::cast_precision_loss)] // counts far below 2^52
pub fn top_k_accuracy(probs: &[f32], labels: &[i64], classes: usize) -> Vec<f64> {
    let mut hits = vec![0usize; classes];
    let mut n = 0usize;
    for (row, &label) in probs.chunks_exact(classes.max(1)).zip(labels) {
        n += 1;
        let mut order: Vec<usize> = (0..classes).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        if let Some(rank) = order
            .iter()
            .position(|&c| i64::try_from(c).ok() == Some(label))
        {
            hits[rank] += 1;
        }
    }
    let mut acc = Vec::with_capacity(classes);
    let mut seen = 0;
    for h in hits {
        seen += h;
        acc.push(if n == 0 { 0.0 } else { seen as f64 / n as f64 });
    }
    acc
}

/// The smallest `k` (from 1) whose top-k accuracy reaches `level`; the
/// number of classes if none does.
#[must_use]
pub fn smallest_k(top_k: &[f64], level: f64) -> usize {
    top_k
        .iter()
        .position(|&a| a >= level)
        .map_or(top_k.len(), |i| i + 1)
}

/// One bin of a reliability table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bin {
    /// The bin's confidence range `[lo, hi)` (the last bin includes 1).
    pub lo: f64,
    /// Its upper end.
    pub hi: f64,
    /// The examples in it.
    pub count: usize,
    /// Their mean confidence (`None` when empty).
    pub confidence: Option<f64>,
    /// Their accuracy (`None` when empty).
    pub accuracy: Option<f64>,
}

/// Confidence against accuracy in `bins` equal-width bins of `[0, 1]`. O(n).
#[must_use]
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
pub fn reliability(points: &[(f64, bool)], bins: usize) -> Vec<Bin> {
    let bins = bins.max(1);
    let mut sums = vec![(0usize, 0.0f64, 0usize); bins];
    for &(c, right) in points {
        let k = ((c.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
        sums[k].0 += 1;
        sums[k].1 += c;
        sums[k].2 += usize::from(right);
    }
    sums.iter()
        .enumerate()
        .map(|(k, &(count, conf, right))| Bin {
            lo: k as f64 / bins as f64,
            hi: (k + 1) as f64 / bins as f64,
            count,
            confidence: (count > 0).then(|| conf / count as f64),
            accuracy: (count > 0).then(|| right as f64 / count as f64),
        })
        .collect()
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::many_single_char_names,
    clippy::cast_precision_loss,
    clippy::float_cmp
)]
mod tests {
    use super::*;

    #[test]
    fn isotonic_pools_the_violators_into_their_mean() {
        // 1, 3, 2, 4: the violating pair (3, 2) becomes 2.5, 2.5 over [1, 2].
        let fit = Isotonic::fit(&[0.0, 1.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 4.0], &[1.0; 4]);
        assert_eq!(fit.y, [1.0, 2.5, 2.5, 4.0]);
        assert_eq!(fit.x, [0.0, 1.0, 2.0, 3.0]);
        // At a fitted point, its fitted value; inside a block, constant.
        assert_eq!(fit.predict(1.0), 2.5);
        assert_eq!(fit.predict(1.5), 2.5);
        assert!(
            (fit.predict(0.5) - 1.75).abs() < 1e-12,
            "halfway between blocks"
        );
        assert_eq!(fit.predict(-5.0), 1.0);
        assert_eq!(fit.predict(9.0), 4.0);
    }

    #[test]
    fn isotonic_is_monotone_on_noisy_data_and_weights_count() {
        let xs: Vec<f64> = (0..200).map(|i| f64::from(i) / 200.0).collect();
        let ys: Vec<f64> = xs
            .iter()
            .enumerate()
            .map(|(i, x)| if (i * 37) % 11 < 4 { 1.0 - x } else { *x })
            .collect();
        let fit = Isotonic::fit(&xs, &ys, &vec![1.0; 200]);
        assert!(fit.y.windows(2).all(|w| w[0] <= w[1]), "{:?}", fit.y);
        let grid: Vec<f64> = (0..=100)
            .map(|i| fit.predict(f64::from(i) / 100.0))
            .collect();
        assert!(grid.windows(2).all(|w| w[0] <= w[1] + 1e-12));
        // A point of weight 3 counts as three.
        let heavy = Isotonic::fit(&[0.0, 1.0], &[1.0, 0.0], &[3.0, 1.0]);
        assert_eq!(heavy.y, [0.75, 0.75]);
    }

    #[test]
    fn equal_confidences_share_one_block() {
        let fit = Isotonic::fit(&[0.5, 0.5, 0.5], &[1.0, 0.0, 0.0], &[1.0; 3]);
        assert_eq!(fit.y.len(), 1);
        assert!((fit.y[0] - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn top_k_accuracy_counts_the_rank_of_the_label() {
        let probs = [0.6f32, 0.3, 0.1, 0.2, 0.5, 0.3, 0.1, 0.2, 0.7];
        // Row 0: label 0 at rank 1; row 1: label 0 at rank 3; row 2: label 1 at rank 2.
        let acc = top_k_accuracy(&probs, &[0, 0, 1], 3);
        assert_eq!(acc.len(), 3);
        assert!((acc[0] - 1.0 / 3.0).abs() < 1e-12 && (acc[1] - 2.0 / 3.0).abs() < 1e-12);
        assert!((acc[2] - 1.0).abs() < 1e-12);
        assert_eq!(smallest_k(&acc, 0.6), 2);
        assert_eq!(smallest_k(&acc, 1.0), 3);
        assert_eq!(smallest_k(&[0.1, 0.2], 0.9), 2);
        let cc = confidence_and_correct(&probs, &[0, 0, 1], 3);
        assert_eq!(cc[0], (f64::from(0.6f32), true));
        assert!(!cc[1].1 && !cc[2].1);
    }

    #[test]
    fn reliability_bins_by_confidence() {
        let t = reliability(
            &[(0.05, false), (0.95, true), (1.0, false), (0.92, true)],
            10,
        );
        assert_eq!(t.len(), 10);
        assert_eq!(t[0].count, 1);
        assert_eq!(t[0].accuracy, Some(0.0));
        assert_eq!(t[9].count, 3, "1.0 falls in the last bin");
        assert!((t[9].accuracy.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(t[5].confidence, None);
    }
}
