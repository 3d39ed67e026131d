"""One run of an experiment grid: what is trained (``ModelConfig``), and training it.

``run_config`` trains one configuration on a cohort's train split (early stopping or
penalty choice on val) and returns its test predictions. Models:

- ``"mean"``: the training mean; ``"ridge"``: ``VoxelRidge`` on ~8 mm blocks;
- ``"age_only"`` (AD only): logistic regression on age alone, the bar an AD image model
  must clear to show it sees more than age;
- ``"probe"``: a linear probe, ``Ridge`` on the frozen encoder's slice features averaged
  over slices (``aggregation="mean"``) or every slice's side by side
  (``aggregation="concat"``), penalty chosen on val as for ``"ridge"``;
- ``"sliceset"``: a ``SliceSetNet``; ``mode="frozen"`` trains position, pooling and head on
  the cohort's frozen slice features (``slicemri_lite.features``, computed once per
  cohort and encoder), ``mode="finetune"`` trains every weight end to end;
- ``"conv3d"``: the 3D CNN, end to end.

A config whose ``mode`` says frozen always trains frozen: it needs the features, and a
frozen config without them is refused rather than fine-tuned.

``slice_leakage`` is Chapter 6's demonstration of data leakage: a per-slice classifier
(on ``slice_pixels``) scored with its slices split at random across participants, and
split by participant.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from slicemri_lite._core.geometry import axis_index
from slicemri_lite._core.validation import check_choice
from slicemri_lite.data._cohort import SPLITS, Cohort
from slicemri_lite.experiments._profiles import Profile, as_profile, recipe_for_profile
from slicemri_lite.models._slice_set import Conv3DNet, SliceSetNet
from slicemri_lite.train._baselines import MeanBaseline, Ridge, VoxelRidge
from slicemri_lite.train._features import FeatureSpec, SliceFeatures
from slicemri_lite.train._fit import fit
from slicemri_lite.train._predict import predict
from slicemri_lite.train._recipes import Recipe, choose_recipe

__all__ = [
    "MODELS",
    "NETWORKS",
    "SLICE_OPTIONS",
    "ModelConfig",
    "RunResult",
    "RunSpec",
    "age_matched_rows",
    "run_config",
    "recipe_for",
    "run_label",
    "slice_leakage",
    "slice_pixels",
]

MODELS = ("mean", "ridge", "age_only", "probe", "conv3d", "sliceset")
NETWORKS = ("conv3d", "sliceset")
MODES = ("-", "frozen", "finetune")
# A slice model's options beyond its encoder, with the book's defaults; a label names an
# option only where a configuration differs from its default.
# The default is the paper's model (``SliceSetNet.paper``): a learned position code with one
# LayerNorm over the (slices x features) block ("paper" norm: joint with a position code,
# none without); the other norms and codes are the book's variants for the ablations.
SLICE_OPTIONS = {"axis": "sagittal", "position": "learned", "norm": "paper", "aggregation": "mean"}
# A linear probe reads the features averaged over slices, or every slice's side by side.
PROBE_AGGREGATIONS = ("mean", "concat")


def run_label(model: str, encoder: str = "-", init: str = "-", mode: str = "-", **options) -> str:
    """A short name for a configuration, e.g. ``"efficientnet_lite0 imagenet frozen"``.

    Slice-model options that differ from ``SLICE_OPTIONS`` are appended, e.g.
    ``"scratch finetune axial position=none"``.
    """
    if model == "probe":
        concat = " concat" if options.get("aggregation") == "concat" else ""
        return f"{encoder} {init} probe{concat}"
    if model != "sliceset":
        return model
    init = "" if encoder == "scratch" else f" {init}"
    extra = [
        value if name == "axis" else f"{name}={value}"
        for name, value in options.items()
        if name in SLICE_OPTIONS and value != SLICE_OPTIONS[name]
    ]
    return " ".join([f"{encoder}{init} {mode}", *extra])


@dataclass(frozen=True)
class ModelConfig:
    """What is trained.

    Attributes:
        model: one of ``MODELS``.
        encoder: the 2D encoder of a slice model or probe (``"-"`` otherwise).
        init: the encoder's initial weights, ``"imagenet"`` or ``"random"``.
        mode: ``"frozen"`` (only position, pooling and head learn) or ``"finetune"``.
        axis, position, norm, aggregation: a slice model's options (``SliceSetNet``'s
            names; ``norm="paper"`` is the paper's: joint with a position code, else none).
    """

    model: str
    encoder: str = "-"
    init: str = "-"
    mode: str = "-"
    axis: str = SLICE_OPTIONS["axis"]
    position: str = SLICE_OPTIONS["position"]
    norm: str = SLICE_OPTIONS["norm"]
    aggregation: str = SLICE_OPTIONS["aggregation"]

    def __post_init__(self):
        check_choice("model", self.model, MODELS)
        check_choice("mode", self.mode, MODES)
        if self.model == "probe" and self.mode != "frozen":
            raise ValueError("a 'probe' reads frozen features: its mode must be 'frozen'.")
        if self.model == "probe":
            check_choice("aggregation", self.aggregation, PROBE_AGGREGATIONS)

    @property
    def label(self) -> str:
        """A short human name, e.g. ``"efficientnet_lite0 imagenet frozen"``."""
        return run_label(**asdict(self))

    @property
    def needs_features(self) -> bool:
        """Whether the run trains on the cohort's frozen slice features."""
        return self.mode == "frozen"

    def feature_spec(self, seed: int = 0) -> FeatureSpec:
        """The features a frozen run reads (random encoders are drawn under ``seed``)."""
        return FeatureSpec(self.encoder, self.init, self.axis, seed=seed)

    def build(self, volume_shape) -> SliceSetNet | Conv3DNet:
        """The untrained network (call under ``torch.manual_seed``)."""
        if self.model == "conv3d":
            return Conv3DNet(volume_shape=volume_shape)
        pretrained = self.init == "imagenet" and not self.needs_features  # features carry it
        code = "none" if self.position == "none" else "learned"  # variants replace it below
        model = SliceSetNet.paper(self.encoder, self.axis, self.aggregation, code,
                                  volume_shape=volume_shape, pretrained=pretrained)  # fmt: skip
        if self.position in ("learned", "none") and self.norm == "paper":
            return model
        # a variant of the paper's model: another position code or norm, all else the same
        norm = self.norm if self.norm != "paper" else "joint"  # the paper's norm, any code
        return SliceSetNet(**{**model.config, "position": self.position, "norm": norm})


