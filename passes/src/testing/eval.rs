//! A tiny reference evaluator for terms, on dense f64 tensors.
//!
//! Elementwise ops broadcast like numpy; `matmul` and `conv1x1` are linear
//! maps along the last axis and axis 1; the `LAuReL` terms are evaluated from
//! their definitions, not from their expansions: `laurel-lr` forms the
//! `C×C` matrix of `(·a)·b` first and applies it along the channel axis.

use std::collections::HashMap;

use egg::{Id, RecExpr};

use crate::block::Layout;
use crate::lang::TensorLang;

/// A dense row-major tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl Tensor {
    pub fn scalar(v: f64) -> Self {
        Self {
            shape: vec![],
            data: vec![v],
        }
    }

    fn at(&self, idx: &[usize]) -> f64 {
        let mut flat = 0;
        for (i, &d) in idx.iter().zip(&self.shape) {
            flat = flat * d + i;
        }
        self.data[flat]
    }

    /// The multi-index of each flat position.
    fn indices(shape: &[usize]) -> Vec<Vec<usize>> {
        let n: usize = shape.iter().product();
        (0..n)
            .map(|mut flat| {
                let mut idx = vec![0; shape.len()];
                for (i, &d) in shape.iter().enumerate().rev() {
                    idx[i] = flat % d;
                    flat /= d;
                }
                idx
            })
            .collect()
    }
}

/// `SplitMix64`: reproducible uniform values in [-1, 1).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // 52 random mantissa bits under exponent 0: a float in [1, 2).
        (f64::from_bits(0x3FF0_0000_0000_0000 | (z >> 12)) - 1.0) * 2.0 - 1.0
    }

    pub fn tensor(&mut self, shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        Tensor {
            shape: shape.to_vec(),
            data: (0..n).map(|_| self.next()).collect(),
        }
    }
}

fn broadcast(a: &Tensor, b: &Tensor, op: impl Fn(f64, f64) -> f64) -> Tensor {
    let rank = a.shape.len().max(b.shape.len());
    let dim = |s: &[usize], i: usize| (i + s.len()).checked_sub(rank).map_or(1, |j| s[j]);
    let shape: Vec<usize> = (0..rank)
        .map(|i| {
            let (x, y) = (dim(&a.shape, i), dim(&b.shape, i));
            assert!(x == y || x == 1 || y == 1, "{:?} vs {:?}", a.shape, b.shape);
            x.max(y)
        })
        .collect();
    let pick = |t: &Tensor, idx: &[usize]| {
        let off = rank - t.shape.len();
        let local: Vec<usize> = t
            .shape
            .iter()
            .enumerate()
            .map(|(j, &d)| if d == 1 { 0 } else { idx[off + j] })
            .collect();
        t.at(&local)
    };
    let data = Tensor::indices(&shape)
        .iter()
        .map(|idx| op(pick(a, idx), pick(b, idx)))
        .collect();
    Tensor { shape, data }
}

/// `out[.., k, ..] = Σ_c x[.., c, ..] · w(c, k)` along `axis`.
pub fn along_axis(
    x: &Tensor,
    axis: usize,
    out_dim: usize,
    w: impl Fn(usize, usize) -> f64,
) -> Tensor {
    let mut shape = x.shape.clone();
    shape[axis] = out_dim;
    let data = Tensor::indices(&shape)
        .iter()
        .map(|idx| {
            let mut src = idx.clone();
            (0..x.shape[axis])
                .map(|c| {
                    src[axis] = c;
                    x.at(&src) * w(c, idx[axis])
                })
                .sum()
        })
        .collect();
    Tensor { shape, data }
}

/// The ONNX ops the evaluator knows (all over the last axis where an axis
/// matters); any other `Onnx` term is looked up in the environment.
fn onnx_op(op_type: &str) -> bool {
    matches!(
        op_type,
        "Relu"
            | "Sqrt"
            | "Reciprocal"
            | "Pow"
            | "ReduceMean"
            | "LayerNormalization"
            | "MatMul"
            | "Conv"
            | "Concat"
    )
}

