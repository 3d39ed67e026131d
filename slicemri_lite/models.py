"""Slice-set models for 3D MRI (Gupta et al., ISBI 2021 and 2023) and the 3D CNN baseline.

A :class:`SliceSetNet` cuts a volume into slices along one axis, runs one 2D encoder on
every slice (all slices of all volumes in one batch), projects each slice to an embedding,
adds a position embedding, pools the set (mean / max / attention) and applies a head.

Regression models carry the training targets' mean and standard deviation as buffers
(``target_mean``, ``target_std``, set by :func:`slicemri_lite.train.fit`): the head works
in standardised units, starts at zero (the training mean) and ``forward`` returns years.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from slicemri_lite.encoders import (
    ENCODERS,
    build_encoder,
    check_encoder_name,
    classify_image,
    paper_cnn,
)
from slicemri_lite.geometry import AXES as GEOMETRY_AXES
from slicemri_lite.geometry import axis_index

__all__ = [
    "SliceSetNet",
    "Conv3DNet",
    "classify_image",
    "ENCODERS",
    "AXES",
    "POSITIONS",
    "AGGREGATIONS",
]

AXES = tuple(GEOMETRY_AXES)  # ("sagittal", "coronal", "axial"): slice along X, Y, Z
POSITIONS = ("none", "learned", "sinusoidal")
AGGREGATIONS = ("mean", "max", "attention")


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name!r} must be one of {list(allowed)}; {value!r} was provided.")


def sinusoidal_positions(n: int, dim: int) -> torch.Tensor:
    """Fixed sine/cosine position codes ``(n, dim)`` (Vaswani et al., 2017)."""
    position = torch.arange(n, dtype=torch.float32)[:, None]  # (n, 1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(1e4) / dim))
    codes = torch.zeros(n, dim)
    codes[:, 0::2] = torch.sin(position * freq)
    codes[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return codes


class AttentionPool(nn.Module):
    """Pool a set with one learned query: ``softmax(K q / sqrt(D))`` weights over the slices."""

    def __init__(self, dim: int):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(dim))  # zero: starts as mean pooling
        self.key = nn.Linear(dim, dim)

    def weights(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, S, D)`` -> ``(B, S)`` attention weights; each row sums to 1."""
        scores = self.key(tokens) @ self.query / math.sqrt(tokens.shape[-1])  # (B, S)
        return scores.float().softmax(dim=-1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, S, D)`` -> ``(B, D)``."""
        w = self.weights(tokens).to(tokens.dtype)  # (B, S)
        return (w[..., None] * tokens).sum(dim=1)


class _TargetScaled(nn.Module):
    """Adds the target scaling buffers that ``fit`` sets for regression."""

    def _init_head(self, embed_dim: int, n_outputs: int, dropout: float) -> None:
        """Dropout + linear head, bias 0 (= the training mean once ``fit`` sets the buffers)."""
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(embed_dim, n_outputs))
        nn.init.zeros_(self.head[1].bias)
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


class SliceSetNet(_TargetScaled):
    """A position-encoded set of 2D slice embeddings: ``(B, 1, X, Y, Z) -> (B, n_outputs)``.

    Args:
        encoder: 2D encoder, one of ``ENCODERS`` (``"timm:<name>"`` for any timm model).
        pretrained: load the encoder's ImageNet weights (see ``slicemri_lite.encoders``).
        axis: ``"sagittal"`` (slices along X), ``"coronal"`` (Y) or ``"axial"`` (Z).
        position: ``"none"``, ``"learned"`` (a vector per slice index, as in the paper) or
            ``"sinusoidal"``; added to the slice embedding, then LayerNorm.
        aggregation: ``"mean"``, ``"max"`` or ``"attention"`` (a learned query).
        n_outputs: outputs of the head (1: age in years, or one AD logit).
        volume_shape: the grid ``(X, Y, Z)``; fixes the number of slices.
        embed_dim: size of the slice embeddings after projection.
        dropout: dropout before the head.
    """

    def __init__(
        self,
        encoder: str = "resnet18",
        pretrained: bool = True,
        axis: str = "sagittal",
        position: str = "learned",
        aggregation: str = "mean",
        n_outputs: int = 1,
        volume_shape: tuple[int, int, int] = (91, 109, 91),
        embed_dim: int = 256,
        dropout: float = 0.1,
    ):
        super().__init__()
        check_encoder_name(encoder)
        _check_choice("axis", axis, AXES)
        _check_choice("position", position, POSITIONS)
        _check_choice("aggregation", aggregation, AGGREGATIONS)
        if len(volume_shape) != 3:
            raise ValueError(f"'volume_shape' must be (X, Y, Z); {volume_shape!r} was provided.")
        self.encoder_name, self.axis, self.position = encoder, axis, position
        self.aggregation, self.volume_shape = aggregation, tuple(volume_shape)
        self.n_slices = self.volume_shape[axis_index(axis)]
        self.encoder = build_encoder(encoder, pretrained=pretrained)
        self.project = nn.Linear(self.encoder.out_dim, embed_dim)
        if position == "learned":
            self.position_embedding = nn.Embedding(self.n_slices, embed_dim)
            nn.init.normal_(self.position_embedding.weight, std=0.02)
        elif position == "sinusoidal":
            self.register_buffer("position_codes", sinusoidal_positions(self.n_slices, embed_dim))
        self.norm = nn.LayerNorm(embed_dim)
        self.pool = AttentionPool(embed_dim) if aggregation == "attention" else None
        self._init_head(embed_dim, n_outputs, dropout)

    def to_slices(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, X, Y, Z)`` -> ``(B * S, 1, H, W)``: every slice along ``axis`` as one image."""
        self._check_input(x)
        dim = 2 + axis_index(self.axis)
        x = x.movedim(dim, 1)  # (B, S, 1, H, W)
        slices = x.reshape(-1, 1, *x.shape[-2:])  # (B*S, 1, H, W)
        fmt = torch.channels_last if slices.is_cuda else torch.contiguous_format
        return slices.contiguous(memory_format=fmt)

    def slice_features(self, x: torch.Tensor) -> torch.Tensor:
        """Raw encoder outputs ``(B, S, E)`` for ``(B, 1, X, Y, Z)`` volumes."""
        features = self.encoder(self.to_slices(x))  # (B*S, E)
        return features.reshape(x.shape[0], self.n_slices, -1)

    def encode_slices(self, x: torch.Tensor) -> torch.Tensor:
        """Slice embeddings ``(B, S, D)``, before position and pooling."""
        return self.project(self.slice_features(x))

    def _tokens(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, S, E)`` encoder features -> ``(B, S, D)`` position-encoded, normalised tokens."""
        tokens = self.project(features)  # (B, S, D)
        if self.position == "learned":
            index = torch.arange(tokens.shape[1], device=tokens.device)
            tokens = tokens + self.position_embedding(index)
        elif self.position == "sinusoidal":
            tokens = tokens + self.position_codes.to(tokens.dtype)
        return self.norm(tokens)

    def forward_features(self, features: torch.Tensor) -> torch.Tensor:
        """Everything after the encoder: ``(B, S, E)`` features -> ``(B, n_outputs)``."""
        tokens = self._tokens(features)  # (B, S, D)
        if self.aggregation == "mean":
            pooled = tokens.mean(dim=1)
        elif self.aggregation == "max":
            pooled = tokens.amax(dim=1)
        else:
            pooled = self.pool(tokens)  # (B, D)
        return self._unscale(self.head(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, X, Y, Z)`` -> ``(B, n_outputs)`` (years for age, logits for AD)."""
        return self.forward_features(self.slice_features(x))

    def slice_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Attention weights ``(B, S)`` over the slices (rows sum to 1); attention pooling only."""
        if self.pool is None:
            raise ValueError(
                f"slice_attention needs aggregation='attention'; this model uses "
                f"{self.aggregation!r}."
            )
        return self.pool.weights(self._tokens(self.slice_features(x)))


class Conv3DNet(_TargetScaled):
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
        self.volume_shape = tuple(volume_shape)
        self.features = paper_cnn(3, channels, embed_dim)
        self._init_head(embed_dim, n_outputs, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, X, Y, Z)`` -> ``(B, n_outputs)``."""
        self._check_input(x)
        if x.is_cuda:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        return self._unscale(self.head(self.features(x)))
