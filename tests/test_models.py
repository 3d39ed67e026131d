"""SliceSetNet and Conv3DNet: shapes, set symmetries, attention, validation."""

from __future__ import annotations

import itertools

import pytest
import torch

from slicemri_lite.models import (
    AGGREGATIONS,
    AXES,
    POSITIONS,
    PROJECTIONS,
    Conv3DNet,
    PooledAttention,
    SliceSetNet,
)

SHAPE = (18, 22, 20)  # tiny volumes: X, Y, Z differ so axis mix-ups show
ENCODERS = ["scratch", "resnet18", "resnet34", "resnet50", "efficientnet_lite0",
            "timm:mobilenetv3_small_050"]  # fmt: skip


def _volumes(b: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 1, *SHAPE, generator=torch.Generator().manual_seed(seed))


def _net(**kwargs) -> SliceSetNet:
    torch.manual_seed(0)
    kwargs = {"encoder": "scratch", "pretrained": False, "volume_shape": SHAPE, **kwargs}
    return SliceSetNet(**kwargs).eval()


@pytest.mark.parametrize(
    ("encoder", "axis"), [(e, "coronal") for e in ENCODERS] + [("resnet18", "axial")]
)
def test_every_encoder(encoder, axis):
    """Every encoder (random init) on non-square slices; axes are covered below with 'scratch'."""
    model = _net(encoder=encoder, axis=axis, aggregation="attention", embed_dim=32, n_outputs=3)
    x = _volumes()
    n_slices = SHAPE[AXES.index(axis)]
    with torch.no_grad():
        assert model(x).shape == (2, 3)
        assert model.encode_slices(x).shape == (2, n_slices, 32)
        assert torch.isfinite(model(x)).all()


def test_pretrained_lite0_slice_set_runs_offline():
    model = _net(encoder="efficientnet_lite0", pretrained=True, embed_dim=16)
    with torch.no_grad():
        out = model(_volumes())
    assert out.shape == (2, 1) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("axis", "position", "aggregation"), list(itertools.product(AXES, POSITIONS, AGGREGATIONS))
)
def test_every_axis_position_aggregation(axis, position, aggregation):
    model = _net(axis=axis, position=position, aggregation=aggregation, embed_dim=16)
    with torch.no_grad():
        assert model(_volumes()).shape == (2, 1)


def test_slices_are_cut_along_the_named_axis():
    model = _net(axis="coronal")
    x = _volumes(1)
    slices = model.to_slices(x)  # (S, 1, X, Z)
    assert slices.shape == (SHAPE[1], 1, SHAPE[0], SHAPE[2])
    torch.testing.assert_close(slices[7, 0], x[0, 0, :, 7, :])


def _shuffle(x: torch.Tensor, axis: str, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    dim = 2 + AXES.index(axis)
    perm = torch.randperm(x.shape[dim], generator=torch.Generator().manual_seed(seed))
    return x.index_select(dim, perm), perm


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_without_position_the_output_ignores_slice_order(aggregation):
    model = _net(position="none", aggregation=aggregation)
    if model.pool is not None:  # a non-zero query, so attention is not plain averaging
        torch.nn.init.normal_(model.pool.query)
    x = _volumes()
    shuffled, _ = _shuffle(x, "sagittal")
    with torch.no_grad():
        torch.testing.assert_close(model(shuffled), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("position", ["learned", "sinusoidal"])
def test_position_embeddings_make_the_output_depend_on_order(position):
    model = _net(position=position, aggregation="mean")
    if position == "learned":
        torch.nn.init.normal_(model.position_embedding.weight)
    x = _volumes()
    shuffled, _ = _shuffle(x, "sagittal")
    with torch.no_grad():
        assert (model(shuffled) - model(x)).abs().max() > 1e-3


@pytest.mark.parametrize("axis", AXES)
def test_encode_slices_is_equivariant_to_slice_order(axis):
    model = _net(axis=axis)
    x = _volumes()
    shuffled, perm = _shuffle(x, axis)
    with torch.no_grad():
        torch.testing.assert_close(
            model.encode_slices(shuffled), model.encode_slices(x)[:, perm], rtol=1e-5, atol=1e-5
        )


def test_attention_weights_are_a_distribution_over_slices():
    model = _net(aggregation="attention", axis="axial")
    torch.nn.init.normal_(model.pool.query)
    with torch.no_grad():
        weights = model.slice_attention(_volumes(3))
    assert weights.shape == (3, SHAPE[2])
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(1), torch.ones(3))
    assert weights.std() > 0  # a learned query, not uniform


def test_slice_attention_needs_attention_pooling():
    with pytest.raises(ValueError, match="aggregation='attention'"):
        _net(aggregation="mean").slice_attention(_volumes())


def test_regression_output_starts_at_the_target_mean():
    model = _net()
    model.target_mean.fill_(60.0)
    model.target_std.fill_(15.0)
    torch.nn.init.zeros_(model.head[1].weight)
    with torch.no_grad():
        torch.testing.assert_close(model(_volumes()), torch.full((2, 1), 60.0))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"axis": "foo"}, r"'axis' must be one of \['sagittal', 'coronal', 'axial'\]; 'foo'"),
        ({"position": "rope"}, r"'position' must be one of \['none', 'learned', 'sinusoidal'\]"),
        ({"aggregation": "sum"}, r"'aggregation' must be one of \['mean', 'max', 'attention'\]"),
        ({"encoder": "vgg16"}, r"'encoder' must be one of"),
    ],
)
def test_invalid_choices_say_what_is_allowed(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _net(**kwargs)


def test_wrong_input_shape_is_reported():
    with pytest.raises(ValueError, match=r"input must be \(B, 1, 18, 22, 20\)"):
        _net()(torch.zeros(1, 1, 18, 22, 21))


def test_conv3d_baseline_shapes_and_gradients():
    torch.manual_seed(0)
    model = Conv3DNet(n_outputs=2, volume_shape=SHAPE, embed_dim=8, channels=(4, 8, 8, 8, 8))
    out = model(_volumes())
    assert out.shape == (2, 2)
    out.sum().backward()
    assert model.features[0].weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- the paper's pieces as options

PAPER_OPTIONS = list(
    itertools.product(
        ("slice", "joint", "none"), ("linear", "mlp"), ("query", "paper"), PROJECTIONS
    )
)


@pytest.mark.parametrize(("norm", "head", "attention", "projection"), PAPER_OPTIONS)
def test_every_combination_of_the_named_options(norm, head, attention, projection):
    model = _net(norm=norm, head=head, attention=attention, projection=projection,
                 aggregation="attention", heads=2, embed_dim=16, n_outputs=2)  # fmt: skip
    x = _volumes()
    with torch.no_grad():
        assert model(x).shape == (2, 2)
        torch.testing.assert_close(model.slice_attention(x).sum(1), torch.ones(2))


def test_config_rebuilds_the_model():
    model = _net(norm="joint", head="mlp", attention="paper", aggregation="attention",
                 heads=4, embed_dim=16, input_norm="zscore")  # fmt: skip
    rebuilt = SliceSetNet(**model.config).eval()
    rebuilt.load_state_dict(model.state_dict())
    x = _volumes()
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))
    conv = Conv3DNet(volume_shape=SHAPE, embed_dim=8, channels=(4, 8, 8, 8, 8))
    assert Conv3DNet(**conv.config).state_dict().keys() == conv.state_dict().keys()


