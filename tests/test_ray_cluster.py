"""``effmodel sweep --executor ray`` on a real two-node Ray cluster on this machine.

A head and one worker node are started as separate ``ray start`` processes
with one CPU each, so two items run at once, one per node.  The sweep is four
tiny MNIST items (a few hundred training images, a few test images, short T,
Norse).  What a sweep stores must not depend on where it ran: the rows,
SynOps, accuracies and per-step series equal those of the same sweep computed
by ``--executor local --jobs 1``.  Then the faults: the driver killed
mid-sweep and rerun (finished items are not recomputed), and the worker
node's raylet killed mid-sweep (the sweep completes, each item stored once).

Every process of the cluster is killed in a finalizer, also when a test fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# Four grid points: type I and II bundles, one or two hidden dense layers, width x0.5.
TINY = ["--simulator", "norse", "--datasets", "mnist", "--bundle-types", "I,II", "--bundles", "1", "--dense", "1,2",
        "--widths", "0.5", "--epochs", "1", "--max-train-images", "300", "--num-test", "20", "--duration", "10",
        "--batch-size", "20", "--max-corr", "1"]  # four networks cannot decorrelate depth and size: no bound
TOKEN = os.urandom(16).hex()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    return kids


def _descendants(pid: int) -> list[int]:
    kids, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Cluster:
    """A head node and one worker node, each a ``ray start --block`` process
    in its own session (process group)."""

    def __init__(self, env: dict[str, str]):
        # A short temp dir: Ray's Unix socket paths must stay under ~107 characters.
        self.tmp = tempfile.mkdtemp(prefix="effray-", dir="/tmp")
        self.env = env
        base = 21000 + (os.getpid() % 400) * 100
        self.worker_ports = {"head": base, "worker": base + 60}  # each node's workers take ports [p, p + 50]
        self.taken: set[int] = set()
        self.port = self._port()
        self.address = f"127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []
        self.seen: set[int] = set()

    def _port(self) -> int:
        """A free port, never one handed out before nor one in a node's worker
        port range (Ray refuses to start a node whose ports overlap)."""
        while True:
            port = _free_port()
            if port not in self.taken and not any(p <= port <= p + 50 for p in self.worker_ports.values()):
                self.taken.add(port)
                return port

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(Path(self.tmp) / f"{name}.log", "w")
        workers = self.worker_ports[name]
        ports = ["--node-manager-port", str(self._port()), "--object-manager-port", str(self._port()),
                 "--min-worker-port", str(workers), "--max-worker-port", str(workers + 50),
                 "--dashboard-agent-listen-port", str(self._port()), "--dashboard-agent-grpc-port", str(self._port()),
                 "--runtime-env-agent-port", str(self._port()), "--metrics-export-port", str(self._port())]
        p = subprocess.Popen([str(BIN / "ray"), "start", *args, *ports, "--num-cpus", "1", "--block",
                              "--object-store-memory", str(80 * 1024**2), "--disable-usage-stats"],
                             env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(p)
        return p

    def _wait_started(self, name: str, proc: subprocess.Popen, timeout: float = 120) -> None:
        log = Path(self.tmp) / f"{name}.log"
        end = time.time() + timeout
        while time.time() < end:
            if "Ray runtime started" in log.read_text():
                return
            if proc.poll() is not None:
                break
            time.sleep(0.5)
        raise RuntimeError(f"ray {name} node did not start:\n{log.read_text()[-2000:]}")

    def start(self) -> None:
        self.head = self._start("head", ["--head", "--port", str(self.port), "--temp-dir", self.tmp,
                                         "--include-dashboard", "false", "--dashboard-port", str(self._port()),
                                         "--ray-client-server-port", str(self._port())])
        self._wait_started("head", self.head)
        self.worker = self._start("worker", ["--address", self.address])
        self._wait_started("worker", self.worker)
        self.remember()

    def remember(self) -> None:
        """Note every process of the cluster now (workers leave the process group)."""
        for p in self.procs:
            self.seen.update(_descendants(p.pid))

    def wait_for_task_on_worker(self, timeout: float = 300) -> None:
        """Wait until a Ray worker process of the worker node runs an item
        (its process title turns from ``ray::IDLE`` to ``ray::_ray_task``)."""
        end = time.time() + timeout
        while time.time() < end:
            for pid in _descendants(self.worker.pid):
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        if f.read().startswith(b"ray::_ray_task"):
                            return
                except OSError:
                    continue
            time.sleep(0.2)
        raise AssertionError("no item ever ran on the worker node")

    def worker_raylet(self) -> int:
        pids = [p for p in _descendants(self.worker.pid) if _comm(p) == "raylet"]
        assert len(pids) == 1, f"expected one raylet under the worker node, found {pids}"
        return pids[0]

    def stop(self) -> None:
        self.remember()
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in self.seen:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in self.procs:
            p.wait(timeout=30)
        shutil.rmtree(self.tmp, ignore_errors=True)


def _env(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("EFFMODEL_LOAD_PLUGINS", "EFFMODEL_BLOCK_PLUGINS", "RAY_ADDRESS"):
        env.pop(var, None)
    env.update({
        "EFFMODEL_CACHE_DIR": str(cache), "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
        "RAY_USAGE_STATS_ENABLED": "0",
        # Token authentication on every process of this cluster (the driver included), with a
        # token of its own: not the one Ray may have saved in ~/.ray for local instances.
        "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN,
        # Notice a lost node within seconds rather than the default ~30 s.
        "RAY_health_check_initial_delay_ms": "0", "RAY_health_check_period_ms": "1000",
        "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "3",
        # On a loaded machine (the campaign shares its two cores) a raylet took longer than Ray's
        # default wait to register with the GCS ("The current node timed out during startup").
        "RAY_raylet_start_wait_time_s": "120",
    })
    return env


@pytest.fixture(scope="module")
def cache(model_cache) -> Path:
    """The trained-model cache shared by every node (as on NFS): the session's (conftest.py)."""
    return model_cache


