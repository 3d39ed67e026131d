"""Where the slice was and which way it was cut: position codes, slicing axes, pooling.

Chapter 5's analysis, on top of the ablation grid (``experiments.GRIDS["ablation"]``):

- what a learned position code holds: ``position_similarity`` (cosine similarity between
  slice positions, ``(S, S)``), ``similarity_by_distance`` (its mean at each distance
  between slices) and ``position_components`` (principal components, ``(S, k)``);
- how much a model uses slice order: ``shuffle_slices`` permutes every volume's slices
  in stored frozen features, and ``order_control`` predicts with and without that;
- combining the three slicing axes: ``axis_ensemble`` averages the three axes'
  predictions; ``joined_axes_features`` and ``joined_axes_model`` make one slice set of
  all three axes' slices (with one position code over all of them) for one model;
- where the age information sits: ``geometry.slice_mass`` (a ground-truth effect map's
  share in each slice) and ``slice_profile_volume`` (a per-slice profile painted back
  into the volume, to overlay on a brain);
- ``seconds_per_volume``: what each axis costs an encoder.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from slicemri_lite._core.geometry import AXES, axis_index
from slicemri_lite._core.validation import check_choice
from slicemri_lite.data._cohort import Cohort
from slicemri_lite.experiments._compare import summarize
from slicemri_lite.experiments._grids import PATIENCE
from slicemri_lite.experiments._profiles import Profile
from slicemri_lite.experiments._runner import Experiment
from slicemri_lite.experiments._runs import ModelConfig, RunSpec, run_label
from slicemri_lite.models._slice_set import SliceSetNet
from slicemri_lite.train._features import SliceFeatures
from slicemri_lite.train._predict import predict

__all__ = [
    "AVERAGED",
    "axis_table",
    "JOINED",
    "axis_ensemble",
    "joined_axes_features",
    "joined_axes_model",
    "order_control",
    "position_components",
    "position_similarity",
    "seconds_per_volume",
    "shuffle_slices",
    "similarity_by_distance",
    "slice_profile_volume",
    "train_frozen",
]

AVERAGED = "axes averaged"  # the ``axis`` of the three-axis ensemble's prediction rows
JOINED = "axes joined"  # the ``axis`` of one model over all three axes' slices
_RUN = ["model", "encoder", "init", "mode", "position", "norm", "aggregation"]


def axis_table(results: pd.DataFrame, metric: str = "mae") -> pd.DataFrame:
    """The paper's layout: one row per configuration and training size, one column per axis.

    Each cell is ``"mean [low, high]"`` of ``metric`` over seeds (95% t-interval; the mean
    alone with one seed); models without slices (the 3D CNN) fill the ``"volume"`` column.
    Rows are named by ``run_label`` without the axis.
    """
    summary = summarize(results, metric)
    if summary.empty:
        raise ValueError("'results' has no run with status 'ok'.")
    options = [k for k in summary.columns if k in _RUN or k == "axis"]
    rows = []
    for record in summary.to_dict("records"):
        config = {k: record[k] for k in options if k != "axis"}
        column = record["axis"] if record["model"] == "sliceset" else "volume"
        interval = "" if np.isnan(record["ci_low"]) else (
            f" [{record['ci_low']:.2f}, {record['ci_high']:.2f}]")  # fmt: skip
        rows.append({"configuration": run_label(**config), "train_size": record["train_size"],
                     "column": column, "cell": f"{record[metric]:.2f}{interval}"})  # fmt: skip
    table = pd.DataFrame(rows).pivot(index=["configuration", "train_size"], columns="column",
                                     values="cell")  # fmt: skip
    ordered = [c for c in (*AXES, "volume") if c in table.columns]
    table = table[ordered + [c for c in table.columns if c not in ordered]].fillna("")
    return table.rename_axis(columns=None)


def _learned_positions(model: SliceSetNet) -> np.ndarray:
    if getattr(model, "position", None) != "learned":
        raise ValueError(
            f"the model needs position='learned'; {getattr(model, 'position', None)!r} "
            "was provided."
        )
    return model.position_embedding.weight.detach().double().cpu().numpy()  # (S, D)


def position_similarity(model: SliceSetNet) -> np.ndarray:
    """Cosine similarity between the learned position vectors of every two slices, ``(S, S)``."""
    codes = _learned_positions(model)
    unit = codes / np.linalg.norm(codes, axis=1, keepdims=True).clip(1e-12)
    return unit @ unit.T


def similarity_by_distance(similarity: np.ndarray) -> np.ndarray:
    """Mean of an ``(S, S)`` similarity over slice pairs ``d`` apart, for ``d = 0..S-1``: ``(S,)``.

    A code that knows adjacency is more similar at small distances than at large ones.
    """
    n = len(similarity)
    return np.array([np.diagonal(similarity, offset=d).mean() for d in range(n)])


def position_components(model: SliceSetNet, n_components: int = 2) -> np.ndarray:
    """Scores of the learned position vectors on their first principal components, ``(S, k)``.

    Each component's sign is chosen so that it increases with slice index on average.
    """
    codes = _learned_positions(model)
    centred = codes - codes.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    scores = u[:, :n_components] * s[:n_components]  # (S, k)
    index = np.arange(len(codes)) - (len(codes) - 1) / 2
    return scores * np.where(index @ scores < 0, -1.0, 1.0)


def shuffle_slices(features: SliceFeatures, seed: int = 0) -> SliceFeatures:
    """The same features with each volume's slices in a random order (one per volume).

    Only the order changes: a model without a position code that pools with a symmetric
    function (mean, max, attention) predicts exactly what it did before.
    """
    rng = np.random.default_rng(seed)
    n, s = features.shape[:2]
    order = np.argsort(rng.random((n, s)), axis=1)  # (N, S) a permutation per volume
    values = np.take_along_axis(features.values, order[:, :, None], axis=1)
    return replace(features, values=values, key="")


def order_control(
    model: SliceSetNet,
    cohort: Cohort,
    features: SliceFeatures,
    split: str = "test",
    seed: int = 0,
    batch_size: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """A trained frozen model's predictions on ``split`` with slices in order, then shuffled.

    Returns ``(ordered, shuffled)``, ``(n,)`` each; how much worse the shuffled ones are
    measures how much the model uses slice order. Only the split's rows are copied and
    shuffled (at 2 mm a cohort's features on three axes are hundreds of megabytes).
    """
    rows = cohort.indices(split)
    part, values = cohort.subset(rows), features.subset(rows)
    ordered = predict(model, part, split, "age", batch_size, "cpu", values)
    shuffled = predict(model, part, split, "age", batch_size, "cpu",
                       shuffle_slices(values, seed))  # fmt: skip
    return ordered, shuffled


def train_frozen(
    config: ModelConfig,
    cohort: Cohort,
    features: SliceFeatures,
    profile: Profile | str,
    seed: int,
    patience: int = PATIENCE,
    model: SliceSetNet | None = None,
) -> SliceSetNet:
    """Train a frozen slice model as the grid does: through the grid runner
    (``Experiment.train``), on the whole train split, early stopping on val.

    ``cohort`` and ``features`` hold the same rows; the test rows are left out of
    training. ``model`` replaces ``config.build`` (e.g. ``joined_axes_model``). Returns
    the trained model, which reads frozen features (``predict(..., features=...)``).
    """
    if not config.needs_features:
        raise ValueError(f"'config' must train on frozen features; {config.label!r} was provided.")
    spec = RunSpec(config, len(cohort.indices("train")), seed, patience=patience)
    experiment = Experiment(cohort, profile, progress=False, seed=seed)
    return experiment.train(spec, features, model)


def axis_ensemble(predictions: pd.DataFrame, **options) -> pd.DataFrame:
    """Average each participant's predictions over the three slicing axes.

    Args:
        predictions: the predictions table (``Experiment.predictions``).
        options: the configuration whose three axes are averaged, by column (``encoder``,
            ``init``, ``mode``, ``position``, ...); rows must match every one given.

    Returns:
        Prediction rows with ``axis == AVERAGED``, one per training size, seed and test
        participant that all three axes predicted; run label ``"... axes averaged"``.
    """
    rows = predictions[predictions["axis"].isin(AXES)]
    for column, value in options.items():
        rows = rows[rows[column] == value]
    keys = [*_RUN, "train_size", "seed", "participant_id", "age", "diagnosis"]
    grouped = rows.groupby(keys, sort=False, dropna=False)
    mean = grouped.agg(predicted=("predicted", "mean"), n_axes=("axis", "nunique"))
    mean = mean[mean["n_axes"] == len(AXES)].drop(columns="n_axes").reset_index()
    if mean.empty:
        raise ValueError(f"no participant has predictions on all three axes for {options}.")
    return mean.assign(axis=AVERAGED)[list(predictions.columns)]


def joined_axes_features(features: list[SliceFeatures]) -> SliceFeatures:
    """One slice set of every axis's slices: ``(N, S_sagittal + S_coronal + S_axial, E)``.

    ``features`` are one encoder's frozen features on the three axes, same rows. The
    joined array lives in an anonymous temporary file, memory-mapped (at 2 mm it is about
    650 MB for 440 volumes): the operating system pages it in and out as training reads
    its rows, and deletes the file when the array is no longer used.
    """
    if len(features) != len(AXES) or len({f.shape[0] for f in features}) != 1:
        raise ValueError("'features' must be three feature arrays with the same rows.")
    n, e = features[0].shape[0], features[0].shape[2]
    shape = (n, sum(f.shape[1] for f in features), e)
    values = np.memmap(tempfile.TemporaryFile(), dtype=np.float32, mode="w+", shape=shape)
    start = 0
    for f in features:
        for rows in np.array_split(np.arange(n), max(1, n // 64)):  # 64 volumes at a time
            values[rows, start : start + f.shape[1]] = f.values[rows]
        start += f.shape[1]
    return SliceFeatures(values, None, features[0].encoder)


def joined_axes_model(config: ModelConfig, volume_shape) -> SliceSetNet:
    """``config``'s slice model over a set of all three axes' slices (frozen features only).

    The position code has one entry per slice of every axis, so it can also tell the axes
    apart. The model reads ``joined_axes_features``, not volumes.
    """
    if config.axis != "sagittal":
        raise ValueError(f"'config.axis' must be 'sagittal'; {config.axis!r} was provided.")
    x, y, z = (int(n) for n in volume_shape)
    return config.build((x + y + z, y, z))  # sagittal: one slice per first-axis entry


def slice_profile_volume(profile, axis: str, shape, mask=None) -> np.ndarray:
    """A per-slice profile ``(S,)`` painted into ``(X, Y, Z)``: each voxel holds its slice's
    value (0 outside ``mask``), for plotting over a brain."""
    check_choice("axis", axis, AXES)
    dim = axis_index(axis)
    profile = np.asarray(profile, dtype=np.float32)
    if len(profile) != shape[dim]:
        raise ValueError(f"'profile' must have {shape[dim]} values; {len(profile)} were given.")
    view = [1, 1, 1]
    view[dim] = -1
    volume = np.broadcast_to(profile.reshape(view), tuple(shape)).copy()
    return volume if mask is None else volume * np.asarray(mask, dtype=bool)


@torch.no_grad()
def seconds_per_volume(
    encoder: str, axis: str, volume_shape, n_volumes: int = 2, repeats: int = 2
) -> float:
    """Measured seconds for one volume's slices through ``encoder`` (random weights, CPU).

    The best of ``repeats`` timed passes over ``n_volumes`` random volumes, after one
    warm-up pass; the weights don't change the cost.
    """
    model = SliceSetNet.paper(encoder, axis, position="none", volume_shape=volume_shape,
                              pretrained=False).eval()  # fmt: skip
    x = torch.randn(n_volumes, 1, *volume_shape)
    model.encoder_features(x)
    best = float("inf")
    for _ in range(repeats):
        tic = time.perf_counter()
        model.encoder_features(x)
        best = min(best, time.perf_counter() - tic)
    return best / n_volumes
