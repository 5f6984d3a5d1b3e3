#!/usr/bin/env python3
"""Benchmark: where a RAD round's time goes, from `laurelc distill`'s report.

The pool is scikit-learn's digits repeated to --pool rows (with a little
noise so that rows differ); the teacher is fixtures/digits_cnn.onnx trained
by `laurelc train` on 300 labeled digits (so that RAD's adversary `m` is a
real teacher's error), the student fixtures/digits_mlp.onnx. Each repetition runs
`laurelc distill --select rad --budget B --rounds R --no-cache` and reads
each round's `seconds` (teacher runs, student runs, selection,
bookkeeping) from `--report-json`. The share outside teacher and student
runs is (selection + bookkeeping) / round; medians over rounds and --reps.

    .venv/bin/python bench/rad_round.py [--laurelc target/release/laurelc] [--pool 50000]
        [--budget 0.05] [--rounds 3] [--epochs 2] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import laurelc  # noqa: E402
from digits import CNN, ROOT, load_digits  # noqa: E402

MLP = ROOT / "fixtures" / "digits_mlp.onnx"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--laurelc", type=Path, default=ROOT / "target" / "release" / "laurelc")
    ap.add_argument("--pool", type=int, default=50_000)
    ap.add_argument("--budget", type=float, default=0.05)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    x, y = load_digits()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    val, lab, tl = order[:200], order[200:300], order[300:600]
    pool = np.resize(x, (args.pool, *x.shape[1:])).astype(np.float32)
    pool += rng.normal(0, 0.05, pool.shape).astype(np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        np.savez(work / "U.npz", input=pool)
        np.savez(work / "L.npz", input=x[lab], label=y[lab])
        np.savez(work / "V.npz", input=x[val], label=y[val])
        np.savez(work / "T.npz", input=x[tl], target=y[tl])
        teacher = work / "teacher.onnx"
        laurelc(args.laurelc, "train", CNN, "--data", work / "T.npz", "-o", teacher, "--train", "all",
                "--lr", "3e-3", "--batch-size", 16, "--epochs", 20, "--checkpoint-every", 0, "-q")
        for _ in range(args.reps):
            laurelc(args.laurelc, "distill", MLP, "--teacher", teacher, "--unlabeled", work / "U.npz",
                    "--labeled", work / "L.npz", "--validation", work / "V.npz", "--loss", "kd",
                    "--select", "rad", "--budget", int(args.budget * args.pool), "--rounds", args.rounds,
                    "--epochs", args.epochs, "--no-cache", "--force", "-q", "-o", work / "s.onnx",
                    "--report-json", work / "r.json")
            rows += [r["seconds"] for r in json.loads((work / "r.json").read_text())["rounds"]]
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    share = statistics.median((r["selection"] + r["bookkeeping"]) / r["total"] for r in rows)
    print(f"pool {args.pool}, budget {args.budget:.0%} in {args.rounds} rounds, {args.epochs} epochs per round; "
          f"medians of {len(rows)} rounds")
    print("| round | teacher | student | selection | bookkeeping | outside share |")
    print("|---|---|---|---|---|---|")
    print(f"| {med['total']:.3f} s | {med['teacher']:.3f} s | {med['student']:.3f} s | "
          f"{med['selection'] * 1e3:.1f} ms | {med['bookkeeping'] * 1e3:.1f} ms | {100 * share:.2f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
