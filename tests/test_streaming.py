"""Streaming the training volumes from the memory-mapped cohort: same batches, same results."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_train import QUIET, scratch_net, tiny_cohort

from slicemri_lite.data import load_cohort
from slicemri_lite.train import (
    ResidentVolumes,
    StreamedVolumes,
    choose_stream,
    fit,
    index_batches,
    predict,
    volume_source,
)


@pytest.fixture(scope="module")
def mapped_cohort(tmp_path_factory):
    """A tiny cohort saved as float16 and opened as a read-only memory map."""
    cohort = tiny_cohort(16)
    cohort.volumes = cohort.volumes.astype(np.float16)
    path = tmp_path_factory.mktemp("cohort") / "tiny"
    cohort.save(path)
    mapped = load_cohort(path)
    assert isinstance(mapped.volumes, np.memmap)
    return mapped


def test_both_sources_hand_out_the_same_batches_in_the_same_order(mapped_cohort):
    rows = mapped_cohort.indices("train")
    device = torch.device("cpu")
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(3))
    batches = index_batches(order, 3)
    resident = list(ResidentVolumes.from_rows(mapped_cohort.volumes, rows, device).batches(batches))
    streamed = list(StreamedVolumes(mapped_cohort.volumes, rows, device).batches(batches))
    assert [len(b) for b in streamed] == [3, 3, 2]
    for a, b in zip(resident, streamed, strict=True):
        assert a.dtype == b.dtype == torch.float32 and a.shape[1:] == (1, 18, 22, 20)
        assert torch.equal(a, b)
    first = torch.from_numpy(mapped_cohort.volumes[rows[order[0]]].astype(np.float32))
    assert torch.equal(streamed[0][0, 0], first)  # the order is the one asked for


def test_streamed_fit_matches_the_in_memory_fit_exactly(mapped_cohort):
    results, weights = [], []
    for stream in (False, True):
        model = scratch_net(dropout=0.1)
        results.append(fit(model, mapped_cohort, epochs=2, batch_size=3, stream=stream, **QUIET))
        weights.append(model.state_dict())
    resident, streamed = results
    assert (resident.streamed, streamed.streamed) == (False, True)
    cols = ["train_loss", "val_loss", "val_mae"]
    assert np.array_equal(resident.history[cols].to_numpy(), streamed.history[cols].to_numpy())
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key
    assert resident.metrics == streamed.metrics


def test_streamed_predictions_equal_resident_ones(mapped_cohort):
    model = scratch_net()
    model.task = "age"
    a, b = (predict(model, mapped_cohort, "test", stream=s, device="cpu") for s in (False, True))
    np.testing.assert_array_equal(a, b)


def test_auto_streams_only_what_exceeds_the_budget():
    cpu = torch.device("cpu")
    assert choose_stream("auto", 10, cpu, budget=100) is False
    assert choose_stream("auto", 1000, cpu, budget=100) is True
    assert choose_stream(True, 1, cpu) is True and choose_stream(False, 10**15, cpu) is False
    assert choose_stream("auto", 10**18, cpu) is True  # more than any machine's memory
    with pytest.raises(ValueError, match=r"'stream' must be one of \[True, False, 'auto'\]"):
        choose_stream("yes", 1, cpu)


def test_volume_source_picks_the_kind_asked_for(mapped_cohort):
    rows, cpu = mapped_cohort.indices("val"), torch.device("cpu")
    assert isinstance(volume_source(mapped_cohort.volumes, rows, cpu, True), StreamedVolumes)
    resident = volume_source(mapped_cohort.volumes, rows, cpu, False)
    assert isinstance(resident, ResidentVolumes) and resident.data.dtype == torch.float16
