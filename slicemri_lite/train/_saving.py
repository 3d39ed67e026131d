"""A trained model travels: weights with their usage contract, reloaded safely, applied to NIfTI.

``save_model(model, path, cohort)`` writes one file holding the weights and everything
needed to use them again: the architecture and its constructor arguments, the grid
(shape, affine, resolution), the slicing axis, how the training cohort's intensities were
normalised, the target scaling, the task and the library version. ``load_model(path)``
rebuilds the model from it with ``torch.load(weights_only=True)`` (no code runs on load).
``predict_nifti(model, paths_or_tsv)`` prepares new NIfTI files the way the training
cohort was prepared (reoriented, resampled onto its grid, intensities normalised alike)
and predicts: ages in years, or AD probabilities.

New images are normalised as ``prepare_nifti`` does (inside the MNI brain mask). A synthetic
cohort was normalised inside each brain's own mask, so its volumes, written out as NIfTI and
predicted again, move by a few hundredths of a year with a model that takes intensities as
they are, and not at all with one that z-scores its input (``SliceSetNet.paper``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from slicemri_lite._core.atomic import atomic_path
from slicemri_lite._core.numeric import sigmoid
from slicemri_lite._core.validation import check_choice
from slicemri_lite._core.version import __version__
from slicemri_lite.data._cohort import PREDICTION_COLUMN, TASKS
from slicemri_lite.data._nifti import prepare_image
from slicemri_lite.data._open import grid_affine
from slicemri_lite.models._slice_set import Conv3DNet, SliceSetNet
from slicemri_lite.train._conformance import (
    ConformanceReference,
    conformance_scores,
    header_checks,
    verdicts,
)

__all__ = ["save_model", "load_model", "read_contract", "predict_nifti", "INTENSITIES"]

FORMAT = "slicemri-lite model"
FORMAT_VERSION = 1
# How a cohort's intensities were normalised, by its source (``cohort.meta["source"]``):
# "white_matter_level": divided by the 90th percentile of brain voxels (prepare_nifti and the
# synthetic cohorts); "none": used as they are (OASIS-1 grey-matter density maps).
INTENSITIES = ("white_matter_level", "none")


def _architectures() -> dict[str, type[nn.Module]]:
    return {"SliceSetNet": SliceSetNet, "Conv3DNet": Conv3DNet}


def _intensity_of(cohort) -> str:
    source = str(cohort.meta.get("source", ""))
    if source == "synthetic" or source.startswith("nifti:"):
        return "white_matter_level"
    if source == "oasis1":
        return "none"
    raise ValueError(
        f"cannot tell how the cohort {source!r} was normalised; pass intensity= one of "
        f"{list(INTENSITIES)} to save_model."
    )


def _grid(cohort, shape: tuple[int, ...]) -> dict:
    if tuple(cohort.shape) != tuple(shape):
        raise ValueError(
            f"the cohort's grid {tuple(cohort.shape)} is not the model's {tuple(shape)}; "
            "pass the cohort the model was trained on."
        )
    return {
        "shape": [int(n) for n in cohort.shape],
        "affine": np.asarray(cohort.affine, dtype=float).tolist(),
        "resolution": cohort.meta.get("resolution"),
    }


def save_model(
    model: nn.Module,
    path: str | os.PathLike,
    cohort=None,
    task: str | None = None,
    intensity: str | None = None,
    conformance: ConformanceReference | None = None,
) -> Path:
    """Write ``model``'s weights and usage contract to ``path`` atomically; returns the path.

    Args:
        model: a ``SliceSetNet`` or ``Conv3DNet`` (it must have ``config``).
        path: the file to write (conventionally ``.pt``); replaced if it exists.
        cohort: the training cohort: records its grid and intensity normalisation, which
            ``predict_nifti`` needs. Without it the model still reloads, but cannot
            prepare NIfTI files.
        task: ``"age"`` or ``"ad"``; default ``model.task`` (set by ``fit``).
        intensity: override the normalisation read from the cohort's source, one of
            ``INTENSITIES``.
        conformance: the reference ``predict_nifti`` judges new scans against
            (``conformance_reference(cohort, model, features)``); without it every
            prediction's verdict is ``"unchecked"``.
    """
    name = type(model).__name__
    if name not in _architectures() or not hasattr(model, "config"):
        raise ValueError(f"'model' must be a SliceSetNet or a Conv3DNet; a {name} was provided.")
    task = check_choice("task", task or getattr(model, "task", None), TASKS)
    config = dict(model.config)
    if intensity is None and cohort is not None:
        intensity = _intensity_of(cohort)
    if intensity is not None:
        check_choice("intensity", intensity, INTENSITIES)
    contract = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "torch_version": str(torch.__version__),
        "architecture": name,
        "config": config,
        "task": task,
        "output": "age in years" if task == "age" else "AD logit (probability after a sigmoid)",
        "target_mean": model.target_mean.detach().cpu().tolist(),
        "target_std": model.target_std.detach().cpu().tolist(),
        "axis": config.get("axis"),
        "input_norm": config.get("input_norm", "none"),
        "grid": None if cohort is None else _grid(cohort, config["volume_shape"]),
        "intensity": intensity,
        "cohort": None if cohort is None else {
            "source": str(cohort.meta.get("source")),
            "intensity": cohort.meta.get("intensity"),
            "n_volumes": len(cohort),
        },
        "conformance": None if conformance is None else {
            "checks": sorted(conformance.thresholds),
            "thresholds": {k: list(v) for k, v in conformance.thresholds.items()},
            "rule": "warn above the 99th percentile of validation scans, refuse three times as far from the median",
        },
    }  # fmt: skip
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        payload = {"contract": contract, "state_dict": state}
        if conformance is not None:
            payload["conformance"] = conformance.to_payload()
        torch.save(payload, tmp)
    return path


def _read(path: str | os.PathLike) -> dict:
    payload = torch.load(Path(path).expanduser(), map_location="cpu", weights_only=True)
    contract = payload.get("contract", {}) if isinstance(payload, dict) else {}
    if contract.get("format") != FORMAT:
        raise ValueError(f"{path} is not a model written by save_model (no {FORMAT!r} contract).")
    if contract["format_version"] > FORMAT_VERSION:
        raise ValueError(
            f"{path} was written by slicemri-lite {contract['library_version']} (format "
            f"{contract['format_version']}); this version reads format {FORMAT_VERSION}: upgrade."
        )
    return payload


def read_contract(path: str | os.PathLike) -> dict:
    """The usage contract stored with a saved model (no model is built)."""
    return _read(path)["contract"]


def load_model(path: str | os.PathLike) -> nn.Module:
    """The model saved at ``path``, on the CPU in eval mode, with ``task`` and ``contract`` set.

    The file is read with ``torch.load(weights_only=True)``: tensors and plain values only.
    Pretrained encoders are rebuilt without fetching ImageNet weights (the file has them).
    """
    payload = _read(path)
    contract = payload["contract"]
    config = dict(contract["config"])
    if "pretrained" in config:
        config["pretrained"] = False
    model = _architectures()[contract["architecture"]](**config)
    model.config = dict(contract["config"])  # as trained (pretrained or not)
    model.load_state_dict(payload["state_dict"])
    model.task, model.contract = contract["task"], contract
    reference = payload.get("conformance")
    model.conformance = None if reference is None else ConformanceReference.from_payload(reference)
    return model.eval()


def _table(paths_or_tsv) -> pd.DataFrame:
    """``participant_id`` and absolute ``path`` per image, from a TSV or a list of paths."""
    if isinstance(paths_or_tsv, (str, os.PathLike)) and str(paths_or_tsv).endswith(".tsv"):
        tsv = Path(paths_or_tsv).expanduser()
        table = pd.read_csv(tsv, sep="\t", dtype={"participant_id": str})
        if "path" not in table.columns:
            raise ValueError(f"{tsv} needs a 'path' column; its columns are {list(table.columns)}.")
        table["path"] = [str(p if Path(p).is_absolute() else tsv.parent / p) for p in table["path"]]
    else:
        paths = [paths_or_tsv] if isinstance(paths_or_tsv, (str, os.PathLike)) else paths_or_tsv
        table = pd.DataFrame({"path": [str(Path(p).expanduser()) for p in paths]})
    if "participant_id" not in table.columns:
        names = [Path(p).name.removesuffix(".gz").removesuffix(".nii") for p in table["path"]]
        table.insert(0, "participant_id", names)
    return table


def predict_nifti(
    model: nn.Module | str | os.PathLike,
    paths_or_tsv: str | os.PathLike | Sequence[str | os.PathLike],
    batch_size: int = 4,
    device: str | None = None,
) -> pd.DataFrame:
    """Prepare NIfTI files as the model's training cohort was prepared, predict, and judge.

    Args:
        model: a model from ``load_model`` (it carries its contract), or a saved model's path.
        paths_or_tsv: NIfTI paths, or a TSV with a ``path`` column (relative to the TSV's
            folder) and optionally ``participant_id`` and any other columns, which are kept.
        batch_size: volumes per forward pass.
        device: ``"cuda"`` or ``"cpu"``; default CUDA when available.

    Returns:
        The table, one row per image, plus the task's ``PREDICTION_COLUMN``:
        ``predicted_age`` (years) or ``ad_probability``; ``verdict`` (``ok``, ``warn``,
        ``refuse``, or ``unchecked`` for a model saved without a conformance reference)
        and ``reasons`` (the checks past a threshold, with their values); and one
        ``check_<name>`` column per check's score (see ``train._conformance``).
    """
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    contract = getattr(model, "contract", None)
    if contract is None or contract["grid"] is None or contract["intensity"] is None:
        raise ValueError(
            "predict_nifti needs a model saved with its training cohort "
            "(save_model(model, path, cohort=...)) and reloaded with load_model."
        )
    grid = contract["grid"]
    resolution = grid["resolution"]
    if resolution is None or not np.allclose(grid_affine(resolution), grid["affine"]):
        raise ValueError(
            f"the model's grid (affine {grid['affine']}) is not one of the library's grids; "
            "prepare the images onto it yourself and call the model on the volumes."
        )
    table = _table(paths_or_tsv)
    normalise = contract["intensity"] == "white_matter_level"
    volumes = np.stack([prepare_image(p, resolution, normalise) for p in table["path"]])
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = model.to(device).eval()
    reference = getattr(model, "conformance", None)
    pooled_by_slices = reference is not None and reference.features is not None
    outputs, pooled = [], []
    with torch.no_grad():
        for start in range(0, len(volumes), batch_size):
            x = torch.from_numpy(volumes[start : start + batch_size])[:, None].to(device)
            if pooled_by_slices:
                features = model.encoder_features(x)
                pooled.append(features.mean(dim=1).float().cpu())
                outputs.append(model.forward_features(features)[:, 0].float().cpu())
            else:
                outputs.append(model(x)[:, 0].float().cpu())
    out = torch.cat(outputs).numpy()
    task = contract["task"]
    table = table.assign(**{PREDICTION_COLUMN[task]: out if task == "age" else sigmoid(out)})
    return _judged(table, reference, volumes, torch.cat(pooled).numpy() if pooled else None)


def _judged(table: pd.DataFrame, reference, volumes, pooled) -> pd.DataFrame:
    """``table`` with the conformance report's ``verdict``, ``reasons`` and check columns."""
    if reference is None:
        return table.assign(
            verdict="unchecked",
            reasons="the model was saved without a conformance reference (save_model(..., conformance=...))",
        )
    headers = [header_checks(p, reference.resolution) for p in table["path"]]
    scores = conformance_scores(reference, volumes, pooled, headers)
    judged = verdicts(reference, scores)
    checks = pd.DataFrame(scores).add_prefix("check_")
    table = table.assign(verdict=[v for v, _ in judged], reasons=[r for _, r in judged])
    return pd.concat([table.reset_index(drop=True), checks], axis=1)
