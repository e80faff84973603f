"""How per-layer work becomes memory accesses: the access policies.

A cost model chooses one object of each kind (by name in its preset):

*operands* (:data:`OPERANDS`)
    ``dense``: the ANN computes every real tap; ``zero-skipping``: only the
    taps whose input value is nonzero (measured on the simulated images).
*first layer* (:data:`FIRST_LAYERS`)
    how often the SNN evaluates its analog first layer's ``W x`` as MACs:
    ``excluded`` (0 times, the report), ``once`` (its current is computed
    once, stored beside the potential and read back at every neuron update)
    or ``every-step``.  Poisson input needs none: its spikes arrive at the
    first layer as SynOps.
*ANN dataflow* (:data:`DATAFLOWS`): where the ANN reads its operands from.
    ``no-reuse`` (the pessimistic bound): every MAC reads its weight and its
    input from the memory holding the whole tensor; partial sums stay in a
    register; one write per output.  ``ideal-reuse`` (the optimistic bound):
    every weight and every input is read once per layer per image, partial
    sums stay in registers, one write per output.  ``row-stationary``
    (Eyeriss-like, Chen et al. 2016/2017): every MAC reads its weight and its
    input from a PE's register file and reads and writes its partial sum
    there; the layer's weights are read once into the array, which holds
    ``pe_count x rf_bytes / 2`` bytes of them at a time, and the input is
    streamed from the global buffer once per such weight tile; outputs are
    written once.  Inputs and outputs sit in the global buffer when both fit
    in ``glb_bytes``, else in their own memory.
*spike events* (:data:`EVENTS`)
    ``bit``: a spike is a 1-bit access to a bitmap of its layer's neurons;
    ``address``: an address event of ``ceil(log2(neurons))`` bits, written
    once by its source, read once by its target layer, plus one fan-out
    look-up (a routing-table entry with the address of its weights) per
    arriving spike (Lemaire et al. 2022's addressing term).

The SNN is event driven under every ANN dataflow: a SynOp reads its weight
and reads and writes its target's membrane potential, a neuron update reads
and writes the potential, spikes are written once and read once; its analog
first layer is computed synapse by synapse like the no-reuse ANN.  So a
dataflow changes only the ANN's cost, and more reuse for the ANN can never
make the factor better for the SNN.

*Storage* (:class:`Storage`): bits per weight, activation and membrane
potential; a global on-chip capacity; where membrane potentials live.  Each
tensor a layer touches is held in a memory of its own size (its access
energy follows that size, :mod:`.memory`) as long as the layer's tensors fit
on chip together, smallest first; a tensor that does not fit spills to DRAM.
With ``membrane_buffer = "network"`` the potentials of *every* layer share
one buffer that stays resident for all T steps, so its capacity counts
against every layer's; if it does not fit, every membrane access goes to
DRAM.  Max-pooling units keep no potential (:mod:`.work`).

A new dataflow is one class with a ``name`` and an ``ann`` method returning
:class:`Access` records, added to :data:`DATAFLOWS`, plus its preset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from ..errors import UsageError
from .work import LayerWork, NetworkWork

ACCESS_KINDS = ("weight_reads", "act_reads", "act_writes", "membrane_reads", "membrane_writes",
                "spike_reads", "spike_writes", "psum_reads", "psum_writes", "route_reads")
SYNAPTIC_KINDS = ("weight_reads", "act_reads", "psum_reads", "psum_writes")  # the traffic of MACs and SynOps
OFF_CHIP = math.inf  # store size of a tensor that spilled to DRAM


@dataclass(frozen=True)
class AccessCounts:
    """Memory accesses of one layer by kind (see the module docstring)."""

    weight_reads: float = 0.0
    act_reads: float = 0.0
    act_writes: float = 0.0
    membrane_reads: float = 0.0
    membrane_writes: float = 0.0
    spike_reads: float = 0.0
    spike_writes: float = 0.0
    psum_reads: float = 0.0
    psum_writes: float = 0.0
    route_reads: float = 0.0

    def __add__(self, other: "AccessCounts") -> "AccessCounts":
        return AccessCounts(**{k: getattr(self, k) + getattr(other, k) for k in ACCESS_KINDS})

    @property
    def total(self) -> float:
        return float(sum(getattr(self, k) for k in ACCESS_KINDS))

    @classmethod
    def of(cls, accesses: "list[Access]") -> "AccessCounts":
        totals = dict.fromkeys(ACCESS_KINDS, 0.0)
        for a in accesses:
            totals[a.kind] += a.count
        return cls(**totals)


@dataclass(frozen=True)
class Access:
    """``count`` accesses of ``bits`` each, of kind ``kind``, to a memory of
    ``store_bytes`` bytes (:data:`OFF_CHIP`: DRAM)."""

    kind: str
    count: float
    store_bytes: float
    bits: int


# --- operands and the first layer ----------------------------------------------------


@dataclass(frozen=True)
class Operands:
    """Which taps the ANN computes: all real ones or only those with a nonzero input."""

    name: str
    skip_zeros: bool

    def ops(self, layer: LayerWork) -> float:
        return layer.ann_ops(self.skip_zeros)

    def input_fraction(self, layer: LayerWork) -> float:
        """Share of the layer's inputs that are read at all (1 when dense)."""
        return layer.effective_ops / layer.dense_ops if self.skip_zeros and layer.dense_ops else 1.0


