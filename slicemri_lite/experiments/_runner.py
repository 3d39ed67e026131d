"""The one grid runner: ``Experiment`` runs run specs on a cohort and keeps one results
format for every grid; ``run_grid`` opens a grid's cohort and runs the whole grid.

The runner writes into its ``out`` folder: ``results.csv`` (one row per run, columns
``columns(task)``), ``predictions.csv`` (the test-set prediction of every run); the
command line (``python -m slicemri_lite.experiments``, ``_cli``) adds ``provenance.json``
(``_provenance``). The tables are rewritten atomically after every run, so an interrupted
run leaves every finished row readable. A run whose ImageNet weights can't be had offline
is recorded as ``"skipped: weights unavailable offline"``, never run with other weights; a
run that raises is recorded as ``"failed: <error>"`` (traceback on stderr) and the grid
goes on.

Under ``torchrun --nproc_per_node=N`` every network trains with DistributedDataParallel on
N processes (``slicemri_lite.train._distributed``); rank 0 alone writes the tables. On CPU
processes (gloo: no SyncBatchNorm) an encoder with batch norm fine-tuned end to end trains
with its batch-norm statistics frozen (``Experiment._slice_chunk``), where one process
uses batch statistics.
The AD table adds ``age_matched`` after the run keys and ``val_auc`` after the test
metrics (``columns("ad")``).
"""

from __future__ import annotations

import gc
import math
import os
import time
import traceback
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from slicemri_lite._core.atomic import write_csv_atomic
from slicemri_lite._core.env import package_versions, trim_heap
from slicemri_lite._core.geometry import axis_index, voxel_size
from slicemri_lite._core.validation import check_choice
from slicemri_lite.data._cohort import Cohort
from slicemri_lite.data._open import open_cohort
from slicemri_lite.experiments._grids import GRIDS, grid_cohort_size, grid_runs
from slicemri_lite.experiments._profiles import Profile, as_profile
from slicemri_lite.experiments._runs import (
    NETWORKS,
    ModelConfig,
    RunResult,
    RunSpec,
    age_matched_rows,
    run_config,
)
from slicemri_lite.experiments._tables import CONFIG_KEYS
from slicemri_lite.models._weights import OfflineWeightsError
from slicemri_lite.train import _distributed as distributed
from slicemri_lite.train._features import FeatureSpec, slice_features
from slicemri_lite.train._metrics import AD_METRICS, run_metrics
from slicemri_lite.train._slice_chunks import has_training_batch_norm

RUN_KEYS = [*CONFIG_KEYS, "train_size", "seed"]
METRICS = {"age": ["mae", "rmse", "r"], "ad": list(AD_METRICS)}
# per task: design keys after the run keys, and validation scores after the test metrics
TASK_KEYS = {"age": [], "ad": ["age_matched"]}
VALIDATION = {"age": [], "ad": ["val_auc"]}
DETAILS = [
    "status",
    "epochs",
    "best_epoch",
    "batch_size",
    "profile",
    "data",
    "device",
    "seconds",
    "versions",
]
COLUMNS = [*RUN_KEYS, *METRICS["age"], *DETAILS]  # the brain-age grid's table
PREDICTION_COLUMNS = ["participant_id", "age", "diagnosis", "predicted"]


def columns(task: str = "age") -> list[str]:
    """The results table's columns for a task: run keys (and the task's design keys), the
    task's test metrics (and validation scores), details."""
    check_choice("task", task, METRICS)
    return [*RUN_KEYS, *TASK_KEYS[task], *METRICS[task], *VALIDATION[task], *DETAILS]


def _architecture(config: ModelConfig) -> str:
    """What a configuration trains, in words."""
    if config.model == "mean":
        return "the training mean"
    if config.model == "ridge":
        return "ridge on ~8 mm voxel blocks"
    if config.model == "probe" and config.aggregation == "concat":
        return f"ridge on every slice's frozen {config.encoder} features, side by side"
    if config.model == "probe":
        return f"ridge on slice-averaged frozen {config.encoder} features"
    if config.model == "conv3d":
        return "3D CNN (the paper's)"
    trains = "head on frozen features" if config.mode == "frozen" else "every weight"
    return f"the paper's slice model, {config.encoder} encoder; trains {trains}"


