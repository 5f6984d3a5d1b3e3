#!/usr/bin/env python3
"""Benchmark: the cost of a training step against a forward pass, on tract and onnxruntime.

For each model:

    laurelc MODEL -o rw.onnx --variant rw                                 (LAuReL RW, identity init)
    laurelc grad rw.onnx -o step.laurel.onnx --train laurel [flags]       (b)
    laurelc grad rw.onnx -o step.all.onnx --train all [flags]             (c)
    laurelc bench MODEL rw.onnx step.laurel.onnx step.all.onnx --own-inputs --json
                                                                          (a: MODEL's forward)
    onnxruntime, one thread: MODEL, step.laurel.onnx, step.all.onnx, interleaved   (d)
    laurelc profile step.all.onnx --json                                  (where the time goes)

tract is single-threaded; onnxruntime gets intra_op_num_threads = inter_op_num_threads
= 1. Ratios are medians measured in the same run (interleaved rounds): (b)/(a) and
(c)/(a) on tract, and tract's step over onnxruntime's for the same file.

    .venv/bin/python bench/train_step.py [--laurelc target/release/laurelc] [--runs 20]
        [--models tiny_resnet,paraphrase_minilm_l3,light_resnet50] [--json out.json]

Models: the tiny ResNet fixture (`ce`); MiniLM-L3 at sequence 32 (`mse` on its
token embeddings, output 461); the ONNX suite's ResNet-50 at 224², its
`ConstantOfShape` weights replaced by random ones as in tests/python/test_grad.py.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
import laurel_testlib as lt  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from common import laurelc  # noqa: E402

MODELS = {
    "tiny_resnet": {"path": ROOT / "fixtures" / "tiny_resnet.onnx", "grad": ["--loss", "ce"], "size": []},
    "paraphrase_minilm_l3": {"cache": "paraphrase_minilm_l3", "grad": ["--loss", "mse", "--prediction", "461"],
                             "size": ["--dim", "sequence_length=32"]},
    "light_resnet50": {"cache": "light_resnet50", "grad": ["--loss", "ce"], "size": [], "random_fills": True},
}


def feeds_for(sess: ort.InferenceSession, seed: int, classes: int = 10) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        if "int64" in i.type:
            high = classes if i.name == "target" else 10
            out[i.name] = rng.integers(0, high, size=shape).astype(np.int64)
        elif "mask" in i.name:
            out[i.name] = np.ones(shape, np.float32)
        else:
            out[i.name] = rng.standard_normal(shape).astype(np.float32)
    return out


def ort_medians(paths: list[Path], runs: int, warmup: int, dims: dict) -> list[float]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sessions = []
    for p in paths:
        m = onnx.load(p)
        for i in m.graph.input:
            for d in i.type.tensor_type.shape.dim:
                if d.dim_param in dims:
                    d.dim_value = dims[d.dim_param]
        sessions.append(ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"]))
    feeds = [feeds_for(s, 0) for s in sessions]
    samples: list[list[float]] = [[] for _ in paths]
    for r in range(warmup + runs):
        for k, (s, f) in enumerate(zip(sessions, feeds)):
            t0 = time.perf_counter()
            s.run(None, f)
            dt = (time.perf_counter() - t0) * 1e3
            if r >= warmup:
                samples[k].append(dt)
    return [statistics.median(x) for x in samples]


def summarise(profile: dict) -> dict:
    """Where the step's time goes: tract ops by their share of the nodes' summed medians,
    and the slowest nodes."""
    by_op: dict[str, float] = {}
    for n in profile["nodes"]:
        by_op[n["op"]] = by_op.get(n["op"], 0.0) + n["median_us"]
    total = sum(by_op.values()) or 1.0
    ops = sorted(by_op.items(), key=lambda kv: -kv[1])[:8]
    nodes = sorted(profile["nodes"], key=lambda n: -n["median_us"])[:6]
    return {"total_us": profile["total_median_us"],
            "by_op": [(op, round(us, 1), round(us / total, 3)) for op, us in ops],
            "slowest": [(n["name"], n["op"], n["shape"], round(n["median_us"], 1)) for n in nodes]}


def one(binary: Path, name: str, spec: dict, work: Path, runs: int) -> dict:
    if "path" in spec:
        model = spec["path"]
    else:
        model = lt.default_cache_dir() / "models" / f"{spec['cache']}.onnx"
    if spec.get("random_fills"):
        import test_grad
        filled = work / f"{name}.random.onnx"
        onnx.save(test_grad.with_random_fills(onnx.load(model), seed=11), filled)
        model = filled
    rw = work / f"{name}.rw.onnx"
    laurelc(binary, model, "-o", rw, "--variant", "rw", "-q")
    steps = {}
    for train in ("laurel", "all"):
        steps[train] = work / f"{name}.step.{train}.onnx"
        report = json.loads(laurelc(binary, "grad", rw, "-o", steps[train], "--train", train, "--json",
                                    *spec["grad"], *spec["size"]))
        steps[train + "_report"] = report
    bench = json.loads(laurelc(binary, "bench", model, rw, steps["laurel"], steps["all"], "--own-inputs",
                               "--runs", runs, "--warmup", 3, "--json", "-q", *spec["size"]))
    tract = [m["median_ms"] for m in bench["models"]]
    ratios = [m["round_ratio"] for m in bench["models"]]
    dims = {}
    for flag, value in zip(spec["size"][::2], spec["size"][1::2]):
        if flag == "--dim":
            k, v = value.split("=")
            dims[k] = int(v)
    onnxrt = ort_medians([model, steps["laurel"], steps["all"]], runs, 3, dims)
    profile = json.loads(laurelc(binary, "profile", steps["all"], "--runs", 5, "--top", 8, "--json", "-q"))
    return {
        "tract_ms": {"forward": tract[0], "rw_forward": tract[1], "step_laurel": tract[2], "step_all": tract[3]},
        "tract_ratio_to_forward": {"rw_forward": ratios[1], "step_laurel": ratios[2], "step_all": ratios[3]},
        "ort_ms": {"forward": onnxrt[0], "step_laurel": onnxrt[1], "step_all": onnxrt[2]},
        "tract_over_ort": {"forward": tract[0] / onnxrt[0], "step_laurel": tract[2] / onnxrt[1],
                           "step_all": tract[3] / onnxrt[2]},
        "trainable": {k: len(steps[k + "_report"]["trainable"]) for k in ("laurel", "all")},
        "backward_ops": {k: steps[k + "_report"]["backward_ops"] for k in ("laurel", "all")},
        "profile": summarise(profile),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--laurelc", type=Path, default=ROOT / "target" / "release" / "laurelc")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            results[name] = one(args.laurelc, name, MODELS[name], Path(tmp), args.runs)
            print(name, json.dumps({k: v for k, v in results[name].items() if k != "profile"}),
                  file=sys.stderr, flush=True)
    text = json.dumps(results, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