OPERANDS = {"dense": Operands("dense", False), "zero-skipping": Operands("zero-skipping", True)}


def operand_policy(zero_skipping) -> Operands:
    if isinstance(zero_skipping, Operands):
        return zero_skipping
    return OPERANDS["zero-skipping" if zero_skipping else "dense"]


@dataclass(frozen=True)
class FirstLayer:
    """How often the SNN evaluates its analog first layer, and whether the
    current is stored (read back at every neuron update)."""

    name: str
    per_step: bool
    once: bool

    def evaluations(self, steps: int) -> int:
        return steps if self.per_step else int(self.once)

    @property
    def stores_current(self) -> bool:
        return self.once


FIRST_LAYERS = {"excluded": FirstLayer("excluded", False, False), "once": FirstLayer("once", False, True),
                "every-step": FirstLayer("every-step", True, False)}
FIRST_LAYER_POLICIES = tuple(FIRST_LAYERS)


def first_layer_policy(policy) -> FirstLayer:
    if isinstance(policy, FirstLayer):
        return policy
    try:
        return FIRST_LAYERS[policy]
    except (KeyError, TypeError):
        raise UsageError(f"unknown first-layer policy {policy!r} (use {', '.join(FIRST_LAYERS)})") from None


# --- storage and spike events --------------------------------------------------------


@dataclass(frozen=True)
class SpikeBits:
    """A spike is one bit in a bitmap of its layer's neurons."""

    name: str = "bit"
    routed: bool = False

    def bits(self, neurons: int) -> int:
        return 1

    def buffer_bytes(self, neurons: int) -> float:
        return neurons / 8


@dataclass(frozen=True)
class AddressEvents:
    """A spike is an address event of ``ceil(log2(neurons))`` bits, routed by
    one look-up per arriving spike."""

    name: str = "address"
    routed: bool = True

    def bits(self, neurons: int) -> int:
        return max(1, math.ceil(math.log2(max(neurons, 2))))

    def buffer_bytes(self, neurons: int) -> float:
        """A queue with room for one event per neuron (every neuron spiking in one step)."""
        return neurons * self.bits(neurons) / 8


EVENTS = {"bit": SpikeBits(), "address": AddressEvents()}


