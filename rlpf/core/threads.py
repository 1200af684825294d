"""torch's thread settings for every rlpf process, chosen in one place.

Why this exists: on a small machine that other work shares, torch's defaults turn one busy core into
a several-fold slowdown instead of a fair share. torch's CPU wheels run every operator over OpenMP
(libgomp) with one thread per core, and a small model runs thousands of short parallel regions per
second. When another process holds one of the cores, every region waits for the thread queued
behind it, while its sibling spins at the barrier on the free core (libgomp spins before it sleeps).
experiments/benchmark_threads.py measures the LM stage of ``rlpf pretrain`` (the default ant LM) on
the 2-core box, three runs at 1-minute load < 0.5: torch's defaults 9.3-13.5 steps/s alone and
3.2-3.8 beside one busy single-threaded process (2.8-4.2x slower; under more load from other jobs
it has been seen at 0.4-1 step/s); with rlpf's settings 10.5-12.0 alone and 6.4-7.5 beside it
(1.5-1.8x, the competitor arriving before or during the run).

What rlpf does instead:

* **Fewer threads when cores are taken.** ``configure_threads`` (called at the start of pretrain,
  train, train-tracker and control) sets ``torch.set_num_threads`` to the cores this process may use
  (``os.sched_getaffinity``) minus the cores other processes keep busy: each allowed core's busy share
  over ``SAMPLE_S`` seconds of ``/proc/stat`` (``os.getloadavg`` where there is no ``/proc/stat``),
  a core counting as taken once others use more than ``TAKEN_SHARE`` of one. At least 1.
* **Again during training.** A competitor that arrives mid-run matters as much as one that was there
  first, so ``adapt_threads`` - called between steps by ``rlpf.worldmodel.training.run_stage`` - looks again
  every ``ADAPT_S`` seconds, now subtracting this process's own CPU time from the cores' busy time,
  and moves the count down (or back up) when it changed. Only an automatic count moves: one from
  ``RLPF_THREADS``, a config or ``OMP_NUM_THREADS`` stays. *Reproducibility:* results can depend on
  the thread count at float precision - on the 2-core box the LM stage ended bit-identical at 1 and
  2 threads, the tokenizer stage 2.7e-7 apart (largest weight difference after 15 steps) - so with
  an automatic count two runs agree to float tolerance, not bit for bit. For bit-identical reruns
  and resumes, fix the count: ``threads=N`` or ``RLPF_THREADS=N``.
* **Workers: one thread.** Scoring, tracking and simulation workers (``rlpf.core.pool``) run
  ``configure_worker_threads``: the processes are the parallelism.
* **The OpenMP wait policy is left as it is.** ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep at once
  instead of spinning) also removes the slowdown, but it makes every parallel region wake its
  threads through the kernel: in the same three runs the LM stage alone ran at 6.0-7.2 steps/s with
  it - no faster than one thread - against 9.3-13.5 with libgomp's default. Exporting ``OMP_WAIT_POLICY`` still works, with an *ordering constraint*: OpenMP reads it
  when its library loads, i.e. at the process's first ``import torch``; set after that, it changes
  nothing in this process (only in the children it starts).

Precedence of the count (first that is set wins): ``RLPF_THREADS`` (environment; the operator's
override of every command and config), the command's ``threads`` setting when > 0,
``OMP_NUM_THREADS`` (the usual OpenMP variable, respected when exported), then the automatic choice.
"""
from __future__ import annotations

import math
import os
import time

from rlpf.core.errors import RLPFError

THREADS_ENV = "RLPF_THREADS"
"""Environment variable that overrides every thread choice (a positive integer)."""

SAMPLE_S = 0.2
"""Seconds of /proc/stat sampled at start to see how busy this process's cores are (a one-off cost)."""

ADAPT_S = 2.0
"""Seconds between two looks at the cores during training (``adapt_threads``)."""

TAKEN_SHARE = 0.25
"""A core counts as taken once other processes keep it busy more than this share of the time."""


class ThreadsError(RLPFError, ValueError):
    """A thread setting (``RLPF_THREADS``, ``OMP_NUM_THREADS`` or a config's ``threads``) that is not a thread count."""


