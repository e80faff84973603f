"""The plugin manager: entry points, in-process plugins, failure isolation,
environment variables, hook-name typos, and the rule that every hook has a
test (``test_hook_<name>``) and a section in ``docs/hooks.md``."""

from __future__ import annotations

import ast
import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

from effmodel import hookimpl
from effmodel.costs import CostModel
from effmodel.specs import ArchitectureSpec, LayerSpec

REPO = Path(__file__).resolve().parents[1]

TINY = ArchitectureSpec(
    name="ThrowawayNet", dataset="mnist", input_shape=(28, 28, 1),
    layers=(LayerSpec(type="flatten", name="f"), LayerSpec(type="dense", name="out", units=10, activation="softmax")),
)


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("effmodel: warning:")]


# --- built-ins through entry points --------------------------------------------------


def test_builtins_load_through_entry_points(fresh_plugins):
    infos = {i.name: i for i in fresh_plugins.plugin_infos()}
    assert {"reference", "costs"} <= set(infos)
    assert infos["reference"].distribution == "effmodel-reference"
    assert infos["costs"].distribution == "effmodel-costs"
    assert infos["reference"].hooks == ("register_architectures", "register_datasets")
    assert infos["costs"].hooks == ("register_cost_models",)
    archs = fresh_plugins.get_architectures()
    assert {"SmallCNN1", "MediumCNN1", "LargeCNN1", "DeepCNN1", "SmallCNN2", "MediumCNN2", "LargeCNN2", "DeepCNN2"} <= set(archs)
    assert fresh_plugins.owner_of("register_architectures", "SmallCNN1") == "reference"
    assert fresh_plugins.owner_of("register_cost_models", "report-14x") == "costs"
    assert {"mnist", "cifar10"} <= set(fresh_plugins.get_datasets())


def test_lookup_unknown_name_is_one_line(fresh_plugins):
    from effmodel.errors import UsageError

    with pytest.raises(UsageError) as info:
        fresh_plugins.lookup("architecture", fresh_plugins.get_architectures(), "SmallCNN9")
    msg = str(info.value)
    assert "\n" not in msg and "'SmallCNN9'" in msg and "SmallCNN1" in msg


# --- one test per hook: a throwaway in-process plugin, unregistered in finally ----------


def test_hook_register_architectures(fresh_plugins):
    class Plugin:
        @hookimpl
        def register_architectures(self, register):
            register(TINY)

    name = fresh_plugins.register_plugin(Plugin(), name="throwaway")
    try:
        assert fresh_plugins.get_architectures()["ThrowawayNet"] is TINY
        assert fresh_plugins.owner_of("register_architectures", "ThrowawayNet") == "throwaway"
        assert "SmallCNN1" in fresh_plugins.get_architectures()  # built-ins still there
        info = {i.name: i for i in fresh_plugins.plugin_infos()}["throwaway"]
        assert info.distribution == "(in-process)" and info.hooks == ("register_architectures",)
    finally:
        fresh_plugins.unregister_plugin(name)
    assert "ThrowawayNet" not in fresh_plugins.get_architectures()


def test_hook_register_datasets(fresh_plugins):
    from effmodel.datasets import Arrays

    class Toy:
        name = "toy"
        input_shape = (2, 2, 1)
        num_classes = 2
        validation_fraction = 0.5

        def load(self, data_dir):
            x = np.arange(16, dtype=np.uint8).reshape(4, 2, 2, 1)
            y = np.array([0, 1, 0, 1])
            return Arrays(x, y, x[:2], y[:2])

    class Plugin:
        @hookimpl
        def register_datasets(self, register):
            register(Toy())

    fresh_plugins.register_plugin(Plugin(), name="toy-data")
    try:
        toy = fresh_plugins.get_datasets()["toy"]
        assert toy.load(None).x_train.shape == (4, 2, 2, 1)
        assert "mnist" in fresh_plugins.get_datasets()
    finally:
        fresh_plugins.unregister_plugin("toy-data")
    assert "toy" not in fresh_plugins.get_datasets()


def test_hook_register_simulators(fresh_plugins):
    class Sim:
        name = "null-sim"
        description = "does nothing (test)"

        def open(self, network, config):  # pragma: no cover - never simulated here
            raise NotImplementedError

    class Plugin:
        @hookimpl
        def register_simulators(self, register):
            register(Sim())

    fresh_plugins.register_plugin(Plugin(), name="null")
    try:
        sims = fresh_plugins.get_simulators()
        assert sims["null-sim"].description == "does nothing (test)"
        assert fresh_plugins.owner_of("register_simulators", "null-sim") == "null"
    finally:
        fresh_plugins.unregister_plugin("null")
    assert "null-sim" not in fresh_plugins.get_simulators()


