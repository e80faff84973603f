"""The simulator contract and plugin failures (issue 9).

A real Norse session's results must keep the contract, and each way of
breaking it (checked on that real result, corrupted one field at a time) is
named in one line with the field, what was expected and what was got.  End to
end, in-test plugins wrap the real Norse simulator and break it in the ways a
buggy plugin does (spikes of shape (B, T), a misspelt layer name, an
exception in ``run_batch`` or ``open``): ``effmodel run`` then exits non-zero
with one line naming the plugin and writes nothing.  Registration checks:
an object of the wrong type under any hook, and a cost model with an unknown
``ann_convention`` or a negative cost, are skipped with a warning naming the
plugin while everything else keeps working.

The network is a tiny tf_keras CNN (conv 5x5x4 -> maxpool 2 -> dense 10)
trained briefly on real MNIST; its spiking layers, by hand: ``conv``
24*24*4 = 2304 neurons, ``pool`` 12*12*4 = 576, ``out`` 10; input 28*28 = 784.
"""

from __future__ import annotations

import csv
import dataclasses
import types

import numpy as np
import pytest

from effmodel import hookimpl
from effmodel.cli import main
from effmodel.costs import CostModel
from effmodel.specs import ArchitectureSpec, LayerSpec

pytestmark = pytest.mark.slow

NEURONS = {"conv": 24 * 24 * 4, "pool": 12 * 12 * 4, "out": 10}
T, B = 6, 5


