"""LAuReL augmentation cross-checks.

* Every augmented model (fixtures and real models, every variant at r=4, PA
  window 3 with h the identity, random
  initialisation so the LAuReL terms are not trivial) passes
  onnx.checker.check_model(full_check=True), and tract (`laurelc run`)
  agrees with onnxruntime on it to rtol 1e-4.
* An independent numpy computation of the paper's formula for block 0,
  from the original model's own activations (read with onnxruntime) and the
  parameters laurelc wrote, matches the augmented model's block output:
  RW  x' = α·f + β·x with (α, β) = 2·softmax(a, b),
  LR  x' = f + x + B·A·x (channel-last matmuls, channel-first 1×1 convs),
  RW+LR  x' = α·f + β·(x + B·A·x);
  vector RW  x' = α ⊙ f + β ⊙ x with α, β of length D along the channel axis.
* The same for block 2 of tiny_preln_transformer (stream 0, index 2, so PA
  reads x_2 = its own skip and the skips x_1, x_0 of blocks 1 and 0), with
  only block 2 augmented (`--blocks 0:2`) so that its inputs are the
  original model's:
  PA        x' = f + x + Σ_j γ_j·x_{2−j},
  RW+PA     x' = α·f + β·(x + Σ_j γ_j·x_{2−j}),
  LR+PA     x' = f + x + (x·A)·B + Σ_j γ_j·x_{2−j},
  RW+LR+PA  x' = α·f + β·(x + Σ_j γ_j·(x_{2−j}·A_j)·B_j)   (paper Eq. 6).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import laurel_testlib as lt

# Models with residuals (magika and silero_vad have none).
AUGMENTABLE = [n for n in lt.all_model_names()
               if n not in ("magika", "silero_vad", "neg_bias_add", "neg_attention_mask_add", "neg_gelu_tanh_add",
                            "trap_lstm_cells")]
VARIANTS = ["rw", "lr", "pa", "rw+lr", "rw+pa", "lr+pa", "rw+lr+pa"]


def augment(binary, model, out, variant, *extra):
    lt.run_laurelc(binary, [model, "-o", out, "--variant", variant, "--rank", "4",
                            "--init", "random", "--seed", "1", *extra])


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", AUGMENTABLE)
def test_augmented_model_is_valid_and_tract_matches_ort(name, variant, laurelc_bin, model_path, model_inputs, tmp_path):
    out = tmp_path / f"{name}.{variant}.onnx"
    augment(laurelc_bin, model_path(name), out, variant)
    onnx.checker.check_model(str(out), full_check=True)
    feeds = model_inputs(name)
    expected = lt.ort_run(out, feeds)
    saved = lt.save_inputs(feeds, tmp_path / "inputs")
    out_dir = tmp_path / "outputs"
    out_dir.mkdir()
    lt.run_laurelc(laurelc_bin, lt.run_args(out, saved, out_dir))
    got = lt.read_run_outputs(out_dir, expected)
    problems = {k: m for k, want in expected.items()
                if (m := lt.compare_close(got[k], want, rtol=1e-4, atol=1e-5))}
    assert not problems, f"tract vs onnxruntime on the augmented {name}: {problems}"


def _with_outputs(path, names, dest):
    m = onnx.load(str(path))
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(onnx.helper.make_empty_tensor_value_info(n))
    onnx.save(m, str(dest))
    return dest


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


@pytest.mark.parametrize("variant", ["rw", "lr", "rw+lr"])
@pytest.mark.parametrize("name", ["tiny_preln_transformer", "mobilenetv2_block"])
def test_block_zero_matches_the_papers_formula(name, variant, laurelc_bin, model_path, model_inputs, tmp_path):
    original = model_path(name)
    info = json.loads(lt.run_laurelc(laurelc_bin, ["inspect", original, "--json"]).stdout)
    block = info["residuals"][0]
    add = next(n for n in onnx.load(str(original)).graph.node if n.name == block["node"])
    out_name = add.output[0]
    aug = tmp_path / "aug.onnx"
    augment(laurelc_bin, original, aug, variant)
    params = {t.name: numpy_helper.to_array(t).astype(np.float64)
              for t in onnx.load(str(aug)).graph.initializer if t.name.startswith("laurel.0.")}
    feeds = model_inputs(name)
    acts = lt.ort_run(_with_outputs(original, [block["skip"], block["branch"]], tmp_path / "o.onnx"), feeds)
    x = acts[block["skip"]].astype(np.float64)
    f = acts[block["branch"]].astype(np.float64)
    got = lt.ort_run(_with_outputs(aug, [out_name], tmp_path / "a.onnx"), feeds)[out_name]
    if variant == "rw":
        alpha, beta = _rw(params, 0)
        want = alpha * f + beta * x
    elif variant == "lr":
        want = f + x + _low_rank(params, 0, "A", "B", x, block["axis"])
    else:
        alpha, beta = _rw(params, 0)
        want = alpha * f + beta * (x + _low_rank(params, 0, "A", "B", x, block["axis"]))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def _rw(params, k):
    """α and β from whichever parametrisation laurelc wrote (the paper's RW)."""
    if f"laurel.{k}.a" in params:                     # softmax: (α, β) = 2·softmax(a, b)
        a, b = params[f"laurel.{k}.a"], params[f"laurel.{k}.b"]
        alpha, beta = 2 * _sigmoid(a - b), 2 * _sigmoid(b - a)
        assert abs(alpha + beta - 2) < 1e-12
    elif f"laurel.{k}.p" in params:                   # sigmoid: α = 2σ(p), β = 2(1 − σ(p))
        p = params[f"laurel.{k}.p"]
        alpha, beta = 2 * _sigmoid(p), 2 * (1 - _sigmoid(p))
    else:                                             # raw α, β
        alpha, beta = params[f"laurel.{k}.alpha"], params[f"laurel.{k}.beta"]
    assert abs(alpha - 1) > 1e-3 or abs(beta - 1) > 1e-3, "random init should move α, β off 1"
    return alpha, beta


@pytest.mark.parametrize("rw_param", ["raw", "sigmoid"])
def test_block_zero_rw_parametrisations(rw_param, laurelc_bin, model_path, model_inputs, tmp_path):
    name = "tiny_preln_transformer"
    original = model_path(name)
    block = json.loads(lt.run_laurelc(laurelc_bin, ["inspect", original, "--json"]).stdout)["residuals"][0]
    out_name = next(n for n in onnx.load(str(original)).graph.node if n.name == block["node"]).output[0]
    aug = tmp_path / "aug.onnx"
    augment(laurelc_bin, original, aug, "rw", "--rw-param", rw_param)
    params = {t.name: numpy_helper.to_array(t).astype(np.float64)
              for t in onnx.load(str(aug)).graph.initializer if t.name.startswith("laurel.0.")}
    assert sorted(params) == (["laurel.0.alpha", "laurel.0.beta"] if rw_param == "raw" else ["laurel.0.p"])
    feeds = model_inputs(name)
    acts = lt.ort_run(_with_outputs(original, [block["skip"], block["branch"]], tmp_path / "o.onnx"), feeds)
    got = lt.ort_run(_with_outputs(aug, [out_name], tmp_path / "a.onnx"), feeds)[out_name]
    alpha, beta = _rw(params, 0)
    want = alpha * acts[block["branch"]].astype(np.float64) + beta * acts[block["skip"]].astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["tiny_preln_transformer", "tiny_resnet"])
