"""The results store: one SQLite file per output directory, plus CSV export.

Every model result (its row, its per-step series and its per-layer figures)
is written in a single transaction, so a run interrupted at any point leaves
either the whole result or none of it: nothing half-written is ever read back
as complete.  CSV files are written to a temporary name and renamed.

A result's identity is (``item_key``, simulator): writing a result replaces
any stored result of the same identity, from any run, in the same
transaction, and reads return one row per identity (the newest), also from
stores written by older versions that hold duplicates.  Stores from older
versions gain new columns (and tables) on open.  Per-image correctness per
step (``correct_images``, a zlib'd bit matrix: :func:`effmodel.readout.pack_correct`)
lives in its own table ``image_correctness``, written in the result's
transaction and never exported to CSV.  Runs record their process id and host;
a ``running`` run whose process is gone is marked ``interrupted`` on open.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import sqlite3
import time
import uuid
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from .errors import DataError
from .accounting import LAYER_COLUMNS as FAIR_LAYER_COLUMNS
from .accounting import LAYER_INT as FAIR_LAYER_INT
from .accounting import RESULT_COLUMNS as FAIR_RESULT_COLUMNS
from .accounting import RESULT_INT as FAIR_RESULT_INT
from .accounting import RESULT_TEXT as FAIR_RESULT_TEXT
from .faults import fault_point
from .provenance import PROVENANCE_COLUMNS

STORE_NAME = "effmodel.sqlite"
LOCK_NAME = ".effmodel.lock"

# One row per (run, model, simulator): the columns of results.csv, in order.
RESULT_COLUMNS: tuple[str, ...] = (
    "run_id", "item_key", "model", "dataset", "simulator", "cost_model", "family", "seed", "epochs",
    "depth", "conv_layers", "dense_layers", "params", "neurons",
    "ann_accuracy", "ann_macs", "ann_synapses", "ann_flops", "ann_flops_snntoolbox", "ann_flops_simulator",
    "snn_accuracy", "duration", "num_test", "batch_size", "normalisation_percentile",
    "threshold_tolerance", "threshold_step", "synops_at_threshold", "synops_total", "synops_input_layer",
    "neuron_updates_total", "mean_spike_rate", "total_costs", "snn_costs", "factor",
    *FAIR_RESULT_COLUMNS,  # fair accounting (issue 13): counts, accesses and cost split at the cost point
    "wall_seconds",
    # phase wall times (issue 20): the model's training (also when found in the cache), then this item's phases
    "train_seconds", "train_epochs_run", "train_images", "convert_seconds", "simulate_seconds", "count_seconds",
    "machine",
    "created", "spec_json", "extra_json",
    # provenance (issue 23): what made the result
    *PROVENANCE_COLUMNS,
)
TIMESTEP_COLUMNS = ("run_id", "model", "simulator", "t", "error", "synops_cumulative", *PROVENANCE_COLUMNS)
LAYER_COLUMNS = ("run_id", "model", "simulator", "layer", "type", "neurons", "spikes", "synops", "spike_rate", "rate_act_corr",
                 *FAIR_LAYER_COLUMNS, *PROVENANCE_COLUMNS)

_REAL = {"ann_accuracy", "snn_accuracy", "normalisation_percentile", "threshold_tolerance", "synops_at_threshold",
         "synops_total", "synops_input_layer", "neuron_updates_total", "mean_spike_rate", "total_costs", "snn_costs",
         "factor", "wall_seconds", "train_seconds", "convert_seconds", "simulate_seconds", "count_seconds", "error", "synops_cumulative", "spike_rate", "rate_act_corr"}
_INT = {"seed", "epochs", "depth", "conv_layers", "dense_layers", "params", "neurons", "ann_macs", "ann_synapses",
        "ann_flops", "ann_flops_snntoolbox", "ann_flops_simulator", "duration", "num_test", "batch_size",
        "threshold_step", "t", "spikes", "synops", "train_epochs_run", "train_images"} | FAIR_RESULT_INT | FAIR_LAYER_INT
_REAL |= set(FAIR_RESULT_COLUMNS) - FAIR_RESULT_INT - FAIR_RESULT_TEXT
_REAL |= set(FAIR_LAYER_COLUMNS) - FAIR_LAYER_INT


def _decl(cols: Sequence[str]) -> str:
    return ", ".join(f"{c} {'REAL' if c in _REAL else 'INTEGER' if c in _INT else 'TEXT'}" for c in cols)


RUN_COLUMNS = ("run_id", "created", "finished", "status", "command", "settings_json", "pid", "host")
_RUN_INT = {"pid"}

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, created TEXT, finished TEXT, status TEXT, command TEXT, settings_json TEXT,
    pid INTEGER, host TEXT
);
CREATE TABLE IF NOT EXISTS results ({_decl(RESULT_COLUMNS)}, PRIMARY KEY (run_id, model, simulator));
CREATE INDEX IF NOT EXISTS results_item ON results (item_key, simulator);
CREATE TABLE IF NOT EXISTS timesteps ({_decl(TIMESTEP_COLUMNS)}, PRIMARY KEY (run_id, model, simulator, t));
CREATE TABLE IF NOT EXISTS layers ({_decl(LAYER_COLUMNS)}, PRIMARY KEY (run_id, model, simulator, layer));
CREATE TABLE IF NOT EXISTS image_correctness (
    run_id TEXT, model TEXT, simulator TEXT, images INTEGER, steps INTEGER, packed BLOB,
    PRIMARY KEY (run_id, model, simulator)
);
"""
# Stores written before image_correctness existed gain it (empty) on open:
# CREATE TABLE IF NOT EXISTS in SCHEMA is that migration.
SERIES_TABLES = ("results", "timesteps", "layers", "image_correctness")  # what one result's identity spans


