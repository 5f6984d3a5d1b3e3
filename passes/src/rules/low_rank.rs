//! Low-rank rules: products and sums of channel maps.
//!
//! A channel map ([`ChannelMap`]) is `MatMul(x, W)` with a constant
//! `W: [in, out]` or a bias-free 1×1 `Conv(x, W)` with `W: [out, in, 1, 1]`.
//! LR's branch `(x·A)·B` is two of them.
//!
//! The rules are [`TOPIC`]'s entries.
//!
//! Equations: `(x·A)·B = x·(A·B)` and `x + x·M = x·(I + M)`, along the
//! channel axis. Both sides stay in the e-graph and the cost model chooses:
//! `x·(A·B)` costs `2·C_in·C_out` FLOPs per position against
//! `2·r·(C_in + C_out)`, one op against two. The size guard keeps the
//! product a contraction (rank `r ≥ C_in·C_out / (C_in + C_out)`), so it is
//! never more FLOPs and its weight is never larger: the compiler computes
//! `compose`/`add-eye` terms once, into initializers. Folding the skip
//! removes the residual `Add` and LR's own `Add` at once.
//!
//! `h·W + d·B = [h d]·[W; B]` merges LR's `B` projection into the branch's
//! last `MatMul` (or a 1×1 `Conv`) when both end in the same sum: one op
//! and one `Add` fewer, for a `concat` that copies `h` and `d`; the cost
//! model weighs the two. The sum is flattened ([`sum_terms_of`]) so the pair
//! need not be siblings; the other terms are added back in order.
//!
//! `x·W₁, x·W₂ = split(x·[W₁ W₂])` merges maps that read the same value
//! (PA's low-rank `A`s of one state, used by several blocks; a branch's
//! first projection and LR's `A`): one wider map and a `slice` per use, in
//! place of two maps; the merged map is a `matmul` / `conv1x1` term, its
//! FLOPs from the shapes.
//!
//! The nested form of `skip-into-channel-map` looks one sum deep, because
//! LR expands to `(f + x) + LR(x)`: it is the one reassociation of a sum the
//! rules make, and only where it lets a skip fold (no blanket
//! associativity).
//!
//! Complexity: per class, linear in its e-nodes and their children's e-nodes.

use egg::Id;

use super::class::{
    Child, ClassRule, children_with, onnx_node, scaled_forms, sum_terms_of, times_class,
};
use super::entry::{Kind, Pass, Requires, Rule, Topic};
use super::laurel_residual::MAX_SUMS;
use crate::analysis::{TensorEGraph, map_dims};
use crate::block::Layout;
use crate::checked::Rhs;
use crate::lang::{OpRef, Scalar, TensorLang};
use crate::semantics::ChannelMap;
use crate::shape::{Dim, Shape, estimated_elements};

/// The channel-map e-nodes of `id`'s class.
fn maps(egraph: &TensorEGraph, id: Id) -> Vec<(OpRef, Vec<Id>, ChannelMap)> {
    egraph[id]
        .nodes
        .iter()
        .filter_map(|n| match n {
            TensorLang::Onnx(op, children) => egraph
                .analysis
                .channel_map(op)
                .filter(|m| m.input < children.len() && m.weight < children.len())
                .map(|m| (*op, children.clone(), m)),
            _ => None,
        })
        .collect()
}

fn shape(egraph: &TensorEGraph, id: Id) -> Option<&Shape> {
    egraph[id].data.shape.as_ref()
}

/// `op(children)` with the input and the weight replaced.
fn map_node(rhs: &mut Rhs, op: OpRef, children: &[Id], m: ChannelMap, x: Child, w: Id) -> Id {
    let args = children_with(children, &[(m.input, x), (m.weight, Child::Built(w))]);
    onnx_node(rhs, op, &args)
}

#[allow(clippy::many_single_char_names)] // the equation's names: x, y, w, i, o
fn reassociate(egraph: &TensorEGraph, id: Id) -> Vec<Rhs> {
    let mut out = Vec::new();
    for (op2, ch2, m2) in maps(egraph, id) {
        let (y, w2) = (ch2[m2.input], ch2[m2.weight]);
        for (_, ch1, m1) in maps(egraph, y) {
            let (x, w1) = (ch1[m1.input], ch1[m1.weight]);
            let (Some(s1), Some(s2)) = (shape(egraph, w1), shape(egraph, w2)) else {
                continue;
            };
            let (Some((i, _)), Some((_, o))) = (map_dims(s1), map_dims(s2)) else {
                continue;
            };
            let product = estimated_elements(&[i.clone(), o.clone()]);
            let factors = estimated_elements(s1) + estimated_elements(s2);
            if m1.layout != m2.layout || s1.len() != s2.len() || product > factors {
                continue;
            }
            let mut rhs = Rhs::new();
            let (a, b) = (rhs.class(w1), rhs.class(w2));
            let w = rhs.node(TensorLang::Compose([a, b]));
            map_node(&mut rhs, op2, &ch2, m2, Child::Class(x), w);
            out.push(rhs);
        }
    }
    out
}

