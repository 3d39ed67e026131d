"""Reading a results or predictions table: run labels, the flat-run check, and sentences
that say what a comparison found (every chapter's, from one place)."""

from __future__ import annotations

import pandas as pd

from slicemri_lite.experiments._runs import run_label

CONFIG_KEYS = ["model", "encoder", "init", "mode", "axis", "position", "norm", "aggregation"]


def _config_keys(frame: pd.DataFrame) -> list[str]:
    """The configuration columns a table has (tables kept from older versions lack some)."""
    return [k for k in CONFIG_KEYS if k in frame.columns]


LOWER_IS_BETTER = ("mae", "rmse")


def run_labels(frame: pd.DataFrame) -> pd.Series:
    """The ``run_label`` of every row of a results or predictions table."""
    return pd.Series(
        [run_label(**row) for row in frame[_config_keys(frame)].to_dict("records")],
        index=frame.index,
        dtype=object,
    )


def flat_runs(predictions: pd.DataFrame, ratio: float = 0.1) -> pd.DataFrame:
    """Configurations whose runs predict nearly one age for everyone.

    A run is *flat* when the spread (standard deviation) of its test predictions is below
    ``ratio`` times the spread of the true test ages: it has learnt little beyond the
    training mean, whatever its MAE. Returns ``label``, ``train_size``, ``n_runs`` and
    ``n_flat`` for every configuration and size with at least one flat run.
    """
    config_keys = _config_keys(predictions)
    keys = [*config_keys, "train_size", "seed"]
    spread = predictions.groupby(keys, sort=False).agg(
        predicted=("predicted", "std"), age=("age", "std")
    )
    spread["flat"] = spread["predicted"] < ratio * spread["age"]
    per_config = spread.groupby([*config_keys, "train_size"], sort=False)["flat"].agg(
        n_runs="size", n_flat="sum"
    )
    per_config = per_config[per_config["n_flat"] > 0].reset_index()
    per_config.insert(0, "label", run_labels(per_config))
    return per_config[["label", "train_size", "n_runs", "n_flat"]]


def describe_difference(row: pd.Series, metric: str = "mae") -> str:
    """One sentence for a ``paired_difference`` or ``paired_bootstrap`` row, with its
    interval and verdict (years for MAE/RMSE; AUC has no unit)."""
    size = f"{int(row['train_size'])} training subjects"
    unit = "years " if metric in LOWER_IS_BETTER else ""
    difference = f"{row['a']} minus {row['b']} is {row['difference']:+.2f} {unit}{metric.upper()}"
    if row["verdict"] == "too few seeds":
        return (
            f"With {size}, {difference} from {int(row['n_pairs'])} seed(s): too few seeds for "
            "an interval."
        )
    verdict = (
        "the interval includes zero, so the difference is within noise"
        if row["verdict"] == "within noise"
        else f"the interval excludes zero: {row['verdict']}"
    )
    over = f"{int(row['n_pairs'])} seeds"
    if "n_participants" in row and pd.notna(row["n_participants"]):  # paired_bootstrap
        over += f" x {int(row['n_participants'])} test participants"
    detectable = ""
    if "detectable" in row and pd.notna(row["detectable"]):
        detectable = f" (this design detects differences of about {row['detectable']:.2f})"
    return (
        f"With {size}, {difference} (95% CI {row['ci_low']:+.2f} to {row['ci_high']:+.2f}, "
        f"{over}); {verdict}{detectable}."
    )


def describe_flat_runs(flat: pd.DataFrame, what: str = "run", sizes: bool = True) -> str:
    """One sentence for a ``flat_runs`` table: which configurations predict nearly one age
    for everyone (``what``: what the runs are called, e.g. ``"kept run"``); with ``sizes``,
    each configuration's training-set size."""
    if flat.empty:
        return f"No {what} predicts one age for everyone."
    parts = [f"{r.label} with {r.train_size} subjects ({r.n_flat} of {r.n_runs} runs)" if sizes
             else f"{r.label} ({r.n_flat} of {r.n_runs})" for r in flat.itertuples()]  # fmt: skip
    return f"These {what}s predict nearly one age for everyone: {'; '.join(parts)}."


_STATUS_HINTS = {  # what a reader can do about a run that did not run
    "skipped: weights unavailable offline": (
        "their ImageNet weights could not be loaded without the internet; where it is "
        "reachable they download once into torch's cache and these runs go ahead"
    ),
}


def describe_skipped(results: pd.DataFrame) -> str:
    """One sentence per reason naming the configurations of a results table that did not
    run (status other than ``ok``), or a sentence saying that every one ran."""
    missing = results[results["status"] != "ok"]
    if missing.empty:
        return "Every planned configuration ran."
    sentences = []
    for status, rows in missing.groupby("status", sort=False):
        labels = sorted(set(run_labels(rows)))
        why = _STATUS_HINTS.get(status, status)
        plural = "s" if len(labels) > 1 else ""
        sentences.append(f"{len(labels)} planned configuration{plural} did not run and "
                         f"{'are' if plural else 'is'} missing from the tables ({why}): "
                         f"{', '.join(labels)}.")  # fmt: skip
    return " ".join(sentences)
