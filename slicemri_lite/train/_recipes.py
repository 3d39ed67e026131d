"""Training recipes: every setting of one training run, in one dataclass, named.

``fit`` takes all of its training settings from a ``Recipe``: optimiser, learning rate,
weight decay, schedule and warmup, batch size, epochs, early stopping's patience and
which epoch's weights it keeps. ``RECIPES`` names the ones this book uses:

=================  ========================================================================
recipe             what it is
=================  ========================================================================
``paper``          Gupta et al.'s (ISBI 2021 / 2023) configuration: Adam, lr 1e-4, weight
                   decay 1e-4 as an L2 term inside Adam, batch 8, up to 100 epochs,
                   constant learning rate, no early stopping, the best validation epoch
                   kept. ``fit`` uses it for any network trained end to end.
``book``           the book's faster recipe for heads on frozen slice features: AdamW
                   (decoupled weight decay 1e-2), lr 1e-3 reached by a one-epoch linear
                   warmup, then a half cosine to zero at the last epoch; batch 8, up to 15
                   epochs, early stopping after 5 epochs without progress. ``fit`` uses it
                   for frozen features (``features=`` or ``freeze_encoder=True``).
``book_finetune``  the book's at lr 3e-4, for your own fine-tuning experiments. At lr 1e-3
                   a network trained end to end collapsed to one age for everyone, which
                   is why such networks get ``paper`` (``choose_recipe``).
=================  ========================================================================

One difference hides in the loss: the paper's is the squared error in years, the book's
in standard deviations of the training ages. Adam's steps hardly depend on the loss's
scale, but its L2 term does: weight decay 1e-4 against a loss ~std^2 (about 200) times
larger is, relatively, a weaker pull. ``recipes_table()`` gives the table as a DataFrame.

To change a setting, replace a field: ``fit(..., recipe=replace(get_recipe("paper"),
epochs=20))``, or give it to ``fit`` as a keyword (``fit(..., epochs=20)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields, replace

import torch

from slicemri_lite._core.validation import check_choice

__all__ = [
    "Recipe",
    "RECIPES",
    "RECIPE_FIELDS",
    "get_recipe",
    "choose_recipe",
    "resolve_recipe",
    "make_optimizer",
    "warmup_cosine",
    "recipes_table",
]

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "warmup_cosine")
KEEP = ("best_val", "last")


@dataclass(frozen=True)
class Recipe:
    """How to train: every setting ``fit`` applies. Plain literals, so a recipe prints and saves.

    The defaults are the book's recipe for heads on frozen slice features.
    """

    name: str = "book"  # what the progress bar, the history and the results call it
    optimizer: str = "adamw"  # "adam": weight decay added to the gradient (L2); "adamw": decoupled
    lr: float = 1e-3  # the learning rate (its peak, after the warmup)
    weight_decay: float = 1e-2  # L2 coefficient (adam) or decoupled decay rate (adamw)
    schedule: str = "warmup_cosine"  # linear warmup, half cosine to 0 at `epochs`; or "constant"
    warmup_epochs: float = 1.0  # the warmup's length in epochs (warmup_cosine only)
    batch_size: int = 8  # volumes per optimiser step (over all processes under torchrun)
    epochs: int = 15  # the most epochs to train; the schedule spans all of them
    patience: int | None = 5  # epochs without a better val loss before stopping; None: never
    keep: str = "best_val"  # the weights returned: the best validation epoch's, or "last"
    source: str = "this book: fast training on frozen slice features"  # the numbers' origin

    def __post_init__(self):
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("keep", self.keep, KEEP)
        for name in ("batch_size", "epochs"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"'{name}' must be an integer of at least 1; "
                                 f"{getattr(self, name)!r} was provided.")  # fmt: skip
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise ValueError(
                f"'patience' must be an integer of at least 1, or None (never stop early); "
                f"{self.patience!r} was provided."
            )

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One line: what this recipe trains with, e.g. for the progress bar."""
        d = _describe(self)
        return (f"recipe {self.name!r}: {d['optimiser']} lr {d['learning rate']}, weight decay "
                f"{d['weight decay']}, {d['schedule']}; batch {self.batch_size}, at most "
                f"{self.epochs} epochs, early stopping {d['early stopping']}, "
                f"{d['weights kept']} kept")  # fmt: skip


