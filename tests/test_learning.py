"""The "did not learn" check: flat predictions and runs that do not beat the baseline are
flagged with their reason; a model that learned passes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from slicemri_lite.experiments import (
    describe_learning,
    learned_labels,
    learning_check,
    spread_ratios,
    verdicts,
)

N, SEEDS = 120, (0, 1, 2)


LITE0 = ("efficientnet_lite0", "imagenet", "frozen")  # a slice model's encoder, init, mode


def _rows(model: str, predicted, ages, seed: int, diagnosis=None) -> pd.DataFrame:
    encoder, init, mode = LITE0 if model == "sliceset" else ("-", "-", "-")
    return pd.DataFrame({
        "model": model, "encoder": encoder, "init": init, "mode": mode, "train_size": 50,
        "seed": seed, "participant_id": [f"p{i:03d}" for i in range(len(ages))], "age": ages,
        "diagnosis": "CN" if diagnosis is None else diagnosis, "predicted": predicted,
    })  # fmt: skip


def age_predictions() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    ages = rng.uniform(20, 90, N)
    frames = []
    for seed in SEEDS:
        frames += [
            _rows("mean", np.full(N, ages.mean() + rng.normal(0, 1)), ages, seed),
            _rows("ridge", ages + rng.normal(0, 6, N), ages, seed),  # learned
            _rows("conv3d", ages.mean() + 0.1 * (ages - ages.mean()), ages, seed),  # flat
            _rows("sliceset", ages.mean() + rng.normal(0, 15, N), ages, seed),  # noise
        ]
    return pd.concat(frames, ignore_index=True)


def test_a_model_that_learned_passes_and_flat_or_noisy_ones_say_why():
    check = learning_check(age_predictions()).set_index("label")
    assert list(check.index) == ["ridge", "conv3d", "efficientnet_lite0 imagenet frozen"]
    assert check.loc["ridge", "learned"] and check.loc["ridge", "reason"] == ""
    assert check.loc["ridge", "ci_high"] < 0  # beats the mean beyond noise
    assert not check.loc["conv3d", "learned"]
    assert check.loc["conv3d", "reason"].startswith("flat: its predictions spread 0.10")
    noisy = check.loc["efficientnet_lite0 imagenet frozen"]
    assert not noisy["learned"] and noisy["spread_ratio"] > 0.25
    assert noisy["reason"].startswith("does not beat mean beyond noise")
    assert learned_labels(check.reset_index()) == ["ridge"]


def test_ad_runs_must_beat_age_alone():
    rng = np.random.default_rng(1)
    ages = rng.uniform(60, 90, N)
    is_ad = rng.random(N) < 0.4
    diagnosis = np.where(is_ad, "AD", "CN")
    frames = []
    for seed in SEEDS:
        frames += [
            _rows("age_only", ages + rng.normal(0, 8, N), ages, seed, diagnosis),
            _rows("ridge", 3.0 * is_ad + rng.normal(0, 1, N), ages, seed, diagnosis),
            _rows("conv3d", ages + rng.normal(0, 8, N), ages, seed, diagnosis),  # = age alone
        ]
    check = learning_check(pd.concat(frames, ignore_index=True), metric="auc").set_index("label")
    assert check.loc["ridge", "learned"] and check.loc["ridge", "ci_low"] > 0
    assert not check.loc["conv3d", "learned"]
    assert "does not beat age_only beyond noise (AUC difference" in check.loc["conv3d", "reason"]
    assert check["spread_ratio"].isna().all()  # an AD score has no age spread to compare


def test_a_table_without_the_baseline_is_refused():
    predictions = age_predictions().query("model != 'mean'")
    with pytest.raises(ValueError, match=r"no 'mean' run to compare with; their runs are"):
        learning_check(predictions)


def test_the_sentence_names_each_run_that_did_not_learn_and_why():
    check = learning_check(age_predictions())
    sentence = describe_learning(check)
    assert sentence.startswith("Did not learn, so no verdict rests on them: conv3d with 50")
    assert "(flat: its predictions spread 0.10" in sentence and "ridge" not in sentence
    learned = check[check["learned"]]
    assert describe_learning(learned) == (
        "Every run learned: each beats mean beyond noise at every training-set size."
    )


def test_verdicts_are_given_only_where_both_sides_learned():
    table, sentences = verdicts(age_predictions(), "ridge", ["conv3d", "mean"])
    assert list(table["b"]) == ["conv3d", "mean"] and list(table["both_learned"]) == [False, True]
    assert table["verdict"].iloc[0] == "no verdict: conv3d did not learn"
    assert table["verdict"].iloc[1] == "ridge better"  # both learned: the bootstrap's verdict
    assert sentences[0].startswith("ridge against conv3d, 50 training subjects: no verdict, ")
    assert "conv3d did not learn (flat: its predictions spread 0.10" in sentences[0]
    assert sentences[1].startswith("With 50 training subjects, ridge minus mean is -")
    _, missing = verdicts(age_predictions(), "ridge", ["probe"])
    assert missing == ["probe was not run with the same seeds and sizes as ridge."]


def test_spread_ratios_give_each_seed_the_spread_the_flat_check_reads():
    predictions = age_predictions()
    conv3d = predictions[predictions["model"] == "conv3d"]
    ratios = spread_ratios(conv3d)
    assert list(ratios.index) == sorted(conv3d["seed"].unique())
    check = learning_check(predictions).set_index("label")
    assert ratios.min() == pytest.approx(check.loc["conv3d", "spread_ratio"])
    assert ratios.min() == pytest.approx(0.10, abs=0.01)  # built flat