def describe_runs(specs: list[RunSpec], profile: Profile | str, cohort: Cohort) -> pd.DataFrame:
    """What each configuration of a grid trains: one row per configuration and size.

    Columns: ``run`` (label), ``architecture``, ``recipe`` (``slicemri_lite.recipes``;
    ``-`` for models fitted in closed form), ``grid`` (mm), ``train_size``, ``seeds``,
    ``epochs`` (the most; early stopping may end sooner) and ``steps`` (optimiser steps at
    most: epochs x batches per epoch).
    """
    mm = float(voxel_size(cohort.affine).mean())
    rows = []
    for spec in specs:
        network = spec.config.model in NETWORKS
        recipe = spec.recipe(profile)
        epochs = recipe.epochs if network else 0
        steps = epochs * math.ceil(spec.train_size / recipe.batch_size) if network else 0
        rows.append({"run": spec.config.label, "architecture": _architecture(spec.config),
                     "recipe": recipe.name if network else "-",
                     "grid": f"{mm:g} mm", "train_size": spec.train_size, "seed": spec.seed,
                     "epochs": epochs, "steps": steps})  # fmt: skip
    table = pd.DataFrame(rows)
    keys = ["run", "architecture", "recipe", "grid", "train_size", "epochs", "steps"]
    return table.groupby(keys, sort=False)["seed"].nunique().rename("seeds").reset_index()


def subset_rows(cohort: Cohort, size: int, seed: int, eligible=None) -> np.ndarray:
    """Row positions of ``size`` training subjects (chosen by ``seed``) and every val/test row.

    For one seed the subsets are nested: the 25 subjects are among the 50. ``eligible``
    (row positions, e.g. ``runs.age_matched_rows``) restricts every split to those rows.
    """
    splits = [cohort.indices(s) for s in ("train", "val", "test")]
    if eligible is not None:
        splits = [np.intersect1d(rows, eligible) for rows in splits]
    train = splits[0]
    if not 1 <= size <= len(train):
        raise ValueError(f"'size' must be between 1 and {len(train)}; {size} was provided.")
    chosen = np.random.default_rng(seed).permutation(train)[:size]
    return np.sort(np.concatenate([chosen, *splits[1:]]))


def _release_memory() -> None:
    """Hand freed heap memory back to the OS between runs (glibc only; elsewhere a no-op).

    Training allocates and frees large activation buffers; without this the process's
    resident memory ratchets up over a long grid (Binder allows 2 GB).
    """
    gc.collect()
    trim_heap()


def _versions() -> str:
    return "; ".join(f"{name} {v}" for name, v in package_versions().items())


