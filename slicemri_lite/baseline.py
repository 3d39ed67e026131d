"""The linear baseline: ridge regression / classification on downsampled voxels.

It is the yardstick Chapter 2 sets before any deep model: what a linear model on
coarse voxel intensities gets out of a cohort. It is *not* the ceiling: it sees
8 mm blocks, one linear weight per block, so it cannot follow small structures,
undo misregistration, or combine evidence nonlinearly.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from slicemri_lite.cohort import Cohort

__all__ = ["downsample_volumes", "linear_baseline", "TASKS"]

TASKS = ("age", "ad")
ALPHAS = np.logspace(-2, 6, 9)  # penalties tried; the smallest is already the minimum-norm fit


def downsample_volumes(volumes: np.ndarray, factor: int, batch: int = 32) -> np.ndarray:
    """Average-pool ``(N, X, Y, Z)`` volumes by ``factor`` per axis; returns ``(N, F)`` float32 features."""
    if factor <= 1:
        return np.asarray(volumes, dtype=np.float32).reshape(len(volumes), -1)
    chunks = []
    for start in range(0, len(volumes), batch):  # chunks keep a memory-mapped cohort on disk
        x = torch.from_numpy(np.asarray(volumes[start : start + batch], dtype=np.float32))
        pooled = F.avg_pool3d(x[:, None], factor, ceil_mode=True)
        chunks.append(pooled.flatten(1).numpy())
    return np.concatenate(chunks)


class _DualRidge:
    """Ridge regression solved through the ``(n, n)`` Gram matrix: cheap when voxels outnumber scans.

    One eigendecomposition gives the fit for every penalty, so cross-validating
    a grid of penalties costs about as much as one fit.
    """

    def __init__(self, features: np.ndarray, target: np.ndarray):
        self.x_mean = features.mean(0)
        self.y_mean = float(target.mean())
        self.centred = (features - self.x_mean).astype(np.float64)  # (n, F)
        self.eigvals, self.eigvecs = np.linalg.eigh(self.centred @ self.centred.T)  # (n,), (n, n)
        self.projected = self.eigvecs.T @ (target - self.y_mean)  # (n,)

    def dual(self, alpha: float) -> np.ndarray:
        """Dual coefficients ``(n,)``: the weights are ``centred.T @ dual``."""
        return self.eigvecs @ (self.projected / (np.clip(self.eigvals, 0, None) + alpha))

    def predict_all(self, features: np.ndarray, alphas) -> np.ndarray:
        """Predictions ``(len(alphas), m)`` for new rows ``features`` ``(m, F)``."""
        cross = (features - self.x_mean).astype(np.float64) @ self.centred.T  # (m, n)
        return np.stack([cross @ self.dual(a) + self.y_mean for a in alphas])


class _FittedRidge:
    """The chosen penalty refitted on all fitting rows; ``predict`` gives ``(m,)`` scores."""

    def __init__(self, features: np.ndarray, target: np.ndarray, alpha: float):
        solver = _DualRidge(features, target)
        self.alpha_ = alpha
        self.weights = solver.centred.T @ solver.dual(alpha)  # (F,)
        self.x_mean, self.y_mean = solver.x_mean, solver.y_mean

    def predict(self, features: np.ndarray) -> np.ndarray:
        return (features - self.x_mean) @ self.weights + self.y_mean


def _fit_ridge(
    features: np.ndarray, target: np.ndarray, groups: np.ndarray, classify: bool
) -> _FittedRidge:
    """Centre, then ridge with its penalty chosen by cross-validation over *participants*.

    Folds never split one participant's scans (leave-one-scan-out would pick a penalty
    that lets the model recognise people, the leak Chapter 2 warns about). For AD the
    target is +1 / -1 (a ridge classifier) and folds are scored by ROC AUC, for age by MAE.
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    n_folds = int(min(5, len(np.unique(groups)), np.bincount(target).min() if classify else 5))
    if n_folds < 2:
        raise ValueError(
            f"cross-validation needs at least 2 participants per class; {n_folds} fold(s) possible."
        )
    y = np.where(target == 1, 1.0, -1.0) if classify else target.astype(float)
    folds = (StratifiedGroupKFold(n_folds) if classify else GroupKFold(n_folds)).split(
        features, target, groups
    )
    scores = []
    for train, val in folds:
        predictions = _DualRidge(features[train], y[train]).predict_all(features[val], ALPHAS)
        if classify:
            scores.append([roc_auc_score(target[val], p) for p in predictions])
        else:
            scores.append([-np.abs(p - y[val]).mean() for p in predictions])
    best = float(ALPHAS[int(np.argmax(np.mean(scores, axis=0)))])
    return _FittedRidge(features, y, best)


def linear_baseline(
    cohort: Cohort,
    task: str = "age",
    voxel_mm: float = 8.0,
    fit_on=("train", "val"),
    score_on=("test",),
) -> dict:
    """Fit a ridge model on the ``fit_on`` splits and score it on the ``score_on`` splits.

    Volumes are averaged into ``voxel_mm`` blocks, centred (not scaled: every feature is
    an intensity already, and scaling would blow up blocks at the brain's edge that are
    almost always empty), and fed to
    ridge regression (age) or a ridge classifier (AD vs CN), whose penalty is chosen
    by 5-fold cross-validation over participants on the fitting rows.

    Returns:
        ``{"task", "mae" (years) or "auc", "n_fit", "n_test", "n_features", "alpha", "predictions"}``
        where ``predictions`` holds the scored rows' predicted age or decision score, in row order.
    """
    from sklearn.metrics import mean_absolute_error, roc_auc_score

    if task not in TASKS:
        raise ValueError(f"'task' must be one of {list(TASKS)}; {task!r} was provided.")
    resolution = float(abs(cohort.affine[1, 1]))
    features = downsample_volumes(cohort.volumes, max(1, int(round(voxel_mm / resolution))))
    split = cohort.table["split"].to_numpy()
    fit, test = np.isin(split, list(fit_on)), np.isin(split, list(score_on))
    if (fit & test).any():
        raise ValueError(
            f"'fit_on' {list(fit_on)} and 'score_on' {list(score_on)} must not share a split."
        )
    if task == "age":
        target = cohort.table["age"].to_numpy(dtype=float)
    else:
        target = (cohort.table["diagnosis"].to_numpy() == "AD").astype(int)
        if len(np.unique(target[fit])) < 2 or len(np.unique(target[test])) < 2:
            raise ValueError(
                "the AD baseline needs AD and CN participants in both the fitting and the scored rows; "
                f"fitting rows hold {sorted(set(target[fit].tolist()))}, scored rows "
                f"{sorted(set(target[test].tolist()))} (1 = AD)."
            )
    groups = cohort.table["participant_id"].to_numpy()[fit]
    model = _fit_ridge(features[fit], target[fit], groups, classify=task == "ad")
    if task == "age":
        predictions = model.predict(features[test])
        score = {"mae": float(mean_absolute_error(target[test], predictions))}
    else:
        predictions = model.predict(features[test])
        score = {"auc": float(roc_auc_score(target[test], predictions))}
    return {
        "task": task,
        **score,
        "n_fit": int(fit.sum()),
        "n_test": int(test.sum()),
        "n_features": features.shape[1],
        "alpha": model.alpha_,
        "predictions": predictions,
    }
