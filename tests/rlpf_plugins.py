"""Reward plugins for the RLPF tests, loaded by 'rlpf_plugins:name' paths (also in worker processes)."""
import math
import os
import signal


def flaky(clips, **_):
    """Raises on clips whose first root x is above the median-ish 0, NaN on others: a broken plugin."""
    out = []
    for c in clips:
        if c.source.endswith(("0", "5")):
            raise RuntimeError("flaky plugin failed on purpose")
        out.append(math.nan if c.source.endswith(("1", "6")) else 0.0)
    return out


_calls = {"n": 0}


def kill_switch(clips, **_):
    """Sends $RLPF_TEST_SIGNAL (default KILL) to its own process on call number $RLPF_TEST_KILL_AT
    (unset: harmless, returns 0)."""
    _calls["n"] += 1
    at = os.environ.get("RLPF_TEST_KILL_AT")
    if at and _calls["n"] == int(at):
        os.kill(os.getpid(), getattr(signal, "SIG" + os.environ.get("RLPF_TEST_SIGNAL", "KILL")))
    return [0.0] * len(clips)


def dies_on_completion_2(clips, **_):
    """Ends its own (worker) process abruptly on the clip of completion 2, as a crash in native code would."""
    if any(c.source == "completion:2" for c in clips):
        os._exit(3)
    return [0.0] * len(clips)


def sabotage_output(clips, **_):
    """Replaces the directory $RLPF_TEST_SABOTAGE by a file, as a full or vanished disk would make the
    report's final write fail after the work is done."""
    import shutil

    path = os.environ.get("RLPF_TEST_SABOTAGE")
    if path and os.path.isdir(path):
        shutil.rmtree(path)
        with open(path, "w") as f:
            f.write("in the way")
    return [0.0] * len(clips)


def step_seen(clips, *, step=None, trainer_state=None, **_):
    """The training step in the plugin context, per clip (-1 without one): in ``rlpf train`` every
    plugin gets ``step`` and TRL's ``trainer_state``; a batch of one generation shares one step."""
    if trainer_state is not None and not hasattr(trainer_state, "global_step"):
        raise TypeError(f"trainer_state is a {type(trainer_state).__name__}, not TRL's TrainerState")
    return [-1.0 if step is None else float(step)] * len(clips)


def state_step(clips, *, trainer_state=None, **_):
    """``trainer_state.global_step`` per clip (-1 without a state): which trainer state a batch is
    scored with, so a resumed run can be checked to hand a scored-ahead batch the state it was
    sampled in (tests/test_resume.py)."""
    return [-1.0 if trainer_state is None else float(trainer_state.global_step)] * len(clips)
