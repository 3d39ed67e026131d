"""What one ``fit`` call holds fixed: the model on its device, the train and val data,
the loss, the optimiser and schedule of its recipe (``_Setup``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from slicemri_lite.data._cohort import Cohort
from slicemri_lite.train import _distributed as distributed
from slicemri_lite.train._features import encode_volumes, feature_standardisation
from slicemri_lite.train._predict import check_features, rows_of, volume_bytes
from slicemri_lite.train._recipes import Recipe, make_optimizer
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

__all__ = ["Setup", "set_up", "set_train_mode"]


@dataclass
class Setup:
    """Everything one ``fit`` call holds fixed: model, data on the device, optimiser."""

    model: nn.Module
    forward: Callable  # the model, or its part after the encoder for frozen features
    train_forward: nn.Module | Callable  # what trains: forward, chunked, or wrapped in DDP
    task: str
    recipe: Recipe
    device: torch.device
    x_train: object  # a batch source (slicemri_lite.streaming): volumes, or features
    y_train: torch.Tensor
    x_val: object
    y_val: torch.Tensor
    loss_fn: Callable
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
    def batch_size(self) -> int:
        """The global batch: volumes per step over all processes (the recipe's)."""
        return self.recipe.batch_size

    @property
    def steps_per_epoch(self) -> int:
        return len(self.global_batches(torch.arange(len(self.x_train))))

    def global_batches(self, order: torch.Tensor) -> list[torch.Tensor]:
        """The epoch's global batches; with N processes a last batch under N is dropped."""
        batches = index_batches(order, self.batch_size)
        return [b for b in batches if len(b) >= self.job.world_size]


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
        check_features(model, cohort, features)
        model.encoder.load_state_dict(features.encoder.state_dict())
        train_values, val_values = features.values[train_rows], features.values[val_rows]
    mean, std = feature_standardisation(torch.from_numpy(train_values))
    scaled = []
    for values in (train_values, val_values):  # copies of their rows: scaled in place
        tensor = torch.from_numpy(np.require(values, np.float32, ["C", "W"]))
        scaled.append(ResidentVolumes(tensor.sub_(mean).div_(std).to(device)))
    return *scaled, (mean, std)


def set_train_mode(s: Setup) -> None:
    s.model.train()
    if s.freeze_encoder:
        s.model.encoder.eval()  # frozen means frozen: batch-norm statistics stay as loaded
    elif s.slice_chunk is not None:
        freeze_batch_norm(s.model.encoder)  # a chunk must not normalise with its own stats


def _train_forward(s: Setup) -> nn.Module | Callable:
    """What the training step calls: chunked or not, wrapped in DDP under torchrun."""
    if s.freeze_encoder:
        module = FeatureForward(s.model)
    elif s.slice_chunk is not None:
        module = ChunkedForward(s.model, s.slice_chunk)
    else:
        module = s.model
    if not s.job.enabled:
        return module
    set_train_mode(s)
    if s.device.type == "cpu" and has_training_batch_norm(s.model):
        raise ValueError(
            "training on several CPU processes needs frozen batch-norm statistics "
            "(SyncBatchNorm runs only on CUDA): pass freeze_encoder=True or a 'slice_chunk', "
            "or use an encoder without batch norm ('scratch')."
        )
    ids = [s.device.index] if s.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def _set_up_optimiser(s: Setup, seed: int) -> None:
    params = [p for p in s.model.parameters() if p.requires_grad]
    s.optimizer, s.scheduler = make_optimizer(s.recipe, params, s.steps_per_epoch)
    use_scaler = s.device.type == "cuda" and not torch.cuda.is_bf16_supported()
    s.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    s.generator = torch.Generator().manual_seed(seed)


def set_up(model: nn.Module, cohort: Cohort, task: str, recipe: Recipe, seed: int, device,
           freeze_encoder: bool, features, stream, slice_chunk, job) -> Setup:  # fmt: skip
    """Move the model to the device, open the train/val data, pick the forward function,
    build the recipe's optimiser and schedule."""
    batch_size = recipe.batch_size
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
    train_rows, val_rows = rows_of(cohort, "train"), rows_of(cohort, "val")
    y_train = cohort.targets(task, train_rows)
    loss_fn = _loss_function(task, model, y_train, device)
    streamed = False
    if freeze_encoder:
        x_train, x_val, scaling = _frozen_inputs(
            model, cohort, features, train_rows, val_rows, batch_size, device
        )
        forward = model.forward_features
    else:
        n_bytes = volume_bytes(cohort, len(train_rows) + len(val_rows))
        streamed = choose_stream(stream, n_bytes, device)
        x_train, x_val = (volume_source(cohort.volumes, rows, device, streamed)
                          for rows in (train_rows, val_rows))  # fmt: skip
        forward, scaling = model, None
    s = Setup(
        model=model,
        forward=forward,
        train_forward=None,
        task=task,
        recipe=recipe,
        device=device,
        x_train=x_train,
        y_train=torch.from_numpy(y_train).to(device),
        x_val=x_val,
        y_val=torch.from_numpy(cohort.targets(task, val_rows)).to(device),
        loss_fn=loss_fn,
        freeze_encoder=freeze_encoder,
        scaling=scaling,
        job=job,
        streamed=streamed,
        slice_chunk=slice_chunk,
    )
    s.train_forward = _train_forward(s)
    _set_up_optimiser(s, seed)
    return s
