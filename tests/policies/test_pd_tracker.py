"""The PD + inverse-dynamics tracker: valid clips track, physically impossible ones do not, failures are results."""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from rlpf.data import corrupt
from rlpf.envs.worlds import get_world
from rlpf.policies.pd_tracker import PDTracker
from rlpf.judge.tracking import (
    TrackerError,
    TrackResult,
    agreement,
    cross_tracker_report,
    load_tracker,
    success_threshold,
    track_clips,
)


@pytest.fixture(scope="module")
def ant_clips():
    """Valid ant clips as the world model trains on them (PD-driven CPG gaits, 2.4 s at 20 fps)."""
    from rlpf.data.motion_data import make_dataset

    return make_dataset("ant", 3, seed=11, frames=48, workers=1)


@pytest.fixture(scope="module")
def trackers():
    return {w: PDTracker(w) for w in ("ant", "humanoid", "pusher")}


def test_valid_clips_track(ant_clips, valid_clips, trackers):
    for world, clips in (("ant", ant_clips), ("humanoid", valid_clips["humanoid"]), ("pusher", valid_clips["pusher"])):
        for clip in clips:
            r = trackers[world].track_one(clip)
            assert r.success, (world, clip.source, np.nanmax(r.body_error_m), r.fell, r.diverged, r.info)
            assert not r.fell and not r.diverged
            m = trackers[world].cw.model
            assert r.qpos.shape == (clip.n_frames, m.nq)
            assert r.body_error_m.shape == (clip.n_frames,) and r.torques.shape == (clip.n_frames, m.nu)
            assert r.body_error_m[0] < 1e-6          # starts at the reference's first frame
            assert r.threshold_m == success_threshold(world)
            assert np.isfinite(r.torques).all()
            limit = np.abs(m.actuator_gear[:, 0]) * np.abs(m.actuator_ctrlrange).max(axis=1)
            assert (np.abs(r.torques) <= limit + 1e-9).all()   # clipped to the actuators' limits


@pytest.mark.parametrize("world", ["ant", "humanoid"])
@pytest.mark.parametrize("kind", ["levitate", "teleport"])
def test_impossible_motion_fails(world, kind, ant_clips, valid_clips, trackers):
    clips = ant_clips if world == "ant" else valid_clips["humanoid"]
    for clip in clips:
        r = trackers[world].track_one(corrupt.CORRUPTIONS[kind](clip))
        assert not r.success, (world, kind, clip.source, np.nanmax(r.body_error_m))
        assert not r.diverged
        if kind == "levitate":
            assert r.fell  # the reference rises 0.5 m where the unactuated root cannot follow


def test_skating_ant_fails(ant_clips, trackers):
    for clip in ant_clips:
        r = trackers["ant"].track_one(corrupt.skate(clip))
        assert not r.success and np.nanmax(r.body_error_m) > 1.0


def test_skating_humanoid_fails_once_it_is_on_the_floor(trackers):
    """3 s clips: the humanoid topples within ~1 s, then lies in contact, where no glide is possible.
    (Over the first 1.5 s a falling body carries the skate's initial sideways momentum part of the way.)"""
    from rlpf.policies.scripted import SmoothRandom
    from rlpf.data.simulate import simulate

    for seed in (5, 6):
        clip = simulate("humanoid", SmoothRandom(0.5), 200, seed=seed)
        assert trackers["humanoid"].track_one(clip).success
        r = trackers["humanoid"].track_one(corrupt.skate(clip))
        assert not r.success and np.nanmax(r.body_error_m) > 0.6, np.nanmax(r.body_error_m)


def test_object_moved_untouched_diverges(valid_clips, trackers):
    clip = valid_clips["pusher"][0]
    ok = trackers["pusher"].track_one(clip)
    bad = trackers["pusher"].track_one(corrupt.move_object(clip, 0.3))
    assert np.nanmax(ok.object_error_m) < 0.01
    assert np.nanmax(bad.object_error_m) > 0.25      # the arm never pushed it: it stays behind


def test_sunk_reference_is_a_failed_track_not_an_exception(ant_clips, valid_clips, trackers):
    for world, clip in (("ant", ant_clips[0]), ("humanoid", valid_clips["humanoid"][0])):
        r = trackers[world].track_one(corrupt.sink(clip, 1.0))
        assert r.diverged and not r.success
        assert "inside the floor" in r.info["why"]
        assert np.isnan(r.body_error_m).all() and r.mean_error_m == float("inf")


