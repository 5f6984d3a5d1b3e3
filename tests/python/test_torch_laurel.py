"""LAuReL models written in PyTorch and exported by `torch.onnx.export`
(`fixtures/laurel_torch.py`), fused by `laurelc fuse` (issue 14, item 4).

Each LAuReL model has a plain twin of the same architecture and weights, so
the fused model's op counts can be compared with the plain model's, fused the
same way (which only folds its constants):

* RW (`a·f(x) + b·x`, scalar `nn.Parameter`s) fuses to exactly the plain
  model's op counts: every `a` and `b` goes into weights or a norm's ε,
  through the decomposed LayerNorm of opset 16 as well as through
  `LayerNormalization` (opset 17), and through convolutions and ReLUs;
* RW+LR (`+ B(A(x))`) keeps only the low-rank maps themselves on the ONNX
  target: two `MatMul`s (or 1×1 `Conv`s) and one `Add` per residual, no
  `Mul`; on `--target tract` the products go to `LaurelResidual`;
* saturation reaches a fixed point at the default limits, and the e-graph
  stays small (the 4-block GPT had 22,931 e-nodes before the scalar classes
  were pruned and the quotient rule paired its forms; it has under 900);
* onnxruntime agrees with the unfused model (rtol 1e-4, atol 1e-5), and
  `laurelc check` agrees on tract.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import onnx
import pytest

import laurel_testlib as lt

FIXTURES = lt.REPO / "fixtures"
KINDS = ["gpt", "resnet"]
OPSETS = [16, 17]
# Low-rank residuals per model and the op of their maps.
LOW_RANK = {"gpt": (8, "MatMul"), "resnet": (1, "Conv")}


def path(kind: str, variant: str, opset: int):
    return FIXTURES / f"torch_{kind}_{variant}_op{opset}.onnx"


def ops(p) -> Counter:
    return Counter(n.op_type if not n.domain or n.domain == "ai.onnx" else f"{n.domain}:{n.op_type}"
                   for n in onnx.load(str(p)).graph.node)


def feeds(kind: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    if kind == "gpt":
        return {"x": rng.standard_normal((2, 8, 32)).astype(np.float32)}
    return {"image": rng.standard_normal((2, 3, 16, 16)).astype(np.float32)}


def fuse(laurelc_bin, src, dst, *extra) -> str:
    out = lt.run_laurelc(laurelc_bin, ["fuse", src, "-o", dst, "--explain", *extra])
    assert "(a limit: not a fixed point)" not in out.stdout, out.stdout
    return out.stdout


def same_outputs(src, fused, kind):
    want, got = lt.ort_run(src, feeds(kind)), lt.ort_run(fused, feeds(kind))
    problems = {k: p for k, w in want.items() if (p := lt.compare_close(got[k], w, rtol=1e-4, atol=1e-5))}
    assert not problems, problems


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("kind", KINDS)
def test_rw_fuses_to_the_plain_models_op_counts(kind, opset, laurelc_bin, tmp_path):
    plain, rw = tmp_path / "plain.onnx", tmp_path / "rw.onnx"
    fuse(laurelc_bin, path(kind, "plain", opset), plain)
    explain = fuse(laurelc_bin, path(kind, "rw", opset), rw)
    assert ops(path(kind, "rw", opset))["Mul"] > ops(path(kind, "plain", opset))["Mul"]
    assert ops(rw) == ops(plain), explain
    nodes = int(re.search(r"at most \d+ classes, (\d+) nodes", explain).group(1))
    assert nodes < 2000, explain
    onnx.checker.check_model(str(rw), full_check=True)
    same_outputs(path(kind, "rw", opset), rw, kind)


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("kind", KINDS)
def test_rw_lr_keeps_only_the_low_rank_maps(kind, opset, laurelc_bin, tmp_path):
    plain, lr, tract = tmp_path / "plain.onnx", tmp_path / "lr.onnx", tmp_path / "lr.tract.onnx"
    src = path(kind, "rwlr", opset)
    fuse(laurelc_bin, path(kind, "plain", opset), plain)
    explain = fuse(laurelc_bin, src, lr)
    count, op = LOW_RANK[kind]
    want = ops(plain) + Counter({op: 2 * count, "Add": count})
    assert ops(lr) == want, explain
    same_outputs(src, lr, kind)
    explain = fuse(laurelc_bin, src, tract, "--target", "tract")
    got = ops(tract)
    assert got["Mul"] == ops(plain)["Mul"], explain
    assert got["ai.laurel:LaurelResidual"] >= 1, explain
    lt.run_laurelc(laurelc_bin, ["check", src, tract])


def test_gemma3n_block_is_recognised_and_its_scale_folds(laurelc_bin, tmp_path):
    """Gemma 3n's decoder layer (`fixtures/laurel_torch.py`): `inspect` names
    its `laurel(x̂) = x̂ + RMSNorm(right(left(x̂)))` a LAuReL block of rank 64
    with a norm after `B`, and `fuse` folds the layer's `1/√2` into the next
    norms and weights: the fused layer has the op counts of the same layer
    without the scale, fused the same way."""
    import json

    src = FIXTURES / "gemma3n_laurel_block.onnx"
    info = json.loads(lt.run_laurelc(laurelc_bin, ["inspect", src, "--json"]).stdout)
    forms = [(r["node"], r["laurel"]) for r in info["residuals"] if "laurel" in r]
    assert forms == [("/Add_2", {"low_rank": {"add": "/Add_2", "rank": 64, "normed": True}})], forms
    model = onnx.load(str(src))
    consts = {n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t)
              for n in model.graph.node if n.op_type == "Constant"}
    scales = [n for n in model.graph.node if n.op_type == "Mul"
              and any(i in consts and consts[i].size == 1 and abs(float(consts[i].ravel()[0]) - 2 ** -0.5) < 1e-7
                      for i in n.input)]
    assert len(scales) == 1, scales
    twin = onnx.load(str(src))
    for n in twin.graph.node:
        if n.name == scales[0].name:
            data = next(i for i in n.input if i not in consts)
            n.op_type = "Identity"
            del n.input[:]
            n.input.append(data)
    unscaled = tmp_path / "unscaled.onnx"
    onnx.save(twin, str(unscaled))
    fused, fused_twin = tmp_path / "fused.onnx", tmp_path / "fused_twin.onnx"
    explain = fuse(laurelc_bin, src, fused)
    fuse(laurelc_bin, unscaled, fused_twin)
    assert ops(fused) == ops(fused_twin) - Counter({"Identity": 1}), explain
    rng = np.random.default_rng(0)
    x = {"x": rng.standard_normal((2, 8, 256)).astype(np.float32)}
    want, got = lt.ort_run(src, x), lt.ort_run(fused, x)
    problems = {k: p for k, w in want.items() if (p := lt.compare_close(got[k], w, rtol=1e-4, atol=1e-5))}
    assert not problems, problems
