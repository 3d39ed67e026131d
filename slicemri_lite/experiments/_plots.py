"""Plots of a results or predictions table: sample efficiency, predicted against true age."""

from __future__ import annotations

import numpy as np
import pandas as pd

from slicemri_lite.experiments._compare import summarize
from slicemri_lite.experiments._tables import run_labels


def plot_sample_efficiency(results: pd.DataFrame, metric: str = "mae", labels=None, ax=None):
    """Test ``metric`` against training-set size, one line per configuration, 95% CI bars.

    ``labels`` picks configurations (default: every one that ran); a configuration run
    at one size only shows as a single point.
    """
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(7, 4.5))[1]
    summary = summarize(results, metric)
    if labels is None:
        labels = list(dict.fromkeys(summary["label"]))
    for i, label in enumerate(labels):
        group = summary[summary["label"] == label].sort_values("train_size")
        err = np.vstack([group[metric] - group["ci_low"], group["ci_high"] - group[metric]])
        dodge = 1 + 0.025 * (i - (len(labels) - 1) / 2)  # side by side, not on top
        ax.errorbar(
            group["train_size"] * dodge,
            group[metric],
            yerr=np.nan_to_num(err),
            marker="o",
            capsize=3,
            label=label,
        )
    ax.set_xscale("log")
    sizes = sorted(summary["train_size"].unique())
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.minorticks_off()
    ax.set_ylim(bottom=0)
    ax.set_xlabel("training subjects")
    ax.set_ylabel(f"test {metric.upper()} (years)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    return ax


def plot_predicted_vs_true(predictions: pd.DataFrame, labels: list[str], ax=None):
    """Predicted against true age on the test split, one colour per run label.

    Labels with no rows in ``predictions`` are left out of the plot.
    """
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(5, 5))[1]
    names = run_labels(predictions)
    for i, label in enumerate(labels):  # colour by position in labels: same across panels
        chosen = predictions[names == label]
        if chosen.empty:
            continue
        ax.scatter(chosen["age"], chosen["predicted"], s=16, alpha=0.7, color=f"C{i}", label=label)
    lims = [predictions["age"].min(), predictions["age"].max()]
    ax.plot(lims, lims, "k--", lw=1, label="prediction = truth")
    ax.set_xlabel("true age (years)")
    ax.set_ylabel("predicted age (years)")
    ax.legend(fontsize="small")
    return ax