@dataclass(frozen=True)
class Storage:
    """Bits per stored value, the global on-chip capacity and where
    membrane potentials live (see the module docstring)."""

    weight_bits: int = 32
    act_bits: int = 32
    membrane_bits: int = 32
    events: SpikeBits | AddressEvents = SpikeBits()
    on_chip_bytes: float = math.inf
    membrane_buffer: str = "layer"  # or "network"

    def place(self, tensors: dict[str, float], capacity: float | None = None) -> dict[str, float]:
        """The memory size serving each tensor: its own size while the tensors
        fit in ``capacity`` (the on-chip limit) together, smallest first;
        :data:`OFF_CHIP` for those that do not."""
        left = self.on_chip_bytes if capacity is None else capacity
        out = {}
        for name, size in sorted(tensors.items(), key=lambda kv: kv[1]):
            if size <= left:
                out[name], left = size, left - size
            else:
                out[name] = OFF_CHIP
        return out

    def membrane_bytes(self, work: NetworkWork, first_layer: FirstLayer) -> float:
        """All potentials of the network (plus the stored first-layer current)."""
        total = sum(l.neurons for l in work.layers if l.has_membrane)
        stored = sum(l.neurons for l in work.layers if l.first and first_layer.stores_current and not l.spiking_input)
        return (total + stored) * self.membrane_bits / 8


# --- ANN dataflows --------------------------------------------------------------------


def _ann_tensors(layer: LayerWork, storage: Storage) -> dict[str, float]:
    return storage.place({"weights": layer.params * storage.weight_bits / 8,
                          "inputs": layer.inputs * storage.act_bits / 8,
                          "outputs": layer.neurons * storage.act_bits / 8})


@dataclass(frozen=True)
class NoReuse:
    """Every MAC reads its weight and its input from the tensor's memory (the pessimistic bound)."""

    name: str = "no-reuse"

    def ann(self, layer: LayerWork, operands: Operands, storage: Storage) -> list[Access]:
        ops = operands.ops(layer)
        at = _ann_tensors(layer, storage)
        w, a = storage.weight_bits, storage.act_bits
        out = [Access("act_reads", ops, at["inputs"], a), Access("act_writes", float(layer.neurons), at["outputs"], a)]
        if layer.has_weights:
            out.append(Access("weight_reads", ops, at["weights"], w))
        return out


@dataclass(frozen=True)
class IdealReuse:
    """Every weight and every (read) input once per layer per image; partial
    sums in registers (the optimistic bound)."""

    name: str = "ideal-reuse"

    def ann(self, layer: LayerWork, operands: Operands, storage: Storage) -> list[Access]:
        ops = operands.ops(layer)
        at = _ann_tensors(layer, storage)
        w, a = storage.weight_bits, storage.act_bits
        # at most once each, and never more often than a tap uses it (a bias, or a weight whose
        # inputs are all zero, need not be fetched at all), so this never exceeds no-reuse
        out = [Access("act_reads", min(layer.inputs * operands.input_fraction(layer), ops), at["inputs"], a),
               Access("act_writes", float(layer.neurons), at["outputs"], a)]
        if layer.has_weights:
            out.append(Access("weight_reads", min(float(layer.params), ops), at["weights"], w))
        return out


@dataclass(frozen=True)
class RowStationary:
    """Eyeriss-like: register files per PE, a global buffer, weights tiled over the PE array."""

    pe_count: int = 168
    rf_bytes: float = 512.0
    glb_bytes: float = 108 * 1024.0
    name: str = "row-stationary"

    def weight_tiles(self, layer: LayerWork, storage: Storage) -> int:
        """How many passes the layer's weights need, half of every RF holding weights."""
        if not layer.has_weights:
            return 1
        return max(1, math.ceil(layer.params * storage.weight_bits / 8 / (self.pe_count * self.rf_bytes / 2)))

    def ann(self, layer: LayerWork, operands: Operands, storage: Storage) -> list[Access]:
        ops = operands.ops(layer)
        at = _ann_tensors(layer, storage)
        w, a = storage.weight_bits, storage.act_bits
        io_bytes = (layer.inputs + layer.neurons) * a / 8
        glb_fits = io_bytes <= min(self.glb_bytes, storage.on_chip_bytes)
        in_store = self.glb_bytes if glb_fits else at["inputs"]
        out_store = self.glb_bytes if glb_fits else at["outputs"]
        rf = self.rf_bytes
        out = [Access("act_reads", ops, rf, a),  # RF: the input of every tap
               Access("psum_reads", ops, rf, a), Access("psum_writes", ops, rf, a),  # RF: the partial sum
               Access("act_reads", layer.inputs * operands.input_fraction(layer) * self.weight_tiles(layer, storage),
                      in_store, a),  # GLB -> array, once per weight tile
               Access("act_writes", float(layer.neurons), out_store, a)]
        if layer.has_weights:
            out += [Access("weight_reads", ops, rf, w),  # RF: the weight of every tap
                    Access("weight_reads", float(layer.params), at["weights"], w)]  # into the array once
        return out


