//! Which tensors train: `laurel` (every `LAuReL` parameter), `all` (every
//! float weight), or name globs.
//!
//! - The candidates are the graph's dense float initializers that are not
//!   the default value of a graph input (an input is data, not a weight),
//!   and its float `Constant` nodes (exporters such as `Paddle2ONNX` write
//!   every weight so).
//! - `laurel` selects the parameters laurelc's augmentation adds: the
//!   initializers named `laurel.<block>.<name>` (a `laurel.*` name without a
//!   block, which laurelc no longer writes, does not train).
//! - `all` selects every candidate except the operands that are no weights
//!   ([`NOT_WEIGHTS`]: a `BatchNormalization`'s running mean and variance are
//!   statistics; a `Resize`'s scales and region of interest, an `Upsample`'s
//!   scales, decide the output's shape, and a `Pad`'s fill value is a
//!   constant) and one-element tensors other than `LAuReL` parameters: those
//!   are constants of the computation (an epsilon, an exponent, the 3 and 6 of
//!   a hard swish, a clip bound), not weights. A glob can still select them.
//! - A glob (`*` any run of characters, `?` one character) selects the
//!   candidates whose name it matches; each glob must match one.
//!
//! The selection is in the graph's initializer order, then its node order,
//! so it is deterministic.
//!
//! Complexity: O(V + E + initializers · globs · name length²).

use std::collections::HashSet;

use super::AutodiffError;
use super::emit::elem;
use crate::ir::{Graph, Node};

/// A `--train` selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrainSpec {
    /// The `LAuReL` parameters.
    Laurel,
    /// Every float weight but batch-norm statistics.
    All,
    /// Name globs.
    Globs(Vec<String>),
}

impl TrainSpec {
    /// The selection given as `--train` values: one `laurel` or `all`, or
    /// globs.
    ///
    /// # Errors
    /// `laurel` or `all` mixed with other values; no value.
    pub fn parse(values: &[String]) -> Result<Self, String> {
        match values {
            [] => Ok(Self::Laurel),
            [one] if one == "laurel" => Ok(Self::Laurel),
            [one] if one == "all" => Ok(Self::All),
            many if many.iter().any(|v| v == "laurel" || v == "all") => {
                Err("`laurel` and `all` cannot be combined with other --train values".into())
            }
            globs => Ok(Self::Globs(globs.to_vec())),
        }
    }
}

impl std::fmt::Display for TrainSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Laurel => f.write_str("laurel"),
            Self::All => f.write_str("all"),
            Self::Globs(g) => f.write_str(&g.join(" ")),
        }
    }
}

/// The tensor a default-domain `Constant` node holds in its `value`
/// attribute, named after the node's output, if it is a float tensor.
#[must_use]
pub fn constant_tensor(node: &onnx_protobuf::NodeProto) -> Option<onnx_protobuf::TensorProto> {
    if node.op_type != "Constant" || !crate::ir::is_onnx_domain(&node.domain) {
        return None;
    }
    let t = crate::ir::attr::get(node, "value")?.t.as_ref()?;
    if !elem::is_float(t.data_type) {
        return None;
    }
    let mut t = t.clone();
    t.name.clone_from(node.output.first()?);
    Some(t)
}

/// Whether `name` is a `LAuReL` parameter's: `laurel.<digits>.<rest>`.
#[must_use]
pub fn is_laurel_parameter(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("laurel.") else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && rest.as_bytes().get(digits) == Some(&b'.') && rest.len() > digits + 1
}

/// Whether `name` matches the glob `pattern` (`*`, `?`).
#[must_use]
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative matching with backtracking to the last `*`.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// Operands that `--train all` leaves frozen: (op type, input slots).
pub const NOT_WEIGHTS: &[(&str, &[usize])] = &[
    ("BatchNormalization", &[3, 4]),
    ("Resize", &[1, 2]),
    ("Upsample", &[1]),
    ("Pad", &[2]),
];

