"""(a) import -> export round trip with --no-passes, for every committed fixture
and every fetched real model:

* the export passes onnx.checker.check_model(full_check=True);
* onnxruntime gives bit-identical outputs on the original and the export;
* the two protos are equal after normalise() (proto2 fields explicitly set
  to their default value count as unset).
"""

from __future__ import annotations

import onnx
import pytest

import laurel_testlib as lt

ALL_MODELS = lt.all_model_names()


@pytest.mark.parametrize("name", ALL_MODELS)
def test_export_passes_checker(name, exported_model):
    onnx.checker.check_model(str(exported_model(name)), full_check=True)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_export_same_ort_outputs(name, exported_model, model_inputs, ort_outputs):
    expected = ort_outputs(name)
    got = lt.ort_run(exported_model(name), model_inputs(name))
    assert list(got) == list(expected), "output names or order changed"
    bad = [k for k in expected if not lt.arrays_identical(got[k], expected[k])]
    details = {k: lt.compare_close(got[k], expected[k], rtol=0, atol=0) for k in bad}
    assert not bad, f"onnxruntime outputs differ between original and export: {details}"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_export_proto_equal(name, model_path, exported_model):
    original = lt.load_model_proto(model_path(name))
    exported = lt.load_model_proto(exported_model(name))
    diff = lt.normalised_difference(original, exported)
    assert diff is None, f"{name}: normalised protos differ at {diff}"
