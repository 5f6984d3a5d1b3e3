//! Residuals inside control flow (issue 14, item 2): found in `If`
//! branches and `Loop` bodies of real `PyTorch` exports
//! (`fixtures/control_flow_torch.py`), augmented with their parameters in
//! the main graph, and fused inside the subgraphs; on tract, the augmented
//! and fused models compute what the original does (identity init) or what
//! the unfused augmented model does (random init).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use laurelc::analysis::analyse_residuals;
use laurelc::augment::{AugmentOptions, InitMode, Variant, augment_all};
use laurelc::ir::{Model, Node};
use onnx_protobuf::GraphProto;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
}

fn load(name: &str) -> Model {
    laurelc::onnx::import_path(&fixture(name)).unwrap()
}

/// (path, first block, [(residual, stream, index)]) of every subgraph.
type Scope = (String, usize, Vec<(String, usize, usize)>);

fn scopes(m: &Model) -> Vec<Scope> {
    let a = analyse_residuals(m).unwrap();
    assert!(a.all_undecided().is_empty(), "{:?}", a.all_undecided());
    a.all_subgraphs()
        .iter()
        .map(|s| {
            let rs = s
                .analysis
                .residuals
                .iter()
                .map(|r| (r.name.clone(), r.stream, r.index))
                .collect();
            (s.path.clone(), s.first_block, rs)
        })
        .collect()
}

fn scope(path: &str, first: usize, rs: &[(&str, usize, usize)]) -> Scope {
    (
        path.to_string(),
        first,
        rs.iter().map(|&(n, s, i)| (n.to_string(), s, i)).collect(),
    )
}

#[test]
fn residual_blocks_in_both_branches_of_an_if_are_found_with_their_paths() {
    let m = load("torch_if_resblocks.onnx");
    let a = analyse_residuals(&m).unwrap();
    assert!(a.residuals.is_empty(), "the main graph holds none");
    assert_eq!(a.block_count(), 4);
    assert_eq!(
        scopes(&m),
        [
            scope(
                "If `/If` then_branch",
                0,
                &[("/e16/b1/Add", 0, 0), ("/e16/b2/Add", 0, 1)]
            ),
            // Each branch is a stream of its own, numbered after the other's.
            scope(
                "If `/If` else_branch",
                2,
                &[("/e8/b1/Add", 1, 0), ("/e8/b2/Add", 1, 1)]
            ),
        ]
    );
    // Their skips are values of the branch; D and the channel axis as in a
    // main graph.
    let s = &a.subgraphs[0].analysis.residuals[0];
    assert_eq!((s.channels, s.axis), (Some(16), 1));
}

#[test]
fn nested_ifs_are_analysed_inside_their_parent_branch() {
    let m = load("torch_nested_if.onnx");
    assert_eq!(
        scopes(&m),
        [
            scope("If `/If_1` then_branch", 0, &[]),
            scope(
                "If `/If_1` then_branch > If `/If` then_branch",
                0,
                &[("/b1/Add", 0, 0)]
            ),
            scope(
                "If `/If_1` then_branch > If `/If` else_branch",
                1,
                &[("/b2/Add", 1, 0)]
            ),
            scope("If `/If_1` else_branch", 2, &[("/b3/Add", 2, 0)]),
        ]
    );
}

#[test]
fn a_loop_body_residual_skips_from_the_loop_carried_value() {
    let m = load("torch_loop_resblock.onnx");
    let a = analyse_residuals(&m).unwrap();
    let subs = a.all_subgraphs();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].path, "Loop `/Loop` body");
    // The body's inputs are (iteration, condition, carried h): the skip is h.
    let body = body_of(&m, "Loop");
    let r = &subs[0].analysis.residuals;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].skip, body.input[2].name);
    assert_eq!(r[0].channels, Some(16));
}

