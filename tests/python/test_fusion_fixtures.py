"""The fusion fixtures compute what they claim, and bench/chains.py makes valid models.

For each fixture that fixtures/generate.py writes for `laurelc fuse`: it passes
onnx.checker (full_check), is up to date byte for byte, and onnxruntime's outputs
match a float64 numpy reference of the intended math, computed from the model's own
initializers (looked up by name). The negative fixtures also show that each "wrong"
fusion they guard against changes an output beyond laurelc check's default
tolerance (rtol 1e-4, atol 1e-5), so a fuse that makes it is caught.

Needs neither laurelc nor the model cache.
"""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import laurel_testlib as lt

GENERATE = lt.FIXTURES_DIR / "generate.py"
CHAINS = lt.REPO / "bench" / "chains.py"

# laurelc check's defaults: a difference larger than this is a detected change.
CHECK_RTOL, CHECK_ATOL = 1e-4, 1e-5
# ORT (float32) against the float64 reference.
REF_RTOL, REF_ATOL = 1e-4, 1e-5


def _load_generate():
    spec = importlib.util.spec_from_file_location("laurelc_fixture_generate_test", GENERATE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gen = _load_generate()

FUSION_FIXTURES = (
    "pytorch_laurel_rw",
    "pytorch_laurel_lr_transformer",
    "decomposed_norm_rw",
    "neg_fuse_negative_scale",
    "neg_fuse_norm_axis",
    "neg_fuse_shared_consumer",
)


# ---------------------------------------------------------------------------
# numpy reference ops (float64)
# ---------------------------------------------------------------------------

def conv2d(x, w, b=None):
    """Stride-1 'same' convolution, NCHW, square odd kernel."""
    k = w.shape[-1]
    p = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    h, wd = x.shape[2:]
    out = np.zeros((x.shape[0], w.shape[0], h, wd))
    for i in range(k):
        for j in range(k):
            out += np.einsum("nchw,oc->nohw", xp[:, :, i:i + h, j:j + wd], w[:, :, i, j])
    if b is not None:
        out += b[None, :, None, None]
    return out


def batchnorm(x, scale, bias, mean, var, eps=1e-5):
    c = (None, slice(None), None, None)
    return (x - mean[c]) / np.sqrt(var[c] + eps) * scale[c] + bias[c]


def relu(x):
    return np.maximum(x, 0.0)


def layernorm(x, gamma, beta, eps, axis=-1):
    mu = x.mean(axis=axis, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axis, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * gamma + beta


def rmsnorm(x, gamma, eps):
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps) * gamma


def gelu_erf(x):
    return x * 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def head(h, p, prefix):
    """GlobalAveragePool, Flatten, Gemm(transB=1)."""
    return h.mean(axis=(2, 3)) @ p[f"{prefix}.weight"].T + p[f"{prefix}.bias"]


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def fixture_path(name: str) -> Path:
    return lt.FIXTURES_DIR / f"{name}.onnx"


def load(name: str) -> onnx.ModelProto:
    return onnx.load(str(fixture_path(name)))


def params(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer
            if t.data_type == onnx.TensorProto.FLOAT}


def inputs_for(model: onnx.ModelProto, seed: int) -> dict[str, np.ndarray]:
    return lt.make_inputs(model, seed=seed)


def run_both(name: str, reference, seed: int):
    model = load(name)
    feeds = inputs_for(model, seed)
    got = lt.ort_run(fixture_path(name), feeds)
    want = reference(params(model), {k: v.astype(np.float64) for k, v in feeds.items()})
    return got, want


def assert_matches(got: dict, want: dict):
    assert set(got) == set(want), (sorted(got), sorted(want))
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=REF_RTOL, atol=REF_ATOL, err_msg=k)


def detectably_different(a: np.ndarray, b: np.ndarray) -> bool:
    """Would `laurelc check` (A as reference) fail on b?"""
    return not np.allclose(b, a, rtol=CHECK_RTOL, atol=CHECK_ATOL)


def scalar(p, name):
    v = p[name]
    assert v.shape == (), f"{name} should be a 0-d initializer, is {v.shape}"
    return float(v)


def ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    (n,) = [n for n in model.graph.node if n.name == name]
    return n


# ---------------------------------------------------------------------------
# references of the intended math
# ---------------------------------------------------------------------------

