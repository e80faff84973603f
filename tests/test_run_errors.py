"""Bad input to ``effmodel run``: one line on stderr, a non-zero exit, no traceback,
and nothing written to the output directory's store."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "args, message",
    [
        (["--simulator", "nosuchsim"], "unknown simulator 'nosuchsim'"),
        (["--duration", "0"], "--duration must be a positive number of time steps"),
        (["--duration", "-5"], "--duration must be a positive number of time steps"),
        (["--num-test", "0"], "the test set would be empty"),
        (["--batch-size", "0"], "--batch-size must be 'auto' or a positive integer"),
        (["--models", "NoSuchCNN"], "unknown architecture 'NoSuchCNN'"),
        (["--cost-model", "free-lunch"], "unknown cost model 'free-lunch'"),
        (["--datasets", "imagenet"], "unknown dataset 'imagenet'"),
        (["--tolerance", "-0.1"], "--tolerance must be >= 0"),
    ],
)
def test_bad_run_input_is_one_line(run_effmodel, data_dir, tmp_path, args, message):
    out = tmp_path / "out"
    r = run_effmodel("run", "--models", "SmallCNN1", "--data-dir", str(data_dir), "--output", str(out), *args)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("effmodel: error: ") and message in lines[0]
    assert "Traceback" not in r.stderr
    assert not (out / "effmodel.sqlite").exists()


def test_missing_data_dir_is_one_line(run_effmodel, tmp_path):
    r = run_effmodel("run", "--models", "SmallCNN1", "--data-dir", str(tmp_path / "nowhere"), "--output", str(tmp_path / "o"))
    assert r.returncode != 0
    assert r.stderr.strip().count("\n") == 0 and "does not exist" in r.stderr
    assert not (tmp_path / "o" / "effmodel.sqlite").exists()
