"""Training recipes: the optimiser, learning rate, schedule and stopping rule, named.

=========  =================================================================================
recipe     what it is
=========  =================================================================================
``paper``  Gupta et al.'s (ISBI 2021 / 2023) configuration: Adam, lr 1e-4, weight decay
           1e-4 as an L2 term inside Adam, batch 8, up to 100 epochs, constant learning
           rate, the best validation epoch kept (its patience, 100, never stops early).
``book``   the book's faster recipe for frozen features on a CPU: AdamW (decoupled weight
           decay 1e-2), lr 1e-3 reached by a one-epoch linear warmup, then a half cosine
           to zero at the last epoch; early stopping after 5 epochs without progress.
``book_finetune``  the same at lr 3e-4, for your own experiments. The grids train every
           network end to end (fine-tuned encoders, the 3D CNN) with ``paper`` at every
           profile: at lr 1e-3 such a network collapsed to one age for everyone
           (``runs.recipe_for``).
=========  =================================================================================

One difference hides in the loss: the paper's is the squared error in years, the book's
in standard deviations of the training ages. Adam's steps hardly depend on the loss's
scale, but its L2 term does: weight decay 1e-4 against a loss ~std^2 (about 200) times
larger is, relatively, a weaker pull. ``recipes_table()`` gives the table as a DataFrame.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch

from slicemri_lite._core.validation import check_choice

__all__ = [
    "Recipe",
    "RECIPES",
    "PROFILE_RECIPES",
    "get_recipe",
    "recipe_for_profile",
    "make_optimizer",
    "warmup_cosine",
    "recipes_table",
]

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "warmup_cosine")


@dataclass(frozen=True)
class Recipe:
    """How to train: every field a plain literal, so a recipe prints and saves."""

    name: str
    optimizer: str  # "adam": weight decay added to the gradient (L2); "adamw": decoupled decay
    lr: float  # the learning rate (the peak, with a warmup)
    weight_decay: float  # L2 coefficient (adam) or decoupled decay rate (adamw)
    schedule: str  # "constant", or "warmup_cosine": linear warmup, half cosine to 0; per batch
    warmup_epochs: float  # warmup length in epochs (warmup_cosine only)
    batch_size: int | None  # volumes per step; None: the profile's
    max_epochs: int | None  # the most epochs; None: the profile's
    patience: int | None  # epochs without a better validation loss before stopping; None: never
    keep: str  # which weights are returned: "best_val", the best validation epoch's
    source: str  # where the numbers come from

    def as_dict(self) -> dict:
        return asdict(self)


RECIPES: dict[str, Recipe] = {
    "paper": Recipe(
        "paper",
        optimizer="adam",
        lr=1e-4,
        weight_decay=1e-4,
        schedule="constant",
        warmup_epochs=0.0,
        batch_size=8,
        max_epochs=100,
        patience=None,
        keep="best_val",
        source="Gupta et al. 2021/2023, config/config_ukbb_brain_age.py in their code",
    ),
    "book": Recipe(
        "book",
        optimizer="adamw",
        lr=1e-3,
        weight_decay=1e-2,
        schedule="warmup_cosine",
        warmup_epochs=1.0,
        batch_size=None,
        max_epochs=None,
        patience=5,
        keep="best_val",
        source="this book: fast training on frozen slice features (smoke and cpu profiles)",
    ),
    "book_finetune": Recipe(
        "book_finetune",
        optimizer="adamw",
        lr=3e-4,
        weight_decay=1e-2,
        schedule="warmup_cosine",
        warmup_epochs=1.0,
        batch_size=None,
        max_epochs=None,
        patience=5,
        keep="best_val",
        source="this book: fine-tuning a whole pretrained encoder",
    ),
}


# Which recipe each run profile trains with: the paper's at paper scale on a GPU, the book's
# faster one where the encoder is frozen and time is short.
PROFILE_RECIPES = {"smoke": "book", "cpu": "book", "gpu": "paper"}


def recipe_for_profile(profile: str) -> Recipe:
    """The recipe a run profile (``"smoke"``, ``"cpu"``, ``"gpu"``) trains with."""
    return get_recipe(PROFILE_RECIPES[check_choice("profile", profile, PROFILE_RECIPES)])


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name`` (one of ``RECIPES``)."""
    return RECIPES[check_choice("recipe", name, RECIPES)]


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Learning-rate factor per step: linear warmup to 1, then a half cosine to zero."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def make_optimizer(
    recipe: Recipe | str, params: Iterable, steps_per_epoch: int, epochs: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The recipe's optimiser over ``params`` and its scheduler, to be stepped once per batch.

    Args:
        recipe: a ``Recipe`` or the name of one.
        params: the parameters (or parameter groups) to train.
        steps_per_epoch: batches per epoch.
        epochs: epochs the schedule spans (the cosine reaches zero at their end).

    Returns:
        ``(optimizer, scheduler)``; a ``"constant"`` schedule's scheduler leaves the rate as it is.
    """
    recipe = get_recipe(recipe) if isinstance(recipe, str) else recipe
    check_choice("optimizer", recipe.optimizer, OPTIMIZERS)
    check_choice("schedule", recipe.schedule, SCHEDULES)
    if steps_per_epoch < 1 or epochs < 1:
        raise ValueError(
            f"'steps_per_epoch' and 'epochs' must be at least 1; {steps_per_epoch} and "
            f"{epochs} were provided."
        )
    kind = torch.optim.Adam if recipe.optimizer == "adam" else torch.optim.AdamW
    optimizer = kind(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.schedule == "constant":
        factor = lambda step: 1.0  # noqa: E731
    else:
        warmup = max(1, round(recipe.warmup_epochs * steps_per_epoch))
        factor = warmup_cosine(epochs * steps_per_epoch, warmup)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _describe(recipe: Recipe) -> dict[str, str]:
    decay = "L2 in the gradient" if recipe.optimizer == "adam" else "decoupled"
    schedule = ("constant" if recipe.schedule == "constant"
                else f"linear warmup ({recipe.warmup_epochs:g} epoch), cosine to 0")  # fmt: skip
    return {
        "recipe": recipe.name,
        "optimiser": {"adam": "Adam", "adamw": "AdamW"}[recipe.optimizer],
        "learning rate": f"{recipe.lr:g}",
        "weight decay": f"{recipe.weight_decay:g} ({decay})",
        "schedule": schedule,
        "batch": "profile's" if recipe.batch_size is None else str(recipe.batch_size),
        "epochs (most)": "profile's" if recipe.max_epochs is None else str(recipe.max_epochs),
        "early stopping": "none" if recipe.patience is None else f"after {recipe.patience} epochs",
        "weights kept": {"best_val": "best validation epoch"}[recipe.keep],
        "source": recipe.source,
    }


def recipes_table(names: Iterable[str] | None = None):
    """The recipes side by side, one row each: a pandas DataFrame for the chapters."""
    import pandas as pd

    names = list(RECIPES) if names is None else list(names)
    return pd.DataFrame([_describe(get_recipe(n)) for n in names]).set_index("recipe")
