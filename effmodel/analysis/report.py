"""The report: its sections in order, built from one shared :class:`Context`.

Every entry of :data:`SECTIONS` names a function ``(Context) -> Contribution``
in a module of this package; a new section is one function (or file) plus
one line here.  The first screen (:mod:`effmodel.analysis.summary`) comes
first and receives the other sections' summary lines.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..errors import UsageError
from .render import FORMATS, Document, write

MIN_BOOTSTRAP = 200

SECTIONS = (
    "verdict:verdict_contribution",
    "robustness:robustness_contribution",
    "mechanism:mechanism_contribution",
    "table2:table2_contribution",
    "coststep:coststep_contribution",
    "fair:fair_contribution",
    "dataflows:dataflow_contribution",
    "codes:codes_contribution",
    "figures:accuracy_cost_contribution",
    "figures:seed_spread_contribution",
    "figures:series_contribution",
    "figures:layer_share_contribution",
    "figures:correlation_contribution",
    "regressions:regressions_contribution",
    "regressions:eight_points_contribution",
    "provenance:methods_contribution",
    "provenance:provenance_contribution",
)


@dataclass
class Context:
    """What every section reads: the inputs, the 2019 table, the cost models,
    each simulator's prepared rows and verdict, and (computed once, on first
    use) each simulator's robustness rows."""

    inputs: Any
    results: Any
    paper: Any
    true_params: dict[str, int]
    paper_df: Any
    cost_models: dict[str, Any]
    preps: dict[str, Any]
    verdicts: dict[str, Any]
    headline: str | None
    output: Path | None
    bootstrap: int
    seed: int
    timings: dict[str, float] = field(default_factory=dict)
    _robust: dict[str, list[Any]] = field(default_factory=dict)
    _cost_steps: dict[tuple[str, str, str], Any] | None = None

    @property
    def paper_models(self) -> set[str]:
        return set(self.paper["model"]) if self.paper is not None else set()

    def robustness(self, simulator: str) -> list[Any]:
        if simulator not in self._robust:
            from .robustness import robustness

            t0 = time.perf_counter()
            self._robust[simulator] = robustness(self.results, self.inputs.timesteps, self.inputs.layers, simulator,
                                                 self.bootstrap, self.seed)
            self.timings[f"robustness ({simulator})"] = time.perf_counter() - t0
        return self._robust[simulator]

    def cost_steps(self) -> dict[tuple[str, str, str], Any]:
        """Every result's cost step bootstrapped over its test images
        (:func:`effmodel.analysis.coststep.item_cost_steps`), computed once."""
        if self._cost_steps is None:
            from .coststep import item_cost_steps

            t0 = time.perf_counter()
            self._cost_steps = item_cost_steps(self.inputs, self.cost_models, self.bootstrap, self.seed)
            self.timings["cost steps over images"] = time.perf_counter() - t0
        return self._cost_steps


def context(directory: str | Path | Sequence[str | Path], output: str | Path | None = None,
            bootstrap: int | None = None, seed: int | None = None) -> Context:
    """Read the inputs and fit the primary specification of every simulator."""
    from .frame import load_inputs, with_settings
    from .regressions import paper_frame
    from .robustness import PRIMARY_COST_MODEL, PRIMARY_FIRST_LAYER, cost_models, reprice
    from .table2 import load_paper
    from .verdict import BOOTSTRAP, SEED, headline_simulator, verdict_of
    from .frame import prepare

    B = BOOTSTRAP if bootstrap is None else bootstrap
    s = SEED if seed is None else seed
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    inp = load_inputs(directory)
    results = with_settings(inp.results, inp.runs)
    paper, true_params = load_paper()
    timings["read inputs"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    models = cost_models()
    primary = reprice(results, models[PRIMARY_COST_MODEL], first_layer=PRIMARY_FIRST_LAYER,
                      timesteps=inp.timesteps, layers=inp.layers)
    preps = {k: p for k, p in prepare(primary).items()}
    verdicts = {sim: verdict_of(p, B=B, seed=s) for sim, p in preps.items()}
    headline = headline_simulator(preps) if preps else None
    order = ([headline] if headline else []) + sorted(k for k in verdicts if k != headline)
    timings["primary verdict"] = time.perf_counter() - t0
    return Context(inp, results, paper, true_params, paper_frame(paper, true_params) if paper is not None else None,
                   models, {k: preps[k] for k in order}, {k: verdicts[k] for k in order}, headline,
                   Path(output) if output is not None else None, B, s, timings)


def build(directory: str | Path | Sequence[str | Path], title: str = "effmodel report", output: str | Path | None = None,
          bootstrap: int | None = None, seed: int | None = None) -> Document:
    """The whole report of one or more output folders."""
    from .summary import first_screen

    ctx = context(directory, output, bootstrap, seed)
    sections, lines = [], []
    for entry in SECTIONS:
        module, func = entry.split(":")
        t0 = time.perf_counter()
        c = getattr(importlib.import_module(f".{module}", __package__), func)(ctx)
        ctx.timings[f"section {func}"] = ctx.timings.get(f"section {func}", 0.0) + time.perf_counter() - t0
        sections += c.sections
        lines += c.summary_lines
    return Document(title, first_screen(ctx, lines).sections + sections)


def generate(input_dir: str | Path | Sequence[str | Path], output: str | Path | None = None,
             formats: Sequence[str] = FORMATS, bootstrap: int | None = None, seed: int | None = None) -> list[Path]:
    """Build the report of one or more output folders and write it (default: into the first)."""
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UsageError(f"--format: unknown {', '.join(bad) or '(empty)'} (use {', '.join(FORMATS)})")
    if bootstrap is not None and bootstrap < MIN_BOOTSTRAP:
        raise UsageError(f"--bootstrap must be at least {MIN_BOOTSTRAP} (a 95% percentile interval needs the tails), "
                         f"got {bootstrap}")
    first = input_dir if isinstance(input_dir, (str, Path)) else list(input_dir)[0]
    out = output if output is not None else first
    doc = build(input_dir, output=out, bootstrap=bootstrap, seed=seed)
    return write(doc, out, formats)
