"""Intervals for brain age: split-conformal intervals (MAPIE) around any model's predictions.

A split-conformal interval needs only the model's predictions: on a calibration split
(never trained on) the absolute errors give a quantile ``q``, and every new prediction
gets ``[prediction - q, prediction + q]``. If calibration and new participants are
exchangeable, the interval holds the true age for at least the nominal share of them
(marginal coverage); nothing promises it in every subgroup. MAPIE computes it; the
model's predictions reach MAPIE through a regressor that returns
what it is given, so the book's torch models need no scikit-learn wrapper.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin

__all__ = [
    "CONFORMAL_LEVELS",
    "calibration_size_effect",
    "conformal_intervals",
    "coverage_table",
]

CONFORMAL_LEVELS = (0.8, 0.9, 0.95)


class _FixedPredictions(RegressorMixin, BaseEstimator):
    """A "regressor" whose input is already the prediction: ``(n, 1)`` -> ``(n,)``.

    It lets MAPIE conformalise predictions made elsewhere (a torch model, a kept run).
    """

    def fit(self, x, y=None):  # noqa: D102 - nothing to learn
        self.n_features_in_ = 1
        return self

    def predict(self, x) -> np.ndarray:  # noqa: D102
        return np.asarray(x, dtype=float).reshape(len(x), -1)[:, 0]


def _checked(name: str, values) -> np.ndarray:
    values = np.asarray(values, dtype=float).ravel()
    if not np.isfinite(values).all():
        raise ValueError(f"'{name}' holds NaN or infinite values; drop those rows first.")
    return values


def conformal_intervals(
    calibration_predicted,
    calibration_true,
    predicted,
    levels=CONFORMAL_LEVELS,
) -> dict[float, np.ndarray]:
    """Split-conformal intervals for ``predicted`` at each nominal coverage in ``levels``.

    Args:
        calibration_predicted, calibration_true: ``(m,)`` predictions and true values on
            a calibration split the model never trained on.
        predicted: ``(n,)`` predictions to put intervals around.
        levels: nominal coverages, e.g. ``(0.8, 0.9, 0.95)``.

    Returns:
        ``{level: (n, 2)}`` lower and upper bounds.
    """
    from mapie.regression import SplitConformalRegressor

    cal_p = _checked("calibration_predicted", calibration_predicted)
    cal_y = _checked("calibration_true", calibration_true)
    new_p = _checked("predicted", predicted)
    if len(cal_p) != len(cal_y):
        raise ValueError(
            f"calibration_predicted has {len(cal_p)} values and calibration_true {len(cal_y)}."
        )
    levels = [float(level) for level in levels]
    # a finite interval needs more than 1 / (1 - level) calibration values (MAPIE's rule)
    too_few = [lv for lv in levels if len(cal_p) <= max(1 / (1 - lv), 1 / lv)]
    if too_few:
        need = int(np.floor(max(1 / (1 - too_few[0]), 1 / too_few[0]))) + 1
        raise ValueError(
            f"{len(cal_p)} calibration values cannot give a {too_few[0]:.0%} interval (it needs "
            f"at least {need}); use more calibration rows."
        )
    if len(new_p) == 0:  # nothing to put an interval around
        return {level: np.zeros((0, 2)) for level in levels}
    regressor = SplitConformalRegressor(
        _FixedPredictions().fit(cal_p[:1, None]), confidence_level=levels, prefit=True
    )
    regressor.conformalize(cal_p[:, None], cal_y)
    _, bounds = regressor.predict_interval(new_p[:, None])  # (n, 2, len(levels))
    return {level: bounds[:, :, k] for k, level in enumerate(levels)}


def coverage_table(true, intervals: dict[float, np.ndarray], groups=None) -> pd.DataFrame:
    """Coverage and mean width per nominal level, overall and per group.

    Args:
        true: ``(n,)`` true values.
        intervals: ``conformal_intervals``' output for the same rows.
        groups: optional ``{name: (n,) labels}``, e.g. ``{"sex": ..., "age decile": ...}``.

    Returns:
        One row per (grouping, group, level): ``n``, ``coverage``, ``width``.
    """
    true = _checked("true", true)
    groupings = {"all": np.full(len(true), "all", dtype=object), **(groups or {})}
    rows = []
    for grouping, labels in groupings.items():
        labels = np.asarray(labels)
        for group in pd.unique(labels):
            inside = labels == group
            for level, bounds in intervals.items():
                low, high = bounds[inside, 0], bounds[inside, 1]
                covered = (true[inside] >= low) & (true[inside] <= high)
                rows.append(
                    (grouping, group, level, int(inside.sum()), covered.mean(), (high - low).mean())
                )
    return pd.DataFrame(rows, columns=["grouping", "group", "level", "n", "coverage", "width"])


def calibration_size_effect(
    predicted, true, sizes, level: float = 0.9, repeats: int = 200, seed: int = 0
) -> pd.DataFrame:
    """What the calibration split's size does to coverage: repeated random halves.

    Each repeat draws ``size`` rows to calibrate on and scores coverage on all the rows
    not drawn. Returns one row per size: the mean coverage, its 5th and 95th percentiles
    over repeats, and the share of repeats under the nominal level by more than 0.05.
    """
    predicted, true = _checked("predicted", predicted), _checked("true", true)
    rng = np.random.default_rng(seed)
    rows = []
    for size in sizes:
        if not 0 < size < len(true):
            raise ValueError(f"a calibration size must be in [1, {len(true)}); {size} was given.")
        coverages = []
        for _ in range(repeats):
            drawn = np.zeros(len(true), dtype=bool)
            drawn[rng.choice(len(true), size, replace=False)] = True
            bounds = conformal_intervals(predicted[drawn], true[drawn], predicted[~drawn], [level])[
                level
            ]
            rest = true[~drawn]
            coverages.append(((rest >= bounds[:, 0]) & (rest <= bounds[:, 1])).mean())
        coverages = np.asarray(coverages)
        rows.append(
            (int(size), coverages.mean(), *np.quantile(coverages, [0.05, 0.95]),
             float((coverages < level - 0.05).mean()))
        )  # fmt: skip
    columns = ["calibration_size", "coverage", "p5", "p95", "share_below_by_0.05"]
    return pd.DataFrame(rows, columns=columns)
