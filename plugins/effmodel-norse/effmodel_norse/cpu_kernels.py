"""CPU kernels (numba) for the IF neuron and spiking max pooling, with exact counting fused in.

Why: with plain torch ops every neuron step is three to seven passes over a
layer's state (add, compare, subtract, count, pooling keys...), each a
separate trip through memory.  On a CPU that cost SmallCNN1 8x its dense
floor (issue 10): its 21,632 first-layer neurons are updated at every step,
while the floor only times the synapses behind them.  Here each neuron's
whole step, and the counting of its spikes and SynOps, is one vectorised
loop over contiguous memory.

Exactness: the arithmetic is the torch path's, operation for operation, in
float32: ``v = v + i``; ``z = v >= th``; ``v = v - th`` where ``z`` (the
torch path subtracts ``z * th``, which is ``th`` or exactly 0).  Spikes,
SynOps and membrane potentials are therefore bit-identical to the torch path
at any vector width (tested; :func:`prefer_wide_vectors`), whose neuron
arithmetic is also the GPU's fp32 path's.  Counts are integers: spikes and SynOps per
(step, image) are summed in the fan-outs' integer type, int32 where the
largest possible sum fits it (:func:`effmodel_norse.cpu_backend.kernel_fan`), else
int64: exact at any size.

Layouts are torch's: chunks ``(Tc, B, N)`` with ``N`` the neurons of one
image (NCHW order flattened), states ``(B, N)``.  Work is split over the
images of the batch (:func:`run`), on as many threads as torch uses.  Kernels compile on first use
and are cached on disk (``cache=True``): a second process starts in well
under a second.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def prefer_wide_vectors() -> bool:
    """Let LLVM vectorise these kernels with 512-bit registers where the CPU
    has AVX-512.  Why: LLVM's tuning for AVX-512 Intel cores prefers 256-bit
    vectors (a guard against the clock drop of early Skylake chips); here the
    kernels are bound by vector instructions, and 512-bit vectors made the
    fused IF + pooling kernel about 1.5x faster (benchmarks/README.md).  Elementwise
    float32 operations give the same bits at any width, so results do not
    change.

    Done through numba's documented ``CPU_NAME``/``CPU_FEATURES`` settings
    (the host's own name and features, plus ``-prefer-256-bit``), set before
    numba builds its code generator.  Skipped, and numba's defaults kept,
    when the user set ``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES`` (their choice
    wins) or turned AVX off (``NUMBA_ENABLE_AVX=0``: numba's feature list,
    used here, then has none), when this process already compiled numba code
    (the code generator exists and cannot change), or without AVX-512.
    Returns whether it applied."""
    import llvmlite.binding as llvm
    from numba.core import config
    from numba.core.codegen import get_host_cpu_features
    from numba.core.registry import cpu_target

    if os.environ.get("NUMBA_CPU_NAME") or os.environ.get("NUMBA_CPU_FEATURES"):
        return False
    if config.CPU_NAME is not None or config.CPU_FEATURES is not None:
        return False
    if "_toplevel_target_context" in vars(cpu_target):  # numba's code generator already exists
        return False
    features = get_host_cpu_features()  # what numba itself would use, NUMBA_ENABLE_AVX honoured
    if "+avx512f" not in features.split(","):
        return False
    config.CPU_NAME = llvm.get_host_cpu_name()
    config.CPU_FEATURES = features + ",-prefer-256-bit"
    return True


WIDE_VECTORS = prefer_wide_vectors()

from numba import njit  # noqa: E402  (after prefer_wide_vectors: numba's code generator reads its settings once)


@njit(inline="always")
def if_step(v, i, th):  # pragma: no cover - compiled
    """One IF neuron step, the arithmetic every kernel shares: ``x = v + i``;
    spike ``z = x >= th`` (as 0/1 float32); reset by subtraction, ``x - z*th``
    (``z*th`` is ``th`` or exactly 0, as in the torch path).  Returns the new
    potential and ``z``.  Inlined by numba into the calling loop, whose shape
    LLVM then vectorises as before."""
    x = v + i
    z = np.float32(x >= th)
    return x - z * th, z


@njit(cache=True, nogil=True, boundscheck=False)
def if_steps(j0, j1, cur, const, v, out, th, fan, fan_uniform, spikes_tb, synops_tb, trace, keep_trace):  # pragma: no cover - compiled
    """IF neurons with reset by subtraction over one time chunk.

    ``cur``: input current ``(Tc, B, N)``, or ``(1, B, N)`` with ``const``
    (the same current at every step: the first layer under analog input).
    ``v``: membrane potentials ``(B, N)``, updated in place.  ``out``: spikes
    ``(Tc, B, N)`` (0/1 float32).  ``fan``: each neuron's exact fan-out
    ``(N,)``, an integer type in which every per-(step, image) sum fits (the
    caller checks); ``fan_uniform``: the fan-out when all neurons share it,
    else -1 (SynOps = spikes x fan-out, no load per neuron).
    ``spikes_tb``/``synops_tb``: ``(Tc, B)`` int64, filled with each image's
    spikes and SynOps per step.  ``trace``: ``(Tc, B, N)``,
    the potential after each step, written when ``keep_trace``.  Branch-free
    selects and integer sums, so that the inner loop vectorises."""
    tc, b, n = out.shape
    zero = np.zeros(1, fan.dtype)[0]  # sums in the fan-outs' type (int32 where it fits: half the work of int64)
    uniform = fan_uniform >= 0
    for j in range(j0, j1):
        vj = v[j]
        for t in range(tc):
            cj = cur[0, j] if const else cur[t, j]
            oj = out[t, j]
            s = zero
            so = zero
            for i in range(n):
                vj[i], zf = if_step(vj[i], cj[i], th)
                oj[i] = zf
                s += np.int32(zf)
                if not uniform:  # loop-invariant: compiled once with, once without
                    so += fan[i] if zf != 0 else zero
            spikes_tb[t, j] = s
            synops_tb[t, j] = s * fan_uniform if uniform else so
            if keep_trace:
                trace[t, j] = vj


@njit(cache=True, nogil=True, boundscheck=False)
def maxpool_steps(j0, j1, spk, counts, out, k, s, pad_top, pad_left, fan, spikes_tb, synops_tb, best):  # pragma: no cover - compiled
    """Spiking max pooling over one time chunk.

    ``spk``: input spikes ``(Tc, B, C, H, W)``; ``counts``: each input
    neuron's spike count so far ``(B, C, H, W)`` float32, updated in place;
    ``out``: pooled spikes ``(Tc, B, C, OH, OW)``.  Each window passes the
    spike of the tap with the highest count *including this step*; ties go
    to the first tap in row-major order; padding taps never win.  ``fan``:
    the exact fan-out of each pooled neuron ``(C*OH*OW,)`` int64;
    ``spikes_tb``/``synops_tb`` as in :func:`if_steps`.  ``best``: scratch
    ``(B, OW)`` float32 (one row of running maxima per image)."""
    tc, b, c, h, w = spk.shape
    oh_n, ow_n = out.shape[3], out.shape[4]
    for j in range(j0, j1):
        bj = best[j]
        for t in range(tc):
            cj = counts[j]
            sj = spk[t, j]
            oj = out[t, j]
            for ch in range(c):
                for y in range(h):
                    for x in range(w):
                        cj[ch, y, x] += sj[ch, y, x]
            ns = 0
            nso = 0
            for ch in range(c):
                for oy in range(oh_n):
                    orow = oj[ch, oy]
                    for ox in range(ow_n):
                        bj[ox] = -1.0
                        orow[ox] = 0.0
                    for di in range(k):
                        y = oy * s - pad_top + di
                        if y < 0 or y >= h:
                            continue
                        crow = cj[ch, y]
                        srow = sj[ch, y]
                        for dj in range(k):
                            # output columns whose tap dj lies inside the row
                            lo = max(0, (pad_left - dj + s - 1) // s)
                            hi = min(ow_n, (w - 1 + pad_left - dj) // s + 1)
                            for ox in range(lo, hi):
                                xx = ox * s - pad_left + dj
                                cand = crow[xx]
                                if cand > bj[ox]:
                                    bj[ox] = cand
                                    orow[ox] = srow[xx]
                    base = (ch * oh_n + oy) * ow_n
                    for ox in range(ow_n):
                        if orow[ox] != 0.0:
                            ns += 1
                            nso += fan[base + ox]
            spikes_tb[t, j] = ns
            synops_tb[t, j] = nso


@njit(cache=True, nogil=True, boundscheck=False)
def if_maxpool_steps(j0, j1, cur, const, v, cnt, out, th, fan_if, fan_pool, spikes_if, synops_if, spikes_pool,
                     synops_pool, best):  # pragma: no cover - compiled
    """IF neurons followed by spiking max pooling with non-overlapping
    windows, fused: the IF layer's spikes never leave the cache.

    The IF layer's neurons are held *tap-major*: ``(KK, P)`` per image, where
    ``P`` = C x OH x OW pooled positions (NCHW order) and tap ``p`` = the
    row-major index inside the k x k window, so that every loop below runs
    over contiguous memory.  ``cur``: the current in that layout, ``(Tc, B,
    KK, P)`` or ``(1, B, KK, P)`` with ``const``; ``v``/``cnt``: potentials
    and spike counts so far ``(B, KK, P)``, updated in place; ``out``: the
    pooled spikes ``(Tc, B, P)``.  The window's winner is the tap with the
    highest count including this step, the first tap on ties (as
    :func:`maxpool_steps`).  ``fan_if``: the IF neurons' fan-out, one number
    (each feeds exactly one window: 1), so their SynOps are spikes x
    ``fan_if``; ``fan_pool`` ``(P,)``: the pooled neurons' exact fan-outs, an
    integer type in which every per-(step, image) sum fits (the caller
    checks).  Per-(step, image) spikes and SynOps of both layers go to the
    four ``(Tc, B)`` int64 arrays.  ``best``: scratch ``(B, P)`` float32."""
    tc, b, p_n = out.shape
    kk = v.shape[1]
    zero = np.zeros(1, fan_pool.dtype)[0]  # sums in the fans' type: int32 where it fits, half the work of int64
    for j in range(j0, j1):  # one image's state (a few 100 KB) stays in L2 for the whole chunk
        bj = best[j]
        for t in range(tc):
            cj = cur[0, j] if const else cur[t, j]
            oj = out[t, j]
            s1 = zero
            if kk == 4:  # 2x2 windows, the common case: all four taps of a window in one iteration, no scratch
                v0, v1, v2, v3 = v[j, 0], v[j, 1], v[j, 2], v[j, 3]
                c0, c1, c2, c3 = cnt[j, 0], cnt[j, 1], cnt[j, 2], cnt[j, 3]
                i0, i1, i2, i3 = cj[0], cj[1], cj[2], cj[3]
                for i in range(p_n):
                    v0[i], z0 = if_step(v0[i], i0[i], th)
                    v1[i], z1 = if_step(v1[i], i1[i], th)
                    v2[i], z2 = if_step(v2[i], i2[i], th)
                    v3[i], z3 = if_step(v3[i], i3[i], th)
                    n0 = c0[i] + z0
                    n1 = c1[i] + z1
                    n2 = c2[i] + z2
                    n3 = c3[i] + z3
                    c0[i] = n0
                    c1[i] = n1
                    c2[i] = n2
                    c3[i] = n3
                    s1 += np.int32(z0) + np.int32(z1) + np.int32(z2) + np.int32(z3)
                    # the first tap with the highest count wins (strictly more to replace)
                    m = n0
                    z = z0
                    z = z1 if n1 > m else z
                    m = n1 if n1 > m else m
                    z = z2 if n2 > m else z
                    m = n2 if n2 > m else m
                    z = z3 if n3 > m else z
                    oj[i] = z
            if kk != 4:  # any other window: one tap at a time, the running maximum in ``best``
                for i in range(p_n):
                    bj[i] = -1.0  # below every count: the first tap opens every window
            for p in range(kk if kk != 4 else 0):
                vp = v[j, p]
                cp = cnt[j, p]
                ip = cj[p]
                for i in range(p_n):
                    vp[i], zf = if_step(vp[i], ip[i], th)
                    c = cp[i] + zf
                    cp[i] = c
                    s1 += np.int32(zf)
                    w = c > bj[i]  # strictly more: ties stay with the earlier tap
                    bj[i] = c if w else bj[i]
                    oj[i] = zf if w else oj[i]
            s2 = zero
            so2 = zero
            for i in range(p_n):
                s2 += np.int32(oj[i] != 0.0)
                so2 += fan_pool[i] if oj[i] != 0.0 else zero
            spikes_if[t, j] = s1
            synops_if[t, j] = s1 * fan_if
            spikes_pool[t, j] = s2
            synops_pool[t, j] = so2


@njit(cache=True, nogil=True, boundscheck=False)
def if_maxpool_nchw_steps(j0, j1, cur, v, key, out, th, fan_if, fan_if_uniform, fan_pool, dims, spikes_if, synops_if,
                          spikes_pool, synops_pool):  # pragma: no cover - compiled
    """The fused IF + max pooling of :func:`if_maxpool_steps` for a current
    that changes every step, read in its own NCHW order (no permuted copy).

    ``cur``: ``(Tc, B, N)``; ``v``: ``(B, N)``; ``out``: ``(Tc, B, P)``;
    ``dims`` = (C, H, W, OH, OW, k).  The pooling state is one *key* per
    neuron, ``key = 2*k*k*count + prio + spike`` (``prio`` =
    ``2*(k*k-1-tap)``, ``count`` including this step): within a window the
    largest key is the tap with the highest count, the first tap on ties,
    and its parity is that tap's spike.  Keys are integers below 2**24, exact
    in float32 (the caller checks); start a batch with ``key = prio``.  Each
    step is one contiguous pass over the neurons, then one over the windows.
    Rows and columns outside every window are updated and counted like the
    rest.  ``fan_if_uniform``, and the sums' integer type, as in
    :func:`if_maxpool_steps`."""
    tc, b, p_n = out.shape
    c, h, w, oh, ow, k = dims[0], dims[1], dims[2], dims[3], dims[4], dims[5]
    hw = h * w
    n = c * hw
    kk2 = np.float32(2 * k * k)
    two = np.float32(2.0)
    half = np.float32(0.5)
    zero = np.zeros(1, fan_pool.dtype)[0]
    uniform = fan_if_uniform >= 0
    for j in range(j0, j1):
        vj = v[j]
        kj = key[j]
        for t in range(tc):
            xj = cur[t, j]
            oj = out[t, j]
            s1 = zero
            so1 = zero
            for i in range(n):
                vj[i], zf = if_step(vj[i], xj[i], th)
                kp = kj[i]
                kj[i] = two * np.floor(kp * half) + zf * kk2 + zf  # drop the last step's spike bit, add this step's
                s1 += np.int32(zf)
                if not uniform:
                    so1 += fan_if[i] if zf != 0 else zero
            for ch in range(c):
                for oy in range(oh):
                    o = (ch * oh + oy) * ow
                    r = ch * hw + oy * k * w
                    orow = oj[o : o + ow]
                    if k == 2:  # unrolled on row views: this loop vectorises
                        r0 = kj[r : r + w]
                        r1 = kj[r + w : r + 2 * w]
                        for ox in range(ow):
                            a = r0[2 * ox]
                            bb = r0[2 * ox + 1]
                            cc = r1[2 * ox]
                            d = r1[2 * ox + 1]
                            m1 = a if a > bb else bb
                            m2 = cc if cc > d else d
                            orow[ox] = m1 if m1 > m2 else m2
                    else:
                        for ox in range(ow):
                            m = kj[r + ox * k]
                            for di in range(k):
                                for dj in range(k):
                                    q = kj[r + di * w + ox * k + dj]
                                    m = q if q > m else m
                            orow[ox] = m
            s2 = zero
            so2 = zero
            for i in range(p_n):  # the winner's spike = the parity of its key
                m = oj[i]
                z = m - two * np.floor(m * half)
                oj[i] = z
                s2 += np.int32(z != 0)
                so2 += fan_pool[i] if z != 0 else zero
            spikes_if[t, j] = s1
            synops_if[t, j] = s1 * fan_if_uniform if uniform else so1
            spikes_pool[t, j] = s2
            synops_pool[t, j] = so2


_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def run(kernel, batch: int, threads: int, *args) -> None:
    """``kernel(j0, j1, *args)`` over the images ``0..batch``, split into
    ``threads`` contiguous ranges run side by side (the kernels release the
    GIL).  Python threads, not numba's OpenMP team: OpenMP workers spin
    between calls, which doubled the CPU time of a one-thread run and would
    oversubscribe the cores torch uses."""
    global _pool, _pool_size
    threads = max(1, min(int(threads), batch))
    if threads == 1:
        kernel(0, batch, *args)
        return
    if _pool is None or _pool_size < threads:
        if _pool is not None:
            _pool.shutdown()
        _pool, _pool_size = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="effmodel-norse-kernel"), threads
    bounds = [batch * i // threads for i in range(threads + 1)]
    for f in [_pool.submit(kernel, bounds[i], bounds[i + 1], *args) for i in range(threads)]:
        f.result()


__all__ = ["if_maxpool_nchw_steps", "if_maxpool_steps", "if_steps", "maxpool_steps", "run"]
