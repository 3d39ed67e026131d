"""The experiment grids: brain age (Chapter 4) and Alzheimer's disease (Chapter 6).

Run them from the command line::

    python -m slicemri_lite.experiments brain-age --profile cpu --data synthetic --out results/cpu
    python -m slicemri_lite.experiments ad --profile cpu --out results/cpu_ad

It writes into ``--out``: ``results.csv`` (one row per run, columns ``COLUMNS``),
``predictions.csv`` (the test-set prediction of every run) and ``provenance.json``
(command, machine, versions, wall time). The tables are rewritten atomically after
every run, so an interrupted run leaves every finished row readable.

Under ``torchrun --nproc_per_node=N -m slicemri_lite.experiments ...`` every network trains
with DistributedDataParallel on N processes (``slicemri_lite.distributed``); rank 0 alone
writes the tables, and ``provenance.json`` records the world size and backend.
``slicemri_lite.compare`` turns the table into means with 95% intervals over seeds.

The grid (``GRIDS``): baselines (training-mean, voxel ridge, ``Conv3DNet``), the
scratch slice encoder, and ResNet-18 and EfficientNet-Lite0 slice encoders with ImageNet
or random initial weights, either frozen (only position, pooling and head learn, on
slice features computed once per cohort) or fine-tuned end to end; each at several
training-set sizes and seeds. A run whose ImageNet weights can't be had offline is
recorded as ``"skipped: weights unavailable offline"``, never run with other weights.

The AD grid (``GRIDS["ad"]``) runs on a synthetic cohort enriched in AD
(``AD_COHORT``): the age-only logistic regression, the voxel ridge, the 3D CNN and frozen
EfficientNet-Lite0 slice models (ImageNet or random weights, position code on or off) on
each slicing axis, so that the axis can be chosen on the validation AUC (``val_auc``);
then the baselines and ImageNet slice models again under the age-matched design
(``age_matched``: the CN younger than the youngest AD participant are left out of
training and scoring). Its table adds ``age_matched`` after the run keys and ``val_auc``
after the test metrics (``columns("ad")``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from slicemri_lite._core.atomic import write_csv_atomic, write_json_atomic
from slicemri_lite._core.env import package_versions
from slicemri_lite._core.geometry import voxel_size
from slicemri_lite._core.validation import check_choice
from slicemri_lite.data._cohort import Cohort
from slicemri_lite.data._open import open_cohort
from slicemri_lite.experiments._compare import CONFIG_KEYS, ad_table, summarize
from slicemri_lite.experiments._profiles import Profile, get_profile
from slicemri_lite.experiments._runs import (
    NETWORKS,
    ModelConfig,
    RunSpec,
    age_matched_rows,
    recipe_for,
    run_config,
)
from slicemri_lite.models._encoders import OfflineWeightsError
from slicemri_lite.train import _distributed as distributed
from slicemri_lite.train._features import slice_features
from slicemri_lite.train._metrics import AD_METRICS, run_metrics

__all__ = [
    "COLUMNS",
    "GRIDS",
    "ALL",
    "AD_COHORT",
    "GridBlock",
    "Experiment",
    "ModelConfig",
    "RunSpec",
    "brain_age_grid",
    "columns",
    "describe_runs",
    "grid_runs",
    "prepare_grid_data",
    "run_grid",
    "grid_configs",
    "grid_cohort_size",
    "book_data_grids",
    "main",
    "subset_rows",
]

RUN_KEYS = [*CONFIG_KEYS, "train_size", "seed"]
METRICS = {"age": ["mae", "rmse", "r"], "ad": list(AD_METRICS)}
# per task: design keys after the run keys, and validation scores after the test metrics
TASK_KEYS = {"age": [], "ad": ["age_matched"]}
VALIDATION = {"age": [], "ad": ["val_auc"]}
DETAILS = [
    "status",
    "epochs",
    "best_epoch",
    "batch_size",
    "profile",
    "data",
    "device",
    "seconds",
    "versions",
]
COLUMNS = [*RUN_KEYS, *METRICS["age"], *DETAILS]  # the brain-age grid's table
PREDICTION_COLUMNS = ["participant_id", "age", "diagnosis", "predicted"]


def columns(task: str = "age") -> list[str]:
    """The results table's columns for a task: run keys (and the task's design keys), the
    task's test metrics (and validation scores), details."""
    check_choice("task", task, METRICS)
    return [*RUN_KEYS, *TASK_KEYS[task], *METRICS[task], *VALIDATION[task], *DETAILS]


