#!/usr/bin/env python3
"""Benchmark: inference time of LAuReL models, unfused and fused, against the baseline.

For each model and variant:

    laurelc MODEL -o aug.onnx --variant V --init random --seed S [--rank R]
    laurelc fuse aug.onnx -o fused.onnx                      (--target onnx, the default)
    laurelc fuse aug.onnx -o fused.tract.onnx --target tract
    laurelc bench MODEL aug.onnx fused.onnx fused.tract.onnx --runs N --warmup W --loads L --input inputs.npz --json

at each batch size, and the baseline, unfused and ONNX-target files on onnxruntime
(which does not know the tract target's `ai.laurel` op), in Python, with the
same interleaving (A B C A B C ...), the same inputs and medians. Ratios are to the
baseline measured in the same run; absolute times on a shared machine are not.

    .venv/bin/python bench/fuse.py [--reps 20] [--loads 3] [--models tiny_resnet,paraphrase_minilm_l3,ppocrv4_det]
                                   [--variants rw,lr,rw+lr+pa] [--batches 1,8] [--out results.json]

Details:

* `--rank R` (default 16) is passed to every variant with an LR part (lr, rw+lr,
  lr+pa, rw+lr+pa); LAuReL parameters are random (`--init random --seed S`), so
  that fusion has non-trivial values to fold.
* Both targets are fused: `--target onnx` (standard ops) and `--target tract`
  (which may use laurel-runtime's `LaurelResidual`); tract times both. Each batch
  size gets its own fused files, fused with `--dim NAME=VALUE` for every symbolic
  input dimension at that batch's sizes (the cost model's sizes; the files stay
  symbolic). The fuse time column is for `laurelc fuse` without `--dim`. The
  "closer" column is how much of the unfused overhead the better fused model
  removes, (unfused − fused) / (unfused − 1), on tract.
* Models are the committed fixtures (`fixtures/NAME.onnx`) and the cached
  third-party models (`$LAURELC_CACHE/models/NAME.onnx`, filled by
  `fixtures/fetch.py`); a path works too. Inputs are sized by the model's `run`
  entry in fixtures/models.json (`shapes` by input, `dims` by symbol, scalar
  `values`), other symbolic dims are 1, and the first dimension of every input of
  rank >= 1 is the batch. A model whose inputs declare a fixed first dimension
  (tiny_resnet: 1x3x16x16) is first copied with that dimension, and the first
  dimension of its outputs, made the symbol `batch`; the copy is the baseline at
  every batch size. The baseline that is timed is that model after laurelc's own
  import and export without passes (`laurelc BASE -o OUT --no-passes`), so that every
  timed file went through the same serialisation (tract ran MiniLM's original file
  about 3% slower than its re-export, with the same ops).
* Input values follow laurel_runtime's random rules (floats standard normal,
  integers named *mask* 1, *token_type* / *segment* 0, other integers in [0, 10),
  booleans true); they are written to an .npz that `laurelc bench` reads, so tract
  and onnxruntime see the same tensors.
* onnxruntime runs single-threaded (intra- and inter-op threads 1), as tract does.
  A fused model using the custom domain `ai.laurel` cannot run there: its ORT
  column says so. `laurelc check aug fused` on the same inputs reports whether
  fusion kept the function.
* The table's ratios are medians of per-round ratios (each model's time over the
  baseline's in the same round), which a burst of load on the machine moves less
  than the ratio of medians; both are in the `--out` JSON, with every sample. The
  "tract spread" column is the largest IQR / median of the three tract models: a
  row whose ratios differ from 1 by less than that says little.
* The fuse time is the median wall time of `--fuse-reps` runs of `laurelc fuse`
  (the whole process: import, fusion, export).
* "LAuReL FLOPs / model" is `laurel_flops_fraction` = (FLOPs(augmented) -
  FLOPs(baseline)) / FLOPs(baseline), from `laurelc inspect --json` (matrix
  products and convolutions only, multiply-add = 2) on copies of both models whose
  inputs are fixed to the benchmark's input shapes at that batch size (so symbolic
  sizes are not counted as 1). "LR target" is the fusion issue's bound on LR's
  fused / baseline time, 1 + 1.2 x fraction + 0.01; it is printed for every
  variant but only means something for variants with an LR part. Both are "–"
  when a FLOPs count is unavailable or leaves ops out for unknown shapes.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "fixtures" / "models.json"
DEFAULT_MODELS = "tiny_resnet,paraphrase_minilm_l3,ppocrv4_det"
LAUREL_DOMAIN = "ai.laurel"


def sh(cmd: list[str]) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        sys.exit(f"command failed (exit {res.returncode}): {' '.join(cmd)}\n{res.stderr}")
    return res


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    sh(cmd)
    return time.perf_counter() - start


def find_model(name: str, cache: Path) -> Path:
    for p in (Path(name), REPO / "fixtures" / f"{name}.onnx", cache / "models" / f"{name}.onnx"):
        if p.is_file():
            return p
    sys.exit(f"model {name!r} is neither a file, a fixture nor in {cache / 'models'} (run fixtures/fetch.py)")


def run_entry(name: str) -> dict:
    for entry in json.loads(MANIFEST.read_text())["models"]:
        if entry["name"] == name:
            return entry.get("run", {})
    return {}


def symbol_sizes(model_path: Path, feeds: dict) -> list[str]:
    """NAME=VALUE for each symbolic input dimension, from the feeds' shapes."""
    out = {}
    for name, _, dims in declared_inputs(onnx.load(str(model_path), load_external_data=False)):
        for d, n in zip(dims, feeds[name].shape):
            if isinstance(d, str):
                out[d] = int(n)
    return [f"{k}={v}" for k, v in sorted(out.items())]


