"""The top-level ``data/`` folder is the one source of the reference data
(issue 23): the eight architecture specs, the report's Table 2 and the cost
presets live there and nowhere else; the effmodel-reference and
effmodel-costs packages reach them through a symlink (``<package>/data ->
../../../data``), which an editable install reads as it is and a wheel build
follows (``tests/test_wheels.py`` checks the wheel's copies byte for byte).

MNIST and CIFAR-10 never live in ``data/``: they come from the data directory
(``--data-dir`` / ``EFFMODEL_DATA_DIR``), and ``.gitignore`` keeps anything
but the reference files out of git there.
"""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"
REFERENCE = ["SmallCNN1", "MediumCNN1", "LargeCNN1", "DeepCNN1", "SmallCNN2", "MediumCNN2", "LargeCNN2", "DeepCNN2"]


def test_data_folder_holds_specs_table2_and_cost_presets():
    names = sorted(p.name for p in (DATA / "architectures").glob("*.toml"))
    assert [n.split("-", 1)[1].removesuffix(".toml") for n in names] == REFERENCE  # report order by prefix
    assert (DATA / "table2.csv").read_text().count("CNN") >= 8
    assert {"report-14x", "horowitz-fp32"} <= set(tomllib.loads((DATA / "cost_models.toml").read_text())["models"])
    readme = (DATA / "README.md").read_text()
    assert "EFFMODEL_DATA_DIR" in readme and "--data-dir" in readme  # where MNIST/CIFAR-10 come from instead


def test_plugins_read_the_data_folder_itself_in_an_editable_install(monkeypatch):
    """One source: what the installed plugins read is ``data/`` (not a copy)."""
    monkeypatch.delenv("EFFMODEL_REFERENCE_DIR", raising=False)
    import effmodel_costs
    from effmodel.paths import architectures_dir, table2_csv

    assert architectures_dir().resolve() == DATA / "architectures"
    assert table2_csv().resolve() == DATA / "table2.csv"
    assert effmodel_costs.presets_path().resolve() == DATA / "cost_models.toml"
    for package in ("plugins/effmodel-reference/effmodel_reference", "plugins/effmodel-costs/effmodel_costs"):
        link = REPO / package / "data"
        assert link.is_symlink() and link.resolve() == DATA, link  # a copy would drift from data/


def _git(*args: str) -> subprocess.CompletedProcess:
    try:
        r = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("git is not installed")
    if r.returncode > 1:  # 1 is check-ignore's "not ignored"
        pytest.skip(f"not a git checkout: {r.stderr.strip()}")
    return r


def test_git_tracks_no_dataset_under_data():
    tracked = _git("ls-files", "data").stdout.split()
    assert tracked, "data/ is not tracked"
    assert {Path(p).suffix for p in tracked} <= {".toml", ".csv", ".md"}, tracked
    assert all((REPO / p).stat().st_size < 50_000 for p in tracked), tracked
    # a dataset dropped into data/ by mistake stays out of git; the reference files do not
    for path in ("data/mnist/train-images-idx3-ubyte.gz", "data/cifar10/cifar-10-batches-py/data_batch_1",
                 "data/cifar-10-python.tar.gz", "data/mnist.npz"):
        assert _git("check-ignore", "--no-index", path).returncode == 0, f"{path} would not be ignored"
    for path in ("data/architectures/9-New.toml", "data/table2.csv", "data/cost_models.toml", "data/README.md"):
        assert _git("check-ignore", "--no-index", path).returncode == 1, f"{path} is ignored"
