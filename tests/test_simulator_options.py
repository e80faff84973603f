"""Declared simulator options (issue 23, finding 6).

A simulator declares what ``--option`` may set (name, type, allowed values,
default, doc: :class:`effmodel.options.SimulatorOption`); an unknown key or a
bad value is refused in one line naming the simulator and the option before
the simulator is opened, and ``check_simulator`` takes ``options=``.
"""

from __future__ import annotations

import pytest

from effmodel import hookimpl
from effmodel.errors import UsageError
from effmodel.options import CORE_OPTIONS, SimulatorOption, canonical_options, check_options
from effmodel.testing import check_simulator, reference_simulator, tiny_images, tiny_network


def _norse():
    return pytest.importorskip("effmodel_norse").NorseSimulator()


@pytest.mark.parametrize("options, fragments", [
    ({"neuron": "lfi"}, ["simulator 'norse'", "option neuron", "must be one of if, iaf, lif", "'lfi'"]),
    ({"nueron": "lif"}, ["simulator 'norse'", "no option 'nueron'", "did you mean 'neuron'?"]),
    ({"chunk_steps": "five"}, ["simulator 'norse'", "option chunk_steps", "expects int", "'five'"]),
    ({"dtype": True}, ["option dtype", "expects str", "True"]),
    ({"keep_workdir": True}, ["no option 'keep_workdir'"]),  # norse does not take it (its own check agrees)
])
def test_bad_options_are_one_line_naming_simulator_and_option(options, fragments):
    with pytest.raises(UsageError) as info:
        check_options(_norse(), options)
    msg = str(info.value)
    assert "\n" not in msg
    for f in fragments:
        assert f in msg, (f, msg)


def test_good_options_pass():
    check_options(_norse(), {"neuron": "lif", "tau_mem_inv": 50, "threads": 2, "mode": "stepwise", "device": "cpu"})
    check_options(_norse(), {"threads": "auto", "tau_mem_inv": 50.5})


def test_norse_declares_exactly_the_options_its_session_accepts():
    sim = _norse()
    from effmodel_norse.simulator import OPTIONS

    assert {o.name for o in sim.options} == set(OPTIONS)


def test_numpy_and_inisim_declare_keep_workdir():
    assert [o.name for o in reference_simulator().options] == ["reset", "neuron", "mf", "keep_workdir"]
    from effmodel_inisim.simulator import InisimSimulator, NORMALISATION_MODES

    declared = {o.name: o for o in InisimSimulator().options}
    assert set(declared) == {"normalisation", "softmax_to_relu", "ttfs_gate", "log_file", "keep_workdir"}
    assert declared["normalisation"].choices == NORMALISATION_MODES


class _Declared:
    """A simulator that declares one option and must never be opened with a bad one."""

    name = "declared"
    description = "declares 'gain' (test)"
    options = (SimulatorOption("gain", float, 1.0, doc="input gain"), *CORE_OPTIONS)

    def __init__(self):
        self.opened = 0

    def open(self, network, config):
        self.opened += 1
        return reference_simulator().open(network, config.__class__(duration=config.duration, batch_size=config.batch_size))


def test_simulate_refuses_before_open():
    from effmodel.simulation import SimulationConfig, simulate

    sim, network = _Declared(), tiny_network()
    x, y = tiny_images(network, 2)
    with pytest.raises(UsageError, match="simulator 'declared' has no option 'gian'.*did you mean 'gain'"):
        simulate(sim, network, [(x, y)], SimulationConfig(duration=3, options={"gian": 2.0}))
    assert sim.opened == 0


def test_check_simulator_takes_options():
    check_simulator(reference_simulator(), duration=6, images=4, batch_size=2, options={"keep_workdir": False})
    with pytest.raises(AssertionError, match="simulator 'numpy' has no option 'tau_mem_inv'"):
        check_simulator(reference_simulator(), duration=6, images=4, batch_size=2, options={"tau_mem_inv": 100.0})
    with pytest.raises(AssertionError, match="simulator 'numpy': option neuron must be one of if, adaptive, got 'lif'"):
        check_simulator(reference_simulator(), duration=6, images=4, batch_size=2, options={"neuron": "lif"})


def test_malformed_declaration_is_skipped_at_registration(fresh_plugins, capsys):
    class Bad(_Declared):
        name = "bad-options"
        options = ("gain",)

    class Plugin:
        @hookimpl
        def register_simulators(self, register):
            register(Bad())

    fresh_plugins.register_plugin(Plugin(), name="badopts")
    try:
        assert "bad-options" not in fresh_plugins.get_simulators()
        err = capsys.readouterr().err
        assert "plugin 'badopts'" in err and "SimulatorOption" in err
    finally:
        fresh_plugins.unregister_plugin("badopts")


def test_canonical_options_do_not_depend_on_order():
    assert canonical_options({"b": 1, "a": "x"}) == canonical_options({"a": "x", "b": 1}) == '{"a":"x","b":1}'


@pytest.mark.parametrize("simulator", ["numpy", "norse"])
def test_option_combinations_are_refused_before_any_training(tmp_path, simulator):
    """``check_config``: the numpy and Norse simulators refuse ``neuron=adaptive`` under ``--coding ttfs`` in
    one line, before a network is trained (the model cache stays empty) and before anything is written."""
    import subprocess
    import sys

    cache, out = tmp_path / "cache", tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "effmodel", "run", "--simulator", simulator, "--coding", "ttfs",
                        "--option", "neuron=adaptive", "--models", "SmallCNN1", "--epochs", "1",
                        "--max-train-images", "200", "--num-test", "5", "--cache-dir", str(cache), "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "neuron=adaptive" in lines[0] and "ttfs" in lines[0]
    assert not out.exists() and not (cache.exists() and any(cache.iterdir()))


def test_a_crashing_check_config_is_one_line_naming_its_plugin(fresh_plugins):
    from effmodel.errors import PluginError
    from effmodel.options import check_config
    from effmodel.simulation import SimulationConfig

    class Crashy(_Declared):
        name = "crashy-config"

        def check_config(self, config):
            raise KeyError("mode")

    class Plugin:
        @hookimpl
        def register_simulators(self, register):
            register(Crashy())

    fresh_plugins.register_plugin(Plugin(), name="crashyplug")
    try:
        sim = fresh_plugins.get_simulators()["crashy-config"]
        with pytest.raises(PluginError, match=r"plugin 'crashyplug' \(simulator 'crashy-config'\) failed in check_config"):
            check_config(sim, SimulationConfig(duration=3))
        with pytest.raises(UsageError, match="refused"):
            check_config(type("S", (), {"name": "s", "check_config": lambda self, c: (_ for _ in ()).throw(
                UsageError("refused"))})(), SimulationConfig(duration=3))
    finally:
        fresh_plugins.unregister_plugin("crashyplug")
