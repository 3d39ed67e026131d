"""Intensity normalisation shared by the synthetic generator and NIfTI preparation."""

from __future__ import annotations

import torch

__all__ = ["white_matter_level"]


def white_matter_level(brain: torch.Tensor) -> torch.Tensor:
    """The intensity a T1 volume is divided by: the 90th percentile of its brain voxels ``(P,)``.

    White matter is the brightest tissue of a T1 image and ageing hardly changes its
    intensity, so this level (unlike the mean or median) does not move when grey
    matter thins or ventricles grow.
    """
    k = max(1, int(round(0.9 * brain.numel())))
    return brain.kthvalue(k).values
