"""Time budgets for ``run`` and ``sweep`` (``--time-budget``, ``--deadline``).

A batch job has a wall-time limit, a laptop sleeps, a working period ends:
the unit that must survive is the stored result.  With a budget the driver
starts no item that is not expected to finish before the deadline; a
training in progress stops after its last finished epoch (checkpointed, see
:mod:`effmodel.training`) and a simulation in progress is abandoned.  The
command then exits 0 saying how many items are stored and how many are
left: rerunning it continues.

The estimate of an item (:class:`PhaseEstimator`) is a first guess scaled by
the phase times stored with earlier results in the same store (columns
``train_seconds``, ``convert_seconds``, ``simulate_seconds``,
``count_seconds``): per phase, the median ratio of measured to guessed time
over stored rows of the same simulator (simulation) or any simulator
(training), preferring rows of the same dataset.  Rows stored before the
phase columns existed still calibrate: their simulation's ``wall_seconds``,
and the training time the model cache recorded for their model
(:func:`effmodel.pipeline.with_training_times`).  The first guesses: for
training, a per-batch, per-layer, per-MAC and per-neuron time model fitted on
this project's 2-core machine (:data:`TRAIN_TIME_MODEL`); for simulation, a
pessimistic 1 ms plus MACs/10^10 s per image-step (measured there: Norse at
1e-4-7e-4 s and INIsim at 7e-4-2.6e-3 s); the first stored result of a
simulator replaces the latter with measurements.
"""

from __future__ import annotations

import re
import statistics
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .errors import UsageError

# First guesses (seconds): see the module docstring.
# One training epoch (batch 128, Adam, one thread) =
#   steps x (s_step + s_step_layer x Keras layers) + images x (s_mac x forward MACs + s_neuron x neurons),
# steps = ceil(images / 128): a fixed cost per batch and per layer and batch, plus the arithmetic; fitted
# (non-negative least squares) to 1-epoch trainings of sweep networks on the project's 2-core machine while
# another job shared it (README, the sweep section); it gives SmallCNN2 19 s and DeepCNN2 41 s per epoch,
# measured there 19 and 35 s.  Small convolutions train far below the dense rate (benchmarks/training.py),
# so a guess linear in MACs alone was 3-6x off between SmallCNN2 and DeepCNN2.
TRAIN_TIME_MODEL = {"s_step": 6.6e-3, "s_step_layer": 1.6e-3, "s_mac": 2.8e-11, "s_neuron": 2.1e-9}
TRAIN_BATCH = 128  # effmodel.training.TrainingSettings' default
TRAIN_EPOCH_OVERHEAD = 3.0  # model build, trace, validation pass
SIM_STEP_SECONDS = 1e-3  # per image-step, plus ...
SIM_MACS_PER_SECOND = 1e10  # ... the dense synapse work at this rate
CONVERT_SECONDS = 30.0
COUNT_SECONDS = 60.0
NOMINAL_TRAIN_IMAGES = 60_000  # when the dataset's size is not known beforehand
TRAIN_IMAGES = {"mnist": 51_000, "cifar10": 41_500}  # the reference datasets' training splits (85/15, 83/17)


class BudgetExhausted(Exception):
    """The time budget ran out inside an item (training stopped after a
    finished epoch, or a simulation abandoned): the item is left for a rerun."""


_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> float:
    """Seconds in ``150m``, ``2h30m``, ``1.5h``, ``90s`` or ``1d2h``."""
    t = text.strip().lower().replace(" ", "")
    parts = re.findall(r"(\d+(?:\.\d+)?)([dhms])", t)
    if not t or "".join(n + u for n, u in parts) != t:
        raise UsageError(f"--time-budget: cannot read {text!r}; write it like 150m, 2h30m, 1.5h or 90s")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise UsageError(f"--time-budget must be positive, got {text!r}")
    return seconds


def parse_deadline(text: str, now: float | None = None) -> float:
    """A ``time.time()`` from an ISO date-time (``2026-12-03T17:45``, local
    time unless it names a zone) or a clock time today (``17:45``)."""
    from datetime import datetime

    now = time.time() if now is None else now
    t = text.strip()
    try:
        if re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", t):
            today = datetime.fromtimestamp(now).date().isoformat()
            when = datetime.fromisoformat(f"{today}T{t}")
        else:
            when = datetime.fromisoformat(t)
    except ValueError:
        raise UsageError(f"--deadline: cannot read {text!r}; write it like 2026-12-03T17:45 or 17:45") from None
    stamp = when.timestamp()
    if stamp <= now:
        raise UsageError(f"--deadline {text} has already passed")
    return stamp


