"""The regression head and target scaling shared by ``SliceSetNet`` and ``Conv3DNet``.

Regression models carry the training targets' mean and standard deviation as buffers
(``target_mean``, ``target_std``, set by ``fit``): the head works in standardised units,
starts at zero (the training mean) and ``forward`` returns years.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MLP_HIDDEN", "TargetScaled"]

MLP_HIDDEN = 64  # the paper's head: Linear(D, 64) -> ReLU -> Linear(64, n_outputs)


class TargetScaled(nn.Module):
    """Adds the target scaling buffers that ``fit`` sets for regression."""

    def _init_head(self, embed_dim: int, n_outputs: int, dropout: float, kind: str = "linear"):
        """The head, last bias 0 (= the training mean once ``fit`` sets the buffers).

        ``"linear"``: dropout + linear; ``"mlp"``: Linear(D, 64) -> ReLU -> Linear(64, n).
        """
        if kind == "linear":
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(embed_dim, n_outputs))
        else:
            self.head = nn.Sequential(
                nn.Linear(embed_dim, MLP_HIDDEN), nn.ReLU(), nn.Linear(MLP_HIDDEN, n_outputs)
            )
        nn.init.zeros_(self.head[-1].bias)
        self.register_buffer("target_mean", torch.zeros(n_outputs))
        self.register_buffer("target_std", torch.ones(n_outputs))

    def _check_input(self, x: torch.Tensor) -> None:
        """Refuse anything but ``(B, 1, *volume_shape)``."""
        if x.ndim != 5 or x.shape[1] != 1 or tuple(x.shape[2:]) != self.volume_shape:
            raise ValueError(
                f"input must be (B, 1, {', '.join(map(str, self.volume_shape))}); "
                f"{tuple(x.shape)} was provided."
            )

    def _unscale(self, out: torch.Tensor) -> torch.Tensor:
        return out.float() * self.target_std + self.target_mean
