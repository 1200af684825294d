"""rlpf.core.backend: local and Ray backends keep one contract; a killed Ray actor fails only its chunk;
the same clips give the same report on either backend; bad backends and addresses are named errors."""
import glob
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from rlpf.core.backend import BACKENDS, BackendError, make_backend
from rlpf.core.errors import RLPFError

ray = pytest.importorskip("ray")

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = sorted(glob.glob(os.path.join(os.path.dirname(os.path.dirname(HERE)), "rlpf", "examples", "*.npz")))

# ---- tasks (module level: Ray actors import this module to unpickle them, PYTHONPATH below) -------

_INIT_CALLS = []


def count_init(tag):
    _INIT_CALLS.append(tag)


def init_calls_and_pid(seconds=0.0):
    time.sleep(seconds)
    return len(_INIT_CALLS), os.getpid()


def square_after(x, seconds=0.0):
    time.sleep(seconds)
    return x * x


def fail_on_odd(x):
    if x % 2:
        raise ValueError(f"odd {x}")
    return x


def bad_init():
    raise RuntimeError("no tracker here")


def segfault(after=0.0):
    import ctypes

    time.sleep(after)
    ctypes.string_at(0)  # reads address 0: SIGSEGV, as a clip crashing MuJoCo natively would


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray of 2 CPUs for the module (starting one costs seconds), loopback only."""
    old = os.environ.get("PYTHONPATH")
    # Ray's workers are fresh interpreters started by the raylet, which inherits this environment
    os.environ["PYTHONPATH"] = os.pathsep.join([HERE] + ([old] if old else []))
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def test_unknown_backend_lists_the_backends():
    with pytest.raises(BackendError) as e:
        make_backend("foo", 1)
    assert isinstance(e.value, RLPFError)
    assert "'foo'" in str(e.value) and all(name in str(e.value) for name in BACKENDS)


def test_local_backend_refuses_an_address():
    with pytest.raises(BackendError, match="ray backend"):
        make_backend("local", 1, address="127.0.0.1:6379")


def test_import_rlpf_and_the_local_backend_do_not_import_ray():
    code = ("import sys, rlpf, rlpf.core.backend as b, rlpf.judge.scoring, rlpf.finetune.feedback\n"
            "with b.make_backend('local', 1) as p: assert p.map(abs, [-2])[0].value == 2\n"
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_unreachable_address_is_named_within_seconds():
    with socket.socket() as s:  # a port nothing listens on: bound, then released
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    t0 = time.perf_counter()
    with pytest.raises(BackendError) as e:
        make_backend("ray", 1, address=address)
    assert time.perf_counter() - t0 < 10
    assert isinstance(e.value, RLPFError) and address in str(e.value)
    with pytest.raises(BackendError, match="not a number"):
        make_backend("ray", 1, address="127.0.0.1:head")


def test_ray_map_keeps_order_and_isolates_item_errors(local_ray):
    with make_backend("ray", 2) as pool:
        outcomes = pool.map(fail_on_odd, range(7), chunksize=3)
    assert [o.value for o in outcomes if o.ok] == [0, 2, 4, 6]
    bad = [o for o in outcomes if not o.ok]
    assert [o.error for o in bad] == ["ValueError: odd 1", "ValueError: odd 3", "ValueError: odd 5"]
    assert not any(o.died for o in bad) and isinstance(bad[0].exception, ValueError)


def test_ray_initializer_runs_once_per_actor(local_ray):
    with make_backend("ray", 2, initializer=count_init, initargs=("x",)) as pool:
        results = [f.result().unwrap() for f in [pool.submit(init_calls_and_pid, 0.05) for _ in range(8)]]
        pids = set(pool.pids)
    assert {calls for calls, _ in results} == {1}  # built once in each actor, never per chunk
    assert {pid for _, pid in results} <= pids and len(pids) == 2


def test_ray_failing_initializer_breaks_the_backend_with_its_reason(local_ray):
    with pytest.raises(RLPFError, match="no tracker here"):
        make_backend("ray", 1, initializer=bad_init)


def test_killed_ray_actor_fails_only_its_chunk_and_is_replaced(local_ray):
    with make_backend("ray", 2) as pool:
        victim = pool.pids[0]
        futures = [pool.submit(square_after, x, 1.0) for x in range(4)]
        time.sleep(0.5)  # both actors are inside their first chunk
        os.kill(victim, signal.SIGKILL)
        outcomes = [f.result(timeout=120) for f in futures]
        assert sum(o.died for o in outcomes) == 1  # the victim's chunk, and only it
        assert sorted(o.value for o in outcomes if o.ok) == sorted(x * x for x in range(4) if
                                                                 outcomes[x].ok)
        assert len([o for o in outcomes if o.ok]) == 3
        assert pool.restarts == 1 and victim not in pool.pids and len(pool.pids) == 2
        # the next batch runs on the replacement and the survivor
        assert [o.value for o in pool.map(square_after, range(4))] == [0, 1, 4, 9]


def test_a_chunk_that_crashes_natively_on_ray_fails_only_itself(local_ray):
    with make_backend("ray", 2) as pool:
        crash = pool.submit(segfault, 0.2)
        others = [pool.submit(square_after, x, 0.1) for x in range(4)]
        outcome = crash.result(timeout=120)
        assert outcome.died and "died" in outcome.error
        assert [f.result(timeout=120).value for f in others] == [0, 1, 4, 9]
        assert pool.restarts == 1 and len(pool.pids) == 2


def _no_timings(report: dict) -> dict:
    """The report without what may differ run to run (no report field holds timings today; kept
    explicit so one added later does not break equality)."""
    return {k: v for k, v in report.items() if k not in ("timings", "seconds")}


def test_same_report_with_local_and_ray_backends(local_ray):
    from rlpf.judge.scoring import score

    assert EXAMPLES, "the bundled example clips are missing"
    local = score(EXAMPLES, trackers=["pd"], workers=2, backend="local").to_json()
    on_ray = score(EXAMPLES, trackers=["pd"], workers=2, backend="ray").to_json()
    assert local["summary"]["n_clips"] == len(EXAMPLES) and not local["errors"]
    assert _no_timings(on_ray) == _no_timings(local)


def test_feedback_on_ray_excludes_a_dead_actors_chunk(local_ray):
    """PhysicalFeedback's workers as Ray actors: a killed actor's chunk is excluded (NaN, an error
    naming the death), the other chunks score, and the next batch scores in full."""
    from rlpf.core.clips import load_clips
    from rlpf.finetune.feedback import PhysicalFeedback

    clips = [load_clips(p)[0] for p in EXAMPLES if os.path.basename(p).startswith("ant")][:2]
    assert len(clips) == 2
    with PhysicalFeedback("ant", {"tracking_success": 1.0}, tracker="pd", workers=2, chunk=1,
                          backend="ray") as fb:
        first = fb.score(clips)
        pool = fb._pool
        assert not first["errors"], first["errors"]
        handle = fb._submit(clips * 4)  # 8 chunks of one clip
        os.kill(pool.pids[0], signal.SIGKILL)  # now: it holds a chunk, or is handed one next
        result = fb._collect(handle)
        died = [i for i, e in result["errors"].items() if "scoring worker process died" in e]
        assert len(died) == 1 and len(result["errors"]) == 1  # the one chunk it held, nothing else
        for i in range(8):
            value = result["terms"]["tracking_success"][i]
            assert np.isnan(value) if i in died else value == first["terms"]["tracking_success"][i % 2]
        again = fb.score(clips)
        assert not again["errors"]
        for name, values in first["terms"].items():  # NaN where a term does not apply (no objects)
            np.testing.assert_array_equal(again["terms"][name], values, err_msg=name)
        assert pool.restarts >= 1


def test_feedback_refuses_unknown_backend():
    from rlpf.finetune.feedback import FeedbackError, PhysicalFeedback

    with pytest.raises(FeedbackError, match="local, ray"):
        PhysicalFeedback("ant", {"tracking_success": 1.0}, backend="spark")


def test_training_config_backend_fields():
    """``backend: ray`` in an ``rlpf train`` config reaches PhysicalFeedback; a bad one is refused by name."""
    from rlpf.core.config import ConfigError
    from rlpf.finetune.pipeline import RLPFConfig

    cfg = RLPFConfig(backend="ray", backend_address="127.0.0.1:6379")
    assert (cfg.backend, cfg.backend_address) == ("ray", "127.0.0.1:6379")
    with pytest.raises(ConfigError, match="backend.*local, ray"):
        RLPFConfig(backend="dask")
    with pytest.raises(ConfigError, match="backend_address"):
        RLPFConfig(backend_address="127.0.0.1:6379")
