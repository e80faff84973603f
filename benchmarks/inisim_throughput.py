"""INIsim throughput and peak memory on real data (a benchmark, not a test).

For SmallCNN1 (MNIST) and MediumCNN2 (CIFAR-10), briefly trained, it runs the
``inisim`` simulator through :func:`effmodel.simulation.simulate` several
times and prints the median images x steps per second (simulation only, and
including the parse/convert of ``open``), the SNN and ANN accuracy, and the
process's peak RSS.

    python benchmarks/inisim_throughput.py [--models SmallCNN1,MediumCNN2]
        [--num-test 100] [--duration 100] [--batch-size 50] [--repeats 3]
        [--epochs 1] [--train-images 2000] [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="SmallCNN1,MediumCNN2")
    ap.add_argument("--num-test", type=int, default=100)
    ap.add_argument("--duration", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--train-images", type=int, default=2000)
    ap.add_argument("--options", default="", help="inisim options, e.g. normalisation=snntoolbox,softmax_to_relu=false")
    ap.add_argument("--data-dir", default=os.environ.get("EFFMODEL_DATA_DIR") or str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    ap.add_argument("--cache", default=os.environ.get("EFFMODEL_CACHE_DIR") or str(Path(tempfile.gettempdir()) / "effmodel-bench-cache"))
    args = ap.parse_args()

    from effmodel.conversion import convert_trained
    from effmodel.datasets import to_float
    from effmodel.plugins import get_architectures, get_datasets, get_simulators
    from effmodel.simulation import NormalisationSettings, SimulationConfig, simulate
    from effmodel.training import TrainingSettings, train

    options = {}
    for item in filter(None, args.options.split(",")):
        k, v = item.split("=", 1)
        options[k] = {"true": True, "false": False}.get(v.lower(), v)
    sim = get_simulators()["inisim"]
    print(f"{'model':<11} {'T':>4} {'N':>4} {'img*steps/s sim':>16} {'incl. open':>11} {'SNN acc':>8} {'ANN acc':>8} {'peak RSS MiB':>13}")
    for name in args.models.split(","):
        spec = get_architectures()[name]
        ds = get_datasets()[spec.dataset]
        arrays = ds.load(Path(args.data_dir))
        trained = train(spec, arrays, ds.validation_fraction,
                        TrainingSettings(epochs=args.epochs, max_train_images=args.train_images), cache=Path(args.cache), verbose=0)
        network = convert_trained(spec, trained.path, arrays, NormalisationSettings(num_images=500))
        x, y = to_float(arrays.x_test[: args.num_test]), arrays.y_test[: args.num_test]
        config = SimulationConfig(duration=args.duration, batch_size=args.batch_size, options=options)
        sim_rates, total_rates, accs, ann = [], [], [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            r = simulate(sim, network, [(x[i : i + args.batch_size], y[i : i + args.batch_size]) for i in range(0, len(x), args.batch_size)], config)
            total = time.perf_counter() - started
            sim_rates.append(r.metadata["images_x_steps_per_second"])
            total_rates.append(len(x) * args.duration / total)
            accs.append(r.accuracy)
            ann.append(r.metadata["extra"]["parsed_ann_correct"] / len(x))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{name:<11} {args.duration:>4} {len(x):>4} {statistics.median(sim_rates):>16.0f} {statistics.median(total_rates):>11.0f} "
              f"{statistics.median(accs):>8.3f} {statistics.median(ann):>8.3f} {rss:>13.0f}", flush=True)


if __name__ == "__main__":
    main()