@dataclass
class RunResult:
    """What one run predicts: ``(n_val,)`` and ``(n_test,)`` ages (years) or AD
    probabilities (AD decision scores for ridge), and the epoch early stopping kept
    (0 for models without epochs)."""

    val: np.ndarray
    test: np.ndarray
    best_epoch: int = 0
    model: torch.nn.Module | None = None  # the trained network (None for closed-form models)


@dataclass(frozen=True)
class RunSpec:
    """One cell of a grid: a model configuration, a training-set size and a seed.

    ``epochs``, ``batch_size`` and ``patience`` replace the recipe's (``recipe``), where
    given; ``patience`` only in a recipe that stops early (the paper's never does).
    """

    config: ModelConfig
    train_size: int
    seed: int
    epochs: int | None = None  # the most epochs to train; None: the profile's
    batch_size: int | None = None  # volumes per step; None: the profile's
    patience: int | None = None  # early stopping's, in epochs; None: the recipe's
    # AD grid: leave out CN younger than the youngest AD participant (``age_matched_rows``)
    age_matched: bool = False
    # a frozen random-init run: the seed its random encoder is drawn under (``None``: the
    # experiment's data seed, one draw shared by every run); ``Grid.random_draws``
    draw: int | None = None

    def feature_spec(self, data_seed: int = 0) -> FeatureSpec:
        """The frozen features this run reads: a random encoder drawn under ``draw`` where
        it is set, else under the experiment's ``data_seed``."""
        return self.config.feature_spec(data_seed if self.draw is None else self.draw)

    def key(self) -> dict:
        """The run's identifying columns."""
        return {**asdict(self.config), "train_size": self.train_size, "seed": self.seed}

    def recipe(self, profile: Profile | str) -> Recipe:
        """The training recipe of this run at ``profile`` (``recipe_for``, then this run's
        epochs, batch size and patience)."""
        recipe = recipe_for(self.config, profile)
        given = {"epochs": self.epochs, "batch_size": self.batch_size}
        if recipe.patience is not None:
            given["patience"] = self.patience
        return replace(recipe, **{k: v for k, v in given.items() if v is not None})

    def n_epochs(self, profile: Profile | str) -> int:
        """Epochs this run trains for (an upper bound when early stopping is on)."""
        return self.recipe(profile).epochs


def recipe_for(config: ModelConfig, profile: Profile | str) -> Recipe:
    """The training recipe of a grid's network run: the one ``fit`` chooses for it
    (``choose_recipe``: the book's for heads on frozen features, the paper's for a network
    trained end to end), trained for as long as the profile trains (``recipe_for_profile``).
    """
    return recipe_for_profile(profile, choose_recipe(frozen=config.needs_features))


