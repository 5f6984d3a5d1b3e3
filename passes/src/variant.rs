//! The `LAuReL` variants, as one typed value: which of RW, LR and PA a
//! residual gets, with their parameters.
//!
//! A [`Variant`] holds an optional part for each of the paper's three
//! forms; the combinations are the parts present:
//!
//! | name | residual `x + f` becomes | parameters per block |
//! |---|---|---|
//! | `rw` | `α·f + β·x` | 2 (1 with [`RwParam::Sigmoid`], 2D with [`RwParam::Vector`]) |
//! | `lr` | `f + x + (x·A)·B` | 2rD |
//! | `pa` | `f + x + Σ_j γ_j·h(x_{i−j})` | k, or k + 2r'D |
//! | `rw+lr` | `α·f + β·(x + (x·A)·B)` | RW's + 2rD |
//! | `rw+pa` | `α·f + β·(x + Σ_j γ_j·h(x_{i−j}))` | RW's + k (+ 2r'D) |
//! | `lr+pa` | `f + x + (x·A)·B + Σ_j γ_j·h(x_{i−j})` | 2rD + k (+ 2r'D) |
//! | `rw+lr+pa` | `α·f + β·(x + Σ_j γ_j·(x_{i−j}·A_j)·B_j)` (the paper's Eq. 6) | RW's + k + 2rkD |
//!
//! D is the block's channel count, r LR's rank, k the block's number of PA
//! terms (its own input and up to `window − 1` earlier states), r' the rank
//! of PA's shared map `h` (the identity when [`Pa::h`] is `None`; RW+LR+PA has
//! a map of rank r per state instead, and no shared `h`).
//!
//! Text: [`Variant`]'s `Display` is its name (`rw+lr+pa`), the alternate form
//! `{:#}` every parameter (`rw(softmax)+lr(r=4)+pa(k=3, h=id)`); `FromStr`
//! reads both, a bare part taking the defaults ([`RwParam::Softmax`],
//! [`DEFAULT_RANK`], [`DEFAULT_WINDOW`], `h` the identity). Parts come in the
//! order `rw`, `lr`, `pa`, each at most once. O(1) everywhere, but parsing,
//! which is linear in the text.

use std::fmt;
use std::num::{NonZeroU64, NonZeroUsize};
use std::str::FromStr;

/// A low-rank map's rank.
pub type Rank = NonZeroU64;

/// LR's rank unless one is given.
pub const DEFAULT_RANK: Rank = NonZeroU64::MIN.saturating_add(3);

/// PA's window unless one is given.
pub const DEFAULT_WINDOW: NonZeroUsize = NonZeroUsize::MIN.saturating_add(2);

/// How RW's α and β are parametrised. Every form is the identity at its
/// initial values (α = β = 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RwParam {
    /// α and β themselves, two scalars.
    Raw,
    /// `(α, β) = 2·softmax(a, b)`: two logits, `a = b = 0` at identity.
    #[default]
    Softmax,
    /// `α = 2σ(p)`, `β = 2σ(−p)`: one logit, `p = 0` at identity.
    Sigmoid,
    /// α and β as vectors over the block's D channels (the paper's vector
    /// form): 2D parameters, all 1 at identity.
    Vector,
}

impl RwParam {
    /// Every parametrisation, in the order the CLI lists them.
    pub const ALL: [Self; 4] = [Self::Raw, Self::Softmax, Self::Sigmoid, Self::Vector];

    /// The name the CLI and the alternate `Display` use.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Softmax => "softmax",
            Self::Sigmoid => "sigmoid",
            Self::Vector => "vector",
        }
    }

    /// One line on what it learns.
    #[must_use]
    pub fn help(self) -> &'static str {
        match self {
            Self::Raw => "α and β themselves (2 per block)",
            Self::Softmax => "(α, β) = 2·softmax(a, b) (2 per block)",
            Self::Sigmoid => "α = 2σ(p), β = 2σ(−p) (1 per block)",
            Self::Vector => "α and β as vectors over the block's D channels (2D per block)",
        }
    }
}

impl fmt::Display for RwParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RwParam {
    type Err = VariantError;
    fn from_str(s: &str) -> Result<Self, VariantError> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                VariantError(format!(
                    "unknown RW parametrisation `{s}` (expected raw, softmax, sigmoid or vector)"
                ))
            })
    }
}

/// PA's part of a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pa {
    /// The block's own input and up to `window − 1` earlier states of its
    /// residual stream.
    pub window: NonZeroUsize,
    /// The rank of the map `h` shared across the states; `None` for the
    /// identity. RW+LR+PA has a map per state instead and ignores it.
    pub h: Option<Rank>,
}

impl Default for Pa {
    fn default() -> Self {
        Self {
            window: DEFAULT_WINDOW,
            h: None,
        }
    }
}

