"""What machine a result was computed on, in one line (stored with every
result: phase times only compare within one machine)."""

from __future__ import annotations

import platform
from functools import lru_cache


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else the platform's processor string."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe_machine(device: str | None = None) -> str:
    """``<CPU model>, <n> cores[, <device>]``: the cores this process may use
    (affinity and cgroup quota), and the simulator's device when it is not the CPU."""
    from .threads import available_cores

    text = f"{cpu_model()}, {available_cores()} cores"
    if device and not str(device).lower().startswith("cpu"):
        text += f", {device}"
    return text
