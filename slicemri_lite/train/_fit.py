"""Training: ``fit`` trains a model on a cohort's ``train`` split and early-stops on ``val``.

- **One set of settings.** Every training setting comes from a ``Recipe``
  (``slicemri_lite.train.RECIPES``): optimiser, learning rate, weight decay, schedule and
  warmup, batch size, epochs, patience, which weights are kept. ``recipe=None`` chooses
  by what trains (``choose_recipe``): heads on frozen features (``features=`` or
  ``freeze_encoder=True``) get the book's recipe, any network trained end to end gets the
  paper's. A keyword that names a Recipe field (``epochs=``, ``batch_size=``, ``lr=``,
  ``patience=`` ...) replaces the recipe's value. ``FitResult.recipe`` is the recipe
  applied; the progress bar names it and every history row carries its name.
- **Targets.** Age is z-scored with the training split's mean and standard deviation; the
  model stores both (``target_mean``, ``target_std``) and returns years. The loss is the
  mean squared error in those standard units. AD is one logit with a class-balanced
  binary cross-entropy (``pos_weight`` = CN / AD in the training split).
- **Early stopping.** After every epoch the validation loss is measured; training stops
  when it has not improved for the recipe's ``patience`` epochs, and the best epoch's
  weights are restored (``keep="best_val"``; ``"last"`` keeps the last epoch's).
- **Devices.** On CUDA: bf16 autocast (fp16 with a gradient scaler where bf16 is not
  supported), channels_last memory layout, the split's volumes kept on the GPU. On CPU:
  float32, deterministic under ``seed``.
- **Frozen encoder.** ``freeze_encoder=True`` keeps the 2D encoder's weights fixed (and in
  eval mode): every train and val slice goes through it once, and only projection,
  position, pooling and head train on the stored features. ``features=`` gives features
  computed beforehand (``slicemri_lite.train.slice_features``, cached per cohort), so
  the encoder does not run at all. Either way the features are standardised per dimension
  with the mean and standard deviation of all training slices (a random-init encoder's
  features vary little around a large mean, which stalls training), and on return that
  standardisation is folded into the projection, so the model still takes raw volumes.
- **Checkpoints.** With ``checkpoint=path`` the full training state is written atomically
  after every epoch; calling ``fit`` again with the same path resumes where it stopped and
  ends exactly where an uninterrupted run would (on CPU).
- **Streaming.** ``stream=True`` reads each batch from the cohort's array (the memory map of
  its cache) instead of copying the split to the device first, for cohorts larger than the
  device's memory; ``"auto"`` streams when the train and val volumes exceed half the free
  device memory. The batches, and so the results, are the same.
- **Slice chunks.** ``slice_chunk=n`` runs the encoder on ``n`` slices at a time under
  activation checkpointing, with its batch-norm statistics frozen: less memory for one
  more encoder pass.
- **Several processes.** Under ``torchrun``, ``fit`` trains with DistributedDataParallel:
  each rank takes its share of every global batch of ``batch_size`` volumes, and rank 0
  alone writes the checkpoint.

``predict`` and ``evaluate`` live in ``_predict``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from slicemri_lite._core.atomic import atomic_path
from slicemri_lite._core.env import autocast, resolve_device
from slicemri_lite._core.validation import check_choice
from slicemri_lite.data._cohort import TASKS, Cohort
from slicemri_lite.train import _distributed as distributed
from slicemri_lite.train._features import SliceFeatures
from slicemri_lite.train._fit_setup import Setup, set_train_mode, set_up
from slicemri_lite.train._predict import evaluate, outputs, split_metrics
from slicemri_lite.train._recipes import Recipe, resolve_recipe

__all__ = ["FitResult", "fit", "fold_standardisation"]


@dataclass
class FitResult:
    """What ``fit`` returns.

    Attributes:
        history: one row per epoch: ``epoch``, ``train_loss``, ``val_loss``, the validation
            metrics (``val_mae``, ``val_rmse``, ``val_r`` or ``val_auc``,
            ``val_balanced_accuracy``), ``lr`` (at the epoch's end), ``seconds`` and
            ``recipe`` (its name).
        best_state: the model's state dict at the kept epoch (on the CPU); with a frozen
            encoder, after the feature standardisation is folded into the projection.
        metrics: validation and test metrics of that model (``val_mae``, ``test_mae``, ...).
        seconds: wall time of the whole call.
        best_epoch: the epoch whose weights were kept.
        task, device: what was trained, and where.
        recipe: the training settings applied (the chosen recipe with any keyword given
            to ``fit`` in place of its value).
        streamed: whether the volumes were streamed from the cohort (``stream``).
        world_size, backend: the processes that trained (1 and ``"none"`` outside torchrun).
    """

    history: pd.DataFrame
    best_state: dict[str, torch.Tensor]
    metrics: dict[str, float]
    seconds: float
    best_epoch: int
    task: str
    device: str
    recipe: Recipe = None
    streamed: bool = False
    world_size: int = 1
    backend: str = "none"


@torch.no_grad()
def fold_standardisation(project: nn.Linear, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Fold ``(x - mean) / std`` into ``project`` in place: afterwards ``project(x)`` is the old
    ``project((x - mean) / std)``; ``mean``, ``std`` are ``(E,)``, ``project.weight`` ``(D, E)``.
    """
    project.weight.div_(std.to(project.weight))  # W' = W / std
    project.bias.sub_(project.weight @ mean.to(project.weight))  # b' = b - W' mean


# ---------------------------------------------------------------- the loop


@dataclass
class _Loop:
    """The training loop's state: what a checkpoint saves and a resumed run restores."""

    epoch: int = 0
    history: list = field(default_factory=list)
    best_val: float = math.inf
    best_epoch: int = 0
    best_state: dict | None = None
    bad_epochs: int = 0
    stopped: bool = False


def _train_epoch(s: Setup, bar) -> float:
    """One pass over the training split in a random order; returns the mean loss.

    Every process draws the same order and global batches and trains on its share.
    """
    set_train_mode(s)
    order = torch.randperm(len(s.x_train), generator=s.generator)
    batches = s.global_batches(order)
    local = [distributed.shard(b, s.job) for b in batches]
    total = torch.zeros(2, dtype=torch.float64)  # (sum of losses, volumes) on this rank
    for batch, whole, x in zip(local, batches, s.x_train.batches(local), strict=True):
        with autocast(s.device):
            out = s.train_forward(x)
        loss = s.loss_fn(out.float(), s.y_train[batch.to(s.device)])
        # DDP averages over ranks; weighting by the share makes that the global batch's mean.
        share = len(batch) * s.job.world_size / len(whole) if s.job.enabled else 1
        s.optimizer.zero_grad(set_to_none=True)
        s.scaler.scale(loss * share if s.job.enabled else loss).backward()
        s.scaler.step(s.optimizer)
        s.scaler.update()
        s.scheduler.step()
        total += torch.tensor([float(loss.detach()) * len(batch), len(batch)], dtype=torch.float64)
        bar.update(1)
    if s.job.enabled:
        torch.distributed.all_reduce(total)
    return float(total[0] / total[1])


def _validate(s: Setup) -> tuple[float, dict[str, float]]:
    """Validation loss and metrics of the model as it is now (rank 0's, on every rank)."""
    s.model.eval()
    out = torch.from_numpy(outputs(s.forward, s.x_val, s.batch_size, s.device))
    loss = float(s.loss_fn(out.to(s.device), s.y_val))
    found = loss, split_metrics(s.task, s.y_val.cpu().numpy(), out[:, 0].numpy())
    return distributed.broadcast_object(found)  # every rank takes the same decisions


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _end_epoch(s: Setup, loop: _Loop, train_loss: float, tic: float) -> dict:
    """Validate, record the epoch's row, keep the best weights, decide on stopping."""
    val_loss, metrics = _validate(s)
    loop.epoch += 1
    row = {"epoch": loop.epoch, "train_loss": train_loss, "val_loss": val_loss}
    row.update({f"val_{k}": v for k, v in metrics.items()})
    row.update(lr=s.optimizer.param_groups[0]["lr"], seconds=time.perf_counter() - tic,
               recipe=s.recipe.name)  # fmt: skip
    loop.history.append(row)
    patience = s.recipe.patience
    if val_loss < loop.best_val:
        loop.best_val, loop.bad_epochs = val_loss, 0
        if s.recipe.keep == "best_val":
            loop.best_epoch, loop.best_state = loop.epoch, _cpu_state(s.model)
    else:
        loop.bad_epochs += 1
        loop.stopped = patience is not None and loop.bad_epochs >= patience
    if s.recipe.keep == "last":
        loop.best_epoch = loop.epoch  # the weights as they are now are the ones kept
    return row


def _finish(s: Setup, loop: _Loop, cohort: Cohort, features, started: float) -> FitResult:
    """Restore the kept weights, fold the feature scaling, score val and test."""
    if loop.best_state is not None:
        s.model.load_state_dict(loop.best_state)
    if s.scaling is not None:
        fold_standardisation(s.model.project, *s.scaling)
    s.model.task = s.task
    metrics = {}
    stream = True if s.streamed else "auto"  # a streamed cohort is scored streamed too
    for split in ("val", "test"):
        if len(cohort.indices(split)):
            found = evaluate(s.model, cohort, split, s.task, s.batch_size, s.device, features,
                             stream)  # fmt: skip
            metrics.update({f"{split}_{k}": v for k, v in found.items()})
    return FitResult(
        history=pd.DataFrame(loop.history),
        best_state=_cpu_state(s.model),
        metrics=metrics,
        seconds=time.perf_counter() - started,
        best_epoch=loop.best_epoch,
        task=s.task,
        device=str(s.device),
        recipe=s.recipe,
        streamed=s.streamed,
        **s.job.as_dict(),
    )


def fit(
    model: nn.Module,
    cohort: Cohort,
    *,
    task: str = "age",
    recipe: str | Recipe | None = None,
    seed: int = 0,
    device: str | None = None,
    freeze_encoder: bool = False,
    features: SliceFeatures | None = None,
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    callback: Callable[[dict], None] | None = None,
    stream: bool | str = "auto",
    slice_chunk: int | None = None,
    **overrides,
) -> FitResult:
    """Train ``model`` on ``cohort``'s train split, early-stopping on its val split.

    Every option after ``cohort`` is keyword-only.

    Args:
        model: a ``SliceSetNet`` or ``Conv3DNet`` (anything with ``target_mean``/``target_std``).
        cohort: volumes with a ``split`` column holding train, val and test rows.
        task: ``"age"`` (regression, years) or ``"ad"`` (AD vs CN, one logit).
        recipe: the training settings: a ``Recipe``, a name in ``RECIPES`` (``"paper"``,
            ``"book"``, ``"book_finetune"``), or ``None``: the book's for frozen features
            (``features`` or ``freeze_encoder``), the paper's for a network trained end to
            end (``choose_recipe``).
        seed: seeds the initial RNG state, batch order and dropout.
        device: ``"cuda"``, ``"cpu"``; ``None`` picks CUDA when available (under
            ``torchrun``, each rank takes GPU ``LOCAL_RANK``).
        freeze_encoder: keep the 2D encoder fixed (``requires_grad=False``); train the rest on
            its features standardised with the training slices' statistics, folded into
            ``model.project`` on return.
        features: the cohort's frozen slice features (``slice_features``); implies
            ``freeze_encoder``, copies their encoder's weights into ``model.encoder`` and
            never runs the encoder.
        progress: show a tqdm bar over the batches of all epochs, with a time estimate,
            after a line naming the recipe.
        checkpoint: a file to save the training state to after each epoch and resume from.
        callback: called with each epoch's history row (a dict) after it is recorded.
        stream: ``True`` reads every batch from the cohort's (memory-mapped) volumes,
            ``False`` copies the train and val volumes to the device first, ``"auto"``
            streams when they exceed half the free device memory. Same results either way.
        slice_chunk: run the encoder on this many slices at a time with activation
            checkpointing and frozen batch-norm statistics (``None``: all slices at once).
        **overrides: Recipe fields that replace the recipe's: ``epochs``, ``batch_size``,
            ``lr``, ``weight_decay``, ``patience`` (``None``: never stop early),
            ``warmup_epochs``, ``schedule``, ``optimizer``, ``keep``.

    Returns:
        A ``FitResult`` (``.recipe`` is what was applied); ``model`` holds the kept weights
        on return and ``model.task == task``.
    """
    from tqdm.auto import tqdm

    check_choice("task", task, TASKS)
    freeze_encoder = freeze_encoder or features is not None
    recipe = resolve_recipe(recipe, freeze_encoder, **overrides)
    if freeze_encoder and not isinstance(getattr(model, "project", None), nn.Linear):
        raise ValueError(
            "'freeze_encoder' needs a slice model whose encoder features go through a linear "
            "projection (a SliceSetNet with an ImageNet encoder); the paper's small CNN and "
            "the 3D CNN train end to end."
        )
    if slice_chunk is not None and not hasattr(model, "encoder_features"):
        raise ValueError("'slice_chunk' needs a model with a 2D encoder (a SliceSetNet).")
    started = time.perf_counter()
    job, device = distributed.set_up(resolve_device(device))
    torch.manual_seed(seed + job.rank)  # dropout differs per rank; DDP syncs the weights
    s = set_up(model, cohort, task, recipe, seed, device, freeze_encoder, features, stream,
               slice_chunk, job)  # fmt: skip
    config = {"task": task, "seed": seed, "recipe": recipe.as_dict(),
              "freeze_encoder": freeze_encoder, "n_train": len(s.x_train),
              "slice_chunk": slice_chunk}  # fmt: skip
    loop = _Loop()
    if checkpoint is not None and Path(checkpoint).exists():
        loop = _resume(checkpoint, config, s)
    show = progress and job.is_main
    if show:
        tqdm.write(f"fit: {recipe.summary()}")
    with tqdm(total=recipe.epochs * s.steps_per_epoch, initial=loop.epoch * s.steps_per_epoch,
              disable=not show, desc=f"training [{recipe.name}]", unit="batch") as bar:  # fmt: skip
        while loop.epoch < recipe.epochs and not loop.stopped:
            tic = time.perf_counter()
            train_loss = _train_epoch(s, bar)
            row = _end_epoch(s, loop, train_loss, tic)
            if checkpoint is not None:
                _save(checkpoint, config, loop, s)
            bar.set_postfix(
                epoch=loop.epoch, train=f"{train_loss:.3f}", val=f"{row['val_loss']:.3f}"
            )
            if callback is not None:
                callback(dict(row))
    return _finish(s, loop, cohort, features, started)


# ---------------------------------------------------------------- checkpoints


def _save(path, config: dict, loop: _Loop, s: Setup) -> None:
    """Write the whole training state atomically (a crash leaves the previous file intact).

    Under ``torchrun`` rank 0 writes and every rank waits until the file is complete.
    """
    if s.job.is_main:
        payload = {
            "config": config,
            "loop": asdict(loop),
            "model": _cpu_state(s.model),
            "optimizer": s.optimizer.state_dict(),
            "scheduler": s.scheduler.state_dict(),
            "scaler": s.scaler.state_dict(),
            "generator": s.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    distributed.barrier()


def _resume(path, config: dict, s: Setup) -> _Loop:
    """Restore the training state saved by ``_save``; returns the loop state."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload["config"] != config:
        raise ValueError(
            f"checkpoint {str(path)!r} was written by a different run ({payload['config']}); "
            f"this run is {config}. Delete the file or pass another 'checkpoint' path."
        )
    s.model.load_state_dict(payload["model"])
    s.optimizer.load_state_dict(payload["optimizer"])
    s.scheduler.load_state_dict(payload["scheduler"])
    s.scaler.load_state_dict(payload["scaler"])
    s.generator.set_state(payload["generator"])
    torch.set_rng_state(payload["torch_rng"])
    return _Loop(**payload["loop"])
