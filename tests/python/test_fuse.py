"""`laurelc fuse` cross-checks on onnxruntime.

Every fixture and real model with residuals, augmented with each variant at
random initialisation (so the LAuReL terms are not trivial), then fused for
the default (ONNX) target:

* the fused model passes onnx.checker.check_model(full_check=True);
* onnxruntime gives the fused model's outputs equal to the augmented
  model's (rtol 1e-4, atol 1e-5): fusion keeps the function on a second
  runtime, not only on tract, which `tests/tests/fuse.rs` checks;
* the fused model has no more ops than the augmented one.

For `--target tract` the fused model may hold laurel-runtime's
`ai.laurel::LaurelResidual` (with low-rank pairs), which onnxruntime does not
know: the checker must still accept it (a declared custom domain), and
`laurelc check` shows on tract that it keeps the function.
"""

from __future__ import annotations

import onnx
import pytest

import laurel_testlib as lt

AUGMENTABLE = [n for n in lt.all_model_names()
               if n not in ("magika", "silero_vad", "neg_bias_add", "neg_attention_mask_add", "neg_gelu_tanh_add",
                            "trap_lstm_cells")]
VARIANTS = ["rw", "lr", "pa", "rw+lr", "rw+pa", "lr+pa", "rw+lr+pa"]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", AUGMENTABLE)
def test_fused_model_is_valid_and_ort_agrees(name, variant, laurelc_bin, model_path, model_inputs, tmp_path):
    aug = tmp_path / f"{name}.{variant}.onnx"
    fused = tmp_path / f"{name}.{variant}.fused.onnx"
    lt.run_laurelc(laurelc_bin, [model_path(name), "-o", aug, "--variant", variant, "--rank", "4",
                                 "--init", "random", "--seed", "3"])
    lt.run_laurelc(laurelc_bin, ["fuse", aug, "-o", fused])
    onnx.checker.check_model(str(fused), full_check=True)
    feeds = model_inputs(name)
    want = lt.ort_run(aug, feeds)
    got = lt.ort_run(fused, feeds)
    problems = {k: m for k, w in want.items()
                if (m := lt.compare_close(got[k], w, rtol=1e-4, atol=1e-5))}
    assert not problems, problems
    assert len(onnx.load(str(fused)).graph.node) <= len(onnx.load(str(aug)).graph.node)
    assert constant_ops(fused) == [], f"ops left computing constants at run time: {constant_ops(fused)}"


def constant_ops(path) -> list[str]:
    """Issue 14 item 5: the fused model's ops whose inputs are all constants
    (initializers, `Constant` outputs, or the outputs of such ops). Excepted
    are the `ConstantOfShape` fills folding writes in place of a large
    uniform weight, and the ops that read a fill (a `Concat` of two fills):
    folding those would write the dense tensor out, growing the file far
    beyond the op (folding counts them as large values kept)."""
    g = onnx.load(str(path)).graph
    consts = {i.name for i in g.initializer}
    fills: set[str] = set()
    found = []
    for n in g.node:
        inputs = [i for i in n.input if i]
        if n.op_type == "Constant":
            consts.update(n.output)
        elif inputs and all(i in consts for i in inputs):
            consts.update(n.output)
            if n.op_type == "ConstantOfShape" or any(i in fills for i in inputs):
                fills.update(n.output)
            else:
                found.append(f"{n.op_type} {n.name}")
    return found


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", AUGMENTABLE)
def test_tract_target_is_valid_onnx_with_a_declared_custom_domain(name, variant, laurelc_bin, model_path, tmp_path):
    aug = tmp_path / f"{name}.{variant}.onnx"
    fused = tmp_path / f"{name}.{variant}.tract.onnx"
    lt.run_laurelc(laurelc_bin, [model_path(name), "-o", aug, "--variant", variant, "--rank", "4",
                                 "--init", "random", "--seed", "3"])
    lt.run_laurelc(laurelc_bin, ["fuse", aug, "-o", fused, "--target", "tract"])
    onnx.checker.check_model(str(fused), full_check=True)
    model = onnx.load(str(fused))
    custom = [n for n in model.graph.node if n.domain == "ai.laurel"]
    assert all(n.op_type == "LaurelResidual" for n in custom)
    if custom:
        assert any(o.domain == "ai.laurel" and o.version == 1 for o in model.opset_import)
        for n in custom:
            attrs = {a.name: a for a in n.attribute}
            assert set(attrs) <= {"coefficients", "low_rank"}, attrs
            # `low_rank` k: the inputs end in k (p, B) pairs, after at least one term.
            k = attrs["low_rank"].i if "low_rank" in attrs else 0
            terms = len(n.input) - 2 * k
            assert k >= 0 and terms >= 1 and terms + k >= 2, n
            if "coefficients" in attrs:
                assert len(attrs["coefficients"].floats) == terms + k, n
            # Without coefficients or products it is a sum of all ones
            # (docs/laurel-op.md): worth an op only for three terms or more.
            assert "coefficients" in attrs or k > 0 or terms >= 3, n
    lt.run_laurelc(laurelc_bin, ["check", aug, fused])


