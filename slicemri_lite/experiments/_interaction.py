"""Does a difference between two models change with the training-set size?

``paired_bootstrap`` puts an interval on "A minus B" at each training-set size. Whether
that difference *grows* as the training set shrinks is another question, and two
overlapping intervals do not answer it: the answer is the **difference of the
differences**, (A - B at the small size) - (A - B at the large size), with an interval of
its own. The test participants are the same at every size (the training sets are nested
subsets that keep the validation and test splits), so one draw of participants and seeds
serves both sizes, and the noise the two differences share cancels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from slicemri_lite._core.validation import check_choice
from slicemri_lite.experiments._compare import (
    _check_one_design,
    _error_matrix,
    _weighted_difference,
)
from slicemri_lite.experiments._tables import LOWER_IS_BETTER

__all__ = ["difference_of_differences"]


def _matrices(predictions: pd.DataFrame, a: str, b: str, sizes) -> list[np.ndarray] | None:
    """``(seeds, participants)`` errors of a and b at each size, on the seeds and
    participants all four share; ``None`` if they share none."""
    frames = [_error_matrix(predictions, label, size) for size in sizes for label in (a, b)]
    seeds = frames[0].index
    people = frames[0].columns
    for frame in frames[1:]:
        seeds, people = seeds.intersection(frame.index), people.intersection(frame.columns)
    if len(seeds) == 0 or len(people) == 0:
        return None
    return [frame.loc[seeds, people].to_numpy() for frame in frames]


def difference_of_differences(
    predictions: pd.DataFrame,
    a: str,
    b: str,
    small: int,
    large: int,
    metric: str = "mae",
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """(a - b at ``small`` training subjects) - (a - b at ``large``), with a 95% interval.

    Args:
        predictions: a grid's predictions table (run keys, ``participant_id``, ``age``,
            ``predicted``), one design.
        a, b: run labels; ``small``, ``large``: two training-set sizes both ran at.
        metric: ``"mae"`` or ``"rmse"`` (years).
        n_boot, seed: bootstrap draws over participants and seeds, and their seed.

    Returns:
        ``a``, ``b``, ``small``, ``large``, ``n_pairs`` (seeds), ``n_participants``,
        ``at_small`` and ``at_large`` (a - b at each size), ``difference`` (at_small -
        at_large: negative when a's advantage in error is larger with fewer subjects),
        ``ci_low``, ``ci_high`` and ``verdict``: "favours a more with fewer subjects"
        (the interval below zero), "favours a less with fewer subjects" (above zero),
        "within noise" or "too few seeds".
    """
    check_choice("metric", metric, LOWER_IS_BETTER)
    _check_one_design(predictions)
    found = _matrices(predictions, a, b, (small, large))
    if found is None:
        raise ValueError(
            f"{a!r} and {b!r} share no seed and test participant at both {small} and "
            f"{large} training subjects."
        )
    a_small, b_small, a_large, b_large = found
    (k, n) = a_small.shape
    rng = np.random.default_rng(seed)
    w = rng.multinomial(n, np.full(n, 1 / n), size=n_boot) / n  # (B, n) participants
    v = rng.multinomial(k, np.full(k, 1 / k), size=n_boot) / k  # (B, k) seeds
    draws = _weighted_difference(a_small, b_small, metric, w, v) - _weighted_difference(
        a_large, b_large, metric, w, v
    )
    uniform_w, uniform_v = np.full((1, n), 1 / n), np.full((1, k), 1 / k)
    at_small = float(_weighted_difference(a_small, b_small, metric, uniform_w, uniform_v)[0])
    at_large = float(_weighted_difference(a_large, b_large, metric, uniform_w, uniform_v)[0])
    low, high = np.percentile(draws, [2.5, 97.5]) if n > 1 else (np.nan, np.nan)
    return {"a": a, "b": b, "small": small, "large": large, "n_pairs": k,
            "n_participants": n, "at_small": at_small, "at_large": at_large,
            "difference": at_small - at_large, "ci_low": float(low), "ci_high": float(high),
            "verdict": _trend(low, high)}  # fmt: skip


def _trend(low: float, high: float) -> str:
    """What the interval says of (a - b small) - (a - b large), in errors (lower: a better)."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "too few seeds"
    if high < 0:
        return "favours a more with fewer subjects"
    if low > 0:
        return "favours a less with fewer subjects"
    return "within noise"
