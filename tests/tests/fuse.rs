//! `laurelc fuse` end to end: every fixture and every public real model,
//! augmented with each variant at random initialisation, then fused: the
//! fused model computes what the augmented one did (`check` at rtol 1e-4,
//! atol 1e-5 on tract). RW fuses to the baseline's op counts; a model with
//! the same math but not made by laurelc fuses too; scales that may not
//! move (negative through Relu, per-channel before a norm, values other
//! outputs read) stay.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use laurel_runtime::check::check_models;
use laurelc::augment::{AugmentOptions, InitMode, Variant};
use laurelc::fuse::{FuseOptions, FuseSummary, Target, fuse_model};
use laurelc::pipeline::{PipelineOptions, compile_file};

/// Augments with the variant `name` (default parameters), at random values.
fn augment(input: &Path, out: &Path, name: &str, seed: u64) {
    let opts = PipelineOptions {
        augment: AugmentOptions {
            variant: name.parse().unwrap(),
            init: InitMode::Random,
            seed,
            ..AugmentOptions::default()
        },
        ..PipelineOptions::default()
    };
    compile_file(input, out, &opts).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
}

fn fuse(input: &Path, out: &Path, window_ops: usize) -> FuseSummary {
    fuse_for(input, out, window_ops, Target::Onnx)
}

fn fuse_for(input: &Path, out: &Path, window_ops: usize, target: Target) -> FuseSummary {
    let mut model = laurelc::onnx::import_path(input).unwrap();
    let opts = FuseOptions {
        window_ops,
        target,
        ..FuseOptions::default()
    };
    let summary =
        fuse_model(&mut model, &opts).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
    laurelc::onnx::write_path(&model, out, &laurelc::onnx::ExportOptions::default()).unwrap();
    summary
}

fn same_function(a: &Path, b: &Path, run: &serde_json::Value) {
    let report = check_models(a, b, &laurel_tests::check_options(run))
        .unwrap_or_else(|e| panic!("{}: {e}", b.display()));
    assert!(
        report.passed,
        "{} differs from {}: {report:?}",
        b.display(),
        a.display()
    );
}

fn fixture(name: &str) -> PathBuf {
    laurel_tests::fixtures_dir().join(format!("{name}.onnx"))
}

fn histogram(path: &Path) -> BTreeMap<String, usize> {
    laurelc::onnx::import_path(path).unwrap().graph.op_counts()
}

fn variant_keeps_the_function(variant: &str) {
    let dir = tempfile::tempdir().unwrap();
    for (name, path, run) in laurel_tests::augmentable_models() {
        let aug = dir.path().join(format!("{name}.aug.onnx"));
        augment(&path, &aug, variant, 11);
        for target in [Target::Onnx, Target::Tract] {
            let fused = dir.path().join(format!("{name}.{target:?}.onnx"));
            let summary = fuse_for(&aug, &fused, laurelc::fuse::DEFAULT_WINDOW_OPS, target);
            // RW must saturate; the other variants may stop at a limit (their
            // sums of several scaled terms have many factorings), and are still
            // correct: that is what the check below shows.
            if variant == "rw" {
                assert!(!summary.hit_limit, "{name} {variant}: {}", summary.stop);
            }
            assert!(
                summary.ops_after <= summary.ops_before,
                "{name} {variant} {target:?}"
            );
            // Only the tract target may use laurel-runtime's op.
            let custom = histogram(&fused)
                .keys()
                .any(|op| op.starts_with("ai.laurel:"));
            assert!(target == Target::Tract || !custom, "{name} {variant}");
            same_function(&aug, &fused, &run);
        }
    }
}

macro_rules! variant_tests {
    ($($test:ident => $variant:expr,)*) => {$(
        #[test]
        fn $test() {
            variant_keeps_the_function($variant);
        }
    )*};
}

variant_tests! {
    fused_rw_keeps_the_function => "rw",
    fused_lr_keeps_the_function => "lr",
    fused_pa_keeps_the_function => "pa",
    fused_rw_lr_keeps_the_function => "rw+lr",
    fused_rw_pa_keeps_the_function => "rw+pa",
    fused_lr_pa_keeps_the_function => "lr+pa",
    fused_rw_lr_pa_keeps_the_function => "rw+lr+pa",
}

