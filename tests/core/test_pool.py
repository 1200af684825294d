"""rlpf.core.pool.WorkerPool: a dying worker fails only its chunk, exceptions are outcomes, order, shutdown."""
import ctypes
import multiprocessing
import os
import signal
import time

import numpy as np
import pytest

from rlpf.core.errors import RLPFError
from rlpf.core.pool import Outcome, PoolError, RemoteTraceback, TaskFailed, WorkerDied, WorkerPool

# ---- tasks (module level: workers import this module to unpickle them) --------------------------


def square_after(x, seconds=0.0):
    time.sleep(seconds)
    return x * x


def pid_after(seconds=0.0):
    time.sleep(seconds)
    return os.getpid()


def die(how, after=0.0):
    time.sleep(after)
    if how == "SIGKILL":
        os.kill(os.getpid(), signal.SIGKILL)
    elif how == "os._exit":
        os._exit(3)
    elif how == "segfault":
        ctypes.string_at(0)  # reads address 0: SIGSEGV, a crash in native code
    raise AssertionError("still alive")


def fail(message):
    raise ValueError(message)


class Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("no pickling")


def fail_unpicklably():
    raise Unpicklable("kept here")


def make_a_lambda():
    return lambda: None  # a result pickle cannot send


def item_square(x):
    if x == 5:
        raise KeyError("five")
    time.sleep(0.02 * (x % 3))  # later items often finish first
    return x * x


def square_or_die_on_3(x):
    if x == 3:
        os._exit(3)
    return x * x


_INIT = {}


def remember(value):
    _INIT["value"] = value


def initialized():
    return _INIT.get("value"), os.environ.get("OMP_NUM_THREADS")


def bad_initializer():
    raise RuntimeError("cannot build the tracker")


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ---- tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("how, exit_words", [("SIGKILL", "killed by SIGKILL"), ("os._exit", "exit code 3"),
                                             ("segfault", "killed by SIGSEGV")])
def test_a_worker_that_dies_fails_only_its_chunk_and_a_fresh_worker_takes_its_place(how, exit_words):
    with WorkerPool(2) as pool:
        first = pool.pids
        # the other worker is mid-chunk (0.4 s) when this one dies (at 0.1 s): that chunk must complete
        slow = pool.submit(square_after, 7, 0.4)
        dying = pool.submit(die, how, 0.1)
        rest = [pool.submit(square_after, i) for i in range(6)]
        out = dying.result(timeout=30)
        assert out.died and not out.ok and "worker process died" in out.error and exit_words in out.error
        with pytest.raises(WorkerDied, match=exit_words):
            out.unwrap()
        assert slow.result(timeout=30) == Outcome(value=49)
        assert [f.result(timeout=30).value for f in rest] == [i * i for i in range(6)]
        assert pool.restarts == 1
        dead = set(first) - set(pool.pids)
        assert len(dead) == 1 and not alive(dead.pop())
        # the next batch on the same pool: both workers (one of them new) take chunks
        batch = [pool.submit(pid_after, 0.2) for _ in range(2)]
        assert {f.result(timeout=30).value for f in batch} == set(pool.pids)
        assert all(f.result().ok for f in batch)


def test_a_task_exception_is_that_chunk_s_outcome_and_the_worker_goes_on():
    with WorkerPool(2) as pool:
        bad, good = pool.submit(fail, "no such clip"), pool.submit(square_after, 3)
        out = bad.result(timeout=30)
        assert not out.ok and not out.died and out.error == "ValueError: no such clip"
        assert "in fail" in out.traceback
        with pytest.raises(ValueError, match="no such clip") as exc:
            out.unwrap()
        assert isinstance(exc.value.__cause__, RemoteTraceback) and "in fail" in str(exc.value.__cause__)
        weird = pool.submit(fail_unpicklably).result(timeout=30)
        assert weird.exception is None and "Unpicklable: kept here" in weird.error
        with pytest.raises(TaskFailed, match="kept here"):
            weird.unwrap()
        unsendable = pool.submit(make_a_lambda).result(timeout=30)
        assert not unsendable.ok and "result cannot be sent back" in unsendable.error
        assert good.result(timeout=30).value == 9
        assert pool.submit(square_after, 4).result(timeout=30).value == 16
        assert pool.restarts == 0  # an exception is not a death


