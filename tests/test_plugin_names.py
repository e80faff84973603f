"""Who owns a name (issue 23, finding 1).

A third-party plugin registering a built-in's name must not replace it: the
built-in wins whatever the entry points' order, and the warning names the
plugin that was skipped.  ``EFFMODEL_PREFER=plugin:name`` is the explicit way
round.  Two third-party plugins with one name (and no built-in) are a
one-line error naming both.

The throwaway is a real installed-looking distribution (``*.dist-info`` with an
``effmodel`` entry point) on ``sys.path``, named ``aaa`` so that its entry
point sorts before ``reference``: the order that let it win before.  Its
``SmallCNN1`` is a flatten + dense(10) network: 784 * 10 + 10 = 7,850
parameters, where the report's SmallCNN1 has 347,146 (Table 2).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from effmodel import hookimpl
from effmodel.specs import ArchitectureSpec, LayerSpec

FAKE_PARAMS = 28 * 28 * 10 + 10
REPORT_PARAMS = 347_146

FAKE_BODY = """
from effmodel import hookimpl
from effmodel.specs import ArchitectureSpec, LayerSpec

FAKE = ArchitectureSpec(name="SmallCNN1", dataset="mnist", input_shape=(28, 28, 1), layers=(
    LayerSpec(type="flatten", name="f"), LayerSpec(type="dense", name="out", units=10, activation="softmax")))

@hookimpl
def register_architectures(register):
    register(FAKE)
"""


def _distribution(root: Path, body: str, entry: str = "aaa", dist: str = "aaa-throwaway") -> Path:
    """A distribution ``dist`` 0.1 whose ``effmodel`` entry point ``entry`` is the module ``<entry>_plugin``."""
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[effmodel]\n{entry} = {entry}_plugin\n")
    (root / f"{entry}_plugin.py").write_text(textwrap.dedent(body))
    return root


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("effmodel: warning:")]


@pytest.fixture
def throwaway(fresh_plugins, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(_distribution(tmp_path, FAKE_BODY)))
    return fresh_plugins


def test_builtin_wins_over_an_installed_plugin_and_the_warning_names_the_plugin(throwaway, capsys):
    from effmodel.counting import count_network

    archs = throwaway.get_architectures()
    assert "aaa" in {i.name for i in throwaway.plugin_infos()}  # it did load, and sorts first
    assert count_network(archs["SmallCNN1"]).params == REPORT_PARAMS
    assert throwaway.owner_of("register_architectures", "SmallCNN1") == "reference"
    (line,) = _warnings(capsys.readouterr().err)
    assert line.startswith("effmodel: warning: plugin 'aaa':"), line
    assert "'SmallCNN1' skipped" in line and "built-in plugin 'reference'" in line


def test_prefer_picks_the_plugin_explicitly(throwaway, monkeypatch, capsys):
    from effmodel.counting import count_network

    monkeypatch.setenv("EFFMODEL_PREFER", "aaa:SmallCNN1")
    archs = throwaway.get_architectures()
    assert count_network(archs["SmallCNN1"]).params == FAKE_PARAMS
    assert throwaway.owner_of("register_architectures", "SmallCNN1") == "aaa"
    assert count_network(archs["MediumCNN1"]).params == 356_394  # only the named name changes hands
    (line,) = _warnings(capsys.readouterr().err)
    assert line.startswith("effmodel: warning: plugin 'reference':") and "EFFMODEL_PREFER=aaa:SmallCNN1" in line


def test_the_cli_lists_the_report_network(tmp_path, run_effmodel, clean_env):
    site = _distribution(tmp_path, FAKE_BODY)
    r = run_effmodel("architectures", env=clean_env(PYTHONPATH=str(site)))
    assert r.returncode == 0, r.stderr
    (row,) = [line for line in r.stdout.splitlines() if line.split()[:1] == ["SmallCNN1"]]
    assert f"{REPORT_PARAMS:,}" in row.split() and f"{FAKE_PARAMS:,}" not in row.split()
    assert "plugin 'aaa'" in r.stderr


def _third_party(name: str):
    class Plugin:
        @hookimpl
        def register_architectures(self, register):
            register(ArchitectureSpec(name="SharedNet", dataset="mnist", input_shape=(28, 28, 1), layers=(
                LayerSpec(type="flatten", name="f"), LayerSpec(type="dense", name="out", units=10, activation="softmax"))))

    return Plugin()


def test_two_third_party_plugins_with_one_name_are_a_one_line_error(fresh_plugins, monkeypatch):
    from effmodel.errors import PluginError

    fresh_plugins.register_plugin(_third_party("one"), name="one")
    fresh_plugins.register_plugin(_third_party("two"), name="two")
    try:
        with pytest.raises(PluginError) as info:
            fresh_plugins.get_architectures()
        msg = str(info.value)
        assert "\n" not in msg and "'one'" in msg and "'two'" in msg and "'SharedNet'" in msg
        monkeypatch.setenv("EFFMODEL_PREFER", "two:SharedNet")  # the way out the message gives
        fresh_plugins._registries.clear()
        assert "SharedNet" in fresh_plugins.get_architectures()
        assert fresh_plugins.owner_of("register_architectures", "SharedNet") == "two"
    finally:
        fresh_plugins.unregister_plugin("one")
        fresh_plugins.unregister_plugin("two")


def test_the_cli_refuses_two_installed_plugins_with_one_name(tmp_path, run_effmodel, clean_env):
    body = FAKE_BODY.replace('"SmallCNN1"', '"SharedNet"')
    _distribution(tmp_path, body, "aaa", "aaa-one")
    _distribution(tmp_path, body, "bbb", "bbb-two")
    r = run_effmodel("architectures", env=clean_env(PYTHONPATH=str(tmp_path)))
    assert r.returncode != 0
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("effmodel: error:") and "'aaa'" in line and "'bbb'" in line and "'SharedNet'" in line


def test_misspelt_hook_suggests_the_name(fresh_plugins, capsys):
    class Typo:
        @hookimpl
        def register_simulator(self, register):
            pass

    fresh_plugins.register_plugin(Typo(), name="typo")
    (line,) = _warnings(capsys.readouterr().err)
    assert "did you mean 'register_simulators'?" in line
