"""The pipeline: train (or reuse) -> evaluate -> normalise/convert -> simulate
-> count -> cost -> store, for one item (an architecture on its dataset).

:func:`compute_item` does everything for one item without writing to the
output folder's store; ``effmodel run`` and ``effmodel sweep`` hand their
items to one driver, :func:`effmodel.executors.execute`, which computes them
(in this process, a local pool or Ray) and alone writes each result in one
store transaction, so an interruption loses at most the items in progress.
Each result records its phase wall times (train, convert, simulate, count)
and the machine, which feed the time budget's estimates (:mod:`effmodel.budget`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from . import plugins
from .batching import parse_batch_size, resolve_batch_size
from .costs import CostModel
from .counting import count_network, spiking_layer_indices
from .datasets import Arrays, iter_batches, resolve_data_dir, to_float
from .errors import DataError, UsageError
from .faults import fault_point
from .simulation import CODINGS, ConvertedNetwork, NormalisationSettings, SimulationConfig, SimulationResult, simulate
from .specs import ArchitectureSpec
from .threshold import COST_POINTS, DEFAULT_DELTA, DEFAULT_TOLERANCE, cost_point_step, synops_at_step

DEFAULT_DURATION = {"mnist": 100, "cifar10": 150}  # the report's simulation lengths


@dataclass(frozen=True)
class RunSettings:
    """Everything a run needs besides the architecture."""

    simulator: str = "inisim"
    output: Path = Path("out")
    data_dir: Path | None = None
    cache_dir: Path | None = None
    num_test: int | None = None  # None = the whole test set
    duration: int | None = None  # None = DEFAULT_DURATION[dataset]
    batch_size: int | str = "auto"  # a positive number, or "auto": the simulator's choice (effmodel.batching)
    epochs: int | None = None  # None = the spec's (the report's) epochs
    seed: int = 0
    max_train_images: int | None = None
    early_stopping: int | None = None
    normalisation: NormalisationSettings = field(default_factory=NormalisationSettings)
    input_encoding: str = "analog"
    readout: str = "spikes"  # effmodel.simulation.READOUTS; the same rule for every simulator
    coding: str = "rate"  # effmodel.simulation.CODINGS: the neural code (rate, or ttfs: time to first spike)
    cost_model: str = "report-14x"
    threshold_tolerance: float = DEFAULT_TOLERANCE
    cost_point: str = "settle"  # or "iso-accuracy": first step with SNN error <= ANN error + delta
    delta: float = DEFAULT_DELTA
    simulator_options: Mapping[str, Any] = field(default_factory=dict)
    record_layers: bool = True  # per-layer activation/spike-rate correlation (first batch)

    def __post_init__(self) -> None:
        if self.num_test is not None and self.num_test <= 0:
            raise UsageError(f"--num-test must be positive, got {self.num_test} (the test set would be empty)")
        if self.duration is not None and self.duration <= 0:
            raise UsageError(f"--duration must be a positive number of time steps, got {self.duration}")
        object.__setattr__(self, "batch_size", parse_batch_size(self.batch_size))
        if self.threshold_tolerance < 0:
            raise UsageError(f"--tolerance must be >= 0, got {self.threshold_tolerance}")
        if self.cost_point not in COST_POINTS:
            raise UsageError(f"--cost-point must be {' or '.join(COST_POINTS)}, got {self.cost_point!r}")
        if self.delta < 0:
            raise UsageError(f"--delta must be >= 0, got {self.delta}")
        if self.readout not in ("spikes", "potential"):
            raise UsageError(f"--readout must be spikes or potential, got {self.readout!r}")
        if self.coding not in CODINGS:
            raise UsageError(f"--coding must be {' or '.join(CODINGS)}, got {self.coding!r}")

    def duration_for(self, dataset: str) -> int:
        return self.duration or DEFAULT_DURATION.get(dataset, 100)


def item_key(spec: ArchitectureSpec, settings: RunSettings, weights: Mapping[str, Any] | None = None) -> str:
    """Identity of one result: the network, dataset and every setting that
    changes the numbers (``run`` and ``sweep`` skip items already stored).

    :param weights: the trained weights of a user's model file (``--model-file``):
        two files of one architecture are different items.  Registered
        architectures leave it out, their weights follow from spec and settings.
    """
    s = asdict(settings)
    for k in ("output", "data_dir", "cache_dir", "record_layers"):
        s.pop(k)
    if settings.coding == "rate":
        # Results were stored under keys without a coding before codes existed:
        # rate-coded items keep exactly those keys, so a campaign resumes.
        s.pop("coding")
    if settings.input_encoding != "poisson":
        # The batch size changes no number under analog input (the contract asks
        # for per-image results), so a rerun with another batch size (or
        # ``auto`` on another device) resumes.  Poisson input draws its spikes
        # per batch, so there it stays part of the identity.
        s.pop("batch_size")
    s["epochs"] = settings.epochs or spec.epochs
    s["duration"] = settings.duration_for(spec.dataset)
    ident = {"spec": spec.content_hash(), "dataset": spec.dataset, "settings": s}
    if weights is not None:
        ident["weights"] = weights_digest(weights)
    blob = json.dumps(ident, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def weights_digest(weights: Mapping[str, Any]) -> str:
    """SHA-256 of trained weights (layer names, kernels, biases)."""
    h = hashlib.sha256()
    for name in sorted(weights):
        w = weights[name]
        h.update(name.encode())
        for a in (w.kernel, w.bias):
            if a is not None:
                a = np.ascontiguousarray(a)
                h.update(f"{a.dtype}{a.shape}".encode())
                h.update(a.tobytes())
    return h.hexdigest()[:20]


# --- pieces -----------------------------------------------------------------------


def dataset_arrays(name: str, data_dir: Path | str | None, spec: ArchitectureSpec | None = None) -> tuple[Any, Arrays]:
    """The registered dataset ``name`` and its arrays, checked against the
    dataset contract (:func:`effmodel.datasets.check_arrays`) and, given the
    ``spec`` that asks for it, against that architecture; errors name the
    dataset's plugin (and the architecture's)."""
    from .contract import culprit
    from .datasets import check_arrays, check_compatible, dataset_fingerprint, remember_loaded

    registry = plugins.get_datasets()
    if spec is not None and name not in registry:
        raise UsageError(f"{culprit('register_architectures', spec.name, 'architecture')} asks for the dataset {name!r}, "
                         f"which no plugin registers (known: {', '.join(sorted(registry)) or 'none installed'})")
    ds = plugins.lookup("dataset", registry, name)
    who = culprit("register_datasets", name, "dataset")
    if spec is not None:
        check_compatible(spec, ds, culprit("register_architectures", spec.name, "architecture"), who)
    directory = resolve_data_dir(data_dir)
    with plugins.plugin_call("register_datasets", name, "dataset", "load"):  # a plugin's crash: one line naming it
        arrays = ds.load(directory)
    check_arrays(arrays, ds, who)
    remember_loaded(name, dataset_fingerprint(ds, arrays))
    return ds, arrays


def training_settings(spec: ArchitectureSpec, settings: RunSettings):
    from .training import TrainingSettings

    return TrainingSettings(
        epochs=settings.epochs or spec.epochs,
        seed=settings.seed,
        max_train_images=settings.max_train_images,
        early_stopping=settings.early_stopping,
    )


def train_spec(spec: ArchitectureSpec, settings: RunSettings, arrays: Arrays | None = None, verbose: int | None = None,
               deadline: float | None = None, epoch_seconds_guess: float | None = None):
    """Train ``spec`` on its dataset or reuse the cache (resuming an
    interrupted training; ``deadline``: see :func:`effmodel.training.train`)."""
    from .paths import cache_dir
    from .training import train

    from .datasets import dataset_fingerprint

    ds, arr = dataset_arrays(spec.dataset, settings.data_dir, spec=spec) if arrays is None else (
        plugins.lookup("dataset", plugins.get_datasets(), spec.dataset), arrays)
    return train(spec, arr, ds.validation_fraction, training_settings(spec, settings), cache_dir(settings.cache_dir),
                 verbose=verbose, deadline=deadline, epoch_seconds_guess=epoch_seconds_guess,
                 dataset_fingerprint=dataset_fingerprint(ds, arr))


def with_training_times(rows, cache_dir_option: Path | str | None = None) -> list[dict[str, Any]]:
    """Stored rows, those without ``train_seconds`` (stored before the phase
    columns existed) completed from their model's cache entry (``meta.json``:
    ``train_seconds``, ``epochs_run``, ``train_images``) when the cache still
    holds it, so that they calibrate the time budget's training estimates."""
    from .paths import cache_dir

    out = []
    cache = None
    for r in rows:
        r = dict(r)
        if r.get("train_seconds") is None:
            try:
                key = json.loads(r.get("extra_json") or "{}").get("model_key")
            except ValueError:
                key = None
            if key:
                cache = cache or cache_dir(cache_dir_option)
                try:
                    meta = json.loads((cache / key / "meta.json").read_text())
                    r |= {"train_seconds": meta.get("train_seconds"), "train_epochs_run": meta.get("epochs_run"),
                          "train_images": meta.get("train_images")}
                except (OSError, ValueError):
                    pass
        out.append(r)
    return out


