"""Helpers for laurelc's Python cross-check suite.

Kept free of pytest so each helper can be exercised on its own
(see test_testlib.py, which needs neither laurelc nor the model cache).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import onnx
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

REPO = Path(__file__).resolve().parents[2]
FIXTURES_DIR = REPO / "fixtures"
MANIFEST_PATH = FIXTURES_DIR / "models.json"

# The committed fixtures (fixtures/generate.py writes exactly these).
FIXTURE_FILES = (
    "tiny_resnet.onnx",
    "tiny_preln_transformer.onnx",
    "tiny_postln_bert.onnx",
    "mobilenetv2_block.onnx",
    "neg_bias_add.onnx",
    "neg_attention_mask_add.onnx",
    "neg_gelu_tanh_add.onnx",
)

DEFAULT_SEED = 0

# Lines the tests want shown at the end of the run (printed by conftest's
# pytest_terminal_summary even when the tests pass).
SUMMARY_LINES: list[str] = []


# ---------------------------------------------------------------------------
# Model catalogue
# ---------------------------------------------------------------------------

def load_manifest(path: Path = MANIFEST_PATH) -> dict:
    with open(path) as f:
        return json.load(f)


def real_model_names(manifest: dict | None = None) -> list[str]:
    manifest = manifest or load_manifest()
    return [m["name"] for m in manifest["models"]]


# PyTorch exports committed beside them (their generators are fixtures/*.py,
# and they are not `laurelc-fixtures`): the residual definition's traps, and
# LAuReL models written in PyTorch (fixtures/laurel_torch.py; the other
# variants and opsets are tests/python/test_torch_laurel.py's), and plain
# models of other families (fixtures/families_torch.py).
TORCH_FIXTURE_FILES = (
    "trap_attention_bias.onnx",
    "unet_add_skips.onnx",
    "trap_lstm_cells.onnx",
    "torch_gpt_rwlr_op16.onnx",
    "torch_resnet_rw_op17.onnx",
    "gemma3n_laurel_block.onnx",
    "torch_vit_layerscale.onnx",
    "torch_yolo_c3.onnx",
    "torch_tcn_unet.onnx",
)

# Sizes for committed fixtures whose symbolic dims cannot be 1: the TCN's
# stride-2 encoder needs a length it can halve twice.
FIXTURE_DIMS = {
    "torch_tcn_unet": {"time": 32},
}


def fixture_model_names() -> list[str]:
    return [f[: -len(".onnx")] for f in FIXTURE_FILES + TORCH_FIXTURE_FILES]


def all_model_names() -> list[str]:
    """Committed fixtures, then the real models of the manifest (test ids)."""
    return fixture_model_names() + real_model_names()


def default_cache_dir() -> Path:
    env = os.environ.get("LAURELC_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "laurelc"


# ---------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def sanitize_name(name: str) -> str:
    """File-name form of a tensor name, as `laurelc run --out-dir` writes it:
    every character outside [A-Za-z0-9_.-] becomes '_'."""
    return _UNSAFE.sub("_", name)


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class InputOverride:
    """Per-model override for one graph input.

    ``shape``: use this shape instead of the declared one (symbolic dims
    resolved).  ``value``: use exactly this array (shape and dtype included).
    """

    shape: tuple[int, ...] | None = None
    value: np.ndarray | None = field(default=None, compare=False)


@dataclass(frozen=True)
class InputSpec:
    name: str
    elem_type: int
    dims: tuple  # ints for static dims, str for dim_param, None for unknown


def graph_inputs(model: onnx.ModelProto) -> list[InputSpec]:
    """Real graph inputs (initializer-backed inputs of IR < 4 models excluded)."""
    inits = {t.name for t in model.graph.initializer}
    specs = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type"):
            raise ValueError(f"input {vi.name!r} is not a tensor; not supported by the test inputs")
        dims: list = []
        if tt.HasField("shape"):
            for d in tt.shape.dim:
                if d.HasField("dim_value") and d.dim_value > 0:
                    dims.append(int(d.dim_value))
                elif d.HasField("dim_param"):
                    dims.append(d.dim_param)
                else:
                    dims.append(None)
        specs.append(InputSpec(vi.name, tt.elem_type, tuple(dims)))
    return specs


def resolve_shape(spec: InputSpec, dim_values: Mapping[str, int] | None = None) -> tuple[int, ...]:
    """Static dims as declared; a symbolic dim takes dim_values[name] or 1; unknown dims are 1."""
    dim_values = dim_values or {}
    out = []
    for d in spec.dims:
        if isinstance(d, int):
            out.append(d)
        elif isinstance(d, str) and d in dim_values:
            out.append(int(dim_values[d]))
        else:
            out.append(1)
    return tuple(out)


def make_inputs(
    model: onnx.ModelProto,
    seed: int = DEFAULT_SEED,
    overrides: Mapping[str, InputOverride] | None = None,
    dim_values: Mapping[str, int] | None = None,
) -> dict[str, np.ndarray]:
    """Deterministic random inputs for every real graph input, in graph order.

    * floating point: standard normal (seeded);
    * integer inputs whose name contains "mask": all ones;
    * other integers: uniform in [0, 10);
    * bool: fair coin;
    * symbolic dims: 1 unless ``dim_values`` names them;
    * ``overrides[input_name]`` replaces the shape or the whole value.
    """
    rng = np.random.default_rng(seed)
    overrides = overrides or {}
    feeds: dict[str, np.ndarray] = {}
    for spec in graph_inputs(model):
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(spec.elem_type))
        ov = overrides.get(spec.name)
        if ov is not None and ov.value is not None:
            value = np.asarray(ov.value)
            if value.dtype != dtype:
                raise ValueError(f"override for {spec.name!r} has dtype {value.dtype}, model wants {dtype}")
            feeds[spec.name] = value
            continue
        shape = ov.shape if (ov is not None and ov.shape is not None) else resolve_shape(spec, dim_values)
        if dtype.kind == "f":
            value = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            if "mask" in spec.name.lower():
                value = np.ones(shape, dtype=dtype)
            else:
                value = rng.integers(0, 10, size=shape).astype(dtype)
        elif dtype.kind == "b":
            value = rng.random(shape) < 0.5
        else:
            raise ValueError(f"input {spec.name!r}: unsupported dtype {dtype}")
        feeds[spec.name] = np.ascontiguousarray(value)
    unknown = set(overrides) - set(feeds)
    if unknown:
        raise ValueError(f"overrides name inputs the model does not have: {sorted(unknown)}")
    return feeds


def save_inputs(feeds: Mapping[str, np.ndarray], directory: Path) -> list[tuple[str, Path]]:
    """Save each input as directory/<sanitized name>.npy; returns (name, path) pairs."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    used: set[str] = set()
    for i, (name, value) in enumerate(feeds.items()):
        stem = sanitize_name(name)
        if stem in used:
            stem = f"{stem}__{i}"
        used.add(stem)
        path = directory / f"{stem}.npy"
        np.save(path, value, allow_pickle=False)
        out.append((name, path))
    return out


