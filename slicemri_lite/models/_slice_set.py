"""Slice-set models for 3D MRI (Gupta et al., ISBI 2021 and 2023).

A :class:`SliceSetNet` cuts a volume into slices along one axis, runs one 2D encoder on
every slice (all slices of all volumes in one batch), projects each slice to an embedding,
adds a position embedding, normalises, pools the set (mean / max / attention) and applies
a head. :meth:`SliceSetNet.paper` builds the paper's model (``MRI2DSlice`` in its code)
exactly; the constructor's named options hold the book's own variants for the ablations.

Regression models carry the training targets' mean and standard deviation as buffers
(``target_mean``, ``target_std``, set by :func:`slicemri_lite.train.fit`): the head works
in standardised units, starts at zero (the training mean) and ``forward`` returns years.

Every model remembers its constructor arguments in ``model.config``, so
``type(model)(**model.config)`` rebuilds it (see ``slicemri_lite.train.save_model``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from slicemri_lite._core.geometry import AXES as GEOMETRY_AXES
from slicemri_lite._core.geometry import axis_index
from slicemri_lite._core.validation import check_choice

# Conv3DNet's home is _conv3d; train/_saving.py and experiments/_runs.py still import it here.
from slicemri_lite.models._conv3d import Conv3DNet  # noqa: F401
from slicemri_lite.models._encoders import (
    ENCODERS,
    Encoder1,
    build_encoder,
    check_encoder_name,
)
from slicemri_lite.models._heads import TargetScaled
from slicemri_lite.models._paper_checkpoint import load_paper_state_dict
from slicemri_lite.models._pooling import AttentionPool, PooledAttention

# Slices through a frozen encoder at once in inference: bounds the activations' memory
# (at 2 mm, 8 volumes are 728 sagittal slices, over a gigabyte of activations in one pass).
SLICE_BATCH = 64

__all__ = [
    "SliceSetNet",
    "ENCODERS",
    "AXES",
    "POSITIONS",
    "AGGREGATIONS",
    "NORMS",
    "HEADS",
    "ATTENTIONS",
    "PROJECTIONS",
    "INPUT_NORMS",
    "sinusoidal_positions",
    "zscore_volumes",
]

AXES = tuple(GEOMETRY_AXES)  # ("sagittal", "coronal", "axial"): slice along X, Y, Z
POSITIONS = ("none", "learned", "sinusoidal")
PAPER_POSITIONS = ("learned", "none")  # SliceSetNet.paper: the paper's code, or none
AGGREGATIONS = ("mean", "max", "attention")
NORMS = ("slice", "joint", "none")  # LayerNorm per slice, over the (slices x features) block, none
HEADS = ("linear", "mlp")  # dropout + linear; or Linear(D, 64) -> ReLU -> Linear (the paper's)
ATTENTIONS = ("query", "paper")  # a learned query and keys; or the paper's PooledAttention
PROJECTIONS = ("before_position", "after_position")  # where the linear map to embed_dim sits
INPUT_NORMS = ("none", "zscore")  # volumes as given; or each z-scored over all its voxels
PAPER_SMALL_CNN = ("scratch", "encoder1")  # names SliceSetNet.paper accepts for it


def sinusoidal_positions(n: int, dim: int) -> torch.Tensor:
    """Fixed sine/cosine position codes ``(n, dim)`` (Vaswani et al., 2017)."""
    position = torch.arange(n, dtype=torch.float32)[:, None]  # (n, 1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(1e4) / dim))
    codes = torch.zeros(n, dim)
    codes[:, 0::2] = torch.sin(position * freq)
    codes[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return codes


def zscore_volumes(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Each volume of ``(B, 1, X, Y, Z)`` minus its mean, over its standard deviation (float32).

    The paper's data loader does this to every image (all voxels, background included).
    It is unchanged by a positive rescaling of the input, such as the cohorts' division by
    the white-matter level. ``eps`` floors the standard deviation of a constant volume.
    """
    x = x.double()  # ~10^6 voxels: statistics and scaling in float64, then back to float32
    flat = x.reshape(x.shape[0], -1)
    mean = flat.mean(dim=1).view(-1, 1, 1, 1, 1)
    std = flat.std(dim=1, correction=0).clamp_min(eps).view(-1, 1, 1, 1, 1)
    return ((x - mean) / std).float()


