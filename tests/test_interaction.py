"""The difference of differences: does A's advantage over B change with the training size?"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from slicemri_lite.experiments import difference_of_differences, paired_bootstrap

N, SEEDS, SMALL, LARGE = 150, (0, 1, 2), 20, 100


def predictions(gap_small: float, gap_large: float) -> pd.DataFrame:
    """A ('ridge') beats B ('conv3d') by ``gap_small`` years of error at 20 training
    subjects and by ``gap_large`` at 100, on the same 150 test participants."""
    rng = np.random.default_rng(0)
    ages = rng.uniform(20, 90, N)
    frames = []
    for size, gap in ((SMALL, gap_small), (LARGE, gap_large)):
        for seed in SEEDS:
            noise = rng.normal(0, 1, N)
            for model, spread in (("ridge", 6.0), ("conv3d", 6.0 + gap)):
                sign = rng.choice([-1, 1], N)
                frames.append(pd.DataFrame({
                    "model": model, "encoder": "-", "init": "-", "mode": "-",
                    "train_size": size, "seed": seed, "age": ages,
                    "participant_id": [f"p{i:03d}" for i in range(N)],
                    "predicted": ages + sign * (spread + noise),
                }))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def test_an_advantage_that_grows_with_fewer_subjects_is_found():
    found = difference_of_differences(predictions(4.0, 0.5), "ridge", "conv3d", SMALL, LARGE)
    assert found["at_small"] == pytest.approx(-4.0, abs=0.4)
    assert found["at_large"] == pytest.approx(-0.5, abs=0.4)
    assert found["difference"] == pytest.approx(found["at_small"] - found["at_large"])
    assert found["ci_high"] < 0 and found["verdict"] == "favours a more with fewer subjects"
    assert (found["n_pairs"], found["n_participants"]) == (3, N)


def test_the_same_advantage_at_both_sizes_is_within_noise():
    table = predictions(2.0, 2.0)
    found = difference_of_differences(table, "ridge", "conv3d", SMALL, LARGE)
    assert found["verdict"] == "within noise" and found["ci_low"] < 0 < found["ci_high"]
    # while each size alone finds the advantage: overlapping or not, only this answers
    per_size = paired_bootstrap(table, "ridge", "conv3d")
    assert (per_size["ci_high"] < 0).all()


def test_sizes_that_did_not_run_are_refused():
    with pytest.raises(ValueError, match="share no seed and test participant at both 20 and 50"):
        difference_of_differences(predictions(1.0, 1.0), "ridge", "conv3d", SMALL, 50)
    with pytest.raises(ValueError, match=r"'metric' must be one of \['mae', 'rmse'\]"):
        difference_of_differences(predictions(1.0, 1.0), "ridge", "conv3d", SMALL, LARGE, "auc")