#[test]
fn rw_fuses_to_the_baseline_op_counts() {
    let dir = tempfile::tempdir().unwrap();
    let minilm = laurel_tests::require("models").join("paraphrase_minilm_l3.onnx");
    for (name, path) in [
        ("tiny_resnet", fixture("tiny_resnet")),
        ("tiny_preln_transformer", fixture("tiny_preln_transformer")),
        ("tiny_postln_bert", fixture("tiny_postln_bert")),
        ("paraphrase_minilm_l3", minilm),
    ] {
        let aug = dir.path().join(format!("{name}.aug.onnx"));
        let fused = dir.path().join(format!("{name}.fused.onnx"));
        let fused_base = dir.path().join(format!("{name}.base.onnx"));
        augment(&path, &aug, "rw", 5);
        let summary = fuse(&aug, &fused, laurelc::fuse::DEFAULT_WINDOW_OPS);
        // --explain's per-block outcome: every RW block folded away.
        assert!(!summary.blocks.is_empty(), "{name}");
        for b in &summary.blocks {
            assert_eq!(b.verdict(), "folded", "{name}: {b:?}");
        }
        fuse(&path, &fused_base, laurelc::fuse::DEFAULT_WINDOW_OPS);
        let (base, got, base_fused) = (histogram(&path), histogram(&fused), histogram(&fused_base));
        // Fusion may also simplify the baseline's own ops (a GELU's ½ into the
        // next weights; Constant ops into initializers), so the augmented
        // model must fuse to exactly what the baseline fuses to, and never
        // have more of any op than the baseline.
        assert_eq!(got, base_fused, "{name}: fused RW vs fused baseline");
        for (op, n) in &got {
            assert!(
                base.get(op).is_some_and(|b| n <= b),
                "{name}: {n} × {op}, baseline {base:?}"
            );
        }
        same_function(&aug, &fused, &serde_json::Value::Null);
    }
    // Tiny ResNet fuses to the baseline itself; the tiny pre-LN transformer
    // to the baseline less one `Mul`: its second layer's attention scale
    // `(q·kᵀ)·c` goes through the product of two computed operands into
    // q's projection weights (`scale-into-weights-through-homogeneous`).
    assert_eq!(
        histogram(&dir.path().join("tiny_resnet.fused.onnx")),
        histogram(&fixture("tiny_resnet")),
    );
    let mut want = histogram(&fixture("tiny_preln_transformer"));
    *want.get_mut("Mul").unwrap() -= 1;
    want.retain(|_, n| *n > 0);
    assert_eq!(
        histogram(&dir.path().join("tiny_preln_transformer.fused.onnx")),
        want
    );
}

#[test]
fn rw_folds_away_in_an_ir_3_model_whose_weights_are_fills() {
    // light_resnet50 (IR 3, caffe2): every initializer is also declared as a
    // graph input, and every weight is a `ConstantOfShape` filled with 0.02.
    // RW's scales fold into those fills (the scaled fill is a new fill).
    let dir = tempfile::tempdir().unwrap();
    let path = laurel_tests::require("models").join("light_resnet50.onnx");
    // Its softmax of equal logits is the same for any scale: the logits
    // (equal to each other, not to a constant) become an output to compare.
    let mut model = laurelc::onnx::import_path(&path).unwrap();
    assert!(model.header.ir_version < 4 && model.graph.initializers_are_constant);
    let mut logits = laurelc::ir::tensor_input(&onnx_protobuf::TensorProto {
        name: "r174".into(),
        dims: vec![1, 1000],
        data_type: 1,
        ..Default::default()
    });
    logits.doc_string = "Gemm output, before the softmax".into();
    model.graph.header.output.push(logits);
    let base = dir.path().join("base.onnx");
    laurelc::onnx::write_path(&model, &base, &laurelc::onnx::ExportOptions::default()).unwrap();
    let (aug, fused) = (dir.path().join("aug.onnx"), dir.path().join("fused.onnx"));
    augment(&base, &aug, "rw", 5);
    let summary = fuse(&aug, &fused, laurelc::fuse::DEFAULT_WINDOW_OPS);
    assert_eq!(summary.blocks.len(), 12);
    for b in &summary.blocks {
        assert_eq!(b.verdict(), "folded", "{b:?}");
    }
    let (before, after) = (histogram(&base), histogram(&fused));
    for op in ["Mul", "Sub", "Sigmoid", "Div"] {
        assert_eq!(count(&after, op), 0, "{op}: {after:?}");
    }
    // The 12 augmented residual `Sum`s are `Add`s now; nothing else is added.
    assert_eq!(
        count(&after, "Add") + count(&after, "Sum"),
        count(&before, "Sum"),
        "{after:?}"
    );
    for (op, n) in &after {
        let b = if op == "Add" {
            count(&before, "Sum")
        } else {
            count(&before, op)
        };
        assert!(*n <= b, "{n} × {op}, baseline {before:?}");
    }
    let m = laurelc::onnx::import_path(&fused).unwrap();
    assert_eq!(m.header.ir_version, 3);
    same_function(&aug, &fused, &serde_json::Value::Null);
}

