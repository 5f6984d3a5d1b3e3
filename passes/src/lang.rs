//! The tensor language: the terms the compiler lowers its IR into.
//!
//! [`TensorLang`] is one `define_language!` with the terms of
//! `docs/egraph.md`. Leaves and generic ops carry references into the
//! compiler's IR, each with a textual form that reads back unambiguously in
//! an s-expression:
//!
//! | term | text | example |
//! |---|---|---|
//! | [`ValueRef`] | `$` + the value name, `~XX`-escaped | `$x`, `$input~201` |
//! | [`ParamRef`] | `laurel.<block>.<name>` | `laurel.0.alpha` |
//! | [`Scalar`] | `p`, `p/q` (reads decimals too) | `3`, `-1/2`, `0.5` |
//! | [`OpRef`] | `onnx:<op type>@n<node>.<slot>` | `onnx:Conv@n17.0` |
//!
//! The prefixes keep the four leaf kinds disjoint from each other and from
//! the operator names, so `Display` followed by parsing gives back the term.
//!
//! Complexity: parsing and printing are linear in the text. Errors:
//! [`TermError`] for a reference that does not have its textual form.

use std::fmt::{self, Write as _};
use std::str::FromStr;

use egg::{Id, LanguageChildren, Symbol};

pub use crate::block::BlockId;
pub use crate::scalar::Scalar;

/// Why a text is not a term reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TermError {
    /// Not `$name` with a non-empty, well-escaped name.
    #[error("`{0}` is not a value reference (expected `$name`)")]
    Value(String),
    /// Not `laurel.<block>.<name>` with a numeric block and an identifier name.
    #[error("`{0}` is not a parameter reference (expected `laurel.<block>.<name>`)")]
    Param(String),
    /// Not `onnx:<op type>@n<node>.<slot>`.
    #[error("`{0}` is not an op reference (expected `onnx:<OpType>@n<node>.<slot>`)")]
    Op(String),
}

/// An IR value the e-graph does not look into (a graph input, an
/// initializer, the output of an op outside the lowered region), by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ValueRef(Symbol);

/// Bytes written as themselves after `$`; everything else is `~XX` (hex).
/// The s-expression reader splits atoms at white space and parentheses, and
/// its printer quotes atoms holding `%`, `{` or `}`, so those are escaped
/// (with `"` and the escape byte `~`).
fn is_plain(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'(' | b')' | b'"' | b'%' | b'{' | b'}' | b'~')
}

impl ValueRef {
    /// A reference to the IR value named `name`.
    ///
    /// # Errors
    /// [`TermError::Value`] for an empty name (ONNX's "absent input").
    pub fn new(name: &str) -> Result<Self, TermError> {
        if name.is_empty() {
            return Err(TermError::Value(String::new()));
        }
        Ok(Self(Symbol::from(name)))
    }

    /// The value's name.
    #[must_use]
    pub fn name(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for ValueRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('$')?;
        for &b in self.name().as_bytes() {
            if is_plain(b) {
                f.write_char(char::from(b))?;
            } else {
                write!(f, "~{b:02X}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for ValueRef {
    type Err = TermError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || TermError::Value(s.to_owned());
        let body = s.strip_prefix('$').ok_or_else(err)?.as_bytes();
        let mut bytes = Vec::with_capacity(body.len());
        let mut i = 0;
        while let Some(&b) = body.get(i) {
            if b == b'~' {
                let hex = body.get(i + 1..i + 3).ok_or_else(err)?;
                let hex = std::str::from_utf8(hex).map_err(|_| err())?;
                bytes.push(u8::from_str_radix(hex, 16).map_err(|_| err())?);
                i += 3;
            } else if is_plain(b) {
                bytes.push(b);
                i += 1;
            } else {
                return Err(err());
            }
        }
        let name = String::from_utf8(bytes).map_err(|_| err())?;
        Self::new(&name).map_err(|_| err())
    }
}

/// Whether `s` is an identifier: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Decimal digits (at least one, no sign) as a `u32`.
fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A `LAuReL` parameter leaf, symbolic until materialisation:
/// `laurel.<block>.<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ParamRef {
    block: BlockId,
    name: Symbol,
}

impl ParamRef {
    /// The parameter `name` of block `block`.
    ///
    /// # Errors
    /// [`TermError::Param`] when `name` is not an identifier.
    pub fn new(block: BlockId, name: &str) -> Result<Self, TermError> {
        if !is_identifier(name) {
            return Err(TermError::Param(format!("laurel.{block}.{name}")));
        }
        Ok(Self {
            block,
            name: Symbol::from(name),
        })
    }

    /// A parameter with a name known to be an identifier (the rules' own).
    pub(crate) fn named(block: BlockId, name: &str) -> Self {
        debug_assert!(is_identifier(name), "{name}");
        Self {
            block,
            name: Symbol::from(name),
        }
    }

    /// The block the parameter belongs to.
    #[must_use]
    pub fn block(&self) -> BlockId {
        self.block
    }

    /// The parameter's name within its block (`alpha`, `A`, …).
    #[must_use]
    pub fn name(&self) -> &str {
        self.name.as_str()
    }
}

impl fmt::Display for ParamRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "laurel.{}.{}", self.block, self.name)
    }
}

