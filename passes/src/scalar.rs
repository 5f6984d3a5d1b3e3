//! Exact scalar constants.
//!
//! A [`Scalar`] is an arbitrary-precision rational kept canonical (reduced,
//! positive denominator), so equal values hash-cons to one e-node: `(a/b)/c`
//! and `a/(b·c)` fold to the same `Num`. Text forms: integers (`3`, `-7`),
//! fractions (`-1/2`, `6/4` which reads as `3/2`) and finite decimals with an
//! optional exponent (`0.5`, `-2.5e3`, `1e-5`), all read exactly. `Display`
//! writes `p` or `p/q`, which reads back to the same value.
//!
//! Arithmetic results stay exact while their numerator and denominator fit in
//! [`EXACT_BITS`] bits; a larger result is rounded to the nearest rational
//! with a [`ROUNDED_BITS`]-bit numerator over a power of two. Products of
//! a few hundred `f32` factors (a scale carried down a deep residual stream,
//! `ε/c²` of its norms) would otherwise grow to thousands of bits, and their
//! arithmetic came to dominate fusion's time; 256 bits are far below what any
//! materialised `f32`/`f64` can tell apart.
//!
//! Complexity: parsing is linear in the text plus the size of `10^|exponent|`;
//! exponents are limited to ±[`MAX_EXPONENT`] so a short string cannot ask for
//! a huge integer. Arithmetic is that of `num-rational`'s `BigRational`.
//!
//! Errors: [`ScalarError`] for text that is not a finite exact number.

use std::fmt;
use std::str::FromStr;

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{One, Pow, Signed, ToPrimitive, Zero};

/// The largest decimal exponent accepted when parsing (`1e4096`, `1e-4096`).
pub const MAX_EXPONENT: u32 = 4096;

/// Numerator and denominator sizes up to which arithmetic stays exact.
pub const EXACT_BITS: u64 = 512;

/// Significant bits of a rounded result (see the module doc).
pub const ROUNDED_BITS: u64 = 256;

/// `q` itself when small enough, else `q` rounded to `ROUNDED_BITS`
/// significant bits over a power of two.
fn bounded(q: BigRational) -> BigRational {
    if q.numer().bits() <= EXACT_BITS && q.denom().bits() <= EXACT_BITS {
        return q;
    }
    // q = n/d; choose k with n·2^k/d ≈ 2^ROUNDED_BITS, round, divide by 2^k.
    let bits = |v: &BigInt| i64::try_from(v.bits()).unwrap_or(i64::MAX);
    let k = i64::try_from(ROUNDED_BITS).unwrap_or(256) + bits(q.denom()) - bits(q.numer());
    let shift = |v: &BigInt, by: i64| -> BigInt {
        let by = usize::try_from(by.unsigned_abs()).unwrap_or(usize::MAX);
        v << by
    };
    let (num, den) = if k >= 0 {
        (shift(q.numer(), k), q.denom().clone())
    } else {
        (q.numer().clone(), shift(q.denom(), k))
    };
    let rounded = BigRational::new(num, den).round().to_integer();
    let scale = shift(&BigInt::from(1), k);
    if k >= 0 {
        BigRational::new(rounded, scale)
    } else {
        BigRational::from_integer(rounded * scale)
    }
}

/// An exact rational constant, always reduced with a positive denominator.
///
/// Equality, hashing and ordering read the reduced numerator and denominator
/// directly. `BigRational`'s own `Hash`, `Eq` and `Ord` expand values into
/// continued fractions (chains of big divisions) so that unreduced ratios
/// compare alike; a `Scalar` is always reduced, and those expansions
/// dominated fusion's time (every `Num` e-node is hashed, compared and
/// sorted by the e-graph and the cost model). The order is therefore a total
/// order on the representation, not the numeric order: compare values with
/// arithmetic and [`Scalar::is_positive`].
#[derive(Debug, Clone)]
pub struct Scalar(BigRational);

