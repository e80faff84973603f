"""--batch-size: a number or 'auto' (the simulator's choice), checked once, capped at the test set."""

from __future__ import annotations

import pytest

from effmodel.batching import AUTO, DEFAULT_BATCH_SIZE, parse_batch_size, resolve_batch_size
from effmodel.errors import PluginError, UsageError
from effmodel.pipeline import RunSettings


class Plain:
    name = "plain"


class Chooser:
    name = "chooser"

    def __init__(self, answer):
        self.answer = answer
        self.asked = None

    def auto_batch_size(self, network, duration, num_images, options):
        self.asked = (network, duration, num_images, options)
        return self.answer


@pytest.mark.parametrize("text, want", [("auto", AUTO), (" AUTO ", AUTO), ("64", 64), (7, 7)])
def test_parse(text, want):
    assert parse_batch_size(text) == want


@pytest.mark.parametrize("bad", ["0", "-3", "x", "1.5", 0, True, 2.0])
def test_parse_rejects(bad):
    with pytest.raises(UsageError, match="--batch-size must be 'auto' or a positive integer"):
        parse_batch_size(bad)


def test_run_settings_default_is_auto_and_normalised():
    assert RunSettings().batch_size == "auto"
    assert RunSettings(batch_size="32").batch_size == 32
    with pytest.raises(UsageError):
        RunSettings(batch_size="lots")


def test_resolve_number_wins_and_default_without_hook():
    assert resolve_batch_size(20, Chooser(999), None, 100, 1000) == 20
    assert resolve_batch_size("auto", Plain(), None, 100, 1000) == DEFAULT_BATCH_SIZE
    assert resolve_batch_size("auto", Plain(), None, 100, 30) == 30  # capped at the test images


def test_resolve_asks_the_simulator_and_caps():
    sim = Chooser(4096)
    assert resolve_batch_size("auto", sim, "NET", 150, 10000, {"device": "cuda"}) == 4096
    assert sim.asked == ("NET", 150, 10000, {"device": "cuda"})
    assert resolve_batch_size("auto", Chooser(4096), "NET", 150, 2000) == 2000


@pytest.mark.parametrize("answer", [0, -1, None, 2.5, "50"])
def test_bad_plugin_answer_is_one_line_plugin_error(answer):
    with pytest.raises(PluginError, match="simulator 'chooser': auto_batch_size returned"):
        resolve_batch_size("auto", Chooser(answer), None, 100, 1000)


def test_cli_bad_batch_size_is_one_line(run_effmodel, tmp_path):
    out = tmp_path / "out"
    r = run_effmodel("run", "--simulator", "norse", "--models", "SmallCNN1", "--batch-size", "many", "--output", str(out))
    assert r.returncode != 0
    lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and "--batch-size must be 'auto' or a positive integer, got 'many'" in lines[0], r.stderr
    assert not out.exists()
