"""``effmodel sweep``: run CNN families from a grid through the pipeline (resumable)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from ..errors import UsageError


def _ints(value: str, option: str) -> list[int]:
    try:
        out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{option} expects comma-separated integers, got {value!r}") from None
    if not out:
        raise UsageError(f"{option} is empty")
    return list(dict.fromkeys(out))


def _progress(name: str, done: int, total: int) -> None:
    print(f"\r{name}: simulated {done}/{total} images", end="\n" if done >= total else "", file=sys.stderr, flush=True)


def sweep_command(
    simulator: str = typer.Option("inisim", help="Simulator plugin (see `effmodel plugins`)."),
    datasets: str = typer.Option("mnist,cifar10", "--datasets", help="Comma-separated datasets: mnist,cifar10."),
    max_architectures: Optional[int] = typer.Option(
        None, "--max-architectures", help="Sample N grid points (depth and log params kept uncorrelated); default: all."),
    seeds: str = typer.Option("0", "--seeds", help="Comma-separated training seeds, e.g. 0,1."),
    epochs: Optional[int] = typer.Option(None, help="Training epochs (default: 25 MNIST, 35 CIFAR-10, as the report)."),
    max_train_images: Optional[int] = typer.Option(None, help="Train on the first N training images only."),
    num_test: Optional[int] = typer.Option(None, help="Test images to simulate (default: the whole test set)."),
    duration: Optional[int] = typer.Option(None, help="Time steps T (default: 100 MNIST, 150 CIFAR-10)."),
    batch_size: int = typer.Option(50, help="Images simulated at once (bounds memory)."),
    cost_model: str = typer.Option("report-14x", help="Cost model for total_costs and factor."),
    readout: str = typer.Option("spikes", "--readout", help="Class readout for every simulator: spikes (INIsim's rule: most output spikes, lowest index on ties, no class before the first output spike) or potential (ties by membrane potential; norse only)."),
    tolerance: float = typer.Option(0.01, help="Error-threshold tolerance (fraction; 0.01 = 1 point)."),
    sample_seed: int = typer.Option(0, help="Seed of the grid sampling (ties only)."),
    output: Path = typer.Option(Path("out-sweep"), "--output", "-o", help="Output directory (store and CSVs)."),
    data_dir: Optional[Path] = typer.Option(None, help="Folder holding mnist/ and cifar10/."),
    cache_dir: Optional[Path] = typer.Option(None, help="Trained-model cache."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the selected grid as JSON (depth, params) and stop."),
) -> None:
    """Sweep CNN families from a grid (type I/II conv bundles, 1-3 dense layers, width x0.5-x4); skips stored items."""
    from ..sweep import DATASETS, plan, run_sweep

    ds = [d.strip() for d in datasets.split(",") if d.strip()]
    unknown = [d for d in ds if d not in DATASETS]
    if not ds or unknown:
        raise UsageError(f"--datasets: unknown {', '.join(unknown) or '(empty)'} (known: {', '.join(DATASETS)})")
    seed_list = _ints(seeds, "--seeds")
    p, points = plan(ds, max_architectures, sample_seed)
    if dry_run:
        typer.echo(json.dumps(p | {"seeds": seed_list, "items": len(points) * len(seed_list)}, indent=2))
        return

    from dataclasses import asdict

    from .. import plugins
    from ..pipeline import RunSettings
    from ..store import Store

    plugins.lookup("simulator", plugins.get_simulators(), simulator)
    plugins.lookup("cost model", plugins.get_cost_models(), cost_model)
    settings = RunSettings(
        simulator=simulator, output=output, data_dir=data_dir, cache_dir=cache_dir, num_test=num_test,
        duration=duration, batch_size=batch_size, epochs=epochs, seed=seed_list[0], max_train_images=max_train_images,
        cost_model=cost_model, threshold_tolerance=tolerance, readout=readout,
    )
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    say(f"sweep: {len(points)} architectures x {len(seed_list)} seed(s); within-dataset corr(depth, log params) = "
        f"{p['selected_correlation']['corr_within_dataset']:.3f}")
    with Store(output) as store:
        run_id = store.start_run(" ".join(["effmodel"] + sys.argv[1:]), {
            "settings": asdict(settings), "seeds": seed_list, "sweep": {k: v for k, v in p.items() if k != "architectures"},
            "models": [a["name"] for a in p["architectures"]],
        })
        status = "failed"
        try:
            outcome = run_sweep(points, seed_list, settings, store, run_id, log=say, progress=_progress)
            status = "complete" if not outcome.failed else "partial"
        finally:
            store.finish_run(run_id, status)
            results, _ = store.export_csv()
    typer.echo(f"sweep {run_id}: {len(outcome.done)} run, {len(outcome.skipped)} already stored, "
               f"{len(outcome.failed)} failed; results: {results}")
    for name, why in outcome.failed:
        typer.echo(f"  failed {name}: {why}")