def _input_mask(mask, volume_shape) -> torch.Tensor | None:
    """``(1, 1, X, Y, Z)`` float32 from a 0/1 ``(X, Y, Z)`` mask; ones for ``True``; else None."""
    if mask is None or mask is False:
        return None
    if mask is True:
        return torch.ones(1, 1, *volume_shape)
    values = torch.from_numpy(np.array(mask, dtype=np.float32))  # a copy: masks are read-only
    if tuple(values.shape) != tuple(volume_shape):
        raise ValueError(
            f"'input_mask' must have the grid's shape {tuple(volume_shape)}; "
            f"{tuple(values.shape)} was provided."
        )
    if not bool(((values == 0) | (values == 1)).all()):
        raise ValueError("'input_mask' must hold only 0 and 1 (a brain or region mask).")
    return values[None, None]


class SliceSetNet(TargetScaled):
    """A position-encoded set of 2D slice embeddings: ``(B, 1, X, Y, Z) -> (B, n_outputs)``.

    For every slice: encoder -> [projection] -> + position code -> norm -> [projection]
    -> pooling over slices -> head. :meth:`paper` sets the options to the paper's model.

    Args:
        encoder: 2D encoder, one of ``ENCODERS`` (``"timm:<name>"`` for any timm model).
        pretrained: load the encoder's ImageNet weights (see ``slicemri_lite.models``).
        axis: ``"sagittal"`` (slices along X), ``"coronal"`` (Y) or ``"axial"`` (Z).
        position: ``"none"``, ``"learned"`` (a vector per slice index, as in the paper) or
            ``"sinusoidal"``; added to the slice embedding before the norm.
        aggregation: ``"mean"``, ``"max"`` or ``"attention"``.
        n_outputs: outputs of the head (1: age in years, or one AD logit).
        volume_shape: the grid ``(X, Y, Z)``; fixes the number of slices.
        embed_dim: size ``D`` of the slice embeddings that are pooled.
        dropout: dropout before a linear head, and before the projection when it comes
            after the position code (the paper's small CNN); the MLP head has none.
        norm: ``"slice"`` (LayerNorm of each slice's embedding, one gain per feature: the
            book's), ``"joint"`` (one LayerNorm over a volume's whole (slices x features)
            block, a gain and bias per slice-feature pair: the paper's) or ``"none"``.
        head: ``"linear"`` (dropout + linear: the book's) or ``"mlp"`` (Linear(D, 64) ->
            ReLU -> Linear(64, n_outputs): the paper's).
        attention: for ``aggregation="attention"``: ``"query"`` (:class:`AttentionPool`,
            the book's) or ``"paper"`` (:class:`PooledAttention`).
        heads: attention heads of ``"paper"`` attention (must divide ``embed_dim``).
        projection: ``"before_position"`` (encoder features -> Linear to ``embed_dim``,
            then position and norm) or ``"after_position"`` (position and norm on the
            encoder's features, then Linear to ``embed_dim``: the paper's small CNN).
        input_norm: ``"none"`` (volumes as given) or ``"zscore"`` (each volume z-scored
            over all its voxels inside the model, as the paper's data loader does).
        imagenet_norm: pretrained encoders see the slice through their ImageNet input
            normalisation, folded into the first convolution (True, the book's), or the
            slice repeated over three channels as it is (False, the paper's).
        input_mask: ``None``, or an ``(X, Y, Z)`` 0/1 array (e.g. ``grid_brain_mask``):
            every volume is multiplied by it first, so the model sees only those voxels and
            its gradient is exactly zero outside them (Chapter 7). Kept as a buffer, saved
            with the weights; ``True`` makes a placeholder of ones for a saved mask to be
            loaded into (how ``load_model`` rebuilds such a model).
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
        *,
        norm: str = "slice",
        head: str = "linear",
        attention: str = "query",
        heads: int = 1,
        projection: str = "before_position",
        input_norm: str = "none",
        imagenet_norm: bool = True,
        input_mask=None,
    ):
        super().__init__()
        self.config = dict(locals())
        for key in ("self", "__class__"):
            self.config.pop(key, None)
        self.config["volume_shape"] = tuple(int(n) for n in volume_shape)
        self.config["input_mask"] = input_mask is not None and input_mask is not False
        check_encoder_name(encoder)
        for name, allowed in [("axis", AXES), ("position", POSITIONS), ("aggregation", AGGREGATIONS),
                              ("norm", NORMS), ("head", HEADS), ("attention", ATTENTIONS),
                              ("projection", PROJECTIONS), ("input_norm", INPUT_NORMS)]:  # fmt: skip
            check_choice(name, self.config[name], allowed)
        if len(volume_shape) != 3:
            raise ValueError(f"'volume_shape' must be (X, Y, Z); {volume_shape!r} was provided.")
        self.encoder_name, self.axis, self.position = encoder, axis, position
        self.aggregation, self.volume_shape = aggregation, tuple(volume_shape)
        self.input_norm = input_norm
        self.register_buffer("input_mask", _input_mask(input_mask, self.volume_shape))
        self.n_slices = self.volume_shape[axis_index(axis)]
        if encoder == "encoder1":
            Encoder1.check_slice_shape(*self.slice_shape)
        self.encoder = build_encoder(encoder, pretrained=pretrained, imagenet_norm=imagenet_norm)
        width = self.encoder.out_dim
        if projection == "before_position":
            self.project, self.post_project, token_dim = (
                nn.Linear(width, embed_dim),
                None,
                embed_dim,
            )
        else:
            self.project, token_dim = nn.Identity(), width
            self.post_project = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, embed_dim))
        if position == "learned":
            self.position_embedding = nn.Embedding(self.n_slices, token_dim)
            nn.init.normal_(self.position_embedding.weight, std=0.02)
        elif position == "sinusoidal":
            self.register_buffer("position_codes", sinusoidal_positions(self.n_slices, token_dim))
        self.norm = {
            "slice": lambda: nn.LayerNorm(token_dim),
            "joint": lambda: nn.LayerNorm((self.n_slices, token_dim)),
            "none": nn.Identity,
        }[norm]()
        self.pool = None
        if aggregation == "attention":
            paper = attention == "paper"
            self.pool = PooledAttention(embed_dim, heads) if paper else AttentionPool(embed_dim)
        self._init_head(embed_dim, n_outputs, dropout, head)

    @property
    def slice_shape(self) -> tuple[int, int]:
        """``(H, W)`` of one slice: ``(Y, Z)``, ``(X, Z)`` or ``(X, Y)``."""
        shape = list(self.volume_shape)
        del shape[axis_index(self.axis)]
        return tuple(shape)

    @classmethod
    def paper(
        cls,
        encoder: str = "resnet18",
        axis: str = "sagittal",
        aggregation: str = "mean",
        position: str = "learned",
        embed_dim: int = 32,
        heads: int = 1,
        volume_shape: tuple[int, int, int] = (91, 109, 91),
        pretrained: bool = True,
        n_outputs: int = 1,
        input_mask=None,
    ) -> SliceSetNet:
        """The paper's slice model (``MRI2DSlice`` in its code), exactly.

        It takes the paper's input tensor: ``(B, 1, X, Y, Z)`` volumes, each z-scored over
        all its voxels. The model z-scores every volume itself (``input_norm="zscore"``),
        which leaves an already z-scored volume as it is (up to rounding) and turns the
        library's cohorts, scaled by their white-matter level, into the paper's input.
        The paper repeats the slice over three channels for ImageNet encoders, without
        ImageNet normalisation; here the first convolution's RGB weights are summed into one
        channel instead (``imagenet_norm=False``), the same result for a third of the work.

        Per slice: the encoder; for a ResNet (or any other ImageNet encoder), a linear map
        to ``heads * embed_dim`` features; with ``position``, a learned ``(slices x
        features)`` code is added and one LayerNorm is taken over that whole block
        (``norm="joint"``), without it there is no norm at all. The paper's small CNN
        (``"scratch"``, its ``encoder1``) puts the code and the norm on its 64 features and
        maps to ``heads * embed_dim`` afterwards, after a dropout of 0.5. Then mean, max
        or the paper's pooled attention over the slices, and the head Linear(D, 64) ->
        ReLU -> Linear(64, n_outputs).

        Args:
            encoder: ``"resnet18"``, ``"resnet34"``, ``"resnet50"`` or ``"scratch"`` (the
                paper's ``encoder1``), which are exact; or any other of ``ENCODERS``.
            axis: ``"sagittal"``, ``"coronal"`` or ``"axial"`` (the paper's slice_dim 1, 2, 3).
            aggregation: ``"mean"``, ``"max"`` or ``"attention"``.
            position: ``"learned"``: the learned position code with its joint LayerNorm;
                ``"none"``: neither (the paper's ``use_position_encoding`` off). The same
                type as ``SliceSetNet``'s ``position``, which also offers ``"sinusoidal"``.
            embed_dim: features per attention head (the paper's ``attn_dim``, 32).
            heads: attention heads (the paper's ``attn_num_heads``, 1); the slice
                embedding has ``heads * embed_dim`` features.
            volume_shape: the grid ``(X, Y, Z)``; the paper's is (91, 109, 91).
            pretrained: ImageNet weights for the encoder (ignored for the small CNN).
            n_outputs: outputs of the head.
            input_mask: an ``(X, Y, Z)`` 0/1 mask every volume is multiplied by first (not
                in the paper; ``SliceSetNet``'s ``input_mask``).
        """
        check_choice("position", position, PAPER_POSITIONS)
        coded = position == "learned"
        small = encoder in PAPER_SMALL_CNN
        model = cls(
            encoder="encoder1" if small else encoder,
            pretrained=pretrained and not small,
            axis=axis,
            position=position,
            aggregation=aggregation,
            n_outputs=n_outputs,
            volume_shape=volume_shape,
            embed_dim=heads * embed_dim,
            dropout=0.5 if small else 0.0,
            norm="joint" if coded else "none",
            head="mlp",
            attention="paper",
            heads=heads,
            projection="after_position" if small else "before_position",
            input_norm="zscore",
            imagenet_norm=False,
            input_mask=input_mask,
        )
        model._paper_init(small)
        return model

    @torch.no_grad()
    def _paper_init(self, small: bool) -> None:
        """Initialise as the paper's code does (its "custom" initialisation for the small CNN)."""
        if self.position == "learned":  # kaiming normal, fan_out = slices, linear gain
            nn.init.normal_(self.position_embedding.weight, std=1 / math.sqrt(self.n_slices))
        if not small:
            return
        last = self.head[-1]
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear) and module is not last:
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def load_paper_state_dict(
        self, state_dict: dict, target_mean: float = 0.0, target_std: float = 1.0
    ) -> None:
        """Load weights saved by the paper's code (``MRI2DSlice`` names, with or without ``net.``).

        The model must come from :meth:`paper` with the checkpoint's encoder, axis,
        aggregation, position and sizes. The paper's head predicts years directly: by default
        ``target_mean`` 0 and ``target_std`` 1, so the outputs equal the paper model's. To
        continue training with ``fit`` (which sets the buffers to the training split's mean
        and standard deviation), pass those values: the last layer is rescaled so that the
        outputs stay the same.

        Raises:
            ValueError: keys missing from or unexpected in ``state_dict`` (both named), a
                tensor of the wrong shape, or a model not built by :meth:`paper`.
        """
        load_paper_state_dict(self, state_dict, target_mean, target_std)

    def to_slices(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, X, Y, Z)`` -> ``(B * S, 1, H, W)``: every slice along ``axis`` as one image."""
        self._check_input(x)
        if self.input_mask is not None:
            x = x * self.input_mask.to(x.dtype)
        if self.input_norm == "zscore":
            x = zscore_volumes(x)
        dim = 2 + axis_index(self.axis)
        x = x.movedim(dim, 1)  # (B, S, 1, H, W)
        slices = x.reshape(-1, 1, *x.shape[-2:])  # (B*S, 1, H, W)
        fmt = torch.channels_last if slices.is_cuda else torch.contiguous_format
        return slices.contiguous(memory_format=fmt)

    def encoder_features(self, x: torch.Tensor) -> torch.Tensor:
        """Raw encoder outputs ``(B, S, E)`` for ``(B, 1, X, Y, Z)`` volumes.

        In inference (encoder in eval mode, no gradient) the slices go through the encoder
        ``SLICE_BATCH`` at a time, so memory stays bounded whatever the batch and grid; in
        eval mode each slice's features do not depend on the others in its pass.
        """
        slices = self.to_slices(x)  # (B*S, 1, H, W)
        if torch.is_grad_enabled() or self.encoder.training or len(slices) <= SLICE_BATCH:
            features = self.encoder(slices)  # (B*S, E)
        else:
            features = torch.cat([self.encoder(part) for part in slices.split(SLICE_BATCH)])
        return features.reshape(x.shape[0], self.n_slices, -1)

    def encode_slices(self, x: torch.Tensor) -> torch.Tensor:
        """Slice embeddings before position and pooling: ``(B, S, D)``, or ``(B, S, E)``
        when the projection comes after the position code."""
        return self.project(self.encoder_features(x))

    def _tokens(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, S, E)`` encoder features -> ``(B, S, D)`` position-encoded, normalised tokens."""
        tokens = self.project(features)  # (B, S, D) (or (B, S, E) before post_project)
        if self.position == "learned":
            tokens = tokens + self.position_embedding.weight.to(tokens.dtype)
        elif self.position == "sinusoidal":
            tokens = tokens + self.position_codes.to(tokens.dtype)
        tokens = self.norm(tokens)
        return tokens if self.post_project is None else self.post_project(tokens)

    def slice_tokens(self, features: torch.Tensor) -> torch.Tensor:
        """Encoder features ``(B, S, E)`` -> the position-encoded, normalised tokens
        ``(B, S, D)`` that pooling sees (e.g. for attention weights from stored features)."""
        return self._tokens(features)

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
        return self.forward_features(self.encoder_features(x))

    @torch.no_grad()
    def slice_gains(self) -> torch.Tensor:
        """Per-slice weight of the joint LayerNorm: mean absolute gain over features, ``(S,)``.

        The paper's norm has one gain per (slice, feature) pair; after mean pooling, slice
        ``s`` enters the pooled vector scaled by its gains, so their size says how much the
        model weights each slice. Only for ``norm="joint"``.
        """
        if self.config.get("norm") != "joint":
            raise ValueError(
                f"slice_gains needs norm='joint' (the paper's); this model uses "
                f"{self.config.get('norm')!r}."
            )
        return self.norm.weight.abs().mean(dim=1).float().cpu()

    def slice_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Attention weights ``(B, S)`` over the slices (rows sum to 1; averaged over the
        paper attention's heads); attention pooling only."""
        if self.pool is None:
            raise ValueError(
                f"slice_attention needs aggregation='attention'; this model uses "
                f"{self.aggregation!r}."
            )
        return self.pool.weights(self._tokens(self.encoder_features(x)))
