"""Provenance in every result, and a new plugin version recomputes (issue 23, finding 3).

A result row carries the simulator's options (canonical JSON), the input
coding and readout, the contributing plugins' distributions and versions and
the dataset's fingerprint; results.csv shows them.  The skip test
(:func:`effmodel.provenance.already_stored`) accepts a stored row only with
the same plugin versions: after a version bump the item is recomputed and
its new row replaces the old one; ``reuse_across_versions`` opts out; rows
from older code without recorded versions are reused.

Real pipeline, no TensorFlow: :func:`effmodel.testing.tiny_network`, the
numpy reference simulator wrapped by an in-process plugin with a
``__version__``, a tiny in-process dataset, the built-in ``report-14x`` cost
model, a real store.
"""

from __future__ import annotations

import csv
import json

import pytest

from effmodel import hookimpl
from effmodel.provenance import PROVENANCE_COLUMNS, already_stored, same_versions
from effmodel.testing import TinyDataset, reference_simulator, store_item, tiny_network

T, N = 8, 4




class Variant:
    """The numpy simulator under another name, declaring its own option (ignored by the simulation)."""

    name = "variant"
    description = "numpy under another name (test)"

    def __init__(self):
        from effmodel.options import SimulatorOption

        self.options = (SimulatorOption("flavour", str, "plain", ("plain", "spicy"), "no effect"),)

    def open(self, network, config):
        from dataclasses import replace

        return reference_simulator().open(network, replace(config, options={}))


class VersionedPlugin:
    __version__ = "1.0"

    @hookimpl
    def register_simulators(self, register):
        register(Variant())

    @hookimpl
    def register_datasets(self, register):
        register(TinyDataset(N))


@pytest.fixture
def versioned(fresh_plugins):
    pytest.importorskip("effmodel_numpysim")
    plugin = VersionedPlugin()
    fresh_plugins.register_plugin(plugin, name="versioned")
    try:
        yield fresh_plugins, plugin
    finally:
        if fresh_plugins.pm.has_plugin("versioned"):
            fresh_plugins.unregister_plugin("versioned")


def _settings(tmp_path, **kw):
    from effmodel.pipeline import RunSettings

    return RunSettings(simulator="variant", output=tmp_path / "out", num_test=N, duration=T, batch_size=N,
                       record_layers=False, **kw)


def _run(settings, run_id):
    from effmodel.pipeline import item_key
    from effmodel.store import Store

    network = tiny_network()
    with Store(settings.output) as store:
        row = store_item(network.spec, settings, store, run_id, network)
        store.export_csv()
        return row, item_key(network.spec, settings, network.weights)


def test_rows_and_csv_carry_the_provenance(versioned, tmp_path):
    plugins, _ = versioned
    row, _ = _run(_settings(tmp_path, simulator_options={"flavour": "spicy"}, readout="spikes"), "r1")
    with open(tmp_path / "out" / "results.csv") as f:
        (stored,) = list(csv.DictReader(f))
    assert stored["simulator_options"] == '{"flavour":"spicy"}'
    assert stored["input_encoding"] == "analog" and stored["readout"] == "spikes"
    costs_dist, costs_version = plugins.distribution_of("costs")
    from effmodel.provenance import core_version

    assert json.loads(stored["plugin_versions"]) == {"versioned (in-process)": "1.0", costs_dist: costs_version,
                                                     "effmodel": core_version()}  # the core too (issue 22)
    from effmodel.datasets import dataset_fingerprint

    assert stored["dataset_fingerprint"] == dataset_fingerprint(TinyDataset(N), TinyDataset(N).load(None))
    assert {c: row[c] for c in PROVENANCE_COLUMNS} == {c: stored[c] for c in PROVENANCE_COLUMNS}


def test_two_option_variants_are_told_apart(versioned, tmp_path):
    from effmodel.store import Store

    _run(_settings(tmp_path, simulator_options={"flavour": "plain"}), "r1")
    _run(_settings(tmp_path, simulator_options={"flavour": "spicy"}), "r2")
    with Store(tmp_path / "out") as store:
        assert sorted(r["simulator_options"] for r in store.results()) == ['{"flavour":"plain"}', '{"flavour":"spicy"}']


def test_a_version_bump_recomputes_and_replaces(versioned, tmp_path):
    from effmodel.provenance import provenance_columns
    from effmodel.store import Store

    plugins, plugin = versioned
    settings = _settings(tmp_path)
    spec = tiny_network().spec
    row1, key = _run(settings, "r1")
    assert _run(settings, "r1b")[0] is None  # the same versions: the driver skips the stored item
    with Store(settings.output) as store:
        assert already_stored(store, key, "variant", provenance_columns(spec, settings)["plugin_versions"])
    plugins.unregister_plugin("versioned")  # reinstalled at a new version
    plugin.__version__ = "1.1"
    plugins.register_plugin(plugin, name="versioned")
    current = provenance_columns(spec, settings)["plugin_versions"]
    assert json.loads(current)["versioned (in-process)"] == "1.1"
    with Store(settings.output) as store:
        assert not already_stored(store, key, "variant", current)  # a new version: recompute
        assert already_stored(store, key, "variant", current, reuse_across_versions=True)
    row2, _ = _run(settings, "r2")  # no --force: the driver recomputes because the version changed
    assert row2 is not None
    with Store(settings.output) as store:
        (stored,) = store.results()  # replaced, not added
        assert stored["run_id"] == "r2" and json.loads(stored["plugin_versions"])["versioned (in-process)"] == "1.1"
        assert already_stored(store, key, "variant", current)


def test_rows_from_older_code_without_versions_are_reused():
    assert same_versions(None, '{"a":"1"}') and same_versions("", '{"a":"1"}')
    assert same_versions('{"a":"1","b":"2"}', '{"b":"2","a":"1"}')
    assert not same_versions('{"a":"1"}', '{"a":"2"}')
    assert same_versions('{"a":"1"}', '{"a":"2"}', reuse_across_versions=True)
