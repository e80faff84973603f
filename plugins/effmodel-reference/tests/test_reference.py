"""The built-in reference plugin: eight architectures from data/architectures
and the two datasets, registered through the ``reference`` entry point."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from effmodel import plugins


@pytest.fixture
def only_reference(monkeypatch):
    monkeypatch.setenv("EFFMODEL_LOAD_PLUGINS", "reference")
    monkeypatch.delenv("EFFMODEL_BLOCK_PLUGINS", raising=False)
    plugins._reset_for_tests()
    try:
        yield plugins
    finally:
        plugins._reset_for_tests()


def test_entry_point_declared():
    (ep,) = [ep for ep in entry_points(group="effmodel") if ep.name == "reference"]
    assert ep.value == "effmodel_reference"


def test_registers_eight_architectures_in_report_order(only_reference):
    archs = only_reference.get_architectures()
    assert list(archs) == ["SmallCNN1", "MediumCNN1", "LargeCNN1", "DeepCNN1",
                           "SmallCNN2", "MediumCNN2", "LargeCNN2", "DeepCNN2"]
    assert {a.dataset for a in archs.values()} == {"mnist", "cifar10"}
    assert all(a.source.endswith(".toml") for a in archs.values())
    # the report's training lengths live in the specs
    assert {a.epochs for a in archs.values() if a.dataset == "mnist"} == {25}


def test_registers_both_datasets(only_reference):
    ds = only_reference.get_datasets()
    assert set(ds) == {"mnist", "cifar10"}
    assert (ds["mnist"].input_shape, ds["mnist"].validation_fraction) == ((28, 28, 1), 0.15)
    assert (ds["cifar10"].input_shape, ds["cifar10"].validation_fraction) == ((32, 32, 3), 0.17)


def test_dataset_objects_are_frozen(only_reference):
    mnist = only_reference.get_datasets()["mnist"]
    with pytest.raises(Exception):
        mnist.name = "other"


def test_parse_idx_rejects_bad_headers():
    from effmodel.errors import DataError
    from effmodel_reference.datasets import parse_idx

    good = bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9])
    assert parse_idx(good, "x").tolist() == [7, 8, 9]
    with pytest.raises(DataError, match="truncated"):
        parse_idx(good[:-1], "x")
    with pytest.raises(DataError, match="unsigned-byte"):
        parse_idx(bytes([0, 0, 13, 1, 0, 0, 0, 1, 0]), "x")
