"""The CPU backend: stage modules that run the numba kernels of
:mod:`effmodel_norse.cpu_kernels` in place of the torch reference neurons.

:func:`use_cpu_kernels` *replaces* the neuron module of a stage (it never
mutates the reference modules of :mod:`effmodel_norse.neurons`):

* an ``if`` neuron (:class:`~effmodel_norse.neurons.IFSubtract`) becomes a
  :class:`KernelIF`;
* a spiking max pooling becomes a :class:`KernelMaxPool`;
* with ``fuse``, an IF layer followed by a non-overlapping, unpadded max
  pooling becomes one pair: :class:`FusedIFMaxPool` in the IF stage (one
  kernel computes both layers) and :class:`FusedMaxPool` in the pooling
  stage (it passes the pooled spikes on and reports their counts);
* every other module (``iaf``, ``lif``, a new code's neurons) keeps its
  torch reference.

Each kernel module counts its own spikes and SynOps per step (``counted``,
read by the simulator's hook) from ``fan``: each neuron's exact fan-out in
NCHW order.  The kernels repeat the reference's float32 operations one for
one, so spikes, SynOps, predictions and per-neuron counts are bit-identical
(``tests/test_cpu_kernels.py``).  numba is imported when a kernel first runs.
"""

from __future__ import annotations

import numpy as np
import torch

from .neurons import IFSubtract, SpikeMaxPool, TimeScan
from .synapses import chw


def uniform_fan(fan: np.ndarray) -> int:
    """The fan-out all neurons of ``fan`` share, or -1 where they differ (or
    there are none).  The kernels then count SynOps as spikes x fan-out
    instead of loading every spiking neuron's own: a layer that feeds only a
    max pooling (fan-out 1) or a dense layer is uniform; a 'same' conv
    layer's border neurons are not."""
    if fan.size == 0 or fan.min() != fan.max():
        return -1
    return int(fan.flat[0])


def kernel_fan(fan: np.ndarray) -> np.ndarray:
    """``fan`` flattened in the integer type the kernels sum in: int32 when
    per (step, image) sums of at most N x max fan-out fit it, else int64."""
    fan = np.asarray(fan).reshape(-1)
    dtype = np.int32 if fan.size * max(float(fan.max(initial=0)), 1.0) < 2**31 else np.int64
    return np.ascontiguousarray(fan.astype(dtype))


class SelfCounting:
    """A module that counts its own spikes and SynOps per step on a kernel.

    ``fan``: each neuron's exact fan-out (:func:`kernel_fan`);
    ``fan_uniform``: :func:`uniform_fan` of it; ``counted``: after a chunk
    that ran on a kernel, (spikes, SynOps) per step, int64 ``(Tc,)``; None
    when the chunk took the torch path (then the caller counts the spikes)."""

    fan: np.ndarray
    fan_uniform: int
    counted: tuple[np.ndarray, np.ndarray] | None

    def init_counting(self, fan: np.ndarray) -> None:
        self.fan = kernel_fan(fan)
        self.fan_uniform = uniform_fan(self.fan)
        self.counted = None

    def reset(self) -> None:
        super().reset()  # type: ignore[misc]  # the neuron module's own reset, next in the MRO
        self.counted = None

    def kernel_ready(self, x: torch.Tensor) -> bool:
        """Whether this chunk runs on a kernel: a float32 chunk on the CPU
        (else the torch reference runs, e.g. after ``.to("cuda")``)."""
        return x.device.type == "cpu" and x.dtype == torch.float32


