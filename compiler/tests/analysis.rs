//! Residual analysis on every committed fixture, negatives included, and on
//! small graphs built here for the edge cases.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

use common::*;
use laurelc::analysis::{ResidualKind, analyse_residuals};
use onnx_protobuf::GraphProto;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(format!("{name}.onnx"))
}

/// (add name, kind, skip, D, axis, stream, index) of a residual.
type Row = (
    String,
    ResidualKind,
    String,
    Option<usize>,
    usize,
    usize,
    usize,
);

/// The [`Row`] of each residual of a fixture.
fn residuals(name: &str) -> Vec<Row> {
    let path = fixture(name);
    let model = laurelc::onnx::import_path(&path).unwrap();
    let a = analyse_residuals(&model).unwrap();
    a.residuals
        .into_iter()
        .map(|r| {
            (
                r.name, r.kind, r.skip, r.channels, r.axis, r.stream, r.index,
            )
        })
        .collect()
}

fn row(
    name: &str,
    kind: ResidualKind,
    skip: &str,
    d: usize,
    axis: usize,
    stream: usize,
    index: usize,
) -> Row {
    (name.into(), kind, skip.into(), Some(d), axis, stream, index)
}

use ResidualKind::{Identity, Projection};

#[test]
fn tiny_resnet_has_two_identity_blocks_and_a_projection_on_one_stream() {
    assert_eq!(
        residuals("tiny_resnet"),
        [
            row("block1/add", Identity, "stem/relu", 8, 1, 0, 0),
            row("block2/add", Identity, "block1/relu_out", 8, 1, 0, 1),
            row("block3/add", Projection, "block3/shortcut/bn", 16, 1, 0, 2),
        ]
    );
}

#[test]
fn preln_transformer_residuals_chain_directly() {
    assert_eq!(
        residuals("tiny_preln_transformer"),
        [
            row("layer0/residual1", Identity, "x", 16, 2, 0, 0),
            row(
                "layer0/residual2",
                Identity,
                "layer0/residual1",
                16,
                2,
                0,
                1
            ),
            row(
                "layer1/residual1",
                Identity,
                "layer0/residual2",
                16,
                2,
                0,
                2
            ),
            row(
                "layer1/residual2",
                Identity,
                "layer1/residual1",
                16,
                2,
                0,
                3
            ),
        ]
    );
}

#[test]
fn postln_bert_chains_through_layernorm_and_skips_the_mask_add() {
    assert_eq!(
        residuals("tiny_postln_bert"),
        [
            row("attn/residual", Identity, "hidden", 16, 2, 0, 0),
            row("ffn/residual", Identity, "attn/ln", 16, 2, 0, 1),
        ]
    );
}

#[test]
fn mobilenetv2_inverted_residual_reads_from_a_graph_input() {
    assert_eq!(
        residuals("mobilenetv2_block"),
        [row("residual_add", Identity, "input", 8, 1, 0, 0)]
    );
}

#[test]
fn negative_fixtures_have_no_residuals() {
    for name in [
        "neg_bias_add",
        "neg_attention_mask_add",
        "neg_gelu_tanh_add",
    ] {
        assert_eq!(residuals(name), [], "{name}");
    }
}

/// Issue 14: an attention bias computed once from the embeddings and added to
/// every layer's scores is an ancestor of layer 1's scores, with their
/// shape; that add feeds a `Softmax`, so it is logits, not a residual. The
/// four real residuals stay.
#[test]
fn a_shared_attention_bias_is_not_a_residual() {
    assert_eq!(
        residuals("trap_attention_bias"),
        [
            row(
                "/layers.0/Add_2",
                Identity,
                "/embed/Add_output_0",
                16,
                2,
                0,
                0
            ),
            row(
                "/layers.0/Add_3",
                Identity,
                "/layers.0/Add_2_output_0",
                16,
                2,
                0,
                1
            ),
            row(
                "/layers.1/Add_2",
                Identity,
                "/layers.0/Add_3_output_0",
                16,
                2,
                0,
                2
            ),
            row(
                "/layers.1/Add_3",
                Identity,
                "/layers.1/Add_2_output_0",
                16,
                2,
                0,
                3
            ),
        ]
    );
}

/// Issue 14: the gate sums `Gemm(x_t) + Gemm(h_{t−1})` of unrolled LSTM
/// cells fork from the sequence like projection shortcuts; `x_t` is a
/// `Gather` of it, so none is one.
#[test]
fn unrolled_lstm_gate_sums_are_not_projection_shortcuts() {
    assert_eq!(residuals("trap_lstm_cells"), []);
}

/// U-Net long skips of equal shapes, nested, are identity residuals.
#[test]
fn unet_long_skips_stay_residuals() {
    assert_eq!(
        residuals("unet_add_skips"),
        [
            row("/Add", Identity, "/e2/e2.1/Relu_output_0", 16, 1, 0, 0),
            row("/Add_1", Identity, "/e1/e1.1/Relu_output_0", 8, 1, 1, 0),
        ]
    );
}