#[allow(clippy::many_single_char_names)] // the equation's names: x, w, u, v
fn skip_into(egraph: &TensorEGraph, id: Id) -> Vec<Rhs> {
    let mut out = Vec::new();
    for node in &egraph[id].nodes {
        let TensorLang::Add([p, q]) = node else {
            continue;
        };
        for (s, t) in [(*p, *q), (*q, *p)] {
            for (op, ch, m) in maps(egraph, t) {
                let (x, w) = (egraph.find(ch[m.input]), ch[m.weight]);
                let square = shape(egraph, w)
                    .and_then(map_dims)
                    .is_some_and(|(i, o)| i == o && matches!(i, Dim::Fixed(_)));
                if !square || shape(egraph, x).is_none() || shape(egraph, x) != shape(egraph, t) {
                    continue;
                }
                let folded = |rhs: &mut Rhs| {
                    let w = rhs.class(w);
                    let w = rhs.node(TensorLang::AddEye(w));
                    map_node(rhs, op, &ch, m, Child::Class(x), w)
                };
                if egraph.find(s) == x {
                    let mut rhs = Rhs::new();
                    folded(&mut rhs);
                    out.push(rhs);
                    continue;
                }
                for inner in &egraph[s].nodes {
                    let TensorLang::Add([a, b]) = inner else {
                        continue;
                    };
                    for (u, v) in [(*a, *b), (*b, *a)] {
                        if egraph.find(v) == x {
                            let mut rhs = Rhs::new();
                            let u = rhs.class(u);
                            let l = folded(&mut rhs);
                            rhs.node(TensorLang::Add([u, l]));
                            out.push(rhs);
                        }
                    }
                }
            }
        }
    }
    out
}

/// The most terms of a sum `merge-channel-maps` looks at.
pub const MAX_MERGE_TERMS: usize = 8;

/// Whether `id`'s class is a narrowing channel map's result (`x·A` with
/// `A: [in, r]`, `r < in`).
fn low_rank_output(egraph: &TensorEGraph, id: Id) -> bool {
    maps(egraph, id).iter().any(|(_, ch, m)| {
        shape(egraph, ch[m.weight])
            .and_then(map_dims)
            .is_some_and(|dims| matches!(dims, (Dim::Fixed(i), Dim::Fixed(o)) if o < i))
    })
}

/// The most right-hand sides `merge-channel-maps` gives one class.
pub const MAX_MERGES: usize = 16;

/// The sum of `terms` with terms `i` and `j` replaced by their merge, if the
/// two are channel maps that merge.
#[allow(clippy::many_single_char_names)] // the equation's names: h, d, w, x, k
fn merged_sum(egraph: &TensorEGraph, terms: &[(Scalar, Id)], i: usize, j: usize) -> Option<Rhs> {
    let unscaled_map = |n: usize| {
        let (c, t) = &terms[n];
        if c.is_one() {
            maps(egraph, *t).into_iter().next()
        } else {
            None
        }
    };
    let ((op, ch1, m1), (_, ch2, m2)) = (unscaled_map(i)?, unscaled_map(j)?);
    let (h, w1) = (ch1[m1.input], ch1[m1.weight]);
    let (d, w2) = (ch2[m2.input], ch2[m2.weight]);
    // One of them is a low-rank pair's `B` (its input narrowed by an `A`):
    // two full-width maps of a residual stream (the projections of two
    // layers, in a flattened stream) are not what this rule is for, and
    // offering them grew a 200-block chain's e-graph tenfold.
    if !low_rank_output(egraph, h) && !low_rank_output(egraph, d) {
        return None;
    }
    let (sh, sd) = (shape(egraph, h)?, shape(egraph, d)?);
    let (s1, s2) = (shape(egraph, w1)?, shape(egraph, w2)?);
    let same_out = map_dims(s1)
        .zip(map_dims(s2))
        .is_some_and(|(a, b)| a.1 == b.1);
    let same_result = shape(egraph, terms[i].1) == shape(egraph, terms[j].1);
    if m1.layout != m2.layout || s1.len() != s2.len() || sh.len() != sd.len() || sh.is_empty() {
        return None;
    }
    if !same_out || !same_result {
        return None;
    }
    let data_axis = match m1.layout {
        Layout::ChannelLast => sh.len() - 1,
        Layout::ChannelFirst => 1,
    };
    let weight_axis = usize::from(s1.len() != 2);
    let mut rhs = Rhs::new();
    let k = rhs.node(TensorLang::Num(Scalar::from_integer(axis(data_axis))));
    let (hc, dc) = (rhs.class(h), rhs.class(d));
    let x = rhs.node(TensorLang::Concat([k, hc, dc]));
    let k = rhs.node(TensorLang::Num(Scalar::from_integer(axis(weight_axis))));
    let (a, b) = (rhs.class(w1), rhs.class(w2));
    let w = rhs.node(TensorLang::Concat([k, a, b]));
    let mut acc = map_node(&mut rhs, op, &ch1, m1, Child::Built(x), w);
    for (n, (c, t)) in terms.iter().enumerate() {
        if n == i || n == j {
            continue;
        }
        let term = if c.is_one() {
            rhs.class(*t)
        } else {
            times_class(&mut rhs, c, *t)
        };
        acc = rhs.node(TensorLang::Add([acc, term]));
    }
    Some(rhs)
}

