//! What fusion may assume of an ONNX op, read from its type and attributes.
//!
//! [`semantics_of`] maps one output of an op to the
//! [`OpSemantics`] the fusion rules consult; `None` makes the op opaque.
//! The table is deliberately conservative: an op is listed only where the
//! identity holds for every attribute value it accepts (or the attributes
//! are checked here), in ONNX's default domain.
//!
//! | ops | semantics |
//! |---|---|
//! | `Relu`, `LeakyRelu`, `PRelu`, `MaxPool`, `GlobalMaxPool`, `ReduceMax`, `ReduceMin` | homogeneous for `c > 0` |
//! | `AveragePool`, `GlobalAveragePool`, `ReduceMean`, `ReduceSum`, `Reshape`, `Transpose`, `Flatten`, `Squeeze`, `Unsqueeze`, `Identity`, `Expand`, `Slice`, `Gather` (data), `Tile`, `Split`, `DepthToSpace`, `SpaceToDepth`, `Resize`, `Neg`, `Dropout` (output 0) | homogeneous (linear) |
//! | `Pad` (constant mode, zero padding) | homogeneous (linear) |
//! | `MatMul` of two computed operands | homogeneous in each |
//! | `Concat`, `Sum` | uniform; `Max`, `Min` uniform for `c > 0` |
//! | `Conv`, `ConvTranspose`, `Gemm`, `MatMul` with a weight operand, `BatchNormalization` (inference) | linear with constant weights |
//! | `LayerNormalization`, `RMSNormalization`, `InstanceNormalization`, `GroupNormalization` (output 0 only) | norm, ε as an extra child |
//! | `Pow` with a constant integer exponent | power |
//! | `Sqrt`, `Reciprocal` | sqrt, reciprocal |
//!
//! [`channel_map_of`] says, besides, which `MatMul`s and 1×1 `Conv`s are
//! channel maps, for the low-rank rules.
//!
//! Complexity: O(attributes) per op.

use laurel_passes::block::Layout;
use laurel_passes::semantics::{ChannelMap, Contraction, OpSemantics};
use laurel_passes::shape::{Dim, Shape};
use onnx_protobuf::NodeProto;

/// What the lowering knows of an op's inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// Absent (an empty optional input).
    Absent,
    /// A weight: an initializer that is not a graph input.
    Weight,
    /// Anything else.
    Computed,
}

fn int_attr(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

fn float_attr(node: &NodeProto, name: &str) -> Option<f32> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.f)
}

fn string_attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a [u8]> {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.s.as_slice())
}

/// The ε of a norm op: its attribute, or the op's default.
#[must_use]
pub fn norm_epsilon(node: &NodeProto) -> f32 {
    float_attr(node, "epsilon").unwrap_or(1e-5)
}

#[allow(clippy::unnecessary_wraps)] // read as a table of optional semantics
fn homogeneous(positive_only: bool) -> Option<OpSemantics> {
    Some(OpSemantics::Homogeneous {
        inputs: vec![0],
        positive_only,
    })
}