fn body_of(m: &Model, op_type: &str) -> GraphProto {
    let g = &m.graph;
    g.op_order
        .iter()
        .filter_map(|&n| g.dag[n].as_op())
        .find(|op| op.proto.op_type == op_type)
        .and_then(|op| {
            op.proto
                .attribute
                .iter()
                .find_map(|a| a.g.clone().into_option())
        })
        .unwrap()
}

fn augmented(name: &str, variant: Variant, init: InitMode) -> Model {
    let mut m = load(name);
    let a = analyse_residuals(&m).unwrap();
    let opts = AugmentOptions {
        variant,
        init,
        seed: 7,
        ..AugmentOptions::default()
    };
    let report = augment_all(&mut m, &a, &opts).unwrap();
    let blocks: Vec<u32> = report.blocks.iter().map(|b| b.block).collect();
    let expected: Vec<u32> = (0..u32::try_from(a.block_count()).unwrap()).collect();
    assert_eq!(blocks, expected, "{name}: one block per residual, in order");
    assert_eq!(
        report.parameters_added,
        laurel_initializers(&m).values().sum::<u64>(),
        "{name}: the report counts the parameters the model got"
    );
    m
}

/// The main graph's `laurel.*` initializers, with their element counts.
fn laurel_initializers(m: &Model) -> BTreeMap<String, u64> {
    m.graph
        .initializers
        .iter()
        .filter_map(|&n| match &m.graph.dag[n] {
            Node::Initializer(i) if i.proto.name.starts_with("laurel.") => Some((
                i.proto.name.clone(),
                i.proto
                    .dims
                    .iter()
                    .map(|&d| u64::try_from(d).unwrap())
                    .product(),
            )),
            _ => None,
        })
        .collect()
}

/// Every graph nested in `g`'s nodes, at any depth.
fn nested(g: &GraphProto, out: &mut Vec<GraphProto>) {
    for n in &g.node {
        for a in &n.attribute {
            for sub in a.g.iter().chain(&a.graphs) {
                out.push(sub.clone());
                nested(sub, out);
            }
        }
    }
}

fn subgraphs_of(m: &Model) -> Vec<GraphProto> {
    let proto = laurelc::onnx::to_proto(m).unwrap();
    let mut out = Vec::new();
    nested(proto.graph.as_ref().unwrap(), &mut out);
    out
}

#[test]
fn parameters_of_blocks_in_subgraphs_are_main_graph_initializers_read_through_outer_scope() {
    for name in [
        "torch_if_resblocks.onnx",
        "torch_nested_if.onnx",
        "torch_loop_resblock.onnx",
    ] {
        let m = augmented(name, Variant::of(true, true, false), InitMode::Identity);
        let params = laurel_initializers(&m);
        let blocks = analyse_residuals(&load(name)).unwrap().block_count();
        // RW+LR: α, β, A, B per block.
        assert_eq!(params.len(), 4 * blocks, "{name}: {params:?}");
        for sub in subgraphs_of(&m) {
            assert!(
                sub.initializer
                    .iter()
                    .all(|t| !t.name.starts_with("laurel.")),
                "{name}: a parameter stayed in a subgraph"
            );
            assert!(
                sub.input.iter().all(|v| !v.name.starts_with("laurel.")),
                "{name}: a capture was declared as a subgraph input"
            );
        }
        // The file reads back: every name a subgraph reads is produced outside.
        let bytes = laurelc::onnx::to_bytes(&m).unwrap();
        let back = laurelc::onnx::import_bytes(&bytes, name).unwrap();
        assert_eq!(laurel_initializers(&back), params);
    }
}

