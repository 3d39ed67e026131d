"""The brain-age experiment runner: baselines, grid, aggregation, results table and CLI."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from data_fixtures import planted_cohort
from scipy import stats

from slicemri_lite.data import Cohort
from slicemri_lite.experiments import (
    TRAINING_LENGTH,
    describe_skipped,
    get_profile,
    kept_runs,
    load_run,
)
from slicemri_lite.experiments import _cli as cli
from slicemri_lite.experiments import _compare as compare
from slicemri_lite.experiments import _grids as grids
from slicemri_lite.experiments import _runner as ex
from slicemri_lite.experiments import _runs as runs
from slicemri_lite.experiments import _tables as tables
from slicemri_lite.models import OfflineWeightsError
from slicemri_lite.train import MeanBaseline, SliceFeatures, VoxelRidge, age_metrics

LITE0 = grids.LITE0


def toy_cohort(n: int = 60, seed: int = 0, signal: float = 1.0) -> Cohort:
    """Small volumes whose centre brightens with age, plus noise; 60/20/20 splits."""
    return planted_cohort(n, (8, 8, 8), seed, gain=1.75 * signal, noise=1.0, with_ad=False,
                          splits="blocks")  # fmt: skip


# ---------------------------------------------------------------- baselines


def test_age_metrics_known_values():
    m = age_metrics([20, 40, 60], [22, 38, 66])
    assert m["mae"] == pytest.approx((2 + 2 + 6) / 3)
    assert m["rmse"] == pytest.approx(np.sqrt((4 + 4 + 36) / 3))
    assert m["r"] == pytest.approx(stats.pearsonr([20, 40, 60], [22, 38, 66])[0])
    assert np.isnan(age_metrics([20, 40], [30, 30])["r"])  # constant prediction: r undefined
    with pytest.raises(ValueError, match="same length"):
        age_metrics([1, 2], [1])


def test_mean_baseline_predicts_the_training_mean():
    cohort = toy_cohort()
    train_mean = cohort.table["age"].to_numpy()[cohort.indices("train")].mean()
    predicted = MeanBaseline().fit(cohort).predict(cohort, "test")
    assert predicted.shape == (len(cohort.indices("test")),)
    np.testing.assert_allclose(predicted, train_mean)


def test_ridge_learns_the_age_signal_and_chooses_alpha_on_val():
    cohort = toy_cohort(n=120)
    ages = cohort.table["age"].to_numpy()[cohort.indices("test")]
    ridge = VoxelRidge(block_mm=4.0).fit(cohort)
    assert ridge.alpha_ in ridge.ridge_.alphas
    assert ridge.ridge_.val_scores_[ridge.alpha_] == min(ridge.ridge_.val_scores_.values())
    ridge_mae = age_metrics(ages, ridge.predict(cohort))["mae"]
    mean_mae = age_metrics(ages, MeanBaseline().fit(cohort).predict(cohort))["mae"]
    assert ridge_mae < 0.5 * mean_mae


def test_ridge_is_not_thrown_by_a_block_that_is_flat_in_training():
    cohort = toy_cohort(n=120)
    train, test = cohort.indices("train"), cohort.indices("test")
    cohort.volumes[:, :4, :4, :4] = 0.0  # background in every training scan...
    cohort.volumes[train, :4, :4, :4] += 1e-4 * np.random.default_rng(0).normal(
        size=(len(train), 4, 4, 4)
    )
    cohort.volumes[test, :4, :4, :4] = 1.0  # ...but not in the test scans (misregistration)
    ages = cohort.table["age"].to_numpy()[test]
    ridge_mae = age_metrics(ages, VoxelRidge(block_mm=4.0).fit(cohort).predict(cohort))["mae"]
    assert ridge_mae < 0.5 * age_metrics(ages, MeanBaseline().fit(cohort).predict(cohort))["mae"]


def test_ridge_needs_a_validation_split():
    cohort = toy_cohort()
    cohort.table["split"] = cohort.table["split"].replace("val", "train")
    with pytest.raises(ValueError, match="validation rows"):
        VoxelRidge().fit(cohort)


# ---------------------------------------------------------------- grid and subsets


def test_grid_caps_sizes_at_the_training_split_and_covers_every_seed():
    specs = grids.grid_runs("brain-age", "cpu", n_train=70, seed_offset=10)
    assert len(specs) == len(set(specs))
    for block in grids.GRIDS["brain-age"].profiles["cpu"]:
        sizes = {70 if s == grids.ALL else min(s, 70) for s in block.sizes}
        for config in block.configs:
            runs = {(s.train_size, s.seed) for s in specs if s.config == config}
            assert runs >= {(n, 10 + seed) for n in sizes for seed in block.seeds}
    assert {s.train_size for s in specs} == {25, 50, 70}
    with pytest.raises(ValueError, match="'profile' must be one of"):
        grids.grid_runs("brain-age", "laptop", 70)


def test_equal_steps_gives_smaller_training_sets_more_epochs():
    profile = get_profile("cpu")
    specs = grids.grid_runs("brain-age", "cpu", n_train=140)
    lite0 = [s for s in specs if s.config.label == "efficientnet_lite0 imagenet frozen"]
    steps = {s.train_size: s.n_epochs(profile) * s.train_size for s in lite0}
    profile_epochs = TRAINING_LENGTH["cpu"]["epochs"]
    assert steps[140] == profile_epochs * 140
    for size, n in steps.items():  # the same number of samples seen, up to rounding
        assert n / steps[140] == pytest.approx(1, abs=size / steps[140])
    finetune = grids.grid_runs("brain-age-finetune", "cpu", n_train=140)
    assert {s.n_epochs(profile) for s in finetune if s.config.model in runs.NETWORKS} == {20}
    patience = {s.train_size: s.patience for s in lite0}
    assert patience[140] == grids.PATIENCE and patience[25] > patience[50] > patience[140]
    capped = grids.grid_runs("brain-age", "cpu", n_train=1000)
    small = [s for s in capped if s.train_size == 25 and s.config.mode == "frozen"]
    assert {s.n_epochs(profile) for s in small} == {grids.MAX_EPOCH_FACTOR * profile_epochs}


def test_grids_pair_imagenet_with_random_init_and_gpu_runs_everything():
    for profile in grids.GRIDS["brain-age"].profiles:
        configs = set(grids.grid_configs(profile))
        for init in ("imagenet", "random"):
            assert runs.ModelConfig("sliceset", "efficientnet_lite0", init, "frozen") in configs
            for how in ("mean", "concat"):  # pooled over slices, and slices side by side
                probe = runs.ModelConfig("probe", LITE0, init, "frozen", aggregation=how)
                assert probe in configs
        assert {"mean", "ridge"} <= {c.model for c in configs}
        tuned = set(grids.grid_configs(profile, "brain-age-finetune"))
        for init in ("imagenet", "random"):  # the paper's comparison: both fine-tuned
            assert runs.ModelConfig("sliceset", "efficientnet_lite0", init, "finetune") in tuned
        assert grids.CONV3D in tuned
    assert grids.SCRATCH in set(grids.grid_configs("gpu"))  # the paper's small CNN needs 2 mm
    gpu = set(grids.grid_configs("gpu"))
    for encoder in ("resnet18", "efficientnet_lite0"):
        for init in ("imagenet", "random"):
            assert runs.ModelConfig("sliceset", encoder, init, "finetune") in gpu
    assert set(grids.grid_configs("cpu")) <= gpu and set(grids.grid_configs("smoke")) <= gpu


def subset(cohort, size, seed):
    return cohort.subset(ex.subset_rows(cohort, size, seed))


def test_training_subsets_are_nested_and_keep_val_and_test():
    cohort = toy_cohort()
    small, large = subset(cohort, 10, seed=3), subset(cohort, 20, seed=3)
    ids = {
        name: set(c.table.loc[c.table["split"] == "train", "participant_id"])
        for name, c in [("small", small), ("large", large)]
    }
    assert len(ids["small"]) == 10 and len(ids["large"]) == 20
    assert ids["small"] < ids["large"]
    for split in ("val", "test"):
        assert len(small.indices(split)) == len(cohort.indices(split))
    other = subset(cohort, 10, seed=4).table
    assert set(other.loc[other["split"] == "train", "participant_id"]) != ids["small"]
    with pytest.raises(ValueError, match="'size' must be between"):
        subset(cohort, 1000, seed=0)


# ---------------------------------------------------------------- aggregation

IMAGENET = "efficientnet_lite0 imagenet finetune"
RANDOM = "efficientnet_lite0 random finetune"


def test_t_interval_matches_the_textbook_formula():
    mean, low, high = compare.t_interval([1.0, 2.0, 3.0])
    half = stats.t.ppf(0.975, 2) * 1.0 / np.sqrt(3)
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    assert np.isnan(compare.t_interval([5.0])[1])


def fake_results(diff: float, noise: float, seeds=(0, 1, 2, 3, 4)) -> pd.DataFrame:
    """Two slice models at two sizes; ImageNet has ``diff`` years more MAE than random, plus noise."""
    rng = np.random.default_rng(0)
    rows = []
    for size in (25, 50):
        for seed in seeds:
            base = 8.0 + rng.normal(0, 1)
            for init, mae in [("imagenet", base + diff + rng.normal(0, noise)), ("random", base)]:
                config = runs.ModelConfig("sliceset", "efficientnet_lite0", init, "finetune")
                rows.append({**runs.RunSpec(config, size, seed).key(), "mae": mae, "status": "ok"})
    return pd.DataFrame(rows)


def test_paired_difference_says_which_is_better_only_when_the_ci_excludes_zero():
    better = compare.paired_difference(fake_results(diff=-2.0, noise=0.2), IMAGENET, RANDOM)
    assert list(better["train_size"]) == [25, 50]
    assert (better["ci_high"] < 0).all()
    assert set(better["verdict"]) == {f"{IMAGENET} better"}
    worse = compare.paired_difference(fake_results(diff=2.0, noise=0.2), IMAGENET, RANDOM)
    assert set(worse["verdict"]) == {f"{RANDOM} better"}
    noisy = compare.paired_difference(fake_results(diff=0.0, noise=2.0), IMAGENET, RANDOM)
    assert (noisy["ci_low"] < 0).all() and (noisy["ci_high"] > 0).all()
    assert set(noisy["verdict"]) == {"within noise"}
    single = compare.paired_difference(fake_results(-2.0, 0.2, seeds=(0,)), IMAGENET, RANDOM)
    assert set(single["verdict"]) == {"too few seeds"}


def bootstrap_predictions(gap: float, n: int = 200, seeds=(0, 1, 2)) -> pd.DataFrame:
    """Two configurations whose absolute errors differ by ``gap`` years on average."""
    rng = np.random.default_rng(0)
    rows = []
    for seed in seeds:
        for p in range(n):
            for init, spread in (("imagenet", 5.0), ("random", 5.0 + gap * np.sqrt(np.pi / 2))):
                rows.append({"model": "sliceset", "encoder": "efficientnet_lite0",
                             "init": init, "mode": "finetune", "train_size": 50, "seed": seed,
                             "participant_id": f"p{p}", "age": 50.0,
                             "predicted": 50.0 + spread * rng.normal()})  # fmt: skip
    return pd.DataFrame(rows)


def test_paired_bootstrap_finds_a_real_gap_and_not_a_null_one():
    real = compare.paired_bootstrap(bootstrap_predictions(2.0), IMAGENET, RANDOM).iloc[0]
    assert real["verdict"] == f"{IMAGENET} better" and real["ci_high"] < 0
    assert real["ci_low"] < real["difference"] < real["ci_high"]
    assert real["n_pairs"] == 3 and real["n_participants"] == 200
    null = compare.paired_bootstrap(bootstrap_predictions(0.0), IMAGENET, RANDOM).iloc[0]
    assert null["verdict"] == "within noise" and null["ci_low"] < 0 < null["ci_high"]
    assert 0 < null["detectable"] < 2.0


def test_paired_bootstrap_interval_shrinks_with_more_participants():
    small = compare.paired_bootstrap(bootstrap_predictions(0.0, n=50), IMAGENET, RANDOM)
    large = compare.paired_bootstrap(bootstrap_predictions(0.0, n=800), IMAGENET, RANDOM)
    width = [float(t["ci_high"].iloc[0] - t["ci_low"].iloc[0]) for t in (small, large)]
    assert width[1] < 0.5 * width[0]  # 16x the participants: about a quarter of the width


def test_init_differences_pairs_imagenet_with_random_and_describes_them():
    results = fake_results(diff=-2.0, noise=0.2)
    lonely = results.iloc[:2].assign(encoder="resnet18", init="imagenet")  # no random partner
    table = compare.init_differences(pd.concat([results, lonely], ignore_index=True))
    assert set(zip(table["a"], table["b"], strict=True)) == {(IMAGENET, RANDOM)}
    sentence = tables.describe_difference(table.iloc[0])
    assert "excludes zero" in sentence and f"{table.iloc[0]['difference']:+.2f}" in sentence
    noisy = compare.init_differences(fake_results(diff=0.0, noise=2.0))
    assert "within noise" in tables.describe_difference(noisy.iloc[0])
    assert compare.init_differences(results.iloc[:0]).empty


def test_flat_runs_finds_models_that_predict_one_age_for_everyone():
    rng = np.random.default_rng(0)
    rows = []
    for init, seed in [("imagenet", 0), ("imagenet", 1), ("random", 0), ("random", 1)]:
        key = runs.RunSpec(
            runs.ModelConfig("sliceset", "efficientnet_lite0", init, "frozen"), 25, seed
        )
        age = rng.uniform(20, 90, 30)
        flat = init == "random" and seed == 1
        predicted = 55 + rng.normal(0, 0.1, 30) if flat else age + rng.normal(0, 5, 30)
        rows.append(pd.DataFrame({**key.key(), "age": age, "predicted": predicted}))
    table = tables.flat_runs(pd.concat(rows, ignore_index=True))
    assert table.to_dict("records") == [
        {"label": "efficientnet_lite0 random frozen", "train_size": 25, "n_runs": 2, "n_flat": 1}
    ]
    assert tables.describe_flat_runs(table) == (
        "These runs predict nearly one age for everyone: "
        "efficientnet_lite0 random frozen with 25 subjects (1 of 2 runs)."
    )
    assert tables.describe_flat_runs(table, "kept run", sizes=False).endswith("(1 of 2).")
    assert tables.describe_flat_runs(table.iloc[:0]) == "No run predicts one age for everyone."


def test_summarize_ignores_skipped_runs_and_reports_a_ci_per_size():
    results = fake_results(diff=0.0, noise=1.0)
    skipped = results.iloc[:1].assign(encoder="resnet18", mae=np.nan, status="skipped: x")
    summary = compare.summarize(pd.concat([results, skipped]))
    assert len(summary) == 4 and "resnet18" not in set(summary["encoder"])
    assert (summary["n_seeds"] == 5).all()
    assert (summary["ci_low"] < summary["mae"]).all() and (
        summary["mae"] < summary["ci_high"]
    ).all()


# ---------------------------------------------------------------- results table


def stand_in_run(config, cohort, profile, seed, *, recipe=None, features=None, task="age", **_):
    """Stands in for training: the train mean plus seeded noise."""
    assert (features is not None) == (config.mode == "frozen")
    if features is not None:
        assert len(features) == len(cohort)  # the run's rows, not the whole cohort's
    rng = np.random.default_rng(seed)
    mean = cohort.table["age"].to_numpy()[cohort.indices("train")].mean()
    epochs = recipe.epochs if config.model in runs.NETWORKS else 0
    val, test = (mean + rng.normal(0, 5, len(cohort.indices(s))) for s in ("val", "test"))
    return runs.RunResult(val, test, epochs)


def test_experiment_writes_one_row_per_run_and_skips_offline_weights(tmp_path, monkeypatch):
    calls = []

    def stand_in_features(cohort, spec, **kwargs):
        """Stands in for the frozen encoder's features; ResNet-18 ImageNet is 'offline'."""
        calls.append(spec)
        if spec.encoder == "resnet18" and spec.init == "imagenet":
            raise OfflineWeightsError("no resnet18 weights in this test")
        return SliceFeatures(np.zeros((len(cohort), 2, 3), np.float32), spec, None)

    monkeypatch.setattr(ex, "run_config", stand_in_run)
    monkeypatch.setattr(ex, "slice_features", stand_in_features)
    cohort = toy_cohort()
    specs = grids.grid_runs("brain-age", "smoke", len(cohort.indices("train")))
    experiment = ex.Experiment(cohort, get_profile("smoke"), out=tmp_path, progress=False)
    experiment.run(specs)
    table = pd.read_csv(tmp_path / "results.csv")
    assert list(table.columns) == ex.COLUMNS
    assert len(table) == len(specs)
    offline = (table["encoder"] == "resnet18") & (table["init"] == "imagenet")
    offline &= table["mode"] == "frozen"
    assert offline.any()
    assert (table.loc[offline, "status"] == "skipped: weights unavailable offline").all()
    assert table.loc[offline, ["mae", "rmse", "r"]].isna().all().all()
    ok = table[table["status"] == "ok"]
    assert len(ok) == len(table) - offline.sum()
    assert np.isfinite(ok[["mae", "rmse", "seconds"]].to_numpy()).all()
    assert set(table["profile"]) == {"smoke"} and table["versions"].str.contains("torch").all()
    networks = table["model"].isin(["conv3d", "sliceset"])
    assert (ok["best_epoch"] <= ok["epochs"]).all()
    assert (table.loc[networks, "batch_size"] >= 1).all()
    assert (table.loc[networks, "epochs"] >= 1).all()
    assert (table.loc[~networks, "epochs"] == 0).all()
    predictions = pd.read_csv(tmp_path / "predictions.csv")
    assert len(predictions) == len(ok) * len(cohort.indices("test"))
    frozen = [s for s in specs if s.config.mode == "frozen"]
    assert len(calls) == len(frozen)  # every frozen run asks; slice_features computes once


