"""The analysis frame: stored results read, joined with their run settings,
checked, guarded and reduced to one row per architecture.

One place for the rules every section shares: what an architecture is (its
spec without the name; the seed suffix ``-s<seed>`` otherwise), which
columns a verdict needs, which rows are censored (cost point not reached)
and which are flagged by the accuracy guard.  pandas is imported inside the
functions so that ``import effmodel`` stays cheap.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import UsageError

SEED_SUFFIX = re.compile(r"-s\d+$")
REQUIRED = ("model", "seed", "dataset", "depth", "conv_layers", "dense_layers", "params", "neurons", "ann_macs", "factor")
SIZE_MEASURES = {"neurons": "neurons", "params": "params", "macs": "ann_macs"}  # name -> column
PRIMARY_SIZE = "neurons"
GUARD_POINTS = 5.0  # accuracy guard: points below the dataset-and-depth median
RUN_COLUMNS = ("run_id", "created", "finished", "status", "command", "settings_json")


def base_name(model: str) -> str:
    """The model name without a sweep's seed suffix (``-s<seed>``)."""
    return SEED_SUFFIX.sub("", str(model))


def arch_key(spec_json: Any, fallback: str) -> str:
    """The network's identity: its spec without name and description, else
    ``fallback`` (the model name without the seed suffix)."""
    try:
        d = json.loads(spec_json)
    except (TypeError, ValueError):
        return fallback
    if not isinstance(d, dict):
        return fallback
    d.pop("name", None)
    d.pop("description", None)
    return json.dumps(d, sort_keys=True)


def require(frame: Any, columns: Sequence[str] = REQUIRED, what: str = "verdict") -> None:
    """A one-line :class:`UsageError` naming every missing column."""
    have = set(getattr(frame, "columns", ()))
    missing = [c for c in columns if c not in have]
    if missing:
        raise UsageError(f"{what}: the frame lacks column(s) {', '.join(missing)} (needs {', '.join(columns)})")


# --- input -------------------------------------------------------------------------


@dataclass
class Inputs:
    """The tables of one or more output folders as DataFrames."""

    results: Any
    timesteps: Any
    layers: Any
    runs: Any
    source: str
    folders: tuple[str, ...] = ()
    correct: Any = None  # per-image correctness per step (store only): run_id, model, simulator, images, steps, packed


def load_inputs(directory: str | Path | Sequence[str | Path]) -> Inputs:
    """Read one output folder, or several (a reference run and a sweep),
    whose tables are concatenated; each result row gets ``source_folder``,
    and variants of one simulator are labelled (:mod:`.variants`)."""
    import pandas as pd

    dirs = [directory] if isinstance(directory, (str, Path)) else list(directory)
    if not dirs:
        raise UsageError("no input folder given")
    from .variants import label_variants

    parts = [_load_one(d) for d in dirs]
    if len(parts) == 1:
        inp = parts[0]
    else:
        cat = lambda name: pd.concat([getattr(p, name) for p in parts], ignore_index=True)  # noqa: E731
        inp = Inputs(cat("results"), cat("timesteps"), cat("layers"), cat("runs"), " + ".join(p.source for p in parts),
                     tuple(f for p in parts for f in p.folders), cat("correct"))
    # variants of one simulator (other options, coding, versions) become "<simulator> [<what differs>]"
    inp.results, inp.timesteps, inp.layers = label_variants(inp.results, inp.timesteps, inp.layers)
    return inp


def _load_one(directory: str | Path) -> Inputs:
    """Read the store (preferred) or the CSV exports of ``directory``."""
    import pandas as pd

    from ..store import LAYER_COLUMNS, RESULT_COLUMNS, STORE_NAME, TIMESTEP_COLUMNS, Store

    correct_columns = ["run_id", "model", "simulator", "images", "steps", "packed"]

    d = Path(directory)
    if not d.is_dir():
        raise UsageError(f"input folder not found: {d}")
    if (d / STORE_NAME).is_file():
        with Store(d) as store:
            res = pd.DataFrame(store.results(), columns=list(RESULT_COLUMNS))
            ts = pd.DataFrame(store.timesteps(), columns=list(TIMESTEP_COLUMNS))
            ly = pd.DataFrame(store.layers(), columns=list(LAYER_COLUMNS))
            runs = pd.DataFrame(store.runs(), columns=list(RUN_COLUMNS))
            correct = pd.DataFrame(store.correct_images(), columns=correct_columns)
        source = str(d / STORE_NAME)
    elif (d / "results.csv").is_file():
        res = pd.read_csv(d / "results.csv")
        ts = pd.read_csv(d / "timesteps.csv") if (d / "timesteps.csv").is_file() else pd.DataFrame(columns=list(TIMESTEP_COLUMNS))
        ly = pd.read_csv(d / "layers.csv") if (d / "layers.csv").is_file() else pd.DataFrame(columns=list(LAYER_COLUMNS))
        runs = pd.DataFrame(columns=list(RUN_COLUMNS))
        correct = pd.DataFrame(columns=correct_columns)  # CSV exports do not carry it
        source = str(d / "results.csv")
    else:
        raise UsageError(f"no results in {d}: expected {STORE_NAME} or results.csv (run `effmodel run` or `effmodel sweep`)")
    if res.empty:
        raise UsageError(f"{source} holds no results yet")
    for c in ("run_id", "model", "simulator"):
        for t in (res, ts, ly, correct):
            if c in t:
                t[c] = t[c].astype(str)
    res["source_folder"] = str(d)
    return Inputs(res, ts, ly, runs, source, (str(d),), correct)