#[test]
fn windows_give_the_whole_graph_result_on_a_small_model() {
    let dir = tempfile::tempdir().unwrap();
    let aug = dir.path().join("aug.onnx");
    augment(&fixture("tiny_preln_transformer"), &aug, "rw", 7);
    let whole = dir.path().join("whole.onnx");
    let windowed = dir.path().join("windowed.onnx");
    let s = fuse(&aug, &whole, 0);
    assert_eq!(s.windows, 1);
    let s = fuse(&aug, &windowed, 12);
    assert!(s.windows > 1, "{}", s.windows);
    assert_eq!(histogram(&whole), histogram(&windowed));
    same_function(&aug, &windowed, &serde_json::Value::Null);
}

fn count(h: &BTreeMap<String, usize>, op: &str) -> usize {
    h.get(op).copied().unwrap_or(0)
}

#[test]
fn a_model_not_made_by_laurelc_fuses_too() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("pytorch_laurel_rw");
    let out = dir.path().join("fused.onnx");
    fuse(&input, &out, laurelc::fuse::DEFAULT_WINDOW_OPS);
    assert_eq!(count(&histogram(&input), "Mul"), 6);
    assert_eq!(count(&histogram(&out), "Mul"), 0, "{:?}", histogram(&out));
    same_function(&input, &out, &serde_json::Value::Null);
    // Decomposed LayerNorm and RMSNorm absorb the scale through Pow, Sqrt, Reciprocal.
    let input = fixture("decomposed_norm_rw");
    let out = dir.path().join("norm.onnx");
    let s = fuse(&input, &out, laurelc::fuse::DEFAULT_WINDOW_OPS);
    assert!(
        count(&histogram(&out), "Mul") + 8 <= count(&histogram(&input), "Mul"),
        "{s:?}"
    );
    assert!(
        s.fired.contains_key("pow-of-scaled") && s.fired.contains_key("sqrt-of-scaled"),
        "{:?}",
        s.fired
    );
    same_function(&input, &out, &serde_json::Value::Null);
}

#[test]
fn scales_that_may_not_move_stay() {
    let dir = tempfile::tempdir().unwrap();
    // β = −0.7 before a Relu and α = −0.6 after one: two sign flips remain.
    let input = fixture("neg_fuse_negative_scale");
    let out = dir.path().join("neg.onnx");
    fuse(&input, &out, laurelc::fuse::DEFAULT_WINDOW_OPS);
    assert_eq!(count(&histogram(&out), "Mul"), 2, "{:?}", histogram(&out));
    same_function(&input, &out, &serde_json::Value::Null);
    // Per-channel and per-row scales before norms over other axes: untouched.
    let input = fixture("neg_fuse_norm_axis");
    let out = dir.path().join("axis.onnx");
    fuse(&input, &out, laurelc::fuse::DEFAULT_WINDOW_OPS);
    assert_eq!(histogram(&out), histogram(&input));
    same_function(&input, &out, &serde_json::Value::Null);
    // Values other outputs read keep their values (check compares every output).
    let input = fixture("neg_fuse_shared_consumer");
    let out = dir.path().join("shared.onnx");
    fuse(&input, &out, laurelc::fuse::DEFAULT_WINDOW_OPS);
    assert!(count(&histogram(&out), "Mul") >= 1);
    same_function(&input, &out, &serde_json::Value::Null);
}

