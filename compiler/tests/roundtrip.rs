//! Import → export round trips of hand-built models that use every part of
//! the format the IR must keep.

#![allow(clippy::unwrap_used, clippy::many_single_char_names)]

mod common;

use common::*;
use laurelc::onnx::{ExportOptions, import_bytes, import_path, to_bytes, write_path};
use onnx_protobuf::{
    FunctionProto, GraphProto, Message, ModelProto, SparseTensorProto, StringStringEntryProto,
    TensorAnnotation, TrainingInfoProto,
};

fn kv(k: &str, v: &str) -> StringStringEntryProto {
    StringStringEntryProto {
        key: k.into(),
        value: v.into(),
        ..Default::default()
    }
}

/// A model touching every field the IR must carry through.
fn kitchen_sink() -> ModelProto {
    let mut m = tiny();
    m.doc_string = "model doc".into();
    m.producer_version = "1.2.3".into();
    m.domain = "org.example".into();
    m.model_version = 7;
    m.metadata_props = vec![kv("author", "tests"), kv("license", "none")];
    m.opset_import.push(onnx_protobuf::OperatorSetIdProto {
        domain: "org.example".into(),
        version: 1,
        ..Default::default()
    });
    m.functions.push(FunctionProto {
        name: "Twice".into(),
        domain: "org.example".into(),
        input: vec!["a".into()],
        output: vec!["b".into()],
        node: vec![node("Add", "twice_add", &["a", "a"], &["b"])],
        ..Default::default()
    });
    m.training_info.push(TrainingInfoProto {
        initialization: Some(GraphProto {
            name: "init".into(),
            ..Default::default()
        })
        .into(),
        update_binding: vec![kv("W", "W_new")],
        ..Default::default()
    });
    // An unknown model field (number 99, varint 5) must survive.
    m.special_fields.mut_unknown_fields().add_varint(99, 5);

    let g = m.graph.as_mut().unwrap();
    g.doc_string = "graph doc".into();
    g.metadata_props.push(kv("graph", "meta"));
    g.value_info.push(value("h", &[2, 3]));
    g.quantization_annotation.push(TensorAnnotation {
        tensor_name: "h".into(),
        quant_parameter_tensor_names: vec![kv("SCALE_TENSOR", "h_scale")],
        ..Default::default()
    });
    g.sparse_initializer.push(SparseTensorProto {
        values: Some(f32_tensor("S", &[2], &[1.0, 2.0])).into(),
        indices: Some(i64_tensor("S_idx", &[2], &[0, 4])).into(),
        dims: vec![3, 3],
        ..Default::default()
    });
    g.initializer.push(onnx_protobuf::TensorProto {
        name: "typed".into(),
        dims: vec![3],
        data_type: 1,
        float_data: vec![1.0, 2.0, 3.0],
        doc_string: "typed-field storage".into(),
        ..Default::default()
    });
    // Nodes: doc strings, metadata, an attribute, an unknown field, a custom
    // domain op, and an If whose branches capture outer values.
    g.node[0].doc_string = "node doc".into();
    g.node[0].metadata_props.push(kv("k", "v"));
    g.node[0]
        .special_fields
        .mut_unknown_fields()
        .add_length_delimited(42, b"future".to_vec());
    g.node[2].attribute.push(onnx_protobuf::AttributeProto {
        name: "alpha".into(),
        f: 0.5,
        type_: onnx_protobuf::attribute_proto::AttributeType::FLOAT.into(),
        ..Default::default()
    });
    g.node.push(node("Twice", "fn_call", &["y"], &["z"]));
    g.node.last_mut().unwrap().domain = "org.example".into();
    g.node.push(node("ReduceSum", "cond_sum", &["y"], &["c"]));
    let then = GraphProto {
        name: "then".into(),
        node: vec![node("Add", "then_add", &["z", "S"], &["t_out"])],
        output: vec![value("t_out", &[2, 3])],
        ..Default::default()
    };
    let els = GraphProto {
        name: "else".into(),
        node: vec![node("Identity", "else_id", &["h"], &["e_out"])],
        output: vec![value("e_out", &[2, 3])],
        ..Default::default()
    };
    let mut iff = node("If", "branch", &["c"], &["w"]);
    iff.attribute.push(graph_attr("then_branch", then));
    iff.attribute.push(graph_attr("else_branch", els));
    g.node.push(iff);
    g.output.push(value("w", &[2, 3]));
    // An optional input left empty keeps its slot.
    g.node
        .push(node("Clip", "clip", &["y", "", "x"], &["clipped"]));
    g.output.push(value("clipped", &[2, 3]));
    m
}

