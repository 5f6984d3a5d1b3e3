//! Weights stored as int8 (issue 14, item 6): a scale on a dequantized
//! weight goes into the dequantization scale (`compiler/src/fuse/dequant.rs`),
//! so RW on an int8 model fuses to the plain int8 model's op counts, and the
//! int8 weights stay int8.

#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::*;
use laurelc::ir::Model;
use onnx_protobuf::{AttributeProto, GraphProto, ModelProto, TensorProto};

fn int8_tensor(name: &str, dims: &[i64], values: &[i8]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: 3,
        raw_data: values.iter().map(|v| v.to_le_bytes()[0]).collect(),
        ..Default::default()
    }
}

/// `y = MatMul(x, Mul(c, W))`, `W` the int8 `q` [4, 3] dequantized by a
/// per-column scale, through `DequantizeLinear` or `Mul(Cast(q), s)`; `c`
/// of dims `c_dims`. With `shared`, `W` is a graph output too.
fn scaled_weight(dequantize: bool, c_dims: &[i64], shared: bool) -> ModelProto {
    let q: Vec<i8> = (0..12)
        .map(|i| i8::try_from(i * 7 % 23).unwrap() - 11)
        .collect();
    let mut g = GraphProto {
        input: vec![value("x", &[2, 4])],
        output: vec![value("y", &[2, 3])],
        initializer: vec![
            int8_tensor("q", &[4, 3], &q),
            f32_tensor("s", &[3], &[0.05, 0.2, 0.7]),
            int8_tensor("z", &[3], &[0, 1, -2]),
            f32_tensor("c", c_dims, &[-1.75]),
        ],
        ..Default::default()
    };
    if dequantize {
        let mut dq = node("DequantizeLinear", "dq", &["q", "s", "z"], &["W"]);
        dq.attribute.push(AttributeProto {
            name: "axis".into(),
            type_: onnx_protobuf::attribute_proto::AttributeType::INT.into(),
            i: 1,
            ..Default::default()
        });
        g.node.push(dq);
    } else {
        let mut cast = node("Cast", "cast", &["q"], &["qf"]);
        cast.attribute.push(AttributeProto {
            name: "to".into(),
            type_: onnx_protobuf::attribute_proto::AttributeType::INT.into(),
            i: 1,
            ..Default::default()
        });
        g.node.push(cast);
        g.node.push(node("Mul", "dequantize", &["qf", "s"], &["W"]));
    }
    g.node.push(node("Mul", "scale", &["c", "W"], &["cW"]));
    g.node.push(node("MatMul", "mm", &["x", "cW"], &["y"]));
    if shared {
        g.output.push(value("W", &[4, 3]));
    }
    model(g)
}

/// Runs the rewrite; checks on tract that the result computes what the
/// original does; returns how many scales moved and the op types left.
fn rewrite(m: &ModelProto) -> (usize, Vec<String>) {
    let mut model = laurelc::onnx::import_bytes(&bytes(m), "test").unwrap();
    let moved = laurelc::fuse::dequant::scale_into_dequantization(&mut model.graph).unwrap();
    let out = laurelc::onnx::to_proto(&model).unwrap();
    let opts = laurel_runtime::LoadOptions::default();
    let load = |p: &ModelProto| {
        laurel_runtime::load(laurel_runtime::ModelSource::Bytes(&bytes(p)), &opts).unwrap()
    };
    let (before, after) = (load(m), load(&out));
    for seed in 0..3 {
        let inputs = laurel_runtime::random_inputs(before.inputs(), seed).unwrap();
        let (a, b) = (
            before.run(inputs.clone()).unwrap(),
            after.run(inputs).unwrap(),
        );
        for ((name, x), (_, y)) in a.iter().zip(&b) {
            let c = laurel_runtime::compare(y, x, 1e-6, 1e-6);
            assert_eq!(c.mismatches, 0, "{name}: max abs {}", c.max_abs);
        }
    }
    let op_types = out.graph.node.iter().map(|n| n.op_type.clone()).collect();
    (moved, op_types)
}

#[test]
fn a_scale_on_a_dequantized_weight_goes_into_the_dequantization_scale() {
    // c·DequantizeLinear(q, s, z) = DequantizeLinear(q, c·s, z), for c < 0 too.
    for c_dims in [&[][..], &[1][..]] {
        assert_eq!(
            rewrite(&scaled_weight(true, c_dims, false)),
            (1, vec!["DequantizeLinear".into(), "MatMul".into()])
        );
        // c·(Cast(q)·s) = Cast(q)·(c·s).
        assert_eq!(
            rewrite(&scaled_weight(false, c_dims, false)),
            (1, vec!["Cast".into(), "Mul".into(), "MatMul".into()])
        );
    }
}

#[test]
fn a_dequantized_weight_read_elsewhere_or_a_wider_factor_is_left_alone() {
    // W is a graph output: its scale cannot change.
    assert_eq!(rewrite(&scaled_weight(true, &[], true)).0, 0);
    // c of rank 2 would make the scale [1, 3], which DequantizeLinear refuses.
    assert_eq!(rewrite(&scaled_weight(true, &[1, 1], false)).0, 0);
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/int8")
        .join(name)
}

fn fused(name: &str) -> (Model, laurelc::fuse::FuseSummary) {
    let mut m = laurelc::onnx::import_path(&fixture(name)).unwrap();
    let s = laurelc::fuse::fuse_model(&mut m, &laurelc::fuse::FuseOptions::default()).unwrap();
    (m, s)
}

#[test]
fn rw_on_int8_weights_fuses_to_the_plain_int8_models_op_counts() {
    for form in ["dq", "cast"] {
        let (plain, _) = fused(&format!("torch_gpt_plain_op17_int8{form}.onnx"));
        let (rw, summary) = fused(&format!("torch_gpt_rw_op17_int8{form}.onnx"));
        assert!(!summary.hit_limit, "{form}: {}", summary.stop);
        // One per block: the scale the MLP's output projection took.
        assert_eq!(summary.dequantization_scales, 4, "{form}");
        let counts = |m: &Model| -> BTreeMap<String, usize> { m.graph.op_counts() };
        assert_eq!(counts(&rw), counts(&plain), "{form}");
        // The weights stay int8: no float copy of a dequantized weight.
        let int8 = |m: &Model| {
            m.graph
                .initializers
                .iter()
                .filter(|&&n| {
                    matches!(&m.graph.dag[n], laurelc::ir::Node::Initializer(i) if i.proto.data_type == 3 && i.proto.dims.len() == 2)
                })
                .count()
        };
        assert_eq!(int8(&rw), int8(&plain), "{form}");
        // On tract, the fused model computes what the unfused one does.
        let original =
            std::fs::read(fixture(&format!("torch_gpt_rw_op17_int8{form}.onnx"))).unwrap();
        let out = laurelc::onnx::to_bytes(&rw).unwrap();
        let opts = laurel_runtime::LoadOptions::with_dims([("batch", 2), ("seq", 8)]);
        let a = laurel_runtime::load(laurel_runtime::ModelSource::Bytes(&original), &opts).unwrap();
        let b = laurel_runtime::load(laurel_runtime::ModelSource::Bytes(&out), &opts).unwrap();
        let inputs = laurel_runtime::random_inputs(a.inputs(), 5).unwrap();
        let (ya, yb) = (a.run(inputs.clone()).unwrap(), b.run(inputs).unwrap());
        let c = laurel_runtime::compare(&yb[0].1, &ya[0].1, 1e-4, 1e-5);
        assert_eq!(c.mismatches, 0, "{form}: max abs {}", c.max_abs);
    }
}
