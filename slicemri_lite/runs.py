"""One run of an experiment grid: what is trained (``ModelConfig``), and training it.

``run_config`` trains one configuration on a cohort's train split (early stopping or
penalty choice on val) and returns its test predictions. Models:

- ``"mean"``: the training mean; ``"ridge"``: ``VoxelRidge`` on ~8 mm blocks;
- ``"probe"``: a linear probe, ``Ridge`` on the frozen encoder's slice features averaged
  over slices (penalty chosen on val, as for ``"ridge"``);
- ``"sliceset"``: a ``SliceSetNet``; ``mode="frozen"`` trains position, pooling and head on
  the cohort's frozen slice features (``slicemri_lite.features``, computed once per
  cohort and encoder), ``mode="finetune"`` trains every weight end to end;
- ``"conv3d"``: the 3D CNN, end to end.

A config whose ``mode`` says frozen always trains frozen: it needs the features, and a
frozen config without them is refused rather than fine-tuned.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from slicemri_lite.baselines import MeanBaseline, Ridge, VoxelRidge
from slicemri_lite.cohort import Cohort
from slicemri_lite.features import FeatureSpec, SliceFeatures
from slicemri_lite.models import Conv3DNet, SliceSetNet
from slicemri_lite.profiles import Profile
from slicemri_lite.recipes import Recipe, get_recipe, recipe_for_profile
from slicemri_lite.train import fit, predict
from slicemri_lite.validation import check_choice

__all__ = [
    "MODELS",
    "NETWORKS",
    "SLICE_OPTIONS",
    "ModelConfig",
    "RunResult",
    "RunSpec",
    "run_config",
    "recipe_for",
    "run_label",
]

MODELS = ("mean", "ridge", "probe", "conv3d", "sliceset")
NETWORKS = ("conv3d", "sliceset")
MODES = ("-", "frozen", "finetune")
# A slice model's options beyond its encoder, with the book's defaults; a label names an
# option only where a configuration differs from its default.
# The default is the paper's model (``SliceSetNet.paper``): a learned position code with one
# LayerNorm over the (slices x features) block ("paper" norm: joint with a position code,
# none without); the other norms and codes are the book's variants for the ablations.
SLICE_OPTIONS = {"axis": "sagittal", "position": "learned", "norm": "paper", "aggregation": "mean"}


def run_label(model: str, encoder: str = "-", init: str = "-", mode: str = "-", **options) -> str:
    """A short name for a configuration, e.g. ``"efficientnet_lite0 imagenet frozen"``.

    Slice-model options that differ from ``SLICE_OPTIONS`` are appended, e.g.
    ``"scratch finetune axial position=none"``.
    """
    if model == "probe":
        return f"{encoder} {init} probe"
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
        model = SliceSetNet.paper(self.encoder, self.axis, self.aggregation,
                                  position=self.position != "none", volume_shape=volume_shape,
                                  pretrained=pretrained)  # fmt: skip
        if self.position in ("learned", "none") and self.norm == "paper":
            return model
        # a variant of the paper's model: another position code or norm, all else the same
        return SliceSetNet(**{**model.config, "position": self.position, "norm": self.norm})


@dataclass
class RunResult:
    """What one run predicts: ``(n_val,)`` and ``(n_test,)`` ages (years) or AD
    probabilities (AD decision scores for ridge), and the epoch early stopping kept
    (0 for models without epochs)."""

    val: np.ndarray
    test: np.ndarray
    best_epoch: int = 0


@dataclass(frozen=True)
class RunSpec:
    """One cell of a grid: a model configuration, a training-set size and a seed."""

    config: ModelConfig
    train_size: int
    seed: int
    epochs: int | None = None  # the most epochs to train; None: the profile's
    batch_size: int | None = None  # volumes per step; None: the profile's
    patience: int = 5  # epochs without a better validation loss before stopping

    def key(self) -> dict:
        """The run's identifying columns."""
        return {**asdict(self.config), "train_size": self.train_size, "seed": self.seed}

    def n_epochs(self, profile: Profile) -> int:
        """Epochs this run trains for (an upper bound when early stopping is on)."""
        return profile.epochs if self.epochs is None else self.epochs

    def settings(self, profile: Profile) -> Profile:
        """``profile`` with this run's epochs and batch size."""
        batch_size = profile.batch_size if self.batch_size is None else self.batch_size
        return replace(profile, epochs=self.n_epochs(profile), batch_size=batch_size)


def recipe_for(config: ModelConfig, profile: Profile) -> Recipe:
    """The training recipe of a network run: the profile's (``recipe_for_profile``), with the
    book's gentler learning rate (``"book_finetune"``) when a pretrained encoder is fine-tuned
    with the book's recipe."""
    recipe = recipe_for_profile(profile.name)
    if recipe.name == "book" and config.mode == "finetune" and config.model == "sliceset":
        return get_recipe("book_finetune")
    return recipe


def run_config(
    config: ModelConfig,
    cohort: Cohort,
    profile: Profile,
    seed: int,
    patience: int = 5,
    features: SliceFeatures | None = None,
    task: str = "age",
) -> RunResult:
    """Train ``config`` on ``cohort``'s train split; its val and test predictions.

    Args:
        config: what to train.
        cohort: train, val and test rows (a training subset already taken).
        profile: the networks' epochs, batch size, learning rate and device.
        seed: seeds the network's initial weights and batch order.
        patience: early stopping's, in epochs.
        features: the cohort's frozen slice features (same rows), needed by frozen configs.
        task: ``"age"`` or ``"ad"``.
    """
    if config.needs_features and features is None:
        raise ValueError(f"{config.label!r} trains on frozen slice features; none were given.")
    if config.model == "mean":
        baseline = MeanBaseline(task).fit(cohort)
        return RunResult(baseline.predict(cohort, "val"), baseline.predict(cohort, "test"))
    if config.model == "ridge":
        ridge = VoxelRidge(task).fit(cohort)
        return RunResult(ridge.predict(cohort, "val"), ridge.predict(cohort, "test"))
    if config.model == "probe":
        return _run_probe(cohort, features, task)
    torch.manual_seed(seed)
    model = config.build(cohort.shape)
    not_test = np.flatnonzero(cohort.table["split"] != "test")
    train_val = cohort.subset(not_test)
    train_features = None if features is None else features.subset(not_test)
    result = fit(model, train_val, task=task, epochs=profile.epochs, seed=seed,
                 patience=patience, progress=False, batch_size=profile.batch_size,
                 device=profile.device, features=train_features,
                 recipe=recipe_for(config, profile))  # fmt: skip
    val, test = (predict(model, cohort, split, task, profile.batch_size, profile.device, features)
                 for split in ("val", "test"))  # fmt: skip
    return RunResult(val, test, result.best_epoch)


def _run_probe(cohort: Cohort, features: SliceFeatures, task: str) -> RunResult:
    """Ridge on slice-averaged frozen features: the linear probe."""
    x = {s: features.pooled(cohort.indices(s)) for s in ("train", "val", "test")}
    y = {s: cohort.targets(task, cohort.indices(s)) for s in ("train", "val")}
    ridge = Ridge(task).fit(x["train"], y["train"], x["val"], y["val"])
    return RunResult(ridge.predict(x["val"]), ridge.predict(x["test"]))
