"""Ensembles: ``n`` independently seeded copies of one small network, their output spikes summed.

The 2019 report's second proposal (its section 3.4): shallow SNNs were the
most efficient, so a homogeneous ensemble of them might beat one deep
network.  An ensemble is named ``ensemble:<Member>x<n>`` (``ensemble:SmallCNN1x4``:
four SmallCNN1) wherever an architecture name is accepted (``--models``).

What each phase does with it:

training
    each member is trained alone, by the ordinary training path and cache,
    member ``i`` with seed ``seed + i``: member 0 *is* the plain model (its
    cached model is reused) and the others differ in their initial weights,
    dropout masks and image order.
conversion
    each member is normalised on its own (its own activation scales).
simulation
    every member is simulated by the chosen simulator over the same test
    images; the simulator must return ``BatchResult.output_spikes_t``.  The
    members' output spikes are summed per image and step, and the core's
    readout (:func:`effmodel.readout.decisions`, the run's coding) turns the
    sum into a class per image and step.  Only the ``spikes`` readout exists
    for ensembles.
counting
    params, MACs, synapses, neurons, SynOps and spikes are the members' summed
    (``n`` times a member's for equal activity); per-layer series and the
    layers table keep each member's layers apart, prefixed ``m<i>/``
    (``m0/conv2d_1``).  The readout sums ``n`` vectors of ``K`` class scores
    once per image: ``(n - 1) K`` additions on either side (the ANN ensemble
    sums its members' logits, the SNN ensemble its members' output spike
    counts).  They are added to the ANN's FLOP columns and recorded as
    ``readout_adds``; the cost models price neither side's readout, as they
    price no single network's (argmax, softmax, spike counters).
the ANN baseline
    the ANN ensemble's class is the argmax of the *sum of the members'
    logits* (pre-softmax outputs, from effmodel's numpy forward pass).
storage
    one results row, model ``ensemble:<Member>x<n>``, ``depth`` (and conv and
    dense layers) of the member, ``family`` ``ensemble``; its ``extra_json``
    holds ``ensemble`` = ``{"member", "members", "seeds", "model_keys",
    "readout_adds", ...}`` and its ``spec_json`` ``{"ensemble": {"member":
    <member spec>, "members": n}, ...}`` (no top-level ``layers``: code that
    rebuilds a single network from ``spec_json`` finds none).
the time budget
    training time is the members' (``n`` times a member's when none is
    cached), simulation time ``n`` times a member's.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .accounting.work import NetworkWork
from .errors import UsageError
from .specs import ArchitectureSpec

PREFIX = "ensemble:"
SPELLING = "ensemble:<Member>x<n>"
EXAMPLE = "ensemble:SmallCNN1x4"
_NAME = re.compile(r"^ensemble:(?P<member>.+)x(?P<n>[0-9]+)$")


@dataclass(frozen=True)
class EnsembleSpec:
    """``members`` copies of the architecture ``member`` on the same input.

    It answers what the pipeline asks of an :class:`ArchitectureSpec` about
    the network as a whole (name, dataset, input shape, epochs, depth,
    ``to_dict``, ``content_hash``); its layers are the member's, ``members`` times."""

    member: ArchitectureSpec
    members: int

    def __post_init__(self) -> None:
        if isinstance(self.member, EnsembleSpec):
            raise UsageError(f"an ensemble's member must be a single network, not {self.member.name!r}")
        if int(self.members) < 1:
            raise UsageError(f"ensemble of {self.member.name}: the number of members must be at least 1, got {self.members}")

    @property
    def name(self) -> str:
        return f"{PREFIX}{self.member.name}x{self.members}"

    @property
    def dataset(self) -> str:
        return self.member.dataset

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.member.input_shape

    @property
    def epochs(self) -> int:
        return self.member.epochs

    @property
    def description(self) -> str:
        return f"{self.members} independently seeded {self.member.name}, output spikes summed"

    @property
    def source(self) -> str:
        return self.member.source

    @property
    def depth(self) -> int:
        """The member's depth: the members run side by side, not in sequence."""
        return self.member.depth

    @property
    def conv_layers(self) -> int:
        return self.member.conv_layers

    @property
    def dense_layers(self) -> int:
        return self.member.dense_layers

    @property
    def classes(self) -> int:
        return self.member.layers[-1].units

    def with_avg_pooling(self) -> "EnsembleSpec":
        return replace(self, member=self.member.with_avg_pooling())

    def to_dict(self) -> dict[str, Any]:
        """The ensemble for ``spec_json``: no top-level ``layers`` (see the module doc)."""
        return {"name": self.name, "dataset": self.dataset, "input_shape": list(self.input_shape),
                "epochs": self.epochs, "description": self.description,
                "ensemble": {"member": self.member.to_dict(), "members": int(self.members)}}

    def content_hash(self) -> str:
        """Stable hash of the member network and the number of members."""
        blob = json.dumps({"ensemble_of": self.member.content_hash(), "members": int(self.members)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def is_ensemble(spec: Any) -> bool:
    return isinstance(spec, EnsembleSpec)


def resolve(name: str, registry: Mapping[str, ArchitectureSpec]) -> EnsembleSpec:
    """The ensemble an ``ensemble:<Member>x<n>`` name stands for; a one-line
    :class:`UsageError` for a bad spelling, an unknown member or ``n < 1``."""
    m = _NAME.match(name.strip())
    if m is None:
        raise UsageError(f"ensemble {name!r}: write {SPELLING} (e.g. {EXAMPLE}), n copies of a registered architecture")
    member_name, n = m.group("member"), int(m.group("n"))
    if member_name not in registry:
        known = ", ".join(sorted(registry)) or "none installed"
        raise UsageError(f"ensemble {name!r}: unknown member architecture {member_name!r} (known: {known})")
    if n < 1:
        raise UsageError(f"ensemble {name!r}: the number of members must be at least 1, got {n}")
    return EnsembleSpec(member=registry[member_name], members=n)


def lookup_architecture(name: str, registry: Mapping[str, ArchitectureSpec]) -> "ArchitectureSpec | EnsembleSpec":
    """A registered architecture, or the ensemble an ``ensemble:`` name spells
    (any other name beginning with ``ensemble`` is told the spelling)."""
    if name.lower().startswith(PREFIX[:-1]) and name not in registry:
        return resolve(name, registry)
    from .plugins import lookup

    return lookup("architecture", dict(registry), name)


def check_settings(spec: Any, settings: Any) -> None:
    """Refuse, before any training, what ensembles cannot do: a readout other than ``spikes``."""
    if is_ensemble(spec) and settings.readout != "spikes":
        raise UsageError(f"{spec.name}: ensembles sum their members' output spikes and support only --readout spikes, "
                         f"not {settings.readout!r}")


def member_settings(settings: Any, index: int) -> Any:
    """The run settings of member ``index``: the run's, with seed ``seed + index``."""
    return replace(settings, seed=settings.seed + index)


def training_jobs(spec: Any, settings: Any) -> list[tuple[ArchitectureSpec, Any]]:
    """``(architecture, settings)`` of each network to train for ``spec``: the
    members with their seeds for an ensemble, else ``spec`` itself."""
    if not is_ensemble(spec):
        return [(spec, settings)]
    return [(spec.member, member_settings(settings, i)) for i in range(spec.members)]


def member_prefix(index: int) -> str:
    """The prefix of member ``index``'s layer names in the ensemble's series and layers table."""
    return f"m{index}/"


# --- counting ------------------------------------------------------------------------


def count_ensemble(spec: EnsembleSpec):
    """The members' exact counts side by side (:class:`effmodel.counting.NetworkCount`,
    layer names prefixed ``m<i>/``): params, MACs, synapses, neurons and FLOPs
    are ``members`` times the member's.  The readout's additions are not a
    layer: :func:`readout_adds`."""
    from .counting import NetworkCount, count_network

    member = count_network(spec.member)
    layers = tuple(replace(l, name=member_prefix(i) + l.name) for i in range(spec.members) for l in member.layers)
    return NetworkCount(spec_name=spec.name, layers=layers)


def readout_adds(spec: EnsembleSpec) -> int:
    """Additions per image of the summing readout: ``n`` vectors of ``K`` class
    scores summed once, ``(n - 1) K`` (the same for the ANN's logits and the
    SNN's output spike counts)."""
    return (int(spec.members) - 1) * spec.classes


def ensemble_work(spec: EnsembleSpec, simulated: ArchitectureSpec, member_results: Sequence[Any], step: int,
                  effective_ops: Sequence[Mapping[str, float] | None]):
    """The members' per-layer work at the cost point ``step``, side by side,
    each layer named ``m<i>/<layer>`` with its index offset by the members
    before it (so the layers table keeps the members apart and in order)."""
    from .accounting import network_work

    offset = len(simulated.layers)
    layers = []
    for i, (result, eff) in enumerate(zip(member_results, effective_ops)):
        work = network_work(simulated, step, result.num_images, dict(result.synops_t), dict(result.spikes_t),
                            dict(eff or {}))
        layers += [replace(l, name=member_prefix(i) + l.name, index=l.index + i * offset) for l in work.layers]
    return EnsembleWork(spec_name=spec.name, steps=int(step), layers=tuple(layers))


class EnsembleWork(NetworkWork):
    """:class:`NetworkWork` of members side by side: every member's first
    layer receives the input, so the analog input's MACs per step are theirs summed."""

    @property
    def input_macs_per_step(self) -> float:
        return float(sum(l.dense_ops for l in self.layers if l.first))


# --- the ANN baseline --------------------------------------------------------------------


def member_logits(member: ArchitectureSpec, weights: Mapping[str, Any], x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """A member's output layer before its softmax, ``(N, K)``, by effmodel's numpy forward pass."""
    from .datasets import to_float
    from .forward import iter_layers

    outs = []
    for start in range(0, len(x), batch_size):
        *_, (_, _, z) = iter_layers(member, weights, to_float(x[start : start + batch_size]), pre_activation=True)
        outs.append(np.asarray(z, dtype=np.float64))
    return np.concatenate(outs) if outs else np.zeros((0, member.layers[-1].units))


def ann_accuracy(member: ArchitectureSpec, member_weights: Sequence[Mapping[str, Any]], x: np.ndarray,
                 y: np.ndarray) -> tuple[float, list[float]]:
    """The ANN ensemble's accuracy (argmax of the members' summed logits) and each member's."""
    total = None
    each = []
    for weights in member_weights:
        z = member_logits(member, weights, x)
        each.append(float((z.argmax(axis=1) == np.asarray(y)).mean()))
        total = z if total is None else total + z
    return float((total.argmax(axis=1) == np.asarray(y)).mean()), each


# --- simulation ----------------------------------------------------------------------------


class _Recorder:
    """A simulator as the core sees it, whose sessions keep each batch's
    ``output_spikes_t`` for the ensemble's readout; everything else (name,
    codings, options, ...) is the simulator's own."""

    def __init__(self, simulator: Any, sink: list):
        self._simulator, self._sink = simulator, sink

    def __getattr__(self, name: str) -> Any:
        return getattr(self._simulator, name)

    def open(self, network: Any, config: Any) -> Any:
        return _RecordingSession(self._simulator.open(network, config), self._simulator.name, self._sink)


class _RecordingSession:
    def __init__(self, session: Any, simulator_name: str, sink: list):
        self._session, self._name, self._sink = session, simulator_name, sink

    def run_batch(self, x: np.ndarray, y: np.ndarray) -> Any:
        r = self._session.run_batch(x, y)
        spikes = getattr(r, "output_spikes_t", None)
        if spikes is None:
            raise UsageError(f"simulator {self._name!r} does not return BatchResult.output_spikes_t (each image's "
                             "output spikes per step), which ensembles need to sum their members' outputs")
        self._sink.append(np.asarray(spikes))
        return r

    def close(self) -> None:
        self._session.close()


@dataclass(frozen=True)
class EnsembleSimulation:
    """An ensemble's merged :class:`SimulationResult` and each member's own."""

    result: Any  # SimulationResult
    members: tuple[Any, ...]  # SimulationResult per member
    output_spikes_t: np.ndarray  # (N, T, K): the members' output spikes summed


def simulate_ensemble(simulator: Any, networks: Sequence[Any], batches: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]],
                      config: Any, progress: Callable[[int], None] | None = None, model: str = "",
                      workdirs: Sequence[Path | None] | None = None) -> EnsembleSimulation:
    """Simulate each member (:func:`effmodel.simulation.simulate`, its contract
    checks included) over ``batches()`` (called once per member: the same
    images each time), sum the members' output spikes per image and step and
    read the sum with :func:`effmodel.readout.decisions` under ``config.coding``.

    The merged result's ``synops_t``/``spikes_t`` keep each member's layers,
    prefixed ``m<i>/``; ``correct_t``, ``predictions`` and ``correct_images``
    are the ensemble's.
    """
    from .pipeline import _jsonable
    from .readout import decisions
    from .simulation import SimulationResult, simulate

    if not networks:
        raise UsageError("an ensemble needs at least one member")
    results = []
    total = None
    for i, network in enumerate(networks):
        sink: list[np.ndarray] = []
        cfg = config if workdirs is None or workdirs[i] is None else replace(config, workdir=workdirs[i])
        r = simulate(_Recorder(simulator, sink), network, batches(), cfg, progress)
        out = np.concatenate(sink).astype(np.int32)
        total = out if total is None else total + out
        if results and not np.array_equal(r.labels, results[0].labels):
            raise UsageError(f"{model or 'ensemble'}: member {i} was simulated on other images than member 0")
        results.append(r)
    labels = results[0].labels
    classes = decisions(total, config.coding)
    correct = classes == np.asarray(labels).reshape(-1, 1)

    def prefixed(series_of: Callable[[Any], Mapping[str, Any] | None]) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        for i, r in enumerate(results):
            series = series_of(r)
            if series is None:
                return None
            out |= {member_prefix(i) + k: v for k, v in series.items()}
        return out

    wall = sum(float(r.metadata.get("wall_seconds") or 0.0) for r in results)
    n, steps = results[0].num_images, results[0].duration
    metadata = dict(results[0].metadata) | {
        "wall_seconds": wall,
        "images_x_steps_per_second": n * steps * len(results) / wall if wall > 0 else float("nan"),
        "batches": sum(int(r.metadata.get("batches", 0)) for r in results),
        "members": len(results),
        # each member's own figures: summed over members, a simulator's per-network figures would mean nothing
        "extra": {"members": [_jsonable(r.metadata.get("extra", {})) for r in results]},
    }
    result = SimulationResult(
        simulator=results[0].simulator, model=model or results[0].model, duration=steps, num_images=n,
        correct_t=correct.sum(axis=0).astype(np.int64), synops_t=prefixed(lambda r: r.synops_t),
        spikes_t=prefixed(lambda r: r.spikes_t), predictions=classes[:, -1].astype(np.int64), labels=labels,
        metadata=metadata, first_batch_spike_counts=prefixed(lambda r: r.first_batch_spike_counts),
        correct_images=correct,
    )
    return EnsembleSimulation(result=result, members=tuple(results), output_spikes_t=total)


# --- one item through the pipeline ---------------------------------------------------------


def compute_ensemble_item(spec: EnsembleSpec, settings: Any, run_id: str, family: str = "ensemble",
                          progress: Callable[[str, int, int], None] | None = None, log: Callable[[str], None] | None = None,
                          workdir: Path | None = None, key: str | None = None, deadline: float | None = None,
                          epoch_seconds_guess: float | None = None) -> Any:
    """:func:`effmodel.pipeline.compute_item` for an ensemble: train (or reuse)
    and convert each member, simulate them, sum their outputs, count and
    cost; the :class:`effmodel.pipeline.ItemResult` of one results row."""
    import shutil

    from . import plugins
    from .accounting import layer_columns, measured_effective_ops
    from .batching import resolve_batch_size
    from .budget import BudgetExhausted
    from .conversion import convert_trained
    from .costs import CostModel
    from .datasets import iter_batches, to_float
    from .errors import DataError
    from .faults import fault_point
    from .machine import describe_machine
    from .pipeline import _layer_rows, _no_guard, _remove_workdir, dataset_arrays, item_key, item_result, train_spec
    from .simulation import SimulationConfig

    check_settings(spec, settings)
    say = log or (lambda m: print(m, file=sys.stderr))
    simulator = plugins.lookup("simulator", plugins.get_simulators(), settings.simulator)
    cost_model = plugins.lookup("cost model", plugins.get_cost_models(), settings.cost_model)
    member = spec.member
    _, arrays = dataset_arrays(member.dataset, settings.data_dir, spec=member)
    if tuple(arrays.x_test.shape[1:]) != tuple(member.input_shape):
        raise DataError(f"{member.name} expects inputs {tuple(member.input_shape)} but {member.dataset} images are "
                        f"{arrays.x_test.shape[1:]}")
    n_test = len(arrays.x_test) if settings.num_test is None else min(settings.num_test, len(arrays.x_test))
    key = key or item_key(spec, settings)
    networks, trained_models, train_clock = [], [], 0.0
    convert_seconds = 0.0
    for i, (m_spec, m_settings) in enumerate(training_jobs(spec, settings)):
        clock = time.perf_counter()
        trained = train_spec(m_spec, m_settings, arrays, deadline=deadline, epoch_seconds_guess=epoch_seconds_guess)
        if not trained.cache_hit:
            train_clock += time.perf_counter() - clock
        say(f"{spec.name} member {i} (seed {m_settings.seed}): {'cached model' if trained.cache_hit else 'trained'} "
            f"{trained.key} (test accuracy {trained.test_accuracy:.4f})")
        fault_point("convert", spec.name)
        clock = time.perf_counter()
        networks.append(convert_trained(m_spec, trained.path, arrays, settings.normalisation))
        convert_seconds += time.perf_counter() - clock
        trained_models.append(trained)
    ann_acc, member_ann = ann_accuracy(member, [nw.weights for nw in networks], arrays.x_test[:n_test],
                                       arrays.y_test[:n_test])
    duration = settings.duration_for(member.dataset)
    default_workdir = workdir is None
    workdir = settings.output / "work" / run_id / f"{spec.name.replace(':', '-')}-{settings.simulator}" \
        if workdir is None else Path(workdir)
    if workdir.exists():
        shutil.rmtree(workdir)
    workdirs = [workdir / f"m{i}" for i in range(spec.members)]
    for w in workdirs:
        w.mkdir(parents=True)  # the contract: a fresh, empty folder per member
    batch_size = resolve_batch_size(settings.batch_size, simulator, networks[0], duration, n_test,
                                    settings.simulator_options)
    config = SimulationConfig(
        duration=duration, batch_size=batch_size, input_encoding=settings.input_encoding, seed=settings.seed,
        workdir=workdirs[0], record_spiketrains=settings.record_layers, options=dict(settings.simulator_options),
        readout=settings.readout, coding=settings.coding,
    )
    done = 0
    total_images = n_test * spec.members

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(spec.name, done, total_images)
        fault_point("simulate", spec.name)
        if deadline is not None and time.time() > deadline:
            raise BudgetExhausted(f"{spec.name}: simulation abandoned by the time budget after {done} of "
                                  f"{total_images} member-images")

    clock = time.perf_counter()
    try:
        sim = simulate_ensemble(simulator, networks, lambda: iter_batches(arrays.x_test, arrays.y_test, batch_size, n_test),
                                config, tick, model=spec.name, workdirs=workdirs)
    finally:
        if not settings.simulator_options.get("keep_workdir"):
            _remove_workdir(workdir, default_workdir)
    simulate_seconds = time.perf_counter() - clock
    clock = time.perf_counter()
    first_images = to_float(arrays.x_test[: min(batch_size, n_test)]) if settings.record_layers else None
    effective = [measured_effective_ops(member, nw.weights, arrays.x_test, n_test) for nw in networks]
    extra = {
        "family": family,
        "ensemble": {
            "member": member.name, "members": spec.members, "seeds": [settings.seed + i for i in range(spec.members)],
            "model_keys": [t.key for t in trained_models], "readout_adds": readout_adds(spec),
            "ann_readout": "argmax of the members' summed logits", "snn_readout": "the members' output spikes summed",
            "member_ann_accuracy": member_ann,
            "member_snn_accuracy": [r.accuracy for r in sim.members],
            "member_synops_total": [r.synops_total for r in sim.members],
            "member_ann_test_accuracy_full": [t.test_accuracy for t in trained_models],
        },
        "train_wall_this_item": train_clock,
        "scale_factors": {member_prefix(i) + k: v for i, nw in enumerate(networks) for k, v in nw.scale_factors.items()},
    }
    with plugins.plugin_call("register_cost_models", cost_model.name, "cost model", "pricing the result") \
            if type(cost_model) is not CostModel else _no_guard():
        row, work = ensemble_row(spec, settings, networks, sim, ann_acc, cost_model, extra, effective)
    row |= {"run_id": run_id, "family": family, "item_key": key}
    layers = []
    fair_layers = layer_columns(work)
    for i, (network, result) in enumerate(zip(networks, sim.members)):
        for r in _layer_rows(network, result, first_images):
            r["layer"] = member_prefix(i) + r["layer"]
            layers.append(r | fair_layers.get(r["layer"], {}))
    count_seconds = time.perf_counter() - clock
    seconds = [t.metadata.get("train_seconds") for t in trained_models]
    epochs_run = [t.metadata.get("epochs_run") for t in trained_models]
    row |= {
        # the members' training together (n times a member's); epochs per member, as the budget calibrates
        "train_seconds": sum(seconds) if None not in seconds else None,
        "train_epochs_run": epochs_run[0],
        "train_images": trained_models[0].metadata.get("train_images"),
        "convert_seconds": convert_seconds, "simulate_seconds": simulate_seconds, "count_seconds": count_seconds,
        "machine": describe_machine(sim.result.metadata.get("device")),
    }
    return item_result(spec, run_id, row, sim.result, layers)


def ensemble_row(spec: EnsembleSpec, settings: Any, networks: Sequence[Any], sim: EnsembleSimulation,
                 ann_accuracy: float, cost_model: Any, extra: Mapping[str, Any],
                 effective_ops: Sequence[Mapping[str, float] | None]) -> tuple[dict[str, Any], Any]:
    """The results row of an ensemble (the columns of
    :func:`effmodel.pipeline.result_row`, by the same builder) and its per-layer work at the cost point."""
    from .pipeline import row_from_counts

    simulated = networks[0].simulated_spec
    return row_from_counts(
        spec, settings, count_ensemble(spec), count_ensemble(EnsembleSpec(simulated, spec.members)),
        networks[0].normalisation.percentile, sim.result, ann_accuracy, cost_model, extra,
        lambda step: ensemble_work(spec, simulated, sim.members, step, effective_ops),
        readout_adds=readout_adds(spec), first_layer_copies=spec.members)


# --- the time budget ---------------------------------------------------------------------


def estimate_ensemble_item(spec: EnsembleSpec, settings: Any, estimator: Any, trained: bool = False) -> Any:
    """The expected phase times of an ensemble: each member's epochs still to
    train (its own cache entry, its own seed) at a member's epoch time, and
    ``n`` times a member's simulation."""
    from .budget import NOMINAL_TRAIN_IMAGES, TRAIN_IMAGES
    from .counting import count_network
    from .paths import cache_dir
    from .pipeline import training_settings
    from .training import epochs_done

    member = spec.member
    left = 0
    if not trained:
        for m_spec, m_settings in training_jobs(spec, settings):
            ts = training_settings(m_spec, m_settings)
            left += ts.epochs - epochs_done(m_spec, ts, cache_dir(settings.cache_dir))
    full = TRAIN_IMAGES.get(member.dataset, NOMINAL_TRAIN_IMAGES)
    counts = count_network(member)
    return estimator.estimate(macs=counts.macs, dataset=member.dataset, simulator=settings.simulator, epochs_left=left,
                              train_images=min(settings.max_train_images or full, full),
                              images=(settings.num_test or 10_000) * spec.members,
                              duration=settings.duration_for(member.dataset), neurons=counts.neurons,
                              layers=len(member.layers))