def test_a_run_that_raises_is_recorded_as_failed_and_the_grid_goes_on(tmp_path, monkeypatch):
    def conv3d_breaks(config, *args, **kwargs):
        if config.model == "conv3d":
            raise RuntimeError("out of memory\nmore detail")
        return stand_in_run(config, *args, **kwargs)

    monkeypatch.setattr(ex, "run_config", conv3d_breaks)
    cohort = toy_cohort()
    specs = [runs.RunSpec(config, 10, 0) for config in (grids.CONV3D, grids.RIDGE)]
    experiment = ex.Experiment(cohort, get_profile("smoke"), out=tmp_path, progress=False)
    table = experiment.run(specs)
    assert list(table["status"]) == ["failed: RuntimeError: out of memory", "ok"]
    assert len(pd.read_csv(tmp_path / "results.csv")) == 2 and np.isnan(table["mae"][0])
    with pytest.raises(ValueError, match="trained no network: failed: RuntimeError"):
        experiment.train(specs[0])


def test_only_several_cpu_processes_freeze_a_fine_tuned_encoders_batch_norm(monkeypatch):
    experiment = ex.Experiment(toy_cohort(), get_profile("smoke"), progress=False)
    shape = experiment.cohort.shape
    resnet = runs.ModelConfig("sliceset", "resnet18", "random", "finetune", axis="coronal")
    assert experiment._slice_chunk(resnet, experiment.cohort) is None  # one process
    two = ex.distributed.Distributed(rank=0, world_size=2, backend="gloo")
    monkeypatch.setattr(ex.distributed, "current", lambda: two)
    assert experiment._slice_chunk(resnet, experiment.cohort) == shape[1]  # every slice
    for config in (dataclasses.replace(resnet, mode="frozen"), grids.CONV3D):
        assert experiment._slice_chunk(config, experiment.cohort) is None  # no batch norm


