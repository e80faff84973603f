"""The numba CPU kernels (``kernels=auto``, the CPU default) give exactly what
the torch path (``kernels=off``, the GPU's operations) gives.

Every path the kernels take is exercised on small seeded networks, against
the torch path run on the same images: the IF kernel, the IF + max pooling
fused kernel with a constant current (analog first layer, tap-major state)
and with a changing one (NCHW keys), windows of 2 and 3, rows and columns no
window covers, padded and overlapping max pooling (the general pooling
kernel), analog and Poisson input, stepwise and layerwise, one and two
threads.  Compared: spikes and SynOps per layer and step, correct images per
step, predictions and per-neuron spike counts, all with ``==``.  The torch
path itself is checked against brute-force fan-outs and the numpy reference
simulator in ``test_simulation.py`` and ``tests/test_simulator_agreement.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from effmodel import plugins
from effmodel.errors import UsageError
from effmodel.simulation import SimulationConfig, simulate
from effmodel.specs import ArchitectureSpec, LayerSpec
from effmodel.testing import tiny_images, tiny_network

T = 25


def _spec(name: str, input_shape: tuple[int, int, int], *layers: LayerSpec) -> ArchitectureSpec:
    return ArchitectureSpec(name=name, dataset="tiny", input_shape=input_shape, epochs=0,
                            layers=(*layers, LayerSpec(type="flatten", name="flatten"),
                                    LayerSpec(type="dense", name="hidden", units=16),
                                    LayerSpec(type="dense", name="output", units=4, activation="softmax")))


SPECS = {
    # SmallCNN-like: the analog first layer fused with its pooling (constant current, tap-major)
    "conv-pool": _spec("conv-pool", (12, 12, 1), LayerSpec(type="conv2d", name="conv1", filters=6),
                       LayerSpec(type="maxpool", name="pool1", pool=2)),
    # Medium/LargeCNN-like: a second conv fused with a pooling that leaves a row and a column
    # uncovered (9x9 -> 4x4), then a 3x3 window (4x4 -> 1x1: 7 of 16 positions uncovered),
    # both with changing currents
    "conv-conv-pool": _spec("conv-conv-pool", (11, 11, 2), LayerSpec(type="conv2d", name="conv1", filters=4, padding="same"),
                            LayerSpec(type="conv2d", name="conv2", filters=5),
                            LayerSpec(type="maxpool", name="pool1", pool=2),
                            LayerSpec(type="conv2d", name="conv3", filters=6, kernel=2, padding="same"),
                            LayerSpec(type="conv2d", name="conv4", filters=6, kernel=1, padding="same"),
                            LayerSpec(type="maxpool", name="pool2", pool=3)),
    # pooling the fused kernel cannot take: overlapping windows (11x11 -> 5x5), padded windows (5x5 -> 3x3)
    "overlap-pad": _spec("overlap-pad", (13, 13, 1), LayerSpec(type="conv2d", name="conv1", filters=4),
                         LayerSpec(type="maxpool", name="pool1", pool=3, stride=2),
                         LayerSpec(type="conv2d", name="conv2", filters=4, padding="same"),
                         LayerSpec(type="maxpool", name="pool2", pool=2, padding="same")),
}


def _run(network, x, y, options, encoding="analog", batch=5):
    cfg = SimulationConfig(duration=T, batch_size=batch, record_spiketrains=True, options=options, input_encoding=encoding, seed=3)
    batches = [(x[i : i + batch], y[i : i + batch]) for i in range(0, len(x), batch)]
    return simulate(plugins.get_simulators()["norse"], network, batches, cfg)


def _assert_same(got, ref):
    assert sorted(got.synops_t) == sorted(ref.synops_t)
    for name in ref.synops_t:
        np.testing.assert_array_equal(got.spikes_t[name], ref.spikes_t[name], err_msg=f"spikes of {name}")
        np.testing.assert_array_equal(got.synops_t[name], ref.synops_t[name], err_msg=f"SynOps of {name}")
    np.testing.assert_array_equal(got.correct_t, ref.correct_t)
    np.testing.assert_array_equal(got.predictions, ref.predictions)
    for name, counts in ref.first_batch_spike_counts.items():
        np.testing.assert_array_equal(got.first_batch_spike_counts[name], counts, err_msg=f"per-neuron counts of {name}")


@pytest.fixture(scope="module")
def networks():
    out = {}
    for name, spec in SPECS.items():
        net = tiny_network(seed=1, spec=spec)
        out[name] = (net, *tiny_images(net, n=10, seed=2))
    return out


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("encoding", ["analog", "poisson"])
@pytest.mark.parametrize("mode", [{"mode": "stepwise"}, {"mode": "layerwise", "chunk_steps": 4}, {"mode": "layerwise"}])
def test_kernels_equal_the_torch_path(networks, name, encoding, mode):
    net, x, y = networks[name]
    ref = _run(net, x, y, {"kernels": "off", "mode": "stepwise", "threads": 1}, encoding)
    got = _run(net, x, y, {"kernels": "on", "threads": 1, **mode}, encoding)
    assert sum(int(s.sum()) for s in ref.spikes_t.values()) > 1000  # the networks do spike: the comparison means something
    assert (got.metadata["extra"]["norse_kernels"], ref.metadata["extra"]["norse_kernels"]) == ("on", "off")
    _assert_same(got, ref)


def test_kernels_split_over_threads_give_the_same_result(networks):
    net, x, y = networks["conv-conv-pool"]
    one = _run(net, x, y, {"kernels": "on", "threads": 1})
    two = _run(net, x, y, {"kernels": "on", "threads": 2})
    _assert_same(two, one)


def test_fused_tap_major_path_for_a_changing_current(networks, monkeypatch):
    """Keys above 2**24 (a very long run) make the NCHW kernel inexact; then the
    tap-major kernel takes changing currents too.  Forced here by refusing keys."""
    from effmodel_norse.network import SpikeMaxPool

    net, x, y = networks["conv-conv-pool"]
    ref = _run(net, x, y, {"kernels": "off", "mode": "stepwise", "threads": 1}, "poisson")
    monkeypatch.setattr(SpikeMaxPool, "keyed", lambda self, steps: False)
    _assert_same(_run(net, x, y, {"kernels": "on", "threads": 1}, "poisson"), ref)


def test_every_kernel_path_is_taken(networks):
    """The comparisons above would pass trivially if the kernels never ran."""
    from effmodel_norse.network import IFSubtract, SpikeMaxPool
    from effmodel_norse.simulator import NorseSession

    fused, general = {}, {}
    for name, (net, _, _) in networks.items():
        session = NorseSession(net, SimulationConfig(duration=T, options={"kernels": "on"}))
        for st in session.stages:
            assert st.neuron.fan is not None, f"{name}: {st.info.name} not on a kernel"
            if isinstance(st.neuron, IFSubtract) and st.neuron.pool is not None:
                fused[(name, st.info.name)] = st.neuron.layout.rest
            if isinstance(st.neuron, SpikeMaxPool) and not st.neuron.fused:
                general[(name, st.info.name)] = (st.neuron.k, st.neuron.s, st.neuron.pad)
        session.close()
    assert fused == {("conv-pool", "conv1"): 0, ("conv-conv-pool", "conv2"): 5 * (81 - 64), ("conv-conv-pool", "conv4"): 6 * 7}
    assert general == {("overlap-pad", "pool1"): (3, 2, (0, 0, 0, 0)), ("overlap-pad", "pool2"): (2, 2, (0, 1, 0, 1))}


def test_both_ways_of_counting_synops_are_taken(networks):
    """The kernels count a layer's SynOps as spikes x one fan-out where all its
    neurons share it, else neuron by neuron; both ways run in the comparisons
    above.  Fan-outs worked out by hand from SPECS."""
    from effmodel_norse.simulator import NorseSession

    net = networks["conv-conv-pool"][0]
    session = NorseSession(net, SimulationConfig(duration=T, options={"kernels": "on"}))
    neurons = {st.info.name: st.neuron for st in session.stages}
    assert neurons["conv1"].fan_uniform == -1  # 'same' 11x11 into a 3x3 'valid' conv: 9 x 5 inside, fewer at the borders
    assert neurons["conv2"].fan_uniform == -1  # 1 inside the 4x4 windows, 0 in the uncovered row and column
    assert neurons["conv2"].fan_main == 1  # the covered neurons alone: one window each
    assert neurons["conv3"].fan_uniform == 6  # into a 1x1 'same' conv with 6 filters
    assert neurons["hidden"].fan_uniform == 4  # into the 4 output units
    session.close()


def _wide_vectors_in_a_fresh_process(env: dict, before: str = "") -> tuple[bool, str | None]:
    import os
    import subprocess
    import sys

    code = before + ("from effmodel_norse import cpu_kernels\nfrom numba.core import config\n"
                     "print(cpu_kernels.WIDE_VECTORS, config.CPU_FEATURES is not None and config.CPU_FEATURES.endswith('-prefer-256-bit'))")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU")}
    out = subprocess.run([sys.executable, "-c", code], env=clean | env, capture_output=True, text=True, check=True).stdout.split()
    return out[0] == "True", out[1]


def _host_has_avx512() -> bool:
    from pathlib import Path

    try:
        return any(line.startswith("flags") and " avx512f" in line for line in Path("/proc/cpuinfo").read_text().splitlines())
    except OSError:
        pytest.skip("no /proc/cpuinfo to read the CPU's features from")


def test_wide_vectors_where_the_cpu_has_avx512():
    """512-bit vectors (``cpu_kernels.prefer_wide_vectors``) exactly where the
    CPU has AVX-512, read here from /proc/cpuinfo, not from LLVM; and this
    test process compared the kernels with them (the equality tests above
    ran in it)."""
    from effmodel_norse import cpu_kernels

    wide = _host_has_avx512()
    assert _wide_vectors_in_a_fresh_process({}) == (wide, str(wide))
    assert cpu_kernels.WIDE_VECTORS == wide


def test_users_numba_settings_and_earlier_numba_code_keep_numba_defaults():
    assert _wide_vectors_in_a_fresh_process({"NUMBA_CPU_NAME": "generic"}) == (False, "False")
    assert _wide_vectors_in_a_fresh_process({"NUMBA_ENABLE_AVX": "0"}) == (False, "False")
    compiled_first = "import numba\nnumba.njit(lambda x: x + 1)(1)\n"  # numba's code generator exists before ours
    assert _wide_vectors_in_a_fresh_process({}, compiled_first) == (False, "False")


def test_kernel_option_is_checked(networks):
    from effmodel_norse.simulator import NorseSession

    net = networks["conv-pool"][0]
    with pytest.raises(UsageError, match="kernels must be one of"):
        NorseSession(net, SimulationConfig(duration=T, options={"kernels": "fast"}))
    with pytest.raises(UsageError, match="kernels=on needs"):
        NorseSession(net, SimulationConfig(duration=T, options={"kernels": "on", "neuron": "lif"}))
    lif = NorseSession(net, SimulationConfig(duration=T, options={"neuron": "lif"}))  # auto: LIF keeps the torch path
    assert not lif.kernels and lif.mode == "stepwise"
    lif.close()
    auto = NorseSession(net, SimulationConfig(duration=T, options={"device": "cpu"}))
    assert auto.kernels and auto.mode == "layerwise"
    auto.close()


def test_chunk_length_counts_only_the_tensors_a_chunk_holds(networks):
    """conv-pool: input 12x12x1 (144), conv1 10x10x6 (600), pool1 5x5x6 (150),
    hidden 16, output 4.  With the kernels and analog input the conv's
    current is held once per batch and its spikes never (fused): the largest
    per-step tensor is the 150 pooled spikes; under Poisson input the conv's
    current (600) is held per step; the torch path holds everything."""
    from effmodel_norse.simulator import NorseSession

    net = networks["conv-pool"][0]
    fast = NorseSession(net, SimulationConfig(duration=T, options={"device": "cpu"}))
    assert (fast.chunk_neurons(analog=True), fast.chunk_neurons(analog=False)) == (150, 600)
    assert fast.chunk_steps(batch=10, analog=True) == min(T, 2**22 // (10 * 150))
    fast.close()
    plain = NorseSession(net, SimulationConfig(duration=T, options={"device": "cpu", "kernels": "off", "mode": "layerwise",
                                                                    "chunk_elements": 6000}))
    assert plain.chunk_neurons(analog=True) == 600
    assert plain.chunk_steps(batch=2, analog=True) == 5  # 6000 // (2 * 600)
    plain.close()


def test_without_numba_auto_falls_back_and_on_says_why(networks, monkeypatch):
    import importlib.util

    from effmodel_norse.simulator import NorseSession

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "numba" else real(name, *a))
    net = networks["conv-pool"][0]
    auto = NorseSession(net, SimulationConfig(duration=T, options={"device": "cpu"}))
    assert not auto.kernels and auto.mode == "stepwise"
    auto.close()
    with pytest.raises(UsageError, match="kernels=on needs numba"):
        NorseSession(net, SimulationConfig(duration=T, options={"kernels": "on"}))


def test_fusion_is_declined_where_covered_neurons_differ_in_fan_out(networks):
    """The tap-major kernel counts a fused layer's SynOps as spikes x one
    fan-out; a layer whose covered neurons differ (never from
    ``fanout_map`` for non-overlapping pooling, but a plugin could hand
    others) keeps IF and pooling apart, each on its own kernel.  The
    reference modules are replaced, never changed."""
    import numpy as np

    from effmodel_norse.cpu_backend import FusedIFMaxPool, FusedMaxPool, KernelIF, KernelMaxPool, use_cpu_kernels
    from effmodel_norse.network import IFSubtract, build_network

    net = networks["conv-pool"][0]
    fans = {"conv1": np.ones(6 * 10 * 10, np.int32), "pool1": np.full(6 * 5 * 5, 16), "hidden": np.full(16, 4),
            "output": np.zeros(4, np.int64)}
    fans["conv1"][7] = 1
    snn = build_network(net)
    conv, pool = snn.stages[0].neuron, snn.stages[1].neuron
    use_cpu_kernels(snn, fans)
    assert type(snn.stages[0].neuron) is FusedIFMaxPool and snn.stages[0].neuron.fan_main == 1
    assert type(snn.stages[1].neuron) is FusedMaxPool and snn.stages[0].neuron.pool is snn.stages[1].neuron
    assert type(conv) is IFSubtract and not hasattr(conv, "fan") and not hasattr(pool, "fused")  # untouched
    fans["conv1"][7] = 2
    other = build_network(net)
    use_cpu_kernels(other, fans)
    assert type(other.stages[0].neuron) is KernelIF and other.stages[0].neuron.pool is None
    assert type(other.stages[1].neuron) is KernelMaxPool and not other.stages[1].neuron.fused