#[test]
fn a_wide_low_rank_map_folds_into_one_conv_with_its_skip() {
    // tiny ResNet has 8 channels: at rank 16, A·B (8×8) is smaller than A
    // and B, so each augmented block's (x·A)·B + x becomes x·(I + A·B): one
    // 1×1 Conv where the baseline had the identity skip, and no extra Add.
    let dir = tempfile::tempdir().unwrap();
    let base = fixture("tiny_resnet");
    let aug = dir.path().join("lr.onnx");
    let fused = dir.path().join("lr.fused.onnx");
    let opts = PipelineOptions {
        augment: AugmentOptions {
            variant: Variant::lr(std::num::NonZeroU64::new(16).unwrap()),
            init: InitMode::Random,
            seed: 3,
            ..AugmentOptions::default()
        },
        ..PipelineOptions::default()
    };
    compile_file(&base, &aug, &opts).unwrap();
    let summary = fuse(&aug, &fused, laurelc::fuse::DEFAULT_WINDOW_OPS);
    assert_eq!(summary.fired.get("reassociate-channel-maps"), Some(&2));
    let (want, got) = (histogram(&base), histogram(&fused));
    // Two augmented blocks (identity skips; the projection block is left alone).
    assert_eq!(got["Conv"], want["Conv"] + 2, "{got:?}");
    assert_eq!(got["Add"], want["Add"], "{got:?}");
    assert_eq!(got.get("Mul"), None, "{got:?}");
    assert_eq!(
        got.values().sum::<usize>(),
        want.values().sum::<usize>() + 2
    );
    assert_eq!(summary.blocks.len(), 2);
    for b in &summary.blocks {
        assert!(b.verdict().starts_with("merged"), "{b:?}");
        assert_eq!(b.merged_weights.len(), 1, "{b:?}");
    }
    same_function(&aug, &fused, &serde_json::Value::Null);
}

#[test]
fn pa_own_state_terms_join_the_skip_and_rw_adds_nothing_to_pa() {
    // PA's x + … + γ₀·x: `combine-like-terms` makes it (1 + γ₀)·x, one Add
    // fewer; with RW too, 1 + γ₀ joins β on the stream, so RW+PA fuses to no
    // more ops than PA alone.
    let dir = tempfile::tempdir().unwrap();
    let base = fixture("tiny_preln_transformer");
    let mut fused_ops = Vec::new();
    for variant in ["pa", "rw+pa"] {
        let aug = dir.path().join(format!("{variant}.onnx"));
        let fused = dir.path().join(format!("{variant}.fused.onnx"));
        augment(&base, &aug, variant, 3);
        let summary = fuse(&aug, &fused, laurelc::fuse::DEFAULT_WINDOW_OPS);
        assert!(
            summary
                .fired
                .get("combine-like-terms")
                .is_some_and(|&n| n > 0),
            "{variant}: {:?}",
            summary.fired
        );
        let (before, after) = (histogram(&aug), histogram(&fused));
        assert!(
            count(&after, "Add") < count(&before, "Add"),
            "{variant}: {after:?}"
        );
        same_function(&aug, &fused, &serde_json::Value::Null);
        fused_ops.push(after.values().sum::<usize>());
    }
    assert!(fused_ops[1] <= fused_ops[0], "PA, RW+PA: {fused_ops:?}");
}

#[test]
fn for_tract_pa_sums_become_laurel_residual_ops() {
    // tiny ResNet with PA: each augmented block's f + x + Σ γ_j·s_j becomes
    // one LaurelResidual in place of the baseline's residual Add, or folds
    // its scales into the weights and is the baseline's Add again (the first
    // block: its own-state γ₀ joins the skip, which `factor-sum-into-linear`
    // takes out of the sum into the next convolutions).
    let dir = tempfile::tempdir().unwrap();
    let base = fixture("tiny_resnet");
    let aug = dir.path().join("pa.onnx");
    augment(&base, &aug, "pa", 4);
    let onnx = dir.path().join("pa.onnx.onnx");
    let tract = dir.path().join("pa.tract.onnx");
    fuse_for(&aug, &onnx, laurelc::fuse::DEFAULT_WINDOW_OPS, Target::Onnx);
    let summary = fuse_for(
        &aug,
        &tract,
        laurelc::fuse::DEFAULT_WINDOW_OPS,
        Target::Tract,
    );
    assert!(
        summary
            .fired
            .get("sum-to-laurel-residual")
            .is_some_and(|&n| n > 0)
    );
    let verdicts: Vec<String> = summary
        .blocks
        .iter()
        .map(laurelc::fuse::blocks::BlockOutcome::verdict)
        .collect();
    assert!(
        verdicts.iter().all(|v| v == "fused op" || v == "folded")
            && verdicts.iter().any(|v| v == "fused op"),
        "{verdicts:?}"
    );
    let fused_ops = verdicts.iter().filter(|v| *v == "fused op").count();
    let (want, got) = (histogram(&base), histogram(&tract));
    assert_eq!(
        got.get("ai.laurel:LaurelResidual"),
        Some(&fused_ops),
        "{got:?}"
    );
    assert_eq!(got["Add"] + fused_ops, want["Add"], "{got:?}");
    assert_eq!(got.get("Mul"), None, "{got:?}");
    assert_eq!(got.values().sum::<usize>(), want.values().sum::<usize>());
    assert!(histogram(&onnx).values().sum::<usize>() > want.values().sum::<usize>());
    let model = laurelc::onnx::import_path(&tract).unwrap();
    assert!(
        model
            .header
            .opset_import
            .iter()
            .any(|o| o.domain == "ai.laurel" && o.version == 1)
    );
    same_function(&aug, &tract, &serde_json::Value::Null);
}

