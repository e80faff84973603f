"""The core's own version is part of every result's provenance (issue 22):
``plugin_versions`` carries ``"effmodel": "<version>+counting.<hash>"``, the
hash over the syntax trees of the code whose output a row stores
(``effmodel.provenance.COUNTING_CODE``).  A change of that code under
unchanged plugin versions recomputes a stored item; comments and docstrings
do not.  The item key does not change, and rows stored before the core's
version was recorded (the committed campaign's) are still reused.

Real pipeline, no TensorFlow: :func:`effmodel.testing.tiny_network` through
the numpy reference simulator and the driver into a real store.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

import effmodel
from effmodel import provenance
from effmodel.provenance import CORE, COUNTING_CODE, code_digest, core_version, same_versions
from effmodel.testing import store_item, tiny_network

REPO = Path(__file__).resolve().parent.parent
PACKAGE = Path(effmodel.__file__).resolve().parent
T, N = 8, 4


def test_core_version_is_the_version_and_a_hash_of_the_counting_code():
    assert re.fullmatch(re.escape(effmodel.__version__) + r"\+counting\.[0-9a-f]{12}", core_version())
    assert core_version().endswith(code_digest(PACKAGE / name for name in COUNTING_CODE))
    # every module of the accounting package whose output is stored is hashed (a new one must be listed)
    stored_by_rows = {p.name for p in (PACKAGE / "accounting").glob("*.py")} - {"__init__.py", "reprice.py"}
    assert stored_by_rows == {Path(n).name for n in COUNTING_CODE if n.startswith("accounting/")}


SOURCE = '''"""A counting rule."""

POOL = ("maxpool",)


def updates(neurons, steps):
    """Every unit, every step."""
    return neurons * steps
'''


def test_code_digest_follows_the_code_not_its_comments(tmp_path):
    path = tmp_path / "rule.py"

    def digest(text: str) -> str:
        path.write_text(text)
        return code_digest([path])

    base = digest(SOURCE)
    assert digest(SOURCE.replace('"""Every unit, every step."""', '"""Reworded."""')) == base
    assert digest(SOURCE.replace("    return", "    # a comment\n    return")) == base
    assert digest(SOURCE.replace('"""A counting rule."""\n', "")) == base
    assert digest(SOURCE.replace("neurons * steps", "neurons * (steps - 1)")) != base  # what it does changed
    assert digest(SOURCE.replace('("maxpool",)', '("maxpool", "avgpool")')) != base


def test_rows_from_before_the_core_version_are_judged_by_their_plugins():
    now = json.dumps({"effmodel-costs": "0.1.0", CORE: "0.1.0+counting.aaaaaaaaaaaa"})
    assert same_versions('{"effmodel-costs":"0.1.0"}', now)  # stored without the core's version: reused
    assert not same_versions('{"effmodel-costs":"0.0.9"}', now)  # its plugins still decide
    assert same_versions('{"effmodel":"0.1.0+counting.aaaaaaaaaaaa","effmodel-costs":"0.1.0"}', now)
    assert not same_versions('{"effmodel":"0.1.0+counting.bbbbbbbbbbbb","effmodel-costs":"0.1.0"}', now)


@pytest.fixture
def tiny_plugins(tiny_dataset_plugins):
    return tiny_dataset_plugins(N)


def test_a_counting_change_recomputes_under_unchanged_plugin_versions(tiny_plugins, tmp_path, monkeypatch):
    from effmodel.pipeline import RunSettings, item_key
    from effmodel.store import Store

    settings = RunSettings(simulator="numpy", output=tmp_path / "out", num_test=N, duration=T, batch_size=N,
                           record_layers=False)
    network = tiny_network()
    key = item_key(network.spec, settings, network.weights)
    with Store(settings.output) as store:
        row = store_item(network.spec, settings, store, "r1", network)
        assert json.loads(row["plugin_versions"])[CORE] == core_version()
        assert row["item_key"] == key  # the key is not what tells versions apart
        assert store_item(network.spec, settings, store, "r2", network) is None  # unchanged: skipped

        # the counting code changed (another digest), no plugin version did: recomputed and replaced
        monkeypatch.setattr(provenance, "core_version", lambda: "0.1.0+counting.000000000000")
        again = store_item(network.spec, settings, store, "r3", network)
        assert again is not None and json.loads(again["plugin_versions"])[CORE] == "0.1.0+counting.000000000000"
        (stored,) = store.results()
        assert stored["run_id"] == "r3" and stored["item_key"] == key

        # a row stored by older code, without the core's entry, is reused as it is
        without_core = {k: v for k, v in json.loads(stored["plugin_versions"]).items() if k != CORE}
    with sqlite3.connect(settings.output / "effmodel.sqlite") as db:
        assert db.execute("UPDATE results SET plugin_versions = ?", (json.dumps(without_core),)).rowcount == 1
    with Store(settings.output) as store:
        monkeypatch.setattr(provenance, "core_version", lambda: "0.1.0+counting.111111111111")
        assert store_item(network.spec, settings, store, "r4", network) is None


CAMPAIGN = sorted((REPO / "reports" / "campaign").glob("*/effmodel.sqlite"))


@pytest.mark.skipif(not CAMPAIGN, reason="no committed campaign stores")
@pytest.mark.parametrize("path", CAMPAIGN, ids=lambda p: p.parent.name)
def test_the_committed_campaign_is_still_reused(path):
    """Every committed result would be skipped by a run of this code: its
    plugins' versions against the installed ones, for its own architecture,
    dataset, simulator and cost model (read-only; the store is not opened
    for writing)."""
    from effmodel.pipeline import RunSettings
    from effmodel.specs import spec_from_dict

    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    rows = db.execute("SELECT model, simulator, cost_model, spec_json, plugin_versions FROM results").fetchall()
    assert rows
    for model, simulator, cost_model, spec_json, stored in rows:
        if model.startswith("ensemble:"):  # an ensemble's spec_json names its member (effmodel.ensembles)
            from effmodel.ensembles import lookup_architecture

            from effmodel import plugins

            spec = lookup_architecture(model, plugins.get_architectures())
        else:
            spec = replace(spec_from_dict(json.loads(spec_json)), name=model)
        settings = RunSettings(simulator=simulator, cost_model=cost_model)
        current = provenance.current_versions(spec, settings)
        assert CORE in json.loads(current)
        assert same_versions(stored, current), (path.parent.name, model, stored, current)
