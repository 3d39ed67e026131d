"""Frozen slice features: computed once per cohort and encoder, reused from memory and disk."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from data_fixtures import small_cohort

from slicemri_lite.train import FeatureSpec, slice_features
from slicemri_lite.train import _features as feat

SPEC = FeatureSpec("scratch", "random", "sagittal", seed=0, inputs="book")


@pytest.fixture
def encoder_calls(monkeypatch):
    """Counts how many volumes go through an encoder; memory cache emptied before and after."""
    calls = []
    original = feat.encode_volumes

    def counting(net, volumes, rows=None, **kwargs):
        calls.append(len(volumes) if rows is None else len(rows))
        return original(net, volumes, rows, **kwargs)

    monkeypatch.setattr(feat, "encode_volumes", counting)
    feat.clear_memory_cache()
    yield calls
    feat.clear_memory_cache()


@pytest.fixture
def cached_cohort(tmp_path):
    """Twelve volumes of the small cohort saved and loaded back, as open_cohort gives them."""
    from slicemri_lite.data import load_cohort

    small_cohort().subset(range(12)).save(tmp_path / "cohorts" / "small")
    return load_cohort(tmp_path / "cohorts" / "small")


def test_a_second_request_runs_no_encoder(cached_cohort, encoder_calls):
    first = slice_features(cached_cohort, SPEC, batch_size=16)
    assert encoder_calls == [len(cached_cohort)]
    # one 256-d scratch-encoder vector per sagittal slice of every volume
    assert first.shape == (12, cached_cohort.shape[0], 256)
    again = slice_features(cached_cohort, SPEC, batch_size=16)
    assert encoder_calls == [len(cached_cohort)] and again is first


def test_the_disk_cache_serves_a_new_process(cached_cohort, encoder_calls, tmp_path):
    first = slice_features(cached_cohort, SPEC, batch_size=16)
    feat.clear_memory_cache()  # as if a later chapter started a new kernel
    again = slice_features(cached_cohort, SPEC, batch_size=16)
    assert encoder_calls == [len(cached_cohort)]
    np.testing.assert_array_equal(again.values, first.values)
    folders = list((tmp_path / "features" / "small").iterdir())
    assert [f.name for f in folders] == [SPEC.name]


def test_a_damaged_disk_cache_is_recomputed_not_used(cached_cohort, encoder_calls, tmp_path):
    first = np.array(slice_features(cached_cohort, SPEC, batch_size=16).values)  # a copy:
    stored = tmp_path / "features" / "small" / SPEC.name / "features.npy"  # it is mapped
    stored.write_bytes(stored.read_bytes()[:-64])  # cut short
    feat.clear_memory_cache()
    again = slice_features(cached_cohort, SPEC, batch_size=16)
    assert encoder_calls == [len(cached_cohort)] * 2
    np.testing.assert_array_equal(again.values, first)


def test_another_spec_or_cohort_content_gets_other_features(cached_cohort, encoder_calls):
    a = slice_features(cached_cohort, SPEC, batch_size=16)
    other = FeatureSpec("scratch", "random", seed=1, inputs="book")
    b = slice_features(cached_cohort, other, batch_size=16)
    c = slice_features(cached_cohort.subset(range(6)), SPEC, batch_size=16)
    assert len(encoder_calls) == 3 and len({a.key, b.key, c.key}) == 3
    assert not np.allclose(a.values, b.values)
    np.testing.assert_allclose(c.values, a.values[:6], rtol=1e-5, atol=1e-5)


def test_features_equal_the_models_own_slice_features():
    cohort = small_cohort().subset(range(4))
    features = slice_features(cohort, SPEC, disk=False)
    net = SPEC.build(cohort.shape)
    x = torch.from_numpy(np.asarray(cohort.volumes, dtype=np.float32))[:, None]
    with torch.no_grad():
        expected = net.encoder_features(x).numpy()
    np.testing.assert_allclose(features.values, expected, rtol=1e-5, atol=1e-5)
    feat.clear_memory_cache()


def test_paper_inputs_are_the_paper_models_own_features():
    from slicemri_lite.models import SliceSetNet

    cohort = small_cohort().subset(range(3))
    spec = FeatureSpec("efficientnet_lite0", "random", "axial", seed=2)  # inputs="paper"
    features = slice_features(cohort, spec, disk=False)
    torch.manual_seed(2)
    model = SliceSetNet.paper("efficientnet_lite0", "axial", pretrained=False,
                              volume_shape=cohort.shape).eval()  # fmt: skip
    assert spec.matches(model) and not dataclasses.replace(spec, inputs="book").matches(model)
    x = torch.from_numpy(np.asarray(cohort.volumes, dtype=np.float32))[:, None]
    with torch.no_grad():
        np.testing.assert_allclose(features.values, model.encoder_features(x).numpy(),
                                   rtol=1e-4, atol=1e-4)  # fmt: skip
    feat.clear_memory_cache()


def test_bad_specs_are_refused():
    with pytest.raises(ValueError, match="'init' must be one of \\['imagenet', 'random'\\]"):
        FeatureSpec("scratch", "pretrained")
    with pytest.raises(ValueError, match="'axis' must be one of"):
        FeatureSpec("scratch", "random", "oblique")


def test_encoding_in_slice_batches_gives_the_same_features():
    from slicemri_lite.models import SliceSetNet

    cohort = small_cohort().subset(range(3))
    torch.manual_seed(0)
    net = SliceSetNet.paper("resnet18", volume_shape=cohort.shape, pretrained=False)
    whole = feat.encode_volumes(net, cohort.volumes, slice_batch=10_000)
    chunked = feat.encode_volumes(net, cohort.volumes, batch_size=2, slice_batch=7)
    assert whole.shape == (3, cohort.shape[0], 512)  # ResNet-18's 512 features per slice
    np.testing.assert_allclose(chunked, whole, rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # and the same as the model's own pass over whole volumes
        direct = net.eval().encoder_features(
            torch.from_numpy(np.asarray(cohort.volumes, np.float32))[:, None]
        )
    np.testing.assert_allclose(whole, direct.numpy(), rtol=1e-4, atol=1e-5)


def test_a_progress_bar_shows_only_while_the_encoder_runs(cached_cohort, capsys):
    feat.clear_memory_cache()
    slice_features(cached_cohort, SPEC, batch_size=4, progress=True)
    bar = capsys.readouterr().err
    assert f"encoding {SPEC.name}" in bar and "12/12" in bar and "volume" in bar
    feat.clear_memory_cache()  # served from the disk cache: no encoder, no bar
    slice_features(cached_cohort, SPEC, batch_size=4, progress=True)
    assert capsys.readouterr().err == ""
    feat.clear_memory_cache()


def test_features_just_encoded_are_served_memory_mapped_from_disk(cached_cohort):
    feat.clear_memory_cache()  # Binder: several arrays of a 2 mm cohort would not fit in RAM
    fresh = slice_features(cached_cohort, SPEC, batch_size=4)
    assert isinstance(fresh.values, np.memmap) and not fresh.values.flags.writeable
    feat.clear_memory_cache()
