"""Where items are computed: in this process, a local process pool, or Ray tasks.

``effmodel run`` and ``effmodel sweep`` hand their items to one executor,
chosen with ``--executor local|ray``:

- ``local`` with ``--jobs 1`` computes in this process, one item after the
  other (the behaviour effmodel always had);
- ``local`` with ``--jobs N`` runs N worker processes on this machine
  (capped at the cores available);
- ``ray`` submits every item as a Ray task to the cluster at
  ``--ray-address`` (or ``RAY_ADDRESS``), or to a Ray instance started here.

One driver for every executor, :func:`execute`: it skips stored items, holds
the time budget (:mod:`effmodel.budget`: no item starts that is not expected
to finish in time, and workers get the deadline), and is the one writer: a
worker only *computes* (:func:`effmodel.pipeline.compute_item`) and sends
the :class:`ItemResult` back; the driver alone writes the SQLite store and
the CSVs, item by item.  Items already stored are not submitted (the store's
``has_result``, shared with ``run``), so a rerun after the driver was killed
continues where it stopped.  A worker that dies (node lost, OOM, SIGKILL) is
retried a bounded number of times; an item that fails for good is reported
and the others go on.  Ray is imported only when the ``ray`` executor is used.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from .budget import BudgetExhausted
from .errors import EffmodelError, UsageError

EXECUTORS = ("local", "ray")
DEFAULT_MAX_RETRIES = 3
# Variables a worker must see as the driver does (plugin selection, Keras flavour).
FORWARDED_ENV = ("EFFMODEL_LOAD_PLUGINS", "EFFMODEL_BLOCK_PLUGINS", "EFFMODEL_REFERENCE_DIR", "EFFMODEL_DEBUG",
                 "TF_USE_LEGACY_KERAS", "TF_CPP_MIN_LOG_LEVEL")


@dataclass(frozen=True)
class ExecutorSettings:
    """How items are computed (``--executor``, ``--jobs``, ``--ray-address``, ...)."""

    kind: str = "local"
    jobs: int | None = None  # local: worker processes (default 1); ray: items in flight (default: no cap)
    ray_address: str | None = None  # default: $RAY_ADDRESS, else a Ray instance started here
    cpus_per_item: float = 1.0
    gpus_per_item: float = 0.0
    max_retries: int = DEFAULT_MAX_RETRIES

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise UsageError(f"--executor must be one of {', '.join(EXECUTORS)}, got {self.kind!r}")
        if self.jobs is not None and self.jobs <= 0:
            raise UsageError(f"--jobs must be a positive number of workers, got {self.jobs}")
        if self.cpus_per_item <= 0:
            raise UsageError(f"--cpus-per-item must be positive, got {self.cpus_per_item:g}")
        if self.gpus_per_item < 0:
            raise UsageError(f"--gpus-per-item must be >= 0, got {self.gpus_per_item:g}")
        if self.max_retries < 0:
            raise UsageError(f"--max-retries must be >= 0, got {self.max_retries}")
        if self.kind == "local" and (self.ray_address or self.gpus_per_item):
            raise UsageError("--ray-address and --gpus-per-item need --executor ray")

    def local_workers(self) -> int:
        """Worker processes of the local executor: ``--jobs`` capped at the cores available."""
        from .threads import available_cores

        return max(1, min(self.jobs or 1, available_cores()))


@dataclass(frozen=True)
class WorkItem:
    """One item to compute: what :func:`effmodel.pipeline.compute_item` needs."""

    spec: Any  # ArchitectureSpec
    settings: Any  # RunSettings (the item's seed included)
    run_id: str
    family: str = "reference"
    network: Any = None  # a converted network (--model-file), else trained from spec
    key: str = ""  # pipeline.item_key(spec, settings)
    env: tuple[tuple[str, str], ...] = ()  # FORWARDED_ENV as the driver sees it
    deadline: float | None = None  # the time budget's end, a time.time()
    epoch_seconds: float | None = None  # the driver's estimate of one training epoch

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class ItemOutcome:
    """What came back for one item: its result, or why it failed for good."""

    item: WorkItem
    result: Any = None  # pipeline.ItemResult
    error: str | None = None
    node: str = ""
    seconds: float = 0.0
    attempts: int = 1
    left: bool = False  # stopped by the time budget: not failed, left for a rerun

    @property
    def ok(self) -> bool:
        return self.error is None and not self.left


@dataclass
class ExecutionSummary:
    """Item names per outcome, in completion order."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    left: list[str] = field(default_factory=list)  # not started or stopped by the time budget
    smallest_left: float | None = None  # the least expected seconds among items never started

    def budget_line(self, total: int) -> str:
        """The closing line of a time-budgeted command."""
        stored = len(self.done) + len(self.skipped)
        return (f"{stored} of {total} items stored; {len(self.left)} left; "
                "rerun the same command to continue")