/// Runs `a` and `b` on tract with the given integer inputs (the rest
/// random) and asserts their outputs agree within `tol`.
fn agree_on_tract(a: &Model, b: &Model, ints: &[(&str, i64)], tol: f64) {
    let opts = laurel_runtime::LoadOptions {
        dims: [("batch".to_string(), 2), ("samples".to_string(), 512)].into(),
        ..laurel_runtime::LoadOptions::default()
    };
    let load = |m: &Model| {
        let bytes = laurelc::onnx::to_bytes(m).unwrap();
        laurel_runtime::load(laurel_runtime::ModelSource::Bytes(&bytes), &opts).unwrap()
    };
    let (ra, rb) = (load(a), load(b));
    let mut inputs = laurel_runtime::random_inputs(ra.inputs(), 11).unwrap();
    for (name, v) in ints {
        let slot = inputs.iter_mut().find(|(n, _)| n == name).unwrap();
        slot.1 = laurel_runtime::tract_onnx::prelude::tensor0(*v);
    }
    let (ya, yb) = (ra.run(inputs.clone()).unwrap(), rb.run(inputs).unwrap());
    for ((name, x), (_, y)) in ya.iter().zip(&yb) {
        let c = laurel_runtime::compare(y, x, tol, tol);
        assert_eq!(c.mismatches, 0, "{name} ({ints:?}): max abs {}", c.max_abs);
    }
}

#[test]
fn augmentation_inside_if_branches_preserves_the_function_at_init_on_tract() {
    let plain = load("torch_if_resblocks.onnx");
    for variant in [
        Variant::of(true, false, false),
        Variant::of(true, true, false),
        Variant::of(true, true, true),
    ] {
        let m = augmented("torch_if_resblocks.onnx", variant, InitMode::Identity);
        for sr in [16000, 8000] {
            agree_on_tract(&plain, &m, &[("sr", sr)], 1e-6);
        }
    }
}

fn op_counts(m: &Model) -> BTreeMap<String, usize> {
    let mut counts = m.graph.op_counts();
    for sub in subgraphs_of(m) {
        for n in &sub.node {
            *counts.entry(n.op_type.clone()).or_default() += 1;
        }
    }
    counts
}

#[test]
fn fusion_reaches_into_subgraphs_and_keeps_one_scale_per_branch_output() {
    let opts = laurelc::fuse::FuseOptions::default();
    let mut plain = load("torch_if_resblocks.onnx");
    laurelc::fuse::fuse_model(&mut plain, &opts).unwrap();
    let m = augmented(
        "torch_if_resblocks.onnx",
        Variant::of(true, false, false),
        InitMode::Random,
    );
    let mut fused = m.clone();
    let summary = laurelc::fuse::fuse_model(&mut fused, &opts).unwrap();
    assert!(!summary.hit_limit, "{}", summary.stop);
    // The first block of each branch folded; the last keeps its sum and the
    // one scale that cannot leave the branch (below).
    let verdicts: Vec<(u32, String)> = summary
        .blocks
        .iter()
        .map(|b| (b.block, b.verdict()))
        .collect();
    let left = "2 of 9 ops left".to_string();
    assert_eq!(
        verdicts,
        [
            (0, "folded".to_string()),
            (1, left.clone()),
            (2, "folded".to_string()),
            (3, left)
        ]
    );
    assert!(laurel_initializers(&fused).is_empty());
    // The branch's last sum is the branch's output: its β stays one `Mul`
    // (the two branches may scale differently, so it cannot leave the If).
    let (p, f) = (op_counts(&plain), op_counts(&fused));
    let mut extra: BTreeMap<String, i64> = f
        .iter()
        .map(|(op, &n)| (op.clone(), i64::try_from(n).unwrap()))
        .collect();
    for (op, &n) in &p {
        *extra.entry(op.clone()).or_default() -= i64::try_from(n).unwrap();
    }
    extra.retain(|_, n| *n != 0);
    assert_eq!(
        extra,
        BTreeMap::from([("Mul".to_string(), 2)]),
        "{p:?} vs {f:?}"
    );
    for sr in [16000, 8000] {
        agree_on_tract(&m, &fused, &[("sr", sr)], 1e-5);
    }
}
