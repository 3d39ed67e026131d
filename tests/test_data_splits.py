"""split_subjects: by participant, stratified, deterministic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from slicemri_lite.data import split_subjects


def table(n_people: int = 200, scans: int = 3, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.uniform(20, 90, n_people)
    diagnosis = np.where((age > 60) & (rng.uniform(size=n_people) < 0.3), "AD", "CN")
    rows = [
        {"participant_id": f"p{i}", "session": s, "age": age[i], "diagnosis": diagnosis[i]}
        for i in range(n_people)
        for s in range(scans)
    ]
    return pd.DataFrame(rows)


def test_repeat_scans_never_straddle_splits():
    out = split_subjects(table())
    assert out.groupby("participant_id")["split"].nunique().max() == 1
    assert len(out) == 600 and list(out["session"][:3]) == [0, 1, 2]  # rows kept in order


def test_fractions_and_strata():
    out = split_subjects(table(), val=0.15, test=0.15)
    people = out.drop_duplicates("participant_id")
    counts = people["split"].value_counts()
    assert (counts["test"], counts["val"], counts["train"]) == (30, 30, 140)
    ad_share = people.groupby("split")["diagnosis"].apply(lambda d: (d == "AD").mean())
    assert ad_share.max() - ad_share.min() < 0.05
    mean_age = people.groupby("split")["age"].mean()
    assert mean_age.max() - mean_age.min() < 3.0


def test_same_seed_same_split_other_seed_other_split():
    t = table()
    np.testing.assert_array_equal(
        split_subjects(t, seed=3)["split"], split_subjects(t, seed=3)["split"]
    )
    assert (split_subjects(t, seed=3)["split"] != split_subjects(t, seed=4)["split"]).any()


def test_small_cohorts_still_get_every_split():
    out = split_subjects(table(n_people=8, scans=1))
    assert set(out["split"]) == {"train", "val", "test"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"val": 1.2}, "'val' must be a fraction in \\[0, 1\\); 1.2"),
        ({"test": -0.1}, "'test' must be a fraction"),
        ({"val": 0.5, "test": 0.5}, "below 1"),
    ],
)
def test_bad_fractions_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        split_subjects(table(), **kwargs)


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="lacks the columns \\['diagnosis'\\]"):
        split_subjects(table().drop(columns="diagnosis"))


def test_resplit_keeps_volumes_and_participants_and_changes_the_balance():
    from data_fixtures import small_cohort

    cohort = small_cohort()
    big_test = cohort.resplit(val=0.1, test=0.6, seed=3)
    assert big_test.volumes is cohort.volumes
    assert list(big_test.table["participant_id"]) == list(cohort.table["participant_id"])
    counts = big_test.table["split"].value_counts()
    assert counts["test"] >= 0.55 * len(cohort) and counts["val"] >= 1
    assert big_test.meta["splits"] == {"val": 0.1, "test": 0.6, "seed": 3}
