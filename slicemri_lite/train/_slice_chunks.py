"""Activation checkpointing over chunks of slices: train a slice model in less memory.

A slice model's activations grow with ``batch x slices``: 8 volumes of 91 slices are 728
images in the encoder at once. :class:`ChunkedForward` runs the encoder on ``chunk``
slices at a time under ``torch.utils.checkpoint`` (``use_reentrant=False``): the forward
pass keeps only each chunk's input and output, and backward recomputes one chunk's
activations at a time. Peak memory falls from all slices' activations to one chunk's, for
about one more encoder forward pass per step.

Batch norm: a chunk would otherwise normalise with its own statistics, and the recomputed
forward would update the running statistics a second time. So while chunked, the
encoder's BatchNorm layers run in eval mode (statistics frozen at their loaded, e.g.
ImageNet, values, as is usual when fine-tuning with small batches); ``freeze_batch_norm``
sets that, and ``fit`` calls it every epoch. With frozen (or no) batch-norm statistics the
chunked model computes exactly what the plain one does.

Works with any model that has ``to_slices``, ``encoder``, ``n_slices`` and
``forward_features`` (``SliceSetNet``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["ChunkedForward", "FeatureForward", "freeze_batch_norm", "has_training_batch_norm"]


def freeze_batch_norm(module: nn.Module) -> None:
    """Put every BatchNorm layer of ``module`` in eval mode (running statistics used, kept)."""
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.eval()


def has_training_batch_norm(module: nn.Module) -> bool:
    """Whether a BatchNorm layer of ``module`` is in training mode (batch statistics)."""
    return any(
        isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.training
        for layer in module.modules()
    )


class ChunkedForward(nn.Module):
    """``model``'s forward with its encoder checkpointed over chunks of ``chunk`` slices.

    ``(B, 1, X, Y, Z) -> (B, n_outputs)``; the parameters are ``model``'s own.
    """

    def __init__(self, model: nn.Module, chunk: int):
        super().__init__()
        if chunk < 1:
            raise ValueError(
                f"'slice_chunk' must be a positive number of slices; {chunk} was provided."
            )
        self.model, self.chunk = model, int(chunk)

    def encoder_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, X, Y, Z)`` -> encoder features ``(B, S, E)``, chunk by chunk."""
        slices = self.model.to_slices(x)  # (B*S, 1, H, W)
        encoder = self.model.encoder
        features = [
            checkpoint(encoder, part, use_reentrant=False) if torch.is_grad_enabled() else encoder(part)
            for part in slices.split(self.chunk)
        ]  # fmt: skip
        return torch.cat(features).reshape(x.shape[0], self.model.n_slices, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(self.encoder_features(x))


class FeatureForward(nn.Module):
    """``model.forward_features`` as a module's forward (for DDP on frozen features)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(features)
