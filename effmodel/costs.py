"""Cost models: turn operation counts into comparable costs.

The ANN is charged per operation, the SNN per synaptic operation (and, where
a model gives it, per neuron update).  Two ANN conventions exist:

``half-flops`` (the report): ``FLOPs/2 x mac + FLOPs/2 x add``: half of all
FLOPs are taken as MACs at ``mac`` each, the other half as additions.
With ``mac = 14`` and ``add = 1`` in SynOp units this is the report's
Total-Costs.

``macs`` (energy presets): ``MACs x mac + bias additions x add``.

Factor = ANN cost / SNN cost; above 1 the SNN is cheaper.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from .counting import NetworkCount
from .errors import UsageError


@dataclass(frozen=True)
class CostModel:
    """Per-operation costs in ``unit`` with the source they come from."""

    name: str
    mac: float
    add: float
    synop: float
    neuron_update: float = 0.0
    ann_convention: str = "macs"  # or "half-flops"
    flop_convention: str = "exact"  # FLOPs fed to half-flops: exact, snntoolbox, 2mac
    unit: str = "pJ"
    description: str = ""
    citation: str = ""

    @property
    def mac_to_synop(self) -> float:
        """The MAC:SynOp cost ratio this model implies."""
        return self.mac / self.synop

    def ann_cost(self, counts: NetworkCount) -> float:
        if self.ann_convention == "half-flops":
            flops = counts.flops(self.flop_convention)
            return flops / 2 * self.mac + flops / 2 * self.add
        if self.ann_convention == "macs":
            return counts.macs * self.mac + sum(l.bias_adds for l in counts.layers) * self.add
        raise UsageError(f"cost model {self.name!r}: unknown ann_convention {self.ann_convention!r}")

    def snn_cost(self, synops: float, neuron_updates: float = 0.0) -> float:
        return synops * self.synop + neuron_updates * self.neuron_update

    def factor(self, counts: NetworkCount, synops: float, neuron_updates: float = 0.0) -> float:
        snn = self.snn_cost(synops, neuron_updates)
        return self.ann_cost(counts) / snn if snn > 0 else float("inf")


def validate_cost_model(model: CostModel) -> list[str]:
    """What is wrong with ``model`` (empty if nothing), checked when a plugin registers it.

    Every numeric field must be a finite, non-negative cost and ``synop``
    positive; the model must price a small real network (``ann_cost``, which
    rejects an unknown ``ann_convention``) and a SNN run (``snn_cost``) as
    finite non-negative numbers; a ``flop_convention`` must be one that
    :meth:`NetworkCount.flops` knows.  Fields are read generically, so new
    fields do not break the check.
    """
    import dataclasses
    import math
    from numbers import Real

    problems = []
    fields = [f.name for f in dataclasses.fields(model)] if dataclasses.is_dataclass(model) else []
    for name in fields:
        value = getattr(model, name)
        if isinstance(value, Real) and not isinstance(value, bool) and not (math.isfinite(value) and value >= 0):
            problems.append(f"{name} must be a finite non-negative cost, got {value!r}")
    synop = getattr(model, "synop", None)
    if isinstance(synop, Real) and synop == 0:
        problems.append("synop must be positive (the SNN's cost per synaptic operation)")
    if problems:
        return problems
    probe = _probe_counts()
    checks = [("ann_cost", lambda: model.ann_cost(probe)), ("snn_cost", lambda: model.snn_cost(1000.0, 10.0))]
    if hasattr(model, "flop_convention"):
        checks.append(("flop_convention", lambda: probe.flops(model.flop_convention)))
    for what, call in checks:
        try:
            value = call()
        except Exception as exc:  # noqa: BLE001 - reported, the model is skipped
            problems.append(f"{what}: {type(exc).__name__}: {' '.join(str(exc).split())}")
            continue
        if not isinstance(value, Real) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            problems.append(f"{what} must give a finite non-negative number, gave {value!r}")
    return problems


def _probe_counts() -> NetworkCount:
    """Counts of a small real network (conv, pool, dense) to try a cost model on."""
    from .counting import count_network
    from .specs import ArchitectureSpec, LayerSpec

    spec = ArchitectureSpec(
        name="cost-model-probe", dataset="mnist", input_shape=(8, 8, 1),
        layers=(
            LayerSpec(type="conv2d", name="conv", filters=2, kernel=3),
            LayerSpec(type="maxpool", name="pool", pool=2),
            LayerSpec(type="flatten", name="flatten"),
            LayerSpec(type="dense", name="out", units=3, activation="softmax"),
        ),
    )
    return count_network(spec)


def load_cost_models(path: str | Path) -> list[CostModel]:
    """Cost models from a TOML file with one ``[models.NAME]`` table each."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read cost models from {p}: {exc}") from None
    models = []
    for name, fields in data.get("models", {}).items():
        try:
            models.append(CostModel(name=name, **fields))
        except TypeError as exc:
            raise UsageError(f"cost model {name!r} in {p}: {exc}") from None
    return models