impl Scalar {
    fn parts(&self) -> (&BigInt, &BigInt) {
        (self.0.numer(), self.0.denom())
    }
}

impl PartialEq for Scalar {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for Scalar {}

impl std::hash::Hash for Scalar {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl PartialOrd for Scalar {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scalar {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.parts().cmp(&other.parts())
    }
}

/// Why a text is not a [`Scalar`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScalarError {
    /// The text is not an integer, a fraction or a finite decimal.
    #[error("`{0}` is not an exact number (expected `3`, `-1/2`, `0.5` or `1e-5`)")]
    Syntax(String),
    /// A fraction with a zero denominator.
    #[error("`{0}` has a zero denominator")]
    ZeroDenominator(String),
    /// The decimal exponent is beyond ±[`MAX_EXPONENT`].
    #[error("`{0}`: the exponent is beyond ±{MAX_EXPONENT}")]
    Exponent(String),
}

impl Scalar {
    /// Zero.
    #[must_use]
    pub fn zero() -> Self {
        Self(BigRational::zero())
    }

    /// An integer.
    #[must_use]
    pub fn from_integer(n: i64) -> Self {
        Self(BigRational::from_integer(BigInt::from(n)))
    }

    /// `numer / denom`, or `None` when `denom` is zero.
    #[must_use]
    pub fn fraction(numer: i64, denom: i64) -> Option<Self> {
        (denom != 0).then(|| Self(BigRational::new(BigInt::from(numer), BigInt::from(denom))))
    }

    /// The exact value of a finite `f64` (every finite float is a dyadic
    /// rational), or `None` for NaN and infinities.
    #[must_use]
    pub fn from_f64(x: f64) -> Option<Self> {
        BigRational::from_float(x).map(Self)
    }

    /// The nearest `f64` (correctly rounded; ±infinity when out of range).
    #[must_use]
    pub fn to_f64(&self) -> f64 {
        self.0.to_f64().unwrap_or(f64::NAN)
    }

    /// The value as an index, when it is a non-negative integer that fits.
    #[must_use]
    pub fn to_usize(&self) -> Option<usize> {
        use num_traits::ToPrimitive as _;
        self.0
            .is_integer()
            .then(|| self.0.numer().to_usize())
            .flatten()
    }

    /// Whether this is zero.
    #[must_use]
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    /// `self / rhs`, or `None` when `rhs` is zero.
    #[must_use]
    pub fn checked_div(&self, rhs: &Self) -> Option<Self> {
        (!rhs.is_zero()).then(|| Self(bounded(&self.0 / &rhs.0)))
    }

    /// Whether this is greater than zero.
    #[must_use]
    pub fn is_positive(&self) -> bool {
        self.0.is_positive()
    }

    /// Whether this is one.
    #[must_use]
    pub fn is_one(&self) -> bool {
        self.0.is_one()
    }

    /// `1 / self`, or `None` for zero.
    #[must_use]
    pub fn recip(&self) -> Option<Self> {
        (!self.is_zero()).then(|| Self(self.0.recip()))
    }

    /// `self^n`, or `None` for zero to a negative power.
    #[must_use]
    pub fn powi(&self, n: i32) -> Option<Self> {
        if n < 0 && self.is_zero() {
            return None;
        }
        Some(Self(bounded(Pow::pow(&self.0, n))))
    }

    /// The exact square root, when this is a non-negative rational whose
    /// numerator and denominator are perfect squares.
    #[must_use]
    pub fn sqrt_exact(&self) -> Option<Self> {
        if self.0.is_negative() {
            return None;
        }
        let exact = |n: &BigInt| {
            let r = n.sqrt();
            (&r * &r == *n).then_some(r)
        };
        let numer = exact(self.0.numer())?;
        let denom = exact(self.0.denom())?;
        Some(Self(BigRational::new(numer, denom)))
    }

