"""Cost models: turn operation counts into comparable costs.

The ANN is charged per operation, the SNN per synaptic operation (and, where
a model gives it, per neuron update).  Two ANN conventions exist:

``half-flops`` (the report): ``FLOPs/2 x mac + FLOPs/2 x add``: half of all
FLOPs are taken as MACs at ``mac`` each, the other half as additions.
With ``mac = 14`` and ``add = 1`` in SynOp units this is the report's
Total-Costs.

``macs`` (energy presets): ``MACs x mac + bias additions x add``.

Factor = ANN cost / SNN cost; above 1 the SNN is cheaper.

``accounting = "access"`` (the fair presets, issue 13) prices both networks
by the same rules over the per-layer work of :mod:`effmodel.counting`
(arithmetic *and* memory accesses, see the access model there): MACs at
``mac``, SynOps and pooling taps at ``synop``/``add``, neuron activations
and neuron updates at ``neuron_activation``/``neuron_update``, and every
memory access at the energy of the smallest SRAM in ``sram`` that holds the
tensor it touches (``word_bits`` per value, one bit per spike), ``dram``
beyond the largest.  ``zero_skipping`` prices the ANN's effective MACs
instead of its dense ones; ``first_layer`` says how often the SNN pays for
its analog first layer (``excluded``, ``once``, ``every-step``).  A preset
may give any per-operation energy as an interval in ``ranges``; the factor
is then an exact interval (:meth:`CostModel.factor_interval`).
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from .counting import FIRST_LAYER_POLICIES, LayerWork, NetworkCount, NetworkWork, ann_accesses, snn_accesses
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
    # --- fair accounting (accounting = "access"); the defaults keep the old presets unchanged
    accounting: str = "ops"  # "ops": the per-operation formulas above; "access": per-layer work incl. memory
    zero_skipping: bool = False  # ANN pays only for MACs whose input is nonzero
    first_layer: str = "excluded"  # how often the SNN pays its analog first layer: excluded, once, every-step
    neuron_activation: float = 0.0  # ANN: bias add + ReLU per conv/dense output
    word_bits: int = 32  # bits per stored weight, activation or membrane potential
    sram: tuple[tuple[float, float], ...] = ()  # (capacity in bytes, energy per access), smallest first
    dram: float = 0.0  # energy per access beyond the largest SRAM
    comparison: str = ""  # e.g. "same-node 45 nm" or "cross-node: ..."
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # field -> (low, high)
    citations: Mapping[str, str] = field(default_factory=dict)  # field -> where its number comes from

    def __post_init__(self) -> None:
        object.__setattr__(self, "sram", tuple(sorted((float(c), float(e)) for c, e in self.sram)))
        object.__setattr__(self, "ranges", {k: (float(v[0]), float(v[1])) for k, v in dict(self.ranges).items()})
        object.__setattr__(self, "citations", dict(self.citations))
        if self.accounting not in ("ops", "access"):
            raise UsageError(f"cost model {self.name!r}: accounting must be 'ops' or 'access', got {self.accounting!r}")
        if self.first_layer not in FIRST_LAYER_POLICIES:
            raise UsageError(f"cost model {self.name!r}: first_layer must be one of {', '.join(FIRST_LAYER_POLICIES)}, "
                             f"got {self.first_layer!r}")
        for key, (lo, hi) in self.ranges.items():
            if key not in RANGE_FIELDS:
                raise UsageError(f"cost model {self.name!r}: ranges.{key} is not an energy field ({', '.join(RANGE_FIELDS)})")
            if not 0 <= lo <= hi:
                raise UsageError(f"cost model {self.name!r}: ranges.{key} must be [low, high] with 0 <= low <= high")

    @property
    def mac_to_synop(self) -> float:
        """The MAC:SynOp cost ratio this model implies."""
        return self.mac / self.synop

    # --- memory -------------------------------------------------------------
    def access_energy(self, nbytes: float) -> float:
        """Energy of one access to a tensor of ``nbytes``: the smallest SRAM
        that holds it, DRAM beyond the largest (0 if the model has no memory)."""
        for capacity, energy in self.sram:
            if nbytes <= capacity:
                return energy
        return self.dram

    def _memory(self, layer: LayerWork, side: str) -> tuple[float, float]:
        """(input-layer part, rest) of ``layer``'s memory energy on ``side``."""
        word = self.word_bits / 8
        acc = ann_accesses(layer, self.zero_skipping) if side == "ann" else snn_accesses(layer, self.first_layer, self.zero_skipping)
        e_w = self.access_energy(layer.params * word)
        e_in = self.access_energy(layer.inputs * word)
        e_state = self.access_energy(layer.neurons * word)
        taps = acc.weight_reads * e_w + acc.act_reads * e_in  # the synaptic (MAC) traffic
        rest = ((acc.act_writes + acc.membrane_reads + acc.membrane_writes) * e_state
                + acc.spike_reads * self.access_energy(layer.inputs / 8)
                + acc.spike_writes * self.access_energy(layer.neurons / 8))
        return (taps, rest) if layer.first else (0.0, taps + rest)

    # --- per-layer pricing (accounting = "access") ---------------------------
    def layer_costs(self, layer: LayerWork) -> "LayerCost":
        ops = layer.ann_ops(self.zero_skipping)
        ann_syn = ops * (self.mac if layer.has_weights else self.add)
        ann_neuron = layer.ann_neuron_activations * self.neuron_activation
        snn_input = layer.snn_input_macs(self.first_layer, self.zero_skipping) * self.mac
        snn_syn = layer.synops * self.synop
        snn_neuron = layer.snn_neuron_updates * self.neuron_update
        ann_mem_in, ann_mem = self._memory(layer, "ann")
        snn_mem_in, snn_mem = self._memory(layer, "snn")
        return LayerCost(
            name=layer.name, type=layer.type,
            ann=SideCost(arithmetic=0.0 if layer.first else ann_syn, memory=ann_mem, neuron=ann_neuron,
                         input_layer=(ann_syn + ann_mem_in) if layer.first else 0.0),
            snn=SideCost(arithmetic=snn_syn, memory=snn_mem, neuron=snn_neuron, input_layer=snn_input + snn_mem_in),
            ann_split=(ann_syn + ann_neuron, ann_mem + ann_mem_in),
            snn_split=(snn_syn + snn_neuron + snn_input, snn_mem + snn_mem_in),
        )

    def breakdown(self, work: NetworkWork, counts: NetworkCount | None = None) -> "CostBreakdown":
        """ANN and SNN cost split into arithmetic, memory, neuron updates
        (activations) and the input layer, with the per-layer split.

        ``ops`` models price the classic way (``counts`` needed for the ANN):
        everything is arithmetic, memory is 0, the input layer is excluded.
        """
        if self.accounting == "ops":
            if counts is None:
                raise UsageError(f"cost model {self.name!r} needs the network's counts")
            synops = work.total("synops")
            ann = SideCost(arithmetic=self.ann_cost(counts))
            snn = SideCost(arithmetic=synops * self.synop, neuron=work.snn_neuron_updates * self.neuron_update)
            return CostBreakdown(model=self.name, ann=ann, snn=snn, layers=())
        layers = tuple(self.layer_costs(l) for l in work.layers)
        return CostBreakdown(model=self.name, ann=sum((l.ann for l in layers), SideCost()),
                             snn=sum((l.snn for l in layers), SideCost()), layers=layers)

    def factor_interval(self, work: NetworkWork, counts: NetworkCount | None = None) -> tuple[float, float]:
        """The factor's exact range when every energy in ``ranges`` may lie
        anywhere in its interval.

        The factor is a ratio of two sums, each linear in every energy with
        non-negative coefficients: for fixed other energies it is
        ``(a x + b) / (c x + d)``, monotone in ``x``.  Its extremes over the box
        of intervals therefore lie at corners, and trying every corner is exact.
        """
        keys = list(self.ranges)
        values = [self.breakdown(work, counts).factor]
        for corner in itertools.product(*(self.ranges[k] for k in keys)):
            values.append(replace(self, ranges={}, **dict(zip(keys, corner))).breakdown(work, counts).factor)
        if not keys:
            return values[0], values[0]
        values = values[1:]
        return min(values), max(values)

    def break_even_ratio(self, work: NetworkWork, counts: NetworkCount | None = None) -> float | None:
        """The MAC:SynOp energy ratio (``mac / synop``, every other energy as
        the model has it) at which the factor is exactly 1.

        Both costs are linear in ``mac`` (the SNN's through its first-layer
        MACs), so two evaluations solve it.  Below 0: the SNN is cheaper at
        any ratio; ``None``: no ratio balances them (the ANN's MACs are not
        more than the SNN's).
        """
        b0 = replace(self, ranges={}, mac=0.0).breakdown(work, counts)
        b1 = replace(self, ranges={}, mac=1.0).breakdown(work, counts)
        slope = (b1.ann.total - b0.ann.total) - (b1.snn.total - b0.snn.total)
        if slope <= 0:
            return None
        return (b0.snn.total - b0.ann.total) / slope / self.synop

    def ann_cost(self, counts: NetworkCount) -> float:
        if self.accounting == "access":
            return self.breakdown(work_from_counts(counts)).ann.total
        if self.ann_convention == "half-flops":
            flops = counts.flops(self.flop_convention)
            return flops / 2 * self.mac + flops / 2 * self.add
        if self.ann_convention == "macs":
            return counts.macs * self.mac + sum(l.bias_adds for l in counts.layers) * self.add
        raise UsageError(f"cost model {self.name!r}: unknown ann_convention {self.ann_convention!r}")

    def snn_cost(self, synops: float, neuron_updates: float = 0.0) -> float:
        """The SNN's arithmetic from totals alone (an ``access`` model's full
        price needs the per-layer work: :meth:`breakdown`)."""
        return synops * self.synop + neuron_updates * self.neuron_update

    def factor(self, counts: NetworkCount, synops: float, neuron_updates: float = 0.0) -> float:
        snn = self.snn_cost(synops, neuron_updates)
        return self.ann_cost(counts) / snn if snn > 0 else float("inf")


