#!/usr/bin/env python3
"""Calibration: what one op costs on tract, for the constants of `FuseCost`.

`FuseCost` (passes/src/cost.rs) prices an op as

    overhead + per_element * elements(result) + per_flop * FLOPs       (µs; multiply-add = 2)

and the fused `ai.laurel::LaurelResidual` over n inputs (docs/laurel-op.md) as
`overhead + per_element * elements * max(n, 2) / 2`. This script measures those
constants on this machine, with the release `laurelc bench` (tract, interleaved
rounds, medians):

    .venv/bin/python bench/calibrate.py [--runs 30] [--warmup 5] [--out results.json]
                                        [--only KIND,...] [--quick] [--laurelc PATH]

How:

* Every measured model is a chain of K identical steps on one f32 tensor of a
  fixed shape, written with the `onnx` package (opset 17, plus `ai.laurel` 1 for
  the custom op). Each configuration is built at K in {2, Kmax/2, Kmax}, Kmax
  chosen (8 to 256, a multiple of 4) so that the longest model takes about
  `--target-ms` (default 1 ms) by a first-guess cost. All the models that share
  inputs run in one `laurelc bench ... --json` call (interleaved rounds, medians of
  `--runs` timed rounds after `--warmup`), and the time of one step is the
  least-squares slope of the three medians against K: fixed per-model costs
  (the plan's setup, the last op's output, the chain's two ends) cancel. K starts
  at 2, not 0, so that the chain's ends are the same in the three models.
* Standalone ops (the ones fitted). tract fuses runs of elementwise binary ops
  whose accumulator has a single consumer into one in-place pass
  (`OptBinChain`, up to 16 steps), so these chains give every intermediate two
  consumers, as a residual stream's state has:
  - `add`: y[k+1] = y[k] + y[k-1] (Fibonacci; out of place, `OptBinUnicast`);
  - `mul+add`: y[k+1] = y[k] + c[k] * y[k] (a scalar `OptMulByScalar` then an
    `Add`: two ops a step; c alternates -0.2, 0.25 so that values stay bounded);
  - `matmul`: y[k+1] = y[k] @ W[k], [N, D] x [D, D], distinct weights per step;
  - `conv1x1`, `conv3x3`: y[k+1] = Conv(y[k], W[k]), [1, C, H, W], C -> C,
    padding 1 for 3x3, no bias, distinct weights;
  - `concat`: y[k+1] = Concat(y[k], w[k]) on axis 0 of a 1-D tensor of E
    elements, w[k] a small initializer (E / (4 Kmax) elements), so the op is a
    copy of about E elements (its mean over the chain is reported).
* tract-fused chains (reported, not fitted): `mul-chain` y[k+1] = c[k] * y[k]
  and `add-const-chain` y[k+1] = y[k] + W[k] (W[k] an initializer of the same
  shape) become `OptBinChain` passes: the price of one more elementwise op
  inside a chain.
* `LaurelResidual` with n in {2, 3, 5} inputs: y[k+1] = LR(y[k], h1, ...,
  h[n-1]), the h's model inputs of y's shape, in four forms:
  - `lr`: the custom op with every coefficient != 1 (laurel-runtime's `Auto`
    then runs its one-pass kernel, in place on y[k]);
  - `dec`: its standard decomposition, n scalar `Mul`s and n - 1 `Add`s;
  - `lr-ones`: the custom op without coefficients (`Auto` expands it to `Add`s);
  - `dec-ones`: the n - 1 `Add`s alone.
  Coefficients vary with k (no two steps are the same computation).
* The fit: weighted least squares (relative error: each configuration's time is
  weighted by 1 / its measured time, so that 1 µs ops count as much as 5 ms
  ones) of the standalone ops' µs per step against (ops, elements, FLOPs) per
  step, with non-negative coefficients (every subset of the three constants is
  tried; the best non-negative one wins). The plain unweighted fit is printed
  too. The `LaurelResidual` cost is then fitted, with the fitted overhead, as
  overhead' + per_element * elements * (a + b * n), and compared with the
  current max(n, 2) / 2.
* Inputs are `laurelc bench`'s seeded standard normal values. The machine is
  shared and noisy: absolute times move between runs by several per cent;
  medians and slopes over three chain lengths are what make the numbers usable.
  The JSON (`--out`) holds every median, the per-model IQR and the fits.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[1]
LAUREL_DOMAIN = "ai.laurel"
OPSET = 17

# First-guess constants (passes/src/cost.rs), only used to size the chains.
GUESS = (2.0, 0.0005, 0.00005)
FITTED_KINDS = ("add", "mul+add", "matmul", "conv1x1", "conv3x3", "concat")


# --------------------------------------------------------------------------
# Model construction
# --------------------------------------------------------------------------

def f32(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))


def make_model(nodes, inputs, output, out_shape, inits, laurel=False) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "calibrate",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, out_shape)],
        initializer=[numpy_helper.from_array(f32(v), name=n) for n, v in inits],
    )
    opsets = [helper.make_opsetid("", OPSET)]
    if laurel:
        opsets.append(helper.make_opsetid(LAUREL_DOMAIN, 1))
    model = helper.make_model(graph, opset_imports=opsets, producer_name="bench/calibrate.py")
    model.ir_version = 8
    if not laurel:
        onnx.checker.check_model(model)
    return model


@dataclass
class Config:
    """One chain: `build(K)` gives the model of K steps; every step has the
    same `ops` standalone-op count, `elements` (result elements summed over
    the step's ops) and `flops`."""
    kind: str
    label: str
    group: str            # configurations of one group share inputs: one bench call
    ops: int
    elements: float
    flops: float
    build: object
    guess_us: float = 0.0
    kmax: int = 8
    ks: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def size(self, target_ms: float):
        self.guess_us = self.ops * GUESS[0] + GUESS[1] * self.elements + GUESS[2] * self.flops
        k = int(round(target_ms * 1e3 / max(self.guess_us, 1e-3) / 4)) * 4
        self.kmax = min(max(k, 8), 256)
        self.ks = [2, self.kmax // 2, self.kmax]


def add_fib(e: int) -> Config:
    def build(k):
        nodes, prev, cur = [], "x", "x"
        for i in range(k):
            out = f"y{i + 1}"
            nodes.append(helper.make_node("Add", [cur, prev], [out]))
            prev, cur = cur, out
        return make_model(nodes, [("x", [e])], cur, [e], [])
    return Config("add", f"Add y[k]+y[k-1] [{e}]", f"e{e}", 1, e, 0, build)


SCALES = (-0.2, 0.25)  # (1 - 0.2) * (1 + 0.25) = 1


def mul_add(e: int) -> Config:
    def build(k):
        nodes, inits, cur = [], [], "x"
        for i in range(k):
            c = f"c{i}"
            inits.append((c, np.array(SCALES[i % 2] * (1 + 1e-4 * i), np.float32)))
            nodes.append(helper.make_node("Mul", [cur, c], [f"z{i}"]))
            nodes.append(helper.make_node("Add", [cur, f"z{i}"], [f"y{i + 1}"]))
            cur = f"y{i + 1}"
        return make_model(nodes, [("x", [e])], cur, [e], inits)
    return Config("mul+add", f"y + c*y (Mul scalar, Add) [{e}]", f"e{e}", 2, 2 * e, 0, build)


def mul_chain(e: int) -> Config:
    def build(k):
        nodes, inits, cur = [], [], "x"
        for i in range(k):
            c = f"c{i}"
            inits.append((c, np.array((0.8, 1.25)[i % 2] * (1 + 1e-4 * i), np.float32)))
            nodes.append(helper.make_node("Mul", [cur, c], [f"y{i + 1}"]))
            cur = f"y{i + 1}"
        return make_model(nodes, [("x", [e])], cur, [e], inits)
    return Config("mul-chain", f"c*y chain (tract-fused) [{e}]", f"e{e}", 1, e, 0, build)


def add_const_chain(e: int) -> Config:
    def build(k):
        rng = np.random.default_rng(1)
        nodes, inits, cur = [], [], "x"
        for i in range(k):
            w = f"w{i}"
            inits.append((w, rng.standard_normal(e) * 0.01))
            nodes.append(helper.make_node("Add", [cur, w], [f"y{i + 1}"]))
            cur = f"y{i + 1}"
        return make_model(nodes, [("x", [e])], cur, [e], inits)
    return Config("add-const-chain", f"y + W chain (tract-fused) [{e}]", f"e{e}", 1, e, 0, build)


def concat(e: int, target_ms: float) -> Config:
    # sized first (the piece depends on Kmax), then built
    cfg = Config("concat", f"Concat(y, w) 1-D [{e}]", f"e{e}", 1, e, 0, None)
    cfg.size(target_ms)
    piece = max(1, e // (4 * cfg.kmax))

    def build(k):
        nodes, inits, cur = [], [], "x"
        for i in range(k):
            w = f"w{i}"
            inits.append((w, np.full(piece, 0.5, np.float32)))
            nodes.append(helper.make_node("Concat", [cur, w], [f"y{i + 1}"], axis=0))
            cur = f"y{i + 1}"
        return make_model(nodes, [("x", [e])], cur, [e + k * piece], inits)
    cfg.build = build
    # mean result elements over the steps of the longest chain
    cfg.elements = e + piece * (cfg.kmax + 1) / 2
    cfg.extra = {"piece": piece}
    return cfg


def matmul(n: int, d: int) -> Config:
    def build(k):
        rng = np.random.default_rng(2)
        nodes, inits, cur = [], [], "x"
        for i in range(k):
            w = f"w{i}"
            inits.append((w, rng.standard_normal((d, d)) / np.sqrt(d)))
            nodes.append(helper.make_node("MatMul", [cur, w], [f"y{i + 1}"]))
            cur = f"y{i + 1}"
        return make_model(nodes, [("x", [n, d])], cur, [n, d], inits)
    return Config("matmul", f"MatMul [{n},{d}]x[{d},{d}]", f"mm{n}x{d}", 1, n * d, 2.0 * n * d * d, build)


def conv(c: int, hw: int, ks: int) -> Config:
    def build(k):
        rng = np.random.default_rng(3)
        nodes, inits, cur = [], [], "x"
        pad = ks // 2
        for i in range(k):
            w = f"w{i}"
            inits.append((w, rng.standard_normal((c, c, ks, ks)) / np.sqrt(c * ks * ks)))
            nodes.append(helper.make_node("Conv", [cur, w], [f"y{i + 1}"], kernel_shape=[ks, ks],
                                          pads=[pad] * 4))
            cur = f"y{i + 1}"
        shape = [1, c, hw, hw]
        return make_model(nodes, [("x", shape)], cur, shape, inits)
    e = c * hw * hw
    return Config(f"conv{ks}x{ks}", f"Conv{ks}x{ks} [1,{c},{hw},{hw}]", f"conv{ks}c{c}hw{hw}", 1, e,
                  2.0 * e * c * ks * ks, build)


def lr_coeffs(n: int, k: int) -> list[float]:
    # c0 = 0.5 keeps the state bounded; every coefficient != 1 (Auto -> kernel)
    return [0.5 * (1 + 1e-4 * k)] + [0.3 + 0.05 * i + 1e-4 * k for i in range(1, n)]


def laurel(form: str, n: int, e: int) -> Config:
    hs = [f"h{i}" for i in range(1, n)]
    inputs = [("x", [e])] + [(h, [e]) for h in hs]

    def build(k):
        nodes, inits, cur = [], [], "x"
        for i in range(k):
            out = f"y{i + 1}"
            terms = [cur, *hs]
            cs = lr_coeffs(n, i)
            if form == "lr":
                nodes.append(helper.make_node("LaurelResidual", terms, [out], domain=LAUREL_DOMAIN,
                                              coefficients=cs))
            elif form == "lr-ones":
                nodes.append(helper.make_node("LaurelResidual", terms, [out], domain=LAUREL_DOMAIN))
            else:
                ps = []
                for j, t in enumerate(terms):
                    if form == "dec":
                        c = f"c{i}_{j}"
                        inits.append((c, np.array(cs[j], np.float32)))
                        nodes.append(helper.make_node("Mul", [t, c], [f"p{i}_{j}"]))
                        ps.append(f"p{i}_{j}")
                    else:
                        ps.append(t)
                acc = ps[0]
                for j, p in enumerate(ps[1:], 1):
                    o = out if j == n - 1 else f"s{i}_{j}"
                    nodes.append(helper.make_node("Add", [acc, p], [o]))
                    acc = o
            cur = out
        return make_model(nodes, inputs, cur, [e], inits, laurel=form.startswith("lr"))

    ops = {"lr": 1, "lr-ones": 1, "dec": 2 * n - 1, "dec-ones": n - 1}[form]
    return Config(f"laurel:{form}", f"{form} n={n} [{e}]", f"lr{n}e{e}", ops, ops * e, 0, build,
                  extra={"n": n, "form": form, "e": e})


def configs(quick: bool, target_ms: float) -> list[Config]:
    es = [1024, 16384, 262144, 1048576]
    cs: list[Config] = []
    for e in es:
        cs += [add_fib(e), mul_add(e), mul_chain(e)]
        if e <= 262144:
            cs.append(add_const_chain(e))
    cs += [matmul(n, d) for n, d in ([(16, 64), (128, 128), (512, 64), (256, 256), (64, 512), (256, 512)]
                                     if not quick else [(16, 64), (128, 128)])]
    cs += [conv(8, 64, 1), conv(64, 32, 1), conv(64, 56, 1), conv(8, 32, 3), conv(64, 28, 3)]
    for c in cs:
        c.size(target_ms)
    cs += [concat(e, target_ms) for e in es]
    for n in (2, 3, 5):
        for e in ([16384, 262144, 1048576] if not quick else [16384]):
            for form in ("lr", "dec", "lr-ones", "dec-ones"):
                c = laurel(form, n, e)
                c.size(target_ms)
                cs.append(c)
    if quick:
        cs = [c for c in cs if c.kind.startswith("laurel") or c.elements <= 20000 or c.kind == "matmul"]
    return cs


# --------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------

def run_group(exe: str, tmp: Path, group: str, cfgs: list[Config], runs: int, warmup: int, seed: int) -> dict:
    paths = []
    for ci, c in enumerate(cfgs):
        for k in c.ks:
            p = tmp / f"{group}.{ci}.k{k}.onnx"
            onnx.save(c.build(k), str(p))
            paths.append(p)
    cmd = [exe, "bench", *map(str, paths), "--runs", str(runs), "--warmup", str(warmup), "--seed", str(seed),
           "--rotate", "--json"]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        sys.exit(f"laurelc bench failed for group {group} (exit {res.returncode}):\n{res.stderr}")
    report = json.loads(res.stdout)
    by_path = {m["label"]: m for m in report["models"]}
    out = {}
    for ci, c in enumerate(cfgs):
        meds, iqrs = [], []
        for k in c.ks:
            m = by_path[str(tmp / f"{group}.{ci}.k{k}.onnx")]
            meds.append(m["median_ms"])
            iqrs.append(m["iqr_ms"])
        ks = np.array(c.ks, float)
        slope, icpt = np.polyfit(ks, np.array(meds), 1)
        # linearity: the middle point's distance from the line through the ends
        mid = meds[0] + (meds[2] - meds[0]) * (ks[1] - ks[0]) / (ks[2] - ks[0])
        out[c.label] = {
            "kind": c.kind, "label": c.label, "ks": c.ks, "median_ms": meds, "iqr_ms": iqrs,
            "us_per_step": slope * 1e3, "intercept_ms": icpt,
            "ends_us_per_step": (meds[2] - meds[0]) / (ks[2] - ks[0]) * 1e3,
            "nonlinearity": (meds[1] - mid) / max(meds[2], 1e-9),
            "ops": c.ops, "elements": c.elements, "flops": c.flops, **c.extra,
        }
    print(f"  {group}: {len(paths)} models, {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return out


# --------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------

def nn_lstsq(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """argmin ||w (x b - y)|| over b >= 0, by trying every subset of columns."""
    best, best_err = np.zeros(x.shape[1]), np.inf
    for r in range(1, x.shape[1] + 1):
        for cols in itertools.combinations(range(x.shape[1]), r):
            b_sub, *_ = np.linalg.lstsq(x[:, cols] * w[:, None], y * w, rcond=None)
            if (b_sub < 0).any():
                continue
            b = np.zeros(x.shape[1])
            b[list(cols)] = b_sub
            err = np.sum((w * (x @ b - y)) ** 2)
            if err < best_err:
                best, best_err = b, err
    return best


def fit(rows: list[dict], weighted: bool) -> np.ndarray:
    x = np.array([[r["ops"], r["elements"], r["flops"]] for r in rows], float)
    y = np.array([r["us_per_step"] for r in rows], float)
    w = 1.0 / np.maximum(y, 1e-3) if weighted else np.ones_like(y)
    return nn_lstsq(x, y, w)


def predict(b, ops, elements, flops) -> float:
    return b[0] * ops + b[1] * elements + b[2] * flops


def fmt_e(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:.3g}M"
    if x >= 1e3:
        return f"{x / 1e3:.3g}k"
    return f"{x:.3g}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=30, help="timed rounds per bench call (default 30)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target-ms", type=float, default=1.0, help="first-guess time of the longest chain")
    ap.add_argument("--only", help="comma-separated kinds (add, mul+add, mul-chain, add-const-chain, matmul, "
                                   "conv1x1, conv3x3, concat, laurel)")
    ap.add_argument("--quick", action="store_true", help="fewer, smaller configurations (a smoke test)")
    ap.add_argument("--laurelc", default=str(REPO / "target" / "release" / "laurelc"))
    ap.add_argument("--out", type=Path, help="write every measurement and the fits as JSON")
    args = ap.parse_args()
    exe = args.laurelc
    if not os.access(exe, os.X_OK):
        sys.exit(f"{exe} is missing: cargo build --release --bins")
    cfgs = configs(args.quick, args.target_ms)
    if args.only:
        only = set(args.only.split(","))
        cfgs = [c for c in cfgs if c.kind in only or c.kind.split(":")[0] in only]
    groups: dict[str, list[Config]] = {}
    for c in cfgs:
        groups.setdefault(c.group, []).append(c)
    print(f"{len(cfgs)} configurations, {sum(len(c.ks) for c in cfgs)} models, {len(groups)} bench calls",
          file=sys.stderr, flush=True)
    started = time.perf_counter()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        for g, gc in groups.items():
            results.update(run_group(exe, Path(tmp_name), g, gc, args.runs, args.warmup, args.seed))
    elapsed = time.perf_counter() - started
    rows = [results[c.label] for c in cfgs]

    fitted = [r for r in rows if r["kind"] in FITTED_KINDS]
    b = fit(fitted, weighted=True) if fitted else np.zeros(3)
    b_plain = fit(fitted, weighted=False) if fitted else np.zeros(3)
    for r in rows:
        r["predicted_us_per_step"] = predict(b, r["ops"], r["elements"], r["flops"])
        r["first_guess_us_per_step"] = predict(GUESS, r["ops"], r["elements"], r["flops"])

    print(f"\n`laurelc bench`, {args.runs} timed rounds after {args.warmup} warm-up rounds (rotating order), "
          f"medians; K in {{2, Kmax/2, Kmax}}; µs/step is the least-squares slope of the medians against K. "
          f"Total {elapsed / 60:.1f} min.\n")
    print("| kind | configuration | ops/step | elements/op | FLOPs/op | Kmax | median ms (K=2, Kmax/2, Kmax) "
          "| measured µs/op | predicted µs/op | pred/meas | first guess µs/op | nonlinearity |")
    print("|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        ops = r["ops"]
        print(f"| {r['kind']} | {r['label']} | {ops} | {fmt_e(r['elements'] / ops)} | {fmt_e(r['flops'] / ops)} "
              f"| {r['ks'][-1]} | {', '.join(f'{m:.3f}' for m in r['median_ms'])} "
              f"| {r['us_per_step'] / ops:.3f} | {r['predicted_us_per_step'] / ops:.3f} "
              f"| {r['predicted_us_per_step'] / max(r['us_per_step'], 1e-9):.2f} "
              f"| {r['first_guess_us_per_step'] / ops:.3f} | {r['nonlinearity']:+.2f} |")

    summary = {"weighted": b.tolist(), "unweighted": b_plain.tolist()}
    if fitted:
        print("\nFit over the standalone kinds ({}), µs: time/step = overhead·ops + per_element·elements + "
              "per_flop·FLOPs, non-negative:\n".format(", ".join(FITTED_KINDS)))
        print("| fit | overhead µs | per_element µs | per_flop µs | median abs rel. residual | max abs rel. residual |")
        print("|---|---:|---:|---:|---:|---:|")
        y = np.array([r["us_per_step"] for r in fitted])
        x = np.array([[r["ops"], r["elements"], r["flops"]] for r in fitted])
        for name, bb in (("relative (weights 1/t)", b), ("absolute (unweighted)", b_plain), ("first guess", GUESS)):
            rel = (x @ np.array(bb) - y) / y
            print(f"| {name} | {bb[0]:.4g} | {bb[1]:.4g} | {bb[2]:.4g} | {np.median(np.abs(rel)):.2f} "
                  f"| {np.max(np.abs(rel)):.2f} |")
        print("\nResiduals by kind (predicted / measured, relative fit): ")
        kinds = {}
        for r in fitted:
            kinds.setdefault(r["kind"], []).append(r["predicted_us_per_step"] / r["us_per_step"])
        for k, v in kinds.items():
            print(f"- {k}: " + ", ".join(f"{q:.2f}" for q in v))
        # per-kind refits: per_element of elementwise ops, per_flop of compute ops
        per_kind = {}
        for k in kinds:
            sub = [r for r in fitted if r["kind"] == k]
            cols = [0, 1] if k in ("add", "mul+add", "concat") else [0, 2]
            xs = np.array([[r["ops"], r["elements"], r["flops"]] for r in sub])[:, cols]
            ys = np.array([r["us_per_step"] for r in sub])
            bk = nn_lstsq(xs, ys, 1.0 / ys)
            per_kind[k] = dict(zip(["overhead", "per_element" if 1 in cols else "per_flop"], bk.tolist()))
        print("\nPer-kind fits (relative, two constants each): "
              + "; ".join(f"{k}: " + ", ".join(f"{n} {v:.4g}" for n, v in d.items()) for k, d in per_kind.items()))
        summary["per_kind"] = per_kind

    lr_rows = [r for r in rows if r["kind"].startswith("laurel:")]
    if lr_rows:
        print("\nLaurelResidual against its decomposition (µs per step, one step = one LaurelResidual or its "
              "decomposition):\n")
        print("| n | elements | lr (kernel) | dec (n Mul + n-1 Add) | lr / dec | lr-ones | dec-ones (n-1 Add) "
              "| lr-ones / dec-ones | FuseCost now (fitted consts) | FuseCost dec (fitted consts) |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        table = {}
        for r in lr_rows:
            table.setdefault((r["n"], r["e"]), {})[r["form"]] = r["us_per_step"]
        for (n, e), t in sorted(table.items()):
            now = b[0] + b[1] * e * max(n, 2) / 2
            dec = (2 * n - 1) * b[0] + b[1] * e * (2 * n - 1)
            g = lambda f: t.get(f, float("nan"))  # noqa: E731
            print(f"| {n} | {fmt_e(e)} | {g('lr'):.2f} | {g('dec'):.2f} | {g('lr') / g('dec'):.2f} | {g('lr-ones'):.2f} "
                  f"| {g('dec-ones'):.2f} | {g('lr-ones') / g('dec-ones'):.2f} | {now:.2f} | {dec:.2f} |")
        kern = [r for r in lr_rows if r["form"] == "lr"]
        if kern and b[1] > 0:
            # t = overhead' + per_element * e * (a + b n): fit (o', a, b) with per_element fixed
            x = np.array([[1.0, b[1] * r["e"], b[1] * r["e"] * r["n"]] for r in kern])
            y = np.array([r["us_per_step"] for r in kern])
            o_ab = nn_lstsq(x, y, 1.0 / y)
            pred = x @ o_ab
            now = np.array([b[0] + b[1] * r["e"] * max(r["n"], 2) / 2 for r in kern])
            print(f"\nLaurelResidual kernel fit: t ≈ {o_ab[0]:.3g} + per_element·elements·({o_ab[1]:.3g} + "
                  f"{o_ab[2]:.3g}·n) µs (per_element = {b[1]:.4g}); pred/meas "
                  + ", ".join(f"n={r['n']} {fmt_e(r['e'])}: {p / m:.2f}" for r, p, m in zip(kern, pred, y))
                  + "\nCurrent expression overhead + per_element·elements·max(n,2)/2 with the fitted constants: "
                  "pred/meas " + ", ".join(f"n={r['n']} {fmt_e(r['e'])}: {p / m:.2f}" for r, p, m in zip(kern, now, y)))
            summary["laurel_kernel"] = {"overhead": o_ab[0], "a": o_ab[1], "b": o_ab[2]}

    print(f"\nFitted constants (relative fit): overhead = {b[0]:.4g} µs, per_element = {b[1]:.4g} µs, "
          f"per_flop = {b[2]:.4g} µs")
    if args.out:
        args.out.write_text(json.dumps({
            "args": {k: str(v) for k, v in vars(args).items()},
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                        "loadavg": os.getloadavg()},
            "elapsed_s": elapsed, "rows": rows, "fit": summary,
        }, indent=1))


if __name__ == "__main__":
    main()
