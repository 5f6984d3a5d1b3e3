"""RW on model families whose residual branches end other than in a linear
op (`fixtures/families_torch.py`; issue 14, item 4), augmented by laurelc
(`--variant rw --init random`) and fused (`laurelc fuse`):

* a DINOv2-style ViT with LayerScale (`x + γ ⊙ f(x)`, a per-channel weight
  at the end of every branch): exactly the plain model's op counts, fused
  the same way;
* a 1-D temporal conv net with U-Net skips, whose blocks are
  `relu(f(x) + x)` with `f` ending in `Relu(Slice(Conv(…)))`: exactly the
  plain model's op counts (α goes through the branch's `Relu` and `Slice`
  into its last convolution; the skip's `Add` of an encoder output and a
  `ConvTranspose` output has one shape, where symbolic inference left the
  transpose unshaped);
* a YOLOv5-style detector, whose bottlenecks `x + SiLU(Conv(SiLU(Conv(x))))`
  sum two SiLU outputs: on the ONNX target one `Mul` per residual and no
  other op beyond the plain model (the ratio β/α between two SiLU outputs
  has nowhere to go: SiLU is not homogeneous, and no standard op sums two
  tensors with weights); the common scale goes through the `C3` block's
  `Concat` into the input channels of the next convolution. On `--target
  tract` each residual `Add` becomes one `LaurelResidual` with coefficients
  and nothing else is added.

Each fused model matches the augmented one on onnxruntime (rtol 1e-4,
atol 1e-5), and saturation reaches a fixed point at the default limits.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import onnx
import pytest

import laurel_testlib as lt

FIXTURES = lt.REPO / "fixtures"
# name -> (input name, input shape, residuals)
FAMILIES = {
    "torch_vit_layerscale": ("image", (2, 3, 16, 16), 8),
    "torch_tcn_unet": ("x", (2, 4, 32), 8),
    "torch_yolo_c3": ("images", (2, 3, 64, 64), 4),
}
PARAMS = ["softmax", "raw"]


def ops(p) -> Counter:
    return Counter(n.op_type if not n.domain or n.domain == "ai.onnx" else f"{n.domain}:{n.op_type}"
                   for n in onnx.load(str(p)).graph.node)


def feeds(name: str) -> dict[str, np.ndarray]:
    input_name, shape, _ = FAMILIES[name]
    return {input_name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}


def augment_and_fuse(laurelc_bin, name, param, tmp_path, *extra):
    src = FIXTURES / f"{name}.onnx"
    aug, fused, plain = tmp_path / "rw.onnx", tmp_path / "rw.fused.onnx", tmp_path / "plain.fused.onnx"
    lt.run_laurelc(laurelc_bin, [src, "-o", aug, "--variant", "rw", "--rw-param", param,
                                 "--init", "random", "--seed", "3"])
    lt.run_laurelc(laurelc_bin, ["fuse", src, "-o", plain, *extra])
    explain = lt.run_laurelc(laurelc_bin, ["fuse", aug, "-o", fused, "--explain", *extra]).stdout
    assert "(a limit: not a fixed point)" not in explain, explain
    assert "stopped: saturated" in explain, explain
    return aug, fused, plain, explain


def same_outputs(aug, fused, name):
    want, got = lt.ort_run(aug, feeds(name)), lt.ort_run(fused, feeds(name))
    problems = {k: p for k, w in want.items() if (p := lt.compare_close(got[k], w, rtol=1e-4, atol=1e-5))}
    assert not problems, problems


@pytest.mark.parametrize("param", PARAMS)
@pytest.mark.parametrize("name", ["torch_vit_layerscale", "torch_tcn_unet"])
def test_rw_fuses_to_the_plain_models_op_counts(name, param, laurelc_bin, tmp_path):
    aug, fused, plain, explain = augment_and_fuse(laurelc_bin, name, param, tmp_path)
    assert ops(aug)["Mul"] > ops(plain)["Mul"]
    assert ops(fused) == ops(plain), explain
    blocks = re.search(r"LAuReL blocks: (\d+)", explain)
    assert blocks and "ops left" not in explain.split("LAuReL blocks:")[1], explain
    onnx.checker.check_model(str(fused), full_check=True)
    same_outputs(aug, fused, name)


@pytest.mark.parametrize("param", PARAMS)
def test_yolo_keeps_one_mul_per_residual_on_onnx(param, laurelc_bin, tmp_path):
    name = "torch_yolo_c3"
    residuals = FAMILIES[name][2]
    aug, fused, plain, explain = augment_and_fuse(laurelc_bin, name, param, tmp_path)
    extra = ops(fused) - ops(plain)
    assert extra == Counter({"Mul": residuals}), explain
    assert not ops(plain) - ops(fused), explain
    # The common scale of each C3's residual stream went through its Concat
    # into the next convolution's input channels.
    assert "absorb-concat-scales" in explain, explain
    same_outputs(aug, fused, name)


@pytest.mark.parametrize("param", PARAMS)
def test_yolo_adds_nothing_on_tract(param, laurelc_bin, tmp_path):
    name = "torch_yolo_c3"
    residuals = FAMILIES[name][2]
    aug, fused, plain, explain = augment_and_fuse(laurelc_bin, name, param, tmp_path, "--target", "tract")
    want = ops(plain)
    want["Add"] -= residuals
    want["ai.laurel:LaurelResidual"] += residuals
    assert ops(fused) == +want, explain
    lt.run_laurelc(laurelc_bin, ["check", aug, fused])
