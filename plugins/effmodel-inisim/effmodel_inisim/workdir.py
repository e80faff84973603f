"""A fresh working directory for every simulation.

snntoolbox caches normalisation results (scale factors, activations) in its
working directory and silently reuses them, also for a changed model or after
a crash left a half-written JSON.  So no run may ever see another run's files:
a given directory must be empty (it is created if missing), otherwise a new
temporary directory is made.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from effmodel.errors import SimulationError


class WorkDir:
    """An empty directory owned by one simulation; ``cleanup`` removes it if temporary."""

    def __init__(self, requested: Path | None):
        if requested is None:
            self.path = Path(tempfile.mkdtemp(prefix="effmodel-inisim-"))
            self.temporary = True
            return
        p = Path(requested)
        if p.exists() and not p.is_dir():
            raise SimulationError(f"inisim working directory {p} exists and is not a directory")
        if p.is_dir() and any(p.iterdir()):
            raise SimulationError(
                f"inisim working directory {p} is not empty; snntoolbox would reuse its cached files (give an empty or new folder)"
            )
        p.mkdir(parents=True, exist_ok=True)
        self.path = p
        self.temporary = False

    def cleanup(self, keep: bool = False) -> None:
        if self.temporary and not keep:
            shutil.rmtree(self.path, ignore_errors=True)
