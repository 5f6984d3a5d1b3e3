"""`laurelc check A B` exit codes on the committed fixtures:
0 within tolerance, 1 outside, 2 bad input."""

from __future__ import annotations

import subprocess

import numpy as np
import onnx
from onnx import numpy_helper

import laurel_testlib as lt


def _check(binary, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), "check", *map(str, args)], capture_output=True, text=True, timeout=300)


def _explain(res: subprocess.CompletedProcess) -> str:
    return f"exit {res.returncode}\n--- stdout ---\n{res.stdout[-2000:]}\n--- stderr ---\n{res.stderr[-2000:]}"


def test_check_same_model_passes(laurelc_bin, model_path):
    m = model_path("tiny_postln_bert")
    res = _check(laurelc_bin, m, m, "--rtol", "1e-4", "--atol", "1e-5", "--seed", "3", "--runs", "2")
    assert res.returncode == 0, _explain(res)


def test_check_different_model_fails(laurelc_bin, model_path, tmp_path):
    src = model_path("neg_bias_add")
    model = lt.load_model_proto(src)
    for i, t in enumerate(model.graph.initializer):
        if t.name == "fc.bias":
            shifted = numpy_helper.to_array(t) + np.float32(1.0)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(shifted, t.name))
            break
    else:
        raise AssertionError("fc.bias not found in neg_bias_add")
    other = tmp_path / "shifted_bias.onnx"
    onnx.save(model, str(other))
    res = _check(laurelc_bin, src, other)
    assert res.returncode == 1, _explain(res)


def test_check_bad_input_exits_2(laurelc_bin, model_path, tmp_path):
    res = _check(laurelc_bin, model_path("neg_bias_add"), tmp_path / "does_not_exist.onnx")
    assert res.returncode == 2, _explain(res)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\xff\xfe not an onnx model")
    res = _check(laurelc_bin, model_path("neg_bias_add"), garbage)
    assert res.returncode == 2, _explain(res)


def test_random_ids_fit_a_small_embedding_table(laurelc_bin, tmp_path):
    """Issue 14 item 8: random integer ids are drawn below the rows of the
    `Gather` table they index (through a `Cast`), so `run` and `check` work
    on a model whose table has fewer than 10 rows."""
    from onnx import TensorProto, helper
    table = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4), "table")
    nodes = [helper.make_node("Cast", ["ids"], ["ids64"], to=TensorProto.INT64, name="cast"),
             helper.make_node("Gather", ["table", "ids64"], ["rows"], name="gather")]
    graph = helper.make_graph(nodes, "ids", [helper.make_tensor_value_info("ids", TensorProto.INT32, [2, 16])],
                              [helper.make_tensor_value_info("rows", TensorProto.FLOAT, [2, 16, 4])], [table])
    path = tmp_path / "ids.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    out = tmp_path / "out"
    out.mkdir()
    lt.run_laurelc(laurelc_bin, ["run", path, "--seed", "1", "--out-dir", out])
    res = _check(laurelc_bin, path, path, "--runs", "3")
    assert res.returncode == 0, _explain(res)


def _detector(path):
    """A YOLO-style neck: two stride-2 convolutions, the deeper map upsampled
    by Resize and concatenated with the shallower one; symbolic batch, height
    and width. At height = width = 1 the maps disagree (2 against 1)."""
    from onnx import TensorProto, helper
    rng = np.random.default_rng(0)
    w = lambda name, *d: numpy_helper.from_array(rng.standard_normal(d).astype(np.float32), name)  # noqa: E731
    nodes = [
        helper.make_node("Conv", ["images", "w1"], ["a"], name="c1", strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["a", "w2"], ["b"], name="c2", strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Resize", ["b", "", "scales"], ["up"], name="up", mode="nearest"),
        helper.make_node("Concat", ["up", "a"], ["out"], name="cat", axis=1),
    ]
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    graph = helper.make_graph(
        nodes, "detector", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], [w("w1", 4, 3, 3, 3), w("w2", 4, 4, 3, 3), scales])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_a_detector_that_cannot_load_at_1_loads_at_the_smallest_size_that_does(laurelc_bin, tmp_path):
    """Issue 14 item 7: symbolic height and width left unset are tried at 8,
    32, … when 1 does not load; `run` says which it chose, and `check` runs
    both models at it."""
    path = tmp_path / "detector.onnx"
    _detector(path)
    out = tmp_path / "out"
    out.mkdir()
    res = lt.run_laurelc(laurelc_bin, ["run", path, "--out-dir", out])
    assert "running it at height = 8, width = 8" in res.stderr, res.stderr
    assert np.load(out / "out.npy").shape == (1, 8, 4, 4)
    res = _check(laurelc_bin, path, path)
    assert res.returncode == 0, _explain(res)


def test_a_model_that_loads_at_no_size_names_the_symbols_to_set(laurelc_bin, tmp_path):
    from onnx import TensorProto, helper
    shape = numpy_helper.from_array(np.array([1, 7], np.int64), "shape")
    graph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["z"], name="rs")], "never",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], [shape])
    path = tmp_path / "never.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    res = subprocess.run([str(laurelc_bin), "run", str(path)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, _explain(res)
    hint = [line for line in res.stderr.splitlines() if "set them with --dim" in line]
    assert len(hint) == 1 and "height, width" in hint[0], res.stderr


def test_a_panic_inside_tract_reaches_the_user_as_one_line(laurelc_bin, cache_dir):
    """Issue 14 item 8 / issue 15: Silero VAD's random `sr` makes tract panic
    while running; the user sees one error line, no panic text and no
    backtrace, even with RUST_BACKTRACE set."""
    import os
    path = cache_dir / "models" / "silero_vad.onnx"
    env = {**os.environ, "RUST_BACKTRACE": "1"}
    res = subprocess.run([str(laurelc_bin), "run", str(path)], capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode in (0, 2), _explain(res)
    assert "panicked at" not in res.stderr and "stack backtrace" not in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) <= 1, res.stderr
