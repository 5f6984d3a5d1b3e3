//! A textual form of a lowered graph: the declarations the lowering would
//! make, then terms. The rule registry's examples ([`crate::rules::registry`])
//! and the golden filetests (`passes/tests/filetests`) are written in it.
//!
//! One declaration per line; `;` starts a comment:
//!
//! ```text
//! $x: f32[2, 8]                                  a value leaf (an IR value)
//! weight $w: f32[8, 8]                           a constant: a weight
//! onnx:Relu@n1.0: f32[2, 8] homogeneous 0 positive
//! onnx:Concat@n2.0: f32[4, 8] uniform
//! onnx:MatMul@n3.0: f32[2, 8] linear input=0 out=1 in=1 map=last flops=256
//! onnx:Conv@n4.0: f32[1, 8, 4, 4] linear input=0 contract=1:1:1 out=1,2 in=1 map=first
//! onnx:BatchNormalization@n5.0: f32[1, 8, 4, 4] linear input=0 out=1,2 in=1,3^-1
//! onnx:LayerNormalization@n6.0: f32[2, 8] norm input=0 eps=3
//! onnx:Pow@n7.0: f32[2, 8] power 2     (also: sqrt, reciprocal)
//! block 0 axis 1                                 the next term is residual block 0
//! states 0: $s1 $s2                              block 0's earlier stream states
//! size N=4                                       a symbolic dimension's size, for costs
//! ```
//!
//! A generic op's semantics ([`OpSemantics`]) follow its type: `homogeneous
//! I,J [positive]`, `uniform [positive]`, `linear input=I out=J^E,… in=J^E,…
//! [contract=A:W:B]` (`^E` defaults to 1; `contract`: data axis `A` meets
//! axis `B` of weight child `W`, see [`Contraction`]), `norm input=I eps=J`, `power P`, `sqrt`,
//! `reciprocal`; then optionally `map=last|first` (a channel map with input 0
//! and weight 1, see [`ChannelMap`]) and `flops=F`. Types are an element
//! type (`f16`, `bf16`, `f32`, `f64`, `i32`, `i64`, `bool`) and a shape
//! whose dims are numbers or symbols. Terms are [`TensorLang`]
//! s-expressions.
//!
//! Complexity: linear in the text. Errors: [`TextError`], naming the line.

use std::collections::BTreeMap;

use egg::{Id, RecExpr};

use crate::analysis::Leaf;
use crate::block::{Block, BlockId, Layout};
use crate::graph::{GraphError, TensorGraph};
use crate::lang::{OpRef, TensorLang, ValueRef};
use crate::semantics::{ChannelMap, Contraction, OpSemantics};
use crate::shape::{DType, Dim, Shape, ShapeError, Sizes, TensorType};

/// A text that does not describe a graph.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// A line that is not a declaration.
    #[error("line {line}: {message}: `{text}`")]
    Syntax {
        /// The line, from 1.
        line: usize,
        /// What is wrong.
        message: String,
        /// The line's text.
        text: String,
    },
    /// A term that does not parse.
    #[error("term `{term}`: {message}")]
    Term {
        /// The term.
        term: String,
        /// What is wrong.
        message: String,
    },
    /// A term that is ill-shaped.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// A declaration the graph refused.
    #[error(transparent)]
    Graph(#[from] GraphError),
}

/// A generic op's declaration.
#[derive(Debug, Clone, PartialEq)]
pub struct OpDecl {
    /// The op output.
    pub op: OpRef,
    /// Its type.
    pub ty: TensorType,
    /// What fusion may assume of it.
    pub semantics: Option<OpSemantics>,
    /// Whether it is a channel map, and of which layout.
    pub map: Option<Layout>,
    /// Its FLOPs.
    pub flops: Option<f64>,
}

/// The declarations of a text, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Declarations {
    /// Value leaves, by name, with whether each is a weight.
    pub values: Vec<(ValueRef, TensorType, bool)>,
    /// Generic ops.
    pub ops: Vec<OpDecl>,
    /// Block tags, by the index of the term they tag (the next term after
    /// the `block` line).
    pub blocks: BTreeMap<usize, Block>,
    /// Earlier stream states, per block.
    pub states: BTreeMap<BlockId, Vec<ValueRef>>,
    /// Sizes of symbolic dimensions.
    pub sizes: Sizes,
    /// The lines that were not declarations, in order: the terms.
    pub terms: Vec<String>,
}

fn dtype(s: &str) -> Option<DType> {
    Some(match s {
        "f16" => DType::F16,
        "bf16" => DType::BF16,
        "f32" => DType::F32,
        "f64" => DType::F64,
        "i32" => DType::I32,
        "i64" => DType::I64,
        "bool" => DType::Bool,
        _ => return None,
    })
}

