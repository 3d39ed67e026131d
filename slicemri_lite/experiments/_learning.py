"""Did a run learn? The one check every chapter applies before a run gets a verdict.

A run *did not learn* what it was trained for when

- its test predictions are **flat** (brain age): in some seed their spread (standard
  deviation) is under ``FLAT_RATIO`` times the spread of the true test ages, so it predicts
  about one age for everyone, whatever its MAE; or
- it does **not beat the baseline beyond noise**: the training mean for brain age, age
  alone for AD. The paired bootstrap over participants and seeds (``paired_bootstrap``)
  gives the difference's 95% interval; a run learned only if the interval lies wholly on
  its better side.

Such a run is shown with its reason and left out of verdicts: comparing two models that
did not learn compares noise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from slicemri_lite._core.validation import check_choice
from slicemri_lite.experiments._compare import BOOTSTRAP_METRICS, paired_bootstrap
from slicemri_lite.experiments._tables import run_labels

__all__ = ["FLAT_RATIO", "BASELINES", "learning_check", "learned_labels"]

FLAT_RATIO = 0.25  # predictions spread under a quarter of the ages' spread: flat
BASELINES = {"mae": "mean", "rmse": "mean", "auc": "age_only"}  # what a run must beat
COLUMNS = ["label", "train_size", "n_seeds", "spread_ratio", "baseline", "difference",
           "ci_low", "ci_high", "learned", "reason"]  # fmt: skip


def _spread_ratio(rows: pd.DataFrame) -> float:
    """The smallest, over seeds, of (predictions' SD) / (true ages' SD) on the test rows."""
    spreads = rows.groupby("seed").agg(predicted=("predicted", "std"), age=("age", "std"))
    return float((spreads["predicted"] / spreads["age"]).min())


def _reason(spread: float, row: pd.Series | None, metric: str, flat_ratio: float) -> str:
    """Why a run did not learn ('' if it did)."""
    if np.isfinite(spread) and spread < flat_ratio:
        return f"flat: its predictions spread {spread:.2f} times the true ages'"
    if row is None:
        return "no run of the baseline with the same seeds to compare with"
    low, high = row["ci_low"], row["ci_high"]
    if not (np.isfinite(low) and np.isfinite(high)):
        return "too few seeds and participants for an interval against the baseline"
    better = high < 0 if metric in ("mae", "rmse") else low > 0
    if better:
        return ""
    what = metric.upper()
    return (f"does not beat {row['b']} beyond noise ({what} difference {row['difference']:+.2f}, "
            f"95% CI {low:+.2f} to {high:+.2f})")  # fmt: skip


def learning_check(
    predictions: pd.DataFrame,
    metric: str = "mae",
    baseline: str | None = None,
    flat_ratio: float = FLAT_RATIO,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Which runs of a predictions table learned, and why the others did not.

    Args:
        predictions: a grid's predictions table (run keys, ``participant_id``, ``age``,
            ``predicted``; ``diagnosis`` for AD), test rows only, one design (age-matched or
            not).
        metric: ``"mae"`` or ``"rmse"`` (brain age) or ``"auc"`` (AD).
        baseline: the run label to beat; default ``BASELINES[metric]`` (``"mean"`` or
            ``"age_only"``).
        flat_ratio: the flat-prediction threshold (brain age only: an AD score has no
            spread to compare with).
        n_boot, seed: the paired bootstrap's draws and seed.

    Returns:
        One row per run label (the baseline's excepted) and training size: ``n_seeds``,
        ``spread_ratio`` (NaN for AD), the ``difference`` from the baseline with its 95%
        interval, ``learned`` (bool) and ``reason`` ('' when it learned).
    """
    check_choice("metric", metric, BOOTSTRAP_METRICS)
    baseline = BASELINES[metric] if baseline is None else baseline
    labels = run_labels(predictions)
    if not (labels == baseline).any():
        raise ValueError(
            f"the predictions hold no {baseline!r} run to compare with; "
            f"their runs are {sorted(set(labels))}."
        )
    rows = []
    for label in dict.fromkeys(labels):
        if label == baseline:
            continue
        pair = predictions[labels.isin([label, baseline])]
        versus = paired_bootstrap(pair, label, baseline, metric, n_boot, seed).set_index(
            "train_size"
        )
        mine = predictions[labels == label]
        for size, at_size in mine.groupby("train_size", sort=True):
            spread = _spread_ratio(at_size) if metric != "auc" else float("nan")
            row = versus.loc[size] if size in versus.index else None
            reason = _reason(spread, row, metric, flat_ratio)
            values = [row[k] if row is not None else np.nan
                      for k in ("difference", "ci_low", "ci_high")]  # fmt: skip
            rows.append([label, size, at_size["seed"].nunique(), spread, baseline, *values,
                         reason == "", reason])  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def learned_labels(check: pd.DataFrame) -> list[str]:
    """The run labels that learned at every training size they ran at."""
    every = check.groupby("label", sort=False)["learned"].all()
    return list(every[every].index)
