"""NIR export: the graph read back and loaded by Norse spikes like the simulator."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from effmodel.errors import UsageError
from effmodel.simulation import SimulationConfig
from effmodel_norse.nir_export import export_nir, load_norse
from effmodel_norse.simulator import NorseSession

T = 20


@pytest.mark.slow
def test_nir_round_trip_identical_spikes(network_avg, test_batch, tmp_path):
    import nir

    x, y = test_batch
    path = export_nir(network_avg, tmp_path / "net.nir")
    graph = nir.read(str(path))
    assert {"input", "output", "conv2d_1", "conv2d_1_if", "dense_2_if"} <= set(graph.nodes)
    module = load_norse(graph)
    counts: dict[str, torch.Tensor] = {}

    def hook(name):
        def f(mod, inp, out):
            counts[name] = counts.get(name, 0) + out[0]
        return f

    for name, mod in module.named_children():
        if name.endswith("_if"):
            mod.register_forward_hook(hook(name[: -len("_if")]))
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    state = None
    with torch.no_grad():
        for _ in range(T):
            _, state = module(xt, state)

    session = NorseSession(network_avg, SimulationConfig(duration=T, record_spiketrains=True, options={"neuron": "iaf"}))
    want = session.run_batch(x, y).spike_counts
    assert set(counts) == set(want)
    for name, c in counts.items():
        c = c.numpy()
        c = c.transpose(0, 2, 3, 1) if c.ndim == 4 else c
        assert want[name].sum() > 0
        np.testing.assert_array_equal(c, want[name], err_msg=name)


@pytest.mark.slow
def test_export_refuses_spiking_max_pooling(network, tmp_path):
    with pytest.raises(UsageError, match="max2avg"):
        export_nir(network, tmp_path / "x.nir")
    assert not (tmp_path / "x.nir").exists()


def test_export_command_unknown_format(tmp_path):
    from effmodel.commands.export import export_command

    with pytest.raises(UsageError, match="unknown export format"):
        export_command(model="SmallCNN1", output=tmp_path / "x", format="onnx", data_dir=None, cache_dir=None,
                       epochs=None, seed=0, percentile=99.9, max2avg_pool=False)


def test_plugin_registered_without_importing_torch():
    code = (
        "import sys; from effmodel import plugins; s = plugins.get_simulators()['norse']; "
        "assert s.name == 'norse' and s.description; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
