//! Convolution, any spatial rank, grouped and depthwise, strided and dilated.
//!
//! With `X: [N, C, S…]`, `W: [M, C/g, K…]`, `G = ∂Y: [N, M, O…]`, strides `s`,
//! dilations `d`, pads `pb` (begin) and `pe` (end):
//! ```text
//! ∂X = ConvTranspose(G, W; s, d, pads, group g, output_padding = S − ((O−1)·s + (K−1)·d + 1 − pb − pe))
//! ∂W = Transpose₁₀(Conv(X′, G′; strides d, dilations s, pads′, group g))
//!      X′ = X as [C/g, g·N, S…] (channel (j, n) of batch c′ is X[n, j·C/g + c′]),
//!           less the tail a stride leaves unread (end pad first, then input),
//!           so that the Conv computes exactly the K taps
//!      G′ = Transpose₁₀(G): [M, N, O…]
//! ∂B = ReduceSum(G, [0, 2, 3, …])
//! ```
//! `auto_pad` is resolved to explicit pads first.
//!
//! `ConvTranspose` is the adjoint of a `Conv` with its attributes, so its
//! rule is the same two convolutions the other way round. With
//! `X: [N, C, S…]`, `W: [C, M/g, K…]`, `G = ∂Y: [N, M, O…]`:
//! ```text
//! ∂X = Conv(G, W; s, d, pads, group g)                  (a Conv from O… to S…)
//! ∂W = the ∂W of that Conv, its input G and its output's gradient X
//! ∂B = ReduceSum(G, [0, 2, 3, …])
//! ```
//! Explicit pads (and `output_padding`) only: `output_shape` and the `SAME`
//! modes split their padding differently across runtimes, and are refused
//! unless they pad nothing.

use super::{Grads, Vjp, required, single};
use crate::autodiff::AutodiffError;
use crate::autodiff::emit::{Emitter, to_i64};
use crate::ir::attr;

/// A convolution's geometry, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    /// Kernel size per spatial axis.
    pub kernel: Vec<i64>,
    /// Strides.
    pub strides: Vec<i64>,
    /// Dilations.
    pub dilations: Vec<i64>,
    /// Begin pads.
    pub begin: Vec<i64>,
    /// End pads.
    pub end: Vec<i64>,
}

