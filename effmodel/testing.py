"""Tools for testing effmodel plugins, from the plugin's own test suite.

Nothing here imports TensorFlow or torch (the simulator under test may).

- :func:`tiny_network`: a small seeded :class:`~effmodel.simulation.ConvertedNetwork`
  built from numpy weights (conv, pooling, dense; normalised by effmodel's
  own normalisation on random images), with :func:`tiny_images` to feed it.
- :func:`check_simulator`: runs a simulator through the core on tiny
  networks, checks the contract of ``docs/hooks.md`` and compares spikes,
  SynOps and per-step accuracy with the ``numpy`` reference simulator
  (distribution ``effmodel-numpysim``).
- :func:`check_cost_model`: the checks the core applies at registration plus
  a few sanity checks of the formulas.
- :class:`TinyDataset`: a seeded dataset of the tiny network's shape (register
  it to run a tiny network end to end), and :func:`store_item`: one item
  through effmodel's driver into a store, as ``effmodel run`` computes and
  stores it.
- :func:`synthetic_store` / :func:`synthetic_result`: schema-valid stored
  results with a planted factor (nothing simulated), for report and notebook
  tests.
- the pytest fixture ``effmodel_plugin`` (loaded automatically through the
  ``pytest11`` entry point of the ``effmodel`` distribution): register a
  throwaway plugin object for one test; it is removed again afterwards.

Each check raises ``AssertionError`` with every problem found, one per line.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .simulation import ConvertedNetwork, LayerWeights, NormalisationSettings, SimulationConfig, SimulationResult
from .specs import ArchitectureSpec, LayerSpec

try:  # pytest is only needed for the fixture
    import pytest
except ImportError:  # pragma: no cover - effmodel.testing without pytest
    pytest = None


def tiny_spec(pooling: str = "max", input_shape: tuple[int, int, int] = (10, 10, 1), classes: int = 4) -> ArchitectureSpec:
    """conv(4, 3x3, same) -> pooling 2 -> conv(6, 3x3, valid, stride 1) ->
    flatten -> dense(12) -> dense(classes): every spiking layer type, borders,
    padding and a flatten, small enough for a pure-numpy simulation."""
    pool = [LayerSpec(type=f"{pooling}pool", name="pool", pool=2)] if pooling else []
    return ArchitectureSpec(
        name=f"Tiny-{pooling or 'nopool'}", dataset="tiny", input_shape=input_shape,
        layers=(
            LayerSpec(type="conv2d", name="conv1", filters=4, kernel=3, padding="same"),
            *pool,
            LayerSpec(type="conv2d", name="conv2", filters=6, kernel=3),
            LayerSpec(type="flatten", name="flatten"),
            LayerSpec(type="dense", name="hidden", units=12),
            LayerSpec(type="dense", name="output", units=classes, activation="softmax"),
        ),
        epochs=0, description="effmodel.testing.tiny_network", source="effmodel.testing",
    )


def tiny_images(network: ConvertedNetwork | ArchitectureSpec, n: int = 8, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``n`` seeded images in [0, 1] (NHWC float32) and labels: the ANN's own
    predicted classes, so that a faithful simulator classifies most correctly."""
    from .forward import predict

    spec = network.spec if isinstance(network, ConvertedNetwork) else network
    rng = np.random.default_rng(seed)
    x = rng.random((n, *spec.input_shape), dtype=np.float32)
    if isinstance(network, ConvertedNetwork):
        y = predict(spec, network.weights, x).argmax(axis=1).astype(np.int64)
    else:
        y = rng.integers(0, spec.layers[-1].units, n).astype(np.int64)
    return x, y


