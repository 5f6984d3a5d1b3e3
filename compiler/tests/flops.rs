//! FLOPs estimates (`laurelc::analysis::flops`) against values computed by
//! hand from the fixtures' architectures (fixtures/generate.py), and the
//! FLOPs a `LAuReL` LR branch adds.

#![allow(clippy::unwrap_used, clippy::float_cmp)]

mod common;

use std::path::PathBuf;

use laurelc::analysis::flops::{ModelFlops, estimate_model_flops};
use laurelc::augment::{AugmentOptions, Variant, augment_model};

fn fixture(name: &str) -> laurelc::Model {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(format!("{name}.onnx"));
    laurelc::onnx::import_path(&path).unwrap()
}

/// The FLOPs of `name` and of its LR augmentation of rank `rank`, and the
/// number of blocks augmented.
fn with_lr(name: &str, rank: u64) -> (ModelFlops, ModelFlops, usize) {
    let mut model = fixture(name);
    let base = estimate_model_flops(&model).unwrap();
    let analysis = laurelc::analysis::analyse_residuals(&model).unwrap();
    let opts = AugmentOptions {
        variant: Variant::lr(std::num::NonZeroU64::new(rank).unwrap()),
        ..AugmentOptions::default()
    };
    let report = augment_model(&mut model, &analysis.residuals, &opts).unwrap();
    let aug = estimate_model_flops(&model).unwrap();
    (base, aug, report.blocks.len())
}

/// `tiny_resnet`: input [1, 3, 16, 16]; every 3×3 conv has pad 1; multiply-add = 2.
///
/// | op | output | weight per output (`C_in` · k · k) | FLOPs = 2 · out · w |
/// |---|---|---|---|
/// | stem/conv 3→8 | 8·16·16 = 2048 | 3·9 = 27 | 110 592 |
/// | block1/conv1, conv2, block2/conv1, conv2 (8→8) | 2048 | 8·9 = 72 | 4 × 294 912 = 1 179 648 |
/// | block3/conv1 8→16, stride 2 | 16·8·8 = 1024 | 8·9 = 72 | 147 456 |
/// | block3/conv2 16→16 | 1024 | 16·9 = 144 | 294 912 |
/// | block3/shortcut 1×1 8→16, stride 2 | 1024 | 8 | 16 384 |
/// | head/fc Gemm [1,16]·[16,10]ᵀ | 10 | K = 16 | 320 |
///
/// Total 110 592 + 1 179 648 + 147 456 + 294 912 + 16 384 + 320 = 1 749 312,
/// over 9 ops (8 Conv, 1 Gemm).
const TINY_RESNET_FLOPS: f64 = 1_749_312.0;

#[test]
fn tiny_resnet_flops_match_the_hand_count() {
    let f = estimate_model_flops(&fixture("tiny_resnet")).unwrap();
    assert_eq!(
        f,
        ModelFlops {
            total: TINY_RESNET_FLOPS,
            ops: 9,
            unknown_ops: 0,
        }
    );
}

/// `tiny_preln_transformer`: x [1, 8, 16] (seq 8, D 16, FF 32), 2 layers, each:
/// - q, k, v, o projections: 4 × 2·(8·16)·16 = 16 384;
/// - scores [1,8,16]·[1,16,8]: 2·(8·8)·16 = 2048;
/// - context [1,8,8]·[1,8,16]: 2·(8·16)·8 = 2048;
/// - fc1 [1,8,16]·[16,32]: 2·(8·32)·16 = 8192; fc2 [1,8,32]·[32,16]: 2·(8·16)·32 = 8192.
///
/// Per layer 36 864, total 73 728 over 2 × 8 = 16 `MatMul`s.
const TINY_PRELN_FLOPS: f64 = 73_728.0;

#[test]
fn tiny_preln_transformer_flops_match_the_hand_count() {
    let f = estimate_model_flops(&fixture("tiny_preln_transformer")).unwrap();
    assert_eq!(
        f,
        ModelFlops {
            total: TINY_PRELN_FLOPS,
            ops: 16,
            unknown_ops: 0,
        }
    );
}

/// LR adds `(x·A)·B` per block: two products of `positions · D · r`
/// multiply-adds each, so `2 · 2 · r · D · positions` FLOPs.
///
/// `tiny_resnet`, r = 16: the two identity blocks (block1/add, block2/add; the
/// projection block3 is not augmented) have D = 8 channels at 16·16 = 256
/// positions, as 1×1 convs 8→16→8: 2·2·16·8·256 = 131 072 per block,
/// 262 144 in all (r > D is allowed: the factors are just not low-rank).
#[test]
fn lr_on_tiny_resnet_adds_two_products_per_block() {
    let (base, aug, blocks) = with_lr("tiny_resnet", 16);
    assert_eq!(blocks, 2);
    assert_eq!(base.total, TINY_RESNET_FLOPS);
    assert_eq!(aug.total - base.total, 2.0 * 131_072.0);
    assert_eq!(aug.ops, base.ops + 2 * 2);
    assert_eq!(aug.unknown_ops, 0);
    // The benchmark target's fraction: 262 144 / 1 749 312.
    let fraction = (aug.total - base.total) / base.total;
    assert!((fraction - 0.149_855_5).abs() < 1e-6, "{fraction}");
}