MEAN, RIDGE, CONV3D = ModelConfig("mean"), ModelConfig("ridge"), ModelConfig("conv3d")
SCRATCH = ModelConfig("sliceset", "scratch", "random", "finetune")
LITE0 = "efficientnet_lite0"


def _slice_configs(encoder: str, mode: str, inits=("imagenet", "random")) -> tuple:
    return tuple(ModelConfig("sliceset", encoder, init, mode) for init in inits)


ALL = 0  # a training-set size meaning "the whole training split"
MAX_EPOCH_FACTOR = 8  # equal_steps gives a small training set at most 8x the epochs
PATIENCE = 5  # early stopping: epochs (of the whole training split) without improvement


@dataclass(frozen=True)
class GridBlock:
    """Configurations run at every ``sizes`` x ``seeds`` combination.

    ``ALL`` is the whole training split; sizes above it are capped to it, so every
    configuration runs even on a small cohort. ``epochs`` is the most epochs a network
    trains for (``None``: the profile's). With ``equal_steps`` that number holds for the
    whole training split, and a smaller one gets proportionally more epochs (at most
    ``MAX_EPOCH_FACTOR`` times as many), so that every size gets about the same number of
    optimiser steps: otherwise a small training set would also mean a shorter training.
    Early stopping's patience (``PATIENCE`` epochs of the whole split) scales the same way.
    ``batch_size`` replaces the profile's (``None``: the profile's). ``age_matched`` runs
    the block under the age-matched design (AD grid; see ``runs.age_matched_rows``).
    """

    configs: tuple[ModelConfig, ...]
    sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    epochs: int | None = None
    equal_steps: bool = True
    batch_size: int | None = None
    age_matched: bool = False


def _frozen(*encoders: str) -> tuple[ModelConfig, ...]:
    return tuple(c for e in encoders for c in _slice_configs(e, "frozen"))


def _probes(*encoders: str) -> tuple[ModelConfig, ...]:
    """Linear probes, ImageNet and random: ridge on frozen features averaged over slices,
    and on every slice's features side by side."""
    return tuple(ModelConfig("probe", e, init, "frozen", aggregation=how) for e in encoders
                 for how in ("mean", "concat") for init in ("imagenet", "random"))  # fmt: skip


def _finetune(*encoders: str) -> tuple[ModelConfig, ...]:
    return tuple(c for e in encoders for c in _slice_configs(e, "finetune"))


BASELINES = (MEAN, RIDGE)
BRAIN_AGE: dict[str, tuple[GridBlock, ...]] = {
    # CI, seconds per run: every code path once, two seeds so that intervals are computed.
    "smoke": (
        GridBlock((*BASELINES, *_probes(LITE0), *_frozen("resnet18", LITE0)), (8, ALL), (0, 1)),
        GridBlock((CONV3D, *_finetune(LITE0)), (8,), (0,), 1, equal_steps=False),
    ),
    # Two CPU cores, minutes, on 2 mm slices (features computed once, in make book's data
    # step): baselines, linear probes and frozen Lite0 (ImageNet vs random) at every size
    # and seed. Fine-tuning at 2 mm is too slow for a live chapter on a CPU: the fine-tuned
    # comparison is the "brain-age-finetune" grid, run from the command line.
    "cpu": (GridBlock((*BASELINES, *_probes(LITE0), *_frozen(LITE0)), (25, 50, ALL), (0, 1, 2)),),
    # Paper scale on a GPU: every configuration at every size, five seeds.
    "gpu": (
        GridBlock(
            (
                *BASELINES,
                *_probes("resnet18", LITE0),
                CONV3D,
                SCRATCH,
                *_frozen("resnet18", LITE0),
                *_finetune("resnet18", LITE0),
            ),
            (25, 50, 100, 200, ALL),
            (0, 1, 2, 3, 4),
        ),
    ),
}
# The cohorts behind the brain-age grids: a test split of 300+ participants at cpu (a
# small training set, a large test set: power to separate models, see Chapter 4).
BRAIN_AGE_COHORTS = {
    "cpu": {"n_subjects": 440, "resolution": 2, "val": 0.1, "test": 0.7},
    "gpu": {"n_subjects": 800, "resolution": 2, "val": 0.15, "test": 0.4},
}
# The paper's comparison on a CPU: the same encoder fine-tuned end to end from ImageNet
# weights and from random weights, with the same optimiser steps, against the 3D CNN;
# 4 mm and a small training set so that it runs in hours on two cores (the command line
# keeps it in results/). The paper's small CNN needs 2 mm slices: the gpu grid, and
# Chapter 5's kept ablation-small-cnn run.
BRAIN_AGE_FINETUNE: dict[str, tuple[GridBlock, ...]] = {
    "smoke": (GridBlock((*BASELINES, CONV3D, *_finetune(LITE0)), (8,), (0, 1), 1, False),),
    "cpu": (GridBlock((*BASELINES, CONV3D, *_finetune(LITE0)), (25,), (0, 1, 2), 20, False, 4),),
    "gpu": (GridBlock((*BASELINES, CONV3D, SCRATCH, *_finetune(LITE0)), (25, 50), (0, 1, 2)),),
}
FINETUNE_COHORTS = {
    "cpu": {"n_subjects": 440, "resolution": 4, "val": 0.1, "test": 0.7},
    "gpu": {"n_subjects": 800, "resolution": 2, "val": 0.15, "test": 0.4},
}


