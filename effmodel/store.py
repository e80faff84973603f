"""The results store: one SQLite file per output directory, plus CSV export.

Every model result (its row, its per-step series and its per-layer figures)
is written in a single transaction, so a run interrupted at any point leaves
either the whole result or none of it: nothing half-written is ever read back
as complete.  CSV files are written to a temporary name and renamed.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import time
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

STORE_NAME = "effmodel.sqlite"

# One row per (run, model, simulator): the columns of results.csv, in order.
RESULT_COLUMNS: tuple[str, ...] = (
    "run_id", "item_key", "model", "dataset", "simulator", "cost_model", "family", "seed", "epochs",
    "depth", "conv_layers", "dense_layers", "params", "neurons",
    "ann_accuracy", "ann_macs", "ann_synapses", "ann_flops", "ann_flops_snntoolbox", "ann_flops_simulator",
    "snn_accuracy", "duration", "num_test", "batch_size", "normalisation_percentile",
    "threshold_tolerance", "threshold_step", "synops_at_threshold", "synops_total", "synops_input_layer",
    "neuron_updates_total", "mean_spike_rate", "total_costs", "snn_costs", "factor",
    "wall_seconds", "created", "spec_json", "extra_json",
)
TIMESTEP_COLUMNS = ("run_id", "model", "simulator", "t", "error", "synops_cumulative")
LAYER_COLUMNS = ("run_id", "model", "simulator", "layer", "type", "neurons", "spikes", "synops", "spike_rate", "rate_act_corr")

_REAL = {"ann_accuracy", "snn_accuracy", "normalisation_percentile", "threshold_tolerance", "synops_at_threshold",
         "synops_total", "synops_input_layer", "neuron_updates_total", "mean_spike_rate", "total_costs", "snn_costs",
         "factor", "wall_seconds", "error", "synops_cumulative", "spike_rate", "rate_act_corr"}
_INT = {"seed", "epochs", "depth", "conv_layers", "dense_layers", "params", "neurons", "ann_macs", "ann_synapses",
        "ann_flops", "ann_flops_snntoolbox", "ann_flops_simulator", "duration", "num_test", "batch_size",
        "threshold_step", "t", "spikes", "synops"}


def _decl(cols: Sequence[str]) -> str:
    return ", ".join(f"{c} {'REAL' if c in _REAL else 'INTEGER' if c in _INT else 'TEXT'}" for c in cols)


SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, created TEXT, finished TEXT, status TEXT, command TEXT, settings_json TEXT
);
CREATE TABLE IF NOT EXISTS results ({_decl(RESULT_COLUMNS)}, PRIMARY KEY (run_id, model, simulator));
CREATE INDEX IF NOT EXISTS results_item ON results (item_key, simulator);
CREATE TABLE IF NOT EXISTS timesteps ({_decl(TIMESTEP_COLUMNS)}, PRIMARY KEY (run_id, model, simulator, t));
CREATE TABLE IF NOT EXISTS layers ({_decl(LAYER_COLUMNS)}, PRIMARY KEY (run_id, model, simulator, layer));
"""


class Store:
    """Results of every run in one output directory."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / STORE_NAME
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

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
            "INSERT INTO runs VALUES (?, ?, NULL, 'running', ?, ?)",
            (run_id, _now(), command, json.dumps(dict(settings), default=str)),
        )
        return run_id

    def finish_run(self, run_id: str, status: str = "complete") -> None:
        self._db.execute("UPDATE runs SET finished = ?, status = ? WHERE run_id = ?", (_now(), status, run_id))

    def write_result(
        self,
        row: Mapping[str, Any],
        timesteps: Iterable[Mapping[str, Any]],
        layers: Iterable[Mapping[str, Any]],
    ) -> None:
        """Insert one model result with its series, atomically."""
        unknown = set(row) - set(RESULT_COLUMNS)
        if unknown:
            raise ValueError(f"unknown result columns: {sorted(unknown)}")
        values = {c: row.get(c) for c in RESULT_COLUMNS}
        values["created"] = values["created"] or _now()
        with closing(self._db.cursor()) as cur:
            cur.execute("BEGIN IMMEDIATE")
            try:
                cur.execute(f"INSERT OR REPLACE INTO results VALUES ({','.join('?' * len(RESULT_COLUMNS))})", [_py(values[c]) for c in RESULT_COLUMNS])
                key = (row["run_id"], row["model"], row["simulator"])
                cur.execute("DELETE FROM timesteps WHERE run_id=? AND model=? AND simulator=?", key)
                cur.execute("DELETE FROM layers WHERE run_id=? AND model=? AND simulator=?", key)
                cur.executemany(
                    f"INSERT INTO timesteps VALUES ({','.join('?' * len(TIMESTEP_COLUMNS))})",
                    [[_py(r[c]) for c in TIMESTEP_COLUMNS] for r in timesteps],
                )
                cur.executemany(
                    f"INSERT INTO layers VALUES ({','.join('?' * len(LAYER_COLUMNS))})",
                    [[_py(r.get(c)) for c in LAYER_COLUMNS] for r in layers],
                )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    # --- reading -----------------------------------------------------------
    def results(self, run_id: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT * FROM results" + (" WHERE run_id = ?" if run_id else "") + " ORDER BY created, model, simulator"
        return [dict(r) for r in self._db.execute(q, (run_id,) if run_id else ())]

    def timesteps(self, run_id: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT * FROM timesteps" + (" WHERE run_id = ?" if run_id else "") + " ORDER BY run_id, model, simulator, t"
        return [dict(r) for r in self._db.execute(q, (run_id,) if run_id else ())]

    def layers(self, run_id: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT * FROM layers" + (" WHERE run_id = ?" if run_id else "") + " ORDER BY run_id, model, simulator"
        return [dict(r) for r in self._db.execute(q, (run_id,) if run_id else ())]

    def runs(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._db.execute("SELECT * FROM runs ORDER BY created")]

    def has_item(self, item_key: str, simulator: str) -> bool:
        """Whether a finished result exists for this sweep item (resume)."""
        cur = self._db.execute("SELECT 1 FROM results WHERE item_key = ? AND simulator = ? LIMIT 1", (item_key, simulator))
        return cur.fetchone() is not None

    # --- export ------------------------------------------------------------
    def export_csv(self, run_id: str | None = None, directory: str | Path | None = None) -> tuple[Path, Path]:
        """Write ``results.csv`` and ``timesteps.csv`` (atomically) and return their paths."""
        d = Path(directory) if directory else self.directory
        d.mkdir(parents=True, exist_ok=True)
        res = write_csv(d / "results.csv", RESULT_COLUMNS, self.results(run_id))
        ts = write_csv(d / "timesteps.csv", TIMESTEP_COLUMNS, self.timesteps(run_id))
        write_csv(d / "layers.csv", LAYER_COLUMNS, self.layers(run_id))
        return res, ts


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