def test_block_zero_vector_rw_scales_each_channel(name, laurelc_bin, model_path, model_inputs, tmp_path):
    """--rw-param vector: α and β of length D along the channel axis (the paper's
    vector form), x' = α ⊙ f + β ⊙ x, checked against numpy on the original
    model's activations; valid ONNX; channel-last [D], channel-first [D, 1, 1]."""
    original = model_path(name)
    block = json.loads(lt.run_laurelc(laurelc_bin, ["inspect", original, "--json"]).stdout)["residuals"][0]
    out_name = next(n for n in onnx.load(str(original)).graph.node if n.name == block["node"]).output[0]
    aug = tmp_path / "aug.onnx"
    augment(laurelc_bin, original, aug, "rw", "--rw-param", "vector")
    onnx.checker.check_model(str(aug), full_check=True)
    params = {t.name: numpy_helper.to_array(t).astype(np.float64)
              for t in onnx.load(str(aug)).graph.initializer if t.name.startswith("laurel.0.")}
    assert sorted(params) == ["laurel.0.alpha", "laurel.0.beta"]
    d, axis, rank = block["channels"], block["axis"], len(block["shape"])
    want_shape = (d,) if axis == rank - 1 else (d,) + (1,) * (rank - 2)
    alpha, beta = params["laurel.0.alpha"], params["laurel.0.beta"]
    assert alpha.shape == want_shape and beta.shape == want_shape
    assert len(np.unique(alpha)) == d, "random init draws each channel's α"
    feeds = model_inputs(name)
    acts = lt.ort_run(_with_outputs(original, [block["skip"], block["branch"]], tmp_path / "o.onnx"), feeds)
    got = lt.ort_run(_with_outputs(aug, [out_name], tmp_path / "a.onnx"), feeds)[out_name]
    f, x = (acts[block[k]].astype(np.float64) for k in ("branch", "skip"))
    np.testing.assert_allclose(got, alpha * f + beta * x, rtol=1e-4, atol=1e-5)