def load_results(folder: str | Path | Sequence[str | Path]) -> Any:
    """Stored results of one or more output folders as one pandas DataFrame:
    every ``results.csv`` column, the settings of the run that produced each
    row (flattened, prefixed ``setting_``) and its ``protocol``; the per-step
    and per-layer tables ride along in ``attrs`` for :func:`reprice`."""
    inp = load_inputs(folder)
    out = with_settings(inp.results, inp.runs)
    out.attrs["timesteps"] = inp.timesteps  # what reprice() needs to move the cost point
    out.attrs["layers"] = inp.layers  # and to price access presets
    out.attrs["correct"] = inp.correct  # per-image correctness per step, where stored (the cost step's bootstrap)
    return out


def with_settings(results: Any, runs: Any) -> Any:
    """``results`` joined with each run's settings (``setting_<key>`` columns)
    and given a ``protocol`` column (:func:`protocol_of`)."""
    import pandas as pd

    out = results.copy()
    if runs is not None and len(runs):
        flat = {}
        for r in runs.to_dict("records"):
            try:
                s = json.loads(r.get("settings_json") or "{}")
            except (TypeError, json.JSONDecodeError):
                s = {}
            s = s.get("settings", s) if isinstance(s, dict) else {}
            flat[str(r["run_id"])] = {f"setting_{k}": (json.dumps(v) if isinstance(v, (dict, list)) else v)
                                     for k, v in s.items()}
        extra = pd.DataFrame([flat.get(str(rid), {}) for rid in out["run_id"]], index=out.index)
        for c in extra.columns:
            if c not in out:
                out[c] = extra[c]
    out["protocol"] = protocol_of(out)
    return out


def protocol_of(frame: Any) -> list[str]:
    """Each row's protocol: its ``family`` (reference, sweep, ...), qualified
    by the folder it was read from when rows of several folders are pooled
    (fresh reference rows beside committed ones are two protocols), else the
    folder, else ``"one"``."""
    n = len(frame)
    fam = list(frame["family"]) if "family" in frame else [None] * n
    src = list(frame["source_folder"]) if "source_folder" in frame else [None] * n
    pooled = len({s for s in src if isinstance(s, str) and s}) > 1
    out = []
    for f, s in zip(fam, src):
        family = f if isinstance(f, str) and f and f.lower() != "nan" else ""
        folder = (Path(s).name or s) if isinstance(s, str) and s else ""
        if family and folder and pooled:
            out.append(f"{family} ({folder})")
        else:
            out.append(family or folder or "one")
    return out


