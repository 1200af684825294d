"""Randomized dynamics (rlpf.data.dynamics): a changed copy, the input untouched, draws in range."""
import numpy as np
import pytest

from rlpf.data.dynamics import DynamicsRandomization, randomized_model
from rlpf.envs.worlds import compile_world


def test_randomized_model_is_a_copy_with_draws_in_range():
    base = compile_world("ant").model
    before = (base.geom_solref.copy(), base.geom_friction.copy(), base.body_mass.copy())
    r = DynamicsRandomization()
    for seed in range(5):
        m, info = randomized_model(base, np.random.default_rng(seed))
        assert m is not base
        assert max(r.solref_timeconst[0], 2 * m.opt.timestep) <= info["solref_timeconst"] <= r.solref_timeconst[1]
        assert np.allclose(m.geom_solref[:, 0], info["solref_timeconst"])
        assert np.allclose(m.geom_friction[:, 0], base.geom_friction[:, 0] * info["friction_x"])
        ratio = m.body_mass[1:] / base.body_mass[1:]
        assert r.mass_scale[0] <= ratio.min() and ratio.max() <= r.mass_scale[1]
    # the world's shared compiled model is not changed
    assert np.array_equal(before[0], base.geom_solref)
    assert np.array_equal(before[1], base.geom_friction)
    assert np.array_equal(before[2], base.body_mass)


def test_simulate_uses_the_variant():
    from rlpf.data.simulate import simulate
    from rlpf.policies.scripted import JointServo

    base = compile_world("ant").model
    soft = randomized_model(base, np.random.default_rng(0),
                            DynamicsRandomization(solref_timeconst=(0.08, 0.08), friction_scale=(1, 1),
                                                  mass_scale=(1, 1), timestep_divisor=(2, 2)))[0]
    assert soft.opt.timestep == base.opt.timestep / 2
    still = dict(spread=(0.0, 0.0), hold=(1.0, 1.0), kp=(4.0, 4.0), kd=(0.2, 0.2))
    stiff_clip = simulate("ant", JointServo(**still), 60, seed=3)
    soft_clip = simulate("ant", JointServo(**still), 60, seed=3, model=soft)
    # a softer contact lets the resting body sit lower: the variant was simulated, not the default
    assert np.min(soft_clip.qpos[:, 2]) < np.min(stiff_clip.qpos[:, 2]) - 0.02
    assert soft_clip.fps == stiff_clip.fps and len(soft_clip.qpos) == 60   # more steps per frame, same rate


@pytest.mark.parametrize("field,value", [("friction_scale", (0.0, 1.0)), ("mass_scale", (1.2, 0.8)),
                                         ("timestep_divisor", (1, 2.5)), ("solref_timeconst", (0.01, float("inf")))])
def test_bad_ranges_are_refused_by_name(field, value):
    with pytest.raises(ValueError, match=field):
        DynamicsRandomization(**{field: value})




def test_joint_servo_targets_stay_in_range_and_spread_the_poses():
    from rlpf.data.simulate import simulate
    from rlpf.policies.scripted import JointServo

    m = compile_world("ant").model
    jnt = m.actuator_trnid[:, 0]
    lo, hi = m.jnt_range[jnt].T
    wide = simulate("ant", JointServo(spread=(0.5, 0.5), hold=(0.3, 0.3)), 80, seed=1)
    still = simulate("ant", JointServo(spread=(0.0, 0.0)), 80, seed=1)
    qa = m.jnt_qposadr[jnt]
    spread_wide = np.ptp(wide.qpos[20:, qa], axis=0).mean()
    spread_still = np.ptp(still.qpos[20:, qa], axis=0).mean()
    assert spread_wide > 3 * spread_still          # moves through the joint space vs holds a pose
    # past the drop from the reset pose (ankles at 0, outside their range): inside the soft limits
    assert np.all(wide.qpos[20:, qa] > lo - 0.1) and np.all(wide.qpos[20:, qa] < hi + 0.1)
    assert np.all(np.abs(wide.actions) <= 1.0)


def test_joint_servo_reaches_both_limits_of_a_range_its_rest_pose_lies_outside():
    # the ant's ankles rest at 0, outside their 30-70 degree ranges: targets centred on the rest pose
    # clipped into the range reach the far limit with spread 1, as random-action recordings do
    from rlpf.data.simulate import simulate
    from rlpf.policies.scripted import JointServo

    m = compile_world("ant").model
    jnt = m.actuator_trnid[:, 0]
    lo, hi = m.jnt_range[jnt].T
    ankles = [a for a in range(m.nu) if lo[a] > 0 or hi[a] < 0]
    assert ankles
    qa = m.jnt_qposadr[jnt[ankles]]
    clip = simulate("ant", JointServo(spread=(1.0, 1.0), hold=(0.3, 0.3)), 200, seed=2)
    q = np.abs(clip.qpos[20:, qa])
    mid = (np.abs(lo[ankles]) + np.abs(hi[ankles])) / 2
    assert np.all(q.max(axis=0) > mid)                    # every ankle goes into the far half
    assert np.all((q < mid).mean(axis=0) > 0.1)           # and spends time in the near one
