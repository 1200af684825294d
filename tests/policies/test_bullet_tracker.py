"""The PyBullet tracker: the same MJCF in a second engine, mapped body for body; valid motion tracks,
impossible motion does not; workers rebuild it; worlds it cannot simulate are refused by name."""
from __future__ import annotations

import os
import subprocess
import sys

import mujoco
import numpy as np
import pytest

pytest.importorskip("pybullet")

from rlpf.core.clips import Clip  # noqa: E402
from rlpf.data import corrupt  # noqa: E402
from rlpf.envs.worlds import compile_world  # noqa: E402
from rlpf.judge.tracking import TrackerError, load_tracker, success_threshold  # noqa: E402
from rlpf.policies.bullet_tracker import BulletTracker  # noqa: E402


@pytest.fixture(scope="module")
def ant_clips():
    """Valid ant clips (the world model's PD-driven CPG gaits), 1.6 s at 20 fps."""
    from rlpf.data.motion_data import make_dataset

    return make_dataset("ant", 2, seed=11, frames=32, workers=1)


@pytest.fixture(scope="module")
def trackers():
    return {w: BulletTracker(w) for w in ("ant", "humanoid")}


def random_qpos(m: mujoco.MjModel, rng) -> np.ndarray:
    q = m.qpos0.copy()
    q[:3] = rng.uniform([-1, -1, 0.5], [1, 1, 1.5])
    quat = rng.normal(size=4)
    q[3:7] = quat / np.linalg.norm(quat)
    for j in range(1, m.njnt):
        lo, hi = m.jnt_range[j] if m.jnt_limited[j] else (-np.pi, np.pi)
        q[m.jnt_qposadr[j]] = rng.uniform(lo, hi)
    return q


@pytest.mark.parametrize("world", ["ant", "humanoid"])
def test_qpos_maps_onto_bullet_body_for_body(world, trackers):
    """A MuJoCo qpos set in Bullet puts every body's frame where MuJoCo's forward kinematics does (mm),
    reads back as the same qpos, and a qvel as the same qvel."""
    tr, rng = trackers[world], np.random.default_rng(7)
    m = tr.cw.model
    d = mujoco.MjData(m)
    for _ in range(5):
        q = random_qpos(m, rng)
        tr.set_qpos(q)
        d.qpos[:] = q
        mujoco.mj_kinematics(m, d)
        err = np.linalg.norm(tr.bullet_body_positions() - d.xpos[1:], axis=1)
        assert err.max() < 1e-3, (world, err.max())
        qv = rng.normal(0, 1.0, m.nv)
        tr._set_state(q, qv)
        joints = tr._p.getJointStates(tr._robot, tr._bullet_joints, physicsClientId=tr._client)
        q_back, v_back = tr._state(np.array([s[0] for s in joints]), np.array([s[1] for s in joints]))
        assert np.abs(q_back - q).max() < 1e-5 or np.abs(q_back[3:7] + q[3:7]).max() < 1e-5
        assert np.allclose(q_back[:3], q[:3], atol=1e-5) and np.allclose(q_back[7:], q[7:], atol=1e-5)
        assert np.allclose(v_back, qv, atol=1e-4), np.abs(v_back - qv).max()


@pytest.mark.parametrize("world", ["ant", "humanoid"])
def test_bullet_has_mujocos_masses(world, trackers):
    """loadMJCF alone would give the ant 182 kg (density 1000); the explicit inertials give MuJoCo's 0.91."""
    tr = trackers[world]
    p, c = tr._p, tr._client
    m = tr.cw.model
    for b, link in tr._link_of_body.items():
        assert p.getDynamicsInfo(tr._robot, link, physicsClientId=c)[0] == pytest.approx(m.body_mass[b], rel=1e-6)
    total = sum(p.getDynamicsInfo(tr._robot, j, physicsClientId=c)[0]
                for j in range(-1, p.getNumJoints(tr._robot, physicsClientId=c)))
    assert total == pytest.approx(m.body_subtreemass[tr.cw.root_body], rel=1e-6)


