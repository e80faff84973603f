"""The simulator contract: what the core accepts from a session's ``run_batch``.

A simulator plugin's :class:`~effmodel.simulation.BatchResult` is checked
against the spec that was simulated before anything is merged, so that an
impossible figure (spikes of shape ``(B, T)``, a misspelt layer name, a
negative count) stops the run with one line naming the plugin, the field,
what was expected and what was got, instead of being stored.

Checked per batch of ``B`` images simulated for ``T`` steps:

- ``correct_t``: shape ``(T,)``, integers in ``[0, B]``;
- ``synops_t`` and ``spikes_t``: keys equal the spec's spiking-layer names
  (:func:`effmodel.counting.spiking_layer_indices`), plus ``"input"`` only
  with Poisson input; every value of shape ``(T,)``, non-negative integers;
- spikes per step never exceed that layer's neurons x ``B``;
- SynOps per layer and step lie within the exact bounds the spikes allow:
  ``min fan-out x spikes <= SynOps <= max fan-out x spikes``, with the
  exact per-neuron fan-outs of :func:`effmodel.counting.fanout_map` (a dense
  receiver makes it an equality; the output layer's fan-out is 0).  Running
  totals instead of per-step counts are reported as "looks cumulative";
- ``predictions``: shape ``(B,)``, integer class indices of the output layer,
  or ``-1`` (no class: the ``spikes`` readout before the first output spike);
- ``output_spikes_t`` (optional): shape ``(B, T, K)`` with ``K`` the output
  layer's units, non-negative integers, at most one spike per neuron and step,
  summing per step to ``spikes_t`` of the output layer; with ``--readout
  spikes``, ``correct_t`` and ``predictions`` must equal what the core's
  readout (:mod:`effmodel.readout`) makes of them;
- under ``--coding ttfs`` a neuron fires at most once: a layer's spikes summed
  over the steps never exceed its neurons x ``B`` (the Poisson ``input`` is
  not a TTFS layer), and with ``record_spiketrains`` no neuron's count in
  ``spike_counts`` exceeds 1.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping

import numpy as np

from .counting import count_network, fanout_map, spiking_layer_indices
from .errors import PluginError
from .simulation import BatchResult, SimulationConfig
from .specs import ArchitectureSpec

INPUT_KEY = "input"  # Poisson-coded input spikes, counted like a layer


def culprit(hook_name: str, name: str, kind: str) -> str:
    """``plugin 'p' (simulator 'x')``, or ``simulator 'x'`` if no plugin registered it."""
    from . import plugins

    owner = plugins.owner_of(hook_name, name)
    return f"plugin {owner!r} ({kind} {name!r})" if owner else f"{kind} {name!r}"


def expected_layers(spec: ArchitectureSpec, input_encoding: str) -> dict[str, int]:
    """Spiking-layer name -> neurons (per image) that ``synops_t``/``spikes_t`` may hold."""
    counts = count_network(spec)
    out = {spec.layers[i].name: counts.layers[i].neurons for i in spiking_layer_indices(spec)}
    if input_encoding == "poisson":
        out[INPUT_KEY] = int(np.prod(spec.input_shape))
    return out


def check_session(session: Any, simulator: str) -> None:
    """Raise a one-line :class:`PluginError` unless ``open`` returned a session with ``run_batch`` and ``close``."""
    missing = [m for m in ("run_batch", "close") if not callable(getattr(session, m, None))]
    if missing:
        who = culprit("register_simulators", simulator, "simulator")
        got = "None" if session is None else f"a {type(session).__name__} without {' and '.join(missing)}()"
        raise PluginError(f"{who} broke the simulator contract in open: returned {got}, "
                          f"expected a session with run_batch(x, y) and close()")


def check_batch_result(result: Any, spec: ArchitectureSpec, config: SimulationConfig, batch: int, simulator: str,
                       labels: np.ndarray | None = None) -> None:
    """Raise a one-line :class:`PluginError` if ``result`` breaks the contract.

    ``spec`` is the simulated spec, ``batch`` the number of images given to
    ``run_batch``, ``simulator`` the registered simulator's name, ``labels``
    the batch's labels (when given, ``correct_t`` is checked against
    ``output_spikes_t``).
    """
    problem = batch_problem(result, spec, config, batch, labels)
    if problem:
        who = culprit("register_simulators", simulator, "simulator")
        raise PluginError(f"{who} broke the simulator contract in run_batch: {problem}")


def batch_problem(result: Any, spec: ArchitectureSpec, config: SimulationConfig, batch: int,
                  labels: np.ndarray | None = None) -> str | None:
    """The first way ``result`` breaks the contract, as ``field: expected ..., got ...``; None if it keeps it."""
    T = int(config.duration)
    if not isinstance(result, BatchResult):
        return f"returned a {type(result).__name__}, expected an effmodel.simulation.BatchResult"
    problem = _counts("correct_t", result.correct_t, T, upper=batch, upper_text=f"the batch size {batch}")
    if problem:
        return problem
    layers = expected_layers(spec, config.input_encoding)
    for field in ("synops_t", "spikes_t"):
        values = getattr(result, field)
        if not isinstance(values, Mapping):
            return f"{field}: expected a mapping layer name -> counts, got a {type(values).__name__}"
        problem = _keys(field, values, layers, spec, config.input_encoding)
        if problem:
            return problem
        for key, v in values.items():
            bound = layers[key] * batch if field == "spikes_t" else None
            text = f"{layers[key]} neurons x {batch} images = {bound}" if bound is not None else ""
            problem = _counts(f"{field}[{key!r}]", v, T, upper=bound, upper_text=text)
            if problem:
                if bound is not None and _running_total_of(np.asarray(v), lambda d: d <= bound):
                    problem += " (looks cumulative: spikes_t holds the spikes emitted at each step, not running totals)"
                return problem
    if config.coding == "ttfs":
        problem = ttfs_problem(result, layers, batch, T)
        if problem:
            return problem
    for key in result.synops_t:
        if key not in result.spikes_t:
            return f"spikes_t: missing {key!r}, which synops_t has"
        problem = synops_bound_problem(key, np.asarray(result.synops_t[key], dtype=np.int64),
                                       np.asarray(result.spikes_t[key], dtype=np.int64), *fanout_range(spec, key))
        if problem:
            return problem
    preds = np.asarray(result.predictions)
    if preds.shape != (batch,):
        return f"predictions: expected shape ({batch},), got {preds.shape}"
    classes = _num_classes(spec)
    bad = _first_bad(preds, lower=-1, upper=classes - 1 if classes else None)  # -1: no class yet
    if bad is not None:
        i, value = bad
        if isinstance(value, str):
            return f"predictions: expected integer class indices, got {value}"
        return f"predictions: expected class indices in [0, {classes - 1}] or -1 (no class), got {value!r} for image {i}"
    if getattr(result, "output_spikes_t", None) is not None:
        return output_spikes_problem(result, spec, config, batch, classes, labels)
    return None


def output_spikes_problem(result: BatchResult, spec: ArchitectureSpec, config: SimulationConfig, batch: int,
                          classes: int | None, labels: np.ndarray | None = None) -> str | None:
    """How ``result.output_spikes_t`` breaks the contract, or contradicts ``correct_t``/``predictions``; None if not."""
    from .readout import decisions

    T = int(config.duration)
    out = np.asarray(result.output_spikes_t)
    expected = (batch, T, classes)
    if out.shape != expected:
        return f"output_spikes_t: expected shape {expected} (images, steps, output neurons), got {out.shape}"
    bad = _first_bad(out, lower=0, upper=1)
    if bad is not None:
        i, value = bad
        b, rest = divmod(i, T * (classes or 1))
        return (f"output_spikes_t: expected 0 or 1 spike per output neuron and step, got {value} "
                f"(image {b}, step {rest // (classes or 1) + 1})")
    name = spec.layers[spiking_layer_indices(spec)[-1]].name
    per_step = out.sum(axis=(0, 2), dtype=np.int64)
    layer = np.asarray(result.spikes_t.get(name), dtype=np.int64)
    if not np.array_equal(per_step, layer):
        t = int(np.argmax(per_step != layer))
        return (f"output_spikes_t: {int(per_step[t])} output spikes at step {t + 1}, but spikes_t[{name!r}] "
                f"says {int(layer[t])}")
    if config.readout != "spikes":
        return None
    guesses = decisions(out, config.coding)
    preds = np.asarray(result.predictions).astype(np.int64)
    if not np.array_equal(guesses[:, -1], preds):
        b = int(np.argmax(guesses[:, -1] != preds))
        return (f"predictions: image {b} is {int(preds[b])}, but the spikes readout of its output_spikes_t gives "
                f"{int(guesses[b, -1])} (effmodel.readout)")
    if labels is not None:
        correct = np.sum(guesses == np.asarray(labels).astype(np.int64).reshape(-1, 1), axis=0)
        got = np.asarray(result.correct_t, dtype=np.int64)
        if not np.array_equal(correct, got):
            t = int(np.argmax(correct != got))
            return (f"correct_t: {int(got[t])} images correct at step {t + 1}, but the spikes readout of "
                    f"output_spikes_t gives {int(correct[t])} (effmodel.readout)")
    return None


def ttfs_problem(result: BatchResult, layers: Mapping[str, int], batch: int, T: int) -> str | None:
    """A layer whose neurons fired more than once under ``--coding ttfs``, or None.

    ``layers``: spiking-layer name -> neurons per image.  Checks each layer's
    spikes over all steps against neurons x ``batch`` and, when given, every
    neuron's count in ``spike_counts``."""
    rule = "a TTFS neuron fires at most once (--coding ttfs)"
    for key, neurons in layers.items():
        if key == INPUT_KEY or key not in result.spikes_t:
            continue
        total = int(np.asarray(result.spikes_t[key], dtype=np.int64).sum())
        if total > neurons * batch:
            return (f"spikes_t[{key!r}]: {total} spikes in {T} steps, more than its {neurons} neurons x {batch} "
                    f"images = {neurons * batch}: {rule}")
    for key, counts in (result.spike_counts or {}).items():
        if key == INPUT_KEY:
            continue
        counts = np.asarray(counts)
        if counts.size and counts.max() > 1:
            where = np.unravel_index(int(np.argmax(counts)), counts.shape)
            return f"spike_counts[{key!r}]: neuron {tuple(int(i) for i in where[1:])} of image {int(where[0])} " \
                   f"fired {counts.max()} times: {rule}"
    return None