# --- the analysis frame ---------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """One simulator's rows ready for the verdict.

    ``rows``: one row per stored result kept (seed level), with ``arch``,
    ``log_factor``, ``log_<size>`` and ``flagged``; ``arches``: one row per
    architecture (seeds averaged on the log scale; ``replicates``);
    ``censored``: rows whose cost point was not reached; ``dropped``: rows
    with a non-finite or non-positive factor."""

    simulator: str
    rows: Any
    arches: Any
    censored: int
    dropped: int
    flagged_models: tuple[str, ...]


def prepare(frame: Any, factor_column: str = "factor", guard: bool = True) -> dict[str, Prepared]:
    """Per simulator, the seed-level rows and the architecture-level rows of
    ``frame`` (checked for :data:`REQUIRED`), censored and guarded.

    ``guard``: drop networks flagged by the accuracy guard (they stay in
    ``rows`` with ``flagged = True`` either way, and out of ``arches`` only
    when ``guard``)."""
    import numpy as np
    import pandas as pd

    require(frame, tuple(c if c != "factor" else factor_column for c in REQUIRED))
    df = primary_population(pd.DataFrame(frame)).copy().reset_index(drop=True)
    if "simulator" not in df:
        df["simulator"] = "-"
    df["simulator"] = df["simulator"].astype(str)
    if "protocol" not in df:
        df["protocol"] = protocol_of(df)
    censored = pd.Series(False, index=df.index)
    if "cost_point_reached" in df:
        reached = pd.to_numeric(df["cost_point_reached"], errors="coerce")
        censored = reached.notna() & (reached == 0)
    f = pd.to_numeric(df[factor_column], errors="coerce").astype(float)
    bad = ~(np.isfinite(f) & (f > 0)) & ~censored
    for c in ("depth", "conv_layers", "dense_layers", "params", "neurons", "ann_macs"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    df["log_factor"] = np.log(f.where(f > 0))
    for name, col in SIZE_MEASURES.items():
        df[f"log_{name}"] = np.log(df[col].where(df[col] > 0))
    df["model"] = df["model"].astype(str)
    df["dataset"] = df["dataset"].astype(str)
    specs = df["spec_json"] if "spec_json" in df else pd.Series([None] * len(df))
    # one unit per network and protocol: the same network run under two protocols is two units
    df["arch"] = (df["dataset"] + "|" + df["protocol"].astype(str) + "|"
                  + [arch_key(j, base_name(m)) for j, m in zip(specs, df["model"])])
    df["flagged"] = flag_accuracy(df)
    out = {}
    for sim, g in df.groupby("simulator", sort=True):
        cens = int(censored[g.index].sum())
        drop = int(bad[g.index].sum())
        kept = g[~censored[g.index] & ~bad[g.index]].reset_index(drop=True)
        flagged = tuple(sorted({base_name(m) for m in kept.loc[kept["flagged"], "model"]}))
        use = kept[~kept["flagged"]] if guard else kept
        out[str(sim)] = Prepared(str(sim), kept, arch_rows(use), cens, drop, flagged)
    return out


def primary_population(frame: Any) -> Any:
    """The rows the verdict is about: single networks converted to rate-coded
    IF neurons (the report's conversion).  Other codes (``coding`` ttfs),
    other neurons (``simulator_options`` neuron/reset/mf off their defaults)
    and ensembles are the "Codes and ensembles" section's; rows without those
    columns (hand-made frames, older stores) are rate-coded IF."""
    from .codes import RATE, code_label, ensemble_parts

    if frame is None or len(frame) == 0:
        return frame
    codes = [code_label(c, o) for c, o in zip(frame.get("coding", [None] * len(frame)),
                                               frame.get("simulator_options", [None] * len(frame)))]
    single = [ensemble_parts(str(m)) is None for m in frame["model"]]
    keep = [c == RATE and s for c, s in zip(codes, single)]
    return frame[keep]


def arch_rows(rows: Any) -> Any:
    """One row per architecture: covariates of its first row, log(factor)
    averaged over its seeds, ``replicates`` = number of seeds."""
    import pandas as pd

    if rows.empty:
        return rows.assign(replicates=pd.Series(dtype=int))
    first = rows.groupby("arch", sort=False).first()
    mean = rows.groupby("arch", sort=False)["log_factor"].mean()
    out = first.assign(log_factor=mean, replicates=rows.groupby("arch", sort=False).size()).reset_index()
    out["model"] = out["model"].map(base_name)
    return out


def flag_accuracy(df: Any, points: float = GUARD_POINTS) -> Any:
    """True where the ANN accuracy or the SNN's final accuracy is more than
    ``points`` below the median of its simulator-dataset-and-depth group
    (medians over architectures, accuracies averaged over seeds first)."""
    import pandas as pd

    flag = pd.Series(False, index=df.index)
    sim = df["simulator"] if "simulator" in df else pd.Series("-", index=df.index)
    unit = sim.astype(str) + "|" + df["arch"]
    for col in ("ann_accuracy", "snn_accuracy"):
        if col not in df:
            continue
        acc = pd.to_numeric(df[col], errors="coerce") * 100
        per_arch = acc.groupby(unit).transform("mean")
        first = ~unit.duplicated()
        keys = [sim[first].astype(str), df.loc[first, "dataset"], df.loc[first, "depth"]]
        med = per_arch[first].groupby(keys).median()
        ref = [med.get((str(s), d, k), float("nan")) for s, d, k in zip(sim, df["dataset"], df["depth"])]
        flag |= (per_arch < pd.Series(ref, index=df.index) - points).fillna(False)
    return flag
