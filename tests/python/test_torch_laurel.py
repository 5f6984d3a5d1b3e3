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
