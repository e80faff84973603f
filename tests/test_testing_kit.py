"""effmodel.testing, the plugin author's kit: tiny networks without
TensorFlow, check_simulator catching the mistakes the issue lists,
check_cost_model, and the effmodel_plugin fixture."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from effmodel import CostModel
from effmodel.testing import check_cost_model, check_simulator, tiny_images, tiny_network

pytest_plugins = ["pytester"]

numpysim = pytest.importorskip("effmodel_numpysim.simulator", reason="effmodel-numpysim is not installed")


def test_tiny_network_is_seeded_and_normalised():
    a, b, c = tiny_network(3), tiny_network(3), tiny_network(4)
    assert all(np.array_equal(a.weights[k].kernel, b.weights[k].kernel) for k in a.weights)
    assert not np.array_equal(a.weights["conv1"].kernel, c.weights["conv1"].kernel)
    # normalised = W * lambda_prev / lambda_l (checked independently of effmodel.normalisation's loop)
    lam = a.scale_factors
    assert np.allclose(a.normalised_weights["conv2"].kernel, a.weights["conv2"].kernel * lam["conv1"] / lam["conv2"], rtol=1e-6)
    assert tiny_network(0, max2avg_pool=True).simulated_spec.layers[1].type == "avgpool"
    x, y = tiny_images(a, 5)
    assert x.shape == (5, 10, 10, 1) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1 and y.shape == (5,)


def test_the_kit_imports_no_heavy_framework():
    code = ("import sys\nfrom effmodel.testing import tiny_network, check_simulator\n"
            "from effmodel_numpysim.simulator import NumpySimulator\n"
            "check_simulator(NumpySimulator(), duration=8, images=4, batch_size=3)\n"
            "print(','.join(m for m in ('tensorflow', 'torch', 'snntoolbox', 'norse') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


class Broken(numpysim.NumpySimulator):
    """The reference simulator with one deliberate mistake."""

    name = "broken"

    def __init__(self, mistake):
        self.mistake = mistake

    def open(self, network, config):
        if self.mistake == "uses network.spec":  # --max2avg-pool silently ignored
            network = replace(network, normalisation=replace(network.normalisation, max2avg_pool=False))
        session = super().open(network, config)
        inner = session.run_batch

        def run_batch(x, y):
            r = inner(x, y)
            if self.mistake == "cumulative synops":
                return replace(r, synops_t={k: np.cumsum(v) for k, v in r.synops_t.items()})
            if self.mistake == "ANN fallback readout":  # right from step 1: what the issue saw
                return replace(r, correct_t=np.maximum(r.correct_t, r.correct_t[-1]))
            if self.mistake == "nominal fan-out":  # 9 x filters for every conv1 neuron, borders ignored
                synops = dict(r.synops_t)
                synops["conv1"] = r.spikes_t["conv1"] * 9 * 6 if "pool" not in r.spikes_t else r.synops_t["conv1"]
                synops["conv2"] = r.spikes_t["conv2"] * 12
                synops["pool"] = r.spikes_t["pool"] * 9 * 6
                return replace(r, synops_t=synops)
            return r

        session.run_batch = run_batch
        return session


@pytest.mark.parametrize("mistake, expected", [
    ("cumulative synops", "exact fan-out"),
    ("uses network.spec", "--max2avg-pool"),
    ("ANN fallback readout", "readout"),
    ("nominal fan-out", "synops_t['pool']"),
])
def test_check_simulator_catches_each_mistake(mistake, expected):
    with pytest.raises(AssertionError) as info:
        check_simulator(Broken(mistake), duration=12, images=6, batch_size=4)
    assert expected in str(info.value)


def test_check_simulator_passes_the_reference_against_itself():
    result = check_simulator(numpysim.NumpySimulator(), duration=12, images=6, batch_size=4)
    got, ref = result.cases["max pooling"]
    assert got.num_images == 6 and ref is not None
    assert sum(int(v.sum()) for v in got.spikes_t.values()) > 0


def test_check_simulator_reports_a_contract_break():
    class WrongKeys(numpysim.NumpySimulator):
        def open(self, network, config):
            s = super().open(network, config)
            inner = s.run_batch
            s.run_batch = lambda x, y: replace(inner(x, y), spikes_t={"Conv1": np.zeros(config.duration, np.int64)})
            return s

    with pytest.raises(AssertionError, match="spikes_t"):
        check_simulator(WrongKeys(), duration=6, images=4, batch_size=4)


def test_check_cost_model():
    check_cost_model(CostModel(name="ok", mac=4.6, add=0.9, synop=0.9, citation="Horowitz 2014"))
    with pytest.raises(AssertionError, match="citation"):
        check_cost_model(CostModel(name="nocite", mac=1.0, add=1.0, synop=1.0))
    with pytest.raises(AssertionError, match="synop must be positive"):
        check_cost_model(CostModel(name="free", mac=1.0, add=1.0, synop=0.0, citation="x"))
    with pytest.raises(AssertionError, match="mac must be a finite non-negative"):
        check_cost_model(CostModel(name="neg", mac=-1.0, add=1.0, synop=1.0, citation="x"))


def test_effmodel_plugin_fixture_registers_and_removes(pytester):
    pytester.makepyfile(test_inner="""
        from effmodel import hookimpl, plugins
        from effmodel.costs import CostModel

        class Throwaway:
            @hookimpl
            def register_cost_models(self, register):
                register(CostModel(name="throwaway-cm", mac=2.0, add=1.0, synop=1.0, citation="test"))

        def test_registered(effmodel_plugin):
            effmodel_plugin(Throwaway(), name="throwaway")
            assert "throwaway-cm" in plugins.get_cost_models()

        def test_removed_again():
            assert "throwaway-cm" not in plugins.get_cost_models()
            assert "throwaway" not in [i.name for i in plugins.plugin_infos()]
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2)


def test_effmodel_plugin_fixture_accepts_an_installed_plugin(fresh_plugins):
    """Registering a plugin module that its entry point already loaded is not pluggy's raw
    'already registered' error: the installed registration is used and left in place."""
    import effmodel_numpysim

    from effmodel.testing import _plugin_fixture

    fixture = _plugin_fixture()
    register = next(fixture)
    assert register(effmodel_numpysim) == "numpysim"
    fixture.close()  # the fixture's teardown
    assert fresh_plugins.pm.has_plugin("numpysim") and "numpy" in fresh_plugins.get_simulators()


def test_register_plugin_under_a_taken_name_is_one_line(fresh_plugins):
    from effmodel.errors import UsageError

    with pytest.raises(UsageError, match="a plugin named 'reference' is already registered"):
        fresh_plugins.register_plugin(object(), name="reference")
