import os

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture(scope="session")
def valid_clips():
    """Physically valid clips simulated in each world (short, made once per test session)."""
    from rlpf.policies.scripted import PusherScript, SmoothRandom
    from rlpf.simulate import simulate

    return {
        "ant": [simulate("ant", SmoothRandom(0.6), 80, seed=s) for s in (3, 4)],
        "humanoid": [simulate("humanoid", SmoothRandom(0.5), 100, seed=s) for s in (3, 4)],
        "pusher": [simulate("pusher", PusherScript(), 80, seed=s) for s in (3, 4)],
    }


@pytest.fixture
def rng():
    return np.random.default_rng(0)
