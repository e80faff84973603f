"""Architecture sweeps: CNNs on a grid, chosen so depth is not a proxy for size.

The grid follows the report's construction (section 2.2): ``1..4``
convolutional bundles of type I (Conv, MaxPool, Dropout .25) or type II (two
Convs, MaxPool, Dropout .25), then Flatten, ``0..3`` hidden Dense layers and
the Dense(10) softmax classifier.  Every convolution is 3x3 with 'same'
padding, so four bundles fit both inputs (28 -> 14 -> 7 -> 3 -> 1 and
32 -> 16 -> 8 -> 4 -> 2).  Conv filters double per bundle from the reference
base width (16 MNIST / 32 CIFAR-10, as LargeCNN1/2) times the *conv width*;
every hidden Dense layer has the same number of units, the base (64 / 256, the
first dense layer of DeepCNN1 / SmallCNN2) times the *dense width*, so a
deeper dense stack is not also a narrower one.  Dropout after the dense stack
is .5 for one hidden layer and .35 for several (the reference models).

**Selection.**  Conv depth and dense depth are crossed: by default the
sweep takes one architecture per cell (bundle type, bundles, hidden dense) of
each dataset, so the conv and dense depths of the chosen set are a full
factorial.  Within a cell the sampler chooses the conv and dense widths (and
only those), so that within each dataset ``|corr(depth, log params)|`` and
``|corr(depth, log neurons)|`` are at most ``max_corr`` (0.3); neurons are
:attr:`effmodel.counting.NetworkCount.neurons`, the conv and dense units that
the regressions use.  Among the choices that meet the bound it prefers the
one whose points fill (depth, log params, log neurons) most evenly.  It is a
seeded local search (coordinate descent over the cells from a few starts),
so the same arguments always give the same sweep.  A grid that cannot meet the bound is a
one-line :class:`UsageError`, never a silent violation.

**Size.**  :func:`seconds_per_epoch` projects one training epoch on the full
training split from the batches, Keras layers, forward MACs and neurons (a
linear model fitted to epochs measured on the project's 2-core machine, one
thread per job: see ``TIME_MODEL``); :meth:`GridPoint.train_seconds` is that times the
protocol's maximum epochs (15 MNIST / 30 CIFAR-10), an upper bound because
early stopping (patience 3 on val_loss) usually ends sooner.  Grid points
projected above ``max_epoch_seconds`` per epoch are left out before the
selection.

A sweep is resumable: an item whose :func:`effmodel.pipeline.item_key`
already has a result for the simulator in the store is skipped.  Items are
computed by an executor (this process, a local pool or Ray tasks, see
:mod:`effmodel.executors`); only the driver writes the store.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Sequence

from .budget import TRAIN_BATCH, TRAIN_TIME_MODEL, seconds_per_epoch
from .errors import UsageError
from .specs import ArchitectureSpec, spec_from_dict

DATASETS: dict[str, dict[str, Any]] = {
    # conv_base: LargeCNN1/2's first filters; dense_base: DeepCNN1's / SmallCNN2's first dense layer;
    # max_epochs: the sweep's training protocol (early stopping on val_loss usually ends sooner);
    # train_images: the full training split after the report's validation split (85/15, 83/17)
    "mnist": {"input_shape": (28, 28, 1), "conv_base": 16, "dense_base": 64, "max_epochs": 15, "train_images": 51_000},
    "cifar10": {"input_shape": (32, 32, 3), "conv_base": 32, "dense_base": 256, "max_epochs": 30, "train_images": 41_500},
}
BUNDLE_TYPES = ("I", "II")
DEFAULT_BUNDLE_TYPES = ("I",)
BUNDLES = (1, 2, 3, 4)
DENSE = (0, 1, 2, 3)
CONV_WIDTHS = (0.25, 0.5, 1.0)
DENSE_WIDTHS = (0.5, 1.0, 2.0)
MAX_CORR = 0.3
EARLY_STOPPING_PATIENCE = 3
MAX_EPOCH_SECONDS = 16.0
# Seconds of one training epoch: effmodel.budget's time model (fitted on the project's 2-core machine,
# see the sweep section of README.md), shared with the time budget's estimates.
TIME_MODEL = TRAIN_TIME_MODEL
BATCH_SIZE = TRAIN_BATCH


@dataclass(frozen=True)
class GridPoint:
    """One architecture of the sweep with its grid coordinates and sizes."""

    spec: ArchitectureSpec
    dataset: str
    bundle_type: str
    bundles: int
    dense: int
    conv_width: float
    dense_width: float  # 0 when there is no hidden dense layer
    params: int
    macs: int
    neurons: int

    @property
    def depth(self) -> int:
        return self.spec.depth

    @property
    def conv_depth(self) -> int:
        return self.spec.conv_layers

    @property
    def cell(self) -> tuple[str, str, int, int]:
        """What the sampler crosses: dataset, bundle type, bundles, hidden dense layers."""
        return (self.dataset, self.bundle_type, self.bundles, self.dense)

    @property
    def log_params(self) -> float:
        return math.log(self.params)

    @property
    def log_neurons(self) -> float:
        return math.log(self.neurons)

    @property
    def log_macs(self) -> float:
        return math.log(self.macs)

    def seconds_per_epoch(self, max_train_images: int | None = None) -> float:
        """Projected seconds of one epoch on the full training split (or its first ``max_train_images``)."""
        images = DATASETS[self.dataset]["train_images"]
        return seconds_per_epoch(self.macs, self.neurons, len(self.spec.layers), min(images, max_train_images or images))

    def train_seconds(self, epochs: int | None = None, max_train_images: int | None = None) -> float:
        """Projected training time at ``epochs`` (default: the protocol's
        maximum, an upper bound under early stopping)."""
        return self.seconds_per_epoch(max_train_images) * (epochs or DATASETS[self.dataset]["max_epochs"])

    def as_dict(self, epochs: int | None = None, max_train_images: int | None = None) -> dict[str, Any]:
        return {
            "name": self.spec.name, "dataset": self.dataset, "bundle_type": self.bundle_type, "bundles": self.bundles,
            "dense_hidden": self.dense, "conv_width": self.conv_width, "dense_width": self.dense_width,
            "depth": self.depth, "conv_layers": self.spec.conv_layers, "dense_layers": self.spec.dense_layers,
            "params": self.params, "neurons": self.neurons, "macs": self.macs,
            "log_params": round(self.log_params, 4), "log_neurons": round(self.log_neurons, 4),
            "projected_seconds_per_epoch": round(self.seconds_per_epoch(max_train_images), 1),
            "projected_train_seconds": round(self.train_seconds(epochs, max_train_images)),
        }


def grid_name(dataset: str, bundle_type: str, bundles: int, dense: int, conv_width: float, dense_width: float) -> str:
    """``sw-<dataset>-<type><bundles>-d<dense>-c<conv width>[-u<dense width>]``,
    e.g. ``sw-mnist-I2-d2-c0.5-u1``; no ``-u`` without hidden dense layers."""
    name = f"sw-{dataset}-{bundle_type}{bundles}-d{dense}-c{conv_width:g}"
    return name + (f"-u{dense_width:g}" if dense else "")


def build_spec(dataset: str, bundle_type: str, bundles: int, dense: int, conv_width: float,
               dense_width: float | None = None) -> ArchitectureSpec:
    """The spec of one grid point (``dense_width`` defaults to ``conv_width``);
    raises :class:`UsageError` if it collapses."""
    if dataset not in DATASETS:
        raise UsageError(f"unknown sweep dataset {dataset!r} (known: {', '.join(DATASETS)})")
    if bundle_type not in BUNDLE_TYPES:
        raise UsageError(f"bundle type must be I or II, got {bundle_type!r}")
    if bundles < 1 or dense < 0:
        raise UsageError(f"a sweep network needs at least one conv bundle and no negative dense count, got {bundles}, {dense}")
    dense_width = conv_width if dense_width is None else dense_width
    base = DATASETS[dataset]
    layers: list[dict[str, Any]] = []
    for b in range(bundles):
        filters = max(1, int(round(base["conv_base"] * 2 ** b * conv_width)))
        for _ in range(2 if bundle_type == "II" else 1):
            layers.append({"type": "conv2d", "filters": filters, "kernel": 3, "padding": "same"})
        layers += [{"type": "maxpool", "pool": 2}, {"type": "dropout", "rate": 0.25}]
    layers.append({"type": "flatten"})
    units = max(1, int(round(base["dense_base"] * dense_width)))
    layers += [{"type": "dense", "units": units} for _ in range(dense)]  # constant width: depth is not a bottleneck
    if dense:
        layers.append({"type": "dropout", "rate": 0.5 if dense == 1 else 0.35})
    layers.append({"type": "dense", "units": 10, "activation": "softmax"})
    hidden = f", {dense} hidden dense x{dense_width:g}" if dense else ", no hidden dense"
    d = {
        "name": grid_name(dataset, bundle_type, bundles, dense, conv_width, dense_width), "dataset": dataset,
        "input_shape": list(base["input_shape"]), "layers": layers, "epochs": base["max_epochs"],
        "description": f"sweep: {bundles} type-{bundle_type} bundle(s) x{conv_width:g}{hidden}",
    }
    return spec_from_dict(d, source="effmodel.sweep")  # validation rejects collapsed maps


def grid(
    datasets: Sequence[str] = tuple(DATASETS),
    bundle_types: Sequence[str] = DEFAULT_BUNDLE_TYPES,
    bundles: Sequence[int] = BUNDLES,
    dense: Sequence[int] = DENSE,
    conv_widths: Sequence[float] = CONV_WIDTHS,
    dense_widths: Sequence[float] = DENSE_WIDTHS,
) -> tuple[list[GridPoint], list[str]]:
    """All valid grid points and the names of those dropped because the
    spatial size collapsed.  A cell without hidden dense layers has one point
    per conv width (there is no dense width to vary)."""
    from .counting import count_network

    points: list[GridPoint] = []
    dropped: list[str] = []
    for ds in datasets:
        if ds not in DATASETS:
            raise UsageError(f"unknown sweep dataset {ds!r} (known: {', '.join(DATASETS)})")
        for bt in bundle_types:
            for nb in bundles:
                for nd in dense:
                    for wc in conv_widths:
                        for wd in (dense_widths if nd else (0.0,)):
                            try:
                                spec = build_spec(ds, bt, nb, nd, wc, wd)
                            except UsageError:
                                dropped.append(grid_name(ds, bt, nb, nd, wc, wd))
                                continue
                            c = count_network(spec)
                            points.append(GridPoint(spec, ds, bt, nb, nd, float(wc), float(wd), c.params, c.macs,
                                                    c.neurons))
    return points, dropped


def corr(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation; NaN with fewer than three points or a constant series."""
    n = len(x)
    if n < 3:
        return float("nan")
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx <= 1e-12 or syy <= 1e-12:
        return float("nan")
    return sum((a - mx) * (b - my) for a, b in zip(x, y)) / math.sqrt(sxx * syy)