fn map(t: &Tensor, f: impl Fn(f64) -> f64) -> Tensor {
    Tensor {
        shape: t.shape.clone(),
        data: t.data.iter().map(|&x| f(x)).collect(),
    }
}

/// The mean over the last axis, kept as an axis of size 1.
#[allow(clippy::cast_precision_loss)] // small test tensors
fn mean_last(t: &Tensor) -> Tensor {
    let n = *t.shape.last().unwrap();
    let mut shape = t.shape.clone();
    *shape.last_mut().unwrap() = 1;
    Tensor {
        shape,
        data: t
            .data
            .chunks(n)
            .map(|c| c.iter().sum::<f64>() / n as f64)
            .collect(),
    }
}

/// An ONNX `Concat` of `parts`: along the one axis where their shapes
/// differ, or axis 0 when they are all alike (the term does not carry the
/// attribute).
fn concat_parts(parts: &[&Tensor]) -> Tensor {
    let first = &parts[0].shape;
    let k = (0..first.len())
        .find(|&k| parts.iter().any(|t| t.shape[k] != first[k]))
        .unwrap_or(0);
    let mut shape = first.clone();
    shape[k] = parts.iter().map(|t| t.shape[k]).sum();
    let outer: usize = first[..k].iter().product();
    let mut data = Vec::with_capacity(shape.iter().product());
    for o in 0..outer {
        for t in parts {
            let chunk = t.shape[k..].iter().product::<usize>();
            data.extend_from_slice(&t.data[o * chunk..(o + 1) * chunk]);
        }
    }
    Tensor { shape, data }
}

fn eval_onnx(op_type: &str, a: &[&Tensor]) -> Tensor {
    match op_type {
        "Relu" => map(a[0], |x| x.max(0.0)),
        "Sqrt" => map(a[0], f64::sqrt),
        "Reciprocal" => map(a[0], |x| 1.0 / x),
        "Pow" => broadcast(a[0], a[1], f64::powf),
        "ReduceMean" => mean_last(a[0]),
        "MatMul" => {
            let k = a[1].shape[1];
            along_axis(a[0], a[0].shape.len() - 1, k, matrix(a[1]))
        }
        "Conv" => {
            // 1×1 kernels, unit strides, no padding, one group, no bias.
            let w = a[1];
            along_axis(a[0], 1, w.shape[0], |c, k| w.at(&[k, c, 0, 0]))
        }
        "Concat" => concat_parts(a),
        "LayerNormalization" => {
            // x, scale, bias, ε (the last child).
            let x = a[0];
            let eps = a[a.len() - 1].data[0];
            let mean = mean_last(x);
            let centred = broadcast(x, &mean, |p, q| p - q);
            let var = mean_last(&map(&centred, |d| d * d));
            let normed = broadcast(&centred, &var, |d, v| d / (v + eps).sqrt());
            let scaled = broadcast(&normed, a[1], |p, q| p * q);
            broadcast(&scaled, a[2], |p, q| p + q)
        }
        other => panic!("no evaluator for {other}"),
    }
}

fn matrix(t: &Tensor) -> impl Fn(usize, usize) -> f64 + '_ {
    move |i, j| t.at(&[i, j])
}

/// The channel-map weight of `w1` then `w2` (`[in, out]` matrices or
/// `[out, in, 1, 1]` kernels).
fn compose(w1: &Tensor, w2: &Tensor) -> Tensor {
    if w1.shape.len() == 2 {
        return along_axis(w1, 1, w2.shape[1], matrix(w2));
    }
    let (o, m, i) = (w2.shape[0], w2.shape[1], w1.shape[1]);
    let shape = vec![o, i, 1, 1];
    let data = Tensor::indices(&shape)
        .iter()
        .map(|idx| {
            (0..m)
                .map(|k| w2.at(&[idx[0], k, 0, 0]) * w1.at(&[k, idx[1], 0, 0]))
                .sum()
        })
        .collect();
    Tensor { shape, data }
}

