"""pytest fixtures for laurelc's Python cross-checks.

Environment:
  LAURELC_BIN    path to the laurelc binary (required by every test that runs it;
                 a missing or unset value FAILS those tests, it never skips them)
  LAURELC_CACHE  model cache filled by `python3 fixtures/fetch.py`
                 (default ~/.cache/laurelc; missing models FAIL the tests)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import laurel_testlib as lt  # noqa: E402
from laurel_testlib import InputOverride  # noqa: E402

# Per-model input overrides come from the `run` entries of fixtures/models.json
# (the Rust suites read the same entries): `shapes` by input, `dims` by symbol,
# scalar `values` by input (int64). Defaults (laurel_testlib.make_inputs):
# floats standard normal with a fixed seed, integer inputs named "*mask*" all
# ones, other integers in [0, 10), every symbolic dim 1.


def _overrides_from_manifest() -> tuple[dict[str, dict[str, InputOverride]], dict[str, dict[str, int]]]:
    inputs: dict[str, dict[str, InputOverride]] = {}
    dims: dict[str, dict[str, int]] = {}
    for entry in lt.load_manifest()["models"]:
        run = entry.get("run", {})
        per_input: dict[str, InputOverride] = {}
        for name, shape in run.get("shapes", {}).items():
            per_input[name] = InputOverride(shape=tuple(shape))
        for name, value in run.get("values", {}).items():
            per_input[name] = InputOverride(value=np.array(value, dtype=np.int64))
        if per_input:
            inputs[entry["name"]] = per_input
        if run.get("dims"):
            dims[entry["name"]] = dict(run["dims"])
    return inputs, dims


INPUT_OVERRIDES, DIM_OVERRIDES = _overrides_from_manifest()
DIM_OVERRIDES.update(lt.FIXTURE_DIMS)

FIXTURE_MODELS = lt.fixture_model_names()
REAL_MODELS = lt.real_model_names()


def pytest_terminal_summary(terminalreporter):
    if lt.SUMMARY_LINES:
        terminalreporter.section("laurelc summary")
        for line in lt.SUMMARY_LINES:
            terminalreporter.write_line(line)


def _fail(msg: str):
    pytest.fail(msg, pytrace=False)


@pytest.fixture(scope="session")
def laurelc_bin() -> Path:
    raw = os.environ.get("LAURELC_BIN")
    if not raw:
        _fail("LAURELC_BIN is not set. Build laurelc (cargo build --release -p laurelc) and "
              "export LAURELC_BIN=$PWD/target/release/laurelc")
    path = Path(raw).expanduser()
    if not path.is_file():
        _fail(f"LAURELC_BIN={raw} does not exist or is not a file")
    if not os.access(path, os.X_OK):
        _fail(f"LAURELC_BIN={raw} is not executable")
    return path.resolve()


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    return lt.default_cache_dir()


def _missing_cache(what: str, path: Path) -> None:
    _fail(f"{what} missing at {path}. Fetch it first: python3 fixtures/fetch.py "
          f"(cache: $LAURELC_CACHE, currently {os.environ.get('LAURELC_CACHE', 'unset -> ~/.cache/laurelc')})")


@pytest.fixture(scope="session")
def node_tests_dir(cache_dir: Path) -> Path:
    d = cache_dir / "onnx-node-tests" / "node"
    if not d.is_dir() or not any(d.glob("*/model.onnx")):
        _missing_cache("ONNX node-test suite", d)
    return d


@pytest.fixture(scope="session")
def model_path(cache_dir: Path):
    """model_path(name) -> Path of a committed fixture or a fetched real model."""

    def resolve(name: str) -> Path:
        if name in FIXTURE_MODELS:
            p = lt.FIXTURES_DIR / f"{name}.onnx"
            if not p.is_file():
                _fail(f"fixture {p} missing; regenerate with: python3 fixtures/generate.py")
            return p
        if name in REAL_MODELS:
            p = cache_dir / "models" / f"{name}.onnx"
            if not p.is_file():
                _missing_cache(f"model {name}", p)
            return p
        raise KeyError(name)

    return resolve


@pytest.fixture(scope="session")
def model_inputs(model_path):
    """model_inputs(name) -> dict of deterministic inputs (cached per session)."""
    cache: dict[str, dict[str, np.ndarray]] = {}

    def get(name: str) -> dict[str, np.ndarray]:
        if name not in cache:
            model = lt.load_model_proto(model_path(name))
            cache[name] = lt.make_inputs(model, seed=lt.DEFAULT_SEED,
                                         overrides=INPUT_OVERRIDES.get(name),
                                         dim_values=DIM_OVERRIDES.get(name))
        return cache[name]

    return get


@pytest.fixture(scope="session")
def ort_outputs(model_path, model_inputs):
    """ort_outputs(name) -> onnxruntime outputs of the original model (cached)."""
    cache: dict[str, dict[str, np.ndarray]] = {}

    def get(name: str) -> dict[str, np.ndarray]:
        if name not in cache:
            cache[name] = lt.ort_run(model_path(name), model_inputs(name))
        return cache[name]

    return get


@pytest.fixture(scope="session")
def exported_model(laurelc_bin, model_path, tmp_path_factory):
    """exported_model(name) -> path of `laurelc MODEL -o OUT --no-passes` (once per session)."""
    out_dir = tmp_path_factory.mktemp("roundtrip")
    cache: dict[str, Path | AssertionError] = {}

    def get(name: str) -> Path:
        if name not in cache:
            out = out_dir / f"{name}.onnx"
            try:
                lt.run_laurelc(laurelc_bin, lt.roundtrip_args(model_path(name), out))
                if not out.is_file():
                    raise AssertionError(f"laurelc exited 0 but wrote no {out}")
                cache[name] = out
            except AssertionError as e:  # remembered, so later tests of the model do not re-run it
                cache[name] = e
        result = cache[name]
        if isinstance(result, AssertionError):
            raise AssertionError(f"round trip of {name} failed: {result}")
        return result

    return get