def driver_env() -> tuple[tuple[str, str], ...]:
    """The :data:`FORWARDED_ENV` variables set in this (the driver's) process."""
    return tuple((k, os.environ[k]) for k in FORWARDED_ENV if k in os.environ)


# --- the worker side --------------------------------------------------------------

ComputeFn = Callable[[WorkItem, Any], Any]


def _node() -> str:
    return socket.gethostname()


def _prepare_worker(threads: int, env: Sequence[tuple[str, str]] = ()) -> None:
    """Make this worker process use ``threads`` CPU threads in torch, TensorFlow
    and OpenMP (:mod:`effmodel.threads`), with the driver's plugin and Keras
    settings.  Runs before TensorFlow or torch is imported in a fresh worker."""
    for k, v in env:
        os.environ[k] = v
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["EFFMODEL_NUM_THREADS"] = str(threads)  # later configure_threads() calls keep it
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[var] = str(threads)
    from .threads import configure_threads

    configure_threads(threads)


def _configure_loaded_libraries(threads: int) -> None:
    """Size the pools of TensorFlow and torch now that they may be imported."""
    from .keras_compat import import_keras
    from .threads import configure_threads

    import_keras()  # imports TensorFlow, whose pools can be sized until first use
    configure_threads(threads, import_torch=True)


def _check_data_dir(item: WorkItem, node: str) -> None:
    d = item.settings.data_dir
    if d is not None and not os.path.isdir(d):
        raise UsageError(f"data directory {d} does not exist on node {node}; --data-dir must name a folder "
                         "holding mnist/ and cifar10/ at the same path on every node")


def compute_in_worker(item: WorkItem, compute: ComputeFn | None = None, threads: int | None = None,
                      node: str | None = None) -> ItemOutcome:
    """Compute one item away from the output folder and return its outcome.

    The simulator's scratch folder is a fresh temporary folder on this node,
    never the driver's output folder.  Every exception becomes a failed
    outcome naming its type, so one bad item does not stop the others.
    ``node`` names this machine in outcomes and errors (default: its host name).
    """
    import shutil
    import tempfile

    if threads is not None:
        _prepare_worker(threads, item.env)
        _configure_loaded_libraries(threads)
    node = node or _node()
    start = time.perf_counter()
    workdir = tempfile.mkdtemp(prefix=f"effmodel-{item.name}-")
    try:
        _check_data_dir(item, node)
        result = (compute or _compute_item)(item, workdir)
        return ItemOutcome(item, result=result, node=node, seconds=time.perf_counter() - start)
    except BudgetExhausted as exc:
        return ItemOutcome(item, error=str(exc), node=node, seconds=time.perf_counter() - start, left=True)
    except EffmodelError as exc:
        return ItemOutcome(item, error=str(exc), node=node, seconds=time.perf_counter() - start)
    except Exception as exc:  # a bug or a library error: report it with the item, go on
        return ItemOutcome(item, error=f"{type(exc).__name__}: {exc}", node=node, seconds=time.perf_counter() - start)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _compute_item(item: WorkItem, workdir: str) -> Any:
    from pathlib import Path

    from .pipeline import compute_item

    return compute_item(item.spec, item.settings, item.run_id, family=item.family, network=item.network,
                        workdir=Path(workdir) / "sim", log=lambda m: None, key=item.key or None,
                        deadline=item.deadline, epoch_seconds_guess=item.epoch_seconds)


def _init_pool_worker(threads: int, env: tuple[tuple[str, str], ...]) -> None:
    _prepare_worker(threads, env)


def _pool_task(item: WorkItem, compute: ComputeFn | None, threads: int) -> ItemOutcome:
    _configure_loaded_libraries(threads)
    return compute_in_worker(item, compute)


def _ray_task(item: WorkItem, compute: ComputeFn | None, threads: int) -> ItemOutcome:
    import ray

    _prepare_worker(threads, item.env)
    _configure_loaded_libraries(threads)
    node = f"{_node()} (Ray node {ray.get_runtime_context().get_node_id()[:8]})"
    return compute_in_worker(item, compute, node=node)


