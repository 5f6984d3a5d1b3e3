//! External data and declared sizes from an untrusted model (issue 15):
//! every way a location can leave the model's directory is refused, by the
//! compiler's importer (`inspect`) and by the tract path (`run`), and a size
//! the model declares but does not hold is refused before anything is
//! allocated for it.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use onnx_protobuf::{
    GraphProto, Message, ModelProto, NodeProto, StringStringEntryProto, TensorProto, ValueInfoProto,
};

fn model_with(t: TensorProto) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        opset_import: vec![onnx_protobuf::OperatorSetIdProto {
            version: 17,
            ..Default::default()
        }],
        graph: protobuf::MessageField::some(GraphProto {
            name: "g".into(),
            node: vec![NodeProto {
                op_type: "Identity".into(),
                input: vec!["w".into()],
                output: vec!["y".into()],
                name: "id".into(),
                ..Default::default()
            }],
            initializer: vec![t],
            output: vec![ValueInfoProto {
                name: "y".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
    .write_to_bytes()
    .unwrap()
}

fn external(location: &str, length: usize) -> TensorProto {
    let kv = |k: &str, v: String| StringStringEntryProto {
        key: k.into(),
        value: v,
        ..Default::default()
    };
    TensorProto {
        name: "w".into(),
        data_type: 2, // UINT8
        dims: vec![i64::try_from(length).unwrap()],
        data_location: onnx_protobuf::tensor_proto::DataLocation::EXTERNAL.into(),
        external_data: vec![
            kv("location", location.into()),
            kv("length", length.to_string()),
        ],
        ..Default::default()
    }
}

/// `inspect` and `run` both exit 2 on `model`, naming `reason`.
fn refused(model: &Path, reason: &str) {
    for cmd in ["inspect", "run"] {
        let o = common::laurelc(&[cmd, model.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{cmd} {}: {err}", model.display());
        assert!(!err.contains("panicked"), "{err}");
        if cmd == "inspect" {
            assert!(err.contains(reason), "{cmd} {}: {err}", model.display());
        }
    }
}

#[test]
fn external_data_that_leaves_the_model_directory_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let (dir, outside) = (root.path().join("m"), root.path().join("outside"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.bin"), b"abcd").unwrap();
    std::os::unix::fs::symlink(outside.join("secret.bin"), dir.join("link.bin")).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("linkdir")).unwrap();
    let secret = outside.join("secret.bin");
    let cases: Vec<(String, &str)> = vec![
        (secret.to_str().unwrap().to_owned(), "is absolute"),
        (
            "../outside/secret.bin".into(),
            "leaves the model's directory",
        ),
        (
            "sub/../../outside/secret.bin".into(),
            "leaves the model's directory",
        ),
        ("link.bin".into(), "outside the model's directory"),
        ("linkdir/secret.bin".into(), "outside the model's directory"),
        ("..\\outside\\secret.bin".into(), "separated by `/`"),
        ("secret\0.bin".into(), "NUL byte"),
        ("a".repeat(300), "too long"),
    ];
    for (k, (location, reason)) in cases.iter().enumerate() {
        let model = dir.join(format!("case{k}.onnx"));
        std::fs::write(&model, model_with(external(location, 4))).unwrap();
        refused(&model, reason);
    }
}

/// A float initializer of `dims` holding 16 bytes of data.
fn sixteen_bytes_declared(dims: &[i64]) -> TensorProto {
    TensorProto {
        name: "w".into(),
        data_type: 1,
        dims: dims.to_vec(),
        raw_data: vec![0; 16],
        ..Default::default()
    }
}

#[test]
fn declared_sizes_the_model_does_not_hold_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // External: a length past the end of the file.
    std::fs::write(dir.path().join("w.bin"), [0u8; 16]).unwrap();
    let past = dir.path().join("past.onnx");
    std::fs::write(&past, model_with(external("w.bin", 1 << 20))).unwrap();
    refused(&past, "past the end");
    // Inline: 16 bytes declared [2^20, 2^20] floats (4 TiB).
    let huge = dir.path().join("huge.onnx");
    std::fs::write(
        &huge,
        model_with(sixteen_bytes_declared(&[1 << 20, 1 << 20])),
    )
    .unwrap();
    refused(&huge, "raw_data holds 16 bytes");
    // Dims whose product overflows.
    let overflow = dir.path().join("overflow.onnx");
    std::fs::write(
        &overflow,
        model_with(sixteen_bytes_declared(&[1 << 40, 1 << 40])),
    )
    .unwrap();
    refused(&overflow, "more elements than can be addressed");
}