/// The geometry of a `Conv`-like node over `spatial` input sizes with
/// `kernel` sizes.
///
/// # Errors
/// Attribute lists of the wrong length, or an unknown `auto_pad`.
pub fn geometry(v: &Vjp<'_>, spatial: &[i64], kernel: &[i64]) -> Result<Geometry, AutodiffError> {
    let n = spatial.len();
    let list = |name: &str, default: i64, len: usize| -> Result<Vec<i64>, AutodiffError> {
        match attr::ints(v.node, name) {
            None => Ok(vec![default; len]),
            Some(l) if l.len() == len => Ok(l),
            Some(l) => Err(v.unsupported(&format!("`{name}` has {} values for {len}", l.len()))),
        }
    };
    let strides = list("strides", 1, n)?;
    let dilations = list("dilations", 1, n)?;
    let pads = list("pads", 0, 2 * n)?;
    let (mut begin, mut end) = (pads[..n].to_vec(), pads[n..].to_vec());
    match attr::string(v.node, "auto_pad").as_deref() {
        None | Some("NOTSET" | "") => {}
        Some("VALID") => {
            begin = vec![0; n];
            end = vec![0; n];
        }
        Some(mode @ ("SAME_UPPER" | "SAME_LOWER")) => {
            for i in 0..n {
                let out = (spatial[i] + strides[i] - 1) / strides[i];
                let total = ((out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1
                    - spatial[i])
                    .max(0);
                let small = total / 2;
                if mode == "SAME_UPPER" {
                    (begin[i], end[i]) = (small, total - small);
                } else {
                    (begin[i], end[i]) = (total - small, small);
                }
            }
        }
        Some(other) => return Err(v.unsupported(&format!("auto_pad = \"{other}\""))),
    }
    Ok(Geometry {
        kernel: kernel.to_vec(),
        strides,
        dilations,
        begin,
        end,
    })
}

/// `Conv`.
#[allow(clippy::too_many_lines)] // ∂X, ∂W and ∂B, as in the module docs
///
/// # Errors
/// A value without a static type; inconsistent attributes.
pub fn conv(e: &mut Emitter, v: &Vjp<'_>, g: &[Option<String>]) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let (x, w) = (required(v, 0)?, required(v, 1)?);
    let (tx, tw, tg) = (e.ty(x)?.clone(), e.ty(w)?.clone(), e.ty(&g)?.clone());
    if tx.rank() < 3 || tw.rank() != tx.rank() || tg.rank() != tx.rank() {
        return Err(v.unsupported("input, weight and output ranks differ"));
    }
    let c = tx.dims[1];
    let m = tw.dims[0];
    let groups = attr::int(v.node, "group", 1);
    if groups < 1 || c % groups != 0 || m % groups != 0 {
        return Err(v.unsupported(&format!("group {groups} does not divide the channels")));
    }
    let spatial = &tx.dims[2..];
    let out = &tg.dims[2..];
    let geo = geometry(v, spatial, &tw.dims[2..])?;
    let sp = spatial.len();
    let pads: Vec<i64> = geo.begin.iter().chain(&geo.end).copied().collect();

    let gx = if v.need(0) {
        let output_padding: Vec<i64> = (0..sp)
            .map(|i| {
                spatial[i]
                    - ((out[i] - 1) * geo.strides[i] + (geo.kernel[i] - 1) * geo.dilations[i] + 1
                        - geo.begin[i]
                        - geo.end[i])
            })
            .collect();
        if output_padding.iter().any(|&p| p < 0) {
            return Err(v.unsupported("the output is larger than the input allows"));
        }
        let mut attrs = vec![
            attr::make_ints("kernel_shape", &geo.kernel),
            attr::make_ints("strides", &geo.strides),
            attr::make_ints("dilations", &geo.dilations),
            attr::make_ints("pads", &pads),
            attr::make_int("group", groups),
        ];
        if output_padding.iter().any(|&p| p != 0) {
            attrs.push(attr::make_ints("output_padding", &output_padding));
        }
        Some(e.op("ConvTranspose", &[&g, w], attrs, tx.clone()))
    } else {
        None
    };

    let gw = if v.need(1) {
        Some(weight_grad(e, x, &g, &tw, groups, &geo)?)
    } else {
        None
    };

    Ok(vec![gx, gw, bias_grad(e, v, &g, sp)?])
}

/// The weight gradient of a `Conv` from `x: [N, C, S…]` with weights of type
/// `tw: [M, C/g, K…]` to an output whose gradient is `g: [N, M, O…]`, as in
/// the module docs.
///
/// # Errors
/// A value without a static type.
fn weight_grad(
    e: &mut Emitter,
    x: &str,
    g: &str,
    tw: &crate::autodiff::emit::Ty,
    groups: i64,
    geo: &Geometry,
) -> Result<String, AutodiffError> {
    let (tx, tg) = (e.ty(x)?.clone(), e.ty(g)?.clone());
    let (n, c) = (tx.dims[0], tx.dims[1]);
    let m = tw.dims[0];
    let spatial = &tx.dims[2..];
    let out = &tg.dims[2..];
    let sp = spatial.len();
    let cg = c / groups;
    let rest: Vec<usize> = (3..3 + sp).collect();
    // X′: [C/g, g·N, S…]
    let xp = if groups == 1 {
        let mut perm = vec![1, 0];
        perm.extend(2..2 + sp);
        e.transpose(x, &perm)?
    } else {
        let mut d5 = vec![n, groups, cg];
        d5.extend_from_slice(spatial);
        let r = e.reshape(x, &d5)?;
        let mut perm = vec![2, 1, 0];
        perm.extend(rest.iter().copied());
        let t = e.transpose(&r, &perm)?;
        let mut d = vec![cg, groups * n];
        d.extend_from_slice(spatial);
        e.reshape(&t, &d)?
    };
    let mut perm = vec![1, 0];
    perm.extend(2..2 + sp);
    let gp = e.transpose(g, &perm)?;
    // Only the padded input's first (O−1)·s + (K−1)·d + 1 positions reach
    // the output; a stride that does not divide the input leaves a tail
    // the forward never read. Trimmed first (end pad, then input), the
    // weight-gradient Conv computes exactly K taps: a strided 1×1
    // convolution on an even size would otherwise compute 2×2 taps, 4×
    // its work, and slice 3 of them away (measured on ResNet-50).
    let mut end = geo.end.clone();
    let mut keep: Vec<i64> = spatial.to_vec();
    for i in 0..sp {
        let span = (out[i] - 1) * geo.strides[i] + (geo.kernel[i] - 1) * geo.dilations[i] + 1;
        let extra = (spatial[i] + geo.begin[i] + geo.end[i] - span).max(0);
        let from_pad = extra.min(end[i]);
        end[i] -= from_pad;
        // At least one input position stays (a begin pad may cover all
        // that is read); the Slice of the taps below then cuts the rest.
        keep[i] = (keep[i] - (extra - from_pad)).max(1);
    }
    let xp = if keep.as_slice() == spatial {
        xp
    } else {
        let axes: Vec<i64> = (2..2 + to_i64(sp)).collect();
        let mut d = e.ty(&xp)?.dims[..2].to_vec();
        d.extend_from_slice(&keep);
        super::layout::slice_of(e, &xp, &vec![0; sp], &keep, &axes, &d)?
    };
    let pads: Vec<i64> = geo.begin.iter().chain(&end).copied().collect();
    let full: Vec<i64> = (0..sp)
        .map(|i| {
            (keep[i] + geo.begin[i] + end[i] - (out[i] - 1) * geo.strides[i] - 1) / geo.dilations[i]
                + 1
        })
        .collect();
    let mut dims = vec![cg, m];
    dims.extend_from_slice(&full);
    let attrs = vec![
        attr::make_ints("kernel_shape", out),
        attr::make_ints("strides", &geo.dilations),
        attr::make_ints("dilations", &geo.strides),
        attr::make_ints("pads", &pads),
        attr::make_int("group", groups),
    ];
    let cw = e.op("Conv", &[&xp, &gp], attrs, tw.with_dims(&dims));
    let cut = if full == geo.kernel {
        cw
    } else {
        let axes: Vec<i64> = (2..2 + to_i64(sp)).collect();
        let mut d = vec![cg, m];
        d.extend_from_slice(&geo.kernel);
        super::layout::slice_of(e, &cw, &vec![0; sp], &geo.kernel, &axes, &d)?
    };
    e.transpose(&cut, &perm)
}

/// `ConvTranspose`, as the adjoint of a `Conv` (module docs).
///
/// # Errors
/// A value without a static type; `output_shape` or a `SAME` mode that pads;
/// sizes that do not match the attributes.
pub fn conv_transpose(
    e: &mut Emitter,
    v: &Vjp<'_>,
    g: &[Option<String>],
) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let (x, w) = (required(v, 0)?, required(v, 1)?);
    let (tx, tw, tg) = (e.ty(x)?.clone(), e.ty(w)?.clone(), e.ty(&g)?.clone());
    if tx.rank() < 3 || tw.rank() != tx.rank() || tg.rank() != tx.rank() {
        return Err(v.unsupported("input, weight and output ranks differ"));
    }
    let (c, m) = (tx.dims[1], tg.dims[1]);
    let groups = attr::int(v.node, "group", 1);
    if groups < 1 || c % groups != 0 || m % groups != 0 || tw.dims[0] != c {
        return Err(v.unsupported(&format!("group {groups} does not divide the channels")));
    }
    let spatial = &tx.dims[2..];
    let out = &tg.dims[2..];
    let kernel = &tw.dims[2..];
    let sp = spatial.len();
    let list = |name: &str, default: i64, len: usize| -> Result<Vec<i64>, AutodiffError> {
        match attr::ints(v.node, name) {
            None => Ok(vec![default; len]),
            Some(l) if l.len() == len => Ok(l),
            Some(l) => Err(v.unsupported(&format!("`{name}` has {} values for {len}", l.len()))),
        }
    };
    let strides = list("strides", 1, sp)?;
    let dilations = list("dilations", 1, sp)?;
    let output_padding = list("output_padding", 0, sp)?;
    let auto_pad = attr::string(v.node, "auto_pad").unwrap_or_default();
    let pads = if auto_pad == "VALID" {
        vec![0; 2 * sp]
    } else {
        list("pads", 0, 2 * sp)?
    };
    let (begin, end) = (pads[..sp].to_vec(), pads[sp..].to_vec());
    // O = s·(S − 1) + output_padding + (K − 1)·d + 1 − pads.
    let unpadded: Vec<i64> = (0..sp)
        .map(|i| {
            strides[i] * (spatial[i] - 1) + output_padding[i] + (kernel[i] - 1) * dilations[i] + 1
        })
        .collect();
    let explicit = matches!(auto_pad.as_str(), "" | "NOTSET" | "VALID")
        && attr::get(v.node, "output_shape").is_none();
    if !explicit && unpadded.as_slice() != out {
        return Err(v.unsupported(
            "`output_shape` or a SAME `auto_pad` that pads (runtimes split such padding differently)",
        ));
    }
    let (begin, end) = if explicit {
        (begin, end)
    } else {
        (vec![0; sp], vec![0; sp])
    };
    if (0..sp).any(|i| unpadded[i] - begin[i] - end[i] != out[i]) {
        return Err(v.unsupported("the output's size does not follow from the attributes"));
    }
    // The Conv from O… to S… that this op is the adjoint of.
    let geo = Geometry {
        kernel: kernel.to_vec(),
        strides,
        dilations,
        begin,
        end,
    };
    if (0..sp).any(|i| {
        (out[i] + geo.begin[i] + geo.end[i] - (geo.kernel[i] - 1) * geo.dilations[i] - 1)
            / geo.strides[i]
            + 1
            != spatial[i]
    }) {
        return Err(v.unsupported("`output_padding` is not below the stride"));
    }
    let gx = if v.need(0) {
        let pads: Vec<i64> = geo.begin.iter().chain(&geo.end).copied().collect();
        let attrs = vec![
            attr::make_ints("kernel_shape", &geo.kernel),
            attr::make_ints("strides", &geo.strides),
            attr::make_ints("dilations", &geo.dilations),
            attr::make_ints("pads", &pads),
            attr::make_int("group", groups),
        ];
        Some(e.op("Conv", &[&g, w], attrs, tx.clone()))
    } else {
        None
    };
    let gw = if v.need(1) {
        Some(weight_grad(e, &g, x, &tw, groups, &geo)?)
    } else {
        None
    };
    Ok(vec![gx, gw, bias_grad(e, v, &g, sp)?])
}

/// The bias gradient of a convolution (input 2), if it has a bias that needs
/// one: `G` summed over the batch and the `sp` spatial axes.
///
/// # Errors
/// `g` has no static type.
fn bias_grad(
    e: &mut Emitter,
    v: &Vjp<'_>,
    g: &str,
    sp: usize,
) -> Result<Option<String>, AutodiffError> {
    if v.input(2).is_none() || !v.need(2) {
        return Ok(None);
    }
    let axes: Vec<usize> = std::iter::once(0).chain(2..2 + sp).collect();
    Ok(Some(e.reduce_sum(g, &axes, false)?))
}