/// The semantics of output `slot` of `node`, given its inputs (absent ones
/// included, by input position) and, for `Pow`, its constant exponent.
/// `children` is the number of term children the lowering gives the op
/// (its present inputs); a norm's ε becomes child `children`.
#[must_use]
#[allow(clippy::too_many_lines)] // one table
pub fn semantics_of(
    node: &NodeProto,
    slot: usize,
    inputs: &[InputKind],
    exponent: Option<f64>,
) -> Option<OpSemantics> {
    if !crate::ir::is_onnx_domain(&node.domain) {
        return None;
    }
    let present = |i: usize| inputs.get(i).is_some_and(|k| *k != InputKind::Absent);
    let weight = |i: usize| inputs.get(i) == Some(&InputKind::Weight);
    let children = inputs.iter().filter(|k| **k != InputKind::Absent).count();
    // Children are the present inputs, in order: the child index of input i.
    let child = |i: usize| {
        inputs
            .iter()
            .take(i)
            .filter(|k| **k != InputKind::Absent)
            .count()
    };
    let outputs_used = node.output.iter().filter(|o| !o.is_empty()).count();
    match node.op_type.as_str() {
        "Relu" | "LeakyRelu" | "GlobalMaxPool" | "ReduceMax" | "ReduceMin" if slot == 0 => {
            homogeneous(true)
        }
        "PRelu" if slot == 0 && weight(1) => homogeneous(true),
        "MaxPool" if slot == 0 && outputs_used == 1 => homogeneous(true),
        "AveragePool" | "GlobalAveragePool" | "ReduceMean" | "ReduceSum" | "Reshape"
        | "Transpose" | "Flatten" | "Squeeze" | "Unsqueeze" | "Identity" | "Expand" | "Slice"
        | "Gather" | "Tile" | "Split" | "DepthToSpace" | "SpaceToDepth" | "Resize" | "Neg" => {
            homogeneous(false)
        }
        "Dropout" if slot == 0 => homogeneous(false),
        "Pad" => {
            let constant_mode = string_attr(node, "mode").is_none_or(|m| m == b"constant");
            let zero_value = !present(2) && float_attr(node, "value").is_none_or(|v| v == 0.0);
            (constant_mode && zero_value).then(|| OpSemantics::Homogeneous {
                inputs: vec![0],
                positive_only: false,
            })
        }
        "Concat" | "Sum" => Some(OpSemantics::Uniform {
            positive_only: false,
        }),
        "Max" | "Min" => Some(OpSemantics::Uniform {
            positive_only: true,
        }),
        "MatMul" => match (weight(0), weight(1)) {
            (false, true) => Some(OpSemantics::Linear {
                input: 0,
                output_into: vec![(1, 1)],
                input_into: vec![(1, 1)],
                contraction: Some(Contraction {
                    data_axis: -1,
                    weight: 1,
                    weight_axis: -2,
                }),
            }),
            (true, false) => Some(OpSemantics::Linear {
                input: 1,
                output_into: vec![(0, 1)],
                input_into: vec![(0, 1)],
                contraction: Some(Contraction {
                    data_axis: -2,
                    weight: 0,
                    weight_axis: -1,
                }),
            }),
            (false, false) => Some(OpSemantics::Homogeneous {
                inputs: vec![0, 1],
                positive_only: false,
            }),
            (true, true) => None,
        },
        "Conv" | "ConvTranspose" | "Gemm"
            if !weight(0) && weight(1) && (!present(2) || weight(2)) =>
        {
            let mut output_into = vec![(1, 1)];
            if present(2) {
                output_into.push((2, 1));
            }
            Some(OpSemantics::Linear {
                input: 0,
                output_into,
                input_into: vec![(1, 1)],
                contraction: contraction_of(node),
            })
        }
        "BatchNormalization"
            if outputs_used == 1
                && int_attr(node, "training_mode").unwrap_or(0) == 0
                && (1..5).all(weight) =>
        {
            Some(OpSemantics::Linear {
                input: 0,
                output_into: vec![(1, 1), (2, 1)],
                input_into: vec![(1, 1), (3, -1)],
                contraction: None,
            })
        }
        "LayerNormalization"
        | "RMSNormalization"
        | "InstanceNormalization"
        | "GroupNormalization"
            if slot == 0 && outputs_used == 1 =>
        {
            Some(OpSemantics::Norm {
                input: 0,
                eps: children,
            })
        }
        "Pow" if present(1) && child(1) == 1 => {
            let p = exponent?;
            let exact = p.fract() == 0.0 && p.abs() <= 64.0;
            #[allow(clippy::cast_possible_truncation)] // checked: an integer of at most 64
            exact.then_some(OpSemantics::Power { exponent: p as i32 })
        }
        "Sqrt" => Some(OpSemantics::Sqrt),
        "Reciprocal" => Some(OpSemantics::Reciprocal),
        _ => None,
    }
}

/// Which weight axis a `Conv`, `ConvTranspose` or `Gemm` contracts with its
/// data input's channels ([`Contraction`]); `None` for grouped convolutions,
/// whose weight holds only a group's input channels.
fn contraction_of(node: &NodeProto) -> Option<Contraction> {
    let (data_axis, weight_axis) = match node.op_type.as_str() {
        "Conv" | "ConvTranspose" if int_attr(node, "group").unwrap_or(1) != 1 => return None,
        "Conv" => (1, 1),
        "ConvTranspose" => (1, 0),
        "Gemm" => {
            let t = |name| int_attr(node, name).is_some_and(|v| v != 0);
            (i64::from(!t("transA")), i64::from(t("transB")))
        }
        _ => return None,
    };
    Some(Contraction {
        data_axis,
        weight: 1,
        weight_axis,
    })
}

/// Whether every entry of the ints attribute `name` (absent: none) is `value`.
fn ints_all(node: &NodeProto, name: &str, value: i64) -> bool {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .is_none_or(|a| a.ints.iter().all(|&v| v == value))
}