@pytest.fixture(scope="module")
def cluster(cache, data_dir):
    c = Cluster(_env(cache) | {"EFFMODEL_DATA_DIR": str(data_dir)})
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def reference(jobs1_sweep) -> Path:
    """The four items computed with ``--executor local --jobs 1`` (in a subprocess;
    once per session, shared with the executor tests: conftest.py)."""
    out, stdout = jobs1_sweep(TINY)
    assert "4 run, 0 already stored, 0 failed" in stdout
    return out


def _sweep(out: Path, cache: Path, data_dir: Path, *extra: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "effmodel.cli", "sweep", *TINY, "--data-dir", str(data_dir),
                           "-o", str(out), *extra], env=_env(cache), cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def _stored(out: Path) -> dict[str, tuple]:
    path = out / "effmodel.sqlite"
    if not path.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            return {m: (r, c) for m, r, c in db.execute("SELECT model, run_id, created FROM results")}
    except sqlite3.OperationalError:  # the table is not created yet
        return {}


def test_two_node_ray_sweep_equals_local_jobs_1(cluster, reference, cache, data_dir, tmp_path, same_sweep_as):
    r = _sweep(tmp_path, cache, data_dir, "--executor", "ray", "--ray-address", cluster.address)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "4 run, 0 already stored, 0 failed" in r.stdout
    same_sweep_as(tmp_path, reference)
    # Both nodes computed items: two Ray node ids appear in the "done ... on" lines.
    assert len(set(_done_nodes(r.stderr))) == 2, r.stderr[-2000:]
    # The CSV mirrors the store: one line per item plus the header.
    assert len((tmp_path / "results.csv").read_text().strip().splitlines()) == 5


