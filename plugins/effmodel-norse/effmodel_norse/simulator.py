"""The ``norse`` simulator session: streams batches through the converted network.

Options (``SimulationConfig.options``):

``mode``
    ``"stepwise"``: every layer advances one step at a time (time chunks of
    one step).  ``"layerwise"``: a chunk of ``Tc`` steps is pushed through each
    conv/dense layer in one call (batch ``Tc*B``), then the neurons scan the
    chunk element-wise.  ``"auto"`` (default) picks per device by the rule in
    :func:`choose_mode` (CPU: layerwise with the numba kernels, stepwise
    without; CUDA: layerwise in 5-step chunks), as measured there.  Both
    modes compute the same spikes (tested), so the choice is about speed only.
``chunk_elements``
    layerwise only: time chunk so that the largest layer tensor holds at most
    this many elements (default 2**22): bounds memory, keeps tensors in cache.
``chunk_steps``
    layerwise only: fixed chunk length in steps (overrides ``chunk_elements``;
    default 5 on CUDA in ``auto`` mode).
``precision``
    CUDA only: ``"fp32"`` (default) turns TF32 off for convolutions and
    matrix products during the simulation (restored afterwards), so that the
    GPU gives the CPU's spikes and SynOps; ``"tf32"`` allows it: measured on
    an H100 (issue 10), MediumCNN2 then classified 1 image in 2,000
    differently and counted 10^5 fewer SynOps in 6.7*10^11.
    ``cudnn.benchmark`` is on during the simulation either way.
``threads``
    CPU threads for torch: ``"auto"`` (default) = the cores this process may
    use (affinity, cgroup quota) that other processes leave idle
    (:func:`effmodel.threads.idle_cores`); or a number.  Restored on close.
``kernels``
    ``"auto"`` (default): on the CPU, the ``if`` neurons and spiking max
    pooling run as numba kernels with the counting fused in
    (:mod:`effmodel_norse.cpu_kernels`; an IF layer and the max pooling
    behind it as one kernel); ``"off"``: plain torch ops, as on the GPU;
    ``"on"``: insist (an error where they cannot run: CUDA, ``lif``/``iaf``,
    float64, ``--coding ttfs``).  Same float32 operations, so identical spikes, SynOps and
    predictions either way (tested); 1.3x (MediumCNN2) to 3.1x (SmallCNN1)
    less CPU time on the reference models (benchmarks/README.md).
``neuron``
    ``"if"`` (default), ``"iaf"``, ``"lif"`` or ``"adaptive"`` (Zambrano et
    al. 2019): see :mod:`effmodel_norse.neurons` (rate coding; ``--coding
    ttfs`` has its own neuron and refuses the others).
``reset``
    ``if`` and ``adaptive`` neurons: ``"subtract"`` (default) or ``"zero"``.
``mf``
    ``adaptive`` neurons: the speed of adaptation ``m_f`` (default 0.1).
``tau_mem_inv`` / ``tau_syn_inv``
    LIF time constants (1/s), ``dt`` = 1 ms.
``dtype``
    membrane potential precision, ``"float32"`` (default) or ``"float64"``.
``device``
    torch device; default ``cuda`` when available, else ``cpu``.
``readout``
    deprecated alias of the core setting ``SimulationConfig.readout``
    (``effmodel run --readout``); when given it wins over the core setting.

Input: analog (the first layer receives ``W x + b`` at every step, computed
once per batch) or Poisson (a pixel of intensity ``p`` spikes with probability
``p`` at each step; one torch generator seeded with ``config.seed`` per
session).  Output: the classifier is a layer of the same spiking neurons;
the prediction follows ``config.readout`` (:data:`effmodel.simulation.READOUTS`):
``"spikes"`` (default, INIsim's rule): the class with the most output spikes
up to ``t``, the lowest index on ties, no class (-1, wrong) before the first
output spike; ``"potential"``: the most output spikes up to ``t``, ties broken
by the highest membrane potential after step ``t``, then by the lowest index.
Total SynOps are the same either way; the early-step error, and so the
threshold step, differ.

Codes (``config.coding``, ``effmodel run --coding``): ``rate`` (default:
the neurons of the ``neuron`` option) or ``ttfs``, time to first spike
(Rueckauer & Liu 2018) exactly as the numpy reference
``effmodel_numpysim.ttfs``: every neuron fires at most once and resets to
zero (:class:`~effmodel_norse.neurons.TtfsIF`), a spike is a persistent
current (:class:`~effmodel_norse.synapses.HeldSpikes`), a layer gets no
current for an image none of whose inputs has fired, max pooling fires at
the first spike of its window, and the readout is a decision-time one
(:meth:`NorseSession._read_out_ttfs`), with the extra figures
``decisions_t``, ``synops_to_decision`` and ``undecided_images``.  TTFS
runs the torch reference, not the CPU kernels: they implement rate-coded
IF neurons and count-gated pooling, other dynamics.

Every batch also returns ``output_spikes_t`` (each image's output spikes per
step) and ``extra["correct_t_potential"]`` (the images correct per step
under the ``potential`` readout, whatever ``readout`` is).

SynOps are counted by forward hooks on the neuron modules: spikes of a layer
at each step times the exact fan-out of each neuron
(:func:`effmodel.counting.fanout_map`, borders and padding included),
accumulated in float64 (exact integers).  The first layer's analog input is
not counted as SynOps (as in snntoolbox).  Poisson input spikes are events:
they are counted as a layer named ``"input"`` (spikes, and SynOps = input
spikes times the fan-out of each pixel, :func:`effmodel.counting.fanout_map`
with index -1), the same convention as the ``inisim`` simulator.
"""