def run_config(
    config: ModelConfig,
    cohort: Cohort,
    profile: Profile | str,
    seed: int,
    *,
    recipe: Recipe | None = None,
    features: SliceFeatures | None = None,
    task: str = "age",
    model: torch.nn.Module | None = None,
    slice_chunk: int | None = None,
) -> RunResult:
    """Train ``config`` on ``cohort``'s train split; its val and test predictions.

    Args:
        config: what to train.
        cohort: train, val and test rows (a training subset already taken).
        profile: the device (and, through ``recipe_for``, the training length).
        seed: seeds the network's initial weights and batch order.
        recipe: a network's training settings; ``None``: ``recipe_for(config, profile)``
            (a grid passes ``RunSpec.recipe(profile)``).
        features: the cohort's frozen slice features (same rows), needed by frozen configs.
        task: ``"age"`` or ``"ad"``.
        model: the network to train instead of ``config.build`` (e.g. a joined-axes model).
        slice_chunk: ``fit``'s: the encoder runs over chunks of this many slices with its
            batch-norm statistics frozen (the runner's choice on several CPU processes).
    """
    if config.needs_features and features is None:
        raise ValueError(f"{config.label!r} trains on frozen slice features; none were given.")
    if config.model == "mean":
        baseline = MeanBaseline(task).fit(cohort)
        return RunResult(baseline.predict(cohort, "val"), baseline.predict(cohort, "test"))
    if config.model == "ridge":
        ridge = VoxelRidge(task).fit(cohort)
        return RunResult(ridge.predict(cohort, "val"), ridge.predict(cohort, "test"))
    if config.model == "age_only":
        return _run_age_only(cohort, task)
    if config.model == "probe":
        return _run_probe(cohort, features, task, config.aggregation)
    profile = as_profile(profile)
    recipe = recipe_for(config, profile) if recipe is None else recipe
    torch.manual_seed(seed)
    model = config.build(cohort.shape) if model is None else model
    not_test = np.flatnonzero(cohort.table["split"] != "test")
    train_val = cohort.subset(not_test)
    train_features = None if features is None else features.subset(not_test)
    result = fit(model, train_val, task=task, recipe=recipe, seed=seed, progress=False,
                 device=profile.device, features=train_features,
                 slice_chunk=slice_chunk)  # fmt: skip
    val, test = (predict(model, cohort, split, task, recipe.batch_size, profile.device, features)
                 for split in ("val", "test"))  # fmt: skip
    return RunResult(val, test, result.best_epoch, model)


def _run_probe(
    cohort: Cohort, features: SliceFeatures, task: str, aggregation: str = "mean"
) -> RunResult:
    """The linear probe: ridge on frozen features averaged over slices (``"mean"``,
    ``(n, E)``) or every slice's side by side (``"concat"``, ``(n, S * E)``)."""

    def inputs(rows: np.ndarray) -> np.ndarray:
        if aggregation == "mean":
            return features.pooled(rows)
        return features.values[rows].reshape(len(rows), -1)

    def predicted(split: str) -> np.ndarray:  # 64 rows at a time: wide inputs stay small
        rows = cohort.indices(split)
        return np.concatenate(
            [ridge.predict(inputs(part)) for part in np.split(rows, range(64, len(rows), 64))]
        )

    train, val = cohort.indices("train"), cohort.indices("val")
    ridge = Ridge(task).fit(
        inputs(train), cohort.targets(task, train), inputs(val), cohort.targets(task, val)
    )
    return RunResult(predicted("val"), predicted("test"))


def _run_age_only(cohort: Cohort, task: str) -> RunResult:
    """Logistic regression of AD on age (standardised on train): AD probabilities."""
    from sklearn.linear_model import LogisticRegression

    if task != "ad":
        raise ValueError(f"'age_only' predicts AD from age; it has no meaning for task {task!r}.")
    age = {s: cohort.table["age"].to_numpy(float)[cohort.indices(s)] for s in SPLITS}
    mean, std = age["train"].mean(), age["train"].std() or 1.0
    model = LogisticRegression().fit(
        ((age["train"] - mean) / std)[:, None], cohort.targets("ad", cohort.indices("train"))
    )
    val, test = (
        model.predict_proba(((age[s] - mean) / std)[:, None])[:, 1] for s in ("val", "test")
    )
    return RunResult(val, test)


