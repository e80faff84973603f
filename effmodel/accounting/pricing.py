"""Cost models: turn operation counts into comparable costs.

The ANN is charged per operation, the SNN per synaptic operation (and, where
a model gives it, per neuron update).  Two ANN conventions exist:

``half-flops`` (the report): ``FLOPs/2 x mac + FLOPs/2 x add``: half of all
FLOPs are taken as MACs at ``mac`` each, the other half as additions.
With ``mac = 14`` and ``add = 1`` in SynOp units this is the report's
Total-Costs.

``macs`` (energy presets): ``MACs x mac + bias additions x add``.

Factor = ANN cost / SNN cost; above 1 the SNN is cheaper.

``accounting = "access"`` (the fair presets, issues 13 and 22) prices
both networks by the same rules over the per-layer work of
:mod:`effmodel.accounting.work` (arithmetic *and* memory accesses): MACs at
``mac``; SynOps into neurons at ``synop``; pooling taps (and SynOps into a
spiking max pool, which has no membrane) at ``add``; neuron activations and
neuron updates at ``neuron_activation``/``neuron_update``; every memory
access as the memory model prices it (:mod:`effmodel.accounting.memory`)
for the memory the access policies say it is served from
(:mod:`effmodel.accounting.access`: ``dataflow``, ``zero_skipping``,
``first_layer``, ``spike_events``, bits per value, ``on_chip_bytes``,
``membrane_buffer``).  A preset may give any per-operation energy as an
interval in ``ranges``; the factor is then an exact interval
(:meth:`CostModel.factor_interval`).  Two break-evens:
:meth:`CostModel.break_even_ratio` (the MAC:SynOp energy ratio) and
:meth:`CostModel.break_even_synops_per_synapse` (Dampfhoffer et al.'s
SynOps per synapse per inference).

A preset also says how the report uses it (``report_role``) and what it
``counts`` and ``leaves_out``; the report reads cost models only through
the plugin registry (:mod:`effmodel.accounting.reprice`).
"""

from __future__ import annotations

import itertools
import math
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Mapping

from ..errors import UsageError
from .access import (DATAFLOWS, EVENTS, FIRST_LAYER_POLICIES, SYNAPTIC_KINDS, Access, Storage, dataflow_policy,
                     first_layer_policy, operand_policy, snn_layer_accesses)
from .memory import CURVES, MemoryModel
from .ops import NetworkCount
from .work import LayerWork, NetworkWork, work_from_counts

