//! The `laurelc` binary on bad input: a clear message naming the file (and
//! the node, where one applies), exit code 2, no panic, no output file.

#![allow(clippy::unwrap_used, clippy::many_single_char_names)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use onnx_protobuf::{GraphProto, Message, ModelProto, StringStringEntryProto};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `laurelc IN -o OUT --no-passes` and asserts a clean failure.
fn assert_rejected(input: &Path, must_mention: &[&str]) {
    let out = input.with_file_name("out.onnx");
    let o = laurelc(&[
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--no-passes",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for m in must_mention {
        assert!(err.contains(m), "expected `{m}` in: {err}");
    }
    assert!(
        !out.exists(),
        "a failed run must not write {}",
        out.display()
    );
    let leftovers: Vec<PathBuf> = std::fs::read_dir(input.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".laurelc-")
        })
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

fn kv(k: &str, v: &str) -> StringStringEntryProto {
    StringStringEntryProto {
        key: k.into(),
        value: v.into(),
        ..Default::default()
    }
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    assert_rejected(&dir.path().join("nope.onnx"), &["nope.onnx", "cannot open"]);
}

#[test]
fn empty_file() {
    let dir = tempfile::tempdir().unwrap();
    assert_rejected(
        &write(dir.path(), "empty.onnx", b""),
        &["empty.onnx", "empty"],
    );
}

#[test]
fn not_protobuf() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "text.onnx",
        b"\xff\xff\xff\xff this is not a model",
    );
    assert_rejected(&p, &["text.onnx", "not a valid ONNX model"]);
}

#[test]
fn truncated_model() {
    let dir = tempfile::tempdir().unwrap();
    let b = bytes(&tiny());
    let p = write(dir.path(), "cut.onnx", &b[..b.len() / 2]);
    assert_rejected(&p, &["cut.onnx", "not a valid ONNX model"]);
}

#[test]
fn no_graph() {
    let dir = tempfile::tempdir().unwrap();
    let m = ModelProto {
        ir_version: 8,
        ..Default::default()
    };
    assert_rejected(
        &write(dir.path(), "nograph.onnx", &bytes(&m)),
        &["nograph.onnx", "no graph"],
    );
}

#[test]
fn cycle() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(GraphProto {
        node: vec![
            node("Add", "first", &["x", "b"], &["a"]),
            node("Relu", "second", &["a"], &["b"]),
        ],
        input: vec![value("x", &[1])],
        output: vec![value("b", &[1])],
        ..Default::default()
    });
    assert_rejected(
        &write(dir.path(), "cycle.onnx", &bytes(&m)),
        &["cycle.onnx", "cycle", "`first` (Add)"],
    );
}

#[test]
fn dangling_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = tiny();
    m.graph.as_mut().unwrap().node[1].input[1] = "ghost".into();
    assert_rejected(
        &write(dir.path(), "dangling.onnx", &bytes(&m)),
        &["dangling.onnx", "`add` (Add)", "`ghost`"],
    );
}

#[test]
fn duplicate_graph_output() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = tiny();
    let g = m.graph.as_mut().unwrap();
    g.output.push(g.output[0].clone());
    assert_rejected(
        &write(dir.path(), "dupout.onnx", &bytes(&m)),
        &["dupout.onnx", "`y`", "more than once"],
    );
}

#[test]
fn duplicate_node_output() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = tiny();
    m.graph.as_mut().unwrap().node[1].output[0] = "h".into();
    assert_rejected(
        &write(dir.path(), "dupval.onnx", &bytes(&m)),
        &["dupval.onnx", "`h`", "`mm` (MatMul)", "`add` (Add)"],
    );
}

fn with_external(location: &str) -> ModelProto {
    let mut m = tiny();
    let w = &mut m.graph.as_mut().unwrap().initializer[0];
    w.raw_data.clear();
    w.data_location = onnx_protobuf::tensor_proto::DataLocation::EXTERNAL.into();
    w.external_data = vec![kv("location", location)];
    m
}