# ---------------------------------------------------------------------------
# onnxruntime
# ---------------------------------------------------------------------------

def ort_run(model_path: Path | str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run on onnxruntime's CPU provider (one intra-op thread, for determinism)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    values = sess.run(names, dict(feeds))
    return dict(zip(names, values))


def arrays_identical(a: np.ndarray, b: np.ndarray) -> bool:
    """Same dtype, shape and values (NaNs in the same places count as equal)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def compare_close(actual: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> str | None:
    """None when close; otherwise a one-line description of the mismatch."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        return f"shape {actual.shape} != expected {expected.shape}"
    if actual.dtype != expected.dtype:
        return f"dtype {actual.dtype} != expected {expected.dtype}"
    if expected.dtype.kind in "fc":
        if np.allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True):
            return None
        with np.errstate(invalid="ignore"):
            diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
            bad = ~np.isclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)
        idx = np.unravel_index(int(np.argmax(np.where(bad, diff, -1))), expected.shape) if expected.ndim else ()
        return (f"{int(bad.sum())}/{bad.size} elements differ; max abs diff {np.nanmax(diff):.3g}; "
                f"worst at {tuple(int(i) for i in idx)}: {actual[idx]!r} vs {expected[idx]!r}")
    if np.array_equal(actual, expected):
        return None
    bad = actual != expected
    return f"{int(bad.sum())}/{bad.size} elements differ"


# ---------------------------------------------------------------------------
# laurelc
# ---------------------------------------------------------------------------

class LaurelcError(AssertionError):
    pass


