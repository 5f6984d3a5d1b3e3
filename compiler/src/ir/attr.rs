//! Reading and writing a node's attributes: typed getters with the op's
//! default, and constructors for the attributes a pass emits.
//!
//! Complexity: O(attributes) per lookup.

use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::{AttributeProto, NodeProto, TensorProto};

/// The attribute `name` of `node`, if present.
#[must_use]
pub fn get<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

/// The integer attribute `name`, or `default`.
#[must_use]
pub fn int(node: &NodeProto, name: &str, default: i64) -> i64 {
    get(node, name).map_or(default, |a| a.i)
}

/// The float attribute `name`, or `default`.
#[must_use]
pub fn float(node: &NodeProto, name: &str, default: f32) -> f32 {
    get(node, name).map_or(default, |a| a.f)
}

/// The integer-list attribute `name`, if present.
#[must_use]
pub fn ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    get(node, name).map(|a| a.ints.clone())
}

/// The string attribute `name` (lossily decoded), if present.
#[must_use]
pub fn string(node: &NodeProto, name: &str) -> Option<String> {
    get(node, name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

fn attribute(name: &str, kind: AttributeType) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: kind.into(),
        ..AttributeProto::default()
    }
}

/// An `INT` attribute.
#[must_use]
pub fn make_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        i: v,
        ..attribute(name, AttributeType::INT)
    }
}

/// A `FLOAT` attribute.
#[must_use]
pub fn make_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        f: v,
        ..attribute(name, AttributeType::FLOAT)
    }
}

/// An `INTS` attribute.
#[must_use]
pub fn make_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        ints: v.to_vec(),
        ..attribute(name, AttributeType::INTS)
    }
}

/// A `STRING` attribute.
#[must_use]
pub fn make_string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        s: v.as_bytes().to_vec(),
        ..attribute(name, AttributeType::STRING)
    }
}

/// A `TENSOR` attribute.
#[must_use]
pub fn make_tensor(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        t: Some(t).into(),
        ..attribute(name, AttributeType::TENSOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_attribute_reads_as_its_default() {
        let node = NodeProto {
            attribute: vec![make_int("axis", -1), make_ints("perm", &[1, 0])],
            ..NodeProto::default()
        };
        assert_eq!(int(&node, "axis", 0), -1);
        assert_eq!(int(&node, "keepdims", 1), 1);
        assert_eq!(ints(&node, "perm"), Some(vec![1, 0]));
        assert_eq!(ints(&node, "axes"), None);
        assert!((float(&node, "epsilon", 1e-5) - 1e-5).abs() < 1e-12);
    }
}