def tiny_network(seed: int = 0, pooling: str = "max", max2avg_pool: bool = False, percentile: float = 99.9,
                 spec: ArchitectureSpec | None = None) -> ConvertedNetwork:
    """A seeded :class:`ConvertedNetwork` from random numpy weights.

    ``pooling``: ``"max"``, ``"avg"`` or ``""`` (none) for :func:`tiny_spec`;
    or give your own ``spec``.  ``max2avg_pool`` sets the normalisation flag,
    so ``simulated_spec`` differs from ``spec``.  Weights are He-initialised
    with small positive biases; the normalisation is effmodel's own
    (:mod:`effmodel.normalisation`) on 64 random images.
    """
    from .normalisation import normalise

    spec = spec or tiny_spec(pooling)
    rng = np.random.default_rng(seed)
    weights = {}
    for layer, (in_shape, _) in ((l, s) for l, s in zip(spec.layers, spec.shapes()) if l.type in ("conv2d", "dense")):
        if layer.type == "conv2d":
            fan_in = layer.kernel * layer.kernel * in_shape[-1]
            shape = (layer.kernel, layer.kernel, in_shape[-1], layer.filters)
            out = layer.filters
        else:
            fan_in, out = int(np.prod(in_shape)), layer.units
            shape = (fan_in, out)
        kernel = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        weights[layer.name] = LayerWeights(kernel=kernel, bias=rng.uniform(0.0, 0.05, out).astype(np.float32))
    settings = NormalisationSettings(percentile=percentile, num_images=64, max2avg_pool=max2avg_pool)
    images = np.random.default_rng(seed + 1000).random((64, *spec.input_shape), dtype=np.float32)
    normalised, scales = normalise(spec, weights, images, settings)
    return ConvertedNetwork(spec=spec, weights=weights, normalised_weights=normalised, scale_factors=scales,
                            normalisation=settings, model_path=None, norm_images=images)


class TinyDataset:
    """A dataset of :func:`tiny_spec`'s input: ``n`` seeded uint8 training
    and ``n`` test images of 10x10x1, integer labels in [0, 4), no validation
    split; named ``tiny``."""

    name = "tiny"
    input_shape = (10, 10, 1)
    num_classes = 4
    validation_fraction = 0.0

    def __init__(self, n: int = 8, seed: int = 5):
        self.n, self.seed = n, seed

    def load(self, data_dir: Any) -> Any:
        from .datasets import Arrays

        rng = np.random.default_rng(self.seed)
        x = rng.integers(0, 256, (2 * self.n, 10, 10, 1), dtype=np.uint8)
        y = rng.integers(0, 4, 2 * self.n).astype(np.int64)
        return Arrays(x_train=x[: self.n], y_train=y[: self.n], x_test=x[self.n :], y_test=y[self.n :])


def store_item(spec: ArchitectureSpec, settings: Any, store: Any, run_id: str = "test",
               network: ConvertedNetwork | None = None, force: bool = False) -> dict[str, Any] | None:
    """One item through effmodel's driver in this process (errors propagate
    as raised), computed and stored as ``effmodel run --jobs 1`` does: the
    stored results row, or None when the store already held it (same item,
    same plugin versions) and ``force`` is off.

    ``settings`` is an :class:`effmodel.pipeline.RunSettings`; ``network`` a
    converted network such as :func:`tiny_network` (else ``spec`` is trained)."""
    from .executors import ExecutorSettings, WorkItem, execute
    from .pipeline import item_key

    item = WorkItem(spec=spec, settings=settings, run_id=run_id, network=network,
                    key=item_key(spec, settings, network.weights if network is not None else None))
    summary = execute([item], store, ExecutorSettings(), force=force, stop_on_error=True)
    return summary.rows[0] if summary.rows else None


