//! `LAuReL` augmentation end to end: every fixture and every public real model,
//! RW (all three parametrisations), LR, PA (h the identity and low rank),
//! RW+LR, RW+PA, LR+PA and RW+LR+PA at r = 4, PA window 3. At identity
//! initialisation the augmented model computes what the original did
//! (`check` at rtol 1e-4, atol 1e-5 on tract); at random initialisation it
//! does not; parameter counts follow the paper's formulas.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use laurel_runtime::check::check_models;
use laurelc::augment::{AugmentOptions, InitMode, RwParam, Variant};
use laurelc::pipeline::{PipelineOptions, compile_file};

fn augment(input: &Path, out: &Path, augment: AugmentOptions) -> laurelc::augment::AugmentReport {
    let opts = PipelineOptions {
        augment,
        ..PipelineOptions::default()
    };
    compile_file(input, out, &opts)
        .unwrap_or_else(|e| panic!("{}: {e}", input.display()))
        .augment
        .unwrap()
}

/// The variant `name` with the CLI's parameters: RW's parametrisation, LR's
/// rank, PA's window and the rank of its h (0: the identity).
fn variant(name: &str, rw_param: RwParam, rank: u64, pa_window: usize, pa_rank: u64) -> Variant {
    let v: Variant = name.parse().unwrap();
    let v = v
        .with_rw_param(rw_param)
        .with_rank(std::num::NonZeroU64::new(rank).unwrap());
    v.with_pa(laurelc::augment::Pa {
        window: std::num::NonZeroUsize::new(pa_window).unwrap(),
        h: std::num::NonZeroU64::new(pa_rank),
    })
}

fn same_function(a: &Path, b: &Path, run: &serde_json::Value) -> bool {
    let report = check_models(a, b, &laurel_tests::check_options(run))
        .unwrap_or_else(|e| panic!("{}: {e}", b.display()));
    report.passed
}

/// Every model with its manifest `run` entry (fixtures have none).
fn models() -> Vec<(String, PathBuf, serde_json::Value)> {
    laurel_tests::augmentable_models()
}

#[test]
fn identity_initialisation_preserves_the_function() {
    let dir = tempfile::tempdir().unwrap();
    // (variant, RW parametrisation, PA's h rank)
    let variants = [
        ("rw", RwParam::Softmax, 0),
        ("rw", RwParam::Sigmoid, 0),
        ("rw", RwParam::Raw, 0),
        ("rw", RwParam::Vector, 0),
        ("lr", RwParam::Softmax, 0),
        ("pa", RwParam::Softmax, 0),
        ("pa", RwParam::Softmax, 2),
        ("rw+lr", RwParam::Softmax, 0),
        ("rw+pa", RwParam::Sigmoid, 0),
        ("rw+pa", RwParam::Raw, 2),
        ("lr+pa", RwParam::Softmax, 0),
        ("lr+pa", RwParam::Softmax, 2),
        ("rw+lr+pa", RwParam::Softmax, 0),
        ("rw+lr+pa", RwParam::Vector, 0),
    ];
    for (name, path, run) in models() {
        for (name_of, rw_param, pa_rank) in variants {
            let out = dir
                .path()
                .join(format!("{name}-{name_of}-{rw_param:?}-{pa_rank}.onnx"));
            let opts = AugmentOptions {
                variant: variant(name_of, rw_param, 4, 3, pa_rank),
                include_projection: true,
                ..AugmentOptions::default()
            };
            let report = augment(&path, &out, opts);
            assert!(!report.blocks.is_empty(), "{name}: nothing augmented");
            assert!(
                same_function(&path, &out, &run),
                "{name} {name_of} {rw_param:?} pa-rank {pa_rank}: the function changed"
            );
        }
    }
}