fn merge(egraph: &TensorEGraph, id: Id) -> Vec<Rhs> {
    let mut out: Vec<Rhs> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    // Each of the class's sums (a few): a merge made in one iteration is
    // another sum of the class, whose merged map can merge again.
    let sums = egraph[id].nodes.iter().filter_map(|n| match n {
        TensorLang::Add(pair) => Some(pair),
        _ => None,
    });
    for pair in sums.take(MAX_SUMS) {
        let Some(terms) = sum_terms_of(egraph, *pair, MAX_MERGE_TERMS) else {
            continue;
        };
        for i in 0..terms.len() {
            for j in i + 1..terms.len() {
                if out.len() >= MAX_MERGES {
                    return out;
                }
                if let Some(rhs) = merged_sum(egraph, &terms, i, j) {
                    let text = rhs.text();
                    if !seen.contains(&text) {
                        seen.push(text);
                        out.push(rhs);
                    }
                }
            }
        }
    }
    out
}

/// The most sibling maps `merge-shared-input` pairs one class with.
pub const MAX_SIBLINGS: usize = 4;

/// The other channel maps of `x` (their class, op, children, map): the
/// e-nodes among `x`'s parents that are maps reading `x`, first per class.
fn sibling_maps(egraph: &TensorEGraph, x: Id, own: Id) -> Vec<(Id, Vec<Id>, ChannelMap)> {
    let mut out: Vec<(Id, Vec<Id>, ChannelMap)> = Vec::new();
    for p in egraph[x].parents() {
        let class = egraph.find(p);
        if class == own || out.iter().any(|(c, _, _)| *c == class) {
            continue;
        }
        if let TensorLang::Onnx(op, children) = egraph.id_to_node(p)
            && let Some(m) = egraph.analysis.channel_map(op)
            && children.get(m.input).is_some_and(|&i| egraph.find(i) == x)
            && m.weight < children.len()
        {
            out.push((class, children.clone(), m));
        }
    }
    out
}

/// Whether the two classes are known multiples of one value (`a = c·b`,
/// `b = c·a`, or `a = c·w` and `b = d·w`).
fn multiples(egraph: &TensorEGraph, a: Id, b: Id) -> bool {
    let bases = |id: Id| {
        let id = egraph.find(id);
        let mut out: Vec<Id> = scaled_forms(egraph, id)
            .into_iter()
            .map(|(_, x)| x)
            .collect();
        out.push(id);
        out
    };
    let (a, b) = (bases(a), bases(b));
    a.iter().any(|x| b.contains(x))
}

