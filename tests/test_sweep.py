"""The sweep grid, its sampling, and resuming (with a fake run function, no training)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from effmodel import sweep
from effmodel.counting import count_network
from effmodel.errors import SimulationError, UsageError
from effmodel.pipeline import ItemResult, RunSettings, item_key
from effmodel.store import Store

NAME = re.compile(r"^sw-(mnist|cifar10)-(I|II)([1-4])-d([1-3])-w(\d+\.\d)$")


def test_grid_points_are_valid_and_names_encode_them():
    points, dropped = sweep.grid()
    assert len(points) + len(dropped) == 2 * 2 * 4 * 3 * 4
    for p in points:
        m = NAME.match(p.spec.name)
        assert m, p.spec.name
        ds, bt, nb, nd, w = m.groups()
        assert (p.dataset, p.bundle_type, p.bundles, p.dense, p.width) == (ds, bt, int(nb), int(nd), float(w))
        assert p.spec.conv_layers == (2 if bt == "II" else 1) * int(nb)
        assert p.spec.dense_layers == int(nd)
        # depth from the name alone (the report's convention: hidden layers)
        assert p.depth == (2 if bt == "II" else 1) * int(nb) + int(nd)
        assert p.params == hand_params(p.spec)
        assert p.spec.input_shape == sweep.DATASETS[ds]["input_shape"]
    # Four bundles of 3x3 'valid' conv + 2x2 pooling do not fit 28x28 or 32x32.
    assert all("4-" in n for n in dropped) and len(dropped) == 2 * 2 * 3 * 4
    for n in dropped:
        with pytest.raises(UsageError):
            sweep.build_spec(*_parse(n))


def hand_params(spec) -> int:
    """Trainable parameters by walking the layers with the textbook shape
    rules (3x3 conv 'valid': n - 2, 'same': n; 2x2 pooling: floor(n / 2)),
    independently of effmodel.specs and effmodel.counting."""
    h, w, c = spec.input_shape
    flat = None
    total = 0
    for layer in spec.layers:
        if layer.type == "conv2d":
            total += 3 * 3 * c * layer.filters + layer.filters
            if layer.padding == "valid":
                h, w = h - 2, w - 2
            c = layer.filters
        elif layer.type == "maxpool":
            h, w = h // 2, w // 2
        elif layer.type == "flatten":
            flat = h * w * c
        elif layer.type == "dense":
            total += flat * layer.units + layer.units
            flat = layer.units
    return total


def test_hand_params_of_one_point():
    # mnist, one type-I bundle, one hidden dense, x1: the grid's smallest
    # sibling of SmallCNN1 (28 -> 26 -> 13 after pooling)
    spec = sweep.build_spec("mnist", "I", 1, 1, 1.0)
    convs = [l.filters for l in spec.layers if l.type == "conv2d"]
    dense = [l.units for l in spec.layers if l.type == "dense"]
    f, u = convs[0], dense[0]
    assert hand_params(spec) == 9 * f + f + 13 * 13 * f * u + u + u * 10 + 10


def _parse(name):
    ds, bt, nb, nd, w = NAME.match(name).groups()
    return ds, bt, int(nb), int(nd), float(w)


def test_grid_reproduces_reference_architectures():
    # Two type-II bundles at x1 on MNIST are LargeCNN1 (one dense) and DeepCNN1 (three).
    assert count_network(sweep.build_spec("mnist", "II", 2, 1, 1.0)).params == 68_282
    assert count_network(sweep.build_spec("mnist", "II", 2, 3, 1.0)).params == 70_410
    spec = sweep.build_spec("cifar10", "I", 1, 1, 2.0)
    convs = [l for l in spec.layers if l.type == "conv2d"]
    assert [c.filters for c in convs] == [64] and spec.layers[-1].units == 10
    widths = [l.units for l in sweep.build_spec("cifar10", "I", 1, 3, 0.5).layers if l.type == "dense"]
    assert widths == [128, 64, 32, 10]


def test_sample_keeps_depth_and_size_apart_and_is_deterministic():
    points, _ = sweep.grid()
    chosen = sweep.sample(points, 24, seed=0)
    again = sweep.sample(points, 24, seed=0)
    assert [p.spec.name for p in chosen] == [p.spec.name for p in again]
    assert len({p.spec.name for p in chosen}) == 24
    # the cap, checked with a second method: the partial correlation of depth
    # and log(params) given the dataset, from least-squares residuals on
    # dataset dummies, with parameters counted by hand
    ds = np.array([p.dataset == "mnist" for p in chosen], float)
    X = np.column_stack([ds, 1 - ds])
    depth = np.array([p.depth for p in chosen], float)
    logp = np.log([hand_params(p.spec) for p in chosen])
    resid = [v - X @ np.linalg.lstsq(X, v, rcond=None)[0] for v in (depth, logp)]
    within = np.corrcoef(*resid)[0, 1]
    assert abs(within) <= 0.3
    assert sweep.correlations(chosen)["corr_within_dataset"] == pytest.approx(within)
    assert {p.dataset for p in chosen} == {"mnist", "cifar10"}
    assert abs(sum(p.dataset == "mnist" for p in chosen) - 12) <= 1
    # It spreads over depth and size, not just a corner of the grid.
    assert len({p.depth for p in chosen}) >= 5
    assert max(p.log_params for p in chosen) - min(p.log_params for p in chosen) > 4
    assert sweep.sample(points, None) == points
    with pytest.raises(UsageError):
        sweep.sample(points, 0)


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
    points = sweep.sample(sweep.grid(["mnist"])[0], 3)
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
    points = sweep.sample(sweep.grid(["cifar10"])[0], 3)
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
    spec = sweep.build_spec("mnist", "I", 1, 1, 1.0)
    base = RunSettings(simulator="fake")
    keys = {item_key(spec, base), item_key(spec, RunSettings(simulator="fake", seed=1)),
            item_key(spec, RunSettings(simulator="fake", num_test=10))}
    assert len(keys) == 3


def test_sweep_dry_run_prints_the_grid(capsys):
    from effmodel.cli import main

    assert main(["sweep", "--dry-run", "--datasets", "mnist,cifar10", "--max-architectures", "10", "--seeds", "0,1"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["selected"] == 10 and plan["items"] == 20 and len(plan["architectures"]) == 10
    for a in plan["architectures"]:
        assert NAME.match(a["name"]) and a["depth"] >= 2 and a["params"] > 0
    assert abs(plan["selected_correlation"]["corr_within_dataset"]) <= 0.3
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