def test_valid_ant_clips_track(ant_clips, trackers):
    tr = trackers["ant"]
    m = tr.cw.model
    for clip in ant_clips:
        r = tr.track_one(clip)
        assert r.success, (clip.source, np.nanmax(r.body_error_m), r.fell, r.diverged, r.info)
        assert r.qpos.shape == (clip.n_frames, m.nq) and r.torques.shape == (clip.n_frames, m.nu)
        assert r.body_error_m[0] < 1e-3          # starts at the reference's first frame
        assert r.threshold_m == success_threshold("ant") and r.info["engine"] == "pybullet"
        limit = np.abs(m.actuator_gear[:, 0]) * np.abs(m.actuator_ctrlrange).max(axis=1)
        assert (np.abs(r.torques) <= limit + 1e-9).all()


def test_valid_humanoid_clip_tracks(valid_clips, trackers):
    clip = valid_clips["humanoid"][0]
    r = trackers["humanoid"].track_one(Clip(qpos=clip.qpos[:60], fps=clip.fps, world="humanoid", source=clip.source))
    assert r.success, (np.nanmax(r.body_error_m), r.fell, r.diverged, r.info)


@pytest.mark.parametrize("kind", ["levitate", "teleport"])
def test_impossible_ant_motion_fails(kind, ant_clips, trackers):
    for clip in ant_clips:
        r = trackers["ant"].track_one(corrupt.CORRUPTIONS[kind](clip))
        assert not r.success, (kind, clip.source, np.nanmax(r.body_error_m))
        assert not r.diverged


def test_two_workers_give_the_single_process_results(ant_clips, trackers):
    """Worker processes rebuild the tracker from spec() and, a fresh Bullet world per clip, get the
    same results as this process in any order."""
    tr = trackers["ant"]
    clips = [ant_clips[0], corrupt.teleport(ant_clips[0]), ant_clips[1]]
    alone = [tr.track_one(c) for c in reversed(clips)][::-1]
    parallel = tr.track(clips, workers=2)
    for a, b in zip(alone, parallel):
        assert a.success == b.success and a.fell == b.fell
        np.testing.assert_allclose(a.qpos, b.qpos, atol=1e-9)
    cls, kwargs = tr.spec()
    assert cls(**kwargs).cache_key() == tr.cache_key()


def test_bullet_steps_split_the_mjcf_timestep(trackers, ant_clips):
    """Bullet steps at most MAX_STEP_S (its first-order contacts need it); the frames still land on
    the clip's times, and a coarser step is a constructor argument that workers keep."""
    from rlpf.policies.bullet_tracker import MAX_STEP_S

    for world, n in (("ant", 4), ("humanoid", 2)):       # MJCF timesteps 10 ms and 3 ms
        tr = trackers[world]
        assert tr.substeps == n and tr.h <= MAX_STEP_S
        assert tr._p.getPhysicsEngineParameters(physicsClientId=tr._client)["fixedTimeStep"] == pytest.approx(tr.h)
    coarse = BulletTracker("ant", max_step_s=0.01)
    assert coarse.substeps == 1 and coarse.spec()[1]["max_step_s"] == 0.01
    fine, rough = trackers["ant"].track_one(ant_clips[0]), coarse.track_one(ant_clips[0])
    assert fine.qpos.shape == rough.qpos.shape == np.asarray(ant_clips[0].qpos).shape
    assert not np.allclose(fine.qpos, rough.qpos)          # the step size is really Bullet's
    for bad in (0, -1e-3, float("nan"), "1ms", True):
        with pytest.raises(TrackerError, match="max_step_s"):
            BulletTracker("ant", max_step_s=bad)


def test_registered_as_bullet():
    tr = load_tracker("bullet", "ant")
    assert isinstance(tr, BulletTracker) and tr.name == "bullet"


def test_rlpf_train_evaluation_accepts_bullet():
    from rlpf.finetune.pipeline import _check_tracker

    _check_tracker("eval_trackers", "bullet", "ant")     # no TrackerError