# ---------------------------------------------------------------- networks


def test_a_frozen_run_trains_on_cached_features_like_fit_with_a_frozen_encoder():

    import torch

    from slicemri_lite.models import SliceSetNet
    from slicemri_lite.train import FeatureSpec, clear_memory_cache, fit, predict, slice_features

    rng = np.random.default_rng(1)
    cohort = toy_cohort(n=20)
    cohort.volumes = rng.normal(0, 1, (20, 4, 18, 18)).astype(np.float32)
    settings = get_profile("smoke")  # a frozen head trains the book's recipe, 2 epochs of 4
    torch.manual_seed(0)  # the paper's model, as the grid builds it
    net = SliceSetNet.paper("efficientnet_lite0", pretrained=False, volume_shape=cohort.shape)
    train_val = cohort.subset(np.flatnonzero(cohort.table["split"] != "test"))
    fit(net, train_val, epochs=2, batch_size=4, seed=0,
        device="cpu", freeze_encoder=True, progress=False)  # fmt: skip
    expected = predict(net, cohort, "test", task="age", device="cpu")

    config = runs.ModelConfig("sliceset", "efficientnet_lite0", "random", "frozen")
    spec = FeatureSpec("efficientnet_lite0", "random", seed=0)
    features = slice_features(cohort, spec, disk=False)
    result = runs.run_config(config, cohort, settings, seed=0, features=features)
    got = result.test
    clear_memory_cache()
    assert 1 <= result.best_epoch <= 2
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
    assert np.ptp(got) > 0  # the head learned something subject-specific
    with pytest.raises(ValueError, match="trains on frozen slice features; none were given"):
        runs.run_config(config, cohort, settings, seed=0)