def ref_pytorch_laurel_rw(p, feeds):
    h = conv2d(feeds["input"], p["stem.conv.weight"])
    h = relu(batchnorm(h, p["stem.bn.weight"], p["stem.bn.bias"], p["stem.bn.running_mean"],
                       p["stem.bn.running_var"]))
    for i in (1, 2, 3):
        s = f"layer{i}"
        f = relu(conv2d(h, p[f"{s}.conv1.weight"], p[f"{s}.conv1.bias"]))
        if i == 2:
            f = conv2d(f, p[f"{s}.conv2.weight"])
            f = batchnorm(f, p[f"{s}.bn2.weight"], p[f"{s}.bn2.bias"], p[f"{s}.bn2.running_mean"],
                          p[f"{s}.bn2.running_var"])
        else:
            f = conv2d(f, p[f"{s}.conv2.weight"], p[f"{s}.conv2.bias"])
        h = relu(scalar(p, f"{s}.alpha") * f + scalar(p, f"{s}.beta") * h)
    return {"output": head(h, p, "fc")}


def ref_pytorch_laurel_lr_transformer(p, feeds):
    x = feeds["input"]
    for i in range(3):
        s = f"layers.{i}"
        h = layernorm(x, p[f"{s}.ln.weight"], p[f"{s}.ln.bias"], 1e-5)
        f = relu(h @ p[f"{s}.fc1.weight"] + p[f"{s}.fc1.bias"])
        f = f @ p[f"{s}.fc2.weight"] + p[f"{s}.fc2.bias"]
        x = scalar(p, f"{s}.alpha") * f + scalar(p, f"{s}.beta") * x + (x @ p[f"{s}.A"]) @ p[f"{s}.B"]
    return {"output": layernorm(x, p["ln_f.weight"], p["ln_f.bias"], 1e-5)}


def _neg_scale_forward(p, feeds, wrong: str | None = None):
    """neg_fuse_negative_scale; ``wrong`` applies one unsound rewrite:
    'beta2_through_relu': Relu(a f + b x) -> b Relu(a/b f + x) with b = -0.7;
    'alpha3_into_conv': a Relu(c) -> Relu(a c) with a = -0.6 (folding alpha into conv2)."""
    h = feeds["input"]
    for i in (1, 2, 3):
        b = f"block{i}"
        a, be = scalar(p, f"{b}.alpha"), scalar(p, f"{b}.beta")
        f = relu(conv2d(h, p[f"{b}/conv1.weight"], p[f"{b}/conv1.bias"]))
        c = conv2d(f, p[f"{b}/conv2.weight"], p[f"{b}/conv2.bias"])
        if i == 3:
            af = relu(a * c) if wrong == "alpha3_into_conv" else a * relu(c)
        else:
            af = a * c
        if i == 2 and wrong == "beta2_through_relu":
            h = be * relu(af / be + h)
        else:
            h = relu(af + be * h)
    return {"logits": head(h, p, "head/fc")}


def ref_neg_fuse_negative_scale(p, feeds):
    return _neg_scale_forward(p, feeds)


def _decomposed_norm(x, p, name, axis):
    return layernorm(x, p[f"{name}.gamma"], p[f"{name}.beta"], float(p[f"{name}.eps"]), axis=axis)


def ref_neg_fuse_norm_axis(p, feeds):
    x = feeds["x"]
    a = layernorm(x * p["channel_scale.scale"], p["channel_scale/ln.gamma"], p["channel_scale/ln.beta"], 1e-5)
    b = _decomposed_norm(x * p["position_scale.scale"], p, "position_scale/norm", axis=1)
    c = layernorm(x * p["row_scale.scale"], p["row_scale/ln.gamma"], p["row_scale/ln.beta"], 1e-2)
    return {"out_channel_scale": a, "out_axis1_norm": b, "out_row_scale": c}


def ref_neg_fuse_shared_consumer(p, feeds):
    h = feeds["input"]
    out = {}
    for i in (1, 2, 3):
        b = f"block{i}"
        f = relu(conv2d(h, p[f"{b}/conv1.weight"], p[f"{b}/conv1.bias"]))
        f = conv2d(f, p[f"{b}/conv2.weight"], p[f"{b}/conv2.bias"])
        af = scalar(p, f"{b}.alpha") * f
        h = relu(af + scalar(p, f"{b}.beta") * h)
        if i == 1:
            out["block1/alpha_mul"] = af
        if i == 2:
            out["block2/conv2"] = f
    out["block3/relu_out"] = h
    out["logits"] = head(h, p, "head/fc")
    return out


