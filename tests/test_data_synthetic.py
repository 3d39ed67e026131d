"""The synthetic cohort: deterministic, on the right grid, with anatomical effects pointing the right way."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from data_fixtures import small_cohort
from scipy import stats

from slicemri_lite.data import grid_affine, synthetic_cohort
from slicemri_lite.geometry import grid_world_coords


def roi(resolution: int, centre, radius_mm: float) -> np.ndarray:
    """Grid voxels within ``radius_mm`` of the MNI point ``centre``: ``(X, Y, Z)`` bool."""
    return np.linalg.norm(grid_world_coords(resolution) - np.array(centre), axis=-1) <= radius_mm


def medial_temporal(radius_mm: float = 5.0) -> np.ndarray:
    """Both hippocampi and amygdalae (spheres around their MNI centres) on the 4 mm grid."""
    centres = [(side * 28, -22, -12) for side in (1, -1)] + [
        (side * 24, -4, -20) for side in (1, -1)
    ]
    return np.any([roi(4, c, radius_mm) for c in centres], axis=0)


def ventricle_voxels(cohort) -> np.ndarray:
    """Dark (CSF-like, < 0.6) voxels in a box around the lateral ventricles, per volume."""
    xyz = grid_world_coords(4)
    box = (
        (np.abs(xyz[..., 0]) < 28)
        & (xyz[..., 1] > -45)
        & (xyz[..., 1] < 30)
        & (xyz[..., 2] > -2)
        & (xyz[..., 2] < 32)
    )
    return (
        (cohort.volumes[:, box].astype(np.float32) < 0.6) & (cohort.volumes[:, box] > 0.05)
    ).sum(1)


def test_same_arguments_same_bytes_and_first_participants_stable():
    a = synthetic_cohort(3, seed=5, resolution=4)
    b = synthetic_cohort(3, seed=5, resolution=4)
    assert a.volumes.tobytes() == b.volumes.tobytes()
    assert a.effects["age"].tobytes() == b.effects["age"].tobytes()
    pd.testing.assert_frame_equal(a.table, b.table)
    longer = synthetic_cohort(4, seed=5, resolution=4)
    np.testing.assert_array_equal(longer.volumes[:3], a.volumes)
    other = synthetic_cohort(3, seed=6, resolution=4)
    assert not np.array_equal(other.volumes, a.volumes)


def test_shapes_affine_labels_and_intensity_scale():
    cohort = small_cohort()
    assert cohort.volumes.shape == (40, 46, 55, 46) and cohort.volumes.dtype == np.float16
    np.testing.assert_array_equal(cohort.affine, grid_affine(4))
    assert set(cohort.effects) == {"age", "ad"} and cohort.effects["age"].shape == (46, 55, 46)
    t = cohort.table
    assert {"participant_id", "age", "sex", "diagnosis", "split"} <= set(t.columns)
    assert t["age"].between(20, 90).all() and set(t["sex"]) == {"F", "M"}
    assert (t.loc[t["diagnosis"] == "AD", "age"] >= 60).all() and (t["diagnosis"] == "AD").any()
    assert set(t["split"]) == {"train", "val", "test"}
    volumes = cohort.volumes.astype(np.float32)
    assert np.isfinite(volumes).all()
    white = roi(4, (26, -10, 30), 6)  # deep white matter of the right hemisphere
    assert 0.9 < np.median(volumes[:, white]) < 1.1  # white matter ~1 by construction
    assert np.abs(volumes[:, 0, 0, 0]).max() == 0  # background stays 0


def test_brains_stay_inside_the_computed_region():
    from scipy import ndimage

    from slicemri_lite.synthetic import _Renderer

    region = np.zeros(46 * 55 * 46, dtype=bool)
    region[_Renderer(4).region.numpy()] = True
    inside = ndimage.binary_erosion(
        region.reshape(46, 55, 46), border_value=1
    )  # grid faces are no edge
    edge = region.reshape(46, 55, 46) & ~inside
    assert not (small_cohort().volumes[:, edge] != 0).any()  # no brain clipped at the region's edge


def test_paper_grid_at_2mm():
    cohort = synthetic_cohort(1, resolution=2, dtype="float32")
    assert cohort.volumes.shape == (1, 91, 109, 91) and cohort.volumes.dtype == np.float32
    np.testing.assert_array_equal(cohort.affine, grid_affine(2))
    assert cohort.effects["ad"].shape == (91, 109, 91)


def test_older_participants_have_bigger_ventricles():
    cohort = small_cohort()
    rho = stats.spearmanr(cohort.table["age"], ventricle_voxels(cohort)).statistic
    assert rho > 0.6


def test_effect_maps_point_the_right_way():
    effects = small_cohort().effects
    hippocampi = medial_temporal()
    ventricles = roi(4, (16, -20, 22), 5) | roi(4, (-16, -20, 22), 5)
    far = roi(4, (0, -85, 10), 10)  # occipital pole
    assert effects["ad"][hippocampi].mean() < -0.03  # tissue lost: darker
    assert abs(effects["ad"][far].mean()) < 0.002  # AD leaves the occipital lobe alone
    assert (
        effects["age"][ventricles].mean() < effects["age"][far].mean() < 0
    )  # CSF grows, cortex thins


def test_ad_shrinks_the_hippocampal_region():
    cohort = small_cohort()
    hippocampi = medial_temporal()
    t = cohort.table
    old = (t["age"] >= 60).to_numpy()
    tissue = cohort.volumes[:, hippocampi].astype(np.float32).mean(1)
    ad = (t["diagnosis"] == "AD").to_numpy()
    assert tissue[old & ad].mean() < tissue[old & ~ad].mean()


def test_repeat_scans_share_the_brain_not_the_nuisance():
    cohort = synthetic_cohort(2, seed=0, resolution=4, scans_per_subject=2)
    assert list(cohort.table["participant_id"]) == ["sub-0001", "sub-0001", "sub-0002", "sub-0002"]
    assert cohort.table.groupby("participant_id")["age"].nunique().max() == 1
    assert not np.array_equal(cohort.volumes[0], cohort.volumes[1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"resolution": 3}, "'resolution' must be one of \\[2, 4\\]; 3 was provided"),
        ({"dtype": "int8"}, "'dtype' must be one of"),
        ({"n_subjects": 0}, "at least 1"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        synthetic_cohort(**{"n_subjects": 2, "resolution": 4, **kwargs})
