"""Methods and provenance: the counting conventions (the docstrings of the
code that computes the numbers), the commands and settings behind the data,
the machine and library versions, with paths relative to the output folder."""

from __future__ import annotations

import importlib
import json
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING

from .render import Contribution, Pre, Section, Table, Text

if TYPE_CHECKING:
    from .report import Context

LIBRARIES = ("effmodel", "numpy", "pandas", "scipy", "statsmodels", "matplotlib", "tensorflow", "snntoolbox", "torch",
             "norse")
METHOD_MODULES = (("Operation counts", "effmodel.counting"), ("Cost models", "effmodel.costs"),
                  ("Error threshold", "effmodel.threshold"), ("The verdict", "effmodel.analysis.verdict"),
                  ("Robustness", "effmodel.analysis.robustness"), ("Supporting regressions", "effmodel.analysis.regressions"))


def relative(path: str | Path, output: str | Path | None) -> str:
    """``path`` relative to the output folder (POSIX form), so a report can be
    moved with its inputs; absolute only where no relative path exists."""
    if output is None:
        return str(path)
    try:
        return Path(os.path.relpath(Path(path).resolve(), Path(output).resolve())).as_posix()
    except ValueError:  # another drive
        return str(path)


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; ``platform`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_names() -> str:
    """GPUs as ``nvidia-smi`` lists them, or "none found" (never imports a framework)."""
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if not smi:
        return "none found"
    try:
        out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "none found"
    names = [l.strip() for l in out.stdout.splitlines() if l.strip()]
    return ", ".join(names) if names else "none found"


def library_versions() -> list[tuple[str, str]]:
    """Installed versions from package metadata (nothing is imported)."""
    from importlib import metadata

    out = []
    for name in LIBRARIES:
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            out.append((name, "not installed"))
    return out


def machine_line() -> str:
    return (f"{cpu_model()}, {os.cpu_count()} logical cores, GPU: {gpu_names()}, Python {platform.python_version()} "
            f"on {platform.system()} {platform.release()}")


def methods_contribution(ctx: "Context") -> Contribution:
    """Every counting convention, copied from the modules that implement it."""
    sec = Section("Methods: counting conventions")
    sec.blocks.append(Text("The definitions below are the docstrings of the code that computes the numbers."))
    for title, name in METHOD_MODULES:
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        sec.blocks.append(Text(f"{title} ({name})"))
        sec.blocks.append(Pre((mod.__doc__ or "").strip()))
    models = list(ctx.cost_models.values())
    if models:
        sec.blocks.append(Table(["cost model", "MAC", "add", "SynOp", "neuron update", "ANN convention", "FLOPs", "unit",
                                 "MAC:SynOp", "source"],
                                [[m.name, f"{m.mac:g}", f"{m.add:g}", f"{m.synop:g}", f"{m.neuron_update:g}",
                                  m.ann_convention, m.flop_convention, m.unit, f"{m.mac_to_synop:.1f}", m.citation]
                                 for m in models],
                                "Cost-model presets (as the installed plugins register them)"))
    return Contribution([sec])


def provenance_contribution(ctx: "Context") -> Contribution:
    """The commands and settings that produced the data, where they were read,
    the machine and the library versions."""
    inp = ctx.inputs
    sec = Section("Provenance: commands and settings")
    sec.blocks.append(Text("Input (relative to the report's folder): "
                           + ", ".join(relative(f, ctx.output) for f in inp.source.split(" + ")) + "."))
    sec.blocks.append(Text(f"Report generated on: {machine_line()}."))
    sec.blocks.append(Table(["library", "version"], [list(v) for v in library_versions()], "Library versions"))
    if ctx.timings:
        sec.blocks.append(Table(["report phase", "seconds"], [[k, f"{v:.1f}"] for k, v in ctx.timings.items()],
                                "Wall time of the report's phases"))
    res = inp.results
    if "wall_seconds" in res:
        import pandas as pd

        w = pd.to_numeric(res["wall_seconds"], errors="coerce")
        per = res.assign(w=w).groupby(["simulator"])["w"].agg(["count", "sum", "median"]).reset_index()
        sec.blocks.append(Table(["simulator", "results", "wall seconds (sum)", "median per result"],
                                [[str(r["simulator"]), str(int(r["count"])), f"{r['sum']:.0f}", f"{r['median']:.1f}"]
                                 for r in per.to_dict("records")], "Wall time of the stored results (per item)"))
    phases = [c for c in ("train_seconds", "convert_seconds", "simulate_seconds", "count_seconds") if c in res]
    if phases:
        import pandas as pd

        timed = res.assign(**{c: pd.to_numeric(res[c], errors="coerce") for c in phases})
        timed = timed[timed[phases].notna().any(axis=1)]
        if not timed.empty:
            keys = ["simulator"] + (["machine"] if "machine" in timed else [])
            rows = []
            for key, g in timed.groupby(keys, dropna=False):
                key = key if isinstance(key, tuple) else (key,)
                # a model trained once counts once, however many results simulated it
                train = g.drop_duplicates("model")["train_seconds"].sum() if "train_seconds" in g else float("nan")
                rows.append([*(str(k) for k in key), str(len(g)), f"{train:.0f}"]
                            + [f"{g[c].sum():.0f}" for c in phases if c != "train_seconds"])
            sec.blocks.append(Table(keys + ["results with phase times", "train s (per model)"]
                                    + [c.replace("_seconds", " s") for c in phases if c != "train_seconds"], rows,
                                    "Wall time per phase (sums over the stored results that record them; the "
                                    "training of a model found in the cache is its original training time)"))
    runs = inp.runs
    if runs is None or runs.empty:
        sec.blocks.append(Text("No runs table (CSV input): the command and settings are not recorded here."))
        return Contribution([sec])
    used = set(res["run_id"].astype(str))
    rows = [[str(r["run_id"]), str(r["created"]), str(r.get("finished") or "-"), str(r.get("status")),
             str(r.get("command")), str(int((res["run_id"].astype(str) == str(r["run_id"])).sum()))]
            for r in runs.to_dict("records")]
    sec.blocks.append(Table(["run", "started", "finished", "status", "command", "results"], rows))
    for r in runs.to_dict("records"):
        if str(r["run_id"]) not in used:
            continue
        try:
            settings = json.dumps(json.loads(r.get("settings_json") or "{}"), indent=2, sort_keys=True)
        except json.JSONDecodeError:
            settings = str(r.get("settings_json"))
        sec.blocks.append(Pre(settings, summary=f"settings of run {r['run_id']}"))
    return Contribution([sec])


def short_provenance(ctx: "Context") -> list[str]:
    """The provenance lines of the first screen."""
    inp = ctx.inputs
    return [f"Input: {', '.join(relative(f, ctx.output) for f in inp.source.split(' + '))} "
            f"(paths relative to this report's folder); generated on {machine_line()}; "
            + ", ".join(f"{k} {v}" for k, v in library_versions() if v != "not installed") + "."]