/// `f32[2, N]`.
fn tensor_type(s: &str) -> Option<TensorType> {
    let (d, rest) = s.split_once('[')?;
    let dims = rest.strip_suffix(']')?;
    let shape: Shape = if dims.trim().is_empty() {
        Vec::new()
    } else {
        dims.split(',')
            .map(|d| {
                let d = d.trim();
                let symbol = d
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_alphabetic() || c == '_')
                    && d.chars().all(|c| c.is_alphanumeric() || c == '_');
                match d.parse::<u64>() {
                    Ok(n) => Some(Dim::Fixed(n)),
                    Err(_) if symbol => Some(Dim::Sym(d.to_owned())),
                    Err(_) => None,
                }
            })
            .collect::<Option<_>>()?
    };
    Some(TensorType::new(shape, dtype(d.trim())?))
}

/// `1,2^-1` as `[(1, 1), (2, -1)]`.
fn into_list(s: &str) -> Option<Vec<(usize, i32)>> {
    s.split(',')
        .map(|p| {
            let (j, e) = p.split_once('^').unwrap_or((p, "1"));
            Some((j.trim().parse().ok()?, e.trim().parse().ok()?))
        })
        .collect()
}

/// `data-axis:weight:weight-axis` as a [`Contraction`].
fn parse_contraction(v: &str) -> Option<Contraction> {
    let mut parts = v.split(':').map(str::trim);
    let data_axis = parts.next()?.parse().ok()?;
    let weight = parts.next()?.parse().ok()?;
    let weight_axis = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some(Contraction {
        data_axis,
        weight,
        weight_axis,
    })
}

/// What follows an op's type: semantics, channel map, FLOPs.
type OpExtras = (Option<OpSemantics>, Option<Layout>, Option<f64>);

/// `k=value`'s value, if `w` is one.
fn key<'w>(w: &'w str, k: &str) -> Option<&'w str> {
    w.strip_prefix(k).and_then(|r| r.strip_prefix('='))
}

/// The semantics and extras after an op's type.
fn op_extras(words: &[&str]) -> Result<OpExtras, String> {
    let mut semantics = None;
    let mut map = None;
    let mut flops = None;
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        i += 1;
        if let Some(m) = key(w, "map") {
            map = Some(match m {
                "last" => Layout::ChannelLast,
                "first" => Layout::ChannelFirst,
                _ => return Err(format!("map={m}: expected last or first")),
            });
            continue;
        }
        if let Some(f) = key(w, "flops") {
            flops = Some(f.parse().map_err(|_| format!("flops={f}: not a number"))?);
            continue;
        }
        let positive = |i: &mut usize| {
            let p = words.get(*i) == Some(&"positive");
            if p {
                *i += 1;
            }
            p
        };
        semantics = Some(match w {
            "homogeneous" => {
                let inputs = words
                    .get(i)
                    .and_then(|l| {
                        l.split(',')
                            .map(|j| j.parse().ok())
                            .collect::<Option<Vec<usize>>>()
                    })
                    .ok_or("homogeneous takes its inputs, e.g. `homogeneous 0`")?;
                i += 1;
                OpSemantics::Homogeneous {
                    inputs,
                    positive_only: positive(&mut i),
                }
            }
            "uniform" => OpSemantics::Uniform {
                positive_only: positive(&mut i),
            },
            "linear" => {
                let (mut input, mut out, mut inp) = (0, Vec::new(), Vec::new());
                let mut contraction = None;
                while let Some(&a) = words.get(i) {
                    if let Some(v) = key(a, "input") {
                        input = v.parse().map_err(|_| format!("input={v}"))?;
                    } else if let Some(v) = key(a, "contract") {
                        contraction = Some(parse_contraction(v).ok_or(format!(
                            "contract={v}: expected data-axis:weight:weight-axis, e.g. -1:1:-2"
                        ))?);
                    } else if let Some(v) = key(a, "out") {
                        out = into_list(v).ok_or(format!("out={v}"))?;
                    } else if let Some(v) = key(a, "in") {
                        inp = into_list(v).ok_or(format!("in={v}"))?;
                    } else {
                        break;
                    }
                    i += 1;
                }
                OpSemantics::Linear {
                    input,
                    output_into: out,
                    input_into: inp,
                    contraction,
                }
            }
            "norm" => {
                let (mut input, mut eps) = (0, 0);
                while let Some(&a) = words.get(i) {
                    if let Some(v) = key(a, "input") {
                        input = v.parse().map_err(|_| format!("input={v}"))?;
                    } else if let Some(v) = key(a, "eps") {
                        eps = v.parse().map_err(|_| format!("eps={v}"))?;
                    } else {
                        break;
                    }
                    i += 1;
                }
                OpSemantics::Norm { input, eps }
            }
            "power" => {
                let p = words
                    .get(i)
                    .and_then(|p| p.parse().ok())
                    .ok_or("power takes its integer exponent")?;
                i += 1;
                OpSemantics::Power { exponent: p }
            }
            "sqrt" => OpSemantics::Sqrt,
            "reciprocal" => OpSemantics::Reciprocal,
            other => return Err(format!("unknown semantics `{other}`")),
        });
    }
    Ok((semantics, map, flops))
}

