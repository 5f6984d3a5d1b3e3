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

/// The op types of `m`, in order.
fn op_types(m: &ModelProto) -> Vec<&str> {
    m.graph.node.iter().map(|n| n.op_type.as_str()).collect()
}

/// How many ops of type `op` `m` has.
fn count_ops(m: &ModelProto, op: &str) -> usize {
    m.graph.node.iter().filter(|n| n.op_type == op).count()
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
        // or from p (Sigmoid, Mul for α; Neg, Sigmoid, Mul for β), and its two scalar products;
        // and the model's second attention scale goes into q's weights.
        assert_eq!(
            ops(&aug).len() - ops(&fused).len(),
            4 * (removed_per_block + 2) + 1,
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
    let shape = i64_tensor("shape", &[2], &[256, 256]);
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

/// Fuses `m` (written to `dir`) for the default target and checks the result on
/// tract against it.
fn fuse_and_check(dir: &Path, name: &str, m: &ModelProto) -> ModelProto {
    fuse_for(dir, name, m, "onnx")
}

#[test]
fn initializers_declared_as_inputs_are_weights_before_ir_4_only() {
    // y = (x · W) · c, with W and c declared as graph inputs too.
    let dir = tempfile::tempdir().unwrap();
    let g = GraphProto {
        node: vec![
            node("MatMul", "mm", &["x", "W"], &["h"]),
            node("Mul", "scale", &["h", "c"], &["y"]),
        ],
        initializer: vec![
            f32_tensor("W", &[3, 3], &[1., -2., 3., 0.5, 0., 1., 2., 2., -1.]),
            f32_tensor("c", &[], &[3.0]),
        ],
        input: vec![value("x", &[2, 3]), value("W", &[3, 3]), value("c", &[])],
        output: vec![value("y", &[2, 3])],
        ..Default::default()
    };
    for (ir_version, folds) in [(3, true), (8, false)] {
        let mut m = model(g.clone());
        m.ir_version = ir_version;
        let fused = fuse_and_check(dir.path(), &format!("ir{ir_version}"), &m);
        let ops = op_types(&fused);
        // Before IR 4 nothing can override W or c: c folds into W. From IR 4
        // on they are defaults a caller may replace, so the Mul stays.
        assert_eq!(
            ops,
            if folds {
                vec!["MatMul"]
            } else {
                vec!["MatMul", "Mul"]
            },
            "IR {ir_version}"
        );
        // IR < 4 requires every initializer to be declared as an input, and
        // a declaration without its initializer would be a new required input.
        let inputs: Vec<&str> = fused.graph.input.iter().map(|v| v.name.as_str()).collect();
        let inits: Vec<&str> = fused
            .graph
            .initializer
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        for t in &inits {
            assert!(
                ir_version >= 4 || inputs.contains(t),
                "{t} is not an input: {inputs:?}"
            );
        }
        for i in &inputs {
            assert!(
                *i == "x" || inits.contains(i),
                "{i} has no initializer: {inits:?}"
            );
        }
        assert!(inputs.contains(&"x"));
        // From IR 4 on, W and c are part of the interface: they stay.
        if ir_version >= 4 {
            assert_eq!(inputs, ["x", "W", "c"]);
        }
    }
}

#[test]
fn a_scalar_folds_into_a_constant_of_shape_weight_as_a_new_fill() {
    // y = (x · ConstantOfShape([64, 64]; 0.5)) · 3: the weight (16 KiB) is too
    // large to fold into an initializer, but 3 · 0.5 fills it just as well.
    let dir = tempfile::tempdir().unwrap();
    let shape = i64_tensor("shape", &[2], &[64, 64]);
    let mut fill = node("ConstantOfShape", "fill", &["shape"], &["W"]);
    fill.attribute.push(onnx_protobuf::AttributeProto {
        name: "value".into(),
        type_: onnx_protobuf::attribute_proto::AttributeType::TENSOR.into(),
        t: Some(f32_tensor("", &[1], &[0.5])).into(),
        ..Default::default()
    });
    let g = GraphProto {
        node: vec![
            fill,
            node("MatMul", "mm", &["x", "W"], &["h"]),
            node("Mul", "scale", &["h", "c"], &["y"]),
        ],
        initializer: vec![shape, f32_tensor("c", &[], &[3.0])],
        input: vec![value("x", &[2, 64])],
        output: vec![value("y", &[2, 64])],
        ..Default::default()
    };
    let fused = fuse_and_check(dir.path(), "fill", &model(g));
    let ops = op_types(&fused);
    assert_eq!(ops, ["ConstantOfShape", "MatMul"]);
    let value = &fused.graph.node[0].attribute[0];
    assert_eq!(value.name, "value");
    assert_eq!(value.t.raw_data, 1.5f32.to_le_bytes());
    assert!(
        fused.graph.initializer.iter().all(|t| t.dims.len() <= 1),
        "only the shape is stored: {:?}",
        fused
            .graph
            .initializer
            .iter()
            .map(|t| &t.dims)
            .collect::<Vec<_>>()
    );
}

/// `y = gelu(x · W₁) · W₂ · 3`, the GELU written as exporters write it, the
/// `½` last (`half_last`) or first.
fn gelu_model(half_last: bool, divisor: f32) -> ModelProto {
    let mut nodes = vec![
        node("MatMul", "mm1", &["x", "W1"], &["h"]),
        node("Div", "div", &["h", "root2"], &["s"]),
        node("Erf", "erf", &["s"], &["e"]),
        node("Add", "add", &["e", "one"], &["a"]),
    ];
    if half_last {
        nodes.push(node("Mul", "mul", &["h", "a"], &["ha"]));
        nodes.push(node("Mul", "half", &["ha", "c_half"], &["g"]));
    } else {
        nodes.push(node("Mul", "half", &["c_half", "h"], &["hh"]));
        nodes.push(node("Mul", "mul", &["hh", "a"], &["g"]));
    }
    nodes.push(node("MatMul", "mm2", &["g", "W2"], &["z"]));
    nodes.push(node("Mul", "scale", &["z", "three"], &["y"]));
    let w: Vec<f32> = (0u8..9).map(|i| (f32::from(i) - 4.0) * 0.3).collect();
    model(GraphProto {
        node: nodes,
        initializer: vec![
            f32_tensor("W1", &[3, 3], &w),
            f32_tensor("W2", &[3, 3], &w.iter().rev().copied().collect::<Vec<_>>()),
            f32_tensor("root2", &[], &[divisor]),
            f32_tensor("one", &[], &[1.0]),
            f32_tensor("c_half", &[], &[0.5]),
            f32_tensor("three", &[], &[3.0]),
        ],
        input: vec![value("x", &[2, 3])],
        output: vec![value("y", &[2, 3])],
        ..Default::default()
    })
}

#[test]
fn an_exact_gelu_keeps_its_half_for_the_runtime_kernel() {
    // tract and onnxruntime fuse x·½·(1 + erf(x/√2)) into one GELU kernel
    // only when the ½ is there; fusion must not fold it into W₂ (the 3 after
    // W₂ still folds in).
    let dir = tempfile::tempdir().unwrap();
    for half_last in [true, false] {
        let m = gelu_model(half_last, std::f32::consts::SQRT_2);
        let fused = fuse_and_check(dir.path(), &format!("gelu-{half_last}"), &m);
        let ops = op_types(&fused);
        assert_eq!(
            ops,
            ["MatMul", "Div", "Erf", "Add", "Mul", "Mul", "MatMul"],
            "half last: {half_last}"
        );
    }
    // Not a GELU (x / 1.5): the ½ is an ordinary scale and folds into W₂.
    let fused = fuse_and_check(dir.path(), "not-gelu", &gelu_model(true, 1.5));
    let muls = count_ops(&fused, "Mul");
    assert_eq!(muls, 1, "{:?}", fused.graph.node);
}

/// `y = Relu((x·W + b) + x + (x·A)·B)`: a branch with a bias, the skip, and a
/// low-rank term with `A: [32, r]`, `B: [r, 32]` (thin enough that `x·(A·B)`
/// is no cheaper).
fn low_rank_block(rank: u16) -> ModelProto {
    let vals = |n: u16, s: f32| -> Vec<f32> {
        (0..n)
            .map(|i| f32::from((i * 7 + 3) % 11) * s - 0.5)
            .collect()
    };
    let r = i64::from(rank);
    model(GraphProto {
        node: vec![
            node("MatMul", "mm", &["x", "W"], &["h"]),
            node("Add", "bias", &["h", "b"], &["f"]),
            node("Add", "skip", &["f", "x"], &["s"]),
            node("MatMul", "down", &["x", "A"], &["t"]),
            node("MatMul", "up", &["t", "B"], &["u"]),
            node("Add", "lr", &["s", "u"], &["z"]),
            node("Relu", "relu", &["z"], &["y"]),
        ],
        initializer: vec![
            f32_tensor("W", &[32, 32], &vals(1024, 0.01)),
            f32_tensor("b", &[32], &vals(32, 0.05)),
            f32_tensor("A", &[32, r], &vals(32 * rank, 0.007)),
            f32_tensor("B", &[r, 32], &vals(32 * rank, 0.003)),
        ],
        input: vec![value("x", &[3, 32])],
        output: vec![value("y", &[3, 32])],
        ..Default::default()
    })
}

/// Fuses `m` for `target` and checks the result on tract against it.
fn fuse_for(dir: &Path, name: &str, m: &ModelProto, target: &str) -> ModelProto {
    let p = dir.join(format!("{name}.onnx"));
    std::fs::write(&p, bytes(m)).unwrap();
    let out = dir.join(format!("{name}.{target}.onnx"));
    let o = laurelc(&[
        "fuse",
        p.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--target",
        target,
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr).to_string() + &String::from_utf8_lossy(&o.stdout)
    );
    let o = laurelc(&["check", p.to_str().unwrap(), out.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr).to_string() + &String::from_utf8_lossy(&o.stdout)
    );
    ModelProto::parse_from_bytes(&std::fs::read(&out).unwrap()).unwrap()
}

#[test]
fn a_low_rank_term_goes_to_laurel_residual_for_tract() {
    let dir = tempfile::tempdir().unwrap();
    // For tract, the sum (x·W + b) + x + t·B becomes one LaurelResidual that
    // computes t·B itself; the bias stays an Add, for tract's product epilogue.
    let fused = fuse_for(dir.path(), "lr4", &low_rank_block(4), "tract");
    let ops = op_types(&fused);
    assert_eq!(ops, ["MatMul", "Add", "MatMul", "LaurelResidual", "Relu"]);
    let lr = &fused.graph.node[3];
    assert_eq!(lr.domain, "ai.laurel");
    assert_eq!(lr.input, ["f", "x", "t", "B"]);
    let attrs: Vec<(&str, i64)> = lr
        .attribute
        .iter()
        .map(|a| (a.name.as_str(), a.i))
        .collect();
    assert_eq!(attrs, [("low_rank", 1)]);
    assert!(
        fused
            .opset_import
            .iter()
            .any(|o| o.domain == "ai.laurel" && o.version == 1)
    );
    // For onnx, standard ops only.
    let fused = fuse_for(dir.path(), "lr4", &low_rank_block(4), "onnx");
    assert!(fused.graph.node.iter().all(|n| n.domain.is_empty()));
    // At rank 16 the skip folds into x·(I + A·B), a square product: not thin
    // (4·r > d), it stays a MatMul.
    let fused = fuse_for(dir.path(), "lr16", &low_rank_block(16), "tract");
    let ops = op_types(&fused);
    assert_eq!(ops, ["MatMul", "Add", "MatMul", "Add", "Relu"]);
}

// ---------------------------------------------------------------------------------
// The tract target's low-rank pass on its own (`fuse::low_rank`).

/// `t_j = x·A_j`, `u_j = t_j·B_j` for `j < products` (x: [3, 32], A: [32, 4],
/// B: [4, 32]), then `sum`; the model imports `ai.laurel`.
fn products_model(
    products: usize,
    sum: Vec<onnx_protobuf::NodeProto>,
    outputs: &[&str],
) -> ModelProto {
    let vals = |n: u16, s: f32, k: u16| -> Vec<f32> {
        (0..n)
            .map(|i| f32::from((i * 7 + 3 * k) % 11) * s - 0.5)
            .collect()
    };
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    for j in 0..products {
        let k = u16::try_from(j).unwrap();
        nodes.push(node(
            "MatMul",
            &format!("a{j}"),
            &["x", &format!("A{j}")],
            &[&format!("t{j}")],
        ));
        nodes.push(node(
            "MatMul",
            &format!("b{j}"),
            &[&format!("t{j}"), &format!("B{j}")],
            &[&format!("u{j}")],
        ));
        inits.push(f32_tensor(&format!("A{j}"), &[32, 4], &vals(128, 0.02, k)));
        inits.push(f32_tensor(
            &format!("B{j}"),
            &[4, 32],
            &vals(128, 0.03, k + 1),
        ));
    }
    nodes.extend(sum);
    inits.push(f32_tensor("bias", &[32], &vals(32, 0.1, 5)));
    let mut m = model(GraphProto {
        node: nodes,
        initializer: inits,
        input: vec![value("x", &[3, 32])],
        output: outputs.iter().map(|o| value(o, &[3, 32])).collect(),
        ..Default::default()
    });
    m.opset_import.push(onnx_protobuf::OperatorSetIdProto {
        domain: "ai.laurel".into(),
        version: 1,
        ..Default::default()
    });
    m
}

fn laurel_node(inputs: &[&str], output: &str, coefficients: &[f32]) -> onnx_protobuf::NodeProto {
    let mut n = node("LaurelResidual", "lr", inputs, &[output]);
    n.domain = "ai.laurel".into();
    if !coefficients.is_empty() {
        n.attribute.push(onnx_protobuf::AttributeProto {
            name: "coefficients".into(),
            type_: onnx_protobuf::attribute_proto::AttributeType::FLOATS.into(),
            floats: coefficients.to_vec(),
            ..Default::default()
        });
    }
    n
}

/// Runs the pass on `m`; checks on tract that the result computes what `m` does;
/// returns the products taken and the result.
fn low_rank_pass(m: &ModelProto) -> (usize, ModelProto) {
    let mut model = laurelc::onnx::import::import_bytes(&bytes(m), "test").unwrap();
    let taken = laurelc::fuse::low_rank::low_rank_residuals(&mut model.graph);
    let out = laurelc::onnx::export::to_proto(&model).unwrap();
    let opts = laurel_runtime::LoadOptions::default();
    let before =
        laurel_runtime::load(laurel_runtime::ModelSource::Bytes(&bytes(m)), &opts).unwrap();
    let after =
        laurel_runtime::load(laurel_runtime::ModelSource::Bytes(&bytes(&out)), &opts).unwrap();
    let inputs = laurel_runtime::random_inputs(before.inputs(), 3).unwrap();
    let (a, b) = (
        before.run(inputs.clone()).unwrap(),
        after.run(inputs).unwrap(),
    );
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        let c = laurel_runtime::compare(y, x, 1e-5, 1e-6);
        assert_eq!(c.mismatches, 0, "{name}: max abs {}", c.max_abs);
    }
    (taken, out)
}

#[test]
fn the_low_rank_pass_takes_every_product_of_a_sum() {
    // (x + u0) + u1: one LaurelResidual(x, t0, B0, t1, B1), low_rank 2.
    let m = products_model(
        2,
        vec![
            node("Add", "s0", &["x", "u0"], &["s"]),
            node("Add", "s1", &["s", "u1"], &["y"]),
        ],
        &["y"],
    );
    let (taken, out) = low_rank_pass(&m);
    assert_eq!(taken, 2);
    assert_eq!(op_types(&out), ["MatMul", "MatMul", "LaurelResidual"]);
    let lr = out.graph.node.last().unwrap();
    assert_eq!(lr.input, ["x", "t0", "B0", "t1", "B1"]);
    assert_eq!(lr.output, ["y"]);
    // A LaurelResidual with coefficients: the products' coefficients follow them.
    let m = products_model(
        2,
        vec![laurel_node(&["u0", "x", "u1"], "y", &[2.0, 0.5, -1.0])],
        &["y"],
    );
    let (taken, out) = low_rank_pass(&m);
    assert_eq!(taken, 2);
    let lr = out.graph.node.last().unwrap();
    assert_eq!(lr.input, ["x", "t0", "B0", "t1", "B1"]);
    let attrs: Vec<(&str, Vec<f32>, i64)> = lr
        .attribute
        .iter()
        .map(|a| (a.name.as_str(), a.floats.clone(), a.i))
        .collect();
    assert_eq!(
        attrs,
        [
            ("coefficients", vec![0.5, 2.0, -1.0], 0),
            ("low_rank", vec![], 2)
        ]
    );
}

#[test]
fn the_low_rank_pass_leaves_what_is_not_a_sum_of_its_own() {
    let unchanged = |m: &ModelProto, why: &str| {
        let (taken, out) = low_rank_pass(m);
        assert_eq!(taken, 0, "{why}");
        assert_eq!(op_types(&out), op_types(m), "{why}");
    };
    // The product read twice.
    unchanged(
        &products_model(
            1,
            vec![
                node("Add", "s", &["x", "u0"], &["y"]),
                node("Relu", "r", &["u0"], &["z"]),
            ],
            &["y", "z"],
        ),
        "read twice",
    );
    // The product a graph output.
    unchanged(
        &products_model(
            1,
            vec![node("Add", "s", &["x", "u0"], &["y"])],
            &["y", "u0"],
        ),
        "graph output",
    );
    // A bias Add (an initializer operand) is left to tract's matmul epilogue.
    unchanged(
        &products_model(1, vec![node("Add", "s", &["u0", "bias"], &["y"])], &["y"]),
        "bias",
    );
    // A LaurelResidual that already has low-rank pairs.
    let mut lr = laurel_node(&["x", "u0"], "y", &[]);
    lr.attribute.push(onnx_protobuf::AttributeProto {
        name: "low_rank".into(),
        type_: onnx_protobuf::attribute_proto::AttributeType::INT.into(),
        i: 0,
        ..Default::default()
    });
    unchanged(&products_model(1, vec![lr], &["y"]), "already low-rank");
    // Products only, no term.
    unchanged(
        &products_model(2, vec![node("Add", "s", &["u0", "u1"], &["y"])], &["y"]),
        "no term",
    );
}

#[test]
fn an_exact_gelu_may_scale_by_a_reciprocal_and_must_own_its_intermediates() {
    let dir = tempfile::tempdir().unwrap();
    // x · (1/√2) in place of x / √2: still a GELU, the ½ stays.
    let mut m = gelu_model(true, std::f32::consts::SQRT_2);
    let g = m.graph.as_mut().unwrap();
    g.node[1] = node("Mul", "div", &["inv_root2", "h"], &["s"]);
    g.initializer.push(f32_tensor(
        "inv_root2",
        &[],
        &[std::f32::consts::FRAC_1_SQRT_2],
    ));
    let fused = fuse_and_check(dir.path(), "gelu-mul", &m);
    let muls = count_ops(&fused, "Mul");
    assert_eq!(muls, 3, "{:?}", fused.graph.node);
    // x·a also a graph output: not the runtime's pattern any more, the ½ folds.
    let mut m = gelu_model(true, std::f32::consts::SQRT_2);
    m.graph.as_mut().unwrap().output.push(value("ha", &[2, 3]));
    let fused = fuse_and_check(dir.path(), "gelu-shared", &m);
    let muls = count_ops(&fused, "Mul");
    assert_eq!(muls, 1, "{:?}", fused.graph.node);
}
