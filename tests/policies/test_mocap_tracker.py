"""The mocap tracker on real Meta-World clips: valid expert motion tracks, objects that move on their own do not."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("metaworld")

from rlpf.core.clips import Clip
from rlpf.judge.tracking import load_tracker
from rlpf.policies.mocap_tracker import MocapTracker, MocapTrackerError

FRAMES = 120   # 1.5 s at 80 fps: push-v3's expert reaches the puck and pushes it


def _record(task: str, frames: int = FRAMES, seed: int = 3):
    from metaworld.policies import ENV_POLICY_MAP

    from rlpf.envs.metaworld import make_env, placed

    env = make_env(f"metaworld/{task}", seed=seed)
    obs, _ = env.reset(seed=seed)
    policy, u = ENV_POLICY_MAP[task](), env.unwrapped
    qpos = [u.data.qpos.copy()]
    for _ in range(frames):
        obs, *_ = env.step(policy.get_action(obs))
        qpos.append(u.data.qpos.copy())
    world = placed(f"metaworld/{task}", env)
    env.close()
    return Clip(qpos=np.array(qpos), fps=80.0, world=f"metaworld/{task}", source=task), world


@pytest.fixture(scope="module")
def push():
    return _record("push-v3")


@pytest.fixture(scope="module")
def drawer():
    return _record("drawer-open-v3")


def _teleported(clip: Clip, dx: float = 0.1) -> Clip:
    out = dataclasses.replace(clip, qpos=clip.qpos.copy(), cache={}, source=clip.source + "+teleport")
    out.qpos[len(out.qpos) // 2:, 9] += dx    # the puck's free joint x (qpos[9:16])
    return out


def test_valid_push_tracks_and_a_teleported_puck_does_not(push):
    clip, world = push
    assert np.linalg.norm(clip.qpos[-1, 9:11] - clip.qpos[0, 9:11]) > 0.01   # the expert moved the puck
    tracker = MocapTracker(world)
    ok = tracker.track_one(clip)
    assert ok.success and ok.objects_tracked, ok.info["objects"]
    assert ok.info["objects"]["obj"]["max_error_m"] < 0.5 * ok.info["objects"]["obj"]["threshold_m"]
    bad = tracker.track_one(_teleported(clip))
    assert not bad.success and bad.objects_tracked is False
    assert bad.info["objects"]["obj"]["max_error_m"] > 0.08          # the simulated puck stayed where it was
    assert np.nanmax(bad.body_error_m) <= bad.threshold_m            # the arm itself still tracked


def test_a_20fps_copy_tracks(push):
    clip, world = push
    r = MocapTracker(world).track_one(dataclasses.replace(clip, qpos=clip.qpos[::4].copy(), fps=20.0, cache={}))
    assert r.success, r.info["objects"]


def test_drawer_opening_tracks_and_a_drawer_opening_by_itself_does_not(drawer):
    clip, world = drawer
    tracker = MocapTracker(world)
    assert tracker.track_one(clip).success
    moved = dataclasses.replace(clip, qpos=clip.qpos.copy(), cache={}, source="drawer+self_open")
    adr = int(tracker.cw.articulation_qpos[0])
    moved.qpos[:, adr] = np.clip(moved.qpos[:, adr] - np.linspace(0.0, 0.08, len(moved.qpos)), -0.16, 0.0)
    r = tracker.track_one(moved)
    assert not r.success and r.info["objects"]["goal_slidey"]["tracked"] is False


def test_pd_builds_the_worlds_declared_tracker_and_workers_rebuild_it_from_spec(push):
    clip, world = push
    tracker = load_tracker("pd", world)
    assert isinstance(tracker, MocapTracker)
    assert type(load_tracker("pd", "ant")).__name__ == "PDTracker"
    cls, kwargs = tracker.spec()
    assert cls(**kwargs).spec() == (cls, kwargs)
    clips = [clip, _teleported(clip)]
    parallel = tracker.track(clips, workers=2)
    assert [r.success for r in parallel] == [True, False]
    np.testing.assert_allclose(parallel[0].qpos, tracker.track_one(clip).qpos)   # same simulation in a worker


def test_a_clip_of_another_world_or_width_is_a_clear_error(push):
    clip, world = push
    tracker = MocapTracker(world)
    with pytest.raises(MocapTrackerError, match=r"nq=16"):
        tracker.track_one(dataclasses.replace(clip, qpos=clip.qpos[:, :10], world=None))
    with pytest.raises(MocapTrackerError, match="metaworld/drawer-open-v3"):
        tracker.track_one(dataclasses.replace(clip, world="metaworld/drawer-open-v3"))
    with pytest.raises(MocapTrackerError, match="mocap"):
        MocapTracker("ant")
    nan = dataclasses.replace(clip, qpos=clip.qpos.copy(), cache={})
    nan.qpos[5, 0] = np.nan
    r = tracker.track_one(nan)
    assert r.diverged and not r.success and "finite" in r.info["why"]


def test_rlpf_track_with_pd_on_a_metaworld_clip_reports_the_objects(push, tmp_path):
    import json

    from rlpf.cli import main

    clip, _ = push
    for name, c in (("ok", clip), ("teleport", _teleported(clip))):
        np.savez(tmp_path / f"{name}.npz", qpos=c.qpos, fps=c.fps, world="metaworld/push-v3")
    out = tmp_path / "track.json"
    assert main(["track", str(tmp_path / "ok.npz"), str(tmp_path / "teleport.npz"), "--tracker", "pd",
                 "--out", str(out)]) == 0
    ok, bad = json.loads(out.read_text())["clips"]
    assert (ok["success"], ok["objects_tracked"], bad["success"], bad["objects_tracked"]) == (True, True, False, False)
    assert bad["objects"]["obj"]["max_error_m"] > bad["objects"]["obj"]["threshold_m"] == 0.05


def test_a_bad_pd_tracker_declaration_is_refused_at_registration():
    from rlpf.envs.worlds import WorldRegistryError, get_world, register_world

    bad = dataclasses.replace(get_world("metaworld/push-v3"), name="t_bad_mw", pd_tracker="no_colon")
    with pytest.raises(WorldRegistryError, match="pd_tracker"):
        register_world("t_bad_mw", bad)
