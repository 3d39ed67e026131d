"""Comparing runs: means with 95% intervals, paired differences and the paired bootstrap.

Two ways to put an interval on "model A minus model B":

- ``paired_difference``: over seeds, t-based, from the results table (one number per run);
  it sees seed-to-seed noise only.
- ``paired_bootstrap``: over test participants *and* seeds, from the predictions table:
  each draw resamples participants (the same ones for A and B) and seeds (paired), so the
  interval covers both the finite test set and training noise. Every chapter that compares
  models uses this one. For AD (``metric="auc"``) the participants are resampled within
  each diagnosis, so every draw has AD and CN participants; ``auc_bootstrap`` gives one
  model's AUC the same interval, ``roc_band`` its ROC curve a band, and
  ``cohens_d_interval`` an effect size between two groups.

Everything here reads the results table that ``slicemri_lite.experiments`` writes (one
row per run with ``model``, ``encoder``, ``init``, ``mode``, ``train_size``, ``seed``,
the metrics and ``status``); only rows with ``status == "ok"`` count.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from slicemri_lite.experiments._runs import run_label
from slicemri_lite.experiments._tables import LOWER_IS_BETTER, _config_keys, run_labels
from slicemri_lite.train._metrics import cohens_d

__all__ = [
    "ad_table",
    "auc_bootstrap",
    "auc_interval",
    "cohens_d_interval",
    "init_differences",
    "paired_bootstrap",
    "paired_difference",
    "roc_band",
    "summarize",
    "t_interval",
]

BOOTSTRAP_METRICS = (*LOWER_IS_BETTER, "auc")


def t_interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and the two-sided t-based confidence interval of the mean.

    Non-finite values are ignored; with fewer than two values the bounds are NaN.
    """
    from scipy import stats

    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(values.mean())
    if values.size < 2:
        return mean, float("nan"), float("nan")
    t = stats.t.ppf(0.5 + confidence / 2, values.size - 1)
    half = t * values.std(ddof=1) / np.sqrt(values.size)
    return mean, float(mean - half), float(mean + half)


def summarize(results: pd.DataFrame, metric: str = "mae") -> pd.DataFrame:
    """Mean and 95% CI of ``metric`` over seeds, per configuration and training size."""
    ok = results[results["status"] == "ok"]
    rows = []
    keys = _config_keys(ok)
    extra = [k for k in ("age_matched",) if k in ok.columns]  # the AD grid's design flag
    for key, group in ok.groupby([*keys, *extra, "train_size"], sort=False):
        mean, low, high = t_interval(group[metric])
        rows.append(
            {
                "label": run_label(**dict(zip(keys, key[: len(keys)], strict=True))),
                **dict(zip([*keys, *extra, "train_size"], key, strict=True)),
                "n_seeds": len(group),
                metric: mean,
                "ci_low": low,
                "ci_high": high,
            }
        )
    columns = ["label", *keys, *extra, "train_size", "n_seeds", metric, "ci_low", "ci_high"]
    return _blank_slice_keys(pd.DataFrame(rows, columns=columns))


SLICE_KEYS = ("axis", "position", "norm", "aggregation")  # mean nothing without slices


