"""MotionFeatures: anchored scene coordinates (objects, articulations) round-trip and decode at rest."""
import numpy as np
import pytest

from rlpf.data.metaworld_data import record_episode
from rlpf.worldmodel.features import MotionFeatures, quat_to_rotvec, rotvec_to_quat

PUSH, DRAWER = "metaworld/push-v3", "metaworld/drawer-open-v3"


@pytest.fixture(scope="module")
def push_clip():
    return record_episode(PUSH, seed=3, frames=48, noise_std=0.1)


def test_free_object_is_encoded_as_velocities_and_round_trips(push_clip):
    f = MotionFeatures(PUSH)
    # 7 arm joints -> the hand's position; the object's 7 free-joint coordinates -> 6 rates
    assert f.names == ["hand_vx", "hand_vy", "hand_vz", "r_close", "l_close", "objjoint_vx", "objjoint_vy",
                       "objjoint_vz", "objjoint_wx", "objjoint_wy", "objjoint_wz"]
    x = f.encode(push_clip.qpos, push_clip.fps)
    back = f.decode(x, push_clip.fps, start=push_clip.qpos[0])
    q = push_clip.qpos
    np.testing.assert_allclose(back[:, 7:12], q[:, 7:12], atol=1e-9)     # gripper and object exactly
    hand_err = np.linalg.norm(f._hand_positions(back) - f._hand_positions(q), axis=-1)
    assert hand_err.max() < 0.01, hand_err.max()                          # IK puts the hand back (< 1 cm)
    np.testing.assert_allclose(back[0], q[0], atol=1e-9)                  # the start pose is the start
    # a quaternion and its negative are one orientation
    dot = np.abs((back[:, 12:] * q[:, 12:]).sum(-1) / np.linalg.norm(q[:, 12:], axis=-1))
    np.testing.assert_allclose(dot, 1.0, atol=1e-9)
    assert set(f.integrated) == {f.names.index(n) for n in f.names if n.startswith(("objjoint", "hand"))}


def test_slide_articulation_round_trips_and_a_zero_rate_stays_at_rest():
    clip = record_episode(DRAWER, seed=1, frames=32, noise_std=0.0)
    f = MotionFeatures(DRAWER)
    x = f.encode(clip.qpos, clip.fps)
    back = f.decode(x, clip.fps, start=clip.qpos[0])
    np.testing.assert_allclose(back[:, 7:], clip.qpos[:, 7:], atol=1e-12)   # gripper and the drawer slide
    assert np.linalg.norm(f._hand_positions(back) - f._hand_positions(clip.qpos), axis=-1).max() < 0.01
    still = x.copy()
    still[:, f.names.index("goal_slidey_rate")] = 0.0
    q = f.decode(still, clip.fps, start=clip.qpos[0])
    slide = int(f.cw.articulation_qpos[0])
    assert np.all(q[:, slide] == clip.qpos[0, slide])                     # exactly where it started


def test_decode_without_start_anchors_at_default_start(push_clip):
    f = MotionFeatures(PUSH)
    x = f.encode(push_clip.qpos, push_clip.fps)
    f.default_start = push_clip.qpos[0].copy()
    np.testing.assert_allclose(f.decode(x, push_clip.fps)[:, 9:12], push_clip.qpos[:, 9:12], atol=1e-9)


def test_hand_space_ik_respects_joint_limits_on_an_unreachable_target(push_clip):
    f = MotionFeatures(PUSH)
    x = f.encode(push_clip.qpos[:8], push_clip.fps)
    x[:, :3] = [50.0, 50.0, 50.0]                                         # 50 m/s: soon out of reach
    q = f.decode(x, push_clip.fps, start=push_clip.qpos[0])
    m = f.cw.model
    for adr in f.arm:
        j = int(np.flatnonzero(m.jnt_qposadr == adr)[0])
        assert m.jnt_range[j, 0] - 1e-9 <= q[:, adr].min() and q[:, adr].max() <= m.jnt_range[j, 1] + 1e-9
    assert np.isfinite(q).all()


def test_unanchored_worlds_keep_their_features():
    ant = MotionFeatures("ant")
    assert not ant.anchored and ant.integrated == [1, 2, 4]
    assert [ant.names[i] for i in ant.integrated] == ["root_vx", "root_vy", "root_yaw_rate"]
    pusher = MotionFeatures("pusher")   # its model was made with absolute object coordinates
    assert not pusher.anchored and pusher.dim == pusher.nq and pusher.integrated == []


def test_anchored_encode_needs_two_frames(push_clip):
    with pytest.raises(ValueError, match="2 frames"):
        MotionFeatures(PUSH).encode(push_clip.qpos[:1], push_clip.fps)


def test_rotation_vector_round_trip():
    rng = np.random.default_rng(0)
    axis = rng.normal(size=(50, 3))
    v = axis / np.linalg.norm(axis, axis=-1, keepdims=True) * rng.uniform(0, 3.1, (50, 1))   # angles < pi
    v[0] = 0.0
    np.testing.assert_allclose(quat_to_rotvec(rotvec_to_quat(v)), v, atol=1e-9)
