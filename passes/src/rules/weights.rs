//! Scalars into the weights of linear ONNX ops.
//!
//! The rules are [`TOPIC`]'s entries.
//!
//! For `Conv`, `ConvTranspose`, `Gemm` (`B`, `C`) and `MatMul` with a
//! constant operand, `e = 1`; `BatchNormalization(c·x)` takes `c` into its
//! scale and `1/c` into its mean (`e = −1`). The scaled weights are weight
//! terms (`(* c $W)`), computed once by the compiler: at inference they cost
//! nothing.
//!
//! Two rules reach a weight the others cannot:
//! - a factor on the result of a chain of homogeneous ops that starts at a
//!   linear op, `c·Relu(Slice(Conv(x, W)))` (a branch that ends in an
//!   activation, as a TCN's does), goes into that op's weights, rebuilding
//!   the chain (`scale-into-weights-through-homogeneous`); the homogeneous
//!   rules move factors outwards only, so without it the factor stays;
//! - factors on some parts of a `Concat` that a linear op contracts along
//!   its channels, `Conv(Concat(c·a, b), W)` (a `YOLOv5` `C3` block, whose
//!   residual stream meets an unscaled branch), go into the matching channel
//!   ranges of the weight (`absorb-concat-scales`).
//!
//! Complexity: per class, linear in its e-nodes and their children's
//! e-nodes; the chain rule follows at most [`MAX_CHAIN`] ops down, the
//! first path that reaches a linear op.

use egg::Id;

use super::class::{
    Child, ClassRule, allowed, children_with, onnx_node, onnx_nodes, scaled_forms, times,
    times_class,
};
use super::entry::{Kind, Pass, Rule, Topic};
use crate::analysis::TensorEGraph;
use crate::checked::Rhs;
use crate::lang::{OpRef, Scalar, TensorLang};
use crate::semantics::{Contraction, OpSemantics};
use crate::shape::Dim;

/// How many homogeneous ops `scale-into-weights-through-homogeneous` looks
/// through (a branch's `Relu(Slice(…))`, `Relu(MaxPool(…))`).
pub const MAX_CHAIN: usize = 4;

/// At most this many right-hand sides of `absorb-concat-scales` per class.
const MAX_CONCAT_FORMS: usize = 8;

/// `f(args)` in `rhs` with each listed child `j` scaled by `c^e`; `replace`
/// swaps one child for another class or built node first. `None` when a
/// power of `c` is undefined (`0⁻¹`).
fn scaled_op_in(
    rhs: &mut Rhs,
    op: OpRef,
    children: &[Id],
    c: &Scalar,
    into: &[(usize, i32)],
    replace: Option<(usize, Child)>,
) -> Option<Id> {
    let mut args = Vec::with_capacity(children.len());
    for (j, &k) in children.iter().enumerate() {
        let child = match (replace, into.iter().find(|(w, _)| *w == j)) {
            (Some((i, x)), _) if i == j => x,
            (_, Some(&(_, e))) => Child::Built(times_class(rhs, &c.powi(e)?, k)),
            _ => Child::Class(k),
        };
        args.push(child);
    }
    Some(onnx_node(rhs, op, &args))
}

/// [`scaled_op_in`] as a right-hand side of its own, `replace` a class.
fn scaled_op(
    op: OpRef,
    children: &[Id],
    c: &Scalar,
    into: &[(usize, i32)],
    replace: Option<(usize, Id)>,
) -> Option<Rhs> {
    let mut rhs = Rhs::new();
    scaled_op_in(
        &mut rhs,
        op,
        children,
        c,
        into,
        replace.map(|(i, x)| (i, Child::Class(x))),
    )?;
    Some(rhs)
}

fn into_weights(egraph: &TensorEGraph, id: Id) -> Vec<Rhs> {
    let mut out = Vec::new();
    for (c, t) in scaled_forms(egraph, id) {
        if c.is_zero() {
            continue;
        }
        for (op, children, sem) in onnx_nodes(egraph, t) {
            if let OpSemantics::Linear { output_into, .. } = sem
                && let Some(rhs) = scaled_op(op, &children, &c, output_into, None)
            {
                out.push(rhs);
            }
        }
    }
    out
}

fn absorb_input(egraph: &TensorEGraph, id: Id) -> Vec<Rhs> {
    let mut out = Vec::new();
    for (op, children, sem) in onnx_nodes(egraph, id) {
        let OpSemantics::Linear {
            input, input_into, ..
        } = sem
        else {
            continue;
        };
        let Some(&x) = children.get(*input) else {
            continue;
        };
        for (c, inner) in scaled_forms(egraph, x) {
            if c.is_zero() {
                continue;
            }
            if let Some(rhs) = scaled_op(op, &children, &c, input_into, Some((*input, inner))) {
                out.push(rhs);
            }
        }
    }
    out
}