class Experiment:
    """Runs grid cells on one cohort and keeps every result.

    Args:
        cohort: the cohort with train/val/test splits.
        profile: sizes (epochs, batch size, learning rate, device).
        data: how the data is named in the table ("synthetic", "oasis", a path).
        out: folder for ``results.csv`` and ``predictions.csv``; ``None`` keeps them in memory.
        progress: print one line per run.
        seed: seeds the random-init encoders whose frozen features are shared by all runs.
        task: ``"age"`` or ``"ad"``: what every run predicts, and its metrics
            (``METRICS[task]``; AD metrics take their threshold from the val split).

    Frozen runs read the cohort's slice features from ``slicemri_lite.features``: the
    encoder runs once per (cohort, encoder, weights, axis), on the first run that needs it
    (its ``seconds`` include that pass), and never again, in this experiment or a later one.
    """

    def __init__(
        self,
        cohort: Cohort,
        profile: Profile | str,
        data: str = "synthetic",
        out: str | os.PathLike | None = None,
        progress: bool = True,
        seed: int = 0,
        task: str = "age",
    ):
        self.task = check_choice("task", task, METRICS)
        profile = as_profile(profile)
        self.cohort, self.profile, self.data = cohort, profile, str(data)
        self.out = None if out is None else Path(out)
        self.progress = progress
        self.rows: list[dict] = []
        self.seed = seed
        self.prediction_frames: list[pd.DataFrame] = []
        self._context = {
            "profile": profile.name,
            "data": self.data,
            "device": profile.device,
            "versions": _versions(),
        }

    @property
    def results(self) -> pd.DataFrame:
        """One row per run, columns ``columns(task)``."""
        return pd.DataFrame(self.rows, columns=columns(self.task))

    @property
    def predictions(self) -> pd.DataFrame:
        """Test-set predictions: run keys, ``participant_id``, ``age``, ``diagnosis``,
        ``predicted`` (years, or AD probability / score)."""
        if not self.prediction_frames:
            return pd.DataFrame(columns=[*RUN_KEYS, *TASK_KEYS[self.task], *PREDICTION_COLUMNS])
        return pd.concat(self.prediction_frames, ignore_index=True)

    def run(self, specs: list[RunSpec]) -> pd.DataFrame:
        """Run ``specs`` in order; returns their rows (all rows stay in ``results``)."""
        start = len(self.rows)
        metric = METRICS[self.task][0]
        for i, spec in enumerate(specs, 1):
            row, _ = self._run_one(spec)
            if self.progress and distributed.is_main_process():
                print(
                    f"[{i}/{len(specs)}] {spec.config.label:<36} n={row['train_size']:<4} "
                    f"seed={spec.seed}  {metric}={row[metric]:.2f}  {row['status']}  "
                    f"({row['seconds']:.1f}s)",
                    flush=True,
                )
        return self.results.iloc[start:].reset_index(drop=True)

    def _design(self, spec: RunSpec) -> tuple[np.ndarray, dict]:
        """The run's rows of the cohort and its identifying columns.

        An age-matched run trains on the matched part of the training split (at most
        ``train_size`` subjects; its ``train_size`` column says how many).
        """
        key = spec.key()
        if "age_matched" not in TASK_KEYS[self.task]:
            if spec.age_matched:
                raise ValueError(f"age matching applies to task 'ad', not {self.task!r}.")
            return subset_rows(self.cohort, spec.train_size, spec.seed), key
        eligible = age_matched_rows(self.cohort) if spec.age_matched else None
        if eligible is not None:
            n_matched = len(np.intersect1d(self.cohort.indices("train"), eligible))
            key["train_size"] = min(spec.train_size, n_matched)
        key["age_matched"] = spec.age_matched
        return subset_rows(self.cohort, key["train_size"], spec.seed, eligible), key

    def train(self, spec: RunSpec, features=None, model=None) -> torch.nn.Module:
        """Run one network's spec as ``run`` does (its row and predictions are kept) and
        return the trained network.

        ``features``: frozen features of the experiment's whole cohort (same rows) to read
        instead of the cached ones, e.g. ``analysis.joined_axes_features``; ``model``: the
        network to train instead of ``spec.config.build``. Raises if the run did not train.
        """
        row, result = self._run_one(spec, features, model)
        if result is None or result.model is None:
            raise ValueError(f"{spec.config.label!r} trained no network: {row['status']}.")
        return result.model

    def _run_one(self, spec: RunSpec, features=None, model=None) -> tuple[dict, RunResult | None]:
        """One run's row (always: a failed run's ``status`` says why) and its result."""
        rows, key = self._design(spec)
        cohort = self.cohort.subset(rows)
        tic = time.perf_counter()
        recipe = spec.recipe(self.profile)
        network = spec.config.model in NETWORKS
        scores = [*METRICS[self.task], *VALIDATION[self.task]]
        row = {**key, **dict.fromkeys(scores, float("nan"))}
        row.update(epochs=recipe.epochs if network else 0, best_epoch=float("nan"))
        row["batch_size"] = recipe.batch_size if network else 0
        row.update(self._context)
        result = None
        try:
            features = self._features(spec, rows, features)
            result = run_config(spec.config, cohort, self.profile, spec.seed, recipe=recipe,
                                features=features, task=self.task, model=model,
                                slice_chunk=self._slice_chunk(spec.config, cohort))  # fmt: skip
        except OfflineWeightsError:
            row["status"] = "skipped: weights unavailable offline"
        except Exception as error:  # one failed run must not lose the rest of the grid
            row["status"] = f"failed: {type(error).__name__}: {str(error).splitlines()[0]}"
            traceback.print_exc()
        else:
            targets = [cohort.targets(self.task, cohort.indices(s)) for s in ("val", "test")]
            found = run_metrics(self.task, targets[0], result.val, targets[1], result.test)
            row.update({k: found[k] for k in scores}, status="ok")
            row["best_epoch"] = result.best_epoch
            self._keep_predictions(key, cohort.table.iloc[cohort.indices("test")], result.test)
        row["seconds"] = time.perf_counter() - tic
        _release_memory()
        self.rows.append(row)
        self._save()
        return row, result

    def _features(self, run: RunSpec, rows: np.ndarray, features=None):
        """The frozen features of ``rows`` for a frozen run (``None`` otherwise): of
        ``features`` where given, else the cohort's cached ones (a random encoder drawn
        under ``run.draw`` where it is set, else under the experiment's seed)."""
        config = run.config
        if not config.needs_features:
            return None
        if features is None:
            spec = run.feature_spec(self.seed)
            features = slice_features(
                self.cohort, spec, device=self.profile.device, progress=self.progress
            )
        return features.subset(rows)

    def _slice_chunk(self, config: ModelConfig, cohort: Cohort) -> int | None:
        """``fit``'s ``slice_chunk`` for a run: all of a volume's slices in one chunk, which
        freezes the encoder's batch-norm statistics, for an encoder with batch norm trained
        end to end on several CPU processes (gloo has no SyncBatchNorm); ``None`` otherwise.
        One process trains the same run with batch statistics."""
        if config.model != "sliceset" or config.mode != "finetune" or self._device() != "cpu":
            return None
        if not distributed.current().enabled:
            return None
        with torch.random.fork_rng():  # build a throwaway copy to look for batch norm
            if not has_training_batch_norm(config.build(cohort.shape)):
                return None
        return int(cohort.shape[axis_index(config.axis)])

    def _device(self) -> str:
        return torch.device(self.profile.device).type

    def _keep_predictions(self, key: dict, test: pd.DataFrame, predicted) -> None:
        columns = {
            "participant_id": test["participant_id"].to_numpy(),
            "age": test["age"].to_numpy(),
            "diagnosis": test["diagnosis"].to_numpy(),
            "predicted": np.asarray(predicted, dtype=float),
        }
        self.prediction_frames.append(pd.DataFrame({**key, **columns}))

    def _save(self) -> None:
        if self.out is not None and distributed.is_main_process():
            write_csv_atomic(self.results, self.out / "results.csv")
            write_csv_atomic(self.predictions, self.out / "predictions.csv")