def declared_inputs(model: onnx.ModelProto) -> list[tuple[str, int, list]]:
    """(name, elem_type, dims) of the real graph inputs; dims are ints, strings or None."""
    inits = {t.name for t in model.graph.initializer}
    out = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dims = []
        for d in tt.shape.dim:
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            elif d.HasField("dim_param") and d.dim_param:
                dims.append(d.dim_param)
            else:
                dims.append(None)
        out.append((vi.name, tt.elem_type, dims))
    return out


def batch_symbolic(src: Path, dst: Path) -> Path:
    """`src`, or a copy of it at `dst` whose inputs' and outputs' fixed first
    dimensions are the symbol `batch` (intermediate value_info dropped)."""
    model = onnx.load(str(src))
    fixed = [d for _, _, d in declared_inputs(model) if d and isinstance(d[0], int)]
    if not fixed:
        return src
    inits = {t.name for t in model.graph.initializer}
    for vi in [*model.graph.input, *model.graph.output]:
        if vi.name in inits:
            continue
        dims = vi.type.tensor_type.shape.dim
        if len(dims) > 0:
            dims[0].Clear()
            dims[0].dim_param = "batch"
    del model.graph.value_info[:]
    onnx.save(model, str(dst))
    return dst


def fixed_shape_copy(src: Path, feeds: dict[str, np.ndarray], dst: Path) -> Path:
    """A copy of `src` at `dst` whose inputs have the shapes of `feeds` and whose
    outputs and intermediate values declare no shape, so that shape inference sees
    the benchmark's sizes rather than symbols."""
    model = onnx.load(str(src))
    inits = {t.name for t in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in inits or vi.name not in feeds:
            continue
        tt = vi.type.tensor_type
        tt.ClearField("shape")
        for d in feeds[vi.name].shape:
            tt.shape.dim.add().dim_value = int(d)
    for vi in model.graph.output:
        if vi.type.HasField("tensor_type"):
            vi.type.tensor_type.ClearField("shape")
    del model.graph.value_info[:]
    try:
        onnx.save(model, str(dst))
    except ValueError:  # over protobuf's 2 GiB limit
        onnx.save(model, str(dst), save_as_external_data=True, location=f"{dst.name}.data")
    return dst


def model_flops(exe: str, path: Path) -> float | None:
    """The FLOPs `laurelc inspect --json` estimates for `path`, or None when it has
    none or leaves ops out because their shapes are unknown."""
    flops = json.loads(sh([exe, "inspect", str(path), "--json"]).stdout).get("flops")
    if not flops or flops.get("unknown_ops", 0) > 0:
        return None
    return float(flops["total"])


def make_inputs(model_path: Path, run: dict, batch: int, seed: int) -> dict[str, np.ndarray]:
    """One input set at `batch` (see the module doc for the rules)."""
    model = onnx.load(str(model_path), load_external_data=False)
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, elem, dims in declared_inputs(model):
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem))
        if name in run.get("values", {}):
            feeds[name] = np.asarray(run["values"][name], dtype=dtype)
            continue
        if name in run.get("shapes", {}):
            shape = list(run["shapes"][name])
        else:
            shape = [d if isinstance(d, int) else run.get("dims", {}).get(d, 1) for d in dims]
        if shape:
            shape[0] = batch
        lower = name.lower()
        if dtype.kind == "f":
            value = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            if "mask" in lower:
                value = np.ones(shape, dtype)
            elif "token_type" in lower or "segment" in lower:
                value = np.zeros(shape, dtype)
            else:
                value = rng.integers(0, 10, size=shape).astype(dtype)
        elif dtype.kind == "b":
            value = np.ones(shape, dtype=bool)
        else:
            sys.exit(f"{model_path}: input {name!r} has unsupported type {dtype}")
        feeds[name] = np.ascontiguousarray(value)
    return feeds