def estimate_item(spec: ArchitectureSpec, settings: RunSettings, estimator, trained: bool = False):
    """The expected phase times of one item (:class:`effmodel.budget.ItemEstimate`):
    the epochs still to train (none when the cache holds the model, fewer
    after an interrupted training) and the images x steps to simulate.

    :param trained: the network is given (``--model-file``): no training.
    """
    from .budget import NOMINAL_TRAIN_IMAGES, TRAIN_IMAGES
    from .ensembles import estimate_ensemble_item, is_ensemble
    from .paths import cache_dir
    from .training import epochs_done

    if is_ensemble(spec):  # its members' training, n members' simulation
        return estimate_ensemble_item(spec, settings, estimator, trained)
    ts = training_settings(spec, settings)
    left = 0 if trained else ts.epochs - epochs_done(spec, ts, cache_dir(settings.cache_dir))
    full = TRAIN_IMAGES.get(spec.dataset, NOMINAL_TRAIN_IMAGES)
    train_images = min(settings.max_train_images or full, full)
    images = settings.num_test or 10_000
    counts = count_network(spec)
    return estimator.estimate(macs=counts.macs, dataset=spec.dataset, simulator=settings.simulator,
                              epochs_left=left, train_images=train_images, images=images,
                              duration=settings.duration_for(spec.dataset), neurons=counts.neurons,
                              layers=len(spec.layers))


