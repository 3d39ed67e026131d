"""SliceSetNet.paper equals the paper's MRI2DSlice (tests/paper_reference.py) after loading
its state dict, for every encoder x axis x aggregation x position; mismatches are refused."""

from __future__ import annotations

import itertools

import pytest
import torch
from paper_reference import SLICE_DIMS, MRI2DSlice
from torch import nn

from slicemri_lite.models import SliceSetNet

# Few slices; the two in-plane sides differ so that a transposed slice would show.
SHAPES = {"sagittal": (3, 64, 40), "coronal": (64, 3, 40), "axial": (64, 40, 3)}
# The small CNN sees the paper's own slices (109x91, 91x91, 91x109: 3x2, 2x2, 2x3 last maps):
# its instance norms over so few voxels amplify rounding on smaller slices (a 2x1 map).
SMALL_CNN_SHAPES = {"sagittal": (3, 109, 91), "coronal": (91, 3, 91), "axial": (91, 109, 3)}
ENCODERS = ("scratch", "resnet18", "resnet34", "resnet50")
AGGREGATIONS = ("mean", "max", "attention")
TOLERANCE = 1e-4  # of the outputs' spread across inputs
N_INPUTS = 3  # volumes per comparison (resnet50 is heavy: keep the batch tiny)


def _code(position: bool) -> str:
    """The paper's ``use_position_encoding`` flag as ``SliceSetNet.paper``'s ``position``."""
    return "learned" if position else "none"


def _reference(encoder: str, axis: str, aggregation: str, position: bool, shape, heads=1):
    torch.manual_seed(0)
    ref = MRI2DSlice(
        attn_num_heads=heads,
        attn_dim=32,
        attn_drop=True,
        agg_fn=aggregation,
        slice_dim=SLICE_DIMS[axis],
        use_position_encoding=position,
        encoder_2d="encoder1" if encoder == "scratch" else encoder,
        volume_shape=shape,
    )
    _randomise(ref)
    return ref.eval()


@torch.no_grad()
def _randomise(module: torch.nn.Module) -> None:
    """Random values everywhere (norm gains and biases, batch-norm statistics too), so that
    every parameter matters and a misplaced one shows."""
    gen = torch.Generator().manual_seed(1)
    for name, tensor in module.state_dict().items():
        if tensor.dtype != torch.float32:
            continue
        noise = torch.randn(tensor.shape, generator=gen)
        if name.endswith("running_var"):
            tensor.copy_(0.5 + noise.abs())
        elif name.endswith("position_encoding"):
            tensor.copy_(noise)
        elif tensor.ndim == 1 and name.endswith("weight") or name.endswith("ln.weight"):
            tensor.copy_(1 + 0.3 * noise)  # norm gains
        elif tensor.ndim == 1 or name.endswith("ln.bias"):
            tensor.copy_(0.1 * noise)  # biases, means: small, or they drown the input's signal
        else:  # He-like scale, so that activations neither vanish nor explode
            tensor.copy_(noise / tensor[0].numel() ** 0.5)


def _inputs(shape, n: int = N_INPUTS, seed: int = 2) -> torch.Tensor:
    """z-scored random volumes, as the paper's loader gives them: smooth random structure
    plus noise, in a ratio that differs between volumes (so that they move the output)."""
    gen = torch.Generator().manual_seed(seed)
    volumes = []
    for i in range(n):  # from pure noise to large smooth structures
        coarse = torch.randn(1, 1, 2 + i, 2 + i, 2 + i, generator=gen).double()
        smooth = nn.functional.interpolate(coarse, size=shape, mode="trilinear", align_corners=True)
        noise = torch.randn(1, 1, *shape, generator=gen).double()
        volumes.append(10.0 ** (2 * i / max(1, n - 1) - 1) * smooth + noise)
    x = torch.cat(volumes)
    flat = x.reshape(n, -1)
    x = (x - flat.mean(1).view(-1, 1, 1, 1, 1)) / flat.std(1, correction=0).view(-1, 1, 1, 1, 1)
    return x.float()


def _compare(encoder, axis, aggregation, position, shape, heads=1) -> tuple[float, float]:
    ref = _reference(encoder, axis, aggregation, position, shape, heads)
    x = _inputs(shape)
    with torch.no_grad():  # centre the outputs: a constant offset only adds rounding
        ref.regressor[1].bias -= ref(x).mean()
    model = SliceSetNet.paper(encoder, axis, aggregation, _code(position), embed_dim=32, heads=heads,
                              volume_shape=shape, pretrained=False).eval()  # fmt: skip
    model.load_paper_state_dict({"net." + k: v for k, v in ref.state_dict().items()})
    with torch.no_grad():
        expected, got = ref(x), model(x)
    spread = float(expected.max() - expected.min())
    return float((got - expected).abs().max()), spread


