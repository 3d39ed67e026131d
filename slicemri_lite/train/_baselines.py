"""Baselines every model must beat: the training mean, and one ridge regression.

- ``MeanBaseline``: predicts the training split's mean age (or AD prevalence) for everyone.
- ``Ridge``: ridge regression on any ``(n, F)`` feature matrix, fitted on the training
  rows with its penalty chosen on the validation rows (lowest MAE for age, highest ROC AUC
  for AD, where it is a ridge classifier on +1/-1 targets). The same protocol the networks
  follow: train on train, choose on val, score on test. Solved through the ``(n, n)`` Gram
  matrix, so one eigendecomposition gives the fit for every penalty.
- ``VoxelRidge``: ``Ridge`` on voxels averaged into ~8 mm blocks; ``linear_baseline`` runs
  it on a cohort and scores the test split. Chapter 2 and the experiment grids report this
  one model. ``Ridge`` on frozen slice features is the linear probe of Chapter 4.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from slicemri_lite._core.geometry import voxel_size
from slicemri_lite._core.validation import check_choice
from slicemri_lite.data._cohort import TASKS, Cohort, read_rows
from slicemri_lite.train._metrics import age_metrics

__all__ = [
    "ALPHAS",
    "MeanBaseline",
    "Ridge",
    "VoxelRidge",
    "downsample_volumes",
    "linear_baseline",
]

# Candidate penalties, in units of the (globally scaled) features' squared norm per row.
ALPHAS = tuple(float(a) for a in np.logspace(-2, 7, 19))


def downsample_volumes(volumes: np.ndarray, factor: int, batch: int = 32) -> np.ndarray:
    """Average-pool ``(N, X, Y, Z)`` volumes by ``factor`` per axis: ``(N, F)`` float32."""
    if factor <= 1:
        return np.asarray(volumes, dtype=np.float32).reshape(len(volumes), -1)
    chunks = []
    for start in range(0, len(volumes), batch):  # chunks keep a memory-mapped cohort on disk
        rows = np.arange(start, min(start + batch, len(volumes)))
        x = torch.from_numpy(read_rows(volumes, rows).astype(np.float32))
        pooled = F.avg_pool3d(x[:, None], factor, ceil_mode=True)
        chunks.append(pooled.flatten(1).numpy())
    return np.concatenate(chunks)


@dataclass
class MeanBaseline:
    """Predict the training split's mean target for everyone (age, or AD prevalence)."""

    task: str = "age"
    mean_: float = float("nan")

    def fit(self, cohort: Cohort) -> MeanBaseline:
        """Remember the mean target of the ``train`` split."""
        self.mean_ = float(cohort.targets(self.task, cohort.indices("train")).mean())
        return self

    def predict(self, cohort: Cohort, split: str = "test") -> np.ndarray:
        """``(n,)`` predictions for one split."""
        return np.full(len(cohort.indices(split)), self.mean_)


