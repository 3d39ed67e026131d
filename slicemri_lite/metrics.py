"""Scores every model in the book is judged by.

- age: mean absolute error and root mean squared error (years), Pearson r;
- Alzheimer's disease: ROC AUC and balanced accuracy.
"""

from __future__ import annotations

import numpy as np

__all__ = ["age_metrics", "ad_metrics", "run_metrics"]


def age_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Mean absolute error, root mean squared error (years) and Pearson r.

    ``r`` is NaN when either side is constant (e.g. the mean baseline), as it is undefined.
    """
    y_true = np.asarray(y_true, dtype=float).ravel()
    y_pred = np.asarray(y_pred, dtype=float).ravel()
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(
            f"'y_true' and 'y_pred' must be non-empty and the same length; "
            f"got {y_true.size} and {y_pred.size}."
        )
    error = y_pred - y_true
    constant = np.ptp(y_true) == 0 or np.ptp(y_pred) == 0
    r = float("nan") if constant else float(np.corrcoef(y_true, y_pred)[0, 1])
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "r": r,
    }


def ad_metrics(is_ad: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """ROC AUC and balanced accuracy (threshold 0.5); AUC is NaN when one class is absent."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    is_ad, probability = np.asarray(is_ad, int), np.asarray(probability, float)
    both = len(np.unique(is_ad)) == 2
    return {
        "auc": float(roc_auc_score(is_ad, probability)) if both else np.nan,
        "balanced_accuracy": float(balanced_accuracy_score(is_ad, probability >= 0.5)),
    }


def run_metrics(task: str, y_val, predicted_val, y_test, predicted_test) -> dict[str, float]:
    """A run's test metrics: ``age_metrics`` for age; for AD, ``ad_metrics`` on the test
    split (its decision threshold is not tuned on test)."""
    if task == "age":
        return age_metrics(y_test, predicted_test)
    return ad_metrics(y_test, predicted_test)