@lru_cache(maxsize=256)
def fanout_range(spec: ArchitectureSpec, key: str) -> tuple[int, int]:
    """(min, max) exact fan-out of the neurons of spiking layer ``key`` (``"input"``: the input image)."""
    index = -1 if key == INPUT_KEY else [l.name for l in spec.layers].index(key)
    fan = fanout_map(spec, index)
    return (int(fan.min()), int(fan.max())) if fan.size else (0, 0)


def synops_bound_problem(key: str, synops: np.ndarray, spikes: np.ndarray, fmin: int, fmax: int) -> str | None:
    """Check ``fmin x spikes <= synops <= fmax x spikes`` at every step (per-step counts of one layer).

    A SynOp is one spike delivered over one synapse, so a layer's SynOps at a
    step are the sum of its spiking neurons' fan-outs: never fewer than the
    smallest fan-out times the spikes, never more than the largest.
    """
    low, high = fmin * spikes, fmax * spikes
    bad = np.flatnonzero((synops < low) | (synops > high))
    if bad.size == 0:
        return None
    t = int(bad[0])
    between = (f"{fmax} x {spikes[t]} spikes = {high[t]}" if fmin == fmax else
               f"between {fmin} x {spikes[t]} = {low[t]} and {fmax} x {spikes[t]} = {high[t]}")
    problem = (f"synops_t[{key!r}]: expected spikes x exact fan-out (effmodel.fanout_map), {between} at step {t + 1}, "
               f"got {synops[t]}")
    if synops[t] > high[t] and _running_total_of(synops, None, spikes, fmin, fmax):
        problem += " (looks cumulative: synops_t holds the SynOps of each step, not running totals)"
    elif synops[t] < low[t] and _running_total_of(spikes, None, synops, fmin, fmax, spikes_are_total=True):
        problem += " (spikes_t looks cumulative: it holds the spikes emitted at each step, not running totals)"
    return problem