class _GramSolver:
    """Centred ridge through the Gram matrix: ``(n, F)`` rows, cheap when F >> n."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x_mean, self.y_mean = x.mean(0), float(y.mean())
        self.centred = x - self.x_mean  # (n, F)
        self.eigvals, self.eigvecs = np.linalg.eigh(self.centred @ self.centred.T)  # (n,), (n, n)
        self.projected = self.eigvecs.T @ (y - self.y_mean)  # (n,)

    def weights(self, alpha: float) -> np.ndarray:
        """Primal weights ``(F,)`` for penalty ``alpha``."""
        dual = self.eigvecs @ (self.projected / (np.clip(self.eigvals, 0, None) + alpha))
        return self.centred.T @ dual


@dataclass
class Ridge:
    """Ridge regression (age) or ridge classifier (AD) with the penalty chosen on validation.

    Args:
        task: ``"age"`` (targets in years; chosen by validation MAE) or ``"ad"`` (targets 0/1,
            fitted as -1/+1; chosen by validation ROC AUC; ``predict`` gives decision scores).
        alphas: candidate penalties, relative to the mean squared row norm of the features
            (so the same grid suits features of any scale and size).
    """

    task: str = "age"
    alphas: tuple[float, ...] = ALPHAS
    alpha_: float = float("nan")
    val_scores_: dict[float, float] = field(default_factory=dict)

    def fit(self, x_train, y_train, x_val, y_val) -> Ridge:
        """Fit on ``(n, F)`` ``x_train``, pick ``alpha`` on ``x_val``; keeps the train-only fit."""
        check_choice("task", self.task, TASKS)
        x_train, x_val = np.asarray(x_train, np.float64), np.asarray(x_val, np.float64)
        if len(x_val) == 0:
            raise ValueError("Ridge needs validation rows to choose its penalty; none were given.")
        y_train, y_val = np.asarray(y_train, np.float64), np.asarray(y_val, np.float64)
        if self.task == "ad" and (len(np.unique(y_train)) < 2 or len(np.unique(y_val)) < 2):
            raise ValueError(
                "the AD ridge needs AD and CN participants in both train and val; train holds "
                f"{sorted(set(y_train.tolist()))}, val {sorted(set(y_val.tolist()))} (1 = AD)."
            )
        target = np.where(y_train == 1, 1.0, -1.0) if self.task == "ad" else y_train
        solver = _GramSolver(x_train, target)
        scale = float(np.einsum("ij,ij->", solver.centred, solver.centred) / len(target)) or 1.0
        best = None
        for alpha in self.alphas:
            weights = solver.weights(alpha * scale)
            predicted = (x_val @ weights) - (solver.x_mean @ weights) + solver.y_mean
            self.val_scores_[alpha] = self._score(y_val, predicted)
            if best is None or self.val_scores_[alpha] < self.val_scores_[best[0]]:
                best = (alpha, weights)
        self.alpha_, self.weights_ = best
        self.x_mean_, self.y_mean_ = solver.x_mean, solver.y_mean
        return self

    def _score(self, y: np.ndarray, predicted: np.ndarray) -> float:
        """Lower is better: MAE for age, minus ROC AUC for AD."""
        if self.task == "age":
            return float(np.abs(predicted - y).mean())
        from sklearn.metrics import roc_auc_score

        return -float(roc_auc_score(y, predicted))

    def predict(self, x, rows_at_once: int = 64) -> np.ndarray:
        """``(m,)`` ages in years (age) or decision scores, higher = more AD-like (ad).

        ``rows_at_once`` rows are converted to float64 at a time (wide features, e.g. every
        slice's side by side, stay within memory).
        """
        x = np.asarray(x)
        parts = [
            (np.asarray(x[i : i + rows_at_once], np.float64) - self.x_mean_) @ self.weights_
            for i in range(0, len(x), rows_at_once)
        ]
        return (np.concatenate(parts) if parts else np.zeros(0)) + self.y_mean_


@dataclass
class VoxelRidge:
    """``Ridge`` on block-averaged voxels: fit on train, penalty on val.

    Blocks are centred on their training mean (not scaled per block: that would blow up
    blocks at the brain's edge that barely vary in training).

    Args:
        task: ``"age"`` or ``"ad"``.
        block_mm: size (mm) of the cubic blocks voxels are averaged over.
    """

    task: str = "age"
    block_mm: float = 8.0
    ridge_: Ridge | None = None

    def blocks(self, cohort: Cohort, split: str) -> np.ndarray:
        """``(n, F)`` block means of one split."""
        factor = max(1, round(self.block_mm / float(voxel_size(cohort.affine).mean())))
        split_volumes = cohort.subset(cohort.indices(split)).volumes  # read in chunks
        return downsample_volumes(split_volumes, factor)

    def fit(self, cohort: Cohort) -> VoxelRidge:
        """Fit on the ``train`` split, choose the penalty on ``val``."""
        if len(cohort.indices("val")) == 0:
            raise ValueError(
                "VoxelRidge needs validation rows to choose its penalty; the cohort has no "
                "'val' split (see slicemri_lite.data.split_subjects)."
            )
        xs = [self.blocks(cohort, s) for s in ("train", "val")]
        ys = [cohort.targets(self.task, cohort.indices(s)) for s in ("train", "val")]
        self.ridge_ = Ridge(self.task).fit(xs[0], ys[0], xs[1], ys[1])
        return self

    @property
    def alpha_(self) -> float:
        return self.ridge_.alpha_

    def predict(self, cohort: Cohort, split: str = "test") -> np.ndarray:
        """``(n,)`` predictions for one split (years, or AD decision scores)."""
        return self.ridge_.predict(self.blocks(cohort, split))


def linear_baseline(cohort: Cohort, task: str = "age", block_mm: float = 8.0) -> dict:
    """Fit ``VoxelRidge`` (train; penalty on val) and score it on the test split.

    Returns:
        ``{"task", "mae" (years) or "auc", "n_fit", "n_test", "n_features", "alpha",
        "predictions"}``; ``predictions`` are the test rows' ages or decision scores.
    """
    from sklearn.metrics import roc_auc_score

    check_choice("task", task, TASKS)
    model = VoxelRidge(task, block_mm).fit(cohort)
    test = cohort.indices("test")
    predictions, target = model.predict(cohort, "test"), cohort.targets(task, test)
    if task == "age":
        score = {"mae": age_metrics(target, predictions)["mae"]}
    else:
        if len(np.unique(target)) < 2:
            raise ValueError("the AD baseline needs AD and CN participants in the test split.")
        score = {"auc": float(roc_auc_score(target, predictions))}
    return {
        "task": task,
        **score,
        "n_fit": len(cohort.indices("train")),
        "n_test": len(test),
        "n_features": int(model.ridge_.weights_.shape[0]),
        "alpha": model.alpha_,
        "predictions": predictions,
    }
