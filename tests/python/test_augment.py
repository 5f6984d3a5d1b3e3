"""LAuReL augmentation cross-checks.

* Every augmented model (fixtures and real models, rw and lr at r=4, random
  initialisation so the LAuReL terms are not trivial) passes
  onnx.checker.check_model(full_check=True), and tract (`laurelc run`)
  agrees with onnxruntime on it to rtol 1e-4.
* An independent numpy computation of the paper's formula for block 0,
  from the original model's own activations (read with onnxruntime) and the
  parameters laurelc wrote, matches the augmented model's block output:
  RW  x' = α·f + β·x with (α, β) = 2·softmax(a, b),
  LR  x' = f + x + B·A·x (channel-last matmuls, channel-first 1×1 convs).
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
               if n not in ("magika", "silero_vad", "neg_bias_add", "neg_attention_mask_add", "neg_gelu_tanh_add")]
VARIANTS = ["rw", "lr"]


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


@pytest.mark.parametrize("variant", VARIANTS)
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
        a, b = params["laurel.0.a"], params["laurel.0.b"]
        alpha, beta = 2 * _sigmoid(a - b), 2 * _sigmoid(b - a)   # 2·softmax(a, b)
        assert abs(alpha + beta - 2) < 1e-12 and abs(alpha - 1) > 1e-3, "random init should move α off 1"
        want = alpha * f + beta * x
    else:
        A, B = params["laurel.0.A"], params["laurel.0.B"]
        assert np.abs(B).max() > 0, "random init should make B non-zero"
        if block["axis"] == x.ndim - 1:           # channel-last: x·A·B
            want = f + x + (x @ A) @ B
        else:                                      # channel-first: 1×1 convolutions
            a2, b2 = A.reshape(A.shape[0], A.shape[1]), B.reshape(B.shape[0], B.shape[1])
            down = np.einsum("rc,nc...->nr...", a2, x)
            want = f + x + np.einsum("cr,nr...->nc...", b2, down)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