@dataclass(frozen=True)
class Grid:
    """A named experiment: what it predicts, and its blocks per profile (smoke, cpu, gpu).

    ``cohort_options`` go to ``open_cohort`` for the synthetic cohort (e.g. AD enrichment);
    ``cohorts`` gives, per profile, the cohort's size and splits where they differ from the
    profile's: ``n_subjects``, ``resolution``, and ``val``/``test`` fractions (the cohort is
    then re-split by participant, ``Cohort.resplit``).
    A synthetic cohort has at least ``min_subjects`` participants whatever the profile.
    ``book_data=False``: no chapter runs the grid live (its results are kept in
    ``results/``), so ``make book``'s data step does not build its cohort.
    """

    task: str
    profiles: dict[str, tuple[GridBlock, ...]]
    help: str = ""
    cohort_options: dict = field(default_factory=dict)
    cohorts: dict[str, dict] = field(default_factory=dict)
    min_subjects: int = 0
    book_data: bool = True  # make book's data step builds its cohort and features


# Every grid the command line runs; each chapter's grid is one entry, run by one runner.
GRIDS: dict[str, Grid] = {
    "brain-age": Grid(
        "age",
        BRAIN_AGE,
        "baselines vs slice models, pretrained vs scratch",
        cohorts=BRAIN_AGE_COHORTS,
    ),  # fmt: skip
    "brain-age-finetune": Grid(
        "age",
        BRAIN_AGE_FINETUNE,
        "ImageNet vs random init, both fine-tuned",
        cohorts=FINETUNE_COHORTS,
    ),  # fmt: skip
}

# ----------------------------------------------------------------------- the ablation grid
# Chapter 5: slicing axis x position code (on: the paper's learned code and joint
# LayerNorm; off: neither) for the paper's small CNN, random-init encoders and ImageNet
# encoders, against the 3D CNN (the paper's Table 1 design, ``src/shell/isbi2023``); then
# the book's variants on the sagittal axis: other position codes and norms, and pooling.
ABLATION_AXES = ("sagittal", "coronal", "axial")


def _axes_positions(encoder: str, init: str, mode: str, positions=("learned", "none")):
    """One encoder on every axis, with and without the paper's position code."""
    return tuple(ModelConfig("sliceset", encoder, init, mode, axis, position)
                 for axis in ABLATION_AXES for position in positions)  # fmt: skip


def _variants(encoder: str, init: str = "imagenet", mode: str = "frozen") -> tuple:
    """Beyond the paper, sagittal: position kinds and norms, then max and attention pooling."""
    slice_model = ("sliceset", encoder, init, mode, "sagittal")
    return (
        ModelConfig(*slice_model, "learned", "slice"),  # learned code, LayerNorm per slice
        ModelConfig(*slice_model, "sinusoidal", "joint"),  # fixed code, the joint norm
        ModelConfig(*slice_model, aggregation="max"),
        ModelConfig(*slice_model, aggregation="attention"),
    )


