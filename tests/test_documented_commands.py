"""Every ``effmodel`` command shown in README.md, CONTRIBUTING.md and the
plugin READMEs runs as written, so the docs cannot drift from the code.

Commands are read from the fenced shell blocks of those files.  Heavy ones
get tiny settings appended (click takes the last value of a repeated
option): one training epoch on 300 images, 10 test images, 10 steps, a one-architecture
MNIST sweep.  ``../shared/data`` is replaced by the real data folder, run
outputs go to ``out/reference`` (what the README's ``report`` reads), and
the README's ``my_model.h5`` is the model the README's ``train`` command
trained.  Lines with ``...`` or ``HEAD_IP`` are placeholders, not commands,
and sweeps with ``--executor ray`` need a Ray cluster started first: skipped.
The python snippets that use the ``effmodel_plugin`` fixture are run with
pytest.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "plugins").glob("*/README.md"))]
TINY = {
    "train": ["--epochs", "1", "--max-train-images", "300"],
    "run": ["--epochs", "1", "--max-train-images", "300", "--num-test", "10", "--duration", "10", "--norm-images", "100"],
    "export": ["--epochs", "1", "--max-train-images", "300"],
    "sweep": ["--max-architectures", "1", "--seeds", "0", "--datasets", "mnist", "--epochs", "1",
              "--max-train-images", "300", "--num-test", "10", "--duration", "10"],
}
# placeholders, and sweeps on a Ray cluster (they need `ray start` first; the Ray tests cover them)
SKIP = re.compile(r"\.\.\.|HEAD_IP|--executor ray")
ORDER = ["--help", "plugins", "architectures", "cost-models", "new-plugin", "train", "run", "export", "sweep", "report"]


def documented_commands() -> list[tuple[str, str]]:
    """(where, command line) of every effmodel command in a shell block, in doc order, deduplicated."""
    seen, out = set(), []
    for doc in DOCS:
        text = doc.read_text()
        for block in re.findall(r"```(?:sh|bash|shell|console)\n(.*?)```", text, re.S):
            for line in block.replace("\\\n", " ").splitlines():  # join continuation lines
                line = " ".join(line.split("  #")[0].split())
                if line.startswith("effmodel") and not SKIP.search(line) and line not in seen:
                    seen.add(line)
                    out.append((doc.relative_to(REPO).as_posix(), line))
    return out


def test_the_docs_show_the_main_commands():
    lines = [c for _, c in documented_commands()]
    for sub in ("plugins", "architectures", "cost-models", "train", "run", "export", "sweep", "report"):
        assert any(shlex.split(c)[1:2] == [sub] for c in lines), sub


def _prepare(line: str, data_dir: Path) -> list[str]:
    args = shlex.split(line.replace("../shared/data", str(data_dir)))
    sub = args[1] if len(args) > 1 else ""
    args += TINY.get(sub, [])
    if sub == "run" and "--output" not in args and "-o" not in args:
        args += ["--output", "out/reference"]
    return args


def _lane(args: list[str]) -> str:
    """``"reference"``: ``train`` (its model is the README's my_model.h5), the
    runs into out/reference and ``report``, which reads them; ``"other"``:
    every other command.  The two lanes share nothing but the model cache, so
    pytest-xdist runs them side by side."""
    if args[1] == "train" or "out/reference" in args or "my_model.h5" in args:
        return "reference"
    return "other"


def _run_lane(lane: str, tmp_path: Path, data_dir: Path) -> None:
    commands = [(where, line) for where, line in documented_commands() if _lane(_prepare(line, data_dir)) == lane]
    commands.sort(key=lambda c: ORDER.index(shlex.split(c[1])[1]) if shlex.split(c[1])[1] in ORDER else len(ORDER))
    env = dict(os.environ, EFFMODEL_DATA_DIR=str(data_dir), TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    env.setdefault("EFFMODEL_CACHE_DIR", str(tmp_path / "cache"))
    exe = Path(sys.executable).with_name("effmodel")
    failures = []
    for where, line in commands:
        args = _prepare(line, data_dir)
        started = time.perf_counter()
        r = subprocess.run([str(exe), *args[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        print(f"{time.perf_counter() - started:6.1f} s  {shlex.join(args)}")  # shown with -s or on failure
        if r.returncode != 0:
            failures.append(f"{where}: `{line}` exited {r.returncode}: {r.stderr.strip()[-400:]}")
        if args[1] == "train" and r.returncode == 0 and not (tmp_path / "my_model.h5").exists():
            trained = Path(r.stdout.split()[-1])  # "<name> <state> test accuracy <acc>  <path>"
            shutil.copy(trained, tmp_path / "my_model.h5")  # the README's --model-file example
    assert not failures, "\n".join(failures)


def test_the_reference_lane_holds_train_runs_and_report():
    lanes: dict[str, list[str]] = {}
    for _, line in documented_commands():
        args = _prepare(line, Path("data"))
        lanes.setdefault(_lane(args), []).append(shlex.join(args))
    assert {shlex.split(c)[1] for c in lanes["reference"]} == {"train", "run", "report"}
    assert not any("out/reference" in c or "my_model.h5" in c for c in lanes["other"])


@pytest.mark.slow
class TestDocumentedCommandsRun:
    """Every documented command runs, in doc order within its lane (a class of
    its own each, so ``--dist loadscope`` may give them to two workers)."""

    def test_train_the_runs_into_out_reference_and_report(self, tmp_path, data_dir):
        _run_lane("reference", tmp_path, data_dir)


@pytest.mark.slow
class TestOtherDocumentedCommandsRun:
    def test_every_other_documented_command(self, tmp_path, data_dir):
        _run_lane("other", tmp_path, data_dir)


def test_documented_plugin_test_snippets_pass(tmp_path):
    """The python examples that use the effmodel_plugin fixture pass under pytest."""
    blocks = []
    for doc in (REPO / "CONTRIBUTING.md", REPO / "docs" / "hooks.md"):
        blocks += [b for b in re.findall(r"```python\n(.*?)```", doc.read_text(), re.S) if "def test_" in b]
    assert len(blocks) >= 2
    for i, block in enumerate(blocks):
        # A snippet inside a list item is indented; the walkthrough's own
        # simulator stands for the reader's (the numpy reference is that walkthrough).
        code = textwrap.dedent(block).replace(
            "from my_simulator import MySimulator",
            "from effmodel_numpysim.simulator import NumpySimulator as MySimulator")
        (tmp_path / f"test_snippet_{i}.py").write_text(code)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:]
    assert f"{sum(b.count('def test_') for b in blocks)} passed" in r.stdout
