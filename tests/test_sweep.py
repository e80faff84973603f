"""The sweep grid, its selection (crossed depths, constant dense width, depth
uncorrelated with size), its time projection, and resuming (with a fake run
function, no training)."""

from __future__ import annotations

import itertools
from collections import Counter
import json
import random
import re

import numpy as np
import pytest

from effmodel import sweep
from effmodel.cli import main
from effmodel.counting import count_network
from effmodel.errors import SimulationError, UsageError
from effmodel.pipeline import ItemResult, RunSettings, item_key
from effmodel.store import Store

NAME = re.compile(r"^sw-(mnist|cifar10)-(I|II)([1-4])-d([0-3])-c(\d+(?:\.\d+)?)(?:-u(\d+(?:\.\d+)?))?$")


def hand_counts(spec) -> dict[str, int]:
    """Depth, trainable parameters, neurons (conv and dense output units,
    the classifier included) and MACs, by walking the layers with the
    textbook shape rules (3x3 conv 'same': n, 'valid': n - 2; 2x2 pooling:
    floor(n / 2)), independently of effmodel.specs and effmodel.counting."""
    h, w, c = spec.input_shape
    flat = None
    out = {"depth": -1, "params": 0, "neurons": 0, "macs": 0}  # -1: the classifier is not a hidden layer
    for layer in spec.layers:
        if layer.type == "conv2d":
            if layer.padding == "valid":
                h, w = h - 2, w - 2
            out["params"] += 9 * c * layer.filters + layer.filters
            out["neurons"] += h * w * layer.filters
            out["macs"] += h * w * layer.filters * 9 * c
            out["depth"] += 1
            c = layer.filters
        elif layer.type == "maxpool":
            h, w = h // 2, w // 2
        elif layer.type == "flatten":
            flat = h * w * c
        elif layer.type == "dense":
            out["params"] += flat * layer.units + layer.units
            out["neurons"] += layer.units
            out["macs"] += flat * layer.units
            out["depth"] += 1
            flat = layer.units
    return out


def _parse(name):
    ds, bt, nb, nd, wc, wd = NAME.match(name).groups()
    return ds, bt, int(nb), int(nd), float(wc), float(wd or 0)


def test_grid_points_are_valid_and_names_encode_them():
    points, dropped = sweep.grid(bundle_types=["I", "II"])
    # 2 datasets x 2 types x 4 bundles x (1 + 3 x 3 dense widths for 1..3 hidden layers) x 3 conv widths
    assert len(points) == 2 * 2 * 4 * (1 + 3 * 3) * 3 and not dropped
    for p in points:
        ds, bt, nb, nd, wc, wd = _parse(p.spec.name)
        assert (p.dataset, p.bundle_type, p.bundles, p.dense, p.conv_width, p.dense_width) == (ds, bt, nb, nd, wc, wd)
        assert p.spec.conv_layers == (2 if bt == "II" else 1) * nb
        assert p.spec.dense_layers == nd
        hand = hand_counts(p.spec)
        # depth from the name alone (the report's convention: hidden layers)
        assert p.depth == hand["depth"] == (2 if bt == "II" else 1) * nb + nd
        assert (p.params, p.neurons, p.macs) == (hand["params"], hand["neurons"], hand["macs"])
        assert p.spec.input_shape == sweep.DATASETS[ds]["input_shape"]
        assert p.spec.epochs == {"mnist": 15, "cifar10": 30}[ds]  # the sweep protocol's maximum epochs
    # Five 'same' bundles do not fit 28x28 (28 -> 14 -> 7 -> 3 -> 1 -> 0); they fit 32x32 (-> 1).
    _, dropped = sweep.grid(bundles=[5], dense=[1], conv_widths=[1], dense_widths=[1])
    assert dropped == ["sw-mnist-I5-d1-c1-u1"]
    with pytest.raises(UsageError):
        sweep.build_spec("mnist", "I", 5, 1, 1.0, 1.0)


