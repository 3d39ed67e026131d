"""A medial temporal marker measured on the scans themselves, without any model.

What a radiologist or a voxel-based morphometry study would read: how much grey matter
the medial temporal lobe holds. It is measured with a mask the synthetic generator never
used: spheres at the hippocampal and amygdala coordinates of a published atlas of
regions (Seitzman et al. 2020, NeuroImage 206:116290; shipped with nilearn, no
download), not the generator's hand-placed ellipsoids. Grey matter is read from each
scan's own intensities, with tissue levels taken where nilearn's MNI152 tissue maps are
nearly pure, so a scan's intensity scale does not enter.

On the book's synthetic cohorts it is the check that Alzheimer's disease can be seen in
the images before any model is trained (Chapter 2; ``SyntheticConfig`` for the sources).
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from slicemri_lite._core.geometry import (
    check_resolution,
    grid_affine,
    grid_shape,
    grid_world_coords,
)

__all__ = [
    "MTL_RADIUS_MM",
    "marker_separation",
    "mtl_grey_volume",
    "mtl_mask",
    "mtl_marker_table",
]

MTL_RADIUS_MM = 8.0  # sphere radius around each published coordinate
_MTL_REGIONS = ("hippocampus", "amygdala")  # Seitzman et al. 2020's anatomical labels


@functools.lru_cache(maxsize=4)
def mtl_mask(resolution: int = 2, radius_mm: float = MTL_RADIUS_MM) -> np.ndarray:
    """Spheres at Seitzman et al. (2020)'s hippocampal and amygdala regions: ``(X, Y, Z)`` bool.

    Six regions (four hippocampal, two amygdala; both hemispheres), each a sphere of
    ``radius_mm`` on the grid at ``resolution`` mm.
    """
    from nilearn.datasets import fetch_coords_seitzman_2018

    atlas = fetch_coords_seitzman_2018()
    keep = np.isin(np.asarray(atlas.regions), _MTL_REGIONS)
    centres = atlas.rois[keep][["x", "y", "z"]].to_numpy(dtype=np.float32)
    world = grid_world_coords(check_resolution(resolution))
    mask = np.zeros(world.shape[:3], dtype=bool)
    for centre in centres:
        mask |= np.linalg.norm(world - centre, axis=-1) <= radius_mm
    mask.setflags(write=False)
    return mask


@functools.lru_cache(maxsize=2)
def _pure_tissue(resolution: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the MNI152 maps say a voxel is nearly pure CSF, grey or white matter: 3 bool grids."""
    from nilearn import datasets
    from nilearn.image import resample_img

    def on_grid(image) -> np.ndarray:
        return resample_img(
            image,
            target_affine=grid_affine(resolution),
            target_shape=grid_shape(resolution),
            interpolation="nearest",  # the grids share the maps' 2 mm lattice
            force_resample=True,
            copy_header=True,
        ).get_fdata()

    grey = on_grid(datasets.load_mni152_gm_template(resolution=2))
    white = on_grid(datasets.load_mni152_wm_template(resolution=2))
    csf = np.clip(on_grid(datasets.load_mni152_brain_mask(resolution=2)) - grey - white, 0, 1)
    return csf > 0.7, grey > 0.7, white > 0.9


def _grey_fraction(values: np.ndarray, csf: float, grey: float, white: float) -> np.ndarray:
    """Grey-matter share of each voxel from its intensity (two-tissue partial volume)."""
    below = np.clip((values - csf) / (grey - csf), 0.0, 1.0)
    above = np.clip((white - values) / (white - grey), 0.0, 1.0)
    return np.where(values <= grey, below, above)


def mtl_grey_volume(volumes: np.ndarray, resolution: int) -> np.ndarray:
    """Medial temporal grey matter of each scan, in mL: ``(N, X, Y, Z)`` -> ``(N,)`` float64.

    Each voxel of ``mtl_mask`` counts its grey-matter share: between the scan's CSF and
    grey levels it rises linearly from 0 to 1, between its grey and white levels it falls
    back to 0. The levels are the scan's medians where nilearn's tissue maps are nearly
    pure (CSF > 0.7, grey > 0.7, white > 0.9). Volumes are read one at a time, so a
    memory-mapped cohort stays on disk.
    """
    resolution = check_resolution(resolution)
    if volumes.ndim != 4 or volumes.shape[1:] != grid_shape(resolution):
        raise ValueError(
            f"'volumes' must be (N, {', '.join(map(str, grid_shape(resolution)))}) at "
            f"{resolution} mm; {volumes.shape} was provided."
        )
    roi = mtl_mask(resolution)
    pure_csf, pure_grey, pure_white = _pure_tissue(resolution)
    voxel_ml = resolution**3 / 1000.0
    out = np.empty(len(volumes))
    for i, volume in enumerate(volumes):
        v = np.asarray(volume, dtype=np.float32)
        levels = (float(np.median(v[m])) for m in (pure_csf, pure_grey, pure_white))
        out[i] = _grey_fraction(v[roi], *levels).sum() * voxel_ml
    return out


def mtl_marker_table(cohort) -> pd.DataFrame:
    """``cohort.table`` with its ``mtl_grey_ml`` (``mtl_grey_volume`` of every scan)."""
    table = cohort.table.copy()
    table["mtl_grey_ml"] = mtl_grey_volume(cohort.volumes, int(cohort.meta["resolution"]))
    return table


def marker_separation(
    table: pd.DataFrame,
    column: str = "mtl_grey_ml",
    *,
    min_age: float = 60.0,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, float]:
    """How a marker that falls in AD separates AD from CN aged ``min_age`` or more.

    In the synthetic cohort AD and CN of those ages share one age distribution, so the
    comparison is age-matched. Returns ``n_cn``, ``n_ad``, ``auc`` (AD scored by a lower
    marker) with ``auc_low`` and ``auc_high`` (a 95 % percentile bootstrap, resampling
    each group), and, in those controls, ``percent_per_year`` (slope of the marker's log
    against age, x100) and ``r`` (its correlation with age).
    """
    from sklearn.metrics import roc_auc_score

    for name in (column, "age", "diagnosis"):
        if name not in table:
            raise ValueError(f"the table needs a {name!r} column; it has {list(table.columns)}.")
    older = table[table["age"] >= min_age]
    marker = older[column].to_numpy(dtype=np.float64)
    is_ad = older["diagnosis"].to_numpy() == "AD"
    if is_ad.sum() < 2 or (~is_ad).sum() < 2:
        raise ValueError(f"need at least 2 AD and 2 CN aged {min_age:g} or more; the table has "
                         f"{int(is_ad.sum())} and {int((~is_ad).sum())}.")  # fmt: skip
    ad, cn = marker[is_ad], marker[~is_ad]
    rng = np.random.default_rng(seed)
    draws = [
        roc_auc_score(
            np.r_[np.ones(ad.size), np.zeros(cn.size)],
            -np.r_[rng.choice(ad, ad.size), rng.choice(cn, cn.size)],
        )
        for _ in range(n_boot)
    ]
    ages = older["age"].to_numpy(dtype=np.float64)[~is_ad]
    low, high = np.percentile(draws, [2.5, 97.5])
    return {
        "n_cn": int(cn.size),
        "n_ad": int(ad.size),
        "auc": float(roc_auc_score(is_ad, -marker)),
        "auc_low": float(low),
        "auc_high": float(high),
        "percent_per_year": float(100 * np.polyfit(ages, np.log(cn), 1)[0]),
        "r": float(np.corrcoef(ages, cn)[0, 1]),
    }