/// `slice(L(x, [W₁ W₂]))` for the map of the lower class id first, so that
/// both classes build the same merged map.
#[allow(clippy::many_single_char_names)] // the equation's names: x, w, k
fn shared_input(egraph: &TensorEGraph, id: Id) -> Vec<Rhs> {
    let mut out = Vec::new();
    let Some((_, ch, m)) = maps(egraph, id).into_iter().next() else {
        return out;
    };
    let x = egraph.find(ch[m.input]);
    for (other, ch2, m2) in sibling_maps(egraph, x, id).into_iter().take(MAX_SIBLINGS) {
        let (w1, w2) = (ch[m.weight], ch2[m2.weight]);
        let (Some(s1), Some(s2), Some(sx)) =
            (shape(egraph, w1), shape(egraph, w2), shape(egraph, x))
        else {
            continue;
        };
        let (Some((i1, o1)), Some((i2, o2))) = (map_dims(s1), map_dims(s2)) else {
            continue;
        };
        let (Dim::Fixed(o1), Dim::Fixed(o2)) = (o1, o2) else {
            continue;
        };
        if m.layout != m2.layout || s1.len() != s2.len() || i1 != i2 || sx.is_empty() {
            continue;
        }
        // Scaled forms of one map (`x·W` and `x·(c·W)`, which the scale
        // rules make) are not two maps: merging them made a 200-block
        // chain's extraction twice as slow for nothing.
        if multiples(egraph, w1, w2) {
            continue;
        }
        // One of them low rank (LAuReL's `A`): the model's own maps of one
        // value (attention's Q, K, V) are not LAuReL's to rewrite; fusing RW
        // must give back the baseline's graph.
        let narrowing = |i: &Dim, o: u64| matches!(i, Dim::Fixed(i) if o < *i);
        if !narrowing(i1, *o1) && !narrowing(i2, *o2) {
            continue;
        }
        // Canonical order: the lower class's weight first.
        let (first, second, own_first) = if id < other {
            (w1, w2, true)
        } else {
            (w2, w1, false)
        };
        let (o_first, o_own) = if own_first { (*o1, *o1) } else { (*o2, *o1) };
        let (data_axis, weight_axis) = match m.layout {
            Layout::ChannelLast => (sx.len() - 1, 1),
            Layout::ChannelFirst => (1, 0),
        };
        let start = if own_first { 0 } else { o_first };
        let (Ok(start), Ok(end)) = (usize::try_from(start), usize::try_from(start + o_own)) else {
            continue;
        };
        let mut rhs = Rhs::new();
        let k = rhs.node(TensorLang::Num(Scalar::from_integer(axis(weight_axis))));
        let (a, b) = (rhs.class(first), rhs.class(second));
        let w = rhs.node(TensorLang::Concat([k, a, b]));
        let xc = rhs.class(x);
        let merged = rhs.node(match m.layout {
            Layout::ChannelLast => TensorLang::MatMul([xc, w]),
            Layout::ChannelFirst => TensorLang::Conv1x1([xc, w]),
        });
        let k = rhs.node(TensorLang::Num(Scalar::from_integer(axis(data_axis))));
        let s = rhs.node(TensorLang::Num(Scalar::from_integer(axis(start))));
        let e = rhs.node(TensorLang::Num(Scalar::from_integer(axis(end))));
        rhs.node(TensorLang::Slice([k, s, e, merged]));
        out.push(rhs);
    }
    out
}

/// An axis as a scalar (axes are small).
fn axis(k: usize) -> i64 {
    i64::try_from(k).unwrap_or(i64::MAX)
}

/// `reassociate-channel-maps`: `(x·A)·B ⇒ x·(A·B)`.
pub const REASSOCIATE_CHANNEL_MAPS: ClassRule = ClassRule {
    name: "reassociate-channel-maps",
    find: reassociate,
};

/// `skip-into-channel-map`: `x + x·M ⇒ x·(I + M)`.
pub const SKIP_INTO_CHANNEL_MAP: ClassRule = ClassRule {
    name: "skip-into-channel-map",
    find: skip_into,
};

/// `merge-shared-input`: `x·W₁ ⇒ (x·[W₁ W₂])[.., :o₁]` where `x·W₂` is
/// computed too.
pub const MERGE_SHARED_INPUT: ClassRule = ClassRule {
    name: "merge-shared-input",
    find: shared_input,
};

/// `merge-channel-maps`: `h·W + d·B ⇒ [h d]·[W; B]`.
pub const MERGE_CHANNEL_MAPS: ClassRule = ClassRule {
    name: "merge-channel-maps",
    find: merge,
};

