"""The executor options shared by ``effmodel run`` and ``effmodel sweep``.

Each is a Typer option default; :func:`executor_settings` turns the values
into an :class:`effmodel.executors.ExecutorSettings` (which validates them).
Nothing here imports Ray.
"""

from __future__ import annotations

from typing import Optional

import typer

EXECUTOR = typer.Option("local", "--executor", help="Where items run: local (this machine) or ray (a Ray cluster).")
JOBS = typer.Option(None, "--jobs", "-j", help="local: worker processes (default 1, capped at the cores available); "
                    "ray: items in flight at once (default: as many as the cluster runs).")
RAY_ADDRESS = typer.Option(None, "--ray-address", help="Ray cluster to use, e.g. 10.0.0.5:6379 (default: $RAY_ADDRESS, "
                           "else a Ray instance started on this machine).")
CPUS_PER_ITEM = typer.Option(1.0, "--cpus-per-item", help="CPUs each item reserves, and its TensorFlow/torch threads (ray).")
GPUS_PER_ITEM = typer.Option(0.0, "--gpus-per-item", help="GPUs each item reserves (ray), e.g. 1 for one item per GPU.")
MAX_RETRIES = typer.Option(3, "--max-retries", help="Times an item is retried when its worker dies (node lost, OOM, kill).")
TIME_BUDGET = typer.Option(None, "--time-budget", help="Wall-time budget, e.g. 150m or 2h30m: no item starts that is "
                           "not expected to finish in time; a training stops after its last finished epoch "
                           "(checkpointed), a simulation still running is abandoned; exits 0 saying how many items "
                           "are left (rerun the same command to continue).")
DEADLINE = typer.Option(None, "--deadline", help="As --time-budget, with an end time: 2026-12-03T17:45 or 17:45 (local time).")
REUSE_ACROSS_VERSIONS = typer.Option(False, "--reuse-across-versions", help="Count a stored result as done even when "
                                     "the plugins that made it had other versions (default: recompute it).")
FORCE = typer.Option(False, "--force", help="Recompute items already stored and replace their rows.")


def executor_settings(executor: str, jobs: Optional[int], ray_address: Optional[str], cpus_per_item: float,
                      gpus_per_item: float, max_retries: int):
    from ..executors import ExecutorSettings

    return ExecutorSettings(kind=executor, jobs=jobs, ray_address=ray_address, cpus_per_item=cpus_per_item,
                            gpus_per_item=gpus_per_item, max_retries=max_retries)