#[test]
fn random_initialisation_changes_the_function() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = laurel_tests::fixtures_dir();
    let soft = RwParam::Softmax;
    for (name_of, rw_param, pa_rank) in [
        ("rw", soft, 0),
        ("rw", RwParam::Vector, 0),
        ("lr", soft, 0),
        ("pa", soft, 0),
        ("pa", soft, 2),
        ("rw+lr", soft, 0),
        ("rw+pa", soft, 0),
        ("lr+pa", soft, 2),
        ("rw+lr+pa", soft, 0),
    ] {
        for name in ["tiny_resnet", "tiny_preln_transformer"] {
            let path = fixtures.join(format!("{name}.onnx"));
            let out = dir
                .path()
                .join(format!("{name}-{name_of}-{rw_param:?}-{pa_rank}.onnx"));
            augment(
                &path,
                &out,
                AugmentOptions {
                    variant: variant(name_of, rw_param, 4, 3, pa_rank),
                    init: InitMode::Random,
                    seed: 7,
                    ..AugmentOptions::default()
                },
            );
            assert!(
                !same_function(&path, &out, &serde_json::Value::Null),
                "{name} {name_of} {rw_param:?} pa-rank {pa_rank}: random init changed nothing"
            );
        }
    }
}

#[test]
fn parameter_counts_follow_the_formulas() {
    let dir = tempfile::tempdir().unwrap();
    let path = laurel_tests::fixtures_dir().join("tiny_resnet.onnx");
    let out = dir.path().join("o.onnx");
    // tiny_resnet: 2 identity blocks at D = 8, one projection block at D = 16.
    let count = |name: &str, rw_param, rank, include_projection| {
        let r = augment(
            &path,
            &out,
            AugmentOptions {
                variant: variant(name, rw_param, rank, 3, 0),
                include_projection,
                ..AugmentOptions::default()
            },
        );
        (r.blocks.len(), r.parameters_added)
    };
    assert_eq!(count("rw", RwParam::Softmax, 4, false), (2, 2 * 2));
    assert_eq!(count("rw", RwParam::Raw, 4, false), (2, 2 * 2));
    assert_eq!(count("rw", RwParam::Sigmoid, 4, false), (2, 2));
    // Vector RW: α and β of length D, 2D per block.
    assert_eq!(count("rw", RwParam::Vector, 4, false), (2, 2 * (2 * 8)));
    assert_eq!(
        count("rw", RwParam::Vector, 4, true),
        (3, 2 * (2 * 8) + 2 * 16)
    );
    // LR: 2·r·D per block.
    assert_eq!(
        count("lr", RwParam::Softmax, 4, false),
        (2, 2 * (2 * 4 * 8))
    );
    assert_eq!(
        count("lr", RwParam::Softmax, 3, true),
        (3, 2 * (2 * 3 * 8) + 2 * 3 * 16)
    );
    // And the initializers in the written file are exactly those.
    let model = laurelc::onnx::import_path(&out).unwrap();
    let mut names: Vec<String> = model
        .graph
        .initializers
        .iter()
        .filter_map(|&n| match &model.graph.dag[n] {
            laurelc::ir::Node::Initializer(i) if i.proto.name.starts_with("laurel.") => {
                Some(format!("{}{:?}", i.proto.name, i.proto.dims))
            }
            _ => None,
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "laurel.0.A[3, 8, 1, 1]",
            "laurel.0.B[8, 3, 1, 1]",
            "laurel.1.A[3, 8, 1, 1]",
            "laurel.1.B[8, 3, 1, 1]",
            "laurel.2.A[3, 16, 1, 1]",
            "laurel.2.B[16, 3, 1, 1]",
        ]
    );
}