def test_absurd_reference_is_a_failed_track(ant_clips):
    clip = ant_clips[0]
    wild = dataclasses.replace(clip, qpos=clip.qpos.copy(), cache={}, source="wild")
    wild.qpos[:, 7:] += np.where(np.arange(clip.n_frames) % 2, 3.0, -3.0)[:, None]   # +-3 rad every frame
    r = PDTracker("ant").track_one(wild)
    assert not r.success
    # explicitly unstable gains (kd * dt = 100) with unclipped torques blow the simulation up: caught
    r = PDTracker("ant", kp=1e6, kd=1e4, torque_scale=None).track_one(wild)
    assert r.diverged and not r.success and "diverged" in r.info["why"]
    assert np.isnan(r.qpos[-1]).all()


def test_malformed_reference_is_a_failed_track(ant_clips):
    clip = ant_clips[0]
    nan = dataclasses.replace(clip, qpos=clip.qpos.copy(), cache={})
    nan.qpos[5, 3] = np.nan
    wrong = dataclasses.replace(clip, qpos=clip.qpos[:, :10], cache={})
    for bad in (nan, wrong):
        r = PDTracker("ant").track_one(bad)
        assert r.diverged and not r.success


def test_parallel_equals_serial(ant_clips, valid_clips):
    clips = list(ant_clips) + [corrupt.teleport(ant_clips[0])]
    tracker = PDTracker("ant")
    serial = tracker.track(clips, workers=1)
    parallel = tracker.track(clips, workers=2)
    assert [r.source for r in parallel] == [c.source for c in clips]
    for a, b in zip(serial, parallel):
        assert a.success == b.success and a.fell == b.fell
        np.testing.assert_array_equal(a.body_error_m, b.body_error_m)
        np.testing.assert_array_equal(a.qpos, b.qpos)


def test_spec_rebuilds_the_same_tracker():
    tracker = PDTracker("humanoid", kp=100.0, fall_drop_m=0.5)
    cls, kwargs = tracker.spec()
    again = cls(**kwargs)
    assert repr(again) == repr(tracker) and again.cache_key() == tracker.cache_key()
    assert PDTracker("humanoid").kp == get_world("humanoid").pd_gains[0]
    assert PDTracker("humanoid").cache_key() != tracker.cache_key()


def test_thresholds_per_world():
    assert success_threshold("humanoid") == get_world("humanoid").success_threshold_m == 0.5
    assert 0.1 < success_threshold("ant") < 0.5 and 0.1 < success_threshold("pusher") < 0.5


def test_load_tracker(tmp_path, monkeypatch):
    assert isinstance(load_tracker("pd", "ant"), PDTracker)
    with pytest.raises(TrackerError, match="unknown tracker 'nope'"):
        load_tracker("nope", "ant")
    monkeypatch.chdir(tmp_path)  # no runs/tracker-ant here
    with pytest.raises(TrackerError, match="learned"):
        load_tracker("learned", "ant")
    os.makedirs(tmp_path / "not_a_run")
    with pytest.raises(TrackerError):
        load_tracker(str(tmp_path / "not_a_run"), "ant")


def test_cross_tracker_report_and_cache(ant_clips):
    clips = [dataclasses.replace(c, cache={}) for c in ant_clips] + [corrupt.levitate(ant_clips[0])]
    stiff, floppy = PDTracker("ant"), PDTracker("ant", kp=1.0, kd=0.0, torque_scale=0.01)
    soft = PDTracker("ant", kp=0.3)
    report = cross_tracker_report(clips, {"pd": stiff, "floppy": floppy, "soft": soft}, workers=1)
    assert report["n_clips"] == 4
    ok = {name: [r.success for r in track_clips(clips, t)] for name, t in
          (("pd", stiff), ("floppy", floppy), ("soft", soft))}
    # the stiff tracker performs every valid clip and none levitates; the floppy one (1 % of the
    # torque, no damping) loses at least one valid clip the stiff one keeps, so the two disagree
    assert ok["pd"] == [True, True, True, False] and not ok["floppy"][3] and not ok["soft"][3]
    assert report["trackers"]["pd"]["success_rate"] == 0.75 and report["trackers"]["pd"]["n_fell"] == 1
    assert not all(ok["floppy"][:3])
    pair = report["agreement"]["pd vs floppy"]
    assert pair == {"rate": sum(a == b for a, b in zip(ok["pd"], ok["floppy"])) / 4,
                    "both_succeed": sum(a and b for a, b in zip(ok["pd"], ok["floppy"])), "both_fail": 1,
                    "only_pd": sum(a and not b for a, b in zip(ok["pd"], ok["floppy"])), "only_floppy": 0}
    assert pair["only_pd"] >= 1 and pair["rate"] < 1
    # with three trackers the overall rate is the mean of the three pairwise rates
    rates = [report["agreement"][p]["rate"] for p in ("pd vs floppy", "pd vs soft", "floppy vs soft")]
    assert len(report["agreement"]) == 3 and report["agreement_rate"] == pytest.approx(np.mean(rates))
    # cached: asking again returns the very same result objects
    first = track_clips(clips, stiff)
    assert all(a is b for a, b in zip(first, track_clips(clips, PDTracker("ant"))))
    solo = cross_tracker_report(clips, {"pd": stiff})
    assert solo["agreement"] == {} and solo["agreement_rate"] is None


