//! Pooling.
//!
//! ```text
//! MaxPool       ∂x = reshape(ScatterElements(zeros(N·C·H·W), flat(indices), flat(g),
//!                            reduction = add), shape(x))
//!               (indices: the primal's own `Indices` output, which the driver
//!               adds where the model does not use it; one index per window)
//!               before opset 16 (no scatter-add), by masks, for each kernel offset k:
//!               s_k = Conv(pad(x, −∞), onehot_k; group C)      x sampled at offset k
//!               m_k = (s_k = y) and no earlier offset took the window
//!               ∂x = unpad(Σ_k ConvTranspose(Where(m_k, g, 0), onehot_k; group C))
//! AveragePool   ∂x = ConvTranspose(g / count, ones[C, 1, K…]; group C, strides, pads)
//!               count: per output position, the number of elements the window
//!               averaged (K… when count_include_pad, else those inside x)
//! ```
//! One index per window, the first in scan order, as `PyTorch`.

use super::conv::{Geometry, geometry};
use super::{Grads, Vjp, required, single};
use crate::autodiff::AutodiffError;
use crate::autodiff::emit::{Emitter, Ty, to_f64, to_i64, to_usize};
use crate::ir::attr;

/// `MaxPool`, through its `Indices` output.
///
/// # Errors
/// No indices; a non-default storage order; no static type.
pub fn max_pool(
    e: &mut Emitter,
    v: &Vjp<'_>,
    g: &[Option<String>],
) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    if e.opset() < 16 {
        return max_pool_by_masks(e, v, &g);
    }
    if attr::int(v.node, "storage_order", 0) != 0 {
        return Err(v.unsupported("storage_order = 1"));
    }
    let Some(indices) = v.outputs.get(1).filter(|s| !s.is_empty()) else {
        return Err(AutodiffError::Internal {
            message: format!("{}: MaxPool without its Indices output", v.display),
        });
    };
    let x = required(v, 0)?;
    let tx = e.ty(x)?.clone();
    let n = e.ty(&g)?.numel();
    let flat_i = e.reshape(indices, &[n])?;
    let flat_g = e.reshape(&g, &[n])?;
    let zty = tx.with_dims(&[tx.numel()]);
    let zeros = e.filled(&zty, 0.0)?;
    let s = e.op(
        "ScatterElements",
        &[&zeros, &flat_i, &flat_g],
        vec![
            attr::make_int("axis", 0),
            attr::make_string("reduction", "add"),
        ],
        zty,
    );
    Ok(vec![Some(e.reshape(&s, &tx.dims)?)])
}

/// How many of the window's positions `o·s + k·d − pb` (k < K) fall inside
/// `[0, size)`, for each output position `o < out`.
fn inside_counts(size: i64, out: i64, k: i64, s: i64, d: i64, pb: i64) -> Vec<i64> {
    (0..out)
        .map(|o| {
            to_i64(
                (0..k)
                    .filter(|&j| {
                        let p = o * s + j * d - pb;
                        (0..size).contains(&p)
                    })
                    .count(),
            )
        })
        .collect()
}

