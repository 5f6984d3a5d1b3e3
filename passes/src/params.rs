//! The parameters augmentation adds, typed: for each, its block, its role in
//! the variant's equation, its type and how it starts.
//!
//! The augmentation rule ([`crate::rules::augment`]) reports a [`ParamSpec`]
//! for every tensor it adds; the compiler materialises each one by its role
//! and initialiser (no name is ever parsed back), and training reads the same
//! specs to know which tensors are `LAuReL` parameters and what they are.
//!
//! Initial values ([`Role::init`]); D channels, r a map's rank:
//!
//! | role | [`InitMode::Identity`] | [`InitMode::Random`] |
//! |---|---|---|
//! | α, β ([`RwParam::Raw`], [`RwParam::Vector`]) | 1 | U(0.5, 1.5) |
//! | softmax logits a, b; sigmoid logit p | 0 | N(0, 0.5²) |
//! | `γ_j` | 0 | U(−0.5, 0.5) |
//! | a down-projection `A` (D → r) | column-orthogonal channel-last (`A[i][j] = 1/√(rD)` when `i mod r = j`), Xavier-uniform channel-first | a random matrix with orthogonal columns of the same norm (1/r) channel-last, Xavier-uniform channel-first: seeded per block and map |
//! | LR's up-projection `B` (r → D) | 0, as in `LoRA` | U(−0.1, 0.1) |
//! | PA's up-projections (its shared `h`, RW+LR+PA's per state) | U(−0.1, 0.1): γ = 0 keeps the function, and a zero `B` too would leave γ no gradient | the same |
//!
//! Under [`RwParam::Softmax`] and [`RwParam::Sigmoid`], α and β are not
//! tensors of their own but computed from the logits ([`Init::Derived`]).
//!
//! Everything here is O(1).

use std::fmt;

use crate::block::{BlockId, Layout};
use crate::lang::ParamRef;
use crate::shape::TensorType;
use crate::variant::RwParam;

/// RW's two coefficients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Coefficient {
    /// α, on the branch `f`.
    Alpha,
    /// β, on the skip `x` (and what is added to it).
    Beta,
}

/// Which low-rank map a factor belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Map {
    /// LR's `(x·A)·B`.
    Lr,
    /// PA's `h`, shared across the states.
    SharedH,
    /// RW+LR+PA's map of state `j` (0: the block's own input).
    State(u32),
}

/// What a parameter is in its block's equation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// α or β (a scalar, or a vector over the channels).
    Coefficient(Coefficient),
    /// A softmax logit: `(α, β) = 2·softmax(a, b)`, `a` being α's.
    SoftmaxLogit(Coefficient),
    /// The sigmoid logit `p`: `α = 2σ(p)`, `β = 2σ(−p)`.
    SigmoidLogit,
    /// `γ_j`, the weight of state `j` (0: the block's own input).
    Gamma(u32),
    /// A map's down-projection `A`: D channels to r.
    Down(Map),
    /// A map's up-projection `B`: r channels to D.
    Up(Map),
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let map = |m: &Map| match m {
            Map::Lr => "LR".to_owned(),
            Map::SharedH => "PA's h".to_owned(),
            Map::State(j) => format!("state {j}"),
        };
        match self {
            Role::Coefficient(Coefficient::Alpha) => f.write_str("α"),
            Role::Coefficient(Coefficient::Beta) => f.write_str("β"),
            Role::SoftmaxLogit(Coefficient::Alpha) => f.write_str("softmax logit of α"),
            Role::SoftmaxLogit(Coefficient::Beta) => f.write_str("softmax logit of β"),
            Role::SigmoidLogit => f.write_str("sigmoid logit"),
            Role::Gamma(j) => write!(f, "γ{j}"),
            Role::Down(m) => write!(f, "down-projection of {}", map(m)),
            Role::Up(m) => write!(f, "up-projection of {}", map(m)),
        }
    }
}

