"""Actuator effort: joint torques the motion needs, relative to what the actuators can give."""
import numpy as np

from rlpf.rewards.analysis import contact_solution
from rlpf.rewards.registry import per_clip, register


@register("torque_excess", threshold=0.5, unit="x actuator limit", physics=True)
@per_clip
def torque_excess(clip, world):
    """Mean over frames of the largest joint torque beyond its actuator limit, as a fraction of the limit.

    Torques come from inverse dynamics after the contact and joint-limit forces that best explain
    the motion with the least actuator effort; 0 means every actuator stayed within its range.
    """
    if not len(world.actuated_dofs):
        return None
    ratio = contact_solution(clip, world).torque_ratio
    return float(np.maximum(ratio.max(axis=1) - 1.0, 0.0).mean())