def test_agreement_counts():
    out = agreement({"a": [True, True, False, False], "b": [True, False, False, True]})
    assert out["a vs b"] == {"rate": 0.5, "both_succeed": 1, "both_fail": 1, "only_a": 1, "only_b": 1}


def test_track_result_rule():
    r = TrackResult(source="x", qpos=np.zeros((3, 1)), body_error_m=np.array([0.0, 0.2, 0.31]),
                    torques=np.zeros((3, 0)), fell=False, diverged=False, threshold_m=0.3)
    assert not r.success
    r.body_error_m[2] = 0.3
    assert r.success


def test_one_fell_rule():
    from rlpf.judge.tracking import fall_drop_m, fell_frames

    upright = np.r_[0.0, 0.0, 0.55, 1.0, 0.0, 0.0, 0.0, np.zeros(8)]
    on_back = upright.copy()
    on_back[3:7] = [0.0, 1.0, 0.0, 0.0]                       # 180 deg about x: up axis points down
    lying = upright.copy()
    lying[3:7] = [np.cos(np.pi / 4), np.sin(np.pi / 4), 0, 0]  # 90 deg: up axis horizontal
    assert fall_drop_m("ant") == get_world("ant").fall_drop_m == 0.2 and fall_drop_m("humanoid") == 0.35
    low = upright.copy()
    low[2] -= 0.25
    sim = np.stack([upright, low, on_back, upright, np.full(15, np.nan)])
    ref = np.stack([upright, upright, upright, low, upright])
    # sank 0.25 > 0.2: fell; flipped under an upright reference: fell; the reference lower than the
    # body (it fell itself, or sank): tracked, not a fall; a diverged (NaN) frame: not a fall
    np.testing.assert_array_equal(fell_frames(sim, ref, 0.2), [False, True, True, False, False])
    assert not fell_frames(low, upright, 0.3)
    # a reference that is itself lying (a humanoid on the floor) never makes a tilt a fall
    assert not fell_frames(on_back, lying, 0.35) and fell_frames(on_back, upright, 0.35)


def test_pd_tracker_and_env_use_the_one_fell_rule(ant_clips, trackers):
    from rlpf.envs.motion_tracking import MotionTrackingEnv
    from rlpf.judge.tracking import fell_frames

    tracker = trackers["ant"]
    for clip in (corrupt.levitate(ant_clips[0]), ant_clips[0]):
        r = tracker.track_one(clip)
        assert r.fell == bool(fell_frames(r.qpos, clip.qpos, tracker.fall_drop_m).any())
        assert r.fell == (clip is not ant_clips[0])
    env = MotionTrackingEnv("ant", clips=ant_clips[:1])
    env.reset(options={"clip": 0, "frame": 5})
    assert env.fall_drop_m == tracker.fall_drop_m and not env.fell()
    env.data.qpos[2] -= 0.9 * env.fall_drop_m
    assert not env.fell()
    env.data.qpos[2] -= 0.2 * env.fall_drop_m   # 1.1 x the drop below the reference root
    assert env.fell()
    # an episode on a levitating clip ends as a fall, where the rule says so
    env = MotionTrackingEnv("ant", clips=[corrupt.levitate(ant_clips[0])], termination_distance=float("inf"))
    env.reset(options={"clip": 0, "frame": 0})
    terminated = truncated = False
    while not (terminated or truncated):
        _, _, terminated, truncated, info = env.step(np.zeros(env.action_space.shape))
    assert terminated and info["fell"] and not info["diverged"]
    assert fell_frames(env.data.qpos, env.reference(0).qpos[info["frame"]], env.fall_drop_m)


def test_joint_indices_are_sliced_only_when_contiguous():
    from rlpf.policies.pd_tracker import _as_slice

    x = np.arange(10.0)
    assert _as_slice(np.array([6, 7, 8])) == slice(6, 9)
    gaps = _as_slice(np.array([1, 3, 4]))
    np.testing.assert_array_equal(x[gaps], [1, 3, 4])
    assert len(_as_slice(np.array([], int))) == 0
