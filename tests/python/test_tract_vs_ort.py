"""(b) tract (via `laurelc run`) against onnxruntime on the same saved inputs,
for every committed fixture and every fetched real model."""

from __future__ import annotations

import pytest

import laurel_testlib as lt

ALL_MODELS = lt.all_model_names()

RTOL = 1e-4
ATOL = 1e-5


@pytest.mark.parametrize("name", ALL_MODELS)
def test_tract_matches_ort(name, laurelc_bin, model_path, model_inputs, ort_outputs, tmp_path):
    feeds = model_inputs(name)
    saved = lt.save_inputs(feeds, tmp_path / "inputs")
    out_dir = tmp_path / "outputs"
    out_dir.mkdir()
    lt.run_laurelc(laurelc_bin, lt.run_args(model_path(name), saved, out_dir))
    expected = ort_outputs(name)
    got = lt.read_run_outputs(out_dir, expected)
    problems = {}
    for k, want in expected.items():
        msg = lt.compare_close(got[k], want, rtol=RTOL, atol=ATOL)
        if msg:
            problems[k] = msg
    assert not problems, f"tract vs onnxruntime (rtol={RTOL}, atol={ATOL}): {problems}"
