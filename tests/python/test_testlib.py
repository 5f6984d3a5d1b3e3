"""Self-tests of the harness: the helpers, the committed fixtures and the
manifest.  Need neither laurelc nor the model cache."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import laurel_testlib as lt
from laurel_testlib import InputOverride


# -- names ------------------------------------------------------------------

@pytest.mark.parametrize("raw, want", [
    ("logits", "logits"),
    ("onnx::Shape_422", "onnx__Shape_422"),
    ("save_infer_model/scale_0.tmp_1", "save_infer_model_scale_0.tmp_1"),
    ("gpu_0/softmax_1", "gpu_0_softmax_1"),
    ("a b:c-d.e", "a_b_c-d.e"),
])
def test_sanitize_name(raw, want):
    assert lt.sanitize_name(raw) == want


# -- normalise ----------------------------------------------------------------

def _model_with(attr_i_explicit: bool) -> onnx.ModelProto:
    node = helper.make_node("Flatten", ["x"], ["y"], name="f", axis=1)
    if attr_i_explicit:
        node.attribute[0].f = 0.0  # explicitly written default
        node.doc_string = ""
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


def test_normalise_clears_explicit_defaults_recursively():
    plain = _model_with(False)
    explicit = _model_with(True)
    assert lt.canonical_bytes(plain) != lt.canonical_bytes(explicit)
    assert lt.normalised_difference(plain, explicit) is None
    # the inputs were not modified
    assert explicit.graph.node[0].attribute[0].HasField("f")


def test_normalise_top_level_scalars():
    a = onnx.ModelProto(ir_version=8)
    b = onnx.ModelProto(ir_version=8, model_version=0, producer_name="", domain="")
    assert lt.normalised_difference(a, b) is None
    c = onnx.ModelProto(ir_version=8, model_version=1)
    assert "model_version" in lt.normalised_difference(a, c)


def test_normalise_keeps_oneof_presence():
    unknown = onnx.TensorShapeProto.Dimension()
    zero = onnx.TensorShapeProto.Dimension(dim_value=0)
    assert lt.normalised_difference(unknown, zero) is not None
    # but denotation="" on a dim is a plain default
    assert lt.normalised_difference(zero, onnx.TensorShapeProto.Dimension(dim_value=0, denotation="")) is None


def test_normalise_keeps_empty_submessage_presence():
    scalar = helper.make_tensor_value_info("x", TensorProto.FLOAT, [])
    unknown_rank = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    assert scalar.type.tensor_type.HasField("shape")
    assert not unknown_rank.type.tensor_type.HasField("shape")
    assert "shape" in lt.normalised_difference(scalar, unknown_rank)


def test_normalise_float_sign_and_nan():
    pos = onnx.AttributeProto(name="a", type=onnx.AttributeProto.FLOAT, f=0.0)
    neg = onnx.AttributeProto(name="a", type=onnx.AttributeProto.FLOAT, f=-0.0)
    unset = onnx.AttributeProto(name="a", type=onnx.AttributeProto.FLOAT)
    assert lt.normalised_difference(pos, unset) is None
    assert lt.normalised_difference(neg, unset) is not None
    nan = onnx.AttributeProto(name="a", type=onnx.AttributeProto.FLOAT, f=float("nan"))
    assert lt.normalised_difference(nan, nan) is None


def test_difference_paths_are_readable():
    a = _model_with(False)
    b = _model_with(False)
    b.graph.node[0].attribute[0].i = 2
    assert lt.normalised_difference(a, b) == "graph.node[0].attribute[0].i: 1 != 2"
    c = _model_with(False)
    c.graph.node.add().op_type = "Relu"
    assert lt.normalised_difference(a, c) == "graph.node: 1 entries != 2 entries"
    d = _model_with(False)
    d.graph.initializer.add().float_data.extend([1.0, float("nan")])
    e = _model_with(False)
    e.graph.initializer.add().float_data.extend([1.0, float("nan")])
    assert lt.normalised_difference(d, e) is None
    e.graph.initializer[0].float_data[0] = 1.5
    assert lt.normalised_difference(d, e) == "graph.initializer[0].float_data[0]: 1.0 != 1.5"


# -- inputs -------------------------------------------------------------------

def _io_model() -> onnx.ModelProto:
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        helper.make_tensor_value_info("ids", TensorProto.INT32, [2, "seq"]),
        helper.make_tensor_value_info("flag", TensorProto.BOOL, [3]),
        helper.make_tensor_value_info("w", TensorProto.FLOAT, [4]),  # initializer-backed (IR < 4 style)
    ]
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", inputs,
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          initializer=[helper.make_tensor("w", TensorProto.FLOAT, [4], [0, 1, 2, 3])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 9)], ir_version=3)


def test_make_inputs_defaults():
    feeds = lt.make_inputs(_io_model())
    assert list(feeds) == ["x", "attention_mask", "ids", "flag"]
    assert feeds["x"].dtype == np.float32 and feeds["x"].shape == (1, 4)
    assert feeds["attention_mask"].dtype == np.int64 and (feeds["attention_mask"] == 1).all()
    assert feeds["attention_mask"].shape == (1, 1)
    assert feeds["ids"].dtype == np.int32 and feeds["ids"].shape == (2, 1)
    assert ((0 <= feeds["ids"]) & (feeds["ids"] < 10)).all()
    assert feeds["flag"].dtype == np.bool_
    again = lt.make_inputs(_io_model())
    assert all(np.array_equal(feeds[k], again[k]) for k in feeds)
    other = lt.make_inputs(_io_model(), seed=1)
    assert not np.array_equal(feeds["x"], other["x"])


def test_make_inputs_overrides():
    feeds = lt.make_inputs(_io_model(), dim_values={"seq": 5, "batch": 2},
                           overrides={"x": InputOverride(shape=(3, 4)),
                                      "flag": InputOverride(value=np.array([True, False, True]))})
    assert feeds["x"].shape == (3, 4)
    assert feeds["attention_mask"].shape == (2, 5)
    assert feeds["ids"].shape == (2, 5)
    assert feeds["flag"].tolist() == [True, False, True]
    with pytest.raises(ValueError, match="does not have"):
        lt.make_inputs(_io_model(), overrides={"nope": InputOverride(shape=(1,))})
    with pytest.raises(ValueError, match="dtype"):
        lt.make_inputs(_io_model(), overrides={"attention_mask": InputOverride(value=np.ones((1, 1), np.int32))})


def test_save_inputs_and_read_outputs(tmp_path):
    feeds = {"gpu_0/data_0": np.arange(6, dtype=np.float32).reshape(2, 3), "sr": np.array(16000, np.int64)}
    saved = lt.save_inputs(feeds, tmp_path / "in")
    assert [(n, p.name) for n, p in saved] == [("gpu_0/data_0", "gpu_0_data_0.npy"), ("sr", "sr.npy")]
    args = lt.run_args(tmp_path / "m.onnx", saved, tmp_path / "out")
    assert args[:2] == ["run", str(tmp_path / "m.onnx")]
    assert args[2:4] == ["--input", f"gpu_0/data_0={tmp_path / 'in' / 'gpu_0_data_0.npy'}"]
    assert args[-2:] == ["--out-dir", str(tmp_path / "out")]
    # pretend laurelc wrote the outputs
    (tmp_path / "out").mkdir()
    np.save(tmp_path / "out" / "onnx__Shape_422.npy", feeds["gpu_0/data_0"])
    got = lt.read_run_outputs(tmp_path / "out", ["onnx::Shape_422"])
    assert np.array_equal(got["onnx::Shape_422"], feeds["gpu_0/data_0"])
    with pytest.raises(AssertionError, match="no file"):
        lt.read_run_outputs(tmp_path / "out", ["missing:out"])


def test_compare_close():
    a = np.array([1.0, 2.0, 3.0], np.float32)
    assert lt.compare_close(a, a * (1 + 5e-5), rtol=1e-4, atol=1e-5) is None
    assert "1/3 elements differ" in lt.compare_close(a + np.array([0, 0, 1], np.float32), a, 1e-4, 1e-5)
    assert "shape" in lt.compare_close(a[:2], a, 1e-4, 1e-5)
    assert "dtype" in lt.compare_close(a.astype(np.float64), a, 1e-4, 1e-5)
    ints = np.array([1, 2], np.int64)
    assert lt.compare_close(ints, ints, 1e-4, 1e-5) is None
    assert lt.compare_close(ints + 1, ints, 1e-4, 1e-5) is not None
    assert lt.arrays_identical(np.array([np.nan], np.float32), np.array([np.nan], np.float32))
    assert not lt.arrays_identical(np.array([1], np.int32), np.array([1], np.int64))


def test_unknown_fields_are_compared():
    a = onnx.AttributeProto(name="a")
    b = onnx.AttributeProto()
    b.ParseFromString(a.SerializeToString() + b"\xf8\x7f\x01")  # field 1023, varint 1
    assert lt.normalised_difference(a, b) is not None


def test_run_laurelc_reports_failures(tmp_path):
    script = tmp_path / "fake"
    script.write_text("#!/bin/sh\necho out; echo boom >&2; exit 3\n")
    script.chmod(0o755)
    with pytest.raises(lt.LaurelcError, match=r"exit 3(.|\n)*boom"):
        lt.run_laurelc(script, ["x"])


# -- committed fixtures and manifest -----------------------------------------

def test_fixtures_are_up_to_date():
    res = subprocess.run([sys.executable, str(lt.FIXTURES_DIR / "generate.py"), "--check"],
                         capture_output=True, text=True)
    assert res.returncode == 0, f"fixtures are stale; run python3 fixtures/generate.py\n{res.stdout}{res.stderr}"


@pytest.mark.parametrize("fname", lt.FIXTURE_FILES)
def test_fixture_is_valid_and_runs(fname):
    path = lt.FIXTURES_DIR / fname
    assert path.stat().st_size < 200 * 1024
    onnx.checker.check_model(str(path), full_check=True)
    model = lt.load_model_proto(path)
    assert model.producer_name == "laurelc-fixtures"
    assert all(n.name for n in model.graph.node), "every node has a stable name"
    outs = lt.ort_run(path, lt.make_inputs(model))
    assert all(np.isfinite(v).all() for v in outs.values())


def test_manifest_shape():
    m = lt.load_manifest()
    names = [e["name"] for e in m["models"]]
    assert len(names) == len(set(names))
    for e in m["models"]:
        assert set(e) >= {"name", "package", "version", "path_in_wheel", "sha256"}
        assert re.fullmatch(r"[0-9a-f]{64}", e["sha256"])
    nt = m["node_tests"]
    assert nt["package"] == "onnx" and nt["version"] == "1.22.0" and nt["model_dirs"] == 1765
    assert not set(names) & set(lt.fixture_model_names())
