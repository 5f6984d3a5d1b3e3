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

use super::{OP_TYPE, same_bits};

/// Rows of a tile.
const ROWS: usize = 4;
/// Columns of a tile: two AVX registers of f32.
const LANES: usize = 16;

/// `y = acc + Σⱼ cⱼ·(pⱼ·Bⱼ)` for f32: inputs `acc, p₀, B₀, p₁, B₁, …`, where `acc` is
/// `[…, m, d]`, each `pⱼ` is `[…, m, rⱼ]` with the same leading dimensions, and each
/// `Bⱼ` is `[rⱼ, d]`, or, for a product built packed, `Bⱼ` in the kernel's layout
/// (its full tiles of 16 columns one after the other, then the columns left; rank 1): `LaurelResidual` packs a constant `B` when it wires the op, so
/// that each tile reads its part of `B` as one stream. The output is `acc`'s shape; it
/// reuses `acc`'s buffer when nothing else holds it.
#[derive(Clone, Debug)]
pub struct LowRankAccumulate {
    coefficients: Vec<f32>,
    packed: Vec<bool>,
}

impl LowRankAccumulate {
    /// The op with one coefficient per product, whose `B`s are matrices.
    pub fn new(coefficients: Vec<f32>) -> TractResult<Self> {
        let packed = vec![false; coefficients.len()];
        Self::with_packed(coefficients, packed)
    }

    /// The op with one coefficient per product, and whether each product's `B`
    /// input is packed (in the kernel's layout, see the type).
    pub fn with_packed(coefficients: Vec<f32>, packed: Vec<bool>) -> TractResult<Self> {
        ensure!(
            !coefficients.is_empty() && packed.len() == coefficients.len(),
            "{OP_TYPE}: a low-rank accumulation needs a product, and a packing flag for each"
        );
        Ok(LowRankAccumulate {
            coefficients,
            packed,
        })
    }

    /// Whether each product's `B` input is packed.
    #[must_use]
    pub fn packed(&self) -> &[bool] {
        &self.packed
    }

    /// Whether the op can take `acc` and the pairs `(p, B)`, `B` a matrix: f32, `acc`
    /// of rank ≥ 1, each `p` of `acc`'s rank and leading dimensions, each `B` `[r, d]`
    /// with `r` the last dimension of `p` and `d` that of `acc`.
    #[must_use]
    pub fn fits(acc: &TypedFact, pairs: &[(&TypedFact, &TypedFact)]) -> bool {
        acc.rank() >= 1
            && acc.datum_type == DatumType::F32
            && pairs.iter().all(|(p, b)| pair_fits(acc, p, b, false))
    }
}

/// Whether `acc` and the pair `(p, B)` fit the op, `B` a matrix or, when `packed`,
/// in the kernel's layout (rank 1, `r·d` elements).
fn pair_fits(acc: &TypedFact, p: &TypedFact, b: &TypedFact, packed: bool) -> bool {
    let rank = acc.rank();
    // `p`'s rank first: the shapes are indexed by it below.
    rank >= 1
        && p.rank() == rank
        && [acc, p, b].iter().all(|f| f.datum_type == DatumType::F32)
        && p.shape[..rank - 1] == acc.shape[..rank - 1]
        && if packed {
            b.rank() == 1 && b.shape[0] == p.shape[rank - 1].clone() * acc.shape[rank - 1].clone()
        } else {
            b.rank() == 2 && p.shape[rank - 1] == b.shape[0] && b.shape[1] == acc.shape[rank - 1]
        }
}

