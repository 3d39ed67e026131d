"""A transcription of the paper's slice model, the reference for the equivalence tests.

Gupta et al. (ISBI 2021, 2023), code ``umgupta/2d-slice-set-networks``: ``MRI2DSlice``
(``src/arch/ukbb/brain_age_slice_set.py``) with its pieces from ``src/arch/slice_cnn_utils.py``
(``Encoder1_2D``, ``ResNetEncoder``, ``PositionEncodingUKBB``, ``PooledAttention``, mean and
max pooling). Written here from reading that code, with its module names, parameter names
and shapes, and its way of computing: slices cut one by one and concatenated slice-major
along the batch, the position code added to a ``(B, F, slices)`` block placed on the
slicing axis, channels repeated for ResNets. It imports only torch and torchvision.

Two generalisations, both identities on the paper's 2 mm grid (91 x 109 x 91):
the number of slices comes from ``volume_shape`` (the paper writes 91 / 109), and the
small CNN's final average pool takes the size of its last map (the paper writes 3x2, 2x2
and 2x3, which is that size on its grid). Differences kept out: ``in_channel`` > 1 (the
paper's scripts use 1), and resnet34's declared width (the paper's code declares 1024,
which cannot run: resnet34's pooled features are 512 wide; here it is 512).
"""

from __future__ import annotations

import math

import torch
import torchvision
from torch import nn

SLICE_DIMS = {"sagittal": 1, "coronal": 2, "axial": 3}  # the paper's slice_dim
RESNET_WIDTH = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}


def _block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, stride=1),
        nn.InstanceNorm2d(out_channels),
        nn.MaxPool2d(2, stride=2),
        nn.ReLU(),
    )