RANGE_FIELDS = ("mac", "add", "synop", "neuron_update", "neuron_activation", "dram")


@dataclass(frozen=True)
class SideCost:
    """One network's cost by kind."""

    arithmetic: float = 0.0  # MACs, SynOps, pooling (first layer excluded)
    memory: float = 0.0  # accesses (those of the first layer's input MACs excluded)
    neuron: float = 0.0  # ANN neuron activations / SNN neuron updates
    input_layer: float = 0.0  # the first layer's MACs and their weight and input reads

    @property
    def total(self) -> float:
        return self.arithmetic + self.memory + self.neuron + self.input_layer

    def __add__(self, other: "SideCost") -> "SideCost":
        return SideCost(self.arithmetic + other.arithmetic, self.memory + other.memory,
                        self.neuron + other.neuron, self.input_layer + other.input_layer)


@dataclass(frozen=True)
class LayerCost:
    """One layer's cost on both sides; ``*_split`` is (arithmetic incl.
    neuron work, memory), the input layer's MACs and reads divided likewise."""

    name: str
    type: str
    ann: SideCost
    snn: SideCost
    ann_split: tuple[float, float] = (0.0, 0.0)
    snn_split: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class CostBreakdown:
    """ANN vs SNN cost of one network under one model; factor = ANN / SNN."""

    model: str
    ann: SideCost
    snn: SideCost
    layers: tuple[LayerCost, ...] = ()

    @property
    def factor(self) -> float:
        return self.ann.total / self.snn.total if self.snn.total > 0 else float("inf")


def work_from_counts(counts: NetworkCount) -> NetworkWork:
    """The ANN side of :class:`NetworkWork` from static counts alone (dense
    MACs, no SNN activity): enough to price an ANN."""
    from .counting import POOL_TYPES, _prod

    layers, first = [], True
    for i, c in enumerate(counts.layers):
        if c.type not in ("conv2d", "dense", *POOL_TYPES):
            continue
        layers.append(LayerWork(name=c.name, type=c.type, index=i, inputs=_prod(c.input_shape), params=c.params,
                                neurons=c.neurons, dense_ops=float(c.synapses), effective_ops=float(c.synapses),
                                synops=0.0, spikes_in=0.0, spikes_out=0.0, steps=0, first=first))
        first = False
    return NetworkWork(spec_name=counts.spec_name, steps=0, layers=tuple(layers))


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
