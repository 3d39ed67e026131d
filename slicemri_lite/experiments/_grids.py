"""The experiment grids as data: which configurations run at which training-set sizes and
seeds, per grid (``GRIDS``) and profile, and the cohort each grid runs on.

``GRIDS["brain-age"]`` (Chapter 4): baselines (training-mean, voxel ridge, ``Conv3DNet``),
the scratch slice encoder, and ResNet-18 and EfficientNet-Lite0 slice encoders with
ImageNet or random initial weights, either frozen (only position, pooling and head learn,
on slice features computed once per cohort) or fine-tuned end to end; each at several
training-set sizes and seeds. ``GRIDS["ablation"]`` (Chapter 5): slicing axes x position
codes, norms and pooling.

The AD grid (``GRIDS["ad"]``, Chapter 6) runs on a synthetic cohort enriched in AD
(``AD_COHORT``): the age-only logistic regression, the voxel ridge, the 3D CNN and frozen
EfficientNet-Lite0 slice models (ImageNet or random weights, position code on or off) on
each slicing axis, so that the axis can be chosen on the validation AUC (``val_auc``);
then the baselines and ImageNet slice models again under the age-matched design
(``age_matched``: the CN younger than the youngest AD participant are left out of
training and scoring).

``grid_runs`` turns a grid into run specs; ``slicemri_lite.experiments._runner`` runs them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from slicemri_lite._core.geometry import AXES as _AXIS_INDEX
from slicemri_lite._core.validation import check_choice
from slicemri_lite.experiments._profiles import TRAINING_LENGTH, Profile, as_profile
from slicemri_lite.experiments._runs import ModelConfig, RunSpec
from slicemri_lite.train._recipes import get_recipe

MEAN, RIDGE, CONV3D = ModelConfig("mean"), ModelConfig("ridge"), ModelConfig("conv3d")
SCRATCH = ModelConfig("sliceset", "scratch", "random", "finetune")
LITE0 = "efficientnet_lite0"
AXES = tuple(_AXIS_INDEX)  # ("sagittal", "coronal", "axial"): slice along X, Y, Z


def _slice_configs(encoder: str, mode: str, inits=("imagenet", "random")) -> tuple:
    return tuple(ModelConfig("sliceset", encoder, init, mode) for init in inits)


ALL = 0  # a training-set size meaning "the whole training split"
MAX_EPOCH_FACTOR = 8  # equal_steps gives a small training set at most 8x the epochs
# early stopping: epochs (of the whole training split) without improvement; the recipe's
PATIENCE = get_recipe("book").patience


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
# The book's cohort at cpu, one for Chapters 4 to 6: 440 participants at 2 mm, 88 / 44 /
# 308 in train / val / test (power to separate models), AD-enriched as case-control
# studies are (65 % of those aged 60+: about 90 AD in test). Its frozen features are
# computed once by make book's data step; at gpu the grids keep their own cohorts.
BOOK_COHORT = {
    "n_subjects": 440,
    "resolution": 2,
    "val": 0.1,
    "test": 0.7,
    "synthetic_config": {"ad_prevalence": 0.65},
}
BRAIN_AGE_COHORTS = {
    "cpu": BOOK_COHORT,
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
    then re-split by participant, ``Cohort.resplit``), and a ``synthetic_config`` that
    replaces the one in ``cohort_options`` at that profile (``BOOK_COHORT``).
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
    # axes on which a chapter reads brain-only features of the profile's encoder
    # (``FeatureSpec(mask="brain")``: Chapter 7's slice models see only the brain)
    brain_only_axes: tuple[str, ...] = ()
    # every seed of a frozen random-init configuration reads its own random encoder (drawn
    # under the run's seed), so that intervals over seeds cover the draw (Chapter 4)
    random_draws: bool = False


# Every grid the command line runs; each chapter's grid is one entry, run by one runner.
GRIDS: dict[str, Grid] = {
    "brain-age": Grid(
        "age",
        BRAIN_AGE,
        "baselines vs slice models, pretrained vs scratch",
        cohorts=BRAIN_AGE_COHORTS,
        random_draws=True,
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


def _axes_positions(encoder: str, init: str, mode: str, positions=("learned", "none")):
    """One encoder on every axis, with and without the paper's position code."""
    return tuple(ModelConfig("sliceset", encoder, init, mode, axis, position)
                 for axis in AXES for position in positions)  # fmt: skip


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
GRIDS["ablation"] = Grid(
    "age",
    ABLATION,
    "slicing axes x position codes, norms and pooling",
    cohorts={"cpu": BOOK_COHORT},
)

