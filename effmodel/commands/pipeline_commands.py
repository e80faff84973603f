"""``effmodel train`` and ``effmodel run``: the report's pipeline from the command line."""

from __future__ import annotations

import csv
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer

from ..errors import UsageError, close_open_line
from . import executor_options as ex

DATA_DIR_HELP = "Folder holding mnist/ and cifar10/ (default: $EFFMODEL_DATA_DIR, else the Keras download)."
MODELS_HELP = ("Comma-separated architecture names (default: all); ensemble:<Member>x<n> names n seeded copies of one, "
               "e.g. ensemble:SmallCNN1x4 (README, \"Ensembles\").")
CODING_HELP = ("Neural code: rate (the report's: neurons fire repeatedly, the readout counts output spikes) or ttfs "
               "(time to first spike: each neuron fires at most once, the first output spike decides; numpy only so far). "
               "`effmodel plugins` lists each simulator's codings.")


def _split(value: Optional[str]) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise UsageError("an empty list was given")
    return items


def train_command(
    models: Optional[str] = typer.Option(None, "--models", "--model", help=MODELS_HELP),
    datasets: Optional[str] = typer.Option(None, "--datasets", help="Comma-separated datasets: mnist,cifar10."),
    epochs: Optional[int] = typer.Option(None, help="Epochs (default: the report's, per architecture)."),
    seed: int = typer.Option(0, help="Random seed."),
    max_train_images: Optional[int] = typer.Option(None, help="Use only the first N training images."),
    early_stopping: Optional[int] = typer.Option(None, help="Stop after N epochs without val_loss improvement."),
    data_dir: Optional[Path] = typer.Option(None, help=DATA_DIR_HELP),
    cache_dir: Optional[Path] = typer.Option(None, help="Trained-model cache (default: $EFFMODEL_CACHE_DIR or ~/.cache/effmodel)."),
) -> None:
    """Train architectures (or reuse the cache) and print their test accuracy."""
    from ..pipeline import RunSettings, select_specs, train_spec

    settings = RunSettings(data_dir=data_dir, cache_dir=cache_dir, epochs=epochs, seed=seed,
                           max_train_images=max_train_images, early_stopping=early_stopping)
    from ..ensembles import training_jobs

    for spec in select_specs(_split(models), _split(datasets)):
        for member, member_settings in training_jobs(spec, settings):  # an ensemble: each member, its own seed
            trained = train_spec(member, member_settings)
            state = "cache hit" if trained.cache_hit else "trained"
            name = member.name if member is spec else f"{spec.name} seed {member_settings.seed}"
            typer.echo(f"{name:<14} {state:<9} test accuracy {trained.test_accuracy:.4f}  {trained.path}")