/// One homogeneous op on the way down: the op, its children, and the child
/// the path goes through.
type Step = (OpRef, Vec<Id>, usize);

/// The first path of at most [`MAX_CHAIN`] homogeneous ops (each allowing
/// `c`) from `id` down to a linear op with weights, rebuilt with `c` in
/// those weights: `h₁(…hₖ(L(x, c·w))…)`.
fn chain_into_weights(
    egraph: &TensorEGraph,
    id: Id,
    c: &Scalar,
    path: &mut Vec<Step>,
) -> Option<Rhs> {
    for (op, children, sem) in onnx_nodes(egraph, id) {
        match sem {
            OpSemantics::Linear { output_into, .. } if !path.is_empty() => {
                let mut rhs = Rhs::new();
                let mut inner = scaled_op_in(&mut rhs, op, &children, c, output_into, None)?;
                for (op, children, slot) in path.iter().rev() {
                    let args = children_with(children, &[(*slot, Child::Built(inner))]);
                    inner = onnx_node(&mut rhs, *op, &args);
                }
                return Some(rhs);
            }
            OpSemantics::Homogeneous {
                inputs,
                positive_only,
            } if path.len() < MAX_CHAIN && allowed(c, *positive_only) => {
                for &i in inputs {
                    let Some(&child) = children.get(i) else {
                        continue;
                    };
                    path.push((op, children.clone(), i));
                    let found = chain_into_weights(egraph, child, c, path);
                    path.pop();
                    if found.is_some() {
                        return found;
                    }
                }
            }
            _ => {}
        }
    }
    None
}

fn through_homogeneous(egraph: &TensorEGraph, id: Id) -> Vec<Rhs> {
    scaled_forms(egraph, id)
        .into_iter()
        .filter(|(c, _)| !c.is_zero())
        .filter_map(|(c, t)| chain_into_weights(egraph, t, &c, &mut Vec::new()))
        .collect()
}

/// An ONNX-style axis (negative from the end) of a rank-`rank` tensor.
fn axis_of(axis: i64, rank: usize) -> Option<usize> {
    let rank = i64::try_from(rank).ok()?;
    let k = if axis < 0 { axis + rank } else { axis };
    (0..rank)
        .contains(&k)
        .then(|| usize::try_from(k).ok())
        .flatten()
}

/// The axis a concatenation of `parts` into `id` joins along and each part's
/// extent on it: the one axis on which the parts differ from the result,
/// where the result's extent is the sum of theirs (a `Sum`, `Max` or `Min`
/// has none: its result has every part's or a broadcast extent).
fn concat_axis(egraph: &TensorEGraph, id: Id, parts: &[Id]) -> Option<(usize, Vec<u64>)> {
    let out = egraph[id].data.shape.as_ref()?;
    let shapes: Vec<_> = parts
        .iter()
        .map(|&p| {
            egraph[p]
                .data
                .shape
                .as_ref()
                .filter(|s| s.len() == out.len())
        })
        .collect::<Option<_>>()?;
    let mut axes = (0..out.len()).filter(|&k| shapes.iter().any(|s| s[k] != out[k]));
    let (k, None) = (axes.next()?, axes.next()) else {
        return None;
    };
    let sizes: Vec<u64> = shapes
        .iter()
        .map(|s| match s[k] {
            Dim::Fixed(n) if n > 0 => Some(n),
            _ => None,
        })
        .collect::<Option<_>>()?;
    (out[k] == Dim::Fixed(sizes.iter().sum())).then_some((k, sizes))
}

/// `w` with its range `start..start + len` of `total` on `axis` scaled by
/// `c`: `concat(slice(w, 0, start), c·slice(w, start, start + len),
/// slice(w, start + len, total))`, empty ranges left out.
fn scale_range(
    rhs: &mut Rhs,
    weight: Id,
    axis: usize,
    (start, len, total): (u64, u64, u64),
    factor: &Scalar,
) -> Id {
    let num = |rhs: &mut Rhs, n: u64| {
        rhs.node(TensorLang::Num(Scalar::from_integer(
            i64::try_from(n).unwrap_or(i64::MAX),
        )))
    };
    let axis = num(rhs, axis as u64);
    let whole = rhs.class(weight);
    let piece = |rhs: &mut Rhs, from: u64, to: u64| {
        let (from, to) = (num(rhs, from), num(rhs, to));
        rhs.node(TensorLang::Slice([axis, from, to, whole]))
    };
    let range = piece(rhs, start, start + len);
    let mut acc = times(rhs, factor, range);
    if start > 0 {
        let before = piece(rhs, 0, start);
        acc = rhs.node(TensorLang::Concat([axis, before, acc]));
    }
    if start + len < total {
        let after = piece(rhs, start + len, total);
        acc = rhs.node(TensorLang::Concat([axis, acc, after]));
    }
    acc
}

