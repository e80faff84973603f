"""The spike-count readout, computed by the core from each image's output spikes.

A simulator that returns ``BatchResult.output_spikes_t`` (the output layer's
spikes per image and step) lets the core apply the readout itself.  That
serves three things with one rule:

- the contract check: a simulator's own ``correct_t`` and ``predictions``
  must equal the core's reading of its output spikes (``--readout spikes``);
- per-image correctness at every step, the input of the cost step's
  bootstrap over test images (:mod:`effmodel.analysis.coststep`);
- ensembles, whose members' output spikes are summed before the readout.

The rules, for ``B`` images, ``T`` steps and ``K`` classes:

``rate`` (INIsim's rule): at step ``t`` the class whose output neuron has
emitted the most spikes up to and including ``t``, the lowest class index on
ties, and no class (``-1``) while no output neuron has spiked.

``ttfs`` (a decision-time code): the decision is taken at the first step at
which any output neuron spikes: the class with the most spikes *at that step*
(one network: the one that fired; an ensemble: the most members agreeing),
the lowest index on ties; it is fixed from then on, ``-1`` before.
"""

from __future__ import annotations

import numpy as np

NO_CLASS = -1


def decisions(output_spikes_t: np.ndarray, coding: str = "rate") -> np.ndarray:
    """The class of each image at each step, ``(B, T)`` int, ``-1`` for no class yet.

    ``output_spikes_t``: ``(B, T, K)`` non-negative spike counts of the output
    layer at each step (per step, not cumulative)."""
    spikes = np.asarray(output_spikes_t)
    if spikes.ndim != 3:
        raise ValueError(f"output spikes must have shape (images, steps, classes), got {spikes.shape}")
    if coding == "rate":
        totals = np.cumsum(spikes, axis=1, dtype=np.int64)
        return np.where(totals.max(axis=2) > 0, np.argmax(totals, axis=2), NO_CLASS)
    if coding == "ttfs":
        fired = spikes.sum(axis=2) > 0  # (B, T)
        any_fired = fired.any(axis=1)
        first = np.argmax(fired, axis=1)  # the first step with an output spike (0 when none: masked below)
        at_first = spikes[np.arange(len(spikes)), first]  # (B, K)
        decided_class = np.where(any_fired, np.argmax(at_first, axis=1), NO_CLASS)
        steps = np.arange(spikes.shape[1])
        decided = any_fired[:, None] & (steps[None, :] >= first[:, None])
        return np.where(decided, decided_class[:, None], NO_CLASS)
    raise ValueError(f"no spike-count readout for coding {coding!r}")


def correct_per_image(output_spikes_t: np.ndarray, labels: np.ndarray, coding: str = "rate") -> np.ndarray:
    """``(B, T)`` bool: image ``b`` classified correctly at step ``t`` (no class is wrong)."""
    labels = np.asarray(labels).astype(np.int64).reshape(-1, 1)
    return decisions(output_spikes_t, coding) == labels


def pack_correct(correct: np.ndarray) -> bytes:
    """Per-image correctness ``(N, T)`` as zlib-compressed bits (row-major), for the store."""
    import zlib

    bits = np.packbits(np.asarray(correct, dtype=bool), axis=None)
    return zlib.compress(bits.tobytes(), 9)


def unpack_correct(blob: bytes, images: int, steps: int) -> np.ndarray:
    """The inverse of :func:`pack_correct`."""
    import zlib

    bits = np.frombuffer(zlib.decompress(blob), dtype=np.uint8)
    return np.unpackbits(bits, count=images * steps).reshape(images, steps).astype(bool)