from __future__ import annotations

import contextlib
import importlib.util
from typing import Any

import numpy as np
import torch

from effmodel.counting import fanout_map, spiking_layer_indices
from effmodel.errors import SimulationError, UsageError
from effmodel.simulation import BatchResult, ConvertedNetwork, SimulationConfig
from effmodel.specs import ArchitectureSpec

from .network import SpikeMaxPool, build_network, import_norse
from .neurons import AsnParameters
from .synapses import chw

OPTIONS = ("mode", "chunk_elements", "chunk_steps", "neuron", "reset", "mf", "tau_mem_inv", "tau_syn_inv", "dtype", "device",
           "readout", "precision", "threads", "kernels")
KERNELS = ("auto", "on", "off")
MODES = ("auto", "layerwise", "stepwise")
PRECISIONS = ("fp32", "tf32")
CUDA_CHUNK_STEPS = 5
CPU_BATCH_SIZE = 50  # the measured best on a 2-core machine: see benchmarks/README.md
CUDA_MEMORY_FRACTION = 0.5
DEFERRED_COUNT_ELEMENTS = 2**22  # a layer's spikes of a whole batch up to this size are counted once per batch


def choose_mode(spec: ArchitectureSpec, device: torch.device | str = "cpu", kernels: bool = False) -> str:
    """The faster mode for ``spec`` on ``device``.

    CPU with the numba kernels (``kernels``, the default there):
    ``layerwise``, chunks bounded by ``chunk_elements``: each conv and dense
    layer then runs once per chunk on ``Tc*B`` images, and the kernels keep
    one image's state in cache for the whole chunk.  Measured with
    ``benchmarks/simulators.py --clock cpu`` (20 images, medians of 3, all
    eight models): layerwise beat stepwise on every model, by 1.2x
    (SmallCNN1, MediumCNN1) to 2.9x (SmallCNN2); see benchmarks/README.md.

    CPU with the torch path (``kernels=off``): ``stepwise``.  Measured side
    by side on an otherwise idle 2-core machine (batch 50, T 100, 100
    images, medians of 3, ``benchmarks/simulators.py``): SmallCNN1 stepwise
    15,623 vs layerwise 14,119 images x steps/s, MediumCNN2 1,593 vs 1,573;
    stepwise also peaks lower in memory.

    CUDA: ``layerwise`` with :data:`CUDA_CHUNK_STEPS` = 5-step chunks.
    Measured on one H100 (issue 10, batch 1000, ``cudnn.benchmark`` on):
    MediumCNN2 214,000 img x steps/s stepwise, 256,000 layerwise in 5-step
    chunks: fewer, larger kernel launches."""
    return "layerwise" if torch.device(device).type == "cuda" or kernels else "stepwise"


