"""A test seam for the fault-injection suite: die at a named point.

``EFFMODEL_FAULT_KILL_AT=<point>[@<model>]`` (comma-separated for several)
makes the process SIGKILL itself when it reaches ``<point>`` (for ``<model>``
only, if given).  The points are ``train`` (after fitting, before the model
is saved into the cache), ``train-epoch`` (after an epoch's checkpoint is
written; ``<model>`` is ``<name>:<epoch>``, e.g. ``SmallCNN1:2``), ``convert`` (before conversion), ``simulate``
(after the first simulated batch), ``store-write``
(inside the result transaction, before commit) and ``csv-export`` (after
``results.csv`` was replaced, before ``timesteps.csv``).  Unset, each point
costs one environment lookup.  Only tests set it (tests/test_faults.py).
"""

from __future__ import annotations

import os
import signal

ENV = "EFFMODEL_FAULT_KILL_AT"


def fault_point(point: str, model: str | None = None) -> None:
    """SIGKILL this process if ``$EFFMODEL_FAULT_KILL_AT`` names ``point``."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    for entry in wanted.split(","):
        name, _, only = entry.strip().partition("@")
        if name == point and (not only or only == model):
            os.kill(os.getpid(), signal.SIGKILL)