def test_import_rlpf_does_not_import_pybullet():
    code = ("import sys, rlpf, rlpf.judge.tracking, rlpf.judge.scoring; "
            "assert 'pybullet' not in sys.modules, 'pybullet imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(__file__)))


def test_worlds_bullet_cannot_simulate_are_refused_by_name(tmp_path):
    with pytest.raises(TrackerError, match="'pusher'.*no free root joint"):
        BulletTracker("pusher")
    with pytest.raises(TrackerError, match="pusher"):
        load_tracker("bullet", "pusher")
    from rlpf.envs.worlds import registered_worlds

    for name in [w for w in registered_worlds() if w.startswith("metaworld/")][:1]:   # a Meta-World arm
        with pytest.raises(TrackerError, match=f"'{name}'.*no free root joint"):
            BulletTracker(name)
    xml = tmp_path / "ballbot.xml"
    xml.write_text("""<mujoco><worldbody><geom name="floor" type="plane" size="5 5 .1"/>
      <body name="torso" pos="0 0 1"><freejoint name="root"/><geom name="torso" type="sphere" size=".1"/>
        <body name="arm" pos=".1 0 0"><joint name="shoulder" type="ball"/><geom name="arm" type="capsule" fromto="0 0 0 .3 0 0" size=".03"/></body>
      </body></worldbody><actuator><motor joint="shoulder" gear="1 0 0" ctrlrange="-1 1" ctrllimited="true"/></actuator></mujoco>""")
    with pytest.raises(TrackerError, match=r"ballbot.*\['shoulder'\] are not hinges"):
        BulletTracker(str(xml))


def test_bad_clip_is_a_failed_track(trackers):
    m = trackers["ant"].cw.model
    q = np.tile(m.qpos0, (10, 1))
    q[5, 0] = np.nan
    r = trackers["ant"].track_one(Clip(qpos=q, fps=20.0, world="ant", source="nan-clip"))
    assert r.diverged and not r.success and "finite" in r.info["why"]
    sunk = np.tile(m.qpos0, (10, 1))
    sunk[:, 2] = 0.1                              # torso sphere (r = 0.25) 15 cm inside the floor
    r = trackers["ant"].track_one(Clip(qpos=sunk, fps=20.0, world="ant", source="sunk"))
    assert r.diverged and "inside the floor" in r.info["why"]


def test_rlpf_score_and_track_take_bullet(ant_clips, tmp_path):
    """`rlpf score --tracker pd --tracker bullet` reports both and their agreement; `rlpf track --tracker bullet` runs."""
    import json

    from rlpf.cli import main
    from rlpf.core.clips import save_clips

    clip_dir = tmp_path / "clips"
    save_clips(str(clip_dir / "ant.npz"), [ant_clips[0], corrupt.levitate(ant_clips[0])])
    out = tmp_path / "report.json"
    assert main(["score", str(clip_dir), "--tracker", "pd", "--tracker", "bullet", "tracker_workers=1",
                 "--quiet", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [c["tracking"]["bullet"]["success"] for c in report["clips"]] == [True, False]
    assert report["summary"]["trackers"]["bullet"]["success_rate"] == 0.5
    assert report["summary"]["tracker_agreement"]["pd vs bullet"]["rate"] == 1.0
    track_out = tmp_path / "track.json"
    assert main(["track", str(clip_dir), "--tracker", "bullet", "--workers", "1", "--quiet", "--out", str(track_out)]) == 0
    assert track_out.exists()


def test_self_collisions_follow_mujocos_rule(trackers):
    """Crossed legs touch in both engines (Bullet's importer alone would collide nothing or everything);
    no body ever collides with its parent (MuJoCo's filterparent)."""
    tr = trackers["humanoid"]
    m, p, c = tr.cw.model, tr._p, tr._client
    q = m.qpos0.copy()
    q[2] = 2.0
    for name, val in (("right_hip_x", 0.087), ("left_hip_x", 0.087), ("right_hip_z", 0.6), ("left_hip_z", 0.6)):
        q[m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name)]] = val
    tr.set_qpos(q)
    p.performCollisionDetection(physicsClientId=c)
    body_of = {link: b for b, link in tr._link_of_body.items()}
    bullet = {frozenset((body_of[x[3]], body_of[x[4]])) for x in p.getContactPoints(tr._robot, tr._robot, physicsClientId=c)
              if x[8] < 0}
    d = mujoco.MjData(m)
    d.qpos[:] = q
    mujoco.mj_forward(m, d)
    touching = {frozenset((m.geom_bodyid[d.contact.geom1[i]], m.geom_bodyid[d.contact.geom2[i]])) for i in range(d.ncon)
                if d.contact.dist[i] < 0}
    assert touching and touching <= bullet, (touching, bullet)
    assert all(m.body_parentid[a] != b and m.body_parentid[b] != a for a, b in map(tuple, bullet))
