"""`laurelc bench` and the bench/fuse.py driver on the committed tiny_resnet fixture:
the batch-symbolic copy, the input rules, the report, and a smoke run of the script.
Nothing here asserts how fast anything is."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper

import laurel_testlib as lt

FUSE_PY = lt.REPO / "bench" / "fuse.py"


def _fuse_py():
    spec = importlib.util.spec_from_file_location("bench_fuse", FUSE_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _explain(res: subprocess.CompletedProcess) -> str:
    return f"exit {res.returncode}\n--- stdout ---\n{res.stdout[-3000:]}\n--- stderr ---\n{res.stderr[-3000:]}"


def test_batch_symbolic_copy_computes_each_sample_as_the_original(model_path, tmp_path):
    fuse = _fuse_py()
    src = model_path("tiny_resnet")
    dst = fuse.batch_symbolic(src, tmp_path / "base.onnx")
    assert dst != src
    model = onnx.load(str(dst))
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    feeds = fuse.make_inputs(dst, {}, 3, 0)
    assert feeds["input"].shape == (3, 3, 16, 16)
    out = lt.ort_run(dst, feeds)["logits"]
    assert out.shape == (3, 10)
    for i in range(3):
        ref = lt.ort_run(src, {"input": feeds["input"][i:i + 1]})["logits"]
        np.testing.assert_allclose(out[i:i + 1], ref, rtol=1e-5, atol=1e-6)
    # A model whose batch is already symbolic is used as it is.
    assert fuse.batch_symbolic(dst, tmp_path / "again.onnx") == dst


def test_inputs_follow_the_runtime_rules(tmp_path):
    fuse = _fuse_py()
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["B", "S"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["B", "S"]),
        helper.make_tensor_value_info("token_type_ids", TensorProto.INT32, ["B", "S"]),
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
        helper.make_tensor_value_info("flag", TensorProto.BOOL, ["B"]),
        helper.make_tensor_value_info("img", TensorProto.FLOAT, ["N", 3, "H", "W"]),
        helper.make_tensor_value_info("sr", TensorProto.INT64, []),
    ]
    graph = helper.make_graph([], "inputs", inputs, [])
    path = tmp_path / "inputs.onnx"
    onnx.save(helper.make_model(graph), str(path))
    run = {"dims": {"S": 5}, "shapes": {"img": [1, 3, 32, 64]}, "values": {"sr": 16000}}
    feeds = fuse.make_inputs(path, run, 2, 0)
    assert {k: v.shape for k, v in feeds.items()} == {
        "input_ids": (2, 5), "attention_mask": (2, 5), "token_type_ids": (2, 5), "x": (2, 4),
        "flag": (2,), "img": (2, 3, 32, 64), "sr": ()}
    assert feeds["input_ids"].dtype == np.int64 and feeds["input_ids"].min() >= 0 and feeds["input_ids"].max() < 10
    assert (feeds["attention_mask"] == 1).all()
    assert feeds["token_type_ids"].dtype == np.int32 and (feeds["token_type_ids"] == 0).all()
    assert feeds["x"].dtype == np.float32 and feeds["x"].std() > 0
    assert feeds["flag"].all()
    assert feeds["sr"] == 16000
    again = fuse.make_inputs(path, run, 2, 0)
    assert all(np.array_equal(feeds[k], again[k]) for k in feeds)


def test_bench_reads_npz_inputs_at_a_larger_batch(laurelc_bin, model_path, tmp_path):
    fuse = _fuse_py()
    base = fuse.batch_symbolic(model_path("tiny_resnet"), tmp_path / "base.onnx")
    npz = tmp_path / "in.npz"
    np.savez(npz, **fuse.make_inputs(base, {}, 4, 0))
    res = subprocess.run([str(laurelc_bin), "bench", str(base), str(base), "--runs", "2", "--warmup", "0",
                          "--input", str(npz), "--json"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, _explain(res)
    report = json.loads(res.stdout)
    assert report["inputs"] == [{"name": "input", "datum": "f32", "shape": [4, 3, 16, 16], "random": False}]
    assert [m["ratio"] for m in report["models"]][0] == 1.0
    assert all(len(m["samples_ms"]) == 2 for m in report["models"])


def test_fuse_py_runs_on_tiny_resnet(laurelc_bin, tmp_path):
    out = tmp_path / "fuse.json"
    res = subprocess.run([sys.executable, str(FUSE_PY), "--models", "tiny_resnet", "--variants", "rw,lr",
                          "--batches", "1,2", "--reps", "2", "--warmup", "0", "--fuse-reps", "1",
                          "--laurelc", str(laurelc_bin), "--out", str(out)],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, _explain(res)
    table = [line for line in res.stdout.splitlines() if line.startswith("| tiny_resnet |")]
    assert len(table) == 4, res.stdout
    assert "| tiny_resnet | `lr (r = 16)` | 2 |" in res.stdout
    rows = json.loads(out.read_text())["rows"]
    assert [(r["variant"], r["batch"]) for r in rows] == [("rw", 1), ("rw", 2), ("lr", 1), ("lr", 2)]
    for r in rows:
        assert r["fused_matches_unfused"], r["check"]
        assert r["tract"]["models"][0]["ratio"] == 1.0
        assert r["tract"]["inputs"][0]["shape"] == [r["batch"], 3, 16, 16]
        for key in ("tract_unfused", "tract_fused", "ort_unfused", "ort_fused", "fuse_s"):
            assert math.isfinite(r[key]) and r[key] > 0, (key, r)