    /// The underlying rational.
    #[must_use]
    pub fn as_ratio(&self) -> &BigRational {
        &self.0
    }
}

macro_rules! scalar_op {
    ($trait:ident, $method:ident, $op:tt) => {
        impl std::ops::$trait<&Scalar> for &Scalar {
            type Output = Scalar;
            fn $method(self, rhs: &Scalar) -> Scalar {
                Scalar(bounded(&self.0 $op &rhs.0))
            }
        }
    };
}
scalar_op!(Add, add, +);
scalar_op!(Sub, sub, -);
scalar_op!(Mul, mul, *);

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_integer() {
            write!(f, "{}", self.0.numer())
        } else {
            write!(f, "{}/{}", self.0.numer(), self.0.denom())
        }
    }
}

/// `[+-]digits` → a `BigInt`, for non-empty all-digit bodies.
fn integer(text: &str) -> Option<BigInt> {
    let body = text.strip_prefix(['+', '-']).unwrap_or(text);
    if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `[+-] digits [. digits] [(e|E) [+-] digits]`, at least one mantissa digit.
fn decimal(s: &str) -> Result<BigRational, ScalarError> {
    let syntax = || ScalarError::Syntax(s.to_owned());
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (sign, unsigned) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa.strip_prefix('+').unwrap_or(mantissa)),
    };
    let (int_part, frac_part) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits_only = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if int_part.len() + frac_part.len() == 0 || !digits_only(int_part) || !digits_only(frac_part) {
        return Err(syntax());
    }
    let exp: i64 = match exponent {
        None => 0,
        Some(e) => {
            let n = integer(e).ok_or_else(syntax)?;
            n.to_i64()
                .filter(|n| n.unsigned_abs() <= u64::from(MAX_EXPONENT))
                .ok_or_else(|| ScalarError::Exponent(s.to_owned()))?
        }
    };
    let digits: BigInt = format!("{sign}{int_part}{frac_part}")
        .parse()
        .map_err(|_| syntax())?;
    let frac_len = i64::try_from(frac_part.len()).map_err(|_| syntax())?;
    let shift = exp - frac_len;
    let ten = BigInt::from(10);
    let power = |n: i64| -> Result<BigInt, ScalarError> {
        let n = u32::try_from(n.unsigned_abs())
            .ok()
            .filter(|&n| n <= 2 * MAX_EXPONENT)
            .ok_or_else(|| ScalarError::Exponent(s.to_owned()))?;
        Ok(num_traits::pow::pow(ten.clone(), n as usize))
    };
    Ok(if shift >= 0 {
        BigRational::from_integer(digits * power(shift)?)
    } else {
        BigRational::new(digits, power(shift)?)
    })
}

impl FromStr for Scalar {
    type Err = ScalarError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some((p, q)) = s.split_once('/') {
            let syntax = || ScalarError::Syntax(s.to_owned());
            let numer = integer(p).ok_or_else(syntax)?;
            if q.starts_with(['+', '-']) {
                return Err(syntax());
            }
            let denom = integer(q).ok_or_else(syntax)?;
            if denom.is_zero() {
                return Err(ScalarError::ZeroDenominator(s.to_owned()));
            }
            return Ok(Self(BigRational::new(numer, denom)));
        }
        decimal(s).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(s: &str) -> Scalar {
        s.parse().unwrap()
    }

