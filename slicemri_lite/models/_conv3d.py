"""The paper's 3D CNN baseline, ``Conv3DNet``: the small CNN's block pattern in 3D."""

from __future__ import annotations

import torch

from slicemri_lite.models._encoders import paper_cnn
from slicemri_lite.models._heads import TargetScaled

__all__ = ["Conv3DNet"]


class Conv3DNet(TargetScaled):
    """The paper's 3D CNN baseline: the scratch encoder's block pattern in 3D.

    Five blocks of conv3x3x3 -> InstanceNorm -> maxpool -> ReLU (32-64-128-256-256
    channels), a 1x1x1 conv to ``embed_dim``, global average pooling, dropout, linear head.

    Args:
        n_outputs: outputs of the head (1: age in years, or one AD logit).
        volume_shape: the grid ``(X, Y, Z)`` (checked on input).
        embed_dim: channels of the last 1x1x1 conv.
        dropout: dropout before the head.
    """

    def __init__(
        self,
        n_outputs: int = 1,
        volume_shape: tuple[int, int, int] = (91, 109, 91),
        embed_dim: int = 64,
        dropout: float = 0.1,
        channels: tuple[int, ...] = (32, 64, 128, 256, 256),
    ):
        super().__init__()
        self.config = {"n_outputs": n_outputs, "volume_shape": tuple(int(n) for n in volume_shape),
                       "embed_dim": embed_dim, "dropout": dropout, "channels": tuple(channels)}  # fmt: skip
        self.volume_shape = tuple(volume_shape)
        self.features = paper_cnn(3, channels, embed_dim)
        self._init_head(embed_dim, n_outputs, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, X, Y, Z)`` -> ``(B, n_outputs)``."""
        self._check_input(x)
        if x.is_cuda:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        return self._unscale(self.head(self.features(x)))