def _running_total_of(series: np.ndarray, fits: Any, other: np.ndarray | None = None, fmin: int = 0, fmax: int = 0,
                      spikes_are_total: bool = False) -> bool:
    """Whether ``series`` looks like a running total: non-decreasing, growing at
    some step, and its per-step differences keep the bound that it breaks.

    ``fits(differences)``: the bound, for a series checked alone; else the
    bound is the SynOps/spikes relation with ``other``.
    """
    series = np.asarray(series, dtype=np.int64)
    steps = np.diff(series, prepend=0)
    if series.size < 2 or (steps < 0).any() or not (steps[1:] > 0).any():
        return False
    if fits is not None:
        return bool(np.all(fits(steps)))
    if spikes_are_total:  # series: spikes (running total), other: synops per step
        return bool(np.all((fmin * steps <= other) & (other <= fmax * steps)))
    return bool(np.all((fmin * other <= steps) & (steps <= fmax * other)))  # series: synops, other: spikes


def _keys(field: str, values: Mapping[str, Any], layers: Mapping[str, int], spec: ArchitectureSpec, encoding: str) -> str | None:
    required = set(layers) - ({INPUT_KEY} if encoding == "poisson" else set())
    got = set(values)
    missing, unknown = sorted(required - got), sorted(got - set(layers))
    if not missing and not unknown:
        return None
    parts = []
    if unknown:
        parts.append(f"unknown key(s) {', '.join(map(repr, unknown))}")
    if missing:
        parts.append(f"missing {', '.join(map(repr, missing))}")
    names = ", ".join(repr(n) for n in layers)
    return f"{field}: expected the spiking layers of {spec.name!r} ({names}), got {'; '.join(parts)}"