# ---------------------------------------------------------------- command line


@pytest.mark.slow
def test_cli_runs_the_smoke_grid_and_writes_a_complete_table(tmp_path, capsys):
    import json

    out = tmp_path / "smoke"
    assert (
        cli.main(["brain-age", "--profile", "smoke", "--data", "synthetic", "--out", str(out)]) == 0
    )
    assert "efficientnet_lite0 imagenet frozen" in capsys.readouterr().out
    table = pd.read_csv(out / "results.csv")
    assert list(table.columns) == ex.COLUMNS
    n_train = int(table.loc[table["model"] == "mean", "train_size"].max())
    assert len(table) == len(grids.grid_runs("brain-age", "smoke", n_train))
    assert set(table["profile"]) == {"smoke"} and set(table["data"]) == {"synthetic"}
    ok = table[table["status"] == "ok"]
    assert set(table.loc[table["status"] != "ok", "status"]) <= {
        "skipped: weights unavailable offline"
    }
    assert np.isfinite(ok[["mae", "rmse", "seconds"]].to_numpy()).all()
    # r is undefined only where a run predicts one age for everyone (the mean baseline)
    predictions = pd.read_csv(out / "predictions.csv")
    spread = predictions.groupby(ex.RUN_KEYS)["predicted"].std().rename("spread").reset_index()
    ok = ok.merge(spread, on=ex.RUN_KEYS)
    assert np.isfinite(ok.loc[ok["spread"] > 0, "r"]).all()
    assert (ok.loc[ok["spread"] == 0, "model"] == "mean").all()
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["status"] == "complete" and "--profile smoke" in provenance["command"]
    kept = load_run(out)
    assert (kept.grid, kept.profile) == ("brain-age", "smoke")
    pd.testing.assert_frame_equal(kept.results, table)
    pd.testing.assert_frame_equal(kept.predictions, predictions)