/// Which `LAuReL` forms a residual gets, with their parameters (see the
/// [module docs](self)). At least one part is present in a variant
/// [`Variant::from_str`] or [`Variant::NAMED`] gives; the rules refuse an
/// empty one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Variant {
    /// RW: `α·f + β·…`, parametrised so.
    pub rw: Option<RwParam>,
    /// LR: the rank of `(x·A)·B` (of each `A_j`, `B_j` with RW and PA).
    pub lr: Option<Rank>,
    /// PA: weighted earlier states.
    pub pa: Option<Pa>,
}

/// A variant text that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct VariantError(pub String);

impl Variant {
    /// The seven variants of the paper, with default parameters, in the
    /// order the CLI lists them.
    pub const NAMED: [Self; 7] = [
        Self::of(true, false, false),
        Self::of(false, true, false),
        Self::of(false, false, true),
        Self::of(true, true, false),
        Self::of(true, false, true),
        Self::of(false, true, true),
        Self::of(true, true, true),
    ];

    /// The parts given, with default parameters.
    #[must_use]
    pub const fn of(rw: bool, lr: bool, pa: bool) -> Self {
        Self {
            rw: if rw { Some(RwParam::Softmax) } else { None },
            lr: if lr { Some(DEFAULT_RANK) } else { None },
            pa: if pa {
                Some(Pa {
                    window: DEFAULT_WINDOW,
                    h: None,
                })
            } else {
                None
            },
        }
    }

    /// RW alone, parametrised by `param`.
    #[must_use]
    pub const fn rw(param: RwParam) -> Self {
        Self {
            rw: Some(param),
            lr: None,
            pa: None,
        }
    }

    /// LR alone, of rank `rank`.
    #[must_use]
    pub const fn lr(rank: Rank) -> Self {
        Self {
            rw: None,
            lr: Some(rank),
            pa: None,
        }
    }

    /// PA alone.
    #[must_use]
    pub const fn pa(pa: Pa) -> Self {
        Self {
            rw: None,
            lr: None,
            pa: Some(pa),
        }
    }

    /// The variant's name: its parts joined by `+` (`rw+lr+pa`).
    #[must_use]
    pub fn name(&self) -> &'static str {
        match (self.rw.is_some(), self.lr.is_some(), self.pa.is_some()) {
            (true, false, false) => "rw",
            (false, true, false) => "lr",
            (false, false, true) => "pa",
            (true, true, false) => "rw+lr",
            (true, false, true) => "rw+pa",
            (false, true, true) => "lr+pa",
            (true, true, true) => "rw+lr+pa",
            (false, false, false) => "none",
        }
    }

    /// The name of its augmentation rule (`resadd-to-rw-lr-pa`).
    #[must_use]
    pub fn rule_name(&self) -> &'static str {
        match self.name() {
            "rw" => "resadd-to-rw",
            "lr" => "resadd-to-lr",
            "pa" => "resadd-to-pa",
            "rw+lr" => "resadd-to-rw-lr",
            "rw+pa" => "resadd-to-rw-pa",
            "lr+pa" => "resadd-to-lr-pa",
            "rw+lr+pa" => "resadd-to-rw-lr-pa",
            _ => "resadd-to-nothing",
        }
    }

    /// What the residual becomes, as the module docs' table writes it.
    #[must_use]
    pub fn equation(&self) -> &'static str {
        match self.name() {
            "rw" => "α·f + β·x",
            "lr" => "f + x + (x·A)·B",
            "pa" => "f + x + Σ_j γ_j·h(x_{i−j})",
            "rw+lr" => "α·f + β·(x + (x·A)·B)",
            "rw+pa" => "α·f + β·(x + Σ_j γ_j·h(x_{i−j}))",
            "lr+pa" => "f + x + (x·A)·B + Σ_j γ_j·h(x_{i−j})",
            "rw+lr+pa" => "α·f + β·(x + Σ_j γ_j·(x_{i−j}·A_j)·B_j)",
            _ => "x + f",
        }
    }

    /// The low-rank map `h` PA applies to each state: the shared one, or
    /// `None` for the identity (and for RW+LR+PA, whose maps are per state).
    #[must_use]
    pub fn pa_h(&self) -> Option<Rank> {
        match (self.rw, self.lr, self.pa) {
            (Some(_), Some(_), Some(_)) => None,
            (_, _, Some(pa)) => pa.h,
            _ => None,
        }
    }

    /// Whether the variant needs the block's channel count (and a layout
    /// the rules know): any low-rank map, or vector RW.
    #[must_use]
    pub fn needs_channels(&self) -> bool {
        self.lr.is_some() || self.pa_h().is_some() || self.rw == Some(RwParam::Vector)
    }

    /// `self` with LR's rank set (no change without LR).
    #[must_use]
    pub fn with_rank(mut self, rank: Rank) -> Self {
        if self.lr.is_some() {
            self.lr = Some(rank);
        }
        self
    }

    /// `self` with RW's parametrisation set (no change without RW).
    #[must_use]
    pub fn with_rw_param(mut self, param: RwParam) -> Self {
        if self.rw.is_some() {
            self.rw = Some(param);
        }
        self
    }

    /// `self` with PA's part set (no change without PA).
    #[must_use]
    pub fn with_pa(mut self, pa: Pa) -> Self {
        if self.pa.is_some() {
            self.pa = Some(pa);
        }
        self
    }
}