#[test]
fn external_data_missing() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "ext.onnx", &bytes(&with_external("w.bin")));
    assert_rejected(&p, &["ext.onnx", "tensor `W`", "missing"]);
}

#[test]
fn external_data_outside_the_model_directory() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(root.path().join("w.bin"), [0u8; 36]).unwrap();
    let p = write(&dir, "up.onnx", &bytes(&with_external("../w.bin")));
    assert_rejected(
        &p,
        &["up.onnx", "tensor `W`", "leaves the model's directory"],
    );
    let abs = root.path().join("w.bin");
    let p = write(
        &dir,
        "abs.onnx",
        &bytes(&with_external(abs.to_str().unwrap())),
    );
    assert_rejected(&p, &["abs.onnx", "absolute"]);
    std::os::unix::fs::symlink(&abs, dir.join("link.bin")).unwrap();
    let p = write(&dir, "link.onnx", &bytes(&with_external("link.bin")));
    assert_rejected(&p, &["link.onnx", "outside the model's directory"]);
}

#[test]
fn external_data_too_short() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("w.bin"), [0u8; 10]).unwrap();
    let p = write(dir.path(), "short.onnx", &bytes(&with_external("w.bin")));
    assert_rejected(&p, &["short.onnx", "past the end"]);
}

#[test]
fn output_in_a_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "m.onnx", &bytes(&tiny()));
    let out = dir.path().join("no/such/dir/out.onnx");
    let o = laurelc(&[
        p.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--no-passes",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("output directory does not exist"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn output_equal_to_input_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let original = bytes(&tiny());
    let p = write(dir.path(), "m.onnx", &original);
    let ps = p.to_str().unwrap();
    let o = laurelc(&[ps, "-o", ps, "--no-passes"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(&p).unwrap(),
        original,
        "the input must be untouched"
    );
    // The same file under another name is refused too.
    let alias = dir.path().join("./sub/../m.onnx");
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let o = laurelc(&[ps, "-o", alias.to_str().unwrap(), "--no-passes"]);
    assert_eq!(o.status.code(), Some(2));
    let o = laurelc(&[ps, "-o", ps, "--no-passes", "--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let back = ModelProto::parse_from_bytes(&std::fs::read(&p).unwrap()).unwrap();
    assert_eq!(back, tiny());
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(laurelc(&[]).status.code(), Some(2));
    assert_eq!(laurelc(&["model.onnx"]).status.code(), Some(2));
    assert_eq!(laurelc(&["check", "a.onnx"]).status.code(), Some(2));
    assert_eq!(laurelc(&["--help"]).status.code(), Some(0));
    // A cost constant that does not exist, or a value that is not one.
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "m.onnx", &bytes(&tiny()));
    let out = dir.path().join("f.onnx");
    for cost in ["copy=1", "overhead=-1", "overhead=fast", "overhead"] {
        let o = laurelc(&[
            "fuse",
            p.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--cost",
            cost,
        ]);
        assert_eq!(o.status.code(), Some(2), "{cost}: {}", stderr(&o));
        assert!(stderr(&o).contains("--cost"), "{cost}: {}", stderr(&o));
        assert!(!out.exists());
    }
    let o = laurelc(&[
        "fuse",
        p.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--cost",
        "copy-overhead=0",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn round_trip_output_is_byte_identical_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "m.onnx", &bytes(&tiny()));
    let (a, b) = (dir.path().join("a.onnx"), dir.path().join("b.onnx"));
    for out in [&a, &b] {
        let o = laurelc(&[
            p.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--no-passes",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

#[test]
fn run_and_check_on_tract() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "m.onnx", &bytes(&tiny()));
    let rt = dir.path().join("rt.onnx");
    assert_eq!(
        laurelc(&[
            p.to_str().unwrap(),
            "-o",
            rt.to_str().unwrap(),
            "--no-passes"
        ])
        .status
        .code(),
        Some(0)
    );
    let o = laurelc(&[
        "check",
        p.to_str().unwrap(),
        rt.to_str().unwrap(),
        "--runs",
        "3",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("PASS"));

    // A model that differs: W scaled by 2 changes y wherever the MatMul term matters.
    let mut m = tiny();
    let w = &mut m.graph.as_mut().unwrap().initializer[0];
    *w = f32_tensor(
        "W",
        &[3, 3],
        &[1.0, -2.0, 0.5, 2.0, 0.0, -1.0, 1.5, 1.0, 3.0],
    );
    let q = write(dir.path(), "q.onnx", &bytes(&m));
    let o = laurelc(&[
        "check",
        p.to_str().unwrap(),
        q.to_str().unwrap(),
        "--runs",
        "3",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("FAIL"));

    // run: x = [[1,2,3],[-1,0,1]] from a .npy file → y = relu(x·W + x), computed by hand.
    let x = dir.path().join("x.npy");
    write_x_npy(&x);
    let out_dir = dir.path().join("outs");
    let o = laurelc(&[
        "run",
        p.to_str().unwrap(),
        "--input",
        &format!("x={}", x.display()),
        "--out-dir",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let y = std::fs::read(out_dir.join("y.npy")).unwrap();
    // x·W row 0: [1*0.5+2*1+3*0.75, 1*-1+0+3*0.5, 2*-0.5+3*1.5] = [4.75, 0.5, 3.75]; + x = [5.75, 2.5, 6.75]
    // row 1: [-0.5+0+0.75, 1+0+0.5, -0.25+0+1.5] = [0.25, 1.5, 1.25]; + x = [-0.75, 1.5, 2.25] → relu [0, 1.5, 2.25]
    let expected: [f32; 6] = [5.75, 2.5, 6.75, 0.0, 1.5, 2.25];
    let data = &y[y.len() - 24..];
    let got: Vec<f32> = data
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(got, expected);
}

/// Writes a 2×3 float32 .npy by hand (little-endian, C order), independent of the code under test.
fn write_x_npy(path: &Path) {
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    let mut h = header.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&u16::try_from(h.len()).unwrap().to_le_bytes());
    b.extend_from_slice(h.as_bytes());
    for v in [1.0f32, 2.0, 3.0, -1.0, 0.0, 1.0] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn inspect_reports_versions_io_ops_and_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "m.onnx", &bytes(&tiny()));
    let o = laurelc(&["inspect", p.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["ir_version"], 8);
    assert_eq!(j["opsets"][""], 17);
    assert_eq!(j["node_count"], 3);
    assert_eq!(
        j["op_counts"],
        serde_json::json!({"Add": 1, "MatMul": 1, "Relu": 1})
    );
    assert_eq!(j["parameter_count"], 9);
    assert_eq!(j["parameter_bytes"], 36);
    assert_eq!(j["external_data"], false);
    assert_eq!(
        j["inputs"],
        serde_json::json!([{"name": "x", "dtype": "float32", "shape": ["2", "3"]}])
    );
    assert_eq!(j["outputs"][0]["name"], "y");
    let text = laurelc(&["inspect", p.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("MatMul: 1") && text.contains("parameters: 9 (36 bytes)"),
        "{text}"
    );
}

#[test]
fn inspect_lists_residuals_as_json_and_draws_streams() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tiny_resnet.onnx");
    let dot = dir.path().join("streams.dot");
    let o = laurelc(&[
        "inspect",
        fixture.to_str().unwrap(),
        "--json",
        "--dot",
        dot.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let r = &j["residuals"];
    assert_eq!(r.as_array().unwrap().len(), 3);
    assert_eq!(
        r[1],
        serde_json::json!({
            "node": "block2/add", "kind": "identity", "skip": "block1/relu_out", "branch": "block2/bn2",
            "channels": 8, "axis": 1, "shape": ["1", "8", "16", "16"], "dtype": "f32", "branch_ops": 5, "stream": 0, "index": 1
        })
    );
    assert_eq!(r[2]["kind"], "projection");
    assert_eq!(r[2]["fork"], "block2/relu_out");
    let text = std::fs::read_to_string(&dot).unwrap();
    assert!(text.starts_with("digraph \"tiny_resnet\""), "{text}");
    assert!(
        text.contains("stream 0 (3 blocks)")
            && text.contains("b0 -> b1;")
            && text.contains("b1 -> b2;"),
        "{text}"
    );
}

#[test]
fn the_input_external_data_file_is_never_overwritten_without_force() {
    let dir = tempfile::tempdir().unwrap();
    // a.onnx keeps W in b.onnx.data: writing b.onnx with external data would replace it.
    let mut m = tiny();
    let w = &mut m.graph.as_mut().unwrap().initializer[0];
    let data = std::mem::take(&mut w.raw_data);
    w.data_location = onnx_protobuf::tensor_proto::DataLocation::EXTERNAL.into();
    w.external_data = vec![kv("location", "b.onnx.data")];
    std::fs::write(dir.path().join("b.onnx.data"), &data).unwrap();
    let a = write(dir.path(), "a.onnx", &bytes(&m));
    let b = dir.path().join("b.onnx");
    let o = laurelc(&[
        a.to_str().unwrap(),
        "-o",
        b.to_str().unwrap(),
        "--no-passes",
        "--external-data",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("b.onnx.data") && stderr(&o).contains("--force"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(dir.path().join("b.onnx.data")).unwrap(), data);
    assert!(!b.exists());
}

#[test]
fn inspect_dot_never_replaces_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "m.onnx", &bytes(&tiny()));
    let o = laurelc(&["inspect", p.to_str().unwrap(), "--dot", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(std::fs::read(&p).unwrap(), bytes(&tiny()));
}

#[test]
fn inspect_summarises_models_tract_cannot_analyse() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = tiny();
    // x with no declared shape: the summary still comes, residual analysis says why it is missing.
    m.graph.as_mut().unwrap().input[0]
        .type_
        .as_mut()
        .unwrap()
        .mut_tensor_type()
        .shape
        .clear();
    let p = write(dir.path(), "norank.onnx", &bytes(&m));
    let o = laurelc(&["inspect", p.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["node_count"], 3);
    assert_eq!(j["residuals"], serde_json::json!([]));
    assert!(
        j["shape_inference"]
            .as_str()
            .unwrap()
            .starts_with("unavailable"),
        "{j}"
    );
}

#[test]
fn a_huge_declared_input_is_an_error_not_an_abort() {
    let dir = tempfile::tempdir().unwrap();
    let g = onnx_protobuf::GraphProto {
        node: vec![node("Relu", "r", &["x"], &["y"])],
        input: vec![value("x", &[1 << 20, 1 << 20])],
        output: vec![value("y", &[1 << 20, 1 << 20])],
        ..Default::default()
    };
    let p = write(dir.path(), "big.onnx", &bytes(&model(g)));
    let o = laurelc(&["run", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("larger than"), "{}", stderr(&o));
}

#[test]
fn unimplemented_and_unknown_variants_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "m.onnx", &bytes(&tiny()));
    let out = dir.path().join("o.onnx");
    for (variant, says) in [("xyz", "unknown variant"), ("rw+xyz", "unknown variant")] {
        let o = laurelc(&[
            p.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--variant",
            variant,
        ]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(says), "{}", stderr(&o));
        assert!(!out.exists());
    }
}

#[test]
fn the_default_pipeline_augments_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tiny_preln_transformer.onnx");
    let out = dir.path().join("o.onnx");
    let report = dir.path().join("r.json");
    let o = laurelc(&[
        fixture.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--report-json",
        report.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("augmented 4 blocks (rw): +8 parameters"),
        "{stdout}"
    );
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(j["variant"], "rw");
    assert_eq!(j["blocks"].as_array().unwrap().len(), 4);
    assert_eq!(j["parameters_added"], 8);
    assert_eq!(j["rules_fired"]["resadd-to-rw"], 4);
    assert_eq!(j["rules_fired"]["expand-rw"], 4);
    // Deterministic: the same flags give the same bytes.
    let out2 = dir.path().join("o2.onnx");
    assert_eq!(
        laurelc(&[fixture.to_str().unwrap(), "-o", out2.to_str().unwrap()])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&out2).unwrap());
}

#[test]
fn blocks_selects_by_stream_range_or_name_and_keeps_block_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tiny_preln_transformer.onnx");
    let out = dir.path().join("o.onnx");
    let params = |select: &str| -> Vec<String> {
        let o = laurelc(&[
            fixture.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--blocks",
            select,
            "--rw-param",
            "sigmoid",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let m = ModelProto::parse_from_bytes(&std::fs::read(&out).unwrap()).unwrap();
        let mut names: Vec<String> = m
            .graph
            .initializer
            .iter()
            .map(|t| t.name.clone())
            .filter(|n| n.rsplit('.').next() == Some("p"))
            .collect();
        names.sort();
        names
    };
    assert_eq!(params("0:1..3"), ["laurel.1.p", "laurel.2.p"]);
    assert_eq!(params("0:3"), ["laurel.3.p"]);
    assert_eq!(params("*residual2"), ["laurel.1.p", "laurel.3.p"]);
    assert_eq!(
        params("0"),
        ["laurel.0.p", "laurel.1.p", "laurel.2.p", "laurel.3.p"]
    );
    let o = laurelc(&[
        fixture.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--blocks",
        "1:2:3",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn inspect_reports_laurel_parameters_per_block() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tiny_resnet.onnx");
    let out = dir.path().join("o.onnx");
    let args = [
        fixture.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--variant",
        "lr",
        "--rank",
        "3",
        "--include-projection",
    ];
    assert_eq!(laurelc(&args).status.code(), Some(0));
    let o = laurelc(&["inspect", out.to_str().unwrap(), "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // 2·r·D: D = 8, 8 and 16 (the projection block).
    assert_eq!(
        j["laurel_parameters"],
        serde_json::json!({"0": 48, "1": 48, "2": 96})
    );
}

#[test]
fn models_augmentation_would_break_are_refused_and_duplicate_adds_augmented_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.onnx");
    let run = |m: &ModelProto, name: &str| {
        let p = write(dir.path(), name, &bytes(m));
        let o = laurelc(&[p.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        (p, o)
    };
    // A value already in laurelc's namespace would be taken for a parameter.
    let mut clash = tiny();
    let g = clash.graph.as_mut().unwrap();
    g.initializer[0].name = "laurel.two".into();
    g.node[0].input[1] = "laurel.two".into();
    let (_, o) = run(&clash, "clash.onnx");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("laurel.two") && stderr(&o).contains("reserves"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
    // Opsets below 7 need broadcast attributes the lifted ops do not carry.
    let mut old = tiny();
    old.opset_import[0].version = 6;
    let (_, o) = run(&old, "old.onnx");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("opset 6"), "{}", stderr(&o));
    // Two adds of the same operands: one is augmented, the other reported, the function kept.
    let mut dup = tiny();
    let g = dup.graph.as_mut().unwrap();
    g.node.push(node("Add", "add_again", &["h", "x"], &["s2"]));
    g.output.push(value("s2", &[2, 3]));
    let (p, o) = run(&dup, "dup.onnx");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("augmented 1 blocks") && stdout.contains("computes the same sum as add"),
        "{stdout}"
    );
    let o = laurelc(&["check", p.to_str().unwrap(), out.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn a_report_in_a_missing_directory_fails_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "m.onnx", &bytes(&tiny()));
    let out = dir.path().join("o.onnx");
    let report = dir.path().join("nope/r.json");
    let o = laurelc(&[
        p.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--report-json",
        report.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!out.exists());
}

/// `fixtures/unsupported/ort_dynamic_quant_lstm.onnx` (`fixtures/contrib_ops.py`):
/// an LSTM quantized by onnxruntime into `com.microsoft::DynamicQuantizeLSTM`.
fn contrib_lstm() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/unsupported/ort_dynamic_quant_lstm.onnx")
}

#[test]
fn an_op_tract_lacks_is_named_in_one_line_by_run_and_check() {
    let m = contrib_lstm();
    let m = m.to_str().unwrap();
    for args in [vec!["run", m], vec!["check", m, m], vec!["bench", m, m]] {
        let o = laurelc(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: one line, not one per loader strategy: {err}"
        );
        assert!(
            err.contains("node `/LSTM_quant` is com.microsoft::DynamicQuantizeLSTM, an op tract does not implement"),
            "{args:?}: {err}"
        );
    }
    // What needs no tract run still works on it.
    let o = laurelc(&["inspect", m]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.onnx");
    let o = laurelc(&[m, "-o", out.to_str().unwrap(), "--no-passes"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// A temporal net whose stride-2 convolutions need a length it can halve
/// twice: `grad` and `run` choose the size the loader would (`time = 8`)
/// and say so, rather than fail in tract's analysis at 1 or run to empty
/// outputs.
#[test]
fn grad_and_run_choose_sizes_that_compute_something() {
    let dir = tempfile::tempdir().unwrap();
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/torch_tcn_unet.onnx");
    let step = dir.path().join("step.onnx");
    let o = laurelc(&[
        "grad",
        model.to_str().unwrap(),
        "-o",
        step.to_str().unwrap(),
        "--train",
        "all",
        "--loss",
        "mse",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("built at time = 8"), "{out}");
    let o = laurelc(&["run", model.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("running it at time = 8"),
        "{}",
        stderr(&o)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("f32[1, 2, 8]"));
}

/// A `LayerNormalization` whose axis is out of range for its input hung
/// every command that reached tract (its shape inference looped over about
/// 2⁶⁴ axes). Each command now exits 2 at once, naming the node and the
/// attribute.
#[test]
fn an_out_of_range_axis_is_refused_by_every_command_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/invalid");
    let out = dir.path().join("out.onnx");
    let out = out.to_str().unwrap();
    for name in ["ln_axis_minus_115.onnx", "ln_axis_huge.onnx"] {
        let model = fixtures.join(name);
        let model = model.to_str().unwrap();
        for args in [
            vec!["inspect", model],
            vec![model, "-o", out],
            vec!["fuse", model, "-o", out],
            vec!["run", model],
            vec!["check", model, model],
            vec!["grad", model, "-o", out, "--loss", "mse", "--train", "all"],
        ] {
            let started = std::time::Instant::now();
            let o = laurelc(&args);
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
            assert!(
                err.contains("node `ln` (LayerNormalization): axis = -"),
                "{args:?}: {err}"
            );
            assert!(
                err.contains("is out of range for its rank-3 input"),
                "{args:?}: {err}"
            );
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
            assert!(started.elapsed().as_secs() < 30, "{args:?}");
            assert!(!std::path::Path::new(out).exists());
        }
    }
}

/// A model the attribute checks cannot judge (an axis out of range for a
/// rank only tract's inference knows) still sends tract into its loop over
/// about 2⁶⁴ axes: the watchdog ends the call at `LAURELC_TRACT_TIMEOUT`
/// with one line, exit 2. A bad value of the variable is a usage error.
#[test]
fn the_tract_watchdog_ends_a_call_that_does_not_return() {
    let model =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/invalid/ln_hidden_rank.onnx");
    let model = model.to_str().unwrap();
    let with_limit = |limit: &str, args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_laurelc"))
            .args(args)
            .env("LAURELC_TRACT_TIMEOUT", limit)
            .output()
            .unwrap()
    };
    let started = std::time::Instant::now();
    let o = with_limit("2", &["run", model]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("tract did not finish loading") && err.contains("within 2 s"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(started.elapsed().as_secs() < 20);
    let o = with_limit("soon", &["run", model]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("LAURELC_TRACT_TIMEOUT=soon: expected a number of seconds"));
}
