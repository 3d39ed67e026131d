"""open_cohort: build once, cache by arguments, load after; folders load as they are."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import small_cohort

from slicemri_lite.data import _open as data


def test_synthetic_is_built_once_then_loaded(tmp_path, monkeypatch):
    first = data.open_cohort(
        "synthetic", n_subjects=3, resolution=4, seed=2, data_dir=tmp_path, progress=False
    )
    assert first.meta["cache"].startswith(str(tmp_path / "cohorts" / "synthetic-n3-r4-seed2"))

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cached cohort should have been loaded")

    monkeypatch.setattr(data, "synthetic_cohort", no_rebuild)
    again = data.open_cohort("synthetic", n_subjects=3, resolution=4, seed=2, data_dir=tmp_path)
    np.testing.assert_array_equal(again.volumes, first.volumes)
    assert list(again.table["split"]) == list(first.table["split"])
    with pytest.raises(
        AssertionError, match="should have been loaded"
    ):  # other arguments, other cache
        data.open_cohort("synthetic", n_subjects=3, resolution=4, seed=3, data_dir=tmp_path)


def test_env_var_chooses_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SLICEMRI_DATA", str(tmp_path))
    cohort = data.open_cohort("synthetic", n_subjects=2, resolution=4, progress=False)
    assert cohort.meta["cache"].startswith(str(tmp_path))


def test_a_folder_is_loaded_as_it_is(tmp_path):
    folder = small_cohort().subset([0, 1, 2]).save(tmp_path / "mine")
    cohort = data.open_cohort(folder)
    assert len(cohort) == 3 and cohort.meta["cache"] == str(folder)


def test_unknown_data_and_missing_size_are_refused(tmp_path):
    with pytest.raises(
        ValueError, match="'data' must be one of \\['synthetic', 'oasis'\\] or the folder"
    ):
        data.open_cohort("adni", n_subjects=3, data_dir=tmp_path)
    with pytest.raises(ValueError, match="'n_subjects' is required"):
        data.open_cohort("synthetic", data_dir=tmp_path)


def test_oasis_goes_through_the_same_cache(tmp_path, monkeypatch):
    calls = []

    def fake_oasis(n_subjects, resolution, seed, progress):
        calls.append((n_subjects, resolution, seed))
        return small_cohort().subset([0, 1])

    monkeypatch.setattr(data, "oasis_cohort", fake_oasis)
    for _ in range(2):
        cohort = data.open_cohort("oasis", n_subjects=2, resolution=4, data_dir=tmp_path)
    assert calls == [(2, 4, 0)] and len(cohort) == 2


def test_incomplete_cache_folder_is_refused_not_overwritten(tmp_path):
    path = data.cohort_cache_path("synthetic", 3, 4, 0, data_dir=tmp_path)
    path.mkdir(parents=True)
    (path / "volumes.npy").write_bytes(b"partial")
    with pytest.raises(data.CohortCacheError, match="incomplete cohort cache"):
        data.open_cohort("synthetic", n_subjects=3, resolution=4, data_dir=tmp_path)
    assert (path / "volumes.npy").read_bytes() == b"partial"


def test_building_a_cohort_lets_go_of_its_renderer(tmp_path):
    from slicemri_lite.data.synthetic import _anatomy as anatomy
    from slicemri_lite.data.synthetic import _render as render

    first = data.open_cohort("synthetic", n_subjects=2, resolution=4, data_dir=tmp_path / "a",
                             progress=False)  # fmt: skip
    # the renderer and its templates (about 0.25 GB at 2 mm) are not kept once it is saved
    assert render.renderer.cache_info().currsize == 0
    assert anatomy.load_template.cache_info().currsize == 0
    # ... and are built again when needed (a miss of the emptied cache), rendering the same
    render.renderer(4)
    info = render.renderer.cache_info()
    assert (info.misses, info.currsize) == (1, 1)
    again = data.open_cohort("synthetic", n_subjects=2, resolution=4, data_dir=tmp_path / "b",
                             progress=False)  # fmt: skip
    np.testing.assert_array_equal(np.asarray(again.volumes), np.asarray(first.volumes))
    assert render.renderer.cache_info().currsize == 0
