"""CPU thread policy: use the cores this process may actually run on, never more.

``os.cpu_count()`` reports the host's cores, not the ones a container or a
``taskset`` grants: on a 2-core quota inside a 64-core host, torch would start
64 threads that fight over 2 cores.  Measured on this project's 2-core
machine: two torch threads on two busy cores ran Norse 5-10x slower than one.
:func:`available_cores` combines the CPU affinity mask with the cgroup CPU
quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us``);
:func:`configure_threads` hands that number (or a smaller one) to torch,
TensorFlow and the OpenMP/MKL/BLAS pools.

Nothing heavy is imported here: torch and TensorFlow are configured only if
they are already imported, or (torch) if importing it is cheap because it is
installed and the caller asks for it.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _affinity_cores() -> int:
    """Cores in this process's affinity mask (``os.cpu_count()`` where unsupported)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _own_cgroup_dirs(root: Path, proc_cgroup: str | None) -> list[Path]:
    """This process's cgroup directories (v2 unified and v1 ``cpu`` controller,
    from ``/proc/self/cgroup`` unless ``proc_cgroup`` is given), then the root,
    where containers usually see their own limits."""
    dirs: list[Path] = []
    text = proc_cgroup if proc_cgroup is not None else (_read(Path("/proc/self/cgroup")) or "")
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        rel = rel.lstrip("/")
        if controllers == "":  # v2
            dirs.append(root / rel)
        elif "cpu" in controllers.split(","):
            for name in ("cpu,cpuacct", "cpu", "cpuacct,cpu"):
                dirs.append(root / name / rel)
                dirs.append(root / name)
    dirs.append(root)
    return dirs


def cgroup_quota_cores(root: Path = CGROUP_ROOT, proc_cgroup: str | None = None) -> float | None:
    """The CPU quota in cores from cgroup v2 ``cpu.max`` or v1 CFS files (the
    smallest found), or None when there is no limit (``max`` / ``-1``) or no
    cgroup files."""
    best: float | None = None
    for d in _own_cgroup_dirs(root, proc_cgroup):
        quota = None
        v2 = _read(d / "cpu.max")
        if v2:
            fields = v2.split()
            if len(fields) >= 1 and fields[0] != "max":
                try:
                    period = float(fields[1]) if len(fields) > 1 else 100000.0
                    quota = float(fields[0]) / period
                except (ValueError, ZeroDivisionError):
                    quota = None
        else:
            q, p = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
            if q and p:
                try:
                    if float(q) > 0 and float(p) > 0:
                        quota = float(q) / float(p)
                except ValueError:
                    quota = None
        if quota is not None and quota > 0:
            best = quota if best is None else min(best, quota)
    return best


def available_cores() -> int:
    """Cores this process may use: the affinity mask, capped by the cgroup CPU
    quota rounded up (a quota of 1.5 cores allows 2 busy threads), at least 1.
    ``EFFMODEL_NUM_THREADS`` overrides it (a positive integer)."""
    env = os.environ.get("EFFMODEL_NUM_THREADS")
    if env:
        try:
            n = int(env)
            if n > 0:
                return n
        except ValueError:
            pass
    cores = _affinity_cores()
    quota = cgroup_quota_cores()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota - 1e-9)))
    return max(1, cores)


def idle_cores(cores: int | None = None) -> int:
    """Of ``cores`` (default :func:`available_cores`), how many are not kept
    busy by other processes: the 1-minute load average minus this process's
    own one runnable thread, rounded; at least 1.  On a 2-core machine shared
    by several jobs (load 8-10) this is 1: a second torch thread there made
    Norse several times slower, never faster (measured)."""
    cores = available_cores() if cores is None else cores
    try:
        others = max(0.0, os.getloadavg()[0] - 1.0)
    except (AttributeError, OSError):
        return cores
    return max(1, min(cores, int(round(cores - others))))


OPENMP_SPIN_COUNT = "10000"


def short_openmp_spin() -> bool:
    """Let idle OpenMP workers sleep after a short spin (``GOMP_SPINCOUNT``).

    Why: torch's OpenMP runtime (libgomp in the pip wheels) keeps its
    workers spinning 300,000 rounds after every parallel region, 10-20 ms on
    a core whose ``pause`` takes ~140 cycles.  The Norse CPU kernels run on
    their own threads between torch's regions, so those spinning workers
    took the cores the kernels needed: with two threads the fused kernel
    ran *slower* than with one.  10,000 rounds (under a millisecond) made
    two-thread Norse runs of conv-heavy models 4-31 % faster without slowing
    torch's own back-to-back regions (``OMP_WAIT_POLICY=passive`` did: the
    small convolutions of the LargeCNN1 floor ran 2x slower;
    benchmarks/README.md).

    Only sets the variable where neither it nor ``OMP_WAIT_POLICY`` is set
    (the user's choice wins), and it takes effect only for an OpenMP runtime
    loaded afterwards: call it before torch is imported.  Returns whether it
    set it."""
    if "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ:
        return False
    os.environ["GOMP_SPINCOUNT"] = OPENMP_SPIN_COUNT
    return True


def configure_threads(n: int | None = None, *, import_torch: bool = False) -> int:
    """Size every thread pool to ``n`` threads (default :func:`available_cores`).

    * ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``/... and ``TF_NUM_INTRAOP_THREADS``
      (``TF_NUM_INTEROP_THREADS`` = 1) are set when not already set by the
      user (they take effect for libraries not loaded yet), and OpenMP's
      idle workers spin only briefly (:func:`short_openmp_spin`);
    * torch, if imported (or ``import_torch``): ``set_num_threads(n)`` and,
      once per process before any parallel work, ``set_num_interop_threads(1)``
      (inter-op parallelism only oversubscribes for our sequential graphs);
    * TensorFlow, if imported and not yet initialised: intra-op ``n``, inter-op 1
      (TensorFlow refuses changes after its runtime has started; then nothing
      happens).

    Returns the number of threads chosen.
    """
    n = available_cores() if n is None else max(1, int(n))
    for var in THREAD_ENV_VARS:
        os.environ.setdefault(var, str(n))
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(n))  # read when TensorFlow starts its runtime
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    short_openmp_spin()
    torch = sys.modules.get("torch")
    if torch is None and import_torch:
        try:
            import torch  # noqa: PLC0415 (lazy: heavy)
        except ImportError:
            torch = None
    if torch is not None and hasattr(torch, "set_num_threads"):
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
        try:
            if torch.get_num_interop_threads() != 1:
                torch.set_num_interop_threads(1)
        except RuntimeError:
            pass  # already used: torch allows this only once, before parallel work
    tf = sys.modules.get("tensorflow")
    if tf is not None and hasattr(tf, "config"):
        try:
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except (RuntimeError, ValueError, AttributeError):
            pass  # TensorFlow already initialised its thread pools
    return n


__all__ = ["available_cores", "cgroup_quota_cores", "configure_threads", "idle_cores", "short_openmp_spin", "THREAD_ENV_VARS"]
