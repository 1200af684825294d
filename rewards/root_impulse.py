"""Unexplained root impulse: a sudden velocity change nothing pushed for (teleports, snaps).

The mean residual (root_residual_bw) dilutes a one-frame event over the clip; this term integrates
the residual over short windows and keeps the worst, in body-weight-seconds (an unexplained change
of velocity, divided by g).
"""
import numpy as np

from rlpf.rewards.analysis import contact_solution
from rlpf.rewards.registry import per_clip, register

WINDOW_S = 0.25
"""s: events shorter than this count as one impulse."""


@register("root_impulse_bws", threshold=0.4, unit="body weight x s", physics=True, needs=("root",))
@per_clip
def root_impulse(clip, world):
    """Largest residual root impulse within any 0.25 s window (body-weight seconds = dv / g)."""
    if not world.floating:
        return None
    res = contact_solution(clip, world).root_residual * clip.dt
    k = max(1, int(round(WINDOW_S * clip.fps)))
    c = np.r_[0.0, np.cumsum(res)]
    windows = c[k:] - c[:-k] if len(res) >= k else c[-1:]
    return float(windows.max())
