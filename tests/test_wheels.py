"""effmodel installs as an ordinary wheel: wheels of effmodel and every
built-in plugin, installed non-editable into a fresh virtual environment,
give all eight reference architectures, every cost preset and the new-plugin
templates.  This is how a plugin author's project depends on effmodel
(``pip install effmodel``), and what failed before the reference data became
package data (with the architecture specs left out of the wheel, this test
fails: "reference architectures folder not found at .../site-packages/...").
The reference data lives in the top-level ``data/`` folder; the plugins'
``<package>/data`` symlinks to it, and the wheels must carry real copies.

Kept fast and offline-friendly: the sources are copied to a temporary folder
(no build/ or egg-info in the checkout), wheels are built without build
isolation, and the fresh environment gets only effmodel's light runtime
dependencies (the versions of this environment, from the pip cache, no
resolution: ``--no-deps``), never TensorFlow or torch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BUILT_IN = ["effmodel-reference", "effmodel-costs", "effmodel-inisim", "effmodel-norse", "effmodel-example", "effmodel-numpysim"]
REFERENCE = ["SmallCNN1", "MediumCNN1", "LargeCNN1", "DeepCNN1", "SmallCNN2", "MediumCNN2", "LargeCNN2", "DeepCNN2"]
IGNORE = shutil.ignore_patterns(".venv", ".git", "out", ".cache", "reports", "build", "dist", "*.egg-info", "__pycache__",
                                ".pytest_cache", ".hypothesis", "tests")


def runtime_closure(names: list[str]) -> list[str]:
    """``name==version`` of ``names`` and everything they require at run time, as installed here."""
    pins: dict[str, str] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue  # an optional marker-guarded requirement not installed here
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in pins:
            continue
        pins[key] = dist.version
        for req in dist.requires or []:
            if "extra ==" in req or "platform_system == \"Windows\"" in req or "sys_platform == \"win32\"" in req:
                continue
            todo.append(re.split(r"[\s;<>=!~\[(]", req, maxsplit=1)[0])
    return [f"{k}=={v}" for k, v in sorted(pins.items())]


@pytest.mark.slow
def test_wheels_install_non_editable_and_find_their_data(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=IGNORE, symlinks=True)  # keep <package>/data -> ../../../data a symlink
    assert (src / "plugins/effmodel-reference/effmodel_reference/data").is_symlink()
    wheels = tmp_path / "wheels"
    paths = [str(src)] + [str(src / "plugins" / name) for name in BUILT_IN]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), *paths],
                   check=True, capture_output=True, text=True)
    built = sorted(p.name for p in wheels.glob("*.whl"))
    assert len(built) == 1 + len(BUILT_IN), built
    # the build followed the symlinks to data/: the wheels carry byte-identical copies, and only their own files
    carried = {}
    for wheel in wheels.glob("effmodel_[rc]*.whl"):
        with zipfile.ZipFile(wheel) as z:
            carried.update({n: z.read(n) for n in z.namelist() if "/data/" in n})
    expected = {f"effmodel_reference/data/{p.relative_to(REPO / 'data')}": p.read_bytes()
                for p in [REPO / "data/table2.csv", *(REPO / "data/architectures").glob("*.toml")]}
    expected["effmodel_costs/data/cost_models.toml"] = (REPO / "data/cost_models.toml").read_bytes()
    assert carried == expected, sorted(set(carried) ^ set(expected))

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    deps = runtime_closure(["pluggy", "typer", "numpy"])
    assert not any(d.startswith(("tensorflow", "torch")) for d in deps)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    *map(str, wheels.glob("*.whl")), *deps], check=True, capture_output=True, text=True)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("EFFMODEL_", "PYTHON", "VIRTUAL_ENV"))}
    effmodel = [str(venv / "bin" / "effmodel")]
    where = subprocess.run([str(python), "-c", "import effmodel, effmodel_reference; print(effmodel.__file__, effmodel_reference.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout
    assert str(REPO) not in where and str(venv) in where  # the wheels, not the checkout

    r = subprocess.run(effmodel + ["architectures", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    archs = {a["name"]: a for a in json.loads(r.stdout)}
    assert [n for n in archs if n in REFERENCE] == REFERENCE  # all eight, in report order
    assert archs["SmallCNN1"]["params"] == 347_146  # from the spec file's own header comment
    assert "TinyCNN" in archs  # the example plugin too

    r = subprocess.run(effmodel + ["cost-models"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    listed = {line.split()[0] for line in r.stdout.splitlines() if line and not line.startswith(" ")}
    presets = tomllib.loads((REPO / "data/cost_models.toml").read_text())["models"]
    assert set(presets) <= listed, set(presets) - listed

    r = subprocess.run(effmodel + ["plugins"], cwd=tmp_path, env=env, capture_output=True, text=True)
    names = {line.split()[0] for line in r.stdout.splitlines()}
    assert {"reference", "costs", "inisim", "norse", "example", "numpysim"} <= names, r.stdout

    # the new-plugin templates are package data of the effmodel wheel
    r = subprocess.run(effmodel + ["new-plugin", "wheel-check", "--kind", "cost-model", "--output", "made"],
                       cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert 'wheel-check = "effmodel_wheel_check"' in (tmp_path / "made" / "pyproject.toml").read_text()
