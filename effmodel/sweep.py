"""Architecture sweeps: CNN families on a grid, sampled so depth and size vary apart.

The grid follows the report's construction (section 2.2): ``1..4``
convolutional bundles of type I (Conv valid, MaxPool, Dropout .25) or type II
(Conv same, Conv valid, MaxPool, Dropout .25), then Flatten, ``1..3`` hidden
Dense layers and the Dense(10) softmax classifier.  Widths are the reference
models' base widths times a multiplier (x0.5 .. x4): convolution filters
double per bundle from 16 (MNIST) / 32 (CIFAR-10), as in LargeCNN1/2; the
first hidden Dense layer has 64 (MNIST) / 256 (CIFAR-10) units and each
further one half of the previous (as DeepCNN1's 64-32-16).  Dropout after the
dense stack is .5 for one hidden layer and .35 for several (the reference
models).  Grid points whose spatial size collapses are dropped.

In the full grid, depth and log(parameters) are related (more bundles shrink
the flattened map and with it the first dense layer), so a sweep smaller than
the grid is chosen greedily to keep their within-dataset correlation low
while spreading the points out (maximin distance): otherwise a regression
could not tell the two effects apart, which is the very question asked.

A sweep is resumable: an item whose :func:`effmodel.pipeline.item_key`
already has a result for the simulator in the store is skipped.  Items are
computed by an executor (this process, a local pool or Ray tasks, see
:mod:`effmodel.executors`); only the driver writes the store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Sequence

from .errors import UsageError
from .specs import ArchitectureSpec, spec_from_dict

DATASETS: dict[str, dict[str, Any]] = {
    "mnist": {"input_shape": (28, 28, 1), "conv_base": 16, "dense_base": 64, "epochs": 25},
    "cifar10": {"input_shape": (32, 32, 3), "conv_base": 32, "dense_base": 256, "epochs": 35},
}
BUNDLE_TYPES = ("I", "II")
BUNDLES = (1, 2, 3, 4)
DENSE = (1, 2, 3)
WIDTHS = (0.5, 1.0, 2.0, 4.0)


@dataclass(frozen=True)
class GridPoint:
    """One architecture of the sweep with its grid coordinates."""

    spec: ArchitectureSpec
    dataset: str
    bundle_type: str
    bundles: int
    dense: int
    width: float
    params: int
    macs: int

    @property
    def depth(self) -> int:
        return self.spec.depth

    @property
    def log_params(self) -> float:
        return math.log(self.params)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.spec.name, "dataset": self.dataset, "bundle_type": self.bundle_type, "bundles": self.bundles,
            "dense_hidden": self.dense, "width": self.width, "depth": self.depth, "conv_layers": self.spec.conv_layers,
            "dense_layers": self.spec.dense_layers, "params": self.params, "log_params": round(self.log_params, 4),
            "macs": self.macs,
        }


def grid_name(dataset: str, bundle_type: str, bundles: int, dense: int, width: float) -> str:
    """``sw-<dataset>-<type><bundles>-d<dense>-w<width>``, e.g. ``sw-mnist-II2-d2-w1.0``."""
    return f"sw-{dataset}-{bundle_type}{bundles}-d{dense}-w{width:.1f}"


def build_spec(dataset: str, bundle_type: str, bundles: int, dense: int, width: float) -> ArchitectureSpec:
    """The spec of one grid point; raises :class:`UsageError` if it collapses."""
    if dataset not in DATASETS:
        raise UsageError(f"unknown sweep dataset {dataset!r} (known: {', '.join(DATASETS)})")
    if bundle_type not in BUNDLE_TYPES:
        raise UsageError(f"bundle type must be I or II, got {bundle_type!r}")
    base = DATASETS[dataset]
    layers: list[dict[str, Any]] = []
    for b in range(bundles):
        filters = max(1, int(round(base["conv_base"] * 2 ** b * width)))
        if bundle_type == "II":
            layers.append({"type": "conv2d", "filters": filters, "kernel": 3, "padding": "same"})
        layers.append({"type": "conv2d", "filters": filters, "kernel": 3, "padding": "valid"})
        layers += [{"type": "maxpool", "pool": 2}, {"type": "dropout", "rate": 0.25}]
    layers.append({"type": "flatten"})
    units = base["dense_base"] * width
    for _ in range(dense):
        layers.append({"type": "dense", "units": max(1, int(round(units)))})
        units /= 2
    layers.append({"type": "dropout", "rate": 0.5 if dense == 1 else 0.35})
    layers.append({"type": "dense", "units": 10, "activation": "softmax"})
    d = {
        "name": grid_name(dataset, bundle_type, bundles, dense, width), "dataset": dataset,
        "input_shape": list(base["input_shape"]), "layers": layers, "epochs": base["epochs"],
        "description": f"sweep: {bundles} type-{bundle_type} bundle(s), {dense} hidden dense, width x{width:g}",
    }
    return spec_from_dict(d, source="effmodel.sweep")  # validation rejects collapsed maps


def grid(
    datasets: Sequence[str] = tuple(DATASETS),
    bundle_types: Sequence[str] = BUNDLE_TYPES,
    bundles: Sequence[int] = BUNDLES,
    dense: Sequence[int] = DENSE,
    widths: Sequence[float] = WIDTHS,
) -> tuple[list[GridPoint], list[str]]:
    """All valid grid points and the names of those dropped because the
    spatial size collapsed."""
    from .counting import count_network

    points: list[GridPoint] = []
    dropped: list[str] = []
    for ds in datasets:
        if ds not in DATASETS:
            raise UsageError(f"unknown sweep dataset {ds!r} (known: {', '.join(DATASETS)})")
        for bt in bundle_types:
            for nb in bundles:
                for nd in dense:
                    for w in widths:
                        try:
                            spec = build_spec(ds, bt, nb, nd, w)
                        except UsageError:
                            dropped.append(grid_name(ds, bt, nb, nd, w))
                            continue
                        c = count_network(spec)
                        points.append(GridPoint(spec, ds, bt, nb, nd, float(w), c.params, c.macs))
    return points, dropped


def _corr(x: Sequence[float], y: Sequence[float]) -> float:
    n = len(x)
    if n < 3:
        return float("nan")
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return float("nan")
    return sum((a - mx) * (b - my) for a, b in zip(x, y)) / math.sqrt(sxx * syy)


def _centred(points: Sequence[GridPoint], attr: str) -> list[float]:
    """``attr`` minus its dataset mean (removes the dataset effect)."""
    groups: dict[str, list[float]] = {}
    for p in points:
        groups.setdefault(p.dataset, []).append(getattr(p, attr))
    means = {k: sum(v) / len(v) for k, v in groups.items()}
    return [getattr(p, attr) - means[p.dataset] for p in points]


def correlations(points: Sequence[GridPoint]) -> dict[str, float]:
    """Pearson correlation of depth and log(params): pooled and within dataset."""
    return {
        "corr_depth_log_params": _corr([p.depth for p in points], [p.log_params for p in points]),
        "corr_within_dataset": _corr(_centred(points, "depth"), _centred(points, "log_params")),
    }


def sample(points: Sequence[GridPoint], n: int | None, seed: int = 0, corr_cap: float = 0.3) -> list[GridPoint]:
    """Choose ``n`` points (all if ``n`` is None or too large).

    Greedy: datasets take turns; each turn adds, among the candidates that
    keep the within-dataset |corr(depth, log params)| of the chosen set at
    most ``corr_cap``, the one farthest (standardised depth/log-params
    distance) from the points already chosen; if none keeps the cap, the one
    with the smallest |corr|.  Ties are broken by a seeded random order.
    """
    import random

    pts = list(points)
    if n is None or n >= len(pts):
        return pts
    if n <= 0:
        raise UsageError(f"--max-architectures must be positive, got {n}")
    rng = random.Random(seed)
    rng.shuffle(pts)
    sd = {a: (_std([getattr(p, a) for p in pts]) or 1.0) for a in ("depth", "log_params")}

    def dist(a: GridPoint, b: GridPoint) -> float:
        return math.hypot((a.depth - b.depth) / sd["depth"], (a.log_params - b.log_params) / sd["log_params"])

    datasets = sorted({p.dataset for p in pts}, key=lambda d: list(DATASETS).index(d) if d in DATASETS else 99)
    chosen: list[GridPoint] = []
    remaining = pts[:]
    turn = 0
    while len(chosen) < n and remaining:
        ds = datasets[turn % len(datasets)]
        turn += 1
        cands = [p for p in remaining if p.dataset == ds]
        if not cands:  # this dataset is exhausted; the others take its turns
            continue
        same = [c for c in chosen if c.dataset == ds]
        scored = []
        for i, c in enumerate(cands):
            trial = chosen + [c]
            r = _corr(_centred(trial, "depth"), _centred(trial, "log_params"))
            r = 0.0 if math.isnan(r) else abs(r)
            md = min((dist(c, s) for s in same), default=float("inf"))
            scored.append((r, md, i, c))
        ok = [s for s in scored if s[0] <= corr_cap]
        pick = max(ok, key=lambda s: (s[1], -s[2])) if ok else min(scored, key=lambda s: (s[0], s[2]))
        chosen.append(pick[3])
        remaining.remove(pick[3])
    return sorted(chosen, key=lambda p: (list(DATASETS).index(p.dataset), p.bundle_type, p.bundles, p.dense, p.width))


def _std(v: Sequence[float]) -> float:
    n = len(v)
    if n < 2:
        return 0.0
    m = sum(v) / n
    return math.sqrt(sum((x - m) ** 2 for x in v) / (n - 1))


def plan(datasets: Sequence[str], max_architectures: int | None, sample_seed: int = 0,
         **axes: Sequence[Any]) -> tuple[dict[str, Any], list[GridPoint]]:
    """The sweep plan as a JSON-able dict (grid size, dropped points,
    correlations, selected architectures) and the selected points.

    ``axes`` narrows the grid: ``bundle_types``, ``bundles``, ``dense``,
    ``widths`` (see :func:`grid`)."""
    points, dropped = grid(datasets, **{k: v for k, v in axes.items() if v})
    chosen = sample(points, max_architectures, sample_seed)
    return {
        "grid_size": len(points) + len(dropped),
        "valid": len(points),
        "dropped_collapsed": dropped,
        "selected": len(chosen),
        "grid_correlation": correlations(points),
        "selected_correlation": correlations(chosen),
        "architectures": [p.as_dict() for p in chosen],
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
