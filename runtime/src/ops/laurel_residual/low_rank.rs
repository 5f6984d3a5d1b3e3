//! `LaurelResidual`'s low-rank terms, `y += cⱼ·(pⱼ·Bⱼ)`, in one typed op with its own
//! kernel: [`LowRankAccumulate`].
//!
//! A `LAuReL` low-rank term is a product by a thin matrix: `p` is `[…, m, r]` (the
//! activations times `A`), `B` is `[r, d]`, with `r` about 16 and `d` the model width.
//! tract runs each such product as its own matrix product, whose cost is mostly per
//! output tile at this depth: on paraphrase-MiniLM-L3 at 64 tokens (d = 384, r = 16) one
//! product took 28 µs, and 48 µs when tract fused the following `Add` into it, against
//! 270 µs for the model's own 384 × 384 products, 24 times deeper (per-node medians,
//! `docs/benchmarks.md`). This kernel adds every product of a node into the output in
//! one pass over it: each 4 × 16 tile of `y` stays in registers while the depth of all
//! the products streams through it.
//!
//! The products are computed to rounding, not bit for bit as a `MatMul` then an `Add`
//! would be: each tile accumulates `y + Σₖ (cⱼ·pⱼ[·, k])·Bⱼ[k, ·]` left to right, with
//! a fused multiply-add where the CPU has one.
//!
//! Complexity: O(m·d·Σⱼ rⱼ) multiply-adds, one read and one write of `y`.

use tract_onnx::tract_hir::internal::{
    Cost, DatumType, DatumTypeExt, EvalContext, EvalOp, IntoTValue, IntoTensor, Op, StaticName,
    TDim, TValue, TVec, TractErrorContext, TractResult, TypedFact, TypedOp, Validation, as_op,
    bail, ensure, op_as_typed_op, op_out_of_plan, tvec,
};

use super::OP_TYPE;

/// Rows of a tile.
const ROWS: usize = 4;
/// Columns of a tile: two AVX registers of f32.
const LANES: usize = 16;

/// `y = acc + Σⱼ cⱼ·(pⱼ·Bⱼ)` for f32: inputs `acc, p₀, B₀, p₁, B₁, …`, where `acc` is
/// `[…, m, d]`, each `pⱼ` is `[…, m, rⱼ]` with the same leading dimensions, and each
/// `Bⱼ` is `[rⱼ, d]`. The output is `acc`'s shape; it reuses `acc`'s buffer when
/// nothing else holds it.
#[derive(Clone, Debug)]
pub struct LowRankAccumulate {
    coefficients: Vec<f32>,
}

impl LowRankAccumulate {
    /// The op with one coefficient per product.
    pub fn new(coefficients: Vec<f32>) -> TractResult<Self> {
        ensure!(
            !coefficients.is_empty(),
            "{OP_TYPE}: a low-rank accumulation needs a product"
        );
        Ok(LowRankAccumulate { coefficients })
    }

    /// Whether the op can take `acc` and the pairs `(p, B)`: f32, `acc` of rank ≥ 1,
    /// each `p` of `acc`'s rank and leading dimensions, each `B` `[r, d]` with `r` the
    /// last dimension of `p` and `d` that of `acc`.
    #[must_use]
    pub fn fits(acc: &TypedFact, pairs: &[(&TypedFact, &TypedFact)]) -> bool {
        let rank = acc.rank();
        rank >= 1
            && acc.datum_type == DatumType::F32
            && pairs.iter().all(|(p, b)| {
                p.datum_type == DatumType::F32
                    && b.datum_type == DatumType::F32
                    && p.rank() == rank
                    && b.rank() == 2
                    && p.shape[..rank - 1] == acc.shape[..rank - 1]
                    && p.shape[rank - 1] == b.shape[0]
                    && b.shape[1] == acc.shape[rank - 1]
            })
    }
}

// Coefficients compare by bits, as `LaurelResidualKernel`'s do.
impl PartialEq for LowRankAccumulate {
    fn eq(&self, other: &Self) -> bool {
        self.coefficients.len() == other.coefficients.len()
            && self
                .coefficients
                .iter()
                .zip(&other.coefficients)
                .all(|(a, b)| a.to_bits() == b.to_bits())
    }
}

impl Eq for LowRankAccumulate {}

impl Op for LowRankAccumulate {
    fn name(&self) -> StaticName {
        format!("{OP_TYPE}LowRank").into()
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("coefficients: {:?}", self.coefficients)])
    }

    op_as_typed_op!();
}