def age_matched_rows(cohort: Cohort) -> np.ndarray:
    """Rows of everyone but the CN participants younger than the youngest AD participant.

    The age-matched design of ClinicaDL: with AD only in older people, a classifier can
    score well by recognising age; leaving the young CN out of training and scoring
    removes that shortcut (the age-only baseline drops toward chance).
    """
    table = cohort.table
    is_ad = table["diagnosis"].to_numpy() == "AD"
    if not is_ad.any():
        raise ValueError("age matching needs AD participants; the cohort has none.")
    youngest = table["age"].to_numpy(float)[is_ad].min()
    return np.flatnonzero(is_ad | (table["age"].to_numpy(float) >= youngest))


def slice_pixels(cohort: Cohort, axis: str = "sagittal", pool: int | None = None) -> np.ndarray:
    """Every slice of every volume as a flat vector: ``(N, S, P)`` float32.

    Slices are taken along ``axis`` and averaged over ``pool`` x ``pool`` voxel blocks in
    their plane (edges padded), the input of a per-slice 2D classifier. ``pool=None``:
    blocks of 8 mm on any grid (2 voxels at 4 mm, 4 at 2 mm), so that a 2 mm cohort's
    pixels fit in memory as a 4 mm one's do.
    """
    import torch.nn.functional as F

    if pool is None:
        pool = max(1, round(8 / float(np.abs(cohort.affine[0, 0]))))
    dim = 1 + axis_index(axis)
    chunks = []
    for start in range(0, len(cohort), 16):  # chunks keep a memory-mapped cohort on disk
        block = torch.from_numpy(np.asarray(cohort.volumes[start : start + 16], np.float32))
        block = block.movedim(dim, 1)  # (n, S, a, b)
        n, n_slices = block.shape[:2]
        pooled = F.avg_pool2d(block.reshape(n * n_slices, 1, *block.shape[2:]), pool,
                              ceil_mode=True)  # fmt: skip
        chunks.append(pooled.reshape(n, n_slices, -1).numpy())
    return np.concatenate(chunks)


def slice_leakage(
    values: np.ndarray,
    cohort: Cohort,
    split: str = "participant",
    seed: int = 0,
    central: float = 0.5,
) -> dict[str, float]:
    """Train and score a per-slice AD classifier, with slices split by participant or not.

    Every slice is one example, labelled with its participant's diagnosis; a logistic
    regression reads its ``(E,)`` vector (``slice_pixels``, or frozen slice features).
    Only the ``central`` share of slices along the axis is used (the outer ones hold
    little brain).

    Args:
        values: ``(N, S, E)``, one row per cohort row.
        cohort: the cohort (its train/val/test split and diagnoses).
        split: ``"participant"``: train on the training participants' slices, test on the
            test participants'; ``"slice"``: pool the slices of the train and test
            participants and split *the slices* at random in the same proportion, so
            slices of one person land on both sides (the leak).
        seed: seeds the random slice split.
        central: share of slices kept, centred on the middle slice.

    Returns:
        ``auc`` and ``accuracy`` (threshold 0.5) over test slices, ``n_train`` and ``n_test``
        slices, and ``shared`` (share of test slices whose participant also has
        slices in training).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    check_choice("split", split, ("participant", "slice"))
    values = np.asarray(values)
    if values.ndim != 3 or len(values) != len(cohort):
        raise ValueError(
            f"'values' must be (N, S, E) with N = {len(cohort)} cohort rows; got {values.shape}."
        )
    n_slices = values.shape[1]
    keep = max(1, round(central * n_slices))
    start = (n_slices - keep) // 2
    rows = {s: cohort.indices(s) for s in ("train", "test")}
    people = np.concatenate([rows["train"], rows["test"]])
    x = values[people, start : start + keep].reshape(len(people) * keep, -1)
    y = np.repeat(cohort.targets("ad", people), keep)
    owner = np.repeat(people, keep)
    if split == "participant":
        is_test = np.isin(owner, rows["test"])
    else:
        order = np.random.default_rng(seed).permutation(len(owner))
        is_test = np.zeros(len(owner), bool)
        is_test[order[: keep * len(rows["test"])]] = True
    mean, std = x[~is_test].mean(0), x[~is_test].std(0) + 1e-3
    model = LogisticRegression(max_iter=1000).fit((x[~is_test] - mean) / std, y[~is_test])
    probability = model.predict_proba((x[is_test] - mean) / std)[:, 1]
    return {
        "auc": float(roc_auc_score(y[is_test], probability)),
        "accuracy": float(((probability >= 0.5) == y[is_test]).mean()),
        "n_train": int((~is_test).sum()),
        "n_test": int(is_test.sum()),
        "shared": float(np.isin(owner[is_test], owner[~is_test]).mean()),
    }