/// The rules. Examples: channel maps `onnx:Conv` (layout first) and
/// `onnx:MatMul` (layout last) of the shapes below; names starting with `w`
/// are weights.
#[rustfmt::skip]
pub const TOPIC: Topic = Topic {
    name: "low_rank",
    summary: "Products and sums of channel maps: LR's (x·A)·B multiplied out, a skip folded into a square map, maps of one input or of one sum merged.",
    pass: Pass::Fuse,
    context: "$x4: f32[1, 8, 3, 3]\nweight $wa: f32[16, 8, 1, 1]\nweight $wb: f32[8, 16, 1, 1]\n\
              onnx:Conv@n1.0: f32[1, 16, 3, 3] map=first\nonnx:Conv@n2.0: f32[1, 8, 3, 3] map=first\n\
              $x3: f32[2, 3, 4]\nweight $wc: f32[4, 5]\nweight $wd: f32[5, 4]\nweight $wm: f32[4, 4]\n\
              onnx:MatMul@n3.0: f32[2, 3, 5] map=last\nonnx:MatMul@n4.0: f32[2, 3, 4] map=last\n\
              $xn: f32[2, 8]\nweight $we: f32[8, 2]\nweight $wf: f32[2, 8]\n\
              onnx:MatMul@n5.0: f32[2, 2] map=last\nonnx:MatMul@n6.0: f32[2, 8] map=last\n\
              $f5: f32[1, 4, 2, 2]\n$x5: f32[1, 4, 2, 2]\nweight $wn: f32[4, 4, 1, 1]\n\
              onnx:Conv@n7.0: f32[1, 4, 2, 2] map=first\n\
              $h: f32[2, 3]\n$g: f32[2, 3]\n$x6: f32[2, 4]\n$y6: f32[2, 4]\nweight $wo: f32[3, 4]\n\
              weight $wp: f32[3, 4]\nweight $wq: f32[4, 2]\nweight $wr: f32[2, 4]\nweight $ws: f32[4, 2]\n\
              weight $wk: f32[4, 4]\nweight $wv: f32[4, 4]\n\
              onnx:MatMul@n8.0: f32[2, 4] map=last\nonnx:MatMul@n9.0: f32[2, 4] map=last\n\
              onnx:MatMul@n10.0: f32[2, 2] map=last\nonnx:MatMul@n11.0: f32[2, 2] map=last",
    rules: &[
        Rule { when: "one layout; the product no larger than w₁ and w₂ (r ≥ C_in·C_out / (C_in + C_out))",
               examples: &[
                   // C = 8 < r = 16: A·B (8×8) is smaller than A and B (2·128).
                   ("(onnx:Conv@n2.0 (onnx:Conv@n1.0 $x4 $wa) $wb)", "(onnx:Conv@n2.0 $x4 (compose $wa $wb))"),
                   ("(onnx:MatMul@n4.0 (onnx:MatMul@n3.0 $x3 $wc) $wd)", "(onnx:MatMul@n4.0 $x3 (compose $wc $wd))"),
               ],
               // C = 8 > 2r = 4: A·B (64) would be larger than A and B (2·16).
               non_examples: &["(onnx:MatMul@n6.0 (onnx:MatMul@n5.0 $xn $we) $wf)"],
               ..Rule::new("reassociate-channel-maps", "L₂(L₁(x, w₁), w₂) = L₂(x, w₁·w₂): (x·A)·B = x·(A·B)", Kind::Class(REASSOCIATE_CHANNEL_MAPS)) },
        Rule { when: "w square, L(x, w) of x's shape; also one sum deep, (u + x) + L(x, w) (LR's expansion)",
               examples: &[
                   ("(+ $x3 (onnx:MatMul@n4.0 $x3 $wm))", "(onnx:MatMul@n4.0 $x3 (add-eye $wm))"),
                   ("(+ (+ $f5 $x5) (onnx:Conv@n7.0 $x5 $wn))", "(+ $f5 (onnx:Conv@n7.0 $x5 (add-eye $wn)))"),
               ],
               // The map reads y, not the skip x.
               non_examples: &["(+ $x6 (onnx:MatMul@n8.0 $y6 $wk))"],
               ..Rule::new("skip-into-channel-map", "x + L(x, w) = L(x, I + w): x + x·M = x·(I + M)", Kind::Class(SKIP_INTO_CHANNEL_MAP)) },
        Rule { when: "one layout, one output width, unscaled terms of one shape; h or d a narrowing map's result (d = x·A)",
               requires: Requires::ChannelMapMerges,
               examples: &[(
                   "(+ (+ (onnx:MatMul@n8.0 $h $wo) $x6) (onnx:MatMul@n9.0 (onnx:MatMul@n10.0 $x6 $wq) $wr))",
                   "(+ (onnx:MatMul@n8.0 (concat 1 $h (onnx:MatMul@n10.0 $x6 $wq)) (concat 0 $wo $wr)) $x6)",
               )],
               non_examples: &[
                   // The projections of two layers in one flattened stream.
                   "(+ (onnx:MatMul@n8.0 $h $wo) (onnx:MatMul@n9.0 $g $wp))",
                   // A scaled term is left to the scale rules (which move c into B).
                   "(+ (onnx:MatMul@n8.0 $h $wo) (* 2 (onnx:MatMul@n9.0 (onnx:MatMul@n10.0 $x6 $wq) $wr)))",
               ],
               ..Rule::new("merge-channel-maps", "L₁(h, W) + L₂(d, B) + Σ rest = L₁([h d], [W; B]) + Σ rest", Kind::Class(MERGE_CHANNEL_MAPS)) },
        Rule { when: "one layout, one input width, one of them narrowing (LAuReL's A), not multiples of one weight; the merged map built once, the lower class's weight first",
               requires: Requires::ChannelMapMerges,
               examples: &[(
                   "(+ (onnx:MatMul@n10.0 $x6 $wq) (onnx:MatMul@n11.0 $x6 $ws))",
                   "(+ (slice 1 0 2 (matmul $x6 (concat 1 $wq $ws))) (slice 1 2 4 (matmul $x6 (concat 1 $wq $ws))))",
               )],
               // Attention's Q and K read one value: neither is low rank.
               non_examples: &["(+ (onnx:MatMul@n8.0 $x6 $wk) (onnx:MatMul@n9.0 $x6 $wv))"],
               ..Rule::new("merge-shared-input", "L(x, W₁), L(x, W₂) = split(L(x, [W₁ W₂]))", Kind::Class(MERGE_SHARED_INPUT)) },
    ],
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::class::tests::{
        holds, numerically_equal, run_class_rule_on, run_class_rule_with,
    };
    use crate::shape::fixed;

    fn conv() -> ChannelMap {
        ChannelMap {
            input: 0,
            weight: 1,
            layout: Layout::ChannelFirst,
        }
    }

    fn matmul() -> ChannelMap {
        ChannelMap {
            input: 0,
            weight: 1,
            layout: Layout::ChannelLast,
        }
    }

    #[test]
    fn a_wide_low_rank_pair_becomes_one_conv() {
        // C = 8 < r = 16: A·B (8×8) is smaller than A and B (2·128).
        let values = [
            ("x", fixed(&[1, 8, 3, 3])),
            ("wa", fixed(&[16, 8, 1, 1])),
            ("wb", fixed(&[8, 16, 1, 1])),
        ];
        let ops = [
            ("onnx:Conv@n1.0", conv(), fixed(&[1, 16, 3, 3])),
            ("onnx:Conv@n2.0", conv(), fixed(&[1, 8, 3, 3])),
        ];
        let lhs = "(onnx:Conv@n2.0 (onnx:Conv@n1.0 $x $wa) $wb)";
        let rhs = "(onnx:Conv@n2.0 $x (compose $wa $wb))";
        let (e, root) = run_class_rule_with(REASSOCIATE_CHANNEL_MAPS, &values, &ops, lhs);
        assert!(holds(&e, root, rhs));
        numerically_equal(&values, lhs, rhs);
    }

    #[test]
    fn a_narrow_low_rank_pair_stays_apart() {
        // C = 8 > 2r = 4: A·B (64) would be larger than A and B (2·16).
        let values = [
            ("x", fixed(&[2, 8])),
            ("wa", fixed(&[8, 2])),
            ("wb", fixed(&[2, 8])),
        ];
        let ops = [
            ("onnx:MatMul@n1.0", matmul(), fixed(&[2, 2])),
            ("onnx:MatMul@n2.0", matmul(), fixed(&[2, 8])),
        ];
        let lhs = "(onnx:MatMul@n2.0 (onnx:MatMul@n1.0 $x $wa) $wb)";
        let (e, root) = run_class_rule_with(REASSOCIATE_CHANNEL_MAPS, &values, &ops, lhs);
        assert_eq!(e[e.find(root)].nodes.len(), 1);
    }

    #[test]
    fn matmul_pairs_reassociate_too() {
        let values = [
            ("x", fixed(&[2, 3, 4])),
            ("wa", fixed(&[4, 5])),
            ("wb", fixed(&[5, 4])),
        ];
        let ops = [
            ("onnx:MatMul@n1.0", matmul(), fixed(&[2, 3, 5])),
            ("onnx:MatMul@n2.0", matmul(), fixed(&[2, 3, 4])),
        ];
        let lhs = "(onnx:MatMul@n2.0 (onnx:MatMul@n1.0 $x $wa) $wb)";
        let rhs = "(onnx:MatMul@n2.0 $x (compose $wa $wb))";
        let (e, root) = run_class_rule_with(REASSOCIATE_CHANNEL_MAPS, &values, &ops, lhs);
        assert!(holds(&e, root, rhs));
        numerically_equal(&values, lhs, rhs);
    }

    #[test]
    fn a_skip_folds_into_a_square_map() {
        let values = [("x", fixed(&[2, 3, 4])), ("wm", fixed(&[4, 4]))];
        let ops = [("onnx:MatMul@n1.0", matmul(), fixed(&[2, 3, 4]))];
        let lhs = "(+ $x (onnx:MatMul@n1.0 $x $wm))";
        let rhs = "(onnx:MatMul@n1.0 $x (add-eye $wm))";
        let (e, root) = run_class_rule_with(SKIP_INTO_CHANNEL_MAP, &values, &ops, lhs);
        assert!(holds(&e, root, rhs));
        numerically_equal(&values, lhs, rhs);
    }

    #[test]
    fn a_skip_one_sum_deep_folds_too() {
        let values = [
            ("f", fixed(&[1, 4, 2, 2])),
            ("x", fixed(&[1, 4, 2, 2])),
            ("wm", fixed(&[4, 4, 1, 1])),
        ];
        let ops = [("onnx:Conv@n1.0", conv(), fixed(&[1, 4, 2, 2]))];
        let lhs = "(+ (+ $f $x) (onnx:Conv@n1.0 $x $wm))";
        let rhs = "(+ $f (onnx:Conv@n1.0 $x (add-eye $wm)))";
        let (e, root) = run_class_rule_with(SKIP_INTO_CHANNEL_MAP, &values, &ops, lhs);
        assert!(holds(&e, root, rhs));
        numerically_equal(&values, lhs, rhs);
    }

    #[test]
    fn a_map_of_another_value_or_shape_keeps_the_skip() {
        // The map reads y, not the skip x.
        let values = [
            ("x", fixed(&[2, 4])),
            ("y", fixed(&[2, 4])),
            ("wm", fixed(&[4, 4])),
        ];
        let ops = [("onnx:MatMul@n1.0", matmul(), fixed(&[2, 4]))];
        let (e, root) = run_class_rule_with(
            SKIP_INTO_CHANNEL_MAP,
            &values,
            &ops,
            "(+ $x (onnx:MatMul@n1.0 $y $wm))",
        );
        assert_eq!(e[e.find(root)].nodes.len(), 1);
    }

    #[test]
    fn the_last_projection_takes_the_low_rank_b() {
        let values = [
            ("h", fixed(&[2, 3])),
            ("x", fixed(&[2, 4])),
            ("wo", fixed(&[3, 4])),
            ("wa", fixed(&[4, 2])),
            ("wb", fixed(&[2, 4])),
        ];
        let ops = [
            ("onnx:MatMul@n1.0", matmul(), fixed(&[2, 4])),
            ("onnx:MatMul@n2.0", matmul(), fixed(&[2, 4])),
            ("onnx:MatMul@n3.0", matmul(), fixed(&[2, 2])),
        ];
        let lhs =
            "(+ (+ (onnx:MatMul@n1.0 $h $wo) $x) (onnx:MatMul@n2.0 (onnx:MatMul@n3.0 $x $wa) $wb))";
        let rhs =
            "(+ (onnx:MatMul@n1.0 (concat 1 $h (onnx:MatMul@n3.0 $x $wa)) (concat 0 $wo $wb)) $x)";
        let (e, root) = run_class_rule_with(MERGE_CHANNEL_MAPS, &values, &ops, lhs);
        assert!(holds(&e, root, rhs));
        numerically_equal(&values, lhs, rhs);
    }

    #[test]
    fn one_by_one_convs_merge_on_their_input_channels() {
        let values = [
            ("h", fixed(&[1, 3, 2, 2])),
            ("x", fixed(&[1, 4, 2, 2])),
            ("wo", fixed(&[4, 3, 1, 1])),
            ("wa", fixed(&[2, 4, 1, 1])),
            ("wb", fixed(&[4, 2, 1, 1])),
        ];
        let ops = [
            ("onnx:Conv@n1.0", conv(), fixed(&[1, 4, 2, 2])),
            ("onnx:Conv@n2.0", conv(), fixed(&[1, 4, 2, 2])),
            ("onnx:Conv@n3.0", conv(), fixed(&[1, 2, 2, 2])),
        ];
        let lhs = "(+ (onnx:Conv@n1.0 $h $wo) (onnx:Conv@n2.0 (onnx:Conv@n3.0 $x $wa) $wb))";
        let rhs = "(onnx:Conv@n1.0 (concat 1 $h (onnx:Conv@n3.0 $x $wa)) (concat 1 $wo $wb))";
        let (e, root) = run_class_rule_with(MERGE_CHANNEL_MAPS, &values, &ops, lhs);
        assert!(holds(&e, root, rhs));
        numerically_equal(&values, lhs, rhs);
    }

    #[test]
    fn two_full_width_projections_do_not_merge() {
        // The projections of two layers in one flattened stream.
        let values = [
            ("h", fixed(&[2, 3])),
            ("g", fixed(&[2, 3])),
            ("wo", fixed(&[3, 4])),
            ("wp", fixed(&[3, 4])),
        ];
        let ops = [
            ("onnx:MatMul@n1.0", matmul(), fixed(&[2, 4])),
            ("onnx:MatMul@n2.0", matmul(), fixed(&[2, 4])),
        ];
        let (e, root) = run_class_rule_with(
            MERGE_CHANNEL_MAPS,
            &values,
            &ops,
            "(+ (onnx:MatMul@n1.0 $h $wo) (onnx:MatMul@n2.0 $g $wp))",
        );
        assert_eq!(e[e.find(root)].nodes.len(), 1);
    }

    #[test]
    fn a_scaled_term_does_not_merge() {
        let values = [
            ("h", fixed(&[2, 3])),
            ("x", fixed(&[2, 4])),
            ("wo", fixed(&[3, 4])),
            ("wa", fixed(&[4, 2])),
            ("wb", fixed(&[2, 4])),
        ];
        let ops = [
            ("onnx:MatMul@n1.0", matmul(), fixed(&[2, 4])),
            ("onnx:MatMul@n2.0", matmul(), fixed(&[2, 4])),
            ("onnx:MatMul@n3.0", matmul(), fixed(&[2, 2])),
        ];
        // A scaled term is left to the scale rules (which move c into B).
        let (e, root) = run_class_rule_with(
            MERGE_CHANNEL_MAPS,
            &values,
            &ops,
            "(+ (onnx:MatMul@n1.0 $h $wo) (* 2 (onnx:MatMul@n2.0 (onnx:MatMul@n3.0 $x $wa) $wb)))",
        );
        assert_eq!(e[e.find(root)].nodes.len(), 1);
    }

    /// Runs `merge-shared-input` on two maps of `$x` (`$wa`, `$wc`, widths
    /// `oa`, `oc`) and checks each became a slice of one merged map `op`
    /// (`matmul` or `conv1x1`) with the kernels joined on `weight_axis`,
    /// numerically too.
    fn assert_merges_two(
        values: &[(&str, crate::shape::Shape)],
        ops: &[(&str, ChannelMap, crate::shape::Shape)],
        (op, weight_axis, channel_axis): (&str, usize, usize),
        (oa, oc): (usize, usize),
    ) {
        let terms = [
            format!("({} $x $wa)", ops[0].0),
            format!("({} $x $wc)", ops[1].0),
        ];
        let (e, roots) = run_class_rule_on(
            MERGE_SHARED_INPUT,
            values,
            ops,
            &[terms[0].as_str(), terms[1].as_str()],
        );
        let (a, c) = (roots[0], roots[1]);
        // One merged map, the lower class's kernel first; a slice each.
        let (first, second, (a0, c0)) = if e.find(a) < e.find(c) {
            ("$wa", "$wc", (0, oa))
        } else {
            ("$wc", "$wa", (oc, 0))
        };
        let merged = format!("({op} $x (concat {weight_axis} {first} {second}))");
        let slice = |start: usize, width: usize| {
            format!("(slice {channel_axis} {start} {} {merged})", start + width)
        };
        for (root, term, rhs) in [(a, &terms[0], slice(a0, oa)), (c, &terms[1], slice(c0, oc))] {
            assert!(holds(&e, root, &rhs), "{rhs}");
            numerically_equal(values, term, &rhs);
        }
    }

    #[test]
    fn maps_of_one_input_merge_into_one_and_slices() {
        let values = [
            ("x", fixed(&[2, 4])),
            ("wa", fixed(&[4, 2])),
            ("wc", fixed(&[4, 3])),
        ];
        let ops = [
            ("onnx:MatMul@n1.0", matmul(), fixed(&[2, 2])),
            ("onnx:MatMul@n2.0", matmul(), fixed(&[2, 3])),
        ];
        assert_merges_two(&values, &ops, ("matmul", 1, 1), (2, 3));
    }

    #[test]
    fn one_by_one_convs_of_one_input_merge_on_their_output_channels() {
        let values = [("x", fixed(&[1, 4, 2, 2])), ("wa", fixed(&[2, 4, 1, 1]))];
        let ops = [("onnx:Conv@n1.0", conv(), fixed(&[1, 2, 2, 2]))];
        let lhs = "(onnx:Conv@n1.0 $x $wa)";
        let rhs = "(slice 1 0 2 (conv1x1 $x (concat 0 $wa $wa)))";
        // The numeric check of the merged form against the conv itself.
        numerically_equal(&values, lhs, rhs);
        // A map with no sibling stays as it is.
        let (e, root) = run_class_rule_with(MERGE_SHARED_INPUT, &values, &ops, lhs);
        assert_eq!(e[e.find(root)].nodes.len(), 1);
    }

    #[test]
    fn the_models_own_projections_of_one_value_stay_apart() {
        // Attention's Q and K read one value: neither is low rank.
        let values = [
            ("x", fixed(&[2, 4])),
            ("wq", fixed(&[4, 4])),
            ("wk", fixed(&[4, 4])),
        ];
        let ops = [
            ("onnx:MatMul@n1.0", matmul(), fixed(&[2, 4])),
            ("onnx:MatMul@n2.0", matmul(), fixed(&[2, 4])),
        ];
        let (e, roots) = run_class_rule_on(
            MERGE_SHARED_INPUT,
            &values,
            &ops,
            &["(onnx:MatMul@n1.0 $x $wq)", "(onnx:MatMul@n2.0 $x $wk)"],
        );
        for r in roots {
            assert_eq!(e[e.find(r)].nodes.len(), 1);
        }
    }

    #[test]
    fn one_by_one_convs_of_one_input_merge_on_their_output_channels_too() {
        // Kernels concatenated on the output axis (0), slices on channels (1).
        let values = [
            ("x", fixed(&[1, 4, 2, 2])),
            ("wa", fixed(&[2, 4, 1, 1])),
            ("wc", fixed(&[3, 4, 1, 1])),
        ];
        let ops = [
            ("onnx:Conv@n1.0", conv(), fixed(&[1, 2, 2, 2])),
            ("onnx:Conv@n2.0", conv(), fixed(&[1, 3, 2, 2])),
        ];
        assert_merges_two(&values, &ops, ("conv1x1", 0, 1), (2, 3));
    }
}
