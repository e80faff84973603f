"""``effmodel sweep``: run CNN families from a grid through the pipeline (resumable)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from ..errors import UsageError
from . import executor_options as ex


def _ints(value: str, option: str) -> list[int]:
    try:
        out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{option} expects comma-separated integers, got {value!r}") from None
    if not out:
        raise UsageError(f"{option} is empty")
    return list(dict.fromkeys(out))


def _floats(value: str, option: str) -> list[float]:
    try:
        out = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{option} expects comma-separated numbers, got {value!r}") from None
    if not out or min(out) <= 0:
        raise UsageError(f"{option} expects positive numbers, got {value!r}")
    return list(dict.fromkeys(out))


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
    batch_size: str = typer.Option("auto", help="Images simulated at once (bounds memory): a number, or auto = the simulator's choice (Norse: the GPU memory budget on CUDA, 50 on CPU; others 50)."),
    cost_model: str = typer.Option("report-14x", help="Cost model for total_costs and factor."),
    readout: str = typer.Option("spikes", "--readout", help="Class readout for every simulator: spikes (INIsim's rule: most output spikes, lowest index on ties, no class before the first output spike) or potential (ties by membrane potential; norse only)."),
    tolerance: float = typer.Option(0.01, help="Error-threshold tolerance (fraction; 0.01 = 1 point)."),
    cost_point: str = typer.Option("settle", "--cost-point", help="Step the SNN's costs are taken at: settle (error within --tolerance of its final error) or iso-accuracy (first step with SNN error <= ANN error + --delta)."),
    delta: float = typer.Option(0.01, "--delta", help="iso-accuracy: allowed SNN error above the ANN's (fraction; 0.01 = 1 point)."),
    sample_seed: int = typer.Option(0, help="Seed of the grid sampling (ties only)."),
    output: Path = typer.Option(Path("out-sweep"), "--output", "-o", help="Output directory (store and CSVs)."),
    data_dir: Optional[Path] = typer.Option(None, help="Folder holding mnist/ and cifar10/."),
    cache_dir: Optional[Path] = typer.Option(None, help="Trained-model cache."),
    bundle_types: str = typer.Option("I,II", "--bundle-types", help="Grid axis: conv bundle types, I and/or II."),
    bundles: str = typer.Option("1,2,3,4", "--bundles", help="Grid axis: numbers of conv bundles."),
    dense: str = typer.Option("1,2,3", "--dense", help="Grid axis: numbers of hidden dense layers."),
    widths: str = typer.Option("0.5,1,2,4", "--widths", help="Grid axis: width multipliers."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the selected grid as JSON (depth, params) and stop."),
    force: bool = ex.FORCE,
    executor: str = ex.EXECUTOR,
    jobs: Optional[int] = ex.JOBS,
    ray_address: Optional[str] = ex.RAY_ADDRESS,
    cpus_per_item: float = ex.CPUS_PER_ITEM,
    gpus_per_item: float = ex.GPUS_PER_ITEM,
    max_retries: int = ex.MAX_RETRIES,
    time_budget: Optional[str] = ex.TIME_BUDGET,
    deadline: Optional[str] = ex.DEADLINE,
    reuse_across_versions: bool = ex.REUSE_ACROSS_VERSIONS,
) -> None:
    """Sweep CNN families from a grid (type I/II conv bundles, 1-3 dense layers, width x0.5-x4); skips stored items."""
    from ..sweep import DATASETS, plan, run_sweep

    ds = [d.strip() for d in datasets.split(",") if d.strip()]
    unknown = [d for d in ds if d not in DATASETS]
    if not ds or unknown:
        raise UsageError(f"--datasets: unknown {', '.join(unknown) or '(empty)'} (known: {', '.join(DATASETS)})")
    seed_list = _ints(seeds, "--seeds")
    types = [t.strip() for t in bundle_types.split(",") if t.strip()]
    if not types or set(types) - {"I", "II"}:
        raise UsageError(f"--bundle-types expects I and/or II, got {bundle_types!r}")
    axes = {"bundle_types": types, "bundles": _ints(bundles, "--bundles"), "dense": _ints(dense, "--dense"),
            "widths": _floats(widths, "--widths")}
    if min(axes["bundles"]) <= 0 or min(axes["dense"]) <= 0:
        raise UsageError("--bundles and --dense expect positive integers")
    exec_settings = ex.executor_settings(executor, jobs, ray_address, cpus_per_item, gpus_per_item, max_retries)
    from ..budget import TimeBudget

    budget = TimeBudget.from_options(time_budget, deadline)
    p, points = plan(ds, max_architectures, sample_seed, **axes)
    if not points:
        raise UsageError("the grid is empty: every chosen point collapses (try fewer --bundles)")
    if dry_run:
        typer.echo(json.dumps(p | {"seeds": seed_list, "items": len(points) * len(seed_list)}, indent=2))
        return

    from dataclasses import asdict, replace

    from .. import plugins
    from ..pipeline import RunSettings
    from ..store import Store

    from ..simulation import check_readout

    check_readout(plugins.lookup("simulator", plugins.get_simulators(), simulator), readout)
    plugins.lookup("cost model", plugins.get_cost_models(), cost_model)
    settings = RunSettings(
        simulator=simulator, output=output, data_dir=data_dir, cache_dir=cache_dir, num_test=num_test,
        duration=duration, batch_size=batch_size, epochs=epochs, seed=seed_list[0], max_train_images=max_train_images,
        cost_model=cost_model, threshold_tolerance=tolerance, readout=readout, cost_point=cost_point, delta=delta,
    )
    from ..datasets import resolve_data_dir
    from ..executors import shutdown
    from ..progress import ItemProgress

    # Workers on other nodes read the folder the driver names: resolve it here,
    # so $EFFMODEL_DATA_DIR on the driver means the same path on every node.
    settings = replace(settings, data_dir=resolve_data_dir(data_dir))
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    corr = p["selected_correlation"]["corr_within_dataset"]
    say(f"sweep: {len(points)} architectures x {len(seed_list)} seed(s); within-dataset corr(depth, log params) = "
        f"{corr:.3f}; executor {executor}")
    with Store(output) as store:
        run_id = store.start_run(" ".join(["effmodel"] + sys.argv[1:]), {
            "settings": asdict(settings), "seeds": seed_list, "sweep": {k: v for k, v in p.items() if k != "architectures"},
            "models": [a["name"] for a in p["architectures"]],
        })
        status = "failed"
        try:
            with ItemProgress("sweep") as display:
                outcome = run_sweep(points, seed_list, settings, store, run_id, executor=exec_settings, force=force,
                                    display=display, budget=budget, reuse_across_versions=reuse_across_versions)
            status = "complete" if not outcome.failed and not outcome.left else "partial"
        finally:
            shutdown()
            store.finish_run(run_id, status)
            results, _ = store.export_csv()
    typer.echo(f"sweep {run_id}: {len(outcome.done)} run, {len(outcome.skipped)} already stored, "
               f"{len(outcome.failed)} failed; results: {results}")
    for name, why in outcome.failed:
        typer.echo(f"  failed {name}: {why}")
    if budget is not None:
        total = len(outcome.done) + len(outcome.skipped) + len(outcome.failed) + len(outcome.left)
        if outcome.left and not outcome.done and not outcome.skipped:
            from ..budget import describe_seconds

            need = f" (the smallest needs about {describe_seconds(outcome.smallest_left)})" if outcome.smallest_left else ""
            typer.echo(f"the time budget ({budget.label}) is too small for any of the {len(outcome.left)} items "
                       f"left{need}; nothing done")
        typer.echo(f"{len(outcome.done) + len(outcome.skipped)} of {total} items stored; {len(outcome.left)} left; "
                   "rerun the same command to continue")