def uses_laurel_ops(path: Path) -> bool:
    model = onnx.load(str(path), load_external_data=False)
    return any(n.domain == LAUREL_DOMAIN for n in model.graph.node) or any(
        o.domain == LAUREL_DOMAIN for o in model.opset_import)


def ort_session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_bench(paths: list[Path], feeds: dict, runs: int, warmup: int) -> list[dict]:
    """Interleaved onnxruntime timings, baseline first; entries of models ORT cannot
    run carry a `skipped` reason instead of times."""
    results: list[dict] = []
    sessions = []
    for p in paths:
        if uses_laurel_ops(p):
            results.append({"label": str(p), "skipped": f"uses custom domain {LAUREL_DOMAIN} ops"})
            continue
        try:
            sessions.append((len(results), ort_session(p)))
            results.append({"label": str(p), "samples_ms": []})
        except Exception as e:  # noqa: BLE001 - any ORT failure is reported, not fatal
            results.append({"label": str(p), "skipped": f"onnxruntime cannot load it: {str(e).splitlines()[0]}"})
    for _ in range(warmup):
        for _, sess in sessions:
            sess.run(None, feeds)
    for _ in range(runs):
        for i, sess in sessions:
            start = time.perf_counter()
            out = sess.run(None, feeds)
            results[i]["samples_ms"].append((time.perf_counter() - start) * 1e3)
            del out
    base = results[0].get("samples_ms")
    for r in results:
        if "samples_ms" not in r:
            continue
        r["median_ms"] = statistics.median(r["samples_ms"])
        if base:
            r["ratio"] = r["median_ms"] / statistics.median(base)
            r["round_ratio"] = statistics.median(x / b for x, b in zip(r["samples_ms"], base))
    return results


def fmt(x, spec=".2f") -> str:
    return "–" if x is None else format(x, spec)