# --- executors ----------------------------------------------------------------------

Event = tuple[str, Any]  # ("started", WorkItem) or ("finished", ItemOutcome)


Admit = Callable[[WorkItem], "WorkItem | None"]  # the time budget's gate: the item to start, or None


def _admit_all(item: WorkItem) -> WorkItem:
    return item


def run_in_process(items: Sequence[WorkItem], compute: ComputeFn | None = None, admit: Admit = _admit_all,
                   stop_on_error: bool = False) -> Iterator[Event]:
    """One item after the other in this process (``--executor local --jobs 1``).

    ``stop_on_error``: an item's error propagates as it was raised (``run``:
    its one-line message and exit status), instead of a failed outcome."""
    for item in items:
        started = admit(item)
        if started is None:  # held back by the time budget (the gate records it)
            continue
        yield "started", started
        if not stop_on_error:
            yield "finished", compute_in_worker(started, compute)
            continue
        begin = time.perf_counter()
        try:
            result = (compute or _compute_in_process)(started, "")
        except BudgetExhausted as exc:
            yield "finished", ItemOutcome(started, error=str(exc), node=_node(), seconds=time.perf_counter() - begin,
                                          left=True)
            continue
        yield "finished", ItemOutcome(started, result=result, node=_node(), seconds=time.perf_counter() - begin)


def _compute_in_process(item: WorkItem, workdir: str) -> Any:
    """``run --jobs 1``: the simulator's scratch folder under the output folder, progress on stderr."""
    from .errors import close_open_line
    from .pipeline import compute_item
    from .progress import image_progress

    try:
        return compute_item(item.spec, item.settings, item.run_id, family=item.family, network=item.network,
                            progress=image_progress, key=item.key or None, deadline=item.deadline,
                            epoch_seconds_guess=item.epoch_seconds)
    finally:
        close_open_line()  # the progress bar's line ends here, whatever happened


