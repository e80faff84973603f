"""``--batch-size``: a number, or ``auto`` (the default) for the simulator's own choice.

A batch is the number of test images a simulator advances together.  The
best value depends on the device: on a GPU the largest batch that fits its
memory is many times faster than 50, on a CPU 50 is as fast as anything
larger (issue 10).  So ``auto`` asks the simulator: a simulator object may
define ``auto_batch_size(network, duration, num_images, options) -> int``
(documented in docs/hooks.md); simulators without it get
:data:`DEFAULT_BATCH_SIZE`.  The result is capped at the number of test
images.
"""

from __future__ import annotations

from typing import Any, Mapping

from .errors import PluginError, UsageError

AUTO = "auto"
DEFAULT_BATCH_SIZE = 50


def parse_batch_size(value: Any) -> int | str:
    """``"auto"`` or a positive integer, from a CLI string or a number.

    :raises UsageError: anything else (one line, naming the value).
    """
    if isinstance(value, str):
        text = value.strip().lower()
        if text == AUTO:
            return AUTO
        try:
            value = int(text)
        except ValueError:
            raise UsageError(f"--batch-size must be 'auto' or a positive integer, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UsageError(f"--batch-size must be 'auto' or a positive integer, got {value!r}")
    return value


def resolve_batch_size(requested: int | str, simulator: Any, network: Any, duration: int, num_images: int,
                       options: Mapping[str, Any] | None = None) -> int:
    """The batch size to simulate with: ``requested`` if it is a number, else
    the simulator's ``auto_batch_size`` (or :data:`DEFAULT_BATCH_SIZE`),
    capped at ``num_images``.

    :raises PluginError: the simulator's answer is not a positive integer.
    """
    requested = parse_batch_size(requested)
    if requested != AUTO:
        return int(requested)
    choose = getattr(simulator, "auto_batch_size", None)
    if choose is None:
        size = DEFAULT_BATCH_SIZE
    else:
        size = choose(network, int(duration), int(num_images), dict(options or {}))
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            name = getattr(simulator, "name", type(simulator).__name__)
            raise PluginError(f"simulator {name!r}: auto_batch_size returned {size!r}, expected a positive integer")
    return max(1, min(int(size), max(1, int(num_images))))


__all__ = ["AUTO", "DEFAULT_BATCH_SIZE", "parse_batch_size", "resolve_batch_size"]
