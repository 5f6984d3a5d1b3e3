//! `laurelc fuse` through the CLI: RW parametrisations fold away, constant
//! folding never bloats a model, `--explain` reports.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use onnx_protobuf::{GraphProto, Message, ModelProto};

fn ops(path: &Path) -> Vec<String> {
    let m = ModelProto::parse_from_bytes(&std::fs::read(path).unwrap()).unwrap();
    m.graph.node.iter().map(|n| n.op_type.clone()).collect()
}

#[test]
fn rw_parametrisations_fold_into_alpha_and_beta() {
    let dir = tempfile::tempdir().unwrap();
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tiny_preln_transformer.onnx");
    for (param, removed_per_block) in [("softmax", 6), ("sigmoid", 5)] {
        let aug = dir.path().join(format!("aug-{param}.onnx"));
        let fused = dir.path().join(format!("fused-{param}.onnx"));
        let args = [
            fixture.to_str().unwrap(),
            "-o",
            aug.to_str().unwrap(),
            "--rw-param",
            param,
            "--init",
            "random",
            "--seed",
            "4",
        ];
        assert_eq!(laurelc(&args).status.code(), Some(0));
        let o = laurelc(&["fuse", aug.to_str().unwrap(), "-o", fused.to_str().unwrap()]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        // Each of the 4 blocks loses the ops computing α and β from a, b (Sub, Sigmoid, Mul each)
        // or from p (Sigmoid, Mul for α; Neg, Sigmoid, Mul for β), and its two scalar products.
        assert_eq!(
            ops(&aug).len() - ops(&fused).len(),
            4 * (removed_per_block + 2),
            "{param}"
        );
        assert!(
            !ops(&fused).iter().any(|o| o == "Sigmoid" || o == "Neg"),
            "{param}: {:?}",
            ops(&fused)
        );
        let m = ModelProto::parse_from_bytes(&std::fs::read(&fused).unwrap()).unwrap();
        let laurel: Vec<&str> = m
            .graph
            .initializer
            .iter()
            .map(|t| t.name.as_str())
            .filter(|n| n.starts_with("laurel."))
            .collect();
        assert!(
            laurel.is_empty(),
            "{param}: α and β fold into weights: {laurel:?}"
        );
        let o = laurelc(&[
            "check",
            aug.to_str().unwrap(),
            fused.to_str().unwrap(),
            "--rtol",
            "1e-4",
            "--atol",
            "1e-5",
            "--runs",
            "2",
        ]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
}

#[test]
fn folding_never_expands_a_small_constant_into_a_large_one() {
    let dir = tempfile::tempdir().unwrap();
    // y = x + ConstantOfShape([256, 256]): the 256 KiB tensor must stay a 2-element shape.
    let shape = onnx_protobuf::TensorProto {
        name: "shape".into(),
        dims: vec![2],
        data_type: 7,
        int64_data: vec![256, 256],
        ..Default::default()
    };
    let g = GraphProto {
        node: vec![
            node("ConstantOfShape", "zeros", &["shape"], &["z"]),
            node("Add", "add", &["x", "z"], &["y"]),
        ],
        initializer: vec![shape],
        input: vec![value("x", &[256, 256])],
        output: vec![value("y", &[256, 256])],
        ..Default::default()
    };
    let p = dir.path().join("m.onnx");
    std::fs::write(&p, bytes(&model(g))).unwrap();
    let out = dir.path().join("f.onnx");
    let o = laurelc(&[
        "fuse",
        p.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--explain",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("1 large values kept"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(ops(&out), ["ConstantOfShape", "Add"]);
    assert!(std::fs::metadata(&out).unwrap().len() < 4096);
}