def test_hook_register_cost_models(fresh_plugins):
    model = CostModel(name="throwaway-3x", mac=3.0, add=1.0, synop=1.0)

    class Plugin:
        @hookimpl
        def register_cost_models(self, register):
            register(model)

    fresh_plugins.register_plugin(Plugin(), name="cm")
    try:
        models = fresh_plugins.get_cost_models()
        assert models["throwaway-3x"] is model
        assert "report-14x" in models
    finally:
        fresh_plugins.unregister_plugin("cm")
    assert "throwaway-3x" not in fresh_plugins.get_cost_models()


def test_duplicate_name_is_skipped_with_a_warning(fresh_plugins, capsys):
    impostor = ArchitectureSpec(name="SmallCNN1", dataset="mnist", input_shape=(28, 28, 1), layers=TINY.layers)

    class Plugin:
        @hookimpl
        def register_architectures(self, register):
            register(impostor)

    fresh_plugins.register_plugin(Plugin(), name="impostor")
    try:
        archs = fresh_plugins.get_architectures()
        assert archs["SmallCNN1"] is not impostor  # the built-in (registered first) wins
        assert fresh_plugins.owner_of("register_architectures", "SmallCNN1") == "reference"
        warnings = _warnings(capsys.readouterr().err)
        assert len(warnings) == 1 and "'impostor'" in warnings[0] and "'SmallCNN1'" in warnings[0]
    finally:
        fresh_plugins.unregister_plugin("impostor")


# --- failure isolation --------------------------------------------------------------


def test_plugin_raising_in_a_hook_is_named_in_one_line(fresh_plugins, capsys):
    class Boom:
        @hookimpl
        def register_architectures(self, register):
            raise RuntimeError("kaboom")

        @hookimpl
        def register_cost_models(self, register):
            register(CostModel(name="boom-1x", mac=1.0, add=1.0, synop=1.0))

    fresh_plugins.register_plugin(Boom(), name="boom")
    try:
        archs = fresh_plugins.get_architectures()
        assert "SmallCNN1" in archs and "DeepCNN2" in archs
        err = capsys.readouterr().err
        assert _warnings(err) == ["effmodel: warning: plugin 'boom' failed in register_architectures: RuntimeError: kaboom"]
        assert "Traceback" not in err
        # the same plugin's other hook still works, and so do the other plugins
        assert {"boom-1x", "report-14x"} <= set(fresh_plugins.get_cost_models())
    finally:
        fresh_plugins.unregister_plugin("boom")


def test_object_without_name_is_reported_not_fatal(fresh_plugins, capsys):
    class Nameless:
        @hookimpl
        def register_cost_models(self, register):
            register(object())

    fresh_plugins.register_plugin(Nameless(), name="nameless")
    try:
        assert "report-14x" in fresh_plugins.get_cost_models()
        (line,) = _warnings(capsys.readouterr().err)
        assert "'nameless'" in line and "without a name" in line
    finally:
        fresh_plugins.unregister_plugin("nameless")


def test_misspelt_hook_is_disabled_with_a_warning(fresh_plugins, capsys):
    class Typo:
        @hookimpl
        def register_simulatorz(self, register):  # not a hook: check_pending catches it
            raise AssertionError("must never be called")

        @hookimpl
        def register_architectures(self, register):
            register(TINY)

    fresh_plugins.register_plugin(Typo(), name="typo")
    try:
        (line,) = _warnings(capsys.readouterr().err)
        assert "'typo'" in line and "unknown hook" in line and "register_simulatorz" in line
        assert not fresh_plugins.pm.has_plugin("typo")
        assert "ThrowawayNet" not in fresh_plugins.get_architectures()  # the whole plugin is off
        assert "SmallCNN1" in fresh_plugins.get_architectures()
    finally:
        if fresh_plugins.pm.has_plugin("typo"):
            fresh_plugins.unregister_plugin("typo")


def _broken_distribution(root: Path, body: str) -> Path:
    """A real installed-looking distribution whose ``effmodel`` entry point is ``broken_plugin``."""
    dist = root / "effmodel_broken-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: effmodel-broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[effmodel]\nbroken = broken_plugin\n")
    (root / "broken_plugin.py").write_text(textwrap.dedent(body))
    return root


def test_plugin_that_fails_to_import_does_not_break_the_cli(tmp_path, run_effmodel, clean_env):
    site = _broken_distribution(tmp_path, 'raise ImportError("needs a library that is not installed")\n')
    r = run_effmodel("plugins", "--json", env=clean_env(PYTHONPATH=str(site)))
    assert r.returncode == 0, r.stderr
    names = {p["name"] for p in json.loads(r.stdout)}
    assert {"reference", "costs"} <= names and "broken" not in names
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "'broken'" in lines[0] and "failed to load" in lines[0] and "ImportError" in lines[0]


