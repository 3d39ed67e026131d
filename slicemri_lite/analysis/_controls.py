"""A positive control for saliency: a model known to rest on one region.

A saliency method is only worth reading on a model of unknown behaviour once it has found
the right voxels on a model whose behaviour is known. ``planted_pairs`` builds the data for
such a model: every scan twice, as it is (label CN) and with a planted effect added (label
AD), so that the effect is the *only* difference between the classes. ``fit_region_model``
trains the book's slice model on those pairs while it sees only the voxels of a region
(``SliceSetNet(input_mask=region)``): whatever it learns, it can only have learnt there.
A method, or the pipeline around it (slicing, restacking, orientation, scoring), that does
not point at the region on this model is broken.

For a gradient method the region model's map is exactly zero outside the region (the chain
rule through the mask), so the control tests the pipeline and the methods that spread a
map beyond where the gradient is (Grad-CAM's upsampling, occlusion's cubes), not whether a
gradient concentrates by itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from slicemri_lite.data._cohort import Cohort, read_rows
from slicemri_lite.models._slice_set import SliceSetNet
from slicemri_lite.train._features import SliceFeatures, encode_volumes
from slicemri_lite.train._fit import fit as train_fit

__all__ = ["planted_pairs", "fit_region_model", "positive_controls"]


def planted_pairs(cohort: Cohort, rows: Mapping[str, Sequence[int]], effect: np.ndarray) -> Cohort:
    """An in-memory cohort of pairs: each scan as it is (``"CN"``) and plus ``effect`` (``"AD"``).

    Args:
        cohort: the source cohort; the rows must be CN participants (an AD scan already
            holds its own effect).
        rows: per split (``"train"``, ``"val"``, ``"test"``), the source rows to pair.
        effect: ``(X, Y, Z)`` effect added to the second scan of each pair, e.g. the
            cohort's template AD effect ``cohort.effects["ad"]``.

    Returns:
        A ``Cohort`` of ``2 * n`` float16 volumes (pairs adjacent: as is, then planted), one
        participant per pair, with the source's affine and effects.
    """
    effect = np.asarray(effect, dtype=np.float32)
    if effect.shape != cohort.shape:
        raise ValueError(f"'effect' must have the grid's shape {cohort.shape}; {effect.shape}.")
    frames, volumes = [], []
    for split, chosen in rows.items():
        chosen = np.asarray(chosen, dtype=int)
        table = cohort.table.iloc[chosen]
        not_cn = table.loc[table["diagnosis"] != "CN", "participant_id"].tolist()
        if not_cn:
            raise ValueError(
                f"planted_pairs needs CN scans (an AD scan has its own effect); {not_cn} are not."
            )
        scans = read_rows(cohort.volumes, chosen).astype(np.float32)
        pair = np.stack([scans, scans + effect], axis=1)  # (n, 2, X, Y, Z)
        volumes.append(pair.reshape(-1, *cohort.shape).astype(np.float16))
        doubled = table.loc[table.index.repeat(2)].reset_index(drop=True)
        doubled["diagnosis"] = ["CN", "AD"] * len(table)
        doubled["split"] = split
        frames.append(doubled)
    table = pd.concat(frames, ignore_index=True)
    meta = {"source": "planted pairs", "from": cohort.meta.get("source")}
    return Cohort(np.concatenate(volumes), table, cohort.affine, dict(cohort.effects), meta)


def fit_region_model(
    pairs: Cohort, region: np.ndarray, *, encoder: str, axis: str = "sagittal", seed: int = 0,
    recipe=None, aggregation: str = "attention", pretrained: bool = True,
):  # fmt: skip
    """The book's slice model (``SliceSetNet.paper``, frozen ``encoder``) that sees only
    ``region``, trained on ``pairs`` (``planted_pairs``) to tell the planted scan from the
    plain one. Returns ``(model, FitResult)``; ``model`` takes whole volumes."""
    torch.manual_seed(seed)
    model = SliceSetNet.paper(encoder, axis=axis, aggregation=aggregation, pretrained=pretrained,
                              volume_shape=pairs.shape, input_mask=region)  # fmt: skip
    values = encode_volumes(model, pairs.volumes)  # the model's own encoder, masked inputs
    features = SliceFeatures(values, None, model.encoder)
    result = train_fit(model, pairs, task="ad", recipe=recipe, seed=seed, features=features,
                       progress=False)  # fmt: skip
    return model, result


def positive_controls(
    cohort: Cohort, task: str, views: Mapping[str, np.ndarray], sizes: Sequence[int], *,
    encoder: str, axis: str = "sagittal", seed: int = 0, recipe=None, pretrained: bool = True,
):  # fmt: skip
    """Region models trained on pairs of the cohort's CN scans, without and with its
    template ``task`` effect (``cohort.effects[task]``), one per view.

    Args:
        views: ``{name: (X, Y, Z) 0/1 mask}``: what each control sees, e.g. ``{"region
            only": effect_mask(effect, brain), "whole brain": brain}``.
        sizes: CN scans paired from the train, val and test splits (the first ones of each).
        encoder, axis, seed, recipe, pretrained: the slice model and its training.

    Returns:
        ``({name: (model, test AUC on the held-out pairs)}, planted)``: ``planted`` holds the
        planted scan of every test pair, ``(n_test, X, Y, Z)`` float32, the volumes to map.
    """
    is_cn = (cohort.table["diagnosis"] == "CN").to_numpy()
    rows = {split: np.flatnonzero(is_cn & (cohort.table["split"] == split).to_numpy())[:n]
            for split, n in zip(("train", "val", "test"), sizes, strict=True)}  # fmt: skip
    pairs = planted_pairs(cohort, rows, cohort.effects[task])
    controls = {}
    for name, view in views.items():
        model, result = fit_region_model(pairs, view, encoder=encoder, axis=axis, seed=seed,
                                         recipe=recipe, pretrained=pretrained)  # fmt: skip
        controls[name] = (model, float(result.metrics["test_auc"]))
    planted = read_rows(pairs.volumes, pairs.indices("test")[1::2]).astype(np.float32)
    return controls, planted