def usable_cores() -> list[int]:
    """The CPUs this process may run on (its affinity mask; all CPUs where there is none)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _cpu_ticks(cpus: list[int]) -> dict[int, tuple[int, int]] | None:
    """{cpu: (busy ticks, total ticks)} from /proc/stat, or None where it cannot be read."""
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
            total = sum(ticks)
            out[cpu] = (total - ticks[3] - ticks[4], total)
    return out if len(out) == len(cpus) else None


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


class _Snapshot:
    """The cores' and this process's CPU time at one moment, to measure what others used since."""

    def __init__(self, cpus: list[int]):
        self.cpus, self.wall, self.ticks, self.own = cpus, time.monotonic(), _cpu_ticks(cpus), _own_cpu_s()

    def others_busy(self) -> float | None:
        """Cores other processes kept busy since this snapshot (None: /proc/stat unreadable)."""
        now = _Snapshot(self.cpus)
        if self.ticks is None or now.ticks is None:
            return None
        busy = 0.0
        for cpu in self.cpus:
            d_busy, d_total = now.ticks[cpu][0] - self.ticks[cpu][0], now.ticks[cpu][1] - self.ticks[cpu][1]
            busy += d_busy / d_total if d_total > 0 else 0.0
        wall = now.wall - self.wall
        own = (now.own - self.own) / wall if wall > 0 else 0.0
        return max(0.0, busy - own)


def threads_for(others_busy: float, cores: int) -> int:
    """Threads to run when other processes keep ``others_busy`` of ``cores`` cores busy."""
    taken = max(0, math.ceil(others_busy - TAKEN_SHARE))
    return max(1, min(cores, cores - taken))


def free_cores(cpus: list[int] | None = None, sample_s: float = SAMPLE_S) -> float:
    """How many of ``cpus`` (default: ``usable_cores()``) other processes leave idle, in cores.

    Linux: measured over ``sample_s`` seconds of /proc/stat, less this process's own CPU time.
    Elsewhere: CPUs minus the 1-minute load average, which lags by up to a minute.
    """
    cpus = usable_cores() if cpus is None else list(cpus)
    snap = _Snapshot(cpus)
    if snap.ticks is not None:
        time.sleep(sample_s)
        others = snap.others_busy()
        if others is not None:
            return max(0.0, len(cpus) - others)
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    return max(0.0, len(cpus) - load)


def choose_threads(sample_s: float = SAMPLE_S) -> int:
    """The automatic thread count: usable cores that other processes do not take (``threads_for``)."""
    cpus = usable_cores()
    return threads_for(len(cpus) - free_cores(cpus, sample_s), len(cpus))


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


_ADAPT: dict = {"snapshot": None}
"""The automatic choice being kept up to date (no snapshot: the count is fixed)."""


def configure_threads(requested: int = 0) -> int:
    """Set torch's intra-op thread count for this process (call at the start of a command, before
    its first torch operation) and return it. ``requested``: the command's ``threads`` setting (0:
    automatic, and kept up to date by ``adapt_threads``). ``RLPF_THREADS`` overrides it."""
    import torch

    n, source = thread_count(requested)
    torch.set_num_threads(n)
    _ADAPT["snapshot"] = _Snapshot(usable_cores()) if source == "free cores" else None
    return n


def adapt_threads() -> int | None:
    """Between training steps: every ``ADAPT_S`` seconds, re-choose an automatic thread count from
    what other processes used of this process's cores since the last look; returns the new count
    when it changed. Call it from the thread that runs torch (the count is per calling thread)."""
    snap = _ADAPT["snapshot"]
    if snap is None or time.monotonic() - snap.wall < ADAPT_S:
        return None
    import torch

    others = snap.others_busy()
    _ADAPT["snapshot"] = _Snapshot(snap.cpus)
    if others is None:
        return None
    n = threads_for(others, len(snap.cpus))
    if n == torch.get_num_threads():
        return None
    torch.set_num_threads(n)
    return n


def configure_worker_threads() -> None:
    """One torch thread in a worker process: the worker processes are the parallelism, and threads
    inside them would only contend for the same cores. Does not import torch: where nothing has yet,
    the OpenMP variables make the torch a task imports later start with one thread."""
    import sys

    _ADAPT["snapshot"] = None
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
