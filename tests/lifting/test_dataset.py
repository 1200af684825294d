"""The pose network's training clips (rlpf.lifting.dataset): what they cover, and that turning keeps them physical."""
import numpy as np

from rlpf.envs.worlds import compile_world


def _near_limit(clips) -> float:
    """Fraction of the clips' joint values within 3 degrees of a joint limit."""
    jr = compile_world("ant").model.jnt_range[1:]
    q = np.concatenate([np.asarray(c.qpos)[:, 7:] for c in clips])
    return float(((q <= jr[:, 0] + 0.05) | (q >= jr[:, 1] - 0.05)).mean())


def test_reset_clips_reach_the_joint_limits_random_action_recordings_hold():
    from rlpf.data.motion_data import make_dataset
    from rlpf.lifting.dataset import reset_clips

    reset = reset_clips("ant", 8, seed=1, frames=40)
    assert len(reset) == 8
    gaits = make_dataset("ant", 4, seed=1, frames=40, workers=1)
    # random actions and servo targets over the whole ranges sit at the limits far more than the
    # labelled gaits (Ant-v5 under smoothed random actions: 64 % of its joint values)
    assert _near_limit(reset) > 0.35
    assert _near_limit(reset) > 2 * _near_limit(gaits)


def test_training_clips_mix_reset_and_labelled_clips_and_corrupt_the_asked_fraction():
    from rlpf.lifting.dataset import training_clips

    clean = training_clips("ant", 8, seed=2, frames=40, corrupt_fraction=0.0, reset_fraction=0.5)
    assert len(clean) == 8
    assert sum(c.source.startswith("simulated") for c in clean) == 4
    corrupted = training_clips("ant", 8, seed=2, frames=40, corrupt_fraction=1.0, reset_fraction=0.5)
    assert all(a.source != b.source for a, b in zip(clean, corrupted))


def test_turning_a_clip_keeps_its_height_joints_and_distances():
    from rlpf.data.motion_data import make_dataset
    from rlpf.lifting.dataset import turned

    clip = make_dataset("ant", 1, seed=3, frames=20, workers=1)[0]
    before = np.array(clip.qpos, copy=True)
    t = turned(clip, 1.0, (0.5, -0.2))
    q, p = before, np.asarray(t.qpos)
    assert np.allclose(p[:, 2], q[:, 2]) and np.allclose(p[:, 7:], q[:, 7:])
    step = lambda x: np.linalg.norm(np.diff(x[:, :2], axis=0), axis=1)  # noqa: E731
    assert np.allclose(step(p), step(q))
    assert np.allclose(np.linalg.norm(p[:, 3:7], axis=1), 1.0)
    assert not np.allclose(p[:, :2], q[:, :2])
    assert np.array_equal(np.asarray(clip.qpos), before)      # the input clip is not changed
