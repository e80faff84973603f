"""The neural-coding setting (issue 24, first slice): ``--coding rate|ttfs``.

Rate-coded items keep exactly the item keys they had before codes existed (a
campaign's stored results resume); any other code is a new identity; the
coding is stored with every row; and a simulator asked for a code it does not
declare is refused in one line before anything is trained or written."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest

from effmodel.errors import UsageError
from effmodel.pipeline import RunSettings, item_key
from effmodel.simulation import (CODINGS, SimulationConfig, check_coding, check_input_encoding, declared_codings,
                                 simulate)
from effmodel.specs import ArchitectureSpec, LayerSpec

SPEC = ArchitectureSpec(name="KeyNet", dataset="mnist", input_shape=(28, 28, 1), layers=(
    LayerSpec(type="conv2d", name="conv", filters=4, kernel=3),
    LayerSpec(type="flatten", name="flatten"),
    LayerSpec(type="dense", name="output", units=10, activation="softmax")), epochs=3)


def todays_key(spec, settings: dict) -> str:
    """The item key as effmodel computed it before codes existed, written out by hand:
    sha256 of the sorted JSON of the spec's content hash, the dataset and the settings
    that change numbers (no output/data/cache folders, no record_layers, no batch size
    under analog input; epochs and duration resolved), first 20 hex digits."""
    blob = json.dumps({"spec": spec.content_hash(), "dataset": spec.dataset, "settings": settings},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def todays_settings(**changed) -> dict:
    """Every field of the RunSettings of today's formula, with their defaults, as literals."""
    return {"simulator": "inisim", "num_test": None, "duration": 100, "epochs": 3, "seed": 0,
            "max_train_images": None, "early_stopping": None,
            "normalisation": {"percentile": 99.9, "num_images": 2000, "max2avg_pool": False, "online": False},
            "input_encoding": "analog", "readout": "spikes", "cost_model": "report-14x", "threshold_tolerance": 0.01,
            "cost_point": "settle", "delta": 0.01, "simulator_options": {}} | changed


def test_rate_coded_keys_are_exactly_todays():
    # the default (rate) and an explicit --coding rate: the key of the formula above
    assert item_key(SPEC, RunSettings(simulator="norse")) == todays_key(SPEC, todays_settings(simulator="norse"))
    assert item_key(SPEC, RunSettings(simulator="norse", coding="rate")) == todays_key(SPEC, todays_settings(simulator="norse"))
    # ... pinned as the code before this change computed it (git show dc642db:effmodel/pipeline.py)
    assert item_key(SPEC, RunSettings(simulator="norse")) == "56b40c0b92a32c64ed10"
    poisson = RunSettings(simulator="numpy", seed=2, num_test=50, duration=40, input_encoding="poisson", batch_size=10)
    assert item_key(SPEC, poisson) == todays_key(SPEC, todays_settings(
        simulator="numpy", seed=2, num_test=50, duration=40, input_encoding="poisson", batch_size=10))
    assert item_key(SPEC, poisson) == "e4cbb97d489fd19356fa"


def test_ttfs_is_another_item():
    rate, ttfs = RunSettings(simulator="numpy"), RunSettings(simulator="numpy", coding="ttfs")
    assert item_key(SPEC, ttfs) != item_key(SPEC, rate)
    # the coding is a setting like the others: the same formula with "coding" added
    assert item_key(SPEC, ttfs) == todays_key(SPEC, todays_settings(simulator="numpy", coding="ttfs"))


def test_an_unknown_coding_is_refused():
    with pytest.raises(UsageError, match=r"^--coding must be rate or ttfs, got 'burst'$"):
        RunSettings(coding="burst")
    with pytest.raises(UsageError, match="coding must be one of rate, ttfs, got 'burst'"):
        SimulationConfig(duration=2, coding="burst")


class _Declares:
    def __init__(self, name, **attributes):
        self.name, self.description = name, "test"
        for k, v in attributes.items():
            setattr(self, k, v)


def test_declared_codings_default_to_rate():
    assert CODINGS == ("rate", "ttfs")
    assert declared_codings(_Declares("old")) == ("rate",)
    check_coding(_Declares("old"), "rate")
    with pytest.raises(UsageError, match=r"^simulator 'old' supports --coding rate, not 'ttfs'$"):
        check_coding(_Declares("old"), "ttfs")
    check_coding(_Declares("both", codings=("rate", "ttfs")), "ttfs")
    with pytest.raises(UsageError, match=r"^simulator 'ttfs-only' supports --coding ttfs, not 'rate'$"):
        check_coding(_Declares("ttfs-only", codings=("ttfs",)), "rate")


