"""2D slice encoders: the paper's small CNN and ImageNet-pretrained networks, one input channel.

Every encoder maps a batch of one-channel slices ``(N, 1, H, W)`` to one vector per slice
``(N, E)``. Pretrained encoders see MRI through a *folded* first convolution
(:class:`FoldedInputConv`): the RGB weights summed into one channel with the ImageNet input
normalisation folded in, so the result equals feeding the slice repeated over three
normalised channels, for a third of the first layer's work.

ImageNet weights: ``"efficientnet_lite0"`` (offline) and the torchvision ResNets come from
``slicemri_lite.models._weights``; ``"timm:<name>"`` is any timm model, with timm's own
(online) weights. Classifying a natural photo is in ``slicemri_lite.models._imagenet``.

Two small CNNs train from scratch: ``"scratch"`` (the book's :class:`ScratchEncoder`) and
``"encoder1"`` (:class:`Encoder1`, the paper's own small CNN exactly, named as in its code).

With ``imagenet_norm=False`` the first convolution is folded without any normalisation:
the result equals feeding the slice repeated over three channels as it is, which is what
the paper does with its z-scored volumes.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call

from slicemri_lite.models._weights import (
    efficientnet_lite0_state_dict,
    load_torchvision_state_dict,
)

__all__ = [
    "ENCODERS",
    "FoldedInputConv",
    "ScratchEncoder",
    "Encoder1",
    "build_encoder",
    "check_encoder_name",
    "imagenet_network",
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


# ---------------------------------------------------------------- building encoders


def imagenet_network(name: str, pretrained: bool) -> tuple[nn.Module, tuple, tuple, str]:
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
    model, mean, std, first = imagenet_network(name, pretrained)
    if not imagenet_norm:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    out_dim = _strip_classifier(model)
    _set_submodule(model, first, FoldedInputConv(model.get_submodule(first), mean, std))
    model.out_dim = out_dim
    return model