def _low_rank(params, k, a_name, b_name, v, axis):
    """(v·A)·B along the channel axis: matmuls channel-last, 1×1 convs channel-first."""
    A, B = params[f"laurel.{k}.{a_name}"], params[f"laurel.{k}.{b_name}"]
    assert np.abs(B).max() > 0, "B should be non-zero"
    if axis == v.ndim - 1:
        return (v @ A) @ B
    a2, b2 = A.reshape(A.shape[0], A.shape[1]), B.reshape(B.shape[0], B.shape[1])
    down = np.einsum("rc,nc...->nr...", a2, v)
    return np.einsum("cr,nr...->nc...", b2, down)


@pytest.mark.parametrize("variant", ["pa", "rw+pa", "lr+pa", "rw+lr+pa"])
def test_block_two_with_earlier_states_matches_the_papers_formula(variant, laurelc_bin, model_path, model_inputs,
                                                                  tmp_path):
    name = "tiny_preln_transformer"
    original = model_path(name)
    info = json.loads(lt.run_laurelc(laurelc_bin, ["inspect", original, "--json"]).stdout)
    res = info["residuals"]
    block = res[2]
    assert (block["stream"], block["index"]) == (0, 2)
    earlier = [r for r in res if r["stream"] == 0 and r["index"] < 2]
    assert [r["index"] for r in earlier] == [0, 1] and all(r["shape"] == block["shape"] for r in earlier)
    add = next(n for n in onnx.load(str(original)).graph.node if n.name == block["node"])
    out_name = add.output[0]
    aug = tmp_path / "aug.onnx"
    augment(laurelc_bin, original, aug, variant, "--blocks", "0:2")
    params = {t.name: numpy_helper.to_array(t).astype(np.float64)
              for t in onnx.load(str(aug)).graph.initializer if t.name.startswith("laurel.")}
    assert all(n.startswith("laurel.2.") or n == "laurel.two" for n in params), sorted(params)
    feeds = model_inputs(name)
    wanted = [block["skip"], block["branch"], res[1]["skip"], res[0]["skip"]]
    acts = lt.ort_run(_with_outputs(original, wanted, tmp_path / "o.onnx"), feeds)
    x, f, x1, x0 = (acts[n].astype(np.float64) for n in wanted)
    states = [x, x1, x0]                      # x_{2−j}, j = 0, 1, 2
    gammas = [params[f"laurel.2.gamma{j}"] for j in range(3)]
    assert f"laurel.2.gamma3" not in params
    assert all(abs(g) > 1e-4 for g in gammas), "random init should make γ non-zero"
    got = lt.ort_run(_with_outputs(aug, [out_name], tmp_path / "a.onnx"), feeds)[out_name]
    axis = block["axis"]
    pa = sum(g * s for g, s in zip(gammas, states))
    if variant == "pa":
        want = f + x + pa
    elif variant == "rw+pa":
        alpha, beta = _rw(params, 2)
        want = alpha * f + beta * (x + pa)
    elif variant == "lr+pa":
        want = f + x + _low_rank(params, 2, "A", "B", x, axis) + pa
    else:
        alpha, beta = _rw(params, 2)
        eq6 = sum(g * _low_rank(params, 2, f"A{j}", f"B{j}", s, axis) for j, (g, s) in enumerate(zip(gammas, states)))
        want = alpha * f + beta * (x + eq6)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


