"""Grad-CAM for the book's models (Selvaraju et al., 2017), computed by hand.

For a slice model, on the 2D encoder's last convolutional block *for every slice*,
upsampled to the slice and stacked back along the slicing axis into a volume; for a 3D
CNN, on a 3D block. ``analysis.attributions(model, volumes, "gradcam")`` calls it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slicemri_lite._core.geometry import axis_index

__all__ = ["gradcam", "gradcam_layer"]

_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool3d)


def gradcam_layer(model: nn.Module) -> str:
    """The default Grad-CAM layer: the last module (in execution order) that outputs a
    spatial map, pooling excluded.

    For a slice model that is the 2D encoder's last convolutional block (``encoder.bn2`` for
    EfficientNet, ``encoder.layer4`` for a ResNet); for ``Conv3DNet`` its last convolution.
    """
    trunk = model.encoder if hasattr(model, "encoder") else model
    prefix = "encoder." if trunk is not model else ""
    ndim = 4 if trunk is not model else 5
    order: list[str] = []
    names = {m: n for n, m in trunk.named_modules() if n}
    hooks = [m.register_forward_hook(lambda m, i, o: order.append(names[m]) if isinstance(
        o, torch.Tensor) and o.ndim == ndim and not isinstance(m, _POOLS) else None)
             for m in names]  # fmt: skip
    shape = (1, 1, 64, 64) if ndim == 4 else (1, 1, *model.volume_shape)
    was_training = trunk.training
    try:
        with torch.no_grad():
            trunk.eval()(torch.zeros(shape, device=next(trunk.parameters()).device))
    finally:
        trunk.train(was_training)
        for hook in hooks:
            hook.remove()
    if not order:
        raise ValueError("the model has no layer with a spatial output for Grad-CAM.")
    return prefix + order[-1]


def gradcam(model: nn.Module, x: torch.Tensor, target: int = 0, layer: str | None = None):
    """Grad-CAM ``(B, 1, X, Y, Z)`` for volumes ``x`` ``(B, 1, X, Y, Z)``.

    The layer's activations ``A`` (``(B*S, C, h, w)`` for a slice model: every slice of every
    volume; ``(B, C, x, y, z)`` for a 3D CNN) are weighted by their spatially averaged
    gradients, summed over channels and rectified: ``relu(sum_c mean(dY/dA_c) A_c)``, then
    upsampled to the slice (or volume) and, for a slice model, restacked along its axis.
    """
    layer = layer or gradcam_layer(model)
    module = dict(model.named_modules())[layer]
    saved: list[torch.Tensor] = []

    def graph_from_here(module, inputs, output):
        """The layer's output as a leaf: autograd keeps only what comes after it (at 2 mm
        a slice model's whole encoder graph would be about 1.5 GB)."""
        saved.append(output.detach().requires_grad_(True))
        return saved[-1] * 1.0  # a non-leaf copy, so later in-place operations stay legal

    hook = module.register_forward_hook(graph_from_here)
    flags = [p.requires_grad for p in model.parameters()]
    try:
        model.requires_grad_(False)  # no weight needs a gradient: nothing below is kept
        output = model(x.detach())[:, target].sum()
        (grad,) = torch.autograd.grad(output, saved[-1])
    finally:
        hook.remove()
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)
    acts = saved[-1].detach()
    dims = tuple(range(2, acts.ndim))
    cam = F.relu((grad.mean(dim=dims, keepdim=True) * acts).sum(dim=1, keepdim=True))
    if acts.ndim == 5:  # a 3D CNN: one map per volume
        return F.interpolate(cam, size=x.shape[2:], mode="trilinear", align_corners=False)
    axis = axis_index(model.axis)
    plane = [n for d, n in enumerate(x.shape[2:]) if d != axis]
    cam = F.interpolate(cam, size=plane, mode="bilinear", align_corners=False)  # (B*S, 1, H, W)
    cam = cam.reshape(len(x), -1, *plane)  # (B, S, H, W)
    return cam.movedim(1, 1 + axis)[:, None]  # (B, 1, X, Y, Z)