def test_load_run_reads_a_new_record_and_derives_grid_and_profile_for_an_old_one(tmp_path):
    import json

    table = pd.DataFrame({"model": ["mean"], "mae": [3.0]})
    new = {"grid": "ad", "profile": "gpu", "command": "python -m slicemri_lite.experiments x"}
    old = {"command": "python -m slicemri_lite.experiments ablation --profile cpu --out o"}
    chapter = {"command": "python tools/keep_chapter_run.py book/07_interpretation.ipynb"}
    for name, record in {"new": new, "old": old, "chapter": chapter}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "provenance.json").write_text(json.dumps(record))
    for name in ("new", "old"):
        table.to_csv(tmp_path / name / "results.csv", index=False)
    assert (load_run(tmp_path / "new").grid, load_run(tmp_path / "new").profile) == ("ad", "gpu")
    assert (load_run(tmp_path / "old").grid, load_run(tmp_path / "old").profile) == (
        "ablation",
        "cpu",
    )
    pd.testing.assert_frame_equal(load_run(tmp_path / "old").results, table)
    chapter_run = load_run(tmp_path / "chapter")
    assert chapter_run.grid is None and chapter_run.results is None
    assert [r.grid for r in kept_runs(tmp_path, grids=["ablation"])] == ["ablation"]
    with pytest.raises(FileNotFoundError, match="provenance.json"):
        load_run(tmp_path / "missing")


