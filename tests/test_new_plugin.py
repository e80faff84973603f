"""``effmodel new-plugin``: each kind writes a distribution that installs,
is listed by ``effmodel plugins`` and passes its own generated tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from effmodel.cli import main
from effmodel.commands.new_plugin import KINDS

REPO = Path(__file__).resolve().parent.parent
EFFMODEL = [sys.executable, "-m", "effmodel.cli"]


def test_each_kind_writes_a_complete_distribution(tmp_path, capsys):
    for kind in KINDS:
        out = tmp_path / kind
        assert main(["new-plugin", f"my-{kind}", "--kind", kind, "--output", str(out)]) == 0
        meta = tomllib.loads((out / "pyproject.toml").read_text())
        module = f"effmodel_my_{kind.replace('-', '_')}"
        assert meta["project"]["name"] == f"effmodel-my-{kind}"
        assert meta["project"]["entry-points"]["effmodel"] == {f"my-{kind}": module}
        init = (out / module / "__init__.py").read_text()
        assert f"def {KINDS[kind][0]}(register):" in init and "@hookimpl" in init
        test = (out / "tests" / f"test_{module}.py").read_text()
        assert "effmodel.testing" in test or "effmodel_plugin" in test
        assert "my-" + kind in (out / "README.md").read_text()
        for path in out.rglob("*"):
            if path.is_file():
                assert "${" not in path.read_text(), path  # every placeholder filled
                compile(path.read_text(), str(path), "exec") if path.suffix == ".py" else None


def test_the_simulator_template_is_the_reference_simulator(tmp_path):
    """The template must not drift from the reference it copies (names aside)."""
    assert main(["new-plugin", "drift", "--output", str(tmp_path / "d")]) == 0
    made = (tmp_path / "d" / "effmodel_drift" / "simulator.py").read_text()
    ref = (REPO / "plugins" / "effmodel-numpysim" / "effmodel_numpysim" / "simulator.py").read_text()

    def code(text):  # without the module docstring, with the names normalised
        text = text.split('"""\n', 1)[1]
        # the reference also implements --coding ttfs (effmodel_numpysim.ttfs) and adaptive neurons
        # (effmodel_numpysim.adaptive: options neuron and mf); the template rate-coded IF neurons only
        text = re.sub(r"    codings = .*\n", "CODINGS\n", text)
        text = re.sub(r'        if config.coding == "ttfs":\n.*?\n\n.*?\n', "", text, flags=re.S)
        text = re.sub(r'    SimulatorOption\("(neuron|mf)", .*\n', "", text)
        text = re.sub(r"        self\.check_config\(config\).*\n        from \.adaptive import .*\n\n", "", text)
        text = re.sub(r'        if config.options.get\("neuron"\) == "adaptive":\n.*\n', "", text)
        text = re.sub(r"    def check_config\(self, config\):\n.*?\n\n.*?\n\n(?=    def open)", "", text, flags=re.S)
        text = re.sub(r"Numpy|Drift", "X", text)
        text = re.sub(r'name = ".*"\n    description = ".*"', "NAME", text)
        return text.replace("the drift simulator", "the numpy simulator")

    assert code(made) == code(ref)


@pytest.mark.parametrize("args, message", [
    (["Bad_Name"], "must be lower-case letters"),
    (["ok", "--kind", "compiler"], "--kind must be one of simulator, cost-model, architectures, dataset"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    r = subprocess.run(EFFMODEL + ["new-plugin", *args, "--output", str(tmp_path / "p")], capture_output=True, text=True)
    assert r.returncode != 0 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "p").exists()


def test_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "keep.txt").write_text("mine")
    r = subprocess.run(EFFMODEL + ["new-plugin", "ok", "--output", str(tmp_path / "p")], capture_output=True, text=True)
    assert r.returncode != 0 and "already exists and is not an empty folder" in r.stderr
    assert [p.name for p in (tmp_path / "p").iterdir()] == ["keep.txt"]


def _layered_venv(where: Path) -> Path:
    """A fresh virtual environment that sees every package of this one (a
    ``.pth`` file adds this environment's site-packages, ``.pth`` files
    included) but installs into its own: pip-installing plugins there leaves
    this environment, and the tests running beside this one, untouched."""
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                         capture_output=True, text=True, check=True).stdout.strip()
    (Path(own) / "_effmodel_parent_env.pth").write_text(f"import site; site.addsitedir({sysconfig.get_path('purelib')!r})\n")
    return python


@pytest.mark.slow
def test_generated_plugins_install_list_and_pass_their_tests(tmp_path):
    """pip-install every kind (editable, no deps, no build isolation: fast and
    offline) into an environment layered on this one, check ``effmodel
    plugins``, run each generated test suite, and uninstall again whatever
    happens."""
    tag = f"zz{os.getpid()}"
    made = {kind: tmp_path / kind for kind in KINDS}
    for kind, out in made.items():
        assert main(["new-plugin", f"{tag}-{kind}", "--kind", kind, "--output", str(out)]) == 0
    dists = [f"effmodel-{tag}-{kind}" for kind in KINDS]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EFFMODEL_") or k in ("EFFMODEL_DATA_DIR", "EFFMODEL_CACHE_DIR")}
    python = _layered_venv(tmp_path / "venv")
    effmodel = [str(python), "-m", "effmodel.cli"]
    try:
        pip = [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
        for out in made.values():
            pip += ["-e", str(out)]
        subprocess.run(pip, check=True, capture_output=True, text=True, env=env)
        listed = subprocess.run(effmodel + ["plugins"], capture_output=True, text=True, env=env, check=True).stdout
        for kind in KINDS:
            line = next((l for l in listed.splitlines() if l.startswith(f"{tag}-{kind} ")), None)
            assert line is not None, f"{tag}-{kind} not listed by effmodel plugins:\n{listed}"
            assert f"effmodel-{tag}-{kind} 0.1.0" in line and KINDS[kind][0] in line
        assert tag not in subprocess.run(EFFMODEL + ["plugins"], capture_output=True, text=True, env=env).stdout
        for kind, out in made.items():
            r = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                               cwd=out, capture_output=True, text=True, env=env)
            assert r.returncode == 0, f"{kind}: generated tests failed:\n{r.stdout[-3000:]}"
            assert " passed" in r.stdout and "skipped" not in r.stdout
    finally:
        subprocess.run([str(python), "-m", "pip", "uninstall", "-q", "-y", *dists], capture_output=True, env=env)
    listed = subprocess.run(effmodel + ["plugins"], capture_output=True, text=True, env=env).stdout
    assert tag not in listed
