"""Training and evaluation: ``fit``, ``evaluate``, ``predict``.

``fit`` trains a model on a cohort's ``train`` split and early-stops on ``val``:

- **Targets.** Age is z-scored with the training split's mean and standard deviation; the
  model stores both (``target_mean``, ``target_std``) and returns years. The loss is the
  mean squared error in those standard units. AD is one logit with a class-balanced
  binary cross-entropy (``pos_weight`` = CN / AD in the training split).
- **Optimiser and schedule.** From a training recipe (``slicemri_lite.recipes``): the
  book's (AdamW; the learning rate rises linearly over a warmup, then follows a half
  cosine down to zero at ``epochs``, stepped once per batch) or the paper's (Adam with L2,
  lr 1e-4, constant). ``lr`` and ``weight_decay`` override the recipe's values.
- **Early stopping.** After every epoch the validation loss is measured; training stops
  when it has not improved for ``patience`` epochs and the best epoch's weights are
  restored (``FitResult.best_state``).
- **Devices.** On CUDA: bf16 autocast (fp16 with a gradient scaler where bf16 is not
  supported), channels_last memory layout, the split's volumes kept on the GPU. On CPU:
  float32, deterministic under ``seed``.
- **Frozen encoder.** ``freeze_encoder=True`` keeps the 2D encoder's weights fixed (and in
  eval mode): every train and val slice goes through it once, and only projection,
  position, pooling and head train on the stored features. ``features=`` gives features
  computed beforehand (``slicemri_lite.features.slice_features``, cached per cohort), so
  the encoder does not run at all. Either way the features are standardised per dimension
  with the mean and standard deviation of all training slices (a random-init encoder's
  features vary little around a large mean, which stalls training), and on return that
  standardisation is folded into the projection, so the model still takes raw volumes.
- **Checkpoints.** With ``checkpoint=path`` the full training state is written atomically
  after every epoch; calling ``fit`` again with the same path resumes where it stopped and
  ends exactly where an uninterrupted run would (on CPU).
- **Streaming.** ``stream=True`` reads each batch from the cohort's array (the memory map of
  its cache) instead of copying the split to the device first, for cohorts larger than the
  device's memory (``slicemri_lite.streaming``); ``"auto"`` streams when the train and val
  volumes exceed half the free device memory. The batches, and so the results, are the same.
- **Slice chunks.** ``slice_chunk=n`` runs the encoder on ``n`` slices at a time under
  activation checkpointing, with its batch-norm statistics frozen
  (``slicemri_lite.slice_chunks``): less memory for one more encoder pass.
- **Several processes.** Under ``torchrun``, ``fit`` trains with DistributedDataParallel:
  each rank takes its share of every global batch of ``batch_size`` volumes, and rank 0
  alone writes the checkpoint (``slicemri_lite.distributed``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from slicemri_lite._core.atomic import atomic_path
from slicemri_lite._core.env import autocast, resolve_device
from slicemri_lite._core.validation import check_choice
from slicemri_lite.data._cohort import TASKS, Cohort
from slicemri_lite.train import _distributed as distributed
from slicemri_lite.train._features import SliceFeatures, encode_volumes, feature_standardisation
from slicemri_lite.train._metrics import ad_metrics, age_metrics
from slicemri_lite.train._recipes import Recipe, get_recipe, make_optimizer
from slicemri_lite.train._slice_chunks import (
    ChunkedForward,
    FeatureForward,
    freeze_batch_norm,
    has_training_batch_norm,
)
from slicemri_lite.train._streaming import (
    ResidentVolumes,
    choose_stream,
    index_batches,
    volume_source,
)

__all__ = [
    "FitResult",
    "fit",
    "evaluate",
    "predict",
    "age_metrics",
    "ad_metrics",
    "feature_standardisation",
    "fold_standardisation",
    "TASKS",
]


@dataclass
class FitResult:
    """What ``fit`` returns.

    Attributes:
        history: one row per epoch: ``epoch``, ``train_loss``, ``val_loss``, the validation
            metrics (``val_mae``, ``val_rmse``, ``val_r`` or ``val_auc``,
            ``val_balanced_accuracy``), ``lr`` (at the epoch's end) and ``seconds``.
        best_state: the model's state dict at the best validation epoch (on the CPU); with a
            frozen encoder, after the feature standardisation is folded into the projection.
        metrics: validation and test metrics of that model (``val_mae``, ``test_mae``, ...).
        seconds: wall time of the whole call.
        best_epoch: the epoch whose weights were kept.
        task, device: what was trained, and where.
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
    streamed: bool = False
    world_size: int = 1
    backend: str = "none"


# ---------------------------------------------------------------- inputs


def _rows(cohort: Cohort, split: str) -> np.ndarray:
    rows = cohort.indices(split)
    if len(rows) == 0:
        raise ValueError(f"the cohort has no {split!r} rows; its table needs a 'split' column.")
    return rows


def _volume_bytes(cohort: Cohort, n_rows: int) -> int:
    return n_rows * int(np.prod(cohort.volumes.shape[1:])) * cohort.volumes.dtype.itemsize


def _volumes(cohort: Cohort, rows: np.ndarray, device: torch.device, stream) -> tuple:
    """The rows' volumes as a batch source (``slicemri_lite.streaming``), and whether streamed."""
    streamed = choose_stream(stream, _volume_bytes(cohort, len(rows)), device)
    return volume_source(cohort.volumes, rows, device, streamed), streamed


def _check_features(model: nn.Module, cohort: Cohort, features: SliceFeatures) -> None:
    """Refuse features that don't belong to this cohort and model."""
    if len(features) != len(cohort):
        raise ValueError(
            f"'features' has {len(features)} rows but the cohort has {len(cohort)}; compute "
            "them on this cohort, or take features.subset(rows) as you take cohort.subset(rows)."
        )
    spec = features.spec
    if features.shape[1] != model.n_slices or (spec is not None and not spec.matches(model)):
        raise ValueError(
            f"'features' ({spec}, {features.shape[1]} slices) don't match the model "
            f"(encoder {model.encoder_name!r}, axis {model.axis!r}, {model.n_slices} slices)."
        )


@torch.no_grad()
def _outputs(forward: Callable, inputs, batch_size: int, device) -> np.ndarray:
    """Run ``forward`` over a batch source in order; ``(n, n_outputs)`` float32 on the CPU."""
    chunks = []
    for x in inputs.batches(index_batches(torch.arange(len(inputs)), batch_size)):
        with autocast(device):
            chunks.append(forward(x).float().cpu())
    return torch.cat(chunks).numpy()


@torch.no_grad()
def fold_standardisation(project: nn.Linear, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Fold ``(x - mean) / std`` into ``project`` in place: afterwards ``project(x)`` is the old
    ``project((x - mean) / std)``; ``mean``, ``std`` are ``(E,)``, ``project.weight`` ``(D, E)``.
    """
    project.weight.div_(std.to(project.weight))  # W' = W / std
    project.bias.sub_(project.weight @ mean.to(project.weight))  # b' = b - W' mean


# ---------------------------------------------------------------- evaluation


def predict(
    model: nn.Module,
    cohort: Cohort,
    split: str = "test",
    task: str | None = None,
    batch_size: int = 8,
    device: str | None = None,
    features: SliceFeatures | None = None,
    stream: bool | str = "auto",
) -> np.ndarray:
    """Predictions for one split: ages in years (``task="age"``) or AD probabilities (``"ad"``).

    ``task=None`` uses the task the model was last fitted for (``model.task``). With
    ``features`` (the cohort's frozen slice features, the ones the model was fitted on) the
    encoder does not run: the rest of the model reads the stored features. ``stream`` as
    in ``fit``: read the volumes batch by batch from the cohort instead of all at once.
    """
    task = task or getattr(model, "task", None)
    if task is None:
        raise ValueError("'task' must be one of ['age', 'ad'] for a model that fit has not set.")
    check_choice("task", task, TASKS)
    device = resolve_device(device)
    model.to(device).eval()
    rows = _rows(cohort, split)
    if features is not None:
        _check_features(model, cohort, features)
        inputs = ResidentVolumes(torch.from_numpy(features.values[rows]).to(device))
        out = _outputs(model.forward_features, inputs, batch_size, device)[:, 0]
    else:
        inputs, _ = _volumes(cohort, rows, device, stream)
        out = _outputs(model, inputs, batch_size, device)[:, 0]
    return out if task == "age" else 1 / (1 + np.exp(-out))


def evaluate(
    model: nn.Module,
    cohort: Cohort,
    split: str = "test",
    task: str = "age",
    batch_size: int = 8,
    device: str | None = None,
    features: SliceFeatures | None = None,
    stream: bool | str = "auto",
) -> dict[str, float]:
    """Metrics on one split: age -> ``mae``, ``rmse``, ``r``; ad -> ``auc``, ``balanced_accuracy``."""
    check_choice("task", task, TASKS)
    predicted = predict(model, cohort, split, task, batch_size, device, features, stream)
    target = cohort.targets(task, _rows(cohort, split))
    return age_metrics(target, predicted) if task == "age" else ad_metrics(target, predicted)


def _metrics(task: str, target: np.ndarray, output: np.ndarray) -> dict[str, float]:
    if task == "age":
        return age_metrics(target, output)
    return ad_metrics(target, 1 / (1 + np.exp(-output)))


# ---------------------------------------------------------------- set-up


@dataclass
class _Setup:
    """Everything one ``fit`` call holds fixed: model, data on the device, optimiser."""

    model: nn.Module
    forward: Callable  # the model, or its part after the encoder for frozen features
    train_forward: nn.Module | Callable  # what trains: forward, chunked, or wrapped in DDP
    task: str
    device: torch.device
    x_train: object  # a batch source (slicemri_lite.streaming): volumes, or features
    y_train: torch.Tensor
    x_val: object
    y_val: torch.Tensor
    loss_fn: Callable
    batch_size: int  # the global batch: volumes per step over all processes
    freeze_encoder: bool
    scaling: tuple[torch.Tensor, torch.Tensor] | None  # feature (mean, std) to fold at the end
    job: distributed.Distributed
    streamed: bool = False
    slice_chunk: int | None = None
    optimizer: torch.optim.Optimizer = None
    scheduler: torch.optim.lr_scheduler.LRScheduler = None
    scaler: torch.amp.GradScaler = None
    generator: torch.Generator = None

    @property
    def steps_per_epoch(self) -> int:
        return len(self.global_batches(torch.arange(len(self.x_train))))

    def global_batches(self, order: torch.Tensor) -> list[torch.Tensor]:
        """The epoch's global batches; with N processes a last batch under N is dropped."""
        batches = index_batches(order, self.batch_size)
        return [b for b in batches if len(b) >= self.job.world_size]


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


def _loss_function(task: str, model: nn.Module, y_train: np.ndarray, device) -> Callable:
    if task == "age":
        mean, std = float(y_train.mean()), float(y_train.std()) or 1.0
        model.target_mean.fill_(mean)
        model.target_std.fill_(std)
        return lambda out, y: nn.functional.mse_loss((out[:, 0] - mean) / std, (y - mean) / std)
    model.target_mean.fill_(0.0)
    model.target_std.fill_(1.0)
    n_ad = float(y_train.sum())
    if n_ad in (0, len(y_train)):
        raise ValueError("task 'ad' needs both 'AD' and 'CN' subjects in the train split.")
    bce = nn.BCEWithLogitsLoss(pos_weight=torch.tensor((len(y_train) - n_ad) / n_ad, device=device))
    return lambda out, y: bce(out[:, 0], y)


def _frozen_inputs(model, cohort, features, train_rows, val_rows, batch_size, device):
    """Standardised frozen features of the train and val rows, ``(n, S, E)`` on ``device``.

    Without ``features`` the model's own encoder encodes the train and val rows once.
    """
    if features is None:
        rows = np.concatenate([train_rows, val_rows])
        values = encode_volumes(model, cohort.volumes, rows, batch_size, device)
        train_values, val_values = values[: len(train_rows)], values[len(train_rows) :]
    else:
        _check_features(model, cohort, features)
        model.encoder.load_state_dict(features.encoder.state_dict())
        train_values, val_values = features.values[train_rows], features.values[val_rows]
    mean, std = feature_standardisation(torch.from_numpy(train_values))
    scaled = [ResidentVolumes(torch.from_numpy((v - mean.numpy()) / std.numpy()).to(device))
              for v in (train_values, val_values)]  # fmt: skip
    return *scaled, (mean, std)


def _train_forward(s: _Setup) -> nn.Module | Callable:
    """What the training step calls: chunked or not, wrapped in DDP under torchrun."""
    if s.freeze_encoder:
        module = FeatureForward(s.model)
    elif s.slice_chunk is not None:
        module = ChunkedForward(s.model, s.slice_chunk)
    else:
        module = s.model
    if not s.job.enabled:
        return module
    _set_train_mode(s)
    if s.device.type == "cpu" and has_training_batch_norm(s.model):
        raise ValueError(
            "training on several CPU processes needs frozen batch-norm statistics "
            "(SyncBatchNorm runs only on CUDA): pass freeze_encoder=True or a 'slice_chunk', "
            "or use an encoder without batch norm ('scratch')."
        )
    ids = [s.device.index] if s.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def _set_up(model, cohort, task, batch_size, device, freeze_encoder, features, stream,
            slice_chunk, job) -> _Setup:  # fmt: skip
    """Move the model to the device, open the train/val data, pick the forward function."""
    if job.enabled and batch_size % job.world_size:
        raise ValueError(
            f"'batch_size' ({batch_size}, volumes per step over all processes) must be a "
            f"multiple of the {job.world_size} processes, so that every rank gets an equal share."
        )
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
        if job.enabled:
            nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if freeze_encoder:
        model.encoder.requires_grad_(False)
    train_rows, val_rows = _rows(cohort, "train"), _rows(cohort, "val")
    y_train = cohort.targets(task, train_rows)
    loss_fn = _loss_function(task, model, y_train, device)
    streamed = False
    if freeze_encoder:
        x_train, x_val, scaling = _frozen_inputs(
            model, cohort, features, train_rows, val_rows, batch_size, device
        )
        forward = model.forward_features
    else:
        n_bytes = _volume_bytes(cohort, len(train_rows) + len(val_rows))
        streamed = choose_stream(stream, n_bytes, device)
        x_train, x_val = (volume_source(cohort.volumes, rows, device, streamed)
                          for rows in (train_rows, val_rows))  # fmt: skip
        forward, scaling = model, None
    s = _Setup(
        model=model,
        forward=forward,
        train_forward=None,
        task=task,
        device=device,
        x_train=x_train,
        y_train=torch.from_numpy(y_train).to(device),
        x_val=x_val,
        y_val=torch.from_numpy(cohort.targets(task, val_rows)).to(device),
        loss_fn=loss_fn,
        batch_size=batch_size,
        freeze_encoder=freeze_encoder,
        scaling=scaling,
        job=job,
        streamed=streamed,
        slice_chunk=slice_chunk,
    )
    s.train_forward = _train_forward(s)
    return s


def _set_up_optimiser(s: _Setup, recipe: Recipe, epochs: int, seed: int) -> None:
    params = [p for p in s.model.parameters() if p.requires_grad]
    s.optimizer, s.scheduler = make_optimizer(recipe, params, s.steps_per_epoch, epochs)
    use_scaler = s.device.type == "cuda" and not torch.cuda.is_bf16_supported()
    s.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    s.generator = torch.Generator().manual_seed(seed)


def _recipe(recipe, lr, weight_decay, warmup_epochs) -> Recipe:
    """The named recipe with any value given to ``fit`` in place of its own."""
    recipe = get_recipe(recipe) if isinstance(recipe, str) else recipe
    given = {"lr": lr, "weight_decay": weight_decay, "warmup_epochs": warmup_epochs}
    return replace(recipe, **{k: v for k, v in given.items() if v is not None})


# ---------------------------------------------------------------- the loop


def _set_train_mode(s: _Setup) -> None:
    s.model.train()
    if s.freeze_encoder:
        s.model.encoder.eval()  # frozen means frozen: batch-norm statistics stay as loaded
    elif s.slice_chunk is not None:
        freeze_batch_norm(s.model.encoder)  # a chunk must not normalise with its own stats


def _train_epoch(s: _Setup, bar) -> float:
    """One pass over the training split in a random order; returns the mean loss.

    Every process draws the same order and global batches and trains on its share.
    """
    _set_train_mode(s)
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


def _validate(s: _Setup) -> tuple[float, dict[str, float]]:
    """Validation loss and metrics of the model as it is now (rank 0's, on every rank)."""
    s.model.eval()
    out = torch.from_numpy(_outputs(s.forward, s.x_val, s.batch_size, s.device))
    loss = float(s.loss_fn(out.to(s.device), s.y_val))
    found = loss, _metrics(s.task, s.y_val.cpu().numpy(), out[:, 0].numpy())
    return distributed.broadcast_object(found)  # every rank takes the same decisions


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _end_epoch(s: _Setup, loop: _Loop, train_loss: float, tic: float, patience) -> dict:
    """Validate, record the epoch's row, keep the best weights, decide on stopping."""
    val_loss, metrics = _validate(s)
    loop.epoch += 1
    row = {"epoch": loop.epoch, "train_loss": train_loss, "val_loss": val_loss}
    row.update({f"val_{k}": v for k, v in metrics.items()})
    row.update(lr=s.optimizer.param_groups[0]["lr"], seconds=time.perf_counter() - tic)
    loop.history.append(row)
    if val_loss < loop.best_val:
        loop.best_val, loop.best_epoch, loop.bad_epochs = val_loss, loop.epoch, 0
        loop.best_state = _cpu_state(s.model)
    else:
        loop.bad_epochs += 1
        loop.stopped = patience is not None and loop.bad_epochs >= patience
    return row


def _finish(s: _Setup, loop: _Loop, cohort: Cohort, features, started: float) -> FitResult:
    """Restore the best weights, fold the feature scaling, score val and test."""
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
        streamed=s.streamed,
        **s.job.as_dict(),
    )


def fit(
    model: nn.Module,
    cohort: Cohort,
    task: str = "age",
    epochs: int = 10,
    batch_size: int = 8,
    lr: float | None = None,
    seed: int = 0,
    device: str | None = None,
    freeze_encoder: bool = False,
    features: SliceFeatures | None = None,
    patience: int | None | str = "recipe",
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    weight_decay: float | None = None,
    warmup_epochs: float | None = None,
    callback: Callable[[dict], None] | None = None,
    stream: bool | str = "auto",
    slice_chunk: int | None = None,
    recipe: str | Recipe = "book",
) -> FitResult:
    """Train ``model`` on ``cohort``'s train split, early-stopping on its val split.

    Args:
        model: a ``SliceSetNet`` or ``Conv3DNet`` (anything with ``target_mean``/``target_std``).
        cohort: volumes with a ``split`` column holding train, val and test rows.
        task: ``"age"`` (regression, years) or ``"ad"`` (AD vs CN, one logit).
        epochs: the most epochs to train (the schedule spans all of them).
        batch_size: volumes per step (over all processes under ``torchrun``).
        lr: the (peak) learning rate; ``None``: the recipe's.
        seed: seeds the initial RNG state, batch order and dropout.
        device: ``"cuda"``, ``"cpu"``; ``None`` picks CUDA when available (under
            ``torchrun``, each rank takes GPU ``LOCAL_RANK``).
        freeze_encoder: keep the 2D encoder fixed (``requires_grad=False``); train the rest on
            its features standardised with the training slices' statistics, folded into
            ``model.project`` on return.
        features: the cohort's frozen slice features (``slice_features``); implies
            ``freeze_encoder``, copies their encoder's weights into ``model.encoder`` and
            never runs the encoder.
        patience: epochs without a better val loss before stopping (``None``: never stop
            early); ``"recipe"``: the recipe's (5 for the book's, never for the paper's).
        progress: show a tqdm bar over the batches of all epochs, with a time estimate.
        checkpoint: a file to save the training state to after each epoch and resume from.
        weight_decay: weight decay (the recipe's kind); ``None``: the recipe's.
        warmup_epochs: length of the linear warmup; ``None``: the recipe's.
        callback: called with each epoch's history row (a dict) after it is recorded.
        recipe: the optimiser and schedule, a name in ``slicemri_lite.recipes.RECIPES``
            (``"book"``, ``"book_finetune"``, ``"paper"``) or a ``Recipe``.
        stream: ``True`` reads every batch from the cohort's (memory-mapped) volumes,
            ``False`` copies the train and val volumes to the device first, ``"auto"``
            streams when they exceed half the free device memory. Same results either way.
        slice_chunk: run the encoder on this many slices at a time with activation
            checkpointing and frozen batch-norm statistics (``None``: all slices at once).

    Returns:
        A ``FitResult``; ``model`` holds the best weights on return and ``model.task == task``.
    """
    from tqdm.auto import tqdm

    check_choice("task", task, TASKS)
    freeze_encoder = freeze_encoder or features is not None
    if freeze_encoder and not isinstance(getattr(model, "project", None), nn.Linear):
        raise ValueError(
            "'freeze_encoder' needs a slice model whose encoder features go through a linear "
            "projection (a SliceSetNet with an ImageNet encoder); the paper's small CNN and "
            "the 3D CNN train end to end."
        )
    if slice_chunk is not None and not hasattr(model, "slice_features"):
        raise ValueError("'slice_chunk' needs a model with a 2D encoder (a SliceSetNet).")
    started = time.perf_counter()
    job, device = distributed.set_up(resolve_device(device))
    torch.manual_seed(seed + job.rank)  # dropout differs per rank; DDP syncs the weights
    recipe = _recipe(recipe, lr, weight_decay, warmup_epochs)
    patience = recipe.patience if patience == "recipe" else patience
    s = _set_up(model, cohort, task, batch_size, device, freeze_encoder, features, stream,
                slice_chunk, job)  # fmt: skip
    _set_up_optimiser(s, recipe, epochs, seed)
    config = {"task": task, "epochs": epochs, "batch_size": batch_size, "seed": seed,
              "recipe": recipe.as_dict(), "freeze_encoder": freeze_encoder,
              "n_train": len(s.x_train), "slice_chunk": slice_chunk}  # fmt: skip
    loop = _Loop()
    if checkpoint is not None and Path(checkpoint).exists():
        loop = _resume(checkpoint, config, s)
    total = epochs * s.steps_per_epoch
    with tqdm(total=total, initial=loop.epoch * s.steps_per_epoch,
              disable=not progress or not job.is_main, desc="training", unit="batch") as bar:  # fmt: skip
        while loop.epoch < epochs and not loop.stopped:
            tic = time.perf_counter()
            train_loss = _train_epoch(s, bar)
            row = _end_epoch(s, loop, train_loss, tic, patience)
            if checkpoint is not None:
                _save(checkpoint, config, loop, s)
            bar.set_postfix(
                epoch=loop.epoch, train=f"{train_loss:.3f}", val=f"{row['val_loss']:.3f}"
            )
            if callback is not None:
                callback(dict(row))
    return _finish(s, loop, cohort, features, started)


# ---------------------------------------------------------------- checkpoints


def _save(path, config: dict, loop: _Loop, s: _Setup) -> None:
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


def _resume(path, config: dict, s: _Setup) -> _Loop:
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