def run_command(
    simulator: str = typer.Option("inisim", help="Simulator plugin (see `effmodel plugins`)."),
    models: Optional[str] = typer.Option(None, "--models", help=MODELS_HELP),
    datasets: Optional[str] = typer.Option(None, "--datasets", help="Comma-separated datasets: mnist,cifar10."),
    model_file: Optional[Path] = typer.Option(None, "--model-file", help="A trained Keras model (.h5/.keras) instead of registered architectures."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Dataset of --model-file (default: inferred from its input shape)."),
    num_test: Optional[int] = typer.Option(None, help="Test images to simulate (default: the whole test set)."),
    duration: Optional[int] = typer.Option(None, help="Time steps T (default: 100 MNIST, 150 CIFAR-10, as the report)."),
    batch_size: str = typer.Option("auto", help="Images simulated at once (bounds memory): a number, or auto = the simulator's choice (Norse: the GPU memory budget on CUDA, 50 on CPU; others 50)."),
    epochs: Optional[int] = typer.Option(None, help="Training epochs (default: the report's)."),
    seed: int = typer.Option(0, help="Random seed (training, Poisson input)."),
    max_train_images: Optional[int] = typer.Option(None, help="Train on the first N training images only."),
    percentile: float = typer.Option(99.9, help="Activation percentile for weight normalisation."),
    norm_images: int = typer.Option(2000, help="Training images used for normalisation (the first N)."),
    max2avg_pool: bool = typer.Option(False, "--max2avg-pool", help="Replace max pooling by average pooling."),
    normalisation: str = typer.Option("effmodel", help="INIsim only: effmodel (shared), snntoolbox or online."),
    poisson: bool = typer.Option(False, "--poisson", help="Poisson spike input instead of analog input."),
    readout: str = typer.Option("spikes", "--readout", help="Class readout for every simulator: spikes (INIsim's rule: most output spikes, lowest index on ties, no class before the first output spike) or potential (ties by membrane potential; norse only)."),
    coding: str = typer.Option("rate", "--coding", help=CODING_HELP),
    cost_model: str = typer.Option("report-14x", help="Cost model for total_costs and factor (see `effmodel cost-models`)."),
    tolerance: float = typer.Option(0.01, help="Error-threshold tolerance (fraction; 0.01 = 1 point)."),
    cost_point: str = typer.Option("settle", "--cost-point", help="Step the SNN's costs are taken at: settle (error within --tolerance of its final error) or iso-accuracy (first step with SNN error <= ANN error + --delta)."),
    delta: float = typer.Option(0.01, "--delta", help="iso-accuracy: allowed SNN error above the ANN's (fraction; 0.01 = 1 point)."),
    output: Path = typer.Option(Path("out"), "--output", "-o", help="Output directory (results.csv, timesteps.csv, effmodel.sqlite)."),
    data_dir: Optional[Path] = typer.Option(None, help=DATA_DIR_HELP),
    cache_dir: Optional[Path] = typer.Option(None, help="Trained-model cache."),
    option: list[str] = typer.Option([], "--option", help="Simulator option KEY=VALUE (repeatable)."),
    force: bool = typer.Option(False, "--force", help="Recompute items already stored in the output folder and replace them."),
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
    """Train, convert, simulate, count and cost each model; store and print a Table-2 comparison.

    Items already stored in the output folder (same model, settings and
    simulator) are skipped, so an interrupted run resumes where it stopped."""
    from ..budget import TimeBudget
    from ..pipeline import RunSettings, item_key
    from ..simulation import NormalisationSettings
    from ..store import STORE_NAME, Store

    opts = _parse_options(option)
    if normalisation != "effmodel":
        opts["normalisation"] = normalisation
    settings = RunSettings(
        simulator=simulator, output=output, data_dir=data_dir, cache_dir=cache_dir, num_test=num_test,
        duration=duration, batch_size=batch_size, epochs=epochs, seed=seed, max_train_images=max_train_images,
        normalisation=NormalisationSettings(percentile=percentile, num_images=norm_images, max2avg_pool=max2avg_pool,
                                            online=normalisation == "online"),
        input_encoding="poisson" if poisson else "analog", cost_model=cost_model, threshold_tolerance=tolerance,
        simulator_options=opts, readout=readout, coding=coding, cost_point=cost_point, delta=delta,
    )
    # Validate names and paths before any expensive work or any store write.
    from .. import plugins
    from ..datasets import resolve_data_dir
    from ..options import check_config, check_options
    from ..simulation import SimulationConfig, check_coding, check_input_encoding, check_readout

    resolve_data_dir(data_dir)
    stored_as = getattr(plugins.lookup("simulator", plugins.get_simulators(), simulator), "name", simulator)  # results' simulator column
    sim = plugins.lookup("simulator", plugins.get_simulators(), simulator)
    check_readout(sim, readout)
    check_coding(sim, coding)  # a code the simulator does not implement: refused before any training
    check_options(sim, opts)  # unknown or invalid --option values: refused before any training
    check_input_encoding(sim, settings.input_encoding)
    plugins.lookup("cost model", plugins.get_cost_models(), cost_model)
    exec_settings = ex.executor_settings(executor, jobs, ray_address, cpus_per_item, gpus_per_item, max_retries)
    budget = TimeBudget.from_options(time_budget, deadline)
    if model_file is not None and executor == "ray":
        raise UsageError("--model-file runs on this machine; use --executor local")
    items = _items(model_file, dataset, models, datasets, settings)
    from ..ensembles import check_settings

    for spec, _ in items:
        check_settings(spec, settings)  # e.g. an ensemble with --readout potential: refused before any training
        check_config(sim, SimulationConfig(  # combinations the simulator cannot simulate: refused before any training
            duration=settings.duration_for(spec.dataset), input_encoding=settings.input_encoding, seed=seed,
            options=dict(opts), readout=readout, coding=coding))
    keys = [item_key(spec, settings, network.weights if network is not None else None) for spec, network in items]
    fresh = not (output / STORE_NAME).exists()
    fresh_dir = not output.exists()
    with Store(output) as store:
        run_id = store.start_run(" ".join(["effmodel"] + sys.argv[1:]), {"settings": asdict(settings), "models": [s.name for s, _ in items]})
        status = "failed"
        summary = None
        try:
            summary = _execute(items, keys, settings, run_id, store, exec_settings, force, budget, output,
                               reuse_across_versions)
            status = "complete" if not summary.left else "partial"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            store.finish_run(run_id, status)
            nothing = summary is not None and not summary.done and not summary.skipped
            if (status == "failed" or nothing) and fresh and not store.results():
                store.close()  # a failed or budget-empty first run leaves no trace
                _remove_fresh_output(output, fresh_dir)
            else:
                with store.locked():
                    results, _ = store.export_csv()
        if summary.left and not summary.done and not summary.skipped:
            typer.echo(_too_small(budget, summary, len(items)))
            return
        typer.echo(f"results: {results} (run {run_id}); store: {store.path}")
        wanted = set(keys)
        print_table2([r for r in store.results() if r["item_key"] in wanted and r["simulator"] == stored_as])
        if budget is not None:
            typer.echo(summary.budget_line(len(items)))


def _too_small(budget, summary, total: int) -> str:
    from ..budget import describe_seconds

    need = f" (the smallest item needs about {describe_seconds(summary.smallest_left)})" if summary.smallest_left else ""
    return (f"the time budget ({budget.label}) is too small for any of the {len(summary.left)} items left{need}; "
            f"nothing done; {total - len(summary.left)} of {total} items stored")


class _SerialDisplay:
    """``run --jobs 1``: the item's own lines and progress bar; one line per skipped item."""

    def __init__(self, output: Path, keys: dict[str, str]):
        self.output, self.keys = output, keys

    def skipped(self, name: str) -> None:
        print(f"{name}: already stored in {self.output} (item {self.keys.get(name, '?')}), skipped; --force recomputes",
              file=sys.stderr, flush=True)

    def set_total(self, n: int) -> None:
        pass

    def started(self, name: str) -> None:
        pass

    def finished(self, name: str, seconds: float, node: str = "") -> None:
        close_open_line()

    def failed(self, name: str, why: str, node: str = "") -> None:
        close_open_line()

    def log(self, message: str) -> None:
        close_open_line()
        print(message, file=sys.stderr, flush=True)


def _execute(items, keys, settings, run_id, store, exec_settings, force, budget, output, reuse_across_versions):
    """Compute the items through the one driver (:func:`effmodel.executors.execute`)
    and store each result here.  With workers (a pool or Ray) an item that
    failed for good ends the run with one line naming it; in this process an
    item's error ends the run as raised."""
    from dataclasses import replace

    from ..datasets import resolve_data_dir
    from ..errors import SimulationError
    from ..executors import WorkItem, execute, shutdown
    from ..progress import ItemProgress

    workers = exec_settings.kind == "ray" or exec_settings.local_workers() > 1
    if workers:
        settings = replace(settings, data_dir=resolve_data_dir(settings.data_dir))  # the same path on every node
    work = [WorkItem(spec=spec, settings=settings, run_id=run_id, family=_family(spec, network),
                     network=network, key=key) for (spec, network), key in zip(items, keys)]
    if not workers:
        return execute(work, store, exec_settings, force=force, budget=budget, stop_on_error=True,
                       display=_SerialDisplay(output, {w.name: w.key for w in work}),
                       reuse_across_versions=reuse_across_versions)
    try:
        with ItemProgress("run") as display:
            summary = execute(work, store, exec_settings, force=force, display=display, budget=budget,
                              reuse_across_versions=reuse_across_versions)
    finally:
        shutdown()
    if summary.failed:
        raise SimulationError("; ".join(f"{name} failed: {why}" for name, why in summary.failed))
    return summary


def _remove_fresh_output(output: Path, remove_dir: bool) -> None:
    """Remove what a failed run wrote into an output folder it created the store in."""
    import shutil

    from ..store import LOCK_NAME, STORE_NAME

    for name in (STORE_NAME, STORE_NAME + "-wal", STORE_NAME + "-shm", LOCK_NAME):
        (output / name).unlink(missing_ok=True)
    if (output / "work").is_dir():
        shutil.rmtree(output / "work", ignore_errors=True)
    if remove_dir:
        try:
            output.rmdir()
        except OSError:
            pass


def _family(spec, network) -> str:
    """The ``family`` of a result: ``byo`` for a user's model file, else the
    plugin that registered the architecture (``reference``, ``example``...)."""
    from .. import plugins

    from ..ensembles import is_ensemble

    if network is not None:
        return "byo"
    if is_ensemble(spec):
        return "ensemble"
    return plugins.owner_of("register_architectures", spec.name) or "reference"


def _items(model_file, dataset, models, datasets, settings):
    """(spec, converted network or None) for each item of the run."""
    from ..pipeline import select_specs

    if model_file is None:
        return [(spec, None) for spec in select_specs(_split(models), _split(datasets))]
    if models:
        raise UsageError("--model-file and --models cannot be combined")
    from ..pipeline import converted_from_file

    spec, network = converted_from_file(model_file, dataset, settings)
    return [(spec, network)]


def _parse_options(pairs: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for p in pairs:
        if "=" not in p:
            raise UsageError(f"--option expects KEY=VALUE, got {p!r}")
        k, v = p.split("=", 1)
        low = v.lower()
        out[k.strip()] = True if low == "true" else False if low == "false" else _number(v)
    return out


def _number(v: str) -> object:
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def _blank_if_undefined(value, spec: str) -> str:
    """``value`` formatted, or empty when undefined (None/NaN: e.g. a factor with zero SynOps)."""
    return "" if value is None or value != value else format(value, spec)


def print_table2(rows: list[dict]) -> None:
    """Our results beside the report's Table 2 where it has the model."""
    from ..paths import table2_csv

    paper = {}
    try:
        path = table2_csv()
    except UsageError:
        path = None
    if path is not None and path.is_file():
        with open(path) as f:
            paper = {r["model"]: r for r in csv.DictReader(f)}
    mw = max([12] + [len(str(r["model"])) + 2 for r in rows])  # long names widen their column
    sw = max([8] + [len(str(r["simulator"])) + 2 for r in rows])
    head = (f"{'model':<{mw}}{'sim':<{sw}}{'ANN acc':>9}{'paper':>7}{'MFLOPs':>9}{'paper':>7}{'Total-C':>9}{'paper':>8}"
            f"{'SNN acc':>9}{'paper':>7}{'SO-C(M)':>9}{'paper':>11}{'factor':>8}{'paper':>7}")
    typer.echo(head)
    for r in rows:
        p = paper.get(r["model"], {})
        so = f"{p['so_costs_m_low']}-{p['so_costs_m_high']}" if p else "-"
        typer.echo(
            f"{r['model']:<{mw}}{r['simulator']:<{sw}}{100 * r['ann_accuracy']:>9.2f}{p.get('ann_acc_pct', '-'):>7}"
            f"{r['ann_flops'] / 1e6:>9.2f}{p.get('ann_mflops', '-'):>7}{r['total_costs'] / 1e6:>9.3f}{p.get('total_costs_m', '-'):>8}"
            f"{100 * r['snn_accuracy']:>9.2f}{p.get('snn_acc_pct', '-'):>7}{r['synops_at_threshold'] / 1e6:>9.3f}{so:>11}"
            f"{_blank_if_undefined(r['factor'], '.2f'):>8}{p.get('factor', '-'):>7}"
        )
    for r in rows:
        if r.get("snn_accuracy_at_cost_point") is not None:
            split = "".join(f" {side.upper()} {r[f'{side}_cost_arithmetic']:.4g} arith + {r[f'{side}_cost_memory']:.4g} mem"
                            f" + {r[f'{side}_cost_neuron']:.4g} neuron + {r[f'{side}_cost_input']:.4g} input;"
                            for side in ("ann", "snn"))
            typer.echo(f"{r['model']} {r['simulator']}: {r.get('cost_point') or 'settle'} cost point step {r['threshold_step']}, "
                       f"SNN accuracy there {100 * r['snn_accuracy_at_cost_point']:.2f} %;{split} "
                       f"factor {_blank_if_undefined(r['factor'], '.3g')} [{_blank_if_undefined(r['factor_low'], '.3g')}, "
                       f"{_blank_if_undefined(r['factor_high'], '.3g')}]")
    if rows and rows[0]["cost_model"] != "report-14x":
        typer.echo(f"(costs in cost model {rows[0]['cost_model']}; the paper's columns use report-14x)")