fn absorb_concat(egraph: &TensorEGraph, id: Id) -> Vec<Rhs> {
    let mut out = Vec::new();
    for (op, children, sem) in onnx_nodes(egraph, id) {
        let OpSemantics::Linear {
            input,
            contraction:
                Some(Contraction {
                    data_axis,
                    weight,
                    weight_axis,
                }),
            ..
        } = sem
        else {
            continue;
        };
        let (Some(&x), Some(&w)) = (children.get(*input), children.get(*weight)) else {
            continue;
        };
        let (Some(xs), Some(ws)) = (egraph[x].data.shape.as_ref(), egraph[w].data.shape.as_ref())
        else {
            continue;
        };
        let (Some(data_axis), Some(weight_axis)) = (
            axis_of(*data_axis, xs.len()),
            axis_of(*weight_axis, ws.len()),
        ) else {
            continue;
        };
        if !egraph[w].data.weight || ws[weight_axis] != xs[data_axis] {
            continue;
        }
        for (concat, parts, csem) in onnx_nodes(egraph, x) {
            if !matches!(csem, OpSemantics::Uniform { .. }) {
                continue;
            }
            let Some((_, sizes)) = concat_axis(egraph, x, &parts).filter(|(k, _)| *k == data_axis)
            else {
                continue;
            };
            let total = sizes.iter().sum();
            let mut start = 0;
            for (i, (&part, &len)) in parts.iter().zip(&sizes).enumerate() {
                for (c, inner) in scaled_forms(egraph, part) {
                    if c.is_zero() || out.len() >= MAX_CONCAT_FORMS {
                        continue;
                    }
                    let mut rhs = Rhs::new();
                    let args = children_with(&parts, &[(i, Child::Class(inner))]);
                    let joined = onnx_node(&mut rhs, concat, &args);
                    let scaled = scale_range(&mut rhs, w, weight_axis, (start, len, total), &c);
                    let args = children_with(
                        &children,
                        &[
                            (*input, Child::Built(joined)),
                            (*weight, Child::Built(scaled)),
                        ],
                    );
                    onnx_node(&mut rhs, op, &args);
                    out.push(rhs);
                }
                start += len;
            }
        }
    }
    out
}

/// `scale-into-weights`: `c·f(x, w) ⇒ f(x, c·w)`.
pub const SCALE_INTO_WEIGHTS: ClassRule = ClassRule {
    name: "scale-into-weights",
    find: into_weights,
};

/// `absorb-input-scale`: `f(c·x, w) ⇒ f(x, c·w)`.
pub const ABSORB_INPUT_SCALE: ClassRule = ClassRule {
    name: "absorb-input-scale",
    find: absorb_input,
};

/// `scale-into-weights-through-homogeneous`: `c·h(L(x, w)) ⇒ h(L(x, c·w))`.
pub const SCALE_INTO_WEIGHTS_THROUGH_HOMOGENEOUS: ClassRule = ClassRule {
    name: "scale-into-weights-through-homogeneous",
    find: through_homogeneous,
};

/// `absorb-concat-scales`: `L(concat(c·a, b), w) ⇒ L(concat(a, b), w′)`.
pub const ABSORB_CONCAT_SCALES: ClassRule = ClassRule {
    name: "absorb-concat-scales",
    find: absorb_concat,
};