@pytest.fixture(scope="module")
def tiny_h5(data_dir, tmp_path_factory):
    from effmodel import plugins
    from effmodel.datasets import to_float
    from effmodel.keras_compat import import_keras

    keras = import_keras()
    L = keras.layers
    arrays = plugins.get_datasets()["mnist"].load(data_dir)
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        L.InputLayer(input_shape=(28, 28, 1)), L.Conv2D(4, 5, activation="relu", name="conv"),
        L.MaxPooling2D(2, name="pool"), L.Flatten(name="flat"), L.Dense(10, activation="softmax", name="out"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(to_float(arrays.x_train[:1000]), arrays.y_train[:1000], epochs=1, batch_size=50, verbose=0)
    path = tmp_path_factory.mktemp("contract") / "tiny.h5"
    model.save(str(path))
    return path


@pytest.fixture(scope="module")
def network(tiny_h5, data_dir, tmp_path_factory):
    from effmodel.pipeline import RunSettings, converted_from_file
    from effmodel.simulation import NormalisationSettings

    settings = RunSettings(data_dir=data_dir, cache_dir=tmp_path_factory.mktemp("cache"),
                           normalisation=NormalisationSettings(num_images=100))
    _, net = converted_from_file(tiny_h5, None, settings)
    return net


def _norse():
    try:
        from effmodel_norse import NorseSimulator
    except ModuleNotFoundError:
        pytest.skip("the effmodel-norse plugin is not installed")
    return NorseSimulator()


def _real_batch(network, data_dir, tmp_path, encoding="analog"):
    from effmodel import plugins
    from effmodel.datasets import to_float
    from effmodel.simulation import SimulationConfig

    arrays = plugins.get_datasets()["mnist"].load(data_dir)
    config = SimulationConfig(duration=T, batch_size=B, input_encoding=encoding, workdir=tmp_path / "work")
    session = _norse().open(network, config)
    try:
        return session.run_batch(to_float(arrays.x_test[:B]), arrays.y_test[:B]), config
    finally:
        session.close()


@pytest.fixture(scope="module")
def real(network, data_dir, tmp_path_factory):
    """A real Norse BatchResult for 5 test images, 6 steps, analog input, and its config."""
    return _real_batch(network, data_dir, tmp_path_factory.mktemp("real"))


# --- the contract on a real result ----------------------------------------------------


def test_real_norse_results_keep_the_contract(real, network, data_dir, tmp_path):
    from effmodel.contract import batch_problem

    result, config = real
    assert set(result.spikes_t) == set(NEURONS) and set(result.synops_t) == set(NEURONS)
    assert batch_problem(result, network.simulated_spec, config, B) is None
    poisson, pconfig = _real_batch(network, data_dir, tmp_path, encoding="poisson")
    assert set(poisson.spikes_t) == set(NEURONS) | {"input"}
    assert batch_problem(poisson, network.simulated_spec, pconfig, B) is None
    # an "input" layer is only expected with Poisson input
    problem = batch_problem(poisson, network.simulated_spec, config, B)
    assert problem.startswith("synops_t:") and "unknown key(s) 'input'" in problem


def _with(result, field, key=None, value=None, **changes):
    """``result`` with one field (or one layer of a per-layer field) replaced."""
    if key is not None:
        changes[field] = {**getattr(result, field), key: value}
    return dataclasses.replace(result, **changes)


def _corruptions(r):
    """(corrupted result, expected fragments of the message), expectations written by hand."""
    spikes_bt = {k: np.tile(v, (B, 1)) for k, v in r.spikes_t.items()}  # per image: (B, T)
    renamed = {("conv1" if k == "conv" else k): v for k, v in r.synops_t.items()}
    negative = np.array(r.spikes_t["pool"]); negative[2] = -1
    half = np.array(r.synops_t["out"], dtype=float); half[4] = 0.5
    nan = np.array(r.synops_t["conv"], dtype=float); nan[0] = np.nan
    too_many = np.array(r.spikes_t["out"]); too_many[0] = 10 * B + 1
    correct = np.array(r.correct_t); correct[1] = B + 1
    return [
        (dataclasses.replace(r, spikes_t=spikes_bt), ["spikes_t['conv']", f"expected shape ({T},)", f"got ({B}, {T})"]),
        (dataclasses.replace(r, synops_t=renamed), ["synops_t:", "unknown key(s) 'conv1'", "missing 'conv'"]),
        (dataclasses.replace(r, synops_t={k: v for k, v in r.synops_t.items() if k != "pool"}), ["synops_t:", "missing 'pool'"]),
        (_with(r, "spikes_t", "pool", negative), ["spikes_t['pool']", "non-negative integers", "got -1 at step 3"]),
        (_with(r, "synops_t", "out", half), ["synops_t['out']", "non-negative integers", "got 0.5 at step 5"]),
        (_with(r, "synops_t", "conv", nan), ["synops_t['conv']", "got nan at step 1"]),
        (_with(r, "spikes_t", "out", too_many), ["spikes_t['out']", f"at most 10 neurons x {B} images = {10 * B}", f"got {10 * B + 1} at step 1"]),
        (dataclasses.replace(r, correct_t=correct), ["correct_t", f"at most the batch size {B}", f"got {B + 1} at step 2"]),
        (dataclasses.replace(r, correct_t=np.array(r.correct_t)[:-1]), ["correct_t", f"expected shape ({T},)", f"got ({T - 1},)"]),
        (dataclasses.replace(r, predictions=np.asarray(r.predictions).reshape(B, 1)), ["predictions", f"shape ({B},)", f"got ({B}, 1)"]),
        (dataclasses.replace(r, predictions=np.full(B, 10)), ["predictions", "[0, 9]", "got 10 for image 0"]),
    ]


def test_each_broken_field_is_named_with_expected_and_got(real, network):
    from effmodel.contract import batch_problem

    result, config = real
    for corrupted, fragments in _corruptions(result):
        problem = batch_problem(corrupted, network.simulated_spec, config, B)
        assert problem is not None and "\n" not in problem, fragments
        for f in fragments:
            assert f in problem, (f, problem)
    assert "returned a dict" in batch_problem(dataclasses.asdict(result), network.simulated_spec, config, B)


def test_spikes_bound_is_neurons_times_batch(real, network):
    """Exactly neurons x B spikes per step is possible (every neuron fires); one more is not.
    The SynOps are set to match (each neuron's exact fan-out, by hand: conv -> its own 2x2 pooling
    window, 1; pool -> dense 10, 10; out, 0), or the SynOps bound would object first."""
    from effmodel.contract import batch_problem

    result, config = real
    result = dataclasses.replace(result, output_spikes_t=None)  # spikes_t varies alone here; output_spikes_t would contradict it
    fanout = {"conv": 1, "pool": 10, "out": 0}
    for layer, n in NEURONS.items():
        full = np.full(T, n * B)
        consistent = _with(_with(result, "spikes_t", layer, full), "synops_t", layer, full * fanout[layer])
        assert batch_problem(consistent, network.simulated_spec, config, B) is None
        over = _with(_with(result, "spikes_t", layer, full + 1), "synops_t", layer, (full + 1) * fanout[layer])
        assert f"got {n * B + 1} at step 1" in batch_problem(over, network.simulated_spec, config, B)


def test_synops_bound_on_a_real_result(real, network):
    """The real Norse result keeps min fan-out x spikes <= SynOps <= max fan-out x spikes; one SynOp
    more or less on a layer with a uniform fan-out (pool -> dense 10: exactly 10 per spike) does not."""
    from effmodel.contract import batch_problem

    result, config = real
    pool = np.asarray(result.synops_t["pool"])
    assert np.array_equal(pool, 10 * np.asarray(result.spikes_t["pool"]))
    t = int(np.argmax(pool > 0))
    for delta in (1, -1):
        broken = pool.copy()
        broken[t] += delta
        problem = batch_problem(_with(result, "synops_t", "pool", broken), network.simulated_spec, config, B)
        assert problem.startswith("synops_t['pool']") and f"at step {t + 1}, got {broken[t]}" in problem, problem


# --- end to end: plugins wrapping the real Norse simulator --------------------------------


class _Wrapped:
    """Norse, with each batch result passed through ``corrupt`` (or ``open``/``run_batch`` raising)."""

    description = "norse with a deliberate bug (test)"

    def __init__(self, name, corrupt=None, fail_open=False, fail_batch=False):
        self.name, self.corrupt, self.fail_open, self.fail_batch = name, corrupt, fail_open, fail_batch

    def open(self, network, config):
        if self.fail_open:
            raise RuntimeError("cannot reach the neuromorphic board")
        return _Session(_norse().open(network, config), self)


class _Session:
    def __init__(self, inner, sim):
        self.inner, self.sim = inner, sim

    def run_batch(self, x, y):
        r = self.inner.run_batch(x, y)
        if self.sim.fail_batch:
            raise ValueError("index 7 is out of bounds for axis 0 with size 5")
        return self.sim.corrupt(r) if self.sim.corrupt else r

    def close(self):
        self.inner.close()


BAD_SIMULATORS = [
    _Wrapped("bad-shape", corrupt=lambda r: dataclasses.replace(r, spikes_t={k: np.tile(v, (len(r.predictions), 1)) for k, v in r.spikes_t.items()})),
    _Wrapped("bad-key", corrupt=lambda r: dataclasses.replace(r, synops_t={("conv_1" if k == "conv" else k): v for k, v in r.synops_t.items()})),
    _Wrapped("bad-batch", fail_batch=True),
    _Wrapped("bad-open", fail_open=True),
    _Wrapped("silent", corrupt=lambda r: dataclasses.replace(
        r, correct_t=np.zeros_like(r.correct_t), predictions=np.full_like(r.predictions, -1),
        synops_t={k: np.zeros_like(v) for k, v in r.synops_t.items()}, spikes_t={k: np.zeros_like(v) for k, v in r.spikes_t.items()},
        output_spikes_t=np.zeros_like(r.output_spikes_t))),
]


@pytest.fixture
def bad_plugin(fresh_plugins):
    _norse()

    class BadPlugin:
        @hookimpl
        def register_simulators(self, register):
            for sim in BAD_SIMULATORS:
                register(sim)

    fresh_plugins.register_plugin(BadPlugin(), name="buggy")
    try:
        yield fresh_plugins
    finally:
        fresh_plugins.unregister_plugin("buggy")


def _run(simulator, tiny_h5, data_dir, tmp_path, *extra):
    out = tmp_path / "out"
    rc = main(["run", "--simulator", simulator, "--model-file", str(tiny_h5), "--num-test", "6", "--duration", str(T),
               "--batch-size", "3", "--norm-images", "100", "--data-dir", str(data_dir), "--cache-dir", str(tmp_path / "cache"),
               "--output", str(out), *extra])
    return rc, out


@pytest.mark.parametrize("simulator, fragments", [
    ("bad-shape", ["plugin 'buggy' (simulator 'bad-shape')", "spikes_t['conv']", f"expected shape ({T},)", f"got (3, {T})"]),
    ("bad-key", ["plugin 'buggy' (simulator 'bad-key')", "synops_t", "unknown key(s) 'conv_1'", "missing 'conv'"]),
    ("bad-batch", ["plugin 'buggy' (simulator 'bad-batch') failed in run_batch", "ValueError: index 7 is out of bounds"]),
    ("bad-open", ["plugin 'buggy' (simulator 'bad-open') failed in open", "RuntimeError: cannot reach the neuromorphic board"]),
])
def test_buggy_simulator_is_one_line_and_writes_nothing(bad_plugin, simulator, fragments, tiny_h5, data_dir, tmp_path, capsys):
    rc, out = _run(simulator, tiny_h5, data_dir, tmp_path)
    err = capsys.readouterr().err
    assert rc == 5, err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("effmodel: error: "), err
    for f in fragments:
        assert f in errors[0], (f, errors[0])
    assert "Traceback" not in err
    assert not out.exists(), sorted(p.name for p in out.rglob("*"))  # no store, no CSV, no work folder


@pytest.mark.parametrize("how", ["env", "flag"])
def test_debug_shows_the_plugins_traceback(bad_plugin, how, tiny_h5, data_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EFFMODEL_DEBUG", "1" if how == "env" else "0")  # restored afterwards either way
    out = tmp_path / "out"
    args = ["run", "--simulator", "bad-batch", "--model-file", str(tiny_h5), "--num-test", "3", "--duration", str(T),
            "--norm-images", "100", "--data-dir", str(data_dir), "--cache-dir", str(tmp_path / "cache"), "--output", str(out)]
    rc = main(["--debug", *args] if how == "flag" else args)
    err = capsys.readouterr().err
    assert rc == 5
    assert "Traceback" in err and "in run_batch" in err and "ValueError: index 7 is out of bounds" in err
    assert err.strip().splitlines()[-1].startswith("effmodel: error: plugin 'buggy' (simulator 'bad-batch') failed in run_batch")


def test_zero_synops_result_has_undefined_factor_never_inf(bad_plugin, tiny_h5, data_dir, tmp_path, capsys):
    """A simulator whose neurons never fire keeps the contract; its factor is stored empty, not inf."""
    rc, out = _run("silent", tiny_h5, data_dir, tmp_path)
    assert rc == 0, capsys.readouterr().err
    with open(out / "results.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["synops_total"]) == 0 and float(row["snn_costs"]) == 0
    assert float(row["total_costs"]) > 0
    assert row["factor"] == ""
    for interval in ("factor_low", "factor_high"):  # the fair-accounting interval, where stored
        assert row.get(interval, "") == "", interval
    for name in ("results.csv", "timesteps.csv", "layers.csv"):
        text = (out / name).read_text().lower()
        assert "inf" not in text, name


# --- registration checks -----------------------------------------------------------------

TINY = ArchitectureSpec(
    name="ThrowawayNet", dataset="mnist", input_shape=(28, 28, 1),
    layers=(LayerSpec(type="flatten", name="f"), LayerSpec(type="dense", name="out", units=10, activation="softmax")),
)


class _RaisingCost(CostModel):
    def ann_cost(self, counts):
        raise ZeroDivisionError("division by zero")


def _warnings(err):
    return [line for line in err.splitlines() if line.startswith("effmodel: warning:")]


def test_wrong_objects_are_skipped_with_a_warning_and_the_rest_works(fresh_plugins, capsys):
    wrong_cost = CostModel(name="not-an-architecture", mac=1.0, add=1.0, synop=1.0)

    class Mixed:
        @hookimpl
        def register_architectures(self, register):
            register(wrong_cost)  # a cost model under the wrong hook
            register(TINY)

        @hookimpl
        def register_simulators(self, register):
            register(TINY)  # has a name, but no open()

        @hookimpl
        def register_datasets(self, register):
            register(types.SimpleNamespace(name="half-a-dataset", input_shape=(28, 28, 1), num_classes=10))

        @hookimpl
        def register_cost_models(self, register):
            register(TINY)
            register(CostModel(name="unknown-convention", mac=1.0, add=1.0, synop=1.0, ann_convention="flops"))
            register(CostModel(name="negative", mac=3.0, add=1.0, synop=-1.0))
            register(_RaisingCost(name="raising", mac=1.0, add=1.0, synop=1.0))
            register(CostModel(name="fine-3x", mac=3.0, add=1.0, synop=1.0))

    fresh_plugins.register_plugin(Mixed(), name="mixed")
    try:
        assert main(["architectures"]) == 0
        captured = capsys.readouterr()
        assert "ThrowawayNet" in captured.out and "SmallCNN1" in captured.out
        assert "not-an-architecture" not in captured.out
        (arch_warning,) = _warnings(captured.err)
        assert "plugin 'mixed'" in arch_warning and "register_architectures" in arch_warning and "not-an-architecture" in arch_warning
        assert "expected an effmodel.specs.ArchitectureSpec, got CostModel" in arch_warning

        sims = fresh_plugins.get_simulators()
        assert "ThrowawayNet" not in sims and {"inisim", "norse"} & set(sims)
        datasets = fresh_plugins.get_datasets()
        assert "half-a-dataset" not in datasets and "mnist" in datasets
        models = fresh_plugins.get_cost_models()
        assert "fine-3x" in models and "report-14x" in models
        assert not {"ThrowawayNet", "unknown-convention", "negative", "raising"} & set(models)
        warnings = _warnings(capsys.readouterr().err)
        expected = {
            "'ThrowawayNet'": "open(network, config)",  # simulators
            "'half-a-dataset'": "load(data_dir)",
            "'unknown-convention'": "unknown ann_convention 'flops'",
            "'negative'": "synop must be a finite non-negative cost, got -1.0",
            "'raising'": "ann_cost: ZeroDivisionError: division by zero",
        }
        for name, fragment in expected.items():
            hits = [w for w in warnings if name in w and fragment in w]
            assert hits and all("plugin 'mixed'" in w for w in hits), (name, fragment, warnings)
    finally:
        fresh_plugins.unregister_plugin("mixed")


def test_skipped_cost_model_fails_before_any_work(fresh_plugins, data_dir, tmp_path, capsys):
    class BadCost:
        @hookimpl
        def register_cost_models(self, register):
            register(CostModel(name="unknown-convention", mac=1.0, add=1.0, synop=1.0, ann_convention="flops"))

    fresh_plugins.register_plugin(BadCost(), name="badcost")
    try:
        out = tmp_path / "out"
        rc = main(["run", "--models", "SmallCNN1", "--cost-model", "unknown-convention", "--data-dir", str(data_dir),
                   "--cache-dir", str(tmp_path / "cache"), "--output", str(out)])
        err = capsys.readouterr().err
        assert rc == 2
        assert len(_warnings(err)) == 1 and "plugin 'badcost'" in _warnings(err)[0]
        errors = [line for line in err.splitlines() if line.startswith("effmodel: error:")]
        assert len(errors) == 1 and "unknown cost model 'unknown-convention'" in errors[0]
        assert not out.exists() and not (tmp_path / "cache").exists()  # nothing trained, nothing written
    finally:
        fresh_plugins.unregister_plugin("badcost")


def test_dataset_plugin_crash_is_one_line_naming_it(fresh_plugins, tmp_path, capsys):
    _norse()
    class Broken:
        name = "broken-digits"
        input_shape = (28, 28, 1)
        num_classes = 10
        validation_fraction = 0.1

        def load(self, data_dir):
            return {}["x_train"]  # a plugin bug: KeyError

    broken_net = dataclasses.replace(TINY, name="BrokenNet", dataset="broken-digits")

    class Plugin:
        @hookimpl
        def register_datasets(self, register):
            register(Broken())

        @hookimpl
        def register_architectures(self, register):
            register(broken_net)

    fresh_plugins.register_plugin(Plugin(), name="brokendata")
    try:
        out = tmp_path / "out"
        rc = main(["run", "--simulator", "norse", "--models", "BrokenNet", "--cache-dir", str(tmp_path / "cache"), "--output", str(out)])
        err = capsys.readouterr().err
        assert rc == 5, err
        (line,) = [l for l in err.splitlines() if l.strip()]
        assert line == "effmodel: error: plugin 'brokendata' (dataset 'broken-digits') failed in load: KeyError: 'x_train'"
        assert not out.exists()
    finally:
        fresh_plugins.unregister_plugin("brokendata")


class _FlakyCost(CostModel):
    """Prices the probe network at registration, fails on a real result (a data-dependent plugin bug)."""

    def snn_cost(self, synops, neuron_updates=0.0):
        if synops != 1000.0:
            raise OverflowError("pricing table has no entry for this many SynOps")
        return super().snn_cost(synops, neuron_updates)


def test_cost_model_crash_at_pricing_names_the_plugin(fresh_plugins, tiny_h5, data_dir, tmp_path, capsys):
    _norse()

    class Plugin:
        @hookimpl
        def register_cost_models(self, register):
            register(_FlakyCost(name="flaky", mac=3.0, add=1.0, synop=1.0))

    fresh_plugins.register_plugin(Plugin(), name="flakycost")
    try:
        rc, out = _run("norse", tiny_h5, data_dir, tmp_path, "--cost-model", "flaky")
        err = capsys.readouterr().err
        assert rc == 5, err
        errors = [line for line in err.splitlines() if "error" in line.lower()]
        assert errors == ["effmodel: error: plugin 'flakycost' (cost model 'flaky') failed in pricing the result: "
                          "OverflowError: pricing table has no entry for this many SynOps"], err
        assert not out.exists()
    finally:
        fresh_plugins.unregister_plugin("flakycost")
