#!/usr/bin/env python3
"""Benchmark: `laurelc fuse` time and peak memory (issue 14's benchmark).

Two tables:

1. The decomposed-LayerNorm GPT of `fixtures/laurel_torch.py` (pre-LN, d = 64,
   4 heads, opset 16, RW written in PyTorch as `a·f + b·x`) at 4, 12 and 24
   blocks, exported by `torch.onnx.export`, plain and RW: fuse time, peak RSS,
   e-graph size, and the fused RW model's op counts against the fused plain
   model's.
2. Every corpus model with residuals (committed fixtures and cached real
   models), augmented with RW at random init (`--variant rw --init random
   --seed 1`): the augmentation's time against laurelc's plain round trip
   (`--no-passes`), and the fusion's time and peak RSS.

Times are medians of `--reps` runs of the whole process (import, pass, export);
peak RSS is the child's `ru_maxrss` (the largest over the runs). The machine is
shared: ratios against the round trip in the same run mean more than the
absolute times.

    /usr/bin/python3 bench/fuse_scale.py [--reps 3] [--blocks 4,12,24] [--out results.json]

Needs Debian's python3-torch (the GPT export) and a release build
(`cargo build --release --bins`); the real models come from
`python3 fixtures/fetch.py`.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "fixtures"))

CORPUS = ["tiny_resnet", "tiny_preln_transformer", "tiny_postln_bert", "mobilenetv2_block",
          "digits_cnn", "unet_add_skips", "trap_attention_bias",
          "torch_gpt_plain_op16", "torch_resnet_plain_op17",
          "paraphrase_minilm_l3", "ppocrv4_det", "ppocr_mobile_v2_cls", "light_resnet50"]


def run(cmd: list[str], reps: int) -> dict:
    """Median wall time of `reps` runs, the largest peak RSS, the last stdout.
    RSS is GNU time's `%M` of the exec'd binary: the `ru_maxrss` of a child
    forked from this process would count the parent's memory at the fork
    (a Python with torch loaded, about 250 MB)."""
    walls, peak, out = [], 0, ""
    with tempfile.NamedTemporaryFile("r") as rss:
        for _ in range(reps):
            start = time.perf_counter()
            proc = subprocess.run(["/usr/bin/time", "-o", rss.name, "-f", "%M", *map(str, cmd)],
                                  capture_output=True, text=True, check=False)
            walls.append(time.perf_counter() - start)
            if proc.returncode != 0:
                raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{proc.stderr}")
            rss.seek(0)
            peak, out = max(peak, int(rss.read().split()[-1]) // 1024), proc.stdout
    return {"seconds": statistics.median(walls), "samples": walls, "peak_rss_mb": peak, "stdout": out}


def explain_facts(text: str) -> dict:
    facts = {}
    if m := re.search(r"at most (\d+) classes, (\d+) nodes; (\d+) iterations; stopped: ([^\n]+)", text):
        facts.update(classes=int(m[1]), nodes=int(m[2]), iterations=int(m[3]), stop=m[4])
    ops = {}
    block = text.split("ops by type (before -> after):", 1)
    if len(block) == 2:
        for line in block[1].splitlines():
            if m := re.match(r"\s+(\S+)\s+(\d+) -> (\d+)", line):
                ops[m[1]] = int(m[3])
    facts["ops_after"] = {k: v for k, v in ops.items() if v}
    return facts


def model_path(name: str) -> Path:
    local = REPO / "fixtures" / f"{name}.onnx"
    if local.exists():
        return local
    cache = Path(os.environ.get("LAURELC_CACHE", Path.home() / ".cache" / "laurelc"))
    return cache / "models" / f"{name}.onnx"


def gpt_table(binary: str, blocks: list[int], reps: int, tmp: Path) -> list[dict]:
    import torch
    import laurel_torch as lt

    rows = []
    for n in blocks:
        row = {"blocks": n}
        for variant in ("plain", "rw"):
            model = lt.build("gpt", variant, blocks=n, d=64, heads=4)
            src = tmp / f"gpt{n}_{variant}.onnx"
            with torch.no_grad():
                torch.onnx.export(model, torch.zeros(1, 16, 64), str(src), opset_version=16,
                                  input_names=["x"], output_names=["y"],
                                  dynamic_axes={"x": {0: "batch", 1: "seq"}, "y": {0: "batch", 1: "seq"}})
            r = run([binary, "fuse", str(src), "-o", str(tmp / f"gpt{n}_{variant}.fused.onnx"), "--explain", "-q"],
                    reps)
            row[variant] = {"seconds": r["seconds"], "samples": r["samples"], "peak_rss_mb": r["peak_rss_mb"],
                            "bytes": src.stat().st_size, **explain_facts(r["stdout"])}
        row["rw_ops_equal_plain"] = row["rw"]["ops_after"] == row["plain"]["ops_after"]
        rows.append(row)
        print(f"gpt {n} blocks: rw fuse {row['rw']['seconds']:.2f} s {row['rw']['peak_rss_mb']} MB, "
              f"ops equal plain: {row['rw_ops_equal_plain']}", file=sys.stderr)
    return rows


def corpus_table(binary: str, reps: int, tmp: Path) -> list[dict]:
    rows = []
    for name in CORPUS:
        src = model_path(name)
        if not src.exists():
            raise SystemExit(f"{src} missing: run python3 fixtures/fetch.py")
        plain = run([binary, str(src), "-o", str(tmp / f"{name}.rt.onnx"), "--no-passes", "-q"], reps)
        aug = tmp / f"{name}.rw.onnx"
        augment = run([binary, str(src), "-o", str(aug), "--variant", "rw", "--init", "random", "--seed", "1",
                       "-q"], reps)
        fused = run([binary, "fuse", str(aug), "-o", str(tmp / f"{name}.fused.onnx"), "--explain", "-q"], reps)
        base_fused = run([binary, "fuse", str(src), "-o", str(tmp / f"{name}.base.fused.onnx"), "--explain",
                          "-q"], 1)
        f = explain_facts(fused["stdout"])
        b = explain_facts(base_fused["stdout"])
        extra = {k: v - b["ops_after"].get(k, 0) for k, v in f["ops_after"].items()
                 if v != b["ops_after"].get(k, 0)}
        extra.update({k: -v for k, v in b["ops_after"].items() if k not in f["ops_after"]})
        rows.append({"model": name, "bytes": src.stat().st_size,
                     "roundtrip_seconds": plain["seconds"], "augment_seconds": augment["seconds"],
                     "fuse_seconds": fused["seconds"], "fuse_peak_rss_mb": fused["peak_rss_mb"],
                     "ops_beyond_fused_baseline": extra, **{k: f[k] for k in ("nodes", "stop") if k in f}})
        print(f"{name}: fuse {fused['seconds']:.2f} s {fused['peak_rss_mb']} MB, extra {extra}", file=sys.stderr)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--blocks", default="4,12,24")
    ap.add_argument("--binary", default=str(REPO / "target" / "release" / "laurelc"))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        result = {"gpt": gpt_table(args.binary, [int(b) for b in args.blocks.split(",")], args.reps, tmp),
                  "corpus": corpus_table(args.binary, args.reps, tmp)}
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