class PositionEncodingUKBB(nn.Module):
    """A learned ``(F, slices)`` code added to a volume's slice features, then one LayerNorm."""

    def __init__(self, feature_dim: int, slice_dim: int, n_slices: int):
        super().__init__()
        sizes = [1, feature_dim, 1, 1, 1]
        sizes[1 + slice_dim] = n_slices
        self.position_encoding = nn.Parameter(torch.zeros(*sizes))
        nn.init.kaiming_normal_(self.position_encoding, mode="fan_out", nonlinearity="linear")
        self.ln = nn.LayerNorm(sizes[1:])
        self.slice_dim, self.n_slices = slice_dim, n_slices

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(S * B, F, 1, 1)`` slice-major -> the same, encoded and normalised."""
        dim = 1 + self.slice_dim
        batch = x.shape[0] // self.n_slices
        block = torch.cat([c.unsqueeze(dim) for c in torch.split(x, batch, dim=0)], dim=dim)
        block = self.ln(block + self.position_encoding)
        return torch.cat([block.select(dim, i) for i in range(block.shape[dim])], dim=0)


class Encoder1_2D(nn.Module):  # noqa: N801 (the paper's name)
    """The small CNN: five blocks, 1x1 conv to 64 + InstanceNorm + ReLU + average pool,
    optional position code (on the 64 features), dropout, 1x1 conv to ``out_size``."""

    def __init__(self, out_size, slice_dim, n_slices, slice_hw, use_position_encoding, dropout):
        super().__init__()
        channels = [1, 32, 64, 128, 256, 256]
        self.encoder_2d = nn.Sequential(
            *[_block(a, b) for a, b in zip(channels, channels[1:], strict=False)]
        )
        h, w = slice_hw
        for _ in range(5):
            h, w = h // 2, w // 2
        avg = nn.AvgPool2d([h, w])
        self.post_proc_conv = nn.Sequential(
            nn.Conv2d(256, 64, 1, stride=1), nn.InstanceNorm2d(64), nn.ReLU(), avg
        )
        self.position_encoder = (
            PositionEncodingUKBB(64, slice_dim, n_slices)
            if use_position_encoding
            else nn.Identity()
        )
        self.post_position_encoding = nn.Sequential(
            nn.Dropout(p=0.5) if dropout else nn.Identity(), nn.Conv2d(64, out_size, 1)
        )

    def forward(self, x):
        return self.post_position_encoding(
            self.position_encoder(self.post_proc_conv(self.encoder_2d(x)))
        )


class ResNetEncoder(nn.Module):
    """A torchvision ResNet without ``fc``, on the slice repeated to 3 channels, a linear map
    to ``out_size``, optional position code."""

    def __init__(self, out_size, slice_dim, n_slices, use_position_encoding, resnet_module):
        super().__init__()
        self.encoder_2d = getattr(torchvision.models, resnet_module)(weights=None)
        del self.encoder_2d.fc
        self.encoding_dim = RESNET_WIDTH[resnet_module]
        self.post_proc = nn.Sequential(nn.Linear(self.encoding_dim, out_size))
        self.position_encoder = (
            PositionEncodingUKBB(out_size, slice_dim, n_slices)
            if use_position_encoding
            else nn.Identity()
        )

    def forward(self, x):
        if x.shape[1] == 1:
            x = torch.cat([x, x, x], dim=1)
        r = self.encoder_2d
        x = r.maxpool(r.relu(r.bn1(r.conv1(x))))
        x = r.avgpool(r.layer4(r.layer3(r.layer2(r.layer1(x)))))
        out = self.post_proc(x.squeeze(3).squeeze(2))
        return self.position_encoder(out.unsqueeze(2).unsqueeze(3))


class MeanPool(nn.Module):
    def forward(self, x):
        return x.mean(dim=1, keepdim=True), None


class MaxPool(nn.Module):
    def forward(self, x):
        return x.max(dim=1, keepdim=True)[0], None


class PooledAttention(nn.Module):
    """A learned query ``S`` attends over the slices per head; LayerNorm; output projection."""

    def __init__(self, input_dim, dim_v, dim_k, num_heads, ln=False):
        super().__init__()
        self.S = nn.Parameter(torch.zeros(1, dim_k))
        nn.init.xavier_uniform_(self.S)
        self.fc_k = nn.Linear(input_dim, dim_k)
        self.fc_v = nn.Linear(input_dim, dim_v)
        self.dim_v, self.dim_k, self.num_heads = dim_v, dim_k, num_heads
        if ln:
            self.ln0 = nn.LayerNorm(dim_v)
        self.fc_o = nn.Linear(dim_v, dim_v)

    def forward(self, x):
        b, c, h = x.shape
        q = self.S.repeat(b, 1, 1)  # (B, 1, dim_k)
        k = self.fc_k(x.reshape(-1, h)).reshape(b, c, self.dim_k)
        v = self.fc_v(x.reshape(-1, h)).reshape(b, c, self.dim_v)
        split = self.dim_v // self.num_heads
        q_, k_, v_ = (torch.cat(t.split(split, 2), 0) for t in (q, k, v))  # heads along batch
        a = torch.softmax(q_.bmm(k_.transpose(1, 2)) / math.sqrt(split), 2)
        o = torch.cat(a.bmm(v_).split(b, 0), 2)
        o = self.ln0(o) if hasattr(self, "ln0") else o
        return self.fc_o(o), a


class MRI2DSlice(nn.Module):
    """The paper's slice model: ``(B, 1, X, Y, Z)`` z-scored volumes -> ``(B, 1)``."""

    def __init__(
        self,
        attn_num_heads=1,
        attn_dim=32,
        attn_drop=True,
        agg_fn="attention",
        slice_dim=1,
        use_position_encoding=False,
        encoder_2d="encoder1",
        volume_shape=(91, 109, 91),
    ):
        super().__init__()
        self.slice_dim = slice_dim
        self.num_slices = volume_shape[slice_dim - 1]
        slice_hw = [n for i, n in enumerate(volume_shape) if i != slice_dim - 1]
        width = attn_num_heads * attn_dim
        if encoder_2d == "encoder1":
            self.encoder_2d = Encoder1_2D(
                width, slice_dim, self.num_slices, slice_hw, use_position_encoding, attn_drop
            )
        else:
            self.encoder_2d = ResNetEncoder(
                width, slice_dim, self.num_slices, use_position_encoding, encoder_2d
            )
        if agg_fn == "attention":
            self.pooled_attention = PooledAttention(width, width, width, attn_num_heads, ln=True)
        elif agg_fn == "mean":
            self.pooled_attention = MeanPool()
        else:
            self.pooled_attention = MaxPool()
        self.attn_post = nn.Linear(width, 64)
        self.regressor = nn.Sequential(nn.ReLU(), nn.Linear(64, 1))

    def _slices(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, X, Y, Z)`` -> ``(S * B, 1, H, W)``, slice-major, as the paper cuts them."""
        if self.slice_dim == 1:
            return torch.cat([x[:, i : i + 1, :, :] for i in range(self.num_slices)], dim=0)
        if self.slice_dim == 2:
            cut = torch.cat([x[:, :, i : i + 1, :] for i in range(self.num_slices)], dim=0)
            return torch.swapaxes(cut, 1, 2)
        cut = torch.cat([x[:, :, :, i : i + 1] for i in range(self.num_slices)], dim=0)
        return torch.swapaxes(torch.swapaxes(cut, 1, 3), 2, 3)

    def encode(self, x):
        b = x.shape[0]
        encoding = self.encoder_2d(self._slices(x.squeeze(1)))  # (S * B, D, 1, 1)
        dim = 1 + self.slice_dim
        encoding = torch.cat([c.unsqueeze(dim) for c in torch.split(encoding, b, dim=0)], dim=dim)
        encoding = encoding.reshape(b, encoding.shape[1], self.num_slices)  # (B, D, S)
        pooled, attention = self.pooled_attention(encoding.permute(0, 2, 1))
        return pooled.squeeze(1), attention

    def forward(self, x):
        embedding, _ = self.encode(x)
        return self.regressor(self.attn_post(embedding))