def synthetic_result(spec: ArchitectureSpec, log_factor: float, rng: np.random.Generator, *, run_id: str = "synthetic",
                     family: str = "reference", seed: int = 0, simulator: str = "fake",
                     steps: int = 60) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """One schema-valid stored result of ``spec`` whose report-14x factor is
    ``exp(log_factor)``, as ``(row, timesteps, layers)`` for
    :meth:`effmodel.store.Store.write_result`; nothing is simulated.

    The counts are ``spec``'s exact ones; the error falls as
    ``e + (0.9 - e) exp(-t / (1.5 depth))`` to ``e`` = 2 % (MNIST) or 35 %;
    SynOps grow linearly, at the rate that puts the factor (exact FLOPs x 7.5
    over the SynOps at the settle step, tolerance 1 point) at the target; the
    mean spike rate is drawn from ``rng`` (uniform 0.02-0.2); every layer
    with neurons has a per-layer row.  For report and notebook tests with
    planted effects."""
    from .counting import count_network
    from .threshold import synops_at_step, threshold_step

    c = count_network(spec)
    t = np.arange(1, steps + 1)
    e_final = 0.02 if spec.dataset == "mnist" else 0.35
    err = e_final + (0.9 - e_final) * np.exp(-t / (1.5 * spec.depth))
    total = c.flops_exact / 2 * 14 + c.flops_exact / 2
    step = threshold_step(err, 0.01)
    syn = np.cumsum(np.full(steps, total / np.exp(log_factor) / step))
    so = synops_at_step(syn, step)
    row = {
        "run_id": run_id, "item_key": f"{spec.content_hash()}-{seed}-{simulator}", "model": spec.name,
        "dataset": spec.dataset, "simulator": simulator, "cost_model": "report-14x", "family": family, "seed": seed,
        "epochs": spec.epochs, "depth": spec.depth, "conv_layers": spec.conv_layers, "dense_layers": spec.dense_layers,
        "params": c.params, "neurons": c.neurons, "ann_accuracy": 1 - e_final + 0.005, "ann_macs": c.macs,
        "ann_synapses": c.synapses, "ann_flops": c.flops_exact, "ann_flops_snntoolbox": c.flops_snntoolbox,
        "ann_flops_simulator": None, "snn_accuracy": 1 - err[-1], "duration": steps, "num_test": 100,
        "batch_size": 50, "normalisation_percentile": 99.9, "threshold_tolerance": 0.01, "threshold_step": step,
        "synops_at_threshold": so, "synops_total": float(syn[-1]), "synops_input_layer": float(c.layers[0].synapses),
        "neuron_updates_total": float(c.membrane_neurons * steps), "mean_spike_rate": float(rng.uniform(0.02, 0.2)),
        "total_costs": total, "snn_costs": so, "factor": total / so, "wall_seconds": 1.0,
        "spec_json": json.dumps(spec.to_dict()), "extra_json": "{}",
    }
    series = [{"run_id": run_id, "model": spec.name, "simulator": simulator, "t": int(k), "error": float(err[k - 1]),
               "synops_cumulative": float(syn[k - 1])} for k in t]
    layers = [{"run_id": run_id, "model": spec.name, "simulator": simulator, "layer": l.name, "type": l.type,
               "neurons": lc.neurons, "spikes": 1000, "synops": 5000, "spike_rate": 0.1,
               "rate_act_corr": float(0.98 - 0.04 * j)}
              for j, (l, lc) in enumerate((l, lc) for l, lc in zip(spec.layers, c.layers) if lc.neurons > 0)]
    return row, series, layers


def synthetic_store(directory: str | Path, log_factor: Callable[[ArchitectureSpec, Any, np.random.Generator], float],
                    n_sweep: int = 14, seed: int = 0, simulator: str = "fake") -> Path:
    """A store in ``directory`` with the report's eight reference models
    (family ``reference``, one run) and ``n_sweep`` sampled sweep networks
    with seeds 0 and 1 (family ``sweep``, a second run), each a
    :func:`synthetic_result` whose log factor is ``log_factor(spec, counts,
    rng)`` (``counts``: :func:`effmodel.counting.count_network` of ``spec``):
    a planted effect, plus whatever noise the function draws from ``rng``."""
    from . import sweep
    from .counting import count_network
    from .paths import architectures_dir
    from .specs import load_spec_dir
    from .store import Store

    rng = np.random.default_rng(seed)
    with Store(directory) as store:
        run = store.start_run(f"effmodel run --simulator {simulator} --num-test 100",
                              {"settings": {"simulator": simulator}})
        for spec in load_spec_dir(architectures_dir()):
            store.write_result(*synthetic_result(spec, log_factor(spec, count_network(spec), rng), rng, run_id=run,
                                                 simulator=simulator))
        store.finish_run(run)
        run = store.start_run(f"effmodel sweep --simulator {simulator} --seeds 0,1", {"settings": {"simulator": simulator}})
        for p in sweep.sample(sweep.grid()[0], n_sweep):
            for s in (0, 1):
                spec = replace(p.spec, name=f"{p.spec.name}-s{s}")
                store.write_result(*synthetic_result(spec, log_factor(spec, count_network(spec), rng), rng, run_id=run,
                                                     family="sweep", seed=s, simulator=simulator))
        store.finish_run(run)
    return Path(directory)


def reference_simulator() -> Any:
    """The ``numpy`` reference simulator (distribution ``effmodel-numpysim``)."""
    try:
        from effmodel_numpysim.simulator import NumpySimulator
    except ImportError:
        raise AssertionError("effmodel.testing needs the reference simulator: pip install effmodel-numpysim") from None
    return NumpySimulator()


@dataclass(frozen=True)
class SimulatorCheck:
    """What :func:`check_simulator` ran: case name -> (result, reference result)."""

    cases: dict[str, tuple[SimulationResult, SimulationResult | None]]


