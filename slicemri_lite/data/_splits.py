"""Subject-level train / validation / test splits, stratified on diagnosis and age."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["split_subjects"]


def _even_picks(n: int, k: int, phase: float) -> np.ndarray:
    """``k`` of ``n`` ordered positions, evenly spread (systematic sampling): ``(n,)`` bool."""
    picks = np.zeros(n, dtype=bool)
    if k > 0:
        positions = np.floor((np.arange(k) + phase) * n / k).astype(int)
        picks[np.clip(positions, 0, n - 1)] = True
    return picks


def split_subjects(
    table: pd.DataFrame, val: float = 0.15, test: float = 0.15, seed: int = 0, n_age_bins: int = 10
) -> pd.DataFrame:
    """Return a copy of ``table`` with a ``split`` column: "train", "val" or "test".

    Splits are made per participant, so repeat scans of one person never straddle two
    splits. Participants are ordered by diagnosis, then age bin, then at random (under
    ``seed``), and the validation and test participants are taken at evenly spaced
    positions along that order: each split gets its share of every diagnosis and age
    range. ``round(test * P)`` of the ``P`` participants go to test and
    ``round(val * P)`` to validation.

    Args:
        table: one row per volume with ``participant_id``, ``age`` and ``diagnosis``.
        val, test: fractions of participants (each in [0, 1), together below 1).
        seed: the random order within strata; same seed, same split.
        n_age_bins: age quantile bins used for stratification.
    """
    for name, frac in (("val", val), ("test", test)):
        if not 0 <= frac < 1:
            raise ValueError(f"'{name}' must be a fraction in [0, 1); {frac!r} was provided.")
    if val + test >= 1:
        raise ValueError(
            f"'val' + 'test' must be below 1 so that some participants train; {val} + {test} was provided."
        )
    missing = [c for c in ("participant_id", "age", "diagnosis") if c not in table.columns]
    if missing:
        raise ValueError(
            f"the table lacks the columns {missing} that split_subjects needs; it has {list(table.columns)}."
        )

    people = table.groupby("participant_id", sort=True).agg(
        age=("age", "mean"), diagnosis=("diagnosis", "first")
    )
    n = len(people)
    rng = np.random.default_rng(seed)
    n_bins = max(1, min(n_age_bins, n // 8))
    age_bin = pd.qcut(people["age"].rank(method="first"), n_bins, labels=False) if n_bins > 1 else 0
    order = people.assign(age_bin=age_bin, tie=rng.permutation(n)).sort_values(
        ["diagnosis", "age_bin", "tie"]
    )

    n_test, n_val = round(test * n), round(val * n)
    is_test = _even_picks(n, n_test, rng.uniform())
    rest = np.flatnonzero(~is_test)
    is_val = np.zeros(n, dtype=bool)
    is_val[rest[_even_picks(len(rest), n_val, rng.uniform())]] = True
    split = np.where(is_test, "test", np.where(is_val, "val", "train"))

    assignment = dict(zip(order.index, split.tolist(), strict=True))
    out = table.copy()
    out["split"] = out["participant_id"].map(assignment)
    return out