/// `AveragePool`.
///
/// # Errors
/// No `kernel_shape`; an output larger than the input allows; no static type.
pub fn average_pool(
    e: &mut Emitter,
    v: &Vjp<'_>,
    g: &[Option<String>],
) -> Result<Grads, AutodiffError> {
    let g = single(v, g)?;
    let x = required(v, 0)?;
    let (tx, tg) = (e.ty(x)?.clone(), e.ty(&g)?.clone());
    let kernel =
        attr::ints(v.node, "kernel_shape").ok_or_else(|| v.unsupported("no kernel_shape"))?;
    let spatial = &tx.dims[2..];
    let out = &tg.dims[2..];
    let geo = geometry(v, spatial, &kernel)?;
    let sp = spatial.len();
    let include_pad = attr::int(v.node, "count_include_pad", 0) != 0;
    // Per-position divisors, separable by axis.
    let per_axis: Vec<Vec<i64>> = (0..sp)
        .map(|i| {
            if include_pad {
                // Padding counts; positions beyond the end pad (ceil_mode) do not.
                inside_counts(
                    spatial[i] + geo.begin[i] + geo.end[i],
                    out[i],
                    kernel[i],
                    geo.strides[i],
                    geo.dilations[i],
                    0,
                )
            } else {
                inside_counts(
                    spatial[i],
                    out[i],
                    kernel[i],
                    geo.strides[i],
                    geo.dilations[i],
                    geo.begin[i],
                )
            }
        })
        .collect();
    let total: usize = out.iter().map(|&o| to_usize(o)).product();
    let mut inv = Vec::with_capacity(total);
    for flat in 0..total {
        let mut rem = flat;
        let mut c = 1i64;
        for i in (0..sp).rev() {
            let o = to_usize(out[i]).max(1);
            c *= per_axis[i][rem % o];
            rem /= o;
        }
        inv.push(if c > 0 { 1.0 / to_f64(c) } else { 0.0 });
    }
    let mut cdims = vec![1, 1];
    cdims.extend_from_slice(out);
    let inv = e.float_const(tx.elem, &cdims, &inv);
    let scaled = e.mul(&g, &inv)?;
    let c = tx.dims[1];
    let mut kdims = vec![c, 1];
    kdims.extend_from_slice(&kernel);
    let ones = e.float_const(
        tx.elem,
        &kdims,
        &vec![1.0; to_usize(kdims.iter().product::<i64>())],
    );
    let output_padding: Vec<i64> = (0..sp)
        .map(|i| {
            spatial[i]
                - ((out[i] - 1) * geo.strides[i] + (kernel[i] - 1) * geo.dilations[i] + 1
                    - geo.begin[i]
                    - geo.end[i])
        })
        .collect();
    if output_padding
        .iter()
        .zip(&geo.strides)
        .any(|(&p, &s)| p < 0 || p >= s.max(1))
    {
        return Err(v.unsupported("a window geometry (ceil_mode) ConvTranspose cannot invert"));
    }
    let pads: Vec<i64> = geo.begin.iter().chain(&geo.end).copied().collect();
    let mut attrs = vec![
        attr::make_ints("kernel_shape", &kernel),
        attr::make_ints("strides", &geo.strides),
        attr::make_ints("dilations", &geo.dilations),
        attr::make_ints("pads", &pads),
        attr::make_int("group", c),
    ];
    if output_padding.iter().any(|&p| p != 0) {
        attrs.push(attr::make_ints("output_padding", &output_padding));
    }
    Ok(vec![Some(e.op(
        "ConvTranspose",
        &[&scaled, &ones],
        attrs,
        tx,
    ))])
}