# The fields a caller may replace (fit's keyword overrides); name and source describe.
RECIPE_FIELDS = tuple(f.name for f in fields(Recipe) if f.name not in ("name", "source"))

RECIPES: dict[str, Recipe] = {
    "paper": Recipe(
        name="paper",
        optimizer="adam",
        lr=1e-4,
        weight_decay=1e-4,
        schedule="constant",
        warmup_epochs=0.0,
        batch_size=8,
        epochs=100,
        patience=None,
        keep="best_val",
        source="Gupta et al. 2021/2023, config/config_ukbb_brain_age.py in their code",
    ),
    "book": Recipe(),
    "book_finetune": Recipe(
        name="book_finetune",
        lr=3e-4,
        source="this book: fine-tuning a whole pretrained encoder",
    ),
}


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name`` (one of ``RECIPES``)."""
    return RECIPES[check_choice("recipe", name, RECIPES)]


def choose_recipe(frozen: bool) -> Recipe:
    """The recipe ``fit`` trains with when given none: it depends on what trains.

    Heads on frozen slice features (``frozen``) get the book's recipe; any network trained
    end to end (a fine-tuned or from-scratch encoder, the 3D CNN) gets the paper's: at the
    book's lr 1e-3 these networks collapse to predicting one age for everyone (their
    training loss stays at the variance of the ages; Chapter 4 shows it).
    """
    return get_recipe("book" if frozen else "paper")


def resolve_recipe(recipe: Recipe | str | None, frozen: bool, **overrides) -> Recipe:
    """The recipe a ``fit`` call trains with: ``recipe`` (a name, or ``None`` for
    ``choose_recipe(frozen)``) with the fields in ``overrides`` replaced."""
    if recipe is None:
        recipe = choose_recipe(frozen)
    elif isinstance(recipe, str):
        recipe = get_recipe(recipe)
    elif not isinstance(recipe, Recipe):
        raise TypeError(f"'recipe' must be a Recipe, a name in {list(RECIPES)} or None; "
                        f"{type(recipe).__name__} was provided.")  # fmt: skip
    unknown = sorted(set(overrides) - set(RECIPE_FIELDS))
    if unknown:
        raise TypeError(
            f"unexpected keyword argument(s) {unknown}: a training setting must be one of "
            f"the Recipe fields {list(RECIPE_FIELDS)}."
        )
    return replace(recipe, **overrides) if overrides else recipe


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Learning-rate factor per step: linear warmup to 1, then a half cosine to zero."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def make_optimizer(
    recipe: Recipe | str, params: Iterable, steps_per_epoch: int, epochs: int | None = None
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The recipe's optimiser over ``params`` and its scheduler, to be stepped once per batch.

    Args:
        recipe: a ``Recipe`` or the name of one.
        params: the parameters (or parameter groups) to train.
        steps_per_epoch: batches per epoch.
        epochs: epochs the schedule spans (the cosine reaches zero at their end);
            ``None``: the recipe's.

    Returns:
        ``(optimizer, scheduler)``; a ``"constant"`` schedule's scheduler leaves the rate as it is.
    """
    recipe = get_recipe(recipe) if isinstance(recipe, str) else recipe
    epochs = recipe.epochs if epochs is None else epochs
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
        "batch": str(recipe.batch_size),
        "epochs (most)": str(recipe.epochs),
        "early stopping": "none" if recipe.patience is None else f"after {recipe.patience} epochs",
        "weights kept": {"best_val": "best validation epoch", "last": "last epoch"}[recipe.keep],
        "source": recipe.source,
    }


def recipes_table(names: Iterable[str] | None = None):
    """The recipes side by side, one row each: a pandas DataFrame for the chapters."""
    import pandas as pd

    names = list(RECIPES) if names is None else list(names)
    return pd.DataFrame([_describe(get_recipe(n)) for n in names]).set_index("recipe")
