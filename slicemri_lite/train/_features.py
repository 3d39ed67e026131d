"""Frozen slice features: every slice of a cohort through a frozen 2D encoder, computed once.

With a frozen encoder, only the projection, position code, pooling and head of a slice
model learn, and they see the encoder's output, never the volume. So the encoder runs over
each slice once, and every later run (every seed, training size and chapter) trains on the
stored ``(N, S, E)`` array. ``fit(model, cohort, features=...)`` accepts it directly.

Features are identified by the cohort's content and by ``FeatureSpec``: the encoder and its
weights (ImageNet, or random weights drawn under ``seed``), the slicing axis, and the grid.
They are kept

- in memory for the process (the last few used), and
- on disk when the cohort came from a cache folder: under
  ``<data dir>/features/<cohort folder>/<spec>/`` (``features.npy`` + ``meta.json`` with a
  SHA-256 checksum), written atomically like the cohort cache.

Standardisation (per feature dimension, over every slice of the *training* split) is not
stored: it depends on which rows train, so ``SliceFeatures.standardisation(rows)`` computes
it when a model is fitted.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slicemri_lite._core.atomic import atomic_path
from slicemri_lite._core.env import autocast, resolve_device, trim_heap
from slicemri_lite._core.geometry import AXES, grid_brain_mask, voxel_size
from slicemri_lite._core.validation import check_choice
from slicemri_lite.data._cohort import Cohort, read_rows, sha256_file
from slicemri_lite.data._layout import FEATURES_VERSION
from slicemri_lite.models._slice_set import SLICE_BATCH, SliceSetNet

__all__ = [
    "FeatureSpec",
    "SliceFeatures",
    "slice_features",
    "encode_volumes",
    "feature_standardisation",
    "clear_memory_cache",
    "FEATURES_VERSION",
]

INITS = ("imagenet", "random")
INPUTS = ("paper", "book")
MASKS = ("none", "brain")
_MEMORY: OrderedDict[str, SliceFeatures] = OrderedDict()
_MEMORY_SLOTS = 4


@dataclass(frozen=True)
class FeatureSpec:
    """Which encoder makes the features.

    Attributes:
        encoder: a 2D encoder name (``slicemri_lite.encoders.ENCODERS``).
        init: ``"imagenet"`` (pretrained weights) or ``"random"`` (drawn under ``seed``).
        axis: ``"sagittal"``, ``"coronal"`` or ``"axial"``.
        seed: seeds the random-init encoder (ignored for ImageNet weights).
        inputs: how slices reach the encoder: ``"paper"`` (each volume z-scored, no
            ImageNet normalisation: ``SliceSetNet.paper``, the book's default) or
            ``"book"`` (volumes as given, ImageNet normalisation folded into the first conv).
        mask: ``"none"`` (every voxel of the grid) or ``"brain"`` (each volume multiplied by
            the MNI brain mask of its grid, ``grid_brain_mask``, first: features for a model
            built with ``input_mask=grid_brain_mask(mm)``, which sees only the brain).
    """

    encoder: str = "efficientnet_lite0"
    init: str = "imagenet"
    axis: str = "sagittal"
    seed: int = 0
    inputs: str = "paper"
    mask: str = "none"

    def __post_init__(self):
        check_choice("init", self.init, INITS)
        check_choice("axis", self.axis, AXES)
        check_choice("inputs", self.inputs, INPUTS)
        check_choice("mask", self.mask, MASKS)

    @property
    def name(self) -> str:
        """A folder-safe name, e.g. ``efficientnet_lite0-imagenet-sagittal``."""
        seed = f"-seed{self.seed}" if self.init == "random" else ""
        inputs = "" if self.inputs == "paper" else f"-{self.inputs}"
        mask = "" if self.mask == "none" else f"-{self.mask}"
        return f"{self.encoder.replace(':', '_')}-{self.init}-{self.axis}{seed}{inputs}{mask}"

    def identity(self) -> dict:
        """The fields that identify the features (``mask`` only when it is set, so that
        features stored before the field existed keep their keys)."""
        fields = asdict(self)
        if fields["mask"] == "none":
            del fields["mask"]
        return fields

    def input_mask(self, affine) -> np.ndarray | None:
        """The ``(X, Y, Z)`` mask for a cohort with this ``affine`` (``None`` for no mask)."""
        if self.mask == "none":
            return None
        return grid_brain_mask(int(round(float(voxel_size(affine)[0]))))

    def build(self, volume_shape, input_mask=None) -> nn.Module:
        """The frozen slice model (no position, mean pooling) whose encoder makes the features;
        ``input_mask``: ``input_mask(cohort.affine)`` when ``mask`` is set."""
        if (self.mask != "none") != (input_mask is not None):
            raise ValueError(f"FeatureSpec(mask={self.mask!r}) needs input_mask given exactly "
                             "when mask is set: spec.build(shape, spec.input_mask(affine)).")  # fmt: skip
        torch.manual_seed(self.seed)  # the encoder is built first: same weights as the model's
        options = {"pretrained": self.init == "imagenet", "axis": self.axis,
                   "volume_shape": volume_shape, "input_mask": input_mask}  # fmt: skip
        if self.inputs == "paper":
            net = SliceSetNet.paper(self.encoder, position="none", **options)
        else:
            net = SliceSetNet(self.encoder, position="none", **options)
        return net.eval().requires_grad_(False)

    def matches(self, model: nn.Module) -> bool:
        """Whether ``model`` slices and encodes volumes as these features were made."""
        config = getattr(model, "config", {})
        paper_inputs = config.get("input_norm") == "zscore" and not config.get("imagenet_norm")
        book_inputs = config.get("input_norm", "none") == "none" and config.get(
            "imagenet_norm", True
        )
        inputs_match = paper_inputs if self.inputs == "paper" else book_inputs
        masks_match = (self.mask != "none") == bool(config.get("input_mask"))
        same_encoder = (self.encoder, self.axis) == (model.encoder_name, model.axis)
        return inputs_match and masks_match and same_encoder


@dataclass
class SliceFeatures:
    """Frozen slice features of a cohort's volumes.

    Attributes:
        values: ``(N, S, E)`` float32, one row per cohort row (same order).
        spec: the encoder, weights and axis that made them (``None`` for a model's own
            encoder, see ``encode_volumes``).
        encoder: the frozen encoder module that made them (its weights travel into the
            model that ``fit`` trains on these features, which then takes raw volumes).
        key: identifies cohort content + spec (empty when not cacheable).
    """

    values: np.ndarray
    spec: FeatureSpec | None
    encoder: nn.Module
    key: str = ""

    def __len__(self) -> int:
        return len(self.values)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.values.shape)

    def subset(self, rows) -> SliceFeatures:
        """The features of ``rows`` (integer positions), matching ``Cohort.subset(rows)``."""
        return replace(self, values=self.values[np.asarray(rows, dtype=int)], key="")

    def standardisation(self, rows) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-dimension mean and std ``(E,)`` over every slice of ``rows`` (the train split)."""
        return feature_standardisation(torch.from_numpy(self.values[np.asarray(rows, int)]))

    def pooled(self, rows=None) -> np.ndarray:
        """Mean over slices: ``(n, E)`` per volume, the input of a linear probe."""
        values = self.values if rows is None else self.values[np.asarray(rows, dtype=int)]
        return values.mean(axis=1)


def feature_standardisation(
    features: torch.Tensor, eps: float = 1e-6, rows_at_once: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and standard deviation ``(E,)`` over every slice of ``(n, S, E)``.

    A dimension that is constant over the training slices (std below ``eps``; ImageNet
    encoders have many that never fire on MRI) gets std 1, not ``eps``: it only has to be
    centred, and dividing by ``eps`` would blow any value it takes on other volumes up a
    million times (a model without a norm after the projection then predicts nonsense).
    The sums run in float64, ``rows_at_once`` volumes at a time, so no float64 copy of the
    whole array is made (three axes' 2 mm features of 88 volumes would take 0.26 GB).
    """
    chunks = [c.reshape(-1, c.shape[-1]) for c in features.split(rows_at_once)]  # views
    count = sum(len(c) for c in chunks)
    mean = sum(c.double().sum(dim=0) for c in chunks) / count
    variance = sum(((c.double() - mean) ** 2).sum(dim=0) for c in chunks) / count
    std = variance.sqrt()
    std = torch.where(std < eps, torch.ones_like(std), std)
    return mean.float(), std.float()


@torch.no_grad()
def encode_volumes(
    net: nn.Module,
    volumes,
    rows=None,
    batch_size: int = 8,
    device=None,
    slice_batch: int = SLICE_BATCH,
    progress: bool = False,
    description: str = "encoding slices",
) -> np.ndarray:
    """Run a slice model's encoder over ``(N, X, Y, Z)`` volumes: ``(n, S, E)`` float32.

    Args:
        net: a slice model (``to_slices``, ``encoder``, ``n_slices``); its encoder is used
            as it is, in eval mode.
        volumes: ``(N, X, Y, Z)``, e.g. a cohort's memory-mapped array.
        rows: the rows to encode (default all); ``batch_size`` volumes are read at a time.
        device: where the encoder runs.
        slice_batch: the most slices through the encoder at once (memory stays bounded
            whatever the grid; the features do not depend on it).
        progress: show a progress bar over the volumes, with tqdm's estimate of the time
            left (``description`` labels it).
    """
    from tqdm.auto import tqdm

    device = resolve_device(device)
    encoder_was_training = net.encoder.training
    net.encoder.to(device).eval()
    rows = np.arange(len(volumes)) if rows is None else np.asarray(rows, dtype=int)
    out = None  # filled in place: no list of chunks to concatenate (twice the memory)
    bar = tqdm(total=len(rows), desc=description, unit="volume", disable=not progress)
    for start in range(0, len(rows), batch_size):
        batch = read_rows(volumes, rows[start : start + batch_size]).astype(np.float32)
        x = torch.from_numpy(batch)[:, None].to(device)
        with autocast(device):
            slices = net.to_slices(x)  # (B*S, 1, H, W)
            parts = [net.encoder(part).float() for part in slices.split(slice_batch)]
        features = torch.cat(parts).reshape(len(x), net.n_slices, -1).cpu().numpy()
        if out is None:
            out = np.empty((len(rows), *features.shape[1:]), np.float32)
        out[start : start + len(x)] = features
        bar.update(len(x))
    bar.close()
    net.encoder.train(encoder_was_training)
    return out


def _cohort_fingerprint(cohort: Cohort) -> str:
    """SHA-256 of the cohort's content: the cache's checksum, or the volumes' bytes."""
    digest = hashlib.sha256()
    checksum = cohort.meta.get("volumes_sha256")
    if checksum:
        digest.update(checksum.encode())
    else:
        for start in range(0, len(cohort), 16):
            digest.update(np.ascontiguousarray(cohort.volumes[start : start + 16]).tobytes())
    digest.update(str(tuple(cohort.volumes.shape)).encode())
    digest.update(np.asarray(cohort.affine, dtype=float).tobytes())
    return digest.hexdigest()


def _key(cohort: Cohort, spec: FeatureSpec) -> str:
    mm = "x".join(f"{v:g}" for v in voxel_size(cohort.affine))
    text = json.dumps([_cohort_fingerprint(cohort), spec.identity(), mm, FEATURES_VERSION])
    return hashlib.sha256(text.encode()).hexdigest()


def _disk_folder(cohort: Cohort, spec: FeatureSpec) -> Path | None:
    """Where features of a cached cohort live on disk; ``None`` for an in-memory cohort."""
    cache = cohort.meta.get("cache")
    if not cache or not cohort.meta.get("volumes_sha256"):
        return None
    cache = Path(cache)
    return cache.parent.parent / "features" / cache.name / spec.name


def _read_disk(folder: Path, key: str) -> np.ndarray | None:
    """The stored array if ``folder`` holds features with this key and intact bytes."""
    meta_file = folder / "meta.json"
    if not meta_file.is_file():
        return None
    meta = json.loads(meta_file.read_text())
    if meta.get("key") != key or sha256_file(folder / "features.npy") != meta.get("sha256"):
        return None  # another cohort content or version, or damaged: recompute and replace
    # memory-mapped: a chapter that reads a 2 mm cohort's features on three axes (over a
    # gigabyte) keeps them on disk and copies only the rows a step uses (Binder: 2 GB)
    return np.load(folder / "features.npy", mmap_mode="r", allow_pickle=False)


def _write_disk(folder: Path, key: str, values: np.ndarray, spec: FeatureSpec) -> None:
    with atomic_path(folder, directory=True) as tmp:
        np.save(tmp / "features.npy", values)
        meta = {"key": key, "spec": asdict(spec), "shape": list(values.shape)}
        meta.update(sha256=sha256_file(tmp / "features.npy"), version=FEATURES_VERSION)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))


def _remember(key: str, features: SliceFeatures) -> None:
    _MEMORY[key] = features
    _MEMORY.move_to_end(key)
    while len(_MEMORY) > _MEMORY_SLOTS:
        _MEMORY.popitem(last=False)


def clear_memory_cache() -> None:
    """Forget every feature array kept in memory (the disk cache stays)."""
    _MEMORY.clear()


def slice_features(
    cohort: Cohort,
    spec: FeatureSpec | None = None,
    *,
    batch_size: int = 8,
    device: str | None = None,
    disk: bool = True,
    progress: bool = False,
    **spec_fields,
) -> SliceFeatures:
    """Frozen slice features ``(N, S, E)`` of every cohort row, computed at most once.

    Args:
        cohort: the cohort (all its rows are encoded; ``SliceFeatures.subset`` selects).
        spec: encoder, init, axis, seed; or give them as keywords
            (``slice_features(cohort, encoder="resnet18", init="random")``).
        batch_size: volumes per encoder batch.
        device: where the encoder runs (default: CUDA when available).
        disk: read and write the on-disk cache (only for cohorts loaded from a cache folder).
        progress: when the encoder has to run, show a progress bar with the estimated
            time left (about 3 minutes per 440 volumes and axis for EfficientNet-Lite0 at
            2 mm on two CPU cores); a cached array shows nothing.

    Returns:
        ``SliceFeatures``; a second call with the same cohort and spec returns the stored
        array without running the encoder (from memory, else from disk).

    Raises:
        slicemri_lite.encoders.OfflineWeightsError: ImageNet weights can't be had offline.
    """
    spec = spec or FeatureSpec(**spec_fields)
    key = _key(cohort, spec)
    if key in _MEMORY:
        _MEMORY.move_to_end(key)
        return _MEMORY[key]
    net = spec.build(cohort.shape, spec.input_mask(cohort.affine))  # raises OfflineWeightsError
    folder = _disk_folder(cohort, spec) if disk else None
    values = _read_disk(folder, key) if folder is not None else None
    if values is None:
        values = encode_volumes(
            net,
            cohort.volumes,
            batch_size=batch_size,
            device=device,
            progress=progress,
            description=f"encoding {spec.name} (once; cached)",
        )
        trim_heap()  # the encoder's freed activations: about 0.15 GB at 2 mm otherwise
        if folder is not None:  # kept memory-mapped from disk, not in RAM (Binder: 2 GB)
            _write_disk(folder, key, values, spec)  # checksummed there: not read again
            values = np.load(folder / "features.npy", mmap_mode="r", allow_pickle=False)
            trim_heap()
    features = SliceFeatures(values, spec, net.encoder.cpu(), key)
    _remember(key, features)
    return features