impl EvalOp for LowRankAccumulate {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(
            inputs.len() == 1 + 2 * self.coefficients.len(),
            "{OP_TYPE}: {} products evaluated on {} inputs",
            self.coefficients.len(),
            inputs.len()
        );
        let mut inputs = inputs.into_iter();
        let Some(acc) = inputs.next() else {
            bail!("{OP_TYPE}: no accumulator");
        };
        let pairs: Vec<TValue> = inputs.collect();
        let mut y = acc.into_tensor();
        let shape = y.shape().to_vec();
        let Some(&cols) = shape.last() else {
            bail!("{OP_TYPE}: a scalar accumulator");
        };
        let rows: usize = shape[..shape.len() - 1].iter().product();
        let mut views = Vec::with_capacity(pairs.len());
        for (pair, _) in pairs.chunks_exact(2).zip(&self.coefficients) {
            let (p, b) = (&pair[0], &pair[1]);
            let (ps, bs) = (p.shape(), b.shape());
            ensure!(
                ps.len() == shape.len()
                    && ps[..ps.len() - 1] == shape[..shape.len() - 1]
                    && bs.len() == 2
                    && bs[1] == cols
                    && ps.last() == Some(&bs[0]),
                "{OP_TYPE}: a product of {ps:?} by {bs:?} into {shape:?}"
            );
            views.push((
                p.to_plain_array_view::<f32>()?,
                b.to_plain_array_view::<f32>()?,
                bs[0],
            ));
        }
        let mut products = Vec::with_capacity(views.len());
        for ((p, b, rank), &c) in views.iter().zip(&self.coefficients) {
            products.push(Product {
                p: p.as_slice().context("non-contiguous low-rank input")?,
                b: b.as_slice().context("non-contiguous low-rank weight")?,
                rank: *rank,
                c,
            });
        }
        {
            let mut view = y.to_plain_array_view_mut::<f32>()?;
            let out = view
                .as_slice_mut()
                .context("non-contiguous low-rank accumulator")?;
            if rows > 0 && cols > 0 {
                accumulate(out, cols, &products);
            }
        }
        Ok(tvec!(y.into_tvalue()))
    }
}

impl TypedOp for LowRankAccumulate {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs.len() == 1 + 2 * self.coefficients.len(),
            "{OP_TYPE}: {} products wired to {} inputs",
            self.coefficients.len(),
            inputs.len()
        );
        let pairs: Vec<(&TypedFact, &TypedFact)> = inputs[1..]
            .chunks_exact(2)
            .map(|pair| (pair[0], pair[1]))
            .collect();
        ensure!(
            Self::fits(inputs[0], &pairs),
            "{OP_TYPE}: low-rank products that do not fit: {inputs:?}"
        );
        Ok(tvec!(DatumType::F32.fact(inputs[0].shape.clone())))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let count: TDim = inputs[0].shape.iter().product();
        let depth: TDim = inputs[1..]
            .chunks_exact(2)
            .map(|pair| pair[1].shape[0].clone())
            .sum();
        Ok(tvec!((Cost::FMA(DatumType::F32), count * depth)))
    }

    as_op!();
}

/// One product `c·(p·B)`: `p` is `rows × rank`, `B` is `rank × cols`, both row-major.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Product<'a> {
    /// `rows × rank`.
    pub p: &'a [f32],
    /// `rank × cols`.
    pub b: &'a [f32],
    /// The inner dimension.
    pub rank: usize,
    /// The coefficient.
    pub c: f32,
}

/// `y += Σ c·(p·B)` for a row-major `y` of `cols` columns, with AVX2 and FMA when the
/// CPU has them.
pub(crate) fn accumulate(y: &mut [f32], cols: usize, products: &[Product<'_>]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: `accumulate_avx2_fma` only needs the CPU features checked just above.
        #[allow(unsafe_code)]
        unsafe {
            accumulate_avx2_fma(y, cols, products);
        }
        return;
    }
    tiles::<false>(y, cols, products);
}

/// [`tiles`] compiled for AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn accumulate_avx2_fma(y: &mut [f32], cols: usize, products: &[Product<'_>]) {
    tiles::<true>(y, cols, products);
}