PAPER_CNN = SCRATCH  # the paper's small CNN (its encoder1; it needs 2 mm slices)
ABLATION: dict[str, tuple[GridBlock, ...]] = {
    # CI: every path once, tiny: frozen Lite0 ImageNet on every axis with and without
    # position (random weights on the sagittal axis), two seeds for intervals; the variants once; one epoch of the
    # fine-tuned random ResNet-18 (the paper's no-pretraining row) and of the 3D CNN. The
    # small CNN needs the 2 mm grid: the gpu profile, and the ablation-small-cnn grid.
    "smoke": (
        GridBlock(
            (
                *_axes_positions(LITE0, "imagenet", "frozen"),
                *_axes_positions(LITE0, "random", "frozen")[:2],  # sagittal only
            ),
            (ALL,),
            (0, 1),
        ),
        GridBlock(
            (*_variants(LITE0), *_axes_positions("resnet18", "imagenet", "frozen")[:1]),
            (ALL,),
            (0,),
        ),
        GridBlock(
            (*_axes_positions("resnet18", "random", "finetune", ("none",))[:1], CONV3D),
            (8,),
            (0,),
            1,
            equal_steps=False,
        ),
    ),
    # Two CPU cores: frozen features at 4 mm, three seeds, every axis x position for Lite0
    # ImageNet and random and ResNet-18 ImageNet (skipped offline), the variants; then the
    # from-scratch cells (random ResNet-18 fine-tuned without position, the 3D CNN) on 25
    # subjects for 20 epochs (the paper's recipe: a network trained end to end at lr 1e-4
    # needs them, see brain-age-finetune), one seed: a kept run (results/), not live.
    "cpu": (
        GridBlock(
            (
                *_axes_positions(LITE0, "imagenet", "frozen"),
                *_axes_positions(LITE0, "random", "frozen"),
                *_axes_positions("resnet18", "imagenet", "frozen"),
                *_variants(LITE0),
            ),
            (ALL,),
            (0, 1, 2),
        ),
        GridBlock(
            (*_axes_positions("resnet18", "random", "finetune", ("none",)), CONV3D),
            (25,),
            (0,),
            20,
            equal_steps=False,
            batch_size=2,
        ),
    ),
    # The paper's design at its scale (2 mm) on a GPU: the small CNN with and without
    # position, ResNet-18 from scratch without and from ImageNet with position, fine-tuned,
    # on every axis; frozen encoders and the variants; the 3D CNN; five seeds.
    "gpu": (
        GridBlock(
            (
                *_axes_positions(PAPER_CNN.encoder, PAPER_CNN.init, "finetune"),
                *_axes_positions("resnet18", "random", "finetune", ("none",)),
                *_axes_positions("resnet18", "imagenet", "finetune", ("learned",)),
                *_axes_positions(LITE0, "imagenet", "frozen"),
                *_axes_positions(LITE0, "random", "frozen"),
                *_variants("resnet18", mode="finetune"),
                CONV3D,
            ),
            (ALL,),
            (0, 1, 2, 3, 4),
        ),
    ),
}
GRIDS["ablation"] = Grid("age", ABLATION, "slicing axes x position codes, norms and pooling")

# The paper's small CNN on a CPU. It needs 2 mm slices (its five pooling stages would leave
# less than one voxel of a 4 mm slice), so it is a grid of its own on the 2 mm version of
# the ablation cohort: the same 200 participants and splits, and the same 25 training
# subjects, as the ablation grid's from-scratch cells; mean pooling with and without the
# paper's position code on every axis, 20 epochs of the paper's recipe, one seed. About
# 1.1 s per volume and step on two cores: a kept run (results/), not live.
SMALL_CNN_2MM = {"smoke": {"resolution": 2}, "cpu": {"resolution": 2}}
ABLATION_SMALL_CNN: dict[str, tuple[GridBlock, ...]] = {
    "smoke": (
        GridBlock(
            _axes_positions(PAPER_CNN.encoder, "random", "finetune")[:1],
            (4,),
            (0,),
            1,
            equal_steps=False,
            batch_size=2,
        ),
    ),
    "cpu": (
        GridBlock(
            _axes_positions(PAPER_CNN.encoder, "random", "finetune"),
            (25,),
            (0,),
            20,
            equal_steps=False,
            batch_size=2,
        ),
    ),
    "gpu": (  # the same cells as the gpu ablation grid, on its own table
        GridBlock(
            _axes_positions(PAPER_CNN.encoder, "random", "finetune"), (ALL,), (0, 1, 2, 3, 4)
        ),
    ),
}
GRIDS["ablation-small-cnn"] = Grid(
    "age",
    ABLATION_SMALL_CNN,
    "the paper's small CNN on every axis, position on/off, at 2 mm",
    cohorts=SMALL_CNN_2MM,
    book_data=False,
)


# ----------------------------------------------------------------------------- the AD grid
# Chapter 6. AD occurs only from age 60 in the synthetic cohort, about 15 % of a default
# cohort: too few for a threshold or an AUC in a small validation or test split. The AD
# grid's cohort is enriched: ages 50 to 90, half of the participants aged 60 or more
# have AD (about 37 % AD overall), and at least 40 participants even at smoke.
AD_COHORT = {"age_min": 50.0, "ad_prevalence": 0.5}
AD_MIN_SUBJECTS = 40
AGE_ONLY = ModelConfig("age_only")
AXES = ("sagittal", "coronal", "axial")


