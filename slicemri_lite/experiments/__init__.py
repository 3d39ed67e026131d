"""Experiments: profiles (sizes), what one run trains, grids of runs, the one runner
and results format, and comparisons (intervals, paired bootstrap).

Command line: ``python -m slicemri_lite.experiments {brain-age,ablation,ad,...} --profile --data --out``
(``_cli``). A kept run's tables come back with ``load_run(folder)``.
"""

from __future__ import annotations

from slicemri_lite.experiments._compare import (
    ad_table,
    auc_bootstrap,
    auc_interval,
    cohens_d_interval,
    init_differences,
    paired_bootstrap,
    paired_difference,
    roc_band,
    summarize,
    t_interval,
)
from slicemri_lite.experiments._grids import (
    AD_COHORT,
    ALL,
    GRIDS,
    LITE0,
    Grid,
    GridBlock,
    book_data_grids,
    grid_cohort_size,
    grid_configs,
    grid_runs,
)
from slicemri_lite.experiments._interaction import difference_of_differences
from slicemri_lite.experiments._learning import (
    BASELINES,
    FLAT_RATIO,
    learned_labels,
    learning_check,
)
from slicemri_lite.experiments._load import KeptRun, kept_runs, load_run
from slicemri_lite.experiments._plots import plot_predicted_vs_true, plot_sample_efficiency
from slicemri_lite.experiments._profiles import (
    PROFILES,
    TRAINING_LENGTH,
    Profile,
    as_profile,
    get_profile,
    recipe_for_profile,
)
from slicemri_lite.experiments._runner import (
    COLUMNS,
    Experiment,
    columns,
    describe_runs,
    open_grid_cohort,
    prepare_grid_data,
    run_grid,
    subset_rows,
)
from slicemri_lite.experiments._runs import (
    MODELS,
    NETWORKS,
    SLICE_OPTIONS,
    ModelConfig,
    RunResult,
    RunSpec,
    age_matched_rows,
    recipe_for,
    run_config,
    run_label,
    slice_leakage,
    slice_pixels,
)
from slicemri_lite.experiments._tables import (
    CONFIG_KEYS,
    describe_difference,
    describe_flat_runs,
    flat_runs,
    run_labels,
)

__all__ = [
    "BASELINES",
    "FLAT_RATIO",
    "difference_of_differences",
    "learned_labels",
    "learning_check",
    "AD_COHORT",
    "ALL",
    "COLUMNS",
    "CONFIG_KEYS",
    "Experiment",
    "GRIDS",
    "Grid",
    "GridBlock",
    "KeptRun",
    "LITE0",
    "MODELS",
    "ModelConfig",
    "NETWORKS",
    "PROFILES",
    "Profile",
    "RunResult",
    "RunSpec",
    "SLICE_OPTIONS",
    "TRAINING_LENGTH",
    "ad_table",
    "age_matched_rows",
    "auc_bootstrap",
    "auc_interval",
    "book_data_grids",
    "cohens_d_interval",
    "columns",
    "describe_difference",
    "describe_flat_runs",
    "describe_runs",
    "flat_runs",
    "as_profile",
    "get_profile",
    "grid_cohort_size",
    "grid_configs",
    "grid_runs",
    "init_differences",
    "kept_runs",
    "load_run",
    "open_grid_cohort",
    "paired_bootstrap",
    "paired_difference",
    "plot_predicted_vs_true",
    "plot_sample_efficiency",
    "prepare_grid_data",
    "recipe_for",
    "recipe_for_profile",
    "roc_band",
    "run_config",
    "run_grid",
    "run_label",
    "run_labels",
    "slice_leakage",
    "slice_pixels",
    "subset_rows",
    "summarize",
    "t_interval",
]
