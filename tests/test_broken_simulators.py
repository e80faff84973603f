"""The broken-simulator gallery (issue 23, findings 2 and 7).

Each simulator below is the real ``numpy`` reference simulator with one
deliberate bug, the kinds a plugin author makes: SynOps doubled or reported
as running totals, spikes reported as running totals, ``open`` returning
None, a misspelt layer name, and so on.  Each is run through the core's
pipeline (:func:`effmodel.executors.execute`: simulate, check, count, cost,
store) into a real store; each must be refused with one line naming the
plugin and the bug, and nothing may be stored.  A faithful wrapper goes
through the same path and is stored, so the refusals are the bugs', not the
harness's.

The network is :func:`effmodel.testing.tiny_network` (numpy weights, no
TensorFlow): conv1 4x3x3 'same' on 10x10x1 -> 2x2 max pooling -> conv2
6x3x3 -> dense 12 -> dense 4.  By hand, the exact fan-outs the SynOps bounds
use: conv1's 10x10 neurons each feed exactly one 2x2 pooling window (fan-out
1); the output layer feeds nothing (fan-out 0).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from effmodel import hookimpl
from effmodel.errors import PluginError
from effmodel.testing import TinyDataset, reference_simulator, store_item, tiny_network

T, B, N = 12, 4, 8


def _replace(r, field, fn):
    return dataclasses.replace(r, **{field: {k: fn(k, np.asarray(v)) for k, v in getattr(r, field).items()}})


class Broken:
    """The numpy simulator with one bug: ``corrupt(result)``, or ``open``/``run_batch``/``close`` misbehaving."""

    description = "numpy with a deliberate bug (test)"

    def __init__(self, name, corrupt=None, open_returns=..., raise_in=None):
        self.name, self.corrupt, self.open_returns, self.raise_in = name, corrupt, open_returns, raise_in

    def open(self, network, config):
        if self.raise_in == "open":
            raise RuntimeError("cannot reach the neuromorphic board")
        if self.open_returns is not ...:
            return self.open_returns
        return _Session(reference_simulator().open(network, config), self)


class _Session:
    def __init__(self, inner, sim):
        self.inner, self.sim = inner, sim

    def run_batch(self, x, y):
        if self.sim.raise_in == "run_batch":
            raise ValueError("index 7 is out of bounds for axis 0 with size 4")
        r = self.inner.run_batch(x, y)
        return self.sim.corrupt(r) if self.sim.corrupt else r

    def close(self):
        self.inner.close()
        if self.sim.raise_in == "close":
            raise OSError("device busy")


class _NoClose:
    def run_batch(self, x, y):
        raise AssertionError("never called")


GALLERY = {
    "doubled-synops": (lambda r: _replace(r, "synops_t", lambda k, v: 2 * v),
                       ["synops_t['conv1']", "exact fan-out", "1 x"]),
    "cumulative-synops": (lambda r: _replace(r, "synops_t", lambda k, v: np.cumsum(v)),
                          ["synops_t['conv1']", "looks cumulative"]),
    "cumulative-spikes": (lambda r: _replace(r, "spikes_t", lambda k, v: np.cumsum(v)),
                          ["spikes_t", "looks cumulative"]),
    "halved-synops": (lambda r: _replace(r, "synops_t", lambda k, v: v // 2),
                      ["synops_t['conv1']", "exact fan-out"]),
    "synops-from-the-output": (lambda r: _replace(r, "synops_t", lambda k, v: v + r.spikes_t[k] if k == "output" else v),
                               ["synops_t['output']", "0 x"]),
    "spikes-per-image": (lambda r: _replace(r, "spikes_t", lambda k, v: np.tile(v, (len(r.predictions), 1))),
                         ["spikes_t['conv1']", f"expected shape ({T},)", f"got ({B}, {T})"]),
    "negative-spikes": (lambda r: _replace(r, "spikes_t", lambda k, v: v - 10**6 if k == "hidden" else v),
                        ["spikes_t['hidden']", "non-negative integers"]),
    "fractional-synops": (lambda r: _replace(r, "synops_t", lambda k, v: v + 0.5),
                          ["synops_t['conv1']", "non-negative integers", ".5"]),
    "nan-synops": (lambda r: _replace(r, "synops_t", lambda k, v: np.full(v.shape, np.nan)),
                   ["synops_t['conv1']", "nan"]),
    "missing-layer": (lambda r: dataclasses.replace(r, synops_t={k: v for k, v in r.synops_t.items() if k != "hidden"}),
                      ["synops_t", "missing 'hidden'"]),
    "misspelt-layer": (lambda r: dataclasses.replace(r, spikes_t={("conv_1" if k == "conv1" else k): v for k, v in r.spikes_t.items()}),
                       ["spikes_t", "unknown key(s) 'conv_1'", "missing 'conv1'"]),
    "input-under-analog": (lambda r: dataclasses.replace(r, synops_t={**r.synops_t, "input": np.zeros(T, np.int64)}),
                           ["synops_t", "unknown key(s) 'input'"]),
    "correct-over-batch": (lambda r: dataclasses.replace(r, correct_t=np.full(T, B + 1)),
                           ["correct_t", f"the batch size {B}", f"got {B + 1}"]),
    "predictions-shape": (lambda r: dataclasses.replace(r, predictions=np.zeros(B + 1, np.int64)),
                          ["predictions", f"expected shape ({B},)"]),
    "class-out-of-range": (lambda r: dataclasses.replace(r, predictions=np.full(B, 4)),
                           ["predictions", "class indices in [0, 3]", "got 4"]),
    "not-a-batch-result": (lambda r: dataclasses.asdict(r), ["returned a dict", "BatchResult"]),
}
RAISING = {
    "open-returns-none": (dict(open_returns=None), ["in open", "returned None"]),
    "open-returns-no-close": (dict(open_returns=_NoClose()), ["in open", "without close()"]),
    "open-raises": (dict(raise_in="open"), ["failed in open", "RuntimeError: cannot reach the neuromorphic board"]),
    "run-batch-raises": (dict(raise_in="run_batch"), ["failed in run_batch", "ValueError: index 7 is out of bounds"]),
    "close-raises": (dict(raise_in="close"), ["failed in close", "OSError: device busy"]),
}
SIMULATORS = [Broken("faithful")] + [Broken(n, corrupt=c) for n, (c, _) in GALLERY.items()] + [
    Broken(n, **kw) for n, (kw, _) in RAISING.items()]
MESSAGES = {n: f for n, (_, f) in GALLERY.items()} | {n: f for n, (_, f) in RAISING.items()}




@pytest.fixture(scope="module")
def gallery():
    from effmodel import plugins

    class Gallery:
        @hookimpl
        def register_simulators(self, register):
            for sim in SIMULATORS:
                register(sim)

        @hookimpl
        def register_datasets(self, register):
            register(TinyDataset(N))

    pytest.importorskip("effmodel_numpysim")
    name = plugins.register_plugin(Gallery(), name="gallery")
    try:
        yield plugins
    finally:
        plugins.unregister_plugin(name)


def _run(simulator, tmp_path):
    from effmodel.pipeline import RunSettings
    from effmodel.store import Store

    network = tiny_network(seed=0, pooling="max")
    settings = RunSettings(simulator=simulator, output=tmp_path / "out", num_test=N, duration=T, batch_size=B,
                           record_layers=False)
    with Store(settings.output) as store:
        try:
            store_item(network.spec, settings, store, "r1", network)
        finally:
            stored = store.results(), store.timesteps(), store.layers()
    return stored, settings.output


def test_the_faithful_wrapper_is_stored(gallery, tmp_path):
    (rows, steps, layers), _ = _run("faithful", tmp_path)
    assert len(rows) == 1 and rows[0]["simulator"] == "faithful" and len(steps) == T and layers


@pytest.mark.parametrize("simulator", sorted(MESSAGES))
def test_each_broken_simulator_is_refused_in_its_own_line_and_nothing_is_stored(gallery, simulator, tmp_path, capsys):
    with pytest.raises(PluginError) as info:
        _run(simulator, tmp_path)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(f"plugin 'gallery' (simulator {simulator!r})"), message
    for fragment in MESSAGES[simulator]:
        assert fragment in message, (fragment, message)
    from effmodel.store import Store

    with Store(tmp_path / "out") as store:
        assert store.results() == [] and store.timesteps() == [] and store.layers() == []
    assert not (tmp_path / "out" / "work").exists()  # the scratch folder went too


def test_gallery_messages_are_all_different():
    texts = [tuple(f) for f in MESSAGES.values()]
    assert len(set(texts)) == len(texts) >= 17


def test_cumulative_spikes_under_the_neuron_bound_are_named_by_the_synops_bound():
    """Over 3 steps, running totals of spikes stay under conv1's 400 neurons x 4 images, so only the
    SynOps bound (SynOps = 1 x spikes for conv1) can tell; it must say the spikes look cumulative."""
    from effmodel.contract import batch_problem
    from effmodel.simulation import SimulationConfig
    from effmodel.testing import tiny_images

    network = tiny_network(seed=0, pooling="max")
    config = SimulationConfig(duration=3, batch_size=B)
    x, y = tiny_images(network, B, seed=1)
    session = reference_simulator().open(network, config)
    real = session.run_batch(x, y)
    session.close()
    assert batch_problem(real, network.simulated_spec, config, B) is None  # the real result keeps the bounds
    spikes = np.asarray(real.spikes_t["conv1"])
    assert np.all(spikes[1:] > 0) and np.cumsum(spikes).max() <= 400 * B  # the case this test is about
    broken = _replace(real, "spikes_t", lambda k, v: np.cumsum(v))
    problem = batch_problem(broken, network.simulated_spec, config, B)
    assert problem.startswith("synops_t['conv1']") and "spikes_t looks cumulative" in problem, problem
