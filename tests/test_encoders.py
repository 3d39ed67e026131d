"""2D encoders: folding, offline ImageNet weights, natural-image classification."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from slicemri_lite.models import (
    FoldedInputConv,
    OfflineWeightsError,
    build_encoder,
    classify_image,
    efficientnet_lite0_state_dict,
    torchvision_weights_path,
)
from slicemri_lite.models import _encoders as encoders
from slicemri_lite.models import _weights as weights


def _normalised_rgb(x: torch.Tensor, mean, std) -> torch.Tensor:
    """``(N, 1, H, W)`` -> the slice repeated over 3 channels and normalised per channel."""
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    return (x.repeat(1, 3, 1, 1) - m) / s


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(3, 8, 7, stride=2, padding=3, bias=False),  # ResNet stem
        nn.Conv2d(3, 8, 3, stride=1, padding=1, bias=True),
    ],
)
def test_folded_conv_equals_repeated_normalised_input_including_borders(conv):
    torch.manual_seed(0)
    mean, std = encoders.IMAGENET_MEAN, encoders.IMAGENET_STD
    x = torch.rand(4, 1, 17, 22)
    folded = FoldedInputConv(conv, mean, std)
    expected = conv(_normalised_rgb(x, mean, std))
    torch.testing.assert_close(folded(x), expected, rtol=1e-5, atol=1e-5)
    assert folded.conv.weight.shape[1] == 1  # a third of the multiply-adds of the 3-channel conv


def test_folded_conv_rejects_non_rgb_convs():
    with pytest.raises(ValueError, match="3 input channels"):
        FoldedInputConv(nn.Conv2d(1, 8, 3), (0.5,), (0.5,))


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_lite0"])
def test_folded_encoder_equals_the_rgb_network(name):
    """The whole encoder (random init; timm's 'same' padding for lite0) sees the same image."""
    torch.manual_seed(0)
    model, mean, std, first = encoders.imagenet_network(name, pretrained=False)
    encoders._strip_classifier(model)
    model.eval()
    x = torch.rand(2, 1, 33, 41)
    expected = model(_normalised_rgb(x, mean, std))
    encoders._set_submodule(model, first, FoldedInputConv(model.get_submodule(first), mean, std))
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-4)


def test_lite0_weights_map_by_name_onto_every_timm_tensor():
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    state = efficientnet_lite0_state_dict(model)
    target = model.state_dict()
    assert set(state) == set(target)
    assert all(state[k].shape == target[k].shape for k in target)
    assert len(state) == 296
    # The stem's weights really come from the file (not the random init).
    assert not torch.equal(state["conv_stem.weight"], target["conv_stem.weight"])


@pytest.mark.parametrize(
    ("image", "allowed"),
    [("chelsea", set(range(281, 286))), ("coffee", {967, 968})],
)
def test_offline_lite0_weights_recognise_the_cat_and_the_coffee(image, allowed):
    import skimage.data

    top = classify_image(getattr(skimage.data, image)(), "efficientnet_lite0", topk=5)
    assert len(top) == 5
    index, label, probability = top[0]
    assert index in allowed, top
    assert isinstance(label, str) and 0.3 < probability <= 1
    assert [p for *_, p in top] == sorted([p for *_, p in top], reverse=True)


def test_classify_image_validates_its_input():
    with pytest.raises(ValueError, match="uint8"):
        classify_image(np.zeros((8, 8, 3), np.float32))


def test_unknown_encoder_lists_the_choices():
    with pytest.raises(ValueError, match=r"'encoder' must be one of \[.*'efficientnet_lite0'"):
        build_encoder("vgg")


def test_uncached_torchvision_weights_fail_fast_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(url, path):
        raise OSError("Name or service not known")

    monkeypatch.setattr(weights, "_download", offline)
    path = torchvision_weights_path("resnet18")
    assert str(path).startswith(str(tmp_path))
    with pytest.raises(OfflineWeightsError) as err:
        build_encoder("resnet18", pretrained=True)
    message = str(err.value)
    assert (
        str(path) in message and "efficientnet_lite0" in message and "pretrained=False" in message
    )


def test_cached_torchvision_weights_are_used(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_download(url, path):
        raise AssertionError("a cached file must not be downloaded again")

    monkeypatch.setattr(weights, "_download", no_download)
    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None)
    path = torchvision_weights_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    encoder = build_encoder("resnet18", pretrained=True)
    torch.testing.assert_close(encoder.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    folded = (reference.conv1.weight / torch.tensor(encoders.IMAGENET_STD).view(1, 3, 1, 1)).sum(1)
    torch.testing.assert_close(encoder.conv1.conv.weight[:, 0], folded)