impl fmt::Display for Variant {
    /// The name (`rw+pa`); with `{:#}`, every parameter
    /// (`rw(softmax)+pa(k=3, h=id)`), which [`Variant::from_str`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !f.alternate() {
            return f.write_str(self.name());
        }
        let mut parts = Vec::new();
        if let Some(p) = self.rw {
            parts.push(format!("rw({p})"));
        }
        if let Some(r) = self.lr {
            parts.push(format!("lr(r={r})"));
        }
        if let Some(pa) = self.pa {
            let h = pa.h.map_or_else(|| "id".to_owned(), |r| format!("r{r}"));
            parts.push(format!("pa(k={}, h={h})", pa.window));
        }
        if parts.is_empty() {
            parts.push("none".into());
        }
        f.write_str(&parts.join("+"))
    }
}

impl FromStr for Variant {
    type Err = VariantError;

    /// `rw+lr+pa`, or with parameters: `rw(vector)+lr(r=8)+pa(k=2, h=r4)`.
    fn from_str(s: &str) -> Result<Self, VariantError> {
        let unknown = || {
            VariantError(format!(
                "unknown variant `{s}` (expected rw, lr, pa, rw+lr, rw+pa, lr+pa or rw+lr+pa)"
            ))
        };
        let mut v = Self {
            rw: None,
            lr: None,
            pa: None,
        };
        let mut last = 0;
        for part in split_parts(s).ok_or_else(unknown)? {
            let (name, args) = match part.split_once('(') {
                Some((n, rest)) => (n.trim(), Some(rest.strip_suffix(')').ok_or_else(unknown)?)),
                None => (part.trim(), None),
            };
            let order = match name {
                "rw" => 1,
                "lr" => 2,
                "pa" => 3,
                _ => return Err(unknown()),
            };
            if order <= last {
                return Err(unknown());
            }
            last = order;
            let args: Vec<(&str, &str)> = match args {
                None => Vec::new(),
                Some(a) => a
                    .split(',')
                    .map(|kv| {
                        let kv = kv.trim();
                        kv.split_once('=')
                            .map_or(("", kv), |(k, x)| (k.trim(), x.trim()))
                    })
                    .collect(),
            };
            let bad = |what: &str| VariantError(format!("variant `{s}`: {what}"));
            match name {
                "rw" => {
                    let mut p = RwParam::Softmax;
                    match args.as_slice() {
                        [] => {}
                        [("", x)] => p = x.parse()?,
                        _ => return Err(bad("rw takes one parametrisation, e.g. rw(raw)")),
                    }
                    v.rw = Some(p);
                }
                "lr" => {
                    let mut r = DEFAULT_RANK;
                    match args.as_slice() {
                        [] => {}
                        [("r", x)] => {
                            r = x
                                .parse()
                                .map_err(|_| bad(&format!("the rank `{x}` is not a number ≥ 1")))?;
                        }
                        _ => return Err(bad("lr takes one r=RANK")),
                    }
                    v.lr = Some(r);
                }
                _ => {
                    let mut pa = Pa::default();
                    let mut seen = Vec::new();
                    for (k, x) in args {
                        if seen.contains(&k) {
                            return Err(bad(&format!("pa takes `{k}=` once")));
                        }
                        seen.push(k);
                        match k {
                            "k" => {
                                pa.window = x.parse().map_err(|_| {
                                    bad(&format!("the window `{x}` is not a number ≥ 1"))
                                })?;
                            }
                            "h" if x == "id" => pa.h = None,
                            "h" => {
                                let r =
                                    x.strip_prefix('r').ok_or_else(|| bad("h is id or rRANK"))?;
                                pa.h = Some(r.parse().map_err(|_| {
                                    bad(&format!("h's rank `{r}` is not a number ≥ 1"))
                                })?);
                            }
                            _ => return Err(bad("pa takes k=WINDOW and h=id|rRANK")),
                        }
                    }
                    v.pa = Some(pa);
                }
            }
        }
        Ok(v)
    }
}