def _ad_slice_models(inits=("imagenet", "random"), positions=("learned", "none"), axes=AXES):
    """Frozen Lite0 slice models: every axis, initial weights and position code."""
    return tuple(ModelConfig("sliceset", LITE0, init, "frozen", axis, position)
                 for axis in axes for init in inits for position in positions)  # fmt: skip


def _ad_blocks(seeds: tuple[int, ...], conv3d: GridBlock, *extra: GridBlock) -> tuple:
    """The unmatched grid (baselines, 3D CNN, slice models) and the age-matched one."""
    matched = (AGE_ONLY, RIDGE, *_ad_slice_models(("imagenet",), ("learned",)))
    return (
        GridBlock((AGE_ONLY, RIDGE, *_ad_slice_models()), (ALL,), seeds),
        conv3d,
        *extra,
        GridBlock(matched, (ALL,), seeds, age_matched=True),
    )


AD: dict[str, tuple[GridBlock, ...]] = {
    "smoke": _ad_blocks((0, 1), GridBlock((CONV3D,), (ALL,), (0,), 1, equal_steps=False)),
    # the 3D CNN costs about 0.6 CPU-seconds per volume and epoch at 4 mm: on every
    # training subject, one seed and two epochs (a first look), two volumes per step
    "cpu": _ad_blocks((0, 1, 2), GridBlock((CONV3D,), (ALL,), (0,), 2, batch_size=2)),
    "gpu": _ad_blocks(
        (0, 1, 2, 3, 4),
        GridBlock((CONV3D,), (ALL,), (0, 1, 2, 3, 4)),
        GridBlock(
            tuple(
                ModelConfig("sliceset", LITE0, init, "finetune", axis)
                for axis in AXES
                for init in ("imagenet", "random")
            ),
            (ALL,),
            (0, 1, 2, 3, 4),
        ),  # fmt: skip
    ),
}
GRIDS["ad"] = Grid(
    "ad",
    AD,
    "AD vs CN: age-only, ridge, 3D CNN, slice models per axis; unmatched and age-matched",
    cohort_options={"synthetic_config": AD_COHORT},
    min_subjects=AD_MIN_SUBJECTS,
)


def grid_configs(profile: str, name: str = "brain-age") -> list[ModelConfig]:
    """Every configuration in a profile's grid, in grid order."""
    blocks = GRIDS[check_choice("grid", name, GRIDS)].profiles[profile]
    return list(dict.fromkeys(c for block in blocks for c in block.configs))


def brain_age_grid(profile: str, n_train: int, seed_offset: int = 0) -> list[RunSpec]:
    """The runs of the brain-age grid (Chapter 4); see ``grid_runs``."""
    return grid_runs("brain-age", profile, n_train, seed_offset)


def grid_runs(name: str, profile: str, n_train: int, seed_offset: int = 0) -> list[RunSpec]:
    """The runs of one grid at one profile for a cohort with ``n_train`` training subjects.

    ``seed_offset`` shifts every seed (the chapters' ``SEED`` parameter).
    """
    blocks = GRIDS[check_choice("grid", name, GRIDS)].profiles
    check_choice("profile", profile, blocks)
    if n_train < 2:
        raise ValueError(f"the cohort needs at least 2 training subjects; it has {n_train}.")
    profile_epochs = get_profile(profile).epochs
    specs = []
    for block in blocks[profile]:
        sizes = sorted({n_train if s == ALL else min(s, n_train) for s in block.sizes})
        base = block.epochs or profile_epochs
        for size in sizes:
            factor = min(MAX_EPOCH_FACTOR, n_train / size) if block.equal_steps else 1
            epochs, patience = math.ceil(base * factor), math.ceil(PATIENCE * factor)
            specs += [
                RunSpec(
                    config,
                    size,
                    seed + seed_offset,
                    epochs,
                    block.batch_size,
                    patience,
                    block.age_matched,
                )  # fmt: skip
                for config in block.configs
                for seed in block.seeds
            ]
    return list(dict.fromkeys(specs))  # drop repeats, keep order


def _architecture(config: ModelConfig) -> str:
    """What a configuration trains, in words."""
    if config.model == "mean":
        return "the training mean"
    if config.model == "ridge":
        return "ridge on ~8 mm voxel blocks"
    if config.model == "probe" and config.aggregation == "concat":
        return f"ridge on every slice's frozen {config.encoder} features, side by side"
    if config.model == "probe":
        return f"ridge on slice-averaged frozen {config.encoder} features"
    if config.model == "conv3d":
        return "3D CNN (the paper's)"
    trains = "head on frozen features" if config.mode == "frozen" else "every weight"
    return f"the paper's slice model, {config.encoder} encoder; trains {trains}"