MEMBRANE_BUFFERS = ("layer", "network")


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
    # --- second pass (issue 22); the defaults keep the first fair presets unchanged
    dataflow: str = "no-reuse"  # the ANN's dataflow: no-reuse, ideal-reuse, row-stationary
    pe_count: int = 168  # row-stationary: processing elements
    rf_bytes: int = 512  # row-stationary: register file per PE, bytes
    glb_bytes: int = 110592  # row-stationary: global buffer (108 KB)
    memory_curve: str = "steps"  # steps or continuous (see effmodel.accounting.memory)
    access_bits: int = 64  # the width the sram/dram energies are quoted for
    charge_width: bool = False  # charge an access by its width (bits / access_bits), not as a whole access
    weight_bits: int = 0  # 0: word_bits
    act_bits: int = 0  # 0: word_bits
    membrane_bits: int = 0  # 0: word_bits
    spike_events: str = "bit"  # bit or address
    on_chip_bytes: int = 0  # global on-chip capacity in bytes, 0: no limit
    membrane_buffer: str = "layer"  # layer: each layer's potentials in their own memory; network: one shared buffer
    ann_act_bits_from_steps: bool = False  # low-bit ANN: ceil(log2(T+1))-bit activations, mac quoted at 8 bits
    report_role: str = ""  # how the report uses it: headline, fair, fair-zero-skipping, dataflow, quantised, ...
    counts: str = ""  # what it counts (shown in the report)
    leaves_out: str = ""  # what it leaves out (shown in the report)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sram", tuple(sorted((float(c), float(e)) for c, e in self.sram)))
        object.__setattr__(self, "ranges", {k: (float(v[0]), float(v[1])) for k, v in dict(self.ranges).items()})
        object.__setattr__(self, "citations", dict(self.citations))
        if self.accounting not in ("ops", "access"):
            raise UsageError(f"cost model {self.name!r}: accounting must be 'ops' or 'access', got {self.accounting!r}")
        if self.first_layer not in FIRST_LAYER_POLICIES:
            raise UsageError(f"cost model {self.name!r}: first_layer must be one of {', '.join(FIRST_LAYER_POLICIES)}, "
                             f"got {self.first_layer!r}")
        for key, choices in (("dataflow", DATAFLOWS), ("memory_curve", CURVES), ("spike_events", EVENTS),
                             ("membrane_buffer", MEMBRANE_BUFFERS)):
            if getattr(self, key) not in choices:
                raise UsageError(f"cost model {self.name!r}: {key} must be one of {', '.join(choices)}, "
                                 f"got {getattr(self, key)!r}")
        if self.dataflow == "row-stationary" and min(self.pe_count, self.rf_bytes, self.glb_bytes) <= 0:
            raise UsageError(f"cost model {self.name!r}: row-stationary needs pe_count, rf_bytes and glb_bytes above 0")
        if self.access_bits <= 0:
            raise UsageError(f"cost model {self.name!r}: access_bits must be above 0, got {self.access_bits!r}")
        cited = set(self.citations) - {f.name for f in fields(self)}
        if cited:
            raise UsageError(f"cost model {self.name!r}: citations.{sorted(cited)[0]} is not a field of a cost model")
        for key, (lo, hi) in self.ranges.items():
            if key not in RANGE_FIELDS:
                raise UsageError(f"cost model {self.name!r}: ranges.{key} is not an energy field ({', '.join(RANGE_FIELDS)})")
            if not 0 <= lo <= hi:
                raise UsageError(f"cost model {self.name!r}: ranges.{key} must be [low, high] with 0 <= low <= high")

    # --- the policies this model's fields choose (effmodel.accounting.access) ----
    @property
    def dataflow_policy(self):
        return dataflow_policy(self.dataflow, pe_count=self.pe_count, rf_bytes=self.rf_bytes, glb_bytes=self.glb_bytes)

    @property
    def operand_policy(self):
        return operand_policy(self.zero_skipping)

    @property
    def first_layer_policy(self):
        return first_layer_policy(self.first_layer)

    @property
    def storage(self) -> Storage:
        return Storage(weight_bits=self.weight_bits or self.word_bits, act_bits=self.act_bits or self.word_bits,
                       membrane_bits=self.membrane_bits or self.word_bits, events=EVENTS[self.spike_events],
                       on_chip_bytes=self.on_chip_bytes or math.inf, membrane_buffer=self.membrane_buffer)

    @property
    def memory(self) -> MemoryModel:
        return MemoryModel(points=self.sram, dram=self.dram, curve=self.memory_curve, access_bits=self.access_bits,
                           charge_width=self.charge_width)

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

    def _price(self, accesses: "list[Access]", first: bool) -> tuple[float, float]:
        """(input-layer part, rest) of the energy of ``accesses``: a first
        layer's synaptic traffic (weights, inputs, partial sums) belongs to
        the input layer, as its MACs do."""
        memory = self.memory
        taps = rest = 0.0
        for a in accesses:
            e = a.count * memory.energy(a.store_bytes, a.bits) if a.count else 0.0
            if first and a.kind in SYNAPTIC_KINDS:
                taps += e
            else:
                rest += e
        return taps, rest

    def ann_layer_accesses(self, layer: LayerWork) -> "list[Access]":
        return self.dataflow_policy.ann(layer, self.operand_policy, self.storage)

    def snn_layer_accesses(self, layer: LayerWork, work: NetworkWork | None = None) -> "list[Access]":
        return snn_layer_accesses(layer, work, self.first_layer_policy, self.operand_policy, self.storage)

    def at_steps(self, steps: int) -> "CostModel":
        """A low-bit ANN's model for an SNN of ``steps`` steps: activations of
        ``ceil(log2(steps + 1))`` bits (as many levels as a rate code over
        ``steps`` can express), the multiplier's part of ``mac`` (``mac - add``,
        quoted at 8-bit activations) scaled by ``bits / 8``."""
        bits = max(1, math.ceil(math.log2(steps + 1)))
        return replace(self, ann_act_bits_from_steps=False, act_bits=bits,
                       mac=(self.mac - self.add) * bits / 8 + self.add)

    # --- per-layer pricing (accounting = "access") ---------------------------
    def layer_costs(self, layer: LayerWork, work: NetworkWork | None = None) -> "LayerCost":
        """One layer's cost on both sides (``work``: the whole network, needed
        when membrane potentials share one buffer).

        Pooling taps are priced at ``add`` (a comparison or an addition, no
        weight) on both sides: the ANN's taps and the SynOps arriving at a
        spiking max pool, which has no membrane; SynOps into conv, dense and
        average-pooling units (IF neurons) at ``synop``.  Poisson input's
        SynOps at the first layer belong to the input layer, as the analog
        input's MACs do.
        """
        ops = self.operand_policy.ops(layer)
        ann_syn = ops * (self.mac if layer.has_weights else self.add)
        ann_neuron = layer.ann_neuron_activations * self.neuron_activation
        snn_input = layer.snn_input_macs(self.first_layer_policy, self.operand_policy.skip_zeros) * self.mac
        snn_syn = layer.synops * (self.synop if layer.has_membrane else self.add)
        snn_neuron = layer.snn_neuron_updates * self.neuron_update
        ann_mem_in, ann_mem = self._price(self.ann_layer_accesses(layer), layer.first)
        snn_mem_in, snn_mem = self._price(self.snn_layer_accesses(layer, work), layer.first)
        snn_in = snn_input + (snn_syn if layer.first else 0.0)
        return LayerCost(
            name=layer.name, type=layer.type,
            ann=SideCost(arithmetic=0.0 if layer.first else ann_syn, memory=ann_mem, neuron=ann_neuron,
                         input_layer=(ann_syn + ann_mem_in) if layer.first else 0.0),
            snn=SideCost(arithmetic=0.0 if layer.first else snn_syn, memory=snn_mem, neuron=snn_neuron,
                         input_layer=snn_in + snn_mem_in),
            ann_split=(ann_syn + ann_neuron, ann_mem + ann_mem_in),
            snn_split=(snn_syn + snn_neuron + snn_input, snn_mem + snn_mem_in),
        )

    def breakdown(self, work: NetworkWork, counts: NetworkCount | None = None) -> "CostBreakdown":
        """ANN and SNN cost split into arithmetic, memory, neuron updates
        (activations) and the input layer, with the per-layer split.

        ``ops`` models price the classic way (``counts`` needed for the ANN):
        everything is arithmetic, memory is 0, the input layer is excluded.
        """
        if self.ann_act_bits_from_steps and self.accounting == "access":
            return self.at_steps(work.steps).breakdown(work, counts)
        if self.accounting == "ops":
            if counts is None:
                raise UsageError(f"cost model {self.name!r} needs the network's counts")
            synops = work.total("synops")
            ann = SideCost(arithmetic=self.ann_cost(counts))
            snn = SideCost(arithmetic=synops * self.synop, neuron=work.snn_neuron_updates * self.neuron_update)
            return CostBreakdown(model=self.name, ann=ann, snn=snn, layers=())
        layers = tuple(self.layer_costs(l, work) for l in work.layers)
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

    def break_even_synops_per_synapse(self, work: NetworkWork, counts: NetworkCount | None = None) -> float | None:
        """The SNN's activity at which the factor is exactly 1, in Dampfhoffer
        et al.'s unit: SynOps per synapse (real conv/dense connection) per
        inference.

        Every SynOp and spike is scaled by one factor ``s`` (the measured
        distribution over layers is kept); neuron updates and the analog first
        layer do not depend on spikes.  The SNN's cost is affine in ``s`` and
        the ANN's does not move, so two evaluations solve it.  ``None``: the
        SNN is dearer even without a spike, or it has no SynOps to scale.
        """
        synops = work.total("synops")
        if synops <= 0 or work.synapses <= 0:
            return None
        ann = self.breakdown(work, counts).ann.total
        s0 = self.breakdown(work.scaled_activity(0.0), counts).snn.total
        s1 = self.breakdown(work, counts).snn.total
        if s1 <= s0 or ann < s0:
            return None
        return (ann - s0) / (s1 - s0) * synops / work.synapses

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
    from ..specs import ArchitectureSpec, LayerSpec

    spec = ArchitectureSpec(
        name="cost-model-probe", dataset="mnist", input_shape=(8, 8, 1),
        layers=(
            LayerSpec(type="conv2d", name="conv", filters=2, kernel=3),
            LayerSpec(type="maxpool", name="pool", pool=2),
            LayerSpec(type="flatten", name="flatten"),
            LayerSpec(type="dense", name="out", units=3, activation="softmax"),
        ),
    )
    from .ops import count_network

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
