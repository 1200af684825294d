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
    assert f.anchored and f.dim == push_clip.qpos.shape[1] - 1          # 7 free-joint coordinates -> 6 rates
    assert [n for n in f.names if n.startswith("objjoint")] == [
        "objjoint_vx", "objjoint_vy", "objjoint_vz", "objjoint_wx", "objjoint_wy", "objjoint_wz"]
    x = f.encode(push_clip.qpos, push_clip.fps)
    back = f.decode(x, push_clip.fps, start=push_clip.qpos[0])
    q = push_clip.qpos
    np.testing.assert_allclose(back[:, :12], q[:, :12], atol=1e-9)
    # a quaternion and its negative are one orientation
    dot = np.abs((back[:, 12:] * q[:, 12:]).sum(-1) / np.linalg.norm(q[:, 12:], axis=-1))
    np.testing.assert_allclose(dot, 1.0, atol=1e-9)
    assert set(f.integrated) == {f.names.index(n) for n in f.names if n.startswith("objjoint")}


def test_slide_articulation_round_trips_and_a_zero_rate_stays_at_rest():
    clip = record_episode(DRAWER, seed=1, frames=32, noise_std=0.0)
    f = MotionFeatures(DRAWER)
    x = f.encode(clip.qpos, clip.fps)
    np.testing.assert_allclose(f.decode(x, clip.fps, start=clip.qpos[0]), clip.qpos, atol=1e-12)
    still = x.copy()
    still[:, f.names.index("goal_slidey_rate")] = 0.0
    q = f.decode(still, clip.fps, start=clip.qpos[0])
    slide = list(f.names).index("goal_slidey_rate")
    assert np.all(q[:, slide] == clip.qpos[0, slide])                     # exactly where it started


def test_decode_without_start_anchors_at_default_start(push_clip):
    f = MotionFeatures(PUSH)
    x = f.encode(push_clip.qpos, push_clip.fps)
    f.default_start = push_clip.qpos[0].copy()
    np.testing.assert_allclose(f.decode(x, push_clip.fps)[:, 9:12], push_clip.qpos[:, 9:12], atol=1e-9)


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