#[test]
fn every_field_survives_a_round_trip() {
    let original = kitchen_sink();
    let model = import_bytes(&bytes(&original), "kitchen_sink").unwrap();
    let back = ModelProto::parse_from_bytes(&to_bytes(&model).unwrap()).unwrap();
    assert_eq!(back, original);
    // And the unknown fields are really there, not just equal by accident.
    assert_eq!(back.special_fields.unknown_fields().iter().count(), 1);
    assert_eq!(
        back.graph.node[0]
            .special_fields
            .unknown_fields()
            .iter()
            .count(),
        1
    );
}

#[test]
fn captures_make_edges_and_keep_producers_before_the_if() {
    let model = import_bytes(&bytes(&kitchen_sink()), "kitchen_sink").unwrap();
    let g = &model.graph;
    let iff = g
        .op_order
        .iter()
        .copied()
        .find(|&n| g.dag[n].as_op().is_some_and(|o| o.proto.op_type == "If"))
        .unwrap();
    let mut captured: Vec<&str> = g
        .dag
        .edges_directed(iff, petgraph::Direction::Incoming)
        .filter(|e| e.weight().dst_slot.is_none())
        .map(|e| e.weight().name.as_str())
        .collect();
    captured.sort_unstable();
    assert_eq!(captured, ["S", "h", "z"]);
}

#[test]
fn export_is_deterministic() {
    let m = import_bytes(&bytes(&kitchen_sink()), "kitchen_sink").unwrap();
    assert_eq!(to_bytes(&m).unwrap(), to_bytes(&m).unwrap());
    let m2 = import_bytes(&bytes(&kitchen_sink()), "kitchen_sink").unwrap();
    assert_eq!(to_bytes(&m).unwrap(), to_bytes(&m2).unwrap());
}

#[test]
fn unsorted_preferred_order_is_repaired_topologically() {
    let mut m = import_bytes(&bytes(&tiny()), "tiny").unwrap();
    m.graph.op_order.reverse();
    let back = ModelProto::parse_from_bytes(&to_bytes(&m).unwrap()).unwrap();
    let names: Vec<&str> = back.graph.node.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["mm", "add", "relu"]);
}

#[test]
fn file_round_trip_and_external_data_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    // A model whose W lives in an external file at offset 8.
    let mut m = tiny();
    let w = m.graph.as_mut().unwrap().initializer.remove(0);
    let mut data = vec![0xAAu8; 8];
    data.extend_from_slice(&w.raw_data);
    std::fs::create_dir(dir.path().join("weights")).unwrap();
    std::fs::write(dir.path().join("weights/w.bin"), &data).unwrap();
    let mut ext = w.clone();
    ext.raw_data.clear();
    ext.data_location = onnx_protobuf::tensor_proto::DataLocation::EXTERNAL.into();
    ext.external_data = vec![
        kv("location", "weights/w.bin"),
        kv("offset", "8"),
        kv("length", "36"),
    ];
    m.graph.as_mut().unwrap().initializer.push(ext);
    let src = dir.path().join("ext.onnx");
    std::fs::write(&src, bytes(&m)).unwrap();

    // Inline export: the bytes come back in raw_data; nothing else changes.
    let model = import_path(&src).unwrap();
    let out = dir.path().join("inline.onnx");
    let report = write_path(&model, &out, &ExportOptions::default()).unwrap();
    assert!(report.external_file.is_none());
    let back = ModelProto::parse_from_bytes(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(back, tiny());

    // External export: one side file, offsets aligned, values identical after re-import.
    let out2 = dir.path().join("ext_out.onnx");
    let opts = ExportOptions {
        external_data: true,
        external_threshold: 16,
        ..ExportOptions::default()
    };
    let report = write_path(&model, &out2, &opts).unwrap();
    assert_eq!(report.external_tensors, 1);
    assert_eq!(
        report.external_file.as_deref(),
        Some(dir.path().join("ext_out.onnx.data").as_path())
    );
    let again = import_path(&out2).unwrap();
    let inline_again = ModelProto::parse_from_bytes(&to_bytes(&again).unwrap()).unwrap();
    assert_eq!(inline_again, tiny());
}