@pytest.mark.parametrize(
    ("encoder", "axis", "aggregation", "position"),
    list(itertools.product(ENCODERS, SHAPES, AGGREGATIONS, (True, False))),
)
def test_paper_model_equals_the_papers_code(encoder, axis, aggregation, position):
    shape = (SMALL_CNN_SHAPES if encoder == "scratch" else SHAPES)[axis]
    error, spread = _compare(encoder, axis, aggregation, position, shape)
    assert spread > 1e-3  # the inputs move the output
    assert error <= TOLERANCE * spread, f"max error {error:.2e}, spread {spread:.2e}"


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_several_heads(aggregation):
    error, spread = _compare("resnet18", "coronal", aggregation, True, SHAPES["coronal"], heads=4)
    assert spread > 1e-3 and error <= TOLERANCE * spread


@pytest.mark.slow
@pytest.mark.parametrize(
    ("encoder", "axis"), [("scratch", a) for a in SHAPES] + [("resnet18", "coronal")]
)
def test_on_the_papers_grid(encoder, axis):
    """The paper's own grid: 91/109 slices and its fixed 3x2, 2x2, 2x3 average pools."""
    error, spread = _compare(encoder, axis, "attention", True, (91, 109, 91))
    assert spread > 1e-3 and error <= TOLERANCE * spread


def test_a_paper_state_dict_loads_without_the_net_prefix_too():
    shape = SMALL_CNN_SHAPES["axial"]
    ref = _reference("scratch", "axial", "mean", True, shape)
    model = SliceSetNet.paper("scratch", "axial", "mean", "learned", volume_shape=shape).eval()
    model.load_paper_state_dict(ref.state_dict())
    x = _inputs(shape)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=1e-4, atol=1e-4)


def test_target_scaling_keeps_the_outputs():
    shape = SMALL_CNN_SHAPES["sagittal"]
    ref = _reference("scratch", "sagittal", "max", False, shape)
    model = SliceSetNet.paper("scratch", "sagittal", "max", "none", volume_shape=shape).eval()
    model.load_paper_state_dict(ref.state_dict(), target_mean=62.68, target_std=7.5)
    assert float(model.target_mean) == pytest.approx(62.68)
    x = _inputs(shape)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=1e-4, atol=1e-4)


def test_a_mismatched_state_dict_is_refused_naming_the_keys():
    shape = SHAPES["coronal"]
    ref = _reference("resnet18", "coronal", "mean", True, shape)  # no attention
    model = SliceSetNet.paper("resnet18", "coronal", "attention", "learned", volume_shape=shape,
                              pretrained=False)  # fmt: skip
    state = ref.state_dict()
    state["net.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing keys: \['pooled_attention.S'") as err:
        model.load_paper_state_dict(state)
    assert "unexpected keys: ['extra.weight']" in str(err.value)


def test_a_state_dict_for_another_axis_is_refused_naming_the_shape():
    ref = _reference("scratch", "sagittal", "mean", True, (64, 64, 40))
    model = SliceSetNet.paper("scratch", "coronal", "mean", "learned", volume_shape=(64, 64, 40))
    with pytest.raises(
        ValueError, match=r"position_encoding: \(1, 64, 64, 1, 1\) \(expected \(1, 64, 1, 64, 1\)\)"
    ):
        model.load_paper_state_dict(ref.state_dict())


def test_only_paper_models_load_paper_weights():
    model = SliceSetNet("scratch", pretrained=False, volume_shape=SHAPES["axial"])
    with pytest.raises(ValueError, match=r"built by SliceSetNet.paper"):
        model.load_paper_state_dict({})


def test_the_small_cnn_refuses_slices_too_small_for_it():
    with pytest.raises(ValueError, match=r"encoder1\) needs slices of at least 32"):
        SliceSetNet.paper("scratch", volume_shape=(46, 55, 46))  # the 4 mm grid


def test_position_takes_the_same_names_as_slicesetnets():
    """One type for ``position`` across ``SliceSetNet`` and ``.paper``: a flag is refused."""
    shape = (10, 12, 4)
    coded = SliceSetNet.paper("efficientnet_lite0", position="learned", volume_shape=shape,
                              pretrained=False)  # fmt: skip
    plain = SliceSetNet.paper("efficientnet_lite0", position="none", volume_shape=shape,
                              pretrained=False)  # fmt: skip
    assert (coded.config["position"], coded.config["norm"]) == ("learned", "joint")
    assert (plain.config["position"], plain.config["norm"]) == ("none", "none")
    with pytest.raises(ValueError, match=r"'position' must be one of \['learned', 'none'\]"):
        SliceSetNet.paper("efficientnet_lite0", position=True, volume_shape=shape)


def test_paper_model_wraps_other_encoders():
    model = SliceSetNet.paper("efficientnet_lite0", "axial", "attention", volume_shape=(10, 12, 4))
    with torch.no_grad():
        out = model.eval()(_inputs((10, 12, 4), 2))
    assert out.shape == (2, 1) and torch.isfinite(out).all()
    assert model.config["imagenet_norm"] is False and model.config["norm"] == "joint"


def test_the_model_zscores_its_input():
    """A volume scaled (e.g. by its white-matter level) gives the z-scored volume's output."""
    shape = SHAPES["axial"]
    model = SliceSetNet.paper("resnet18", "axial", "mean", "learned", volume_shape=shape,
                              pretrained=False).eval()  # fmt: skip
    x = _inputs(shape, 2)
    with torch.no_grad():
        torch.testing.assert_close(model(3.0 * x + 1.0), model(x), rtol=1e-4, atol=1e-4)
