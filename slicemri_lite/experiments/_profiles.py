"""Run profiles: how big each chapter's data and model are, and how long it trains.

| profile | for                     | subjects | grid | encoder            | device | epochs | batch |
|---------|-------------------------|----------|------|--------------------|--------|--------|-------|
| smoke   | CI: seconds per chapter | 24       | 4 mm | efficientnet_lite0 | cpu    | 2      | 4     |
| cpu     | Binder / laptop, < 2 GB | 200      | 4 mm | efficientnet_lite0 | cpu    | 15     | 8     |
| gpu     | Colab GPU, paper scale  | 400      | 2 mm | resnet18           | cuda   | 40     | 8     |

A profile gives sizes, never optimiser settings: those are the training recipe's
(``slicemri_lite.train.Recipe``; ``fit(recipe=None)`` picks the book's for heads on frozen
features, the paper's for networks trained end to end). The one thing a profile changes
in a recipe is how long it trains (epochs and batch size, the last two columns):
``recipe_for_profile(profile, recipe)``, from ``TRAINING_LENGTH``.

On a CPU, fine-tuning a 2D encoder over every slice of every volume is too slow for a
chapter, so the chapters train on frozen slice features there (``fit(features=...)``)
and fine-tune on a GPU.

``gpu-smoke`` is the gpu profile's code paths at smoke sizes (24 subjects, 2 mm,
efficientnet_lite0, 1 epoch, batch 4; CUDA when there is one, else the CPU): ``make gpu-check``
runs every chapter at it on a first GPU, ``make gpu-smoke-cpu`` on a CPU beforehand.

``auto`` resolves to ``gpu`` when CUDA is available, else ``cpu``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from slicemri_lite._core.validation import check_choice
from slicemri_lite.train._recipes import Recipe

__all__ = [
    "Profile",
    "PROFILES",
    "SMOKE_NOTE",
    "TRAINING_LENGTH",
    "as_profile",
    "get_profile",
    "recipe_for_profile",
]


@dataclass(frozen=True)
class Profile:
    """Sizes for one kind of run. Every field is a plain literal so it prints and saves."""

    name: str
    n_subjects: int  # synthetic cohort size
    resolution: int  # mm; 2 = paper grid 91x109x91, 4 = 46x55x46
    encoder: str  # default 2D encoder for slice models
    seeds: tuple[int, ...] = (0,)  # seeds for experiments that repeat runs
    device: str = "cpu"

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def is_smoke(self) -> bool:
        """A smoke size (``smoke``, ``gpu-smoke``): it checks that code runs, and its
        numbers mean nothing; the chapters' guards on their prose are skipped there."""
        return self.name in SMOKE_PROFILES


SMOKE_PROFILES = ("smoke", "gpu-smoke")  # code paths at seconds-sized runs, nothing more
SMOKE_NOTE = (
    "This page ran at a smoke size: a couple of dozen participants and an epoch or two, "
    "to check that its code runs. Its numbers mean nothing, and the checks that guard the "
    "text's claims were skipped; the text is written for the cpu profile's numbers."
)

PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", n_subjects=24, resolution=4, encoder="efficientnet_lite0"),
    "cpu": Profile(
        "cpu", n_subjects=200, resolution=4, encoder="efficientnet_lite0", seeds=(0, 1, 2)
    ),
    "gpu": Profile(
        "gpu",
        n_subjects=400,
        resolution=2,
        encoder="resnet18",
        seeds=(0, 1, 2, 3, 4),
        device="cuda",
    ),  # fmt: skip
    # The gpu profile's code paths (2 mm, the gpu grids' fine-tuning, bf16 and channels_last
    # on CUDA) at smoke sizes: `make gpu-check` on a first GPU, `make gpu-smoke-cpu` before
    # (device "auto": CUDA when there is one, else the CPU). Lite0, whose ImageNet weights
    # ship with a package: a lent GPU machine is offline, ResNet weights would not download.
    "gpu-smoke": Profile(
        "gpu-smoke", n_subjects=24, resolution=2, encoder="efficientnet_lite0", device="auto"
    ),
}

# How long each profile trains: Recipe fields that replace the chosen recipe's. The one
# place a profile touches training (early stopping may end a run sooner).
TRAINING_LENGTH: dict[str, dict[str, int]] = {
    "smoke": {"epochs": 2, "batch_size": 4},  # seconds per chapter
    "cpu": {"epochs": 15, "batch_size": 8},
    "gpu": {"epochs": 40, "batch_size": 8},
    "gpu-smoke": {"epochs": 1, "batch_size": 4},
}


def get_profile(name: str = "auto") -> Profile:
    """Return the named profile; ``"auto"`` is ``gpu`` with CUDA, else ``cpu``.

    A profile whose device is ``"auto"`` (``gpu-smoke``) gets ``"cuda"`` when CUDA is
    available, else ``"cpu"``.
    """
    import torch

    if name == "auto":
        name = "gpu" if torch.cuda.is_available() else "cpu"
    if name not in PROFILES:
        raise ValueError(f"'profile' must be one of {['auto', *PROFILES]}; {name!r} was provided.")
    profile = PROFILES[name]
    if profile.device == "auto":
        return replace(profile, device="cuda" if torch.cuda.is_available() else "cpu")
    return replace(profile)


def as_profile(profile: Profile | str) -> Profile:
    """``profile`` as a ``Profile``: a ``Profile`` as it is, a name through ``get_profile``.

    Every library call that takes a profile accepts either, and resolves it here.
    """
    return profile if isinstance(profile, Profile) else get_profile(profile)


def recipe_for_profile(profile: Profile | str, recipe: Recipe) -> Recipe:
    """``recipe`` trained for as long as ``profile`` trains (``TRAINING_LENGTH``).

    ``recipe`` is the one ``fit`` would choose (``slicemri_lite.train.choose_recipe``) or
    any other; only its epochs and batch size change.
    """
    name = as_profile(profile).name
    return replace(recipe, **TRAINING_LENGTH[check_choice("profile", name, TRAINING_LENGTH)])