@pytest.mark.parametrize("kind", ["resnet", "preln"])
def test_deep_chains_fuse_to_the_baseline_across_windows(kind, laurelc_bin, tmp_path):
    """A 25-block chain in windows of 24 ops crosses many window boundaries;
    the scale carried from one window to the next must still reach the ops
    already fused that read it, so RW leaves no op the baseline does not
    have (without that, a Mul per boundary stayed)."""
    import subprocess
    import sys
    from collections import Counter

    base = tmp_path / f"{kind}.onnx"
    subprocess.run([sys.executable, str(lt.REPO / "bench" / "chains.py"), "--kind", kind,
                    "--blocks", "25", "--out", str(base)], check=True, capture_output=True)
    aug = tmp_path / f"{kind}.rw.onnx"
    fused = tmp_path / f"{kind}.fused.onnx"
    lt.run_laurelc(laurelc_bin, [base, "-o", aug, "--variant", "rw", "--init", "random", "--seed", "1"])
    out = lt.run_laurelc(laurelc_bin, ["fuse", aug, "-o", fused, "--explain", "--window-ops", "24"])
    windows = int(out.stdout.split("e-graph: ")[2].split(" window")[0])
    assert windows > 1, out.stdout
    ops = lambda p: Counter(n.op_type for n in onnx.load(str(p)).graph.node)
    assert ops(fused) == ops(base), out.stdout
    lt.run_laurelc(laurelc_bin, ["check", aug, fused])


@pytest.mark.parametrize("opset", [9, 13])
def test_maps_of_one_input_merge_into_one_matmul_and_slices(opset, laurelc_bin, tmp_path):
    """Two low-rank maps of one value, both graph outputs: `merge-shared-input`
    computes them as one MatMul and two Slices (Slice takes attributes before
    opset 10, inputs from 10), and onnxruntime agrees. The calibrated model
    prices a copy between maps above the MatMul it saves (measured on tract),
    so the merge is asked for with `--cost copy-overhead=0`."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    a1 = numpy_helper.from_array(rng.standard_normal((64, 4)).astype(np.float32), "A1")
    a2 = numpy_helper.from_array(rng.standard_normal((64, 4)).astype(np.float32), "A2")
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["h"], name="relu"),
         helper.make_node("MatMul", ["h", "A1"], ["y1"], name="map1"),
         helper.make_node("MatMul", ["h", "A2"], ["y2"], name="map2")],
        "shared", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 64])],
        [helper.make_tensor_value_info("y1", TensorProto.FLOAT, [8, 4]),
         helper.make_tensor_value_info("y2", TensorProto.FLOAT, [8, 4])],
        initializer=[a1, a2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    src, fused = tmp_path / "shared.onnx", tmp_path / "shared.fused.onnx"
    onnx.save(model, str(src))
    out = lt.run_laurelc(laurelc_bin, ["fuse", src, "-o", fused, "--explain",
                                       "--cost", "copy-overhead=0"])
    assert "merge-shared-input" in out.stdout, out.stdout
    m = onnx.load(str(fused))
    onnx.checker.check_model(m, full_check=True)
    ops = [n.op_type for n in m.graph.node]
    assert ops.count("MatMul") == 1 and ops.count("Slice") == 2, ops
    for n in m.graph.node:
        if n.op_type == "Slice":
            assert (len(n.input) == 1) == (opset < 10), n
    feeds = {"x": rng.standard_normal((8, 64)).astype(np.float32)}
    want, got = lt.ort_run(src, feeds), lt.ort_run(fused, feeds)
    problems = {k: p for k, w in want.items() if (p := lt.compare_close(got[k], w, rtol=1e-5, atol=1e-6))}
    assert not problems, problems
