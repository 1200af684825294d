"""rlpf.core.threads: the thread count's precedence, its errors, the busy-core measurement, the wait policy."""
import os
import subprocess
import sys

import pytest
import torch

from rlpf.core.errors import RLPFError
from rlpf.core.threads import (THREADS_ENV, ThreadsError, choose_threads, configure_threads, free_cores,
                          thread_count, threads_for, usable_cores)


@pytest.fixture
def env(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    return monkeypatch


def test_precedence_rlpf_threads_then_config_then_omp_then_free_cores(env):
    env.setenv("OMP_NUM_THREADS", "3")
    assert thread_count(0) == (3, "OMP_NUM_THREADS")
    assert thread_count(2) == (2, "config")
    env.setenv(THREADS_ENV, " 5 ")
    assert thread_count(2) == (5, THREADS_ENV)
    env.delenv(THREADS_ENV)
    env.delenv("OMP_NUM_THREADS")
    n, source = thread_count(0)
    assert source == "free cores" and 1 <= n <= len(usable_cores())


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_bad_rlpf_threads_names_the_variable_and_the_value(env, value):
    env.setenv(THREADS_ENV, value)
    with pytest.raises(ThreadsError, match=f"RLPF_THREADS={value!r}: expected a positive integer") as e:
        thread_count(1)
    assert isinstance(e.value, RLPFError)


@pytest.mark.parametrize("value", [-1, True, 1.5, "2"])
def test_a_bad_threads_setting_is_refused(env, value):
    with pytest.raises(ThreadsError, match=r"threads=.*expected an integer >= 0"):
        thread_count(value)


def test_configure_threads_sets_torch(env):
    before = torch.get_num_threads()
    try:
        env.setenv(THREADS_ENV, "1")
        assert configure_threads(2) == 1 and torch.get_num_threads() == 1
        env.delenv(THREADS_ENV)
        assert configure_threads(2) == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pins processes to a CPU (Linux affinity)")
def test_a_core_that_another_process_keeps_busy_is_not_counted():
    cpu = usable_cores()[0]
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(busy.pid, {cpu})
        assert free_cores([cpu], sample_s=0.3) < 0.3
        # a process that may use only that core takes one thread, however many cores the box has
        code = (f"import os; os.sched_setaffinity(0, {{{cpu}}}); from rlpf.core.threads import choose_threads; "
                "print(choose_threads())")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "1"
    finally:
        busy.kill()
        busy.wait()
    assert 1 <= choose_threads(0.05) <= len(usable_cores())


def test_threads_for_counts_a_core_as_taken_once_others_use_a_quarter_of_it():
    assert [threads_for(busy, 2) for busy in (0.0, 0.2, 0.3, 1.0, 1.2, 5.0)] == [2, 2, 1, 1, 1, 1]
    assert threads_for(1.0, 8) == 7 and threads_for(0.0, 1) == 1


ADAPT = """
import subprocess, sys, time, torch
import rlpf.core.threads as t
t.ADAPT_S = 0.5  # the test need not wait the default interval
n0 = t.configure_threads({requested})
busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
try:
    time.sleep(t.ADAPT_S + 0.5)
    t.adapt_threads()
finally:
    busy.kill()
print(n0, torch.get_num_threads())
"""


@pytest.mark.skipif(len(usable_cores()) != 2, reason="the expected counts are those of a 2-core machine")
@pytest.mark.parametrize("requested, env_threads, want", [(0, None, "1"), (2, None, "2"), (0, "2", "2")])
def test_an_automatic_count_drops_when_a_competitor_arrives_mid_run_a_chosen_one_stays(requested, env_threads, want):
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", THREADS_ENV)}
    if env_threads:
        clean[THREADS_ENV] = env_threads
    out = subprocess.run([sys.executable, "-c", ADAPT.format(requested=requested)], env=clean,
                         capture_output=True, text=True, check=True)
    assert out.stdout.split()[1] == want
