//! `--blocks SELECT`: which residual blocks to augment.
//!
//! A selection is a comma-separated list of items; a block is selected when
//! any item matches it:
//! - `S` — every block of residual stream `S`;
//! - `S:I` — block `I` of stream `S`;
//! - `S:I..J`, `S:I..`, `S:..J` — blocks `I` (inclusive) to `J` (exclusive) of stream `S`;
//! - anything else is a glob on the residual add's node name, where `*`
//!   matches any run of characters and `?` any one character
//!   (`*attention*`, `layer.1?/*`).
//!
//! Complexity: O(items × blocks × name length²) at worst for globs.

use crate::analysis::Residual;

/// One item of a selection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Stream {
        stream: usize,
        from: usize,
        to: Option<usize>,
    },
    Glob(String),
}

/// A parsed `--blocks` selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection(Vec<Item>);

impl std::str::FromStr for Selection {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let items = s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(parse_item)
            .collect::<Result<Vec<_>, _>>()?;
        if items.is_empty() {
            return Err("--blocks: empty selection".into());
        }
        Ok(Self(items))
    }
}

fn parse_item(t: &str) -> Result<Item, String> {
    let numeric = t
        .chars()
        .all(|c| c.is_ascii_digit() || c == ':' || c == '.');
    if !numeric {
        return Ok(Item::Glob(t.to_string()));
    }
    let bad = || {
        format!("--blocks: `{t}` is neither STREAM, STREAM:INDEX, STREAM:FROM..TO nor a name glob")
    };
    let (stream, range) = t.split_once(':').map_or((t, None), |(s, r)| (s, Some(r)));
    let stream = stream.parse().map_err(|_| bad())?;
    let (from, to) = match range {
        None => (0, None),
        Some(r) => match r.split_once("..") {
            None => {
                let i: usize = r.parse().map_err(|_| bad())?;
                (i, Some(i.checked_add(1).ok_or_else(bad)?))
            }
            Some((a, b)) => (
                if a.is_empty() {
                    0
                } else {
                    a.parse().map_err(|_| bad())?
                },
                if b.is_empty() {
                    None
                } else {
                    Some(b.parse().map_err(|_| bad())?)
                },
            ),
        },
    };
    if to.is_some_and(|t| t < from) {
        return Err(format!("--blocks: `{t}` is an empty range (FROM > TO)"));
    }
    Ok(Item::Stream { stream, from, to })
}

/// Whether `name` matches the glob `pattern` (`*` any run, `?` any one character).
#[must_use]
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative matcher with backtracking to the last `*`: O(|p|·|n|).
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

impl Selection {
    /// Whether the selection picks residual `r`.
    #[must_use]
    pub fn selects(&self, r: &Residual) -> bool {
        self.0.iter().any(|item| match item {
            Item::Stream { stream, from, to } => {
                r.stream == *stream && r.index >= *from && to.is_none_or(|t| r.index < t)
            }
            Item::Glob(g) => glob_match(g, &r.name),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob_match(
            "*attention*",
            "/encoder/layer.0/attention/output/Add"
        ));
        assert!(glob_match("layer.?/add", "layer.3/add"));
        assert!(!glob_match("layer.?/add", "layer.10/add"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a*b", "acbd"));
        assert!(glob_match("a*b*", "acbd"));
    }

    #[test]
    fn items_parse_into_streams_ranges_and_globs() {
        let s: Selection = "0, 1:2, 2:1..3, 3:..2, 4:5.., *ffn*".parse().unwrap();
        assert_eq!(
            s.0,
            [
                Item::Stream {
                    stream: 0,
                    from: 0,
                    to: None
                },
                Item::Stream {
                    stream: 1,
                    from: 2,
                    to: Some(3)
                },
                Item::Stream {
                    stream: 2,
                    from: 1,
                    to: Some(3)
                },
                Item::Stream {
                    stream: 3,
                    from: 0,
                    to: Some(2)
                },
                Item::Stream {
                    stream: 4,
                    from: 5,
                    to: None
                },
                Item::Glob("*ffn*".into()),
            ]
        );
        assert!("".parse::<Selection>().is_err());
        assert!("1:x".parse::<Selection>().is_ok(), "not numeric: a glob");
        assert!("1:2:3".parse::<Selection>().is_err());
        assert!("0:3..1".parse::<Selection>().is_err(), "reversed range");
        assert!(
            "0:18446744073709551615".parse::<Selection>().is_err(),
            "no overflow"
        );
    }
}