/// Whether `node` is a channel map ([`ChannelMap`]): `MatMul(x, W)` with a
/// rank-2 weight `W`, or a 2-D `Conv(x, W)` with a `[out, in, 1, 1]` weight,
/// no bias, one group, unit strides and no explicit padding (with a 1×1
/// kernel and unit strides, `auto_pad` pads nothing). `weight_shape` is the
/// type of input 1.
#[must_use]
pub fn channel_map_of(
    node: &NodeProto,
    inputs: &[InputKind],
    weight_shape: Option<&Shape>,
) -> Option<ChannelMap> {
    if !crate::ir::is_onnx_domain(&node.domain)
        || inputs.first() != Some(&InputKind::Computed)
        || inputs.get(1) != Some(&InputKind::Weight)
    {
        return None;
    }
    let one = Dim::Fixed(1);
    match (node.op_type.as_str(), weight_shape?.as_slice()) {
        ("MatMul", [_, _]) if inputs.len() == 2 => Some(ChannelMap {
            input: 0,
            weight: 1,
            layout: Layout::ChannelLast,
        }),
        ("Conv", [_, _, h, w])
            if *h == one
                && *w == one
                && inputs.iter().skip(2).all(|k| *k == InputKind::Absent)
                && int_attr(node, "group").is_none_or(|g| g == 1)
                && ints_all(node, "strides", 1)
                && ints_all(node, "pads", 0) =>
        {
            Some(ChannelMap {
                input: 0,
                weight: 1,
                layout: Layout::ChannelFirst,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onnx_protobuf::AttributeProto;

    fn node(op: &str, outputs: usize) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            output: (0..outputs).map(|i| format!("y{i}")).collect(),
            ..NodeProto::default()
        }
    }

    use InputKind::{Absent, Computed, Weight};

    #[test]
    fn relu_is_homogeneous_for_positive_factors_only() {
        assert_eq!(
            semantics_of(&node("Relu", 1), 0, &[Computed], None),
            Some(OpSemantics::Homogeneous {
                inputs: vec![0],
                positive_only: true
            })
        );
    }

    #[test]
    fn channel_maps_are_weighted_matmuls_and_plain_one_by_one_convs() {
        use laurel_passes::block::Layout::{ChannelFirst, ChannelLast};
        use laurel_passes::shape::fixed;
        let ints = |name: &str, v: &[i64]| onnx_protobuf::AttributeProto {
            name: name.into(),
            ints: v.to_vec(),
            ..onnx_protobuf::AttributeProto::default()
        };
        let with = |op: &str, attrs: Vec<onnx_protobuf::AttributeProto>| NodeProto {
            attribute: attrs,
            ..node(op, 1)
        };
        let kernel = fixed(&[8, 4, 1, 1]);
        let map = |n: &NodeProto, kinds: &[InputKind], w: &laurel_passes::shape::Shape| {
            channel_map_of(n, kinds, Some(w)).map(|m| m.layout)
        };
        // MatMul by a rank-2 weight; not by a computed operand or a batched weight.
        let mm = node("MatMul", 1);
        assert_eq!(
            map(&mm, &[Computed, Weight], &fixed(&[4, 8])),
            Some(ChannelLast)
        );
        assert_eq!(map(&mm, &[Computed, Computed], &fixed(&[4, 8])), None);
        assert_eq!(map(&mm, &[Computed, Weight], &fixed(&[2, 4, 8])), None);
        // A 1×1 Conv, one group, unit strides, no padding, no bias.
        let conv = node("Conv", 1);
        assert_eq!(map(&conv, &[Computed, Weight], &kernel), Some(ChannelFirst));
        assert_eq!(
            map(&conv, &[Computed, Weight, Absent], &kernel),
            Some(ChannelFirst)
        );
        assert_eq!(
            map(&conv, &[Computed, Weight, Weight], &kernel),
            None,
            "bias"
        );
        assert_eq!(map(&conv, &[Computed, Weight], &fixed(&[8, 4, 3, 3])), None);
        let grouped = with(
            "Conv",
            vec![onnx_protobuf::AttributeProto {
                name: "group".into(),
                i: 2,
                ..Default::default()
            }],
        );
        assert_eq!(map(&grouped, &[Computed, Weight], &kernel), None, "groups");
        let strided = with("Conv", vec![ints("strides", &[2, 2])]);
        assert_eq!(map(&strided, &[Computed, Weight], &kernel), None, "strides");
        let padded = with("Conv", vec![ints("pads", &[0, 0, 1, 1])]);
        assert_eq!(map(&padded, &[Computed, Weight], &kernel), None, "pads");
        let unit = with(
            "Conv",
            vec![ints("strides", &[1, 1]), ints("pads", &[0, 0, 0, 0])],
        );
        assert_eq!(map(&unit, &[Computed, Weight], &kernel), Some(ChannelFirst));
        let other = NodeProto {
            domain: "com.example".into(),
            ..node("MatMul", 1)
        };
        assert_eq!(
            map(&other, &[Computed, Weight], &fixed(&[4, 8])),
            None,
            "domain"
        );
    }

    #[test]
    fn contractions_name_the_weight_axis_that_meets_the_input_channels() {
        let linear = |n: &NodeProto| match semantics_of(n, 0, &[Computed, Weight], None) {
            Some(OpSemantics::Linear { contraction, .. }) => contraction,
            other => panic!("{other:?}"),
        };
        let c = |data_axis, weight, weight_axis| {
            Some(Contraction {
                data_axis,
                weight,
                weight_axis,
            })
        };
        assert_eq!(linear(&node("Conv", 1)), c(1, 1, 1));
        assert_eq!(linear(&node("ConvTranspose", 1)), c(1, 1, 0));
        assert_eq!(linear(&node("Gemm", 1)), c(1, 1, 0));
        assert_eq!(linear(&node("MatMul", 1)), c(-1, 1, -2));
        let with = |op: &str, attrs: Vec<AttributeProto>| NodeProto {
            attribute: attrs,
            ..node(op, 1)
        };
        let flag = |name: &str| AttributeProto {
            name: name.into(),
            i: 1,
            ..Default::default()
        };
        assert_eq!(linear(&with("Gemm", vec![flag("transB")])), c(1, 1, 1));
        assert_eq!(linear(&with("Gemm", vec![flag("transA")])), c(0, 1, 0));
        // A grouped convolution's weight holds one group's input channels.
        let grouped = with(
            "Conv",
            vec![onnx_protobuf::AttributeProto {
                i: 2,
                ..flag("group")
            }],
        );
        assert_eq!(linear(&grouped), None);
    }

    #[test]
    fn conv_needs_constant_weights() {
        let conv = node("Conv", 1);
        assert!(matches!(
            semantics_of(&conv, 0, &[Computed, Weight, Weight], None),
            Some(OpSemantics::Linear { .. })
        ));
        assert_eq!(
            semantics_of(&conv, 0, &[Computed, Computed, Weight], None),
            None
        );
        assert_eq!(
            semantics_of(&conv, 0, &[Computed, Weight], None),
            Some(OpSemantics::Linear {
                input: 0,
                output_into: vec![(1, 1)],
                input_into: vec![(1, 1)],
                contraction: Some(Contraction {
                    data_axis: 1,
                    weight: 1,
                    weight_axis: 1
                }),
            })
        );
    }

    #[test]
    fn pad_is_linear_only_when_it_pads_with_zeros() {
        let mut pad = node("Pad", 1);
        assert!(semantics_of(&pad, 0, &[Computed, Weight], None).is_some());
        assert!(semantics_of(&pad, 0, &[Computed, Weight, Weight], None).is_none());
        pad.attribute.push(AttributeProto {
            name: "mode".into(),
            s: b"reflect".to_vec(),
            ..AttributeProto::default()
        });
        assert!(semantics_of(&pad, 0, &[Computed, Weight], None).is_none());
    }

    #[test]
    fn norms_take_epsilon_after_their_present_inputs() {
        let ln = node("LayerNormalization", 1);
        assert_eq!(
            semantics_of(&ln, 0, &[Computed, Weight, Absent], None),
            Some(OpSemantics::Norm { input: 0, eps: 2 })
        );
        let with_stats = node("LayerNormalization", 3);
        assert_eq!(
            semantics_of(&with_stats, 0, &[Computed, Weight, Weight], None),
            None,
            "the mean and inverse std outputs are not scale invariant"
        );
    }

    #[test]
    fn pow_needs_an_integer_exponent() {
        let pow = node("Pow", 1);
        assert_eq!(
            semantics_of(&pow, 0, &[Computed, Weight], Some(2.0)),
            Some(OpSemantics::Power { exponent: 2 })
        );
        assert_eq!(semantics_of(&pow, 0, &[Computed, Weight], Some(0.5)), None);
        assert_eq!(semantics_of(&pow, 0, &[Computed, Computed], None), None);
    }

    #[test]
    fn other_domains_are_opaque() {
        let mut relu = node("Relu", 1);
        relu.domain = "com.example".into();
        assert_eq!(semantics_of(&relu, 0, &[Computed], None), None);
    }
}