def main():
    cache = Path(os.environ.get("LAURELC_CACHE", Path.home() / ".cache" / "laurelc"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=20, help="timed rounds per benchmark (default 20)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--loads", type=int, default=3,
                    help="loads of each model on tract; its rounds cycle through them (default 3)")
    ap.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated names or paths")
    ap.add_argument("--variants", default="rw,lr,rw+lr+pa")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--rank", type=int, default=16, help="rank of variants with an LR part")
    ap.add_argument("--seed", type=int, default=0, help="seed of the LAuReL parameters and the inputs")
    ap.add_argument("--fuse-reps", type=int, default=3)
    ap.add_argument("--laurelc", default=str(REPO / "target" / "release" / "laurelc"))
    ap.add_argument("--out", type=Path, help="write every measurement as JSON")
    args = ap.parse_args()
    exe = args.laurelc
    if not os.access(exe, os.X_OK):
        sys.exit(f"{exe} is missing: cargo build --release")
    batches = [int(b) for b in args.batches.split(",")]
    variants = args.variants.split(",")
    rows = []
    notes = set()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for name in args.models.split(","):
            src = find_model(name, cache)
            stem = src.stem
            run = run_entry(stem)
            base = batch_symbolic(src, tmp / f"{stem}.base.onnx")
            # The baseline tract and onnxruntime time is laurelc's own import and
            # export of it without passes, so that every file of a row went through
            # the same serialisation: tract ran MiniLM's original file 3% slower than
            # its re-export (the same ops) at 1x8 tokens. Augmentation reads `base`.
            timed_base = tmp / f"{stem}.base.rt.onnx"
            sh([exe, str(base), "-o", str(timed_base), "--no-passes"])
            inputs = {}
            base_flops = {}
            for b in batches:
                feeds = make_inputs(base, run, b, args.seed)
                base_flops[b] = model_flops(exe, fixed_shape_copy(base, feeds, tmp / f"{stem}.b{b}.fixed.onnx"))
                npz = tmp / f"{stem}.b{b}.npz"
                np.savez(npz, **feeds)
                npys = []
                for k, v in feeds.items():
                    npy = tmp / f"{stem}.b{b}.{len(npys)}.npy"
                    np.save(npy, v)
                    npys.append(f"{k}={npy}")
                inputs[b] = (feeds, npz, npys)
            for v in variants:
                tag = v.replace("+", "_")
                aug = tmp / f"{stem}.{tag}.onnx"
                fused = tmp / f"{stem}.{tag}.fused.onnx"
                fused_t = tmp / f"{stem}.{tag}.fused.tract.onnx"
                rank = ["--rank", str(args.rank)] if "lr" in v.split("+") else []
                sh([exe, str(base), "-o", str(aug), "--variant", v, "--init", "random",
                    "--seed", str(args.seed), *rank])
                fuse_s = statistics.median(
                    timed([exe, "fuse", str(aug), "-o", str(fused)])
                    for _ in range(max(args.fuse_reps, 1)))
                for b in batches:
                    feeds, npz, npys = inputs[b]
                    # Fused for this batch's sizes (the cost model's; the files stay symbolic).
                    sizes = [x for d in symbol_sizes(base, feeds) for x in ("--dim", d)]
                    fused = tmp / f"{stem}.{tag}.b{b}.fused.onnx"
                    fused_t = tmp / f"{stem}.{tag}.b{b}.fused.tract.onnx"
                    sh([exe, "fuse", str(aug), "-o", str(fused), *sizes])
                    sh([exe, "fuse", str(aug), "-o", str(fused_t), "--target", "tract", *sizes])
                    aug_flops = model_flops(exe, fixed_shape_copy(aug, feeds, tmp / f"{stem}.{tag}.b{b}.fixed.onnx"))
                    fraction = None
                    if base_flops[b] and aug_flops is not None:
                        fraction = (aug_flops - base_flops[b]) / base_flops[b]
                    else:
                        notes.add(f"{stem} {v} batch {b}: no FLOPs fraction (shapes unknown to `laurelc inspect`)")
                    check_ok = True
                    for f in (fused, fused_t):
                        check = subprocess.run(
                            [exe, "check", str(aug), str(f), "--json", *[x for n in npys for x in ("--input", n)]],
                            capture_output=True, text=True, check=False)
                        if check.returncode not in (0, 1):
                            sys.exit(f"laurelc check failed:\n{check.stderr}")
                        check_ok = check_ok and check.returncode == 0
                    tract = json.loads(sh([exe, "bench", str(timed_base), str(aug), str(fused), str(fused_t),
                                           "--runs", str(args.reps), "--warmup", str(args.warmup),
                                           "--loads", str(args.loads),
                                           "--input", str(npz), "--json"]).stdout)
                    ort = ort_bench([timed_base, aug, fused], feeds, args.reps, args.warmup)
                    for r in ort:
                        if "skipped" in r:
                            notes.add(f"{Path(r['label']).name}: not run on onnxruntime, {r['skipped']}")
                    tm = tract["models"]
                    rows.append({
                        "model": stem, "variant": v, "batch": b,
                        "rank": args.rank if rank else None,
                        "fuse_s": fuse_s,
                        "fused_matches_unfused": check_ok,
                        "tract": tract, "ort": ort,
                        # The table's ratios are medians of per-round ratios (robust to
                        # drift); ratios of medians are in "tract" / "ort".
                        "tract_base_ms": tm[0]["median_ms"],
                        "tract_unfused": tm[1]["round_ratio"], "tract_fused": tm[2]["round_ratio"],
                        "tract_fused_tract": tm[3]["round_ratio"],
                        "laurel_ops": uses_laurel_ops(fused_t),
                        "tract_spread": max(m["iqr_ms"] / m["median_ms"] for m in tm),
                        "ort_base_ms": ort[0].get("median_ms"),
                        "ort_unfused": ort[1].get("round_ratio"), "ort_fused": ort[2].get("round_ratio"),
                        "flops_baseline": base_flops[b], "flops_augmented": aug_flops,
                        "laurel_flops_fraction": fraction,
                        "lr_target": None if fraction is None else 1 + 1.2 * fraction + 0.01,
                    })
                    r = rows[-1]
                    best = min(r["tract_fused"], r["tract_fused_tract"])
                    r["closer"] = ((r["tract_unfused"] - best) / (r["tract_unfused"] - 1)
                                   if r["tract_unfused"] > 1 else None)
                    print(f"{stem} {v} batch {b}: tract {r['tract_base_ms']:.3f} ms, unfused x{r['tract_unfused']:.3f}, "
                          f"fused x{r['tract_fused']:.3f}, fused for tract x{r['tract_fused_tract']:.3f}; ort {fmt(r['ort_base_ms'], '.3f')} ms, unfused x"
                          f"{fmt(r['ort_unfused'], '.3f')}, fused x{fmt(r['ort_fused'], '.3f')}; fuse {fuse_s:.3f} s"
                          f"; LAuReL FLOPs / model {fmt(r['laurel_flops_fraction'], '.4f')}"
                          f"{'' if check_ok else '; FUSED OUTPUTS DIFFER'}", file=sys.stderr, flush=True)
    print(f"\n{args.reps} interleaved rounds (baseline, unfused, fused, fused for tract) after {args.warmup} "
          f"warm-up rounds, cycling through {args.loads} loads of each model on tract; ratios are medians of per-round ratios to the baseline (same round); baseline times "
          "are medians; spread is the largest IQR / median of the four tract models (noise: read ratios within "
          "about that); onnxruntime single-threaded, on the baseline, unfused and `--target onnx` files; fuse: "
          f"median wall time of {args.fuse_reps} runs of `laurelc fuse` (`--target onnx`); closer: "
          "(unfused − best fused) / (unfused − 1) on tract; LR target: 1 + 1.2 × LAuReL FLOPs / model + 0.01.\n")
    print("| model | variant | batch | tract baseline ms | tract unfused / baseline | tract fused / baseline "
          "| tract fused (`--target tract`) / baseline | closer | tract spread | ORT baseline ms "
          "| ORT unfused / baseline | ORT fused / baseline | fuse s | LAuReL FLOPs / model | LR target |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        variant = f"{r['variant']} (r = {r['rank']})" if r["rank"] else r["variant"]
        fused_ort = fmt(r["ort_fused"]) if r["ort_fused"] is not None else "n/a"
        differs = "" if r["fused_matches_unfused"] else " (differs!)"
        laurel = "" if r["laurel_ops"] else " (no LaurelResidual)"
        print(f"| {r['model']} | `{variant}` | {r['batch']} | {r['tract_base_ms']:.3f} | {r['tract_unfused']:.2f} "
              f"| **{fmt(r['tract_fused'])}**{differs} | **{fmt(r['tract_fused_tract'])}**{laurel} "
              f"| {fmt(r['closer'])} | {r['tract_spread']:.2f} | {fmt(r['ort_base_ms'], '.3f')} "
              f"| {fmt(r['ort_unfused'])} | {fused_ort} "
              f"| {r['fuse_s']:.3f} | {fmt(r['laurel_flops_fraction'], '.4f')} | {fmt(r['lr_target'], '.3f')} |")
    for n in sorted(notes):
        print(f"\n- {n}")
    if any(not r["fused_matches_unfused"] for r in rows):
        print("\n- (differs!): `laurelc check unfused fused` failed on the benchmark inputs (rtol 1e-4, atol 1e-5).")
    if args.out:
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
