"""The paper-style reference the bench measures ours against: same modules, its loops.

``PaperStyleForward`` gathers slices with a Python list comprehension and ``torch.cat``,
splits the encoder's features per slice and gives each its position; ``NiftiVolumes``
is the paper's data path (decode one ``.nii.gz`` per item, z-score it in float32).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from slicemri_lite._core.geometry import axis_index
from slicemri_lite.models._slice_set import SliceSetNet, zscore_volumes

__all__ = ["NiftiVolumes", "PaperStyleForward", "write_nifti"]


class PaperStyleForward(nn.Module):
    """``model``'s computation the way the paper's code writes it (same modules and weights).

    Slices are gathered one by one (``[x[:, :, i] for i in range(S)]``) and concatenated;
    the encoder's output is split back into one ``(B, E)`` block per slice, and each block
    is projected and given its position before the blocks are concatenated again. For a
    ``SliceSetNet`` (``SliceSetNet.paper`` or the general form) with learned or no
    positions, the output equals ``model(x)``.
    """

    def __init__(self, model: SliceSetNet):
        super().__init__()
        if getattr(model, "position", None) not in ("learned", "none"):
            raise ValueError(
                "the paper-style reference needs a SliceSetNet with position='learned' or "
                f"'none'; {getattr(model, 'position', None)!r} was provided."
            )
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        m._check_input(x)
        if getattr(m, "input_norm", "none") == "zscore":
            x = zscore_volumes(x)
        dim = 2 + axis_index(m.axis)
        slices = torch.cat([x.select(dim, i) for i in range(m.n_slices)], dim=0)  # (S*B, 1, H, W)
        features = m.encoder(slices).split(x.shape[0])  # S blocks of (B, E)
        coded = [m.project(f) for f in features]  # S blocks of (B, D)
        if m.position == "learned":
            positions = m.position_embedding.weight
            coded = [c + positions[i] for i, c in enumerate(coded)]
        tokens = m.norm(torch.cat([c[:, None] for c in coded], dim=1))  # (B, S, D)
        if getattr(m, "post_project", None) is not None:
            tokens = m.post_project(tokens)
        pooled = {"mean": lambda t: t.mean(1), "max": lambda t: t.amax(1)}.get(
            m.aggregation, m.pool
        )(tokens)
        return m._unscale(m.head(pooled))


class NiftiVolumes(torch.utils.data.Dataset):
    """The paper's data path: decode one ``.nii.gz`` and z-score it per item (float32)."""

    def __init__(self, paths: list[str]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        import nibabel as nib

        volume = np.asarray(nib.load(self.paths[i]).get_fdata(), dtype=np.float32)
        volume = (volume - volume.mean()) / volume.std()
        return torch.from_numpy(volume)[None]  # (1, X, Y, Z)


def write_nifti(volumes: np.ndarray, folder: Path) -> list[str]:
    import nibabel as nib

    paths = []
    for i, volume in enumerate(volumes):
        path = folder / f"sub-{i:03d}.nii.gz"
        nib.save(nib.Nifti1Image(np.asarray(volume, dtype=np.float32), np.eye(4)), path)
        paths.append(str(path))
    return paths
