//! Residual blocks: the identity the augmentation names its parameters after,
//! and the channel layout the low-rank expansions depend on.
//!
//! The lowering numbers the residual adds it hands to the e-graph (block `k`)
//! and tags each `resadd` e-class with its [`Block`]; the tag lives in the
//! e-class analysis data, so it follows the class through merges and the
//! rules read it from the class they rewrite. Everything here is O(1).

use std::fmt;

/// The number of a residual block, as the lowering assigns it; parameter
/// names are `laurel.<block>.<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockId(pub u32);

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What the augmentation needs to know about one residual add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Block {
    /// The block number.
    pub id: BlockId,
    /// The channel axis of the residual stream (non-negative), as the
    /// compiler's residual analysis found it: 1 after a convolution, the
    /// last axis after a matrix product.
    pub channel_axis: usize,
}

/// Where the channel axis sits, which decides how a low-rank map is applied
/// and how its parameters are shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// The channel axis is the last one: `x·a` is a `matmul`, `a` is
    /// `[C, r]` and `b` is `[r, C]`.
    ChannelLast,
    /// The channel axis is axis 1 of a tensor of rank ≥ 3: `x·a` is a
    /// `conv1x1`, whose weights are `[out, in]`, so `a` is `[r, C]` and `b`
    /// is `[C, r]`.
    ChannelFirst,
}

impl Layout {
    /// The layout of a tensor of rank `rank` whose channel axis is `axis`.
    /// A rank-2 tensor with `axis == 1` is channel-last (its axis 1 is the
    /// last one); any other axis has no layout the rules know.
    #[must_use]
    pub fn of(axis: usize, rank: usize) -> Option<Self> {
        if rank >= 1 && axis == rank - 1 {
            Some(Self::ChannelLast)
        } else if rank >= 3 && axis == 1 {
            Some(Self::ChannelFirst)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_follows_the_channel_axis() {
        assert_eq!(Layout::of(3, 4), Some(Layout::ChannelLast));
        assert_eq!(Layout::of(1, 4), Some(Layout::ChannelFirst));
        assert_eq!(
            Layout::of(1, 2),
            Some(Layout::ChannelLast),
            "rank 2: axis 1 is last"
        );
        assert_eq!(Layout::of(2, 4), None);
        assert_eq!(Layout::of(0, 0), None);
    }
}
