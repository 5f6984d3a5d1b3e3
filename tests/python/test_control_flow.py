"""Residual blocks inside control flow, in real `torch.jit.script` exports
(`fixtures/control_flow_torch.py`; issue 14, item 2), cross-checked on
onnxruntime:

* every variant at `--init identity` computes exactly what the original
  does, through every branch (the `If` on `sr`; the nested `If`s on `a`, `b`;
  the `Loop` over `steps`);
* each output passes the ONNX checker's full check, and every `laurel.*`
  parameter is an initializer of the main graph, not of a subgraph;
* `fuse` of the random-init models computes what the unfused model does
  (rtol 1e-4, atol 1e-5) and leaves no `laurel.*` parameter anywhere for RW.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import laurel_testlib as lt

FIXTURES = lt.REPO / "fixtures"
VARIANTS = ["rw", "rw+lr", "rw+lr+pa"]
X = np.random.default_rng(0).standard_normal((2, 1, 512)).astype(np.float32)
# Every model, with one feed per path through its control flow.
MODELS = {
    "torch_if_resblocks": [{"input": X, "sr": np.array(s, dtype=np.int64)} for s in (16000, 8000)],
    "torch_nested_if": [{"input": X, "a": np.array(a, dtype=np.int64), "b": np.array(b, dtype=np.int64)}
                        for a, b in ((1, 1), (1, 0), (0, 1))],
    "torch_loop_resblock": [{"input": X, "steps": np.array(n, dtype=np.int64)} for n in (0, 3)],
}


def subgraphs(g: onnx.GraphProto):
    for n in g.node:
        for a in n.attribute:
            for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                yield sub
                yield from subgraphs(sub)


def agree(a, b, feeds, rtol, atol):
    for fd in feeds:
        x, y = lt.ort_run(a, fd), lt.ort_run(b, fd)
        for name in x:
            msg = lt.compare_close(y[name], x[name], rtol, atol)
            assert msg is None, f"{b.name} {fd.keys()}: {name}: {msg}"


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", list(MODELS))
def test_augmentation_inside_control_flow_preserves_the_function(laurelc_bin, tmp_path, name, variant):
    src = FIXTURES / f"{name}.onnx"
    out = tmp_path / f"{name}.{variant}.onnx"
    lt.run_laurelc(laurelc_bin, [str(src), "-o", str(out), "--variant", variant])
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    params = [t.name for t in m.graph.initializer if t.name.startswith("laurel.")]
    assert params, "no parameters in the main graph"
    for sub in subgraphs(m.graph):
        assert not [t.name for t in sub.initializer if t.name.startswith("laurel.")]
    agree(src, out, MODELS[name], 0.0, 0.0)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", list(MODELS))
def test_fusion_inside_control_flow_computes_the_augmented_model(laurelc_bin, tmp_path, name, variant):
    src = FIXTURES / f"{name}.onnx"
    aug = tmp_path / f"{name}.{variant}.onnx"
    fused = tmp_path / f"{name}.{variant}.fused.onnx"
    lt.run_laurelc(laurelc_bin, [str(src), "-o", str(aug), "--variant", variant, "--init", "random", "--seed", "4"])
    out = lt.run_laurelc(laurelc_bin, ["fuse", str(aug), "-o", str(fused)])
    assert "saturated" in out.stdout, out.stdout
    m = onnx.load(str(fused))
    onnx.checker.check_model(m, full_check=True)
    if variant == "rw":
        names = [t.name for g in [m.graph, *subgraphs(m.graph)] for t in g.initializer]
        assert not [n for n in names if n.startswith("laurel.")], names
    agree(aug, fused, MODELS[name], 1e-4, 1e-5)


TWO_RATES = FIXTURES / "decided" / "torch_if_two_rates.onnx"


@pytest.mark.parametrize("sr", [16000, 8000])
def test_an_if_decided_by_a_given_input_runs_on_tract_as_on_onnxruntime(laurelc_bin, tmp_path, sr):
    """The two branches give different frame counts, so tract cannot type the
    `If`; given `sr`, the loader takes its branch, and tract computes what
    onnxruntime does."""
    feeds = {"input": X, "sr": np.array(sr, dtype=np.int64)}
    inputs = lt.save_inputs(feeds, tmp_path / "in")
    out_dir = tmp_path / "out"
    lt.run_laurelc(laurelc_bin, lt.run_args(TWO_RATES, inputs, out_dir))
    got = lt.read_run_outputs(out_dir, ["prob"])["prob"]
    want = lt.ort_run(TWO_RATES, feeds)["prob"]
    msg = lt.compare_close(got, want, 1e-4, 1e-5)
    assert msg is None, msg


def test_an_undecided_if_names_the_input_that_would_decide_it(laurelc_bin, tmp_path):
    inputs = lt.save_inputs({"input": X}, tmp_path / "in")
    with pytest.raises(lt.LaurelcError) as e:
        lt.run_laurelc(laurelc_bin, lt.run_args(TWO_RATES, inputs, tmp_path / "out"))
    assert "exit 2" in str(e.value)
    assert "an If's condition reads `sr`: given (--input NAME=FILE.npy)" in str(e.value)