impl FromStr for ParamRef {
    type Err = TermError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || TermError::Param(s.to_owned());
        let rest = s.strip_prefix("laurel.").ok_or_else(err)?;
        let (block, name) = rest.split_once('.').ok_or_else(err)?;
        let block = digits(block).ok_or_else(err)?;
        Self::new(BlockId(block), name).map_err(|_| err())
    }
}

/// A generic ONNX op, by reference: the IR node and the output slot. Its
/// attributes stay in the IR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpRef {
    op_type: Symbol,
    node: u32,
    slot: u32,
}

impl OpRef {
    /// Output `slot` of IR node `node`, an op of type `op_type`.
    ///
    /// # Errors
    /// [`TermError::Op`] when `op_type` is not an identifier.
    pub fn new(op_type: &str, node: u32, slot: u32) -> Result<Self, TermError> {
        if !is_identifier(op_type) {
            return Err(TermError::Op(format!("onnx:{op_type}@n{node}.{slot}")));
        }
        Ok(Self {
            op_type: Symbol::from(op_type),
            node,
            slot,
        })
    }

    /// The ONNX op type (`Conv`, `MatMul`, …).
    #[must_use]
    pub fn op_type(&self) -> &str {
        self.op_type.as_str()
    }

    /// The IR node key.
    #[must_use]
    pub fn node(&self) -> u32 {
        self.node
    }

    /// The output slot.
    #[must_use]
    pub fn slot(&self) -> u32 {
        self.slot
    }
}

impl fmt::Display for OpRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "onnx:{}@n{}.{}", self.op_type, self.node, self.slot)
    }
}

impl FromStr for OpRef {
    type Err = TermError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || TermError::Op(s.to_owned());
        let rest = s.strip_prefix("onnx:").ok_or_else(err)?;
        let (op_type, key) = rest.rsplit_once('@').ok_or_else(err)?;
        let (node, slot) = key
            .strip_prefix('n')
            .and_then(|k| k.split_once('.'))
            .ok_or_else(err)?;
        let node = digits(node).ok_or_else(err)?;
        let slot = digits(slot).ok_or_else(err)?;
        Self::new(op_type, node, slot).map_err(|_| err())
    }
}

/// The children of `laurel-pa`: `f`, `x`, then pairs `γ_j`, `h_j`. The
/// length is even and at least 2, so a malformed `laurel-pa` does not parse.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PaChildren(Vec<Id>);

impl PaChildren {
    /// `f`, `x` and the `(γ_j, h_j)` pairs.
    #[must_use]
    pub fn new(f: Id, x: Id, pairs: &[(Id, Id)]) -> Self {
        let mut ids = vec![f, x];
        ids.extend(pairs.iter().flat_map(|&(g, h)| [g, h]));
        Self(ids)
    }

