"""`laurelc train`: the trained model is an ordinary ONNX model, scored by
onnxruntime exactly as laurelc reported; runs are deterministic and resume;
bad data exits 2 and a diverging run exits 1 without writing the model.

The data are seeded random 3×16×16 images with fixed labels: 20 examples a
small CNN can memorise, enough to see a loss fall in a few epochs.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import laurel_testlib as lt

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
RESNET = FIXTURES / "tiny_resnet.onnx"


def images(path: Path, n: int = 20, seed: int = 0, **overrides) -> Path:
    rng = np.random.default_rng(seed)
    arrays = {
        "input": (0.5 * rng.standard_normal((n, 3, 16, 16))).astype(np.float32),
        "target": ((np.arange(n) * 7 + 3) % 10).astype(np.int64),
    }
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


def train(laurelc_bin, model: Path, out: Path, data: Path, *flags: str) -> dict:
    report = out.with_suffix(".json")
    lt.run_laurelc(laurelc_bin, ["train", model, "--data", data, "-o", out, "--report-json", report,
                                 "-q", *flags])
    return json.loads(report.read_text())


def scores(model: Path, data: Path) -> tuple[float, float]:
    """onnxruntime's cross-entropy and accuracy of `model` on `data`, one example at a time."""
    d = np.load(data)
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    logits = np.concatenate([sess.run(None, {"input": d["input"][i:i + 1]})[0]
                             for i in range(len(d["target"]))]).astype(np.float64)
    z = logits - logits.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    t = d["target"]
    return float(-logp[np.arange(len(t)), t].mean()), float((logits.argmax(-1) == t).mean())


def test_the_trained_model_scores_on_onnxruntime_as_laurelc_reported(laurelc_bin, tmp_path):
    data = images(tmp_path / "train.npz")
    out = tmp_path / "trained.onnx"
    report = train(laurelc_bin, RESNET, out, data, "--eval", data, "--train", "all",
                   "--epochs", "8", "--lr", "1e-2")
    onnx.checker.check_model(onnx.load(out), full_check=True)
    epochs = report["run"]["epochs"]
    assert len(epochs) == 8 and report["run"]["stop"] == {"kind": "completed"}
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    loss, accuracy = scores(out, data)
    assert accuracy == epochs[-1]["eval"]["accuracy"]
    assert abs(loss - epochs[-1]["eval"]["loss"]) <= 1e-4 * max(1.0, loss)
    before, _ = scores(RESNET, data)
    assert loss < before, f"the trained model's loss {loss} is not below the original's {before}"
    # Frozen tensors are untouched; every trained one moved.
    original = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(RESNET).graph.initializer}
    trained = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(out).graph.initializer}
    names = {t["name"] for t in report["step"]["trainable"]}
    assert names and set(trained) == set(original)
    for name, value in trained.items():
        if name in names:
            assert not np.array_equal(value, original[name]), f"{name} did not move"
        else:
            assert np.array_equal(value, original[name]), f"frozen {name} changed"


def test_the_same_seed_gives_a_byte_identical_model_and_another_seed_another(laurelc_bin, tmp_path):
    data = images(tmp_path / "train.npz", n=6)
    flags = ["--train", "all", "--epochs", "2", "--optimizer", "sgd", "--schedule", "cosine",
             "--warmup", "2", "--clip-norm", "1", "--checkpoint-every", "0"]
    a, b, c = (tmp_path / f"{k}.onnx" for k in "abc")
    train(laurelc_bin, RESNET, a, data, *flags, "--seed", "3")
    train(laurelc_bin, RESNET, b, data, *flags, "--seed", "3")
    train(laurelc_bin, RESNET, c, data, *flags, "--seed", "4")
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_a_resumed_run_ends_in_the_same_model(laurelc_bin, tmp_path):
    data = images(tmp_path / "train.npz", n=6)
    flags = ["--train", "all", "--seed", "1", "--lr", "3e-3"]
    whole = tmp_path / "whole.onnx"
    train(laurelc_bin, RESNET, whole, data, *flags, "--epochs", "4", "--checkpoint-every", "0")
    half = tmp_path / "half.onnx"
    train(laurelc_bin, RESNET, half, data, *flags, "--epochs", "2")
    checkpoint = tmp_path / "half.onnx.ckpt.npz"
    assert checkpoint.is_file()
    resumed = tmp_path / "resumed.onnx"
    report = train(laurelc_bin, RESNET, resumed, data, *flags, "--epochs", "4", "--resume", checkpoint)
    assert [e["epoch"] for e in report["run"]["epochs"]] == [3, 4]
    assert resumed.read_bytes() == whole.read_bytes()


