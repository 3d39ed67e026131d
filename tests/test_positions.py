"""Position codes, norms, slicing axes and the order and axis controls of Chapter 5."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from slicemri_lite.analysis import _positions as positions
from slicemri_lite.data import slice_mass
from slicemri_lite.experiments import ModelConfig
from slicemri_lite.models import SliceSetNet
from slicemri_lite.train import SliceFeatures

SHAPE = (6, 7, 5)  # a tiny grid: 6 sagittal, 7 coronal, 5 axial slices
E = 12  # encoder features


def _head(position: str, norm: str, aggregation: str = "mean", seed: int = 0) -> SliceSetNet:
    """A slice model used on features only (its encoder never runs)."""
    torch.manual_seed(seed)
    model = SliceSetNet("scratch", False, "sagittal", position, aggregation,
                        volume_shape=SHAPE, embed_dim=8, dropout=0.0, norm=norm)  # fmt: skip
    model.project = nn.Linear(E, 8)
    return model.eval()


def _features(n: int = 4, seed: int = 0) -> SliceFeatures:
    values = np.random.default_rng(seed).normal(size=(n, SHAPE[0], E)).astype(np.float32)
    return SliceFeatures(values, None, nn.Identity())


def _tokens(model: SliceSetNet, features: torch.Tensor) -> torch.Tensor:
    return model._tokens(features)


def test_joint_norm_statistics_span_the_slices_per_slice_norm_does_not():
    x = torch.from_numpy(_features().values)
    changed = x.clone()
    changed[:, 2] *= 5.0  # one slice of every volume changes
    others = [s for s in range(SHAPE[0]) if s != 2]
    with torch.no_grad():
        joint, per_slice = _head("learned", "joint"), _head("learned", "slice")
        joint_moved = (_tokens(joint, x) - _tokens(joint, changed))[:, others].abs().max()
        slice_moved = (_tokens(per_slice, x) - _tokens(per_slice, changed))[:, others].abs().max()
    assert joint_moved > 1e-3  # the block's mean and variance include slice 2
    assert slice_moved < 1e-6  # each slice is normalised on its own
    assert joint.norm.weight.shape == (SHAPE[0], 8) and per_slice.norm.weight.shape == (8,)


def test_the_paper_norm_is_joint_with_a_position_code_and_absent_without():
    with_code = ModelConfig("sliceset", "resnet18", "random", "frozen").build((46, 55, 46))
    without = ModelConfig("sliceset", "resnet18", "random", "frozen", position="none")
    assert with_code.config["norm"] == "joint" and with_code.slice_gains().shape == (46,)
    assert without.build((46, 55, 46)).config["norm"] == "none"
    per_slice = ModelConfig("sliceset", "resnet18", "random", "frozen", norm="slice")
    assert per_slice.build((46, 55, 46)).config["norm"] == "slice"


@pytest.mark.parametrize("aggregation", ["mean", "max", "attention"])
def test_shuffled_slices_leave_a_position_free_model_unchanged(aggregation):
    model, features = _head("none", "slice", aggregation), _features()
    shuffled = positions.shuffle_slices(features, seed=3)
    assert not np.array_equal(shuffled.values, features.values)
    np.testing.assert_array_equal(
        np.sort(shuffled.values, axis=1), np.sort(features.values, axis=1)
    )
    with torch.no_grad():
        a = model.forward_features(torch.from_numpy(features.values))
        b = model.forward_features(torch.from_numpy(shuffled.values))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_shuffled_slices_change_a_position_model():
    model, features = _head("learned", "joint"), _features()
    with torch.no_grad():
        model.position_embedding.weight.normal_(0, 1.0)
        a = model.forward_features(torch.from_numpy(features.values))
        b = model.forward_features(torch.from_numpy(positions.shuffle_slices(features).values))
    assert (a - b).abs().max() > 1e-3


def test_position_similarity_and_components_see_a_smooth_code():
    model = _head("learned", "joint")
    index = torch.arange(SHAPE[0], dtype=torch.float32)[:, None]
    with torch.no_grad():  # a code that drifts smoothly with the slice index
        model.position_embedding.weight.copy_(torch.cat([torch.cos(index / 3), torch.sin(index / 3),
                                                         torch.ones(SHAPE[0], 6)], 1))  # fmt: skip
    sim = positions.position_similarity(model)
    assert sim.shape == (SHAPE[0], SHAPE[0])
    np.testing.assert_allclose(np.diag(sim), 1.0, atol=1e-9)
    by_distance = positions.similarity_by_distance(sim)
    assert by_distance.shape == (SHAPE[0],) and np.all(np.diff(by_distance) < 0)
    pcs = positions.position_components(model, 2)
    assert pcs.shape == (SHAPE[0], 2)
    assert np.corrcoef(pcs[:, 0], np.arange(SHAPE[0]))[0, 1] > 0.9
    with pytest.raises(ValueError, match="position='learned'"):
        positions.position_similarity(_head("none", "slice"))


def _predictions(axes=("sagittal", "coronal", "axial")) -> pd.DataFrame:
    rows = []
    for axis, shift in zip(axes, (1.0, 2.0, 6.0), strict=False):
        for seed in (0, 1):
            for pid in ("a", "b", "c"):
                rows.append({"model": "sliceset", "encoder": "e", "init": "imagenet",
                             "mode": "frozen", "axis": axis, "position": "learned",
                             "norm": "paper", "aggregation": "mean", "train_size": 10,
                             "seed": seed, "participant_id": pid, "age": 50.0,
                             "diagnosis": "CN", "predicted": 50.0 + shift + seed})  # fmt: skip
    return pd.DataFrame(rows)


def test_axis_ensemble_averages_the_three_axes_per_participant_and_seed():
    predictions = _predictions()
    ensemble = positions.axis_ensemble(predictions, encoder="e", init="imagenet")
    assert list(ensemble.columns) == list(predictions.columns)
    assert len(ensemble) == 2 * 3 and set(ensemble["axis"]) == {positions.AVERAGED}
    by_seed = ensemble.groupby("seed")["predicted"].unique()
    assert by_seed[0].tolist() == [53.0] and by_seed[1].tolist() == [54.0]
    with pytest.raises(ValueError, match="all three axes"):
        positions.axis_ensemble(_predictions(("sagittal", "coronal")))


def test_joined_axes_features_and_model_have_every_axis_slices():
    rng = np.random.default_rng(0)
    feats = [SliceFeatures(rng.normal(size=(4, n, E)).astype(np.float32), None, nn.Identity())
             for n in SHAPE]  # fmt: skip
    joined = positions.joined_axes_features(feats)
    assert joined.shape == (4, sum(SHAPE), E)
    np.testing.assert_array_equal(joined.values[:, SHAPE[0] : SHAPE[0] + SHAPE[1]], feats[1].values)
    config = ModelConfig("sliceset", "resnet18", "random", "frozen")
    model = positions.joined_axes_model(config, (46, 55, 46))
    assert model.n_slices == 46 + 55 + 46 and model.slice_gains().shape == (147,)
    out = model.forward_features(torch.randn(2, 147, 512))
    assert out.shape == (2, 1)
    with pytest.raises(ValueError, match="sagittal"):
        positions.joined_axes_model(ModelConfig("sliceset", "resnet18", "random", "frozen",
                                                axis="axial"), (46, 55, 46))  # fmt: skip
    with pytest.raises(ValueError, match="three feature arrays"):
        positions.joined_axes_features(feats[:2])


def test_effect_mass_per_slice_finds_the_effect_and_respects_the_mask():
    effect = np.zeros(SHAPE)
    effect[4, 2, 1] = -3.0  # a negative effect counts by its size
    effect[1, 5, 3] = 1.0
    sagittal = slice_mass(effect, "sagittal", normalise=True)
    assert sagittal.shape == (6,) and sagittal.sum() == pytest.approx(1.0)
    assert sagittal[4] == pytest.approx(0.75) and sagittal[1] == pytest.approx(0.25)
    axial = slice_mass(effect, "axial", normalise=True)
    assert axial.shape == (5,) and axial[1] == pytest.approx(0.75)
    mask = np.ones(SHAPE, bool)
    mask[4] = False
    assert slice_mass(effect, "sagittal", normalise=True, mask=mask)[1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="'axis' must be one of"):
        slice_mass(effect, "oblique", normalise=True)


def test_slice_profile_volume_paints_each_slice_with_its_value():
    profile = np.arange(7, dtype=float)
    volume = positions.slice_profile_volume(profile, "coronal", SHAPE)
    assert volume.shape == SHAPE and np.all(volume[:, 3, :] == 3.0)
    with pytest.raises(ValueError, match="7 values"):
        positions.slice_profile_volume(profile[:5], "coronal", SHAPE)


def test_seconds_per_volume_is_a_positive_time():
    assert 0 < positions.seconds_per_volume("resnet18", "axial", (20, 24, 20), 1, 1) < 30


def test_axis_table_puts_axes_in_columns_and_the_3d_cnn_in_its_own():
    rows = []
    for axis, mae in (("sagittal", 4.0), ("coronal", 5.0), ("axial", 6.0)):
        for seed in (0, 1):
            rows.append({"model": "sliceset", "encoder": "e", "init": "imagenet",
                         "mode": "frozen", "axis": axis, "position": "none", "norm": "paper",
                         "aggregation": "mean", "train_size": 10, "seed": seed,
                         "mae": mae + seed, "status": "ok"})  # fmt: skip
    rows.append({**rows[0], "model": "conv3d", "encoder": "-", "init": "-", "mode": "-"})
    rows.append({**rows[0], "seed": 2, "status": "skipped: weights unavailable offline"})
    table = positions.axis_table(pd.DataFrame(rows))
    assert list(table.columns) == ["sagittal", "coronal", "axial", "volume"]
    cell = table.loc[("e imagenet frozen position=none", 10), "coronal"]
    assert cell.startswith("5.50 [")
    assert (
        table.loc[("conv3d", 10), "volume"] == "4.00" and table.loc[("conv3d", 10), "axial"] == ""
    )
