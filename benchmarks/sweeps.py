"""Sweep throughput per executor: items per hour, side by side (not a test).

Usage::

    python benchmarks/sweeps.py [--data-dir DIR] [--cache-dir DIR] [--cases jobs1,jobs2,ray2,oversub]

The same 8 tiny MNIST items (type I/II bundles, one bundle, 1-2 hidden dense
layers, widths x0.5 and x1; 300 training images, 1 epoch, 50 test images,
T = 20, Norse) are swept once per case into a fresh output folder:

- ``jobs1``:   ``effmodel sweep --executor local --jobs 1`` (in the driver);
- ``jobs2``:   ``--executor local --jobs 2`` (two worker processes, one thread each);
- ``ray2``:    ``--executor ray`` on a Ray instance started by the sweep with
  two CPUs, so two local Ray workers;
- ``oversub``: the local pool with two workers of *two* threads each on this
  machine's cores (what ``--jobs 2`` avoids by sizing threads per worker).

``--cases threads`` adds a micro-benchmark of the same question without the
pipeline around it: two processes run Norse-sized integrate-and-fire steps
(a small conv layer, batch 20) with one vs two torch threads each.

The trained models are cached first (an untimed warm-up sweep), so every case
measures the same work: process start and imports, conversion, simulation,
the store.  Each case is timed end to end (wall clock of the command) and
printed as items per hour and relative to ``jobs1``.  On a shared machine the
numbers are noisy: compare the columns of one invocation, not invocations.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRID = ["--simulator", "norse", "--datasets", "mnist", "--bundle-types", "I,II", "--bundles", "1", "--dense", "1,2",
        "--widths", "0.5,1", "--epochs", "1", "--max-train-images", "300", "--num-test", "50", "--duration", "20",
        "--batch-size", "50", "--max-corr", "1", "--max-architectures", "8"]
ITEMS = 8
CASES = {
    "jobs1": ["--executor", "local", "--jobs", "1"],
    "jobs2": ["--executor", "local", "--jobs", "2"],
    "ray2": ["--executor", "ray"],
}
# The oversubscribed pool: two workers, two threads each, through the executors API.
OVERSUB = """
import sys
from pathlib import Path
from effmodel.executors import run_local_pool
from effmodel.pipeline import RunSettings
from effmodel.store import Store
from effmodel.sweep import plan, work_items

out, data_dir, cache_dir = map(Path, sys.argv[1:4])
_, points = plan(["mnist"], None, bundle_types=["I", "II"], bundles=[1], dense=[1, 2], widths=[0.5, 1.0])
settings = RunSettings(simulator="norse", output=out, data_dir=data_dir, cache_dir=cache_dir, num_test=50, duration=20,
                       batch_size=50, epochs=1, max_train_images=300)
with Store(out) as store:
    items = work_items(points, [0], settings, store.start_run("oversub", {}))
    for kind, outcome in run_local_pool(items, workers=2, threads=2):
        if kind == "finished":
            assert outcome.ok, outcome.error
            store.write_result(outcome.result.row, outcome.result.timesteps, outcome.result.layers)
"""


THREADS = """
import sys, time, torch
torch.set_num_threads(int(sys.argv[1])); torch.set_num_interop_threads(1)
conv = torch.nn.Conv2d(8, 8, 3); x = torch.rand(20, 8, 26, 26); v = torch.zeros(20, 8, 24, 24)
with torch.no_grad():
    for _ in range(20): v = v + conv(x)
    t = time.perf_counter()
    for _ in range(1500):
        v = v + conv(x); s = (v > 1).float(); v = v - s  # integrate, spike, reset by subtraction
print(time.perf_counter() - t)
"""


def _threads(repeats: int = 3) -> None:
    """Median seconds of two concurrent processes with 1 vs 2 torch threads each."""
    import statistics

    res: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(repeats):
        for n in (1, 2):
            ps = [subprocess.Popen([sys.executable, "-c", THREADS, str(n)], stdout=subprocess.PIPE, text=True)
                  for _ in range(2)]
            res[n].append(max(float(p.communicate()[0]) for p in ps))
    for n, v in res.items():
        print(f"2 processes x {n} thread(s): median {statistics.median(v):.2f} s (runs {', '.join(f'{x:.2f}' for x in v)})")
    print(f"2x2 threads / 2x1 threads: {statistics.median(res[2]) / statistics.median(res[1]):.2f}x the time", flush=True)


def _env(cache_dir: Path) -> dict[str, str]:
    return dict(os.environ, EFFMODEL_CACHE_DIR=str(cache_dir), TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
                RAY_USAGE_STATS_ENABLED="0")


def _sweep(out: Path, data_dir: Path, cache_dir: Path, extra: list[str]) -> float:
    cmd = [sys.executable, "-m", "effmodel.cli", "sweep", *GRID, "--data-dir", str(data_dir), "--cache-dir",
           str(cache_dir), "-o", str(out), *extra]
    t = time.perf_counter()
    r = subprocess.run(cmd, env=_env(cache_dir), capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if r.returncode != 0 or f"{ITEMS} run, 0 already stored, 0 failed" not in r.stdout:
        raise SystemExit(f"sweep {' '.join(extra)} failed:\n{r.stdout}\n{r.stderr[-3000:]}")
    return seconds


def _oversub(out: Path, data_dir: Path, cache_dir: Path) -> float:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", OVERSUB, str(out), str(data_dir), str(cache_dir)], env=_env(cache_dir),
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"oversubscribed pool failed:\n{r.stderr[-3000:]}")
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=os.environ.get("EFFMODEL_DATA_DIR"))
    ap.add_argument("--cache-dir", type=Path, default=None, help="trained-model cache (default: a temporary folder)")
    ap.add_argument("--cases", default="jobs1,jobs2,ray2,oversub", help="any of jobs1,jobs2,ray2,oversub,threads")
    args = ap.parse_args()
    if args.data_dir is None:
        raise SystemExit("pass --data-dir or set EFFMODEL_DATA_DIR")
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if "threads" in cases:
        cases.remove("threads")
        _threads()
        if not cases:
            return
    with tempfile.TemporaryDirectory(prefix="effmodel-bench-") as tmp:
        cache = args.cache_dir or Path(tmp) / "models"
        t = _sweep(Path(tmp) / "warmup", args.data_dir, cache, CASES["jobs1"])
        print(f"warm-up (trains the 8 models into the cache): {t:.0f} s", flush=True)
        results: dict[str, float] = {}
        for case in cases:
            out = Path(tmp) / case
            results[case] = _oversub(out, args.data_dir, cache) if case == "oversub" else _sweep(
                out, args.data_dir, cache, CASES[case])
            print(f"{case:<8} {results[case]:7.1f} s  {ITEMS * 3600 / results[case]:7.0f} items/h", flush=True)
    base = results.get("jobs1")
    print(f"\n{'case':<8} {'seconds':>8} {'items/h':>8} {'vs jobs1':>9}")
    for case, s in results.items():
        print(f"{case:<8} {s:8.1f} {ITEMS * 3600 / s:8.0f} {base / s if base else float('nan'):9.2f}")


if __name__ == "__main__":
    main()