def describe_runs(specs: list[RunSpec], profile: Profile, cohort: Cohort) -> pd.DataFrame:
    """What each configuration of a grid trains: one row per configuration and size.

    Columns: ``run`` (label), ``architecture``, ``recipe`` (``slicemri_lite.recipes``;
    ``-`` for models fitted in closed form), ``grid`` (mm), ``train_size``, ``seeds``,
    ``epochs`` (the most; early stopping may end sooner) and ``steps`` (optimiser steps at
    most: epochs x batches per epoch).
    """
    mm = float(voxel_size(cohort.affine).mean())
    rows = []
    for spec in specs:
        network = spec.config.model in NETWORKS
        settings = spec.settings(profile)
        epochs = settings.epochs if network else 0
        steps = epochs * math.ceil(spec.train_size / settings.batch_size) if network else 0
        rows.append({"run": spec.config.label, "architecture": _architecture(spec.config),
                     "recipe": recipe_for(spec.config, profile).name if network else "-",
                     "grid": f"{mm:g} mm", "train_size": spec.train_size, "seed": spec.seed,
                     "epochs": epochs, "steps": steps})  # fmt: skip
    table = pd.DataFrame(rows)
    keys = ["run", "architecture", "recipe", "grid", "train_size", "epochs", "steps"]
    return table.groupby(keys, sort=False)["seed"].nunique().rename("seeds").reset_index()


def subset_rows(cohort: Cohort, size: int, seed: int, eligible=None) -> np.ndarray:
    """Row positions of ``size`` training subjects (chosen by ``seed``) and every val/test row.

    For one seed the subsets are nested: the 25 subjects are among the 50. ``eligible``
    (row positions, e.g. ``runs.age_matched_rows``) restricts every split to those rows.
    """
    splits = [cohort.indices(s) for s in ("train", "val", "test")]
    if eligible is not None:
        splits = [np.intersect1d(rows, eligible) for rows in splits]
    train = splits[0]
    if not 1 <= size <= len(train):
        raise ValueError(f"'size' must be between 1 and {len(train)}; {size} was provided.")
    chosen = np.random.default_rng(seed).permutation(train)[:size]
    return np.sort(np.concatenate([chosen, *splits[1:]]))


def _release_memory() -> None:
    """Hand freed heap memory back to the OS between runs (glibc only; elsewhere a no-op).

    Training allocates and frees large activation buffers; without this the process's
    resident memory ratchets up over a long grid (Binder allows 2 GB).
    """
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    libc = ctypes.util.find_library("c")
    if libc and hasattr(ctypes.CDLL(libc), "malloc_trim"):
        ctypes.CDLL(libc).malloc_trim(0)


def _versions() -> str:
    return "; ".join(f"{name} {v}" for name, v in package_versions().items())


