"""Training throughput against its FLOP floor (issue 20, point 6; not a test).

For each model, in a fresh child process (TensorFlow's pools are sized once):

* ``img/s``: training images per second of ``model.fit`` (Adam, batch 128,
  the settings effmodel trains with), median of ``--repeats`` timed epochs
  over ``--images`` training images after a warm-up epoch;
* ``dense GFLOP/s``: what the same process reaches on a float32 matrix
  product (``tf.linalg.matmul``, 1024 x 1024 by 1024 x 1024, median of
  samples of at least 0.3 s);
* ``floor img/s``: that rate divided by 3 x the forward FLOPs per image
  (2 x MACs: forward, plus about twice that for the backward pass);
* ``x floor``: floor img/s / img/s, how many times slower training is than
  dense arithmetic would allow.

``--clock cpu`` times by the process's CPU time with one thread (a shared
machine's other jobs then do not count); ``--variants`` adds XLA
(``jit_compile=True``) and ``spe16`` (``steps_per_execution=16``: 16
batches per call into TensorFlow) beside the default.  Compare columns of one
invocation, not invocations: the machines are noisy.

    python benchmarks/training.py --models all --clock cpu --variants default xla
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REFERENCE = ["SmallCNN1", "MediumCNN1", "LargeCNN1", "DeepCNN1", "SmallCNN2", "MediumCNN2", "LargeCNN2", "DeepCNN2"]


def dense_gflops(clock, tf) -> float:
    """GFLOP/s of a float32 1024^3 matrix product in this process."""
    import numpy as np

    a = tf.random.uniform((1024, 1024))
    b = tf.random.uniform((1024, 1024))
    for _ in range(3):
        tf.linalg.matmul(a, b).numpy()
    rates = []
    for _ in range(5):
        n, started = 0, clock()
        while clock() - started < 0.3:
            tf.linalg.matmul(a, b).numpy()
            n += 1
        rates.append(n * 2 * 1024**3 / (clock() - started) / 1e9)
    return float(np.median(rates))


def worker(args: argparse.Namespace) -> None:
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.clock == "cpu":
        from effmodel.threads import configure_threads

        configure_threads(1)
    import numpy as np

    from effmodel import plugins
    from effmodel.counting import count_network
    from effmodel.datasets import to_float
    from effmodel.keras_compat import import_keras
    from effmodel.training import build_model

    keras = import_keras()
    import tensorflow as tf

    spec = plugins.get_architectures()[args.model]
    arrays = plugins.get_datasets()[spec.dataset].load(Path(args.data_dir) if args.data_dir else None)
    x, y = to_float(arrays.x_train[: args.images]), arrays.y_train[: args.images]
    keras.utils.set_random_seed(0)
    model = build_model(spec)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=args.variant == "xla", steps_per_execution=16 if args.variant == "spe16" else 1)
    model.fit(x[:512], y[:512], batch_size=128, epochs=1, verbose=0)  # warm-up: tracing, XLA compilation
    rates = []
    for _ in range(args.repeats):
        started = clock()
        model.fit(x, y, batch_size=128, epochs=1, shuffle=False, verbose=0)
        rates.append(len(x) / (clock() - started))
    gflops = dense_gflops(clock, tf)
    macs = count_network(spec).macs
    floor = gflops * 1e9 / (3 * 2 * macs)
    print(json.dumps({"rate": float(np.median(rates)), "rates": rates, "gflops": gflops, "macs": macs,
                      "floor": floor}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["SmallCNN1", "SmallCNN2"], help="names, or 'all'")
    p.add_argument("--images", type=int, default=2048, help="training images per timed epoch")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    p.add_argument("--variants", nargs="+", default=["default"], choices=("default", "xla", "spe16"))
    p.add_argument("--data-dir", default=os.environ.get("EFFMODEL_DATA_DIR")
                   or str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--variant", default="default", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    models = REFERENCE if args.models == ["all"] else args.models
    print(f"{'model':<12} {'variant':<8} {'img/s':>8} {'GFLOP/s':>8} {'dense GFLOP/s':>13} {'floor img/s':>11} "
          f"{'x floor':>7}", flush=True)
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    for m in models:
        for v in args.variants:
            cmd = [sys.executable, __file__, "--worker", "--model", m, "--variant", v, "--images", str(args.images),
                   "--repeats", str(args.repeats), "--clock", args.clock, "--data-dir", args.data_dir]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if out.returncode != 0:
                print(f"{m:<12} {v:<8} failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            achieved = 3 * 2 * r["macs"] * r["rate"] / 1e9
            print(f"{m:<12} {v:<8} {r['rate']:>8.0f} {achieved:>8.1f} {r['gflops']:>13.1f} {r['floor']:>11.0f} "
                  f"{r['floor'] / r['rate']:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
