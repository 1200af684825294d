"""torch's thread settings for every rlpf process, chosen in one place.

Why this exists: on a small machine that other work shares, torch's defaults turn a busy core into a
10-20x slowdown instead of a fair share. torch's CPU wheels parallelise every operator over OpenMP
(libgomp) with one thread per core, and libgomp's threads spin at each operator's barrier before
they sleep. A small model runs thousands of short parallel regions per second; when another process
holds one of the cores, every region waits for the thread that is queued behind it, while its
sibling burns the free core spinning. Measured on the 2-core box the project runs on
(experiments/benchmark_threads.py): the LM stage of ``rlpf pretrain`` at ~7 steps/s alone, 0.4-1
step/s beside one busy single-threaded process.

Two settings fix it:

* **Wait policy.** ``OMP_WAIT_POLICY=PASSIVE`` (libgomp) and ``KMP_BLOCKTIME=0`` (Intel's OpenMP, for
  torch builds that use it) make idle OpenMP threads sleep at once instead of spinning.
  *Ordering constraint:* OpenMP reads these when its library is loaded, i.e. on the first ``import
  torch`` of the process; setting them later changes nothing in this process (child processes
  inherit them, though). ``prefer_passive_waiting`` sets them (``setdefault``: a value the user
  exported wins) and ``rlpf/__init__.py`` calls it, so every program that imports rlpf before torch
  - the ``rlpf`` command, every worker process rlpf starts - gets them. A program that imports torch
  first keeps torch's default spinning for its own process.
* **Thread count.** ``configure_threads`` sets ``torch.set_num_threads``: the cores this process may
  use (``os.sched_getaffinity``) minus those other processes keep busy right now (each allowed core's
  idle share over ``SAMPLE_S`` seconds of ``/proc/stat``; ``os.getloadavg`` where there is no
  ``/proc/stat``), at least 1. So a run started beside a busy process takes the free core instead of
  queueing a thread behind the busy one. Worker processes (scoring, tracking, simulation) use 1
  thread each: the processes are the parallelism.

Precedence (first that is set wins): ``RLPF_THREADS`` (environment; the operator's override of every
command and config), the command's ``threads`` setting when > 0, ``OMP_NUM_THREADS`` (the usual
OpenMP variable, respected when exported), then the automatic choice.
"""
from __future__ import annotations

import os
import time

from rlpf.errors import RLPFError

THREADS_ENV = "RLPF_THREADS"
"""Environment variable that overrides every thread choice (a positive integer)."""

SAMPLE_S = 0.2
"""Seconds of /proc/stat sampled to see how busy this process's cores are (a one-off cost at start)."""

PASSIVE_WAIT_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}
"""OpenMP settings that make idle threads sleep instead of spinning (read when torch is first imported)."""


class ThreadsError(RLPFError, ValueError):
    """A thread setting (``RLPF_THREADS``, ``OMP_NUM_THREADS`` or a config's ``threads``) that is not a thread count."""


def prefer_passive_waiting() -> None:
    """Ask OpenMP threads to sleep, not spin, when idle - effective only before torch is imported
    in this process (see the module docstring); values already in the environment are kept."""
    for key, value in PASSIVE_WAIT_ENV.items():
        os.environ.setdefault(key, value)


def usable_cores() -> list[int]:
    """The CPUs this process may run on (its affinity mask; all CPUs where there is none)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _cpu_times(cpus: list[int]) -> dict[int, tuple[int, int]] | None:
    """{cpu: (idle ticks, total ticks)} from /proc/stat, or None where it cannot be read."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    out = {}
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        cpu = int(name[3:])
        if cpu in cpus:
            ticks = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
            out[cpu] = (ticks[3] + ticks[4], sum(ticks))
    return out if len(out) == len(cpus) else None


def free_cores(cpus: list[int] | None = None, sample_s: float = SAMPLE_S) -> float:
    """How many of ``cpus`` (default: ``usable_cores()``) are idle right now, in cores.

    Linux: the summed idle share of each CPU over ``sample_s`` seconds (this process sleeps
    meanwhile, so what keeps the CPUs busy is other work). Elsewhere: CPUs minus the 1-minute load
    average, which lags by up to a minute.
    """
    cpus = usable_cores() if cpus is None else list(cpus)
    before = _cpu_times(cpus)
    if before is not None:
        time.sleep(sample_s)
        after = _cpu_times(cpus)
        if after is not None:
            free = 0.0
            for cpu in cpus:
                idle, total = after[cpu][0] - before[cpu][0], after[cpu][1] - before[cpu][1]
                free += idle / total if total > 0 else 1.0
            return free
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    return max(0.0, len(cpus) - load)


def choose_threads(sample_s: float = SAMPLE_S) -> int:
    """The automatic thread count: usable cores that are at least half idle, at least 1."""
    cpus = usable_cores()
    return max(1, min(len(cpus), int(free_cores(cpus, sample_s) + 0.5)))


def _positive_int(value, what: str) -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        raise ThreadsError(f"{what}={value!r}: expected a positive integer number of threads") from None
    if n < 1:
        raise ThreadsError(f"{what}={value!r}: expected a positive integer number of threads")
    return n


def thread_count(requested: int = 0) -> tuple[int, str]:
    """(threads, where the number came from) by the precedence in the module docstring."""
    env = os.environ.get(THREADS_ENV, "").strip()
    if env:
        return _positive_int(env, THREADS_ENV), THREADS_ENV
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 0:
        raise ThreadsError(f"threads={requested!r}: expected an integer >= 0 (0: choose from the free cores)")
    if requested > 0:
        return requested, "config"
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp:
        return _positive_int(omp.split(",")[0], "OMP_NUM_THREADS"), "OMP_NUM_THREADS"
    return choose_threads(), "free cores"


def configure_threads(requested: int = 0) -> int:
    """Set torch's intra-op thread count for this process (call at the start of a command, before
    its first torch operation) and return it. ``requested``: the command's ``threads`` setting (0:
    automatic). ``RLPF_THREADS`` overrides it."""
    import torch

    n, _ = thread_count(requested)
    torch.set_num_threads(n)
    return n


def configure_worker_threads() -> None:
    """One torch thread in a worker process: the worker processes are the parallelism, and threads
    inside them would only contend for the same cores. Does not import torch: where nothing has yet,
    the OpenMP variables make the torch a task imports later start with one thread."""
    import sys

    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
