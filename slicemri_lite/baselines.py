"""Brain-age baselines for the experiment grid.

- ``MeanAge``: predicts the training subjects' mean age for everyone. Any model
  worth its compute must beat it.
- ``VoxelRidge``: ridge regression on voxels averaged into coarse blocks (about
  8 mm, ``slicemri_lite.baseline.downsample_volumes``), centred, fitted on the
  train split with the penalty ``alpha`` chosen on the validation split, the same
  roles the splits play for the networks (``slicemri_lite.baseline.linear_baseline``
  instead fits train and val together, with leave-one-out alpha).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from slicemri_lite.baseline import downsample_volumes
from slicemri_lite.data import Cohort
from slicemri_lite.metrics import age_metrics

__all__ = ["MeanAge", "VoxelRidge"]

DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-2, 6, 17))


@dataclass
class MeanAge:
    """Predict the training mean age for every subject."""

    mean_: float = float("nan")

    def fit(self, cohort: Cohort) -> MeanAge:
        """Remember the mean age of the ``train`` split."""
        self.mean_ = float(cohort.table["age"].to_numpy()[cohort.indices("train")].mean())
        return self

    def predict(self, cohort: Cohort, split: str = "test") -> np.ndarray:
        """``(n,)`` predictions for one split."""
        return np.full(len(cohort.indices(split)), self.mean_)


@dataclass
class VoxelRidge:
    """Ridge regression on block-averaged voxels; ``alpha`` picked by validation MAE.

    Each block is centred on its training mean and every block is divided by one shared
    scale (the training features' overall standard deviation), so the penalty treats all
    blocks alike in intensity units. Per-block standardisation would instead blow up
    blocks that barely vary in the training subjects (background at the brain's edge)
    whenever a test subject differs there.

    Args:
        block_mm: size (mm) of the cubic blocks voxels are averaged over.
        alphas: candidate penalties; the one with the lowest validation MAE is kept.
    """

    block_mm: float = 8.0
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    alpha_: float = float("nan")
    val_mae_: dict[float, float] = field(default_factory=dict)

    def _blocks(self, cohort: Cohort, split: str) -> np.ndarray:
        """``(n, F)`` block means of one split, float64 (ridge's solve needs the precision)."""
        voxel_mm = float(np.mean(np.linalg.norm(cohort.affine[:3, :3], axis=0)))
        factor = max(1, round(self.block_mm / voxel_mm))
        blocks = downsample_volumes(cohort.volumes[cohort.indices(split)], factor)
        return blocks.astype(np.float64)

    def _features(self, cohort: Cohort, split: str) -> np.ndarray:
        """Block means centred and scaled with the training statistics."""
        return (self._blocks(cohort, split) - self.center_) / self.scale_

    def fit(self, cohort: Cohort) -> VoxelRidge:
        """Fit on ``train``, choose ``alpha`` on ``val``, keep the train-only fit at that alpha."""
        from sklearn.linear_model import Ridge

        if len(cohort.indices("val")) == 0:
            raise ValueError("VoxelRidge needs a non-empty 'val' split to choose alpha.")
        blocks = self._blocks(cohort, "train")
        self.center_ = blocks.mean(axis=0)
        self.scale_ = float((blocks - self.center_).std()) or 1.0
        ages = cohort.table["age"].to_numpy(dtype=float)
        x_train, y_train = self._features(cohort, "train"), ages[cohort.indices("train")]
        x_val, y_val = self._features(cohort, "val"), ages[cohort.indices("val")]
        best = None
        for alpha in self.alphas:
            model = Ridge(alpha=alpha).fit(x_train, y_train)
            self.val_mae_[alpha] = age_metrics(y_val, model.predict(x_val))["mae"]
            if best is None or self.val_mae_[alpha] < self.val_mae_[best[0]]:
                best = (alpha, model)
        self.alpha_, self.model_ = best
        return self

    def predict(self, cohort: Cohort, split: str = "test") -> np.ndarray:
        """``(n,)`` predictions for one split."""
        return self.model_.predict(self._features(cohort, split))