/// `a` and `b` joined along axis `k` (a scalar tensor).
fn concat(k: &Tensor, a: &Tensor, b: &Tensor) -> Tensor {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // small axes
    let k = k.data[0] as usize;
    let mut shape = a.shape.clone();
    shape[k] += b.shape[k];
    let data = Tensor::indices(&shape)
        .iter()
        .map(|idx| {
            if idx[k] < a.shape[k] {
                a.at(idx)
            } else {
                let mut j = idx.clone();
                j[k] -= a.shape[k];
                b.at(&j)
            }
        })
        .collect();
    Tensor { shape, data }
}

/// `x` cut to `start..end` on axis `k` (scalar tensors).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // small indices
fn slice(k: &Tensor, start: &Tensor, end: &Tensor, x: &Tensor) -> Tensor {
    let (k, start, end) = (
        k.data[0] as usize,
        start.data[0] as usize,
        end.data[0] as usize,
    );
    let mut shape = x.shape.clone();
    shape[k] = end - start;
    let data = Tensor::indices(&shape)
        .iter()
        .map(|idx| {
            let mut j = idx.clone();
            j[k] += start;
            x.at(&j)
        })
        .collect();
    Tensor { shape, data }
}

/// `Σ cᵢ·tᵢ` of `laurel-residual`'s operands `c₀ t₀ c₁ t₁ …`.
fn weighted_sum(operands: &[&Tensor]) -> Tensor {
    let mut acc = Tensor::scalar(0.0);
    for pair in operands.chunks(2) {
        let ct = broadcast(pair[0], pair[1], |p, q| p * q);
        acc = broadcast(&acc, &ct, |p, q| p + q);
    }
    acc
}

/// Evaluates `expr`; leaves are looked up in `env` by their text, and
/// `laurel-lr` acts along `channel_axis`.
#[allow(clippy::many_single_char_names)] // f, x, a, b, r, c, k: the paper's names
pub fn eval(
    expr: &RecExpr<TensorLang>,
    env: &HashMap<String, Tensor>,
    channel_axis: usize,
) -> Tensor {
    let mut values: Vec<Tensor> = Vec::with_capacity(expr.len());
    for node in expr {
        let v = |id: &Id| &values[usize::from(*id)];
        let out = match node {
            TensorLang::Num(c) => Tensor::scalar(c.to_f64()),
            TensorLang::Onnx(op, ch) if onnx_op(op.op_type()) => {
                let args: Vec<&Tensor> = ch.iter().map(|c| &values[usize::from(*c)]).collect();
                eval_onnx(op.op_type(), &args)
            }
            TensorLang::Value(_) | TensorLang::Param(_) | TensorLang::Onnx(..) => env
                .get(&node.to_string())
                .unwrap_or_else(|| panic!("no value for {node}"))
                .clone(),
            TensorLang::Add([a, b]) | TensorLang::ResAdd([a, b]) => {
                broadcast(v(a), v(b), |x, y| x + y)
            }
            TensorLang::Sub([a, b]) => broadcast(v(a), v(b), |x, y| x - y),
            TensorLang::Mul([a, b]) => broadcast(v(a), v(b), |x, y| x * y),
            TensorLang::Div([a, b]) => broadcast(v(a), v(b), |x, y| x / y),
            TensorLang::Sigmoid(a) => {
                let t = v(a);
                Tensor {
                    shape: t.shape.clone(),
                    data: t.data.iter().map(|x| 1.0 / (1.0 + (-x).exp())).collect(),
                }
            }
            TensorLang::MatMul([x, w]) => {
                let (x, w) = (v(x), v(w));
                along_axis(x, x.shape.len() - 1, w.shape[1], matrix(w))
            }
            TensorLang::Conv1x1([x, w]) => {
                let (x, w) = (v(x), v(w));
                // [out, in] or an ONNX kernel [out, in, 1, 1].
                let trailing = vec![0; w.shape.len() - 2];
                along_axis(x, 1, w.shape[0], |c, k| {
                    let idx: Vec<usize> =
                        [k, c].into_iter().chain(trailing.iter().copied()).collect();
                    w.at(&idx)
                })
            }
            TensorLang::Slice([k, start, end, x]) => slice(v(k), v(start), v(end), v(x)),
            TensorLang::Compose([w1, w2]) => compose(v(w1), v(w2)),
            TensorLang::Concat([k, a, b]) => concat(v(k), v(a), v(b)),
            TensorLang::LaurelResidual(ch) => weighted_sum(&ch.iter().map(v).collect::<Vec<_>>()),
            TensorLang::AddEye(w) => {
                let w = v(w);
                let mut out = w.clone();
                let n = w.shape[0];
                // Square, trailing dims 1: (i, i, 0, 0) is at i·n + i.
                for i in 0..n {
                    out.data[i * n + i] += 1.0;
                }
                out
            }
            TensorLang::LaurelRw([f, x, a, b]) => {
                let af = broadcast(v(a), v(f), |p, q| p * q);
                let bx = broadcast(v(b), v(x), |p, q| p * q);
                broadcast(&af, &bx, |p, q| p + q)
            }
            TensorLang::LaurelLr([f, x, a, b]) => {
                let (x, a, b) = (v(x), v(a), v(b));
                let layout = Layout::of(channel_axis, x.shape.len()).expect("a layout");
                let c = x.shape[channel_axis];
                // The C×C matrix of the map x ↦ (x·a)·b along the channel axis.
                let r = if layout == Layout::ChannelLast {
                    a.shape[1]
                } else {
                    a.shape[0]
                };
                let m: Vec<Vec<f64>> = (0..c)
                    .map(|i| {
                        (0..c)
                            .map(|k| {
                                (0..r)
                                    .map(|j| match layout {
                                        Layout::ChannelLast => a.at(&[i, j]) * b.at(&[j, k]),
                                        Layout::ChannelFirst => a.at(&[j, i]) * b.at(&[k, j]),
                                    })
                                    .sum()
                            })
                            .collect()
                    })
                    .collect();
                let low = along_axis(x, channel_axis, c, |i, k| m[i][k]);
                let fx = broadcast(v(f), x, |p, q| p + q);
                broadcast(&fx, &low, |p, q| p + q)
            }
            TensorLang::LaurelPa(children) => {
                use egg::LanguageChildren;
                let ids = children.as_slice();
                let mut acc = broadcast(v(&ids[0]), v(&ids[1]), |p, q| p + q);
                for pair in ids[2..].chunks(2) {
                    let gh = broadcast(v(&pair[0]), v(&pair[1]), |p, q| p * q);
                    acc = broadcast(&acc, &gh, |p, q| p + q);
                }
                acc
            }
        };
        values.push(out);
    }
    values.pop().expect("a non-empty term")
}

