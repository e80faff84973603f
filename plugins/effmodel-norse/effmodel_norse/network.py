"""Convert a :class:`~effmodel.simulation.ConvertedNetwork` into a torch network of Norse neurons.

Layout: every *spiking layer* of the simulated spec (conv, dense, pooling;
see :func:`effmodel.counting.spiking_layer_indices`) becomes one
:class:`Stage` = a synapse module (conv / linear / pooling, applied to all
steps of a time chunk at once) followed by a stateful neuron module that
scans over the chunk's time axis.  Tensors inside a stage are shaped
``(Tc, B, C, H, W)`` (or ``(Tc, B, N)``), torch's NCHW order.

Keras vs torch layouts, handled once at conversion:

* conv kernels HWIO -> OIHW; 'same' padding is Keras/TF padding
  (:func:`effmodel.specs.same_padding`), asymmetric when the total is odd,
  applied with ``F.pad`` before a 'valid' convolution;
* Keras flattens NHWC, torch NCHW: instead of permuting every activation
  before flatten, the rows of the first dense kernel after a flatten are
  permuted once from HWC to CHW order.  The result is the same linear map,
  and the exported NIR graph uses the very same weights (bit-identical
  currents between the simulator and ``norse.torch.from_nir``);
* average pooling divides by the number of *real* taps at padded borders
  (Keras semantics).

Neurons (``neuron`` option):

``if`` (default)
    Integrate-and-fire, threshold 1, spike when ``v >= v_th`` and reset by
    subtraction, as the INI simulator of snntoolbox.  The step is Norse's
    :func:`norse.torch.functional.iaf.iaf_feed_forward_step` with its
    reset replaced by Norse's own :func:`norse.torch.functional.reset.reset_subtract`
    (written in place: ``v -= z * v_th`` gives bit-identical results, tested)
    and ``>=`` instead of Norse's strict ``>``, so that an activation equal to
    the threshold fires at every step as in the ANN.
``iaf``
    Norse's IAF unchanged (``iaf_feed_forward_step``: ``v > v_th``, reset to
    ``v_reset = 0``).  What ``norse.torch.from_nir`` builds from a NIR ``IF``
    node; less accurate for converted networks (the residual charge is lost).
``lif``
    Norse's LIF (``lif_feed_forward_step``), ``v_th = 1``, ``v_leak = v_reset =
    0``.  The input current is divided by ``dt * tau_mem_inv`` so that without
    leak one step of input raises ``v`` by the same amount as in ``if``;
    ``tau_syn_inv = 1/dt`` makes the synaptic current last one step (the
    current therefore reaches ``v`` one step later per layer).  Options
    ``tau_mem_inv`` (default 100/s) and ``tau_syn_inv``.

Spiking max pooling: each pooling window passes on the spikes of the input
neuron with the highest spike count so far, counts including the current
step (Rueckauer et al. 2017; snntoolbox's ``SpikeMaxPooling2D``).  Ties go to
the first neuron of the window in row-major order (torch's ``max_pool2d``
index); padding taps never win.  The gated spikes *are* the pooling layer's
spikes (an IF neuron with threshold 1 fed 0/1 input would reproduce them).
Average pooling feeds the mean of the input spikes into IF neurons.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from effmodel.counting import spiking_layer_indices
from effmodel.simulation import ConvertedNetwork
from effmodel.specs import ArchitectureSpec, LayerSpec, same_padding

NEURONS = ("if", "iaf", "lif")


def import_norse():
    """Import ``norse.torch`` without importing TensorFlow.

    Norse imports its TensorBoard hooks when ``tensorboard`` is installed,
    through ``torch.utils.tensorboard``, which imports TensorFlow (+3 s,
    +500 MB RSS here).  If neither is loaded yet, ``tensorboard`` is hidden for
    the duration of the import, so Norse skips those hooks (it checks
    ``importlib.util.find_spec("tensorboard")``), which the simulator never
    uses.  Hiding TensorFlow instead would make tensorboard resolve its lazy
    ``tf`` to a stub for the rest of the process, and a later Keras
    TensorBoard callback in the same process then fails with "cannot import
    tensorflow 2.0 API".
    """
    if "norse.torch" in sys.modules:
        return sys.modules["norse.torch"]
    hide = "tensorboard" not in sys.modules and "tensorflow" not in sys.modules
    if hide:
        sys.modules["tensorboard"] = None  # type: ignore[assignment]
    try:
        import norse.torch as norse_torch
    finally:
        if hide and "tensorboard" in sys.modules and sys.modules["tensorboard"] is None:
            del sys.modules["tensorboard"]
    return norse_torch


def torch_padding(layer: LayerSpec, h: int, w: int, k: int, s: int) -> tuple[int, int, int, int]:
    """Keras 'same' padding as ``F.pad`` wants it: (left, right, top, bottom)."""
    if layer.padding != "same":
        return (0, 0, 0, 0)
    top, bottom = same_padding(h, k, s)
    left, right = same_padding(w, k, s)
    return (left, right, top, bottom)


# --- synapses ----------------------------------------------------------------------


class Conv(nn.Module):
    """2-D convolution with Keras 'same'/'valid' padding, weights OIHW."""

    def __init__(self, kernel_hwio: np.ndarray, bias: np.ndarray | None, stride: int, pad: tuple[int, int, int, int]):
        super().__init__()
        self.register_buffer("weight", torch.from_numpy(np.ascontiguousarray(kernel_hwio.transpose(3, 2, 0, 1))))
        self.register_buffer("bias", None if bias is None else torch.from_numpy(np.asarray(bias)))
        self.stride = stride
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pad):
            x = F.pad(x, self.pad)
        return F.conv2d(x, self.weight, self.bias, self.stride)


class Dense(nn.Module):
    """Fully connected layer on the flattened (NCHW-order) input."""

    def __init__(self, kernel_io: np.ndarray, bias: np.ndarray | None, chw: tuple[int, int, int] | None):
        super().__init__()
        k = np.asarray(kernel_io)
        if chw is not None:  # rows in Keras' HWC order -> torch's CHW order
            c, h, w = chw
            k = k.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(c * h * w, -1)
        self.register_buffer("weight", torch.from_numpy(np.ascontiguousarray(k.T)))
        self.register_buffer("bias", None if bias is None else torch.from_numpy(np.asarray(bias)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.flatten(1), self.weight, self.bias)


class AvgPool(nn.Module):
    """Average pooling with Keras semantics (padding taps excluded from the mean)."""

    def __init__(self, k: int, s: int, pad: tuple[int, int, int, int], in_hw: tuple[int, int]):
        super().__init__()
        self.k, self.s, self.pad = k, s, pad
        if any(pad):
            ones = F.pad(torch.ones(1, 1, *in_hw), pad)
            self.register_buffer("taps", F.avg_pool2d(ones, k, s) * (k * k))
        else:
            self.taps = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.taps is None:
            return F.avg_pool2d(x, self.k, self.s)
        return F.avg_pool2d(F.pad(x, self.pad), self.k, self.s) * (self.k * self.k) / self.taps.to(x.dtype)


# --- neurons -----------------------------------------------------------------------


def chw(shape_hwc: tuple[int, ...]) -> tuple[int, ...]:
    """A layer's shape in Keras order (H, W, C) -> torch's (C, H, W); flat shapes unchanged."""
    return (shape_hwc[2], shape_hwc[0], shape_hwc[1]) if len(shape_hwc) == 3 else tuple(shape_hwc)


def uniform_fan(fan: np.ndarray) -> int:
    """The fan-out all neurons of ``fan`` share, or -1 where they differ (or
    there are none).  The kernels then count SynOps as spikes x fan-out
    instead of loading every spiking neuron's own: a layer that feeds only a
    max pooling (fan-out 1) or a dense layer is uniform; a 'same' conv
    layer's border neurons are not."""
    if fan.size == 0 or fan.min() != fan.max():
        return -1
    return int(fan.flat[0])