/// `a·b + c`, fused when `FMA`.
// `inline(always)` here and below: the code must be compiled inside
// `accumulate_avx2_fma`, with its target features, to use AVX2 and FMA.
#[allow(clippy::inline_always)]
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// The whole of `y`, [`ROWS`] rows at a time, then the rows left one by one.
#[allow(clippy::inline_always)]
#[inline(always)]
fn tiles<const FMA: bool>(y: &mut [f32], cols: usize, products: &[Product<'_>]) {
    let rows = y.len() / cols;
    let depth: usize = products.iter().map(|p| p.rank).sum();
    let mut scratch = vec![0f32; depth * ROWS];
    let mut row = 0;
    while row + ROWS <= rows {
        band::<FMA, ROWS>(y, cols, row, products, &mut scratch);
        row += ROWS;
    }
    while row < rows {
        band::<FMA, 1>(y, cols, row, products, &mut scratch);
        row += 1;
    }
}

/// Rows `row..row + R` of `y`: tiles of [`LANES`] columns kept in registers, then the
/// columns left one by one. `scratch` (at least `R` × the products' total depth) takes
/// the band's `c·p`, depth-major, so that the inner loop reads it in order.
#[allow(clippy::inline_always)]
#[inline(always)]
fn band<const FMA: bool, const R: usize>(
    y: &mut [f32],
    cols: usize,
    row: usize,
    products: &[Product<'_>],
    scratch: &mut [f32],
) {
    // scratch[(offset + k)·R + q] = c·p[row + q, k], product by product.
    let mut offset = 0;
    for pr in products {
        for q in 0..R {
            let p_row = &pr.p[(row + q) * pr.rank..][..pr.rank];
            for (k, &v) in p_row.iter().enumerate() {
                scratch[(offset + k) * R + q] = pr.c * v;
            }
        }
        offset += pr.rank;
    }
    let full = cols - cols % LANES;
    let mut col = 0;
    while col < full {
        let mut acc = [[0f32; LANES]; R];
        for (q, a) in acc.iter_mut().enumerate() {
            a.copy_from_slice(&y[(row + q) * cols + col..][..LANES]);
        }
        let mut ps = scratch.chunks_exact(R);
        for pr in products {
            for (pk, b_row) in ps.by_ref().zip(pr.b.chunks_exact(cols)).take(pr.rank) {
                let (Ok(pk), Ok(b)) = (
                    <&[f32; R]>::try_from(pk),
                    <&[f32; LANES]>::try_from(&b_row[col..col + LANES]),
                ) else {
                    continue;
                };
                for (a, &pv) in acc.iter_mut().zip(pk) {
                    for l in 0..LANES {
                        a[l] = madd::<FMA>(pv, b[l], a[l]);
                    }
                }
            }
        }
        for (q, a) in acc.iter().enumerate() {
            y[(row + q) * cols + col..][..LANES].copy_from_slice(a);
        }
        col += LANES;
    }
    for q in 0..R {
        for c in full..cols {
            let mut s = y[(row + q) * cols + c];
            let mut ps = scratch.chunks_exact(R);
            for pr in products {
                for (pk, b_row) in ps.by_ref().zip(pr.b.chunks_exact(cols)).take(pr.rank) {
                    s = madd::<FMA>(pk[q], b_row[c], s);
                }
            }
            y[(row + q) * cols + c] = s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `y + Σ c·(p·B)` in f64, the plain way.
    fn reference(y: &[f32], cols: usize, products: &[Product<'_>]) -> Vec<f64> {
        let rows = y.len() / cols;
        let mut out: Vec<f64> = y.iter().map(|&v| f64::from(v)).collect();
        for pr in products {
            for i in 0..rows {
                for j in 0..cols {
                    let mut s = 0.0;
                    for k in 0..pr.rank {
                        s += f64::from(pr.p[i * pr.rank + k]) * f64::from(pr.b[k * cols + j]);
                    }
                    out[i * cols + j] += f64::from(pr.c) * s;
                }
            }
        }
        out
    }

    fn data(len: usize, seed: u32) -> Vec<f32> {
        // A fixed, sign-changing sequence in [-1, 1].
        (0..len)
            .map(|i| {
                let x = u32::try_from(i).unwrap_or(0).wrapping_mul(2_654_435_761) ^ seed;
                f32::from(u16::try_from(x % 2001).unwrap_or(0)) / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn matches_the_plain_products_at_every_tile_edge() {
        // Rows and columns on and off the tile sizes, ranks 1 to 17, two products.
        for (rows, cols) in [
            (1, 1),
            (3, 15),
            (4, 16),
            (5, 17),
            (8, 384),
            (9, 40),
            (64, 33),
        ] {
            for (r0, r1) in [(1, 3), (16, 16), (17, 2)] {
                let y0 = data(rows * cols, 1);
                let (p0, b0) = (data(rows * r0, 2), data(r0 * cols, 3));
                let (p1, b1) = (data(rows * r1, 4), data(r1 * cols, 5));
                let products = [
                    Product {
                        p: &p0,
                        b: &b0,
                        rank: r0,
                        c: 1.0,
                    },
                    Product {
                        p: &p1,
                        b: &b1,
                        rank: r1,
                        c: -0.75,
                    },
                ];
                let want = reference(&y0, cols, &products);
                for fused in [false, true] {
                    let mut y = y0.clone();
                    if fused {
                        accumulate(&mut y, cols, &products);
                    } else {
                        tiles::<false>(&mut y, cols, &products);
                    }
                    for (i, (&got, &w)) in y.iter().zip(&want).enumerate() {
                        assert!(
                            (f64::from(got) - w).abs() <= 1e-5 * (1.0 + w.abs()),
                            "{rows}×{cols}, ranks {r0}, {r1}, fused {fused}: element {i} is {got}, want {w}"
                        );
                    }
                }
            }
        }
    }
}