#[test]
fn pa_and_combined_parameter_counts_follow_the_formulas() {
    let dir = tempfile::tempdir().unwrap();
    let path = laurel_tests::fixtures_dir().join("tiny_resnet.onnx");
    let out = dir.path().join("o.onnx");
    // tiny_resnet's identity blocks 0 and 1 are one stream at D = 8 with the
    // same shape: block 0 has k = 1 PA term (its own skip), block 1 has
    // k = 2 (its skip and block 0's) under a window of 3.
    let count = |name: &str, rw_param, pa_window, pa_rank| {
        let r = augment(
            &path,
            &out,
            AugmentOptions {
                variant: variant(name, rw_param, 4, pa_window, pa_rank),
                ..AugmentOptions::default()
            },
        );
        let per_block: Vec<u64> = r.blocks.iter().map(|b| b.parameters).collect();
        assert_eq!(per_block.iter().sum::<u64>(), r.parameters_added);
        per_block
    };
    let (d, r) = (8, 4);
    let soft = RwParam::Softmax;
    // PA, h = id: k.
    assert_eq!(count("pa", soft, 3, 0), [1, 2]);
    assert_eq!(count("pa", soft, 1, 0), [1, 1]);
    // PA, low-rank h of rank 2 shared across j: k + 2·2·D.
    assert_eq!(count("pa", soft, 3, 2), [1 + 2 * 2 * d, 2 + 2 * 2 * d]);
    // RW+LR: 2 + 2rD (1 + 2rD with a sigmoid).
    assert_eq!(count("rw+lr", soft, 3, 0), [2 + 2 * r * d; 2]);
    assert_eq!(count("rw+lr", RwParam::Sigmoid, 3, 0), [1 + 2 * r * d; 2]);
    // RW+PA: 2 + k (+ 2r'D).
    assert_eq!(count("rw+pa", soft, 3, 0), [2 + 1, 2 + 2]);
    assert_eq!(count("rw+pa", RwParam::Sigmoid, 3, 0), [1 + 1, 1 + 2]);
    assert_eq!(
        count("rw+pa", RwParam::Raw, 3, 2),
        [2 + 1 + 2 * 2 * d, 2 + 2 + 2 * 2 * d]
    );
    // LR+PA: 2rD + k (+ 2r'D).
    assert_eq!(count("lr+pa", soft, 3, 0), [2 * r * d + 1, 2 * r * d + 2]);
    assert_eq!(
        count("lr+pa", soft, 3, 2),
        [2 * r * d + 1 + 2 * 2 * d, 2 * r * d + 2 + 2 * 2 * d]
    );
    // RW+LR+PA (Eq. 6): 2 + k + 2rkD (1 + k + 2rkD with a sigmoid).
    assert_eq!(
        count("rw+lr+pa", soft, 3, 0),
        [2 + 1 + 2 * r * d, 2 + 2 + 2 * r * 2 * d]
    );
    assert_eq!(
        count("rw+lr+pa", RwParam::Sigmoid, 2, 0),
        [1 + 1 + 2 * r * d, 1 + 2 + 2 * r * 2 * d]
    );
    // The initializers of the last file, by name and shape.
    let model = laurelc::onnx::import_path(&out).unwrap();
    let mut names: Vec<String> = model
        .graph
        .initializers
        .iter()
        .filter_map(|&n| match &model.graph.dag[n] {
            laurelc::ir::Node::Initializer(i) if i.proto.name.starts_with("laurel.") => {
                Some(format!("{}{:?}", i.proto.name, i.proto.dims))
            }
            _ => None,
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "laurel.0.A0[4, 8, 1, 1]",
            "laurel.0.B0[8, 4, 1, 1]",
            "laurel.0.gamma0[]",
            "laurel.0.p[]",
            "laurel.1.A0[4, 8, 1, 1]",
            "laurel.1.A1[4, 8, 1, 1]",
            "laurel.1.B0[8, 4, 1, 1]",
            "laurel.1.B1[8, 4, 1, 1]",
            "laurel.1.gamma0[]",
            "laurel.1.gamma1[]",
            "laurel.1.p[]",
        ],
        "every `laurel.*` initializer is a block's parameter (issue 14: the \
         sigmoid form's factor 2 was a shared `laurel.two`; it is now σ + σ)"
    );
}

#[test]
fn pa_reads_earlier_states_of_the_same_stream() {
    // tiny_preln_transformer: four blocks in one stream, all [1, 8, 16]:
    // k = 1, 2, 3, 3 with a window of 3, 1, 2, 2, 2 with a window of 2.
    let dir = tempfile::tempdir().unwrap();
    let path = laurel_tests::fixtures_dir().join("tiny_preln_transformer.onnx");
    let out = dir.path().join("o.onnx");
    for (window, ks) in [(3, [1, 2, 3, 3]), (2, [1, 2, 2, 2]), (1, [1, 1, 1, 1])] {
        let r = augment(
            &path,
            &out,
            AugmentOptions {
                variant: variant("pa", RwParam::Softmax, 4, window, 0),
                ..AugmentOptions::default()
            },
        );
        let per_block: Vec<u64> = r.blocks.iter().map(|b| b.parameters).collect();
        assert_eq!(per_block, ks, "window {window}");
    }
}