def test_plugin_with_a_typo_installed_is_disabled_in_the_cli(tmp_path, run_effmodel, clean_env):
    body = """
    from effmodel import hookimpl

    @hookimpl
    def register_simulatorz(register):
        pass
    """
    site = _broken_distribution(tmp_path, body)
    r = run_effmodel("plugins", "--json", env=clean_env(PYTHONPATH=str(site)))
    assert r.returncode == 0, r.stderr
    assert "broken" not in {p["name"] for p in json.loads(r.stdout)}
    (line,) = r.stderr.strip().splitlines()
    assert "'broken'" in line and "register_simulatorz" in line


# --- environment variables ------------------------------------------------------------


def test_load_plugins_empty_loads_none(fresh_plugins, monkeypatch):
    monkeypatch.setenv("EFFMODEL_LOAD_PLUGINS", "")
    assert fresh_plugins.plugin_infos() == []
    assert fresh_plugins.get_architectures() == {}
    assert fresh_plugins.get_cost_models() == {}


def test_load_plugins_selects(fresh_plugins, monkeypatch):
    monkeypatch.setenv("EFFMODEL_LOAD_PLUGINS", " costs ")
    assert [i.name for i in fresh_plugins.plugin_infos()] == ["costs"]
    assert fresh_plugins.get_architectures() == {}
    assert "report-14x" in fresh_plugins.get_cost_models()


def test_block_plugins_blocks_one(fresh_plugins, monkeypatch):
    monkeypatch.setenv("EFFMODEL_BLOCK_PLUGINS", "costs")
    names = {i.name for i in fresh_plugins.plugin_infos()}
    assert "reference" in names and "costs" not in names
    assert not {"report-14x", "horowitz-fp32", "loihi"} & set(fresh_plugins.get_cost_models())
    assert "SmallCNN1" in fresh_plugins.get_architectures()


def test_block_plugins_in_the_cli(run_effmodel, clean_env):
    r = run_effmodel("plugins", "--json", env=clean_env(EFFMODEL_BLOCK_PLUGINS="costs,reference"))
    assert r.returncode == 0, r.stderr
    names = {p["name"] for p in json.loads(r.stdout)}
    assert not names & {"costs", "reference"}


def test_trace_hooks(fresh_plugins, monkeypatch, capsys):
    monkeypatch.setenv("EFFMODEL_TRACE_HOOKS", "1")
    fresh_plugins.get_architectures()
    err = capsys.readouterr().err
    assert "effmodel: trace: register_architectures -> reference" in err.splitlines()
    fresh_plugins.get_architectures()  # cached: no second trace
    assert capsys.readouterr().err == ""


def test_no_trace_by_default(fresh_plugins, capsys):
    fresh_plugins.get_architectures()
    assert "trace" not in capsys.readouterr().err


# --- every hook has a test and is documented ------------------------------------------


def hook_specs() -> dict[str, list[str]]:
    """Hook names defined in effmodel/hookspecs.py with their parameters."""
    tree = ast.parse((REPO / "effmodel" / "hookspecs.py").read_text())
    hooks = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and any(
            (isinstance(d, ast.Name) and d.id == "hookspec") or (isinstance(d, ast.Call) and getattr(d.func, "id", "") == "hookspec")
            for d in node.decorator_list
        ):
            hooks[node.name] = [a.arg for a in node.args.args]
    return hooks


def test_hookspecs_parse_matches_the_plugin_manager():
    from effmodel import plugins

    hooks = hook_specs()
    assert hooks, "no hooks found in effmodel/hookspecs.py"
    assert set(hooks) == set(plugins.HOOK_NAMES)
    specified = {n for n in dir(plugins.pm.hook) if not n.startswith("_") and getattr(plugins.pm.hook, n).spec is not None}
    assert set(hooks) == specified


def test_every_hook_has_a_test():
    files = [*REPO.glob("tests/**/test_*.py"), *REPO.glob("plugins/*/tests/**/test_*.py")]
    test_names = set()
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_hook_"):
                test_names.add(node.name)
    missing = [h for h in hook_specs() if not any(t == f"test_hook_{h}" or t.startswith(f"test_hook_{h}_") for t in test_names)]
    assert not missing, f"hooks without a test_hook_<name> test: {missing}"


def test_every_hook_is_documented():
    doc = (REPO / "docs" / "hooks.md").read_text()
    sections = dict(re.findall(r"^## `?(\w+)`?\s*\n(.*?)(?=^## |\Z)", doc, flags=re.M | re.S))
    for hook, params in hook_specs().items():
        assert hook in sections, f"docs/hooks.md has no '## {hook}' section"
        body = sections[hook]
        for p in params:
            assert f"`{p}`" in body, f"docs/hooks.md: {hook} does not describe its parameter {p!r}"
        assert "@hookimpl" in body and "```python" in body, f"docs/hooks.md: {hook} has no example"
    extra = set(sections) - set(hook_specs()) - {"Conventions", "Conventions for every hook"}
    assert not {s for s in extra if s.startswith("register_")}, f"documented hooks that do not exist: {extra}"