/// `a+b(x, y)+c` split at the `+` outside parentheses; `None` when empty or
/// unbalanced.
fn split_parts(s: &str) -> Option<Vec<&str>> {
    let (mut depth, mut start, mut parts) = (0u32, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.checked_sub(1)?,
            '+' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    (depth == 0 && parts.iter().all(|p| !p.trim().is_empty())).then_some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rank(r: u64) -> Rank {
        Rank::new(r).unwrap()
    }

    #[test]
    fn the_seven_names_read_and_print_back() {
        let names: Vec<String> = Variant::NAMED.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            ["rw", "lr", "pa", "rw+lr", "rw+pa", "lr+pa", "rw+lr+pa"]
        );
        for v in Variant::NAMED {
            assert_eq!(v.to_string().parse::<Variant>(), Ok(v));
            assert_eq!(format!("{v:#}").parse::<Variant>(), Ok(v));
        }
        assert_eq!(
            "rw+lr+pa".parse::<Variant>().unwrap(),
            Variant {
                rw: Some(RwParam::Softmax),
                lr: Some(rank(4)),
                pa: Some(Pa {
                    window: NonZeroUsize::new(3).unwrap(),
                    h: None
                }),
            }
        );
    }

    #[test]
    fn parameters_read_and_print_back() {
        let v = Variant {
            rw: Some(RwParam::Vector),
            lr: Some(rank(8)),
            pa: Some(Pa {
                window: NonZeroUsize::new(2).unwrap(),
                h: Some(rank(3)),
            }),
        };
        assert_eq!(format!("{v:#}"), "rw(vector)+lr(r=8)+pa(k=2, h=r3)");
        assert_eq!(v.to_string(), "rw+lr+pa");
        assert_eq!("rw(vector)+lr(r=8)+pa(k=2, h=r3)".parse(), Ok(v));
        assert_eq!(format!("{:#}", Variant::lr(rank(4))), "lr(r=4)");
        assert_eq!(
            format!("{:#}", "pa".parse::<Variant>().unwrap()),
            "pa(k=3, h=id)"
        );
    }

    #[test]
    fn bad_variants_are_refused_with_the_expected_names() {
        for bad in [
            "",
            "rw+",
            "lr+rw",
            "rw+rw",
            "sq",
            "lr(r=0)",
            "pa(k=0)",
            "rw(cubic)",
            "lr(x=2)",
            "pa(h=4)",
            "rw(raw",
            "rw(raw, sigmoid)",
            "lr(r=2, r=3)",
            "pa(k=2, k=3)",
            "lr(r=abc)",
        ] {
            let err = bad.parse::<Variant>().unwrap_err();
            assert!(!err.0.is_empty(), "{bad}");
        }
        assert!(
            "lr(r=abc)"
                .parse::<Variant>()
                .unwrap_err()
                .0
                .contains("`abc` is not a number")
        );
        assert!(
            "sq".parse::<Variant>()
                .unwrap_err()
                .0
                .contains("expected rw, lr, pa, rw+lr, rw+pa, lr+pa or rw+lr+pa")
        );
    }

    #[test]
    fn rule_names_and_channel_needs_follow_the_parts() {
        let names: Vec<&str> = Variant::NAMED.iter().map(Variant::rule_name).collect();
        assert_eq!(
            names,
            [
                "resadd-to-rw",
                "resadd-to-lr",
                "resadd-to-pa",
                "resadd-to-rw-lr",
                "resadd-to-rw-pa",
                "resadd-to-lr-pa",
                "resadd-to-rw-lr-pa"
            ]
        );
        let needs: Vec<bool> = Variant::NAMED.iter().map(Variant::needs_channels).collect();
        assert_eq!(needs, [false, true, false, true, false, true, true]);
        assert!(Variant::rw(RwParam::Vector).needs_channels());
        let pa_h = Pa {
            window: DEFAULT_WINDOW,
            h: Some(rank(2)),
        };
        assert!(Variant::pa(pa_h).needs_channels());
        // RW+LR+PA has per-state maps, no shared h.
        assert_eq!(Variant::of(true, true, true).with_pa(pa_h).pa_h(), None);
        assert_eq!(
            Variant::of(false, true, true).with_pa(pa_h).pa_h(),
            Some(rank(2))
        );
    }

    #[test]
    fn setters_change_only_the_parts_present() {
        let rw = Variant::rw(RwParam::Raw);
        assert_eq!(rw.with_rank(rank(9)), rw);
        assert_eq!(rw.with_pa(Pa::default()), rw);
        assert_eq!(
            rw.with_rw_param(RwParam::Sigmoid).rw,
            Some(RwParam::Sigmoid)
        );
        assert_eq!(Variant::lr(rank(2)).with_rank(rank(9)).lr, Some(rank(9)));
    }
}
