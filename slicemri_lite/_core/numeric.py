"""Small numeric helpers every layer may use."""

from __future__ import annotations

import numpy as np

__all__ = ["sigmoid"]


def sigmoid(x) -> np.ndarray:
    """The logistic function ``1 / (1 + exp(-x))``: AD logits -> probabilities.

    Computed without overflow for large negative logits (``exp(-x)`` of a float32 -100 is
    inf, and numpy warns); float32 in, float32 out.
    """
    x = np.asarray(x)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    with np.errstate(over="ignore"):  # exp(-x) -> inf for very negative x gives exactly 0
        return (1.0 / (1.0 + np.exp(-x))).astype(dtype, copy=False)
