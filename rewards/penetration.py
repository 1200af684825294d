"""Ground penetration (PhysDiff 'Penetrate'): how deep the lowest body point is below the floor."""
import numpy as np

from rlpf.rewards.analysis import analyze
from rlpf.rewards.registry import per_clip, register

TOLERANCE = 0.005
"""m: MuJoCo's soft contacts let a resting body sink a few millimetres (PhysDiff's 5 mm tolerance)."""


@register("penetration_m", threshold=0.01, unit="m", physics=True, needs=("floor",))
@per_clip
def penetration(clip, world):
    """Mean depth of the lowest body point below the floor, beyond a 5 mm tolerance (m)."""
    if world.floor_geom is None or not len(world.robot_geoms):
        return None
    lowest = analyze(clip, world).geom_low.min(axis=1)
    return float(np.maximum(-lowest - TOLERANCE, 0.0).mean())
