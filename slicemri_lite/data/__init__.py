"""Cohorts: the participant table, volumes on a grid, their on-disk cache and splits.

Open the embedded synthetic cohort, OASIS-1 or your own NIfTI files with
``open_cohort`` / ``synthetic_cohort`` / ``oasis_cohort`` / ``prepare_nifti``;
grids, affines and slicing axes come from here too (``grid_shape``, ``AXES``), and
``write_csv_atomic`` writes a table so that a failed write leaves nothing half-written.
The synthetic generator has its own face, ``slicemri_lite.data.synthetic``.
"""

from __future__ import annotations

from slicemri_lite._core.atomic import (
    write_csv_atomic,
)
from slicemri_lite._core.env import (
    data_dir,
    scratch_dir,
)
from slicemri_lite._core.geometry import (
    AXES,
    RESOLUTIONS,
    axis_index,
    check_resolution,
    grid_affine,
    grid_brain_mask,
    grid_shape,
    grid_world_coords,
    orientation_codes,
    slice_counts,
    slice_mass,
    take_slice,
    voxel_size,
    voxel_to_world,
    world_to_voxel,
)
from slicemri_lite.data._cohort import (
    DIAGNOSES,
    FORMAT_VERSION,
    PREDICTION_COLUMN,
    REQUIRED_COLUMNS,
    SPLITS,
    TASKS,
    Cohort,
    CohortCacheError,
    RowView,
    load_cohort,
    read_rows,
    save_cohort,
    verify_cohort,
)
from slicemri_lite.data._intensity import (
    white_matter_level,
)
from slicemri_lite.data._layout import (
    cache_table,
    clear_cache,
)
from slicemri_lite.data._nifti import (
    NiftiInputError,
    check_image,
    prepare_image,
    prepare_nifti,
    resample_to_grid,
)
from slicemri_lite.data._oasis import (
    oasis_cohort,
    oasis_folder,
    oasis_table,
)
from slicemri_lite.data._open import (
    SyntheticConfig,
    cohort_cache_path,
    open_cohort,
    reference_brains,
    render_participant,
    synthetic_cohort,
)
from slicemri_lite.data._splits import (
    split_subjects,
)

__all__ = [
    "AXES",
    "Cohort",
    "CohortCacheError",
    "DIAGNOSES",
    "FORMAT_VERSION",
    "NiftiInputError",
    "PREDICTION_COLUMN",
    "REQUIRED_COLUMNS",
    "RESOLUTIONS",
    "RowView",
    "SPLITS",
    "SyntheticConfig",
    "TASKS",
    "axis_index",
    "cache_table",
    "check_image",
    "check_resolution",
    "clear_cache",
    "cohort_cache_path",
    "data_dir",
    "grid_affine",
    "grid_brain_mask",
    "grid_shape",
    "grid_world_coords",
    "load_cohort",
    "oasis_cohort",
    "oasis_folder",
    "oasis_table",
    "open_cohort",
    "scratch_dir",
    "orientation_codes",
    "prepare_image",
    "prepare_nifti",
    "read_rows",
    "reference_brains",
    "render_participant",
    "resample_to_grid",
    "save_cohort",
    "slice_counts",
    "slice_mass",
    "split_subjects",
    "synthetic_cohort",
    "take_slice",
    "verify_cohort",
    "voxel_size",
    "voxel_to_world",
    "white_matter_level",
    "world_to_voxel",
    "write_csv_atomic",
]