def _blank_slice_keys(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the slice keys shown as ``-`` on rows of models without slices (the mean,
    the ridge, the 3D CNN), whose runs record the grid's defaults there."""
    if "model" not in table.columns:
        return table
    other = ~table["model"].isin(["sliceset", "probe"])
    for key in (k for k in SLICE_KEYS if k in table.columns):
        table.loc[other, key] = "-"
    return table


def _select(results: pd.DataFrame, label: str) -> pd.DataFrame:
    return results[(run_labels(results) == label) & (results["status"] == "ok")]


def paired_difference(results: pd.DataFrame, a: str, b: str, metric: str = "mae") -> pd.DataFrame:
    """``a`` minus ``b`` (run labels) in ``metric``, paired by training size and seed.

    Pairs share their training subjects and seed, so differences between subsets cancel.
    For MAE a negative difference means ``a`` is better. ``verdict`` names the better one
    when the 95% interval excludes zero, says "within noise" when it doesn't, and
    "too few seeds" with fewer than two pairs.
    """
    keys = ["train_size", "seed"]
    merged = _select(results, a)[[*keys, metric]].merge(
        _select(results, b)[[*keys, metric]], on=keys, suffixes=("_a", "_b")
    )
    rows = []
    for size, group in merged.groupby("train_size"):
        mean, low, high = t_interval(group[f"{metric}_a"] - group[f"{metric}_b"])
        rows.append(
            {
                "a": a,
                "b": b,
                "train_size": size,
                "n_pairs": len(group),
                "difference": mean,
                "ci_low": low,
                "ci_high": high,
                "verdict": _verdict(low, high, a, b, metric),
            }
        )
    columns = ["a", "b", "train_size", "n_pairs", "difference", "ci_low", "ci_high", "verdict"]
    return pd.DataFrame(rows, columns=columns)


def _verdict(low: float, high: float, a: str, b: str, metric: str) -> str:
    if not (np.isfinite(low) and np.isfinite(high)):
        return "too few seeds"
    a_lower = high < 0
    if a_lower or low > 0:
        lower, higher = (a, b) if a_lower else (b, a)
        return f"{lower if metric in LOWER_IS_BETTER else higher} better"
    return "within noise"


def _error_matrix(predictions: pd.DataFrame, label: str, size) -> pd.DataFrame:
    """Prediction errors ``(seeds, participants)`` of one configuration at one size."""
    rows = predictions[(run_labels(predictions) == label) & (predictions["train_size"] == size)]
    errors = rows.assign(error=rows["predicted"] - rows["age"])
    return errors.pivot_table(index="seed", columns="participant_id", values="error")


def _weighted_difference(a, b, metric: str, w: np.ndarray, v: np.ndarray) -> np.ndarray:
    """metric(a) - metric(b) under participant weights ``w`` (B, n) and seed weights ``v``
    (B, k); ``a``, ``b`` are ``(k seeds, n participants)`` errors. Returns ``(B,)``."""
    if metric == "mae":
        per_seed = w @ (np.abs(a) - np.abs(b)).T  # (B, k)
    else:  # rmse: the root of each seed's weighted mean square, then the difference
        per_seed = np.sqrt(w @ (a**2).T) - np.sqrt(w @ (b**2).T)
    return (per_seed * v).sum(axis=1)


def paired_bootstrap(
    predictions: pd.DataFrame,
    a: str,
    b: str,
    metric: str = "mae",
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """``a`` minus ``b`` (run labels) in ``metric``, with a bootstrap over participants and seeds.

    Args:
        predictions: the predictions table (run keys, ``participant_id``, ``age``,
            ``predicted``), e.g. ``Experiment.predictions`` or ``predictions.csv``.
        a, b: run labels (``run_label``); only seeds both have at a size are paired.
        metric: ``"mae"`` or ``"rmse"`` (years), or ``"auc"`` (AD predictions, with a
            ``diagnosis`` column; participants resampled within each diagnosis).
        n_boot: bootstrap draws.
        seed: seeds the draws.

    Returns:
        One row per training size: ``a``, ``b``, ``train_size``, ``n_pairs`` (seeds),
        ``n_participants``, ``difference`` (mean over seeds on all participants), the 95%
        percentile interval ``ci_low``/``ci_high``, ``detectable`` (the smallest difference
        this design detects with 80% power at the 5% level, about 1.43 times the interval's
        half-width) and ``verdict``.
    """
    if metric not in BOOTSTRAP_METRICS:
        raise ValueError(
            f"'metric' must be one of {list(BOOTSTRAP_METRICS)}; {metric!r} was provided."
        )
    _check_one_design(predictions)
    rng = np.random.default_rng(seed)
    rows = []
    for size in sorted(set(predictions["train_size"])):
        matrix = _score_matrix if metric == "auc" else _error_matrix
        ea, eb = matrix(predictions, a, size), matrix(predictions, b, size)
        seeds = ea.index.intersection(eb.index)
        people = ea.columns.intersection(eb.columns)
        if len(seeds) == 0 or len(people) == 0:
            continue
        xa, xb = ea.loc[seeds, people].to_numpy(), eb.loc[seeds, people].to_numpy()
        if metric == "auc":
            is_ad = _is_ad(predictions, people)
            w, v = _auc_weights(is_ad, len(seeds), n_boot, rng)
            draws = _weighted_auc(xa, is_ad, w, v) - _weighted_auc(xb, is_ad, w, v)
            w, v = _auc_weights(is_ad, len(seeds), 0, rng)
            point = (_weighted_auc(xa, is_ad, w, v) - _weighted_auc(xb, is_ad, w, v))[0]
        else:
            (k, n), uniform = xa.shape, np.ones((1, 1))
            w = rng.multinomial(n, np.full(n, 1 / n), size=n_boot) / n  # resampled participants
            v = rng.multinomial(k, np.full(k, 1 / k), size=n_boot) / k  # resampled seeds
            draws = _weighted_difference(xa, xb, metric, w, v)
            point = _weighted_difference(xa, xb, metric, uniform.repeat(n, 1) / n,
                                         uniform.repeat(k, 1) / k)[0]  # fmt: skip
        low, high = np.percentile(draws, [2.5, 97.5])
        rows.append({"a": a, "b": b, "train_size": size, "n_pairs": len(seeds),
                     "n_participants": len(people), "difference": point, "ci_low": low,
                     "ci_high": high, "detectable": 1.43 * (high - low) / 2,
                     "verdict": _verdict(low, high, a, b, metric)})  # fmt: skip
    columns = ["a", "b", "train_size", "n_pairs", "n_participants", "difference", "ci_low",
               "ci_high", "detectable", "verdict"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


# ----------------------------------------------------------------------------- AD: AUC


def _check_one_design(predictions: pd.DataFrame) -> None:
    """Refuse a table that mixes age-matched and unmatched runs (different participants)."""
    if "age_matched" in predictions.columns and predictions["age_matched"].nunique() > 1:
        raise ValueError(
            "the predictions mix age-matched and unmatched runs; select one, e.g. "
            "predictions.query('age_matched == False')."
        )


def _score_matrix(predictions: pd.DataFrame, label: str, size) -> pd.DataFrame:
    """Predicted AD scores ``(seeds, participants)`` of one configuration at one size."""
    rows = predictions[(run_labels(predictions) == label) & (predictions["train_size"] == size)]
    return rows.pivot_table(index="seed", columns="participant_id", values="predicted")


def _is_ad(predictions: pd.DataFrame, people) -> np.ndarray:
    """``(n,)`` 1 for AD, 0 for CN, for ``people`` (participant ids) in that order."""
    diagnosis = predictions.drop_duplicates("participant_id").set_index("participant_id")
    return (diagnosis.loc[list(people), "diagnosis"].to_numpy() == "AD").astype(int)


def _auc_weights(is_ad: np.ndarray, k: int, n_boot: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Participant weights ``(B, n)``, resampled within each diagnosis, and seed weights
    ``(B, k)``; ``n_boot=0`` gives the one uniform row of the point estimate."""
    n, b = len(is_ad), max(n_boot, 1)
    w = np.zeros((b, n))
    for value in (0, 1):
        members = np.flatnonzero(is_ad == value)
        m = len(members)
        if m == 0:
            raise ValueError("an AUC needs AD and CN participants; one diagnosis is missing.")
        counts = np.ones((1, m)) if n_boot == 0 else rng.multinomial(m, np.full(m, 1 / m), b)
        w[:, members] = counts
    v = np.ones((1, k)) if n_boot == 0 else rng.multinomial(k, np.full(k, 1 / k), b)
    return w, v / k


def _weighted_auc(scores: np.ndarray, is_ad: np.ndarray, w: np.ndarray, v: np.ndarray):
    """ROC AUC under participant weights ``w`` (B, n), averaged over seeds with weights
    ``v`` (B, k); ``scores`` are ``(k, n)``. Ties count one half. Returns ``(B,)``."""
    ad, cn = scores[:, is_ad == 1], scores[:, is_ad == 0]  # (k, a), (k, c)
    above = (ad[:, :, None] > cn[:, None, :]) + 0.5 * (ad[:, :, None] == cn[:, None, :])
    w_ad, w_cn = w[:, is_ad == 1], w[:, is_ad == 0]
    per_seed = np.einsum("ba,kac,bc->bk", w_ad, above, w_cn)
    per_seed /= (w_ad.sum(1) * w_cn.sum(1))[:, None]
    return (per_seed * v).sum(axis=1)


def auc_bootstrap(
    predictions: pd.DataFrame, label: str, n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """One configuration's test ROC AUC (mean over seeds) with a 95% bootstrap interval.

    Draws resample AD and CN test participants (each within its diagnosis) and seeds, as
    ``paired_bootstrap(metric="auc")`` does for a difference.

    Returns:
        One row per training size: ``label``, ``train_size``, ``n_seeds``, ``n_ad``,
        ``n_cn``, ``auc``, ``ci_low``, ``ci_high``.
    """
    _check_one_design(predictions)
    rng = np.random.default_rng(seed)
    rows = []
    for size in sorted(set(predictions["train_size"])):
        scores = _score_matrix(predictions, label, size).dropna(axis=1)
        if scores.empty:
            continue
        is_ad = _is_ad(predictions, scores.columns)
        x = scores.to_numpy()
        draws = _weighted_auc(x, is_ad, *_auc_weights(is_ad, len(x), n_boot, rng))
        point = _weighted_auc(x, is_ad, *_auc_weights(is_ad, len(x), 0, rng))[0]
        low, high = np.percentile(draws, [2.5, 97.5])
        rows.append({"label": label, "train_size": size, "n_seeds": len(x),
                     "n_ad": int(is_ad.sum()), "n_cn": int((1 - is_ad).sum()), "auc": point,
                     "ci_low": low, "ci_high": high})  # fmt: skip
    columns = ["label", "train_size", "n_seeds", "n_ad", "n_cn", "auc", "ci_low", "ci_high"]
    return pd.DataFrame(rows, columns=columns)


def auc_interval(is_ad, score, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """ROC AUC of one ``(n,)`` score with a 95% bootstrap interval (participants resampled
    within each diagnosis). Returns ``(auc, low, high)``."""
    is_ad = np.asarray(is_ad, int).ravel()
    x = np.asarray(score, float).ravel()[None, :]
    rng = np.random.default_rng(seed)
    draws = _weighted_auc(x, is_ad, *_auc_weights(is_ad, 1, n_boot, rng))
    point = _weighted_auc(x, is_ad, *_auc_weights(is_ad, 1, 0, rng))[0]
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(point), float(low), float(high)


AD_SUMMARY = ["pr_auc", "balanced_accuracy", "sensitivity", "specificity", "brier"]


def ad_table(
    results: pd.DataFrame, predictions: pd.DataFrame, n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """The AD results in one table: per configuration (and design), the test AUC with its
    bootstrap interval over participants and seeds (``auc_bootstrap``), and the means over
    seeds of the other AD metrics.

    Returns:
        ``label``, ``age_matched``, ``train_size``, ``n_seeds``, ``auc``, ``ci_low``,
        ``ci_high``, then ``AD_SUMMARY``; sorted by design, then AUC.
    """
    ok = results[results["status"] == "ok"]
    ok = ok.assign(label=run_labels(ok), age_matched=ok.get("age_matched", False))
    if "age_matched" not in predictions.columns:
        predictions = predictions.assign(age_matched=False)
    rows = []
    keys = ["label", "age_matched", "train_size"]
    for (label, matched, size), group in ok.groupby(keys, sort=False):
        chosen = predictions[
            (predictions["age_matched"] == matched) & (predictions["train_size"] == size)
        ]
        auc = auc_bootstrap(chosen, label, n_boot, seed)
        if auc.empty:
            continue
        rows.append({"label": label, "age_matched": matched, "train_size": size,
                     "n_seeds": len(group), **auc.iloc[0][["auc", "ci_low", "ci_high"]],
                     **group[AD_SUMMARY].mean()})  # fmt: skip
    columns = [*keys, "n_seeds", "auc", "ci_low", "ci_high", *AD_SUMMARY]
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values(["age_matched", "auc"], ascending=[True, False], ignore_index=True)


def roc_band(
    predictions: pd.DataFrame,
    label: str,
    n_boot: int = 500,
    seed: int = 0,
    n_points: int = 51,
) -> pd.DataFrame:
    """A configuration's ROC curve (largest training size) with a 95% bootstrap band.

    The curve is the true positive rate at ``n_points`` false positive rates, averaged over
    seeds; each draw resamples participants within each diagnosis and the seeds.

    Returns:
        ``fpr``, ``tpr``, ``low``, ``high`` (``n_points`` rows).
    """
    from sklearn.metrics import roc_curve

    _check_one_design(predictions)
    size = max(set(predictions["train_size"]))
    scores = _score_matrix(predictions, label, size).dropna(axis=1)
    if scores.empty:
        raise ValueError(
            f"no predictions of {label!r}; the labels are {sorted(set(run_labels(predictions)))}."
        )
    is_ad, x = _is_ad(predictions, scores.columns), scores.to_numpy()
    grid = np.linspace(0, 1, n_points)

    def curve(rows: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        tprs = []
        for k in seeds:
            fpr, tpr, _ = roc_curve(is_ad[rows], x[k, rows])
            tprs.append(np.interp(grid, fpr, tpr))
        return np.mean(tprs, axis=0)

    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(is_ad == value) for value in (0, 1)]
    draws = np.array([
        curve(np.concatenate([rng.choice(g, len(g)) for g in groups]),
              rng.integers(0, len(x), len(x)))
        for _ in range(n_boot)
    ])  # fmt: skip
    low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    middle = curve(np.arange(len(is_ad)), np.arange(len(x)))
    return pd.DataFrame({"fpr": grid, "tpr": middle, "low": low, "high": high})


def cohens_d_interval(a, b, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Cohen's d of ``a`` against ``b`` with a 95% bootstrap interval (each group resampled
    on its own). Returns ``(d, low, high)``."""
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    rng = np.random.default_rng(seed)
    draws = [cohens_d(rng.choice(a, a.size), rng.choice(b, b.size)) for _ in range(n_boot)]
    low, high = np.nanpercentile(draws, [2.5, 97.5])
    return cohens_d(a, b), float(low), float(high)


def init_differences(results: pd.DataFrame, metric: str = "mae") -> pd.DataFrame:
    """ImageNet minus random initialisation for every slice encoder and mode that has both."""
    ok = results[(results["status"] == "ok") & (results["model"] == "sliceset")]
    frames = []
    for (encoder, mode), group in ok.groupby(["encoder", "mode"], sort=False):
        if {"imagenet", "random"} <= set(group["init"]):
            a, b = (run_label("sliceset", encoder, init, mode) for init in ("imagenet", "random"))
            frames.append(paired_difference(results, a, b, metric))
    if not frames:
        return paired_difference(results.iloc[:0], "", "", metric)
    return pd.concat(frames, ignore_index=True)
