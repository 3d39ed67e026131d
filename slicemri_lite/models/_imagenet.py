"""Natural images through an encoder's ImageNet classifier: the weights are real.

``classify_image(skimage.data.chelsea())`` names a cat with the offline EfficientNet-Lite0
weights; the book shows it, the tests check it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from slicemri_lite.models._encoders import check_encoder_name, imagenet_network

__all__ = ["classify_image", "imagenet_categories", "imagenet_classifier"]


def imagenet_classifier(name: str = "efficientnet_lite0") -> tuple[nn.Module, tuple, tuple]:
    """The pretrained 3-channel ImageNet classifier behind an encoder, with its mean/std."""
    check_encoder_name(name)
    if name in ("scratch", "encoder1"):
        raise ValueError(f"{name!r} has no ImageNet weights; pick a pretrained encoder.")
    model, mean, std, _ = imagenet_network(name, pretrained=True)
    return model.eval(), mean, std


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names bundled with torchvision (no download)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def _preprocess(rgb_uint8: np.ndarray, mean, std, size: int = 224) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(1, 3, size, size)``: shorter side to size/0.875, centre crop."""
    image = torch.from_numpy(np.ascontiguousarray(rgb_uint8)).permute(2, 0, 1)[None].float() / 255
    short = round(size / 0.875)
    h, w = image.shape[-2:]
    scale = short / min(h, w)
    new_hw = (max(size, round(h * scale)), max(size, round(w * scale)))
    image = nn.functional.interpolate(image, size=new_hw, mode="bicubic", antialias=True)
    top, left = (new_hw[0] - size) // 2, (new_hw[1] - size) // 2
    image = image[..., top : top + size, left : left + size].clamp(0, 1)
    mean_t, std_t = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    return (image - mean_t) / std_t


@torch.no_grad()
def classify_image(
    rgb_uint8: np.ndarray, encoder: str = "efficientnet_lite0", topk: int = 5
) -> list[tuple[int, str, float]]:
    """Classify a natural photo with an encoder's ImageNet weights.

    Args:
        rgb_uint8: ``(H, W, 3)`` uint8 RGB image.
        encoder: a pretrained encoder name (see ``ENCODERS``).
        topk: how many classes to return.

    Returns:
        ``[(class_index, label, probability), ...]``, most probable first.
    """
    rgb_uint8 = np.asarray(rgb_uint8)
    if rgb_uint8.dtype != np.uint8 or rgb_uint8.ndim != 3 or rgb_uint8.shape[-1] != 3:
        raise ValueError(
            f"'rgb_uint8' must be a (H, W, 3) uint8 array; a {rgb_uint8.dtype} array of "
            f"shape {rgb_uint8.shape} was provided."
        )
    model, mean, std = imagenet_classifier(encoder)
    probs = model(_preprocess(rgb_uint8, mean, std)).softmax(-1)[0]  # (1000,)
    values, indices = probs.topk(topk)
    labels = imagenet_categories()
    return [(int(i), labels[int(i)], float(p)) for p, i in zip(values, indices, strict=True)]