def _std(v: Sequence[float]) -> float:
    n = len(v)
    if n < 2:
        return 0.0
    m = sum(v) / n
    return math.sqrt(sum((x - m) ** 2 for x in v) / (n - 1))


def _json_float(r: float) -> float | None:
    return None if math.isnan(r) else round(r, 4)


def correlations(points: Sequence[GridPoint]) -> dict[str, dict[str, float | None]]:
    """Per dataset: Pearson correlations of depth with log params, log neurons
    and log MACs, and of conv depth with dense depth (None where undefined)."""
    out = {}
    for ds in _datasets_of(points):
        pts = [p for p in points if p.dataset == ds]
        depth = [p.depth for p in pts]
        out[ds] = {
            "n": len(pts),
            "depth_log_params": _json_float(corr(depth, [p.log_params for p in pts])),
            "depth_log_neurons": _json_float(corr(depth, [p.log_neurons for p in pts])),
            "depth_log_macs": _json_float(corr(depth, [p.log_macs for p in pts])),
            "conv_depth_dense_depth": _json_float(corr([p.conv_depth for p in pts], [p.dense for p in pts])),
        }
    return out


def _datasets_of(points: Iterable[GridPoint]) -> list[str]:
    order = list(DATASETS)
    return sorted({p.dataset for p in points}, key=lambda d: order.index(d) if d in order else len(order))


