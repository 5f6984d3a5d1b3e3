#!/usr/bin/env python3
"""Experiment: SLaM and RAD on scikit-learn's digits, with `laurelc distill`.

Per seed and labeled fraction f, the 1,797 digits are split into test (300),
validation (200), labeled (f of the rest) and an unlabeled pool (the rest).

    teacher  = laurelc train digits_cnn.onnx on the labeled set (noisy: few labels)
    students = laurelc distill digits_cnn.onnx --teacher teacher ... with
               hard (labeled only) | kd | slam              on the whole pool
               kd with uniform | margin | rad selection     at each budget (2 rounds)

Every run trains for about the same number of updates (--updates), whatever
its data set's size, so that a method is not favoured by longer training.
Test accuracy by onnxruntime. Prints a JSON report, a markdown table (mean ±
std over seeds), and with --figure writes accuracy against budget (PNG).

    .venv/bin/python bench/distill.py [--laurelc target/release/laurelc] [--seeds 5]
        [--fractions 0.05,0.2] [--budgets 0.1,0.3] [--updates 300] [--json out.json]
        [--figure docs/distill.png]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import laurelc  # noqa: E402
from digits import CNN, load_digits  # noqa: E402

BATCH = 16


def epochs_for(examples: int, updates: int) -> int:
    return max(1, math.ceil(updates / max(1, examples // BATCH)))


def test_accuracy(model: Path, x: np.ndarray, y: np.ndarray) -> float:
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return float((sess.run(None, {"input": x})[0].argmax(-1) == y).mean())


def one(binary: Path, seed: int, fraction: float, budgets: list[float], updates: int, work: Path) -> dict:
    x, y = load_digits()
    order = np.random.default_rng(seed).permutation(len(y))
    test, val, rest = order[:300], order[300:500], order[500:]
    n_lab = max(BATCH, int(round(fraction * len(rest))))
    lab, pool = rest[:n_lab], rest[n_lab:]
    files = {}
    for name, idx, labels in [("L", lab, True), ("U", pool, False), ("V", val, True)]:
        files[name] = work / f"{name}.npz"
        arrays = {"input": x[idx]}
        if labels:
            arrays["label"] = y[idx]
        np.savez(files[name], **arrays)
    files["Lt"] = work / "Lt.npz"
    np.savez(files["Lt"], input=x[lab], target=y[lab])
    teacher = work / "teacher.onnx"
    laurelc(binary, "train", CNN, "--data", files["Lt"], "-o", teacher, "--train", "all", "--lr", "3e-3",
            "--batch-size", BATCH, "--epochs", epochs_for(n_lab, updates), "--seed", seed,
            "--checkpoint-every", 0, "-q")
    result = {"seed": seed, "fraction": fraction, "labeled": int(n_lab), "pool": int(len(pool)),
              "teacher_test": test_accuracy(teacher, x[test], y[test]), "runs": {}}

    def student(name: str, examples: int, *flags) -> None:
        out = work / f"{name}.onnx"
        report = work / f"{name}.json"
        laurelc(binary, "distill", CNN, "--teacher", teacher, "--unlabeled", files["U"], "--labeled",
                files["L"], "--validation", files["V"], "-o", out, "--lr", "3e-3", "--batch-size", BATCH,
                "--epochs", epochs_for(examples, updates), "--seed", seed, "--report-json", report,
                "--no-cache", "-q", *flags)
        r = json.loads(report.read_text())
        result["runs"][name] = {"test": test_accuracy(out, x[test], y[test]),
                                "queries": r["teacher_queries"], "k": r["teacher"]["k"],
                                "teacher_validation": r["teacher"]["validation_accuracy"]}

    student("hard", n_lab, "--loss", "hard")
    student("kd", n_lab + len(pool), "--loss", "kd")
    student("slam", n_lab + len(pool), "--loss", "slam")
    for b in budgets:
        budget = int(round(b * len(pool)))
        for select in ("uniform", "margin", "rad"):
            # The epochs of the last round, which trains on everything queried.
            student(f"{select}@{b}", n_lab + budget, "--loss", "kd", "--select", select,
                    "--budget", budget, "--rounds", 2)
    return result


def summary(results: list[dict]) -> dict:
    table: dict = {}
    for r in results:
        row = table.setdefault(r["fraction"], {"teacher": []})
        row["teacher"].append(r["teacher_test"])
        for name, run in r["runs"].items():
            row.setdefault(name, []).append(run["test"])
    out = {}
    for fraction, row in table.items():
        out[fraction] = {name: {"mean": statistics.mean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0,
                                "n": len(v)} for name, v in row.items()}
    return out


def markdown(s: dict) -> str:
    names = list(next(iter(s.values())).keys())
    lines = ["| method | " + " | ".join(f"f = {f}" for f in s) + " |",
             "|---|" + "---|" * len(s)]
    for name in names:
        cells = [f"{100 * s[f][name]['mean']:.1f} ± {100 * s[f][name]['std']:.1f}" for f in s]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(s: dict, budgets: list[float], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(s), figsize=(5 * len(s), 4), squeeze=False)
    for ax, (fraction, row) in zip(axes[0], s.items()):
        for select in ("uniform", "margin", "rad"):
            means = [100 * row[f"{select}@{b}"]["mean"] for b in budgets]
            stds = [100 * row[f"{select}@{b}"]["std"] for b in budgets]
            ax.errorbar([100 * b for b in budgets], means, yerr=stds, marker="o", capsize=3, label=select)
        ax.axhline(100 * row["kd"]["mean"], color="gray", ls="--", label="kd, whole pool")
        ax.axhline(100 * row["hard"]["mean"], color="gray", ls=":", label="labeled only")
        ax.set_title(f"digits, {100 * fraction:.0f}% labeled")
        ax.set_xlabel("budget (% of the pool)")
        ax.set_ylabel("test accuracy (%)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--laurelc", type=Path, default=ROOT / "target" / "release" / "laurelc")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--fractions", default="0.05,0.2")
    ap.add_argument("--budgets", default="0.1,0.3")
    ap.add_argument("--updates", type=int, default=300)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--figure", type=Path)
    args = ap.parse_args()
    fractions = [float(f) for f in args.fractions.split(",")]
    budgets = [float(b) for b in args.budgets.split(",")]
    results = []
    for fraction in fractions:
        for seed in range(args.seeds):
            with tempfile.TemporaryDirectory() as tmp:
                r = one(args.laurelc, seed, fraction, budgets, args.updates, Path(tmp))
            print(json.dumps({k: v for k, v in r.items()}), file=sys.stderr, flush=True)
            results.append(r)
    s = summary(results)
    if args.json:
        args.json.write_text(json.dumps({"results": results, "summary": s}, indent=2) + "\n")
    print(markdown(s))
    if args.figure:
        figure(s, budgets, args.figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