def test_hand_counts_of_one_point():
    # MNIST, two type-I bundles x0.5 (8 then 16 filters, 'same'), three hidden
    # dense layers x1 (64 units each): 28 -> 14 -> 7, flatten 7*7*16 = 784
    spec = sweep.build_spec("mnist", "I", 2, 3, 0.5, 1.0)
    assert [l.filters for l in spec.layers if l.type == "conv2d"] == [8, 16]
    assert hand_counts(spec)["params"] == (9 * 8 + 8) + (9 * 8 * 16 + 16) + (784 * 64 + 64) + 2 * (64 * 64 + 64) + (64 * 10 + 10)
    assert count_network(spec).neurons == 28 * 28 * 8 + 14 * 14 * 16 + 3 * 64 + 10


def test_dense_stacks_keep_a_constant_width():
    # by hand: 64 (MNIST) / 256 (CIFAR-10) units times the dense width, in every hidden layer
    units = lambda spec: [l.units for l in spec.layers if l.type == "dense"]  # noqa: E731
    assert units(sweep.build_spec("mnist", "I", 2, 3, 0.5, 1.0)) == [64, 64, 64, 10]
    assert units(sweep.build_spec("cifar10", "I", 1, 3, 1.0, 0.5)) == [128, 128, 128, 10]
    assert units(sweep.build_spec("cifar10", "II", 3, 2, 0.25, 2.0)) == [512, 512, 10]
    assert units(sweep.build_spec("mnist", "I", 4, 0, 0.25)) == [10]  # no hidden layer: Flatten -> classifier
    for p in sweep.grid()[0]:
        hidden = units(p.spec)[:-1]
        assert hidden == [round(sweep.DATASETS[p.dataset]["dense_base"] * p.dense_width)] * p.dense


def _default_sweep():
    return sweep.plan(["mnist", "cifar10"], None)[1]


def test_conv_and_dense_depth_are_crossed_in_the_default_sweep():
    chosen = _default_sweep()
    for ds in ("mnist", "cifar10"):
        pts = [p for p in chosen if p.dataset == ds]
        cells = sorted((p.spec.conv_layers, p.spec.dense_layers) for p in pts)
        # a full 4 x 4 factorial, each cell once: conv depth 1..4 (type-I bundles) x dense depth 0..3
        assert cells == sorted(itertools.product([1, 2, 3, 4], [0, 1, 2, 3]))
        conv, dense = np.array(cells, float).T
        assert np.corrcoef(conv, dense)[0, 1] == pytest.approx(0, abs=1e-12)


def test_default_sweep_keeps_depth_apart_from_params_neurons_and_reports_it():
    p, chosen = sweep.plan(["mnist", "cifar10"], None)
    assert len(chosen) >= 30
    for ds in ("mnist", "cifar10"):
        hand = [hand_counts(pt.spec) for pt in chosen if pt.dataset == ds]
        depth = np.array([h["depth"] for h in hand], float)
        r = {k: np.corrcoef(depth, np.log([h[k] for h in hand]))[0, 1] for k in ("params", "neurons", "macs")}
        assert abs(r["params"]) <= 0.3 and abs(r["neurons"]) <= 0.3
        got = p["correlations"][ds]
        assert got["depth_log_params"] == pytest.approx(r["params"], abs=1e-4)
        assert got["depth_log_neurons"] == pytest.approx(r["neurons"], abs=1e-4)
        assert got["depth_log_macs"] == pytest.approx(r["macs"], abs=1e-4)
        # and they are not all one size: log params and log neurons each span a factor of at least e^1.5
        assert np.ptp(np.log([h["params"] for h in hand])) > 1.5
        assert np.ptp(np.log([h["neurons"] for h in hand])) > 1.0


def test_selection_is_deterministic_and_independent_of_grid_order():
    points = sweep.grid()[0]
    first = [p.spec.name for p in sweep.select(points)]
    shuffled = points[:]
    random.Random(7).shuffle(shuffled)
    assert [p.spec.name for p in sweep.select(shuffled)] == first
    assert [p.spec.name for p in sweep.select(points)] == first
    assert [a["name"] for a in sweep.plan(["mnist", "cifar10"], None)[0]["architectures"]] == \
        [a["name"] for a in sweep.plan(["mnist", "cifar10"], None)[0]["architectures"]]


