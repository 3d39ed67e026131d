"""Load checkpoints of the paper's code (``MRI2DSlice``) into ``SliceSetNet.paper`` models.

The paper's trainer saves ``model.state_dict()`` of a wrapper that holds the slice model
as ``net``, so its keys read ``net.encoder_2d...``; both that and the bare names load.
Names and shapes on the two sides, for ``D = heads * attn_dim`` features and ``S`` slices:

======================================================  ==================================
paper (``MRI2DSlice``)                                  ``SliceSetNet.paper``
======================================================  ==================================
``encoder_2d.encoder_2d.<resnet>`` (``conv1`` RGB)       ``encoder.<resnet>`` (``conv1`` folded)
``encoder_2d.post_proc.0`` Linear(E, D)                 ``project``
``encoder_2d.encoder_2d.<i>.0`` (small CNN conv i)       ``encoder.blocks.<i>.0``
``encoder_2d.post_proc_conv.0`` Conv 1x1 (256 -> 64)     ``encoder.post.0``
``encoder_2d.post_position_encoding.1`` Conv 1x1         ``post_project.1`` Linear(64, D)
``encoder_2d.position_encoder.position_encoding``        ``position_embedding.weight`` (S, F)
    ``(1, F, S, 1, 1)`` (slices on the axis' place)
``encoder_2d.position_encoder.ln`` ``(F, S, 1, 1)``      ``norm`` LayerNorm((S, F))
``pooled_attention.S``, ``fc_k``, ``fc_v``, ``ln0``,     ``pool.query``, ``key``, ``value``,
``fc_o``                                                ``norm``, ``out``
``attn_post`` Linear(D, 64), ``regressor.1``            ``head.0``, ``head.2``
======================================================  ==================================
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from slicemri_lite._core.geometry import axis_index

__all__ = ["load_paper_state_dict", "paper_key_map"]

PAPER_RESNETS = ("resnet18", "resnet34", "resnet50")
_Entry = tuple[str, tuple[int, ...], Callable[[torch.Tensor], torch.Tensor]]


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


def _check_paper_form(model: nn.Module) -> None:
    c = model.config
    small = c["encoder"] == "encoder1"
    paper_form = (
        (small or c["encoder"] in PAPER_RESNETS)
        and c["head"] == "mlp"
        and c["attention"] == "paper"
        and c["projection"] == ("after_position" if small else "before_position")
        and (c["position"], c["norm"]) in (("learned", "joint"), ("none", "none"))
        and not c["imagenet_norm"]
    )
    if not paper_form:
        raise ValueError(
            "load_paper_state_dict needs a model built by SliceSetNet.paper(...) with one of "
            f"the paper's encoders {['scratch', *PAPER_RESNETS]}; this model's config is {c}."
        )


def paper_key_map(model: nn.Module) -> dict[str, _Entry]:
    """Paper key -> (this model's key, the paper tensor's shape, paper tensor -> ours)."""
    _check_paper_form(model)
    ours = model.state_dict()
    shape = {k: tuple(v.shape) for k, v in ours.items()}
    mapping: dict[str, _Entry] = {}

    def same(paper_key: str, our_key: str) -> None:
        mapping[paper_key] = (our_key, shape[our_key], _same)

    def conv1x1(paper_key: str, our_key: str) -> None:  # Conv2d 1x1 -> Linear
        mapping[paper_key] = (our_key, (*shape[our_key], 1, 1), lambda t: t.flatten(1))

    small = model.config["encoder"] == "encoder1"
    for key in model.encoder.state_dict():
        if key == "conv1.offset_weight":
            continue  # derived from the RGB weight, which the paper stores
        if small:
            paper_key = "encoder_2d.encoder_2d." + key.removeprefix("blocks.")
            if key.startswith("post."):
                paper_key = "encoder_2d.post_proc_conv." + key.removeprefix("post.")
            same(paper_key, "encoder." + key)
        elif key == "conv1.conv.weight":
            o, _, kh, kw = shape["encoder." + key]
            mapping["encoder_2d.encoder_2d.conv1.weight"] = (
                "encoder." + key,
                (o, 3, kh, kw),
                _same,
            )
        else:
            same("encoder_2d.encoder_2d." + key, "encoder." + key)
    if small:
        conv1x1("encoder_2d.post_position_encoding.1.weight", "post_project.1.weight")
        same("encoder_2d.post_position_encoding.1.bias", "post_project.1.bias")
    else:
        same("encoder_2d.post_proc.0.weight", "project.weight")
        same("encoder_2d.post_proc.0.bias", "project.bias")
    if model.position == "learned":
        _position_entries(model, mapping, shape)
    if model.pool is not None:
        mapping["pooled_attention.S"] = ("pool.query", (1, *shape["pool.query"]), torch.flatten)
        for paper_name, our_name in [("fc_k", "key"), ("fc_v", "value"), ("ln0", "norm"), ("fc_o", "out")]:  # fmt: skip
            for p in ("weight", "bias"):
                same(f"pooled_attention.{paper_name}.{p}", f"pool.{our_name}.{p}")
    for p in ("weight", "bias"):
        same(f"attn_post.{p}", f"head.0.{p}")
        same(f"regressor.1.{p}", f"head.2.{p}")
    return mapping


def _position_entries(model: nn.Module, mapping: dict, shape: dict) -> None:
    """The position code ``(1, F, S, 1, 1)`` and its LayerNorm ``(F, S, 1, 1)`` (slices on the
    axis' place) -> ``(S, F)``."""
    n_slices, features = shape["position_embedding.weight"]
    place = [1, 1, 1]
    place[axis_index(model.axis)] = n_slices

    def to_ours(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(features, n_slices).T.contiguous()

    mapping["encoder_2d.position_encoder.position_encoding"] = (
        "position_embedding.weight", (1, features, *place), to_ours)  # fmt: skip
    for p in ("weight", "bias"):
        mapping[f"encoder_2d.position_encoder.ln.{p}"] = (f"norm.{p}", (features, *place), to_ours)


def load_paper_state_dict(
    model: nn.Module, state_dict: dict, target_mean: float = 0.0, target_std: float = 1.0
) -> None:
    """See :meth:`slicemri_lite.models.SliceSetNet.load_paper_state_dict`."""
    mapping = paper_key_map(model)
    given = {k.removeprefix("net."): v for k, v in state_dict.items()}
    missing, unexpected = sorted(set(mapping) - set(given)), sorted(set(given) - set(mapping))
    if missing or unexpected:
        raise ValueError(
            f"the state dict does not match the paper's MRI2DSlice for {model.config['encoder']!r}, "
            f"{model.axis!r}, {model.aggregation!r}, position={model.position == 'learned'}; "
            f"missing keys: {missing}; unexpected keys: {unexpected}."
        )
    wrong = [f"{k}: {tuple(given[k].shape)} (expected {mapping[k][1]})" for k in mapping
             if tuple(given[k].shape) != mapping[k][1]]  # fmt: skip
    if wrong:
        raise ValueError("tensors of the wrong shape in the state dict: " + "; ".join(wrong))
    state = model.state_dict()
    for paper_key, (our_key, _, convert) in mapping.items():
        if paper_key != "encoder_2d.encoder_2d.conv1.weight":
            state[our_key] = convert(given[paper_key]).to(state[our_key].dtype)
    model.load_state_dict(state)
    with torch.no_grad():
        if "encoder_2d.encoder_2d.conv1.weight" in mapping:
            model.encoder.conv1.load_rgb_weight(given["encoder_2d.encoder_2d.conv1.weight"].float())
        last = model.head[-1]  # the paper predicts years: rescale to target_std units
        last.weight.div_(target_std)
        last.bias.sub_(target_mean).div_(target_std)
        model.target_mean.fill_(target_mean)
        model.target_std.fill_(target_std)
