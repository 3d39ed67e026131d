"""Training recipes: the paper's numbers, the book's schedule, the table."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from slicemri_lite.train import (
    RECIPES,
    Recipe,
    choose_recipe,
    get_recipe,
    make_optimizer,
    recipes_table,
)


def _params():
    return [torch.nn.Parameter(torch.ones(3))]


def test_the_paper_recipe_holds_the_papers_numbers():
    paper = RECIPES["paper"]
    assert (paper.optimizer, paper.lr, paper.weight_decay) == ("adam", 1e-4, 1e-4)
    assert (paper.batch_size, paper.epochs, paper.keep) == (8, 100, "best_val")
    assert paper.schedule == "constant" and paper.patience is None


def test_paper_optimiser_is_adam_with_l2_and_a_constant_rate():
    optimizer, scheduler = make_optimizer("paper", _params(), steps_per_epoch=5, epochs=3)
    assert type(optimizer) is torch.optim.Adam
    assert optimizer.param_groups[0]["weight_decay"] == 1e-4
    for _ in range(15):
        optimizer.step()
        scheduler.step()
        assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)


def test_l2_inside_adam_differs_from_decoupled_decay():
    """With a zero loss gradient, Adam's L2 term is normalised away (a step of ~lr), while
    AdamW shrinks the weights by lr * decay."""
    results = {}
    for name in ("paper", "book"):
        recipe = dataclasses.replace(
            get_recipe(name), lr=0.1, weight_decay=0.5, schedule="constant"
        )
        params = _params()
        optimizer, _ = make_optimizer(recipe, params, 1, 1)
        params[0].grad = torch.zeros(3)
        optimizer.step()
        results[name] = float(params[0].detach()[0])
    assert results["paper"] == pytest.approx(1 - 0.1, abs=1e-4)
    assert results["book"] == pytest.approx(1 - 0.1 * 0.5, abs=1e-6)


def test_book_schedule_warms_up_then_decays_to_zero():
    optimizer, scheduler = make_optimizer("book", _params(), steps_per_epoch=4, epochs=5)
    assert type(optimizer) is torch.optim.AdamW
    rates = []
    for _ in range(20):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(1e-3 / 4)
    assert max(rates) == pytest.approx(1e-3) and rates.index(max(rates)) == 3
    assert rates[-1] < 0.05 * 1e-3 and all(
        a >= b for a, b in zip(rates[3:-1], rates[4:], strict=True)
    )


def test_table_lists_every_recipe():
    table = recipes_table()
    assert list(table.index) == list(RECIPES)
    assert table.loc["paper", "optimiser"] == "Adam"
    assert table.loc["book", "weight decay"] == "0.01 (decoupled)"


def test_unknown_recipes_and_bad_sizes_are_refused():
    with pytest.raises(ValueError, match=r"'recipe' must be one of \['paper', 'book'"):
        make_optimizer("sgd", _params(), 1, 1)
    with pytest.raises(ValueError, match="at least 1"):
        make_optimizer("paper", _params(), 0, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        RECIPES["paper"].lr = 1.0


def test_the_book_recipe_is_the_dataclass_defaults_and_bad_fields_are_refused():
    assert RECIPES["book"] == Recipe()
    assert (Recipe().batch_size, Recipe().epochs, Recipe().patience) == (8, 15, 5)
    with pytest.raises(ValueError, match=r"'keep' must be one of \['best_val', 'last'\]"):
        Recipe(keep="worst")
    with pytest.raises(ValueError, match="'patience' must be an integer of at least 1"):
        Recipe(patience=0)
    with pytest.raises(ValueError, match="'batch_size' must be an integer"):
        dataclasses.replace(RECIPES["paper"], batch_size=0)


def test_fit_chooses_the_book_recipe_for_frozen_features_and_the_paper_one_otherwise():
    assert choose_recipe(frozen=True).name == "book"
    assert choose_recipe(frozen=False).name == "paper"


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_a_profile_changes_only_how_long_a_recipe_trains(profile):
    from slicemri_lite.experiments import TRAINING_LENGTH, get_profile, recipe_for_profile

    for name, recipe in RECIPES.items():
        scaled = recipe_for_profile(get_profile(profile), recipe)
        assert scaled == dataclasses.replace(recipe, **TRAINING_LENGTH[profile]), name


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_grid_networks_take_the_recipe_fit_would_choose_at_every_profile(profile):
    from slicemri_lite.experiments import ModelConfig, get_profile, recipe_for

    prof = get_profile(profile)
    end_to_end = [
        ModelConfig("conv3d"),
        ModelConfig("sliceset", "efficientnet_lite0", "imagenet", "finetune"),
        ModelConfig("sliceset", "scratch", "random", "finetune"),
    ]
    assert {recipe_for(c, prof).name for c in end_to_end} == {"paper"}
    frozen = ModelConfig("sliceset", "efficientnet_lite0", "imagenet", "frozen")
    assert recipe_for(frozen, prof).name == "book"


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (("conv3d",), None),  # the paper's recipe: every epoch, the best val epoch kept
        (("sliceset", "efficientnet_lite0", "imagenet", "frozen"), 3),  # the book's stops
    ],
)
def test_the_grid_patience_applies_only_to_recipes_that_stop_early(monkeypatch, config, expected):
    from data_fixtures import planted_cohort

    from slicemri_lite.experiments import _runs as runs
    from slicemri_lite.experiments import get_profile
    from slicemri_lite.train import SliceFeatures

    seen = {}

    def fake_fit(model, cohort, **options):
        seen.update(options)
        raise StopIteration  # the options are all this test needs

    monkeypatch.setattr(runs, "fit", fake_fit)
    cohort = planted_cohort()
    values = np.zeros((len(cohort), cohort.shape[0], 4), np.float32)
    features = SliceFeatures(values, None, "efficientnet_lite0")
    profile = get_profile("cpu")
    spec = runs.RunSpec(runs.ModelConfig(*config), 8, 0, epochs=7, batch_size=2, patience=3)
    with pytest.raises(StopIteration):
        runs.run_config(spec.config, cohort, profile, 0, recipe=spec.recipe(profile),
                        features=features)  # fmt: skip
    recipe = seen["recipe"]
    assert (recipe.patience, recipe.epochs, recipe.batch_size) == (expected, 7, 2)
    assert recipe.name == ("book" if spec.config.needs_features else "paper")
