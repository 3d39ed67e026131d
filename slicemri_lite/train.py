"""Training and evaluation: ``fit``, ``evaluate``, ``predict``.

``fit`` trains a model on a cohort's ``train`` split and early-stops on ``val``:

- **Targets.** Age is z-scored with the training split's mean and standard deviation; the
  model stores both (``target_mean``, ``target_std``) and returns years. The loss is the
  mean squared error in those standard units. AD is one logit with a class-balanced
  binary cross-entropy (``pos_weight`` = CN / AD in the training split).
- **Optimiser and schedule.** AdamW; the learning rate rises linearly from ``lr / steps``
  to ``lr`` over ``warmup_epochs``, then follows a half cosine down to zero at ``epochs``.
  It is stepped once per batch.
- **Early stopping.** After every epoch the validation loss is measured; training stops
  when it has not improved for ``patience`` epochs and the best epoch's weights are
  restored (``FitResult.best_state``).
- **Devices.** On CUDA: bf16 autocast (fp16 with a gradient scaler where bf16 is not
  supported), channels_last memory layout, the split's volumes kept on the GPU. On CPU:
  float32, deterministic under ``seed``.
- **Feature extraction.** ``freeze_encoder=True`` keeps the 2D encoder's weights fixed (and
  in eval mode); with ``feature_cache=True`` (the default) every slice goes through the
  encoder once, and only projection, position, pooling and head train on the stored
  embeddings: the same result as running the frozen encoder at every step, much faster.
  Either way the frozen features are standardised per dimension with the mean and standard
  deviation of all training slices (a random-init encoder's features vary little around a
  large mean, which stalls training), and on return that standardisation is folded into
  the projection's weights and bias, so the model still takes raw volumes.
- **Checkpoints.** With ``checkpoint=path`` the full training state is written atomically
  after every epoch; calling ``fit`` again with the same path resumes where it stopped and
  ends exactly where an uninterrupted run would (on CPU).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import nn

from slicemri_lite.metrics import ad_metrics, age_metrics

if TYPE_CHECKING:
    from slicemri_lite.data import Cohort

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

TASKS = ("age", "ad")
SPLITS = ("train", "val", "test")


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
    """

    history: pd.DataFrame
    best_state: dict[str, torch.Tensor]
    metrics: dict[str, float]
    seconds: float
    best_epoch: int
    task: str
    device: str


# ---------------------------------------------------------------- metrics


def _metrics(task: str, target: np.ndarray, output: np.ndarray) -> dict[str, float]:
    if task == "age":
        return age_metrics(target, output)
    return ad_metrics(target, 1 / (1 + np.exp(-output)))


# ---------------------------------------------------------------- data


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name!r} must be one of {list(allowed)}; {value!r} was provided.")


def _rows(cohort: Cohort, split: str) -> np.ndarray:
    _check("split", split, SPLITS)
    rows = cohort.indices(split)
    if len(rows) == 0:
        raise ValueError(f"the cohort has no {split!r} rows; its table needs a 'split' column.")
    return rows


def _targets(cohort: Cohort, rows: np.ndarray, task: str) -> np.ndarray:
    table = cohort.table.iloc[rows]
    if task == "age":
        return table["age"].to_numpy(np.float32)
    return (table["diagnosis"].to_numpy() == "AD").astype(np.float32)


