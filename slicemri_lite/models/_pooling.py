"""Permutation-invariant pooling of a set of slice tokens ``(B, S, D) -> (B, D)``.

:class:`AttentionPool` (one learned query, the book's) and :class:`PooledAttention` (the
paper's, per head); both expose ``weights(tokens) -> (B, S)``. Mean and max pooling are
one-liners inside ``SliceSetNet``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["AttentionPool", "PooledAttention"]


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


class PooledAttention(nn.Module):
    """The paper's pooled attention: a learned query attends over the slices, per head.

    Keys and values are linear maps of the tokens; each of ``heads`` heads takes its own
    ``D / heads`` features of query, keys and values; the heads' outputs are concatenated,
    layer-normalised and passed through an output projection (no residual connection).
    Parameters as in the paper's ``PooledAttention``: ``query`` is its ``S``, ``key``,
    ``value``, ``norm``, ``out`` its ``fc_k``, ``fc_v``, ``ln0``, ``fc_o``.
    """

    def __init__(self, dim: int, heads: int = 1):
        super().__init__()
        if heads < 1 or dim % heads:
            raise ValueError(f"'heads' must divide the embedding size {dim}; {heads} was provided.")
        self.heads = heads
        self.query = nn.Parameter(torch.empty(dim))
        nn.init.xavier_uniform_(self.query.view(1, dim))
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, dim)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        """``(B, S, D)`` -> ``(B, H, S, D / H)``."""
        b, s, d = t.shape
        return t.view(b, s, self.heads, d // self.heads).transpose(1, 2)

    def head_weights(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, S, D)`` -> ``(B, H, S)`` attention weights of every head; rows sum to 1."""
        d = tokens.shape[-1] // self.heads
        q = self.query.view(self.heads, d, 1)  # (H, d, 1)
        scores = (self._split(self.key(tokens)) @ q).squeeze(-1) / math.sqrt(d)  # (B, H, S)
        return scores.float().softmax(dim=-1)

    def weights(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, S, D)`` -> ``(B, S)``: the heads' attention weights, averaged over heads."""
        return self.head_weights(tokens).mean(dim=1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, S, D)`` -> ``(B, D)``."""
        w = self.head_weights(tokens).to(tokens.dtype)  # (B, H, S)
        pooled = (w[..., None] * self._split(self.value(tokens))).sum(dim=2)  # (B, H, d)
        return self.out(self.norm(pooled.reshape(tokens.shape[0], -1)))
