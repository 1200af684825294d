"""pd-randomized: the PD tracker on randomized plants; a clip succeeds only where every plant tracks it."""
from __future__ import annotations

import numpy as np
import pytest

from rlpf.data import corrupt
from rlpf.data.dynamics import DynamicsRandomization
from rlpf.judge.tracking import TrackerError, load_tracker
from rlpf.policies.pd_tracker import PDTracker
from rlpf.policies.randomized_tracker import RandomizedTracker


@pytest.fixture(scope="module")
def ant_clips():
    from rlpf.data.motion_data import make_dataset

    return make_dataset("ant", 2, seed=11, frames=48, workers=1)


def test_valid_gaits_track_on_every_plant_and_corrupted_ones_fail(ant_clips):
    t = load_tracker("pd-randomized", "ant")
    assert isinstance(t, RandomizedTracker) and t.draws == 4
    for clip in ant_clips:
        r = t.track_one(clip)
        assert r.success, (clip.source, r.info)
        assert r.info["draw_success"] == [True] * 4 and r.body_error_m.shape == (clip.n_frames,)
    lev = corrupt.levitate(ant_clips[0])
    r = t.track_one(lev)
    assert not r.success and r.info["draw_success"] == [False] * 4


def test_success_is_every_draws_and_the_result_is_the_worst(ant_clips):
    """Per draw the same as a PDTracker on that plant; a plant whose contacts are so soft (1 s time
    constant) that the body sinks fails a gait the nominal plant tracks, and such a draw fails the clip."""
    clip = ant_clips[0]
    soft = DynamicsRandomization(solref_timeconst=(1.0, 1.0), timestep_divisor=(1, 1))
    t = RandomizedTracker("ant", draws=2, seed=5, ranges=soft)
    r = t.track_one(clip)
    alone = PDTracker("ant")
    assert alone.track_one(clip).success
    per_draw = []
    for k in range(2):
        p = PDTracker("ant")
        p.set_plant(t._trackers[k]._plant)
        per_draw.append(p.track_one(clip))
    assert r.info["draw_success"] == [x.success for x in per_draw]
    assert not r.success and r.fell and False in r.info["draw_success"]
    np.testing.assert_allclose(r.body_error_m, np.maximum(per_draw[0].body_error_m, per_draw[1].body_error_m))


def test_spec_rebuilds_the_same_plants_and_bad_settings_are_refused():
    t = RandomizedTracker("ant", draws=3, seed=7)
    cls, kwargs = t.spec()
    again = cls(**kwargs)
    assert again.dynamics == t.dynamics and t.cache_key() == again.cache_key()
    assert RandomizedTracker("ant", draws=3, seed=8).dynamics != t.dynamics
    for bad in (0, 65, 2.5, True):
        with pytest.raises(TrackerError, match="draws must be"):
            RandomizedTracker("ant", draws=bad)
    with pytest.raises(TrackerError, match="bad ranges"):
        RandomizedTracker("ant", ranges={"friction_scale": (2.0, 1.0)})
    with pytest.raises(ValueError, match="set_plant"):
        PDTracker("ant").set_plant(PDTracker("humanoid").cw.model)