class Experiment:
    """Runs grid cells on one cohort and keeps every result.

    Args:
        cohort: the cohort with train/val/test splits.
        profile: sizes (epochs, batch size, learning rate, device).
        data: how the data is named in the table ("synthetic", "oasis", a path).
        out: folder for ``results.csv`` and ``predictions.csv``; ``None`` keeps them in memory.
        progress: print one line per run.
        seed: seeds the random-init encoders whose frozen features are shared by all runs.
        task: ``"age"`` or ``"ad"``: what every run predicts, and its metrics
            (``METRICS[task]``; AD metrics take their threshold from the val split).

    Frozen runs read the cohort's slice features from ``slicemri_lite.features``: the
    encoder runs once per (cohort, encoder, weights, axis), on the first run that needs it
    (its ``seconds`` include that pass), and never again, in this experiment or a later one.
    """

    def __init__(
        self,
        cohort: Cohort,
        profile: Profile,
        data: str = "synthetic",
        out: str | os.PathLike | None = None,
        progress: bool = True,
        seed: int = 0,
        task: str = "age",
    ):
        self.task = check_choice("task", task, METRICS)
        self.cohort, self.profile, self.data = cohort, profile, str(data)
        self.out = None if out is None else Path(out)
        self.progress = progress
        self.rows: list[dict] = []
        self.seed = seed
        self.prediction_frames: list[pd.DataFrame] = []
        self._context = {
            "profile": profile.name,
            "data": self.data,
            "device": profile.device,
            "versions": _versions(),
        }

    @property
    def results(self) -> pd.DataFrame:
        """One row per run, columns ``columns(task)``."""
        return pd.DataFrame(self.rows, columns=columns(self.task))

    @property
    def predictions(self) -> pd.DataFrame:
        """Test-set predictions: run keys, ``participant_id``, ``age``, ``diagnosis``,
        ``predicted`` (years, or AD probability / score)."""
        if not self.prediction_frames:
            return pd.DataFrame(columns=[*RUN_KEYS, *TASK_KEYS[self.task], *PREDICTION_COLUMNS])
        return pd.concat(self.prediction_frames, ignore_index=True)

    def run(self, specs: list[RunSpec]) -> pd.DataFrame:
        """Run ``specs`` in order; returns their rows (all rows stay in ``results``)."""
        start = len(self.rows)
        metric = METRICS[self.task][0]
        for i, spec in enumerate(specs, 1):
            row = self._run_one(spec)
            if self.progress and distributed.is_main_process():
                print(
                    f"[{i}/{len(specs)}] {spec.config.label:<36} n={spec.train_size:<4} "
                    f"seed={spec.seed}  {metric}={row[metric]:.2f}  {row['status']}  "
                    f"({row['seconds']:.1f}s)",
                    flush=True,
                )
        return self.results.iloc[start:].reset_index(drop=True)

    def _design(self, spec: RunSpec) -> tuple[np.ndarray, dict]:
        """The run's rows of the cohort and its identifying columns.

        An age-matched run trains on the matched part of the training split (at most
        ``train_size`` subjects; its ``train_size`` column says how many).
        """
        key = spec.key()
        if "age_matched" not in TASK_KEYS[self.task]:
            if spec.age_matched:
                raise ValueError(f"age matching applies to task 'ad', not {self.task!r}.")
            return subset_rows(self.cohort, spec.train_size, spec.seed), key
        eligible = age_matched_rows(self.cohort) if spec.age_matched else None
        if eligible is not None:
            n_matched = len(np.intersect1d(self.cohort.indices("train"), eligible))
            key["train_size"] = min(spec.train_size, n_matched)
        key["age_matched"] = spec.age_matched
        return subset_rows(self.cohort, key["train_size"], spec.seed, eligible), key

    def _run_one(self, spec: RunSpec) -> dict:
        rows, key = self._design(spec)
        cohort = self.cohort.subset(rows)
        tic = time.perf_counter()
        settings = spec.settings(self.profile)
        network = spec.config.model in NETWORKS
        scores = [*METRICS[self.task], *VALIDATION[self.task]]
        row = {**key, **dict.fromkeys(scores, float("nan"))}
        row.update(epochs=settings.epochs if network else 0, best_epoch=float("nan"))
        row["batch_size"] = settings.batch_size if network else 0
        row.update(self._context)
        try:
            features = self._features(spec.config, rows)
            result = run_config(spec.config, cohort, settings, spec.seed, spec.patience,
                                features, self.task)  # fmt: skip
        except OfflineWeightsError:
            row["status"] = "skipped: weights unavailable offline"
        else:
            targets = [cohort.targets(self.task, cohort.indices(s)) for s in ("val", "test")]
            found = run_metrics(self.task, targets[0], result.val, targets[1], result.test)
            row.update({k: found[k] for k in scores}, status="ok")
            row["best_epoch"] = result.best_epoch
            self._keep_predictions(key, cohort.table.iloc[cohort.indices("test")], result.test)
        row["seconds"] = time.perf_counter() - tic
        _release_memory()
        self.rows.append(row)
        self._save()
        return row

    def _features(self, config: ModelConfig, rows: np.ndarray):
        """The frozen features of ``rows`` for a frozen config (``None`` otherwise)."""
        if not config.needs_features:
            return None
        spec = config.feature_spec(self.seed)
        features = slice_features(self.cohort, spec, batch_size=self.profile.batch_size,
                                  device=self.profile.device)  # fmt: skip
        return features.subset(rows)

    def _keep_predictions(self, key: dict, test: pd.DataFrame, predicted) -> None:
        columns = {
            "participant_id": test["participant_id"].to_numpy(),
            "age": test["age"].to_numpy(),
            "diagnosis": test["diagnosis"].to_numpy(),
            "predicted": np.asarray(predicted, dtype=float),
        }
        self.prediction_frames.append(pd.DataFrame({**key, **columns}))

    def _save(self) -> None:
        if self.out is not None and distributed.is_main_process():
            write_csv_atomic(self.results, self.out / "results.csv")
            write_csv_atomic(self.predictions, self.out / "predictions.csv")


# ----------------------------------------------------------------------------- command line