/// Whether initial values keep the model's function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InitMode {
    /// Function-preserving values (see the [module docs](self)).
    #[default]
    Identity,
    /// Seeded non-trivial values, for tests that need a visible `LAuReL`.
    Random,
}

impl InitMode {
    /// Both modes, in the order the CLI lists them.
    pub const ALL: [Self; 2] = [Self::Identity, Self::Random];

    /// The CLI's name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Random => "random",
        }
    }
}

impl InitMode {
    /// One line on what it gives.
    #[must_use]
    pub fn help(self) -> &'static str {
        match self {
            Self::Identity => "function-preserving values (γ = 0, B = 0, α = β = 1)",
            Self::Random => "seeded non-trivial values, for tests",
        }
    }
}

impl fmt::Display for InitMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for InitMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown init mode `{s}` (expected identity or random)"))
    }
}

/// How α or β is computed from the block's logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Derivation {
    /// `α = 2σ(a − b)`, `β = 2σ(b − a)`.
    Softmax,
    /// `α = 2σ(p)`, `β = 2σ(−p)`.
    Sigmoid,
}

/// A parameter's initial values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Every element this value.
    Constant(f64),
    /// Independent draws from U(low, high).
    Uniform {
        /// The lower bound.
        low: f64,
        /// The upper bound (exclusive).
        high: f64,
    },
    /// Independent draws from N(0, std²).
    Normal {
        /// The standard deviation.
        std: f64,
    },
    /// The paper's column-orthogonal down-projection, for channel-last maps:
    /// the `[D, r]` matrix with `A[i][j] = 1/√(rD)` when `i mod r = j`.
    ColumnOrthogonal,
    /// A random `[D, r]` matrix with orthogonal columns of norm `1/r`, those
    /// of [`Init::ColumnOrthogonal`]: Gaussian draws, orthogonalised by
    /// Gram–Schmidt (for `r ≤ D`; beyond `D` columns, the draws scaled).
    RandomColumnOrthogonal,
    /// Xavier-uniform for the `[D, r]` matrix: U(±√(6/(D + r))).
    XavierUniform,
    /// Not a tensor of its own: computed from the block's logits.
    Derived(Derivation),
}

/// One parameter the augmentation adds.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// Its name, `laurel.<block>.<name>`: the initializer's, and the leaf's in
    /// the term (RW's softmax and sigmoid logits are no leaves: α and β are
    /// computed from them).
    pub param: ParamRef,
    /// What it is.
    pub role: Role,
    /// Its shape and element type, as the term uses it: a low-rank factor is
    /// the matrix of `matmul` (`A: [D, r]`, `B: [r, D]`) or of `conv1x1`
    /// (`A: [r, D]`, `B: [D, r]`, the `[out, in]` weights), a vector
    /// coefficient `[D]` channel-last and `[D, 1, …, 1]` channel-first.
    pub ty: TensorType,
    /// The channel layout a factor or vector coefficient was shaped for.
    pub layout: Option<Layout>,
    /// How it starts.
    pub init: Init,
}

impl ParamSpec {
    /// The block it belongs to.
    #[must_use]
    pub fn block(&self) -> BlockId {
        self.param.block()
    }

    /// Whether it is a tensor of its own (not computed from others).
    #[must_use]
    pub fn is_tensor(&self) -> bool {
        !matches!(self.init, Init::Derived(_))
    }

    /// Its element count when its shape is fixed.
    #[must_use]
    pub fn elements(&self) -> Option<u64> {
        self.ty
            .shape
            .as_ref()?
            .iter()
            .try_fold(1u64, |n, d| match d {
                crate::shape::Dim::Fixed(k) => n.checked_mul(*k),
                crate::shape::Dim::Sym(_) => None,
            })
    }
}

