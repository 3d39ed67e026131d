"""Every profile's grid runs with the profile's own settings, sizes aside, on this machine.

The ``gpu`` profile's first run should not be a student's on Colab. Each configuration of
each profile's brain-age grid trains here once with that profile's encoder, batch size,
and the recipe and frozen/fine-tuned mode its grid gives it; only the sizes change (a 12-subject 4 mm cohort,
one epoch) and the device is forced to the CPU. Tests never download: where a grid asks
for ResNet ImageNet weights, these tests load random weights in their place (the
EfficientNet-Lite0 weights ship with a package and are the real ones). The paper's small
CNN fits only the 2 mm grid, and fine-tuning it there at the gpu profile's batch of 8
needs several GB, more than this shared machine gives a test: it runs in
``make gpu-check`` (below), with what is truly CUDA's: bf16 autocast, channels_last, NCCL.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from slicemri_lite.experiments import (
    GRIDS,
    PROFILES,
    TRAINING_LENGTH,
    Experiment,
    RunSpec,
    as_profile,
    get_profile,
    grid_configs,
    grid_runs,
    recipe_for,
)
from slicemri_lite.models import _encoders as encoders

PROFILE_NAMES = list(GRIDS["brain-age"].profiles)


@pytest.fixture(scope="module")
def tiny_cohort():
    from slicemri_lite.data import synthetic_cohort

    return synthetic_cohort(12, seed=0, resolution=4)  # 8 train, 2 val, 2 test


@pytest.fixture
def random_resnet_weights(monkeypatch):
    """ResNet 'ImageNet' weights replaced by random ones: these tests never download."""
    import torchvision.models as tvm

    asked = []

    def random_weights(name):
        asked.append(name)
        return getattr(tvm, name)(weights=None).state_dict()

    monkeypatch.setattr(encoders, "load_torchvision_state_dict", random_weights)
    return asked


def test_every_grid_profile_is_a_profile_and_auto_picks_by_device():
    assert set(PROFILE_NAMES) <= set(PROFILES)
    assert set(TRAINING_LENGTH) == set(PROFILES)  # every profile says how long it trains
    expected = "gpu" if torch.cuda.is_available() else "cpu"
    assert get_profile("auto").name == expected


@pytest.mark.slow
@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_each_profile_trains_every_configuration_of_its_grid(
    name, tiny_cohort, random_resnet_weights
):
    torch.set_num_threads(2)
    settings = replace(get_profile(name), device="cpu")
    configs, needs_2mm = [], []
    for config in grid_configs(name):
        try:
            if config.model == "sliceset":
                config.build(tiny_cohort.shape)
        except ValueError:  # the paper's small CNN: slices too small on the 4 mm grid
            needs_2mm.append(config)
        else:
            configs.append(config)
    assert all(c.encoder == "scratch" for c in needs_2mm)
    specs = [RunSpec(config, 8, seed=0, epochs=1) for config in configs]
    experiment = Experiment(tiny_cohort, settings, progress=False)
    results = experiment.run(specs)
    assert len(results) == len(configs)
    assert (results["status"] == "ok").all(), results[["model", "encoder", "init", "status"]]
    assert np.isfinite(results["mae"]).all()
    networks = results[results["model"].isin(["sliceset", "conv3d"])]
    assert (networks["batch_size"] == TRAINING_LENGTH[name]["batch_size"]).all()  # its own
    uses_resnet = any(c.encoder == "resnet18" and c.init == "imagenet" for c in configs)
    assert bool(random_resnet_weights) == uses_resnet  # and they were random, not downloaded
    if name == "gpu":
        modes = {(c.encoder, c.mode) for c in configs}
        assert {("resnet18", "finetune"), ("efficientnet_lite0", "finetune")} <= modes


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (make gpu-check)")
def test_the_gpu_profile_fine_tunes_on_cuda_with_bf16_and_channels_last(random_resnet_weights):
    from slicemri_lite.data import synthetic_cohort
    from slicemri_lite.experiments import run_config

    cohort = synthetic_cohort(12, seed=0, resolution=2)  # the gpu profile's own grid
    profile = get_profile("gpu")
    for config in grid_configs("gpu"):
        if config.model == "sliceset" and config.mode == "finetune":
            recipe = replace(recipe_for(config, profile), epochs=1)
            result = run_config(config, cohort, profile, seed=0, recipe=recipe)
            assert np.isfinite(result.test).all() and len(result.test) == 2, config.label


def test_every_call_that_takes_a_profile_takes_its_name_too():
    """One resolver (``as_profile``): a name and its ``Profile`` give the same grid and
    recipe; an unknown name is refused with the allowed ones."""
    cpu = get_profile("cpu")
    assert as_profile(cpu) is cpu and as_profile("cpu") == cpu
    assert grid_configs("cpu") == grid_configs(cpu)
    config = grid_configs("cpu")[-1]
    assert recipe_for(config, "cpu") == recipe_for(config, cpu)
    with pytest.raises(ValueError, match=r"'profile' must be one of \['auto', 'smoke'"):
        as_profile("laptop")


def test_gpu_smoke_runs_every_gpu_configuration_once_and_skips_the_guards():
    """``gpu-smoke``: the gpu grids' configurations at smoke sizes (one seed, the whole
    small training split), and a smoke size whose numbers the chapters do not judge."""
    for name, grid in GRIDS.items():
        if "gpu" not in grid.profiles:
            continue
        gpu = {c for block in grid.profiles["gpu"] for c in block.configs}
        runs = grid_runs(name, "gpu-smoke", n_train=16)
        assert {r.config for r in runs} == gpu, name
        assert {r.train_size for r in runs} == {16} and len({r.seed for r in runs}) == 1
        assert len(runs) == len({(r.config, r.age_matched) for r in runs}), name
    assert get_profile("gpu-smoke").is_smoke and get_profile("smoke").is_smoke
    assert not get_profile("cpu").is_smoke and not get_profile("gpu").is_smoke
