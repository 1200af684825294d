"""rlpf.lifting.targets: qpos -> per-frame targets -> qpos is exact (root x, y integrated from 0)."""
import numpy as np

from rlpf.lifting.targets import decode, encode, layout, quat_to_rot6, rot6_to_quat


def test_roundtrip_integrates_the_root_from_the_start():
    from rlpf.policies.scripted import AntGait

    from rlpf.data.simulate import simulate

    clip = simulate("ant", AntGait(), 30, seed=2)
    q = clip.qpos.copy()
    q[:, 3:7] /= np.linalg.norm(q[:, 3:7], axis=1, keepdims=True)   # as clip validation does (the reset adds noise)
    y = encode(q)
    L = layout(q.shape[1])
    assert y.shape == (30, 1 + 6 + 8 + 2) and L["joints"] == slice(7, 15)
    back = decode(y, q.shape[1])
    expect = q.copy()
    expect[:, :2] -= q[0, :2]                      # anchored at the origin, as a video cannot tell where it is
    np.testing.assert_allclose(back[:, :3], expect[:, :3], atol=1e-9)
    np.testing.assert_allclose(back[:, 7:], q[:, 7:], atol=1e-12)
    same_rotation = np.abs(np.sum(back[:, 3:7] * q[:, 3:7], axis=1))   # q and -q are one rotation
    np.testing.assert_allclose(same_rotation, 1.0, atol=1e-9)
    xy = np.random.default_rng(0).normal(size=(30, 2))
    np.testing.assert_array_equal(decode(y, 15, xy)[:, :2], xy)


def test_rot6_is_continuous_where_a_quaternion_flips_sign():
    yaw = np.linspace(np.pi - 0.1, np.pi + 0.1, 5)
    quat = np.stack([np.cos(yaw / 2), 0 * yaw, 0 * yaw, np.sin(yaw / 2)], 1)
    quat[quat[:, 0] < 0] *= -1                     # w >= 0: the sign jumps at yaw = pi
    r6 = quat_to_rot6(quat)
    assert np.abs(np.diff(r6, axis=0)).max() < 0.1
    back = rot6_to_quat(r6)
    np.testing.assert_allclose(np.abs(np.sum(back * quat, axis=1)), 1.0, atol=1e-9)
