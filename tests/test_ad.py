"""The AD task: the age-only baseline, age matching, the AD grid and its table, AUC
intervals, the leakage demonstration and the enriched synthetic cohort."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from slicemri_lite.data import Cohort
from slicemri_lite.data.synthetic import synthetic_cohort
from slicemri_lite.experiments import _cli as cli
from slicemri_lite.experiments import _compare as compare
from slicemri_lite.experiments import _grids as grids
from slicemri_lite.experiments import _runner as ex
from slicemri_lite.experiments import _runs as runs
from slicemri_lite.experiments import get_profile
from slicemri_lite.train import SliceFeatures


def ad_cohort(n: int = 80, seed: int = 0) -> Cohort:
    """Toy volumes; AD only from age 60 (half of them), a centre that darkens with AD."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(40, 90, n)
    ad = (age >= 60) & (rng.uniform(size=n) < 0.5)
    volumes = rng.normal(0, 1, (n, 6, 6, 6)).astype(np.float32)
    volumes[:, 2:4, 2:4, 2:4] -= 1.5 * ad[:, None, None, None]
    split = np.array(["train", "train", "train", "val", "test"] * (n // 5))
    table = pd.DataFrame(
        {
            "participant_id": [f"sub-{i:03d}" for i in range(n)],
            "age": age,
            "sex": "F",
            "diagnosis": np.where(ad, "AD", "CN"),
            "split": split,
        }
    )
    return Cohort(volumes=volumes, table=table, affine=np.diag([4.0, 4.0, 4.0, 1.0]))


# ---------------------------------------------------------------- age-only and age matching


def test_age_only_is_a_logistic_regression_on_age():
    cohort = ad_cohort()
    result = runs.run_config(
        runs.ModelConfig("age_only"), cohort, get_profile("smoke"), 0, task="ad"
    )
    test = cohort.indices("test")
    y, age = cohort.targets("ad", test), cohort.table["age"].to_numpy()[test]
    assert ((result.test > 0) & (result.test < 1)).all()  # probabilities
    assert roc_auc_score(y, result.test) == pytest.approx(roc_auc_score(y, age))  # monotone in age
    assert runs.ModelConfig("age_only").label == "age_only"
    with pytest.raises(ValueError, match="no meaning for task 'age'"):
        runs.run_config(runs.ModelConfig("age_only"), cohort, get_profile("smoke"), 0, task="age")


def test_age_matching_drops_only_the_cn_younger_than_the_youngest_ad():
    cohort = ad_cohort()
    rows = runs.age_matched_rows(cohort)
    table = cohort.table
    youngest = table.loc[table["diagnosis"] == "AD", "age"].min()
    dropped = table.drop(index=rows)
    assert len(dropped) > 0 and (dropped["diagnosis"] == "CN").all()
    assert (dropped["age"] < youngest).all()
    assert (table.iloc[rows]["age"] >= youngest).all()


# ---------------------------------------------------------------- the AD grid and its table


def stand_in_run(config, cohort, profile, seed, *, recipe=None, features=None, task="age", **_):
    """AD probabilities that follow the true label with seeded noise."""
    assert task == "ad"
    rng = np.random.default_rng(seed)
    val, test = (
        np.clip(
            0.3
            + 0.4 * cohort.targets("ad", cohort.indices(s))
            + rng.normal(0, 0.2, len(cohort.indices(s))),
            0,
            1,
        )
        for s in ("val", "test")
    )
    return runs.RunResult(val, test, 0)


def stand_in_features(cohort, spec, **kwargs):
    return SliceFeatures(np.zeros((len(cohort), 2, 3), np.float32), spec, None)


def test_the_ad_grid_has_every_comparison_the_chapter_makes():
    for profile in ("smoke", "cpu", "gpu"):
        specs = grids.grid_runs("ad", profile, 30)
        unmatched = {s.config for s in specs if not s.age_matched}
        matched = {s.config for s in specs if s.age_matched}
        assert (
            grids.AGE_ONLY in unmatched and grids.AGE_ONLY in matched and grids.RIDGE in unmatched
        )
        # the 3D CNN trains end to end: too slow on 2 mm volumes for a live cpu page
        assert (grids.CONV3D in unmatched) == (profile != "cpu")
        for axis in grids.AXES:
            for init in ("imagenet", "random"):
                for position in ("learned", "none"):
                    config = runs.ModelConfig(
                        "sliceset", grids.LITE0, init, "frozen", axis, position
                    )
                    assert config in unmatched
            assert runs.ModelConfig("sliceset", grids.LITE0, "imagenet", "frozen", axis) in matched
        seeds = {s.seed for s in specs if s.config == grids.AGE_ONLY}
        assert len(seeds) >= 2  # paired seeds, intervals
    assert grids.GRIDS["ad"].task == "ad"


def test_the_ad_table_has_its_columns_and_age_matched_runs_say_so(tmp_path, monkeypatch):
    monkeypatch.setattr(ex, "run_config", stand_in_run)
    monkeypatch.setattr(ex, "slice_features", stand_in_features)
    cohort = ad_cohort()
    n_train = len(cohort.indices("train"))
    specs = [s for s in grids.grid_runs("ad", "smoke", n_train) if s.config.model != "conv3d"]
    experiment = ex.Experiment(
        cohort, get_profile("smoke"), out=tmp_path, progress=False, task="ad"
    )
    experiment.run(specs)
    table = pd.read_csv(tmp_path / "results.csv")
    assert list(table.columns) == ex.columns("ad")
    assert ex.columns("ad")[len(ex.RUN_KEYS)] == "age_matched"
    for name in (
        "auc",
        "pr_auc",
        "balanced_accuracy",
        "sensitivity",
        "specificity",
        "threshold",
        "brier",
        "val_auc",
    ):
        assert name in table.columns and np.isfinite(table[name]).all(), name
    matched = table[table["age_matched"]]
    n_matched = len(np.intersect1d(cohort.indices("train"), runs.age_matched_rows(cohort)))
    assert len(matched) > 0 and (matched["train_size"] == n_matched).all()
    assert (table.loc[~table["age_matched"], "train_size"] == n_train).all()
    predictions = pd.read_csv(tmp_path / "predictions.csv")
    assert "age_matched" in predictions.columns
    young_cn = set(cohort.table["participant_id"]) - set(
        cohort.table.iloc[runs.age_matched_rows(cohort)]["participant_id"]
    )
    assert not young_cn & set(predictions.loc[predictions["age_matched"], "participant_id"])
    summary = compare.summarize(table, "auc")
    assert set(summary["age_matched"]) == {True, False}


def test_the_brain_age_table_is_unchanged_and_refuses_age_matching():
    assert ex.columns("age") == ex.COLUMNS and "age_matched" not in ex.COLUMNS
    experiment = ex.Experiment(ad_cohort(), get_profile("smoke"), progress=False)
    spec = runs.RunSpec(grids.RIDGE, 10, 0, age_matched=True)
    with pytest.raises(ValueError, match="age matching applies to task 'ad'"):
        experiment.run([spec])


def test_cli_ad_writes_the_ad_columns(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ex, "run_config", stand_in_run)
    monkeypatch.setattr(ex, "slice_features", stand_in_features)
    opened = {}

    def stand_in_cohort(name, profile, data="synthetic", seed=0):
        opened.update(name=name, profile=profile.name)
        return ad_cohort()

    monkeypatch.setattr(ex, "open_grid_cohort", stand_in_cohort)
    out = tmp_path / "ad"
    assert cli.main(["ad", "--profile", "smoke", "--out", str(out)]) == 0
    assert opened == {"name": "ad", "profile": "smoke"}
    table = pd.read_csv(out / "results.csv")
    assert list(table.columns) == ex.columns("ad")
    assert len(table) == len(grids.grid_runs("ad", "smoke", len(ad_cohort().indices("train"))))
    assert "age_only" in capsys.readouterr().out


# ---------------------------------------------------------------- AUC intervals


def predictions_table(gap: float, n: int = 40, seeds=(0, 1, 2)) -> pd.DataFrame:
    """Model "ridge" ranks AD above CN better than "age_only" by ``gap`` (in score units)."""
    rng = np.random.default_rng(0)
    is_ad = np.arange(n) % 2
    frames = []
    for seed in seeds:
        for model, signal in (("ridge", 1.0 + gap), ("age_only", 1.0)):
            frames.append(pd.DataFrame({
                "model": model, "encoder": "-", "init": "-", "mode": "-", "train_size": 50,
                "seed": seed, "participant_id": [f"p{i}" for i in range(n)], "age": 70.0,
                "diagnosis": np.where(is_ad, "AD", "CN"),
                "predicted": signal * is_ad + rng.normal(0, 1, n)}))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def test_auc_bootstrap_point_is_the_mean_over_seeds_and_its_interval_holds_it():
    table = predictions_table(0.0)
    found = compare.auc_bootstrap(table, "ridge", n_boot=500).iloc[0]
    ridge = table[table["model"] == "ridge"]
    per_seed = [
        roc_auc_score(g["diagnosis"] == "AD", g["predicted"]) for _, g in ridge.groupby("seed")
    ]
    assert found["auc"] == pytest.approx(np.mean(per_seed))
    assert found["ci_low"] < found["auc"] < found["ci_high"]
    assert (found["n_ad"], found["n_cn"], found["n_seeds"]) == (20, 20, 3)


def test_paired_auc_bootstrap_finds_a_real_gap_and_not_a_null_one():
    real = compare.paired_bootstrap(predictions_table(2.0), "ridge", "age_only", "auc").iloc[0]
    assert real["difference"] > 0 and real["ci_low"] > 0 and real["verdict"] == "ridge better"
    null = compare.paired_bootstrap(predictions_table(0.0), "ridge", "age_only", "auc").iloc[0]
    assert null["ci_low"] < 0 < null["ci_high"] and null["verdict"] == "within noise"


def test_auc_intervals_refuse_a_table_mixing_matched_and_unmatched_runs():
    table = predictions_table(0.0).assign(age_matched=lambda t: t["seed"] == 0)
    with pytest.raises(ValueError, match="mix age-matched and unmatched"):
        compare.auc_bootstrap(table, "ridge")


def test_roc_band_brackets_the_curve():
    band = compare.roc_band(predictions_table(1.0), "ridge", n_boot=200)
    assert band["fpr"].iloc[0] == 0 and band["fpr"].iloc[-1] == 1 and band["tpr"].iloc[-1] == 1
    assert (band["low"] <= band["tpr"] + 1e-9).all() and (band["tpr"] <= band["high"] + 1e-9).all()
    assert np.all(np.diff(band["tpr"]) >= -1e-9)


def test_cohens_d_interval_excludes_zero_only_for_a_real_difference():
    rng = np.random.default_rng(0)
    d, low, high = compare.cohens_d_interval(rng.normal(1, 1, 60), rng.normal(0, 1, 60))
    assert 0 < low < d < high
    d, low, high = compare.cohens_d_interval(rng.normal(0, 1, 60), rng.normal(0, 1, 60))
    assert low < 0 < high


# ---------------------------------------------------------------- leakage


def test_splitting_slices_at_random_leaks_identity_into_the_score():
    # each person has their own feature signature; diagnosis carries no signal at all
    cohort = ad_cohort(n=60)
    rng = np.random.default_rng(0)
    person = rng.normal(0, 1, (60, 1, 128))  # more dimensions than people
    values = (person + 0.1 * rng.normal(0, 1, (60, 10, 128))).astype(np.float32)
    honest = runs.slice_leakage(values, cohort, "participant")
    leaky = runs.slice_leakage(values, cohort, "slice", seed=0)
    assert honest["shared"] == 0 and leaky["shared"] > 0.9
    assert abs(honest["auc"] - 0.5) < 0.2
    assert leaky["auc"] > 0.9 and leaky["auc"] > honest["auc"] + 0.3
    assert honest["n_test"] == leaky["n_test"] == 5 * len(cohort.indices("test"))


def test_slice_pixels_are_the_slices_pooled_in_plane():
    from slicemri_lite.data import take_slice

    cohort = ad_cohort(n=5)
    for axis in ("sagittal", "coronal", "axial"):
        flat = runs.slice_pixels(cohort, axis, pool=1)
        assert flat.shape == (5, 6, 36)
        np.testing.assert_allclose(flat[2, 3], take_slice(cohort.volumes[2], axis, 3).ravel())
    pooled = runs.slice_pixels(cohort, "axial", pool=2)
    assert pooled.shape == (5, 6, 9)
    np.testing.assert_allclose(pooled[1, 4, 0], cohort.volumes[1, :2, :2, 4].mean(), rtol=1e-6)
    with pytest.raises(ValueError, match="must be \\(N, S, E\\)"):
        runs.slice_leakage(pooled[:3], cohort)


# ---------------------------------------------------------------- the enriched cohort


def test_open_cohort_passes_generator_options_and_caches_them_apart(tmp_path):
    from slicemri_lite.data import open_cohort

    plain = open_cohort("synthetic", 6, resolution=4, seed=0, data_dir=tmp_path, progress=False)
    enriched = open_cohort("synthetic", 6, resolution=4, seed=0, data_dir=tmp_path, progress=False,
                           synthetic_config={"age_min": 60.0, "ad_prevalence": 1.0})  # fmt: skip
    assert plain.meta["cache"] != enriched.meta["cache"] and "-cfg" in enriched.meta["cache"]
    assert (enriched.table["diagnosis"] == "AD").all()  # everyone is 60+ and every 60+ has AD
    assert enriched.meta["generator"]["config"]["ad_prevalence"] == 1.0
    with pytest.raises(ValueError, match="SyntheticConfig does not have"):
        open_cohort(
            "synthetic", 6, resolution=4, data_dir=tmp_path, synthetic_config={"ad_share": 0.5}
        )
    with pytest.raises(ValueError, match="applies to data='synthetic' only"):
        open_cohort("oasis", 6, resolution=4, data_dir=tmp_path, synthetic_config={"age_min": 50.0})


def test_the_ad_grid_cohort_is_enriched_and_large_enough_at_smoke(monkeypatch):
    seen = {}

    def stand_in_open(data, n_subjects, resolution, seed, **options):
        seen.update(n_subjects=n_subjects, **options)

    monkeypatch.setattr(ex, "open_cohort", stand_in_open)
    ex.open_grid_cohort("ad", get_profile("smoke"))
    assert seen["n_subjects"] >= 40 and seen["synthetic_config"] == grids.AD_COHORT
    seen.clear()
    ex.open_grid_cohort("brain-age", get_profile("smoke"))
    assert seen == {"n_subjects": 24, "progress": False}


def test_at_cpu_the_grids_of_chapters_4_to_6_share_the_books_cohort(monkeypatch):
    seen = []

    class Opened:
        def resplit(self, **splits):
            seen[-1].update(splits)
            return self

    def stand_in_open(data, n_subjects, resolution, seed, **options):
        seen.append({"n_subjects": n_subjects, "resolution": resolution, **options})
        return Opened()

    monkeypatch.setattr(ex, "open_cohort", stand_in_open)
    for name in ("brain-age", "ablation", "ad"):
        ex.open_grid_cohort(name, "cpu")
    book = {**grids.BOOK_COHORT, "progress": False, "seed": 0}  # seed: of the resplit
    assert seen == [book, book, book]
    assert book["n_subjects"] * book["test"] >= 300  # power: 300+ test participants
    ex.open_grid_cohort("ad", "cpu", resolution=4)
    assert seen[-1] == {**book, "resolution": 4}


def test_slice_pixels_average_8_mm_blocks_on_any_grid():
    for resolution, pool in ((4, 2), (2, 4)):
        grid = synthetic_cohort(1, resolution=resolution)
        default, explicit = runs.slice_pixels(grid), runs.slice_pixels(grid, pool=pool)
        np.testing.assert_array_equal(default, explicit)
