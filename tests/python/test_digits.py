"""The digits experiment (bench/digits.py) as a test: a real data set, a CNN
exported by PyTorch, trained from its random initialisation by `laurelc train`,
then augmented with LAuReL (RW and RW+LR), fine-tuned on the LAuReL parameters
alone, and fused.

Claims checked: at least 95 % test accuracy from scratch; fine-tuning lowers
the training loss and moves every LAuReL parameter away from its identity
initialisation; the fused model has the tuned model's test accuracy and its
logits to 1e-5 of their largest magnitude.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import digits  # noqa: E402


@pytest.fixture(scope="module")
def results(laurelc_bin, cache_dir, tmp_path_factory):
    assert (cache_dir / "data" / "digits.csv.gz").is_file(), "run python3 fixtures/fetch.py digits"
    return digits.run(Path(laurelc_bin), seed=0, epochs=30, tune_epochs=10,
                      work=tmp_path_factory.mktemp("digits"))


def test_a_cnn_trained_from_scratch_reaches_95_percent(results):
    f = results["from_scratch"]
    assert f["test_accuracy_initial"] < 0.3, "the initial model already knows digits"
    assert f["test_accuracy"] >= 0.95, f
    assert f["train_loss"][-1] < 0.1 * f["train_loss"][0]


@pytest.mark.parametrize("variant", ["rw", "rw+lr"])
def test_laurel_fine_tuning_learns_and_fuses_to_the_same_accuracy(results, variant):
    r = results["laurel"][variant]
    assert r["tune_loss"][-1] < r["tune_loss"][0], r["tune_loss"]
    assert r["moved"] and all(m > 1e-3 for m in r["moved"].values()), r["moved"]
    assert r["test_accuracy_fused"] == r["test_accuracy_tuned"]
    assert r["fused_max_logit_difference"] <= 1e-5 * r["max_abs_logit"], r
    assert r["test_accuracy_tuned"] >= 0.95