impl Declarations {
    /// Parses `text`.
    ///
    /// # Errors
    /// [`TextError::Syntax`] for a line that is neither a declaration nor a
    /// term (a term starts with `(` or `laurel.`, or is one `$value`).
    pub fn parse(text: &str) -> Result<Self, TextError> {
        let mut d = Self::default();
        for (k, raw) in text.lines().enumerate() {
            let line = raw.split(';').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let fail = |message: &str| TextError::Syntax {
                line: k + 1,
                message: message.to_owned(),
                text: raw.trim().to_owned(),
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["block", b, "axis", a] => {
                    let block = Block {
                        id: BlockId(b.parse().map_err(|_| fail("a block number"))?),
                        channel_axis: a.parse().map_err(|_| fail("an axis"))?,
                    };
                    if d.blocks.insert(d.terms.len(), block).is_some() {
                        return Err(fail("a second `block` line for one term"));
                    }
                }
                ["states", b, rest @ ..] => {
                    let b = b
                        .strip_suffix(':')
                        .ok_or_else(|| fail("`states K: $s …`"))?;
                    let id = BlockId(b.parse().map_err(|_| fail("a block number"))?);
                    let states = rest
                        .iter()
                        .map(|s| s.strip_prefix('$').and_then(|n| ValueRef::new(n).ok()))
                        .collect::<Option<_>>()
                        .ok_or_else(|| fail("states are `$name`s"))?;
                    d.states.insert(id, states);
                }
                ["size", kv] => {
                    let (n, v) = kv
                        .split_once('=')
                        .ok_or_else(|| fail("`size NAME=VALUE`"))?;
                    d.sizes
                        .insert(n.to_owned(), v.parse().map_err(|_| fail("a size"))?);
                }
                _ if line.starts_with('(')
                    || line.starts_with("laurel.")
                    || (line.starts_with('$') && !line.contains([':', ' ', '\t'])) =>
                {
                    d.terms.push(line.to_owned());
                }
                _ => {
                    let (weight, rest) = match line.strip_prefix("weight ") {
                        Some(r) => (true, r.trim()),
                        None => (false, line),
                    };
                    let (name, decl) = rest
                        .split_once(": ")
                        .ok_or_else(|| fail("expected `NAME: TYPE …`"))?;
                    let close = decl.find(']').ok_or_else(|| fail("a type ends in `]`"))?;
                    let ty = tensor_type(&decl[..=close]).ok_or_else(|| fail("a type"))?;
                    let extras: Vec<&str> = decl[close + 1..].split_whitespace().collect();
                    if let Some(v) = name.strip_prefix('$') {
                        if !extras.is_empty() {
                            return Err(fail("a value takes only its type"));
                        }
                        let v = ValueRef::new(v).map_err(|e| fail(&e.to_string()))?;
                        d.values.push((v, ty, weight));
                    } else {
                        if weight {
                            return Err(fail("only a value can be a weight"));
                        }
                        let op: OpRef = name.parse().map_err(|_| fail("an `onnx:Op@nN.S`"))?;
                        let (semantics, map, flops) = op_extras(&extras).map_err(|m| fail(&m))?;
                        d.ops.push(OpDecl {
                            op,
                            ty,
                            semantics,
                            map,
                            flops,
                        });
                    }
                }
            }
        }
        Ok(d)
    }

    /// A graph with every declaration made (no term added).
    ///
    /// # Errors
    /// [`TextError::Graph`] when the graph refuses one.
    pub fn graph(&self) -> Result<TensorGraph, TextError> {
        let mut g = TensorGraph::new();
        for (v, ty, weight) in &self.values {
            g.declare(Leaf::Value(*v), ty.clone())?;
            if *weight {
                g.declare_weight(*v)?;
            }
        }
        for o in &self.ops {
            g.declare(Leaf::Op(o.op), o.ty.clone())?;
            if let Some(s) = &o.semantics {
                g.declare_semantics(o.op, s.clone());
            }
            if let Some(layout) = o.map {
                g.declare_channel_map(
                    o.op,
                    ChannelMap {
                        input: 0,
                        weight: 1,
                        layout,
                    },
                );
            }
            if let Some(f) = o.flops {
                g.declare_flops(o.op, f);
            }
        }
        Ok(g)
    }

