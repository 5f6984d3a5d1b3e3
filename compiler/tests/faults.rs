//! Faults while laurelc writes (issue 15): a run killed at any moment
//! leaves the output absent or complete, the input untouched, and no
//! temporary file of its own once the next run has written into the same
//! directory.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use onnx_protobuf::{GraphProto, Message, ModelProto, TensorProto, ValueInfoProto};

/// A model of one `Identity` over a 64 MiB float initializer: writing it
/// takes long enough to be killed half-way.
fn big_model(path: &Path) {
    let n: usize = 16 << 20;
    let weight = TensorProto {
        name: "w".into(),
        dims: vec![i64::try_from(n).unwrap()],
        data_type: 1,
        raw_data: (0..n)
            .flat_map(|i| f32::from(u16::try_from(i % 997).unwrap()).to_le_bytes())
            .collect(),
        ..Default::default()
    };
    let node = onnx_protobuf::NodeProto {
        op_type: "Identity".into(),
        input: vec!["w".into()],
        output: vec!["y".into()],
        name: "id".into(),
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![onnx_protobuf::OperatorSetIdProto {
            version: 17,
            ..Default::default()
        }],
        graph: protobuf::MessageField::some(GraphProto {
            name: "big".into(),
            node: vec![node],
            initializer: vec![weight],
            output: vec![ValueInfoProto {
                name: "y".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    std::fs::write(path, model.write_to_bytes().unwrap()).unwrap();
}

/// When a run is killed: after a time, or a time after its output's
/// temporary file appeared.
#[derive(Debug, Clone, Copy)]
enum Moment {
    After(Duration),
    Writing(Duration),
}

fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".laurelc-"))
        .collect()
}

#[test]
fn a_run_killed_while_writing_leaves_no_partial_output_and_the_next_run_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.onnx");
    big_model(&input);
    let before = std::fs::read(&input).unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("out.onnx");
    let args = [
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--no-passes",
        "-q",
    ];
    // Kills at moments across a whole run, and kills while the output is
    // being written: once its temporary file has appeared, plus 0–40 ms.
    let started = std::time::Instant::now();
    let o = common::laurelc(&args);
    assert_eq!(o.status.code(), Some(0));
    let whole = started.elapsed();
    let mut killed_with_a_temporary = 0;
    let moments = [0.1, 0.5, 0.9].map(|f| Moment::After(whole.mul_f64(f)));
    let writing = [0, 10, 40].map(|ms| Moment::Writing(Duration::from_millis(ms)));
    for moment in moments.into_iter().chain(writing) {
        let _ = std::fs::remove_file(&out);
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_laurelc"))
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        match moment {
            Moment::After(d) => std::thread::sleep(d),
            Moment::Writing(d) => {
                let since = std::time::Instant::now();
                while temporaries(&out_dir).is_empty()
                    && since.elapsed() < Duration::from_mins(1)
                    && child.try_wait().unwrap().is_none()
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
                std::thread::sleep(d);
            }
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        if !temporaries(&out_dir).is_empty() {
            killed_with_a_temporary += 1;
        }
        // The output is absent or whole.
        if out.exists() {
            let m = ModelProto::parse_from_bytes(&std::fs::read(&out).unwrap()).unwrap();
            assert_eq!(
                m.graph.initializer[0].raw_data.len(),
                64 << 20,
                "{moment:?}"
            );
        }
        assert_eq!(std::fs::read(&input).unwrap(), before, "the input changed");
    }
    // The next run into the same directory leaves no temporary behind, its
    // own or a dead run's.
    let o = common::laurelc(&args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(temporaries(&out_dir), Vec::<String>::new());
    // Some kill fell while the output was being written, so the clean-up
    // above had a dead run's file to remove.
    assert!(
        killed_with_a_temporary > 0,
        "no kill hit the write: the test proves nothing"
    );
}

/// `If` inside `If`, `depth` deep, around one `Identity`.
fn nested_ifs(depth: usize) -> Vec<u8> {
    use onnx_protobuf::{AttributeProto, NodeProto, attribute_proto::AttributeType};
    let out = || ValueInfoProto {
        name: "y".into(),
        ..Default::default()
    };
    let node = |op: &str, inputs: &[&str]| NodeProto {
        op_type: op.into(),
        input: inputs.iter().map(|s| (*s).into()).collect(),
        output: vec!["y".into()],
        ..Default::default()
    };
    let graph = |name: String, n: NodeProto| GraphProto {
        name,
        node: vec![n],
        output: vec![out()],
        ..Default::default()
    };
    let mut g = graph("leaf".into(), node("Identity", &["x"]));
    for d in 0..depth {
        let branch = |name: &str, g: GraphProto| AttributeProto {
            name: name.into(),
            type_: AttributeType::GRAPH.into(),
            g: protobuf::MessageField::some(g),
            ..Default::default()
        };
        let mut n = node("If", &["c"]);
        n.name = format!("if{d}");
        n.attribute = vec![
            branch("then_branch", g),
            branch(
                "else_branch",
                graph(format!("else{d}"), node("Neg", &["x"])),
            ),
        ];
        g = graph(format!("then{d}"), n);
    }
    let input = |name: &str, elem: i32| ValueInfoProto {
        name: name.into(),
        type_: protobuf::MessageField::some(onnx_protobuf::TypeProto {
            value: Some(onnx_protobuf::type_proto::Value::TensorType(
                onnx_protobuf::type_proto::Tensor {
                    elem_type: elem,
                    shape: protobuf::MessageField::some(onnx_protobuf::TensorShapeProto::default()),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }),
        ..Default::default()
    };
    g.name = "main".into();
    g.input = vec![input("x", 1), input("c", 9)];
    ModelProto {
        ir_version: 8,
        opset_import: vec![onnx_protobuf::OperatorSetIdProto {
            version: 17,
            ..Default::default()
        }],
        graph: protobuf::MessageField::some(g),
        ..Default::default()
    }
    .write_to_bytes()
    .unwrap()
}

/// 1,000 `If`s deep: no stack overflow, whatever the command; a clear
/// error where a limit applies (exit 2), and no output file then.
#[test]
fn a_thousand_nested_ifs_end_in_a_clear_error_not_a_crash() {
    nested_ifs_end_cleanly(1000);
}

/// As deep as protobuf decodes (30 `If`s: 90 nested messages): every
/// command that walks subgraphs recursively gets through.
#[test]
fn thirty_nested_ifs_are_handled() {
    nested_ifs_end_cleanly(30);
}

fn nested_ifs_end_cleanly(depth: usize) {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("nested.onnx");
    std::fs::write(&model, nested_ifs(depth)).unwrap();
    let out = dir.path().join("out.onnx");
    let (model, out_s) = (model.to_str().unwrap(), out.to_str().unwrap());
    for args in [
        vec!["inspect", model],
        vec![model, "-o", out_s, "--no-passes"],
        vec![model, "-o", out_s],
        vec!["fuse", model, "-o", out_s],
        vec!["run", model],
    ] {
        let o = common::laurelc(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        // Exit 0 or 2, never a signal (a stack overflow aborts with SIGABRT/SIGSEGV).
        assert!(
            matches!(o.status.code(), Some(0 | 2)),
            "{args:?}: {:?} {err}",
            o.status
        );
        if o.status.code() == Some(2) {
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
            // Protobuf decoding stops at 100 nested messages (about 33 Ifs).
            assert!(err.contains("recursion limit"), "{args:?}: {err}");
            assert!(!out.exists(), "{args:?}");
        }
        let _ = std::fs::remove_file(&out);
    }
}

/// An output that is a directory, or a symlink to the input; three runs
/// writing one output at once: the input stays as it was, the output is
/// absent or whole, and no temporary file is left.
#[test]
fn outputs_that_are_directories_links_to_the_input_or_raced_for() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.onnx");
    std::fs::copy(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tiny_resnet.onnx"),
        &input,
    )
    .unwrap();
    let before = std::fs::read(&input).unwrap();
    let inp = input.to_str().unwrap();
    let outdir = dir.path().join("outdir");
    std::fs::create_dir(&outdir).unwrap();
    let o = common::laurelc(&[inp, "-o", outdir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(outdir.is_dir());
    let link = dir.path().join("link.onnx");
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&input, &link).unwrap();
        let o = common::laurelc(&[inp, "-o", link.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&o.stderr).contains("refusing to overwrite the input"));
    }
    let same = dir.path().join("same.onnx");
    // Started together, so their writes overlap.
    let runs: Vec<_> = (0..3)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_laurelc"))
                .args([inp, "-o", same.to_str().unwrap(), "-q"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for r in runs {
        assert_eq!(r.wait_with_output().unwrap().status.code(), Some(0));
    }
    let _ = ModelProto::parse_from_bytes(&std::fs::read(&same).unwrap()).unwrap();
    assert_eq!(std::fs::read(&input).unwrap(), before);
    assert_eq!(temporaries(dir.path()), Vec::<String>::new());
    assert_eq!(temporaries(&outdir), Vec::<String>::new());
}
