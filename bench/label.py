#!/usr/bin/env python3
"""Benchmark: teacher labelling throughput, `laurelc label` on tract against
onnxruntime on the same teacher, examples per second.

The pool is scikit-learn's digits repeated to --examples rows; the teacher
is fixtures/digits_cnn.onnx (or --teacher). Each repetition times one whole
`laurelc label --no-cache` process (load, batches of --batch, softmax,
writing the .npz) and, in the same round, onnxruntime with one thread
creating its session and running the same batches with a numpy softmax.
Medians of --reps interleaved rounds.

    .venv/bin/python bench/label.py [--laurelc target/release/laurelc] [--examples 50000]
        [--batch 64] [--reps 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import laurelc  # noqa: E402
from digits import CNN, ROOT, load_digits  # noqa: E402


def ort_label(model: Path, x: np.ndarray, batch: int) -> float:
    start = time.perf_counter()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    out = []
    for i in range(0, len(x), batch):
        z = sess.run(None, {name: x[i:i + batch]})[0].astype(np.float64)
        z -= z.max(-1, keepdims=True)
        e = np.exp(z)
        out.append((e / e.sum(-1, keepdims=True)).astype(np.float32))
    np.concatenate(out)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--laurelc", type=Path, default=ROOT / "target" / "release" / "laurelc")
    ap.add_argument("--teacher", type=Path, default=CNN)
    ap.add_argument("--examples", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    x, _ = load_digits()
    x = np.resize(x, (args.examples, *x.shape[1:])).astype(np.float32)
    tract, onnxrt = [], []
    with tempfile.TemporaryDirectory() as tmp:
        pool = Path(tmp) / "u.npz"
        np.savez(pool, input=x)
        for _ in range(args.reps):
            start = time.perf_counter()
            laurelc(args.laurelc, "label", args.teacher, "--data", pool, "-o", Path(tmp) / "l.npz",
                    "--batch-size", args.batch, "--no-cache", "-q")
            tract.append(time.perf_counter() - start)
            onnxrt.append(ort_label(args.teacher, x, args.batch))
    t, o = statistics.median(tract), statistics.median(onnxrt)
    print(f"{args.examples} examples, batches of {args.batch}, medians of {args.reps}:")
    print(f"  laurelc label (tract): {t:.3f} s, {args.examples / t:,.0f} examples/s")
    print(f"  onnxruntime, 1 thread: {o:.3f} s, {args.examples / o:,.0f} examples/s")
    print(f"  tract / onnxruntime time: {t / o:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
