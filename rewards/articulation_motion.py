"""Articulation motion no contact explains: a drawer that opens, a door that swings, a button that
sinks while nothing touches it (object_unexplained's rule, for unactuated slide and hinge joints).

Untouched, an articulation moves only under its own forces: its spring and damper, gravity, and its
joint limit. The generalized force its motion needs with contacts, limits and welds switched off
(``mj_inverse`` on the joint, so the joint's damping, stiffness, spring reference, armature and the
body's gravity all count as they simulate) must then be zero, or one the limit can supply: a limit
only pushes, away from its end, and only when the joint is at it (soft limits let a joint pressed
hard overshoot its range, so any position past ``range - LIMIT_MARGIN`` is at the limit). Frictionloss
may absorb up to its own value. What remains, times the frame interval over the joint's inertia, is
a velocity change nothing gave; hinges read in m/s at the moved part's outermost point.
"""
import numpy as np

from rlpf.rewards.object_analysis import CONTACT_WINDOW, near, object_geometry
from rlpf.rewards.registry import per_clip, register

LIMIT_MARGIN = 0.005
"""m or rad: a joint this close to (or past) an end of its range may be held by that limit (the
smoothed position reads 5 mm / 0.005 rad short of a limit the raw frames touch)."""
THRESHOLD = 0.1
"""m/s: object_unexplained_mps's threshold - a 10 cm/s start nothing gave is visible in any clip;
valid Meta-World clips measure below 0.01 m/s (untouched joints follow their own dynamics)."""


@register("articulation_unexplained_mps", threshold=THRESHOLD, unit="m/s", physics=True, needs=("articulations",))
@per_clip
def articulation_unexplained(clip, world):
    """Velocity change of untouched articulations that their spring, damper, gravity and limits do not explain (m/s)."""
    if not len(world.articulation_joints):
        return None
    geo = object_geometry(clip, world)
    if len(geo.qpos) < 3:
        return 0.0
    m = world.model
    worst = 0.0
    for a, j in enumerate(world.articulation_joints):
        dof, adr = int(world.articulation_dofs[a]), int(world.articulation_qpos[a])
        touched = near(np.minimum(geo.art_robot[:, a], geo.art_object[:, a])[:, None])[:, 0]
        force = geo.qfrc[:, dof].copy()            # what contacts / limits must supply
        if m.jnt_limited[j]:
            lo, hi = m.jnt_range[j]
            q = geo.qpos[:, adr]
            at_lo = near((q - lo - LIMIT_MARGIN)[:, None], 0.0, CONTACT_WINDOW)[:, 0]
            at_hi = near((hi - LIMIT_MARGIN - q)[:, None], 0.0, CONTACT_WINDOW)[:, 0]
            force = np.where(at_lo, np.minimum(force, 0.0), force)   # the lower limit pushes up
            force = np.where(at_hi, np.maximum(force, 0.0), force)   # the upper limit pushes down
        force = np.sign(force) * np.maximum(np.abs(force) - m.dof_frictionloss[dof], 0.0)
        free = ~touched
        free[0] = free[-1] = False
        dv = np.abs(force[free]) * geo.dt / geo.art_inertia[a] * geo.art_lever[a]
        worst = max(worst, float(dv.sum()))
    return worst
