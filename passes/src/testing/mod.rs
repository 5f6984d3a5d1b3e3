//! Helpers shared by the unit tests.

use egg::{Id, RecExpr};

use crate::analysis::Leaf;
use crate::block::{Block, BlockId};
use crate::graph::TensorGraph;
use crate::lang::{OpRef, TensorLang, ValueRef};
use crate::shape::{DType, Shape, TensorType};

/// Parses a term.
pub fn expr(s: &str) -> RecExpr<TensorLang> {
    s.parse().unwrap()
}

/// The leaf of `$name`.
pub fn value(name: &str) -> Leaf {
    Leaf::Value(ValueRef::new(name).unwrap())
}

/// The leaf of an `onnx:` op reference.
pub fn op(text: &str) -> Leaf {
    Leaf::Op(text.parse::<OpRef>().unwrap())
}

/// An f32 tensor type.
pub fn f32(shape: Shape) -> TensorType {
    TensorType::new(shape, DType::F32)
}

/// A graph with f32 `$name` leaves of the given shapes.
pub fn graph(values: &[(&str, Shape)]) -> TensorGraph {
    let mut g = TensorGraph::new();
    for (name, shape) in values {
        g.declare(value(name), f32(shape.clone())).unwrap();
    }
    g
}

/// Adds a term.
pub fn add(g: &mut TensorGraph, s: &str) -> Id {
    g.add_expr_checked(&expr(s)).unwrap()
}

/// Block `k` with its channel axis.
pub fn block(k: u32, channel_axis: usize) -> Block {
    Block {
        id: BlockId(k),
        channel_axis,
    }
}

pub mod eval;