def grid_cohort_size(name: str, profile: Profile | str) -> dict:
    """A grid's cohort at a profile: ``n_subjects`` and ``resolution`` (mm), and the
    ``val``/``test`` fractions where the grid sets them (``Grid.cohorts``)."""
    profile = get_profile(profile) if isinstance(profile, str) else profile
    size = {"n_subjects": profile.n_subjects, "resolution": profile.resolution}
    return size | GRIDS[check_choice("grid", name, GRIDS)].cohorts.get(profile.name, {})


def book_data_grids() -> list[str]:
    """The grids whose cohorts and features ``make book``'s data step prepares."""
    return [name for name, grid in GRIDS.items() if grid.book_data]


def open_grid_cohort(name: str, profile: Profile, data: str = "synthetic", seed: int = 0):
    """The cohort a grid runs on at a profile (``Grid.cohort_options`` adds, e.g., AD
    enrichment to the profile's size and grid)."""
    grid = GRIDS[check_choice("grid", name, GRIDS)]
    size = grid_cohort_size(name, profile)
    if data == "synthetic":
        size["n_subjects"] = max(size["n_subjects"], grid.min_subjects)
    splits = {k: size.pop(k) for k in ("val", "test") if k in size}
    options = grid.cohort_options if data == "synthetic" else {}
    cohort = open_cohort(data, seed=seed, progress=False, **size, **options)
    return cohort.resplit(**splits, seed=seed) if splits else cohort


def prepare_grid_data(
    name: str, profile: str = "cpu", data: str = "synthetic", seed: int = 0
) -> list[str]:
    """Build a grid's cohort and every frozen feature array its runs will read.

    ``make book``'s data step calls this for every grid, so the chapters start with warm
    caches. Returns one line per feature array (ready, or why it was skipped).
    """
    prof = get_profile(profile)
    cohort = open_grid_cohort(name, prof, data, seed)
    specs = {c.feature_spec(seed) for c in grid_configs(prof.name, name) if c.needs_features}
    done = []
    for spec in sorted(specs, key=lambda s: s.name):
        try:
            slice_features(cohort, spec, batch_size=prof.batch_size, device=prof.device)
            done.append(f"{name}: {spec.name} ready")
        except OfflineWeightsError as error:
            done.append(f"{name}: {spec.name} skipped ({str(error).splitlines()[0]})")
    return done


def run_grid(
    name: str = "brain-age",
    profile: str = "smoke",
    data: str = "synthetic",
    out=None,
    seed: int = 0,
    progress: bool = True,
) -> Experiment:
    """Open the grid's cohort for ``profile`` and run the whole grid; returns the ``Experiment``."""
    prof = get_profile(profile)
    cohort = open_grid_cohort(name, prof, data, seed)
    runs = grid_runs(name, prof.name, len(cohort.indices("train")), seed_offset=seed)
    experiment = Experiment(cohort, prof, data, out, progress, seed, GRIDS[name].task)
    experiment.run(runs)
    return experiment


def _write_provenance(out: Path, argv: list[str], started: float, finished: bool) -> None:
    """``provenance.json``: how the table in ``out`` was made (written atomically)."""
    import platform
    from datetime import datetime

    record = {
        "command": "python -m slicemri_lite.experiments " + " ".join(argv),
        "status": "complete" if finished else "running",
        "started_utc": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "wall_seconds": round(time.time() - started, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads "
        f"{torch.get_num_threads()}, cuda {'yes' if torch.cuda.is_available() else 'no'}",
        "versions": package_versions(),
        **distributed.current().as_dict(),  # world_size, backend
    }
    if distributed.is_main_process():
        write_json_atomic(out / "provenance.json", record)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="python -m slicemri_lite.experiments")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, grid in GRIDS.items():
        command = sub.add_parser(name, help=grid.help)
        command.add_argument("--profile", default="auto", choices=["auto", *grid.profiles])
        command.add_argument("--data", default="synthetic",
                             help='"synthetic", "oasis" or a cohort path')  # fmt: skip
        command.add_argument("--out", required=True, help="folder for the results (created)")
        command.add_argument("--seed", type=int, default=0, help="cohort seed; offsets run seeds")
    args = parser.parse_args(argv)
    out, started = Path(args.out), time.time()
    distributed.set_up(torch.device(get_profile(args.profile).device))  # under torchrun
    _write_provenance(out, argv, started, finished=False)
    experiment = run_grid(args.command, args.profile, args.data, out, args.seed)
    _write_provenance(out, argv, started, finished=True)
    distributed.shut_down()
    if experiment.task == "ad":  # AUC with its interval over participants and seeds
        summary = ad_table(experiment.results, experiment.predictions)
    else:
        summary = summarize(experiment.results, METRICS[experiment.task][0])
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"wrote results.csv, predictions.csv and provenance.json to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