def test_imap_gives_one_outcome_per_item_in_item_order():
    with WorkerPool(2) as pool:
        out = pool.map(item_square, range(12), chunksize=3)
        assert [o.value for o in out if o.ok] == [x * x for x in range(12) if x != 5]
        assert [i for i, o in enumerate(out) if not o.ok] == [5] and out[5].error == "KeyError: 'five'"
        assert [o.value for o in pool.map(item_square, [7, 1, 4], chunksize=1)] == [49, 1, 16]
        # a chunk whose worker dies fails each of its items, and only those
        outs = list(pool.imap(square_or_die_on_3, [1, 2, 3, 4, 6], chunksize=2))
        assert [o.value for o in outs] == [1, 4, None, None, 36]
        assert [o.died for o in outs] == [False, False, True, True, False]


def test_initializer_runs_in_every_worker_including_replacements():
    with WorkerPool(2, initializer=remember, initargs=("tracker",)) as pool:
        assert pool.submit(initialized).result(timeout=30).value == ("tracker", "1")  # one torch thread
        assert pool.submit(die, "SIGKILL").result(timeout=30).died
        got = {f.result(timeout=30).value for f in [pool.submit(initialized) for _ in range(4)]}
        assert got == {("tracker", "1")}


def test_a_failing_initializer_breaks_the_pool_with_its_reason_instead_of_respawning():
    with WorkerPool(2, initializer=bad_initializer) as pool:
        out = pool.submit(square_after, 2).result(timeout=30)
        assert not out.ok and "initializer failed" in out.error and "cannot build the tracker" in out.error
        with pytest.raises(PoolError, match="cannot build the tracker"):
            out.unwrap()
        deadline = time.monotonic() + 10
        while pool.pids and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(PoolError, match="initializer failed"):
            pool.submit(square_after, 2)
        assert pool.restarts == 0


def test_close_stops_every_worker_busy_or_idle_and_fails_what_was_not_done():
    pool = WorkerPool(2)
    pids = pool.pids
    busy = pool.submit(square_after, 1, 60.0)
    queued = [pool.submit(square_after, 2, 60.0) for _ in range(3)]
    time.sleep(0.3)
    t0 = time.monotonic()
    pool.close()
    assert time.monotonic() - t0 < 10  # the busy worker was killed, not waited for
    for f in [busy, *queued]:
        out = f.result(timeout=1)
        assert not out.ok and "closed" in out.error
    assert not any(alive(p) for p in pids)
    assert not set(pids) & {p.pid for p in multiprocessing.active_children()}
    with pytest.raises(PoolError, match="closed"):
        pool.submit(square_after, 1)
    pool.close()  # twice is fine


def test_bad_pool_sizes_are_refused_with_the_value():
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(PoolError, match="workers=") as e:
            WorkerPool(bad)
        assert isinstance(e.value, RLPFError)


# ---- the pool's users ----------------------------------------------------------------------------

from rlpf.policies.pd_tracker import PDTracker  # noqa: E402


class CrashingTracker(PDTracker):
    """A PD tracker whose worker dies (as in a crash in native code) on clips whose source ends in 'crash'."""

    def spec(self):
        return CrashingTracker, {"world": "ant"}

    def track_one(self, clip):
        if clip.source.endswith("crash"):
            os._exit(3)
        return super().track_one(clip)


def test_a_tracking_worker_that_dies_fails_only_the_clips_of_its_chunk():
    import dataclasses

    from rlpf.core.clips import load_clips

    examples = os.path.join(os.path.dirname(__file__), "..", "..", "rlpf", "examples")
    clips = [load_clips(os.path.join(examples, f"ant_{k}.npz"))[0] for k in ("valid", "float", "skate", "sink")]
    clips.insert(2, dataclasses.replace(clips[0], source="a clip that makes MuJoCo crash", cache={}))
    tracker = CrashingTracker("ant")
    ticks = []
    parallel = tracker.track(clips, workers=2, progress=ticks.append)
    serial = [tracker.track_one(c) for i, c in enumerate(clips) if i != 2]
    assert len(ticks) == len(clips) == len(parallel)
    crashed = parallel.pop(2)
    assert crashed.diverged and not crashed.success and "worker process died (exit code 3)" in crashed.info["why"]
    assert np.isnan(crashed.qpos).all() and crashed.qpos.shape == clips[2].qpos.shape
    for a, b in zip(serial, parallel):
        assert a.source == b.source and a.success == b.success
        np.testing.assert_array_equal(a.qpos, b.qpos)