# --- selection ----------------------------------------------------------------------


def select(points: Sequence[GridPoint], n: int | None = None, seed: int = 0,
           max_corr: float = MAX_CORR) -> list[GridPoint]:
    """Choose the sweep: ``n`` architectures in all (split evenly between the
    datasets, the first ones taking the remainder), by default one per cell.

    With fewer architectures than cells a balanced subset of the cells is
    taken (each conv and dense depth as often as possible); with more, the
    cells are taken again, each time with other widths.  Raises a one-line
    :class:`UsageError` when no choice meets ``max_corr`` in some dataset."""
    if n is not None and n <= 0:
        raise UsageError(f"--max-architectures must be positive, got {n}")
    datasets = _datasets_of(points)
    if n is not None and n < len(datasets):
        raise UsageError(f"--max-architectures {n} is fewer than one per dataset ({', '.join(datasets)})")
    chosen: list[GridPoint] = []
    for i, ds in enumerate(datasets):
        pts = sorted((p for p in points if p.dataset == ds), key=lambda p: p.spec.name)
        k = None if n is None else n // len(datasets) + (i < n % len(datasets))
        chosen += _select_dataset(pts, k, random.Random(f"{seed}-{ds}"), max_corr)
    return sorted(chosen, key=_grid_order)


def sample(points: Sequence[GridPoint], n: int | None, seed: int = 0, corr_cap: float = MAX_CORR) -> list[GridPoint]:
    """:func:`select` under its former name."""
    return select(points, n, seed, corr_cap)


