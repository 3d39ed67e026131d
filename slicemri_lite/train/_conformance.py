"""Is a new scan like the training scans? A conformance report for ``predict_nifti``.

A model answers for any input, so it must be told when not to be trusted. Every scan
``predict_nifti`` prepares is measured seven ways; each measure is oriented so that larger
is less like the training scans:

- ``voxel_size``: the image's largest voxel edge over the grid's (read from its header;
  coarser images lose detail the model was trained with); warn above 1.5, refuse above 3;
- ``obliquity``: how far (degrees) the image's axes are tilted from the world axes (read
  from its header): an image registered to MNI space has axes along the world's, so a
  tilted one is likely still in the scanner's space; warn above 1, refuse above 10;
- ``missing_brain``: the share of the grid's brain mask the scan leaves empty (a field
  of view that cuts off part of the brain, or a scan not registered to MNI space);
- ``outside_brain``: the share of the scan's intensity outside the (dilated) brain mask
  (a skull and neck left on: the training scans were skull-stripped);
- ``misregistration``: one minus the correlation with the training scans' mean;
- ``histogram``: the distance between the scan's brain intensities and the training
  scans' (the mean absolute difference of their quantiles; another scanner, contrast or
  preparation);
- ``features``: how far the scan's pooled encoder features lie from the training
  scans' (mean distance to the 5 nearest, in units of the features' root mean
  variance): anything the other checks miss but the model sees (slice models only).

Except for the two read from the header, thresholds come from the validation split (scans the model
never trained on, measured against the training split): ``warn`` above the 99th
percentile of validation scores, ``refuse`` three times as far from the median. Where
the validation scans hardly vary (skull-stripped scans have almost nothing outside the
brain), a floor keeps a check from firing on differences no one could see
(``FLOORS``: warn at no less than 1 % of the intensity outside the brain, refuse at no
less than 3 %). A scan
is ``refuse`` when any check refuses, else ``warn`` when any warns, else ``ok``; its
``reasons`` name every check past a threshold with its value. The reference (mean scan,
intensity quantiles, training features, thresholds) is saved with the model
(``save_model(..., conformance=...)``): part of its usage contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage as ndi

from slicemri_lite._core.geometry import grid_brain_mask
from slicemri_lite.data._intensity import white_matter_level

__all__ = [
    "CHECKS",
    "FLOORS",
    "VERDICTS",
    "ConformanceReference",
    "conformance_reference",
    "cohort_conformance",
    "conformance_scores",
    "verdicts",
    "header_checks",
]

CHECKS = (
    "voxel_size",
    "obliquity",
    "missing_brain",
    "outside_brain",
    "misregistration",
    "histogram",
    "features",
)
VERDICTS = ("ok", "warn", "refuse")
VOXEL_SIZE_LIMITS = (1.5, 3.0)  # largest voxel edge / grid resolution: warn, refuse
OBLIQUITY_LIMITS = (1.0, 10.0)  # degrees between the image's axes and the world's
QUANTILES = np.linspace(0.01, 0.99, 99)
NEIGHBOURS = 5
# the least a check warns at (and three times that to refuse), whatever the validation scans
FLOORS = {"outside_brain": 0.01, "missing_brain": 0.02}
_DILATE_MM = 8  # brain mask margin for outside_brain and the registration check


def header_checks(path, resolution: int) -> dict[str, float]:
    """The checks read from a NIfTI file's header: ``voxel_size`` (its largest voxel edge
    over the grid's ``resolution``) and ``obliquity`` (the largest tilt of its axes from
    the world's, in degrees)."""
    import nibabel as nib
    from nibabel.affines import obliquity

    img = nib.load(path)
    zooms = img.header.get_zooms()[:3]
    tilt = np.degrees(np.abs(obliquity(img.affine))).max()
    return {"voxel_size": float(max(zooms)) / float(resolution), "obliquity": float(tilt)}