/// (add, RW's two weights, LR's add and rank) of each residual's `LAuReL` form.
fn laurel_forms(name: &str) -> Vec<(String, String)> {
    let model = laurelc::onnx::import_path(&fixture(name)).unwrap();
    analyse_residuals(&model)
        .unwrap()
        .residuals
        .into_iter()
        .map(|r| {
            let form = r.laurel.map(|l| {
                let lr = l.low_rank.map(|t| format!(" + {} r={:?}", t.add, t.rank));
                format!(
                    "{:?}·f + {:?}·x{}",
                    l.branch_weight,
                    l.skip_weight,
                    lr.unwrap_or_default()
                )
            });
            (r.name, form.unwrap_or_default())
        })
        .collect()
}

/// A `LAuReL` model exported from `PyTorch` (`fixtures/laurel_torch.py`):
/// RW's `a·f + b·x` is a residual of the values the scalars scale, on one
/// stream, and LR's `+ B(A(x))` is its low-rank term, not a projection
/// shortcut of its own.
#[test]
fn laurel_blocks_written_in_pytorch_are_residuals_with_their_form() {
    let plain = residuals("torch_gpt_plain_op16");
    let rw = residuals("torch_gpt_rw_op16");
    assert_eq!(rw.len(), 8);
    // The same blocks on one stream, in order, as the plain model's.
    let place = |r: &[Row]| {
        r.iter()
            .map(|x| (x.0.clone(), x.1, x.3, x.5, x.6))
            .collect::<Vec<_>>()
    };
    assert_eq!(place(&rw), place(&plain));
    let forms = laurel_forms("torch_gpt_rw_op16");
    assert_eq!(
        forms[0],
        (
            "/blocks.0/res1/Add".into(),
            "Some(\"blocks.0.res1.a\")·f + Some(\"blocks.0.res1.b\")·x".into()
        )
    );
    assert!(forms.iter().all(|(_, f)| !f.is_empty()), "{forms:?}");
    assert!(
        laurel_forms("torch_gpt_plain_op16")
            .iter()
            .all(|(_, f)| f.is_empty())
    );
    let lr = laurel_forms("torch_gpt_rwlr_op17");
    assert_eq!(lr.len(), 8, "{lr:?}");
    assert_eq!(
        lr[1],
        (
            "/blocks.0/res2/Add".into(),
            "Some(\"blocks.0.res2.a\")·f + Some(\"blocks.0.res2.b\")·x + /blocks.0/res2/Add_1 r=Some(4)".into()
        )
    );
    // ResNet: LR on the identity shortcut only; the projection block stays RW.
    assert_eq!(
        laurel_forms("torch_resnet_rwlr_op16"),
        [
            (
                "/layer1/res/Add".into(),
                "Some(\"layer1.res.a\")·f + Some(\"layer1.res.b\")·x + /layer1/res/Add_1 r=Some(2)"
                    .into()
            ),
            (
                "/layer2/res/Add".into(),
                "Some(\"layer2.res.a\")·f + Some(\"layer2.res.b\")·x".into()
            ),
        ]
    );
    assert_eq!(
        residuals("torch_resnet_rwlr_op16")
            .iter()
            .map(|r| (r.1, r.5, r.6))
            .collect::<Vec<_>>(),
        [(Identity, 0, 0), (Projection, 0, 1)]
    );
}

fn analyse(graph: GraphProto) -> Vec<(String, ResidualKind)> {
    let bytes = bytes(&model(graph));
    let m = laurelc::onnx::import_bytes(&bytes, "test").unwrap();
    let a = analyse_residuals(&m).unwrap();
    a.residuals.into_iter().map(|r| (r.name, r.kind)).collect()
}

fn w(name: &str) -> onnx_protobuf::TensorProto {
    f32_tensor(name, &[4, 4], &[0.5; 16])
}

#[test]
fn an_add_of_two_unrelated_computed_values_is_not_residual() {
    // Add(x, y): both graph inputs, each an ancestor of nothing.
    let g = GraphProto {
        node: vec![node("Add", "add", &["x", "y"], &["z"])],
        input: vec![value("x", &[2, 4]), value("y", &[2, 4])],
        output: vec![value("z", &[2, 4])],
        ..Default::default()
    };
    assert_eq!(analyse(g), []);
    // Add(x·W, y·V): both branches parametric but they share no fork.
    let g = GraphProto {
        node: vec![
            node("MatMul", "mx", &["x", "W"], &["a"]),
            node("MatMul", "my", &["y", "V"], &["b"]),
            node("Add", "add", &["a", "b"], &["z"]),
        ],
        initializer: vec![w("W"), w("V")],
        input: vec![value("x", &[2, 4]), value("y", &[2, 4])],
        output: vec![value("z", &[2, 4])],
        ..Default::default()
    };
    assert_eq!(analyse(g), []);
}