def test_load_run_reads_every_kept_grid_run_in_results():
    found = {r.folder.name: r for r in kept_runs(Path(__file__).parents[1] / "results")}
    for run in found.values():
        assert run.grid in grids.GRIDS and run.profile == "cpu"
        assert set(ex.RUN_KEYS) <= set(run.results.columns) and len(run.predictions)


def test_probe_reads_pooled_or_concatenated_slice_features_and_is_labelled_so():
    cohort = planted_cohort(n=30)
    rng = np.random.default_rng(0)
    age = cohort.table["age"].to_numpy(np.float32)
    values = rng.normal(size=(len(cohort), 5, 3)).astype(np.float32)
    values[:, 2, 0] = age / 10  # one slice's feature carries age; the slice mean dilutes it
    features = SliceFeatures(values, None, LITE0)
    errors = {}
    for how in ("mean", "concat"):
        config = runs.ModelConfig("probe", LITE0, "imagenet", "frozen", aggregation=how)
        result = runs.run_config(config, cohort, get_profile("smoke"), 0, features=features)
        test = cohort.targets("age", cohort.indices("test"))
        errors[how] = float(np.abs(result.test - test).mean())
    assert errors["concat"] < 2 < errors["mean"]  # the mean over slices dilutes it
    concat = runs.ModelConfig("probe", LITE0, "random", "frozen", aggregation="concat")
    assert concat.label == "efficientnet_lite0 random probe concat"
    with pytest.raises(ValueError, match="'aggregation' must be one of"):
        runs.ModelConfig("probe", LITE0, "random", "frozen", aggregation="max")