def _run(sim: Any, network: ConvertedNetwork, x: np.ndarray, y: np.ndarray, config: SimulationConfig) -> SimulationResult:
    from .simulation import simulate

    b = config.batch_size
    batches = ((x[i : i + b], y[i : i + b]) for i in range(0, len(x), b))  # float images in [0, 1]
    with tempfile.TemporaryDirectory(prefix="effmodel-check-") as tmp:
        workdir = Path(tmp) / "work"
        workdir.mkdir()  # as the core does: a fresh, empty folder that exists
        return simulate(sim, network, batches, replace(config, workdir=workdir))


def _compare(case: str, got: SimulationResult, ref: SimulationResult, rtol: float) -> list[str]:
    """Differences between a simulator's result and the reference's."""
    problems = []
    if set(got.synops_t) != set(ref.synops_t):
        problems.append(f"{case}: layers {sorted(got.synops_t)} != reference {sorted(ref.synops_t)}")
        return problems
    for field in ("spikes_t", "synops_t"):
        for layer in ref.synops_t:
            a, b = np.sum(getattr(got, field)[layer]), np.sum(getattr(ref, field)[layer])
            if abs(int(a) - int(b)) > rtol * max(abs(int(b)), 1):
                problems.append(f"{case}: {field}[{layer!r}] totals {int(a)}, the reference {int(b)}")
    diff = np.max(np.abs(got.correct_t - ref.correct_t))
    if diff > rtol * got.num_images:
        t = int(np.argmax(np.abs(got.correct_t - ref.correct_t)))
        problems.append(f"{case}: correct_t differs from the reference by {int(diff)} images at step {t + 1} "
                        f"(got {int(got.correct_t[t])}, reference {int(ref.correct_t[t])}; is the readout rule followed?)")
    return problems


def _self_consistency(case: str, network: ConvertedNetwork, r: SimulationResult) -> list[str]:
    """SynOps must equal spikes per neuron times exact fan-out (``r`` is one batch, with spike counts)."""
    from .counting import spiking_layer_indices, synops_of_spikes

    if r.first_batch_spike_counts is None:
        return [f"{case}: record_spiketrains=True but BatchResult.spike_counts is None"]
    problems = []
    spec = network.simulated_spec
    for i in spiking_layer_indices(spec):
        name = spec.layers[i].name
        counts = r.first_batch_spike_counts.get(name)
        expected_shape = tuple(spec.shapes()[i][1])
        if counts is None or tuple(np.shape(counts))[1:] != expected_shape:
            problems.append(f"{case}: spike_counts[{name!r}] should have shape (B, {', '.join(map(str, expected_shape))}), "
                            f"got {None if counts is None else np.shape(counts)}")
            continue
        if int(np.sum(counts)) != int(np.sum(r.spikes_t[name])):
            problems.append(f"{case}: spike_counts[{name!r}] sums to {int(np.sum(counts))}, spikes_t to {int(np.sum(r.spikes_t[name]))}")
        exact = synops_of_spikes(spec, i, counts)
        if exact != int(np.sum(r.synops_t[name])):
            problems.append(f"{case}: synops_t[{name!r}] sums to {int(np.sum(r.synops_t[name]))}, but its spikes x "
                            f"exact fan-out (effmodel.fanout_map) give {exact}")
    return problems