def _linear(x, p, name):
    return x @ p[f"{name}.weight"] + p[f"{name}.bias"]


def ref_decomposed_norm_rw(p, feeds, last_eps: float | None = None):
    x = feeds["hidden"]
    d = x.shape[-1]
    for blk in range(2):
        pre = f"block{blk}"
        q, k, v = (_linear(x, p, f"{pre}/attn/{n}") for n in "qkv")
        a = softmax(q @ np.swapaxes(k, -1, -2) / math.sqrt(d))
        o = _linear(a @ v, p, f"{pre}/attn/out")
        y = scalar(p, f"{pre}/attn.alpha") * o + scalar(p, f"{pre}/attn.beta") * x
        n = f"{pre}/attn_norm"
        if blk == 0:
            x = layernorm(y, p[f"{n}.gamma"], p[f"{n}.beta"], float(p[f"{n}.eps"]))
        else:
            x = rmsnorm(y, p[f"{n}.gamma"], float(p[f"{n}.eps"]))
        f = _linear(gelu_erf(_linear(x, p, f"{pre}/ffn/fc1")), p, f"{pre}/ffn/fc2")
        y = scalar(p, f"{pre}/ffn.alpha") * f + scalar(p, f"{pre}/ffn.beta") * x
        n = f"{pre}/ffn_norm"
        if blk == 0:
            x = layernorm(y, p[f"{n}.gamma"], p[f"{n}.beta"], float(p[f"{n}.eps"]))
        else:
            beta = scalar(p, f"{pre}/ffn.beta")
            if last_eps is None:
                x = rmsnorm(y, p[f"{n}.gamma"], float(p[f"{n}.eps"]))
            else:  # a fuse that factors beta out of y and sets the norm's eps to last_eps
                x = rmsnorm(y / beta, p[f"{n}.gamma"], last_eps)
    return {"out": x}


REFERENCES = {
    "pytorch_laurel_rw": ref_pytorch_laurel_rw,
    "pytorch_laurel_lr_transformer": ref_pytorch_laurel_lr_transformer,
    "decomposed_norm_rw": ref_decomposed_norm_rw,
    "neg_fuse_negative_scale": ref_neg_fuse_negative_scale,
    "neg_fuse_norm_axis": ref_neg_fuse_norm_axis,
    "neg_fuse_shared_consumer": ref_neg_fuse_shared_consumer,
}


# ---------------------------------------------------------------------------
# every fusion fixture
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", FUSION_FIXTURES)
def test_fixture_is_listed_valid_and_fresh(name):
    fname = f"{name}.onnx"
    assert fname in gen.MODELS, f"{fname} missing from fixtures/generate.py MODELS"
    path = fixture_path(name)
    assert path.is_file(), f"{path} missing; run python3 fixtures/generate.py"
    onnx.checker.check_model(str(path), full_check=True)
    assert path.read_bytes() == gen.build(fname), f"{fname} is stale; run python3 fixtures/generate.py"
    model = load(name)
    assert model.producer_name == "laurelc-fixtures"
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 18)]
    names = [n.name for n in model.graph.node]
    assert all(names) and len(names) == len(set(names)), "every node has a unique stable name"
    assert path.stat().st_size < gen.MAX_BYTES


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", FUSION_FIXTURES)
def test_fixture_computes_the_intended_math(name, seed):
    got, want = run_both(name, REFERENCES[name], seed)
    assert_matches(got, want)
    assert all(np.isfinite(v).all() for v in got.values())


def test_fixture_references_cover_every_fixture():
    assert set(REFERENCES) == set(FUSION_FIXTURES)
    fusion_files = {f for f in gen.MODELS if f.startswith(("pytorch_laurel", "decomposed_norm", "neg_fuse"))}
    assert fusion_files == {f"{n}.onnx" for n in FUSION_FIXTURES}


def test_reduce_mean_takes_axes_as_an_input():
    for name in ("decomposed_norm_rw", "neg_fuse_norm_axis"):
        model = load(name)
        inits = {t.name for t in model.graph.initializer}
        for n in model.graph.node:
            if n.op_type == "ReduceMean":
                assert len(n.input) == 2 and n.input[1] in inits, n.name
                assert not any(a.name == "axes" for a in n.attribute), n.name


# ---------------------------------------------------------------------------
# structure of the positive fixtures
# ---------------------------------------------------------------------------