def converted_network(
    model_name: str,
    data_dir: Path | str | None = None,
    cache_dir: Path | str | None = None,
    epochs: int | None = None,
    seed: int = 0,
    normalisation: NormalisationSettings | None = None,
    max_train_images: int | None = None,
) -> ConvertedNetwork:
    """The converted network of a registered architecture (training it if
    the cache has no model yet)."""
    from .conversion import convert_trained

    spec = plugins.lookup("architecture", plugins.get_architectures(), model_name)
    settings = RunSettings(data_dir=Path(data_dir) if data_dir else None, cache_dir=Path(cache_dir) if cache_dir else None,
                           epochs=epochs, seed=seed, max_train_images=max_train_images,
                           normalisation=normalisation or NormalisationSettings())
    _, arrays = dataset_arrays(spec.dataset, settings.data_dir, spec=spec)
    trained = train_spec(spec, settings, arrays)
    return convert_trained(spec, trained.path, arrays, settings.normalisation)


def _layer_rows(network: ConvertedNetwork, result: SimulationResult, images: np.ndarray | None) -> list[dict[str, Any]]:
    """Per spiking layer: spikes, SynOps, mean rate and the correlation of
    spike rates with the normalised ANN activations (first batch)."""
    from .forward import iter_layers

    spec = network.simulated_spec
    counts = count_network(spec)
    acts: dict[str, np.ndarray] = {}
    if images is not None and result.first_batch_spike_counts:
        for _, layer, out in iter_layers(spec, network.normalised_weights, images):
            acts[layer.name] = out
    rows = []
    for i in spiking_layer_indices(spec):
        layer = spec.layers[i]
        neurons = counts.layers[i].neurons
        spikes = int(np.sum(result.spikes_t.get(layer.name, 0)))
        corr = None
        sc = (result.first_batch_spike_counts or {}).get(layer.name)
        if sc is not None and layer.name in acts:
            rate = np.asarray(sc, dtype=float).reshape(-1) / result.duration
            act = np.clip(acts[layer.name].reshape(-1), 0, None)[: rate.size]
            if rate.size == act.size and rate.std() > 0 and act.std() > 0:
                corr = float(np.corrcoef(rate, act)[0, 1])
        rows.append({
            "layer": layer.name, "type": layer.type, "neurons": neurons, "spikes": spikes,
            "synops": int(np.sum(result.synops_t.get(layer.name, 0))),
            "spike_rate": spikes / max(neurons * result.duration * result.num_images, 1),
            "rate_act_corr": corr,
        })
    return rows