def run_local_pool(items: Sequence[WorkItem], workers: int, threads: int, compute: ComputeFn | None = None,
                   max_retries: int = DEFAULT_MAX_RETRIES, admit: Admit = _admit_all) -> Iterator[Event]:
    """``workers`` spawned processes with ``threads`` threads each.

    A worker that dies breaks the whole pool, and the pool cannot say whose
    worker it was: the items then in flight are rerun one at a time in a
    fresh pool, so a death is charged to the item that caused it.  An item
    whose worker died more than ``max_retries`` times fails for good.
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    pending = deque(items)
    suspects: deque[WorkItem] = deque()  # in flight when a worker died: rerun alone
    deaths: dict[int, int] = {}
    env = driver_env()
    pool = None
    inflight: dict[Any, WorkItem] = {}

    def submit(item: WorkItem) -> bool:
        """Submit ``item``; False if the pool broke before it could take it
        (a worker died and the pool noticed before its future was done)."""
        try:
            inflight[pool.submit(_pool_task, item, compute, threads)] = item
        except BrokenProcessPool:
            return False
        return True

    try:
        while pending or suspects or inflight:
            if pool is None:
                pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                           initializer=_init_pool_worker, initargs=(threads, env))
            if suspects:
                if not inflight:
                    item = suspects.popleft()
                    if not submit(item):
                        suspects.appendleft(item)
            else:
                while pending and len(inflight) < workers:
                    item = admit(pending.popleft())
                    if item is None:
                        continue
                    if not submit(item):
                        pending.appendleft(item)  # never started: it goes in the next pool as it is
                        break
                    yield "started", item
            if not inflight:  # broken with nothing of ours in it: a fresh pool
                pool.shutdown(wait=False, cancel_futures=True)
                pool = None
                continue
            alone = len(inflight) == 1
            done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            broken = False
            for fut in done:
                item = inflight.pop(fut)
                try:
                    outcome = fut.result()
                except BrokenProcessPool:
                    broken = True
                    if not alone:
                        suspects.append(item)
                        continue
                    deaths[id(item)] = deaths.get(id(item), 0) + 1
                    if deaths[id(item)] > max_retries:
                        yield "finished", ItemOutcome(item, error=f"its worker process died {deaths[id(item)]} time(s) "
                                                                  f"(--max-retries {max_retries})", attempts=deaths[id(item)])
                    else:
                        suspects.appendleft(item)
                    continue
                yield "finished", ItemOutcome(outcome.item, outcome.result, outcome.error, outcome.node,
                                              outcome.seconds, deaths.get(id(item), 0) + 1)
            if broken:  # the other items in flight died with the pool
                suspects.extend(inflight.values())
                inflight.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = None
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def ray_address(option: str | None) -> str | None:
    """``--ray-address``, else ``$RAY_ADDRESS``, else None (start Ray here)."""
    return option or os.environ.get("RAY_ADDRESS") or None


def connect_ray(address: str | None) -> Any:
    """Import Ray and connect to the cluster at ``address`` (a local instance if None)."""
    if not address and "ray" not in sys.modules and "RAY_AUTH_MODE" not in os.environ \
            and "RAY_AUTH_TOKEN" not in os.environ:
        # Ray protects a new local instance with a token it would save in
        # ~/.ray/auth_token, which later `ray start --head` runs then pick up; keep this
        # throwaway instance's token in this process and its children instead.
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = os.urandom(16).hex()
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs the ray package (pinned in requirements.txt; run `make setup`)") from None
    if not ray.is_initialized():
        import logging

        kwargs: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
        try:
            if address:
                ray.init(address=address, **kwargs)
            else:
                from .threads import available_cores

                ray.init(num_cpus=available_cores(), include_dashboard=False, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UsageError(f"cannot connect to the Ray cluster at {address or '(local)'}: {first}") from None
    return ray


def run_on_ray(items: Sequence[WorkItem], settings: ExecutorSettings, compute: ComputeFn | None = None,
               admit: Admit = _admit_all) -> Iterator[Event]:
    """Every item as a Ray task with ``cpus_per_item``/``gpus_per_item``.

    Ray retries a task whose worker died up to ``max_retries`` times (never a
    task that raised: those come back as failed outcomes).  At most ``jobs``
    items are in flight, else as many as the cluster's CPUs (and GPUs) hold.
    """
    ray = connect_ray(ray_address(settings.ray_address))
    threads = max(1, int(settings.cpus_per_item))
    task = ray.remote(_ray_task).options(
        num_cpus=settings.cpus_per_item, num_gpus=settings.gpus_per_item,
        max_retries=settings.max_retries, retry_exceptions=False,
    )
    pending = deque(items)
    inflight: dict[Any, WorkItem] = {}
    try:
        while pending or inflight:
            limit = settings.jobs or _ray_capacity(ray, settings)  # nodes that join raise it
            while pending and len(inflight) < limit:
                item = admit(pending.popleft())
                if item is None:
                    continue
                inflight[task.remote(item, compute, threads)] = item
                yield "started", item
            if not inflight:
                break
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for ref in ready:
                item = inflight.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    outcome = ItemOutcome(item, error=f"{type(exc).__name__} after up to {settings.max_retries} "
                                                      f"retries: {why}", attempts=settings.max_retries + 1)
                yield "finished", outcome
    finally:
        for ref in inflight:
            ray.cancel(ref, force=True)


def _ray_capacity(ray: Any, settings: ExecutorSettings) -> int:
    """Items the cluster can run at once now (at least 1), so that "running"
    means running and not merely queued."""
    total = ray.cluster_resources()
    fits = [int(total.get("CPU", 0) // settings.cpus_per_item)]
    if settings.gpus_per_item:
        fits.append(int(total.get("GPU", 0) // settings.gpus_per_item))
    return max(1, min(fits))


def events(items: Sequence[WorkItem], settings: ExecutorSettings, compute: ComputeFn | None = None,
           admit: Admit = _admit_all, stop_on_error: bool = False) -> Iterator[Event]:
    """The ("started", item) and ("finished", outcome) events of the chosen
    executor; ``admit`` may hold an item back (the time budget: it is then
    never started, and the pool and Ray executors report nothing for it)."""
    if settings.kind == "ray":
        return run_on_ray(items, settings, compute, admit)
    workers = settings.local_workers()
    if workers == 1:
        return run_in_process(items, compute, admit, stop_on_error)
    from .threads import available_cores

    threads = max(1, available_cores() // workers)
    return run_local_pool(items, workers, threads, compute, settings.max_retries, admit)


# --- the driver: the one writer ----------------------------------------------------------


def execute(
    items: Sequence[WorkItem],
    store: Any,
    settings: ExecutorSettings,
    force: bool = False,
    compute: ComputeFn | None = None,
    display: Any = None,
    export_csv: bool = True,
    budget: Any = None,
    estimate: Callable[[WorkItem, Any], Any] | None = None,
    stop_on_error: bool = False,
    reuse_across_versions: bool = False,
) -> ExecutionSummary:
    """Compute every item not yet stored and store each result as it arrives.

    Only this function (the driver) writes: ``store.write_result`` replaces a
    stored row of the same identity, and the CSVs are exported after every
    item, so a killed driver leaves CSVs that match the store.  ``force``
    recomputes stored items.  ``display`` (a :class:`effmodel.progress.ItemProgress`
    or anything with its methods) shows what is done, running and failed.

    :param budget: a :class:`effmodel.budget.TimeBudget`: an item whose
        estimate (``estimate(item, estimator)``, default
        :func:`effmodel.pipeline.estimate_item` calibrated by the store's
        stored phase times) does not fit in the time left is not started, and
        started items get the deadline; both end up in ``summary.left``.
    :param stop_on_error: with the in-process executor, an item's error
        propagates as raised (``run --jobs 1``) instead of being reported.
    :param reuse_across_versions: a stored result counts as done even when
        the plugins that made it had other versions than the installed ones
        (by default such an item is recomputed: :func:`effmodel.provenance.already_stored`).
    """
    from .provenance import current_versions, same_versions, stored_versions

    summary = ExecutionSummary()
    todo: list[WorkItem] = []
    stored = {} if force else stored_versions(store)  # read once, not once per item
    for item in items:
        key = (item.key, item.settings.simulator)
        if key in stored and same_versions(stored[key], current_versions(item.spec, item.settings),
                                           reuse_across_versions):
            summary.skipped.append(item.name)
            if display is not None:
                display.skipped(item.name)
        else:
            todo.append(item)
    if display is not None:
        display.set_total(len(todo))
    env = driver_env()
    todo = [item if item.env else _with_env(item, env) for item in todo]
    admit = _admit_all if budget is None else _budget_gate(budget, store, estimate or _estimate_item, summary, display)
    for kind, payload in events(todo, settings, compute, admit, stop_on_error):
        if kind == "started":
            if display is not None:
                display.started(payload.name)
            continue
        outcome: ItemOutcome = payload
        name = outcome.item.name
        if outcome.ok:
            r = outcome.result
            with _locked(store):  # other effmodel processes writing into the same folder wait
                store.write_result(r.row, r.timesteps, r.layers, r.correct_images)
                if export_csv:
                    store.export_csv()
            summary.done.append(name)
            summary.rows.append(dict(r.row))
            if display is not None:
                display.finished(name, outcome.seconds, outcome.node)
        elif outcome.left:
            summary.left.append(name)
            if display is not None:
                display.log(outcome.error or f"{name}: stopped by the time budget")
        else:
            summary.failed.append((name, outcome.error or "unknown error"))
            if display is not None:
                display.failed(name, outcome.error or "unknown error", outcome.node)
    return summary


def _estimate_item(item: WorkItem, estimator: Any) -> Any:
    from .pipeline import estimate_item

    return estimate_item(item.spec, item.settings, estimator, trained=item.network is not None)


def _budget_gate(budget: Any, store: Any, estimate: Callable[[WorkItem, Any], Any], summary: ExecutionSummary,
                 display: Any) -> Admit:
    """The time budget's gate: start an item only if its estimate fits in the
    time left, and hand it the deadline and the expected epoch time."""
    from dataclasses import replace

    from .budget import PhaseEstimator, describe_seconds

    def admit(item: WorkItem) -> WorkItem | None:
        from .pipeline import with_training_times

        # every stored result calibrates the next estimate
        estimator = PhaseEstimator(with_training_times(store.results(), item.settings.cache_dir))
        expected = estimate(item, estimator)
        left = budget.remaining()
        if expected.total > left:
            summary.left.append(item.name)
            summary.smallest_left = min(summary.smallest_left or expected.total, expected.total)
            if display is not None:
                display.log(f"{item.name}: not started: expected {describe_seconds(expected.total)}, "
                            f"{describe_seconds(left)} left in the time budget")
            return None
        return replace(item, deadline=budget.deadline, epoch_seconds=expected.epoch or None)

    return admit


def _locked(store: Any) -> Any:
    import contextlib

    return store.locked() if hasattr(store, "locked") else contextlib.nullcontext()


def _with_env(item: WorkItem, env: tuple[tuple[str, str], ...]) -> WorkItem:
    from dataclasses import replace

    return replace(item, env=env)


def shutdown() -> None:
    """Disconnect from Ray if this process connected (stops a Ray started here)."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