#[test]
fn no_temporary_files_are_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let model = import_bytes(&bytes(&tiny()), "tiny").unwrap();
    write_path(
        &model,
        &dir.path().join("a.onnx"),
        &ExportOptions::default(),
    )
    .unwrap();
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["a.onnx"]);
}

/// Regression: protobuf 3.4.0's `write_message_no_tag` panics on file-backed
/// streams when a bytes field is larger than the stream's buffer. A model
/// with a 256 KiB initializer written to a file exercises that path.
#[test]
fn large_initializers_export_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = tiny();
    let big: Vec<f32> = (0..=u16::MAX).map(f32::from).collect();
    m.graph
        .as_mut()
        .unwrap()
        .initializer
        .push(f32_tensor("big", &[65_536], &big));
    let model = import_bytes(&bytes(&m), "big").unwrap();
    let out = dir.path().join("big.onnx");
    write_path(&model, &out, &ExportOptions::default()).unwrap();
    assert_eq!(
        ModelProto::parse_from_bytes(&std::fs::read(&out).unwrap()).unwrap(),
        m
    );
}

#[test]
fn a_model_past_the_protobuf_limit_moves_its_tensors_out_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = tiny();
    let big: Vec<f32> = (0..200u8).map(f32::from).collect();
    m.graph
        .as_mut()
        .unwrap()
        .initializer
        .push(f32_tensor("big", &[200], &big));
    let model = import_bytes(&bytes(&m), "big").unwrap();
    let out = dir.path().join("m.onnx");
    // 800 bytes of `big` push the model past a 500-byte "limit"; W (36 bytes) stays inline.
    let opts = ExportOptions {
        external_threshold: 100,
        protobuf_limit: 500,
        ..ExportOptions::default()
    };
    let report = write_path(&model, &out, &opts).unwrap();
    assert_eq!((report.external_tensors, report.external_bytes), (1, 800));
    assert!(report.model_bytes <= 500, "{report:?}");
    let back = import_path(&out).unwrap();
    assert_eq!(
        ModelProto::parse_from_bytes(&to_bytes(&back).unwrap()).unwrap(),
        m
    );
    // When even that is not enough, nothing is written.
    let out2 = dir.path().join("n.onnx");
    let opts = ExportOptions {
        protobuf_limit: 100,
        ..opts
    };
    assert!(
        write_path(&model, &out2, &opts)
            .unwrap_err()
            .to_string()
            .contains("protobuf limit")
    );
    assert!(!out2.exists() && !dir.path().join("n.onnx.data").exists());
}

#[test]
fn external_data_with_nothing_to_move_writes_no_side_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = import_bytes(&bytes(&tiny()), "tiny").unwrap();
    let out = dir.path().join("m.onnx");
    let report = write_path(
        &model,
        &out,
        &ExportOptions {
            external_data: true,
            ..ExportOptions::default()
        },
    )
    .unwrap();
    assert_eq!((report.external_tensors, report.external_file), (0, None));
    assert!(!dir.path().join("m.onnx.data").exists());
}

