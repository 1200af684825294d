"""Object levitation: a free object that nothing supports and that does not fall.

An object touching nothing (no support, robot, other object or fixture within
``object_analysis.CONTACT_BAND`` at any frame of the window its acceleration is read from, and none
buried more than ``DEEPEST_CONTACT`` inside it) can only
fall: its acceleration is gravity. Any other acceleration - hovering (0 instead of -g), rising,
drifting sideways in mid-air - is a force nothing in the scene applied. The term integrates that
missing acceleration over the unsupported frames: the velocity change (m/s) nothing gave.
"""
import numpy as np

from rlpf.rewards.object_analysis import DEEPEST_CONTACT, near, object_geometry
from rlpf.rewards.registry import per_clip, register

THRESHOLD = 0.3
"""m/s: gravity acting unopposed for 30 ms (g x 0.03 s), 2.4 frames at Meta-World's 80 Hz - the
briefest hover that is a hover and not the contact band's edge. Valid clips measure 0 (a simulated
object in the air falls at exactly g, which the [1,2,1] smoothing keeps: it leaves a parabola's
second difference unchanged)."""


@register("object_levitation_mps", threshold=THRESHOLD, unit="m/s", physics=True, needs=("objects",))
@per_clip
def object_levitation(clip, world):
    """Velocity change of unsupported free objects that free fall does not explain (m/s, worst object)."""
    m = world.model
    free_dofs = [_free_dof(m, int(b)) for b in world.object_bodies]
    if all(dof is None for dof in free_dofs):  # no free object (a slide-jointed puck cannot fall)
        return None
    geo = object_geometry(clip, world)
    if len(geo.qacc) < 3:
        return 0.0
    g = m.opt.gravity
    worst = 0.0
    for o, dof in enumerate(free_dofs):
        # a contact carries the object only if it is not buried in it (DEEPEST_CONTACT)
        touching = [near(x[:, o][:, None], deepest=DEEPEST_CONTACT)[:, 0] for x in (geo.obj_support, geo.obj_robot, geo.obj_other)]
        supported = touching[0] | touching[1] | touching[2]
        if dof is None:
            continue
        acc = geo.qacc[:, dof:dof + 3]       # world-frame linear acceleration of the free joint's origin
        free = ~supported
        free[0] = free[-1] = False            # end frames' accelerations are copies of their neighbours'
        missing = np.linalg.norm(acc - g, axis=1)
        worst = max(worst, float(missing[free].sum() * geo.dt))
    return worst


def _free_dof(m, body):
    for j in range(m.body_jntadr[body], m.body_jntadr[body] + m.body_jntnum[body]):
        if m.jnt_type[j] == 0:  # mjJNT_FREE
            return int(m.jnt_dofadr[j])
    return None