    /// The `(γ_j, h_j)` pairs.
    pub fn pairs(&self) -> impl Iterator<Item = (Id, Id)> + '_ {
        self.0
            .get(2..)
            .unwrap_or(&[])
            .chunks_exact(2)
            .map(|p| (p[0], p[1]))
    }
}

impl LanguageChildren for PaChildren {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn can_be_length(n: usize) -> bool {
        n >= 2 && n.is_multiple_of(2)
    }

    fn from_vec(v: Vec<Id>) -> Self {
        Self(v)
    }

    fn as_slice(&self) -> &[Id] {
        &self.0
    }

    fn as_mut_slice(&mut self) -> &mut [Id] {
        &mut self.0
    }
}

pub use terms::TensorLang;

/// `define_language!` cannot attach doc comments to variants, so the variants
/// are documented on the enum and the lint is silenced for this module only.
#[allow(missing_docs)]
mod terms {
    use super::{OpRef, PaChildren, ParamRef, Scalar, ValueRef};
    use egg::{Id, define_language};

    define_language! {
        /// The tensor terms of `docs/egraph.md`. Operator variants, by their
        /// s-expression name: `resadd [skip branch]` (a canonical residual add),
        /// `+ - * /` (elementwise, numpy broadcasting), `sigmoid x`,
        /// `matmul [x w]` (over the last axis), `conv1x1 [x w]` (over axis 1,
        /// `w` is `[out, in]`), `laurel-rw [f x α β]` (`α·f + β·x`),
        /// `laurel-lr [f x a b]` (`f + x + (x·a)·b` along the channel axis),
        /// `laurel-pa [f x γ h …]` (`f + x + Σ γ_j·h_j`), `compose [w1 w2]`
        /// (the channel-map weight of `w1` then `w2`: `w1·w2` for `[in, out]`
        /// matrices, `w2·w1` for `[out, in, 1, 1]` kernels), `add-eye w`
        /// (`w + I` for a square channel-map weight), `laurel-residual [c₀ t₀
        /// c₁ t₁ …]` (`Σ cᵢ·tᵢ` with scalar `cᵢ`: the `ai.laurel`
        /// `LaurelResidual` op of `docs/laurel-op.md`), `concat [k a b]`
        /// (`a` and `b` joined along axis `k`, a non-negative integer `Num`),
        /// `slice [k start end x]` (`x` cut to `start..end` on axis `k`).
        /// Leaves: `Num`,
        /// `Param`, `Value`; `Onnx` is a generic op with any number of inputs.
        pub enum TensorLang {
            "resadd" = ResAdd([Id; 2]),
            "+" = Add([Id; 2]),
            "-" = Sub([Id; 2]),
            "*" = Mul([Id; 2]),
            "/" = Div([Id; 2]),
            "sigmoid" = Sigmoid(Id),
            "matmul" = MatMul([Id; 2]),
            "conv1x1" = Conv1x1([Id; 2]),
            "laurel-rw" = LaurelRw([Id; 4]),
            "laurel-lr" = LaurelLr([Id; 4]),
            "laurel-pa" = LaurelPa(PaChildren),
            "compose" = Compose([Id; 2]),
            "add-eye" = AddEye(Id),
            "laurel-residual" = LaurelResidual(Vec<Id>),
            "concat" = Concat([Id; 3]),
            "slice" = Slice([Id; 4]),
            Num(Scalar),
            Param(ParamRef),
            Value(ValueRef),
            Onnx(OpRef, Vec<Id>),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use egg::{Language, RecExpr};

    fn round_trip(text: &str) -> RecExpr<TensorLang> {
        let expr: RecExpr<TensorLang> = text.parse().unwrap();
        assert_eq!(expr.to_string(), text);
        expr
    }

    #[test]
    fn s_expressions_parse_and_print_back() {
        for text in [
            "(resadd $x (onnx:Conv@n3.0 $x $w))",
            "(laurel-rw $f $x laurel.0.alpha laurel.0.beta)",
            "(laurel-lr $f $x laurel.12.A laurel.12.B)",
            "(laurel-pa $f $x)",
            "(laurel-pa $f $x 1/2 $h0 laurel.2.gamma1 $h1)",
            "(+ -1/2 (* 3 (sigmoid $y)))",
            "(/ (- $a $b) (matmul $a (conv1x1 $b $w)))",
            "(onnx:Split@n4.1 $x)",
            "onnx:RandomNormal@n1.0",
        ] {
            round_trip(text);
        }
    }

    #[test]
    fn leaves_have_disjoint_text_forms() {
        let expr = round_trip("(+ (+ 3 $3) (+ laurel.3.x (onnx:Relu@n3.0 $laurel.3.x)))");
        let leaves: Vec<&TensorLang> = expr.iter().filter(|n| n.is_leaf()).collect();
        assert!(matches!(leaves[0], TensorLang::Num(_)));
        assert!(matches!(leaves[1], TensorLang::Value(v) if v.name() == "3"));
        assert!(
            matches!(leaves[2], TensorLang::Param(p) if p.block() == BlockId(3) && p.name() == "x")
        );
        assert!(matches!(leaves[3], TensorLang::Value(v) if v.name() == "laurel.3.x"));
    }

    #[test]
    fn decimals_read_as_canonical_rationals() {
        let expr: RecExpr<TensorLang> = "(* 0.5 (+ 1e-5 $x))".parse().unwrap();
        assert_eq!(expr.to_string(), "(* 1/2 (+ 1/100000 $x))");
    }

    #[test]
    fn value_names_with_any_characters_round_trip() {
        for name in [
            "input (1)",
            "/layer1/Add_output_0",
            "onnx::Conv_12",
            "50%",
            "{a}~b",
            "é\"q\\",
        ] {
            let v = ValueRef::new(name).unwrap();
            let text = v.to_string();
            assert!(
                !text.contains([' ', '(', ')', '"', '%', '{', '}']),
                "{text}"
            );
            assert_eq!(text.parse::<ValueRef>().unwrap(), v, "{text}");
            round_trip(&format!("(sigmoid {v})"));
        }
        assert_eq!(
            ValueRef::new("input (1)").unwrap().to_string(),
            "$input~20~281~29"
        );
        assert!(ValueRef::new("").is_err());
        for bad in ["$", "x", "%x", "$a~2", "$a~zz", "$a b", "$~FF", "$a%"] {
            assert!(bad.parse::<ValueRef>().is_err(), "{bad}");
        }
    }

    #[test]
    fn references_refuse_malformed_text() {
        assert_eq!(
            "onnx:Conv@n17.0".parse::<OpRef>(),
            Ok(OpRef::new("Conv", 17, 0).unwrap())
        );
        for bad in [
            "onnx:Conv@17.0",
            "onnx:@n1.0",
            "Conv@n1.0",
            "onnx:Conv@n1",
            "onnx:Co nv@n1.0",
            "onnx:Conv@n-1.0",
        ] {
            assert!(bad.parse::<OpRef>().is_err(), "{bad}");
        }
        for bad in [
            "laurel.a.alpha",
            "laurel.0.",
            "laurel.0.1x",
            "laurel..x",
            "laurel.+1.x",
            "lau.0.x",
        ] {
            assert!(bad.parse::<ParamRef>().is_err(), "{bad}");
        }
        assert!(ParamRef::new(BlockId(0), "al-pha").is_err());
    }

    #[test]
    fn malformed_terms_do_not_parse() {
        for bad in [
            "(laurel-pa $f $x $g)",
            "(laurel-pa $f)",
            "(laurel-rw $f $x $a)",
            "(resadd $x)",
            "(sigmoid $x $y)",
            "(frobnicate $x)",
            "(+ 1/0 $x)",
        ] {
            assert!(bad.parse::<RecExpr<TensorLang>>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn pa_children_pair_up() {
        let pa = PaChildren::new(Id::from(0), Id::from(1), &[(Id::from(2), Id::from(3))]);
        assert_eq!(pa.len(), 4);
        assert_eq!(
            pa.pairs().collect::<Vec<_>>(),
            vec![(Id::from(2), Id::from(3))]
        );
    }
}