def test_chapter_4s_random_encoder_is_drawn_again_for_every_seed():
    specs = grids.grid_runs("brain-age", "cpu", 88, seed_offset=0)
    random = [s for s in specs if s.config.init == "random" and s.config.needs_features]
    imagenet = [s for s in specs if s.config.init == "imagenet" and s.config.needs_features]
    assert random and imagenet
    assert all(s.draw == s.seed for s in random)  # the interval over seeds covers draws
    assert {s.draw for s in random} == {0, 1, 2}
    assert all(s.draw is None for s in imagenet)  # ImageNet weights are never drawn
    ad = grids.grid_runs("ad", "cpu", 88)
    assert all(s.draw is None for s in ad)  # one draw for the AD grid: its own reason


def test_a_run_reads_the_features_of_its_own_draw(monkeypatch):
    cohort = planted_cohort(n=12)
    seen = []

    def fake_features(cohort_, spec, device=None, progress=False):
        seen.append(spec.seed)
        n, shape = len(cohort_), cohort_.shape
        return SliceFeatures(np.zeros((n, shape[0], 4), np.float32), spec, None)

    monkeypatch.setattr(ex, "slice_features", fake_features)
    experiment = ex.Experiment(cohort, get_profile("smoke"), seed=5)
    config = runs.ModelConfig("sliceset", "efficientnet_lite0", "random", "frozen")
    rows = np.arange(4)
    experiment._features(runs.RunSpec(config, 8, 1, draw=1), rows)
    experiment._features(runs.RunSpec(config, 8, 2), rows)
    assert seen == [1, 5]  # its own draw; else the experiment's data seed


def test_summarize_blanks_slice_options_on_models_without_slices():
    results = fake_results(diff=0.0, noise=1.0)
    mean_rows = results.iloc[:2].assign(model="mean", encoder="-", init="-", mode="-")
    summary = compare.summarize(pd.concat([results, mean_rows]))
    baseline = summary[summary["model"] == "mean"]
    assert len(baseline) >= 1 and (baseline[["axis", "position"]] == "-").all().all()
    assert (summary.loc[summary["model"] == "sliceset", "axis"] != "-").all()


def test_describe_skipped_names_each_missing_configuration_and_what_to_do():
    results = fake_results(diff=0.0, noise=1.0)
    assert describe_skipped(results) == "Every planned configuration ran."
    skipped = results.iloc[:1].assign(
        encoder="resnet18", mae=np.nan, status="skipped: weights unavailable offline"
    )
    text = describe_skipped(pd.concat([results, skipped]))
    assert text.startswith("1 planned configuration did not run and is missing")
    assert "resnet18 imagenet finetune" in text and "download once" in text