@dataclass(frozen=True)
class TimeBudget:
    """Wall-clock budget of one command: ``deadline`` is a ``time.time()``."""

    deadline: float
    label: str = ""

    @classmethod
    def from_options(cls, time_budget: str | None, deadline: str | None, now: float | None = None) -> "TimeBudget | None":
        if time_budget and deadline:
            raise UsageError("give --time-budget or --deadline, not both")
        now = time.time() if now is None else now
        if time_budget:
            return cls(now + parse_duration(time_budget), f"--time-budget {time_budget}")
        if deadline:
            return cls(parse_deadline(deadline, now), f"--deadline {deadline}")
        return None

    def remaining(self) -> float:
        return self.deadline - time.time()


def describe_seconds(s: float) -> str:
    s = max(0.0, s)
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


@dataclass(frozen=True)
class ItemEstimate:
    """Expected seconds of one item's phases."""

    train: float
    convert: float
    simulate: float
    count: float
    epoch: float = 0.0  # one training epoch (the training's own deadline check starts from it)

    @property
    def total(self) -> float:
        return self.train + self.convert + self.simulate + self.count


def seconds_per_epoch(macs: float, neurons: float, layers: int, images: int) -> float:
    """Projected seconds of one training epoch over ``images`` of a network with
    ``layers`` Keras layers (:data:`TRAIN_TIME_MODEL`), without the overhead."""
    m = TRAIN_TIME_MODEL
    steps = -(-int(images) // TRAIN_BATCH)
    return steps * (m["s_step"] + m["s_step_layer"] * layers) + images * (m["s_mac"] * macs + m["s_neuron"] * neurons)


def guess_epoch_seconds(macs: float, neurons: float, layers: int, train_images: int) -> float:
    return TRAIN_EPOCH_OVERHEAD + seconds_per_epoch(macs, neurons, layers, train_images)


def guess_step_seconds(macs: float) -> float:
    """Seconds per simulated image-step."""
    return SIM_STEP_SECONDS + macs / SIM_MACS_PER_SECOND


def _layers(row: Mapping[str, Any]) -> int:
    """Keras layers of a stored row's network (its ``spec_json``), else 0."""
    import json

    try:
        return len(json.loads(row.get("spec_json") or "{}").get("layers", []))
    except (TypeError, ValueError, AttributeError):
        return 0


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f else None


class PhaseEstimator:
    """Estimates from first guesses calibrated by stored rows (see module doc)."""

    def __init__(self, rows: Iterable[Mapping[str, Any]]):
        self.rows = []
        for r in rows:
            if _num(r.get("simulate_seconds")) is None and _num(r.get("wall_seconds")) is not None:
                r = dict(r) | {"simulate_seconds": r["wall_seconds"]}  # stored before the phase columns existed
            if _num(r.get("simulate_seconds")) is not None:
                self.rows.append(r)

    def _ratios(self, kind: str, dataset: str, simulator: str | None) -> list[float]:
        out: dict[bool, list[float]] = {True: [], False: []}
        for r in self.rows:
            macs = _num(r.get("ann_macs")) or 0.0
            if kind == "train":
                secs, epochs, images = (_num(r.get(k)) for k in ("train_seconds", "train_epochs_run", "train_images"))
                if not secs or not epochs or not images:
                    continue
                ratio = (secs / epochs) / guess_epoch_seconds(macs, _num(r.get("neurons")) or 0.0, _layers(r),
                                                              int(images))
            else:
                if simulator is not None and r.get("simulator") != simulator:
                    continue
                secs = _num(r.get("simulate_seconds"))
                steps = (_num(r.get("num_test")) or 0) * (_num(r.get("duration")) or 0)
                if not secs or not steps:
                    continue
                ratio = (secs / steps) / guess_step_seconds(macs)
            out[r.get("dataset") == dataset].append(ratio)
        return out[True] or out[False]

    def _median(self, column: str, dataset: str, default: float) -> float:
        same = [v for r in self.rows if r.get("dataset") == dataset and (v := _num(r.get(column))) is not None]
        anyds = [v for r in self.rows if (v := _num(r.get(column))) is not None]
        vals = same or anyds
        return statistics.median(vals) if vals else default

    def epoch_seconds(self, macs: float, neurons: float, layers: int, train_images: int, dataset: str) -> float:
        ratios = self._ratios("train", dataset, None)
        return guess_epoch_seconds(macs, neurons, layers, train_images) * (statistics.median(ratios) if ratios else 1.0)

    def estimate(self, *, macs: float, dataset: str, simulator: str, epochs_left: int, train_images: int,
                 images: int, duration: int, neurons: float = 0.0, layers: int = 0) -> ItemEstimate:
        epoch = self.epoch_seconds(macs, neurons, layers, train_images, dataset)
        train = epochs_left * epoch if epochs_left > 0 else 0.0
        sim_ratios = self._ratios("simulate", dataset, simulator)
        simulate = images * duration * guess_step_seconds(macs) * (statistics.median(sim_ratios) if sim_ratios else 1.0)
        return ItemEstimate(
            train=train,
            convert=self._median("convert_seconds", dataset, CONVERT_SECONDS),
            simulate=simulate,
            count=self._median("count_seconds", dataset, COUNT_SECONDS),
            epoch=epoch,
        )