    #[test]
    fn huge_results_are_rounded_to_256_bits_and_small_ones_stay_exact() {
        let num = |t: &str| t.parse::<Scalar>().unwrap();
        let third = num("1/3");
        assert_eq!(&third * &third, num("1/9"), "small: exact");
        // (1/3)^400 has a 634-bit denominator: rounded to a 256-bit numerator over a
        // power of two, within 2^-250 relatively.
        let p = third.powi(400).unwrap();
        assert!(p.as_ratio().numer().bits() <= ROUNDED_BITS + 1, "{p}");
        let d = p.as_ratio().denom();
        assert_eq!(
            d & (d - BigInt::from(1)),
            BigInt::from(0),
            "a power of two: {p}"
        );
        let exact = BigRational::new(BigInt::from(1), Pow::pow(BigInt::from(3), 400u32));
        let rel = ((p.as_ratio() - &exact) / &exact).abs();
        let bound = BigRational::new(BigInt::from(1), Pow::pow(BigInt::from(2), 250u32));
        assert!(rel < bound, "{rel}");
        // Deterministic: the same inputs give the same value.
        assert_eq!(third.powi(400), third.powi(400));
        // Products of many f32 factors stay bounded.
        let f = Scalar::from_f64(f64::from(0.83_f32)).unwrap();
        let mut acc = Scalar::from_integer(1);
        for _ in 0..300 {
            acc = &acc * &f;
        }
        assert!(acc.as_ratio().numer().bits() <= EXACT_BITS);
        let want = f64::from(0.83_f32).powi(300);
        assert!(
            (acc.to_f64() - want).abs() <= want * 1e-12,
            "{acc} vs {want}"
        );
    }

    #[test]
    fn integers_fractions_and_decimals_read_exactly() {
        assert_eq!(num("3"), Scalar::from_integer(3));
        assert_eq!(num("-1/2"), Scalar::fraction(-1, 2).unwrap());
        assert_eq!(num("6/4"), Scalar::fraction(3, 2).unwrap());
        assert_eq!(num("0.5"), Scalar::fraction(1, 2).unwrap());
        assert_eq!(num("1e-5"), Scalar::fraction(1, 100_000).unwrap());
        assert_eq!(num("-2.5E3"), Scalar::from_integer(-2500));
        assert_eq!(num("+.25"), Scalar::fraction(1, 4).unwrap());
        assert_eq!(num("1."), Scalar::from_integer(1));
        assert_eq!(num("0.1"), Scalar::fraction(1, 10).unwrap());
        assert_ne!(
            num("0.1"),
            Scalar::from_f64(0.1).unwrap(),
            "0.1 is exact, not the f64"
        );
    }

    #[test]
    fn display_is_canonical_and_round_trips() {
        for (text, shown) in [
            ("3", "3"),
            ("-1/2", "-1/2"),
            ("2/-4", ""),
            ("0.5", "1/2"),
            ("1e-5", "1/100000"),
            ("-0", "0"),
            ("10/5", "2"),
        ] {
            match text.parse::<Scalar>() {
                Ok(x) => {
                    assert_eq!(x.to_string(), shown, "{text}");
                    assert_eq!(num(&x.to_string()), x, "{text} round-trips");
                }
                Err(_) => assert!(shown.is_empty(), "{text} should parse"),
            }
        }
    }

    #[test]
    fn non_numbers_are_refused() {
        for bad in [
            "",
            "-",
            ".",
            "e5",
            "1e",
            "1/0",
            "1/2/3",
            "inf",
            "NaN",
            "x",
            "1 /2",
            "0x10",
            "1e+-3",
            "laurel.0.alpha",
            "%x",
        ] {
            assert!(bad.parse::<Scalar>().is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            "1/0".parse::<Scalar>(),
            Err(ScalarError::ZeroDenominator("1/0".into()))
        );
        assert_eq!(
            "1e99999".parse::<Scalar>(),
            Err(ScalarError::Exponent("1e99999".into()))
        );
    }

    #[test]
    fn arithmetic_is_exact() {
        let third = Scalar::fraction(1, 3).unwrap();
        let sum = &(&third + &third) + &third;
        assert_eq!(sum, Scalar::from_integer(1));
        assert_eq!(&num("0.1") + &num("0.2"), num("0.3"));
        assert_eq!(num("1").checked_div(&Scalar::zero()), None);
        assert_eq!(
            num("1/2").checked_div(&num("3")),
            Some(Scalar::fraction(1, 6).unwrap())
        );
        assert!((num("1/3").to_f64() - 1.0 / 3.0).abs() < 1e-17);
        assert_eq!(Scalar::from_f64(f64::NAN), None);
        assert_eq!(Scalar::from_f64(0.75), Some(num("3/4")));
    }
}
