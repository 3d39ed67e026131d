"""Calibrated AD probabilities: expected calibration error, Brier score, and two recalibrations.

A model's AD probability is calibrated when, among participants given about 0.7, about
70 % have AD. The expected calibration error (ECE) is the gap between the two averaged
over probability bins, weighted by how many participants fall in each; the Brier score
is the mean squared error of the probability. Both recalibrations are fitted on the
validation split and judged on the test split:

- temperature scaling divides the model's logit by one number ``T`` (it keeps the
  ranking, so the ROC AUC is unchanged);
- isotonic regression maps scores to probabilities by a monotone step function (scikit-
  learn's ``IsotonicRegression``); it can fit a small validation split too closely.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import brier_score_loss

__all__ = [
    "RECALIBRATIONS",
    "calibration_summary",
    "expected_calibration_error",
    "fit_recalibration",
]

RECALIBRATIONS = ("none", "temperature", "isotonic")


def _binary(y) -> np.ndarray:
    y = np.asarray(y, dtype=float).ravel()
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 (CN) or 1 (AD).")
    return y


def _probabilities(p) -> np.ndarray:
    p = np.asarray(p, dtype=float).ravel()
    if not (np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()):
        raise ValueError("probabilities must be finite and within [0, 1].")
    return p


def expected_calibration_error(y, probability, bins: int = 10) -> float:
    """ECE over ``bins`` equal-width probability bins: the bins' shares times the absolute
    gap between the share of AD and the mean probability in each, summed."""
    y, p = _binary(y), _probabilities(probability)
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(which):
        inside = which == b
        total += inside.mean() * abs(y[inside].mean() - p[inside].mean())
    return float(total)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def fit_recalibration(method: str, val_probability, val_y):
    """A function ``probabilities -> recalibrated probabilities``, fitted on validation.

    ``method``: ``"none"``, ``"temperature"`` (one ``T``, by the validation log-loss) or
    ``"isotonic"``. The temperature is kept as the function's ``temperature`` attribute.
    """
    if method not in RECALIBRATIONS:
        raise ValueError(
            f"'method' must be one of {list(RECALIBRATIONS)}; {method!r} was provided."
        )
    p, y = _probabilities(val_probability), _binary(val_y)
    if len(np.unique(y)) < 2:
        raise ValueError("recalibration needs AD and CN participants in the validation split.")
    if method == "none":
        return lambda q: _probabilities(q)
    if method == "isotonic":
        iso = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(p, y)
        return lambda q: iso.predict(_probabilities(q))
    z = _logit(p)

    def log_loss(log_t: float) -> float:
        q = 1 / (1 + np.exp(-z / np.exp(log_t)))
        q = np.clip(q, 1e-12, 1 - 1e-12)
        return float(-(y * np.log(q) + (1 - y) * np.log(1 - q)).mean())

    temperature = float(np.exp(minimize_scalar(log_loss, bounds=(-4, 4), method="bounded").x))

    def scaled(q):
        return 1 / (1 + np.exp(-_logit(_probabilities(q)) / temperature))

    scaled.temperature = temperature
    return scaled


def calibration_summary(
    val: dict[str, tuple], test: dict[str, tuple], bins: int = 10, n_boot: int = 500, seed: int = 0
) -> pd.DataFrame:
    """ECE and Brier score on test, per model and recalibration (fitted on ``val``).

    Args:
        val, test: ``{model name: (y, probability)}`` for the validation and test splits
            (every model's test rows are the same participants).
        n_boot: bootstrap resamples of the test participants for the ECE's 95 % interval
            (the same resamples for every row).

    Returns:
        One row per (model, recalibration): ``ece`` with ``ece_low``/``ece_high``,
        ``brier`` and the ``temperature`` (NaN unless temperature scaling).
    """
    n_test = len(next(iter(test.values()))[0])
    draws = np.random.default_rng(seed).integers(0, n_test, size=(n_boot, n_test))
    rows = []
    for name, (val_y, val_p) in val.items():
        test_y, test_p = _binary(test[name][0]), test[name][1]
        for method in RECALIBRATIONS:
            recalibrate = fit_recalibration(method, val_p, val_y)
            q = recalibrate(test_p)
            boot = [expected_calibration_error(test_y[d], q[d], bins) for d in draws]
            rows.append(
                (name, method, expected_calibration_error(test_y, q, bins),
                 *np.quantile(boot, [0.025, 0.975]), brier_score_loss(test_y, q),
                 getattr(recalibrate, "temperature", np.nan))
            )  # fmt: skip
    columns = ["model", "recalibration", "ece", "ece_low", "ece_high", "brier", "temperature"]
    return pd.DataFrame(rows, columns=columns)
