"""Floating: the body hovers above the floor while its motion needs support from it.

A body in ballistic flight needs no support (its centre of mass falls at g), so it is not floating
however high it is; a body that stands still or decelerates a fall in mid-air is.
"""
import numpy as np

from rlpf.rewards.analysis import analyze, contact_solution
from rlpf.rewards.registry import per_clip, register

TOLERANCE = 0.01
"""m: gap below which the body counts as touching (soft contacts, mocap noise), beyond the geoms' contact margin."""


@register("float_m", threshold=0.03, unit="m", physics=True, needs=("floor", "root"))
@per_clip
def floating(clip, world):
    """Mean gap between the lowest body point and the floor, weighted by the support the motion needs (m)."""
    if world.floor_geom is None or not world.floating:
        return None
    gap = analyze(clip, world).geom_low.min(axis=1)
    need = np.clip(contact_solution(clip, world).support_need, 0.0, 1.0)
    return float((np.maximum(gap - TOLERANCE - world.contact_margin, 0.0) * need).mean())