def test_codings_that_still_list_input_encodings_name_the_simulator():
    # ``codings`` meant input encodings for a day before it was renamed ``input_encodings``
    stale = _Declares("yesterday", codings=("analog", "poisson"))
    with pytest.raises(UsageError, match=r"simulator 'yesterday' declares codings analog, poisson: input encodings "
                                         r"belong in input_encodings"):
        check_coding(stale, "rate")
    check_input_encoding(stale, "poisson")  # undeclared input encodings: all


def test_simulate_refuses_an_undeclared_coding_before_opening():
    from effmodel.testing import tiny_images, tiny_network

    class RateOnly:
        name, description = "rate-only", "test"

        def open(self, network, config):
            raise AssertionError("must not be opened")

    network = tiny_network()
    with pytest.raises(UsageError, match="simulator 'rate-only' supports --coding rate, not 'ttfs'"):
        simulate(RateOnly(), network, [tiny_images(network, 2)], SimulationConfig(duration=2, coding="ttfs"))


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_unsupported_combination_is_one_line_before_training(fresh_plugins, capsys, tmp_path, command):
    """A rate-only simulator (every built-in implements ttfs now, so a plugin's) asked for ttfs on the
    command line: one line, nothing written, nothing trained."""
    from effmodel import hookimpl
    from effmodel.cli import main

    class RateOnly:
        name, description = "rate-only", "declares no codings: rate only (test)"

        def open(self, network, config):
            raise AssertionError("must not be opened")

    class Plugin:
        @hookimpl
        def register_simulators(self, register):
            register(RateOnly())

    fresh_plugins.register_plugin(Plugin(), name="rateonly")
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = [command, "--simulator", "rate-only", "--coding", "ttfs", "--output", str(out), "--cache-dir", str(cache),
            "--epochs", "1", "--max-train-images", "200", "--num-test", "5"]
    args += ["--models", "SmallCNN1"] if command == "run" else ["--datasets", "mnist", "--max-architectures", "2"]
    code = main(args)
    assert code != 0
    assert capsys.readouterr().err.strip().splitlines() == [
        "effmodel: error: simulator 'rate-only' supports --coding rate, not 'ttfs'"]
    assert not out.exists() and not cache.exists()  # nothing written, nothing trained


def test_an_unknown_coding_on_the_command_line(run_effmodel, tmp_path):
    r = run_effmodel("run", "--simulator", "numpy", "--coding", "phase", "--models", "SmallCNN1",
                     "--output", str(tmp_path / "out"))
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == ["effmodel: error: --coding must be rate or ttfs, got 'phase'"]
    assert not (tmp_path / "out").exists()


def test_the_coding_is_stored_with_every_row(tmp_path, effmodel_plugin):
    """One tiny item through the driver into a store, rate and then ttfs (numpy
    simulator, no TensorFlow): the results, timesteps and layers rows say their
    coding, and the two are two items."""
    from effmodel import hookimpl
    from effmodel.store import Store
    from effmodel.testing import TinyDataset, store_item, tiny_network

    class Tiny:
        @hookimpl
        def register_datasets(self, register):
            register(TinyDataset(4))

    effmodel_plugin(Tiny(), name="tiny-data")
    network = tiny_network()
    with Store(tmp_path / "out") as store:
        for coding in ("rate", "ttfs"):
            settings = RunSettings(simulator="numpy", output=tmp_path / "out", num_test=4, duration=6, batch_size=4,
                                   coding=coding)
            row = store_item(network.spec, settings, store, f"run-{coding}", network)
            assert row["coding"] == coding
        assert sorted(r["coding"] for r in store.results()) == ["rate", "ttfs"]
    with sqlite3.connect(tmp_path / "out" / "effmodel.sqlite") as db:
        results = db.execute("SELECT coding, item_key FROM results ORDER BY coding").fetchall()
        assert [c for c, _ in results] == ["rate", "ttfs"] and results[0][1] != results[1][1]
        for table in ("timesteps", "layers"):
            assert {c for (c,) in db.execute(f"SELECT DISTINCT coding FROM {table}")} == {"rate", "ttfs"}