/// `MaxPool` by one mask per kernel offset (see the module docs).
fn max_pool_by_masks(e: &mut Emitter, v: &Vjp<'_>, g: &str) -> Result<Grads, AutodiffError> {
    let x = required(v, 0)?;
    let y = v.outputs[0].clone();
    let (tx, ty) = (e.ty(x)?.clone(), e.ty(&y)?.clone());
    let kernel =
        attr::ints(v.node, "kernel_shape").ok_or_else(|| v.unsupported("no kernel_shape"))?;
    let spatial = tx.dims[2..].to_vec();
    let out = ty.dims[2..].to_vec();
    let geo = geometry(v, &spatial, &kernel)?;
    let sp = spatial.len();
    let c = tx.dims[1];
    let padded: Vec<i64> = (0..sp)
        .map(|i| spatial[i] + geo.begin[i] + geo.end[i])
        .collect();
    for i in 0..sp {
        let floor = (padded[i] - (kernel[i] - 1) * geo.dilations[i] - 1) / geo.strides[i] + 1;
        if floor != out[i] {
            return Err(v.unsupported("ceil_mode windows before opset 16"));
        }
    }
    let mut pdims = vec![tx.dims[0], c];
    pdims.extend_from_slice(&padded);
    let xp = pad_below(e, x, &tx, &geo, &pdims);
    let output_padding: Vec<i64> = (0..sp)
        .map(|i| {
            padded[i] - ((out[i] - 1) * geo.strides[i] + (kernel[i] - 1) * geo.dilations[i] + 1)
        })
        .collect();
    let taps = to_usize(kernel.iter().product::<i64>());
    let zero = e.scalar(tx.elem, 0.0);
    let mut kdims = vec![c, 1];
    kdims.extend_from_slice(&kernel);
    let mut taken: Option<String> = None;
    let mut terms = Vec::with_capacity(taps);
    for tap in 0..taps {
        // A one-hot kernel at this offset, for every channel.
        let mut w = vec![0.0; to_usize(c) * taps];
        for ch in 0..to_usize(c) {
            w[ch * taps + tap] = 1.0;
        }
        let onehot = e.float_const(tx.elem, &kdims, &w);
        let conv_attrs = vec![
            attr::make_ints("kernel_shape", &kernel),
            attr::make_ints("strides", &geo.strides),
            attr::make_ints("dilations", &geo.dilations),
            attr::make_int("group", c),
        ];
        let sampled = e.op("Conv", &[&xp, &onehot], conv_attrs.clone(), ty.clone());
        let eq = e.equal(&sampled, &y)?;
        let hit = super::first_hit(e, eq, &mut taken)?;
        let masked = e.op("Where", &[&hit, g, &zero], Vec::new(), ty.clone());
        let mut attrs = conv_attrs;
        if output_padding.iter().any(|&p| p != 0) {
            attrs.push(attr::make_ints("output_padding", &output_padding));
        }
        terms.push(e.op(
            "ConvTranspose",
            &[&masked, &onehot],
            attrs,
            tx.with_dims(&pdims),
        ));
    }
    let total = e.sum(&terms)?;
    let gx = if pdims == tx.dims {
        total
    } else {
        let starts = geo.begin.clone();
        let ends: Vec<i64> = (0..sp).map(|i| geo.begin[i] + spatial[i]).collect();
        let axes: Vec<i64> = (2..2 + to_i64(sp)).collect();
        super::layout::slice_of(e, &total, &starts, &ends, &axes, &tx.dims)?
    };
    let mut out: Grads = vec![Some(gx)];
    out.resize(v.inputs.len(), None);
    Ok(out)
}

/// `x` padded by the window geometry's pads with a value below every element,
/// so that a pad never attains a window's maximum; `x` itself without pads.
fn pad_below(e: &mut Emitter, x: &str, tx: &Ty, geo: &Geometry, pdims: &[i64]) -> String {
    // x padded with a value below every element, so a pad never attains the max.
    let low = match tx.elem {
        crate::autodiff::emit::elem::F64 => -1e300,
        crate::autodiff::emit::elem::F16 => -65000.0,
        _ => -3.0e38,
    };
    if geo.begin.iter().chain(&geo.end).all(|&p| p == 0) {
        x.to_owned()
    } else {
        let mut pads = vec![0, 0];
        pads.extend_from_slice(&geo.begin);
        pads.extend([0, 0]);
        pads.extend_from_slice(&geo.end);
        if e.opset() >= 11 {
            let p = e.ints(&pads);
            let value = e.scalar(tx.elem, low);
            e.op("Pad", &[x, &p, &value], Vec::new(), tx.with_dims(pdims))
        } else {
            #[allow(clippy::cast_possible_truncation)] // the attribute is a float
            let value = attr::make_float("value", low as f32);
            e.op(
                "Pad",
                &[x],
                vec![attr::make_ints("pads", &pads), value],
                tx.with_dims(pdims),
            )
        }
    }
}
