"""Predictions and metrics of a trained model on one split: ``predict``, ``evaluate``.

Both take the task from the model (``model.task``, set by ``fit``) unless one is given,
and read a split's volumes from the cohort, or its frozen slice features (``features=``)
so that the encoder does not run.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from slicemri_lite._core.env import autocast, resolve_device
from slicemri_lite._core.numeric import sigmoid
from slicemri_lite._core.validation import check_choice
from slicemri_lite.data._cohort import TASKS, Cohort
from slicemri_lite.train._features import SliceFeatures
from slicemri_lite.train._metrics import ad_metrics, age_metrics
from slicemri_lite.train._streaming import (
    choose_stream,
    index_batches,
    volume_source,
)

__all__ = ["predict", "evaluate", "model_task"]


def rows_of(cohort: Cohort, split: str) -> np.ndarray:
    """The split's row positions; refuses an empty split."""
    rows = cohort.indices(split)
    if len(rows) == 0:
        raise ValueError(f"the cohort has no {split!r} rows; its table needs a 'split' column.")
    return rows


def volume_bytes(cohort: Cohort, n_rows: int) -> int:
    return n_rows * int(np.prod(cohort.volumes.shape[1:])) * cohort.volumes.dtype.itemsize


def check_features(model: nn.Module, cohort: Cohort, features: SliceFeatures) -> None:
    """Refuse features that don't belong to this cohort and model."""
    if len(features) != len(cohort):
        raise ValueError(
            f"'features' has {len(features)} rows but the cohort has {len(cohort)}; compute "
            "them on this cohort, or take features.subset(rows) as you take cohort.subset(rows)."
        )
    spec = features.spec
    if features.shape[1] != model.n_slices or (spec is not None and not spec.matches(model)):
        raise ValueError(
            f"'features' ({spec}, {features.shape[1]} slices) don't match the model "
            f"(encoder {model.encoder_name!r}, axis {model.axis!r}, {model.n_slices} slices)."
        )


class FeatureRows:
    """The ``rows`` of a feature array ``(N, S, E)``, read batch by batch onto ``device``.

    Predicting from stored features copies one batch at a time, not the whole split (at
    2 mm, three axes' features of 300 test participants are about half a gigabyte).
    """

    def __init__(self, values: np.ndarray, rows: np.ndarray, device):
        self.values, self.rows, self.device = values, np.asarray(rows), device

    def __len__(self) -> int:
        return len(self.rows)

    def batches(self, positions):
        """One ``(b, S, E)`` float32 batch per tensor of positions, in order."""
        for batch in positions:
            chosen = np.ascontiguousarray(self.values[self.rows[batch.cpu().numpy()]])
            yield torch.from_numpy(chosen).to(self.device).float()


@torch.no_grad()
def outputs(forward: Callable, inputs, batch_size: int, device) -> np.ndarray:
    """Run ``forward`` over a batch source in order; ``(n, n_outputs)`` float32 on the CPU."""
    chunks = []
    for x in inputs.batches(index_batches(torch.arange(len(inputs)), batch_size)):
        with autocast(device):
            chunks.append(forward(x).float().cpu())
    return torch.cat(chunks).numpy()


def split_metrics(task: str, target: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """Metrics of raw outputs (years, or AD logits)."""
    if task == "age":
        return age_metrics(target, output)
    return ad_metrics(target, sigmoid(output))


def model_task(model: nn.Module, task: str | None) -> str:
    """``task``, or the task the model was last fitted for (``model.task``)."""
    task = task or getattr(model, "task", None)
    if task is None:
        raise ValueError("'task' must be one of ['age', 'ad'] for a model that fit has not set.")
    return check_choice("task", task, TASKS)


def predict(
    model: nn.Module,
    cohort: Cohort,
    split: str = "test",
    task: str | None = None,
    batch_size: int = 8,
    device: str | None = None,
    features: SliceFeatures | None = None,
    stream: bool | str = "auto",
    rows=None,
) -> np.ndarray:
    """Predictions for one split: ages in years (``task="age"``) or AD probabilities (``"ad"``).

    ``rows`` (row positions) predicts those rows instead of ``split``'s, e.g. every scan of
    a cohort whose splits came from another. ``task=None`` uses the task the model was
    last fitted for (``model.task``). With
    ``features`` (the cohort's frozen slice features, the ones the model was fitted on) the
    encoder does not run: the rest of the model reads the stored features. ``stream`` as
    in ``fit``: read the volumes batch by batch from the cohort instead of all at once.
    """
    task = model_task(model, task)
    device = resolve_device(device)
    model.to(device).eval()
    rows = rows_of(cohort, split) if rows is None else np.asarray(rows, dtype=int)
    if features is not None:
        check_features(model, cohort, features)
        inputs = FeatureRows(features.values, rows, device)  # batch by batch: no full copy
        out = outputs(model.forward_features, inputs, batch_size, device)[:, 0]
    else:
        streamed = choose_stream(stream, volume_bytes(cohort, len(rows)), device)
        inputs = volume_source(cohort.volumes, rows, device, streamed)
        out = outputs(model, inputs, batch_size, device)[:, 0]
    return out if task == "age" else sigmoid(out)


def evaluate(
    model: nn.Module,
    cohort: Cohort,
    split: str = "test",
    task: str | None = None,
    batch_size: int = 8,
    device: str | None = None,
    features: SliceFeatures | None = None,
    stream: bool | str = "auto",
) -> dict[str, float]:
    """Metrics on one split: age -> ``mae``, ``rmse``, ``r``; ad -> ``auc``, ``balanced_accuracy``.

    ``task=None`` uses the task the model was last fitted for (``model.task``), as ``predict``.
    """
    task = model_task(model, task)
    predicted = predict(model, cohort, split, task, batch_size, device, features, stream)
    target = cohort.targets(task, rows_of(cohort, split))
    return age_metrics(target, predicted) if task == "age" else ad_metrics(target, predicted)
