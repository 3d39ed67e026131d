"""The scores every chapter reports."""

from __future__ import annotations

import numpy as np

from slicemri_lite.metrics import ad_metrics


def test_ad_metrics_known_values():
    is_ad = np.array([0, 0, 1, 1])
    scores = ad_metrics(is_ad, np.array([0.1, 0.6, 0.4, 0.9]))
    assert scores["auc"] == 0.75  # 3 of the 4 (AD, CN) pairs are ranked correctly
    assert scores["balanced_accuracy"] == 0.5  # one of each class on the right side of 0.5


def test_ad_metrics_auc_is_nan_with_one_class():
    scores = ad_metrics(np.array([0, 0, 0]), np.array([0.2, 0.7, 0.1]))
    assert np.isnan(scores["auc"])
    assert scores["balanced_accuracy"] == 2 / 3
