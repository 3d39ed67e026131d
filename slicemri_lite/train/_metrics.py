"""Scores every model in the book is judged by.

- age: mean absolute error and root mean squared error (years), Pearson r;
  ``AgeBiasCorrection`` removes the brain-age gap's dependence on age (regression to the
  mean), fitted on one set of participants and applied to another.
- Alzheimer's disease (AD, 1) against cognitively normal (CN, 0): ROC AUC and PR AUC
  (threshold-free); balanced accuracy, sensitivity and specificity at a decision
  threshold; the Brier score of probabilities; a calibration curve and a confusion
  matrix. ``run_metrics`` chooses the threshold on the validation split
  (``choose_threshold``) and scores the test split with it: a threshold tuned on test
  would flatter every model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from slicemri_lite._core.validation import check_choice

__all__ = [
    "AD_METRICS",
    "AgeBiasCorrection",
    "ad_metrics",
    "age_metrics",
    "calibration_curve",
    "choose_threshold",
    "cohens_d",
    "confusion_matrix",
    "run_metrics",
]

AD_METRICS = (
    "auc",
    "pr_auc",
    "balanced_accuracy",
    "sensitivity",
    "specificity",
    "threshold",
    "brier",
)


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


def _labels_and_scores(is_ad, score) -> tuple[np.ndarray, np.ndarray]:
    is_ad = np.asarray(is_ad, dtype=float).ravel()
    score = np.asarray(score, dtype=float).ravel()
    if is_ad.shape != score.shape or is_ad.size == 0:
        raise ValueError(
            f"'is_ad' and the scores must be non-empty and the same length; "
            f"got {is_ad.size} and {score.size}."
        )
    if not np.isin(is_ad, (0, 1)).all():
        raise ValueError("'is_ad' must hold 0 (CN) and 1 (AD) only.")
    return is_ad.astype(int), score


def _is_probability(score: np.ndarray) -> bool:
    return bool(np.all((score >= 0) & (score <= 1)))


def ad_metrics(is_ad, score, threshold: float = 0.5) -> dict[str, float]:
    """AD scores of ``(n,)`` predictions against ``(n,)`` labels (1 = AD, 0 = CN).

    Args:
        is_ad: 1 for AD, 0 for CN.
        score: higher means more AD-like: a probability, or any decision score.
        threshold: predict AD where ``score >= threshold`` (``run_metrics`` picks it on
            validation). NaN leaves the threshold metrics NaN.

    Returns:
        ``auc`` (ROC), ``pr_auc`` (average precision), ``balanced_accuracy``,
        ``sensitivity`` (AD found), ``specificity`` (CN cleared), ``threshold`` and
        ``brier`` (mean squared error of probabilities; NaN for scores outside [0, 1]).
        AUCs are NaN when one class is absent, as is the rate of the absent class.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    is_ad, score = _labels_and_scores(is_ad, score)
    both = len(np.unique(is_ad)) == 2
    ad, cn = is_ad == 1, is_ad == 0
    called = score >= threshold
    sensitivity = float(called[ad].mean()) if ad.any() and np.isfinite(threshold) else np.nan
    specificity = float((~called[cn]).mean()) if cn.any() and np.isfinite(threshold) else np.nan
    rates = [r for r in (sensitivity, specificity) if np.isfinite(r)]
    return {
        "auc": float(roc_auc_score(is_ad, score)) if both else np.nan,
        "pr_auc": float(average_precision_score(is_ad, score)) if both else np.nan,
        "balanced_accuracy": float(np.mean(rates)) if rates else np.nan,
        "sensitivity": sensitivity,
        "specificity": specificity,
        "threshold": float(threshold),
        "brier": float(np.mean((score - is_ad) ** 2)) if _is_probability(score) else np.nan,
    }


