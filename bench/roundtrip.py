#!/usr/bin/env python3
"""Benchmark: laurelc's import+export against Python `onnx.load` + `onnx.save`.

Runs the two interleaved (A B A B ...) in separate processes, so that each
process's peak RSS is its own (read with os.wait4), and reports medians.

    .venv/bin/python bench/roundtrip.py [--reps N] [--laurelc target/release/laurelc] [MODEL ...]

Needs GNU time (apt-get install time) for peak RSS. Models default to paraphrase_minilm_l3 and ppocrv4_det from $LAURELC_CACHE
(fixtures/fetch.py fills it). Build the binary first: cargo build --release.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


TIME = "/usr/bin/time"


def measure(cmd):
    """Wall time and peak RSS of one run of `cmd`.

    The peak RSS comes from GNU time (Debian package `time`), not from this
    process's wait4: on Linux a child's ru_maxrss starts from the RSS of the
    process it was (v)forked from, and exec keeps that high-water mark, so any
    child of this Python process reports at least Python's own RSS. GNU time
    is small, and reports the RSS of the child it forks itself.
    """
    with tempfile.NamedTemporaryFile("r") as rss:
        start = time.perf_counter()
        proc = subprocess.run([TIME, "-q", "-f", "%M", "-o", rss.name, *cmd],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"command failed: {' '.join(cmd)}\n{proc.stderr.decode()}")
        return wall, int(rss.read().split()[-1]) * 1024  # %M is in KiB


def main():
    cache = Path(os.environ.get("LAURELC_CACHE", Path.home() / ".cache" / "laurelc"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", type=Path)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--laurelc", default="target/release/laurelc")
    args = ap.parse_args()
    if not os.access(TIME, os.X_OK):
        sys.exit(f"{TIME} is missing: apt-get install time")
    models = args.models or [cache / "models" / "paraphrase_minilm_l3.onnx", cache / "models" / "ppocrv4_det.onnx"]
    py = [sys.executable, "-c", "import onnx, sys; onnx.save(onnx.load(sys.argv[1]), sys.argv[2])"]
    # The processes' fixed footprint, to tell it from what the model costs.
    base_ours = statistics.median(measure([args.laurelc, "--version"])[1] for _ in range(3))
    base_py = statistics.median(measure([sys.executable, "-c", "import onnx"])[1] for _ in range(3))
    print(f"process baselines: laurelc --version {base_ours / 1e6:.1f} MB, python -c 'import onnx' {base_py / 1e6:.1f} MB")
    print(f"{'model':<28} {'MB':>7} {'laurelc s':>10} {'python s':>10} {'time ratio':>10} "
          f"{'laurelc MB':>11} {'python MB':>10} {'RSS/file':>9} {'(RSS-base)/file':>16}")
    with tempfile.TemporaryDirectory() as tmp:
        for m in models:
            size = m.stat().st_size
            ours, theirs = [], []
            for _ in range(args.reps):
                ours.append(measure([args.laurelc, str(m), "-o", f"{tmp}/a.onnx", "--no-passes"]))
                theirs.append(measure(py + [str(m), f"{tmp}/b.onnx"]))
            t_ours = statistics.median(w for w, _ in ours)
            t_theirs = statistics.median(w for w, _ in theirs)
            r_ours = statistics.median(r for _, r in ours)
            r_theirs = statistics.median(r for _, r in theirs)
            print(f"{m.stem:<28} {size / 1e6:>7.1f} {t_ours:>10.3f} {t_theirs:>10.3f} {t_ours / t_theirs:>10.2f} "
                  f"{r_ours / 1e6:>11.1f} {r_theirs / 1e6:>10.1f} {r_ours / size:>9.2f} "
                  f"{(r_ours - base_ours) / size:>16.2f}")


if __name__ == "__main__":
    main()