def test_joint_norm_weights_each_slice_position():
    """Its gain and bias per (slice, feature) pair make even position-free models order-aware:
    with mean pooling they are a learned weighting of the slices."""
    model = _net(position="none", norm="joint")
    with torch.no_grad():
        model.norm.weight.normal_()
    assert model.norm.weight.shape == (SHAPE[0], 256)
    x = _volumes()
    shuffled, _ = _shuffle(x, "sagittal")
    with torch.no_grad():
        assert (model(shuffled) - model(x)).abs().max() > 1e-3


def test_paper_attention_heads_are_distributions_and_average():
    pool = PooledAttention(16, heads=4)
    tokens = torch.randn(3, 7, 16)
    with torch.no_grad():
        per_head = pool.head_weights(tokens)
        assert per_head.shape == (3, 4, 7)
        torch.testing.assert_close(per_head.sum(-1), torch.ones(3, 4))
        torch.testing.assert_close(pool.weights(tokens), per_head.mean(1))
        assert pool(tokens).shape == (3, 16)
    with pytest.raises(ValueError, match="'heads' must divide the embedding size 16; 3"):
        PooledAttention(16, heads=3)


def test_zscore_input_ignores_intensity_scale():
    model = _net(input_norm="zscore")
    x = _volumes()
    with torch.no_grad():
        torch.testing.assert_close(model(5 * x + 2), model(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"norm": "batch"}, r"'norm' must be one of \['slice', 'joint', 'none'\]; 'batch'"),
        ({"head": "deep"}, r"'head' must be one of \['linear', 'mlp'\]"),
        ({"attention": "full"}, r"'attention' must be one of \['query', 'paper'\]"),
        ({"projection": "never"}, r"'projection' must be one of"),
        ({"input_norm": "minmax"}, r"'input_norm' must be one of \['none', 'zscore'\]"),
    ],
)
def test_invalid_options_say_what_is_allowed(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _net(**kwargs)


def test_slice_gains_read_the_joint_norms_per_slice_weights():
    torch.manual_seed(0)
    model = SliceSetNet.paper("efficientnet_lite0", pretrained=False, volume_shape=(4, 18, 18))
    with torch.no_grad():
        model.norm.weight.fill_(1.0)
        model.norm.weight[2] = -3.0  # the sign does not matter, the size does
    gains = model.slice_gains()
    assert gains.shape == (4,) and gains.tolist() == [1.0, 1.0, 3.0, 1.0]
    plain = SliceSetNet.paper("efficientnet_lite0", pretrained=False, position="none",
                              volume_shape=(4, 18, 18))  # fmt: skip
    with pytest.raises(ValueError, match="slice_gains needs norm='joint'"):
        plain.slice_gains()


def test_inference_passes_at_most_slice_batch_slices_through_the_encoder():
    """No gradient, eval mode: the encoder sees bounded chunks and the outputs do not change."""
    from slicemri_lite.models._slice_set import SLICE_BATCH

    model, x = _net(encoder="resnet18", axis="sagittal"), _volumes(b=8)  # 8 x 18 slices
    seen = []
    model.encoder.register_forward_hook(lambda _m, inputs, _o: seen.append(len(inputs[0])))
    whole = model(x).detach()  # gradient on: one pass
    assert seen == [8 * SHAPE[0]] and seen[0] > SLICE_BATCH
    seen.clear()
    with torch.no_grad():
        chunked = model(x)
    assert max(seen) <= SLICE_BATCH and sum(seen) == 8 * SHAPE[0]
    assert torch.allclose(chunked, whole, atol=1e-5)