impl Role {
    /// The role's initial values under `mode`, for a factor of `layout`;
    /// `rw` is the variant's RW parametrisation (α and β are derived under
    /// softmax and sigmoid).
    #[must_use]
    pub fn init(self, mode: InitMode, layout: Option<Layout>, rw: Option<RwParam>) -> Init {
        let random = mode == InitMode::Random;
        match self {
            Role::Coefficient(_) => match rw {
                Some(RwParam::Softmax) => Init::Derived(Derivation::Softmax),
                Some(RwParam::Sigmoid) => Init::Derived(Derivation::Sigmoid),
                _ if random => Init::Uniform {
                    low: 0.5,
                    high: 1.5,
                },
                _ => Init::Constant(1.0),
            },
            Role::SoftmaxLogit(_) | Role::SigmoidLogit if random => Init::Normal { std: 0.5 },
            Role::Gamma(_) if random => Init::Uniform {
                low: -0.5,
                high: 0.5,
            },
            Role::SoftmaxLogit(_) | Role::SigmoidLogit | Role::Gamma(_) => Init::Constant(0.0),
            Role::Down(_) if layout == Some(Layout::ChannelLast) && random => {
                Init::RandomColumnOrthogonal
            }
            Role::Down(_) if layout == Some(Layout::ChannelLast) => Init::ColumnOrthogonal,
            Role::Down(_) => Init::XavierUniform,
            Role::Up(Map::Lr) if !random => Init::Constant(0.0),
            Role::Up(_) => Init::Uniform {
                low: -0.1,
                high: 0.1,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_values_keep_the_function() {
        let id = InitMode::Identity;
        let last = Some(Layout::ChannelLast);
        for rw in [Some(RwParam::Raw), Some(RwParam::Vector)] {
            assert_eq!(
                Role::Coefficient(Coefficient::Beta).init(id, last, rw),
                Init::Constant(1.0)
            );
        }
        assert_eq!(
            Role::Coefficient(Coefficient::Alpha).init(id, None, Some(RwParam::Softmax)),
            Init::Derived(Derivation::Softmax)
        );
        assert_eq!(Role::SigmoidLogit.init(id, None, None), Init::Constant(0.0));
        assert_eq!(Role::Gamma(2).init(id, None, None), Init::Constant(0.0));
        assert_eq!(Role::Up(Map::Lr).init(id, last, None), Init::Constant(0.0));
        // PA's maps start non-zero: their γ are zero.
        assert!(matches!(
            Role::Up(Map::SharedH).init(id, last, None),
            Init::Uniform { .. }
        ));
        assert!(matches!(
            Role::Up(Map::State(1)).init(id, last, None),
            Init::Uniform { .. }
        ));
        assert_eq!(
            Role::Down(Map::Lr).init(id, last, None),
            Init::ColumnOrthogonal
        );
        assert_eq!(
            Role::Down(Map::Lr).init(id, Some(Layout::ChannelFirst), None),
            Init::XavierUniform
        );
    }

    #[test]
    fn random_values_move_off_the_identity() {
        let r = InitMode::Random;
        assert!(matches!(
            Role::Coefficient(Coefficient::Alpha).init(r, None, Some(RwParam::Raw)),
            Init::Uniform { .. }
        ));
        assert!(matches!(
            Role::Up(Map::Lr).init(r, None, None),
            Init::Uniform { .. }
        ));
        assert!(matches!(
            Role::SoftmaxLogit(Coefficient::Beta).init(r, None, None),
            Init::Normal { .. }
        ));
        assert_eq!(
            Role::Coefficient(Coefficient::Beta).init(r, None, Some(RwParam::Sigmoid)),
            Init::Derived(Derivation::Sigmoid)
        );
    }

    #[test]
    fn init_modes_read_and_print_back() {
        for m in InitMode::ALL {
            assert_eq!(m.to_string().parse::<InitMode>(), Ok(m));
        }
        assert!("zero".parse::<InitMode>().is_err());
    }
}
