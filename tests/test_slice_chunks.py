"""Activation checkpointing over slice chunks computes what the plain model computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_train import QUIET, SHAPE, scratch_net, tiny_cohort

from slicemri_lite.models import SliceSetNet
from slicemri_lite.train import ChunkedForward, fit, freeze_batch_norm, has_training_batch_norm


def _grads(module, x):
    module.zero_grad(set_to_none=True)
    out = module(x)
    out.square().sum().backward()
    return out.detach(), {
        n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None
    }


def test_chunked_resnet_with_frozen_batch_norm_gives_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    model = SliceSetNet("resnet18", pretrained=False, volume_shape=SHAPE, embed_dim=8, dropout=0.0)
    model.train()
    freeze_batch_norm(model.encoder)
    assert not has_training_batch_norm(model)
    stats = model.encoder.bn1.running_mean.clone()
    x = torch.randn(2, 1, *SHAPE)
    plain_out, plain = _grads(model, x)
    chunk_out, chunked = _grads(ChunkedForward(model, 5), x)  # 36 slices in chunks of 5
    torch.testing.assert_close(chunk_out, plain_out, rtol=1e-5, atol=1e-6)
    assert plain.keys() == {k.removeprefix("model.") for k in chunked}
    for name, grad in plain.items():
        torch.testing.assert_close(chunked[f"model.{name}"], grad, rtol=1e-4, atol=1e-6)
    assert torch.equal(model.encoder.bn1.running_mean, stats)  # recomputation left them alone


def test_fit_with_slice_chunks_matches_the_plain_fit():
    cohort = tiny_cohort(8)
    cohort.table["split"] = ["train"] * 6 + ["val", "test"]
    runs = []
    for chunk in (None, 7):
        model = scratch_net(dropout=0.0)  # InstanceNorm: no batch statistics to freeze
        runs.append(fit(model, cohort, epochs=2, batch_size=3, slice_chunk=chunk, **QUIET))
    plain, chunked = (r.history[["train_loss", "val_loss"]].to_numpy() for r in runs)
    # The first step is the same to float precision (the test above, gradients to 1e-4);
    # convolutions on 7 slices instead of 54 round differently, and Adam's normalised
    # steps carry that 1e-6 into ~1e-4 of the later losses.
    assert chunked[0, 0] == pytest.approx(plain[0, 0], rel=1e-5)
    np.testing.assert_allclose(chunked, plain, rtol=2e-3)


def test_a_chunk_must_hold_a_slice():
    with pytest.raises(ValueError, match="'slice_chunk' must be a positive number"):
        ChunkedForward(scratch_net(), 0)