def result_row(
    spec: ArchitectureSpec,
    settings: RunSettings,
    network: ConvertedNetwork,
    result: SimulationResult,
    ann_accuracy: float,
    cost_model: CostModel,
    extra: Mapping[str, Any],
    effective_ops: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The results.csv row of one simulated item.

    :param effective_ops: per layer, the ANN's MACs with a nonzero input per
        image (:func:`effmodel.accounting.measured_effective_ops`); without it
        the zero-skipping count equals the dense one.
    """
    from .accounting import work_at

    sim_extra = dict(result.metadata.get("extra", {}))
    ann_ops_sim = sim_extra.get("snntoolbox_ann_ops")
    row, _ = row_from_counts(
        spec, settings, count_network(spec), count_network(network.simulated_spec), network.normalisation.percentile,
        result, ann_accuracy, cost_model, extra,
        lambda step: work_at(network.simulated_spec, result, step, effective_ops),
        ann_flops_simulator=int(np.ravel(ann_ops_sim)[0] / max(result.metadata.get("batches", 1), 1))
        if ann_ops_sim is not None else None)
    return row


def row_from_counts(spec: Any, settings: RunSettings, counts: Any, sim_counts: Any, percentile: float,
                    result: SimulationResult, ann_accuracy: float, cost_model: CostModel, extra: Mapping[str, Any],
                    work_at_step: Any, *, readout_adds: int = 0, first_layer_copies: int = 1,
                    ann_flops_simulator: int | None = None) -> tuple[dict[str, Any], Any]:
    """The results.csv row of a simulated item from its exact counts, and its
    per-layer work at the cost point: the one row builder of single networks
    (:func:`result_row`) and ensembles (:func:`effmodel.ensembles.ensemble_row`).

    ``counts``/``sim_counts``: the ANN's and the simulated network's
    :class:`~effmodel.counting.NetworkCount`; ``work_at_step(step)``: the
    per-layer work at the cost point; ``readout_adds``: additions of an
    ensemble's summing readout (added to the ANN's FLOPs);
    ``first_layer_copies``: how many first layers receive the input."""
    from .accounting import accuracy_at, result_columns
    from .provenance import provenance_columns

    step, reached = cost_point_step(result.error_t, settings.cost_point, settings.threshold_tolerance,
                                    1.0 - ann_accuracy, settings.delta)
    so = synops_at_step(result.synops_cumulative, step)
    membranes = sim_counts.membrane_neurons  # max-pool units have no membrane to update
    work = work_at_step(step)
    snn_cost = cost_model.snn_cost(so, membranes * step)
    ann_cost = cost_model.ann_cost(counts)
    total_spikes = sum(int(np.sum(v)) for v in result.spikes_t.values())
    sim_extra = dict(result.metadata.get("extra", {}))
    row = {
        "item_key": item_key(spec, settings),
        "model": spec.name,
        "dataset": spec.dataset,
        "simulator": result.simulator,
        "cost_model": cost_model.name,
        "seed": settings.seed,
        "epochs": settings.epochs or spec.epochs,
        "depth": spec.depth,
        "conv_layers": spec.conv_layers,
        "dense_layers": spec.dense_layers,
        "params": counts.params,
        "neurons": counts.neurons,
        "ann_accuracy": ann_accuracy,
        "ann_macs": counts.macs,
        "ann_synapses": counts.synapses,
        "ann_flops": counts.flops_exact + readout_adds,
        "ann_flops_snntoolbox": counts.flops_snntoolbox + readout_adds,
        "ann_flops_simulator": ann_flops_simulator,
        "snn_accuracy": result.accuracy,
        "duration": result.duration,
        "num_test": result.num_images,
        "batch_size": result.metadata.get("batch_size", settings.batch_size),  # "auto" resolved
        "normalisation_percentile": percentile,
        "threshold_tolerance": settings.threshold_tolerance,
        "threshold_step": step,
        "synops_at_threshold": so,
        "synops_total": result.synops_total,
        "synops_input_layer": float(counts.layers[0].synapses) * first_layer_copies,
        "neuron_updates_total": float(membranes * result.duration),
        "mean_spike_rate": total_spikes / max(sim_counts.spiking_neurons * result.duration * result.num_images, 1),
        "total_costs": ann_cost,
        "snn_costs": snn_cost,
        "factor": ann_cost / snn_cost if snn_cost > 0 else None,  # undefined without SynOps: stored empty, never inf
        "wall_seconds": result.metadata.get("wall_seconds"),
        "spec_json": json.dumps(spec.to_dict()),
        "extra_json": json.dumps(dict(extra) | {"simulator": _jsonable(sim_extra), "sim_meta": _jsonable(
            {k: v for k, v in result.metadata.items() if k != "extra"})}, default=str),
    } | result_columns(work, cost_model, counts, cost_point=settings.cost_point, delta=settings.delta,
                       reached=reached, accuracy_at_step=accuracy_at(result, step)) | provenance_columns(spec, settings)
    # a ratio without SynOps (factor, its interval) is undefined: stored empty, never inf or NaN
    return {k: None if isinstance(v, (float, np.floating)) and not np.isfinite(v) else v for k, v in row.items()}, work


def _no_guard():
    import contextlib

    return contextlib.nullcontext()


def _jsonable(d: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, np.ndarray):
            out[k] = v.tolist()
        elif isinstance(v, np.generic):
            out[k] = v.item()
        else:
            out[k] = v
    return out


@dataclass(frozen=True)
class ItemResult:
    """Everything one item produced, ready for :meth:`Store.write_result`.

    :func:`compute_item` returns it without touching the output folder or the
    store, so worker processes can compute and only the driver writes."""

    row: Mapping[str, Any]
    timesteps: tuple[Mapping[str, Any], ...]
    layers: tuple[Mapping[str, Any], ...]
    correct_images: np.ndarray | None = None  # (images, steps) bool, for the cost step's bootstrap


def compute_item(
    spec: ArchitectureSpec,
    settings: RunSettings,
    run_id: str,
    family: str = "reference",
    progress: Callable[[str, int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
    network: ConvertedNetwork | None = None,
    ann_test_accuracy: float | None = None,
    workdir: Path | None = None,
    key: str | None = None,
    deadline: float | None = None,
    epoch_seconds_guess: float | None = None,
) -> ItemResult:
    """Run one architecture through the pipeline (train or reuse, convert,
    simulate, count, cost) and return its result without storing it.

    :param network: an already converted network (``--model-file``); skips training.
    :param workdir: the simulator's scratch folder (default:
        ``<output>/work/<run_id>/<model>-<simulator>``; a remote worker passes a
        temporary folder).  It is emptied first and removed afterwards unless the
        simulator option ``keep_workdir`` is set.
    :param key: the item's :func:`item_key`, as the driver computed it.
    :param deadline: a ``time.time()`` (the time budget): training stops after
        its last finished epoch that fits, a simulation still running then is
        abandoned; both raise :class:`effmodel.budget.BudgetExhausted`.
    """
    from .budget import BudgetExhausted
    from .ensembles import compute_ensemble_item, is_ensemble
    from .machine import describe_machine

    if is_ensemble(spec):  # effmodel.ensembles: n seeded members, their output spikes summed
        return compute_ensemble_item(spec, settings, run_id, family=family, progress=progress, log=log, workdir=workdir,
                                     key=key, deadline=deadline, epoch_seconds_guess=epoch_seconds_guess)

    from .conversion import convert_trained
    from .training import evaluate, load_model

    say = log or (lambda m: print(m, file=sys.stderr))
    simulator = plugins.lookup("simulator", plugins.get_simulators(), settings.simulator)
    cost_model = plugins.lookup("cost model", plugins.get_cost_models(), settings.cost_model)
    ds, arrays = dataset_arrays(spec.dataset, settings.data_dir, spec=spec)
    if tuple(arrays.x_test.shape[1:]) != tuple(spec.input_shape):
        raise DataError(f"{spec.name} expects inputs {tuple(spec.input_shape)} but {spec.dataset} images are {arrays.x_test.shape[1:]}")
    n_test = len(arrays.x_test) if settings.num_test is None else min(settings.num_test, len(arrays.x_test))
    extra: dict[str, Any] = {"family": family}
    if key is None:
        key = item_key(spec, settings, network.weights if network is not None else None)
    phases = {"train_seconds": None, "train_epochs_run": None, "train_images": None, "convert_seconds": 0.0}
    if network is None:
        clock = time.perf_counter()
        trained = train_spec(spec, settings, arrays, deadline=deadline, epoch_seconds_guess=epoch_seconds_guess)
        say(f"{spec.name}: {'cached model' if trained.cache_hit else 'trained'} {trained.key} "
            f"(test accuracy {trained.test_accuracy:.4f})")
        # the model's own training time (also when this item found it in the cache)
        phases |= {"train_seconds": trained.metadata.get("train_seconds"),
                   "train_epochs_run": trained.metadata.get("epochs_run"),
                   "train_images": trained.metadata.get("train_images")}
        extra["train_wall_this_item"] = 0.0 if trained.cache_hit else time.perf_counter() - clock
        fault_point("convert", spec.name)
        clock = time.perf_counter()
        network = convert_trained(spec, trained.path, arrays, settings.normalisation)
        phases["convert_seconds"] = time.perf_counter() - clock
        extra |= {"model_key": trained.key, "ann_test_accuracy_full": trained.test_accuracy}
    model = load_model(network.model_path) if network.model_path else None
    if model is not None:
        ann_acc = evaluate(model, arrays.x_test[:n_test], arrays.y_test[:n_test])
    else:
        from .forward import predict

        p = predict(spec, network.weights, to_float(arrays.x_test[:n_test]))
        ann_acc = float((p.argmax(1) == arrays.y_test[:n_test]).mean())
    if ann_test_accuracy is not None:
        extra["ann_test_accuracy_full"] = ann_test_accuracy
    extra["scale_factors"] = dict(network.scale_factors)
    duration = settings.duration_for(spec.dataset)
    default_workdir = workdir is None
    workdir = settings.output / "work" / run_id / f"{spec.name}-{settings.simulator}" if workdir is None else Path(workdir)
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)  # the contract: a fresh, empty folder that exists
    batch_size = resolve_batch_size(settings.batch_size, simulator, network, duration, n_test, settings.simulator_options)
    config = SimulationConfig(
        duration=duration, batch_size=batch_size, input_encoding=settings.input_encoding, seed=settings.seed,
        workdir=workdir, record_spiketrains=settings.record_layers, options=dict(settings.simulator_options),
        readout=settings.readout, coding=settings.coding,
    )
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(spec.name, done, n_test)
        fault_point("simulate", spec.name)  # after the first batch: mid-simulation
        if deadline is not None and time.time() > deadline:
            raise BudgetExhausted(f"{spec.name}: simulation abandoned by the time budget after {done} of {n_test} images")

    clock = time.perf_counter()
    try:
        result = simulate(simulator, network, iter_batches(arrays.x_test, arrays.y_test, batch_size, n_test), config, tick)
    finally:
        if not settings.simulator_options.get("keep_workdir"):
            _remove_workdir(workdir, default_workdir)
    phases["simulate_seconds"] = time.perf_counter() - clock
    clock = time.perf_counter()
    first_images = to_float(arrays.x_test[: min(batch_size, n_test)]) if settings.record_layers else None
    layers = _layer_rows(network, result, first_images)
    from .accounting import layer_columns, measured_effective_ops, work_at

    effective = measured_effective_ops(spec, network.weights, arrays.x_test, n_test)
    # a cost model that overrides CostModel's methods runs plugin code here: its crash names the plugin
    with plugins.plugin_call("register_cost_models", cost_model.name, "cost model", "pricing the result") \
            if type(cost_model) is not CostModel else _no_guard():
        row = result_row(spec, settings, network, result, ann_acc, cost_model, extra, effective) | {
            "run_id": run_id, "family": family, "item_key": key}
    fair_layers = layer_columns(work_at(network.simulated_spec, result, row["threshold_step"], effective))
    for r in layers:
        r |= fair_layers.get(r["layer"], {})
    if row["ann_flops_simulator"] is not None and row["ann_flops_simulator"] != row["ann_flops_snntoolbox"]:
        say(f"{spec.name}: note: {settings.simulator} counts {row['ann_flops_simulator']:,} ANN operations, "
            f"effmodel's count of the same convention is {row['ann_flops_snntoolbox']:,} "
            f"(exact: {row['ann_flops']:,})")
    phases["count_seconds"] = time.perf_counter() - clock
    row |= phases | {"machine": describe_machine(result.metadata.get("device"))}
    return item_result(spec, run_id, row, result, layers)


def item_result(spec: Any, run_id: str, row: dict[str, Any], result: SimulationResult,
                layers: list[dict[str, Any]]) -> ItemResult:
    """The :class:`ItemResult` of a finished row: its per-step series, its
    per-layer rows (both carrying the row's provenance columns) and the
    per-image correctness (single networks and ensembles alike)."""
    from .provenance import PROVENANCE_COLUMNS

    provenance = {c: row[c] for c in PROVENANCE_COLUMNS}  # every series row says what made it too
    timesteps = tuple(
        {"run_id": run_id, "model": spec.name, "simulator": result.simulator, "t": t + 1,
         "error": float(result.error_t[t]), "synops_cumulative": float(result.synops_cumulative[t])} | provenance
        for t in range(result.duration)
    )
    for r in layers:
        r |= {"run_id": run_id, "model": spec.name, "simulator": result.simulator} | provenance
    return ItemResult(row=row, timesteps=timesteps, layers=tuple(layers), correct_images=result.correct_images)


def _remove_workdir(workdir: Path, remove_empty_parents: bool) -> None:
    """Remove a simulator's scratch folder and, for the default one under the
    output folder, the ``work/<run_id>`` and ``work`` folders once empty."""
    shutil.rmtree(workdir, ignore_errors=True)
    for parent in (workdir.parent, workdir.parent.parent) if remove_empty_parents else ():
        try:
            parent.rmdir()  # only succeeds when empty
        except OSError:
            break


def select_specs(models: list[str] | None, datasets: list[str] | None) -> list[ArchitectureSpec]:
    """Registered architectures filtered by name and dataset, in registry order
    (``ensemble:<Member>x<n>`` names an ensemble: :mod:`effmodel.ensembles`)."""
    from .ensembles import lookup_architecture

    registry = plugins.get_architectures()
    if models:
        specs = [lookup_architecture(m, registry) for m in models]
    else:
        specs = list(registry.values())
    if datasets:
        known = set(plugins.get_datasets())
        for d in datasets:
            if d not in known:
                raise UsageError(f"unknown dataset {d!r} (known: {', '.join(sorted(known))})")
        specs = [s for s in specs if s.dataset in datasets]
    if not specs:
        raise UsageError("no architecture matches the given --models/--datasets")
    return specs



def converted_from_file(path: Path, dataset: str | None, settings: RunSettings) -> tuple[ArchitectureSpec, ConvertedNetwork]:
    """A user's trained Keras file (``--model-file``) as spec + converted network.

    The normalisation images are the dataset's first ``settings.normalisation.num_images``
    training images, so the conversion is reproducible.
    """
    from .conversion import convert
    from .model_import import load_model_file
    from .paths import cache_dir

    imported = load_model_file(path, dataset=dataset, workdir=cache_dir(settings.cache_dir) / "imported")
    _, arrays = dataset_arrays(imported.spec.dataset, settings.data_dir, spec=imported.spec)
    network = convert(imported.spec, imported.weights, arrays, settings.normalisation, model_path=imported.model_path)
    return imported.spec, network