#[test]
fn sizes_change_which_merges_pay_and_keep_the_model_symbolic() {
    // MiniLM with RW+LR+PA: priced at one token, no merge of maps pays (a
    // copy between maps costs more than the `MatMul` it saves); at 8 × 128
    // tokens, merging a branch's `B` into the next `MatMul` (a concatenation
    // of inputs) also saves writing and adding the two products, and is
    // taken. Either way the function is kept and the inputs stay symbolic.
    let dir = tempfile::tempdir().unwrap();
    let minilm = laurel_tests::require("models").join("paraphrase_minilm_l3.onnx");
    let aug = dir.path().join("m.onnx");
    augment(&minilm, &aug, "rw+lr+pa", 11);
    let fuse_sized = |out: &Path, sizes: &[(&str, u64)]| {
        let mut model = laurelc::onnx::import_path(&aug).unwrap();
        let opts = FuseOptions {
            sizes: sizes.iter().map(|&(k, v)| (k.to_owned(), v)).collect(),
            ..FuseOptions::default()
        };
        let summary = fuse_model(&mut model, &opts).unwrap();
        laurelc::onnx::write_path(&model, out, &laurelc::onnx::ExportOptions::default()).unwrap();
        (model, summary)
    };
    let (one, many) = (dir.path().join("one.onnx"), dir.path().join("many.onnx"));
    let (_, summary) = fuse_sized(&one, &[]);
    // --explain: the blocks whose maps were merged with other weights say so
    // (not "folded": their values are still computed).
    for b in &summary.blocks {
        assert!(b.verdict().contains("merged"), "{b:?}");
    }
    let (model, _) = fuse_sized(&many, &[("batch_size", 8), ("sequence_length", 128)]);
    let concats = |p: &Path| count(&histogram(p), "Concat");
    assert_eq!(concats(&one), concats(&aug), "{:?}", histogram(&one));
    assert!(
        concats(&many) > concats(&one),
        "{} vs {}",
        concats(&many),
        concats(&one)
    );
    assert!(count(&histogram(&many), "MatMul") < count(&histogram(&one), "MatMul"));
    // No slice of a merged map anywhere (the model's own 2 stay).
    for p in [&one, &many] {
        assert_eq!(
            count(&histogram(p), "Slice"),
            count(&histogram(&aug), "Slice")
        );
    }
    let symbolic = model.graph.inputs.iter().any(|&n| {
        matches!(&model.graph.dag[n], laurelc::ir::Node::Input(v)
            if format!("{:?}", v.type_).contains("sequence_length"))
    });
    assert!(symbolic, "the fused model's inputs stay symbolic");
    same_function(&aug, &one, &serde_json::Value::Null);
    same_function(&aug, &many, &serde_json::Value::Null);
}

/// Regression: RW+LR+PA on a `LAuReL` model exported from `PyTorch`
/// (`fixtures/torch_gpt_rwlr_op16.onnx`, which has RW and LR already) grew
/// one window's e-graph in one iteration far past the node limit, and
/// extraction refused it (6.5 GB of cost sets over its 1 GiB budget): fuse
/// failed with exit 2. Saturation now runs again with fewer iterations.
#[test]
fn a_window_that_outgrows_the_extraction_budget_is_saturated_again_with_fewer_iterations() {
    let dir = tempfile::tempdir().unwrap();
    let aug = dir.path().join("aug.onnx");
    augment(&fixture("torch_gpt_rwlr_op16"), &aug, "rw+lr+pa", 3);
    let fused = dir.path().join("fused.onnx");
    let summary = fuse(&aug, &fused, laurelc::fuse::DEFAULT_WINDOW_OPS);
    assert!(summary.hit_limit, "{}", summary.stop);
    same_function(&aug, &fused, &serde_json::Value::Null);
}
