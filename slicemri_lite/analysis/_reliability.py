"""Test-retest reliability (pingouin's ICC) and a subgroup audit with the bootstrap.

Test-retest: the same participants scanned twice (new noise, bias field and
misregistration, the same anatomy). The intraclass correlation ICC(2,1) ("two-way
random effects, absolute agreement, single measurement", Koo & Li 2016) says how much
of the spread of a measure is between participants rather than between a participant's
scans; the within-participant SD says how far two scans of one brain lie apart, in the
measure's units.

Subgroup audit: a model's error and bias (mean signed error) in each group of a
grouping (sex, age decile, site), each against the rest of the participants, with
intervals from one shared bootstrap over participants (paired: every group and its
rest are resampled together).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

__all__ = ["subgroup_audit", "test_retest"]


def test_retest(
    table: pd.DataFrame, value: str, participant="participant_id", session="session"
) -> dict:
    """ICC(2,1) with its 95 % interval, and the within-participant SD, of ``value``.

    Args:
        table: one row per scan, with ``participant``, ``session`` and ``value`` columns;
            every participant needs the same number (two or more) of sessions.

    Returns:
        ``{"icc", "icc_low", "icc_high", "within_sd", "n_participants", "n_sessions"}``.
    """
    import pingouin as pg

    missing = [c for c in (participant, session, value) if c not in table.columns]
    if missing:
        raise ValueError(
            f"the table has no column(s) {missing}; its columns are {list(table.columns)}."
        )
    counts = table.groupby(participant)[session].nunique()
    if counts.min() < 2 or counts.nunique() != 1:
        raise ValueError(
            "every participant needs the same number (two or more) of sessions; found "
            f"{sorted(counts.unique().tolist())} (e.g. {counts.idxmin()!r} has {counts.min()})."
        )
    with warnings.catch_warnings():  # pingouin's own use of deprecated pandas keywords
        warnings.simplefilter("ignore")
        icc = pg.intraclass_corr(table, targets=participant, raters=session, ratings=value)
    by_type = icc.set_index("Type")
    row = by_type.loc["ICC(A,1)" if "ICC(A,1)" in by_type.index else "ICC2"]  # pingouin >= 0.7
    low, high = (float(v) for v in row["CI95"])
    within = table.groupby(participant)[value].var(ddof=1).mean() ** 0.5
    return {
        "icc": float(row["ICC"]),
        "icc_low": low,
        "icc_high": high,
        "within_sd": float(within),
        "n_participants": int(len(counts)),
        "n_sessions": int(counts.iloc[0]),
    }


def subgroup_audit(
    error, groups: dict[str, np.ndarray], n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """MAE and mean signed error per group, and each group minus the rest, with 95 % intervals.

    Args:
        error: ``(n,)`` signed errors (predicted minus true, e.g. the bias-corrected gap).
        groups: ``{grouping: (n,) labels}``, e.g. ``{"sex": ..., "age decile": ...}``.

    Returns:
        One row per (grouping, group): ``n``, ``mae``, ``bias``, ``mae_vs_rest`` and
        ``bias_vs_rest`` with ``_low``/``_high`` percentile bounds.
    """
    error = np.asarray(error, dtype=float)
    if not np.isfinite(error).all():
        raise ValueError("'error' holds NaN or infinite values.")
    draws = np.random.default_rng(seed).integers(0, len(error), size=(n_boot, len(error)))
    rows = []
    for grouping, labels in groups.items():
        labels = np.asarray(labels)
        if len(labels) != len(error):
            raise ValueError(
                f"groups[{grouping!r}] has {len(labels)} labels for {len(error)} errors."
            )
        for group in pd.unique(labels):
            inside = labels == group
            if inside.all():
                continue
            stats = [_group_stats(error, inside)]
            boot = np.array([_group_stats(error[d], inside[d]) for d in draws])
            low, high = np.nanquantile(boot, [0.025, 0.975], axis=0)
            rows.append((grouping, group, int(inside.sum()), *stats[0], *low[2:], *high[2:]))
    columns = ["grouping", "group", "n", "mae", "bias", "mae_vs_rest", "bias_vs_rest",
               "mae_vs_rest_low", "bias_vs_rest_low", "mae_vs_rest_high", "bias_vs_rest_high"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def _group_stats(error: np.ndarray, inside: np.ndarray) -> tuple[float, float, float, float]:
    """MAE, bias, and their differences from the rest (NaN when a side is empty)."""
    if not inside.any() or inside.all():
        return (np.nan,) * 4
    a, b = error[inside], error[~inside]
    mae, bias = np.abs(a).mean(), a.mean()
    return mae, bias, mae - np.abs(b).mean(), bias - b.mean()
