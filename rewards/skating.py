"""Foot skating: a planted foot's contact point slides over the floor when nothing lets it.

Feet do slide in real physics (a light, strong robot slips at metres per second in MuJoCo), so the
slip alone cannot be the violation. A sliding contact can only push against its slip, with Coulomb
friction; the contact fit (analysis.contact_solution) knows that. Slip counts as skating in
proportion to the root force left unexplained at that frame, so a foot that slides because the body
is decelerating is fine, and a body gliding over planted feet is not.
"""
import numpy as np

from rlpf.rewards.analysis import FOOT_CONTACT_BAND, analyze, contact_solution, window_max
from rlpf.rewards.registry import per_clip, register

RESIDUAL_FLOOR = 0.1
"""Body weights of unexplained root force that mocap-rate finite differences leave on valid motion."""
RESIDUAL_SCALE = 0.2
"""Body weights above the floor at which a frame's slip counts in full."""


@register("skate_mps", threshold=0.25, unit="m/s", physics=True, needs=("floor", "feet", "root"))
@per_clip
def skating(clip, world):
    """Mean horizontal slip speed of planted feet that the available friction does not explain (m/s).

    The slip is measured on the foot's own material point, so rolling or pivoting over the contact
    point does not count.
    """
    if world.floor_geom is None or not len(world.foot_geoms) or not world.floating:
        return None
    ph = analyze(clip, world)
    # planted for three frames running: a foot touching down between frames is an impact, not a stance
    planted = window_max(ph.foot_height, 1) < FOOT_CONTACT_BAND + world.contact_margin
    if not planted.any():
        return 0.0
    residual = contact_solution(clip, world).root_residual
    unexplained = np.clip((residual - RESIDUAL_FLOOR) / RESIDUAL_SCALE, 0.0, 1.0)
    return float((ph.foot_slip * unexplained[:, None])[planted].mean())