/// The rules. Examples: `$x` `[2, 3]`, the weight `$w` `[3, 4]`; `$a`
/// `[2, 3]` and `$b` `[2, 2]` joined into `[2, 5]`, the weight `$v` `[5, 4]`.
#[rustfmt::skip]
pub const TOPIC: Topic = Topic {
    name: "weights",
    summary: "Scalars into the weights of linear ONNX ops (Conv, ConvTranspose, Gemm, MatMul with a constant operand, BatchNormalization), as weight terms the compiler computes once.",
    pass: Pass::Fuse,
    context: "$x: f32[2, 3]\nweight $w: f32[3, 4]\n\
              onnx:MatMul@n1.0: f32[2, 4] linear input=0 out=1 in=1\n\
              onnx:MatMul@n2.0: f32[2, 4]\n\
              onnx:Relu@n3.0: f32[2, 4] homogeneous 0 positive\n\
              onnx:ReduceMean@n6.0: f32[2, 1] homogeneous 0\n\
              $a: f32[2, 3]\n$b: f32[2, 2]\nweight $v: f32[5, 4]\n\
              onnx:Concat@n4.0: f32[2, 5] uniform\n\
              onnx:MatMul@n5.0: f32[2, 4] linear input=0 out=1 in=1 contract=-1:1:-2\n\
              onnx:MatMul@n7.0: f32[2, 4] linear input=0 out=1 in=1",
    rules: &[
        Rule { when: "c ≠ 0; f linear with constant weights (w'ⱼ = cᵉ·wⱼ per the op's output_into)",
               examples: &[
                   ("(* 3/2 (onnx:MatMul@n1.0 $x $w))", "(onnx:MatMul@n1.0 $x (* 3/2 $w))"),
                   // A linear map takes negative scales too.
                   ("(* -2 (onnx:MatMul@n1.0 $x $w))", "(onnx:MatMul@n1.0 $x (* -2 $w))"),
               ],
               non_examples: &["(* 3/2 (onnx:MatMul@n2.0 $x $w))", "(* 0 (onnx:MatMul@n1.0 $x $w))"],
               ..Rule::new("scale-into-weights", "c·f(x, w) = f(x, w′)", Kind::Class(SCALE_INTO_WEIGHTS)) },
        Rule { when: "c ≠ 0; f linear with constant weights (w'ⱼ = cᵉ·wⱼ per the op's input_into)",
               examples: &[("(onnx:MatMul@n1.0 (* -2 $x) $w)", "(onnx:MatMul@n1.0 $x (* -2 $w))")],
               non_examples: &["(onnx:MatMul@n2.0 (* -2 $x) $w)"],
               ..Rule::new("absorb-input-scale", "f(c·x, w) = f(x, w′)", Kind::Class(ABSORB_INPUT_SCALE)) },
        Rule { when: "c ≠ 0; h a chain of at most 4 homogeneous ops, each allowing c (c > 0 through Relu), ending in f linear with constant weights",
               examples: &[
                   ("(* 3/2 (onnx:Relu@n3.0 (onnx:MatMul@n1.0 $x $w)))", "(onnx:Relu@n3.0 (onnx:MatMul@n1.0 $x (* 3/2 $w)))"),
                   ("(* -2 (onnx:ReduceMean@n6.0 (onnx:MatMul@n1.0 $x $w)))", "(onnx:ReduceMean@n6.0 (onnx:MatMul@n1.0 $x (* -2 $w)))"),
               ],
               // Relu(−c·x) ≠ −c·Relu(x); an op without semantics ends the chain.
               non_examples: &["(* -3/2 (onnx:Relu@n3.0 (onnx:MatMul@n1.0 $x $w)))", "(* 3/2 (onnx:Relu@n3.0 (onnx:MatMul@n2.0 $x $w)))"],
               ..Rule::new("scale-into-weights-through-homogeneous", "c·h(f(x, w)) = h(f(x, w′))", Kind::Class(SCALE_INTO_WEIGHTS_THROUGH_HOMOGENEOUS)) },
        Rule { when: "c ≠ 0 on one part of a Concat along the axis that f (linear, constant weights) contracts with its weight; parts of known extents",
               examples: &[
                   ("(onnx:MatMul@n5.0 (onnx:Concat@n4.0 (* 2 $a) $b) $v)",
                    "(onnx:MatMul@n5.0 (onnx:Concat@n4.0 $a $b) (concat 0 (* 2 (slice 0 0 3 $v)) (slice 0 3 5 $v)))"),
                   ("(onnx:MatMul@n5.0 (onnx:Concat@n4.0 $a (* -1/2 $b)) $v)",
                    "(onnx:MatMul@n5.0 (onnx:Concat@n4.0 $a $b) (concat 0 (slice 0 0 3 $v) (* -1/2 (slice 0 3 5 $v))))"),
               ],
               // A map without a declared contraction does not say which rows meet which channels.
               non_examples: &["(onnx:MatMul@n7.0 (onnx:Concat@n4.0 (* 2 $a) $b) $v)"],
               ..Rule::new("absorb-concat-scales", "f(concat(c·a, b), w) = f(concat(a, b), w′): w′ = w with a's channels times c", Kind::Class(ABSORB_CONCAT_SCALES)) },
    ],
};