def auto_batch_size(network: ConvertedNetwork, duration: int, num_images: int, options: dict | None = None) -> int:
    """``--batch-size auto`` for Norse.

    CUDA: the largest batch whose tensors fit :data:`CUDA_MEMORY_FRACTION` of
    the free GPU memory, estimated per image from the neuron counts and the
    time chunk (per layer and chunk step: the current, the spikes and the
    max-pool keys and their cumulative sum, float32; plus the state and the
    recorded per-neuron spike counts), capped at ``num_images``.  Measured on an H100 (issue 10): SmallCNN1 ran 42,900
    img x steps/s at batch 50, 1,119,000 at 2,500 and 1,294,000 at 10,000.

    CPU: :data:`CPU_BATCH_SIZE`, capped at ``num_images``: larger batches
    did not run faster on CPU (issue 10: 16 cores gave the same speed at 50
    and 2,500) and cost memory."""
    opts = dict(options or {})
    device = torch.device(opts.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
    n = max(1, int(num_images))
    if device.type != "cuda":
        return min(CPU_BATCH_SIZE, n)
    spec = network.simulated_spec
    neurons = [int(np.prod(spec.input_shape))] + [int(np.prod(spec.shapes()[i][1])) for i in spiking_layer_indices(spec)]
    chunk = int(opts.get("chunk_steps") or CUDA_CHUNK_STEPS)
    state_bytes = 8 if str(opts.get("dtype", "float32")) == "float64" else 4
    per_image = sum(neurons) * (4 * 4 * chunk + 2 * state_bytes + 4) + duration * 64  # + 4: recorded spike counts
    free, _total = torch.cuda.mem_get_info(device)
    return max(1, min(n, int(free * CUDA_MEMORY_FRACTION) // per_image))


class NorseSession:
    """One simulation run; ``run_batch`` may be called for many batches."""

    def __init__(self, network: ConvertedNetwork, config: SimulationConfig):
        import_norse()
        opts = dict(config.options)
        unknown = sorted(set(opts) - set(OPTIONS))
        if unknown:
            raise UsageError(f"unknown norse option(s) {', '.join(unknown)} (known: {', '.join(OPTIONS)})")
        self.config = config
        self.spec = network.simulated_spec
        mode = str(opts.get("mode", "auto"))
        if mode not in MODES:
            raise UsageError(f"norse mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.device = torch.device(opts.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.precision = str(opts.get("precision", "fp32"))
        if self.precision not in PRECISIONS:
            raise UsageError(f"norse precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        self._threads_before: int | None = None
        if self.device.type == "cpu":
            self._configure_threads(opts.get("threads", "auto"))
        self.readout = str(opts.get("readout", config.readout))  # the option is an alias of --readout
        if self.readout not in ("potential", "spikes"):
            raise UsageError(f"norse readout must be 'potential' or 'spikes', got {self.readout!r}")
        dtype_name = str(opts.get("dtype", "float32"))
        if dtype_name not in ("float32", "float64"):
            raise UsageError(f"norse dtype must be float32 or float64, got {dtype_name!r}")
        self.coding = str(getattr(config, "coding", "rate"))
        self.neuron = str(opts.get("neuron", "if"))
        self.reset = str(opts.get("reset", "zero" if self.coding == "ttfs" else "subtract"))
        self._check_neuron_options(opts)
        self.kernels = self._use_kernels(str(opts.get("kernels", "auto")), self.neuron, dtype_name)
        self.mode = choose_mode(self.spec, self.device, self.kernels) if mode == "auto" else mode
        self.chunk_elements = int(opts.get("chunk_elements", 2**22))
        self.fixed_chunk = int(opts["chunk_steps"]) if opts.get("chunk_steps") else None
        if self.fixed_chunk is None and mode == "auto" and self.device.type == "cuda":
            self.fixed_chunk = CUDA_CHUNK_STEPS
        if self.chunk_elements <= 0 or (self.fixed_chunk is not None and self.fixed_chunk <= 0):
            raise UsageError("norse chunk_elements and chunk_steps must be positive")
        self.net = build_network(
            network,
            neuron=self.neuron,
            dtype=getattr(torch, dtype_name),
            lif_tau_mem_inv=float(opts.get("tau_mem_inv", 100.0)),
            lif_tau_syn_inv=None if opts.get("tau_syn_inv") is None else float(opts["tau_syn_inv"]),
            coding=self.coding,
            reset=self.reset,
            asn=AsnParameters(mf=float(opts.get("mf", AsnParameters.mf))),
        ).to(self.device)
        self.stages = list(self.net.stages)
        self.output = self.stages[-1]
        # exact fan-out per stage, in the stage's NCHW order (integers; float64 on the device)
        fan_nchw = {st.info.name: self._fanout_nchw(st.info.index) for st in self.stages}
        self.fanout = {n: torch.from_numpy(f.astype(np.float64)).to(self.device) for n, f in fan_nchw.items()}
        fan_in = self._fanout_nchw(-1)  # Poisson input: spikes of the input are events
        self.input_fanout = torch.from_numpy(fan_in.astype(np.float64)).to(self.device)
        for st in self.stages:
            st.neuron.reuse_output = True  # every chunk's spikes are consumed before the next chunk
            if isinstance(st.neuron, SpikeMaxPool):
                st.neuron.max_steps = int(config.duration)
        if self.kernels:  # replaces neuron modules by kernel ones, which take over the settings above
            from .cpu_backend import use_cpu_kernels

            use_cpu_kernels(self.net, fan_nchw)
        self._plans = {name: self._count_plan(fan) for name, fan in self.fanout.items()}
        self._plans["input"] = self._count_plan(self.input_fanout)
        self.neurons_per_image = max(
            [int(np.prod(self.spec.input_shape))] + [int(np.prod(st.info.shape_hwc)) for st in self.stages]
        )
        self.generator = torch.Generator(device=self.device).manual_seed(int(config.seed))
        self._acc: dict[str, dict[str, torch.Tensor]] = {}
        self._t0 = 0
        self._deferred: dict[str, torch.Tensor] = {}
        self._synops_image: torch.Tensor | None = None
        self._record = False
        self._hooks = [st.neuron.register_forward_hook(self._hook(st.info.name)) for st in self.stages]

    def _fanout_nchw(self, index: int) -> np.ndarray:
        """:func:`effmodel.counting.fanout_map` of layer ``index`` (-1: the
        input), flattened in torch's NCHW order."""
        fan = fanout_map(self.spec, index)
        if fan.ndim == 3:
            fan = fan.transpose(2, 0, 1)
        return np.ascontiguousarray(fan).reshape(-1)

    @staticmethod
    def _counts_itself(neuron) -> bool:
        """Whether a stage's neuron module counts its own spikes and SynOps
        (the CPU backend's kernel modules)."""
        from .cpu_backend import SelfCounting

        return isinstance(neuron, SelfCounting)

    # --- device settings -----------------------------------------------------------
    def _use_kernels(self, kernels: str, neuron: str, dtype_name: str) -> bool:
        """Whether the numba CPU kernels run the IF neurons and max pooling
        (:mod:`effmodel_norse.cpu_kernels`): ``auto`` = on the CPU, for the
        default ``if`` neuron in float32; ``on`` insists; ``off`` keeps the
        torch path.  Both give identical spikes and SynOps (tested)."""
        if kernels not in KERNELS:
            raise UsageError(f"norse kernels must be one of {', '.join(KERNELS)}, got {kernels!r}")
        possible = (self.device.type == "cpu" and neuron == "if" and self.reset == "subtract" and dtype_name == "float32"
                    and self.coding == "rate")
        if kernels == "on" and not possible:
            raise UsageError("norse kernels=on needs device cpu, neuron if, reset subtract, dtype float32 and --coding rate")
        if kernels != "off" and possible and importlib.util.find_spec("numba") is None:
            if kernels == "on":
                raise UsageError("norse kernels=on needs numba (pip install numba); kernels=off runs without it")
            return False  # auto: the torch path, slower but the same results
        return kernels != "off" and possible

    def _check_neuron_options(self, opts: dict) -> None:
        """Option combinations that mean nothing together (:func:`effmodel_norse.check_neuron_options`)."""
        from . import check_neuron_options

        check_neuron_options(opts, self.coding)

    def _configure_threads(self, threads: Any) -> None:
        """CPU: size torch's pools to the idle cores this process may use
        (or ``threads``), never more: oversubscribed, Norse ran 5-10x slower."""
        from effmodel.threads import configure_threads, idle_cores

        if str(threads) == "auto":
            n = idle_cores()
        else:
            try:
                n = int(threads)
            except (TypeError, ValueError):
                n = 0
            if n <= 0:
                raise UsageError(f"norse threads must be 'auto' or a positive integer, got {threads!r}")
        self._threads_before = torch.get_num_threads()
        configure_threads(n)

    @contextlib.contextmanager
    def _device_settings(self):
        """CUDA: ``cudnn.benchmark`` on, TF32 as ``precision`` says, for the
        duration of one batch; the previous settings are restored afterwards."""
        if self.device.type != "cuda":
            yield
            return
        cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
        before = (cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32)
        tf32 = self.precision == "tf32"
        cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = True, tf32, tf32
        try:
            yield
        finally:
            cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = before

    # --- counting ----------------------------------------------------------------
    def _hook(self, name: str):
        """Forward hook: per-step spikes and SynOps of one layer's output chunk."""

        def hook(module, inputs, out):
            if getattr(module, "counted", None) is None:  # a torch module, or a kernel module's torch fallback
                self._count(name, out)
                return
            spikes, synops = module.counted  # counted by a CPU kernel, per step of this chunk
            acc = self._acc[name]
            rows = slice(self._t0, self._t0 + len(spikes))
            acc["spikes"][rows] = torch.from_numpy(spikes.astype(np.float64))
            acc["synops"][rows] = torch.from_numpy(synops.astype(np.float64))
            if self._record and module.neuron_counts() is None:
                acc["counts"] += out.sum(0)
            module.counted = None

        return hook

    def _count_plan(self, fan: torch.Tensor) -> tuple[str, Any]:
        """How to count one layer's SynOps exactly and cheaply, from its
        float64 fan-out vector (N,).

        ``("uniform", f)``: every neuron drives ``f`` synapses, SynOps = f x spikes.
        ``("gemv", M)``: one float32 product of each image's spikes with the
        (N, 2) matrix [1, fan-out]: spikes and SynOps per image in one pass.
        Exact because every partial sum is an integer below 2**24
        (N x max fan-out < 2**24, checked here; not under CUDA TF32, which
        would round fan-outs above 2048).
        ``("batch", fan)``: otherwise, sum over the batch first (float32 sums
        of at most B ones), then float64."""
        n = fan.numel()
        if n and bool((fan == fan[0]).all()):
            return "uniform", float(fan[0])
        if n * float(fan.max()) < 2**24 and not (self.precision == "tf32" and self.device.type == "cuda"):  # TF32 rounds fan-outs > 2048
            return "gemv", torch.stack([torch.ones_like(fan), fan], 1).to(torch.float32).contiguous()
        return "batch", fan

    def _count(self, name: str, out: torch.Tensor) -> None:
        """Per-step spikes and SynOps of one layer's (or the input's) spike
        chunk ``(Tc, B, ...)``, accumulated on the device (no host sync).
        Small layers only copy the chunk into a whole-batch buffer, counted
        once after the last step (:meth:`_count_deferred`): a handful of tiny
        ops per layer and step cost more than the small layers' matmuls."""
        store = self._deferred.get(name)
        if store is not None:
            store[self._t0 : self._t0 + out.shape[0]] = out
            return
        self._count_now(name, out, self._t0)

    def _count_deferred(self) -> None:
        for name, store in self._deferred.items():
            self._count_now(name, store, 0)
        self._deferred = {}

    def _count_now(self, name: str, out: torch.Tensor, t0: int) -> None:
        tc, b = out.shape[:2]
        acc = self._acc[name]
        rows = slice(t0, t0 + tc)
        kind, arg = self._plans[name]
        if kind == "uniform":
            per_image = out.reshape(tc * b, -1).sum(1)  # float32: at most N < 2**24 ones per image
            spikes = per_image.reshape(tc, b).sum(1, dtype=torch.float64)
            acc["spikes"][rows] = spikes
            acc["synops"][rows] = spikes * arg
        elif kind == "gemv":
            both = (out.reshape(tc * b, -1) @ arg).reshape(tc, b, 2).sum(1, dtype=torch.float64)
            acc["spikes"][rows] = both[:, 0]
            acc["synops"][rows] = both[:, 1]
        else:
            per_neuron = out.reshape(tc, b, -1).sum(1).double()  # (tc, N); float32 sums of <= B ones are exact
            acc["spikes"][rows] = per_neuron.sum(1)
            acc["synops"][rows] = per_neuron @ arg
        if self._record:
            acc["counts"] += out.sum(0)  # float32: per-neuron totals <= T < 2**24 are exact
        if self._synops_image is not None:  # ttfs: each image's SynOps per step, for synops_to_decision
            fan = self.input_fanout if name == "input" else self.fanout[name]
            self._synops_image[rows] += out.reshape(tc, b, -1).double() @ fan

    def chunk_steps(self, batch: int, analog: bool = False) -> int:
        """Steps per time chunk: 1 stepwise; layerwise bounded by ``chunk_elements``
        elements in the largest tensor a chunk holds (:meth:`chunk_neurons`)."""
        if self.mode == "stepwise":
            return 1
        if self.fixed_chunk is not None:
            return min(self.fixed_chunk, self.config.duration)
        return max(1, min(self.config.duration, self.chunk_elements // max(batch * self.chunk_neurons(analog), 1)))

    def chunk_neurons(self, analog: bool) -> int:
        """Per image and step, the elements of the largest tensor a chunk
        holds.  The torch path holds every layer's current and spikes.  With
        the CPU kernels the analog first layer's constant current is held
        once, not per step, and an IF layer fused with its pooling never holds
        its spikes: SmallCNN1's largest chunk tensor is then its 5,408 pooled
        spikes, not its 21,632 first-layer neurons, so its chunks are 4x
        longer (its dense layer runs on 4x more rows per call)."""
        if not self.kernels:
            return self.neurons_per_image
        from .cpu_backend import FusedIFMaxPool

        sizes = [] if analog else [int(np.prod(self.spec.input_shape))]
        for i, st in enumerate(self.stages):
            n = int(np.prod(st.info.shape_hwc))
            if st.synapse is not None and not (i == 0 and analog):
                sizes.append(n)  # the current
            if not isinstance(st.neuron, FusedIFMaxPool):
                sizes.append(n)  # the spikes
        return max(sizes)

    # --- simulation ------------------------------------------------------------------
    def run_batch(self, x: np.ndarray, y: np.ndarray) -> BatchResult:
        """Simulate one batch (NHWC images in [0, 1]) for ``config.duration`` steps."""
        with self._device_settings(), torch.no_grad():
            return self._run_batch(x, y)

    def _run_batch(self, x: np.ndarray, y: np.ndarray) -> BatchResult:
        x = np.asarray(x, dtype=np.float32)
        if tuple(x.shape[1:]) != tuple(self.spec.input_shape):
            raise SimulationError(f"norse: images of shape {x.shape[1:]} do not fit {self.spec.name} {self.spec.input_shape}")
        T, b = int(self.config.duration), len(x)
        dev = self.device
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(dev)
        labels = torch.from_numpy(np.asarray(y, dtype=np.int64)).to(dev)
        self.net.reset()
        self._record = bool(self.config.record_spiketrains)
        self._synops_image = torch.zeros((T, b), dtype=torch.float64, device=dev) if self.coding == "ttfs" else None
        self._acc = {}
        for st in self.stages:
            a = {"spikes": torch.zeros(T, dtype=torch.float64, device=dev), "synops": torch.zeros(T, dtype=torch.float64, device=dev)}
            if self._record:
                a["counts"] = torch.zeros((b, *chw(st.info.shape_hwc)), dtype=torch.float32, device=dev)
            self._acc[st.info.name] = a
        self.output.neuron.record_v = True
        analog = self.config.input_encoding == "analog"
        self.net.set_constant_first_input(analog)
        if not analog:
            a_in = {"spikes": torch.zeros(T, dtype=torch.float64, device=dev), "synops": torch.zeros(T, dtype=torch.float64, device=dev)}
            if self._record:
                a_in["counts"] = torch.zeros((b, *xt.shape[1:]), dtype=torch.float32, device=dev)
            self._acc["input"] = a_in
        self._deferred = {
            st.info.name: torch.empty((T, b, *chw(st.info.shape_hwc)), dtype=torch.float32, device=dev)
            for st in self.stages
            if T * b * int(np.prod(st.info.shape_hwc)) <= DEFERRED_COUNT_ELEMENTS and not self._counts_itself(st.neuron)
        }
        first = self.stages[0].current(xt[None]) if analog else None  # (1, B, ...), same at every step
        chunk = self.chunk_steps(b, analog)
        n_classes = int(self.output.info.shape_hwc[-1])
        out_spikes = torch.empty((T, b, n_classes), dtype=torch.float32, device=dev)  # read out once, after the loop
        out_v = torch.empty((T, b, n_classes), dtype=self.output.neuron.dtype, device=dev)
        t0 = 0
        while t0 < T:
            tc = min(chunk, T - t0)
            self._t0 = t0
            if analog:
                out = self.net(None, first_current=first.expand(tc, *first.shape[1:]))
            else:
                steps = [(torch.rand(xt.shape, generator=self.generator, device=dev) < xt) for _ in range(tc)]
                spikes_in = torch.stack(steps).to(torch.float32)
                self._count("input", spikes_in)
                out = self.net(spikes_in)
            out_spikes[t0 : t0 + tc] = out
            v = self.output.neuron.v_trace
            if v is None:  # max pooling cannot be the output layer; defensive
                out_v[t0 : t0 + tc] = 0
            else:
                out_v[t0 : t0 + tc] = v
            t0 += tc
        self._count_deferred()
        if self._record:
            for st in self.stages:
                kept = st.neuron.neuron_counts()  # a fused kernel's own per-neuron counts
                if kept is not None:
                    self._acc[st.info.name]["counts"] = kept.clone()
        if self.coding == "ttfs":
            readouts, ttfs_extra = self._read_out_ttfs(out_spikes, out_v, labels)
        else:
            readouts, ttfs_extra = self._read_out(out_spikes, out_v, labels), {}
        correct, pred = readouts[self.readout]
        self.output.neuron.record_v = False
        spikes_t = {n: a["spikes"].round().to(torch.int64).cpu().numpy() for n, a in self._acc.items()}
        synops_t = {n: a["synops"].round().to(torch.int64).cpu().numpy() for n, a in self._acc.items()}
        spike_counts = None
        if self._record:
            spike_counts = {}
            for n, a in self._acc.items():
                c = a["counts"].round().to(torch.int64).cpu().numpy()
                spike_counts[n] = c.transpose(0, 2, 3, 1) if c.ndim == 4 else c  # back to channels_last
        self._record = False
        return BatchResult(
            correct_t=correct.cpu().numpy(),
            synops_t=synops_t,
            spikes_t=spikes_t,
            predictions=pred.cpu().numpy(),
            spike_counts=spike_counts,
            extra={"norse_mode": self.mode, "norse_device": str(dev), "norse_chunk_steps": str(chunk), "norse_precision": self.precision,
                   "norse_kernels": "on" if self.kernels else "off",
                   "correct_t_potential": readouts["potential"][0].cpu().numpy(), **ttfs_extra},
            # not when the deprecated option overrides --readout: the core would read the spikes by another rule
            output_spikes_t=out_spikes.permute(1, 0, 2).to(torch.int8).cpu().numpy()
            if self.readout == self.config.readout else None,
        )

    def _read_out(self, out_spikes: torch.Tensor, out_v: torch.Tensor,
                  labels: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per readout (``spikes``, ``potential``): correct images per step
        ``(T,)`` and the last step's predictions ``(B,)``, from the output
        layer's spikes and potentials ``(T, B, classes)`` of a whole batch at
        once (a handful of small ops instead of some per step).  Both are
        computed whatever ``config.readout`` is: the ``potential`` one is
        recorded as ``extra["correct_t_potential"]``, so that the readout
        rule's effect on accuracy is known without a second run."""
        counts = torch.cumsum(out_spikes, 0)  # float32 sums of at most T ones: exact
        best = counts.amax(-1, keepdim=True)
        minus_inf = torch.tensor(-torch.inf, dtype=torch.float64, device=counts.device)
        score = torch.where(counts == best, out_v.to(torch.float64), minus_inf)
        by_potential = score.argmax(-1)  # (T, B)
        by_spikes = torch.where(best.squeeze(-1) > 0, counts.argmax(-1), torch.full_like(by_potential, -1))
        return {name: ((pred_t == labels).sum(1), pred_t[-1])
                for name, pred_t in (("spikes", by_spikes), ("potential", by_potential))}

    def _read_out_ttfs(self, out_spikes: torch.Tensor, out_v: torch.Tensor, labels: torch.Tensor
                       ) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, Any]]:
        """The decision-time readout of ``--coding ttfs``, as the numpy
        reference's: an image is decided at the step its first output neuron
        fires, as the class that fired (several at that step: the lowest
        index under ``spikes``, the highest potential before the reset under
        ``potential``); the decision never changes.  Before it: no class
        (``spikes``) or the highest potential (``potential``).  ``out_v``:
        the output potentials before each step's reset (:class:`TtfsIF`).

        Also the extra figures (summed over batches by the core):
        ``decisions_t`` (images deciding at each step), ``synops_to_decision``
        (each decided image's SynOps up to and including its decision step,
        summed) and ``undecided_images``."""
        T, b = out_spikes.shape[:2]
        fired = out_spikes.sum(-1) > 0  # (T, B)
        decided = torch.cumsum(fired.to(torch.int32), 0) > 0  # (T, B): decided by step t
        first = torch.argmax(fired.to(torch.int32), 0)  # (B,) the decision step (0 where never: masked)
        images = torch.arange(b, device=out_spikes.device)
        at_first = out_spikes[first, images]  # (B, K) who fired at the decision step
        minus_inf = torch.tensor(-torch.inf, dtype=torch.float64, device=out_v.device)
        by_v = torch.where(at_first > 0, out_v[first, images].to(torch.float64), minus_inf).argmax(-1)
        no_class = torch.full((T, b), -1, dtype=torch.int64, device=out_spikes.device)
        pred = {
            "spikes": torch.where(decided, at_first.argmax(-1)[None], no_class),  # argmax: the first maximum
            "potential": torch.where(decided, by_v[None], out_v.argmax(-1)),
        }
        ever = decided[-1]
        to_decision = torch.cumsum(self._synops_image, 0)[first, images]  # (B,) SynOps up to the decision step
        extra = {
            "decisions_t": torch.bincount(first[ever], minlength=T).cpu().numpy().astype(np.int64),
            "synops_to_decision": int(round(float(to_decision[ever].sum()))),
            "undecided_images": int((~ever).sum()),
        }
        return {name: ((p == labels).sum(1), p[-1]) for name, p in pred.items()}, extra

    def close(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self._acc = {}
        if self._threads_before is not None:
            torch.set_num_threads(self._threads_before)
            self._threads_before = None


__all__ = ["NorseSession", "auto_batch_size", "choose_mode", "SpikeMaxPool"]
