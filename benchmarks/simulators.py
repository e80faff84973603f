"""Norse (and INIsim) throughput against the dense-compute floor (not a test).

Usage::

    python benchmarks/simulators.py [--models SmallCNN1 MediumCNN2 | --models all]
        [--device cpu|cuda] [--batch-size auto|N] [--images 100] [--steps T]
        [--repeats 3] [--train-images 2000] [--epochs 1] [--simulators norse inisim]
        [--norse-modes auto stepwise layerwise]

For each model the converted network is built once (taken from the trained-
model cache, or trained briefly: throughput hardly depends on the training),
then every simulator configuration runs in its own subprocess on the same
test images, duration and batch size: ``repeats`` timed runs of
``effmodel.simulation.simulate`` after one untimed warm-up batch.

Printed per model and configuration (medians of the repeats):

* ``img*steps/s``: images x time steps simulated per second (wall clock);
* ``test set s``: the wall time for the model's whole test set, extrapolated
  from the timed ``--images`` (10,000 for both data sets);
* ``GFLOP/s``: the achieved dense rate, 2 x MACs x img*steps/s, with the MACs
  of the layers the floor times (below);
* ``floor``: the floor every clock-driven simulator must pay, in
  img*steps/s (the team's decision, issue 20): one step of the network's
  synapses (conv, dense, average pooling; the first layer excluded, as the
  simulator computes its constant current once per batch) on binary inputs
  (spike probability 0.1), **plus one read and one write of every spiking
  neuron's state** (an in-place float32 add over each IF layer's membrane
  tensor, the first layer's included), no thresholds, hooks or readout,
  timed alone in the same process, on the same device, threads and batch
  (median of at least five samples of at least 0.3 s each); ``x floor`` is
  how many times slower the simulator is.  (Until issue 20 the floor left
  the neuron states out, which made SmallCNN1, whose 21,632 first-layer
  neurons dwarf its one small dense layer, look 1.6-2.2x its floor);
* ``vs inisim``: speed relative to INIsim in the same invocation, when it ran;
* ``--clock cpu`` times everything by the process's CPU time with one thread:
  on a machine shared with other jobs, wall-clock rates mostly measure the
  other jobs; CPU time measures the work (it still includes cache and
  hyper-thread contention);
* accuracy and the child's peak RSS (``VmHWM``: imports count).

``--steps`` defaults to the report's T (100 MNIST, 150 CIFAR-10).  On a shared
machine the numbers are noisy: compare columns of one invocation, not
invocations, and use ``--repeats``.
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

REFERENCE = ["SmallCNN1", "MediumCNN1", "LargeCNN1", "DeepCNN1", "SmallCNN2", "MediumCNN2", "LargeCNN2", "DeepCNN2"]
TEST_SET_IMAGES = 10_000


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


def floor_macs(spec) -> int:
    """MACs per image per step of the layers the floor times: every conv and
    dense layer but the first spiking layer (its current is constant)."""
    from effmodel.counting import count_network, spiking_layer_indices

    counts = count_network(spec)
    first = spiking_layer_indices(spec)[0]
    return int(sum(l.macs for i, l in enumerate(counts.layers) if i != first and l.type in ("conv2d", "dense")))


def dense_floor(network, batch: int, device: str, repeats: int, clock=time.perf_counter) -> float:
    """img*steps/s of the synapses alone (see the module docstring)."""
    import numpy as np
    import torch

    from effmodel_norse.network import SpikeMaxPool, build_network

    net = build_network(network).to(device)
    stages = list(net.stages)
    h_, w_, c_ = network.simulated_spec.input_shape
    x = torch.zeros((batch, c_, h_, w_), device=device)
    inputs = []
    with torch.no_grad():
        h = stages[0].synapse(x)
        states = [torch.zeros(h.shape, device=device)]  # the membranes of every IF layer (max pooling has none)
        for st in stages[1:]:
            inputs.append((torch.rand(h.shape, device=device) < 0.1).float())
            if isinstance(st.neuron, SpikeMaxPool):
                h = st.neuron.analog(inputs[-1])
            else:
                h = st.synapse(inputs[-1])
                states.append(torch.zeros(h.shape, device=device))
        timed = [(st.synapse, inp) for st, inp in zip(stages[1:], inputs) if st.synapse is not None]

        def step():
            for syn, inp in timed:
                syn(inp)
            for v in states:  # one read and one write of every neuron's state
                v.add_(1.0)

        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        for _ in range(3):
            step()
        sync()
        rates = []
        for _ in range(max(5, repeats)):  # each sample at least 0.3 s: 20 steps were too short to time reliably
            n, started = 0, clock()
            while True:
                step()
                n += 1
                if n % 10 == 0:
                    sync()
                    if clock() - started >= 0.3:
                        break
            rates.append(n * batch / (clock() - started))
    return float(np.median(rates))


def worker(args: argparse.Namespace) -> None:
    """Child process: time one simulator configuration, print one JSON line."""
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.clock == "cpu":  # one thread everywhere: CPU time then measures the work, not spinning threads
        from effmodel.threads import configure_threads

        configure_threads(1)  # before TensorFlow or torch start their thread pools
    import numpy as np

    from effmodel import plugins
    from effmodel.datasets import iter_batches
    from effmodel.simulation import SimulationConfig, simulate

    with open(args.network, "rb") as f:
        network = pickle.load(f)
    arrays = plugins.get_datasets()[network.spec.dataset].load(Path(args.data_dir) if args.data_dir else None)
    sim = plugins.get_simulators()[args.simulator]
    options = json.loads(args.options)
    batch = int(args.batch)
    if args.clock == "cpu" and args.simulator == "norse":
        options.setdefault("threads", 1)
    if args.floor and (options.get("device") or "cpu") == "cpu":
        from effmodel.threads import idle_cores

        # the floor is timed with the simulation's threads; torch is not imported
        # here: the plugin sets OpenMP's spin before it loads torch, as in a user's run
        options.setdefault("threads", idle_cores())

    def run(limit: int):
        cfg = SimulationConfig(duration=args.steps, batch_size=batch, options=options, workdir=Path(tempfile.mkdtemp()))
        started = clock()
        r = simulate(sim, network, iter_batches(arrays.x_test, arrays.y_test, batch, limit=limit), cfg)
        return r, clock() - started

    run(min(batch, args.images))  # warm-up: imports, graph building, cudnn autotuning
    speeds, acc, extra = [], None, {}
    for _ in range(args.repeats):
        r, wall = run(args.images)
        speeds.append(r.num_images * args.steps / wall)
        acc, extra = r.accuracy, r.metadata.get("extra", {})
    out = {"speeds": speeds, "median": float(np.median(speeds)), "peak_rss_mib": _peak_rss_mib(), "accuracy": acc,
           "extra": {k: str(v) for k, v in extra.items() if k.startswith("norse_")}}
    if args.floor:
        import torch

        if "threads" in options:
            torch.set_num_threads(int(options["threads"]))
        out["floor"] = dense_floor(network, batch, options.get("device") or "cpu", args.repeats, clock)
        out["threads"] = torch.get_num_threads()
    print(json.dumps(out))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["SmallCNN1", "MediumCNN2"], help="names, or 'all' for the eight reference models")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="Norse's device (INIsim runs on the CPU)")
    p.add_argument("--batch-size", default="auto", help="a number, or auto (the simulator's choice, capped at --images)")
    p.add_argument("--images", type=int, default=100, help="test images timed per repeat (extrapolated to the test set)")
    p.add_argument("--steps", type=int, default=None, help="time steps (default: 100 MNIST, 150 CIFAR-10)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--train-images", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--data-dir", default=os.environ.get("EFFMODEL_DATA_DIR") or str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--simulators", nargs="+", default=["norse", "inisim"], help="norse and/or inisim")
    p.add_argument("--norse-modes", nargs="+", default=["auto"], help="Norse modes to compare: auto, stepwise, layerwise")
    p.add_argument("--norse-options", nargs="+", default=None, metavar="K=V[,K=V]",
                   help="Norse configurations to compare, each a comma list of options (e.g. kernels=off mode=layerwise,chunk_steps=10); "
                        "overrides --norse-modes")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="cpu: time by this process's CPU time, one thread (fairer on a shared, busy machine)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--network", help=argparse.SUPPRESS)
    p.add_argument("--simulator", help=argparse.SUPPRESS)
    p.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    p.add_argument("--batch", default="50", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return

    from effmodel import plugins
    from effmodel.batching import resolve_batch_size
    from effmodel.pipeline import DEFAULT_DURATION, converted_network
    from effmodel.simulation import NormalisationSettings
    from effmodel.threads import available_cores, idle_cores

    models = REFERENCE if args.models == ["all"] else args.models
    installed = plugins.get_simulators()
    configs = []
    for s in args.simulators:
        if s not in installed:
            print(f"skipping {s}: its plugin is not installed", file=sys.stderr)
            continue
        if s == "norse" and args.norse_options:
            configs += [("norse", {"device": args.device} | dict(kv.split("=", 1) for kv in o.split(",") if kv)) for o in args.norse_options]
        elif s == "norse":
            configs += [("norse", {"device": args.device} | ({} if m == "auto" else {"mode": m})) for m in args.norse_modes]
        else:
            configs.append((s, {}))
    print(f"clock={args.clock} device={args.device} images={args.images} (whole test set {TEST_SET_IMAGES}: extrapolated) repeats={args.repeats} "
          f"batch={args.batch_size} cores={available_cores()} idle~{idle_cores()} load={os.getloadavg()[0]:.1f}")
    head = (f"{'model':<11} {'simulator':<16} {'batch':>6} {'T':>4} {'img*steps/s':>12} {'test set s':>11} {'GFLOP/s':>8}"
            f" {'floor':>10} {'x floor':>8} {'vs inisim':>9} {'accuracy':>8} {'RSS MiB':>8}")
    print(head)
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            net = converted_network(
                model_name=model, data_dir=args.data_dir, cache_dir=args.cache_dir, epochs=args.epochs,
                normalisation=NormalisationSettings(num_images=500), max_train_images=args.train_images,
            )
            steps = args.steps or DEFAULT_DURATION.get(net.spec.dataset, 100)
            macs = floor_macs(net.simulated_spec)
            path = Path(tmp) / f"{model}.pkl"
            with open(path, "wb") as f:
                pickle.dump(net, f)
            rows = []
            for sim, opts in configs:
                batch = resolve_batch_size(args.batch_size, installed[sim], net, steps, min(args.images, TEST_SET_IMAGES), opts)
                cmd = [sys.executable, __file__, "--worker", "--network", str(path), "--simulator", sim,
                       "--options", json.dumps(opts), "--images", str(args.images), "--steps", str(steps),
                       "--batch", str(batch), "--repeats", str(args.repeats), "--data-dir", args.data_dir, "--clock", args.clock]
                if sim == "norse":
                    cmd.append("--floor")
                proc = subprocess.run(cmd, capture_output=True, text=True)
                label = sim + "".join(f"/{v}" for k, v in opts.items() if k != "device")
                lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
                if proc.returncode != 0 or not lines:
                    print(f"{model:<11} {label:<16} failed: {proc.stderr.strip().splitlines()[-1:]}")
                    continue
                rows.append((label, batch, json.loads(lines[-1])))
            base = next((r["median"] for l, _, r in rows if l.startswith("inisim")), None)
            for label, batch, r in rows:
                rate = r["median"]
                floor = r.get("floor")
                print(f"{model:<11} {label:<16} {batch:>6} {steps:>4} {rate:>12.0f} {TEST_SET_IMAGES * steps / rate:>11.1f}"
                      f" {2 * macs * rate / 1e9:>8.2f} {floor or 0:>10.0f} {(floor / rate if floor else float('nan')):>8.2f}"
                      f" {(f'{rate / base:.2f}x' if base else '-'):>9} {r['accuracy']:>8.3f} {r['peak_rss_mib']:>8.0f}"
                      f"   runs: {', '.join(f'{s:.0f}' for s in r['speeds'])}"
                      + (f"  threads={r['threads']}" if "threads" in r else ""))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
