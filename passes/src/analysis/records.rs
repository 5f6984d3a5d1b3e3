//! What went wrong, as the analysis records it: merges of disagreeing
//! classes ([`MergeConflict`]) and ill-shaped terms ([`RecordedBug`]), both
//! bugs; and refused rule applications ([`Refusal`]), which are not.

use std::fmt;

use crate::block::Block;
use crate::lang::{ParamRef, Scalar};
use crate::shape::{DType, Shape, ShapeError, TensorType};

/// Two merged classes that disagreed: a bug in a rule or in the lowering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeConflict {
    /// Different known shapes.
    Shape(Shape, Shape),
    /// Different known element types.
    DType(DType, DType),
    /// Different known constants.
    Constant(Scalar, Scalar),
    /// Different residual blocks.
    Block(Block, Block),
}

impl fmt::Display for MergeConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |s: &Shape| TensorType {
            shape: Some(s.clone()),
            dtype: None,
        };
        match self {
            MergeConflict::Shape(a, b) => {
                write!(f, "merged shapes {} and {}", show(a), show(b))
            }
            MergeConflict::DType(a, b) => write!(f, "merged element types {a} and {b}"),
            MergeConflict::Constant(a, b) => write!(f, "merged constants {a} and {b}"),
            MergeConflict::Block(a, b) => write!(f, "merged blocks {} and {}", a.id, b.id),
        }
    }
}

/// A bug the analysis recorded: a merge of disagreeing classes, or an
/// ill-shaped term that entered without the check. Passes fail on either.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordedBug {
    /// Two classes with different known types were merged.
    #[error("{count} merge conflict(s), the first: {first}")]
    Conflict {
        /// The first conflict.
        first: Box<MergeConflict>,
        /// How many.
        count: usize,
    },
    /// A term entered the e-graph without the check and was ill-shaped.
    #[error("{count} ill-shaped term(s) entered the e-graph, the first: {first}")]
    IllShaped {
        /// The first one.
        first: Box<ShapeError>,
        /// How many.
        count: usize,
    },
}

/// Why a rule application was refused (see [`crate::checked`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The right-hand side would be ill-shaped.
    IllShaped(ShapeError),
    /// The matched `resadd` class carries no block tag.
    NoBlock,
    /// The block's channel axis fits no layout the rule knows.
    Layout {
        /// The channel axis.
        axis: usize,
        /// The tensor's rank.
        rank: Option<usize>,
    },
    /// The channel count is unknown or symbolic, so the parameters cannot be shaped.
    Channels,
    /// A parameter is already declared with another type.
    ParamType(ParamRef),
    /// The variant has none of RW, LR and PA.
    NoPart,
    /// A low-rank factor of this rank on this many channels would be too large.
    TooLarge {
        /// The rank.
        rank: u64,
        /// The channels.
        channels: u64,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::IllShaped(e) => write!(f, "{e}"),
            Refusal::NoBlock => write!(f, "the residual add carries no block"),
            Refusal::Layout { axis, rank } => match rank {
                Some(r) => write!(f, "channel axis {axis} of a rank-{r} tensor fits no layout"),
                None => write!(f, "channel axis {axis} of a tensor of unknown rank"),
            },
            Refusal::Channels => write!(f, "the channel count is not a known number"),
            Refusal::ParamType(p) => write!(f, "{p} is already declared with another type"),
            Refusal::NoPart => write!(f, "the variant has none of RW, LR and PA"),
            Refusal::TooLarge { rank, channels } => write!(
                f,
                "a rank-{rank} factor on {channels} channels would hold more than 2^28 elements"
            ),
        }
    }
}
