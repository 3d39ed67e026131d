"""Chapter 9's cohorts: the book's participants scanned twice, and a cohort from several sites."""

from __future__ import annotations

import numpy as np
import pytest

from slicemri_lite import experiments


@pytest.fixture(scope="module")
def book():
    return experiments.open_grid_cohort(experiments.TRUST_GRID, "smoke")


def test_the_retest_cohort_rescans_the_books_first_participants(book):
    retest = experiments.open_retest_cohort("smoke")
    n = experiments.RETEST_SUBJECTS["smoke"]
    table = retest.table
    assert len(table) == 2 * n and table.groupby("participant_id").size().eq(2).all()
    first = table.query("session == 1")
    expected = book.table.iloc[:n]
    assert first["participant_id"].tolist() == expected["participant_id"].tolist()
    assert first["split"].tolist() == expected["split"].tolist()  # the book's splits
    for row, index in zip(first.index[:3], range(3), strict=True):  # the very same scan
        assert np.array_equal(retest.volumes[row], book.volumes[index])
    second = table.query("session == 2").index[0]
    assert not np.array_equal(retest.volumes[second], retest.volumes[first.index[0]])


def test_the_site_cohort_is_split_within_each_site(book):
    sites = experiments.open_site_cohort("smoke")
    n_sites, n_subjects = experiments.SITES["smoke"]
    assert len(sites.table) == n_subjects and sites.table["site"].nunique() == n_sites
    shares = sites.table.groupby("site")["split"].value_counts(normalize=True).unstack()
    assert np.allclose(shares[["train", "val", "test"]], [0.5, 0.1, 0.4], atol=0.05)
    # other people than the book's, though the generator numbers both from sub-0001
    assert not np.array_equal(sites.table["age"].iloc[:5], book.table["age"].iloc[:5])
