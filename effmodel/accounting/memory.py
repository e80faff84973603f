"""What one memory access costs, as a function of the memory's size and the access's width.

A cost model gives cited points ``(capacity in bytes, energy per access of
access_bits)`` (Horowitz 2014: 8 KB 10 pJ, 32 KB 20 pJ, 1 MB 100 pJ per
64-bit access) and a DRAM energy.

``steps`` (the first fair presets): the energy of the smallest listed memory
that holds the tensor; DRAM beyond the largest.  The factor is then a step
function of layer size (19.5x at 1 MB).

``continuous``: a straight line in log(capacity)-log(energy) through
consecutive points (a power law ``E ~ C^k`` per segment; Horowitz's points
give ``k = 0.5`` from 8 to 32 KB, the square-root law of wire length, and
``k = 0.46`` from 32 KB to 1 MB), extended below the smallest point with the
first segment's slope (register files and scratchpads); beyond the largest
cited point, and for any tensor that spilled off chip, DRAM.  The curve
passes through every cited point.

Access width: with ``charge_width`` an access of ``b`` bits costs
``b / access_bits`` of the quoted energy (a 32-bit word half a 64-bit
access, a 1-bit spike 1/64); without it every access costs a whole quoted
access (the first fair presets).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import UsageError

CURVES = ("steps", "continuous")


@dataclass(frozen=True)
class MemoryModel:
    points: tuple[tuple[float, float], ...] = ()
    dram: float = 0.0
    curve: str = "steps"
    access_bits: int = 64
    charge_width: bool = False

    def __post_init__(self) -> None:
        if self.curve not in CURVES:
            raise UsageError(f"unknown memory curve {self.curve!r} (use {', '.join(CURVES)})")

    def per_access(self, store_bytes: float) -> float:
        """Energy of one full-width access to a memory of ``store_bytes``."""
        if not self.points or store_bytes > self.points[-1][0]:
            return self.dram
        if self.curve == "steps":
            return next(e for c, e in self.points if store_bytes <= c)
        if len(self.points) == 1:
            return self.points[0][1]
        (c0, e0), (c1, e1) = self.points[0], self.points[1]
        for (ca, ea), (cb, eb) in zip(self.points, self.points[1:]):
            if store_bytes <= cb:
                (c0, e0), (c1, e1) = (ca, ea), (cb, eb)
                break
        if store_bytes <= 0:
            return 0.0
        slope = math.log(e1 / e0) / math.log(c1 / c0)
        return e0 * (store_bytes / c0) ** slope

    def energy(self, store_bytes: float, bits: int) -> float:
        """Energy of one ``bits``-wide access to a memory of ``store_bytes``."""
        e = self.per_access(store_bytes)
        return e * bits / self.access_bits if self.charge_width else e