class KernelIF(SelfCounting, IFSubtract):
    """The ``if`` neuron on :func:`~effmodel_norse.cpu_kernels.if_steps`: the
    same arithmetic as :class:`~effmodel_norse.neurons.IFSubtract`, one pass
    per step, spikes and SynOps counted in the same loop."""

    def __init__(self, reference: IFSubtract, fan: np.ndarray):
        super().__init__(torch.float32, reference.v_th)
        self.pool: FusedMaxPool | None = None  # the max pooling computed in this kernel too (FusedIFMaxPool)
        self.reuse_output = reference.reuse_output
        self.init_counting(fan)
        # set by the simulator for the first layer under analog input: every
        # chunk of this batch carries the same current at every step
        self.constant_input = False

    def _chunk_input(self, current: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """The chunk's current as the kernels read it, and whether it is the
        same at every step of the batch (:attr:`constant_input`)."""
        const = self.constant_input
        return (current[:1] if const else current).contiguous(), const

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        if not self.kernel_ready(current):
            return super().forward(current)
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


class KernelMaxPool(SelfCounting, SpikeMaxPool):
    """Spiking max pooling on :func:`~effmodel_norse.cpu_kernels.maxpool_steps`:
    any window, stride and padding; state = spike counts so far ``(B, C, H, W)``."""

    fused = False  # computed on its own (FusedMaxPool: inside the IF kernel before it)

    def __init__(self, reference: SpikeMaxPool, fan: np.ndarray):
        super().__init__(reference.k, reference.s, reference.pad)
        self.max_steps, self.reuse_output = reference.max_steps, reference.reuse_output
        self.init_counting(fan)

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        if not self.kernel_ready(spikes):
            return super().forward(spikes)
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


class FusedMaxPool(KernelMaxPool):
    """The pooling stage of a :class:`FusedIFMaxPool` pair: its input is
    already pooled (and counted) by the IF kernel before it; it passes the
    spikes on and reports the counts the pair left in ``counted``."""

    fused = True

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        return spikes


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


def fusable(pool: SpikeMaxPool, in_chw: tuple[int, ...]) -> bool:
    """Whether an IF layer with output ``in_chw`` and ``pool`` behind it can
    run as one kernel: non-overlapping windows, no padding."""
    return len(in_chw) == 3 and pool.s == pool.k and not any(pool.pad) and min(in_chw[1:]) >= pool.k


class FusedIFMaxPool(KernelIF):
    """IF neurons and the max pooling behind them in one kernel: returns the
    *pooled* spikes; its pooling stage (:attr:`pool`, a :class:`FusedMaxPool`)
    passes them on and reports the pooled counts left there.

    With a constant current (the analog first layer):
    :func:`~effmodel_norse.cpu_kernels.if_maxpool_steps` on a tap-major state
    (:class:`TapMajor`), neurons in rows or columns no window covers running
    through :func:`~effmodel_norse.cpu_kernels.if_steps` beside it; with a
    changing one, :func:`~effmodel_norse.cpu_kernels.if_maxpool_nchw_steps`
    reads it in place (NCHW) with one pooling key per neuron."""

    def __init__(self, reference: IFSubtract, fan: np.ndarray, pool: FusedMaxPool, layout: TapMajor, fan_main: int):
        super().__init__(reference, fan)
        self.pool, self.layout, self.fan_main = pool, layout, fan_main
        rest = layout.split(torch.from_numpy(self.fan.reshape(1, 1, layout.c, layout.h, layout.w)))[1]
        self.fan_rest = np.ascontiguousarray(rest.numpy()[0, 0]) if rest is not None else self.fan[:0]
        self.fan_rest_uniform = uniform_fan(self.fan_rest)
        self._tapmajor_const: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self._nchw = False
        self.pool_state: torch.Tensor | None = None  # tap-major spike counts so far, or NCHW pooling keys

    @classmethod
    def pair(cls, reference: IFSubtract, fan: np.ndarray, pool: SpikeMaxPool, pool_fan: np.ndarray,
             in_chw: tuple[int, int, int]) -> tuple[FusedIFMaxPool, FusedMaxPool] | None:
        """The two stage modules replacing ``reference`` and ``pool``, or None
        where they cannot fuse: windows overlap or are padded, or the neurons
        a window covers differ in fan-out (each feeds exactly one window of
        a non-overlapping pooling, and the tap-major kernel counts their
        SynOps as spikes x that one fan-out)."""
        if not fusable(pool, in_chw):
            return None
        layout = TapMajor(in_chw, pool.k)
        main = layout.split(torch.from_numpy(kernel_fan(fan).reshape(1, 1, *in_chw)))[0]
        fan_main = uniform_fan(main.numpy())
        if fan_main < 0:
            return None
        pooled = FusedMaxPool(pool, pool_fan)
        return cls(reference, fan, pooled, layout, fan_main), pooled

    def reset(self) -> None:
        super().reset()
        self._tapmajor_const = None
        self.pool_state = None

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        if not self.kernel_ready(current):
            raise RuntimeError("a fused IF + max pooling runs on CPU float32 chunks only")
        from .cpu_kernels import if_maxpool_steps, if_steps, run

        pool, layout = self.pool, self.layout
        tc, b = current.shape[:2]
        threads = torch.get_num_threads()
        cur, const = self._chunk_input(current)
        if not const and pool.keyed(pool.max_steps):
            return self._forward_nchw(cur)
        if const and self._tapmajor_const is not None:
            main, rest = self._tapmajor_const  # the analog first layer: permuted once per batch, not per chunk
        else:
            main, rest = layout.split(cur)
            self._tapmajor_const = (main, rest) if const else None
        if self.state is None:
            self._nchw = False
            self.state = torch.zeros(main.shape[1:], dtype=torch.float32)
            self.pool_state = torch.zeros_like(self.state)  # spike counts so far, tap-major
            self._rest_v = torch.zeros((b, layout.rest), dtype=torch.float32)
            self._rest_counts = torch.zeros((b, layout.rest), dtype=torch.float32)
        out = pool.output_buffer((tc, b, *layout.pooled_chw), torch.float32, current.device)
        counts = [np.empty((tc, b), np.int64) for _ in range(4)]
        best = np.empty((b, layout.pooled), np.float32)
        run(if_maxpool_steps, b, threads, main.numpy(), const, self.state.numpy(), self.pool_state.numpy(),
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

    def _forward_nchw(self, cur: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` for a current that changes every step:
        :func:`~effmodel_norse.cpu_kernels.if_maxpool_nchw_steps` reads it in
        place (a permuted copy per chunk cost as much as the neurons).  State:
        potentials and pooling keys, NCHW."""
        from .cpu_kernels import if_maxpool_nchw_steps, run

        pool, layout = self.pool, self.layout
        tc, b = cur.shape[:2]
        n = layout.c * layout.h * layout.w
        if self.state is None:
            self._nchw = True
            self.state = torch.zeros((b, n), dtype=torch.float32)
            self.pool_state = torch.from_numpy(np.tile(layout.prio_nchw, (b, 1)))  # pooling keys, NCHW: no spike yet
        out = pool.output_buffer((tc, b, *layout.pooled_chw), torch.float32, cur.device)
        counts = [np.empty((tc, b), np.int64) for _ in range(4)]
        run(if_maxpool_nchw_steps, b, torch.get_num_threads(), cur.reshape(tc, b, n).numpy(), self.state.numpy(),
            self.pool_state.numpy(), out.view(tc, b, -1).numpy(), np.float32(self.v_th), self.fan, self.fan_uniform,
            pool.fan, layout.dims, *counts)
        self.counted = (counts[0].sum(1), counts[1].sum(1))
        pool.counted = (counts[2].sum(1), counts[3].sum(1))
        return out

    def neuron_counts(self) -> torch.Tensor | None:
        """The IF layer's per-neuron spike counts, kept in the pooling state
        (the fused layer's spikes never leave the kernel)."""
        if self.pool_state is None:
            return None
        if self._nchw:  # keys: 2*k*k*count + (less than 2*k*k)
            counts = torch.floor(self.pool_state / (2 * self.layout.k ** 2))
            return counts.view(-1, self.layout.c, self.layout.h, self.layout.w)
        return self.layout.merge(self.pool_state, self._rest_counts)


def use_cpu_kernels(net, fanouts: dict[str, np.ndarray], fuse: bool = True) -> None:
    """Replace the neuron modules of ``net``'s stages (a
    :class:`~effmodel_norse.network.SpikingNetwork` on the CPU, float32) that
    have a kernel: ``if`` neurons and spiking max pooling, counting their own
    spikes and SynOps with ``fanouts[name]`` (exact fan-out per neuron, NCHW
    order).  With ``fuse``, an IF layer followed by a non-overlapping,
    unpadded max pooling becomes one :class:`FusedIFMaxPool` pair.  Modules
    without a kernel (other neuron models, other codes) stay as they are."""
    stages = list(net.stages)
    done: set[int] = set()
    if fuse:
        for i, (prev, st) in enumerate(zip(stages, stages[1:])):
            if type(prev.neuron) is IFSubtract and type(st.neuron) is SpikeMaxPool:
                pair = FusedIFMaxPool.pair(prev.neuron, fanouts[prev.info.name], st.neuron, fanouts[st.info.name],
                                           chw(prev.info.shape_hwc))  # type: ignore[arg-type]
                if pair is not None:
                    prev.neuron, st.neuron = pair
                    done |= {i, i + 1}
    for i, st in enumerate(stages):
        if i in done:
            continue
        if type(st.neuron) is IFSubtract:
            st.neuron = KernelIF(st.neuron, fanouts[st.info.name])
        elif type(st.neuron) is SpikeMaxPool:
            st.neuron = KernelMaxPool(st.neuron, fanouts[st.info.name])


__all__ = ["FusedIFMaxPool", "FusedMaxPool", "KernelIF", "KernelMaxPool", "SelfCounting", "TapMajor", "TimeScan",
           "fusable", "kernel_fan", "uniform_fan", "use_cpu_kernels"]
