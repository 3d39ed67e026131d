"""Run profiles: how big each chapter's data, model and training are.

| profile | for                     | subjects | grid | epochs | batch | encoder            | pretrained encoder |
|---------|-------------------------|----------|------|--------|-------|--------------------|--------------------|
| smoke   | CI: seconds per chapter | 24       | 4 mm | 2      | 4     | efficientnet_lite0 | frozen (features)  |
| cpu     | Binder / laptop, < 2 GB | 200      | 4 mm | 15     | 8     | efficientnet_lite0 | frozen (features)  |
| gpu     | Colab GPU, paper scale  | 400      | 2 mm | 40     | 8     | resnet18           | fine-tuned         |

On a CPU, fine-tuning a 2D encoder over every slice of every volume is too slow
for a chapter, so the smoke and cpu profiles freeze the pretrained encoder and
train the rest on slice features computed once (``fit(freeze_encoder=True)``).

``auto`` resolves to ``gpu`` when CUDA is available, else ``cpu``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

__all__ = ["Profile", "PROFILES", "get_profile"]


@dataclass(frozen=True)
class Profile:
    """Sizes for one kind of run. Every field is a plain literal so it prints and saves."""

    name: str
    n_subjects: int  # synthetic cohort size
    resolution: int  # mm; 2 = paper grid 91x109x91, 4 = 46x55x46
    epochs: int  # upper bound; early stopping may end sooner
    batch_size: int  # volumes per step
    encoder: str  # default 2D encoder for slice models
    lr: float = 1e-3  # AdamW peak learning rate
    freeze_encoder: bool = True  # train on frozen slice features (fast on CPU)
    seeds: tuple[int, ...] = (0,)  # seeds for experiments that repeat runs
    device: str = "cpu"

    def as_dict(self) -> dict:
        return asdict(self)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        "smoke",
        n_subjects=24,
        resolution=4,
        epochs=2,
        batch_size=4,
        encoder="efficientnet_lite0",
        seeds=(0,),
    ),
    "cpu": Profile(
        "cpu",
        n_subjects=200,
        resolution=4,
        epochs=15,
        batch_size=8,
        encoder="efficientnet_lite0",
        seeds=(0, 1, 2),
    ),
    "gpu": Profile(
        "gpu",
        n_subjects=400,
        resolution=2,
        epochs=40,
        batch_size=8,
        encoder="resnet18",
        lr=3e-4,
        freeze_encoder=False,
        seeds=(0, 1, 2, 3, 4),
        device="cuda",
    ),
}


def get_profile(name: str = "auto") -> Profile:
    """Return the named profile; ``"auto"`` is ``gpu`` with CUDA, else ``cpu``."""
    if name == "auto":
        import torch

        name = "gpu" if torch.cuda.is_available() else "cpu"
    if name not in PROFILES:
        raise ValueError(f"'profile' must be one of {['auto', *PROFILES]}; {name!r} was provided.")
    return replace(PROFILES[name])
