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
from slicemri_lite.experiments._tables import describe_difference, run_labels

__all__ = [
    "age_only_scores",
    "auc_table",
    "predictions_from_scores",
    "FLAT_RATIO",
    "BASELINES",
    "describe_learning",
    "learning_check",
    "learned_labels",
    "spread_ratios",
    "verdicts",
]

FLAT_RATIO = 0.25  # predictions spread under a quarter of the ages' spread: flat
BASELINES = {"mae": "mean", "rmse": "mean", "auc": "age_only"}  # what a run must beat
COLUMNS = ["label", "train_size", "n_seeds", "spread_ratio", "baseline", "difference",
           "ci_low", "ci_high", "learned", "reason"]  # fmt: skip


def spread_ratios(rows: pd.DataFrame) -> pd.Series:
    """Per seed, (predictions' SD) / (true ages' SD) on a predictions table's test rows
    (one configuration and size): the flat check's measure, indexed by ``seed``."""
    spreads = rows.groupby("seed").agg(predicted=("predicted", "std"), age=("age", "std"))
    return spreads["predicted"] / spreads["age"]


def _spread_ratio(rows: pd.DataFrame) -> float:
    """The smallest, over seeds, of ``spread_ratios``: the seed the flat check reads."""
    return float(spread_ratios(rows).min())


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


def describe_learning(check: pd.DataFrame, what: str = "run") -> str:
    """One sentence for a ``learning_check`` table: every run learned, or which did not and why."""
    if check.empty:
        return f"No {what} was checked."
    failed = check[~check["learned"]]
    baseline = check["baseline"].iloc[0]
    if failed.empty:
        return (f"Every {what} learned: each beats {baseline} beyond noise at every "
                "training-set size.")  # fmt: skip
    parts = [f"{r.label} with {r.train_size} subjects ({r.reason})" for r in failed.itertuples()]
    return f"Did not learn, so no verdict rests on them: {'; '.join(parts)}."


def verdicts(
    predictions: pd.DataFrame,
    a: str,
    others,
    metric: str = "mae",
    seed: int = 0,
) -> tuple[pd.DataFrame, list[str]]:
    """``a`` against each of ``others``, with a verdict only where both learned.

    Runs the paired bootstrap of ``a`` minus each other label, and ``learning_check`` on
    ``predictions``. A comparison at a training size where either side did not learn
    (the baseline itself, ``mean`` or ``age_only``, is never a learner) gets no verdict:
    its sentence says which side did not learn and why.

    Returns:
        The paired-bootstrap table (one row per other label and training size, with a
        ``both_learned`` column; where it is False the ``verdict`` cell says which side
        did not learn instead of naming a winner) and one sentence per other label, at
        its largest size.
    """
    check = learning_check(predictions, metric, seed=seed)
    learned = {(r.label, r.train_size): (r.learned, r.reason) for r in check.itertuples()}
    baseline = BASELINES[metric]
    rows, sentences = [], []
    for b in others:
        table = paired_bootstrap(predictions, a, b, metric, seed=seed)
        if table.empty:
            sentences.append(f"{b} was not run with the same seeds and sizes as {a}.")
            continue
        ok = [all(learned.get((x, size), (x == baseline, ""))[0] for x in (a, b))
              for size in table["train_size"]]  # fmt: skip
        table = table.assign(both_learned=ok)
        cells = zip(table["verdict"], ok, table["train_size"], strict=True)
        table["verdict"] = [v if good else _no_verdict((a, b), size, learned)
                            for v, good, size in cells]  # fmt: skip
        rows.append(table)
        last = table.iloc[-1]
        if last["both_learned"]:
            sentences.append(describe_difference(last, metric))
            continue
        size = last["train_size"]
        why = "; ".join(f"{x} did not learn ({learned[(x, size)][1]})"
                        for x in _failed((a, b), size, learned))  # fmt: skip
        sentences.append(f"{a} against {b}, {size} training subjects: no verdict, {why}.")
    return (pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()), sentences


def _no_verdict(labels, size, learned: dict) -> str:
    """The verdict cell of a comparison where a side did not learn: which side."""
    return (
        f"no verdict: {' and '.join(_failed(labels, size, learned)) or 'a baseline'} did not learn"
    )


def _failed(labels, size, learned: dict) -> list[str]:
    """The ``labels`` that ``learning_check`` found did not learn at ``size``."""
    return [x for x in labels if (x, size) in learned and not learned[(x, size)][0]]


def _label_seed(key) -> tuple[str, int]:
    """A scores key, ``label`` or ``(label, seed)``, as ``(label, seed)`` (seed 0 if none)."""
    return key if isinstance(key, tuple) else (key, 0)


def predictions_from_scores(cohort, rows, scores: dict, train_size: int | None = None):
    """A predictions table (for ``learning_check``, ``verdicts``, ``paired_bootstrap``) from
    test scores computed outside a grid, e.g. a chapter's own models.

    Args:
        cohort: the cohort the scores are of (``participant_id``, ``age``, ``diagnosis``).
        rows: ``(n,)`` cohort rows the scores are for (usually ``cohort.indices("test")``).
        scores: ``{label: (n,) scores}`` or ``{(label, seed): (n,) scores}``: predicted ages,
            or AD scores (probabilities or logits: the AUC only ranks them).
        train_size: the training-set size to record (default: the cohort's train split).
    """
    rows = np.asarray(rows, dtype=int)
    size = len(cohort.indices("train")) if train_size is None else int(train_size)
    base = cohort.table.iloc[rows][["participant_id", "age", "diagnosis"]].reset_index(drop=True)
    frames = []
    for key, values in scores.items():
        label, seed = _label_seed(key)
        values = np.asarray(values, dtype=float).ravel()
        if len(values) != len(rows):
            raise ValueError(f"scores[{key!r}] has {len(values)} values for {len(rows)} rows.")
        frames.append(base.assign(model=label, train_size=size, seed=int(seed), predicted=values))
    return pd.concat(frames, ignore_index=True)


def age_only_scores(cohort, split: str = "test") -> np.ndarray:
    """AD probabilities of ``split`` from age alone (the logistic regression every AD image
    model must beat, fitted on the train split): ``(n,)``."""
    from slicemri_lite.experiments._runs import _run_age_only

    result = _run_age_only(cohort, "ad")
    return {"val": result.val, "test": result.test}[split]


def auc_table(is_ad, scores: dict, seed: int = 0) -> pd.DataFrame:
    """ROC AUC with its 95% bootstrap interval for each entry of ``scores`` (``{label: (n,)}``
    or ``{(label, seed): (n,)}``, as for ``predictions_from_scores``): one row each, with
    ``model``, ``seed``, ``auc``, ``low``, ``high``."""
    from slicemri_lite.experiments._compare import auc_interval

    rows = []
    for key, values in scores.items():
        label, run_seed = _label_seed(key)
        rows.append((label, int(run_seed), *auc_interval(is_ad, values, seed=seed)))
    return pd.DataFrame(rows, columns=["model", "seed", "auc", "low", "high"])