DATAFLOWS = {"no-reuse": NoReuse, "ideal-reuse": IdealReuse, "row-stationary": RowStationary}


def dataflow_policy(name: str, **settings):
    """The dataflow object ``name`` with the settings its class takes."""
    try:
        cls = DATAFLOWS[name]
    except (KeyError, TypeError):
        raise UsageError(f"unknown dataflow {name!r} (use {', '.join(DATAFLOWS)})") from None
    known = {f.name for f in fields(cls)} - {"name"}
    return cls(**{k: v for k, v in settings.items() if k in known})


# --- the SNN (event driven, under every dataflow) --------------------------------------


def snn_layer_accesses(layer: LayerWork, work: NetworkWork | None, first_layer, operands: Operands,
                       storage: Storage) -> list[Access]:
    """The SNN's accesses for ``layer`` (``work``: the whole network, for the
    shared membrane buffer)."""
    policy = first_layer_policy(first_layer)
    macs = layer.snn_input_macs(policy, operands.skip_zeros)
    stored = layer.first and policy.stores_current and not layer.spiking_input
    w, a, m, ev = storage.weight_bits, storage.act_bits, storage.membrane_bits, storage.events
    tensors = {"weights": layer.params * w / 8, "spikes_in": ev.buffer_bytes(layer.inputs),
               "spikes_out": ev.buffer_bytes(layer.neurons)}
    if macs:
        tensors["inputs"] = layer.inputs * a / 8
    if ev.routed:
        tensors["routing"] = layer.inputs * ev.bits(max(layer.params, 2)) / 8
    capacity = storage.on_chip_bytes
    if storage.membrane_buffer == "network" and work is not None:
        shared = storage.membrane_bytes(work, policy)
        mem_store = shared if shared <= capacity else OFF_CHIP
        capacity = capacity - shared if shared <= capacity else capacity
        at = storage.place(tensors, capacity)
    else:
        tensors["membranes"] = layer.neurons * m / 8  # the stored current (once) sits beside it, as large
        at = storage.place(tensors, capacity)
        mem_store = at["membranes"]
    rmw = (layer.synops if layer.has_membrane else 0.0) + layer.snn_neuron_updates
    out = [Access("membrane_reads", rmw + (layer.snn_neuron_updates if stored else 0), mem_store, m),
           Access("membrane_writes", rmw + (layer.neurons if stored else 0), mem_store, m),
           Access("spike_reads", layer.spikes_in, at["spikes_in"], ev.bits(layer.inputs)),
           Access("spike_writes", layer.spikes_out, at["spikes_out"], ev.bits(layer.neurons))]
    if layer.has_weights:
        out.append(Access("weight_reads", layer.synops + macs, at["weights"], w))
    if macs:
        out.append(Access("act_reads", macs, at["inputs"], a))
    if ev.routed:
        out.append(Access("route_reads", layer.spikes_in, at["routing"], ev.bits(max(layer.params, 2))))
    return out


# --- counts by kind (the legacy interface, a 32-bit no-reuse machine) -----------------


def ann_accesses(layer: LayerWork, zero_skipping: bool = False, dataflow=None, storage: Storage | None = None) -> AccessCounts:
    return AccessCounts.of((dataflow or NoReuse()).ann(layer, operand_policy(zero_skipping), storage or Storage()))


def snn_accesses(layer: LayerWork, first_layer="excluded", zero_skipping: bool = False,
                 storage: Storage | None = None, work: NetworkWork | None = None) -> AccessCounts:
    return AccessCounts.of(snn_layer_accesses(layer, work, first_layer, operand_policy(zero_skipping),
                                              storage or Storage()))