def _volumes(cohort: Cohort, rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """``(n, 1, X, Y, Z)`` in the cohort's float dtype (float16 stays float16), on ``device``."""
    array = np.asarray(cohort.volumes[rows])
    return torch.from_numpy(np.ascontiguousarray(array))[:, None].to(device)


def _autocast(device: torch.device):
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


@torch.no_grad()
def _outputs(forward: Callable, inputs: torch.Tensor, batch_size: int, device) -> np.ndarray:
    """Run ``forward`` over ``inputs`` in batches; ``(n, n_outputs)`` float32 on the CPU."""
    chunks = []
    for start in range(0, len(inputs), batch_size):
        with _autocast(device):
            chunks.append(forward(inputs[start : start + batch_size].float()).float().cpu())
    return torch.cat(chunks).numpy()


def _features(model: nn.Module, volumes: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    """Frozen-encoder slice features ``(n, S, E)`` float32, computed once, on ``device``."""
    model.encoder.eval()
    with torch.no_grad():
        chunks = []
        for start in range(0, len(volumes), batch_size):
            with _autocast(device):
                chunks.append(model.slice_features(volumes[start : start + batch_size].float()))
        return torch.cat(chunks).float()


def feature_standardisation(
    features: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and standard deviation ``(E,)`` over every slice of ``(n, S, E)``.

    The standard deviation is floored at ``eps`` so that constant dimensions divide safely.
    """
    flat = features.reshape(-1, features.shape[-1]).double()  # (n * S, E)
    mean, std = flat.mean(dim=0), flat.std(dim=0, correction=0).clamp_min(eps)
    return mean.float(), std.float()


@torch.no_grad()
def fold_standardisation(project: nn.Linear, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Fold ``(x - mean) / std`` into ``project`` in place: afterwards ``project(x)`` is the old
    ``project((x - mean) / std)``; ``mean``, ``std`` are ``(E,)``, ``project.weight`` ``(D, E)``.
    """
    project.weight.div_(std.to(project.weight))  # W' = W / std
    project.bias.sub_(project.weight @ mean.to(project.weight))  # b' = b - W' mean


def _frozen_inputs(model: nn.Module, x_train, x_val, batch_size, device, feature_cache: bool):
    """Training inputs for a frozen encoder, standardised with train-split feature statistics.

    Returns ``(x_train, x_val, forward, (mean, std))``: with ``feature_cache`` the inputs are
    standardised features ``(n, S, E)`` and ``forward`` runs the rest of the model on them;
    without, the inputs stay volumes and ``forward`` encodes and standardises at every step.
    """
    train_features = _features(model, x_train, batch_size, device)  # (n, S, E)
    mean, std = feature_standardisation(train_features)
    if not feature_cache:

        def forward(x: torch.Tensor) -> torch.Tensor:
            return model.forward_features((model.slice_features(x) - mean) / std)

        return x_train, x_val, forward, (mean, std)
    val_features = _features(model, x_val, batch_size, device)
    scaled = ((train_features - mean) / std, (val_features - mean) / std)
    return *scaled, model.forward_features, (mean, std)


# ---------------------------------------------------------------- evaluation


def _resolve_device(device) -> torch.device:
    from slicemri_lite.env import default_device

    return torch.device(device or default_device())


def predict(
    model: nn.Module,
    cohort: Cohort,
    split: str = "test",
    task: str | None = None,
    batch_size: int = 8,
    device: str | None = None,
) -> np.ndarray:
    """Predictions for one split: ages in years (``task="age"``) or AD probabilities (``"ad"``).

    ``task=None`` uses the task the model was last fitted for (``model.task``).
    """
    task = task or getattr(model, "task", None)
    if task is None:
        raise ValueError("'task' must be one of ['age', 'ad'] for a model that fit has not set.")
    _check("task", task, TASKS)
    device = _resolve_device(device)
    model.to(device).eval()
    volumes = _volumes(cohort, _rows(cohort, split), device)
    out = _outputs(model, volumes, batch_size, device)[:, 0]
    return out if task == "age" else 1 / (1 + np.exp(-out))


def evaluate(
    model: nn.Module,
    cohort: Cohort,
    split: str = "test",
    task: str = "age",
    batch_size: int = 8,
    device: str | None = None,
) -> dict[str, float]:
    """Metrics on one split: age -> ``mae``, ``rmse``, ``r``; ad -> ``auc``, ``balanced_accuracy``."""
    _check("task", task, TASKS)
    predicted = predict(model, cohort, split, task, batch_size, device)
    target = _targets(cohort, _rows(cohort, split), task)
    return age_metrics(target, predicted) if task == "age" else ad_metrics(target, predicted)


# ---------------------------------------------------------------- training


def _schedule(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Learning-rate factor per step: linear warmup, then a half cosine to zero."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


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


def _set_train_mode(model: nn.Module, freeze_encoder: bool) -> None:
    model.train()
    if freeze_encoder:
        model.encoder.eval()  # frozen means frozen: batch-norm statistics stay ImageNet's


def _run_epoch(
    forward, inputs, y, order, batch_size, optimizer, scheduler, scaler, loss_fn, device
):
    """One pass over ``order``; returns the mean training loss."""
    total = 0.0
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        with _autocast(device):
            out = forward(inputs[batch].float())
        loss = loss_fn(out.float(), y[batch])
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        total += float(loss.detach()) * len(batch)
    return total / len(order)


def _val_loss(forward, inputs, y, batch_size, loss_fn, device) -> tuple[float, np.ndarray]:
    out = torch.from_numpy(_outputs(forward, inputs, batch_size, device))
    return float(loss_fn(out.to(device), y)), out[:, 0].numpy()


def fit(
    model: nn.Module,
    cohort: Cohort,
    task: str = "age",
    epochs: int = 10,
    batch_size: int = 8,
    lr: float = 1e-3,
    seed: int = 0,
    device: str | None = None,
    freeze_encoder: bool = False,
    patience: int | None = 5,
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    weight_decay: float = 1e-2,
    warmup_epochs: float = 1.0,
    feature_cache: bool = True,
    callback: Callable[[dict], None] | None = None,
) -> FitResult:
    """Train ``model`` on ``cohort``'s train split, early-stopping on its val split.

    Args:
        model: a ``SliceSetNet`` or ``Conv3DNet`` (anything with ``target_mean``/``target_std``).
        cohort: volumes with a ``split`` column holding train, val and test rows.
        task: ``"age"`` (regression, years) or ``"ad"`` (AD vs CN, one logit).
        epochs: the most epochs to train (the schedule spans all of them).
        batch_size: volumes per step.
        lr: AdamW peak learning rate.
        seed: seeds the initial RNG state, batch order and dropout.
        device: ``"cuda"``, ``"cpu"``; ``None`` picks CUDA when available.
        freeze_encoder: keep the 2D encoder fixed (its parameters are left with
            ``requires_grad=False``); train the rest on its features standardised with the
            training slices' statistics, folded into ``model.project`` on return.
        patience: epochs without a better val loss before stopping (``None``: never stop early).
        progress: show a tqdm bar over epochs.
        checkpoint: a file to save the training state to after each epoch and resume from.
        weight_decay: AdamW decoupled weight decay.
        warmup_epochs: length of the linear warmup.
        feature_cache: with ``freeze_encoder``, encode every slice once (fast path).
        callback: called with each epoch's history row (a dict) after it is recorded.

    Returns:
        A ``FitResult``; ``model`` holds the best weights on return and ``model.task == task``.
    """
    from tqdm.auto import tqdm

    _check("task", task, TASKS)
    if freeze_encoder and not hasattr(model, "slice_features"):
        raise ValueError("'freeze_encoder' needs a model with a 2D encoder (a SliceSetNet).")
    started = time.perf_counter()
    device = _resolve_device(device)
    torch.manual_seed(seed)
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    if freeze_encoder:
        model.encoder.requires_grad_(False)

    train_rows, val_rows = _rows(cohort, "train"), _rows(cohort, "val")
    y_train_np = _targets(cohort, train_rows, task)
    y_train = torch.from_numpy(y_train_np).to(device)
    y_val = torch.from_numpy(_targets(cohort, val_rows, task)).to(device)
    loss_fn = _loss_function(task, model, y_train_np, device)
    x_train, x_val = _volumes(cohort, train_rows, device), _volumes(cohort, val_rows, device)
    forward, scaling = model, None
    if freeze_encoder:
        x_train, x_val, forward, scaling = _frozen_inputs(
            model, x_train, x_val, batch_size, device, feature_cache
        )

    steps_per_epoch = math.ceil(len(train_rows) / batch_size)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    warmup = max(1, round(warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _schedule(epochs * steps_per_epoch, warmup)
    )
    use_scaler = device.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    generator = torch.Generator().manual_seed(seed)
    config = {"task": task, "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
              "freeze_encoder": freeze_encoder, "n_train": len(train_rows)}  # fmt: skip
    state = {"epoch": 0, "history": [], "best_val": math.inf, "best_epoch": 0,
             "best_state": None, "bad_epochs": 0, "stopped": False}  # fmt: skip
    if checkpoint is not None and Path(checkpoint).exists():
        state = _resume(checkpoint, config, model, optimizer, scheduler, scaler, generator)

    bar = tqdm(total=epochs, initial=state["epoch"], disable=not progress, desc="epochs")
    while state["epoch"] < epochs and not state["stopped"]:
        tic = time.perf_counter()
        _set_train_mode(model, freeze_encoder)
        order = torch.randperm(len(train_rows), generator=generator).to(device)
        train_loss = _run_epoch(forward, x_train, y_train, order, batch_size, optimizer,
                                scheduler, scaler, loss_fn, device)  # fmt: skip
        model.eval()
        val_loss, val_out = _val_loss(forward, x_val, y_val, batch_size, loss_fn, device)
        state["epoch"] += 1
        row = {"epoch": state["epoch"], "train_loss": train_loss, "val_loss": val_loss}
        row.update({f"val_{k}": v for k, v in _metrics(task, y_val.cpu().numpy(), val_out).items()})
        row.update(lr=optimizer.param_groups[0]["lr"], seconds=time.perf_counter() - tic)
        state["history"].append(row)
        _update_best(state, model, val_loss, patience)
        if checkpoint is not None:
            _save(checkpoint, config, state, model, optimizer, scheduler, scaler, generator)
        bar.update(1)
        bar.set_postfix(train_loss=f"{train_loss:.3f}", val_loss=f"{val_loss:.3f}")
        if callback is not None:
            callback(dict(row))
    bar.close()

    if state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    if scaling is not None:
        fold_standardisation(model.project, *scaling)
    model.task = task
    metrics = {}
    for split in ("val", "test"):
        if len(cohort.indices(split)):
            found = evaluate(model, cohort, split, task, batch_size, str(device))
            metrics.update({f"{split}_{k}": v for k, v in found.items()})
    return FitResult(
        history=pd.DataFrame(state["history"]),
        best_state=_cpu_state(model),
        metrics=metrics,
        seconds=time.perf_counter() - started,
        best_epoch=state["best_epoch"],
        task=task,
        device=str(device),
    )


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _update_best(state: dict, model: nn.Module, val_loss: float, patience: int | None) -> None:
    if val_loss < state["best_val"]:
        state.update(best_val=val_loss, best_epoch=state["epoch"], bad_epochs=0)
        state["best_state"] = _cpu_state(model)
    else:
        state["bad_epochs"] += 1
        state["stopped"] = patience is not None and state["bad_epochs"] >= patience


# ---------------------------------------------------------------- checkpoints


def _save(path, config, state, model, optimizer, scheduler, scaler, generator) -> None:
    """Write the whole training state atomically (a crash leaves the previous file intact)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "config": config,
        "state": state,
        "model": _cpu_state(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
    }
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    os.replace(partial, path)


def _resume(path, config, model, optimizer, scheduler, scaler, generator) -> dict:
    """Restore the training state saved by ``_save``; returns the loop state."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload["config"] != config:
        raise ValueError(
            f"checkpoint {str(path)!r} was written by a different run ({payload['config']}); "
            f"this run is {config}. Delete the file or pass another 'checkpoint' path."
        )
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    scaler.load_state_dict(payload["scaler"])
    generator.set_state(payload["generator"])
    torch.set_rng_state(payload["torch_rng"])
    return payload["state"]