def test_laurel_fine_tuning_then_fusion_keeps_the_trained_function(laurelc_bin, tmp_path):
    data = images(tmp_path / "train.npz", n=16)
    augmented = tmp_path / "rw.onnx"
    lt.run_laurelc(laurelc_bin, [RESNET, "-o", augmented, "--variant", "rw", "-q"])
    trained = tmp_path / "rw.trained.onnx"
    report = train(laurelc_bin, augmented, trained, data, "--epochs", "4", "--lr", "5e-2")
    names = [t["name"] for t in report["step"]["trainable"]]
    assert names and all(n.startswith("laurel.") for n in names)
    start = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(augmented).graph.initializer}
    end = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(trained).graph.initializer}
    moved = [n for n in names if not np.allclose(start[n], end[n])]
    assert moved, "no LAuReL parameter moved from its identity initialisation"
    fused = tmp_path / "rw.fused.onnx"
    lt.run_laurelc(laurelc_bin, ["fuse", trained, "-o", fused, "-q"])
    assert scores(fused, data)[1] == scores(trained, data)[1]
    d = np.load(data)
    a = ort.InferenceSession(str(trained), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(fused), providers=["CPUExecutionProvider"])
    x = d["input"][:1]
    np.testing.assert_allclose(b.run(None, {"input": x})[0], a.run(None, {"input": x})[0],
                               rtol=1e-4, atol=1e-5)