def _masks(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    brain = grid_brain_mask(resolution)
    margin = max(1, round(_DILATE_MM / resolution))
    return brain, ndi.binary_dilation(brain, iterations=margin)


def _as_prepared(volume: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """A volume normalised as ``predict_nifti`` normalises: by its level in the MNI brain mask."""
    volume = np.asarray(volume, dtype=np.float32)
    level = float(white_matter_level(torch.from_numpy(volume[brain])))
    return volume / level if level > 0 else volume


def _image_scores(volume: np.ndarray, mean_scan: np.ndarray | None, quantiles: np.ndarray | None,
                  brain: np.ndarray, near: np.ndarray) -> dict[str, float]:  # fmt: skip
    """The image checks of one prepared ``(X, Y, Z)`` volume."""
    magnitude = np.abs(volume)
    scores = {
        "missing_brain": float((volume[brain] <= 0.05).mean()),
        "outside_brain": float(magnitude[~near].sum() / max(magnitude.sum(), 1e-12)),
    }
    if mean_scan is not None:
        r = np.corrcoef(volume[near], mean_scan[near])[0, 1]
        scores["misregistration"] = float(1 - r) if np.isfinite(r) else 1.0
    if quantiles is not None:
        scores["histogram"] = float(
            np.abs(np.quantile(volume[brain], QUANTILES) - quantiles).mean()
        )
    return scores


@dataclass
class ConformanceReference:
    """What the training scans look like, and the thresholds set on the validation scans.

    Attributes:
        resolution: the grid (mm).
        mean_scan: ``(X, Y, Z)`` float32 mean of the prepared training scans.
        quantiles: ``(99,)`` mean intensity quantiles (1 to 99 %) inside the brain mask.
        features: ``(n, E)`` standardised pooled encoder features of the training scans,
            or ``None`` (no feature check).
        feature_mean, feature_std: ``(E,)`` their standardisation.
        thresholds: ``{check: (warn, refuse)}``.
    """

    resolution: int
    mean_scan: np.ndarray
    quantiles: np.ndarray
    thresholds: dict[str, tuple[float, float]]
    features: np.ndarray | None = None
    feature_mean: np.ndarray | None = None
    feature_std: np.ndarray | None = None
    n_reference: int = 0
    n_validation: int = 0
    _masks: tuple = field(default=None, repr=False, compare=False)

    def masks(self) -> tuple[np.ndarray, np.ndarray]:
        if self._masks is None:
            self._masks = _masks(self.resolution)
        return self._masks

    def scores(self, volumes: np.ndarray, pooled: np.ndarray | None = None) -> list[dict]:
        """The checks of prepared volumes ``(n, X, Y, Z)`` and their pooled features ``(n, E)``."""
        brain, near = self.masks()
        out = [_image_scores(_as_prepared(v, brain), self.mean_scan, self.quantiles, brain, near)
               for v in volumes]  # fmt: skip
        if self.features is not None and pooled is not None:
            for row, d in zip(out, self.feature_distance(pooled), strict=True):
                row["features"] = float(d)
        return out

    def feature_distance(self, pooled: np.ndarray) -> np.ndarray:
        """Mean distance to the ``NEIGHBOURS`` nearest training scans, ``(n, E)`` -> ``(n,)``."""
        z = (np.asarray(pooled, np.float64) - self.feature_mean) / self.feature_std
        d = np.sqrt(((z[:, None, :] - self.features[None]) ** 2).sum(-1))  # (n, n_train)
        k = min(NEIGHBOURS, self.features.shape[0])
        return np.sort(d, axis=1)[:, :k].mean(axis=1) / np.sqrt(z.shape[1])

    def to_payload(self) -> dict:
        """Tensors and plain values for ``torch.save`` (read back with ``weights_only=True``)."""
        tensors = {"mean_scan": torch.from_numpy(self.mean_scan.astype(np.float16)),
                   "quantiles": torch.from_numpy(np.asarray(self.quantiles, np.float32))}  # fmt: skip
        if self.features is not None:
            tensors |= {
                "features": torch.from_numpy(self.features.astype(np.float32)),
                "feature_mean": torch.from_numpy(self.feature_mean.astype(np.float32)),
                "feature_std": torch.from_numpy(self.feature_std.astype(np.float32)),
            }
        return {**tensors, "resolution": int(self.resolution), "n_reference": self.n_reference,
                "n_validation": self.n_validation,
                "thresholds": {k: [float(a), float(b)] for k, a, b in _flat(self.thresholds)}}  # fmt: skip

    @classmethod
    def from_payload(cls, payload: dict) -> ConformanceReference:
        def array(name):
            value = payload.get(name)
            return None if value is None else value.numpy().astype(np.float32)

        return cls(
            resolution=int(payload["resolution"]),
            mean_scan=array("mean_scan"),
            quantiles=array("quantiles"),
            thresholds={k: tuple(v) for k, v in payload["thresholds"].items()},
            features=array("features"),
            feature_mean=array("feature_mean"),
            feature_std=array("feature_std"),
            n_reference=int(payload["n_reference"]),
            n_validation=int(payload["n_validation"]),
        )


def _flat(thresholds: dict) -> list[tuple[str, float, float]]:
    return [(k, v[0], v[1]) for k, v in thresholds.items()]


def _threshold(values: list[float], floor: float = 0.0) -> tuple[float, float]:
    """``warn`` at the 99th percentile, ``refuse`` three times as far from the median;
    neither below ``floor`` (refuse: ``3 * floor``)."""
    values = np.asarray(values, dtype=float)
    median, warn = np.median(values), np.quantile(values, 0.99)
    refuse = median + 3 * max(warn - median, 1e-6)
    return float(max(warn, floor)), float(max(refuse, 3 * floor))


def _pooled(model, volumes, batch_size: int = 4) -> np.ndarray:
    """Mean over slices of the model's encoder features: ``(n, E)``."""
    out = []
    model = model.eval()
    with torch.no_grad():
        for start in range(0, len(volumes), batch_size):
            x = torch.from_numpy(np.asarray(volumes[start : start + batch_size], np.float32))
            out.append(model.encoder_features(x[:, None]).mean(dim=1).float().numpy())
    return np.concatenate(out)


def conformance_reference(cohort, model=None, features=None) -> ConformanceReference:
    """The reference of a model trained on ``cohort``'s train split, thresholds on its val split.

    Args:
        cohort: the training cohort (``train`` and ``val`` splits).
        model: a ``SliceSetNet`` whose encoder makes the feature check's features, or
            ``None`` (no feature check, e.g. a ``Conv3DNet``).
        features: the cohort's stored ``SliceFeatures`` for the same encoder, which saves
            running it (their values must be the model's encoder outputs).
    """
    resolution = int(round(abs(float(cohort.affine[0, 0]))))
    brain, near = _masks(resolution)
    train, val = cohort.indices("train"), cohort.indices("val")
    if len(train) < NEIGHBOURS or len(val) < 2:
        raise ValueError(
            f"a conformance reference needs {NEIGHBOURS}+ train and 2+ val scans; the cohort "
            f"has {len(train)} and {len(val)}."
        )
    total, quantiles = np.zeros(cohort.shape, np.float64), np.zeros(len(QUANTILES))
    for row in train:
        volume = _as_prepared(cohort.volumes[row], brain)
        total += volume
        quantiles += np.quantile(volume[brain], QUANTILES)
    reference = ConformanceReference(
        resolution, (total / len(train)).astype(np.float32), quantiles / len(train), {},
        n_reference=len(train), n_validation=len(val),
    )  # fmt: skip
    pooled = None
    if features is not None or model is not None:
        if features is not None:
            pooled_train, pooled = features.pooled(train), features.pooled(val)
        else:
            pooled_train = _pooled(model, [cohort.volumes[r] for r in train])
            pooled = _pooled(model, [cohort.volumes[r] for r in val])
        # one scale for every feature (the root mean variance): a feature that barely
        # varies in training must not turn a tiny change into a huge distance
        mean = pooled_train.mean(0)
        std = np.full_like(mean, np.sqrt(pooled_train.var(0).mean()) + 1e-12)
        reference.features = ((pooled_train - mean) / std).astype(np.float32)
        reference.feature_mean, reference.feature_std = mean, std
    scores = [_image_scores(_as_prepared(cohort.volumes[r], brain), reference.mean_scan,
                            reference.quantiles, brain, near) for r in val]  # fmt: skip
    if pooled is not None:
        for row, d in zip(scores, reference.feature_distance(pooled), strict=True):
            row["features"] = float(d)
    reference.thresholds = {c: _threshold([s[c] for s in scores], FLOORS.get(c, 0.0))
                            for c in scores[0]}  # fmt: skip
    reference.thresholds["voxel_size"] = VOXEL_SIZE_LIMITS
    reference.thresholds["obliquity"] = OBLIQUITY_LIMITS
    return reference


def conformance_scores(
    reference: ConformanceReference, volumes, pooled=None, headers=None
) -> list[dict]:
    """Every check's score per scan; ``headers``: each file's ``header_checks``, if known."""
    scores = reference.scores(volumes, pooled)
    for row, header in zip(scores, headers or [{}] * len(scores), strict=True):
        row.update(header)
    return scores


def cohort_conformance(
    reference: ConformanceReference, cohort, rows, features=None, chunk: int = 16
) -> list[dict]:
    """Every check's score for ``rows`` of a cohort, ``chunk`` volumes in memory at a time.

    ``features``: the cohort's stored ``SliceFeatures`` of the model's encoder (for the
    feature check; without them it is skipped).
    """
    rows = np.asarray(rows, dtype=int)
    scores = []
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        volumes = np.stack([np.asarray(cohort.volumes[r], np.float32) for r in part])
        scores += reference.scores(volumes, None if features is None else features.pooled(part))
    return scores


def verdicts(reference: ConformanceReference, scores: list[dict]) -> list[tuple[str, str]]:
    """``(verdict, reasons)`` per scan: ``ok``, ``warn`` or ``refuse``, and the checks past a threshold."""
    out = []
    for row in scores:
        verdict, reasons = "ok", []
        for check in CHECKS:
            if check not in row or check not in reference.thresholds:
                continue
            warn, refuse = reference.thresholds[check]
            value = row[check]
            if value > refuse:
                verdict = "refuse"
                reasons.append(f"{check} {value:.3g} > refuse {refuse:.3g}")
            elif value > warn:
                verdict = "warn" if verdict == "ok" else verdict
                reasons.append(f"{check} {value:.3g} > warn {warn:.3g}")
        out.append((verdict, "; ".join(reasons)))
    return out
