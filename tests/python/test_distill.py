"""`laurelc distill`: the mechanics on scikit-learn's digits (the
experiment itself is bench/, with several seeds): every selection spends
exactly its budget on distinct examples, the teacher's labels are cached
and counted, the same seed gives the same student, and bad requests exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import laurel_testlib as lt

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import digits  # noqa: E402

CNN = ROOT / "fixtures" / "digits_cnn.onnx"


@pytest.fixture(scope="module")
def sets(cache_dir, tmp_path_factory):
    assert (cache_dir / "data" / "digits.csv.gz").is_file(), "run python3 fixtures/fetch.py digits"
    x, y = digits.load_digits()
    idx = np.random.default_rng(0).permutation(len(y))
    work = tmp_path_factory.mktemp("distill")
    parts = {"L": idx[:40], "U": idx[40:160], "V": idx[160:260]}
    paths = {}
    for name, rows in parts.items():
        paths[name] = work / f"{name}.npz"
        arrays = {"input": x[rows]}
        if name != "U":
            arrays["label"] = y[rows]
        np.savez(paths[name], **arrays)
    return paths


def distill(laurelc_bin, tmp_path, sets, *flags, out="s.onnx"):
    report = tmp_path / f"{out}.json"
    lt.run_laurelc(laurelc_bin, ["distill", CNN, "--teacher", CNN, "--unlabeled", sets["U"],
                                 "--labeled", sets["L"], "--validation", sets["V"], "-o", tmp_path / out,
                                 "--epochs", "1", "--report-json", report, "-q", *map(str, flags)])
    return json.loads(report.read_text())


@pytest.mark.parametrize("select", ["uniform", "margin", "entropy", "rad"])
def test_each_selection_spends_exactly_its_budget_on_distinct_examples(laurelc_bin, tmp_path, sets, select):
    r = distill(laurelc_bin, tmp_path, sets, "--loss", "kd", "--select", select, "--budget", 25, "--rounds", 3,
                "--no-cache")
    chosen = [row for rnd in r["rounds"] for row in rnd["chosen"]]
    assert [len(rnd["chosen"]) for rnd in r["rounds"]] == [9, 8, 8]
    assert len(set(chosen)) == 25 and all(0 <= c < 120 for c in chosen)
    assert r["teacher_queries"] == 25
    assert [rnd["examples"] for rnd in r["rounds"]] == [49, 57, 65]
    # Each round says where its time went: the measured parts lie within the
    # round (bookkeeping is the rest of it).
    for rnd in r["rounds"]:
        t = rnd["seconds"]
        measured = [t["teacher"], t["student"], t["selection"]]
        assert all(v >= 0 for v in measured + [t["bookkeeping"]]) and t["teacher"] > 0 and t["student"] > 0, t
        assert sum(measured) <= t["total"] + 1e-9, t
        if select == "uniform":
            assert t["selection"] < t["student"], t


def test_labels_are_cached_counted_and_the_same_seed_gives_the_same_student(laurelc_bin, tmp_path, sets):
    cache = tmp_path / "cache"
    first = distill(laurelc_bin, tmp_path, sets, "--loss", "slam", "--cache", cache, out="a.onnx")
    again = distill(laurelc_bin, tmp_path, sets, "--loss", "slam", "--cache", cache, out="b.onnx")
    assert first["teacher_queries"] == 120 and again["teacher_queries"] == 0
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    t = first["teacher"]
    assert 2 <= t["k"] <= 10 and len(t["top_k_accuracy"]) == 10
    assert all(a <= b for a, b in zip(t["a"]["y"], t["a"]["y"][1:])), "a(x) must be monotone"
    assert sum(b["count"] for b in t["reliability"]) == 100
    onnx.checker.check_model(onnx.load(tmp_path / "a.onnx"), full_check=True)


def test_hard_labels_query_nothing(laurelc_bin, tmp_path, sets):
    r = distill(laurelc_bin, tmp_path, sets, "--loss", "hard", "--no-cache")
    assert r["teacher_queries"] == 0 and r["rounds"][0]["examples"] == 40


def five_class_model(path: Path) -> Path:
    w = helper.make_tensor("w", TensorProto.FLOAT, [64, 5], np.zeros(320, np.float32).tolist())
    g = helper.make_graph([helper.make_node("Flatten", ["input"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["logits"])],
                          "five", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 8, 8])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 5])], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("case, message", [
    ("budget", "a budget of 500 examples from a pool of 120"),
    ("unlabeled validation", "no class ids under `label`"),
    ("classes", "the student predicts 5 classes, the teacher 10"),
    ("hard without labels", "the hard loss trains on the labeled set"),
    # The training flags are `train`'s, checked the same way.
    ("momentum", "--momentum 1.5: expected a number in [0, 1)"),
    # A 28×28 student for 8×8 examples.
    ("shapes", "which model input `input` does not take"),
])
def test_bad_requests_exit_2(laurelc_bin, tmp_path, sets, case, message):
    student, flags, validation = CNN, ["--loss", "kd"], sets["V"]
    labeled = ["--labeled", str(sets["L"])]
    if case == "budget":
        flags += ["--select", "rad", "--budget", "500"]
    elif case == "unlabeled validation":
        validation = sets["U"]
    elif case == "classes":
        student = five_class_model(tmp_path / "five.onnx")
    elif case == "shapes":
        student = ROOT / "fixtures" / "mnist_mlp.onnx"
    elif case == "momentum":
        flags += ["--optimizer", "sgd", "--momentum", "1.5"]
    else:
        flags, labeled = ["--loss", "hard"], []
    out = tmp_path / "o.onnx"
    res = subprocess.run([str(laurelc_bin), "distill", str(student), "--teacher", str(CNN), "--unlabeled",
                          str(sets["U"]), *labeled, "--validation", str(validation), "-o", str(out),
                          "--no-cache", "-q", *flags], capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr, res.stderr
    assert not out.exists()


def test_a_diverging_student_exits_1_and_writes_nothing(laurelc_bin, tmp_path, sets):
    out = tmp_path / "o.onnx"
    res = subprocess.run([str(laurelc_bin), "distill", str(CNN), "--teacher", str(CNN), "--unlabeled",
                          str(sets["U"]), "--labeled", str(sets["L"]), "--validation", str(sets["V"]),
                          "-o", str(out), "--no-cache", "--lr", "1e30", "--epochs", "3", "-q"],
                         capture_output=True, text=True)
    assert res.returncode == 1, res.stderr
    assert "round 1:" in res.stderr and "was not written" in res.stderr, res.stderr
    assert not out.exists()