// Coefficients compare by bits, as `LaurelResidualKernel`'s do.
impl PartialEq for LowRankAccumulate {
    fn eq(&self, other: &Self) -> bool {
        self.packed == other.packed && same_bits(&self.coefficients, &other.coefficients)
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
        Ok(vec![
            format!("coefficients: {:?}", self.coefficients),
            format!("packed: {:?}", self.packed),
        ])
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
        let Some((&cols, lead)) = shape.split_last() else {
            bail!("{OP_TYPE}: a scalar accumulator");
        };
        let rows: usize = lead.iter().product();
        let mut views = Vec::with_capacity(pairs.len());
        for (pair, &packed) in pairs.chunks_exact(2).zip(&self.packed) {
            let (p, b) = (&pair[0], &pair[1]);
            let (ps, bs) = (p.shape(), b.shape());
            let rank = ps.last().copied().unwrap_or(0);
            let b_fits = if packed {
                bs == [rank * cols]
            } else {
                bs == [rank, cols]
            };
            ensure!(
                ps.len() == shape.len() && &ps[..ps.len() - 1] == lead && b_fits,
                "{OP_TYPE}: a product of {ps:?} by {bs:?} (packed: {packed}) into {shape:?}"
            );
            views.push((
                p.to_plain_array_view::<f32>()?,
                b.to_plain_array_view::<f32>()?,
                rank,
                packed,
            ));
        }
        // `B`s that were not packed when the op was wired are packed now.
        let mut packs: Vec<Option<Vec<f32>>> = Vec::with_capacity(views.len());
        for (_, b, rank, packed) in &views {
            packs.push(if *packed {
                None
            } else {
                let b = b.as_slice().context("non-contiguous low-rank weight")?;
                Some(pack(b, *rank, cols))
            });
        }
        let mut products = Vec::with_capacity(views.len());
        for (((p, b, rank, _), own), &c) in views.iter().zip(&packs).zip(&self.coefficients) {
            let b = match own {
                Some(v) => v.as_slice(),
                None => b.as_slice().context("non-contiguous low-rank weight")?,
            };
            let (tiles, tail) = b.split_at(cols / LANES * LANES * rank);
            products.push(Product {
                p: p.as_slice().context("non-contiguous low-rank input")?,
                rank: *rank,
                c,
                tiles,
                tail,
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
        let acc = inputs[0];
        let fits = inputs[1..]
            .chunks_exact(2)
            .zip(&self.packed)
            .all(|(pair, &packed)| pair_fits(acc, pair[0], pair[1], packed));
        ensure!(
            fits,
            "{OP_TYPE}: low-rank products that do not fit: {inputs:?}"
        );
        Ok(tvec!(DatumType::F32.fact(acc.shape.clone())))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let count: TDim = inputs[0].shape.iter().product();
        let depth: TDim = inputs[1..]
            .chunks_exact(2)
            .filter_map(|pair| pair[0].shape.last().cloned())
            .sum();
        Ok(tvec!((Cost::FMA(DatumType::F32), count * depth)))
    }

    as_op!();
}

/// One product `c·(p·B)`: `p` is `rows × rank`, row-major; `B` (`rank × cols`) is
/// given packed ([`pack`]): its full tiles, then its tail.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Product<'a> {
    /// `rows × rank`.
    pub p: &'a [f32],
    /// The inner dimension.
    pub rank: usize,
    /// The coefficient.
    pub c: f32,
    /// `B`'s full tiles of [`LANES`] columns, one after the other, each `rank × LANES`
    /// row-major.
    pub tiles: &'a [f32],
    /// `B`'s columns past the last full tile, `rank × (cols mod LANES)` row-major.
    pub tail: &'a [f32],
}

/// `b` (`rank × cols`, row-major) in the kernel's layout: its full tiles of [`LANES`]
/// columns one after the other, each `rank × LANES` row-major (what a tile of the
/// kernel reads, in the order it reads it), then the columns left,
/// `rank × (cols mod LANES)` row-major. As many elements as `b`; the callers check
/// that `b` has `rank · cols` (a shorter slice would panic).
#[must_use]
pub(crate) fn pack(b: &[f32], rank: usize, cols: usize) -> Vec<f32> {
    let full = cols / LANES * LANES;
    let mut out = Vec::with_capacity(rank * cols);
    for t in (0..full).step_by(LANES) {
        for k in 0..rank {
            out.extend_from_slice(&b[k * cols + t..][..LANES]);
        }
    }
    for k in 0..rank {
        out.extend_from_slice(&b[k * cols + full..(k + 1) * cols]);
    }
    out
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

/// One step of depth for a tile: `acc[q] += pk[q]·b` for each of its `R` rows.
#[allow(clippy::inline_always)]
#[inline(always)]
fn tile_step<const FMA: bool, const R: usize>(acc: &mut [[f32; LANES]; R], pk: &[f32], b: &[f32]) {
    let (Ok(pk), Ok(b)) = (<&[f32; R]>::try_from(pk), <&[f32; LANES]>::try_from(b)) else {
        return;
    };
    for (a, &pv) in acc.iter_mut().zip(pk) {
        for l in 0..LANES {
            a[l] = madd::<FMA>(pv, b[l], a[l]);
        }
    }
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
            let tile = &pr.tiles[col * pr.rank..][..pr.rank * LANES];
            for (pk, b) in ps.by_ref().zip(tile.chunks_exact(LANES)).take(pr.rank) {
                tile_step::<FMA, R>(&mut acc, pk, b);
            }
        }
        for (q, a) in acc.iter().enumerate() {
            y[(row + q) * cols + col..][..LANES].copy_from_slice(a);
        }
        col += LANES;
    }
    let rest = cols - full;
    for q in 0..R {
        for c in 0..rest {
            let mut s = y[(row + q) * cols + full + c];
            let mut ps = scratch.chunks_exact(R);
            for pr in products {
                for (pk, b_row) in ps.by_ref().zip(pr.tail.chunks_exact(rest)).take(pr.rank) {
                    s = madd::<FMA>(pk[q], b_row[c], s);
                }
            }
            y[(row + q) * cols + full + c] = s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `y + Σ c·(p·B)` in f64, the plain way, `B` row-major.
    fn reference(y: &[f32], cols: usize, products: &[(&[f32], &[f32], usize, f32)]) -> Vec<f64> {
        let rows = y.len() / cols;
        let mut out: Vec<f64> = y.iter().map(|&v| f64::from(v)).collect();
        for &(p, b, rank, c) in products {
            for i in 0..rows {
                for j in 0..cols {
                    let mut s = 0.0;
                    for k in 0..rank {
                        s += f64::from(p[i * rank + k]) * f64::from(b[k * cols + j]);
                    }
                    out[i * cols + j] += f64::from(c) * s;
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
    fn packing_keeps_every_element_once() {
        // 2 × 35: two full tiles of 16 columns, then a tail of 3.
        let b: Vec<f32> = (0..70u8).map(f32::from).collect();
        let packed = pack(&b, 2, 35);
        assert_eq!(packed.len(), 70);
        assert_eq!(&packed[..16], &b[..16]); // tile 0, row 0
        assert_eq!(&packed[16..32], &b[35..51]); // tile 0, row 1
        assert_eq!(&packed[32..48], &b[16..32]); // tile 1, row 0
        assert_eq!(&packed[64..67], &b[32..35]); // tail, row 0
        assert_eq!(&packed[67..], &b[67..]); // tail, row 1
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
                let (k0, k1) = (pack(&b0, r0, cols), pack(&b1, r1, cols));
                let (t0, e0) = k0.split_at(cols / LANES * LANES * r0);
                let (t1, e1) = k1.split_at(cols / LANES * LANES * r1);
                let products = [
                    Product {
                        p: &p0,
                        rank: r0,
                        c: 1.0,
                        tiles: t0,
                        tail: e0,
                    },
                    Product {
                        p: &p1,
                        rank: r1,
                        c: -0.75,
                        tiles: t1,
                        tail: e1,
                    },
                ];
                let want = reference(&y0, cols, &[(&p0, &b0, r0, 1.0), (&p1, &b1, r1, -0.75)]);
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