def _rw_muls(model, p):
    """Muls with a 0-d float initializer operand: (node, tensor operand, scalar value)."""
    out = []
    for n in model.graph.node:
        if n.op_type == "Mul":
            consts = [i for i in n.input if i in p and p[i].shape == ()]
            if consts:
                (c,) = consts
                (t,) = [i for i in n.input if i != c]
                out.append((n, t, float(p[c])))
    return out


def test_pytorch_rw_is_written_the_pytorch_way():
    model = load("pytorch_laurel_rw")
    p = params(model)
    muls = _rw_muls(model, p)
    assert len(muls) == 6
    for n, _, v in muls:
        assert n.input[1] in p and n.input[0] not in p, f"{n.name}: tensor operand first"
        assert v > 0
        assert n.name.startswith("/layer") and n.output[0] == f"{n.name}_output_0"
    alphas = [scalar(p, f"layer{i}.alpha") for i in (1, 2, 3)]
    betas = [scalar(p, f"layer{i}.beta") for i in (1, 2, 3)]
    assert len(set(alphas)) == 3 and len(set(betas)) == 3
    assert np.allclose(alphas, [0.83, 0.67, 1.12]) and np.allclose(betas, [1.21, 1.08, 0.94])
    # layer2's branch ends in a BatchNormalization, the others in a Conv with bias
    assert node(model, "/layer2/Mul").input[0] == node(model, "/layer2/bn2/BatchNormalization").output[0]
    assert node(model, "/layer1/Mul").input[0] == node(model, "/layer1/conv2/Conv").output[0]
    assert len(node(model, "/layer1/conv2/Conv").input) == 3


def test_pytorch_lr_transformer_structure():
    model = load("pytorch_laurel_lr_transformer")
    p = params(model)
    assert ops(model).count("LayerNormalization") == 4
    assert ops(model).count("Mul") == 6
    for i in range(3):
        s = f"layers.{i}"
        assert p[f"{s}.A"].shape == (32, 4) and p[f"{s}.B"].shape == (4, 32)
        assert np.abs(p[f"{s}.A"]).min() > 0 and np.abs(p[f"{s}.B"]).min() > 0
        assert scalar(p, f"{s}.alpha") > 0 and scalar(p, f"{s}.beta") > 0
        out = node(model, f"/{s}/Add_1")
        assert list(out.input) == [f"/{s}/Add_output_0", f"/{s}/MatMul_1_output_0"]
    # the LR term is not negligible: dropping it is a detectable change
    feeds = {k: v.astype(np.float64) for k, v in inputs_for(model, 0).items()}
    full = ref_pytorch_laurel_lr_transformer(p, feeds)["output"]
    p0 = dict(p)
    for i in range(3):
        p0[f"layers.{i}.B"] = np.zeros_like(p[f"layers.{i}.B"])
    assert detectably_different(full, ref_pytorch_laurel_lr_transformer(p0, feeds)["output"])


def test_decomposed_norm_rw_structure():
    model = load("decomposed_norm_rw")
    p = params(model)
    o = ops(model)
    assert o.count("LayerNormalization") == 0
    assert o.count("Reciprocal") == 1 and o.count("Sqrt") == 4 and o.count("ReduceMean") == 6
    for n in ("block0/attn_norm", "block0/ffn_norm"):
        assert float(p[f"{n}.eps"]) == np.float32(1e-12) and float(p[f"{n}.two"]) == 2.0
        assert [node(model, f"{n}/{s}").op_type for s in
                ("mean", "sub", "pow", "var", "add_eps", "sqrt", "div", "mul_gamma", "add_beta")] == \
            ["ReduceMean", "Sub", "Pow", "ReduceMean", "Add", "Sqrt", "Div", "Mul", "Add"]
    for blk in ("block0", "block1"):
        for sub in ("attn", "ffn"):
            assert scalar(p, f"{blk}/{sub}.alpha") > 0 and scalar(p, f"{blk}/{sub}.beta") > 0


