"""Norse vs INIsim throughput and peak memory, side by side (not a test).

Usage::

    python benchmarks/simulators.py [--models SmallCNN1 MediumCNN2] [--images 100]
        [--steps 100] [--batch 50] [--repeats 3] [--train-images 2000] [--epochs 1]

For each model the converted network is built once (trained briefly, or taken
from the cache), then every simulator configuration runs in its own
subprocess on the same test images, duration and batch size: ``repeats``
timed runs of ``effmodel.simulation.simulate`` after one untimed warm-up
batch.  Printed: the median images x steps per second, the child's peak RSS
(``VmHWM``, so imports count: TensorFlow for INIsim, torch for Norse), the
final accuracy, and each configuration's speed relative to INIsim.  INIsim is
skipped when its plugin is not installed.  On a shared machine the numbers
are noisy: compare columns of one invocation, not invocations.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = [
    ("norse", {"mode": "stepwise"}),
    ("norse", {"mode": "layerwise"}),
    ("inisim", {}),
]


def _peak_rss_mib() -> float:
    """This process's peak RSS.  ``VmHWM`` (reset at exec), not ``ru_maxrss``,
    which Linux carries over from the parent across fork + exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(args: argparse.Namespace) -> None:
    """Child process: time one simulator configuration, print one JSON line."""
    import numpy as np

    from effmodel import plugins
    from effmodel.datasets import iter_batches
    from effmodel.simulation import SimulationConfig, simulate

    with open(args.network, "rb") as f:
        network = pickle.load(f)
    arrays = plugins.get_datasets()[network.spec.dataset].load(Path(args.data_dir) if args.data_dir else None)
    sim = plugins.get_simulators()[args.simulator]
    options = json.loads(args.options)

    def run(limit: int):
        cfg = SimulationConfig(duration=args.steps, batch_size=args.batch, options=options, workdir=Path(tempfile.mkdtemp()))
        started = time.perf_counter()
        r = simulate(sim, network, iter_batches(arrays.x_test, arrays.y_test, args.batch, limit=limit), cfg)
        return r, time.perf_counter() - started

    run(min(args.batch, args.images))  # warm-up: imports, graph building
    speeds, acc = [], None
    for _ in range(args.repeats):
        r, wall = run(args.images)
        speeds.append(r.num_images * args.steps / wall)
        acc = r.accuracy
    peak = _peak_rss_mib()
    print(json.dumps({"speeds": speeds, "median": float(np.median(speeds)), "peak_rss_mib": peak, "accuracy": acc}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["SmallCNN1", "MediumCNN2"])
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--train-images", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--data-dir", default=os.environ.get("EFFMODEL_DATA_DIR") or str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--simulators", nargs="+", default=None, help="only these simulators (norse, inisim)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--network", help=argparse.SUPPRESS)
    p.add_argument("--simulator", help=argparse.SUPPRESS)
    p.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return

    from effmodel import plugins
    from effmodel.pipeline import converted_network
    from effmodel.simulation import NormalisationSettings

    installed = set(plugins.get_simulators())
    configs = [(s, o) for s, o in CONFIGS if args.simulators is None or s in args.simulators]
    for s in sorted({s for s, _ in configs} - installed):
        print(f"skipping {s}: its plugin is not installed", file=sys.stderr)
    configs = [(s, o) for s, o in configs if s in installed]
    print(f"images={args.images} steps={args.steps} batch={args.batch} repeats={args.repeats} cpus={os.cpu_count()}")
    print(f"{'model':<11} {'simulator':<22} {'img x steps/s':>14} {'peak RSS MiB':>13} {'accuracy':>9} {'vs inisim':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            net = converted_network(
                model_name=model, data_dir=args.data_dir, cache_dir=args.cache_dir, epochs=args.epochs,
                normalisation=NormalisationSettings(num_images=500), max_train_images=args.train_images,
            )
            path = Path(tmp) / f"{model}.pkl"
            with open(path, "wb") as f:
                pickle.dump(net, f)
            rows = []
            for sim, opts in configs:
                cmd = [sys.executable, __file__, "--worker", "--network", str(path), "--simulator", sim,
                       "--options", json.dumps(opts), "--images", str(args.images), "--steps", str(args.steps),
                       "--batch", str(args.batch), "--repeats", str(args.repeats), "--data-dir", args.data_dir]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                label = sim + ("" if not opts else "/" + ",".join(str(v) for v in opts.values()))
                lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
                if proc.returncode != 0 or not lines:
                    print(f"{model:<11} {label:<22} failed: {proc.stderr.strip().splitlines()[-1:] }")
                    continue
                rows.append((label, json.loads(lines[-1])))
            base = next((r["median"] for l, r in rows if l.startswith("inisim")), None)
            for label, r in rows:
                ratio = f"{r['median'] / base:.2f}x" if base else "-"
                print(f"{model:<11} {label:<22} {r['median']:>14.0f} {r['peak_rss_mib']:>13.0f} {r['accuracy']:>9.3f} {ratio:>10}"
                      f"   runs: {', '.join(f'{s:.0f}' for s in r['speeds'])}")


if __name__ == "__main__":
    main()
