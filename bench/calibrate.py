#!/usr/bin/env python3
"""Calibration: what one op costs on tract, for the constants of `FuseCost`.

`FuseCost` (passes/src/cost.rs) prices an op as

    overhead + per_element * elements(result) + per_flop * FLOPs       (µs; multiply-add = 2)

and the fused `ai.laurel::LaurelResidual` over n inputs (docs/laurel-op.md) as
`overhead + per_element * elements * max(n, 2) / 2`. This script measures those
constants on this machine, with the release `laurelc bench` (tract, interleaved
rounds, medians):

    .venv/bin/python bench/calibrate.py [--runs 30] [--warmup 5] [--repeats 5] [--out results.json]
                                        [--target-ms 3] [--only KIND,...] [--quick]
                                        [--system-malloc] [--laurelc PATH]

How:

* Every measured model is a chain of K identical steps on one f32 tensor of a
  fixed shape, written with the `onnx` package (opset 17, plus `ai.laurel` 1 for
  the custom op). Each configuration is built at K in {2, Kmax/2, Kmax}, Kmax
  chosen (8 to 1024, a multiple of 4) so that the longest model takes about
  `--target-ms` (default 3 ms) by a first-guess cost. All the models that share
  inputs run in one `laurelc bench ... --rotate --json` call (interleaved
  rounds, medians of `--runs` timed rounds after `--warmup`); every call is made
  `--repeats` times (the repeats go round all the calls) and a model's time is
  the median of its medians. The time of one step is the least-squares slope
  of the three times against K: fixed per-model costs
  (the plan's setup, the last op's output, the chain's two ends) cancel. K starts
  at 2, not 0, so that the chain's ends are the same in the three models.
* Standalone ops (the ones fitted). tract fuses runs of elementwise binary ops
  whose accumulator has a single consumer into one in-place pass
  (`OptBinChain`, however long the run), so these chains give every
  intermediate two consumers, as a residual stream's state has (the plans
  below are tract's optimised ones, checked when this script was written):
  - `add`: y[k+1] = y[k] + y[k-1] (Fibonacci; out of place, `OptBinUnicast`);
  - `mul+add`: y[k+1] = y[k] + c[k] * y[k] (a scalar `OptMulByScalar` then an
    `Add`: two ops a step; c alternates -0.2, 0.25 so that values stay bounded);
  - `matmul`: y[k+1] = y[k] @ W[k], [N, D] x [D, D], distinct weights per step
    (`OptMatMulPack` + `OptMatMul`);
  - `conv1x1`, `conv3x3`: y[k+1] = Conv(y[k], W[k]), [1, C, H, W], C -> C,
    padding 1 for 3x3, no bias, distinct weights (1x1: `OptMatMulPack` +
    `OptMatMul`; 3x3: `Pad` + `LazyIm2col` + `OptMatMul` + `IntoShape`);
  - `concat`: y[k+1] = Concat(Slice(y[k], p..E), w[k]) on a 1-D tensor of E
    elements, w[k] an initializer of p = E / 64 elements (a FIFO shift: a
    `Slice` and a `Concat`, two copies a step, of a fixed size; a chain of
    growing `Concat`s would measure mmap of ever larger buffers instead).
* Elementwise ops in tract-fused positions (reported, not fitted):
  - `add-const-chain`: y[k+1] = y[k] + W[k] (W[k] an initializer of y's
    shape): the whole chain becomes one `OptBinChain`, so this is the price of
    one more `Add` inside a fused pass. (A chain of scalar `Mul`s, c[k] * y[k],
    is not measured: tract folds it into a single `OptMulByScalar`.)
  - `matmul-epilogue`: y[k+1] = y[k] + c[k] * (y[k] @ W[k]); the `Mul` and the
    `Add` go into the `OptMatMul` epilogue. Its step time minus the plain
    `matmul` step of the same shape (same bench call) is their price there.
* `LaurelResidual` with n in {2, 3, 5} inputs, E in {16k, 256k, 1M}:
  y[k+1] = LR(y[k], y[k-1], h2, ..., h[n-1]) (y[0] = y[-1] = x; the h's are
  model inputs of y's shape). The state is read by two steps, as a residual
  stream's is (n = 2 is RW's c0·f + c1·x; more terms are PA's), so tract cannot
  fuse the decompositions of successive steps into one pass. Four forms:
  - `lr`: the custom op with every coefficient != 1 (laurel-runtime's `Auto`
    then runs its one-pass kernel);
  - `dec`: its standard decomposition, n scalar `Mul`s and n - 1 `Add`s
    (tract: n - 1 out-of-place `OptMulByScalar`s, then c0·y[k] and the `Add`s
    in one `OptBinChain`);
  - `lr-ones`: the custom op without coefficients (`Auto` expands it to
    `Add`s: one `OptBinChain` a step);
  - `dec-ones`: the n - 1 `Add`s alone (the same plan as `lr-ones`).
  Coefficients vary with k (no two steps are the same computation).
* The fit: weighted least squares (relative error: each configuration's time is
  weighted by 1 / its measured time, so that 1 µs ops count as much as 5 ms
  ones) of the standalone ops' µs per step against (ops, elements, FLOPs) per
  step, with non-negative coefficients (every subset of the constants is tried;
  the best non-negative one wins). Also printed: the plain unweighted fit, a
  fit with a fourth constant (a fixed cost of every op with FLOPs: matrix
  products and convolutions have packing, padding and im2col steps), a fit
  without `concat` (copies are cheaper per element than arithmetic; fusion
  trades elementwise arithmetic and channel maps), and per-kind fits. The
  `LaurelResidual` kernel's cost is then fitted, with a fit's per_element, as
  o + per_element * elements * (a + b * n) and o + per_element * elements * b * n,
  and compared with the current overhead + per_element * elements * max(n, 2) / 2.
* Allocation: laurelc uses glibc's malloc. With its default, dynamic mmap and
  trim thresholds, the 1 to 4 MB outputs of out-of-place ops are returned to
  the kernel and page-faulted back in from one op to the next, depending on the
  process's allocation history: an out-of-place `Add` of 262144 elements then
  takes 5 to 7 times as long (~400 µs instead of ~60 µs) and long chains are
  not even monotonic in K. That is a property of the allocator, not of an op,
  so laurelc runs with `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=32 MiB,
  trim_threshold=4 GiB` (buffers stay in the heap once allocated);
  `--system-malloc` measures the default instead.
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
KMAX_CAP = 1024
# Fixed glibc malloc thresholds for the benchmarked process (see the module doc).
MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967295"
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
        initializer=[numpy_helper.from_array(v if np.asarray(v).dtype.kind == "i" else f32(v), name=n)
                     for n, v in inits],
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
        self.kmax = min(max(k, 8), KMAX_CAP)
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
    """y[k+1] = Concat(Slice(y[k], p..e), w[k]): a fixed-size FIFO shift, so that
    every step copies the same number of elements (a chain of growing Concats
    would measure glibc's mmap of ever larger buffers instead)."""
    cfg = Config("concat", f"Slice + Concat(y[p:], w) 1-D [{e}]", f"e{e}", 2, 0, 0, None)
    cfg.size(target_ms)
    piece = max(1, e // 64)

    def build(k):
        nodes, cur = [], "x"
        inits = [("st", np.array([piece])), ("en", np.array([e])), ("ax", np.array([0]))]
        for i in range(k):
            w = f"w{i}"
            inits.append((w, np.full(piece, 0.5, np.float32)))
            nodes.append(helper.make_node("Slice", [cur, "st", "en", "ax"], [f"s{i}"]))
            nodes.append(helper.make_node("Concat", [f"s{i}", w], [f"y{i + 1}"], axis=0))
            cur = f"y{i + 1}"
        return make_model(nodes, [("x", [e])], cur, [e], inits)
    cfg.build = build
    cfg.elements = 2 * e - piece
    cfg.size(target_ms)
    cfg.extra = {"piece": piece}
    return cfg


def matmul(n: int, d: int, epilogue: bool = False) -> Config:
    """y @ W, or with `epilogue` y + c * (y @ W): tract fuses the Mul and the
    Add into the product's epilogue (reported, not fitted)."""
    def build(k):
        rng = np.random.default_rng(2)
        nodes, inits, cur = [], [], "x"
        for i in range(k):
            w = f"w{i}"
            inits.append((w, rng.standard_normal((d, d)) / np.sqrt(d)))
            out = f"y{i + 1}"
            if epilogue:
                inits.append((f"c{i}", np.array(0.5 * (1 + 1e-4 * i), np.float32)))
                nodes.append(helper.make_node("MatMul", [cur, w], [f"m{i}"]))
                nodes.append(helper.make_node("Mul", [f"m{i}", f"c{i}"], [f"z{i}"]))
                nodes.append(helper.make_node("Add", [f"z{i}", cur], [out]))
            else:
                nodes.append(helper.make_node("MatMul", [cur, w], [out]))
            cur = out
        return make_model(nodes, [("x", [n, d])], cur, [n, d], inits)
    if epilogue:
        return Config("matmul-epilogue", f"y + c*(y @ W) [{n},{d}]x[{d},{d}]", f"mm{n}x{d}", 3,
                      3 * n * d, 2.0 * n * d * d, build)
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
    # y[k+1] = 0.6 y[k] + 0.4 y[k-1] + ... stays bounded (roots 1 and -0.4); every
    # coefficient != 1, so that laurel-runtime's Auto picks its one-pass kernel
    return [0.6 * (1 + 1e-4 * k), 0.4 * (1 - 1e-4 * k)] + [0.05 * i + 1e-4 * k for i in range(2, n)]


def laurel(form: str, n: int, e: int) -> Config:
    """y[k+1] = LR(y[k], y[k-1], h2, ..., h[n-1]) (y[0] = y[-1] = x): the state is
    read by two steps, as a residual stream's is, so tract cannot fuse the
    decompositions of successive steps into one pass."""
    hs = [f"h{i}" for i in range(2, n)]
    inputs = [("x", [e])] + [(h, [e]) for h in hs]

    def build(k):
        nodes, inits, prev, cur = [], [], "x", "x"
        for i in range(k):
            out = f"y{i + 1}"
            terms = [cur, prev, *hs]
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
            prev, cur = cur, out
        return make_model(nodes, inputs, cur, [e], inits, laurel=form.startswith("lr"))

    ops = {"lr": 1, "lr-ones": 1, "dec": 2 * n - 1, "dec-ones": n - 1}[form]
    return Config(f"laurel:{form}", f"{form} n={n} [{e}]", f"lr{n}e{e}", ops, ops * e, 0, build,
                  extra={"n": n, "form": form, "e": e})


def configs(quick: bool, target_ms: float) -> list[Config]:
    es = [1024, 16384, 262144, 1048576]
    cs: list[Config] = []
    for e in es:
        cs += [add_fib(e), mul_add(e)]
        if e <= 262144:
            cs.append(add_const_chain(e))
    cs += [matmul(n, d) for n, d in ([(16, 64), (128, 128), (512, 64), (256, 256), (64, 512), (256, 512)]
                                     if not quick else [(16, 64), (128, 128)])]
    cs += [matmul(n, d, epilogue=True) for n, d in ([(128, 128), (256, 256)] if not quick else [(128, 128)])]
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

def write_group(tmp: Path, group: str, cfgs: list[Config]) -> list[Path]:
    paths = []
    for ci, c in enumerate(cfgs):
        for k in c.ks:
            p = tmp / f"{group}.{ci}.k{k}.onnx"
            onnx.save(c.build(k), str(p))
            paths.append(p)
    return paths


def bench_call(exe: str, paths: list[Path], runs: int, warmup: int, seed: int, env: dict) -> dict[str, dict]:
    """One `laurelc bench` call over `paths`: each model's report by path."""
    cmd = [exe, "bench", *map(str, paths), "--runs", str(runs), "--warmup", str(warmup), "--seed", str(seed),
           "--rotate", "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if res.returncode != 0:
        sys.exit(f"laurelc bench failed (exit {res.returncode}): {' '.join(cmd)}\n{res.stderr}")
    return {m["label"]: m for m in json.loads(res.stdout)["models"]}


def slope_us(ks: list[int], meds: list[float]) -> float:
    return float(np.polyfit(np.array(ks, float), np.array(meds), 1)[0] * 1e3)


def summarize(c: Config, per_rep: list[list[float]], iqrs: list[list[float]]) -> dict:
    """`per_rep[r][i]`: the median (ms) of the model with K = c.ks[i] in repeat r."""
    meds = [float(np.median([rep[i] for rep in per_rep])) for i in range(len(c.ks))]
    ks = np.array(c.ks, float)
    slope = slope_us(c.ks, meds)
    rep_slopes = [slope_us(c.ks, rep) for rep in per_rep]
    # linearity: the middle point's distance from the line through the ends
    mid = meds[0] + (meds[2] - meds[0]) * (ks[1] - ks[0]) / (ks[2] - ks[0])
    return {
        "kind": c.kind, "label": c.label, "ks": c.ks, "median_ms": meds, "repeat_median_ms": per_rep,
        "iqr_ms": iqrs, "us_per_step": slope, "repeat_us_per_step": rep_slopes,
        "spread": (max(rep_slopes) - min(rep_slopes)) / abs(slope) if len(rep_slopes) > 1 and slope else 0.0,
        "ends_us_per_step": (meds[2] - meds[0]) / (ks[2] - ks[0]) * 1e3,
        "nonlinearity": (meds[1] - mid) / max(meds[2], 1e-9),
        "ops": c.ops, "elements": c.elements, "flops": c.flops,
        "compute_ops": c.ops if c.flops > 0 else 0, **c.extra,
    }


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


COLS3 = ("ops", "elements", "flops")
COLS4 = ("ops", "elements", "flops", "compute_ops")


def fit(rows: list[dict], weighted: bool, cols=COLS3) -> np.ndarray:
    """Non-negative least squares of µs per step on `cols` per step; relative
    (weights 1 / measured) when `weighted`."""
    x = np.array([[r[c] for c in cols] for r in rows], float)
    y = np.array([r["us_per_step"] for r in rows], float)
    w = 1.0 / np.maximum(y, 1e-3) if weighted else np.ones_like(y)
    return nn_lstsq(x, y, w)


def predict(b, r: dict, cols=COLS3) -> float:
    return float(sum(bi * r[c] for bi, c in zip(b, cols)))


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
    ap.add_argument("--repeats", type=int, default=5,
                    help="bench calls per group (median of their medians; default 5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target-ms", type=float, default=3.0, help="first-guess time of the longest chain")
    ap.add_argument("--only", help="comma-separated kinds (add, mul+add, add-const-chain, matmul, matmul-epilogue, "
                                   "conv1x1, conv3x3, concat, laurel)")
    ap.add_argument("--system-malloc", action="store_true",
                    help=f"run laurelc with glibc's default malloc settings (not GLIBC_TUNABLES={MALLOC_TUNABLES})")
    ap.add_argument("--quick", action="store_true", help="fewer, smaller configurations (a smoke test)")
    ap.add_argument("--laurelc", default=str(REPO / "target" / "release" / "laurelc"))
    ap.add_argument("--out", type=Path, help="write every measurement and the fits as JSON")
    args = ap.parse_args()
    exe = args.laurelc
    if not os.access(exe, os.X_OK):
        sys.exit(f"{exe} is missing: cargo build --release --bins")
    env = dict(os.environ)
    if not args.system_malloc:
        env["GLIBC_TUNABLES"] = ":".join(filter(None, [env.get("GLIBC_TUNABLES"), MALLOC_TUNABLES]))
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
    medians: dict[str, list] = {}  # path -> median_ms per repeat
    iqrs: dict[str, list] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        paths = {g: write_group(tmp, g, gc) for g, gc in groups.items()}
        # repeats go round all the groups, so that a burst of load hits
        # different groups in different repeats
        for rep in range(args.repeats):
            for g, ps in paths.items():
                t0 = time.perf_counter()
                for p, m in bench_call(exe, ps, args.runs, args.warmup, args.seed, env).items():
                    medians.setdefault(p, []).append(m["median_ms"])
                    iqrs.setdefault(p, []).append(m["iqr_ms"])
                print(f"  repeat {rep + 1}/{args.repeats} {g}: {len(ps)} models, {time.perf_counter() - t0:.1f} s",
                      file=sys.stderr, flush=True)
        for g, gc in groups.items():
            for ci, c in enumerate(gc):
                keys = [str(tmp / f"{g}.{ci}.k{k}.onnx") for k in c.ks]
                per_rep = [[medians[key][r] for key in keys] for r in range(args.repeats)]
                results[c.label] = summarize(c, per_rep, [iqrs[key] for key in keys])
    elapsed = time.perf_counter() - started
    rows = [results[c.label] for c in cfgs]

    fitted = [r for r in rows if r["kind"] in FITTED_KINDS]
    b = fit(fitted, weighted=True) if fitted else np.zeros(3)
    b_plain = fit(fitted, weighted=False) if fitted else np.zeros(3)
    b4 = fit(fitted, weighted=True, cols=COLS4) if fitted else np.zeros(4)
    # without the copies (Slice, Concat): the ops fusion trades are elementwise
    # arithmetic and channel maps
    arith = [r for r in fitted if r["kind"] != "concat"]
    b_arith = fit(arith, weighted=True) if arith else np.zeros(3)
    for r in rows:
        r["predicted_us_per_step"] = predict(b, r)
        r["predicted4_us_per_step"] = predict(b4, r, COLS4)
        r["first_guess_us_per_step"] = predict(GUESS, r)

    print(f"\n`laurelc bench`, {args.repeats} calls x {args.runs} timed rounds after {args.warmup} warm-up rounds "
          f"(rotating order); times are the median over calls of each model's median; K in {{2, Kmax/2, Kmax}}; "
          f"µs/op = least-squares slope of those medians against K, divided by the ops per step. "
          f"spread = (max - min) / slope of the per-call slopes; nonlin. = the K = Kmax/2 median's distance from "
          f"the line through the others, over the K = Kmax median. Predicted: the relative 3-constant fit below. "
          f"Total {elapsed / 60:.1f} min.\n")
    print("| kind | configuration | ops/step | elements/op | FLOPs/op | Kmax | median ms (K=2, Kmax/2, Kmax) "
          "| measured µs/op | predicted µs/op | pred / meas | first guess µs/op | spread | nonlin. |")
    print("|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ops = r["ops"]
        print(f"| {r['kind']} | {r['label']} | {ops} | {fmt_e(r['elements'] / ops)} | {fmt_e(r['flops'] / ops)} "
              f"| {r['ks'][-1]} | {', '.join(f'{m:.3f}' for m in r['median_ms'])} "
              f"| {r['us_per_step'] / ops:.3f} | {r['predicted_us_per_step'] / ops:.3f} "
              f"| {r['predicted_us_per_step'] / max(r['us_per_step'], 1e-9):.2f} "
              f"| {r['first_guess_us_per_step'] / ops:.3f} | {r['spread']:.2f} | {r['nonlinearity']:+.2f} |")

    summary = {"relative": b.tolist(), "absolute": b_plain.tolist(), "relative_with_compute_overhead": b4.tolist(),
               "relative_without_concat": b_arith.tolist()}
    if fitted:
        print("\nFit over the standalone kinds ({}): µs per step = overhead·ops + per_element·elements + "
              "per_flop·FLOPs [+ compute_overhead·(ops with FLOPs)], non-negative:\n".format(", ".join(FITTED_KINDS)))
        print("| fit | overhead µs | per_element µs | per_flop µs | compute_overhead µs | median abs. rel. residual "
              "| max abs. rel. residual |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        y = np.array([r["us_per_step"] for r in fitted])
        for name, bb, cols in (("relative (weights 1/t)", b, COLS3), ("absolute (unweighted)", b_plain, COLS3),
                               ("relative, + compute_overhead", b4, COLS4),
                               ("relative, without concat (residuals over all kinds)", b_arith, COLS3),
                               ("first guess", GUESS, COLS3)):
            rel = np.array([predict(bb, r, cols) for r in fitted]) / y - 1
            extra = f"{bb[3]:.4g}" if len(bb) > 3 else "–"
            print(f"| {name} | {bb[0]:.4g} | {bb[1]:.4g} | {bb[2]:.4g} | {extra} | {np.median(np.abs(rel)):.2f} "
                  f"| {np.max(np.abs(rel)):.2f} |")
        print("\nPredicted / measured by kind (relative fit; with compute_overhead, and without concat, "
              "in brackets):\n")
        kinds: dict[str, list] = {}
        for r in fitted:
            kinds.setdefault(r["kind"], []).append(r)
        for k, rs in kinds.items():
            print(f"- {k}: " + ", ".join(f"{r['predicted_us_per_step'] / r['us_per_step']:.2f} "
                                         f"({r['predicted4_us_per_step'] / r['us_per_step']:.2f}, "
                                         f"{predict(b_arith, r) / r['us_per_step']:.2f})" for r in rs))
        per_kind = {}
        for k, rs in kinds.items():
            cols = ("ops", "elements") if k in ("add", "mul+add", "concat") else ("ops", "flops")
            per_kind[k] = dict(zip(("overhead", cols[1]), fit(rs, True, cols).tolist()))
        print("\nPer-kind fits (relative; overhead per op and per element or per FLOP): "
              + "; ".join(f"{k}: " + ", ".join(f"{n} {v:.4g}" for n, v in d.items()) for k, d in per_kind.items()))
        summary["per_kind"] = per_kind

    chain = [r for r in rows if r["kind"] == "add-const-chain"]
    if chain:
        print("\nAn Add inside a tract-fused chain (`add-const-chain`) against a standalone Add of the same size:\n")
        print("| elements | in chain µs/op | standalone Add µs/op | ratio |")
        print("|---:|---:|---:|---:|")
        for r in chain:
            alone = next((q for q in rows if q["kind"] == "add" and q["elements"] == r["elements"]), None)
            if alone:
                print(f"| {fmt_e(r['elements'])} | {r['us_per_step']:.2f} | {alone['us_per_step']:.2f} "
                      f"| {r['us_per_step'] / alone['us_per_step']:.2f} |")

    epi = [r for r in rows if r["kind"] == "matmul-epilogue"]
    if epi:
        print("\nElementwise ops in a MatMul epilogue (y + c·(y @ W) against y @ W, same bench call):\n")
        print("| shape | MatMul µs/step | with Mul + Add µs/step | Mul + Add in the epilogue µs "
              "| standalone Mul + Add predicted µs |")
        print("|---|---:|---:|---:|---:|")
        for r in epi:
            plain = next((q for q in rows if q["kind"] == "matmul" and q["flops"] == r["flops"]
                          and q["elements"] * 3 == r["elements"]), None)
            if plain is None:
                continue
            d = r["us_per_step"] - plain["us_per_step"]
            r["epilogue_us"] = d
            print(f"| {plain['label']} | {plain['us_per_step']:.2f} | {r['us_per_step']:.2f} | {d:.2f} "
                  f"| {2 * b[0] + 2 * b[1] * plain['elements']:.2f} |")

    lr_rows = [r for r in rows if r["kind"].startswith("laurel:")]
    if lr_rows:
        table: dict[tuple, dict] = {}
        for r in lr_rows:
            table.setdefault((r["n"], r["e"]), {})[r["form"]] = r["us_per_step"]
        adds = {r["elements"]: r["us_per_step"] for r in rows if r["kind"] == "add"}
        print("\nLaurelResidual against its decomposition, µs per step (one LaurelResidual, or its n scalar Muls "
              "and n - 1 Adds); `Add` is the standalone Add of the same size; FuseCost columns use the fitted "
              "constants:\n")
        print("| n | elements | lr (kernel) | dec (n Mul + n-1 Add) | lr / dec | lr-ones | dec-ones (n-1 Add) "
              "| lr / Add | FuseCost lr now | FuseCost dec |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for (n, e), t in sorted(table.items()):
            now = b[0] + b[1] * e * max(n, 2) / 2
            dec = (2 * n - 1) * (b[0] + b[1] * e)
            g = lambda f: t.get(f, float("nan"))  # noqa: E731
            add = adds.get(e, float("nan"))
            print(f"| {n} | {fmt_e(e)} | {g('lr'):.2f} | {g('dec'):.2f} | {g('lr') / g('dec'):.2f} "
                  f"| {g('lr-ones'):.2f} | {g('dec-ones'):.2f} | {g('lr') / add:.2f} | {now:.2f} | {dec:.2f} |")
        kern = [r for r in lr_rows if r["form"] == "lr"]
        summary["laurel_kernel"] = {}
        for fit_name, bb in (("relative fit", b), ("relative fit without concat", b_arith)):
            if not kern or bb[1] <= 0:
                continue
            # t = o + per_element * e * (a + b n), per_element the fitted one
            x = np.array([[1.0, bb[1] * r["e"], bb[1] * r["e"] * r["n"]] for r in kern])
            y = np.array([r["us_per_step"] for r in kern])
            o_ab = nn_lstsq(x, y, 1.0 / y)
            x1 = x[:, [0, 2]]  # o + per_element * e * b n
            o_b = nn_lstsq(x1, y, 1.0 / y)
            pe = lambda r, f: bb[0] + bb[1] * r["e"] * f  # noqa: E731
            forms = {
                f"{o_ab[0]:.3g} + per_element·elements·({o_ab[1]:.3g} + {o_ab[2]:.3g}·n) (fitted)": x @ o_ab,
                f"{o_b[0]:.3g} + per_element·elements·{o_b[1]:.3g}·n (fitted)": x1 @ o_b,
                "overhead + per_element·elements·max(n, 2) / 2 (now)":
                    np.array([pe(r, max(r["n"], 2) / 2) for r in kern]),
                "overhead + per_element·elements·(n + 1) / 3":
                    np.array([pe(r, (r["n"] + 1) / 3) for r in kern]),
                "overhead + per_element·elements·n": np.array([pe(r, r["n"]) for r in kern]),
            }
            print(f"\nLaurelResidual kernel, predicted / measured per expression, with the {fit_name}'s "
                  f"overhead {bb[0]:.3g} µs and per_element {bb[1]:.3g} µs:\n")
            print("| expression | " + " | ".join(f"n={r['n']} {fmt_e(r['e'])}" for r in kern)
                  + " | median abs. rel. residual |")
            print("|---|" + "---:|" * (len(kern) + 1))
            for name, pred in forms.items():
                print(f"| {name} | " + " | ".join(f"{q:.2f}" for q in pred / y)
                      + f" | {np.median(np.abs(pred / y - 1)):.2f} |")
            summary["laurel_kernel"][fit_name] = {"o": o_ab[0], "a": o_ab[1], "b": o_ab[2],
                                                  "o_prop": o_b[0], "b_prop": o_b[1]}

    print(f"\nFitted constants (relative fit): overhead = {b[0]:.4g} µs, per_element = {b[1]:.4g} µs, "
          f"per_flop = {b[2]:.4g} µs; without concat: overhead = {b_arith[0]:.4g} µs, per_element = "
          f"{b_arith[1]:.4g} µs, per_flop = {b_arith[2]:.4g} µs")
    if args.out:
        args.out.write_text(json.dumps({
            "args": {k: str(v) for k, v in vars(args).items()},
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                        "loadavg": os.getloadavg()},
            "elapsed_s": elapsed, "rows": rows, "fit": summary,
        }, indent=1))


if __name__ == "__main__":
    main()
