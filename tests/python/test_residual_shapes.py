"""Residual analysis where tract's shape inference falls short (issue 14,
item 1): every add is decided or reported, never silently skipped.

* A traced PyTorch export whose input says `batch` while its `Reshape`
  constants and declared output fix batch = 1: symbolic inference fails, and
  so does concrete inference at the fallback sizes; the analysis finds that
  the model fixes `batch = 1` and finds the same residuals as with batch 1.
* An add whose operand passes through an op tract does not know has no shape:
  `inspect` (text and JSON) lists it as undecided with the operand, and
  `laurelc MODEL -o OUT` warns on stderr and reports it in `--report-json`.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import laurel_testlib as lt


def inspect_json(binary, path) -> dict:
    return json.loads(lt.run_laurelc(binary, ["inspect", path, "--json"]).stdout)


def test_a_model_that_fixes_its_batch_itself_keeps_its_residuals(laurelc_bin, tmp_path):
    fixture = lt.FIXTURES_DIR / "trap_attention_bias.onnx"
    m = onnx.load(fixture)
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    edited = tmp_path / "batch_symbol.onnx"
    onnx.save(m, edited)
    want = inspect_json(laurelc_bin, fixture)
    got = inspect_json(laurelc_bin, edited)
    assert "the model fixes batch = 1" in got["shape_inference"], got["shape_inference"]
    names = lambda j: [(r["node"], r["skip"], r["branch"]) for r in j["residuals"]]  # noqa: E731
    assert names(got) == names(want) and len(names(got)) == 4
    assert got["undecided"] == []


def mystery_model(path) -> None:
    """x → MatMul → ai.example.Mystery → MatMul → Add(x, ·) → MatMul → Add."""
    rng = np.random.default_rng(0)
    w = [numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32), f"W{i}") for i in range(3)]
    nodes = [
        helper.make_node("MatMul", ["x", "W0"], ["a"], name="mm1"),
        helper.make_node("Mystery", ["a"], ["b"], name="mystery", domain="ai.example"),
        helper.make_node("MatMul", ["b", "W1"], ["c"], name="mm2"),
        helper.make_node("Add", ["x", "c"], ["y"], name="res"),
        helper.make_node("MatMul", ["y", "W2"], ["d"], name="mm3"),
        helper.make_node("Add", ["y", "d"], ["z"], name="res2"),
    ]
    graph = helper.make_graph(nodes, "mystery", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 8, 16])], w)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                      helper.make_opsetid("ai.example", 1)]), path)


def test_adds_without_shapes_are_reported_and_warned_about(laurelc_bin, tmp_path):
    path = tmp_path / "mystery.onnx"
    mystery_model(path)
    j = inspect_json(laurelc_bin, path)
    assert j["residuals"] == []
    assert j["undecided"] == [{"node": "res", "reason": "no shape for `c`"},
                              {"node": "res2", "reason": "no shape for `y` and `d`"}]
    text = lt.run_laurelc(laurelc_bin, ["inspect", path]).stdout
    assert "undecided adds: 2" in text and "res2: no shape for `y` and `d`" in text
    report = tmp_path / "report.json"
    res = lt.run_laurelc(laurelc_bin, [path, "-o", tmp_path / "out.onnx", "--report-json", report])
    assert "warning: 2 add(s) could not be decided" in res.stderr, res.stderr
    assert [u["node"] for u in json.loads(report.read_text())["undecided"]] == ["res", "res2"]