/// The trainable tensors of `g` under `spec`, in initializer order.
///
/// # Errors
/// [`AutodiffError::Train`]: nothing selected, or a glob that matches no
/// candidate.
pub fn select(g: &Graph, spec: &TrainSpec) -> Result<Vec<String>, AutodiffError> {
    let inputs: HashSet<&str> = if g.initializers_are_constant {
        HashSet::new()
    } else {
        g.inputs.iter().flat_map(|&n| g.dag[n].outputs()).collect()
    };
    let mut not_weights: HashSet<String> = HashSet::new();
    for &n in &g.op_order {
        let Node::Op(op) = &g.dag[n] else { continue };
        let Some((_, slots)) = NOT_WEIGHTS
            .iter()
            .find(|(t, _)| *t == op.proto.op_type && crate::ir::is_onnx_domain(&op.proto.domain))
        else {
            continue;
        };
        for (slot, src) in g.op_inputs(n).iter().enumerate() {
            if let (true, Some((_, e))) = (slots.contains(&slot), src) {
                not_weights.insert(e.name.clone());
            }
        }
    }
    let mut candidates: Vec<String> = g
        .initializers
        .iter()
        .filter_map(|&n| match &g.dag[n] {
            Node::Initializer(i)
                if elem::is_float(i.proto.data_type) && !inputs.contains(i.proto.name.as_str()) =>
            {
                Some(i.proto.name.clone())
            }
            _ => None,
        })
        .collect();
    candidates.extend(g.op_order.iter().filter_map(|&n| match &g.dag[n] {
        Node::Op(op) => constant_tensor(&op.proto).map(|t| t.name),
        _ => None,
    }));
    // One-element tensors, by name.
    let mut single: HashSet<String> = HashSet::new();
    for n in g.dag.node_indices() {
        let (name, dims) = match &g.dag[n] {
            Node::Initializer(i) => (i.proto.name.clone(), i.proto.dims.clone()),
            Node::Op(op) => match constant_tensor(&op.proto) {
                Some(t) => (t.name, t.dims),
                None => continue,
            },
            _ => continue,
        };
        if dims.iter().product::<i64>() == 1 {
            single.insert(name);
        }
    }
    let err = |reason: String| AutodiffError::Train {
        spec: spec.to_string(),
        reason,
    };
    let chosen: Vec<String> = match spec {
        TrainSpec::Laurel => candidates
            .into_iter()
            .filter(|c| is_laurel_parameter(c))
            .collect(),
        TrainSpec::All => candidates
            .into_iter()
            .filter(|c| !not_weights.contains(c) && (is_laurel_parameter(c) || !single.contains(c)))
            .collect(),
        TrainSpec::Globs(globs) => {
            for glob in globs {
                if !candidates.iter().any(|c| glob_match(glob, c)) {
                    return Err(err(format!(
                        "`{glob}` matches no float initializer of the model"
                    )));
                }
            }
            candidates
                .into_iter()
                .filter(|c| globs.iter().any(|p| glob_match(p, c)))
                .collect()
        }
    };
    if chosen.is_empty() {
        return Err(err(match spec {
            TrainSpec::Laurel => {
                "the model has no LAuReL parameters (augment it first, or pass --train all)".into()
            }
            _ => "selects no tensor".into(),
        }));
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn laurel_parameters_have_a_block() {
        assert!(is_laurel_parameter("laurel.0.a"));
        assert!(is_laurel_parameter("laurel.12.gamma3"));
        assert!(!is_laurel_parameter("laurel.two"));
        assert!(!is_laurel_parameter("laurel.0."));
        assert!(!is_laurel_parameter("conv.laurel.0.a"));
    }

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob_match("*.weight", "layer1.conv.weight"));
        assert!(glob_match("layer?.*", "layer1.conv"));
        assert!(!glob_match("layer?.*", "layer12.conv"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*b*c", "aXbYbZ"));
    }

    #[test]
    fn laurel_and_all_stand_alone() {
        assert_eq!(TrainSpec::parse(&[]), Ok(TrainSpec::Laurel));
        assert_eq!(TrainSpec::parse(&["all".into()]), Ok(TrainSpec::All));
        assert!(TrainSpec::parse(&["all".into(), "x*".into()]).is_err());
        assert_eq!(
            TrainSpec::parse(&["fc.*".into()]),
            Ok(TrainSpec::Globs(vec!["fc.*".into()]))
        );
    }
}
