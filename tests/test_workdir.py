"""The core hands every simulator a fresh ``workdir`` that exists and is
empty when ``open`` is called (docs/hooks.md), and removes it afterwards."""

from __future__ import annotations

from dataclasses import replace

import pytest

from effmodel import hookimpl
from effmodel.pipeline import RunSettings, compute_item
from effmodel.testing import tiny_network, tiny_spec

numpysim = pytest.importorskip("effmodel_numpysim.simulator", reason="effmodel-numpysim is not installed")


def test_workdir_exists_and_is_empty_at_open_and_is_removed(effmodel_plugin, data_dir, tmp_path):
    seen = []

    class Probe(numpysim.NumpySimulator):
        name = "workdir-probe"

        def open(self, network, config):
            d = config.workdir
            seen.append((d, d is not None and d.is_dir(), d is not None and d.is_dir() and not any(d.iterdir())))
            (d / "scratch.bin").write_bytes(b"x")  # a simulator may write there
            return super().open(network, config)

    class Plugin:
        @hookimpl
        def register_simulators(self, register):
            register(Probe())

    effmodel_plugin(Plugin(), name="workdir-probe-plugin")
    spec = replace(tiny_spec("max", input_shape=(28, 28, 1), classes=10), name="TinyMnist", dataset="mnist")
    network = tiny_network(spec=spec)
    settings = RunSettings(simulator="workdir-probe", output=tmp_path / "out", data_dir=data_dir, num_test=4,
                           duration=4, batch_size=4, record_layers=False)
    compute_item(spec, settings, "run-1", network=network)
    compute_item(spec, settings, "run-1", network=network)  # same folder again: fresh, not left over
    assert [(exists, empty) for _, exists, empty in seen] == [(True, True), (True, True)]
    workdir = seen[0][0]
    assert tmp_path / "out" in workdir.parents and not workdir.exists()  # removed after the run
