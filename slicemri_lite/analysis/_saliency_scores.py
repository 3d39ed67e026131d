"""Scoring saliency against a known truth: masks from effect maps, three scores, intervals.

A synthetic cohort knows where its effects are (``cohort.effects["age"]``, ``["ad"]``), so an
attribution map can be *scored* rather than judged by eye. Every score looks only at the
voxels inside the brain, and at ``|attribution|`` (a method's sign conventions differ):

- ``auroc``: how well ``|attribution|`` ranks the mask's voxels above the rest (0.5 = chance,
  1 = every mask voxel above every other).
- ``mass_inside``: the share of ``|attribution|`` that falls inside the mask (the "weighting
  game"); chance is the mask's share of the brain's voxels.
- ``pointing``: 1 when the voxel with the largest ``|attribution|`` is inside the mask, else
  0 (the pointing game); chance is the mask's share of the brain's voxels.

``bootstrap_interval`` puts a percentile interval over participants on any of them.
``slice_mass`` spreads an effect (or an attribution) over the slices of one axis, to set
against a slice model's attention weights.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from slicemri_lite._core.geometry import slice_mass

__all__ = [
    "outside_share",
    "MASK_QUANTILE",
    "SCORES",
    "effect_mask",
    "auroc",
    "mass_inside",
    "pointing_game",
    "chance_levels",
    "score_map",
    "score_against_effect",
    "score_attributions",
    "bootstrap_interval",
    "summarise_scores",
    "map_similarity",
    "slice_mass",
    "slice_correlations",
]

# The planted-effect mask: voxels whose |effect| is in the top 5 % of the brain's voxels.
# Fixed here, before any attribution is scored.
MASK_QUANTILE = 0.95
SCORES = ("auroc", "mass_inside", "pointing")


def _check_same_grid(name: str, array: np.ndarray, brain: np.ndarray) -> None:
    if array.shape[-3:] != brain.shape:
        raise ValueError(
            f"{name!r} must be on the brain mask's grid {brain.shape}; {array.shape} was provided."
        )


def effect_mask(
    effect: np.ndarray, brain: np.ndarray, quantile: float = MASK_QUANTILE, exclude=None
):
    """Where an effect is strongest: ``|effect|`` above its ``quantile`` over brain voxels.

    Args:
        effect: ``(X, Y, Z)`` effect map (e.g. ``cohort.effects["ad"]``, or one
            participant's scan with its effect minus the same scan without it).
        brain: ``(X, Y, Z)`` bool brain mask; the mask never leaves it.
        quantile: in (0, 1); 0.95 keeps the strongest 5 % of the eligible brain voxels.
        exclude: optional ``(X, Y, Z)`` bool: voxels never in the mask (e.g. where ageing's
            effect is strongest, so that a map of ageing does not score as AD); the
            quantile is taken over the brain voxels outside it.

    Returns:
        ``(X, Y, Z)`` bool mask.
    """
    effect, brain = np.asarray(effect, dtype=np.float64), np.asarray(brain, dtype=bool)
    _check_same_grid("effect", effect, brain)
    if not 0 < quantile < 1:
        raise ValueError(f"'quantile' must be in (0, 1); {quantile!r} was provided.")
    eligible = brain
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=bool)
        _check_same_grid("exclude", exclude, brain)
        eligible = brain & ~exclude
    strength = np.abs(effect)
    threshold = np.quantile(strength[eligible], quantile)
    mask = eligible & (strength > threshold)
    if not mask.any():
        raise ValueError("the effect map is flat inside the brain: no voxel passes the threshold.")
    return mask


def auroc(attribution: np.ndarray, mask: np.ndarray, brain: np.ndarray) -> float:
    """ROC AUC of ``|attribution|`` for telling mask voxels from the other brain voxels.

    Ties count half (the Mann-Whitney statistic), so a constant map scores exactly 0.5.
    """
    values = np.abs(np.asarray(attribution, dtype=np.float64)[brain])
    inside = np.asarray(mask, dtype=bool)[brain]
    n_in, n_out = int(inside.sum()), int((~inside).sum())
    if n_in == 0 or n_out == 0:
        raise ValueError("the mask must hold some, but not all, of the brain's voxels.")
    ranks = rankdata(values)
    return float((ranks[inside].sum() - n_in * (n_in + 1) / 2) / (n_in * n_out))


def mass_inside(attribution: np.ndarray, mask: np.ndarray, brain: np.ndarray) -> float:
    """Share of the brain's ``|attribution|`` inside the mask (NaN for an all-zero map)."""
    values = np.abs(np.asarray(attribution, dtype=np.float64))
    total = values[brain].sum()
    return float(values[mask & brain].sum() / total) if total > 0 else float("nan")


def outside_share(attribution: np.ndarray, brain: np.ndarray) -> float:
    """Share of a map's absolute mass that lies outside the brain, in [0, 1].

    Every score above is taken inside the brain only, so mass outside it is invisible to
    them; a map that puts much of its mass there (the volume's edge, the background) is
    pointing at something other than anatomy.
    """
    _check_same_grid("attribution", attribution, brain)
    mass = np.abs(np.asarray(attribution, dtype=np.float64))
    total = mass.sum()
    return float(mass[~np.asarray(brain, dtype=bool)].sum() / total) if total > 0 else float("nan")


def pointing_game(attribution: np.ndarray, mask: np.ndarray, brain: np.ndarray) -> float:
    """1.0 when the brain voxel with the largest ``|attribution|`` is in the mask, else 0.0.

    Ties at the maximum count by the share of the tied voxels inside (so a constant map
    scores the mask's share of the brain, its chance level).
    """
    values = np.abs(np.asarray(attribution, dtype=np.float64)[brain])
    top = values == values.max()
    return float(np.asarray(mask, dtype=bool)[brain][top].mean())


def chance_levels(mask: np.ndarray, brain: np.ndarray) -> dict[str, float]:
    """What a map that knows nothing scores on average: ``{"auroc", "mass_inside", "pointing"}``."""
    share = float(np.asarray(mask, dtype=bool)[brain].mean())
    return {"auroc": 0.5, "mass_inside": share, "pointing": share}


def score_map(attribution: np.ndarray, mask: np.ndarray, brain: np.ndarray) -> dict[str, float]:
    """The three scores of one ``(X, Y, Z)`` attribution against one mask."""
    brain = np.asarray(brain, dtype=bool)
    _check_same_grid("attribution", np.asarray(attribution), brain)
    _check_same_grid("mask", np.asarray(mask), brain)
    mask = np.asarray(mask, dtype=bool) & brain
    return {
        "auroc": auroc(attribution, mask, brain),
        "mass_inside": mass_inside(attribution, mask, brain),
        "pointing": pointing_game(attribution, mask, brain),
    }


def score_against_effect(
    attribution: np.ndarray, effect: np.ndarray, brain: np.ndarray, quantile: float = MASK_QUANTILE
) -> dict[str, float]:
    """Score one participant's map against that participant's own effect map.

    ``effect`` is ``(X, Y, Z)``: the template-level map (``cohort.effects[task]``), or, with a
    generator that renders a participant with and without an effect, their difference.
    """
    return score_map(attribution, effect_mask(effect, brain, quantile), brain)


def score_attributions(
    attributions: np.ndarray, masks: np.ndarray, brain: np.ndarray
) -> pd.DataFrame:
    """Scores of ``(n, X, Y, Z)`` attributions: one row per map, columns ``SCORES``.

    Args:
        attributions: ``(n, X, Y, Z)``.
        masks: one ``(X, Y, Z)`` mask for every map, or ``(n, X, Y, Z)``: one per map.
        brain: ``(X, Y, Z)`` bool.
    """
    attributions, masks = np.asarray(attributions), np.asarray(masks, dtype=bool)
    if attributions.ndim != 4:
        raise ValueError(f"'attributions' must be (n, X, Y, Z); {attributions.shape} was provided.")
    if masks.ndim == 3:
        masks = np.broadcast_to(masks, attributions.shape)
    if masks.shape != attributions.shape:
        raise ValueError(
            f"'masks' must be (X, Y, Z) or {attributions.shape}; {masks.shape} was provided."
        )
    rows = [score_map(a, m, brain) for a, m in zip(attributions, masks, strict=True)]
    return pd.DataFrame(rows, columns=list(SCORES))


def bootstrap_interval(
    values, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float, float]:
    """Mean of ``values`` (one per participant) and a percentile bootstrap interval.

    Participants are resampled with replacement; non-finite values are dropped first.
    Returns ``(mean, low, high)``; with fewer than two values the bounds are NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(values.mean())
    if values.size < 2:
        return mean, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    draws = values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(axis=1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return mean, float(low), float(high)


def summarise_scores(
    scores: pd.DataFrame, by: list[str], n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Mean and bootstrap interval over participants of every score, per group of ``by``.

    Returns one row per group: the ``by`` columns, ``n``, and for each score ``<score>``,
    ``<score>_low``, ``<score>_high``.
    """
    rows = []
    for keys, group in scores.groupby(by, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        row = dict(zip(by, keys, strict=True), n=len(group))
        for score in SCORES:
            mean, low, high = bootstrap_interval(group[score], n_boot, seed)
            row.update({score: mean, f"{score}_low": low, f"{score}_high": high})
        rows.append(row)
    return pd.DataFrame(rows)


def map_similarity(a: np.ndarray, b: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of ``|a|`` and ``|b|`` over brain voxels, one per map.

    ``a``, ``b``: ``(n, X, Y, Z)`` (or ``(X, Y, Z)``). Adebayo et al.'s test: a map of a
    randomised model that still ranks voxels like the trained model's map does not depend
    on what the model learnt. Returns ``(n,)`` (NaN where a map is constant).
    """
    a, b = np.atleast_3d(np.asarray(a)), np.atleast_3d(np.asarray(b))
    a, b = a.reshape(-1, *brain.shape), b.reshape(-1, *brain.shape)
    ranks_a = np.stack([rankdata(np.abs(m[brain])) for m in a])
    ranks_b = np.stack([rankdata(np.abs(m[brain])) for m in b])
    return slice_correlations(ranks_a, ranks_b)


def slice_correlations(weights: np.ndarray, mass: np.ndarray) -> np.ndarray:
    """Pearson r between each row of ``weights`` ``(n, S)`` and the slice mass.

    ``mass`` is ``(S,)`` (one map for everyone) or ``(n, S)`` (one per participant).
    Returns ``(n,)``; NaN for a constant row.
    """
    weights = np.asarray(weights, dtype=np.float64)
    mass = np.broadcast_to(np.asarray(mass, dtype=np.float64), weights.shape)
    w = weights - weights.mean(axis=1, keepdims=True)
    m = mass - mass.mean(axis=1, keepdims=True)
    norm = np.sqrt((w**2).sum(axis=1) * (m**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, (w * m).sum(axis=1) / norm, np.nan)