def run_laurelc(binary: Path | str, args: Sequence[str], timeout: float = 300,
                cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run laurelc; raise LaurelcError with its output when it exits non-zero."""
    cmd = [str(binary), *map(str, args)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        raise LaurelcError(f"timed out after {timeout}s: {' '.join(cmd)}") from e
    if res.returncode != 0:
        raise LaurelcError(
            f"exit {res.returncode}: {' '.join(cmd)}\n--- stdout ---\n{res.stdout[-4000:]}"
            f"\n--- stderr ---\n{res.stderr[-4000:]}"
        )
    return res


def roundtrip_args(model: Path, out: Path) -> list[str]:
    return [str(model), "-o", str(out), "--no-passes"]


def run_args(model: Path, inputs: Iterable[tuple[str, Path]], out_dir: Path) -> list[str]:
    args = ["run", str(model)]
    for name, path in inputs:
        args += ["--input", f"{name}={path}"]
    args += ["--out-dir", str(out_dir)]
    return args


def read_run_outputs(out_dir: Path, output_names: Iterable[str]) -> dict[str, np.ndarray]:
    """Load out_dir/<sanitized name>.npy for each output name; raise if one is missing."""
    result = {}
    missing = []
    for name in output_names:
        p = out_dir / f"{sanitize_name(name)}.npy"
        if not p.is_file():
            missing.append(f"{name!r} -> {p.name}")
            continue
        result[name] = np.load(p, allow_pickle=False)
    if missing:
        present = sorted(p.name for p in out_dir.glob("*")) if out_dir.is_dir() else []
        raise AssertionError(f"laurelc run wrote no file for output(s) {missing}; {out_dir} holds {present}")
    return result


# ---------------------------------------------------------------------------
# Proto normalisation and comparison
# ---------------------------------------------------------------------------

def _is_repeated(fd: FieldDescriptor) -> bool:
    rep = getattr(fd, "is_repeated", None)
    if rep is not None:
        return bool(rep)
    return fd.label == FieldDescriptor.LABEL_REPEATED


def _is_message(fd: FieldDescriptor) -> bool:
    return fd.type in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP)


def normalise(msg: Message) -> Message:
    """In place: clear every singular scalar field explicitly set to its default.

    ONNX's schema is proto2, so a scalar field written with its default value
    (e.g. ``AttributeProto.i = 0``) is distinguishable on the wire from an
    unset one; both mean the same.  Recurses into singular and repeated
    message fields.  Members of a ``oneof`` are left alone: their presence
    selects the oneof case (``TensorShapeProto.Dimension.dim_value = 0`` is a
    zero-length dim, not an unknown one), so it carries meaning.  Empty
    sub-messages are kept for the same reason (an empty ``shape`` is a
    scalar, a missing one is unknown rank).  Returns ``msg``.
    """
    for fd, value in msg.ListFields():
        if _is_message(fd):
            if _is_repeated(fd):
                for v in value:
                    normalise(v)
            else:
                normalise(value)
        elif not _is_repeated(fd) and fd.containing_oneof is None:
            if type(value) is float and math.isnan(value):
                continue
            if value == fd.default_value and (type(value) is not float or
                                              math.copysign(1.0, value) == math.copysign(1.0, fd.default_value)):
                msg.ClearField(fd.name)
    return msg


def canonical_bytes(msg: Message) -> bytes:
    return msg.SerializeToString(deterministic=True)


def _scalar_eq(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def _short(v) -> str:
    s = repr(v)
    return s if len(s) <= 120 else s[:117] + "..."


def first_difference(a: Message, b: Message, path: str = "") -> str | None:
    """Human-readable location of the first difference between two messages
    of the same type (None if equal field by field, unknown fields included)."""
    if a.DESCRIPTOR.full_name != b.DESCRIPTOR.full_name:
        return f"{path or '<root>'}: type {a.DESCRIPTOR.full_name} != {b.DESCRIPTOR.full_name}"
    for fd in a.DESCRIPTOR.fields:
        p = f"{path}.{fd.name}" if path else fd.name
        va, vb = getattr(a, fd.name), getattr(b, fd.name)
        if _is_repeated(fd):
            if len(va) != len(vb):
                return f"{p}: {len(va)} entries != {len(vb)} entries"
            for i, (x, y) in enumerate(zip(va, vb)):
                if _is_message(fd):
                    d = first_difference(x, y, f"{p}[{i}]")
                    if d:
                        return d
                elif not _scalar_eq(x, y):
                    return f"{p}[{i}]: {_short(x)} != {_short(y)}"
            continue
        ha, hb = a.HasField(fd.name), b.HasField(fd.name)
        if ha != hb:
            return f"{p}: {'set' if ha else 'unset'} in original, {'set' if hb else 'unset'} in export" + (
                f" (value {_short(va if ha else vb)})" if not _is_message(fd) else "")
        if not ha:
            continue
        if _is_message(fd):
            d = first_difference(va, vb, p)
            if d:
                return d
        elif not _scalar_eq(va, vb):
            return f"{p}: {_short(va)} != {_short(vb)}"
    na, nb = _unknown_field_count(a), _unknown_field_count(b)
    if na != nb:
        return f"{path or '<root>'}: {na} unknown fields != {nb}"
    return None


def _unknown_field_count(msg: Message) -> int | None:
    try:
        from google.protobuf import unknown_fields

        return len(unknown_fields.UnknownFieldSet(msg))
    except Exception:  # older / other protobuf runtimes: leave it to the byte comparison
        return None


def normalised_difference(original: Message, exported: Message) -> str | None:
    """None when the two are equal after normalise(); else where they differ.

    Copies its arguments; they are not modified."""
    a = type(original)()
    a.CopyFrom(original)
    b = type(exported)()
    b.CopyFrom(exported)
    normalise(a)
    normalise(b)
    if canonical_bytes(a) == canonical_bytes(b):
        return None
    return first_difference(a, b) or "serialized bytes differ (unknown fields or field order)"


def load_model_proto(path: Path | str) -> onnx.ModelProto:
    """onnx.load without resolving external data (the protos are compared as stored)."""
    return onnx.load(str(path), load_external_data=False)
