"""The corpus of real third-party models (`fixtures/models.json`'s
`corpus`, issue 14): models from PyPI wheels, written by other people and
exporters (PyTorch 1.7 to 2.8, Paddle2ONNX, Caffe2, tf2onnx, onnxruntime's
quantizer), kept out of the heavier suites. For each:

* `inspect` finds exactly the pinned number of residuals (the manifest says
  which adds they are and why the others are not);
* RW at random initialisation (`--init random`), then `fuse`: the fused
  model keeps the augmented model's function on tract (`laurelc check`) and
  on onnxruntime (basic optimisations, rtol 1e-4, atol 1e-5), and has
  exactly the pinned ops beyond the plain model fused the same way (and
  lacks exactly the pinned ones), each with the reason in the manifest.
  A pin that changes, either way, is a change in what fusion does on a
  real model, to be explained where it is pinned.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnx
import pytest

import laurel_testlib as lt

CORPUS = {e["name"]: e for e in lt.load_manifest().get("corpus", [])}


def path(cache_dir, name):
    p = cache_dir / "models" / f"{name}.onnx"
    assert p.is_file(), f"{p} is missing: run python3 fixtures/fetch.py"
    return p


def run_flags(entry) -> list[str]:
    run = entry.get("run", {})
    flags = [f"--dim={k}={v}" for k, v in run.get("dims", {}).items()]
    flags += [f"--shape={k}={'x'.join(map(str, v))}" for k, v in run.get("shapes", {}).items()]
    return flags


def feeds(model_path, entry) -> dict[str, np.ndarray]:
    run = entry.get("run", {})
    overrides = {k: lt.InputOverride(shape=tuple(v)) for k, v in run.get("shapes", {}).items()}
    return lt.make_inputs(lt.load_model_proto(model_path), seed=lt.DEFAULT_SEED,
                          overrides=overrides, dim_values=run.get("dims"))


def ort_basic(model_path, inputs):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, inputs)))


def ops(p) -> Counter:
    return Counter(n.op_type for n in onnx.load(str(p)).graph.node)


def test_the_corpus_is_wide():
    """At least 8 models, from at least 4 exporters."""
    assert len(CORPUS) >= 8
    assert len({e["package"] for e in CORPUS.values()}) >= 6


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_residuals_are_the_pinned_ones(name, laurelc_bin, cache_dir):
    entry = CORPUS[name]
    out = lt.run_laurelc(laurelc_bin, ["inspect", path(cache_dir, name), "--json"])
    report = json.loads(out.stdout)
    assert len(report["residuals"]) == entry["residuals"]["count"], [r["node"] for r in report["residuals"]]
    assert report["undecided"] == []


@pytest.mark.parametrize("name", sorted(n for n, e in CORPUS.items() if "rw_fused" in e))
def test_rw_fuses_to_the_pinned_op_counts_and_keeps_the_function(name, laurelc_bin, cache_dir, tmp_path):
    entry, src = CORPUS[name], path(cache_dir, name)
    aug, fused, plain = tmp_path / "rw.onnx", tmp_path / "rw.fused.onnx", tmp_path / "plain.fused.onnx"
    lt.run_laurelc(laurelc_bin, [src, "-o", aug, "--variant", "rw", "--init", "random", "--seed", "3", "-q"])
    lt.run_laurelc(laurelc_bin, ["fuse", src, "-o", plain, "-q"])
    explain = lt.run_laurelc(laurelc_bin, ["fuse", aug, "-o", fused, "--explain", "-q"]).stdout
    assert "stopped: saturated" in explain, explain
    pin = entry["rw_fused"]
    assert dict(ops(fused) - ops(plain)) == pin["extra"], explain
    assert dict(ops(plain) - ops(fused)) == pin["missing"], explain
    lt.run_laurelc(laurelc_bin, ["check", aug, fused, *run_flags(entry)])
    inputs = feeds(src, entry)
    want, got = ort_basic(aug, inputs), ort_basic(fused, inputs)
    problems = {k: p for k, w in want.items() if (p := lt.compare_close(got[k], w, rtol=1e-4, atol=1e-5))}
    assert not problems, problems
