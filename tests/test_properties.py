"""Property-based checks (hypothesis) of exact counting and the threshold step.

* Exact fan-out of every input neuron of a random conv or pooling layer
  (sizes, kernels, strides, 'same'/'valid' padding, asymmetric 'same'
  padding included) equals a brute-force count: the output windows that
  contain it, found by enumerating every window with TensorFlow's padding
  rule written out here independently.
* The SynOps of a random spike map are the spikes times that brute-force
  fan-out.
* ``threshold_step``: later (or equal) for a smaller tolerance, and from the
  step on the error never exceeds final + tolerance, while the step before
  it does.

Example counts are modest (brute force is pure Python); the whole file runs
in a few seconds.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from effmodel import counting
from effmodel.specs import ArchitectureSpec, LayerSpec
from effmodel.threshold import threshold_step

FAST = settings(max_examples=60, deadline=None, derandomize=True, database=None)  # reproducible in CI


def _windows(n: int, k: int, s: int, padding: str) -> list[range]:
    """Input indices covered by each output window along one axis
    (TensorFlow: 'valid' floor((n-k)/s)+1 outputs; 'same' ceil(n/s) outputs,
    total padding max((out-1)s+k-n, 0), the smaller half before)."""
    if padding == "valid":
        out, before = (n - k) // s + 1, 0
    else:
        out = -(-n // s)
        before = max((out - 1) * s + k - n, 0) // 2
    return [range(max(o * s - before, 0), min(o * s - before + k, n)) for o in range(out)]


def brute_fanout(h: int, w: int, c: int, k: int, s: int, padding: str, per_window: int) -> np.ndarray:
    """For each input neuron: the number of (output window, output channel)
    pairs it feeds; ``per_window`` = filters for a conv, 1 for pooling."""
    fan = np.zeros((h, w, c), dtype=np.int64)
    for rows in _windows(h, k, s, padding):
        for cols in _windows(w, k, s, padding):
            for i in rows:
                for j in cols:
                    fan[i, j, :] += per_window
    return fan


@st.composite
def layer_case(draw):
    kind = draw(st.sampled_from(["conv2d", "maxpool", "avgpool"]))
    k = draw(st.integers(1, 4))
    s = draw(st.integers(1, 3))
    padding = draw(st.sampled_from(["same", "valid"]))
    h = draw(st.integers(k, 9))
    w = draw(st.integers(k, 9))
    c = draw(st.integers(1, 3))
    if kind == "conv2d":
        layer = LayerSpec(type="conv2d", name="l", filters=draw(st.integers(1, 4)), kernel=k, stride=s, padding=padding)
    else:
        layer = LayerSpec(type=kind, name="l", pool=k, stride=s, padding=padding)
    spec = ArchitectureSpec(name="p", dataset="none", input_shape=(h, w, c),
                            layers=(layer, LayerSpec(type="flatten", name="f"), LayerSpec(type="dense", name="o", units=2)))
    per_window = layer.filters if kind == "conv2d" else 1
    stride = s if kind == "conv2d" else layer.pool_stride  # a pooling stride of 1 means "= pool" in a spec
    return spec, brute_fanout(h, w, c, k, stride, padding, per_window)


@FAST
@given(layer_case())
def test_exact_fanout_equals_brute_force(case):
    spec, want = case
    np.testing.assert_array_equal(counting.fanout_map(spec, -1), want)
    # every real synapse is counted once from each end
    assert counting.count_network(spec).layers[0].synapses == want.sum()


@FAST
@given(layer_case(), st.integers(0, 2**32 - 1))
def test_synops_of_random_spikes_are_spikes_times_fanout(case, seed):
    spec, fan = case
    rng = np.random.default_rng(seed)
    spikes = rng.integers(0, 4, size=(3, *spec.input_shape))
    want = sum(int(spikes[b, i, j, ch]) * int(fan[i, j, ch]) for b in range(3) for i, j, ch in np.ndindex(*fan.shape))
    assert counting.synops_of_spikes(spec, -1, spikes) == want


errors = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=40)
tolerances = st.floats(0.0, 0.5, allow_nan=False)


@FAST
@given(errors, tolerances, tolerances)
def test_threshold_step_is_monotone_in_the_tolerance(err, a, b):
    lo, hi = sorted((a, b))
    assert threshold_step(np.array(err), hi) <= threshold_step(np.array(err), lo)


@FAST
@given(errors, tolerances)
def test_error_stays_within_tolerance_after_the_step(err, tol):
    e = np.array(err)
    step = threshold_step(e, tol)
    assert 1 <= step <= len(e)
    assert np.all(e[step - 1 :] <= e[-1] + tol + 1e-9)
    if step > 1:  # the first such step: the one before breaks the bound
        assert e[step - 2] > e[-1] + tol
