"""The simulator interface and the core loop that streams test images through it.

A simulator plugin registers an object with ``name``, ``description`` and
``open(network, config) -> session``; the session's ``run_batch(x, y)``
simulates one batch for ``config.duration`` steps and returns a
:class:`BatchResult`.  The core (:func:`simulate`) feeds batches, merges
results and owns progress reporting, so memory is bounded by the batch size,
never by the number of test images.

Both simulators receive the *same* :class:`ConvertedNetwork`: the trained
weights and the data-based normalisation computed once by the core
(:mod:`effmodel.normalisation`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol

import numpy as np

from .errors import UsageError
from .specs import ArchitectureSpec


READOUTS = ("spikes", "potential")
"""How a simulator turns output activity into a class at each step.

``spikes`` (default, snntoolbox INIsim's rule): the class whose output neuron
has emitted the most spikes up to and including step ``t``, the lowest class
index on ties, and no class (``-1``, counted wrong) while no output neuron has
spiked yet.  ``potential``: the most output spikes, ties (including "no spike
yet") broken by the highest membrane potential after step ``t``; only for
simulators that expose the potential (``norse``)."""


def check_readout(simulator: Any, readout: str) -> None:
    """Refuse, before any work, a readout that ``simulator`` declares it cannot
    honour (its optional attribute ``readouts``; default: all of :data:`READOUTS`)."""
    supported = tuple(getattr(simulator, "readouts", READOUTS))
    if readout not in supported:
        raise UsageError(f"simulator {getattr(simulator, 'name', simulator)!r} supports --readout "
                         f"{' or '.join(supported)}, not {readout!r}")


INPUT_ENCODINGS = ("analog", "poisson")
"""Input encodings (``SimulationConfig.input_encoding``, ``--poisson``); a simulator may declare
the ones it supports in an optional attribute ``input_encodings`` (default: all)."""


def check_input_encoding(simulator: Any, encoding: str) -> None:
    """Refuse an input encoding that ``simulator`` declares it cannot simulate (its optional ``input_encodings``)."""
    supported = tuple(getattr(simulator, "input_encodings", INPUT_ENCODINGS))
    if encoding not in supported:
        raise UsageError(f"simulator {getattr(simulator, 'name', simulator)!r} supports input encoding "
                         f"{' or '.join(supported)}, not {encoding!r}")


CODINGS = ("rate", "ttfs")
"""Neural codes (``SimulationConfig.coding``, ``--coding``): how the hidden and
output neurons carry an activation.

``rate`` (default, the report's): integrate-and-fire neurons fire repeatedly,
at a rate proportional to the ANN activation, and the readout counts output
spikes.  ``ttfs`` (time to first spike, Rueckauer & Liu 2018): every neuron
fires at most once, the earlier the larger its activation; a spike is a
persistent step of current into its targets; the class is the output neuron
that fires first, fixed from that step on (a decision-time code).  Each
simulator declares the codes it implements in an optional attribute
``codings`` (default :data:`DEFAULT_CODINGS`)."""

DEFAULT_CODINGS = ("rate",)
"""The codes of a simulator that declares none: every simulator written before codes existed is rate-coded."""


def declared_codings(simulator: Any) -> tuple[str, ...]:
    """The neural codes ``simulator`` implements (its optional ``codings``, default :data:`DEFAULT_CODINGS`)."""
    return tuple(getattr(simulator, "codings", DEFAULT_CODINGS))


def check_coding(simulator: Any, coding: str) -> None:
    """Refuse, before any work, a neural code that is unknown or that ``simulator`` does not implement.

    A simulator whose ``codings`` still lists input encodings (the attribute's
    meaning before it was renamed ``input_encodings``) is named as the culprit."""
    name = getattr(simulator, "name", simulator)
    if coding not in CODINGS:
        raise UsageError(f"--coding must be {' or '.join(CODINGS)}, got {coding!r}")
    supported = declared_codings(simulator)
    stale = [c for c in supported if c in INPUT_ENCODINGS]
    if stale:
        raise UsageError(f"simulator {name!r} declares codings {', '.join(supported)}: input encodings belong in "
                         f"input_encodings, codings lists neural codes ({', '.join(CODINGS)})")
    if coding not in supported:
        raise UsageError(f"simulator {name!r} supports --coding {' or '.join(supported)}, not {coding!r}")


@dataclass(frozen=True)
class NormalisationSettings:
    """Data-based weight normalisation (Rueckauer et al. 2017).

    ``percentile``: activation percentile that maps to the firing threshold
    (99.9 as the report says; its published configs used 99.0).
    ``num_images``: how many training images estimate the activations.
    ``max2avg_pool``: replace max pooling by average pooling before conversion.
    ``online``: snntoolbox's online normalisation (INIsim only; see its docs).
    """

    percentile: float = 99.9
    num_images: int = 2000
    max2avg_pool: bool = False
    online: bool = False


@dataclass(frozen=True)
class LayerWeights:
    """Weights of one conv/dense layer, Keras layout (kernel HWIO or IO)."""

    kernel: np.ndarray
    bias: np.ndarray | None


@dataclass(frozen=True)
class ConvertedNetwork:
    """A trained network ready for conversion, shared by every simulator.

    A simulator must build its network from :attr:`simulated_spec` and
    ``normalised_weights`` (IF neurons with threshold 1); with ``spec`` or
    ``weights`` instead, ``--max2avg-pool`` and the normalisation are
    silently ignored.

    ``spec``: the architecture as trained (may contain max pooling).
    ``weights``: trained weights per conv/dense layer name (the ANN's),
    :class:`LayerWeights` in Keras layout: conv kernel ``(kh, kw, c_in,
    c_out)``, dense kernel ``(n_in, n_out)`` with ``n_in`` in Keras' NHWC
    flatten order, bias ``(c_out,)`` or None.
    ``normalised_weights``: the same names and layout after data-based
    normalisation (``W * lambda_prev / lambda_l``, ``b / lambda_l``,
    :mod:`effmodel.normalisation`), so that the ``percentile`` activation of
    each layer maps to threshold 1: an IF neuron fed these currents fires at
    rate ``activation / lambda_l`` spikes per step.
    ``scale_factors``: layer name -> the activation scale ``lambda_l`` used
    (dimensionless; pixels in [0, 1] have scale 1).
    ``normalisation``: the :class:`NormalisationSettings` that produced them.
    ``model_path``: the trained Keras ``.h5`` file, for simulators that parse
    Keras models themselves (snntoolbox); None for networks built from
    numpy weights (``effmodel.testing.tiny_network``).
    ``norm_images``: the images the normalisation was computed on (NHWC,
    float32 in [0, 1]); None when not kept.
    """

    spec: ArchitectureSpec
    weights: Mapping[str, LayerWeights]
    normalised_weights: Mapping[str, LayerWeights]
    scale_factors: Mapping[str, float]
    normalisation: NormalisationSettings
    model_path: Path | None = None
    norm_images: np.ndarray | None = field(default=None, repr=False)

    @property
    def simulated_spec(self) -> ArchitectureSpec:
        """The spec that is simulated: ``spec`` with max pooling replaced by
        average pooling when ``normalisation.max2avg_pool`` is set.  Layer
        names are unchanged, so they key ``normalised_weights``,
        ``BatchResult.synops_t`` and ``spikes_t`` alike."""
        return self.spec.with_avg_pooling() if self.normalisation.max2avg_pool else self.spec


@dataclass(frozen=True)
class SimulationConfig:
    """How to simulate, the same for every simulator of a run.

    ``duration``: time steps ``T`` per image (one step = one synchronous
    update of every layer; no physical time unit).
    ``batch_size``: the most images the core passes to one ``run_batch``
    (the last batch may be smaller; a session must accept any size up to it).
    ``input_encoding``: ``"analog"``: the first spiking layer receives the
    current ``W x + b`` of the pixel values ``x`` in [0, 1] at every step, and
    the input causes no SynOps; ``"poisson"``: pixel ``p`` spikes with
    probability ``p`` per step, and those spikes are counted as a layer named
    ``"input"`` (spikes, and SynOps = spikes x ``fanout_map(spec, -1)``).
    ``seed``: seed for any randomness of the simulation (Poisson input).
    ``workdir``: a folder the core has created, empty and owned by this run
    (scratch files; removed after the run unless the option
    ``keep_workdir=true``).  None when a simulator is called directly
    (``effmodel.simulation.simulate`` from a test): then make a temporary one
    if needed.  Never share state between runs.
    ``record_spiketrains``: also return ``BatchResult.spike_counts``.
    ``options``: simulator-specific settings from ``--option KEY=VALUE``,
    converted by the CLI: ``true``/``false`` (any case) -> bool, then int,
    then float, else the string as given.  Each plugin documents its keys and
    should reject unknown ones with a one-line ``UsageError``.
    ``readout``: how output activity becomes a class at each step, one of
    :data:`READOUTS` (default ``"spikes"``, INIsim's rule); a simulator that
    cannot honour it raises a one-line ``UsageError`` in ``open``.
    ``coding``: the neural code, one of :data:`CODINGS` (default ``"rate"``);
    the core opens a simulator only with a code it declares (``codings``).
    """

    duration: int
    batch_size: int = 50
    input_encoding: str = "analog"  # or "poisson"
    seed: int = 0
    workdir: Path | None = None
    record_spiketrains: bool = False  # keep per-neuron spike counts of the first batch (tests)
    options: Mapping[str, Any] = field(default_factory=dict)
    readout: str = "spikes"  # or "potential"; see READOUTS
    coding: str = "rate"  # or "ttfs"; see CODINGS

    def __post_init__(self) -> None:
        if int(self.duration) <= 0:
            raise UsageError(f"duration must be a positive number of time steps, got {self.duration}")
        if int(self.batch_size) <= 0:
            raise UsageError(f"batch size must be positive, got {self.batch_size}")
        if self.input_encoding not in INPUT_ENCODINGS:
            raise UsageError(f"input encoding must be 'analog' or 'poisson', got {self.input_encoding!r}")
        if self.readout not in READOUTS:
            raise UsageError(f"readout must be one of {', '.join(READOUTS)}, got {self.readout!r}")
        if self.coding not in CODINGS:
            raise UsageError(f"coding must be one of {', '.join(CODINGS)}, got {self.coding!r}")


@dataclass(frozen=True)
class BatchResult:
    """What one simulated batch of ``B`` images and ``T`` steps produced
    (checked by :mod:`effmodel.contract` before the core merges it).

    Keys of ``synops_t`` and ``spikes_t``: the names of *all* spiking layers of
    ``network.simulated_spec``, i.e. ``spec.layers[i].name`` for ``i`` in
    :func:`effmodel.counting.spiking_layer_indices` (conv, dense, max/avg
    pooling, the output layer included; not flatten or dropout), plus
    ``"input"`` with Poisson input only.

    ``correct_t``: int array ``(T,)``, images of the batch classified
    correctly at step ``t`` (per step, not cumulative), by
    ``SimulationConfig.readout``; an image with no class (-1) is wrong.
    ``synops_t``: layer name -> int array ``(T,)``: SynOps caused by that
    layer's spikes *at* step ``t`` (not cumulative), summed over the batch;
    one SynOp per spike and receiving synapse, i.e. spikes x exact fan-out
    (:func:`effmodel.counting.fanout_map`, zero for the output layer).
    ``spikes_t``: layer name -> int array ``(T,)``: spikes emitted at step
    ``t``, summed over the batch and the layer's neurons.
    ``predictions``: int array ``(B,)``, the class at the last step (-1: no
    class yet under the ``spikes`` readout).
    ``spike_counts``: only when ``record_spiketrains``: layer name -> int
    array ``(B, *layer_shape)`` (channels last), per-neuron spike totals over
    all ``T`` steps; else None.
    ``extra``: simulator-specific figures; numbers are summed over batches,
    other values keep the first batch's.
    ``output_spikes_t``: int array ``(B, T, K)``, the spikes of each of the
    output layer's ``K`` neurons at step ``t`` for each image (per step, not
    cumulative), or None.  Optional for a simulator, but every built-in one
    fills it: from it the core reads each image's class at each step with the
    rule of :mod:`effmodel.readout`, which gives the per-image correctness the
    cost step's bootstrap needs, checks ``correct_t`` and ``predictions``
    against it (``--readout spikes``), and sums an ensemble's members.
    """

    correct_t: np.ndarray
    synops_t: Mapping[str, np.ndarray]
    spikes_t: Mapping[str, np.ndarray]
    predictions: np.ndarray
    spike_counts: Mapping[str, np.ndarray] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    output_spikes_t: np.ndarray | None = None


@dataclass(frozen=True)
class SimulationResult:
    """The merged result of a whole simulation run."""

    simulator: str
    model: str
    duration: int
    num_images: int
    correct_t: np.ndarray  # (T,)
    synops_t: Mapping[str, np.ndarray]  # layer -> (T,) per step
    spikes_t: Mapping[str, np.ndarray]  # layer -> (T,) per step
    predictions: np.ndarray  # (N,)
    labels: np.ndarray  # (N,)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    first_batch_spike_counts: Mapping[str, np.ndarray] | None = None
    correct_images: np.ndarray | None = field(default=None, repr=False)
    """``(N, T)`` bool, image ``n`` classified correctly at step ``t`` by the
    spike-count readout of the run's coding (:mod:`effmodel.readout`); None
    unless every batch returned ``output_spikes_t`` and the run's readout is
    ``spikes`` (the core cannot read a membrane potential)."""

    @property
    def error_t(self) -> np.ndarray:
        """Top-1 error at each step, in [0, 1]."""
        return 1.0 - self.correct_t / max(self.num_images, 1)

    @property
    def accuracy(self) -> float:
        """Top-1 accuracy at the last step."""
        return float(self.correct_t[-1] / max(self.num_images, 1))

    @property
    def synops_per_step(self) -> np.ndarray:
        """Total SynOps over all layers at each step, summed over images."""
        return np.sum([v for v in self.synops_t.values()], axis=0).astype(np.int64)

    @property
    def synops_cumulative(self) -> np.ndarray:
        """Cumulative SynOps per image (mean over images) after each step."""
        return np.cumsum(self.synops_per_step) / max(self.num_images, 1)

    @property
    def synops_total(self) -> float:
        """SynOps per image over the whole run."""
        return float(self.synops_cumulative[-1])


class SimulationSession(Protocol):
    def run_batch(self, x: np.ndarray, y: np.ndarray) -> BatchResult: ...

    def close(self) -> None: ...


class Simulator(Protocol):
    """What a simulator plugin registers."""

    name: str
    description: str

    def open(self, network: ConvertedNetwork, config: SimulationConfig) -> SimulationSession: ...


Batch = tuple[np.ndarray, np.ndarray]


def simulate(
    simulator: Simulator,
    network: ConvertedNetwork,
    batches: Iterable[Batch],
    config: SimulationConfig,
    progress: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Stream ``batches`` (NHWC float images in [0, 1], int labels) through
    ``simulator`` and merge the per-batch results.

    :raises UsageError: if ``batches`` yields no image.
    """
    from .contract import check_batch_result, check_session
    from .options import check_options
    from .plugins import plugin_call
    from .readout import correct_per_image

    check_options(simulator, config.options)  # the driver checks earlier, before training; this covers direct calls
    check_input_encoding(simulator, config.input_encoding)
    check_coding(simulator, config.coding)
    with plugin_call("register_simulators", simulator.name, "simulator", "open"):
        session = simulator.open(network, config)
    check_session(session, simulator.name)
    correct = np.zeros(config.duration, dtype=np.int64)
    synops: dict[str, np.ndarray] = {}
    spikes: dict[str, np.ndarray] = {}
    preds: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    extras: list[Mapping[str, Any]] = []
    per_image: list[np.ndarray] | None = []
    first_counts = None
    n = 0
    started = time.perf_counter()
    try:
        for x, y in batches:
            if len(x) == 0:
                continue
            with plugin_call("register_simulators", simulator.name, "simulator", "run_batch"):
                r = session.run_batch(x, y)
            check_batch_result(r, network.simulated_spec, config, len(x), simulator.name, labels=y)
            correct += r.correct_t
            for key, v in r.synops_t.items():
                synops[key] = synops.get(key, 0) + np.asarray(v, dtype=np.int64)
            for key, v in r.spikes_t.items():
                spikes[key] = spikes.get(key, 0) + np.asarray(v, dtype=np.int64)
            if first_counts is None and r.spike_counts is not None:
                first_counts = dict(r.spike_counts)
            preds.append(np.asarray(r.predictions))
            labels.append(np.asarray(y))
            if per_image is not None and r.output_spikes_t is not None and config.readout == "spikes":
                per_image.append(correct_per_image(r.output_spikes_t, y, config.coding))
            else:
                per_image = None
            extras.append(r.extra)
            n += len(x)
            if progress is not None:
                progress(len(x))
    finally:
        with plugin_call("register_simulators", simulator.name, "simulator", "close"):
            session.close()
    if n == 0:
        raise UsageError("the test set is empty: nothing to simulate")
    wall = time.perf_counter() - started
    metadata = {
        "wall_seconds": wall,
        "images_x_steps_per_second": n * config.duration / wall if wall > 0 else float("nan"),
        "batch_size": config.batch_size,
        "input_encoding": config.input_encoding,
        "coding": config.coding,
        "seed": config.seed,
        "batches": len(preds),
        "extra": _merge_extras(extras),
    }
    return SimulationResult(
        simulator=simulator.name,
        model=network.spec.name,
        duration=config.duration,
        num_images=n,
        correct_t=correct,
        synops_t=synops,
        spikes_t=spikes,
        predictions=np.concatenate(preds),
        labels=np.concatenate(labels),
        metadata=metadata,
        first_batch_spike_counts=first_counts,
        correct_images=np.concatenate(per_image) if per_image else None,
    )


def _merge_extras(extras: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Sum numeric extras across batches; keep the first value of others."""
    merged: dict[str, Any] = {}
    for e in extras:
        for k, v in e.items():
            if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
                merged[k] = merged.get(k, 0) + v
            elif isinstance(v, np.ndarray) and np.issubdtype(v.dtype, np.number):
                merged[k] = merged.get(k, 0) + v
            else:
                merged.setdefault(k, v)
    return merged


def iter_limited(batches: Iterable[Batch], limit: int | None) -> Iterator[Batch]:
    """Yield batches until ``limit`` images have been produced."""
    left = limit
    for x, y in batches:
        if left is not None:
            if left <= 0:
                return
            x, y = x[:left], y[:left]
            left -= len(x)
        yield x, y