def test_decomposed_norm_rw_detects_an_unscaled_epsilon():
    """Absorbing beta into block1/ffn_norm (eps 1e-2) without eps -> eps/beta^2 fails check;
    with it the output is unchanged. (At eps 1e-12 and 1e-6 the same mistake is invisible.)"""
    model = load("decomposed_norm_rw")
    p = params(model)
    feeds = {k: v.astype(np.float64) for k, v in inputs_for(model, 0).items()}
    want = ref_decomposed_norm_rw(p, feeds)["out"]
    eps = float(p["block1/ffn_norm.eps"])
    beta = scalar(p, "block1/ffn.beta")
    np.testing.assert_allclose(ref_decomposed_norm_rw(p, feeds, last_eps=eps / beta**2)["out"], want,
                               rtol=1e-9, atol=1e-12)
    assert detectably_different(want, ref_decomposed_norm_rw(p, feeds, last_eps=eps)["out"])


# ---------------------------------------------------------------------------
# the negatives: each unsound fusion is detectable
# ---------------------------------------------------------------------------

def test_negative_scale_structure_and_wrong_fusions_detected():
    model = load("neg_fuse_negative_scale")
    p = params(model)
    assert scalar(p, "block2.beta") == np.float32(-0.7) and scalar(p, "block3.alpha") == np.float32(-0.6)
    assert scalar(p, "block1.alpha") > 0 and scalar(p, "block1.beta") > 0
    assert node(model, "block2/relu_out").input[0] == "block2/residual"
    assert node(model, "block3/alpha_mul").input[1] == "block3/relu2"
    feeds = {k: v.astype(np.float64) for k, v in inputs_for(model, 0).items()}
    want = _neg_scale_forward(p, feeds)["logits"]
    for wrong in ("beta2_through_relu", "alpha3_into_conv"):
        assert detectably_different(want, _neg_scale_forward(p, feeds, wrong)["logits"]), wrong


def test_negative_scale_relus_see_both_signs():
    """The Relus the negative scales would have to cross are active and inactive."""
    model = load("neg_fuse_negative_scale")
    p = params(model)
    feeds = {k: v.astype(np.float64) for k, v in inputs_for(model, 0).items()}
    h = feeds["input"]
    pre = {}
    for i in (1, 2, 3):
        b = f"block{i}"
        f = relu(conv2d(h, p[f"{b}/conv1.weight"], p[f"{b}/conv1.bias"]))
        c = conv2d(f, p[f"{b}/conv2.weight"], p[f"{b}/conv2.bias"])
        pre[f"{b}/relu2"] = c
        af = scalar(p, f"{b}.alpha") * (relu(c) if i == 3 else c)
        y = af + scalar(p, f"{b}.beta") * h
        pre[f"{b}/relu_out"] = y
        h = relu(y)
    for k in ("block2/relu_out", "block3/relu2"):
        frac = (pre[k] > 0).mean()
        assert 0.1 < frac < 0.9, f"{k}: {frac:.2f} of its inputs positive"


def test_norm_axis_wrong_absorptions_detected():
    model = load("neg_fuse_norm_axis")
    p = params(model)
    assert p["channel_scale.scale"].shape == (32,) and np.ptp(p["channel_scale.scale"]) > 0.5
    assert p["position_scale.scale"].shape == (8, 1) and np.ptp(p["position_scale.scale"]) > 0.5
    assert p["row_scale.scale"].shape == (1, 8, 1) and np.ptp(p["row_scale.scale"]) > 1.0
    assert all((p[k] > 0).all() for k in ("channel_scale.scale", "position_scale.scale", "row_scale.scale"))
    axes = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}["position_scale/norm.axes"]
    assert axes.tolist() == [1]
    feeds = {k: v.astype(np.float64) for k, v in inputs_for(model, 0).items()}
    x = feeds["x"]
    want = ref_neg_fuse_norm_axis(p, feeds)
    # dropping a scale (as if absorbed by the norm) is detectable
    assert detectably_different(want["out_channel_scale"],
                                layernorm(x, p["channel_scale/ln.gamma"], p["channel_scale/ln.beta"], 1e-5))
    assert detectably_different(want["out_axis1_norm"], _decomposed_norm(x, p, "position_scale/norm", axis=1))
    # (c) is exactly LayerNorm with a per-row epsilon eps / c_i^2 ...
    c = p["row_scale.scale"]
    per_row = layernorm(x, p["row_scale/ln.gamma"], p["row_scale/ln.beta"], 1e-2 / c**2)
    np.testing.assert_allclose(per_row, want["out_row_scale"], rtol=1e-9, atol=1e-12)
    # ... and no single epsilon reproduces it
    for eps in [1e-2, *(1e-2 / c.ravel() ** 2)]:
        assert detectably_different(want["out_row_scale"],
                                    layernorm(x, p["row_scale/ln.gamma"], p["row_scale/ln.beta"], eps)), eps