def choose_threshold(is_ad, score) -> float:
    """The decision threshold with the highest balanced accuracy on these (validation) rows.

    Candidates lie halfway between consecutive distinct scores (and just outside their
    range); among equally good ones the middle one is taken. Call it on the validation
    split and apply the result to test: never choose it on the rows you report.

    Returns:
        The threshold (predict AD where ``score >= threshold``); NaN when a class is absent.
    """
    is_ad, score = _labels_and_scores(is_ad, score)
    if len(np.unique(is_ad)) < 2:
        return float("nan")
    values = np.unique(score)
    candidates = np.concatenate([[values[0] - 1], (values[1:] + values[:-1]) / 2, [values[-1] + 1]])
    called = score[None, :] >= candidates[:, None]  # (C, n)
    sensitivity = called[:, is_ad == 1].mean(axis=1)
    specificity = (~called[:, is_ad == 0]).mean(axis=1)
    balanced = (sensitivity + specificity) / 2
    best = np.flatnonzero(np.isclose(balanced, balanced.max()))
    return float(candidates[best[len(best) // 2]])


def run_metrics(task: str, y_val, predicted_val, y_test, predicted_test) -> dict[str, float]:
    """A run's test metrics: ``age_metrics`` for age; for AD, ``ad_metrics`` on the test
    split at the threshold ``choose_threshold`` picks on the validation split, plus
    ``val_auc`` (for choices made on validation, such as the slicing axis)."""
    check_choice("task", task, ("age", "ad"))
    if task == "age":
        return age_metrics(y_test, predicted_test)
    threshold = choose_threshold(y_val, predicted_val)
    scores = ad_metrics(y_test, predicted_test, threshold)
    scores["val_auc"] = ad_metrics(y_val, predicted_val)["auc"]
    return scores


def confusion_matrix(is_ad, score, threshold: float) -> pd.DataFrame:
    """Counts of true (rows) against predicted (columns) diagnosis, "CN" and "AD"."""
    is_ad, score = _labels_and_scores(is_ad, score)
    called = (score >= threshold).astype(int)
    counts = [[int(((is_ad == t) & (called == p)).sum()) for p in (0, 1)] for t in (0, 1)]
    return pd.DataFrame(
        counts,
        index=pd.Index(["CN", "AD"], name="true"),
        columns=pd.Index(["CN", "AD"], name="predicted"),
    )


def calibration_curve(is_ad, probability, n_bins: int = 5) -> pd.DataFrame:
    """Observed AD share against mean predicted probability in equal-width bins of [0, 1].

    Returns:
        One row per non-empty bin: ``low``, ``high`` (the bin), ``n``, ``predicted`` (mean
        probability) and ``observed`` (share of AD). A calibrated model lies on the diagonal.
    """
    is_ad, probability = _labels_and_scores(is_ad, probability)
    if not _is_probability(probability):
        raise ValueError("a calibration curve needs probabilities in [0, 1]; got other scores.")
    edges = np.linspace(0, 1, n_bins + 1)
    bins = np.clip(np.digitize(probability, edges[1:-1]), 0, n_bins - 1)
    rows = [
        {"low": edges[b], "high": edges[b + 1], "n": int((bins == b).sum()),
         "predicted": float(probability[bins == b].mean()),
         "observed": float(is_ad[bins == b].mean())}
        for b in range(n_bins) if (bins == b).any()
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["low", "high", "n", "predicted", "observed"])


def cohens_d(a, b) -> float:
    """Standardised mean difference ``(mean(a) - mean(b)) / pooled sd`` (Cohen's d); NaN
    when both groups are constant (no spread to scale by)."""
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    if a.size < 2 or b.size < 2:
        raise ValueError(f"each group needs at least 2 values; got {a.size} and {b.size}.")
    pooled = ((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2)
    if pooled == 0:
        return float("nan")
    return float((a.mean() - b.mean()) / np.sqrt(pooled))


@dataclass
class AgeBiasCorrection:
    """Remove the brain-age gap's dependence on age (its regression to the mean).

    An age model shrinks its predictions toward the training mean: the old are
    predicted younger, the young older, so the gap ``predicted - age`` falls with age
    even for healthy people. The correction is fitted on one set of participants
    (healthy validation participants) and applied to others, never fitted on the rows
    it is judged on.

    Args:
        method: ``"linear"`` (de Lange & Cole 2020): fit ``predicted = a * age + b`` and
            return ``(predicted - b) / a``; ``"offset"`` (Beheshti et al. 2019): fit
            ``predicted - age = alpha * age + beta`` and return
            ``predicted - (alpha * age + beta)``.

    Both use the true age of the participant being corrected, so the corrected ages are
    no longer a prediction from the scan alone: a corrected MAE or r flatters any model.
    """

    method: str = "linear"
    slope_: float = float("nan")
    intercept_: float = float("nan")

    def __post_init__(self):
        check_choice("method", self.method, ("linear", "offset"))

    def fit(self, age, predicted) -> AgeBiasCorrection:
        """Fit on ``(n,)`` true and predicted ages (years) of the correction set."""
        age, predicted = self._check(age, predicted)
        if age.size < 2 or np.ptp(age) == 0:
            raise ValueError("the bias correction needs at least 2 participants of different ages.")
        target = predicted if self.method == "linear" else predicted - age
        self.slope_, self.intercept_ = (float(v) for v in np.polyfit(age, target, 1))
        if self.method == "linear" and abs(self.slope_) < 1e-6:
            raise ValueError(
                "the predicted ages do not change with age (slope ~0): the linear correction "
                "would divide by zero; the model has learnt no age."
            )
        return self

    def transform(self, age, predicted) -> np.ndarray:
        """Bias-corrected predicted ages ``(n,)`` (years) of other participants."""
        if not np.isfinite(self.slope_):
            raise ValueError("this AgeBiasCorrection is not fitted yet: call .fit(age, predicted).")
        age, predicted = self._check(age, predicted)
        if self.method == "linear":
            return (predicted - self.intercept_) / self.slope_
        return predicted - (self.slope_ * age + self.intercept_)

    def gap(self, age, predicted) -> np.ndarray:
        """The corrected brain-age gap ``transform(age, predicted) - age`` (years)."""
        return self.transform(age, predicted) - np.asarray(age, float).ravel()

    @staticmethod
    def _check(age, predicted) -> tuple[np.ndarray, np.ndarray]:
        age, predicted = np.asarray(age, float).ravel(), np.asarray(predicted, float).ravel()
        if age.shape != predicted.shape:
            raise ValueError(
                f"'age' and 'predicted' differ in length: {age.size}, {predicted.size}."
            )
        return age, predicted
