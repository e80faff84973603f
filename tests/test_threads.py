"""The CPU thread policy (effmodel.threads): cores from affinity and cgroup quota."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from effmodel.threads import available_cores, cgroup_quota_cores

REPO = Path(__file__).resolve().parent.parent


def test_cgroup_v2_quota(tmp_path):
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "cpu.max").write_text("150000 100000\n")
    assert cgroup_quota_cores(tmp_path, proc_cgroup="0::/job\n") == pytest.approx(1.5)
    (tmp_path / "job" / "cpu.max").write_text("max 100000\n")
    assert cgroup_quota_cores(tmp_path, proc_cgroup="0::/job\n") is None


def test_cgroup_v1_quota_and_smallest_wins(tmp_path):
    d = tmp_path / "cpu,cpuacct" / "box"
    d.mkdir(parents=True)
    (d / "cpu.cfs_quota_us").write_text("300000\n")
    (d / "cpu.cfs_period_us").write_text("100000\n")
    outer = tmp_path / "cpu,cpuacct"
    (outer / "cpu.cfs_quota_us").write_text("-1\n")  # no limit at the root
    (outer / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_quota_cores(tmp_path, proc_cgroup="4:cpu,cpuacct:/box\n3:memory:/x\n") == pytest.approx(3.0)
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # a tighter v2 limit at the root
    assert cgroup_quota_cores(tmp_path, proc_cgroup="4:cpu,cpuacct:/box\n0::/\n") == pytest.approx(0.5)
    assert cgroup_quota_cores(tmp_path / "missing", proc_cgroup="0::/\n") is None


def _child(code: str, env: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> dict:
    """Run ``code`` in a fresh Python; its last output line is JSON."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("EFFMODEL_NUM_THREADS", "OMP_NUM_THREADS", *drop)}
    full_env.update(env or {})
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, cwd=REPO, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_available_cores_follows_affinity_not_cpu_count():
    """Pinned to one core, the process may use one core, whatever the host has."""
    code = (
        "import os, json; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]});"
        "from effmodel.threads import available_cores; print(json.dumps({'n': available_cores(), 'host': os.cpu_count()}))"
    )
    r = _child(code)
    assert r["n"] == 1
    assert available_cores() <= len(os.sched_getaffinity(0))


def test_env_override_and_configure_threads_sets_torch():
    torch = pytest.importorskip("torch")  # noqa: F841 (the child imports it)
    code = (
        "import json, torch; from effmodel.threads import configure_threads;"
        "n = configure_threads(); import os;"
        "print(json.dumps({'n': n, 'torch': torch.get_num_threads(), 'interop': torch.get_num_interop_threads(),"
        " 'omp': os.environ['OMP_NUM_THREADS']}))"
    )
    r = _child(code, {"EFFMODEL_NUM_THREADS": "1"})
    assert r == {"n": 1, "torch": 1, "interop": 1, "omp": "1"}


def test_configure_threads_leaves_torch_unimported():
    code = (
        "import sys, json; from effmodel.threads import configure_threads; configure_threads(2);"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'tf': 'tensorflow' in sys.modules}))"
    )
    assert _child(code) == {"torch": False, "tf": False}


def test_short_openmp_spin_leaves_a_users_choice(monkeypatch):
    from effmodel.threads import OPENMP_SPIN_COUNT, short_openmp_spin

    for var in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(var, raising=False)
    assert short_openmp_spin() is True and os.environ["GOMP_SPINCOUNT"] == OPENMP_SPIN_COUNT == "10000"
    monkeypatch.setenv("GOMP_SPINCOUNT", "123")
    assert short_openmp_spin() is False and os.environ["GOMP_SPINCOUNT"] == "123"
    monkeypatch.delenv("GOMP_SPINCOUNT")
    monkeypatch.setenv("OMP_WAIT_POLICY", "active")
    assert short_openmp_spin() is False and "GOMP_SPINCOUNT" not in os.environ


_SPY_ON_TORCH = (
    "import sys, os, json\n"
    "seen = {}\n"
    "class Spy:\n"
    "    def find_spec(self, name, path, target=None):\n"
    "        if name == 'torch' and 'torch' not in seen:\n"
    "            seen['torch'] = os.environ.get('GOMP_SPINCOUNT')\n"
    "sys.meta_path.insert(0, Spy())\n"
    "from effmodel import plugins\n"
    "plugins.get_simulators()['norse'].auto_batch_size(None, 10, 5, {'device': 'cpu'})\n"
    "print(json.dumps(seen))\n"
)


@pytest.mark.parametrize("user, seen", [({}, "10000"), ({"OMP_WAIT_POLICY": "active"}, None), ({"GOMP_SPINCOUNT": "7"}, "7")])
def test_norse_sets_the_short_spin_before_torch_loads(user, seen):
    """libgomp reads ``GOMP_SPINCOUNT`` once, when torch loads it: the Norse
    plugin must set it before its first ``import torch`` (seen here by an
    import hook at that moment), and never over the user's own setting."""
    pytest.importorskip("effmodel_norse")
    assert _child(_SPY_ON_TORCH, user, drop=("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")) == {"torch": seen}