#[test]
fn along_axis_is_a_matrix_product() {
    // [[1, 2], [3, 4]] · [[1, 0, 1], [0, 1, 1]] = [[1, 2, 3], [3, 4, 7]]
    let x = Tensor {
        shape: vec![2, 2],
        data: vec![1.0, 2.0, 3.0, 4.0],
    };
    let w = Tensor {
        shape: vec![2, 3],
        data: vec![1.0, 0.0, 1.0, 0.0, 1.0, 1.0],
    };
    let y = along_axis(&x, 1, 3, matrix(&w));
    assert_eq!(y.shape, vec![2, 3]);
    assert_eq!(y.data, vec![1.0, 2.0, 3.0, 3.0, 4.0, 7.0]);
    // Along axis 0: xᵀ·w' with w' = [[1, 1], [0, 1]] → [[1, 2], [4, 6]]
    let y0 = along_axis(&x, 0, 2, |c, k| [[1.0, 1.0], [0.0, 1.0]][c][k]);
    assert_eq!(y0.data, vec![1.0, 2.0, 4.0, 6.0]);
}

#[test]
fn broadcasting_follows_numpy() {
    let a = Tensor {
        shape: vec![2, 1],
        data: vec![1.0, 2.0],
    };
    let b = Tensor {
        shape: vec![3],
        data: vec![10.0, 20.0, 30.0],
    };
    let s = broadcast(&a, &b, |x, y| x + y);
    assert_eq!(s.shape, vec![2, 3]);
    assert_eq!(s.data, vec![11.0, 21.0, 31.0, 12.0, 22.0, 32.0]);
}