# The newest stored row of each identity (item_key, simulator); rows without
# an item_key (hand-written) are their own identity.
_WINNERS = """
SELECT * FROM (
    SELECT *, ROW_NUMBER() OVER (
        PARTITION BY COALESCE(item_key, run_id || '/' || model), simulator ORDER BY created DESC, rowid DESC
    ) AS _rank FROM results
) WHERE _rank = 1
"""


class StoreError(DataError):
    """The output folder's store cannot be opened or written."""


class Store:
    """Results of every run in one output directory."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.path = self.directory / STORE_NAME
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the output folder {self.directory}: {exc.strerror or exc}") from None
        _check_writable(self.directory)
        try:
            self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the results store {self.path} ({exc}); choose another --output") from None
        self._db.row_factory = sqlite3.Row
        try:
            self._db.execute("PRAGMA busy_timeout = 60000")
            self._db.execute("PRAGMA journal_mode=WAL")
            if self._db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("integrity check failed")
            self._db.executescript(SCHEMA)
            self._migrate()
            self._mark_interrupted()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            msg = str(exc)
            if "readonly" in msg or "unable to open" in msg:
                raise StoreError(f"cannot write the results store {self.path} ({msg}); choose another --output") from None
            if "locked" in msg:
                raise StoreError(f"the results store {self.path} stayed locked by another process for 60 s; retry later") from None
            raise StoreError(f"the results store {self.path} is damaged or not an effmodel store ({msg}); "
                             f"it was left untouched: move it away or choose another --output") from None

    def _migrate(self) -> None:
        """Add columns that newer versions define to tables written by older ones."""
        tables = {"runs": (RUN_COLUMNS, _RUN_INT, set()), "results": (RESULT_COLUMNS, _INT, _REAL),
                  "timesteps": (TIMESTEP_COLUMNS, _INT, _REAL), "layers": (LAYER_COLUMNS, _INT, _REAL)}
        for table, (columns, ints, reals) in tables.items():
            have = {r["name"] for r in self._db.execute(f"PRAGMA table_info({table})")}
            for c in columns:
                if c not in have:
                    kind = "REAL" if c in reals else "INTEGER" if c in ints else "TEXT"
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {c} {kind}")
        # runs recorded by older versions named absolute paths of the machine they ran on
        for run_id, command, settings in self._db.execute(
                "SELECT run_id, command, settings_json FROM runs").fetchall():
            try:
                rel = json.dumps(relative_paths(json.loads(settings or "{}"), self.directory))
            except ValueError:
                rel = settings
            rel_command = relative_paths(command or "", self.directory)
            if rel != settings or rel_command != (command or ""):
                self._db.execute("UPDATE runs SET command = ?, settings_json = ? WHERE run_id = ?",
                                 (rel_command, rel, run_id))

    def _mark_interrupted(self) -> None:
        """``running`` runs of this host whose process is gone become ``interrupted``."""
        host = socket.gethostname()
        for r in self._db.execute("SELECT run_id, pid FROM runs WHERE status = 'running' AND host = ?", (host,)).fetchall():
            if r["pid"] is not None and not process_alive(int(r["pid"])):
                self._db.execute("UPDATE runs SET status = 'interrupted' WHERE run_id = ? AND status = 'running'", (r["run_id"],))

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the output folder's lock (``.effmodel.lock``), so that writing a
        result and re-exporting the CSVs of concurrent runs do not interleave."""
        try:
            import fcntl
        except ImportError:  # not POSIX: SQLite's own locking still keeps the store whole
            yield
            return
        with open(self.directory / LOCK_NAME, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing -----------------------------------------------------------
    def start_run(self, command: str, settings: Mapping[str, Any]) -> str:
        run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self._db.execute(
            "INSERT INTO runs (run_id, created, finished, status, command, settings_json, pid, host) "
            "VALUES (?, ?, NULL, 'running', ?, ?, ?, ?)",
            (run_id, _now(), relative_paths(command, self.directory),
             json.dumps(relative_paths(json.loads(json.dumps(dict(settings), default=str)), self.directory)),
             os.getpid(), socket.gethostname()),
        )
        return run_id

    def finish_run(self, run_id: str, status: str = "complete") -> None:
        self._db.execute("UPDATE runs SET finished = ?, status = ? WHERE run_id = ?", (_now(), status, run_id))

    def write_result(
        self,
        row: Mapping[str, Any],
        timesteps: Iterable[Mapping[str, Any]],
        layers: Iterable[Mapping[str, Any]],
        correct_images: Any = None,
    ) -> None:
        """Insert one model result with its series, atomically, replacing any
        stored result of the same (item_key, simulator) or (run, model, simulator).

        ``correct_images``: optional ``(images, steps)`` bool, whether each
        test image is classified correctly at each step
        (:attr:`effmodel.simulation.SimulationResult.correct_images`), stored
        bit-packed; its shape must match the row's ``num_test`` and ``duration``."""
        unknown = set(row) - set(RESULT_COLUMNS)
        if unknown:
            raise ValueError(f"unknown result columns: {sorted(unknown)}")
        packed = _packed_correctness(correct_images, row)
        values = {c: row.get(c) for c in RESULT_COLUMNS}
        values["created"] = values["created"] or _now()
        with closing(self._db.cursor()) as cur:
            cur.execute("BEGIN IMMEDIATE")
            try:
                keys = {(row["run_id"], row["model"], row["simulator"])}
                if values["item_key"] is not None:
                    keys |= {tuple(r) for r in cur.execute(
                        "SELECT run_id, model, simulator FROM results WHERE item_key = ? AND simulator = ?",
                        (values["item_key"], values["simulator"]))}
                for table in SERIES_TABLES:
                    cur.executemany(f"DELETE FROM {table} WHERE run_id=? AND model=? AND simulator=?", sorted(keys))
                cur.execute(_insert("results", RESULT_COLUMNS), [_py(values[c]) for c in RESULT_COLUMNS])
                cur.executemany(_insert("timesteps", TIMESTEP_COLUMNS), [
                    [_py(r.get(c) if c in PROVENANCE_COLUMNS else r[c]) for c in TIMESTEP_COLUMNS] for r in timesteps])
                cur.executemany(_insert("layers", LAYER_COLUMNS), [[_py(r.get(c)) for c in LAYER_COLUMNS] for r in layers])
                if packed is not None:
                    cur.execute(_insert("image_correctness", ("run_id", "model", "simulator", "images", "steps", "packed")),
                                (row["run_id"], row["model"], row["simulator"], *packed))
                fault_point("store-write", row["model"])
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    # --- reading -----------------------------------------------------------
    def results(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """One row per (item_key, simulator), the newest; only ``run_id``'s if given."""
        q = f"SELECT * FROM ({_WINNERS})" + (" WHERE run_id = ?" if run_id else "") + " ORDER BY created, model, simulator"
        return [_without_rank(r) for r in self._db.execute(q, (run_id,) if run_id else ())]

    def timesteps(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """The per-step series of the rows :meth:`results` returns."""
        return self._series("timesteps", "t", run_id)

    def layers(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """The per-layer figures of the rows :meth:`results` returns."""
        return self._series("layers", "rowid", run_id)

    def _series(self, table: str, order: str, run_id: str | None) -> list[dict[str, Any]]:
        q = (f"SELECT s.* FROM {table} s JOIN ({_WINNERS}) w "
             "ON s.run_id = w.run_id AND s.model = w.model AND s.simulator = w.simulator"
             + (" WHERE s.run_id = ?" if run_id else "") + f" ORDER BY s.run_id, s.model, s.simulator, s.{order}")
        return [dict(r) for r in self._db.execute(q, (run_id,) if run_id else ())]

    def correct_images(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """The per-image correctness of the rows :meth:`results` returns, where
        stored: ``run_id``, ``model``, ``simulator``, ``images``, ``steps`` and
        ``packed`` (bytes; :func:`effmodel.readout.unpack_correct` reads them)."""
        return self._series("image_correctness", "rowid", run_id)

    def runs(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._db.execute("SELECT * FROM runs ORDER BY created")]

    def has_result(self, item_key: str, simulator: str) -> bool:
        """Whether a finished result of this item and simulator is stored (resume)."""
        cur = self._db.execute("SELECT 1 FROM results WHERE item_key = ? AND simulator = ? LIMIT 1", (item_key, simulator))
        return cur.fetchone() is not None

    has_item = has_result  # the name sweeps used first

    # --- export ------------------------------------------------------------
    def export_csv(self, run_id: str | None = None, directory: str | Path | None = None) -> tuple[Path, Path]:
        """Write ``results.csv`` and ``timesteps.csv`` (atomically) and return their paths."""
        d = Path(directory) if directory else self.directory
        d.mkdir(parents=True, exist_ok=True)
        res = write_csv(d / "results.csv", RESULT_COLUMNS, self.results(run_id))
        fault_point("csv-export")
        ts = write_csv(d / "timesteps.csv", TIMESTEP_COLUMNS, self.timesteps(run_id))
        write_csv(d / "layers.csv", LAYER_COLUMNS, self.layers(run_id))
        return res, ts


def relative_paths(value: Any, base: Path) -> Any:
    """``value`` (a command line, or JSON-like settings) with every absolute
    path written relative to ``base`` (the output folder), so a committed store
    names no folder of the machine that wrote it."""
    if isinstance(value, str):
        if " " in value:  # a command line: its words
            return " ".join(relative_paths(w, base) for w in value.split(" "))
        return os.path.relpath(value, base) if os.path.isabs(value) else value
    if isinstance(value, dict):
        return {k: relative_paths(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [relative_paths(v, base) for v in value]
    return value


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write a CSV to ``path`` via a temporary file and an atomic rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    os.replace(tmp, path)
    return path


def _packed_correctness(correct: Any, row: Mapping[str, Any]) -> tuple[int, int, bytes] | None:
    """``(images, steps, packed bits)`` of a per-image correctness matrix,
    checked against the row it belongs to (None: nothing to store)."""
    if correct is None:
        return None
    import numpy as np

    from .readout import pack_correct

    c = np.asarray(correct)
    if c.ndim != 2 or c.dtype != bool:
        raise ValueError(f"correct_images must be a 2-d bool array (images x steps), got {c.dtype} {c.shape}")
    for axis, column in ((0, "num_test"), (1, "duration")):
        want = row.get(column)
        if want is not None and int(want) != c.shape[axis]:
            raise ValueError(f"correct_images has {c.shape[axis]} {('images', 'steps')[axis]}, "
                             f"but the row's {column} is {want}")
    return c.shape[0], c.shape[1], pack_correct(c)


def _insert(table: str, columns: Sequence[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def _without_rank(r: sqlite3.Row) -> dict[str, Any]:
    d = dict(r)
    d.pop("_rank", None)
    return d


def _check_writable(directory: Path) -> None:
    """Raise :class:`StoreError` unless a file can be created in ``directory``
    (a real probe: permission bits do not tell for root or read-only mounts)."""
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(prefix=".effmodel-probe-", dir=directory)
    except OSError as exc:
        raise StoreError(f"the output folder {directory} is not writable ({exc.strerror or exc}); "
                         f"choose another --output") from None
    os.close(fd)
    os.unlink(probe)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _py(v: Any) -> Any:
    """numpy scalars to Python; dicts/lists to JSON."""
    if v is None or isinstance(v, (str, int, float)):
        return v
    if hasattr(v, "item"):
        return v.item()
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, default=str)
    return str(v)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")