/// `tiny_preln_transformer`, r = 4: four residual adds (two per layer), each
/// with D = 16 at 8 positions, as `MatMul`s [1,8,16]·[16,4] then [1,8,4]·[4,16]:
/// 2·2·4·16·8 = 2048 per block, 8192 in all.
#[test]
fn lr_on_a_transformer_adds_two_matmuls_per_block() {
    let (base, aug, blocks) = with_lr("tiny_preln_transformer", 4);
    assert_eq!(blocks, 4);
    assert_eq!(base.total, TINY_PRELN_FLOPS);
    assert_eq!(aug.total - base.total, 4.0 * 2048.0);
    assert_eq!(aug.ops, base.ops + 4 * 2);
}

/// The report's FLOPs are those of the ops augmentation built, less the
/// `Add` each block replaced, counted by hand here:
/// - LR: the two products above, and one more `Add` (`(f + x) + lr`): per
///   block `2·2·r·D·positions + D·positions`;
/// - RW (raw): `α·f`, `β·x`: `2·D·positions`;
/// - RW (softmax): the same, and α, β computed from the logits (`Sub`,
///   `Sigmoid`, `Mul` by 2 on scalars): 6 more.
#[test]
fn the_augmentation_report_counts_the_flops_of_the_ops_it_built() {
    let report = |name: &str, variant: Variant| {
        let mut model = fixture(name);
        let analysis = laurelc::analysis::analyse_residuals(&model).unwrap();
        let opts = AugmentOptions {
            variant,
            ..AugmentOptions::default()
        };
        augment_model(&mut model, &analysis.residuals, &opts).unwrap()
    };
    let r = report(
        "tiny_resnet",
        Variant::lr(std::num::NonZeroU64::new(16).unwrap()),
    );
    let per_block = 131_072 + 8 * 256;
    assert_eq!(
        r.blocks.iter().map(|b| b.flops).collect::<Vec<_>>(),
        [per_block, per_block]
    );
    assert_eq!(r.flops_added, 2 * per_block);
    let elements = 8 * 16; // tiny_preln_transformer: 8 positions, D = 16
    let raw = report(
        "tiny_preln_transformer",
        Variant::rw(laurelc::augment::RwParam::Raw),
    );
    assert_eq!(raw.flops_added, 4 * 2 * elements);
    let softmax = report(
        "tiny_preln_transformer",
        Variant::rw(laurelc::augment::RwParam::Softmax),
    );
    assert_eq!(softmax.flops_added, 4 * (2 * elements + 6));
}

#[test]
fn inspect_summary_carries_the_flops() {
    let s = laurelc::inspect::summarize(&fixture("tiny_resnet"));
    assert_eq!(s.flops.map(|f| f.total), Some(TINY_RESNET_FLOPS));
    assert_eq!(
        laurelc::inspect::flops_line(&s),
        "FLOPs (matmul/conv, symbolic dims = 1): 1.75 M"
    );
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["flops"]["total"], serde_json::json!(TINY_RESNET_FLOPS));
    assert!(
        laurelc::inspect::summarize_without_flops(&fixture("tiny_resnet"))
            .flops
            .is_none()
    );
}

/// A model tract cannot load still gets a summary, without FLOPs.
#[test]
fn inspect_summary_survives_failed_shape_inference() {
    let mut m = common::tiny();
    let g = m.graph.as_mut().unwrap();
    // Transpose with a float `perm`: tract refuses to build the node with
    // every loader strategy, so shape inference fails outright.
    let mut t = common::node("Transpose", "t", &["s"], &["y"]);
    t.attribute.push(onnx_protobuf::AttributeProto {
        name: "perm".into(),
        type_: onnx_protobuf::attribute_proto::AttributeType::FLOAT.into(),
        f: 1.5,
        ..Default::default()
    });
    g.node[2] = t;
    let model = laurelc::onnx::import_bytes(&common::bytes(&m), "bad perm").unwrap();
    assert!(estimate_model_flops(&model).is_err());
    let s = laurelc::inspect::summarize(&model);
    assert_eq!(s.node_count, 3);
    assert!(s.flops.is_none());
    assert_eq!(
        laurelc::inspect::flops_line(&s),
        "FLOPs (matmul/conv, symbolic dims = 1): unavailable (shape inference failed)"
    );
}
