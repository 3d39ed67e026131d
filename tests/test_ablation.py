"""The ablation grid (Chapter 5): its design, its command line, and the order control."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from data_fixtures import planted_cohort

from slicemri_lite.analysis import _positions as positions
from slicemri_lite.experiments import ModelConfig, get_profile
from slicemri_lite.experiments import _cli as cli
from slicemri_lite.experiments import _grids as grids
from slicemri_lite.train import SliceFeatures, feature_standardisation, predict

AXES = {"sagittal", "coronal", "axial"}


def _cells(profile: str) -> set[tuple]:
    return {(c.encoder, c.init, c.mode, c.axis, c.position)
            for c in grids.grid_configs(profile, "ablation") if c.model == "sliceset"}  # fmt: skip


def test_the_gpu_grid_is_the_papers_design_on_every_axis():
    cells = _cells("gpu")
    for encoder, init, mode, positions_ in [("scratch", "random", "finetune", ("learned", "none")),
                                            ("resnet18", "random", "finetune", ("none",)),
                                            ("resnet18", "imagenet", "finetune", ("learned",))]:  # fmt: skip
        for axis in AXES:
            for position in positions_:
                assert (encoder, init, mode, axis, position) in cells
    assert grids.CONV3D in grids.grid_configs("gpu", "ablation")


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_every_profile_crosses_axes_with_position_and_runs_the_variants(profile):
    configs = grids.grid_configs(profile, "ablation")
    lite0 = {(c.axis, c.position) for c in configs
             if (c.encoder, c.init) == ("efficientnet_lite0", "imagenet") and c.norm == "paper"
             and c.aggregation == "mean"}  # fmt: skip
    assert lite0 == {(a, p) for a in AXES for p in ("learned", "none")}
    options = {(c.position, c.norm, c.aggregation) for c in configs}
    assert {("learned", "slice", "mean"), ("sinusoidal", "joint", "mean"),
            ("learned", "paper", "max"), ("learned", "paper", "attention")} <= options  # fmt: skip
    assert grids.CONV3D in configs
    assert any(c.init == "random" and c.mode == "frozen" for c in configs)
    labels = [c.label for c in configs]
    assert len(set(labels)) == len(labels)  # every configuration has its own name


def test_every_ablation_config_builds_on_its_profiles_grid():
    for profile in ("smoke", "cpu"):
        shape = (46, 55, 46)  # smoke and cpu run at 4 mm: the paper's small CNN is gpu only
        for config in grids.grid_configs(profile, "ablation"):
            model = config.build(shape)
            if config.model == "sliceset":
                assert model.axis == config.axis and model.position == config.position


def test_the_small_cnn_grid_runs_the_papers_cnn_on_every_axis_on_2mm_slices():
    name = "ablation-small-cnn"
    cells = {(c.encoder, c.init, c.mode, c.axis, c.position, c.aggregation)
             for c in grids.grid_configs("cpu", name)}  # fmt: skip
    assert cells == {("scratch", "random", "finetune", axis, position, "mean")
                     for axis in AXES for position in ("learned", "none")}  # fmt: skip
    for profile in ("smoke", "cpu"):
        assert grids.grid_cohort_size(name, profile)["resolution"] == 2
        for config in grids.grid_configs(profile, name):
            assert config.build((91, 109, 91)).axis == config.axis  # 2 mm: it builds
    # the same participants, splits and training subjects as the ablation grid's cells
    ablation = grids.grid_cohort_size("ablation", "cpu")
    assert grids.grid_cohort_size(name, "cpu") == {**ablation, "resolution": 2}
    runs = grids.grid_runs(name, "cpu", n_train=140)
    scratch = [r for r in grids.grid_runs("ablation", "cpu", 140) if r.config.mode == "finetune"]
    assert {(r.train_size, r.seed, r.epochs, r.batch_size) for r in runs} == {
        (s.train_size, s.seed, s.epochs, s.batch_size) for s in scratch
    }
    # kept, not live: make book's data step does not build its 2 mm cohort
    assert name not in grids.book_data_grids() and "ablation" in grids.book_data_grids()


@pytest.mark.slow
def test_cli_trains_the_papers_small_cnn_on_its_2mm_grid(tmp_path):
    out = tmp_path / "small_cnn"
    assert cli.main(["ablation-small-cnn", "--profile", "smoke", "--out", str(out)]) == 0
    table = pd.read_csv(out / "results.csv")
    assert list(table["status"]) == ["ok"] and list(table["encoder"]) == ["scratch"]
    assert np.isfinite(table["mae"]).all()
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["status"] == "complete" and "ablation-small-cnn" in provenance["command"]


def test_a_constant_feature_is_centred_not_blown_up():
    train = torch.zeros(4, 3, 2)
    train[..., 1] = torch.arange(12.0).view(4, 3)
    mean, std = feature_standardisation(train)
    assert std[0] == 1.0 and std[1] > 1.0  # a dead feature keeps its scale


def test_order_control_leaves_a_position_free_model_and_moves_a_position_model():
    cohort = planted_cohort(16, (6, 8, 8), splits="blocks", with_ad=False)
    values = np.random.default_rng(0).normal(size=(16, 6, 10)).astype(np.float32)
    values += cohort.table["age"].to_numpy()[:, None, None].astype(np.float32) / 50
    profile = get_profile("smoke")
    done = {}
    for position in ("none", "learned"):
        config = ModelConfig("sliceset", "resnet18", "random", "frozen", position=position)
        model = config.build(cohort.shape)
        model.project = torch.nn.Linear(10, model.project.out_features)  # 10 features
        features = SliceFeatures(values, None, model.encoder)
        trained = positions.train_frozen(config, cohort, features, profile, seed=0,
                                          model=model)  # fmt: skip
        done[position] = positions.order_control(trained, cohort, features, seed=1)
        expected = predict(trained, cohort, "test", "age", features=features)
        np.testing.assert_allclose(done[position][0], expected, rtol=1e-6)
    ordered, shuffled = done["none"]
    np.testing.assert_allclose(shuffled, ordered, rtol=1e-4, atol=1e-3)
    ordered, shuffled = done["learned"]
    assert np.abs(shuffled - ordered).max() > 1e-3


@pytest.mark.slow
def test_cli_writes_the_ablation_table_with_its_option_columns(tmp_path, capsys):
    out = tmp_path / "ablation"
    assert cli.main(["ablation", "--profile", "smoke", "--out", str(out)]) == 0
    assert "position=none" in capsys.readouterr().out
    table = pd.read_csv(out / "results.csv")
    for column in ("axis", "position", "norm", "aggregation", "encoder", "init", "mode",
                   "seed", "train_size", "mae", "status"):  # fmt: skip
        assert column in table.columns
    n_train = int(table["train_size"].max())
    assert len(table) == len(grids.grid_runs("ablation", "smoke", n_train))
    assert set(table["axis"].dropna()) >= AXES and set(table["norm"]) >= {"paper", "slice"}
    ok = table[table["status"] == "ok"]
    assert set(table.loc[table["status"] != "ok", "status"]) <= {
        "skipped: weights unavailable offline"
    }
    assert np.isfinite(ok["mae"]).all() and (ok["mae"] < 100).all()  # no blown-up runs
    predictions = pd.read_csv(out / "predictions.csv")
    assert {"axis", "position", "norm", "aggregation"} <= set(predictions.columns)
    ensemble = positions.axis_ensemble(predictions, encoder="efficientnet_lite0",
                                       init="imagenet", position="learned", norm="paper",
                                       aggregation="mean")  # fmt: skip
    assert set(ensemble["seed"]) == {0, 1}
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["status"] == "complete" and "ablation" in provenance["command"]