# The paper's small CNN on a CPU (it needs 2 mm slices): a grid of its own on the ablation
# grid's cohort, with the same 25 training subjects as its from-scratch cells; mean pooling
# with and without the position code on every axis, 20 epochs of the paper's recipe, one
# seed; about 1.1 s per volume and step on two cores: a kept run (results/), not live.
SMALL_CNN_2MM = {"smoke": {"resolution": 2}, "cpu": BOOK_COHORT}
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
# Chapter 6. AD occurs only from age 60, about 15 % of a default cohort: too few for an
# AUC in a small split. Off cpu the AD grid's cohort is enriched: ages 50 to 90, half of
# those aged 60+ with AD (about 37 % overall), and at least 40 participants even at smoke.
AD_COHORT = {"age_min": 50.0, "ad_prevalence": 0.5}
AD_MIN_SUBJECTS = 40
AGE_ONLY = ModelConfig("age_only")


def _ad_slice_models(inits=("imagenet", "random"), positions=("learned", "none"), axes=AXES):
    """Frozen Lite0 slice models: every axis, initial weights and position code."""
    return tuple(ModelConfig("sliceset", LITE0, init, "frozen", axis, position)
                 for axis in axes for init in inits for position in positions)  # fmt: skip


def _ad_blocks(seeds: tuple[int, ...], *extra: GridBlock) -> tuple:
    """The unmatched grid (baselines, slice models, ``extra``: the 3D CNN) and the age-matched one."""
    matched = (AGE_ONLY, RIDGE, *_ad_slice_models(("imagenet",), ("learned",)))
    return (
        GridBlock((AGE_ONLY, RIDGE, *_ad_slice_models()), (ALL,), seeds),
        *extra,
        GridBlock(matched, (ALL,), seeds, age_matched=True),
    )


AD: dict[str, tuple[GridBlock, ...]] = {
    "smoke": _ad_blocks((0, 1), GridBlock((CONV3D,), (ALL,), (0,), 1, equal_steps=False)),
    # the book's 2 mm cohort; the 3D CNN (about 5 CPU-seconds per 2 mm volume and epoch)
    # is trained by the gpu grid, not live at cpu
    "cpu": _ad_blocks((0, 1, 2)),
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
    cohorts={"cpu": BOOK_COHORT},
    min_subjects=AD_MIN_SUBJECTS,
    brain_only_axes=("sagittal",),
)


def _smoke_sized(blocks: tuple[GridBlock, ...]) -> tuple[GridBlock, ...]:
    """``blocks`` at smoke sizes: every configuration once, on the whole (small) training
    split, one seed, for as long as the profile trains (``TRAINING_LENGTH``)."""
    return tuple(replace(block, sizes=(ALL,), seeds=block.seeds[:1], epochs=None,
                         equal_steps=False, batch_size=None)
                 for block in blocks)  # fmt: skip


# gpu-smoke: each grid's gpu configurations (2 mm, fine-tuning, the small CNN) at smoke
# sizes, on the profile's own small cohort, so that `make gpu-check` runs them in minutes.
for _grid in GRIDS.values():
    if "gpu" in _grid.profiles:
        _grid.profiles["gpu-smoke"] = _smoke_sized(_grid.profiles["gpu"])


def grid_configs(profile: Profile | str, name: str = "brain-age") -> list[ModelConfig]:
    """Every configuration in a profile's grid, in grid order."""
    blocks = GRIDS[check_choice("grid", name, GRIDS)].profiles[as_profile(profile).name]
    return list(dict.fromkeys(c for block in blocks for c in block.configs))


def grid_runs(
    name: str, profile: Profile | str, n_train: int, seed_offset: int = 0
) -> list[RunSpec]:
    """The runs of one grid at one profile for a cohort with ``n_train`` training subjects.

    ``seed_offset`` shifts every seed (the chapters' ``SEED`` parameter).
    """
    grid = GRIDS[check_choice("grid", name, GRIDS)]
    blocks = grid.profiles
    profile = check_choice("profile", as_profile(profile).name, blocks)
    if n_train < 2:
        raise ValueError(f"the cohort needs at least 2 training subjects; it has {n_train}.")
    profile_epochs = TRAINING_LENGTH[profile]["epochs"]
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
                    _draw(grid, config, seed + seed_offset),
                )  # fmt: skip
                for config in block.configs
                for seed in block.seeds
            ]
    return list(dict.fromkeys(specs))  # drop repeats, keep order


def _draw(grid: Grid, config, seed: int) -> int | None:
    """The random encoder's draw for a run (``RunSpec.draw``): its own seed where the grid
    draws one encoder per seed, else ``None`` (one draw for the whole grid)."""
    own = grid.random_draws and config.init == "random" and config.needs_features
    return seed if own else None


def grid_cohort_size(name: str, profile: Profile | str) -> dict:
    """A grid's cohort at a profile: ``n_subjects`` and ``resolution`` (mm), and the
    ``val``/``test`` fractions where the grid sets them (``Grid.cohorts``)."""
    profile = as_profile(profile)
    size = {"n_subjects": profile.n_subjects, "resolution": profile.resolution}
    return size | GRIDS[check_choice("grid", name, GRIDS)].cohorts.get(profile.name, {})


def book_data_grids() -> list[str]:
    """The grids whose cohorts and features ``make book``'s data step prepares."""
    return [name for name, grid in GRIDS.items() if grid.book_data]