def _done_nodes(stderr: str) -> list[str]:
    """The Ray node id of each "done" line of a sweep's log, in order."""
    return [ln.split("(Ray node ")[1][:8] for ln in stderr.splitlines() if " done in " in ln and "(Ray node " in ln]


def _kill_when(proc: subprocess.Popen, out: Path, stored: int, timeout: float = 300) -> dict[str, tuple]:
    """Wait until ``stored`` results are in ``out``'s store (the sweep is underway); return them."""
    end = time.time() + timeout
    while time.time() < end:
        rows = _stored(out)
        if len(rows) >= stored:
            return rows
        if proc.poll() is not None:
            raise AssertionError(f"the sweep ended before the fault was injected:\n{_output(out)[1][-3000:]}")
        time.sleep(0.2)
    raise AssertionError("the sweep stored nothing in time")


def _start_driver(args: list[str], cache: Path, tmp_path: Path) -> subprocess.Popen:
    """The sweep in its own process group, its output in files (a full pipe would block it)."""
    out, err = open(tmp_path / "driver.out", "w+"), open(tmp_path / "driver.err", "w+")
    return subprocess.Popen(args, env=_env(cache), cwd=REPO, stdout=out, stderr=err, text=True, start_new_session=True)


def _output(tmp_path: Path) -> tuple[str, str]:
    return (tmp_path / "driver.out").read_text(), (tmp_path / "driver.err").read_text()


def test_driver_killed_mid_sweep_then_rerun_skips_finished_items(cluster, reference, cache, data_dir, tmp_path, stored_tables):
    _rows, _series = stored_tables
    args = [sys.executable, "-m", "effmodel.cli", "sweep", *TINY, "--data-dir", str(data_dir), "-o", str(tmp_path),
            "--executor", "ray", "--ray-address", cluster.address]
    driver = _start_driver(args, cache, tmp_path)
    try:
        _kill_when(driver, tmp_path, 1)
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    before = _stored(tmp_path)
    assert 1 <= len(before) < 4, before
    r = _sweep(tmp_path, cache, data_dir, "--executor", "ray", "--ray-address", cluster.address)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"{4 - len(before)} run, {len(before)} already stored, 0 failed" in r.stdout
    after = _stored(tmp_path)
    for model, (run_id, created) in before.items():
        assert after[model] == (run_id, created), f"{model} was recomputed"
        assert f"{model}: already stored, skipped" in r.stderr
    assert _rows(tmp_path) == _rows(reference)


def test_worker_node_lost_mid_sweep_completes_each_item_once(cluster, reference, cache, data_dir, tmp_path, stored_tables):
    """Runs last: it takes the worker node away for good."""
    _rows, _series = stored_tables
    args = [sys.executable, "-m", "effmodel.cli", "sweep", *TINY, "--data-dir", str(data_dir), "-o", str(tmp_path),
            "--executor", "ray", "--ray-address", cluster.address]
    driver = _start_driver(args, cache, tmp_path)
    try:
        cluster.remember()
        raylet = cluster.worker_raylet()
        cluster.wait_for_task_on_worker()
        cluster.remember()
        os.kill(raylet, signal.SIGKILL)  # the item running there is lost with the node
        at_kill = len(_stored(tmp_path))
        done_before = len(_done_nodes(_output(tmp_path)[1]))
        driver.wait(timeout=400)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    out, err = _output(tmp_path)
    assert not _alive(raylet)
    assert at_kill < 4, "the sweep had finished before the node was lost"
    assert driver.returncode == 0, err[-3000:]
    assert "4 run, 0 already stored, 0 failed" in out, out + err[-2000:]
    # The item lost with the worker node was rerun on the head: everything finished after the
    # kill ran on one node, and no item is missing.
    after = _done_nodes(err)[done_before:]
    assert len(_done_nodes(err)) == 4 and len(set(after)) == 1, err[-3000:]
    rows = _rows(tmp_path)
    assert len(rows) == 4 and len({row[0] for row in rows}) == 4  # each item stored exactly once
    assert rows == _rows(reference)