def grid_cohort_arguments(
    name: str, profile: Profile | str, data: str = "synthetic", resolution: int | None = None
) -> tuple[dict, dict]:
    """``open_cohort``'s keyword arguments for a grid's cohort at a profile (its size, grid
    and, for synthetic data, generator settings), and the ``resplit`` fractions."""
    grid = GRIDS[check_choice("grid", name, GRIDS)]
    size = grid_cohort_size(name, profile) | ({"resolution": resolution} if resolution else {})
    if data == "synthetic":
        size["n_subjects"] = max(size["n_subjects"], grid.min_subjects)
    splits = {k: size.pop(k) for k in ("val", "test") if k in size}
    config = (
        {"synthetic_config": size.pop("synthetic_config")} if "synthetic_config" in size else {}
    )
    options = {**grid.cohort_options, **config} if data == "synthetic" else {}
    return {**size, **options}, splits


def open_grid_cohort(
    name: str,
    profile: Profile | str,
    data: str = "synthetic",
    seed: int = 0,
    resolution: int | None = None,
):
    """The cohort a grid runs on at a profile (``Grid.cohort_options`` adds, e.g., AD
    enrichment to the profile's size and grid). ``resolution`` (mm) gives the same
    participants and splits on another grid."""
    arguments, splits = grid_cohort_arguments(name, profile, data, resolution)
    cohort = open_cohort(data, seed=seed, progress=False, **arguments)
    return cohort.resplit(**splits, seed=seed) if splits else cohort


def prepare_grid_data(
    name: str, profile: Profile | str = "cpu", data: str = "synthetic", seed: int = 0
) -> list[str]:
    """Build a grid's cohort and every frozen feature array its runs will read.

    ``make book``'s data step calls this for every grid, so the chapters start with warm
    caches. Returns one line per feature array (ready, or why it was skipped).
    """
    prof = as_profile(profile)
    cohort = open_grid_cohort(name, prof, data, seed)
    runs = grid_runs(name, prof.name, len(cohort.indices("train")), seed_offset=seed)
    specs = {r.feature_spec(seed) for r in runs if r.config.needs_features}
    specs |= {FeatureSpec(prof.encoder, axis=axis, seed=seed, mask="brain")
              for axis in GRIDS[name].brain_only_axes}  # fmt: skip
    return [prepare_features(cohort, spec, prof.device, name)
            for spec in sorted(specs, key=lambda s: s.name)]  # fmt: skip


def prepare_features(cohort, spec: FeatureSpec, device: str, label: str) -> str:
    """Compute (or find cached) one feature array of ``cohort``; a line saying that it is
    ready, or why it was skipped (ImageNet weights that cannot be had offline)."""
    try:
        slice_features(cohort, spec, device=device, progress=True)
        return f"{label}: {spec.name} ready"
    except OfflineWeightsError as error:
        return f"{label}: {spec.name} skipped ({str(error).splitlines()[0]})"


def run_grid(
    name: str = "brain-age",
    profile: Profile | str = "smoke",
    data: str = "synthetic",
    out=None,
    seed: int = 0,
    progress: bool = True,
) -> Experiment:
    """Open the grid's cohort for ``profile`` and run the whole grid; returns the ``Experiment``."""
    prof = as_profile(profile)
    cohort = open_grid_cohort(name, prof, data, seed)
    runs = grid_runs(name, prof.name, len(cohort.indices("train")), seed_offset=seed)
    experiment = Experiment(cohort, prof, data, out, progress, seed, GRIDS[name].task)
    experiment.run(runs)
    return experiment