#[test]
fn identity_needs_a_parametric_op_and_equal_shapes() {
    // x + Relu(x): no parametric op on the branch.
    let g = GraphProto {
        node: vec![
            node("Relu", "r", &["x"], &["h"]),
            node("Add", "add", &["x", "h"], &["z"]),
        ],
        input: vec![value("x", &[2, 4])],
        output: vec![value("z", &[2, 4])],
        ..Default::default()
    };
    assert_eq!(analyse(g), []);
    // x + x·W with x [2,4], W [4,4]: a residual; the operand order does not matter.
    for (a, b) in [("x", "h"), ("h", "x")] {
        let g = GraphProto {
            node: vec![
                node("MatMul", "mm", &["x", "W"], &["h"]),
                node("Add", "add", &[a, b], &["z"]),
            ],
            initializer: vec![w("W")],
            input: vec![value("x", &[2, 4])],
            output: vec![value("z", &[2, 4])],
            ..Default::default()
        };
        assert_eq!(analyse(g), [("add".to_string(), Identity)]);
    }
    // x [1,4] + x·W [1,4] broadcast against a [3,4] operand: x + Tile(x·W) has unequal shapes.
    let g = GraphProto {
        node: vec![
            node("MatMul", "mm", &["x", "W"], &["h"]),
            node("Expand", "ex", &["h", "shape"], &["hb"]),
            node("Add", "add", &["x", "hb"], &["z"]),
        ],
        initializer: vec![w("W"), i64_tensor("shape", &[2], &[3, 4])],
        input: vec![value("x", &[1, 4])],
        output: vec![value("z", &[3, 4])],
        ..Default::default()
    };
    assert_eq!(analyse(g), []);
}

#[test]
fn a_path_only_through_shape_does_not_make_an_ancestor() {
    // m = MatMul(Reshape(ones, Shape(x)), W) depends on x's shape only: x + m is not residual.
    let g = GraphProto {
        node: vec![
            node("Shape", "shape", &["x"], &["s"]),
            node("ConstantOfShape", "ones", &["s"], &["o"]),
            node("MatMul", "mm", &["o", "W"], &["m"]),
            node("Relu", "relu", &["y"], &["r"]),
            node("Add", "mix", &["m", "r"], &["m2"]),
            node("Add", "add", &["x", "m2"], &["z"]),
        ],
        initializer: vec![w("W")],
        input: vec![value("x", &[2, 4]), value("y", &[2, 4])],
        output: vec![value("z", &[2, 4])],
        ..Default::default()
    };
    assert_eq!(analyse(g), []);
}

/// Two pre-LN-style blocks `h = x + x·W` whose second skip is the first
/// output passed through `glue` ops; returns each block's (stream, index).
fn two_blocks(
    glue: Vec<onnx_protobuf::NodeProto>,
    extra_inputs: Vec<onnx_protobuf::ValueInfoProto>,
) -> Vec<(usize, usize)> {
    let mut nodes = vec![
        node("MatMul", "mm0", &["x", "W"], &["f0"]),
        node("Add", "add0", &["x", "f0"], &["h0"]),
    ];
    nodes.extend(glue);
    nodes.push(node("MatMul", "mm1", &["s1", "W"], &["f1"]));
    nodes.push(node("Add", "add1", &["s1", "f1"], &["h1"]));
    let mut input = vec![value("x", &[2, 4])];
    input.extend(extra_inputs);
    let g = GraphProto {
        node: nodes,
        initializer: vec![w("W"), i64_tensor("two_four", &[2], &[2, 4])],
        input,
        output: vec![value("h1", &[2, 4])],
        ..Default::default()
    };
    let bytes = bytes(&model(g));
    let m = laurelc::onnx::import_bytes(&bytes, "test").unwrap();
    let a = analyse_residuals(&m).unwrap();
    a.residuals.iter().map(|r| (r.stream, r.index)).collect()
}

#[test]
fn streams_continue_through_masks_and_shape_only_reads() {
    // s1 = h0 · mask, with the mask a graph input (a padding mask).
    let mask = two_blocks(
        vec![node("Mul", "pad", &["h0", "mask"], &["s1"])],
        vec![value("mask", &[2, 4])],
    );
    assert_eq!(mask, [(0, 0), (0, 1)]);
    // s1 = Reshape(h0, Shape(x)): x is read for its shape only.
    let reshape = two_blocks(
        vec![
            node("Shape", "shape", &["x"], &["sx"]),
            node("Reshape", "reshape", &["h0", "sx"], &["s1"]),
        ],
        vec![],
    );
    assert_eq!(reshape, [(0, 0), (0, 1)]);
    // s1 = h0 · V: a parametric op between blocks starts a new stream.
    let projected = two_blocks(vec![node("MatMul", "proj", &["h0", "W"], &["s1"])], vec![]);
    assert_eq!(projected, [(0, 0), (1, 0)]);
}
