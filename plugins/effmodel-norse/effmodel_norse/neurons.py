"""The neurons of the torch network: the reference implementation of every
neuron model, stateful modules that scan a time chunk ``(Tc, B, ...)`` of
input current (or, for max pooling, input spikes) and return spikes of the
same shape.  The CPU backend (:mod:`effmodel_norse.cpu_backend`) replaces
some of them by numba kernels computing the very same floats.

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

``reset`` option, for ``if`` and ``adaptive``: ``subtract`` (default) or
``zero``; ``if`` with ``reset=zero`` is :class:`IFResetZero` (``>=`` as
``if``, unlike Norse's ``iaf``).

``adaptive``
    The adaptive spiking neuron (ASN) of Zambrano, Nusselder, Scholte &
    Bohte, "Sparse Computation in Adaptive Spiking Neural Networks" (Front.
    Neurosci. 2019), as the numpy reference ``effmodel_numpysim.adaptive``
    (:class:`AdaptiveSpiking`): a rate code that fires only as often as it
    needs to track its input.  Input current ``I`` (spikes of height ``H``
    through a post-synaptic current decaying with ``tau_beta``; the first
    layer takes ``W x`` directly), membrane ``S = b + (phi * I)`` (filter
    ``tau_phi``), self-prediction ``S_hat`` (decay ``tau_eta``), a spike when
    ``S - S_hat > theta / 2``, then ``S_hat += theta`` (``reset=zero``:
    ``S_hat = S``), and a multiplicative adaptive threshold ``theta = theta0
    + sum m_f theta(t_s) exp(-(t - t_s)/tau_gamma)``, ``theta0 = m_f``.
    Steps of 1 ms: ``tau_phi`` 2.5, ``tau_gamma`` 15, ``tau_eta = tau_beta``
    50, ``m_f`` 0.1 (``mf`` option).  Conversion rule: the spike height ``H``
    makes the ASN's transfer function map activation 1 to 1
    (:func:`spike_height`), so normalised ReLU units are replaced directly.
    State in float64, as the reference.

Time to first spike (``--coding ttfs``, Rueckauer & Liu 2018, as the numpy
reference ``effmodel_numpysim.ttfs``): :class:`TtfsIF` integrates until
``v >= 1``, fires **once**, resets to zero and integrates nothing more (a
refractory period as long as the run); :class:`TtfsMaxPool` fires once, at
the first step any input of its window fires (the earliest spike is the
largest activation).  The persistent current of a TTFS spike is a synapse
matter (:class:`effmodel_norse.synapses.HeldSpikes`).

Spiking max pooling: each pooling window passes on the spikes of the input
neuron with the highest spike count so far, counts including the current
step (Rueckauer et al. 2017; snntoolbox's ``SpikeMaxPooling2D``).  Ties go to
the first neuron of the window in row-major order (torch's ``max_pool2d``
index); padding taps never win.  The gated spikes *are* the pooling layer's
spikes (an IF neuron with threshold 1 fed 0/1 input would reproduce them).
Average pooling feeds the mean of the input spikes into IF neurons.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

import torch
import torch.nn.functional as F
from torch import nn

NEURONS = ("if", "iaf", "lif", "adaptive")
"""The rate-coded neuron models of the ``neuron`` option."""


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

    def reset(self) -> None:
        self.state = None
        self.v_trace = None

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


class IntegrateAndFire(TimeScan):
    """IF neurons, threshold ``v_th``, spike when ``v >= v_th`` (as the INI
    simulator), then :meth:`reset_spiking` (subclasses: by subtraction or to
    zero)."""

    def __init__(self, dtype: torch.dtype, v_th: float = 1.0):
        super().__init__(dtype)
        self.v_th = float(v_th)

    def reset_spiking(self, v: torch.Tensor, z: torch.Tensor) -> None:
        """Reset the potentials ``v`` of the neurons that spiked (``z``, 0/1) in place."""
        raise NotImplementedError

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        v = self.state
        if v is None:
            v = torch.zeros(current.shape[1:], dtype=self.dtype, device=current.device)
        out = self.output_buffer(current.shape, current.dtype, current.device)
        trace = torch.empty(current.shape, dtype=self.dtype, device=current.device) if self.record_v else None
        for t in range(current.shape[0]):
            v.add_(current[t])
            z = out[t]
            torch.ge(v, self.v_th, out=z)  # z = H(v - v_th), '>=' as the INI simulator
            self.reset_spiking(v, z)
            if trace is not None:
                trace[t] = v
        self.state = v
        self.v_trace = trace
        return out


class IFSubtract(IntegrateAndFire):
    """IF neuron with reset by subtraction (see the module docstring): the
    torch reference, whose float32 operations the CPU kernels repeat one for
    one (:mod:`effmodel_norse.cpu_backend`)."""

    def __init__(self, dtype: torch.dtype, v_th: float = 1.0):
        super().__init__(dtype, v_th)
        nt = import_norse()
        self.p = nt.IAFParameters(v_th=torch.as_tensor(v_th, dtype=dtype), v_reset=torch.as_tensor(0.0, dtype=dtype))

    def reset_spiking(self, v: torch.Tensor, z: torch.Tensor) -> None:
        v.sub_(z, alpha=self.v_th)  # Norse's reset_subtract, in place


class IFResetZero(IntegrateAndFire):
    """IF neuron that resets to zero (``reset=zero``): as :class:`IFSubtract`
    (``v >= v_th``) but ``v = 0`` after a spike, so the charge above the
    threshold is lost (the numpy reference's ``reset=zero``)."""

    def reset_spiking(self, v: torch.Tensor, z: torch.Tensor) -> None:
        v.masked_fill_(z.bool(), 0.0)


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


@dataclass(frozen=True)
class AsnParameters:
    """The adaptive spiking neuron's constants; times in steps (1 ms each)."""

    mf: float = 0.1  # speed of adaptation, also the resting threshold theta0
    tau_phi: float = 2.5  # membrane filter
    tau_gamma: float = 15.0  # threshold adaptation
    tau_eta: float = 50.0  # the self-prediction S_hat, and the post-synaptic current (tau_beta)

    @property
    def theta0(self) -> float:
        return self.mf

    @property
    def tau_beta(self) -> float:
        return self.tau_eta


def transfer(s, p: AsnParameters = AsnParameters()) -> np.ndarray:
    """The ASN's transfer function for spikes of height 1: the mean
    post-synaptic contribution of a neuron held at activation ``s`` (0 below
    ``theta0 / 2``), after Zambrano et al. 2019 as its authors' group codes
    it (``transfer_avgPSP``); the numpy reference implements the same."""
    s = np.asarray(s, dtype=np.float64)
    g, e, th = p.tau_gamma, p.tau_eta, p.theta0
    c1, c2 = 2 * p.mf * g * g, 2 * th * e * g
    c3, c4 = g * (p.mf * g + 2 * (p.mf + 1) * e), th * e * (g + e)

    def psp(x):
        return 1.0 / np.expm1((c1 * x + c2) / (c3 * x + c4))

    below = s < th / 2
    return np.where(below, 0.0, psp(np.where(below, th / 2, s)) - psp(th / 2) + 0.5)


def spike_height(p: AsnParameters = AsnParameters()) -> float:
    """The conversion rule: the spike height ``H`` for which the transfer maps activation 1 to 1."""
    return float(1.0 / transfer(1.0, p))


class AdaptiveSpiking(TimeScan):
    """A layer of adaptive spiking neurons (see the module docstring).

    ``bias``: the layer's bias, the constant part of ``S`` (broadcast over
    the neurons, NCHW), or None; ``direct``: the first layer, whose current
    (``W x``, no bias) is taken as ``I`` directly instead of through the
    post-synaptic filter.  The input of later layers is spikes of height
    ``H`` (:class:`~effmodel_norse.synapses.SpikeHeight`).  ``v_trace`` (with
    ``record_v``): ``S - S_hat`` after each step, what the ``potential``
    readout compares.  State and arithmetic in float64, operation for
    operation as the numpy reference."""

    def __init__(self, params: AsnParameters, bias: torch.Tensor | None, direct: bool, reset: str = "subtract"):
        super().__init__(torch.float64)
        self.p, self.direct, self.reset_to_zero = params, direct, reset == "zero"
        self.register_buffer("bias", None if bias is None else bias.to(torch.float64))
        self.d_phi, self.d_gamma, self.d_eta = (math.exp(-1.0 / t) for t in (params.tau_phi, params.tau_gamma, params.tau_eta))
        self.d_beta = math.exp(-1.0 / params.tau_beta)

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        shape, dev = current.shape[1:], current.device
        if self.state is None:
            zeros = torch.zeros(shape, dtype=torch.float64, device=dev)
            bias = torch.zeros((), dtype=torch.float64, device=dev) if self.bias is None else self.bias
            self.state = {"I": zeros.clone(), "S_dyn": zeros.clone(), "S_hat": zeros.clone(), "theta_dyn": zeros.clone(),
                          "theta": torch.full(shape, self.p.theta0, dtype=torch.float64, device=dev), "bias": bias, "S": zeros}
        s = self.state
        out = self.output_buffer(current.shape, current.dtype, current.device)
        trace = torch.empty(current.shape, dtype=torch.float64, device=dev) if self.record_v else None
        for t in range(current.shape[0]):
            c = current[t].to(torch.float64)
            s["I"] = c if self.direct else self.d_beta * s["I"] + c  # post-synaptic current
            s["S_dyn"] = (1 - self.d_phi) * s["I"] + self.d_phi * s["S_dyn"]  # membrane filter
            s["S"] = s["bias"] + s["S_dyn"]
            s["S_hat"] = s["S_hat"] * self.d_eta
            spike = s["S"] - s["S_hat"] > s["theta"] / 2
            if self.reset_to_zero:
                s["S_hat"] = torch.where(spike, s["S"], s["S_hat"])
            else:
                s["S_hat"] = s["S_hat"] + s["theta"] * spike
            s["theta_dyn"] = (s["theta_dyn"] + self.p.mf * s["theta"] * spike) * self.d_gamma
            s["theta"] = self.p.theta0 + s["theta_dyn"]
            out[t] = spike
            if trace is not None:
                trace[t] = s["S"] - s["S_hat"]
        self.v_trace = trace
        return out


class TtfsIF(TimeScan):
    """The TTFS neuron: integrate, fire once at ``v >= v_th``, reset to zero,
    refractory for the rest of the run (see the module docstring).  State:
    potentials and whether each neuron has fired.  ``v_trace`` (with
    ``record_v``) holds the potential of each step *before* the reset: at a
    neuron's firing step, the value the ``potential`` readout compares."""

    def __init__(self, dtype: torch.dtype, v_th: float = 1.0):
        super().__init__(dtype)
        self.v_th = float(v_th)

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        if self.state is None:
            v = torch.zeros(current.shape[1:], dtype=self.dtype, device=current.device)
            fired = torch.zeros(current.shape[1:], dtype=torch.bool, device=current.device)
        else:
            v, fired = self.state
        out = self.output_buffer(current.shape, current.dtype, current.device)
        trace = torch.empty(current.shape, dtype=self.dtype, device=current.device) if self.record_v else None
        zero = torch.zeros((), dtype=self.dtype, device=current.device)
        for t in range(current.shape[0]):
            v = torch.where(fired, v, v + current[t].to(self.dtype))  # a neuron that has fired integrates no more
            z = v >= self.v_th
            if trace is not None:
                trace[t] = v
            v = torch.where(z, zero, v)  # reset to zero
            fired |= z
            out[t] = z
        self.state = (v, fired)
        self.v_trace = trace
        return out


class TtfsMaxPool(TimeScan):
    """TTFS max pooling: a pooling neuron fires once, at the first step any
    input of its window fires (padding never fires).  State: whether each
    pooling neuron has fired."""

    def __init__(self, k: int, s: int, pad: tuple[int, int, int, int]):
        super().__init__(torch.float32)
        self.k, self.s, self.pad = k, s, pad

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        tc, b = spikes.shape[:2]
        flat = spikes.reshape(tc * b, *spikes.shape[2:])
        if any(self.pad):
            flat = F.pad(flat, self.pad)
        reached = F.max_pool2d(flat, self.k, self.s) > 0  # some input of the window fires at this step
        reached = reached.reshape(tc, b, *reached.shape[1:])
        fired = self.state if self.state is not None else torch.zeros_like(reached[0])
        out = self.output_buffer(reached.shape, spikes.dtype, spikes.device)
        for t in range(tc):
            z = reached[t] & ~fired
            fired |= z
            out[t] = z
        self.state = fired
        return out


__all__ = ["AdaptiveSpiking", "AsnParameters", "IFResetZero", "IFSubtract", "IntegrateAndFire", "NEURONS", "NorseIAF", "NorseLIF", "SpikeMaxPool", "TimeScan", "TtfsIF", "TtfsMaxPool",
           "import_norse", "spike_height", "transfer"]
