#!/usr/bin/env python3
"""How laurelc's stages grow with graph size (issue 15: 10,000-node graphs).

    .venv/bin/python bench/graph_scale.py [--laurelc target/release/laurelc] [--blocks 200 400 800]

For each kind of bench/chains.py (resnet, preln) and each block count, it
generates the chain in a temporary directory and times, with
``/usr/bin/time -f "%e %M"`` (wall seconds, peak RSS), one run of each stage:
the ``--no-passes`` round trip, ``inspect`` (residual analysis), RW
augmentation (``--variant rw --init random --seed 1``) and ``fuse`` of the
augmented model. It prints a markdown table: ops in the baseline, then
seconds and MB per stage, and the fused model's op count against the
baseline's. Nothing is written to the repository.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import onnx

REPO = Path(__file__).resolve().parents[1]


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one run of `cmd`, which must succeed."""
    out = subprocess.run(["/usr/bin/time", "-f", "%e %M", *cmd], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    seconds, kb = out.stderr.strip().splitlines()[-1].split()
    return float(seconds), int(kb) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--laurelc", default=str(REPO / "target" / "release" / "laurelc"))
    ap.add_argument("--blocks", type=int, nargs="+", default=[200, 400, 800])
    args = ap.parse_args()
    print("| kind | blocks | ops | round trip | inspect | augment (rw) | fuse | fused ops |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        for kind in ("resnet", "preln"):
            for n in args.blocks:
                base = t / f"{kind}{n}.onnx"
                subprocess.run([sys.executable, str(REPO / "bench" / "chains.py"), "--kind", kind,
                                "--blocks", str(n), "--out", str(base)], check=True, capture_output=True)
                ops = len(onnx.load(str(base)).graph.node)
                rt = timed([args.laurelc, str(base), "-o", str(t / "rt.onnx"), "--no-passes", "-q"])
                ins = timed([args.laurelc, "inspect", str(base)])
                aug = timed([args.laurelc, str(base), "-o", str(t / "rw.onnx"), "--variant", "rw",
                             "--init", "random", "--seed", "1", "-q"])
                fus = timed([args.laurelc, "fuse", str(t / "rw.onnx"), "-o", str(t / "f.onnx"), "-q"])
                fused = len(onnx.load(str(t / "f.onnx")).graph.node)
                cell = lambda m: f"{m[0]:.2f} s, {m[1]:.0f} MB"  # noqa: E731
                print(f"| {kind} | {n} | {ops} | {cell(rt)} | {cell(ins)} | {cell(aug)} | {cell(fus)} "
                      f"| {fused} ({'=' if fused == ops else '≠'} baseline) |", flush=True)


if __name__ == "__main__":
    main()