class TimeScan(nn.Module):
    """Base of the stateful neuron modules: ``forward(current)`` takes a time
    chunk ``(Tc, B, ...)`` and returns spikes of the same shape; the state
    persists across chunks until :meth:`reset`.  ``record_v`` keeps the
    membrane potential after each step of the last chunk (``self.v_trace``)."""

    def __init__(self, dtype: torch.dtype):
        super().__init__()
        self.dtype = dtype
        self.record_v = False
        self.v_trace: torch.Tensor | None = None
        self.state: Any = None
        self.reuse_output = False
        self._out: torch.Tensor | None = None
        # CPU kernels (set by the simulator, :meth:`SpikingNetwork.use_cpu_kernels`):
        # ``fan`` = each neuron's exact fan-out (int, NCHW order); then the
        # module counts its own spikes and SynOps per step into ``counted``.
        self.fan: np.ndarray | None = None
        self.fan_uniform = -1  # the fan-out every neuron shares, else -1 (see uniform_fan)
        self.counted: tuple[np.ndarray, np.ndarray] | None = None

    def reset(self) -> None:
        self.state = None
        self.v_trace = None
        self.counted = None

    def kernel_ready(self, x: torch.Tensor) -> bool:
        """Whether this chunk runs on a CPU kernel: kernels enabled (``fan``
        set) and a float32 chunk on the CPU."""
        return self.fan is not None and x.device.type == "cpu" and x.dtype == self.dtype == torch.float32

    def neuron_counts(self) -> torch.Tensor | None:
        """Per-neuron spike counts since :meth:`reset` ``(B, C, H, W)`` when
        this module keeps them itself (fused kernels), else None: the caller
        sums the returned spikes instead."""
        return None

    def output_buffer(self, shape: torch.Size, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The tensor a chunk's spikes are written to.  With ``reuse_output``
        (set by the simulator, whose consumers read a chunk's spikes before the
        next chunk) the same buffer serves every chunk of equal shape: a fresh
        multi-MB allocation per step cost as much as the neuron update on CPU."""
        buf = self._out
        if buf is None or not self.reuse_output or buf.shape != shape or buf.dtype != dtype or buf.device != device:
            buf = torch.empty(shape, dtype=dtype, device=device)
            self._out = buf if self.reuse_output else None
        return buf

    def _scan(self, current: torch.Tensor, state: Any, step: Any) -> torch.Tensor:
        """Run ``step(x_t, state) -> (spikes, state)`` (a Norse state with ``v``)
        over the chunk, keeping the state and, if asked, the membrane trace."""
        out = torch.empty(current.shape, dtype=current.dtype, device=current.device)
        trace = torch.empty(current.shape, dtype=self.dtype, device=current.device) if self.record_v else None
        for t in range(current.shape[0]):
            z, state = step(current[t].to(self.dtype), state)
            out[t] = z.to_dense() if z.is_sparse else z
            if trace is not None:
                trace[t] = state.v
        self.state = state
        self.v_trace = trace
        return out


class IFSubtract(TimeScan):
    """IF neuron with reset by subtraction (see the module docstring)."""

    def __init__(self, dtype: torch.dtype, v_th: float = 1.0):
        super().__init__(dtype)
        nt = import_norse()
        self.p = nt.IAFParameters(v_th=torch.as_tensor(v_th, dtype=dtype), v_reset=torch.as_tensor(0.0, dtype=dtype))
        self.v_th = float(v_th)

        self.pool: SpikeMaxPool | None = None  # fused max pooling (CPU kernels)
        # set by the simulator for the first layer under analog input: every
        # chunk of this batch carries the same current at every step
        self.constant_input = False
        self._tapmajor_const: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def reset(self) -> None:
        super().reset()
        self._tapmajor_const = None

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        if self.kernel_ready(current):
            return self._forward_fused(current) if self.pool is not None else self._forward_kernel(current)
        v = self.state
        if v is None:
            v = torch.zeros(current.shape[1:], dtype=self.dtype, device=current.device)
        out = self.output_buffer(current.shape, current.dtype, current.device)
        trace = torch.empty(current.shape, dtype=self.dtype, device=current.device) if self.record_v else None
        for t in range(current.shape[0]):
            v.add_(current[t])
            z = out[t]
            torch.ge(v, self.v_th, out=z)  # z = H(v - v_th), '>=' as the INI simulator
            v.sub_(z, alpha=self.v_th)  # Norse's reset_subtract, in place
            if trace is not None:
                trace[t] = v
        self.state = v
        self.v_trace = trace
        return out

    def _chunk_input(self, current: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """The chunk's current as the kernels read it, and whether it is the
        same at every step of the batch (:attr:`constant_input`)."""
        const = self.constant_input
        return (current[:1] if const else current).contiguous(), const

    def _forward_kernel(self, current: torch.Tensor) -> torch.Tensor:
        """:func:`~effmodel_norse.cpu_kernels.if_steps`: the same arithmetic as
        the torch loop above, one pass per step, spikes and SynOps counted."""
        from .cpu_kernels import if_steps, run

        tc, b = current.shape[:2]
        cur, const = self._chunk_input(current)
        n = cur[0, 0].numel()
        if self.state is None:
            self.state = torch.zeros((b, n), dtype=torch.float32)
        out = self.output_buffer(current.shape, torch.float32, current.device)
        trace = torch.empty(current.shape, dtype=torch.float32) if self.record_v else torch.empty((1, 1, 1))
        spikes, synops = np.empty((tc, b), np.int64), np.empty((tc, b), np.int64)
        run(if_steps, b, torch.get_num_threads(), cur.reshape(cur.shape[0], b, n).numpy(), const, self.state.numpy(),
            out.view(tc, b, n).numpy(), np.float32(self.v_th), self.fan, self.fan_uniform, spikes, synops,
            trace.view(trace.shape[0], trace.shape[1], -1).numpy(), self.record_v)
        self.counted = (spikes.sum(1), synops.sum(1))
        self.v_trace = trace if self.record_v else None
        return out

    def _forward_fused(self, current: torch.Tensor) -> torch.Tensor:
        """IF neurons and the max pooling behind them in one kernel
        (:func:`~effmodel_norse.cpu_kernels.if_maxpool_steps`): returns the
        *pooled* spikes; the pooling module passes them on and reports the
        counts left here.  State: potentials and spike counts, tap-major
        (:class:`TapMajor`); neurons in rows or columns no window covers run
        through :func:`~effmodel_norse.cpu_kernels.if_steps` beside it."""
        from .cpu_kernels import if_maxpool_steps, if_steps, run

        pool, layout = self.pool, self.layout
        tc, b = current.shape[:2]
        threads = torch.get_num_threads()
        cur, const = self._chunk_input(current)
        if not const and pool.keyed(pool.max_steps):
            return self._forward_fused_nchw(cur)
        if const and self._tapmajor_const is not None:
            main, rest = self._tapmajor_const  # the analog first layer: permuted once per batch, not per chunk
        else:
            main, rest = layout.split(cur)
            self._tapmajor_const = (main, rest) if const else None
        if self.state is None:
            self._nchw = False
            self.state = torch.zeros(main.shape[1:], dtype=torch.float32)
            pool.state = torch.zeros_like(self.state)  # spike counts so far, tap-major
            self._rest_v = torch.zeros((b, layout.rest), dtype=torch.float32)
            self._rest_counts = torch.zeros((b, layout.rest), dtype=torch.float32)
        out = pool.output_buffer((tc, b, *layout.pooled_chw), torch.float32, current.device)
        counts = [np.empty((tc, b), np.int64) for _ in range(4)]
        best = np.empty((b, layout.pooled), np.float32)
        run(if_maxpool_steps, b, threads, main.numpy(), const, self.state.numpy(), pool.state.numpy(),
            out.view(tc, b, -1).numpy(), np.float32(self.v_th), self.fan_main, pool.fan, *counts, best)
        spikes, synops = counts[0].sum(1), counts[1].sum(1)
        if rest is not None:  # neurons outside every window: spikes counted, fan-out 0 for 'valid' pooling
            rest_out = torch.empty((tc, b, layout.rest), dtype=torch.float32)
            rs, rso = np.empty((tc, b), np.int64), np.empty((tc, b), np.int64)
            run(if_steps, b, threads, rest.numpy(), const, self._rest_v.numpy(), rest_out.numpy(), np.float32(self.v_th),
                self.fan_rest, self.fan_rest_uniform, rs, rso, np.empty((1, 1, 1), np.float32), False)
            self._rest_counts += rest_out.sum(0)
            spikes, synops = spikes + rs.sum(1), synops + rso.sum(1)
        self.counted = (spikes, synops)
        pool.counted = (counts[2].sum(1), counts[3].sum(1))
        return out

    def _forward_fused_nchw(self, cur: torch.Tensor) -> torch.Tensor:
        """:meth:`_forward_fused` for a current that changes every step:
        :func:`~effmodel_norse.cpu_kernels.if_maxpool_nchw_steps` reads it in
        place (a permuted copy per chunk cost as much as the neurons).  State:
        potentials and counts, NCHW."""
        from .cpu_kernels import if_maxpool_nchw_steps, run

        pool, layout = self.pool, self.layout
        tc, b = cur.shape[:2]
        n = layout.c * layout.h * layout.w
        if self.state is None:
            self._nchw = True
            self.state = torch.zeros((b, n), dtype=torch.float32)
            pool.state = torch.from_numpy(np.tile(layout.prio_nchw, (b, 1)))  # pooling keys, NCHW: no spike yet
        out = pool.output_buffer((tc, b, *layout.pooled_chw), torch.float32, cur.device)
        counts = [np.empty((tc, b), np.int64) for _ in range(4)]
        run(if_maxpool_nchw_steps, b, torch.get_num_threads(), cur.reshape(tc, b, n).numpy(), self.state.numpy(),
            pool.state.numpy(), out.view(tc, b, -1).numpy(), np.float32(self.v_th), self.fan, self.fan_uniform, pool.fan,
            layout.dims, *counts)
        self.counted = (counts[0].sum(1), counts[1].sum(1))
        pool.counted = (counts[2].sum(1), counts[3].sum(1))
        return out

    def fuse(self, pool: SpikeMaxPool, in_chw: tuple[int, int, int]) -> bool:
        """Run ``pool`` inside this module's kernel (see :meth:`_forward_fused`).
        Declined (False) unless every neuron a window covers has the same
        fan-out, as each feeds exactly one window of a non-overlapping
        pooling: the tap-major kernel counts their SynOps as spikes x that."""
        layout = TapMajor(in_chw, pool.k)
        main, rest = layout.split(torch.from_numpy(self.fan.reshape(1, 1, *in_chw)))
        fan_main = uniform_fan(main.numpy())
        if fan_main < 0:
            return False
        self.pool, pool.fused, self.layout, self.fan_main = pool, True, layout, fan_main
        self.fan_rest = np.ascontiguousarray(rest.numpy()[0, 0]) if rest is not None else self.fan[:0]
        self.fan_rest_uniform = uniform_fan(self.fan_rest)
        return True

    def neuron_counts(self) -> torch.Tensor | None:
        if self.pool is None or self.pool.state is None:
            return None
        if self._nchw:  # keys: 2*k*k*count + (less than 2*k*k)
            counts = torch.floor(self.pool.state / (2 * self.layout.k ** 2))
            return counts.view(-1, self.layout.c, self.layout.h, self.layout.w)
        return self.layout.merge(self.pool.state, self._rest_counts)


class TapMajor:
    """The layout of an IF layer fused with the max pooling behind it:
    ``(KK, P)`` per image, tap ``p`` (row-major inside the k x k window)
    then pooled position (C x OH x OW, NCHW order), so that the kernel runs
    over contiguous memory; plus the ``rest``: neurons in the last rows or
    columns that no window covers ('valid' pooling of an odd size), C-major."""

    def __init__(self, chw: tuple[int, int, int], k: int):
        self.c, self.h, self.w = chw
        self.k = k
        self.oh, self.ow = self.h // k, self.w // k
        self.pooled_chw = (self.c, self.oh, self.ow)
        self.pooled = self.c * self.oh * self.ow
        self.rest = self.c * (self.h * self.w - self.oh * k * self.ow * k)
        self.dims = np.array([self.c, self.h, self.w, self.oh, self.ow, k], dtype=np.int64)
        tap = (np.arange(self.h) % k)[:, None] * k + (np.arange(self.w) % k)[None, :]
        prio = (2 * (k * k - 1 - tap)).astype(np.float32)  # the keys' tie-break (see if_maxpool_nchw_steps)
        self.prio_nchw = np.ascontiguousarray(np.broadcast_to(prio, (self.c, self.h, self.w)).reshape(-1))

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(T, B, C, H, W)`` -> main ``(T, B, KK, P)`` and rest ``(T, B, R)`` (or None), both contiguous."""
        t, b = x.shape[:2]
        k, hk, wk = self.k, self.oh * self.k, self.ow * self.k
        main = x[..., :hk, :wk].reshape(t, b, self.c, self.oh, k, self.ow, k).permute(0, 1, 4, 6, 2, 3, 5)
        main = main.reshape(t, b, k * k, self.pooled).contiguous()
        if not self.rest:
            return main, None
        rest = torch.cat([x[..., hk:, :].reshape(t, b, self.c, -1), x[..., :hk, wk:].reshape(t, b, self.c, -1)], -1)
        return main, rest.reshape(t, b, self.rest).contiguous()

    def merge(self, main: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
        """Per-image tensors in this layout -> ``(B, C, H, W)``."""
        b = main.shape[0]
        k, hk, wk = self.k, self.oh * self.k, self.ow * self.k
        full = torch.zeros((b, self.c, self.h, self.w), dtype=main.dtype)
        full[..., :hk, :wk] = main.view(b, k, k, self.c, self.oh, self.ow).permute(0, 3, 4, 1, 5, 2).reshape(b, self.c, hk, wk)
        if self.rest:
            rest = rest.view(b, self.c, -1)
            n_bottom = (self.h - hk) * self.w
            full[..., hk:, :] = rest[..., :n_bottom].reshape(b, self.c, self.h - hk, self.w)
            full[..., :hk, wk:] = rest[..., n_bottom:].reshape(b, self.c, hk, self.w - wk)
        return full


class NorseIAF(TimeScan):
    """Norse's own IAF (reset to ``v_reset``, strict threshold), step by step."""

    def __init__(self, dtype: torch.dtype, v_th: float = 1.0):
        super().__init__(dtype)
        nt = import_norse()
        self.step = nt.iaf_feed_forward_step
        self.State = nt.IAFFeedForwardState
        self.p = nt.IAFParameters(v_th=torch.as_tensor(v_th, dtype=dtype), v_reset=torch.as_tensor(0.0, dtype=dtype))

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        state = self.state or self.State(v=torch.zeros(current.shape[1:], dtype=self.dtype, device=current.device))
        return self._scan(current, state, lambda x, st: self.step(x, st, self.p))


class NorseLIF(TimeScan):
    """Norse's LIF neuron (``lif_feed_forward_step``), input scaled as documented."""

    def __init__(self, dtype: torch.dtype, tau_mem_inv: float = 100.0, tau_syn_inv: float | None = None, dt: float = 1e-3):
        super().__init__(dtype)
        nt = import_norse()
        self.step = nt.lif_feed_forward_step
        self.State = nt.LIFFeedForwardState
        self.dt = dt
        as_t = lambda v: torch.as_tensor(v, dtype=dtype)  # noqa: E731
        self.p = nt.LIFParameters(
            tau_syn_inv=as_t(tau_syn_inv if tau_syn_inv is not None else 1.0 / dt),
            tau_mem_inv=as_t(tau_mem_inv), v_leak=as_t(0.0), v_th=as_t(1.0), v_reset=as_t(0.0),
        )
        self.gain = 1.0 / (dt * tau_mem_inv)

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        if self.state is None:
            zeros = torch.zeros(current.shape[1:], dtype=self.dtype, device=current.device)
            self.state = self.State(v=zeros, i=zeros.clone())
        return self._scan(current, self.state, lambda x, st: self.step(x * self.gain, st, self.p, self.dt))


class SpikeMaxPool(TimeScan):
    """Spiking max pooling gated by the input neuron with the most spikes so far."""

    def __init__(self, k: int, s: int, pad: tuple[int, int, int, int]):
        super().__init__(torch.float32)
        self.k, self.s, self.pad = k, s, pad
        self.max_steps: int | None = None  # steps per run, set by the simulator; None: the tap-by-tap path
        self.fused = False  # computed inside the preceding IF module's kernel (CPU kernels)

    def fusable(self, in_chw: tuple[int, ...]) -> bool:
        """Whether an IF layer with output ``in_chw`` and this pooling can run
        as one kernel: non-overlapping windows, no padding."""
        return len(in_chw) == 3 and self.s == self.k and not any(self.pad) and min(in_chw[1:]) >= self.k

    def keyed(self, steps: int | None) -> bool:
        """Whether the keyed fast path applies: non-overlapping windows, no
        padding, and keys below 2**24 (exact in float32) for ``steps`` steps."""
        kk = self.k * self.k
        return steps is not None and self.s == self.k and not any(self.pad) and (steps + 2) * 2 * kk < 2**24

    def tap_priority(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """``2 * (k*k - 1 - tap)`` per input position (tap = row-major index
        inside its window), shape ``(H, W)``: the tie-break part of the key."""
        h, w = shape[-2:]
        k = self.k
        tap = (torch.arange(h, device=like.device) % k)[:, None] * k + (torch.arange(w, device=like.device) % k)[None, :]
        return (2 * (k * k - 1 - tap)).to(like.dtype)

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        if self.fused:  # already pooled, and counted, by the IF kernel before
            return spikes
        if self.kernel_ready(spikes):
            return self._forward_kernel(spikes)
        if self.keyed(self.max_steps):
            return self._forward_keyed(spikes)
        tc = spikes.shape[0]
        counts = torch.empty_like(spikes)
        prev = self.state
        for t in range(tc):  # running spike counts, including step t
            if prev is None:
                counts[t].copy_(spikes[t])
            else:
                torch.add(prev, spikes[t], out=counts[t])
            prev = counts[t]
        self.state = prev
        return self.gate(counts, spikes)

    def _forward_kernel(self, spikes: torch.Tensor) -> torch.Tensor:
        """:func:`~effmodel_norse.cpu_kernels.maxpool_steps`: any window,
        stride and padding; state = spike counts so far ``(B, C, H, W)``."""
        from .cpu_kernels import maxpool_steps, run

        tc, b, c, h, w = spikes.shape
        left, right, top, bottom = self.pad
        oh, ow = (h + top + bottom - self.k) // self.s + 1, (w + left + right - self.k) // self.s + 1
        if self.state is None:
            self.state = torch.zeros(spikes.shape[1:], dtype=torch.float32)
        out = self.output_buffer((tc, b, c, oh, ow), torch.float32, spikes.device)
        n, so = np.empty((tc, b), np.int64), np.empty((tc, b), np.int64)
        run(maxpool_steps, b, torch.get_num_threads(), spikes.contiguous().numpy(), self.state.numpy(), out.numpy(), self.k,
            self.s, top, left, self.fan, n, so, np.empty((b, ow), np.float32))
        self.counted = (n.sum(1), so.sum(1))
        return out

    def _forward_keyed(self, spikes: torch.Tensor) -> torch.Tensor:
        """The same gate as :meth:`gate`, in one ``max_pool2d`` per chunk.

        Each input neuron gets the key ``2*k*k*count + 2*(k*k-1-tap) + spike``
        (count including this step): within a window the largest key is the
        tap with the highest count, ties to the lowest tap index, and its
        parity is that tap's spike.  Keys are integers below 2**24, exact in
        float32 (checked by :meth:`keyed`).  The state is ``2*k*k*count +
        priority`` after the chunk's last step."""
        kk2 = 2 * self.k * self.k
        if self.state is None:
            self.state = self.tap_priority(spikes.shape, spikes).expand(spikes.shape[1:]).contiguous()
        tc = spikes.shape[0]
        if tc == 1:
            keyc = self.state.add_(spikes[0], alpha=kk2)  # counts including this step
            key = torch.add(keyc, spikes[0], out=self.output_buffer(keyc.shape, keyc.dtype, keyc.device))[None]
        else:
            key = torch.cumsum(spikes, 0).mul_(kk2).add_(self.state).add_(spikes)
            self.state = key[-1] - spikes[-1]
        pooled = self.window_max(key)
        return pooled.sub_(torch.floor(pooled * 0.5).mul_(2))  # the winner's spike: key mod 2

    def window_max(self, x: torch.Tensor) -> torch.Tensor:
        """Max over non-overlapping ``k x k`` windows ('valid': a remainder row
        or column is dropped), as ``k-1`` element-wise maxima over rows then
        over columns of strided views: on CPU about 10x faster than
        ``max_pool2d`` on NCHW tensors (measured, torch 2.13)."""
        k = self.k
        oh, ow = x.shape[-2] // k, x.shape[-1] // k
        rows = [x[..., di : k * oh : k, : k * ow] for di in range(k)]
        m = torch.maximum(rows[0], rows[1]) if k > 1 else rows[0].clone()
        for r in rows[2:]:
            m = torch.maximum(m, r, out=m)
        cols = [m[..., dj : k * ow : k] for dj in range(k)]
        out = torch.maximum(cols[0], cols[1]) if k > 1 else cols[0].clone()
        for c in cols[2:]:
            out = torch.maximum(out, c, out=out)
        return out

    def gate(self, counts: torch.Tensor, spikes: torch.Tensor) -> torch.Tensor:
        """Per window, the spikes of the tap with the highest count; ties go
        to the first tap in row-major order, as ``max_pool2d``'s index (tested).
        A running comparison over the ``k*k`` taps: cheaper than
        ``max_pool2d_with_indices`` + ``gather`` on CPU."""
        if any(self.pad):
            counts = F.pad(counts, self.pad, value=-1.0)
            spikes = F.pad(spikes, self.pad)
        k, s = self.k, self.s
        hp, wp = counts.shape[-2:]
        oh, ow = (hp - k) // s + 1, (wp - k) // s + 1
        best_c = best_s = None
        for di in range(k):
            for dj in range(k):
                rows, cols = slice(di, di + s * (oh - 1) + 1, s), slice(dj, dj + s * (ow - 1) + 1, s)
                c, z = counts[..., rows, cols], spikes[..., rows, cols]
                if best_c is None:
                    best_c, best_s = c, z
                    continue
                win = c > best_c
                best_c = torch.maximum(best_c, c)
                best_s = torch.where(win, z, best_s)
        return best_s.contiguous()

    def analog(self, x: torch.Tensor) -> torch.Tensor:
        """The ANN's max pooling (padding never wins), for tests."""
        if any(self.pad):
            x = F.pad(x, self.pad, value=-float("inf"))
        return F.max_pool2d(x, self.k, self.s)


# --- the network ---------------------------------------------------------------------


@dataclass
class StageInfo:
    """Static facts about one spiking layer."""

    name: str
    index: int  # index in the simulated spec
    type: str
    shape_hwc: tuple[int, ...]  # the layer's output shape, Keras order


class Stage(nn.Module):
    """One spiking layer: ``synapse`` (None for max pooling) then ``neuron``."""

    def __init__(self, info: StageInfo, synapse: nn.Module | None, neuron: TimeScan):
        super().__init__()
        self.info = info
        self.synapse = synapse
        self.neuron = neuron

    def current(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the synapse to a time chunk ``(Tc, B, ...)`` in one call."""
        tc, b = x.shape[:2]
        y = self.synapse(x.reshape(tc * b, *x.shape[2:]))
        return y.reshape(tc, b, *y.shape[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.synapse is None:
            return self.neuron(x)
        return self.neuron(self.current(x))


class SpikingNetwork(nn.Module):
    """The converted network: a list of :class:`Stage` in order."""

    def __init__(self, spec: ArchitectureSpec, stages: list[Stage]):
        super().__init__()
        self.spec = spec
        self.stages = nn.ModuleList(stages)

    def reset(self) -> None:
        for st in self.stages:
            st.neuron.reset()

    def use_cpu_kernels(self, fanouts: dict[str, np.ndarray], fuse: bool = True) -> None:
        """Run IF neurons and max pooling with the numba kernels of
        :mod:`effmodel_norse.cpu_kernels` (CPU, float32), each module counting
        its own spikes and SynOps with ``fanouts[name]`` (exact fan-out per
        neuron, NCHW order).  With ``fuse``, an IF layer followed by a
        non-overlapping, unpadded max pooling runs as one kernel.  Other
        neuron models keep the torch path."""
        stages = list(self.stages)
        for st in stages:
            if isinstance(st.neuron, (IFSubtract, SpikeMaxPool)):
                fan = np.asarray(fanouts[st.info.name]).reshape(-1)
                # per (step, image) sums of at most N x max fan-out: int32 when that fits
                dtype = np.int32 if fan.size * max(float(fan.max(initial=0)), 1.0) < 2**31 else np.int64
                st.neuron.fan = np.ascontiguousarray(fan.astype(dtype))
                st.neuron.fan_uniform = uniform_fan(st.neuron.fan)
        if not fuse:
            return
        for prev, st in zip(stages, stages[1:]):
            in_chw = chw(prev.info.shape_hwc)
            if isinstance(prev.neuron, IFSubtract) and isinstance(st.neuron, SpikeMaxPool) and st.neuron.fusable(in_chw):
                prev.neuron.fuse(st.neuron, in_chw)  # type: ignore[arg-type]  # declined: the modules run apart

    def forward(self, x: torch.Tensor, first_current: torch.Tensor | None = None) -> torch.Tensor:
        """Simulate one time chunk.  ``x``: input ``(Tc, B, C, H, W)`` (spikes
        or analog values); or ``first_current``: the first layer's current
        ``(Tc, B, ...)`` already computed (analog input: same at every step)."""
        stages = list(self.stages)
        if first_current is not None:
            h = stages[0].neuron(first_current)
            stages = stages[1:]
        else:
            h = x
        for st in stages:
            h = st(h)
        return h

    @torch.no_grad()
    def analog_forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The ANN computed with the same synapse modules (ReLU instead of
        spikes, true max pooling): per stage output, NCHW.  For tests."""
        outs = []
        h = x
        for st in self.stages:
            if isinstance(st.neuron, SpikeMaxPool):
                h = st.neuron.analog(h)
            else:
                h = torch.relu(st.synapse(h))
            outs.append(h)
        return outs


def build_network(
    network: ConvertedNetwork,
    neuron: str = "if",
    dtype: torch.dtype = torch.float32,
    lif_tau_mem_inv: float = 100.0,
    lif_tau_syn_inv: float | None = None,
) -> SpikingNetwork:
    """Build the torch network of ``network.simulated_spec`` with its normalised weights."""
    from effmodel.errors import UsageError

    if neuron not in NEURONS:
        raise UsageError(f"unknown norse neuron {neuron!r} (use one of {', '.join(NEURONS)})")
    spec = network.simulated_spec
    shapes = spec.shapes()
    spiking = set(spiking_layer_indices(spec))

    def make_neuron() -> TimeScan:
        if neuron == "if":
            return IFSubtract(dtype)
        if neuron == "iaf":
            return NorseIAF(dtype)
        return NorseLIF(dtype, lif_tau_mem_inv, lif_tau_syn_inv)

    stages: list[Stage] = []
    flat_from: tuple[int, int, int] | None = None  # CHW before the pending flatten
    for i, layer in enumerate(spec.layers):
        in_shape, out_shape = shapes[i]
        if layer.type == "flatten":
            if len(in_shape) == 3:
                flat_from = (in_shape[2], in_shape[0], in_shape[1])
            continue
        if i not in spiking:
            continue  # dropout
        info = StageInfo(layer.name, i, layer.type, tuple(out_shape))
        if layer.type == "conv2d":
            h, w, _ = in_shape
            w_ = network.normalised_weights[layer.name]
            syn: nn.Module | None = Conv(w_.kernel, w_.bias, layer.stride, torch_padding(layer, h, w, layer.kernel, layer.stride))
            neu = make_neuron()
        elif layer.type == "dense":
            w_ = network.normalised_weights[layer.name]
            syn = Dense(w_.kernel, w_.bias, flat_from)
            flat_from = None
            neu = make_neuron()
        elif layer.type == "avgpool":
            h, w, _ = in_shape
            k, s = layer.pool, layer.pool_stride
            syn = AvgPool(k, s, torch_padding(layer, h, w, k, s), (h, w))
            neu = make_neuron()
        else:  # maxpool
            h, w, _ = in_shape
            k, s = layer.pool, layer.pool_stride
            syn = None
            neu = SpikeMaxPool(k, s, torch_padding(layer, h, w, k, s))
        stages.append(Stage(info, syn, neu))
    return SpikingNetwork(spec, stages).eval()
