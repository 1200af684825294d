"""Joint-limit excess: joints bent past their range."""
import numpy as np

from rlpf.rewards.analysis import analyze
from rlpf.rewards.registry import per_clip, register


@register("joint_limit_rad", threshold=0.05, unit="rad (m for slides)", physics=True)
@per_clip
def joint_limit_excess(clip, world):
    """Mean over frames of the largest excess of any robot joint beyond its range (rad)."""
    m = world.model
    if not len(world.limited_joints):
        return None
    q = analyze(clip, world).qpos[:, m.jnt_qposadr[world.limited_joints]]
    lo, hi = m.jnt_range[world.limited_joints].T
    excess = np.maximum(np.maximum(lo - q, q - hi), 0.0)
    return float(excess.max(axis=1).mean())