def check_simulator(sim: Any, duration: int = 24, images: int = 10, batch_size: int = 4, rtol: float = 0.0,
                    compare: bool = True, seed: int = 0, options: dict[str, Any] | None = None) -> SimulatorCheck:
    """Check ``sim`` (an object as registered with ``register_simulators``).

    On tiny networks with max pooling, with ``--max2avg-pool`` and with
    average pooling, analog input, ``images`` images in batches of
    ``batch_size`` (the last one smaller): the core's contract checks on every
    batch; spikes and SynOps consistent with the exact fan-out; per-layer
    spike and SynOps totals and the per-step number of correct images equal
    to the reference simulator's within ``rtol`` (relative; default exact).
    Then Poisson input (contract only: random streams differ).  A simulator
    that does not model an IF neuron with reset by subtraction can pass
    ``compare=False`` to run the contract checks only.

    ``options``: the simulator's ``--option`` settings for every case (the
    reference runs without); checked first against its declared ``options``
    (:mod:`effmodel.options`), as the core does before training.
    """
    from .errors import EffmodelError
    from .options import check_options, options_problem

    for attr in ("name", "description", "open"):
        if not getattr(sim, attr, None):
            raise AssertionError(f"the simulator has no {attr!r} (see docs/hooks.md, register_simulators)")
    problem = options_problem(sim)
    if problem:
        raise AssertionError(f"simulator {sim.name!r}: {problem}")
    options = dict(options or {})
    try:
        check_options(sim, options)
    except EffmodelError as exc:
        raise AssertionError(str(exc)) from exc
    reference = reference_simulator() if compare else None
    cases = {
        "max pooling": tiny_network(seed, "max"),
        "max pooling, --max2avg-pool": tiny_network(seed, "max", max2avg_pool=True),
        "average pooling": tiny_network(seed + 1, "avg"),
    }
    config = SimulationConfig(duration=duration, batch_size=batch_size, seed=seed, record_spiketrains=True, options=options)
    ref_config = replace(config, options={})
    problems: list[str] = []
    ran: dict[str, tuple[SimulationResult, SimulationResult | None]] = {}
    for case, network in cases.items():
        x, y = tiny_images(network, images, seed + 1)
        try:
            got = _run(sim, network, x, y, config)
        except EffmodelError as exc:
            raise AssertionError(f"{case}: {exc}") from exc
        one_batch = _run(sim, network, x[:batch_size], y[:batch_size], config)  # spike_counts cover it all
        problems += _self_consistency(case, network, one_batch)
        ref = _run(reference, network, x, y, ref_config) if reference is not None else None
        if ref is not None:
            problems += _compare(case, got, ref, rtol)
        ran[case] = (got, ref)
    network = cases["max pooling"]
    x, y = tiny_images(network, images, seed + 1)
    try:
        ran["poisson input"] = (_run(sim, network, x, y, replace(config, input_encoding="poisson")), None)
    except EffmodelError as exc:
        problems.append(f"poisson input: {exc}")
    if problems:
        raise AssertionError(f"simulator {getattr(sim, 'name', sim)!r} fails {len(problems)} check(s):\n" + "\n".join(problems))
    return SimulatorCheck(ran)


def check_cost_model(model: Any) -> None:
    """Check a cost model as the core does at registration, then its formulas:
    costs grow with the work, and the factor is ANN cost / SNN cost."""
    from .costs import validate_cost_model
    from .counting import count_network

    problems = []
    if not isinstance(getattr(model, "name", None), str) or not model.name:
        problems.append("name must be a non-empty string")
    if not getattr(model, "citation", ""):
        problems.append("citation is empty: say where the numbers come from (or label them made up)")
    problems += validate_cost_model(model)
    if not problems:
        counts = count_network(tiny_spec("max"))
        ann = model.ann_cost(counts)
        lo, hi = model.snn_cost(1_000.0, 10.0), model.snn_cost(2_000.0, 20.0)
        if not hi >= lo:
            problems.append(f"snn_cost does not grow with the work: {lo} for 1,000 SynOps, {hi} for 2,000")
        if lo > 0 and not np.isclose(model.factor(counts, 1_000.0, 10.0), ann / lo):
            problems.append("factor(counts, synops) is not ann_cost / snn_cost")
    if problems:
        raise AssertionError(f"cost model {getattr(model, 'name', model)!r}: " + "; ".join(problems))


def _plugin_fixture() -> Iterator[Callable[..., str]]:
    from . import plugins

    registered: list[str] = []

    def register(plugin: object, name: str | None = None) -> str:
        """Register ``plugin`` (a module or an object with ``@hookimpl`` methods) for this test.

        A plugin that is already loaded (installed, so its entry point loaded
        it) is used as it is and left registered afterwards."""
        plugins.load_plugins()
        if plugins.pm.is_registered(plugin):
            return plugins.pm.get_name(plugin) or ""
        registered.append(plugins.register_plugin(plugin, name=name))
        return registered[-1]

    try:
        yield register
    finally:
        for name in reversed(registered):
            plugins.unregister_plugin(name)


if pytest is not None:

    @pytest.fixture
    def effmodel_plugin() -> Iterator[Callable[..., str]]:
        """``effmodel_plugin(obj, name=None) -> name``: register a throwaway
        plugin for this test; it is unregistered (and the registries
        refreshed) when the test ends, pass or fail."""
        yield from _plugin_fixture()
