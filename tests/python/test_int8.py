"""int8-weight GPTs (`fixtures/int8_weights.py`; issue 14, item 6): RW's
scale goes into the dequantization scale, so the fused RW model has the
fused plain model's op counts, and onnxruntime agrees with the unfused model.

onnxruntime is run at `ORT_ENABLE_BASIC`: its extended optimisations compute
`DequantizeLinear` → `MatMul` another way, which moves these models' outputs
by 0.02 between its own levels (the unfused model's included); at the basic
level onnxruntime, tract and the fused models agree to 1e-6.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import laurel_testlib as lt

INT8 = lt.REPO / "fixtures" / "int8"


def basic(path, feeds):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, feeds)[0]


@pytest.mark.parametrize("form", ["dq", "cast"])
def test_rw_on_int8_weights_fuses_to_the_plain_op_counts(laurelc_bin, tmp_path, form):
    fused = {}
    for variant in ("plain", "rw"):
        src = INT8 / f"torch_gpt_{variant}_op17_int8{form}.onnx"
        fused[variant] = tmp_path / f"{variant}.onnx"
        out = lt.run_laurelc(laurelc_bin, ["fuse", str(src), "-o", str(fused[variant]), "--explain"])
        if variant == "rw":
            assert "scales moved into a dequantization scale (int8 weights): 4" in out.stdout, out.stdout
    counts = {v: Counter(n.op_type for n in onnx.load(str(p)).graph.node) for v, p in fused.items()}
    assert counts["rw"] == counts["plain"]
    x = np.random.default_rng(0).standard_normal((2, 8, 32)).astype(np.float32)
    want = basic(INT8 / f"torch_gpt_rw_op17_int8{form}.onnx", {"x": x})
    msg = lt.compare_close(basic(fused["rw"], {"x": x}), want, 1e-4, 1e-5)
    assert msg is None, msg
