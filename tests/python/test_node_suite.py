"""(c) every ONNX backend node-test model (onnx 1.22.0, 1765 of them) survives
`laurelc MODEL -o OUT --no-passes` with normalised proto equality."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import laurel_testlib as lt

EXPECTED_MODELS = 1765
SHOW_FAILURES = 25


def _check_one(binary: Path, model: Path, out_dir: Path) -> str | None:
    out = out_dir / f"{model.parent.name}.onnx"
    try:
        lt.run_laurelc(binary, lt.roundtrip_args(model, out), timeout=120)
        if not out.is_file():
            return "laurelc exited 0 but wrote no output"
        diff = lt.normalised_difference(lt.load_model_proto(model), lt.load_model_proto(out))
    except lt.LaurelcError as e:
        return str(e).replace("\n", " | ")[:600]
    except Exception as e:  # a proto that does not load, etc.
        return f"{type(e).__name__}: {e}"[:600]
    finally:
        if out.exists():
            out.unlink()
    return None if diff is None else f"proto differs at {diff}"


def test_node_suite_roundtrip(laurelc_bin, node_tests_dir, tmp_path):
    models = sorted(node_tests_dir.glob("*/model.onnx"))
    assert len(models) == EXPECTED_MODELS, (
        f"expected {EXPECTED_MODELS} node-test models in {node_tests_dir}, found {len(models)}; "
        "re-run python3 fixtures/fetch.py node_tests")
    workers = max(1, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda m: _check_one(laurelc_bin, m, tmp_path), models))
    failures = [(m.parent.name, r) for m, r in zip(models, results) if r is not None]
    passed = len(models) - len(failures)
    line = f"onnx node suite round trip: {len(models)} models, {passed} ok, {len(failures)} failing"
    lt.SUMMARY_LINES.append(line)
    print("\n" + line)
    shown = "\n".join(f"  {n}: {r}" for n, r in failures[:SHOW_FAILURES])
    assert not failures, (
        f"{len(failures)}/{len(models)} node-test models fail the round trip; first {min(len(failures), SHOW_FAILURES)}:\n{shown}")
