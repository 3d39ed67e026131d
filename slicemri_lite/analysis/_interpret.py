"""What did a model look at? Attribution volumes for the book's models, and their sanity checks.

Every attribution is a volume on the cohort's grid, ``(n, X, Y, Z)`` float32, computed
``batch_size`` participants at a time:

- ``"smoothgrad"``: the input gradient averaged over noisy copies of the volume
  (Smilkov et al., 2017; captum's ``Saliency`` in a ``NoiseTunnel``).
- ``"integrated_gradients"``: gradients integrated along the straight path from an empty
  (all-zero, i.e. no brain) volume (Sundararajan et al., 2017; captum, with
  ``internal_batch_size`` bounding memory).
- ``"occlusion"``: how much the output drops when a cube of voxels is set to zero
  (Zeiler & Fergus, 2014; captum's ``Occlusion`` with 3D patches).
- ``"gradcam"``: Grad-CAM (Selvaraju et al., 2017), computed here by hand: for a slice
  model, on the 2D encoder's last convolutional block *for every slice*, upsampled to the
  slice and stacked back along the slicing axis into a volume; for a 3D CNN, on a 3D block.

The ridge baseline is linear, so its voxel coefficients are an attribution too
(``ridge_coefficient_map``); ``ridge_module`` makes it a torch module so that the same
methods run on it.

Sanity checks (Adebayo et al., 2018): ``cascading_randomisation`` re-initialises a model
from the top layer down; ``fit_on_shuffled_labels`` trains on permuted targets. A map that
does not change when the model is destroyed explains the input, not the model.
Scores against a mask live in ``slicemri_lite.saliency_scores``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from slicemri_lite._core.atomic import atomic_path
from slicemri_lite._core.env import resolve_device
from slicemri_lite._core.geometry import voxel_size
from slicemri_lite._core.validation import check_choice
from slicemri_lite.analysis._gradcam import gradcam, gradcam_layer
from slicemri_lite.data._cohort import TASKS, Cohort
from slicemri_lite.data.synthetic._generator import render_participant
from slicemri_lite.train._fit import fit as train_fit
from slicemri_lite.train._slice_chunks import ChunkedForward

__all__ = [
    "METHODS",
    "attributions",
    "gradcam",
    "gradcam_layer",
    "ridge_module",
    "ridge_coefficient_map",
    "group_map",
    "participant_effect",
    "to_nifti",
    "save_nifti",
    "slice_attention",
    "randomisation_order",
    "randomise",
    "cascading_randomisation",
    "shuffle_labels",
    "fit_on_shuffled_labels",
]

METHODS = ("smoothgrad", "integrated_gradients", "occlusion", "gradcam")
SLICE_CHUNK = 16  # slices through the encoder at once in a gradient method (memory)


# ---------------------------------------------------------------- attributions


def _batch(volumes, rows: np.ndarray, device) -> torch.Tensor:
    """``(b, 1, X, Y, Z)`` float32 on ``device`` from an ``(N, X, Y, Z)`` (memory-mapped) array."""
    array = np.asarray(volumes[rows], dtype=np.float32)
    return torch.from_numpy(array)[:, None].to(device)


def attributions(
    model: nn.Module,
    volumes,
    method: str = "smoothgrad",
    *,
    target: int = 0,
    batch_size: int = 1,
    device: str | None = None,
    samples: int = 8,
    noise: float = 0.1,
    steps: int = 16,
    internal_batch_size: int = 1,
    patch: int = 6,
    stride: int | None = None,
    layer: str | None = None,
    slice_chunk: int | None = SLICE_CHUNK,
) -> np.ndarray:
    """Attribution volumes ``(n, X, Y, Z)`` float32 for ``(n, X, Y, Z)`` input volumes.

    Args:
        model: a ``SliceSetNet``, ``Conv3DNet``, ``ridge_module(...)``, or any module taking
            ``(B, 1, X, Y, Z)`` and returning ``(B, n_outputs)``. Put in eval mode here.
        volumes: ``(n, X, Y, Z)`` array, e.g. ``cohort.volumes[rows]`` (float16 is fine).
        method: one of ``METHODS``.
        target: which output to explain (0: the age, or the AD logit).
        batch_size: participants per step (memory grows with it).
        device: where to compute (default: CUDA when available).
        samples, noise: SmoothGrad's noisy copies, and their noise sd as a fraction of the
            batch's intensity range (Smilkov et al. suggest 0.1 to 0.2).
        steps, internal_batch_size: Integrated Gradients' path steps, and how many of them
            run at once per participant (each one holds a whole volume's graph: about
            0.4 GB for a slice model with EfficientNet-Lite0 at 4 mm).
        patch, stride: occlusion cube edge and step in voxels (stride defaults to patch).
        layer: Grad-CAM's layer, a name in ``model.named_modules()`` (default:
            ``gradcam_layer(model)``).
        slice_chunk: for a slice model, SmoothGrad and Integrated Gradients run its encoder
            on this many slices at a time under activation checkpointing
            (``train.ChunkedForward``): the same maps, in a fraction of the memory (at
            2 mm all 91 slices' activations at once are about 1.5 GB), for one more
            forward pass. ``None``: every slice at once.
    """
    check_choice("method", method, METHODS)
    volumes = volumes if hasattr(volumes, "shape") else np.asarray(volumes)
    if len(volumes.shape) != 4:
        raise ValueError(f"'volumes' must be (n, X, Y, Z); {tuple(volumes.shape)} was provided.")
    device = resolve_device(device)
    model = model.to(device).eval()
    chunked = model
    if slice_chunk is not None and hasattr(model, "to_slices"):
        chunked = ChunkedForward(model, slice_chunk)  # eval mode: batch norm frozen, exact
    compute = {
        "smoothgrad": lambda x: _smoothgrad(chunked, x, target, samples, noise),
        "integrated_gradients": lambda x: _integrated_gradients(
            chunked, x, target, steps, internal_batch_size
        ),
        "occlusion": lambda x: _occlusion(model, x, target, patch, stride or patch),
        "gradcam": lambda x: gradcam(model, x, target, layer),
    }[method]
    chunks = []
    for start in range(0, len(volumes), batch_size):
        x = _batch(volumes, np.arange(start, min(start + batch_size, len(volumes))), device)
        chunks.append(compute(x).detach().float().cpu().numpy()[:, 0])
    return np.concatenate(chunks)


def _smoothgrad(model, x, target, samples, noise) -> torch.Tensor:
    from captum.attr import NoiseTunnel, Saliency

    sd = noise * float(x.amax() - x.amin())
    tunnel = NoiseTunnel(Saliency(model))
    # abs=False: the noisy gradients are averaged with their signs, as in Smilkov et al.
    return tunnel.attribute(x, nt_type="smoothgrad", nt_samples=samples, stdevs=sd,
                            nt_samples_batch_size=1, target=target, abs=False)  # fmt: skip


def _integrated_gradients(model, x, target, steps, internal_batch_size) -> torch.Tensor:
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(model)
    return ig.attribute(x, baselines=torch.zeros_like(x), target=target, n_steps=steps,
                        internal_batch_size=internal_batch_size * len(x))  # fmt: skip


def _occlusion(model, x, target, patch, stride) -> torch.Tensor:
    from captum.attr import Occlusion

    with torch.no_grad():
        return Occlusion(model).attribute(
            x, sliding_window_shapes=(1, patch, patch, patch), strides=(1, stride, stride, stride),
            baselines=0.0, target=target, perturbations_per_eval=8,  # 8 cubes per pass
        )  # fmt: skip


# ---------------------------------------------------------------- the ridge as a module


class _RidgeModule(nn.Module):
    """``VoxelRidge`` as a function of the volume: block means -> centred -> linear."""

    def __init__(self, ridge, factor: int, volume_shape):
        super().__init__()
        r = ridge.ridge_
        self.factor, self.volume_shape = factor, tuple(volume_shape)
        self.register_buffer("weights", torch.as_tensor(r.weights_, dtype=torch.float32))
        self.register_buffer("x_mean", torch.as_tensor(r.x_mean_, dtype=torch.float32))
        self.y_mean = float(r.y_mean_)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, X, Y, Z)`` -> ``(B, 1)``: age in years, or the AD decision score."""
        blocks = x.float()
        if self.factor > 1:
            blocks = F.avg_pool3d(blocks, self.factor, ceil_mode=True)
        return ((blocks.flatten(1) - self.x_mean) @ self.weights + self.y_mean)[:, None]


def ridge_module(ridge, cohort: Cohort) -> nn.Module:
    """A fitted ``VoxelRidge`` as a module on the cohort's volumes ``(B, 1, X, Y, Z) -> (B, 1)``."""
    if getattr(ridge, "ridge_", None) is None:
        raise ValueError("the VoxelRidge is not fitted: call ridge.fit(cohort) first.")
    factor = max(1, round(ridge.block_mm / float(voxel_size(cohort.affine).mean())))
    return _RidgeModule(ridge, factor, cohort.shape)


def ridge_coefficient_map(ridge, cohort: Cohort) -> np.ndarray:
    """The ridge's weight on every voxel, ``(X, Y, Z)`` float32: its exact gradient.

    Each block's coefficient is shared by the voxels it averages, divided by their number.
    """
    module = ridge_module(ridge, cohort)
    x = torch.zeros(1, 1, *cohort.shape, requires_grad=True)
    (grad,) = torch.autograd.grad(module(x).sum(), x)
    return grad[0, 0].numpy()


# ---------------------------------------------------------------- maps and files


def participant_effect(cohort: Cohort, row: int, task: str) -> np.ndarray:
    """The effect of ``task`` in one participant's scan, ``(X, Y, Z)`` float32: the truth
    their attribution map is scored against.

    The generator renders the participant's scan with and without the effect (their own
    anatomy, misregistration, bias field and intensity scale kept, no noise), and this is
    the difference (``slicemri_lite.synthetic.render_participant``). A participant without
    the effect (a CN participant for ``"ad"``) has an all-zero map: score only those with it.
    """
    check_choice("task", task, TASKS)
    if task not in cohort.effects:
        raise ValueError(
            f"the cohort has no planted {task!r} effect (effects: {sorted(cohort.effects)}); "
            "only synthetic cohorts know where their effects are."
        )
    if not 0 <= row < len(cohort):
        raise ValueError(f"'row' must be in [0, {len(cohort)}); {row!r} was provided.")
    return render_participant(cohort, int(row), without=(task,))["effect"]


def group_map(attributions: np.ndarray) -> np.ndarray:
    """Mean over participants of ``|attribution|``, each map scaled to sum 1 first (so no one
    participant dominates): ``(n, X, Y, Z) -> (X, Y, Z)`` float32."""
    values = np.abs(np.asarray(attributions, dtype=np.float64))
    totals = values.reshape(len(values), -1).sum(axis=1)
    totals[totals == 0] = 1.0
    return (values / totals[:, None, None, None]).mean(axis=0).astype(np.float32)


def to_nifti(volume: np.ndarray, affine: np.ndarray):
    """A NIfTI image of ``(X, Y, Z)`` or ``(X, Y, Z, n)`` data with the cohort's ``affine``."""
    import nibabel as nib

    volume = np.asarray(volume, dtype=np.float32)
    if volume.ndim not in (3, 4):
        raise ValueError(
            f"'volume' must be (X, Y, Z) or (X, Y, Z, n); {volume.shape} was provided."
        )
    image = nib.Nifti1Image(volume, np.asarray(affine, dtype=np.float64))
    image.header.set_xyzt_units("mm")
    image.set_qform(image.affine, code=1)  # scanner/aligned: opens in place in FSLeyes
    image.set_sform(image.affine, code=4)  # MNI152
    return image


def save_nifti(volume: np.ndarray, affine: np.ndarray, path) -> Path:
    """Write ``to_nifti(volume, affine)`` to ``path`` (``.nii`` or ``.nii.gz``) atomically."""
    path = Path(path)
    if not path.name.endswith((".nii", ".nii.gz")):
        raise ValueError(f"'path' must end in '.nii' or '.nii.gz'; {str(path)!r} was provided.")
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else ".nii"
    with atomic_path(path) as tmp:
        staged = tmp.with_name(tmp.name + suffix)  # nibabel picks the format by the suffix
        to_nifti(volume, affine).to_filename(staged)
        staged.replace(tmp)
    return path


# ---------------------------------------------------------------- which slices


@torch.no_grad()
def slice_attention(
    model: nn.Module, volumes=None, features=None, batch_size: int = 8, device=None
) -> np.ndarray:
    """Attention weights ``(n, S)`` of a slice model with attention pooling (rows sum to 1).

    Give ``volumes`` ``(n, X, Y, Z)``, or the model's frozen slice ``features``
    (``(n, S, E)`` array, the ones it was fitted on): then the encoder does not run.
    """
    if getattr(model, "pool", None) is None:
        raise ValueError("slice_attention needs a slice model with aggregation='attention'.")
    if (volumes is None) == (features is None):
        raise ValueError("give exactly one of 'volumes' and 'features'.")
    device = resolve_device(device)
    model = model.to(device).eval()
    source = volumes if volumes is not None else features
    chunks = []
    for start in range(0, len(source), batch_size):
        rows = np.arange(start, min(start + batch_size, len(source)))
        if volumes is not None:
            chunks.append(model.slice_attention(_batch(volumes, rows, device)).cpu())
        else:
            f = torch.from_numpy(np.asarray(features[rows], dtype=np.float32)).to(device)
            chunks.append(model.pool.weights(model.slice_tokens(f)).cpu())  # (b, S)
    return torch.cat(chunks).numpy()


# ---------------------------------------------------------------- sanity checks


def randomisation_order(model: nn.Module) -> list[str]:
    """Names of the modules that hold parameters of their own, from the output down.

    For ``SliceSetNet``: head, pooling, norm, position embedding, projection, then the
    encoder from its last block to its first convolution.
    """
    names = [n for n, m in model.named_modules() if any(True for _ in m.parameters(False))]
    return names[::-1]


def _reinitialise(module: nn.Module) -> None:
    """The module's own initialisation (``reset_parameters``); N(0, 1/fan_in) for bare ones."""
    if hasattr(module, "reset_parameters"):
        module.reset_parameters()
        return
    for p in module.parameters(recurse=False):
        nn.init.normal_(p, std=1 / math.sqrt(p.shape[-1] if p.ndim else 1))


@torch.no_grad()
def randomise(model: nn.Module, names: Sequence[str], seed: int = 0) -> nn.Module:
    """A copy of ``model`` with the modules ``names`` re-initialised (drawn under ``seed``)."""
    modules = dict(model.named_modules())
    unknown = [n for n in names if n not in modules]
    if unknown:
        raise ValueError(f"'names' must be modules of the model; {unknown} were provided.")
    copied = copy.deepcopy(model)
    copied_modules = dict(copied.named_modules())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in names:
            _reinitialise(copied_modules[name])
    return copied.eval()


def cascading_randomisation(
    model: nn.Module, levels: Sequence[str], seed: int = 0
) -> list[tuple[str, nn.Module]]:
    """Adebayo et al.'s cascade: for each name in ``levels``, a copy of ``model`` with every
    parameterised module from the top down to and including that one re-initialised.

    Args:
        model: the trained model (left unchanged).
        levels: names from ``randomisation_order(model)``, e.g. ``["head", "project",
            "encoder.conv_stem.conv"]`` (the last one: everything randomised).
        seed: draws the new weights (the same draw for a module at every level).

    Returns:
        ``[(level, randomised copy), ...]`` in the order of ``levels``.
    """
    order = randomisation_order(model)
    bad = [name for name in levels if name not in order]
    if bad:
        raise ValueError(f"'levels' must be names from randomisation_order(model); {bad} given.")
    return [(name, randomise(model, order[: order.index(name) + 1], seed)) for name in levels]


def shuffle_labels(cohort: Cohort, task: str, seed: int = 0) -> Cohort:
    """The same volumes with the task's label (``age``, or ``diagnosis`` for ``ad``) permuted
    within each split, so nothing in a scan predicts it. Volumes are shared, not copied."""
    check_choice("task", task, TASKS)
    column = "age" if task == "age" else "diagnosis"
    table = cohort.table.copy()
    rng = np.random.default_rng(seed)
    for split in table["split"].unique():
        rows = np.flatnonzero(table["split"].to_numpy() == split)
        table.iloc[rows, table.columns.get_loc(column)] = table[column].to_numpy()[
            rng.permutation(rows)
        ]
    return Cohort(cohort.volumes, table, cohort.affine, cohort.effects, dict(cohort.meta))


def fit_on_shuffled_labels(model: nn.Module, cohort: Cohort, task: str, seed: int = 0, **fit):
    """Train ``model`` (in place) on ``shuffle_labels(cohort, task, seed)`` with
    ``slicemri_lite.train.fit``; ``fit`` keywords pass through (``features=`` too: the
    volumes are unchanged). Returns the ``FitResult``."""
    return train_fit(model, shuffle_labels(cohort, task, seed), task=task, seed=seed, **fit)
