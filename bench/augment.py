#!/usr/bin/env python3
"""Benchmark: augmentation time against a plain import + export of the same file.

Interleaves (A B C … A B C …) `laurelc MODEL -o OUT --no-passes` and
`laurelc MODEL -o OUT --variant V` for each variant, each in its own process,
and reports medians and the ratio to the plain round trip.

    .venv/bin/python bench/augment.py [--reps N] [--laurelc target/release/laurelc] [--variants rw,lr] [MODEL]

MODEL defaults to paraphrase_minilm_l3 from $LAURELC_CACHE.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd):
    start = time.perf_counter()
    res = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    if res.returncode != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{res.stderr.decode()}")
    return time.perf_counter() - start


def main():
    cache = Path(os.environ.get("LAURELC_CACHE", Path.home() / ".cache" / "laurelc"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", type=Path, default=cache / "models" / "paraphrase_minilm_l3.onnx")
    ap.add_argument("--reps", type=int, default=11)
    ap.add_argument("--laurelc", default="target/release/laurelc")
    ap.add_argument("--variants", default="rw,lr")
    args = ap.parse_args()
    variants = args.variants.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        runs = {"plain": []} | {v: [] for v in variants}
        for _ in range(args.reps):
            runs["plain"].append(timed([args.laurelc, str(args.model), "-o", f"{tmp}/p.onnx", "--no-passes"]))
            for v in variants:
                runs[v].append(timed([args.laurelc, str(args.model), "-o", f"{tmp}/{v}.onnx", "--variant", v]))
    base = statistics.median(runs["plain"])
    print(f"{args.model.name}: medians of {args.reps}, interleaved")
    print(f"{'run':<12} {'median s':>9} {'vs plain':>9}")
    for name, times in runs.items():
        m = statistics.median(times)
        print(f"{name:<12} {m:>9.3f} {m / base:>9.2f}")


if __name__ == "__main__":
    main()