RW_PARAMS = ["raw", "softmax", "sigmoid", "vector"]


@pytest.mark.parametrize("rw_param", RW_PARAMS)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", ["tiny_resnet", "tiny_preln_transformer", "tiny_postln_bert"])
def test_every_added_initializer_is_a_blocks_parameter_and_random_ones_differ(
        name, variant, rw_param, laurelc_bin, model_path, tmp_path):
    """Issue 14, items 9 and 10: every `laurel.*` initializer is a block's
    parameter (`laurel.<block>.<name>`, no shared constant), the report counts
    exactly their elements, and under `--init random` no two of them (of more
    than one element) are equal, whatever the layout."""
    out, report = tmp_path / "aug.onnx", tmp_path / "aug.json"
    augment(laurelc_bin, model_path(name), out, variant, "--rw-param", rw_param,
            "--report-json", str(report), "-q")
    original = {i.name for i in onnx.load(model_path(name)).graph.initializer}
    added = [i for i in onnx.load(out).graph.initializer if i.name not in original]
    assert added and all(i.name.startswith("laurel.") for i in added), [i.name for i in added]
    for i in added:
        block = i.name.split(".")
        assert len(block) >= 3 and block[1].isdigit(), f"{i.name} belongs to no block"
    counted = json.loads(report.read_text())["parameters_added"]
    assert counted == sum(int(np.prod(i.dims)) for i in added)
    tensors = [(i.name, numpy_helper.to_array(i)) for i in added if int(np.prod(i.dims)) > 1]
    for k, (a, x) in enumerate(tensors):
        for b, y in tensors[k + 1:]:
            assert x.shape != y.shape or not np.array_equal(x, y), f"{a} and {b} are equal"


@pytest.mark.parametrize("projection", [False, True])
def test_resnet50_parameter_counts_follow_the_papers_cost_table(projection, laurelc_bin, model_path, tmp_path):
    """README, "Paper fidelity": on ResNet-50 (the manifest's, which has
    torchvision's structure), RW adds 2 per block and RW+LR 2 + 2rD per block,
    D the block's output channels; the first block of each stage is a
    projection shortcut, augmented only with --include-projection."""
    stages = [(256, 3), (512, 4), (1024, 6), (2048, 3)]
    ds = [d for d, n in stages for k in range(n) if projection or k > 0]
    r = 16
    want = {"rw": 2 * len(ds), "rw+lr": sum(2 + 2 * r * d for d in ds)}
    for variant, expected in want.items():
        report = tmp_path / f"{variant}.json"
        flags = ["--include-projection"] if projection else []
        lt.run_laurelc(laurelc_bin, [model_path("light_resnet50"), "-o", tmp_path / "out.onnx", "--variant", variant,
                                     "--rank", str(r), "--report-json", report, "-q", *flags])
        got = json.loads(report.read_text())
        assert len(got["blocks"]) == len(ds)
        assert got["parameters_added"] == expected, (variant, got["parameters_added"], expected)
