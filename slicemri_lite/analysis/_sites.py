"""A new site: can the features tell scanners apart, and what ComBat does about it.

- ``site_probe``: how well a linear classifier predicts the site from features
  (cross-validated balanced accuracy against chance), OpenBHB's measure of how much
  site a representation carries (Dufumier et al. 2022, NeuroImage 263:119637).
- ``harmonise``: ComBat (Johnson et al. 2007; Fortin et al. 2018) through neuroHarmonize
  (Pomponio et al. 2020): per feature, each site's location and scale are estimated on
  the training rows, with age and sex kept as biological covariates, and removed. It
  can only correct sites it was fitted on.
- ``site_splits``: within-site and leave-one-site-out training rows of equal size.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

__all__ = ["harmonise", "site_probe", "site_splits"]


def site_probe(features, sites, folds: int = 5, seed: int = 0) -> dict:
    """Cross-validated balanced accuracy of a logistic regression predicting the site.

    ``folds`` folds, or as many as the smallest site has rows.

    Args:
        features: ``(n, F)``, e.g. pooled frozen slice features.
        sites: ``(n,)`` site labels.

    Returns:
        ``{"balanced_accuracy", "chance", "n_sites"}``; chance is 1 / number of sites.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    sites = np.asarray(sites)
    n_sites = len(np.unique(sites))
    if n_sites < 2:
        raise ValueError("a site probe needs two or more sites.")
    smallest = int(pd.Series(sites).value_counts().min())
    if smallest < 2:
        raise ValueError(
            f"every site needs 2 or more rows for a cross-validated probe; one has {smallest}."
        )
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    splits = StratifiedKFold(min(folds, smallest), shuffle=True, random_state=seed)
    scores = cross_val_score(
        probe, np.asarray(features), sites, cv=splits, scoring="balanced_accuracy"
    )
    return {"balanced_accuracy": float(scores.mean()), "chance": 1 / n_sites, "n_sites": n_sites}


def _covariates(sites, age, sex) -> pd.DataFrame:
    return pd.DataFrame({"SITE": np.asarray(sites).astype(str), "age": np.asarray(age, float),
                         "male": (np.asarray(sex) == "M").astype(float)})  # fmt: skip


def harmonise(
    train_features, train_table: pd.DataFrame, apply_features, apply_table: pd.DataFrame
) -> np.ndarray:
    """ComBat fitted on the training rows, applied to other rows of the same sites.

    Args:
        train_features, apply_features: ``(n, F)`` and ``(m, F)`` features.
        train_table, apply_table: rows with ``site``, ``age`` and ``sex`` columns.

    Returns:
        ``(m, F)`` harmonised features (features constant over the training rows unchanged).
    """
    from neuroHarmonize import harmonizationApply, harmonizationLearn

    for name, table in (("train_table", train_table), ("apply_table", apply_table)):
        missing = [c for c in ("site", "age", "sex") if c not in table.columns]
        if missing:
            raise ValueError(
                f"{name} has no column(s) {missing}; its columns are {list(table.columns)}."
            )
    unseen = sorted(set(apply_table["site"]) - set(train_table["site"]))
    if unseen:
        raise ValueError(
            f"ComBat cannot harmonise site(s) {unseen}: it was not fitted on them. Fit it on "
            "scans from every site it must correct (ages and sexes known)."
        )
    if set(apply_table["site"]) != set(train_table["site"]):
        raise ValueError(
            "neuroHarmonize applies a model only to rows that include every fitted site; "
            f"the rows to harmonise hold {sorted(set(apply_table['site']))}."
        )
    train = _covariates(train_table["site"], train_table["age"], train_table["sex"])
    apply = _covariates(apply_table["site"], apply_table["age"], apply_table["sex"])
    train_x, apply_x = np.asarray(train_features, float), np.asarray(apply_features, float)
    # a feature constant over the training rows (a unit that never fires) has no site
    # effect to estimate and would divide by zero: it passes through unchanged
    varies = train_x.std(axis=0) > 1e-8 * max(float(np.abs(train_x).max()), 1e-12)
    out = apply_x.copy()
    with warnings.catch_warnings():  # neuroHarmonize's own use of numpy.matrix
        warnings.simplefilter("ignore")
        model, _ = harmonizationLearn(train_x[:, varies], train)
        out[:, varies] = harmonizationApply(apply_x[:, varies], apply, model)
    return out


def site_splits(table: pd.DataFrame, held_out: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Training rows for a model judged on ``held_out``'s test rows, two ways, equal in size.

    ``table`` needs ``site`` and ``split``. ``"loso"``: the training rows of every other
    site. ``"within"``: as many training rows drawn from every site, ``held_out`` included.
    ``"test"``: ``held_out``'s test rows.
    """
    sites = table["site"].to_numpy()
    if held_out not in set(sites):
        raise ValueError(f"no site {held_out!r}; the sites are {sorted(set(sites))}.")
    train = table["split"].to_numpy() == "train"
    loso = np.flatnonzero(train & (sites != held_out))
    pool = np.flatnonzero(train)
    within = np.sort(np.random.default_rng(seed).choice(pool, len(loso), replace=False))
    test = np.flatnonzero((table["split"].to_numpy() == "test") & (sites == held_out))
    return {"loso": loso, "within": within, "test": test}