def _grid_order(p: GridPoint) -> tuple:
    return (list(DATASETS).index(p.dataset), p.bundle_type, p.bundles, p.dense, p.conv_width, p.dense_width)


def _slots(cells: list[tuple], k: int, rng: random.Random) -> list[tuple]:
    """``k`` cells, each cell once per round; within a round the next cell is
    the one whose conv depth and dense depth are rarest so far, then the one
    that keeps corr(conv depth, dense depth) of the slots smallest."""
    slots: list[tuple] = []
    while len(slots) < k:
        left = cells[:]
        rng.shuffle(left)
        while left and len(slots) < k:
            def key(c: tuple) -> tuple:
                conv = [s[2] * (2 if s[1] == "II" else 1) for s in slots]
                dense = [s[3] for s in slots]
                cd, dd = c[2] * (2 if c[1] == "II" else 1), c[3]
                r = corr(conv + [cd], dense + [dd])
                return (conv.count(cd) + dense.count(dd), 0.0 if math.isnan(r) else abs(r))
            best = min(left, key=key)  # min keeps the first of equals: the shuffled order breaks ties
            slots.append(best)
            left.remove(best)
    return slots


def _score(sel: Sequence[GridPoint], max_corr: float, scale: dict[str, float]) -> tuple[float, float]:
    """(violation of the bound, crowding): smaller is better.  Crowding is
    the sum over pairs of 1 / (squared distance + 0.01) in (depth, log params,
    log neurons), each divided by its standard deviation over the grid: a
    repulsion that fills the space rather than piling points in its corners."""
    depth = [p.depth for p in sel]
    rp = corr(depth, [p.log_params for p in sel])
    rn = corr(depth, [p.log_neurons for p in sel])
    violation = sum(max(0.0, abs(r) - max_corr) for r in (rp, rn) if not math.isnan(r))
    xyz = [(p.depth / scale["depth"], p.log_params / scale["log_params"], p.log_neurons / scale["log_neurons"])
           for p in sel]
    crowding = 0.0
    for i, a in enumerate(xyz):
        for b in xyz[i + 1:]:
            crowding += 1.0 / ((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2 + (a[2] - b[2]) ** 2 + 0.01)
    return (round(violation, 9), round(crowding, 9))


def _select_dataset(pts: list[GridPoint], k: int | None, rng: random.Random, max_corr: float,
                    starts: int = 6, max_passes: int = 40) -> list[GridPoint]:
    by_cell: dict[tuple, list[GridPoint]] = {}
    for p in pts:
        by_cell.setdefault(p.cell, []).append(p)
    cells = sorted(by_cell)
    k = len(cells) if k is None else k
    if k > len(pts):
        raise UsageError(f"{pts[0].dataset}: {k} architectures asked for, the grid has only {len(pts)}")
    scale = {a: _std([getattr(p, a) for p in pts]) or 1.0 for a in ("depth", "log_params", "log_neurons")}
    best: tuple[tuple[float, float], list[GridPoint]] | None = None
    if k < len(cells):
        starts *= 4  # each start also draws its own balanced subset of the cells
    slots = _slots(cells, k, rng)
    for start in range(starts):
        # a start: the cheapest width in every slot, then seeded random widths (and cells)
        if start and k < len(cells):
            slots = _slots(cells, k, rng)
        sel: list[GridPoint] = []
        for c in slots:
            free = [p for p in by_cell[c] if p not in sel]
            sel.append(min(free, key=lambda p: p.macs) if start == 0 else rng.choice(free))
        score = _score(sel, max_corr, scale)
        for _ in range(max_passes):
            improved = False
            for i, c in enumerate(slots):
                for p in by_cell[c]:
                    if p in sel:
                        continue
                    trial = sel[:i] + [p] + sel[i + 1:]
                    s = _score(trial, max_corr, scale)
                    if s < score:
                        sel, score, improved = trial, s, True
            if not improved:
                break
        if best is None or score < best[0]:
            best = (score, sel)
    assert best is not None
    if best[0][0] > 0:
        sel = best[1]
        depth = [p.depth for p in sel]
        rp = corr(depth, [p.log_params for p in sel])
        rn = corr(depth, [p.log_neurons for p in sel])
        raise UsageError(
            f"{sel[0].dataset}: no choice of widths for these {k} architectures keeps |corr(depth, log params)| and "
            f"|corr(depth, log neurons)| <= {max_corr:g} (best found: {rp:+.2f} and {rn:+.2f}); add widths, "
            "raise --max-epoch-seconds or --max-corr")
    return best[1]


def take(points: Sequence[GridPoint], n: int) -> list[GridPoint]:
    """At most ``n`` of the selected ``points`` (all if fewer), chosen within each dataset (the
    datasets share ``n`` as :func:`select` does) as the cells of a smaller
    sweep are: each conv depth and each dense depth as often as possible.
    A cross-check on another simulator runs a subset of the *same* networks."""
    datasets = _datasets_of(points)
    if n < len(datasets):
        raise UsageError(f"--take {n} is fewer than one per dataset ({', '.join(datasets)})")
    out: list[GridPoint] = []
    for i, ds in enumerate(datasets):
        pts = sorted((p for p in points if p.dataset == ds), key=lambda p: p.spec.name)
        k = min(len(pts), n // len(datasets) + (i < n % len(datasets)))
        by_cell: dict[tuple, list[GridPoint]] = {}
        for p in pts:
            by_cell.setdefault(p.cell, []).append(p)
        for cell in _slots(sorted(by_cell), k, random.Random(f"take-{ds}")):
            out.append(by_cell[cell].pop(0))
    return sorted(out, key=_grid_order)


def plan(datasets: Sequence[str], max_architectures: int | None, sample_seed: int = 0,
         max_epoch_seconds: float | None = MAX_EPOCH_SECONDS, max_corr: float = MAX_CORR,
         epochs: int | None = None, max_train_images: int | None = None,
         **axes: Sequence[Any]) -> tuple[dict[str, Any], list[GridPoint]]:
    """The sweep plan as a JSON-able dict and the selected points.

    ``axes`` narrows the grid: ``bundle_types``, ``bundles``, ``dense``,
    ``conv_widths``, ``dense_widths`` (see :func:`grid`); ``widths`` sets
    both width axes.  Grid points projected to take longer than
    ``max_epoch_seconds`` (None: no limit) per epoch on ``max_train_images``
    (default: the full training split) are left out first; every cell must
    keep one.  The projected training time is at ``epochs`` (default: the
    protocol's maximum, an upper bound under early stopping)."""
    if axes.get("widths"):
        axes.setdefault("conv_widths", axes["widths"])
        axes.setdefault("dense_widths", axes["widths"])
    axes.pop("widths", None)
    points, dropped = grid(datasets, **{k: v for k, v in axes.items() if v})
    per_epoch = {p.spec.name: p.seconds_per_epoch(max_train_images) for p in points}
    cost = {p.spec.name: p.train_seconds(epochs, max_train_images) for p in points}
    over = [p for p in points if max_epoch_seconds is not None and per_epoch[p.spec.name] > max_epoch_seconds]
    for cell in sorted({p.cell for p in points}):
        if all(p in over for p in points if p.cell == cell):
            cheapest = min((p for p in points if p.cell == cell), key=lambda p: per_epoch[p.spec.name])
            raise UsageError(f"{cell[0]}: no width of {cell[1]}{cell[2]}-d{cell[3]} fits --max-epoch-seconds "
                             f"{max_epoch_seconds:g} (the narrowest is projected at {per_epoch[cheapest.spec.name]:.1f} s "
                             "per epoch); raise it or narrow the grid")
    points = [p for p in points if p not in over]
    chosen = select(points, max_architectures, sample_seed, max_corr)
    return {
        "grid_size": len(points) + len(over) + len(dropped),
        "valid": len(points) + len(over),
        "dropped_collapsed": dropped,
        "over_time_budget": len(over),
        "max_epoch_seconds": max_epoch_seconds,
        "max_corr": max_corr,
        "selected": len(chosen),
        "correlations": correlations(chosen),
        "projected_train_seconds": round(sum(cost[p.spec.name] for p in chosen)),
        "projection": "seconds per epoch = ceil(images / 128) x (%(s_step)g + %(s_step_layer)g x layers) + images x "
                      "(%(s_mac)g x MACs + %(s_neuron)g x neurons), times the maximum epochs" % TIME_MODEL,
        "architectures": [p.as_dict(epochs, max_train_images) for p in chosen],
    }, chosen


# --- running -----------------------------------------------------------------------

KeyFn = Callable[[ArchitectureSpec, Any], str]


@dataclass
class SweepOutcome:
    """What a sweep did: item names per outcome."""

    done: list[str]
    skipped: list[str]
    failed: list[tuple[str, str]]
    left: list[str] = field(default_factory=list)  # held back or stopped by the time budget
    smallest_left: float | None = None  # expected seconds of the smallest item never started


def work_items(points: Iterable[GridPoint], seeds: Sequence[int], settings: Any, run_id: str,
               key: KeyFn | None = None) -> list[Any]:
    """One :class:`effmodel.executors.WorkItem` per (grid point, seed), in grid order.

    The stored model name is the grid name plus ``-s<seed>`` because the
    store's primary key is (run, model, simulator)."""
    from .executors import WorkItem

    if key is None:
        from .pipeline import item_key as key
    items = []
    for point in points:
        for seed in seeds:
            s = replace(settings, seed=seed)
            spec = replace(point.spec, name=f"{point.spec.name}-s{seed}")
            items.append(WorkItem(spec=spec, settings=s, run_id=run_id, family="sweep", key=key(spec, s)))
    return items


def run_sweep(
    points: Iterable[GridPoint],
    seeds: Sequence[int],
    settings: Any,
    store: Any,
    run_id: str,
    executor: Any = None,
    compute: Callable[..., Any] | None = None,
    key: KeyFn | None = None,
    force: bool = False,
    display: Any = None,
    budget: Any = None,
    reuse_across_versions: bool = False,
) -> SweepOutcome:
    """Compute every (grid point, seed) not already in ``store`` and store it.

    ``executor`` is an :class:`effmodel.executors.ExecutorSettings` (default:
    in this process); ``compute(item, workdir)`` defaults to
    :func:`effmodel.pipeline.compute_item` (tests inject fakes); ``force``
    recomputes stored items and replaces them.  Only this process writes the
    store.  A failing item is reported and the sweep goes on; interrupts
    propagate, and finished items stay stored.  ``budget`` (an
    :class:`effmodel.budget.TimeBudget`): items that do not fit are left.
    """
    from .executors import ExecutorSettings, execute

    items = work_items(points, seeds, settings, run_id, key)
    summary = execute(items, store, executor or ExecutorSettings(), force=force, compute=compute, display=display,
                      budget=budget, reuse_across_versions=reuse_across_versions)
    return SweepOutcome(summary.done, summary.skipped, summary.failed, summary.left, summary.smallest_left)