#[test]
fn packed_four_bit_external_tensors_take_only_their_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = tiny();
    // Q: INT4[5] = 3 bytes at offset 0, no length; other data follows in the same file.
    std::fs::write(
        dir.path().join("d.bin"),
        [0x21u8, 0x43, 0x05, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
    )
    .unwrap();
    m.graph
        .as_mut()
        .unwrap()
        .initializer
        .push(onnx_protobuf::TensorProto {
            name: "Q".into(),
            dims: vec![5],
            data_type: 22,
            data_location: onnx_protobuf::tensor_proto::DataLocation::EXTERNAL.into(),
            external_data: vec![kv("location", "d.bin")],
            ..Default::default()
        });
    let src = dir.path().join("q.onnx");
    std::fs::write(&src, bytes(&m)).unwrap();
    let back =
        ModelProto::parse_from_bytes(&to_bytes(&import_path(&src).unwrap()).unwrap()).unwrap();
    let q = back
        .graph
        .initializer
        .iter()
        .find(|t| t.name == "Q")
        .unwrap();
    assert_eq!(q.raw_data, [0x21, 0x43, 0x05]);
}

#[test]
fn external_data_inside_a_subgraph_is_refused_not_written_broken() {
    let mut m = kitchen_sink();
    let g = m.graph.as_mut().unwrap();
    let iff = g.node.iter_mut().find(|n| n.op_type == "If").unwrap();
    let then = iff.attribute[0].g.as_mut().unwrap();
    then.initializer.push(onnx_protobuf::TensorProto {
        name: "C".into(),
        dims: vec![1],
        data_type: 1,
        data_location: onnx_protobuf::tensor_proto::DataLocation::EXTERNAL.into(),
        external_data: vec![kv("location", "c.bin")],
        ..Default::default()
    });
    let err = import_bytes(&bytes(&m), "nested").unwrap_err().to_string();
    assert!(
        err.contains("tensor `C`") && err.contains("a subgraph"),
        "{err}"
    );
}

#[test]
fn initializers_listed_as_inputs_are_defaults_not_duplicates() {
    // Dense W and sparse S are also graph inputs: overridable defaults from IR 4
    // on, constants before (IR < 4 had to declare every initializer so).
    for (ir_version, constant) in [(8, false), (3, true)] {
        let mut m = kitchen_sink();
        m.ir_version = ir_version;
        let g = m.graph.as_mut().unwrap();
        g.input.push(value("W", &[3, 3]));
        g.input.push(value("S", &[3, 3]));
        let model = import_bytes(&bytes(&m), "defaults").unwrap();
        assert_eq!(
            ModelProto::parse_from_bytes(&to_bytes(&model).unwrap()).unwrap(),
            m
        );
        let g = &model.graph;
        assert_eq!(g.initializers_are_constant, constant);
        let (w, _) = g.producers()["W"];
        assert_eq!(
            matches!(g.dag[w], laurelc::ir::Node::Initializer(_)),
            constant,
            "IR {ir_version}: {}",
            g.display_name(w)
        );
        assert_eq!(
            laurelc::analysis::constants::constant_nodes(g).contains(&w),
            constant,
            "IR {ir_version}"
        );
    }
}

#[test]
fn a_shape_probe_declares_large_weights_as_inputs() {
    let model = import_bytes(&bytes(&tiny()), "tiny").unwrap();
    let probe =
        ModelProto::parse_from_bytes(&laurelc::onnx::to_shape_probe_bytes(&model, 4).unwrap())
            .unwrap();
    let g = probe.graph.as_ref().unwrap();
    assert!(
        g.initializer.is_empty(),
        "W (9 elements) must not be carried"
    );
    let inputs: Vec<&str> = g.input.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(inputs, ["x", "W"]);
    assert_eq!(g.input[1], value("W", &[3, 3]));
    assert_eq!(g.node, tiny().graph.node);
    // Below the threshold, nothing changes.
    let same =
        ModelProto::parse_from_bytes(&laurelc::onnx::to_shape_probe_bytes(&model, 10).unwrap())
            .unwrap();
    assert_eq!(same, tiny());
}