def _counts(field: str, value: Any, T: int, upper: int | None, upper_text: str) -> str | None:
    """Shape (T,), finite non-negative integers, at most ``upper`` each."""
    try:
        arr = np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - a plugin may return anything
        return f"{field}: expected an array of shape ({T},), got {type(value).__name__} ({exc})"
    if arr.shape != (T,):
        return f"{field}: expected shape ({T},) (one count per time step), got {arr.shape}"
    bad = _first_bad(arr, lower=0, upper=upper)
    if bad is None:
        return None
    t, v = bad
    if isinstance(v, str):
        return f"{field}: expected non-negative integers, got {v}"
    if upper is not None and isinstance(v, (int, float)) and v > upper:
        return f"{field}: expected at most {upper_text} per step, got {v!r} at step {t + 1}"
    return f"{field}: expected non-negative integers, got {v!r} at step {t + 1}"


def _first_bad(arr: np.ndarray, lower: int, upper: int | None) -> tuple[int, Any] | None:
    """Index and value of the first element that is not an integer in [lower, upper]."""
    if arr.dtype.kind == "b" or arr.dtype.kind not in "iuf":
        return (0, f"values of dtype {arr.dtype}") if arr.size else None
    flat = arr.reshape(-1)
    ok = np.isfinite(flat) & (flat >= lower) if arr.dtype.kind == "f" else flat >= lower
    if arr.dtype.kind == "f":
        ok &= np.equal(np.floor(np.where(np.isfinite(flat), flat, 0)), flat)
    if upper is not None:
        ok &= flat <= upper
    if ok.all():
        return None
    i = int(np.argmin(ok))
    v = flat[i].item()
    return i, (int(v) if isinstance(v, float) and v.is_integer() else v)


def _num_classes(spec: ArchitectureSpec) -> int | None:
    last = spec.weight_layers[-1] if spec.weight_layers else None
    return int(last.units) if last is not None and last.type == "dense" else None
