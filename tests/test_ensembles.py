"""Ensembles (effmodel.ensembles): ``ensemble:<Member>x<n>``, n seeded members, output spikes summed.

Hand-worked: the counts of effmodel.testing's tiny network, and the summed
readout of two scripted members.  Checked against independent runs: an
ensemble's SynOps are its members' simulated alone, an ensemble of one is
its member, member 0 is the plain model (the same cache entry) and member 1
has other weights.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from effmodel.counting import count_network
from effmodel.ensembles import (EnsembleSpec, count_ensemble, lookup_architecture, readout_adds, resolve,
                                simulate_ensemble, training_jobs)
from effmodel.errors import UsageError
from effmodel.simulation import BatchResult, ConvertedNetwork, LayerWeights, NormalisationSettings, SimulationConfig, simulate
from effmodel.specs import ArchitectureSpec, LayerSpec
from effmodel.testing import reference_simulator, tiny_images, tiny_network, tiny_spec


# --- counting ---------------------------------------------------------------------------

# effmodel.testing.tiny_spec("max") by hand: 10x10x1 -> conv1 4@3x3 same -> maxpool 2 -> conv2 6@3x3 valid
# -> flatten (3x3x6 = 54) -> hidden 12 -> output 4
TINY_PARAMS = (9 * 4 + 4) + (9 * 4 * 6 + 6) + (54 * 12 + 12) + (12 * 4 + 4)  # 974
TINY_MACS = 10 * 10 * 4 * 9 + 3 * 3 * 6 * 36 + 12 * 54 + 4 * 12  # 6240 (nominal taps, padding included)
TINY_NEURONS = 400 + 54 + 12 + 4
# exact FLOPs: 2 x real taps - neurons + bias adds; conv1's real taps: 28 per axis (2 + 8 x 3 + 2), 28 x 28 x 1 x 4
TINY_FLOPS = (2 * 28 * 28 * 4 - 400 + 400) + (2 * 1944 - 54 + 54) + (2 * 648) + (2 * 48)


def test_counts_are_n_times_a_members_and_the_readout_sums_n_minus_1_vectors():
    member = tiny_spec("max")
    c = count_network(member)
    assert (c.params, c.macs, c.neurons, c.flops_exact) == (TINY_PARAMS, TINY_MACS, TINY_NEURONS, TINY_FLOPS)
    for n in (1, 3, 8):
        e = count_ensemble(EnsembleSpec(member, n))
        assert (e.params, e.macs, e.neurons, e.synapses) == (n * TINY_PARAMS, n * TINY_MACS, n * TINY_NEURONS,
                                                              n * c.synapses)
        assert e.flops_exact == n * TINY_FLOPS
        assert readout_adds(EnsembleSpec(member, n)) == (n - 1) * 4  # n vectors of 4 class scores summed once
        # the layers of every member, apart: m0/conv1 ... m<n-1>/output
        assert [l.name for l in e.layers][: len(member.layers) + 1] == [f"m0/{l.name}" for l in member.layers] + ["m1/conv1"] \
            if n > 1 else [l.name for l in e.layers] == [f"m0/{l.name}" for l in member.layers]


def test_an_ensemble_has_the_members_depth_and_its_own_identity():
    member = tiny_spec("max")
    e = EnsembleSpec(member, 4)
    assert e.name == "ensemble:Tiny-maxx4" and e.depth == member.depth == 3 and e.dataset == "tiny"
    assert len({e.content_hash(), EnsembleSpec(member, 3).content_hash(), member.content_hash()}) == 3
    d = e.to_dict()
    assert d["ensemble"]["members"] == 4 and d["ensemble"]["member"] == member.to_dict()
    assert "layers" not in d  # code that rebuilds one network from spec_json finds none, not the member's alone


def test_an_ensemble_is_its_own_item():
    from effmodel.pipeline import RunSettings, item_key

    member, s = tiny_spec("max"), RunSettings(seed=3)
    keys = [item_key(member, s), item_key(EnsembleSpec(member, 1), s), item_key(EnsembleSpec(member, 2), s),
            item_key(EnsembleSpec(member, 2), RunSettings(seed=4))]
    assert len(set(keys)) == 4
    assert item_key(EnsembleSpec(member, 2), RunSettings(seed=3)) == keys[2]  # the same ensemble, the same item


def test_members_get_consecutive_seeds_member_0_the_runs_own():
    from effmodel.pipeline import RunSettings

    member = tiny_spec("max")
    jobs = training_jobs(EnsembleSpec(member, 3), RunSettings(seed=7))
    assert [s.seed for _, s in jobs] == [7, 8, 9] and all(spec is member for spec, _ in jobs)
    assert [s.seed for _, s in training_jobs(member, RunSettings(seed=7))] == [7]


# --- names ------------------------------------------------------------------------------


@pytest.mark.parametrize("name, message", [
    ("ensemble:NoSuchCNNx4", "unknown member architecture 'NoSuchCNN'"),
    ("ensemble:Tiny-maxx0", "at least 1, got 0"),
    ("ensemble:Tiny-max", "write ensemble:<Member>x<n>"),
    ("ensemble:Tiny-maxx", "write ensemble:<Member>x<n>"),
    ("ensemble:Tiny-maxx-2", "write ensemble:<Member>x<n>"),
    ("ensemble:x3", "write ensemble:<Member>x<n>"),
    ("Ensemble-Tiny-maxx3", "write ensemble:<Member>x<n>"),
])
def test_bad_ensemble_names_are_one_line_errors(name, message):
    registry = {"Tiny-max": tiny_spec("max")}
    with pytest.raises(UsageError, match=message) as info:
        lookup_architecture(name, registry)
    assert "\n" not in str(info.value)


def test_a_member_name_may_contain_x_and_digits():
    spec = replace(tiny_spec("max"), name="Netx2")
    e = resolve("ensemble:Netx2x3", {"Netx2": spec})
    assert e.member is spec and e.members == 3


# --- simulation: the summed readout -----------------------------------------------------


def _one_layer_network(tag: float) -> ConvertedNetwork:
    """A 1-pixel input -> 3-class dense network (the weights are never used by the scripted simulator)."""
    spec = ArchitectureSpec(name="OneLayer", dataset="tiny", input_shape=(1, 1, 1),
                            layers=(LayerSpec(type="flatten", name="flatten"),
                                    LayerSpec(type="dense", name="output", units=3, activation="softmax")))
    w = {"output": LayerWeights(kernel=np.full((1, 3), tag, np.float32), bias=None)}
    return ConvertedNetwork(spec=spec, weights=w, normalised_weights=w, scale_factors={"output": 1.0},
                            normalisation=NormalisationSettings())


class ScriptedSimulator:
    """Plays back given output spikes ``(N, T, K)`` per network (keyed by the
    network's kernel value), keeping the simulator contract; ``with_output=False``
    leaves ``output_spikes_t`` out, as a simulator that does not fill it."""

    name = "scripted"
    description = "plays back output spikes given by the test"
    codings = ("rate", "ttfs")

    def __init__(self, script: dict[float, np.ndarray], with_output: bool = True):
        self.script, self.with_output = script, with_output

    def open(self, network, config):
        from effmodel.readout import decisions

        spikes = self.script[float(network.weights["output"].kernel[0, 0])]
        sim = self

        class Session:
            done = 0

            def run_batch(self, x, y):
                out = spikes[self.done : self.done + len(x)]
                self.done += len(x)
                d = decisions(out, config.coding)
                return BatchResult(
                    correct_t=(d == np.asarray(y).reshape(-1, 1)).sum(axis=0),
                    synops_t={"output": np.zeros(config.duration, np.int64)},
                    spikes_t={"output": out.sum(axis=(0, 2))}, predictions=d[:, -1],
                    output_spikes_t=out if sim.with_output else None)

            def close(self):
                pass

        return Session()


def _spikes(events, images=2, steps=3, classes=3):
    out = np.zeros((images, steps, classes), np.int64)
    for b, t, k in events:
        out[b, t, k] = 1
    return out


# member A, image 0: class 1 at steps 1 and 2             -> alone: 1, 1, 1
# member B, image 0: class 0 at step 1, class 2 at 2 and 3 -> alone: 0, 0 (tie 0/2: lowest), 2
# summed, image 0: step 1: 0 and 1 tie -> 0; step 2: 1 has 2 spikes -> 1; step 3: 1 and 2 tie at 2 -> 1
# image 1: A fires class 2 at step 3 only, B nothing  -> summed: -1, -1, 2
MEMBER_A = _spikes([(0, 0, 1), (0, 1, 1), (1, 2, 2)])
MEMBER_B = _spikes([(0, 0, 0), (0, 1, 2), (0, 2, 2)])


def _scripted_run(coding="rate", with_output=True):
    nets = [_one_layer_network(1.0), _one_layer_network(2.0)]
    sim = ScriptedSimulator({1.0: MEMBER_A, 2.0: MEMBER_B}, with_output)
    x, y = np.zeros((2, 1, 1, 1), np.float32), np.array([1, 2])
    config = SimulationConfig(duration=3, batch_size=2, coding=coding)
    return simulate_ensemble(sim, nets, lambda: [(x, y)], config, model="ensemble:OneLayerx2")


def test_the_summed_readout_by_hand():
    e = _scripted_run("rate")
    from effmodel.readout import decisions

    assert decisions(e.output_spikes_t, "rate").tolist() == [[0, 1, 1], [-1, -1, 2]]
    assert e.result.predictions.tolist() == [1, 2]
    # labels 1 and 2: image 0 right from step 2, image 1 at step 3
    assert e.result.correct_images.tolist() == [[False, True, True], [False, False, True]]
    assert e.result.correct_t.tolist() == [0, 1, 2]
    assert e.result.accuracy == 1.0
    # each member alone: A right on both images at step 3, B on neither (class 2 for image 0, no spike for image 1)
    assert [m.accuracy for m in e.members] == [1.0, 0.0]
    assert e.result.spikes_t["m0/output"].tolist() == [1, 1, 1] and e.result.spikes_t["m1/output"].tolist() == [1, 1, 1]


def test_the_summed_readout_by_hand_under_ttfs():
    # image 0: step 1, A says 1 and B says 0: one each, lowest index -> 0, fixed from then on
    e = _scripted_run("ttfs")
    assert e.result.correct_images.tolist() == [[False] * 3, [False, False, True]]


def test_a_simulator_without_output_spikes_is_a_one_line_error():
    with pytest.raises(UsageError, match="simulator 'scripted' does not return BatchResult.output_spikes_t") as info:
        _scripted_run(with_output=False)
    assert "\n" not in str(info.value)


# --- simulation with the numpy reference -------------------------------------------------


@pytest.fixture(scope="module")
def tiny_members():
    nets = [tiny_network(seed=s) for s in (0, 1, 2)]
    x, y = tiny_images(nets[0], n=6)
    config = SimulationConfig(duration=20, batch_size=4)
    sim = reference_simulator()
    batches = lambda: [(x[:4], y[:4]), (x[4:], y[4:])]  # noqa: E731
    alone = [simulate(sim, n, batches(), config) for n in nets]
    return nets, x, y, config, sim, batches, alone


def test_an_ensembles_synops_are_its_members_simulated_alone(tiny_members):
    nets, x, y, config, sim, batches, alone = tiny_members
    e = simulate_ensemble(sim, nets, batches, config)
    assert {k.split("/", 1)[0] for k in e.result.synops_t} == {"m0", "m1", "m2"}
    for i, r in enumerate(alone):
        for layer, v in r.synops_t.items():
            assert np.array_equal(e.result.synops_t[f"m{i}/{layer}"], v)
            assert np.array_equal(e.result.spikes_t[f"m{i}/{layer}"], r.spikes_t[layer])
    assert e.result.synops_total == pytest.approx(sum(r.synops_total for r in alone))
    assert e.result.synops_total > 0


def test_n_copies_of_one_network_cost_n_times_and_decide_as_it_does(tiny_members):
    nets, x, y, config, sim, batches, alone = tiny_members
    e = simulate_ensemble(sim, [nets[0]] * 3, batches, config)
    assert e.result.synops_total == pytest.approx(3 * alone[0].synops_total)
    # three times the same spikes: the same argmax at every step
    assert np.array_equal(e.result.correct_images, alone[0].correct_images)


def test_an_ensemble_of_one_is_its_member(tiny_members):
    nets, x, y, config, sim, batches, alone = tiny_members
    e = simulate_ensemble(sim, nets[:1], batches, config)
    r = alone[0]
    assert np.array_equal(e.result.correct_t, r.correct_t) and np.array_equal(e.result.predictions, r.predictions)
    assert np.array_equal(e.result.correct_images, r.correct_images)
    assert {k.removeprefix("m0/"): v.tolist() for k, v in e.result.synops_t.items()} == \
        {k: v.tolist() for k, v in r.synops_t.items()}
    assert np.array_equal(e.result.synops_cumulative, r.synops_cumulative)


def test_the_ann_ensemble_sums_logits():
    from effmodel.ensembles import ann_accuracy, member_logits

    # one input pixel (255 -> 1.0) into three classes: the logits are the kernels' rows
    a, b = _one_layer_network(1.0), _one_layer_network(2.0)
    spec = a.spec
    wa = {"output": LayerWeights(kernel=np.array([[2.0, 0.0, 1.5]], np.float32), bias=None)}
    wb = {"output": LayerWeights(kernel=np.array([[0.0, 2.0, 1.5]], np.float32), bias=None)}
    x = np.full((1, 1, 1, 1), 255, np.uint8)
    assert member_logits(spec, wa, x).tolist() == [[2.0, 0.0, 1.5]]  # before the softmax
    # A says 0, B says 1; their summed logits [2, 2, 3] say 2, which neither says alone
    acc, each = ann_accuracy(spec, [wa, wb], x, np.array([2]))
    assert (acc, each) == (1.0, [0.0, 0.0])
    assert ann_accuracy(spec, [wa], x, np.array([0])) == (1.0, [1.0])


# --- the time budget -------------------------------------------------------------------------


def test_an_ensembles_training_and_simulation_are_n_members(tmp_path):
    from effmodel.budget import PhaseEstimator
    from effmodel.pipeline import RunSettings, estimate_item

    member = tiny_spec("max")
    settings = RunSettings(cache_dir=tmp_path, epochs=2, num_test=10)
    est = PhaseEstimator([])
    one = estimate_item(member, settings, est)
    four = estimate_item(EnsembleSpec(member, 4), settings, est)
    assert one.train > 0
    assert four.train == pytest.approx(4 * one.train) and four.simulate == pytest.approx(4 * one.simulate)


# --- the command line ---------------------------------------------------------------------------


@pytest.mark.parametrize("models, extra, message", [
    ("ensemble:NoSuchCNNx4", [], "unknown member architecture 'NoSuchCNN'"),
    ("ensemble:SmallCNN1x0", [], "at least 1, got 0"),
    ("ensemble(SmallCNN1,4)", [], "write ensemble:<Member>x<n>"),
    ("ensemble:SmallCNN1", [], "write ensemble:<Member>x<n>"),
    ("ensemble:SmallCNN1x2", ["--simulator", "norse", "--readout", "potential"], "support only --readout spikes"),
])
def test_bad_ensembles_on_the_command_line_are_one_line(run_effmodel, data_dir, tmp_path, models, extra, message):
    out = tmp_path / "out"
    r = run_effmodel("run", "--simulator", "numpy", "--models", models, "--data-dir", str(data_dir), "--output", str(out),
                     *extra)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("effmodel: error: ") and message in lines[0], r.stderr
    assert not out.exists()


TINY = ["--epochs", "1", "--max-train-images", "2000", "--num-test", "50"]


def _read(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory, data_dir):
    """``effmodel run --simulator numpy`` of SmallCNN1 and its ensembles of 1 and 2 (seed 0),
    and of SmallCNN1 with seed 1 alone, sharing one model cache."""
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("ensembles")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EFFMODEL_") or k == "EFFMODEL_NUM_THREADS"}
    env |= {"EFFMODEL_CACHE_DIR": str(root / "cache"), "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    runs = {"seed0": ["--models", "SmallCNN1,ensemble:SmallCNN1x1,ensemble:SmallCNN1x2"],
            "seed1": ["--models", "SmallCNN1", "--seed", "1"]}
    for name, args in runs.items():
        r = subprocess.run([sys.executable, "-m", "effmodel.cli", "run", "--simulator", "numpy", *args, *TINY,
                            "--data-dir", str(data_dir), "-o", str(root / name)],
                           env=env, capture_output=True, text=True, timeout=1200)
        assert r.returncode == 0, r.stderr[-3000:]
    rows = {}
    for name in runs:
        for row in _read(root / name / "results.csv"):
            rows[(name, row["model"])] = row
    return root, rows


def _extra(row):
    return json.loads(row["extra_json"])


@pytest.mark.slow
def test_cli_an_ensemble_of_one_is_its_member(cli_runs):
    root, rows = cli_runs
    plain, one = rows[("seed0", "SmallCNN1")], rows[("seed0", "ensemble:SmallCNN1x1")]
    same = ("params", "neurons", "ann_macs", "ann_flops", "ann_accuracy", "snn_accuracy", "threshold_step",
            "synops_at_threshold", "synops_total", "neuron_updates_total", "mean_spike_rate", "total_costs", "snn_costs",
            "factor", "depth", "snn_neuron_updates", "ann_effective_macs", "snn_cost_memory", "ann_cost_memory")
    assert {c: one[c] for c in same} == {c: plain[c] for c in same}
    assert one["family"] == "ensemble" and _extra(one)["ensemble"]["members"] == 1
    assert _extra(one)["ensemble"]["model_keys"] == [_extra(plain)["model_key"]]  # the plain model's cache entry
    steps = _read(root / "seed0" / "timesteps.csv")
    assert [r["error"] for r in steps if r["model"] == one["model"]] == [r["error"] for r in steps if r["model"] == "SmallCNN1"]
    layers = _read(root / "seed0" / "layers.csv")
    mine = {r["layer"].removeprefix("m0/"): (r["spikes"], r["synops"], r["snn_synops_in"]) for r in layers
            if r["model"] == one["model"]}
    assert mine == {r["layer"]: (r["spikes"], r["synops"], r["snn_synops_in"]) for r in layers if r["model"] == "SmallCNN1"}


@pytest.mark.slow
def test_cli_an_ensemble_of_two_counts_both_members(cli_runs):
    root, rows = cli_runs
    seed0, seed1, two = rows[("seed0", "SmallCNN1")], rows[("seed1", "SmallCNN1")], rows[("seed0", "ensemble:SmallCNN1x2")]
    for c in ("params", "neurons", "ann_macs", "ann_synapses", "neuron_updates_total"):
        assert float(two[c]) == 2 * float(seed0[c]), c
    assert int(two["ann_flops"]) == 2 * int(seed0["ann_flops"]) + 10  # + the logits' sum: (2 - 1) x 10 classes
    assert two["depth"] == seed0["depth"] and _extra(two)["ensemble"]["members"] == 2
    # the ensemble's SynOps are those of seed 0's and seed 1's SmallCNN1, each simulated alone
    assert float(two["synops_total"]) == pytest.approx(float(seed0["synops_total"]) + float(seed1["synops_total"]))
    steps = {r["model"]: r for r in _read(root / "seed0" / "layers.csv") if r["model"] == two["model"]}
    assert steps  # per-member layers, prefixed
    names = {r["layer"] for r in _read(root / "seed0" / "layers.csv") if r["model"] == two["model"]}
    assert {n.split("/")[0] for n in names} == {"m0", "m1"}


@pytest.mark.slow
def test_cli_members_are_seeded_differently(cli_runs):
    import h5py

    root, rows = cli_runs
    seed0, seed1, two = rows[("seed0", "SmallCNN1")], rows[("seed1", "SmallCNN1")], rows[("seed0", "ensemble:SmallCNN1x2")]
    keys = _extra(two)["ensemble"]["model_keys"]
    assert keys == [_extra(seed0)["model_key"], _extra(seed1)["model_key"]] and keys[0] != keys[1]
    assert _extra(two)["ensemble"]["seeds"] == [0, 1]

    def kernels(key):
        with h5py.File(root / "cache" / key / "model.h5", "r") as f:
            out = []
            f["model_weights"].visititems(lambda name, obj: out.append(np.array(obj)) if "kernel" in name else None)
            return out

    k0, k1 = kernels(keys[0]), kernels(keys[1])
    assert len(k0) == len(k1) == 3 and all(a.shape == b.shape and not np.allclose(a, b) for a, b in zip(k0, k1))


@pytest.mark.slow
def test_cli_an_ensemble_stores_each_images_correctness(cli_runs):
    """The ensemble's per-image matrix (summed members' readout) is stored like a single network's,
    and it gives back the stored error curve."""
    from effmodel.readout import unpack_correct
    from effmodel.store import Store

    root, rows = cli_runs
    with Store(root / "seed0") as store:
        stored = {r["model"]: r for r in store.correct_images()}
    steps = _read(root / "seed0" / "timesteps.csv")
    for model in ("ensemble:SmallCNN1x2", "SmallCNN1"):
        m = stored[model]
        correct = unpack_correct(m["packed"], m["images"], m["steps"])
        error = [float(r["error"]) for r in steps if r["model"] == model]
        assert np.allclose(1 - correct.mean(axis=0), error)
