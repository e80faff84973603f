"""One live progress display for many items (``run`` and ``sweep``), drawn with rich.

It shows items done out of those to compute, how many are running and how
many failed, the elapsed time and an estimate of the time left; every event
is also printed as one line above the bar (on stderr), so a log file or a
non-terminal shows the same story line by line.
"""

from __future__ import annotations

import sys
from typing import Any


class ItemProgress:
    """``with ItemProgress("sweep") as p: p.set_total(n); p.started(name); p.finished(name, s, node)``."""

    def __init__(self, label: str, file: Any = None):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.console = Console(file=file or sys.stderr, highlight=False, soft_wrap=True)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("running {task.fields[running]}, failed {task.fields[failed]}, skipped {task.fields[skipped]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console, transient=False,
        )
        self._task = self._progress.add_task(label, total=None, running=0, failed=0, skipped=0)
        self.running: set[str] = set()
        self.done = self.failures = self.skips = 0
        self.total: int | None = None

    def __enter__(self) -> "ItemProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def _update(self, **kw: Any) -> None:
        self._progress.update(self._task, running=len(self.running), failed=self.failures, skipped=self.skips, **kw)

    def log(self, message: str) -> None:
        self.console.print(message, markup=False)

    def set_total(self, n: int) -> None:
        """Items to compute (skipped ones excluded, so the ETA follows real work)."""
        self.total = n
        self._update(total=n)

    def skipped(self, name: str) -> None:
        self.skips += 1
        self.log(f"{name}: already stored, skipped")
        self._update()

    def started(self, name: str) -> None:
        self.running.add(name)
        self.log(f"{name}: started")
        self._update()

    def finished(self, name: str, seconds: float, node: str = "") -> None:
        self.running.discard(name)
        self.done += 1
        where = f" on {node}" if node else ""
        self.log(f"{name}: done in {seconds:.1f} s{where} [{self.done + self.failures}/{self.total}]")
        self._update(advance=1)

    def failed(self, name: str, why: str, node: str = "") -> None:
        self.running.discard(name)
        self.failures += 1
        where = f" on {node}" if node else ""
        self.log(f"{name}: failed{where}: {why}")
        self._update(advance=1)


def image_progress(name: str, done: int, total: int) -> None:
    """One item's simulation progress as a bar on one stderr line (``run --jobs 1``)."""
    from .errors import note_open_line

    width = 30
    filled = int(width * done / max(total, 1))
    print(f"\r{name}: simulating [{'#' * filled}{'.' * (width - filled)}] {done}/{total} images",
          end="", file=sys.stderr, flush=True)
    note_open_line()  # an error after this starts on a new line
