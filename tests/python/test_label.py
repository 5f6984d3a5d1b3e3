"""`laurelc label`: a teacher's soft labels beside the examples, equal to
onnxruntime's softmax of the teacher's logits, cached so that a second run
queries nothing, and ready for `laurelc train --loss kd`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import laurel_testlib as lt

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
TEACHER = FIXTURES / "tiny_resnet.onnx"


def pool(path: Path, n: int = 7, **extra) -> Path:
    rng = np.random.default_rng(4)
    np.savez(path, input=(0.5 * rng.standard_normal((n, 3, 16, 16))).astype(np.float32), **extra)
    return path


def label(laurelc_bin, *args) -> dict:
    res = lt.run_laurelc(laurelc_bin, ["label", *map(str, args), "--json", "-q"])
    return json.loads(res.stdout)


def test_labels_are_the_teachers_softmax_at_the_temperature(laurelc_bin, tmp_path):
    data = pool(tmp_path / "u.npz")
    out = tmp_path / "u.kd.npz"
    report = label(laurelc_bin, TEACHER, "--data", data, "-o", out, "--temperature", "2",
                   "--cache", tmp_path / "cache")
    assert (report["examples"], report["classes"], report["queries"]) == (7, 10, 7)
    got = np.load(out)
    assert sorted(got.files) == ["input", "target"]
    np.testing.assert_array_equal(got["input"], np.load(data)["input"])
    sess = ort.InferenceSession(str(TEACHER), providers=["CPUExecutionProvider"])
    z = np.concatenate([sess.run(None, {"input": got["input"][i:i + 1]})[0] for i in range(7)]) / 2.0
    z = z.astype(np.float64) - z.max(-1, keepdims=True)
    want = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    np.testing.assert_allclose(got["target"], want, rtol=1e-5, atol=1e-6)


def test_a_second_run_queries_nothing_and_writes_the_same_bytes(laurelc_bin, tmp_path):
    data = pool(tmp_path / "u.npz")
    cache = tmp_path / "cache"
    first = label(laurelc_bin, TEACHER, "--data", data, "-o", tmp_path / "a.npz", "--cache", cache)
    second = label(laurelc_bin, TEACHER, "--data", data, "-o", tmp_path / "b.npz", "--cache", cache)
    assert (first["queries"], second["queries"]) == (7, 0)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    uncached = label(laurelc_bin, TEACHER, "--data", data, "-o", tmp_path / "c.npz", "--no-cache")
    assert uncached["queries"] == 7 and uncached["cache_file"] is None
    hotter = label(laurelc_bin, TEACHER, "--data", data, "-o", tmp_path / "d.npz", "--cache", cache,
                   "--temperature", "3")
    assert hotter["queries"] == 7


def test_the_labelled_data_train_a_student_by_distillation(laurelc_bin, tmp_path):
    data = pool(tmp_path / "u.npz", n=6)
    labelled = tmp_path / "u.kd.npz"
    label(laurelc_bin, TEACHER, "--data", data, "-o", labelled, "--no-cache")
    student = tmp_path / "student.onnx"
    res = lt.run_laurelc(laurelc_bin, ["train", TEACHER, "--data", labelled, "-o", student, "--train", "all",
                                       "--loss", "kd", "--epochs", "2", "-q"])
    assert student.is_file(), res.stderr


@pytest.mark.parametrize("case, message", [
    ("no input key", "no key `input` for model input `input`"),
    ("over the data", "would be written over the unlabeled data"),
    ("key taken", "already hold a column `target`"),
])
def test_bad_requests_exit_2_naming_the_problem(laurelc_bin, tmp_path, case, message):
    data = tmp_path / "u.npz"
    if case == "no input key":
        np.savez(data, pixels=np.zeros((2, 3, 16, 16), np.float32))
    elif case == "key taken":
        pool(data, target=np.zeros(7, np.int64))
    else:
        pool(data)
    out = data if case == "over the data" else tmp_path / "out.npz"
    before = data.read_bytes()
    res = subprocess.run([str(laurelc_bin), "label", str(TEACHER), "--data", str(data), "-o", str(out),
                          "--no-cache", "-q"], capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr, res.stderr
    assert data.read_bytes() == before