    /// Adds `terms` to `g` (checked), tags the blocks the declarations give
    /// them (by position) and records the states. Returns the roots.
    ///
    /// # Errors
    /// [`TextError`] for a term that does not parse or is ill-shaped, or a
    /// tag the graph refuses.
    pub fn add_terms(&self, g: &mut TensorGraph, terms: &[String]) -> Result<Vec<Id>, TextError> {
        let mut roots = Vec::with_capacity(terms.len());
        for (i, t) in terms.iter().enumerate() {
            let root = g.add_expr_checked(&term(t)?)?;
            if let Some(b) = self.blocks.get(&i) {
                g.tag_block(root, *b)?;
            }
            roots.push(root);
        }
        for (b, states) in &self.states {
            let ids = states
                .iter()
                .map(|s| g.add_checked(TensorLang::Value(*s)))
                .collect::<Result<Vec<_>, _>>()?;
            g.record_states(*b, ids)?;
        }
        Ok(roots)
    }

    /// The graph with its own terms added: the graph and the roots.
    ///
    /// # Errors
    /// As [`Declarations::graph`] and [`Declarations::add_terms`].
    pub fn build(&self) -> Result<(TensorGraph, Vec<Id>), TextError> {
        let mut g = self.graph()?;
        let roots = self.add_terms(&mut g, &self.terms)?;
        Ok((g, roots))
    }
}

/// Parses a term.
///
/// # Errors
/// [`TextError::Term`].
pub fn term(text: &str) -> Result<RecExpr<TensorLang>, TextError> {
    text.parse()
        .map_err(|e: egg::RecExprParseError<_>| TextError::Term {
            term: text.to_owned(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::fixed;

    #[test]
    fn declarations_read_like_the_lowering_makes_them() {
        let d = Declarations::parse(
            "; a comment\n$x: f32[2, N]\nweight $w: f32[8, 8]  ; trailing\n\
             onnx:Relu@n1.0: f32[2, 8] homogeneous 0 positive\n\
             onnx:Conv@n4.0: f32[1, 8, 4, 4] linear input=0 contract=1:1:1 out=1,2 in=1,3^-1 map=first flops=4096\n\
             onnx:LayerNormalization@n6.0: f32[2, 8] norm input=0 eps=3\n\
             size N=4\nblock 3 axis 1\n(resadd $x $x)\nstates 3: $w\n",
        )
        .unwrap();
        assert_eq!(d.values.len(), 2);
        assert_eq!(
            d.values[0].1.shape,
            Some(vec![Dim::Fixed(2), Dim::Sym("N".into())])
        );
        assert!(d.values[1].2, "a weight");
        assert_eq!(
            d.ops[0].semantics,
            Some(OpSemantics::Homogeneous {
                inputs: vec![0],
                positive_only: true
            })
        );
        assert_eq!(
            d.ops[1].semantics,
            Some(OpSemantics::Linear {
                input: 0,
                output_into: vec![(1, 1), (2, 1)],
                input_into: vec![(1, 1), (3, -1)],
                contraction: Some(Contraction {
                    data_axis: 1,
                    weight: 1,
                    weight_axis: 1
                }),
            })
        );
        assert_eq!(
            (d.ops[1].map, d.ops[1].flops),
            (Some(Layout::ChannelFirst), Some(4096.0))
        );
        assert_eq!(
            d.ops[2].semantics,
            Some(OpSemantics::Norm { input: 0, eps: 3 })
        );
        assert_eq!(d.sizes.get("N"), Some(&4));
        assert_eq!(d.terms, ["(resadd $x $x)"]);
        assert_eq!(d.blocks[&0].id, BlockId(3));
        assert_eq!(d.states[&BlockId(3)].len(), 1);
    }

    #[test]
    fn a_graph_is_built_with_its_terms_checked() {
        let d = Declarations::parse("$x: f32[2, 3]\n$y: f32[3]\n(+ $x $y)\n").unwrap();
        let (g, roots) = d.build().unwrap();
        assert_eq!(g.data(roots[0]).unwrap().shape, Some(fixed(&[2, 3])));
        let bad = Declarations::parse("$x: f32[2, 3]\n$y: f32[4]\n(+ $x $y)\n").unwrap();
        assert!(matches!(bad.build(), Err(TextError::Shape(_))));
    }

    #[test]
    fn bad_lines_name_themselves() {
        for text in [
            "$x f32[2]",
            "$x: f33[2]",
            "$x: f32[-1]",
            "$x: f32[2 3]",
            "weight onnx:Relu@n1.0: f32[2]",
            "block 0 axis 1\nblock 1 axis 1\n(+ $x $x)",
            "onnx:Relu@n1.0: f32[2] cubic",
            "block x axis 1",
            "onnx:Pow@n1.0: f32[2] power",
        ] {
            let err = Declarations::parse(text).unwrap_err();
            assert!(matches!(err, TextError::Syntax { .. }), "{text}: {err}");
        }
    }
}
