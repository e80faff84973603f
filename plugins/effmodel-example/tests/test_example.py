"""The example plugin, loaded through its real ``effmodel`` entry point.

Install it first: ``pip install -e plugins/effmodel-example --no-deps``
(the entry-point tests are skipped, saying so, until it is installed)."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from effmodel import plugins
from effmodel.counting import count_network


def _installed() -> bool:
    return any(ep.name == "example" and ep.value == "effmodel_example" for ep in entry_points(group="effmodel"))


needs_install = pytest.mark.skipif(
    not _installed(), reason="effmodel-example is not installed: pip install -e plugins/effmodel-example --no-deps")


@pytest.fixture
def fresh(monkeypatch):
    for var in ("EFFMODEL_LOAD_PLUGINS", "EFFMODEL_BLOCK_PLUGINS", "EFFMODEL_TRACE_HOOKS"):
        monkeypatch.delenv(var, raising=False)
    plugins._reset_for_tests()
    try:
        yield plugins
    finally:
        plugins._reset_for_tests()


def test_tinycnn_counts_by_hand():
    from effmodel_example import TINY_CNN

    c = count_network(TINY_CNN)
    # conv 3*3*1*8 + 8 = 80; dense 13*13*8 = 1352 inputs -> 10: 13,520 + 10
    assert c.params == 80 + 13_530 == 13_610
    # 26*26*8 outputs x 9 taps + 1352*10
    assert c.macs == 48_672 + 13_520 == 62_192
    assert (TINY_CNN.depth, TINY_CNN.conv_layers, TINY_CNN.dense_layers) == (1, 1, 0)


def test_example_cost_model_is_labelled_made_up():
    from effmodel_example import EXAMPLE_10X

    assert EXAMPLE_10X.mac_to_synop == 10.0
    assert "EXAMPLE ONLY" in EXAMPLE_10X.description and "not a published figure" in EXAMPLE_10X.citation


@needs_install
def test_loads_through_entry_point(fresh):
    info = {i.name: i for i in fresh.plugin_infos()}["example"]
    assert (info.distribution, info.version) == ("effmodel-example", "0.1.0")
    assert info.hooks == ("register_architectures", "register_cost_models")
    assert "TinyCNN" in fresh.get_architectures()
    assert fresh.owner_of("register_architectures", "TinyCNN") == "example"
    assert fresh.owner_of("register_cost_models", "example-10x") == "example"
    assert "SmallCNN1" in fresh.get_architectures()  # beside the built-ins


@needs_install
def test_blocked_by_name(fresh, monkeypatch):
    monkeypatch.setenv("EFFMODEL_BLOCK_PLUGINS", "example")
    assert "TinyCNN" not in fresh.get_architectures()
    assert "example-10x" not in fresh.get_cost_models()


def test_in_process_without_installing(fresh, monkeypatch):
    import effmodel_example

    monkeypatch.setenv("EFFMODEL_LOAD_PLUGINS", "")  # nothing from entry points
    name = fresh.register_plugin(effmodel_example, name="example-inproc")
    try:
        assert list(fresh.get_architectures()) == ["TinyCNN"]
        assert list(fresh.get_cost_models()) == ["example-10x"]
    finally:
        fresh.unregister_plugin(name)
