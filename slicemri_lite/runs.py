"""Training one configuration of the experiment grid and predicting its test split.

Every runner returns ``(predictions (n_test,), best_epoch)``: the epoch whose weights
early stopping kept (0 for the baselines, which have no epochs). A best epoch equal to
the last epoch means the network was still improving when its epochs ran out.

``run_config`` trains the baselines and the networks end to end; ``run_frozen`` trains a
slice model on top of a frozen 2D encoder whose slice features ``FeatureCache`` computed
once for the whole cohort, so that every run with that encoder shares one encoder pass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from slicemri_lite.baselines import MeanAge, VoxelRidge
from slicemri_lite.data import Cohort
from slicemri_lite.encoders import OfflineWeightsError
from slicemri_lite.models import Conv3DNet, SliceSetNet
from slicemri_lite.profiles import Profile
from slicemri_lite.train import feature_standardisation, fit, fold_standardisation, predict

if TYPE_CHECKING:
    from slicemri_lite.experiments import ModelConfig

__all__ = ["NETWORKS", "FeatureCache", "FrozenEncoderNet", "run_config", "run_frozen"]

NETWORKS = ("conv3d", "sliceset")


def run_config(
    config: ModelConfig, cohort: Cohort, profile: Profile, seed: int, patience: int = 5
) -> tuple[np.ndarray, int]:
    """Train ``config`` on ``cohort``'s train split; ``(test predictions (n_test,), best_epoch)``.

    ``profile`` gives the networks' epochs, batch size, learning rate and device;
    ``patience`` is early stopping's, in epochs.
    """
    if config.model == "mean":
        return MeanAge().fit(cohort).predict(cohort, "test"), 0
    if config.model == "ridge":
        return VoxelRidge().fit(cohort).predict(cohort, "test"), 0
    if config.model in NETWORKS:
        return _run_network(config, cohort, profile, seed, patience)
    raise ValueError(
        f"'model' must be one of ['mean', 'ridge', 'conv3d', 'sliceset']; {config.model!r} was provided."
    )


def _fit_train_val(model, cohort: Cohort, profile: Profile, seed: int, patience: int) -> int:
    """Train on train, early-stopping on val; returns the best epoch."""
    train_val = cohort.subset(np.flatnonzero(cohort.table["split"] != "test"))
    result = fit(model, train_val, task="age", epochs=profile.epochs, lr=profile.lr, seed=seed,
                 patience=patience, progress=False, batch_size=profile.batch_size,
                 device=profile.device)  # fmt: skip
    return result.best_epoch


def _predict_test(model, cohort: Cohort, profile: Profile) -> np.ndarray:
    """Test-split ages ``(n_test,)``."""
    return predict(model, cohort, "test", "age", profile.batch_size, profile.device)


def _fit_and_predict(model, cohort: Cohort, profile: Profile, seed: int, patience: int):
    """Train on train (early stopping on val); ``(test predictions (n_test,), best_epoch)``."""
    best_epoch = _fit_train_val(model, cohort, profile, seed, patience)
    return _predict_test(model, cohort, profile), best_epoch


def _run_network(
    config: ModelConfig, cohort: Cohort, profile: Profile, seed: int, patience: int
) -> tuple[np.ndarray, int]:
    """Train a Conv3DNet or a SliceSetNet end to end; test-set predictions ``(n_test,)``."""
    torch.manual_seed(seed)
    if config.model == "conv3d":
        model = Conv3DNet(volume_shape=cohort.shape)
    else:
        pretrained = config.init == "imagenet"
        model = SliceSetNet(config.encoder, pretrained=pretrained, volume_shape=cohort.shape)
    return _fit_and_predict(model, cohort, profile, seed, patience)


class FrozenEncoderNet(nn.Module):
    """A SliceSetNet fed its frozen encoder's cached features: ``(B, 1, S, E) -> (B, n_outputs)``.

    ``fit`` and ``predict`` treat the features like volumes (one channel), so the training
    loop is the library's own.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    @property
    def target_mean(self) -> torch.Tensor:
        return self.net.target_mean

    @property
    def target_std(self) -> torch.Tensor:
        return self.net.target_std

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(features[:, 0])  # (B, S, E) -> (B, n_outputs)


def run_frozen(
    config: ModelConfig,
    cohort: Cohort,
    features: tuple[nn.Module, np.ndarray],
    rows: np.ndarray,
    profile: Profile,
    seed: int,
    patience: int = 5,
) -> tuple[np.ndarray, int]:
    """Train position, pooling and head on frozen-encoder features; as ``run_config``.

    ``features`` are ``(encoder, (N, S, E) array)`` for the whole cohort, ``rows`` the
    positions of ``cohort``'s rows in it. Same result as ``fit(freeze_encoder=True)``,
    but the encoder runs once per cohort instead of once per run: the features are
    standardised with the train split's statistics for training, and the standardisation
    is then folded into the projection, which predicts from the raw features.
    """
    encoder, embeddings = features
    torch.manual_seed(seed)
    net = SliceSetNet(config.encoder, pretrained=False, volume_shape=cohort.shape)
    net.encoder = encoder
    raw = embeddings[rows]  # (n, S, E)
    mean, std = feature_standardisation(torch.from_numpy(raw[cohort.indices("train")]))
    scaled = (raw - mean.numpy()) / std.numpy()
    model = FrozenEncoderNet(net)
    on_scaled = Cohort(scaled, cohort.table, cohort.affine, meta=cohort.meta)
    best_epoch = _fit_train_val(model, on_scaled, profile, seed, patience)
    fold_standardisation(net.project, mean, std)
    on_features = Cohort(raw, cohort.table, cohort.affine, meta=cohort.meta)
    return _predict_test(model, on_features, profile), best_epoch


class FeatureCache:
    """Frozen 2D-encoder slice features ``(N, S, E)`` of a whole cohort, one per encoder and init.

    A random-init encoder is drawn once (under ``seed``) and shared by every run that uses it.
    A failure to get weights (offline) is remembered and raised again without retrying.
    """

    def __init__(self, cohort: Cohort, batch_size: int, device: str, seed: int = 0):
        self.cohort, self.batch_size, self.device, self.seed = cohort, batch_size, device, seed
        self._store: dict[tuple[str, str], object] = {}

    def get(self, encoder: str, init: str):
        """``(frozen encoder module, (N, S, E) float32 array)``; computed on first use."""
        key = (encoder, init)
        if key not in self._store:
            try:
                self._store[key] = self._compute(encoder, init)
            except OfflineWeightsError as error:
                self._store[key] = error
        if isinstance(self._store[key], Exception):
            raise self._store[key]
        return self._store[key]

    def keep_only(self, keys: set[tuple[str, str]]) -> None:
        """Forget the features of every ``(encoder, init)`` not in ``keys`` (frees memory)."""
        for key in set(self._store) - set(keys):
            if not isinstance(self._store[key], Exception):
                del self._store[key]

    def _compute(self, encoder: str, init: str):
        torch.manual_seed(self.seed)
        net = SliceSetNet(encoder, pretrained=init == "imagenet", volume_shape=self.cohort.shape)
        net = net.to(self.device).eval().requires_grad_(False)
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(self.cohort), self.batch_size):
                batch = self.cohort.volumes[start : start + self.batch_size]
                x = torch.from_numpy(np.array(batch, dtype=np.float32))[:, None].to(self.device)
                chunks.append(net.slice_features(x).float().cpu().numpy())
        return net.encoder, np.concatenate(chunks)
