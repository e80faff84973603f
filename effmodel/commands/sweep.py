"""``effmodel sweep``: run CNN families from a grid through the pipeline (resumable)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from ..errors import UsageError
from . import executor_options as ex
from .pipeline_commands import CODING_HELP


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


def correlation_line(correlations: dict) -> str:
    """``corr(depth, log params/neurons/MACs): mnist +0.07/+0.27/+0.34, ...``"""
    fmt = lambda r: "n/a" if r is None else f"{r:+.2f}"  # noqa: E731
    parts = [f"{ds} {fmt(c['depth_log_params'])}/{fmt(c['depth_log_neurons'])}/{fmt(c['depth_log_macs'])}"
             for ds, c in correlations.items()]
    return "corr(depth, log params/neurons/MACs): " + ", ".join(parts)


def sweep_command(
    simulator: str = typer.Option("inisim", help="Simulator plugin (see `effmodel plugins`)."),
    datasets: str = typer.Option("mnist,cifar10", "--datasets", help="Comma-separated datasets: mnist,cifar10."),
    max_architectures: Optional[int] = typer.Option(
        None, "--max-architectures", help="Architectures in all, split between the datasets; default: one per cell "
        "(bundle type x bundles x hidden dense layers) of each dataset, so conv and dense depth are crossed."),
    take: Optional[int] = typer.Option(None, "--take", help="Run at most N of the selected architectures, each conv and dense depth as often as possible (e.g. an INIsim cross-check of a Norse sweep on the same networks)."),
    seeds: str = typer.Option("0", "--seeds", help="Comma-separated training seeds, e.g. 0,1."),
    epochs: Optional[int] = typer.Option(None, help="Maximum training epochs (default: 15 MNIST, 30 CIFAR-10, the sweep protocol)."),
    early_stopping: int = typer.Option(3, "--early-stopping", help="Stop after N epochs without val_loss improvement and keep the best epoch's weights (0 = off)."),
    max_train_images: Optional[int] = typer.Option(None, help="Train on the first N training images only (default: the full training split)."),
    num_test: Optional[int] = typer.Option(None, help="Test images to simulate (default: the whole test set)."),
    duration: Optional[int] = typer.Option(None, help="Time steps T (default: 100 MNIST, 150 CIFAR-10)."),
    batch_size: str = typer.Option("auto", help="Images simulated at once (bounds memory): a number, or auto = the simulator's choice (Norse: the GPU memory budget on CUDA, 50 on CPU; others 50)."),
    cost_model: str = typer.Option("report-14x", help="Cost model for total_costs and factor."),
    readout: str = typer.Option("spikes", "--readout", help="Class readout for every simulator: spikes (INIsim's rule: most output spikes, lowest index on ties, no class before the first output spike) or potential (ties by membrane potential; norse only)."),
    coding: str = typer.Option("rate", "--coding", help=CODING_HELP),
    tolerance: float = typer.Option(0.01, help="Error-threshold tolerance (fraction; 0.01 = 1 point)."),
    cost_point: str = typer.Option("settle", "--cost-point", help="Step the SNN's costs are taken at: settle (error within --tolerance of its final error) or iso-accuracy (first step with SNN error <= ANN error + --delta)."),
    delta: float = typer.Option(0.01, "--delta", help="iso-accuracy: allowed SNN error above the ANN's (fraction; 0.01 = 1 point)."),
    sample_seed: int = typer.Option(0, help="Seed of the selection (its starting points and tie-breaks)."),
    max_corr: float = typer.Option(0.3, "--max-corr", help="Bound on |corr(depth, log params)| and |corr(depth, log neurons)| within each dataset; a sweep that cannot meet it is an error."),
    max_epoch_seconds: float = typer.Option(16, "--max-epoch-seconds", help="Leave out grid points projected to take longer per training epoch (seconds of the project's 2-core machine, one core per job; 0 = no limit)."),
    output: Path = typer.Option(Path("out-sweep"), "--output", "-o", help="Output directory (store and CSVs)."),
    data_dir: Optional[Path] = typer.Option(None, help="Folder holding mnist/ and cifar10/."),
    cache_dir: Optional[Path] = typer.Option(None, help="Trained-model cache."),
    bundle_types: str = typer.Option("I", "--bundle-types", help="Grid axis: conv bundle types, I (one conv) and/or II (two convs)."),
    bundles: str = typer.Option("1,2,3,4", "--bundles", help="Grid axis: numbers of conv bundles."),
    dense: str = typer.Option("0,1,2,3", "--dense", help="Grid axis: numbers of hidden dense layers (0 = Flatten straight into the classifier)."),
    conv_widths: str = typer.Option("0.25,0.5,1", "--conv-widths", help="Grid axis: conv width multipliers (filters 16/32 x w, doubling per bundle)."),
    dense_widths: str = typer.Option("0.5,1,2", "--dense-widths", help="Grid axis: dense width multipliers (every hidden layer 64/256 x w units)."),
    widths: Optional[str] = typer.Option(None, "--widths", help="Set both width axes at once."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the sweep plan as JSON (architectures, correlations, projected hours) and stop."),
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
    """Sweep CNNs whose depth is not a proxy for size (conv x dense depth crossed, widths chosen); skips stored items."""
    from ..sweep import DATASETS, plan, run_sweep, take as take_subset

    ds = [d.strip() for d in datasets.split(",") if d.strip()]
    unknown = [d for d in ds if d not in DATASETS]
    if not ds or unknown:
        raise UsageError(f"--datasets: unknown {', '.join(unknown) or '(empty)'} (known: {', '.join(DATASETS)})")
    seed_list = _ints(seeds, "--seeds")
    types = [t.strip() for t in bundle_types.split(",") if t.strip()]
    if not types or set(types) - {"I", "II"}:
        raise UsageError(f"--bundle-types expects I and/or II, got {bundle_types!r}")
    axes = {"bundle_types": types, "bundles": _ints(bundles, "--bundles"), "dense": _ints(dense, "--dense"),
            "conv_widths": _floats(widths or conv_widths, "--widths" if widths else "--conv-widths"),
            "dense_widths": _floats(widths or dense_widths, "--widths" if widths else "--dense-widths")}
    if min(axes["bundles"]) <= 0 or min(axes["dense"]) < 0:
        raise UsageError("--bundles expects positive integers and --dense non-negative ones")
    if not 0 < max_corr <= 1:
        raise UsageError(f"--max-corr must be in (0, 1], got {max_corr:g}")
    if max_epoch_seconds < 0 or early_stopping < 0:
        raise UsageError("--max-epoch-seconds and --early-stopping must be >= 0 (0 = no limit / off)")
    exec_settings = ex.executor_settings(executor, jobs, ray_address, cpus_per_item, gpus_per_item, max_retries)
    from ..budget import TimeBudget

    budget = TimeBudget.from_options(time_budget, deadline)
    p, points = plan(ds, max_architectures, sample_seed, max_epoch_seconds or None, max_corr, epochs,
                     max_train_images, **axes)
    p["training"] = {d: {"max_epochs": epochs or DATASETS[d]["max_epochs"], "early_stopping_patience": early_stopping,
                         "train_images": min(DATASETS[d]["train_images"], max_train_images or DATASETS[d]["train_images"])}
                     for d in ds}
    if not points:
        raise UsageError("the grid is empty: every chosen point collapses (try fewer --bundles)")
    if take is not None:
        points = take_subset(points, take)
        names = {pt.spec.name for pt in points}
        p["taken"] = [a["name"] for a in p["architectures"] if a["name"] in names]
        p["projected_train_seconds"] = round(sum(a["projected_train_seconds"] for a in p["architectures"]
                                                 if a["name"] in names))
    p["seeds"] = seed_list
    p["items"] = len(points) * len(seed_list)
    p["projected_train_hours"] = round(p["projected_train_seconds"] * len(seed_list) / 3600, 2)
    if dry_run:
        typer.echo(json.dumps(p, indent=2))
        return

    from dataclasses import asdict, replace

    from .. import plugins
    from ..pipeline import RunSettings
    from ..store import Store

    from ..simulation import check_coding, check_readout

    sim = plugins.lookup("simulator", plugins.get_simulators(), simulator)
    check_readout(sim, readout)
    check_coding(sim, coding)  # a code the simulator does not implement: refused before any training
    plugins.lookup("cost model", plugins.get_cost_models(), cost_model)
    settings = RunSettings(
        simulator=simulator, output=output, data_dir=data_dir, cache_dir=cache_dir, num_test=num_test,
        duration=duration, batch_size=batch_size, epochs=epochs, seed=seed_list[0], max_train_images=max_train_images,
        early_stopping=early_stopping or None,
        cost_model=cost_model, threshold_tolerance=tolerance, readout=readout, coding=coding, cost_point=cost_point,
        delta=delta,
    )
    from ..datasets import resolve_data_dir
    from ..executors import shutdown
    from ..progress import ItemProgress

    # Workers on other nodes read the folder the driver names: resolve it here,
    # so $EFFMODEL_DATA_DIR on the driver means the same path on every node.
    settings = replace(settings, data_dir=resolve_data_dir(data_dir))
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    of = f" of {p['selected']} selected" if len(points) < p["selected"] else ""
    say(f"sweep: {len(points)}{of} architectures x {len(seed_list)} seed(s); {correlation_line(p['correlations'])}"
        f"{' (the selection)' if of else ''}; training <= {p['projected_train_hours']:.2f} h projected (maximum epochs); "
        f"executor {executor}")
    from ..store import STORE_NAME

    fresh, fresh_dir = not (output / STORE_NAME).exists(), not output.exists()
    outcome = None
    with Store(output) as store:
        run_id = store.start_run(" ".join(["effmodel"] + sys.argv[1:]), {
            "settings": asdict(settings), "seeds": seed_list, "sweep": {k: v for k, v in p.items() if k != "architectures"},
            "models": [pt.spec.name for pt in points],
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
            nothing = outcome is not None and not outcome.done and not outcome.failed  # all skipped or left
            if fresh and not store.results() and (status == "failed" or nothing):
                store.close()  # a first sweep that stored nothing (failed, or a budget too small) leaves no trace
                from .pipeline_commands import _remove_fresh_output

                _remove_fresh_output(output, fresh_dir)
                results = None
            else:
                results, _ = store.export_csv()
    typer.echo(f"sweep {run_id}: {len(outcome.done)} run, {len(outcome.skipped)} already stored, "
               f"{len(outcome.failed)} failed; results: {results or '(nothing stored)'}")
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