BAD_DATA = {
    "no target": ({"target": None}, "no target key `target`"),
    "float class ids": ({"target": np.zeros(20, np.float32)}, "takes int64 class ids"),
    "class id out of range": ({"target": np.full(20, 10, np.int64)}, "class id 10"),
    "negative class id": ({"target": np.full(20, -1, np.int64)}, "class id -1"),
    "NaN input": ({"input": np.full((20, 3, 16, 16), np.nan, np.float32)}, "NaN or infinite"),
    "wrong example shape": ({"input": np.zeros((20, 3, 8, 8), np.float32)}, "examples of shape [3, 8, 8]"),
    "int images": ({"input": np.zeros((20, 3, 16, 16), np.int32)}, "takes f32"),
    "ragged columns": ({"target": np.zeros(19, np.int64)}, "has 19 examples"),
    "no input key": ({"input": None, "pixels": np.zeros((20, 3, 16, 16), np.float32)},
                     "no key `input` for model input `input`"),
}


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_data_that_does_not_fit_exits_2_naming_the_problem(laurelc_bin, tmp_path, case):
    overrides, message = BAD_DATA[case]
    data = images(tmp_path / "bad.npz", **overrides)
    out = tmp_path / "out.onnx"
    res = subprocess.run([str(laurelc_bin), "train", RESNET, "--data", data, "-o", out, "-q",
                          "--train", "all"], capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr, res.stderr
    assert "panicked" not in res.stderr
    assert not out.exists()


@pytest.mark.parametrize("batch, n, message", [
    ("4", 3, "a batch of 4 examples from a data set of 3"),
    ("2", 6, "has a fixed batch axis of 1, not --batch-size 2"),
])
def test_a_batch_the_data_or_the_model_cannot_give_exits_2(laurelc_bin, tmp_path, batch, n, message):
    out = tmp_path / "x.onnx"
    data = images(tmp_path / "d.npz", n=n)
    res = subprocess.run([str(laurelc_bin), "train", RESNET, "--data", data, "-o", out, "-q",
                          "--batch-size", batch], capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr, res.stderr


def test_a_diverging_run_exits_1_says_where_and_writes_no_model(laurelc_bin, tmp_path):
    data = images(tmp_path / "train.npz", n=4)
    out = tmp_path / "out.onnx"
    res = subprocess.run([str(laurelc_bin), "train", RESNET, "--data", data, "-o", out, "-q",
                          "--train", "all", "--optimizer", "sgd", "--lr", "1e20", "--epochs", "3"],
                         capture_output=True, text=True)
    assert res.returncode == 1, res.stderr
    assert "the loss became" in res.stderr and "at update" in res.stderr, res.stderr
    assert not out.exists()


def test_distillation_trains_on_a_teachers_probabilities_and_reports_its_own_loss(laurelc_bin, tmp_path):
    rng = np.random.default_rng(9)
    z = rng.standard_normal((12, 10)) * 2
    q = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    data = images(tmp_path / "kd.npz", n=12, target=q.astype(np.float32))
    out = tmp_path / "kd.onnx"
    report = train(laurelc_bin, RESNET, out, data, "--eval", data, "--train", "all", "--loss", "kd",
                   "--temperature", "2", "--epochs", "4", "--lr", "1e-2")
    epochs = report["run"]["epochs"]
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    assert epochs[-1]["accuracy"] is None and epochs[-1]["eval"]["accuracy"] is None
    # The evaluation's loss is the kd loss of the written model, by numpy.
    d = np.load(data)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    p = np.concatenate([sess.run(None, {"input": d["input"][i:i + 1]})[0] for i in range(12)])
    zt = p.astype(np.float64) / 2
    zt -= zt.max(-1, keepdims=True)
    logp = zt - np.log(np.exp(zt).sum(-1, keepdims=True))
    kd = float(-4 * (d["target"] * logp).sum(-1).mean())
    assert abs(epochs[-1]["eval"]["loss"] - kd) <= 1e-4 * max(1.0, kd), (epochs[-1]["eval"], kd)


@pytest.mark.parametrize("where", ["model", "data", "output"])
def test_a_checkpoint_never_overwrites_the_model_the_data_or_the_output(laurelc_bin, tmp_path, where):
    data = images(tmp_path / "d.npz", n=4)
    model = tmp_path / "m.onnx"
    model.write_bytes(RESNET.read_bytes())
    out = tmp_path / "out.onnx"
    target = {"model": model, "data": data, "output": out}[where]
    before = target.read_bytes() if target.exists() else None
    res = subprocess.run([str(laurelc_bin), "train", model, "--data", data, "-o", out, "-q", "--force",
                          "--checkpoint", target], capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    assert "the checkpoint would be written over" in res.stderr, res.stderr
    assert (target.read_bytes() if target.exists() else None) == before


def test_resuming_keeps_saving_to_the_checkpoint_it_resumed_from(laurelc_bin, tmp_path):
    data = images(tmp_path / "d.npz", n=4)
    out = tmp_path / "out.onnx"
    train(laurelc_bin, RESNET, out, data, "--train", "all", "--epochs", "1")
    checkpoint = tmp_path / "out.onnx.ckpt.npz"
    report = train(laurelc_bin, RESNET, out, data, "--train", "all", "--epochs", "2", "--resume", checkpoint)
    assert [e["epoch"] for e in report["run"]["epochs"]] == [2]
    assert report["checkpoint_epoch"] == 2


def test_an_autoencoder_reads_one_key_as_input_and_target(laurelc_bin, tmp_path):
    """Two feeds of one data key: the transformer's input is its own target."""
    rng = np.random.default_rng(2)
    data = tmp_path / "x.npz"
    np.savez(data, x=rng.standard_normal((6, 8, 16)).astype(np.float32))
    out = tmp_path / "ae.onnx"
    report = train(laurelc_bin, FIXTURES / "tiny_preln_transformer.onnx", out, data, "--train", "all",
                   "--loss", "mse", "--target", "x", "--epochs", "3", "--lr", "1e-2")
    epochs = report["run"]["epochs"]
    assert epochs[-1]["loss"] < epochs[0]["loss"], epochs


def test_a_finite_loss_with_an_infinite_gradient_stops_the_run(laurelc_bin, tmp_path):
    """y = √w at w = 0: the loss is finite, ∂y/∂w = ∞; the run must not write NaN weights."""
    from onnx import TensorProto, helper
    w = helper.make_tensor("w", TensorProto.FLOAT, [1, 3], [0.0, 1.0, 1.0])
    g = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["xw"]), helper.make_node("Sqrt", ["w"], ["s"]),
                           helper.make_node("Add", ["xw", "s"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w])
    model = tmp_path / "sqrt.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), model)
    data = tmp_path / "d.npz"
    np.savez(data, x=np.ones((2, 3), np.float32), target=np.zeros((2, 3), np.float32))
    out = tmp_path / "out.onnx"
    res = subprocess.run([str(laurelc_bin), "train", model, "--data", data, "-o", out, "-q", "--train", "all",
                          "--loss", "mse", "--epochs", "2"], capture_output=True, text=True)
    assert res.returncode == 1, res.stderr
    assert "at update 1" in res.stderr, res.stderr
    assert not out.exists()


def laurelc_train(laurelc_bin, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(laurelc_bin), "train", *map(str, args), "-q"], capture_output=True, text=True)


def test_an_input_the_model_does_not_have_exits_2(laurelc_bin, tmp_path):
    data = images(tmp_path / "d.npz", n=4)
    out = tmp_path / "out.onnx"
    res = laurelc_train(laurelc_bin, RESNET, "--data", data, "-o", out, "--input", "pixels=input")
    assert res.returncode == 2, res.stderr
    assert "the model has no input `pixels` (its inputs are `input`)" in res.stderr, res.stderr
    assert not out.exists()


@pytest.mark.parametrize("which", ["--data", "--eval"])
def test_the_trained_model_is_never_written_over_the_data(laurelc_bin, tmp_path, which):
    data = images(tmp_path / "d.npz", n=4)
    other = images(tmp_path / "e.npz", n=4, seed=1)
    over = data if which == "--data" else other
    before = over.read_bytes()
    res = laurelc_train(laurelc_bin, RESNET, "--data", data, "--eval", other, "-o", over, "--force",
                        "--epochs", "1")
    assert res.returncode == 2, res.stderr
    what = "training" if which == "--data" else "evaluation"
    assert f"the trained model would be written over the {what} data" in res.stderr, res.stderr
    assert over.read_bytes() == before


def test_kd_targets_that_are_not_probabilities_exit_2(laurelc_bin, tmp_path):
    logits = np.random.default_rng(3).standard_normal((6, 10)).astype(np.float32)
    data = images(tmp_path / "d.npz", n=6, target=logits)
    res = laurelc_train(laurelc_bin, RESNET, "--data", data, "-o", tmp_path / "o.onnx", "--loss", "kd",
                        "--train", "all")
    assert res.returncode == 2, res.stderr
    assert "row 0 is not a probability distribution" in res.stderr, res.stderr
    assert "not its logits" in res.stderr


def embedding_model(path: Path, rows: int = 5) -> Path:
    """ids [N, 3] → Cast → Gather(table [rows, 4]) → mean over tokens: a token-embedding model."""
    from onnx import TensorProto, helper
    table = helper.make_tensor("table", TensorProto.FLOAT, [rows, 4],
                               np.linspace(-1, 1, rows * 4).astype(np.float32).tolist())
    g = helper.make_graph([helper.make_node("Cast", ["ids"], ["ids64"], to=TensorProto.INT64),
                           helper.make_node("Gather", ["table", "ids64"], ["e"]),
                           helper.make_node("ReduceMean", ["e"], ["y"], axes=[1], keepdims=0)], "emb",
                          [helper.make_tensor_value_info("ids", TensorProto.INT32, ["N", 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], [table])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("bad_id", [5, -6])
def test_a_token_id_with_no_row_in_its_table_exits_2_naming_it(laurelc_bin, tmp_path, bad_id):
    model = embedding_model(tmp_path / "emb.onnx")
    ids = np.zeros((4, 3), np.int32)
    ids[2, 1] = bad_id
    data = tmp_path / "d.npz"
    np.savez(data, ids=ids, target=np.zeros((4, 4), np.float32))
    res = laurelc_train(laurelc_bin, model, "--data", data, "-o", tmp_path / "o.onnx", "--loss", "mse",
                        "--train", "all")
    assert res.returncode == 2, res.stderr
    assert f"`ids` has id {bad_id} at flat index 7, outside [-5, 5)" in res.stderr, res.stderr
    # In range (negative ids count from the end, as ONNX's Gather says), it trains.
    ids[2, 1] = -5
    np.savez(data, ids=ids, target=np.zeros((4, 4), np.float32))
    res = laurelc_train(laurelc_bin, model, "--data", data, "-o", tmp_path / "o.onnx", "--loss", "mse",
                        "--train", "all", "--epochs", "1")
    assert res.returncode == 0, res.stderr


# case: (flags of the first run, flags of the resumed run, the resumed run's data seed, message)
RESUMED = {
    "batch": ([], ["--batch-size", "3"], 2, "batch size 6, this run 3"),
    "seed": ([], ["--seed", "5"], 2, "seed 0, this run 5"),
    "rate": ([], ["--lr", "0.02"], 2, "learning rate 0.01, this run 0.02"),
    "data": ([], [], 1, "other data: 6 examples"),
    "cosine epochs": (["--schedule", "cosine"], ["--schedule", "cosine"], 2,
                      "epochs (its learning rate decays over them) 2, this run 3"),
}


def tokens(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    np.savez(path, ids=rng.integers(0, 5, (6, 3)).astype(np.int32),
             target=rng.standard_normal((6, 4)).astype(np.float32))
    return path


@pytest.mark.parametrize("case", sorted(RESUMED))
def test_resuming_under_other_flags_or_data_exits_2_naming_what_differs(laurelc_bin, tmp_path, case):
    first, second, data_seed, message = RESUMED[case]
    common = [embedding_model(tmp_path / "emb.onnx"), "--train", "all", "--loss", "mse"]
    lr = ["--lr", "0.01"] if "--lr" not in second else []
    res = laurelc_train(laurelc_bin, *common, "--lr", "0.01", "--data", tokens(tmp_path / "x.npz", 2),
                        "-o", tmp_path / "first.onnx", "--epochs", "2", *first)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "second.onnx"
    res = laurelc_train(laurelc_bin, *common, *lr, "--data", tokens(tmp_path / "y.npz", data_seed), "-o", out,
                        "--epochs", "3", "--resume", tmp_path / "first.onnx.ckpt.npz", *second)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr, res.stderr
    assert not out.exists()


def test_a_constant_rate_run_resumes_for_more_epochs(laurelc_bin, tmp_path):
    data = images(tmp_path / "d.npz", n=4)
    out = tmp_path / "out.onnx"
    train(laurelc_bin, RESNET, out, data, "--train", "all", "--epochs", "1")
    report = train(laurelc_bin, RESNET, tmp_path / "more.onnx", data, "--train", "all", "--epochs", "3",
                   "--resume", tmp_path / "out.onnx.ckpt.npz")
    assert [e["epoch"] for e in report["run"]["epochs"]] == [2, 3]


def slam_data(path: Path, n: int = 6, a_key: str = "slam_a", **overrides) -> Path:
    rng = np.random.default_rng(12)
    z = rng.standard_normal((n, 10)) * 2
    q = (np.exp(z) / np.exp(z).sum(-1, keepdims=True)).astype(np.float32)
    topk = np.zeros((n, 10), np.float32)
    for r in range(n):
        topk[r, np.argsort(-q[r])[:3]] = 1.0
    arrays = {"target": q, a_key: rng.uniform(0.3, 0.9, (n, 1)).astype(np.float32), "slam_topk": topk}
    arrays.update(overrides)
    return images(path, n=n, **arrays)


def test_slam_trains_with_its_columns_and_evaluates_without_them(laurelc_bin, tmp_path):
    data = slam_data(tmp_path / "s.npz", a_key="confidence")
    val = images(tmp_path / "v.npz", n=4, target=np.full((4, 10), 0.1, np.float32))
    report = train(laurelc_bin, RESNET, tmp_path / "s.onnx", data, "--eval", val, "--train", "all",
                   "--loss", "slam", "--input", "slam_a=confidence", "--epochs", "3", "--lr", "1e-2")
    epochs = report["run"]["epochs"]
    assert epochs[-1]["loss"] < epochs[0]["loss"], epochs
    assert epochs[-1]["eval"]["loss"] > 0


@pytest.mark.parametrize("override, message", [
    ({"slam_topk": None}, "no key `slam_topk` for the slam loss's input `slam_topk`"),
    ({"slam_a": np.full((6, 1), 1.5, np.float32)}, "`slam_a` has 1.5 at flat index 0; `slam_a` takes values in [0, 1]"),
    ({"slam_topk": np.full((6, 10), 0.5, np.float32)}, "`slam_topk` takes 0 or 1"),
    ({"slam_a": np.ones((6, 2), np.float32)}, "`slam_a` holds examples of shape [2]"),
])
def test_slam_columns_that_do_not_fit_exit_2(laurelc_bin, tmp_path, override, message):
    data = slam_data(tmp_path / "s.npz", **override)
    res = laurelc_train(laurelc_bin, RESNET, "--data", data, "-o", tmp_path / "o.onnx", "--train", "all",
                        "--loss", "slam")
    assert res.returncode == 2, res.stderr
    assert message in res.stderr, res.stderr