def test_shared_consumer_outputs():
    model = load("neg_fuse_shared_consumer")
    outs = [o.name for o in model.graph.output]
    assert outs == ["logits", "block1/alpha_mul", "block2/conv2", "block3/relu_out"]
    produced = {o: n for n in model.graph.node for o in n.output}
    assert produced["block1/alpha_mul"].op_type == "Mul"
    assert produced["block2/conv2"].op_type == "Conv"
    assert produced["block3/relu_out"].op_type == "Relu"
    # every exposed value also feeds the rest of the graph
    consumers = {i for n in model.graph.node for i in n.input}
    assert {"block1/alpha_mul", "block2/conv2", "block3/relu_out"} <= consumers
    # folding alpha2 into block2/conv2 would change the block2/conv2 output
    p = params(model)
    feeds = {k: v.astype(np.float64) for k, v in inputs_for(model, 0).items()}
    want = ref_neg_fuse_shared_consumer(p, feeds)
    a2 = scalar(p, "block2.alpha")
    assert detectably_different(want["block2/conv2"], a2 * want["block2/conv2"])
    # pushing beta3 past block3/relu_out would change that output
    b3 = scalar(p, "block3.beta")
    assert detectably_different(want["block3/relu_out"], want["block3/relu_out"] / b3)


# ---------------------------------------------------------------------------
# bench/chains.py
# ---------------------------------------------------------------------------

def _chain(tmp_path: Path, kind: str, blocks: int, *extra: str) -> Path:
    out = tmp_path / f"{kind}_{blocks}{'_'.join(extra)}.onnx"
    res = subprocess.run([sys.executable, str(CHAINS), "--kind", kind, "--blocks", str(blocks),
                          "--out", str(out), *extra], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    return out


@pytest.mark.parametrize("blocks", [3, 25])
@pytest.mark.parametrize("kind", ["resnet", "preln"])
def test_chain_is_valid_and_runs(tmp_path, kind, blocks):
    path = _chain(tmp_path, kind, blocks)
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    o = ops(model)
    if kind == "resnet":
        assert o.count("Conv") == 2 * blocks and o.count("Add") == blocks and o.count("Relu") == 2 * blocks
    else:
        assert o.count("LayerNormalization") == blocks + 1 and o.count("MatMul") == 2 * blocks
        assert o.count("Add") == blocks and o.count("Relu") == blocks
    outs = lt.ort_run(path, lt.make_inputs(model))
    assert outs and all(np.isfinite(v).all() for v in outs.values())
    assert all(np.abs(v).max() < 100 for v in outs.values())


@pytest.mark.parametrize("kind", ["resnet", "preln"])
def test_chain_is_deterministic_and_matches_reference(tmp_path, kind):
    a = _chain(tmp_path, kind, 3)
    b = _chain(tmp_path, kind, 3, "--variant-free")
    assert a.read_bytes() == b.read_bytes()
    model = onnx.load(str(a))
    p = params(model)
    feeds = lt.make_inputs(model)
    got = lt.ort_run(a, feeds)
    x = next(iter(feeds.values())).astype(np.float64)
    for i in range(3):
        blk = f"block{i}"
        if kind == "resnet":
            f = relu(conv2d(x, p[f"{blk}/conv1.weight"], p[f"{blk}/conv1.bias"]))
            x = relu(x + conv2d(f, p[f"{blk}/conv2.weight"], p[f"{blk}/conv2.bias"]))
        else:
            h = layernorm(x, p[f"{blk}/ln.gamma"], p[f"{blk}/ln.beta"], 1e-5)
            x = x + relu(h @ p[f"{blk}/fc1.weight"]) @ p[f"{blk}/fc2.weight"]
    want = head(x, p, "head/fc") if kind == "resnet" else \
        layernorm(x, p["final_ln.gamma"], p["final_ln.beta"], 1e-5)
    (out,) = got.values()
    np.testing.assert_allclose(out, want, rtol=REF_RTOL, atol=REF_ATOL)


def test_chain_rejects_zero_blocks(tmp_path):
    res = subprocess.run([sys.executable, str(CHAINS), "--kind", "resnet", "--blocks", "0",
                          "--out", str(tmp_path / "x.onnx")], capture_output=True, text=True)
    assert res.returncode != 0 and not (tmp_path / "x.onnx").exists()
