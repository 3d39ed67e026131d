"""The synthetic cohort: deterministic, on the right grid, with anatomical effects pointing the right way."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from data_fixtures import small_cohort
from scipy import stats

from slicemri_lite.data import grid_affine, grid_world_coords, synthetic_cohort
from slicemri_lite.data.synthetic import (
    GENERATOR_VERSION,
    MARKERS,
    SyntheticConfig,
    draw_participant,
    markers,
    render_participant,
)


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

    from slicemri_lite.data.synthetic import renderer

    region = np.zeros(46 * 55 * 46, dtype=bool)
    region[renderer(4).region.numpy()] = True
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
    age, csf = cohort.table["age"].to_numpy(), ventricle_voxels(cohort)
    assert stats.spearmanr(age, csf).statistic > 0.3  # 0.46 here: people differ a lot
    assert csf[age > 70].mean() > 1.5 * csf[age < 40].mean()


def marker_values(age: float, n: int = 200) -> np.ndarray:
    """Ageing markers ``(n, 4)`` of ``n`` controls drawn at one age (MARKERS order)."""
    cfg = SyntheticConfig(ad_prevalence=0.0, age_min=age, age_max=age)
    values = []
    for i in range(n):
        p = draw_participant(np.random.default_rng([0, i, 0]), cfg, warp=None)
        m = markers(p, cfg)
        values.append([m.ventricle_log, m.hippocampus_log, m.thinning_mm, m.contrast])
    return np.array(values)


def test_every_ageing_marker_varies_between_people_of_one_age_and_moves_with_age():
    young, old = marker_values(30.0), marker_values(80.0)
    change = old.mean(0) - young.mean(0)
    assert change[0] > 0.5 and change[1] < -0.2 and change[2] > 0.2 and change[3] > 0.05
    # between-person spread at 80, in every marker, beyond the spread at 30 (own rates)
    assert (old.std(0) > 1.2 * young.std(0)).all(), dict(
        zip(MARKERS, old.std(0) / young.std(0), strict=True)
    )
    assert (old.std(0) > 0.2 * np.abs(change)).all()


def test_ad_lowers_hippocampal_volume_against_age_matched_controls():
    cfg = SyntheticConfig(ad_prevalence=1.0, age_min=75.0, age_max=75.0)
    p = draw_participant(np.random.default_rng(0), cfg, warp=None)
    assert p.diagnosis == "AD" and p.ad_severity > 0
    with_ad, without = markers(p, cfg), markers(p, cfg, effects=("age",))
    assert with_ad.hippocampus_log < without.hippocampus_log - 0.05
    assert with_ad.ventricle_log > without.ventricle_log


def test_the_age_map_read_out_tracks_age_in_controls():
    """Projecting controls on effects['age'] tracks age.

    Measured: r = 0.51 on these 71 controls, 0.64 on the 169 controls of 200 participants
    (seed 0); generator version 2 gave 0.27.
    """
    cohort = synthetic_cohort(80, seed=1, resolution=4)
    controls = (cohort.table["diagnosis"] == "CN").to_numpy()
    volumes = cohort.volumes[controls].astype(np.float32).reshape(controls.sum(), -1)
    read_out = (volumes - volumes.mean(0)) @ cohort.effects["age"].ravel()
    r = np.corrcoef(read_out, cohort.table["age"][controls])[0, 1]
    assert r > 0.4


def test_a_participant_renders_with_and_without_its_own_effects():
    cohort = small_cohort()
    t = cohort.table
    index = int(np.flatnonzero(((t["diagnosis"] == "AD") & (t["ad_severity"] > 0.8)).to_numpy())[0])
    noisy = render_participant(cohort, index, noise=True)
    np.testing.assert_array_equal(noisy["with"].astype(cohort.volumes.dtype), cohort.volumes[index])
    ad = render_participant(cohort, index, without=("ad",))
    np.testing.assert_allclose(ad["effect"], ad["with"] - ad["without"])
    change = np.abs(ad["effect"])
    hippocampi, far = medial_temporal(), roi(4, (0, -85, 10), 10)
    assert change[hippocampi].mean() > 20 * change[far].mean()  # AD's effect is medial temporal
    age = render_participant(cohort, index, without=("age",))
    ventricles = roi(4, (16, -20, 22), 5) | roi(4, (-16, -20, 22), 5)
    assert age["effect"][ventricles].mean() < -0.01  # ageing opened up CSF there
    assert np.abs(age["effect"][ventricles]).mean() > 3 * np.abs(age["effect"][far]).mean()
    assert np.abs(age["effect"]).sum() > np.abs(ad["effect"]).sum()


def test_render_participant_refuses_other_cohorts_and_effects():
    cohort = small_cohort()
    with pytest.raises(ValueError, match="'without' must be one of"):
        render_participant(cohort, 0, without=("sex",))
    with pytest.raises(ValueError, match="'index' must be in"):
        render_participant(cohort, len(cohort.table))
    old = dataclasses.replace(cohort, meta={**cohort.meta, "generator": {"version": 2}})
    with pytest.raises(ValueError, match=f"renders version {GENERATOR_VERSION}"):
        render_participant(old, 0)


def test_effect_maps_point_the_right_way():
    effects = small_cohort().effects
    hippocampi = medial_temporal()
    ventricles = roi(4, (16, -20, 22), 5) | roi(4, (-16, -20, 22), 5)
    far = roi(4, (0, -85, 10), 10)  # occipital pole
    assert effects["ad"][hippocampi].mean() < -0.015  # tissue lost: darker on the whole
    assert abs(effects["ad"][far].mean()) < 0.002  # AD leaves the occipital lobe alone
    assert effects["age"][ventricles].mean() < -0.1  # ventricles grow: dark CSF
    assert abs(effects["age"][far].mean()) < 0.1 * abs(effects["age"][ventricles].mean())


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


def test_sites_are_off_by_default_and_site_zero_is_the_reference_scanner():
    """With n_sites, participant i is scanned at site i % n_sites; site 0's scans are the very
    scans of a cohort without sites, the other sites' differ, and a site is the same scanner
    in every cohort."""
    from slicemri_lite.data import SyntheticConfig
    from slicemri_lite.data.synthetic._render import draw_site

    plain = synthetic_cohort(4, seed=2, resolution=4, progress=False)
    assert "site" not in plain.table
    sited = synthetic_cohort(4, seed=2, resolution=4, config=SyntheticConfig(n_sites=3))
    assert sited.table["site"].tolist() == ["site-0", "site-1", "site-2", "site-0"]
    same = np.asarray(plain.volumes[[0, 3]]) == np.asarray(sited.volumes[[0, 3]])
    assert same.all()
    for i in (1, 2):  # the same brains on other scanners
        difference = np.abs(
            np.asarray(plain.volumes[i], np.float32) - np.asarray(sited.volumes[i], np.float32)
        )
        assert difference.max() > 0.05
    assert draw_site(2, SyntheticConfig()) == draw_site(2, SyntheticConfig(n_sites=5))
    assert draw_site(0, SyntheticConfig()).gamma == 1.0


def test_a_blurrier_site_has_less_fine_detail():
    from slicemri_lite.data import SyntheticConfig
    from slicemri_lite.data.synthetic._ageing import markers, typical_participant
    from slicemri_lite.data.synthetic._render import Site, draw_scan, renderer

    cfg = SyntheticConfig()
    p = typical_participant(60.0, 0.0)
    render = renderer(4).render
    sharp = render(markers(p, cfg), p.warp, draw_scan(np.random.default_rng(0), 1.0, cfg))
    blurred_site = Site(1, fwhm_mm=6.0)
    blurred = render(
        markers(p, cfg), p.warp, draw_scan(np.random.default_rng(0), 1.0, cfg, blurred_site)
    )

    def detail(v):
        return np.abs(np.diff(v, axis=0)).mean()

    assert detail(blurred) < 0.8 * detail(sharp)