def test_fewer_or_more_architectures_than_cells():
    points = sweep.grid()[0]
    few = sweep.select(points, 10)  # 5 per dataset from 16 cells: balanced conv and dense depths
    assert len(few) == 10 and len({p.spec.name for p in few}) == 10
    for ds in ("mnist", "cifar10"):
        pts = [p for p in few if p.dataset == ds]
        assert len(pts) == 5
        assert max(np.bincount([p.bundles for p in pts])) <= 2 and max(np.bincount([p.dense for p in pts])) <= 2
    many = sweep.select(points, 40)  # every cell once, four of them twice with other widths
    assert len({p.spec.name for p in many}) == 40
    assert {p.cell for p in many} == {p.cell for p in points}
    with pytest.raises(UsageError):
        sweep.select(points, 0)


def test_take_is_a_balanced_subset_of_the_same_networks(capsys):
    chosen = _default_sweep()
    sub = sweep.take(chosen, 12)
    assert {p.spec.name for p in sub} <= {p.spec.name for p in chosen} and len(sub) == 12
    for ds in ("mnist", "cifar10"):
        pts = [p for p in sub if p.dataset == ds]
        assert len(pts) == 6
        # 6 networks over 4 conv depths and 4 dense depths: each level once or twice
        assert sorted(Counter(p.bundles for p in pts).values()) == [1, 1, 2, 2]
        assert sorted(Counter(p.dense for p in pts).values()) == [1, 1, 2, 2]
    assert [p.spec.name for p in sweep.take(chosen, 12)] == [p.spec.name for p in sub]
    assert sweep.take(chosen, 33) == chosen  # at most N: all of them
    with pytest.raises(UsageError, match="--take 1 is fewer than one per dataset"):
        sweep.take(chosen, 1)
    assert main(["sweep", "--dry-run", "--take", "12"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["taken"] == [p.spec.name for p in sub] and plan["items"] == 12 and plan["selected"] == 32


def test_the_printed_correlation_line():
    from effmodel.commands.sweep import correlation_line

    line = correlation_line({"mnist": {"depth_log_params": 0.107, "depth_log_neurons": -0.2, "depth_log_macs": None},
                             "cifar10": {"depth_log_params": 0.0, "depth_log_neurons": 0.25, "depth_log_macs": 0.3}})
    assert line == "corr(depth, log params/neurons/MACs): mnist +0.11/-0.20/n/a, cifar10 +0.00/+0.25/+0.30"


def test_an_impossible_bound_is_a_one_line_error(capsys, tmp_path):
    # One conv width and one dense width leave one architecture per cell: the
    # only possible sweep.  Its correlations, by hand, break the bound...
    args = ["--datasets", "mnist", "--conv-widths", "0.5", "--dense-widths", "1", "--max-epoch-seconds", "0"]
    only = [sweep.build_spec("mnist", "I", nb, nd, 0.5, 1.0) for nb in (1, 2, 3, 4) for nd in (0, 1, 2, 3)]
    hand = [hand_counts(s) for s in only]
    depth = [h["depth"] for h in hand]
    assert abs(np.corrcoef(depth, np.log([h["neurons"] for h in hand]))[0, 1]) > 0.3
    # ... so the sweep refuses, in one line, and writes nothing.  (The
    # simulator does not exist: should the bound not be checked, the command
    # fails later with another message instead of training sixteen networks.)
    out = tmp_path / "out"
    assert main(["sweep", *args, "--simulator", "no-such-simulator", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "mnist" in err and "|corr(depth, log neurons)| <= 0.3" in err
    assert not out.exists()
    # a bound it can meet runs (here: no bound at all)
    assert main(["sweep", *args, "--max-corr", "1", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["selected"] == 16


def test_projected_time_and_the_cap():
    # by hand: MNIST, one type-I bundle x0.25 (4 filters), no hidden dense:
    # 5 Keras layers (conv, pool, dropout, flatten, classifier), 399 batches of 128 in 51,000 images
    spec = sweep.build_spec("mnist", "I", 1, 0, 0.25)
    macs, neurons = 28 * 28 * 4 * 9 + 14 * 14 * 4 * 10, 28 * 28 * 4 + 10
    m = sweep.TIME_MODEL
    epoch = 399 * (m["s_step"] + 5 * m["s_step_layer"]) + 51_000 * (m["s_mac"] * macs + m["s_neuron"] * neurons)
    point = next(p for p in sweep.grid(["mnist"])[0] if p.spec.name == spec.name)
    assert point.seconds_per_epoch() == pytest.approx(epoch)
    assert point.train_seconds() == pytest.approx(15 * epoch)  # at most 15 epochs on the full split
    small = 8 * (m["s_step"] + 5 * m["s_step_layer"]) + 1000 * (m["s_mac"] * macs + m["s_neuron"] * neurons)
    assert point.train_seconds(epochs=2, max_train_images=1000) == pytest.approx(2 * small)
    # every architecture of the default sweep fits the default cap; a lower cap leaves more out
    p, chosen = sweep.plan(["mnist", "cifar10"], None)
    assert all(a["projected_seconds_per_epoch"] <= sweep.MAX_EPOCH_SECONDS for a in p["architectures"])
    assert p["projected_train_seconds"] == pytest.approx(sum(pt.train_seconds() for pt in chosen), abs=1)
    points = sweep.grid(["mnist"])[0]
    per_cell = {}
    for pt in points:
        per_cell[pt.cell] = min(per_cell.get(pt.cell, 1e9), pt.seconds_per_epoch())
    cap = max(per_cell.values())  # the lowest cap that keeps every cell
    q, chosen = sweep.plan(["mnist"], None, max_epoch_seconds=cap, max_corr=1)
    assert q["over_time_budget"] == sum(pt.seconds_per_epoch() > cap for pt in points) > 0
    assert all(pt.seconds_per_epoch() <= cap for pt in chosen) and len(chosen) == 16
    with pytest.raises(UsageError, match=r"^mnist: no width of I4-d3 fits --max-epoch-seconds"):
        sweep.plan(["mnist"], None, max_epoch_seconds=cap * 0.99)


class FakeCompute:
    """Stands in for pipeline.compute_item: one schema-valid row per item, stored by the driver."""

    def __init__(self, fail_on=(), interrupt_at=None):
        self.calls = []
        self.fail_on = set(fail_on)
        self.interrupt_at = interrupt_at

    def __call__(self, item, workdir):
        spec, settings = item.spec, item.settings
        self.calls.append((spec.name, settings.seed, item.family))
        if self.interrupt_at is not None and len(self.calls) == self.interrupt_at:
            raise KeyboardInterrupt
        if spec.name in self.fail_on:
            raise SimulationError(f"{spec.name} diverged")
        row = {"run_id": item.run_id, "item_key": item_key(spec, settings), "model": spec.name, "dataset": spec.dataset,
               "simulator": settings.simulator, "family": item.family, "seed": settings.seed, "factor": 1.0}
        return ItemResult(row=row, timesteps=(), layers=())


def test_run_sweep_skips_stored_items_and_resumes(tmp_path):
    points = sweep.select(sweep.grid(["mnist"])[0], 3, max_corr=1)  # three points: any
    settings = RunSettings(simulator="fake", output=tmp_path)
    with Store(tmp_path) as store:
        run = FakeCompute(interrupt_at=4)  # dies during the 4th of 6 items
        with pytest.raises(KeyboardInterrupt):
            sweep.run_sweep(points, [0, 1], settings, store, store.start_run("t", {}), compute=run, key=item_key)
        assert len(store.results()) == 3
        run2 = FakeCompute()
        out = sweep.run_sweep(points, [0, 1], settings, store, store.start_run("t", {}), compute=run2, key=item_key)
        assert len(out.skipped) == 3 and len(out.done) == 3 and not out.failed
        every = [(f"{p.spec.name}-s{s}", s) for p in points for s in (0, 1)]
        assert [c[:2] for c in run.calls] == every[:4]
        assert [c[:2] for c in run2.calls] == every[3:]
        assert all(c[2] == "sweep" for c in run2.calls)
        names = {r["model"] for r in store.results()}
        assert names == {f"{p.spec.name}-s{s}" for p in points for s in (0, 1)}
        # Nothing left: a third pass runs nothing.
        run3 = FakeCompute()
        out = sweep.run_sweep(points, [0, 1], settings, store, store.start_run("t", {}), compute=run3, key=item_key)
        assert run3.calls == [] and len(out.skipped) == 6
        # --force recomputes and replaces: still one row per item.
        run_f = FakeCompute()
        out = sweep.run_sweep(points[:1], [0], settings, store, store.start_run("t", {}), compute=run_f, key=item_key,
                              force=True)
        assert len(run_f.calls) == 1 and out.done and len(store.results()) == 6
        # Another simulator is a different item.
        other = RunSettings(simulator="other", output=tmp_path)
        run4 = FakeCompute()
        out = sweep.run_sweep(points[:1], [0], other, store, store.start_run("t", {}), compute=run4, key=item_key)
        assert len(run4.calls) == 1 and out.done


def test_run_sweep_goes_on_after_a_failed_item(tmp_path):
    points = sweep.select(sweep.grid(["cifar10"])[0], 3, max_corr=1)
    bad = f"{points[1].spec.name}-s0"
    with Store(tmp_path) as store:
        out = sweep.run_sweep(points, [0], RunSettings(simulator="fake"), store, "r1",
                              compute=FakeCompute(fail_on={bad}), key=item_key)
        assert [n for n, _ in out.failed] == [bad] and "diverged" in out.failed[0][1]
        assert len(out.done) == 2
        # The failed item is not stored, so a rerun retries exactly it.
        retry = FakeCompute()
        out = sweep.run_sweep(points, [0], RunSettings(simulator="fake"), store, "r2", compute=retry, key=item_key)
        assert [c[0] for c in retry.calls] == [bad]


def test_seed_and_settings_change_the_item_key():
    spec = sweep.build_spec("mnist", "I", 1, 1, 1.0, 1.0)
    base = RunSettings(simulator="fake")
    keys = {item_key(spec, base), item_key(spec, RunSettings(simulator="fake", seed=1)),
            item_key(spec, RunSettings(simulator="fake", num_test=10))}
    assert len(keys) == 3


def test_sweep_dry_run_prints_the_plan(capsys):
    assert main(["sweep", "--dry-run", "--seeds", "0,1,2"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["selected"] == 32 and plan["items"] == 96 and len(plan["architectures"]) == 32
    for a in plan["architectures"]:
        assert NAME.match(a["name"]) and a["depth"] >= 1 and a["params"] > 0
    for ds, epochs, images in (("mnist", 15, 51_000), ("cifar10", 30, 41_500)):
        assert plan["training"][ds] == {"max_epochs": epochs, "early_stopping_patience": 3, "train_images": images}
        assert abs(plan["correlations"][ds]["depth_log_params"]) <= 0.3
    assert plan["projected_train_hours"] == pytest.approx(3 * plan["projected_train_seconds"] / 3600, abs=0.01)
    assert main(["sweep", "--dry-run", "--datasets", "imagenet"]) == 2
    assert "unknown imagenet" in capsys.readouterr().err


def test_batch_size_is_part_of_the_identity_only_under_poisson_input():
    """Analog results do not depend on the batch size, so a rerun with another
    batch size (or ``auto`` on another device) resumes; Poisson input draws
    its spikes per batch, so there the batch size is part of the identity."""
    spec = sweep.build_spec("mnist", "I", 1, 1, 1.0)
    analog = {item_key(spec, RunSettings(simulator="fake", batch_size=b)) for b in (50, 7, "auto")}
    poisson = {item_key(spec, RunSettings(simulator="fake", batch_size=b, input_encoding="poisson")) for b in (50, 7)}
    assert len(analog) == 1 and len(poisson) == 2
